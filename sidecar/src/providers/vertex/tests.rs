use std::path::Path;

use http::HeaderMap;
use serde_json::json;
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::{Breaker, GcpAuth, Limits, TimeoutsMs, Upstream};

use super::*;
use crate::convert::sse::SseParser;
use crate::upstream::UpstreamRt;

const BASE: &str = "https://us-east5-aiplatform.googleapis.com/v1";

fn upstream() -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "vertex".into(),
        api: Api::VertexAI,
        base_url: BASE.into(),
        region: Some("us-east5".into()),
        api_key: None,
        forward_headers: vec!["x-tenant".into(), "authorization".into()],
        responses_api: false,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
        azure_api_version: None,
        aws: None,
        gcp: Some(GcpAuth {
            project: "my-project".into(),
            service_account_key: SecretString::new("{}"),
            token_url: None,
        }),
    })
}

fn token() -> Credential {
    Credential::Bearer(SecretString::new("ya29.test-token"))
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().expect("an object").clone()
}

fn hub() -> Map<String, Value> {
    object(json!({"model": "chat", "max_tokens": 50, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]}))
}

fn client_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "Bearer client-key".parse().unwrap());
    headers.insert("x-tenant", "t1".parse().unwrap());
    headers.insert("anthropic-beta", "tools-2024".parse().unwrap());
    headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
    headers
}

struct Built {
    uri: String,
    headers: HeaderMap,
    body: Value,
}

fn build_with(
    publisher: Publisher,
    model: &str,
    hub: &Map<String, Value>,
    original: Option<&Map<String, Value>>,
    client: ClientApi,
    stream: bool,
) -> Built {
    let up = upstream();
    let headers = client_headers();
    let credential = token();
    let call = Call {
        upstream: &up,
        model,
        request: hub,
        original,
        client,
        stream,
        client_headers: &headers,
        credential: &credential,
        publisher,
    };
    let request = Vertex.build_request(&call).unwrap();
    Built {
        uri: request.uri().to_string(),
        headers: request.headers().clone(),
        body: crate::providers::sent_json(request),
    }
}

fn build(publisher: Publisher, model: &str, stream: bool) -> Built {
    build_with(publisher, model, &hub(), None, ClientApi::OpenAI, stream)
}

#[test]
fn urls_name_project_region_publisher_and_method() {
    let cases = [
        (
            Publisher::Google,
            "gemini-2.5-flash",
            true,
            "publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        ),
        (
            Publisher::Google,
            "gemini-2.5-flash",
            false,
            "publishers/google/models/gemini-2.5-flash:generateContent",
        ),
        (
            Publisher::Anthropic,
            "claude-sonnet-4@20250514",
            true,
            "publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict",
        ),
        (
            Publisher::Anthropic,
            "claude-sonnet-4@20250514",
            false,
            "publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict",
        ),
    ];
    for (publisher, model, stream, tail) in cases {
        let built = build(publisher, model, stream);
        assert_eq!(
            built.uri,
            format!("{BASE}/projects/my-project/locations/us-east5/{tail}")
        );
    }
    // A name cannot change the URL's shape.
    let url = model_url(BASE, "p", "r", Publisher::Google, "a/../b?c#d", false);
    assert!(
        url.ends_with("/models/a%2F..%2Fb%3Fc%23d:generateContent"),
        "{url}"
    );
}

#[test]
fn requests_carry_the_access_token_and_never_the_clients_key() {
    for publisher in [Publisher::Google, Publisher::Anthropic] {
        let built = build(publisher, "m", true);
        let auth = built.headers.get_all(header::AUTHORIZATION);
        assert_eq!(auth.iter().count(), 1, "{publisher:?}");
        assert_eq!(
            built.headers[header::AUTHORIZATION],
            "Bearer ya29.test-token"
        );
        assert!(built.headers[header::AUTHORIZATION].is_sensitive());
        assert!(built.headers.get("x-goog-api-key").is_none());
        assert!(built.headers.get("x-api-key").is_none());
        assert_eq!(
            built.headers["x-tenant"], "t1",
            "forwardHeaders still apply"
        );
    }
}

#[test]
fn without_an_access_token_nothing_is_sent() {
    let up = upstream();
    let (hub, headers) = (hub(), HeaderMap::new());
    let call = Call {
        upstream: &up,
        model: "m",
        request: &hub,
        original: None,
        client: ClientApi::OpenAI,
        stream: true,
        client_headers: &headers,
        credential: &Credential::None,
        publisher: Publisher::Google,
    };
    let error = Vertex.build_request(&call).unwrap_err();
    assert_eq!(error.class, FailureClass::AuthError);
}

#[test]
fn google_models_get_geminis_body() {
    let built = build(Publisher::Google, "gemini-2.5-flash", true);
    let expected = serde_json::to_value(crate::convert::openai_gemini::request(&hub())).unwrap();
    assert_eq!(built.body, expected);
    assert!(built.headers.get("anthropic-version").is_none());
}

#[test]
fn anthropic_models_get_a_messages_body_without_model_with_anthropic_version() {
    for stream in [true, false] {
        let built = build(Publisher::Anthropic, "claude-sonnet-4@20250514", stream);
        let body = built.body.as_object().unwrap();
        assert!(!body.contains_key("model"), "{body:?}");
        assert_eq!(body["anthropic_version"], ANTHROPIC_VERSION);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 50);
        assert_eq!(body.get("stream"), stream.then_some(&json!(true)));
        // The version is in the body; the client's header is not forwarded, its beta flags are.
        assert!(built.headers.get("anthropic-version").is_none());
        assert_eq!(built.headers["anthropic-beta"], "tools-2024");
    }
}

#[test]
fn anthropic_clients_pass_through_to_anthropic_models() {
    let original = object(json!({
        "model": "claude-alias", "max_tokens": 64, "stream": false,
        "anthropic_version": "bedrock-2023-05-31",
        "system": [{"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }));
    let built = build_with(
        Publisher::Anthropic,
        "claude-sonnet-4@20250514",
        &hub(),
        Some(&original),
        ClientApi::Anthropic,
        true,
    );
    let mut expected = original.clone();
    expected.remove("model");
    expected.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
    expected.insert("stream".into(), json!(true));
    assert_eq!(
        built.body,
        Value::Object(expected),
        "as sent, but for model, version, stream"
    );
}

/// The Vertex request bodies for every request fixture, both publishers: what Vertex receives.
#[test]
fn golden_vertex_request_bodies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/convert/testdata");
    for case in ["minimal", "full", "forced_tool"] {
        let path = root.join(format!("requests/{case}.json"));
        let fixture =
            object(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap());
        for (publisher, name, model) in [
            (Publisher::Google, "google", "gemini-2.5-flash"),
            (
                Publisher::Anthropic,
                "anthropic",
                "claude-sonnet-4@20250514",
            ),
        ] {
            let built = build_with(publisher, model, &fixture, None, ClientApi::OpenAI, true);
            insta::assert_json_snapshot!(
                format!("vertex_request.{case}.{name}"),
                json!({"url": built.uri, "body": built.body})
            );
        }
    }
    let path = root.join("anthropic_requests/full.json");
    let original = object(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap());
    let built = build_with(
        Publisher::Anthropic,
        "claude-sonnet-4@20250514",
        &hub(),
        Some(&original),
        ClientApi::Anthropic,
        true,
    );
    insta::assert_json_snapshot!(
        "vertex_request.anthropic_client_full.anthropic",
        json!({"url": built.uri, "body": built.body})
    );
}

fn decode(client: ClientApi, raw: &[u8]) -> Vec<Chunk> {
    let mut decoder = Vertex.stream_decoder(client, "m");
    let (mut parser, mut events, mut chunks) = (SseParser::default(), Vec::new(), Vec::new());
    parser.push(raw, &mut events).expect("well-formed stream");
    for event in events {
        decoder.decode(event, &mut chunks);
    }
    decoder.end(&mut chunks);
    chunks
}

fn fixture_stream(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/convert/testdata/streams")
        .join(name);
    std::fs::read(path).unwrap()
}

/// Vertex streams are decoded by the publishers' own decoders: the same chunks as theirs.
#[test]
fn streams_decode_as_the_publishers_do() {
    for (api, name) in [
        (Api::Gemini, "gemini_text.sse"),
        (Api::Anthropic, "anthropic_tool_use.sse"),
    ] {
        let raw = fixture_stream(name);
        for client in [ClientApi::OpenAI, ClientApi::Anthropic] {
            let mut theirs = crate::providers::for_api(api)
                .unwrap()
                .stream_decoder(client, "m");
            let (mut parser, mut events, mut expected) =
                (SseParser::default(), Vec::new(), Vec::new());
            parser.push(&raw, &mut events).unwrap();
            for event in events {
                theirs.decode(event, &mut expected);
            }
            theirs.end(&mut expected);
            let ours = decode(client, &raw);
            let show = |chunks: &[Chunk]| {
                chunks
                    .iter()
                    .map(|c| match c {
                        Chunk::Data {
                            json,
                            commits,
                            usage,
                            ..
                        } => {
                            let mut v: Value = serde_json::from_slice(json).unwrap();
                            v["created"] = json!(0);
                            format!("data {v} {commits} {usage:?}")
                        }
                        Chunk::Raw {
                            frame,
                            commits,
                            usage,
                        } => {
                            format!("raw {} {commits} {usage:?}", String::from_utf8_lossy(frame))
                        }
                        Chunk::Done => "done".into(),
                        Chunk::Error(e) => format!("error {:?}", e.class),
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(show(&ours), show(&expected), "{name} to {client:?}");
            assert!(matches!(ours.last(), Some(Chunk::Done)), "{name}");
        }
    }
}

#[test]
fn a_stream_cut_short_or_empty_is_an_error_not_an_answer() {
    assert!(
        decode(ClientApi::OpenAI, b"")
            .iter()
            .all(|c| !matches!(c, Chunk::Done))
    );
    let raw = b"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hi\"}]}}]}\n\n";
    assert!(
        decode(ClientApi::OpenAI, raw)
            .iter()
            .all(|c| !matches!(c, Chunk::Done))
    );
}

#[test]
fn stream_errors_are_classified_in_either_shape() {
    let google = b"data: {\"error\":{\"code\":429,\"message\":\"Quota exceeded\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n\n";
    let anthropic = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    for (raw, class) in [
        (&google[..], FailureClass::RateLimited),
        (&anthropic[..], FailureClass::Overloaded),
    ] {
        let chunks = decode(ClientApi::OpenAI, raw);
        assert!(
            matches!(chunks.first(), Some(Chunk::Error(e)) if e.class == class),
            "{chunks:?}"
        );
    }
}

#[test]
fn whole_answers_are_read_in_either_shape() {
    let gemini = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]},
        "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3,
        "candidatesTokenCount": 1, "totalTokenCount": 4}, "modelVersion": "gemini-2.5-flash"});
    let completion = Vertex
        .parse_response(Bytes::from(gemini.to_string()), ClientApi::OpenAI, "m")
        .unwrap();
    let body: Value = serde_json::from_slice(&completion.body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hi");
    assert_eq!(completion.usage.unwrap().input, 3);

    let message = json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4", "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 2}});
    let raw = Bytes::from(message.to_string());
    let passthrough = Vertex
        .parse_response(raw.clone(), ClientApi::Anthropic, "m")
        .unwrap();
    assert_eq!(
        passthrough.body, raw,
        "Anthropic clients get Anthropic's answer as it is"
    );
    let converted = Vertex.parse_response(raw, ClientApi::OpenAI, "m").unwrap();
    let body: Value = serde_json::from_slice(&converted.body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[test]
fn vertex_errors_are_classified_from_their_real_shapes() {
    let google = |code: u16, status: &str, message: &str| {
        json!({"error": {"code": code, "message": message, "status": status}}).to_string()
    };
    let anthropic = |kind: &str, message: &str| {
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
    };
    let cases = [
        (
            429,
            google(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model with base model: gemini. Please submit a quota increase request.",
            ),
            FailureClass::RateLimited,
        ),
        (
            401,
            google(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            ),
            FailureClass::AuthError,
        ),
        (
            403,
            google(
                403,
                "PERMISSION_DENIED",
                "Permission 'aiplatform.endpoints.predict' denied on resource",
            ),
            FailureClass::AuthError,
        ),
        (
            400,
            google(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
            ),
            FailureClass::ContextLengthExceeded,
        ),
        (
            400,
            google(400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
            FailureClass::ClientError,
        ),
        (
            404,
            google(
                404,
                "NOT_FOUND",
                "Publisher Model `projects/p/locations/us-east5/publishers/google/models/x` was not found",
            ),
            FailureClass::ServerError,
        ),
        (
            503,
            google(503, "UNAVAILABLE", "The service is currently unavailable."),
            FailureClass::Overloaded,
        ),
        (
            529,
            anthropic("overloaded_error", "Overloaded"),
            FailureClass::Overloaded,
        ),
        (
            400,
            anthropic(
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            ),
            FailureClass::ContextLengthExceeded,
        ),
        (
            429,
            anthropic(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
            FailureClass::RateLimited,
        ),
    ];
    for (status, body, class) in cases {
        let status = StatusCode::from_u16(status).unwrap();
        let error = Vertex.classify_error(status, &HeaderMap::new(), body.as_bytes());
        assert_eq!(error.class, class, "{status} {body}");
    }
    // Google's back-off hint is read from the body, as for Gemini.
    let body = json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}});
    let error = Vertex.classify_error(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        body.to_string().as_bytes(),
    );
    assert_eq!(error.retry_after, Some(std::time::Duration::from_secs(7)));
}

/// Fuzz-style, as `convert::robustness_tests` does for the other protocols: the publisher is
/// picked from the first event, so however a stream is split it decodes the same, and cut or
/// mutated it never panics.
#[test]
fn split_or_mutated_streams_decode_the_same_or_fail_cleanly() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn summary(client: ClientApi, pieces: &[&[u8]]) -> Vec<String> {
        let mut decoder = Vertex.stream_decoder(client, "m");
        let (mut parser, mut events, mut chunks) = (SseParser::default(), Vec::new(), Vec::new());
        for piece in pieces {
            if parser.push(piece, &mut events).is_err() {
                return vec!["parse error".into()];
            }
            for event in events.drain(..) {
                decoder.decode(event, &mut chunks);
            }
        }
        decoder.end(&mut chunks);
        chunks
            .iter()
            .map(|c| match c {
                Chunk::Data { json, .. } => {
                    let mut v: Value = serde_json::from_slice(json).unwrap_or_default();
                    if v.is_object() {
                        v["created"] = json!(0);
                    }
                    format!("data {v}")
                }
                Chunk::Raw { frame, .. } => format!("raw {}", String::from_utf8_lossy(frame)),
                Chunk::Done => "done".into(),
                Chunk::Error(e) => format!("error {:?}", e.class),
            })
            .collect()
    }

    for name in ["gemini_text.sse", "anthropic_tool_use.sse"] {
        let bytes = fixture_stream(name);
        for client in [ClientApi::OpenAI, ClientApi::Anthropic] {
            let whole = summary(client, &[&bytes]);
            assert_eq!(whole.last().map(String::as_str), Some("done"), "{name}");
            for seed in 0..200 {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut pieces = Vec::new();
                let mut at = 0;
                while at < bytes.len() {
                    let take = rng.random_range(1..=(bytes.len() - at).min(64));
                    pieces.push(&bytes[at..at + take]);
                    at += take;
                }
                assert_eq!(summary(client, &pieces), whole, "{name} seed {seed}");

                let mut broken = bytes[..rng.random_range(0..bytes.len())].to_vec();
                for _ in 0..rng.random_range(0..4) {
                    if !broken.is_empty() {
                        let i = rng.random_range(0..broken.len());
                        broken[i] = rng.random();
                    }
                }
                let cut = summary(client, &[&broken]);
                // A stream cut before its end never claims a clean end.
                if !broken.ends_with(b"\n\n") && broken.len() < bytes.len() / 2 {
                    assert_ne!(
                        cut.last().map(String::as_str),
                        Some("done"),
                        "{name} seed {seed}"
                    );
                }
            }
        }
    }
}
