use super::*;
use crate::testing::{self, body_of, parse, read, read_until_idle};
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use hyper::body::Incoming;

const HEADERS: &[(&str, &str)] = &[
    ("x-api-key", "sk-ant-test"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "prompt-caching-2024-07-31"),
];

/// 35 characters of user text and 9 of system text: 11 + 4 estimated prompt tokens.
fn base(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello to the simulated provider"}],
        "stream": stream,
    })
}

fn weather_tools() -> Value {
    let schema = json!({"type": "object", "properties": {"location": {"type": "string"}}});
    json!([
        {"name": "get_weather", "description": "Weather", "input_schema": schema},
        {"name": "get_time", "input_schema": {"type": "object"}},
    ])
}

async fn post(p: &MockProvider, body: Value) -> Response<Incoming> {
    let reply = testing::send(p.addr(), Method::POST, MESSAGES, HEADERS, Some(body)).await;
    reply.expect("response")
}

/// `(event name, data)` of each SSE event, checking that the data's `type` repeats the name.
fn events(body: &str) -> Vec<(String, Value)> {
    let events = body.split_terminator("\n\n").map(|event| {
        let (name, data) = event.split_once('\n').expect("two lines");
        let name = name.strip_prefix("event: ").expect("event line");
        let data = parse(data.strip_prefix("data: ").expect("data line"));
        assert_eq!(data["type"], name, "{event}");
        (name.to_owned(), data)
    });
    events.collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// The concatenated `text` or `partial_json` of every delta.
fn deltas(events: &[(String, Value)]) -> String {
    let deltas = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta");
    let piece = |data: &Value| {
        let delta = &data["delta"];
        delta["text"]
            .as_str()
            .or(delta["partial_json"].as_str())
            .map(str::to_owned)
    };
    deltas.filter_map(|(_, data)| piece(data)).collect()
}

#[tokio::test]
async fn json_answer_has_anthropic_shape_and_usage() {
    let p = MockProvider::start("claude").await.unwrap();
    assert_eq!(p.base_url(), format!("http://{}", p.addr()));
    p.set_behavior(Behavior {
        reply: "one two  three".into(),
        cached_tokens: 5,
        ..Default::default()
    });
    let response = post(&p, base(false)).await;
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(request_id.starts_with("req_"));
    let (status, content_type, body) = read(response, CONTENT_TYPE).await;
    assert_eq!((status, content_type.as_str()), (200, JSON));
    let body = parse(&body);
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    let expected_content = json!([{"type": "text", "text": "one two  three", "citations": null}]);
    assert_eq!(body["content"], expected_content);
    for (field, value) in [
        ("type", json!("message")),
        ("role", json!("assistant")),
        ("model", json!("claude-sonnet-4-5")),
        ("stop_reason", json!("end_turn")),
        ("stop_sequence", Value::Null),
    ] {
        assert_eq!(body[field], value, "{field}");
    }
    let usage = &body["usage"];
    assert_eq!(
        usage["input_tokens"],
        15 - 5,
        "cache reads are not input tokens"
    );
    assert_eq!(usage["cache_read_input_tokens"], 5);
    assert_eq!(usage["cache_creation_input_tokens"], 0);
    assert_eq!(usage["output_tokens"], 3);

    let recorded = p.last_request().unwrap();
    assert_eq!(recorded.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(recorded.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        recorded.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(
        (recorded.path.as_str(), recorded.model()),
        (MESSAGES, Some("claude-sonnet-4-5"))
    );
}

#[tokio::test]
async fn stream_sends_the_real_event_sequence() {
    let p = MockProvider::start("claude").await.unwrap();
    let reply = "  Hello,\nstreaming   world ";
    p.set_behavior(Behavior {
        reply: reply.into(),
        ..Default::default()
    });
    let (_, content_type, body) = read(post(&p, base(true)).await, CONTENT_TYPE).await;
    assert_eq!(content_type, EVENT_STREAM);
    let events = events(&body);
    let delta = "content_block_delta";
    let expected = [
        "message_start",
        "content_block_start",
        "ping",
        delta,
        delta,
        delta,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    assert_eq!(names(&events), expected);
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(start["usage"]["input_tokens"], 15);
    assert_eq!(events[1].1["content_block"]["type"], "text");
    assert_eq!(events[3].1["delta"]["type"], "text_delta");
    assert_eq!(deltas(&events), reply);
    let message_delta = &events[7].1;
    assert_eq!(message_delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(message_delta["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn tools_get_a_tool_use_block_until_a_result_comes_back() {
    let p = MockProvider::start("claude").await.unwrap();
    let mut request = base(false);
    request["tools"] = weather_tools();
    let body = parse(&body_of(post(&p, request.clone()).await).await);
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(
        (&block["type"], &block["name"]),
        (&json!("tool_use"), &json!("get_weather"))
    );
    assert_eq!(block["input"], json!({"location": "Paris"}));
    let id = block["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("toolu_sim_"), "{id}");

    // Streamed: the block opens with empty input and the JSON follows in pieces.
    request["stream"] = json!(true);
    let events = events(&body_of(post(&p, request.clone()).await).await);
    let block = &events[1].1["content_block"];
    assert_eq!(
        (&block["type"], &block["input"]),
        (&json!("tool_use"), &json!({}))
    );
    let pieces = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta");
    assert!(pieces.count() >= 2);
    assert_eq!(parse(&deltas(&events)), json!({"location": "Paris"}));
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "tool_use"
    );

    // A first tool without a `location` property gets `{}`.
    request["tools"] = json!([weather_tools()[1]]);
    request["stream"] = json!(false);
    let body = parse(&body_of(post(&p, request.clone()).await).await);
    assert_eq!(body["content"][0]["input"], json!({}));

    // Once the result is back, the model answers in text.
    let call = json!({"type": "tool_use", "id": id, "name": "get_weather", "input": {}});
    let result = json!({"type": "tool_result", "tool_use_id": id, "content": "Sunny"});
    let messages = request["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": [call]}));
    messages.push(json!({"role": "user", "content": [result]}));
    let body = parse(&body_of(post(&p, request).await).await);
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["content"][0]["type"], "text");
}

#[tokio::test]
async fn invalid_requests_are_rejected_as_anthropic_would() {
    let p = MockProvider::start("claude").await.unwrap();
    let tool_use = json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}});
    let result = json!({"type": "tool_result", "tool_use_id": "toolu_2", "content": "x"});
    let cases: [(&str, Value, &str); 10] = [
        ("max_tokens", Value::Null, "max_tokens: Field required"),
        ("messages", Value::Null, "messages: Field required"),
        (
            "stream_options",
            json!({}),
            "stream_options: Extra inputs are not permitted",
        ),
        (
            "messages",
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]),
            "Unexpected role \"system\"",
        ),
        (
            "messages",
            json!([{"role": "assistant", "content": "hi"}]),
            "first message must use the \"user\" role",
        ),
        ("messages", json!([]), "at least one message is required"),
        (
            "messages",
            json!([{"role": "user", "content": ""}, {"role": "assistant", "content": "hi"}]),
            "messages.0: all messages must have non-empty content",
        ),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]),
            "tools.0: Input tag 'function'",
        ),
        (
            "messages",
            json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [tool_use]},
                {"role": "user", "content": "and?"},
            ]),
            "messages.1: `tool_use` ids were found without `tool_result` blocks",
        ),
        (
            "messages",
            json!([{"role": "user", "content": [result]}]),
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_2",
        ),
    ];
    for (field, value, message) in cases {
        let mut body = base(false);
        match value {
            Value::Null => body.as_object_mut().unwrap().remove(field),
            value => body
                .as_object_mut()
                .unwrap()
                .insert(field.to_owned(), value),
        };
        let (status, _, text) = read(post(&p, body).await, CONTENT_TYPE).await;
        let error = parse(&text);
        assert_eq!(
            (status, &error["type"]),
            (400, &json!("error")),
            "{message}"
        );
        assert_eq!(error["error"]["type"], INVALID);
        let got = error["error"]["message"].as_str().unwrap();
        assert!(got.contains(message), "{got:?} should contain {message:?}");
    }

    let headers = &HEADERS[..1];
    let body = Some(base(false));
    let reply = testing::send(p.addr(), Method::POST, MESSAGES, headers, body).await;
    let error = parse(&body_of(reply.unwrap()).await);
    assert_eq!(
        error["error"]["message"],
        "anthropic-version: header is required"
    );
    let not_json = testing::send(p.addr(), Method::POST, MESSAGES, HEADERS, None).await;
    assert_eq!(not_json.unwrap().status(), 400);
    assert_eq!(p.request_count(), 12, "rejected requests are recorded too");

    // A final assistant prefill may be empty, and a block-array system prompt is fine.
    let mut body = base(false);
    body["system"] = json!([{"type": "text", "text": "Be brief."}]);
    body["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": ""}));
    assert_eq!(post(&p, body).await.status(), 200);
}

#[tokio::test]
async fn error_faults_answer_with_anthropic_bodies() {
    let p = MockProvider::start("claude").await.unwrap();
    let cases = [
        (
            Fault::RateLimited {
                retry_after: Some("7".into()),
            },
            429,
            "rate_limit_error",
        ),
        (Fault::Overloaded, 529, "overloaded_error"),
        (Fault::ServerError, 500, "api_error"),
        (Fault::Unauthorized, 401, "authentication_error"),
        (Fault::CreditBalance, 400, INVALID),
        (Fault::ContextLength, 400, INVALID),
        (Fault::BadRequest, 400, INVALID),
    ];
    p.push_faults(cases.iter().map(|case| case.0.clone()));
    for (fault, status, kind) in cases {
        let response = post(&p, base(true)).await;
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (request_id, retry_after) = (header("request-id"), header("retry-after"));
        let (got, _, body) = read(response, CONTENT_TYPE).await;
        assert_eq!(got, status, "{fault:?}");
        assert_eq!(retry_after.as_deref(), (status == 429).then_some("7"));
        let body = parse(&body);
        assert_eq!(
            (&body["type"], &body["error"]["type"]),
            (&json!("error"), &json!(kind))
        );
        assert_eq!(
            body["request_id"].as_str(),
            request_id.as_deref(),
            "{fault:?}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        match fault {
            Fault::Overloaded => assert_eq!(message, "Overloaded"),
            Fault::Unauthorized => assert_eq!(message, "invalid x-api-key"),
            Fault::CreditBalance => assert!(message.starts_with("Your credit balance is too low")),
            Fault::ContextLength => assert!(message.starts_with("prompt is too long")),
            _ => assert!(!message.is_empty()),
        }
    }

    let headers = vec![("retry-after".into(), "3".into())];
    let raw = Fault::Status {
        status: 418,
        body: "teapot".into(),
        headers,
    };
    p.push_faults([raw, Fault::Garbage]);
    let (status, retry_after, body) = read(post(&p, base(false)).await, RETRY_AFTER).await;
    assert_eq!(
        (status, retry_after.as_str(), body.as_str()),
        (418, "3", "teapot")
    );
    let body = body_of(post(&p, base(false)).await).await;
    assert!(serde_json::from_str::<Value>(&body).is_err(), "garbage");

    let response = testing::send(p.addr(), Method::GET, "/v1/models", HEADERS, None).await;
    let (status, _, body) = read(response.unwrap(), CONTENT_TYPE).await;
    assert_eq!(
        (status, &parse(&body)["error"]["type"]),
        (404, &json!("not_found_error"))
    );
}

#[tokio::test]
async fn broken_streams_end_as_scripted() {
    let p = MockProvider::start("claude").await.unwrap();
    // The default reply has five words: message_start, block start, ping and five deltas are
    // the eight content chunks.
    p.push_faults([
        Fault::StallMidStream { after_chunks: 2 },
        Fault::TruncateStream {
            after_chunks: usize::MAX,
        },
        Fault::ErrorMidStream { after_chunks: 4 },
        Fault::AbortMidStream { after_chunks: 3 },
        Fault::ErrorMidStream { after_chunks: 1 },
    ]);
    let (body, ended) = read_until_idle(post(&p, base(true)).await).await;
    let stalled = ["message_start", "content_block_start"];
    assert_eq!((names(&events(&body)), ended), (stalled.to_vec(), false));

    let (body, ended) = read_until_idle(post(&p, base(true)).await).await;
    let events_seen = events(&body);
    assert_eq!(
        (events_seen.len(), ended),
        (8, true),
        "truncated after the last delta"
    );
    assert_eq!(deltas(&events_seen), "Hello from the simulated provider.");

    let events_seen = events(&body_of(post(&p, base(true)).await).await);
    assert_eq!(names(&events_seen).len(), 5);
    let (name, error) = events_seen.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(
        error["error"],
        json!({"type": "overloaded_error", "message": "Overloaded"})
    );

    let mut body = post(&p, base(true)).await.into_body();
    for _ in 0..3 {
        assert!(body.frame().await.unwrap().unwrap().is_data());
    }
    assert!(
        body.frame().await.unwrap().is_err(),
        "abort is a transport error"
    );

    let response = post(&p, base(false)).await;
    assert_eq!(
        response.status(),
        529,
        "a mid-stream error on a JSON request"
    );
}
