use http::HeaderMap;
use serde_json::{Map, json};
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::{Breaker, Limits, TimeoutsMs, Upstream};

use super::*;
use crate::convert::Usage;
use crate::convert::openai_gemini::tests::assert_valid;
use crate::convert::sse::SseParser;
use crate::upstream::UpstreamRt;

fn upstream() -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "gemini".into(),
        api: Api::Gemini,
        base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
        region: None,
        api_key: Some(SecretString::new("AIza-pool")),
        forward_headers: vec!["x-goog-api-key".into(), "x-tenant".into()],
        responses_api: false,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
        azure_api_version: None,
        aws: None,
        gcp: None,
    })
}

fn hub() -> Map<String, Value> {
    json!({"model": "chat", "max_tokens": 50, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]})
    .as_object()
    .unwrap()
    .clone()
}

fn build(model: &str, client: ClientApi, stream: bool) -> http::Request<Full<Bytes>> {
    let up = upstream();
    let hub = hub();
    let mut client_headers = HeaderMap::new();
    client_headers.insert("x-goog-api-key", "AIza-client".parse().unwrap());
    client_headers.insert("x-tenant", "t1".parse().unwrap());
    let call = Call {
        upstream: &up,
        model,
        request: &hub,
        original: None,
        client,
        stream,
        client_headers: &client_headers,
        credential: &crate::upstream::credentials::Credential::None,
        publisher: switchyard_crds::v1alpha1::Publisher::Google,
    };
    Gemini.build_request(&call).unwrap()
}

#[test]
fn requests_go_to_the_model_url_with_the_pool_key() {
    let request = build("gemini-2.5-flash", ClientApi::OpenAI, false);
    assert_eq!(
        request.uri(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(request.headers()["x-goog-api-key"], "AIza-pool");
    assert!(request.headers()["x-goog-api-key"].is_sensitive());
    assert_eq!(
        request.headers().get_all("x-goog-api-key").iter().count(),
        1,
        "the client's key is never forwarded"
    );
    assert_eq!(request.headers()["x-tenant"], "t1");
    let sent = crate::providers::sent_json(request);
    assert_valid(&sent);
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 50);

    let streamed = build("models/gemini-2.5-flash", ClientApi::Anthropic, true);
    assert_eq!(
        streamed.uri(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(streamed.headers()["accept"], "text/event-stream");
    let sent = crate::providers::sent_json(streamed);
    assert_valid(&sent);
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "hi"}]}]),
        "Anthropic clients are converted from the hub request too"
    );
}

const ANSWER: &[u8] = br#"{"candidates":[{"content":{"parts":[{"text":"Hi there"}],"role":"model"},"finishReason":"STOP","index":0}],
    "usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":3,"totalTokenCount":12,"cachedContentTokenCount":4},
    "modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;

#[test]
fn answers_reach_each_client_in_its_format() {
    let expected = Some(Usage {
        input: 9,
        cached_input: 4,
        output: 3,
    });
    let openai = Gemini
        .parse_response(Bytes::from_static(ANSWER), ClientApi::OpenAI, "m")
        .unwrap();
    assert_eq!(openai.usage, expected);
    let hub: Value = serde_json::from_slice(&openai.body).unwrap();
    assert_eq!(hub["object"], "chat.completion");
    assert_eq!(hub["model"], "gemini-2.5-flash");
    assert_eq!(hub["choices"][0]["message"]["content"], "Hi there");

    let anthropic = Gemini
        .parse_response(Bytes::from_static(ANSWER), ClientApi::Anthropic, "m")
        .unwrap();
    assert_eq!(anthropic.usage, expected);
    let message: Value = serde_json::from_slice(&anthropic.body).unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Hi there");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"]["cache_read_input_tokens"], 4);
}

#[test]
fn garbage_answers_are_server_errors() {
    for body in [&b"<html>502</html>"[..], b"{\"choices\":[]}", b"[]"] {
        let error = Gemini
            .parse_response(Bytes::copy_from_slice(body), ClientApi::OpenAI, "m")
            .err()
            .expect("not an answer");
        assert_eq!(error.class, FailureClass::ServerError, "{error:?}");
    }
}

/// Decodes a raw upstream body the way the stream layer does: SSE framing, then the decoder,
/// then `end` when the body is over.
fn decode(body: &[u8]) -> Vec<Chunk> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.push(body, &mut events).unwrap();
    let mut decoder = Gemini.stream_decoder(ClientApi::OpenAI, "m");
    let mut out = Vec::new();
    for event in events {
        decoder.decode(event, &mut out);
    }
    decoder.end(&mut out);
    out
}

fn json_of(chunk: &Chunk) -> Value {
    match chunk {
        Chunk::Data { json, .. } => serde_json::from_slice(json).unwrap(),
        other => panic!("not a data chunk: {other:?}"),
    }
}

/// What `streamGenerateContent?alt=sse` sends: one `data:` line per response, CRLF-framed, and
/// nothing after the last one.
const STREAM: &[u8] = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"abc\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"abc\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" blue.\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 5,\"totalTokenCount\": 13,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 8}]},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"abc\"}\r\n\r\n";

#[test]
fn a_complete_stream_ends_with_usage_and_done() {
    let out = decode(STREAM);
    assert_eq!(out.len(), 6, "{out:?}");
    assert!(matches!(
        out[0],
        Chunk::Data {
            commits: true,
            usage: None,
            usage_only: false,
            ..
        }
    ));
    let first = json_of(&out[0]);
    assert_eq!(first["id"], "chatcmpl-abc");
    assert_eq!(first["model"], "gemini-2.0-flash");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": "The"})
    );
    let text: String = out[..3]
        .iter()
        .map(|c| {
            json_of(c)["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "The sky is blue.");
    assert!(matches!(out[3], Chunk::Data { commits: true, .. }));
    assert_eq!(json_of(&out[3])["choices"][0]["finish_reason"], "stop");
    assert!(matches!(
        out[4],
        Chunk::Data {
            usage_only: true,
            usage: Some(Usage {
                input: 8,
                cached_input: 0,
                output: 5
            }),
            ..
        }
    ));
    assert_eq!(json_of(&out[4])["usage"]["total_tokens"], 13);
    assert!(matches!(out[5], Chunk::Done));
}

#[test]
fn a_stream_without_a_finish_reason_never_ends_cleanly() {
    let cut = &STREAM[..STREAM.len() / 2];
    let cut = &cut[..cut.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap() + 4];
    let out = decode(cut);
    assert!(!out.is_empty());
    assert!(
        out.iter()
            .all(|c| matches!(c, Chunk::Data { usage: None, .. })),
        "no usage chunk and no Done: {out:?}"
    );
}

#[test]
fn function_calls_stream_as_whole_tool_calls() {
    let body = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"weather\",\"args\": {\"location\": \"Paris\"}},\"thoughtSignature\": \"c2ln\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 30,\"candidatesTokenCount\": 6,\"thoughtsTokenCount\": 40},\"responseId\": \"r9\"}\r\n\r\n";
    let out = decode(body);
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(
        json_of(&out[0])["choices"][0]["delta"],
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_r9_0", "type": "function",
            "function": {"name": "weather", "arguments": "{\"location\":\"Paris\"}"},
            "extra_content": {"google": {"thought_signature": "c2ln"}}}]})
    );
    assert_eq!(
        json_of(&out[1])["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert!(matches!(
        out[2],
        Chunk::Data {
            usage: Some(Usage { output: 46, .. }),
            ..
        }
    ));
    assert!(matches!(out[3], Chunk::Done));
}

#[test]
fn stream_errors_are_classified() {
    let out = decode(b"data: {\"error\": {\"code\": 503, \"message\": \"The service is currently unavailable.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n");
    assert!(
        matches!(&out[0], Chunk::Error(e) if e.class == FailureClass::Overloaded),
        "{out:?}"
    );
    let out = decode(b"data: {\"error\": {\"code\": 429, \"message\": \"Resource has been exhausted (e.g. check quota).\", \"status\": \"RESOURCE_EXHAUSTED\"}}\r\n\r\n");
    assert!(matches!(&out[0], Chunk::Error(e) if e.class == FailureClass::RateLimited));
    let out = decode(b"data: {\"error\": {\"message\": \"broken\"}}\r\n\r\n");
    assert!(matches!(&out[0], Chunk::Error(e) if e.class == FailureClass::ServerError));
    let out = decode(b"data: {oops\r\n\r\n");
    assert!(matches!(&out[0], Chunk::Error(e) if e.class == FailureClass::ServerError));
}

fn classify(status: u16, error: Value) -> AttemptError {
    let body = serde_json::to_vec(&json!({"error": error})).unwrap();
    Gemini.classify_error(
        StatusCode::from_u16(status).unwrap(),
        &HeaderMap::new(),
        &body,
    )
}

#[test]
fn gemini_errors_classify_by_their_quirks() {
    use FailureClass::*;
    let cases = [
        (
            400,
            json!({"code": 400, "message": "Invalid value at 'safety_settings[0].threshold' (type.googleapis.com/google.ai.generativelanguage.v1beta.HarmBlockThreshold), \"HIGH\"", "status": "INVALID_ARGUMENT"}),
            ClientError,
        ),
        (
            400,
            json!({"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}),
            AuthError,
        ),
        (
            400,
            json!({"code": 400, "message": "API key expired. Please renew the API key.", "status": "INVALID_ARGUMENT"}),
            AuthError,
        ),
        (
            400,
            json!({"code": 400, "message": "User location is not supported for the API use.", "status": "FAILED_PRECONDITION"}),
            AuthError,
        ),
        (
            403,
            json!({"code": 403, "message": "Method doesn't allow unregistered callers.", "status": "PERMISSION_DENIED"}),
            AuthError,
        ),
        (
            429,
            json!({"code": 429, "message": "You exceeded your current quota, please check your plan and billing details.", "status": "RESOURCE_EXHAUSTED"}),
            RateLimited,
        ),
        (
            503,
            json!({"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}),
            Overloaded,
        ),
        (
            503,
            json!({"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}),
            Overloaded,
        ),
        (
            400,
            json!({"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}),
            ContextLengthExceeded,
        ),
        (
            400,
            json!({"code": 400, "message": "The request was blocked: PROHIBITED_CONTENT.", "status": "INVALID_ARGUMENT"}),
            ContentFiltered,
        ),
        (
            400,
            json!({"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}),
            ClientError,
        ),
        (
            404,
            json!({"code": 404, "message": "models/gemini-9 is not found for API version v1beta", "status": "NOT_FOUND"}),
            ServerError,
        ),
        (
            500,
            json!({"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}),
            ServerError,
        ),
    ];
    for (status, error, class) in cases {
        let e = classify(status, error.clone());
        assert_eq!(e.class, class, "{status} {error}");
        assert_eq!(
            e.upstream_status,
            Some(StatusCode::from_u16(status).unwrap())
        );
    }
    let e = classify(
        400,
        json!({"code": 400, "message": "API key not valid. Please pass a valid API key."}),
    );
    assert_eq!(
        e.message,
        "HTTP 400: API key not valid. Please pass a valid API key."
    );
}

#[test]
fn retry_hints_come_from_the_body_unless_a_header_gives_one() {
    let error = json!({"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27.5s"},
    ]});
    assert_eq!(
        classify(429, error.clone()).retry_after,
        Some(Duration::from_millis(27_500))
    );
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "3".parse().unwrap());
    let body = serde_json::to_vec(&json!({"error": error})).unwrap();
    assert_eq!(
        Gemini
            .classify_error(StatusCode::TOO_MANY_REQUESTS, &headers, &body)
            .retry_after,
        Some(Duration::from_secs(3))
    );
    assert_eq!(classify(429, json!({"code": 429})).retry_after, None);
}

#[test]
fn the_gemini_module_serves_api_gemini() {
    assert_eq!(
        crate::providers::for_api(Api::Gemini).unwrap().api(),
        Api::Gemini
    );
}
