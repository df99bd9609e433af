//! Anthropic-format clients (`POST /v1/messages`) in front of an OpenAI-API provider: answers,
//! streams and every kind of error come back in Anthropic's format (docs/reference/api.md: "in the
//! client's format"), including the `event: error` that ends a broken stream.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::{Behavior, Fault, Harness, MockProvider, Reply, pool, route};

const REPLY: &str = "one two three";
const PATH: &str = "/v1/messages";
const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

async fn pair(provider_extra: &str) -> (Harness, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    for p in [&a, &b] {
        p.set_behavior(Behavior {
            reply: REPLY.into(),
            ..Behavior::default()
        });
    }
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        provider_extra,
        "",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "");
    (Harness::start(&yaml).await, a, b)
}

fn request(stream: bool) -> Value {
    json!({"model": "chat", "max_tokens": 256, "stream": stream,
        "system": "be brief",
        "messages": [{"role": "user", "content": "count to three"}]})
}

async fn send(h: &Harness, body: &Value) -> Reply {
    tokio::time::timeout(
        Duration::from_secs(10),
        h.post_with(PATH, body, &[VERSION, ("x-api-key", "client-key")]),
    )
    .await
    .expect("bounded")
}

/// An Anthropic error body with `status` and error type `kind`; returns its message.
fn assert_anthropic_error(reply: &Reply, status: u16, kind: &str) -> String {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_answered_in_anthropic_format() {
    let (h, a, _b) = pair("").await;

    let reply = send(&h, &request(false)).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-route"), "r");
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    let body = reply.json();
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"][0]["text"], REPLY);
    assert!(body["usage"]["input_tokens"].as_u64().is_some(), "{body}");
    assert_eq!(body["usage"]["output_tokens"], 3);

    let seen = a.last_request().expect("a was asked");
    assert_eq!(
        seen.path, "/v1/chat/completions",
        "the provider speaks OpenAI"
    );
    assert_eq!(seen.model(), Some("m-a"));
    assert_eq!(seen.body["max_tokens"], 256);
    assert!(
        !seen.headers.contains_key("x-api-key"),
        "the client's key stays"
    );
    assert_eq!(seen.headers["authorization"], "Bearer sk-a-secret");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_message_uses_anthropic_events() {
    let (h, _a, _b) = pair("").await;

    let reply = send(&h, &request(true)).await;

    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/event-stream")
    );
    let events: Vec<Value> = reply
        .events()
        .iter()
        .map(|e| serde_json::from_str(e).expect("JSON events only, no [DONE]"))
        .collect();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"message_start"), "{types:?}");
    assert_eq!(types.last(), Some(&"message_stop"), "{types:?}");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, REPLY);
    let raw = String::from_utf8_lossy(&reply.body);
    assert!(raw.contains("event: message_start"), "named events: {raw}");
    let usage = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("a message_delta");
    assert_eq!(usage["usage"]["output_tokens"], 3, "{usage}");

    // Counted like any other stream.
    let output = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("direction", "output"),
    ];
    let counted = switchyard_tests::eventually(Duration::from_secs(2), || async {
        h.count("switchyard_tokens_total", &output).await == 3.0
    })
    .await;
    assert!(counted, "streamed tokens were not counted");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_ends_with_one_anthropic_error_event() {
    let (h, a, b) = pair("timeouts: {idle: 300ms}").await;
    a.push_faults([Fault::StallMidStream { after_chunks: 2 }]);

    let reply = send(&h, &request(true)).await;

    assert_eq!(reply.status, 200);
    let raw = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(raw.matches("event: error").count(), 1, "{raw}");
    assert!(!raw.contains("message_stop"), "not a clean end: {raw}");
    let last: Value = serde_json::from_str(reply.events().last().expect("events")).unwrap();
    assert_eq!(last["type"], "error", "{last}");
    assert!(last["error"]["type"].is_string() && last["error"]["message"].is_string());
    assert_eq!(b.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_works_for_anthropic_clients() {
    let (h, a, _b) = pair("").await;
    a.push_faults([Fault::ServerError]);

    let reply = send(&h, &request(false)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(reply.json()["content"][0]["text"], REPLY);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shape_errors_and_unknown_models_use_anthropic_errors() {
    let (h, a, _b) = pair("").await;

    let bad_role = json!({"model": "chat", "max_tokens": 10,
        "messages": [{"role": "system", "content": "x"}]});
    let message = assert_anthropic_error(&send(&h, &bad_role).await, 400, "invalid_request_error");
    assert!(message.contains("system"), "{message}");
    let reply = h.post_raw(PATH, "{not json").await;
    assert_anthropic_error(&reply, 400, "invalid_request_error");
    let unknown = json!({"model": "nope", "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}]});
    assert_anthropic_error(&send(&h, &unknown).await, 404, "not_found_error");

    assert_eq!(a.request_count(), 0);
    assert_eq!(send(&h, &request(false)).await.status, 200, "still serving");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_are_translated_into_anthropic_errors() {
    let (h, a, b) = pair("").await;

    a.push_faults([Fault::BadRequest]);
    let message = assert_anthropic_error(
        &send(&h, &request(false)).await,
        400,
        "invalid_request_error",
    );
    assert!(
        message.contains("temperature"),
        "the provider's reason: {message}"
    );
    assert_eq!(b.request_count(), 0);

    a.push_faults([Fault::RateLimited {
        retry_after: Some("4".into()),
    }]);
    b.push_faults([Fault::RateLimited {
        retry_after: Some("4".into()),
    }]);
    let reply = send(&h, &request(false)).await;
    let message = assert_anthropic_error(&reply, 429, "rate_limit_error");
    assert!(
        message.contains("pool/a") && message.contains("pool/b"),
        "{message}"
    );
    assert_eq!(reply.header("retry-after"), "4");
    h.stop().await;
}
