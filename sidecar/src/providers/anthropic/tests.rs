use http::HeaderMap;
use serde_json::{Map, json};
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::{Breaker, Limits, TimeoutsMs, Upstream};

use super::*;
use crate::convert::Usage;
use crate::upstream::UpstreamRt;

fn upstream() -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "anthropic".into(),
        api: Api::Anthropic,
        base_url: "https://api.anthropic.com".into(),
        region: None,
        api_key: Some(SecretString::new("sk-ant-pool")),
        forward_headers: vec![],
        responses_api: false,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
        azure_api_version: None,
        aws: None,
        gcp: None,
    })
}

fn body(request: http::Request<Full<Bytes>>) -> Value {
    crate::providers::sent_json(request)
}

#[test]
fn openai_clients_are_translated_and_authenticated_with_the_pool_key() {
    let up = upstream();
    let hub: Map<String, Value> =
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
            .as_object()
            .unwrap()
            .clone();
    let mut client_headers = HeaderMap::new();
    client_headers.insert("x-api-key", "sk-client".parse().unwrap());
    client_headers.insert("anthropic-beta", "tools-2024".parse().unwrap());
    let call = Call {
        upstream: &up,
        model: "claude-sonnet-4",
        request: &hub,
        original: None,
        client: ClientApi::OpenAI,
        stream: false,
        client_headers: &client_headers,
        credential: &crate::upstream::credentials::Credential::None,
        publisher: switchyard_crds::v1alpha1::Publisher::Google,
    };
    let request = Anthropic.build_request(&call).unwrap();
    assert_eq!(request.uri(), "https://api.anthropic.com/v1/messages");
    assert_eq!(request.headers()["x-api-key"], "sk-ant-pool");
    assert!(request.headers()["x-api-key"].is_sensitive());
    assert_eq!(request.headers()["anthropic-version"], DEFAULT_VERSION);
    assert_eq!(request.headers()["anthropic-beta"], "tools-2024");
    let sent = body(request);
    assert_eq!(sent["model"], "claude-sonnet-4");
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["messages"][0]["content"][0]["text"], "hi");
}

#[test]
fn anthropic_clients_pass_through_with_only_the_model_replaced() {
    let up = upstream();
    let original: Map<String, Value> = json!({"model": "chat", "max_tokens": 9, "top_k": 3, "messages": [{"role": "user", "content": "hi"}]}).as_object().unwrap().clone();
    let hub = crate::convert::anthropic_openai::request(&original).unwrap();
    let call = Call {
        upstream: &up,
        model: "claude",
        request: &hub,
        original: Some(&original),
        client: ClientApi::Anthropic,
        stream: false,
        client_headers: &HeaderMap::new(),
        credential: &crate::upstream::credentials::Credential::None,
        publisher: switchyard_crds::v1alpha1::Publisher::Google,
    };
    let sent = body(Anthropic.build_request(&call).unwrap());
    let mut expected = original.clone();
    expected.insert("model".into(), "claude".into());
    assert_eq!(
        sent,
        Value::Object(expected),
        "top_k survives: nothing was converted"
    );
}

#[test]
fn answers_reach_each_client_in_its_format() {
    let message = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Hi"}],
        "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1,"cache_read_input_tokens":2}}"#;
    let raw = Anthropic
        .parse_response(Bytes::from_static(message), ClientApi::Anthropic, "m")
        .unwrap();
    assert_eq!(&raw.body[..], &message[..], "passthrough keeps the bytes");
    assert_eq!(
        raw.usage,
        Some(Usage {
            input: 5,
            cached_input: 2,
            output: 1
        })
    );
    let openai = Anthropic
        .parse_response(Bytes::from_static(message), ClientApi::OpenAI, "m")
        .unwrap();
    let hub: Value = serde_json::from_slice(&openai.body).unwrap();
    assert_eq!(hub["choices"][0]["message"]["content"], "Hi");
    assert!(
        Anthropic
            .parse_response(
                Bytes::from_static(b"{\"type\":\"message\"}"),
                ClientApi::OpenAI,
                "m"
            )
            .is_err()
    );
}

fn sse(kind: &str, data: Value) -> SseEvent {
    SseEvent {
        event: Some(kind.into()),
        data: Bytes::from(data.to_string()),
    }
}

#[test]
fn streams_pass_through_or_translate() {
    let events = [
        sse(
            "message_start",
            json!({"type": "message_start", "message": {"id": "m", "model": "claude", "usage": {"input_tokens": 4, "output_tokens": 1}}}),
        ),
        sse("ping", json!({"type": "ping"})),
        sse(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        sse(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        ),
        sse("message_stop", json!({"type": "message_stop"})),
    ];
    let mut raw = Anthropic.stream_decoder(ClientApi::Anthropic, "m");
    let mut out = Vec::new();
    for e in events.clone() {
        raw.decode(e, &mut out);
    }
    assert!(
        matches!(&out[0], Chunk::Raw { commits: true, frame, .. } if frame.starts_with(b"event: message_start\ndata: {"))
    );
    assert!(
        matches!(&out[1], Chunk::Raw { commits: false, .. }),
        "a ping does not commit"
    );
    assert!(matches!(
        &out[4],
        Chunk::Raw {
            usage: Some(Usage {
                input: 4,
                cached_input: 0,
                output: 2
            }),
            ..
        }
    ));
    assert!(matches!(out[5], Chunk::Done));

    let mut translated = Anthropic.stream_decoder(ClientApi::OpenAI, "m");
    let mut out = Vec::new();
    for e in events {
        translated.decode(e, &mut out);
    }
    assert!(matches!(&out[0], Chunk::Data { commits: true, .. }));
    assert!(
        matches!(&out[1], Chunk::Data { json, .. } if serde_json::from_slice::<Value>(json).unwrap()["choices"][0]["delta"]["content"] == "Hi")
    );
    assert!(matches!(
        &out[3],
        Chunk::Data {
            usage_only: true,
            usage: Some(Usage { output: 2, .. }),
            ..
        }
    ));
    assert!(matches!(out[4], Chunk::Done));
}

#[test]
fn error_events_are_classified() {
    let mut d = Anthropic.stream_decoder(ClientApi::Anthropic, "m");
    let mut out = Vec::new();
    d.decode(sse("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})), &mut out);
    assert!(
        matches!(&out[0], Chunk::Error(e) if e.class == switchyard_crds::v1alpha1::FailureClass::Overloaded)
    );
    d.decode(
        SseEvent {
            event: None,
            data: Bytes::from_static(b"{oops"),
        },
        &mut out,
    );
    assert!(
        matches!(&out[1], Chunk::Error(e) if e.class == switchyard_crds::v1alpha1::FailureClass::ServerError)
    );
}

/// The URI and `x-api-key` made once per upstream are what each request made for itself.
#[test]
fn prepared_parts_are_what_each_request_would_make() {
    let hub: Map<String, Value> =
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
            .as_object()
            .unwrap()
            .clone();
    let client_headers = HeaderMap::new();
    let build = |up: &UpstreamRt| {
        let call = Call {
            upstream: up,
            model: "claude-sonnet-4",
            request: &hub,
            original: None,
            client: ClientApi::OpenAI,
            stream: true,
            client_headers: &client_headers,
            credential: &crate::upstream::credentials::Credential::None,
            publisher: switchyard_crds::v1alpha1::Publisher::Google,
        };
        Anthropic.build_request(&call).unwrap()
    };
    let prepared = upstream();
    assert!(prepared.prepared.chat_uri.is_some() && prepared.prepared.authorization.is_some());
    let mut unprepared = upstream();
    unprepared.prepared = crate::upstream::Prepared::default();
    let (a, b) = (build(&prepared), build(&unprepared));
    assert_eq!(a.uri(), b.uri());
    assert_eq!(a.headers()["x-api-key"], b.headers()["x-api-key"]);
    assert!(a.headers()["x-api-key"].is_sensitive());
    assert_eq!(a.headers()["host"], "api.anthropic.com");
    assert_eq!(body(a), body(b));
}
