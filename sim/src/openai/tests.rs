use super::*;
use crate::testing::{self, IDLE, Reply, SOON, body_of, parse, read, read_until_idle};
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// Sends one request with an OpenAI key, as the sidecar's client would.
async fn send(addr: SocketAddr, method: Method, path: &str, body: Option<Value>) -> Reply {
    let auth = [("authorization", "Bearer sk-test")];
    testing::send(addr, method, path, &auth, body).await
}

async fn chat(p: &MockProvider, stream: bool) -> Response<Incoming> {
    try_chat(p, stream, false).await.expect("response")
}

async fn try_chat(p: &MockProvider, stream: bool, include_usage: bool) -> Reply {
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello to the simulated provider"}],
        "stream": stream,
        "stream_options": {"include_usage": include_usage},
    });
    send(p.addr(), Method::POST, CHAT, Some(body)).await
}

/// The `data:` payloads of an SSE body.
fn sse_events(body: &str) -> Vec<&str> {
    let events = body.split_terminator("\n\n");
    events
        .map(|e| e.strip_prefix("data: ").expect("data event"))
        .collect()
}

fn concat_deltas(events: &[&str]) -> String {
    let chunks = events.iter().filter(|e| **e != "[DONE]").map(|e| parse(e));
    let deltas = chunks.map(|c| {
        c["choices"][0]["delta"]["content"]
            .as_str()
            .map(str::to_owned)
    });
    deltas.flatten().collect()
}

#[tokio::test]
async fn json_answer_has_openai_shape_and_usage() {
    let p = MockProvider::start("a").await.unwrap();
    let reply = "one two  three".to_owned();
    p.set_behavior(Behavior {
        reply,
        cached_tokens: 40,
        ..Default::default()
    });
    let (status, content_type, body) = read(chat(&p, false).await, CONTENT_TYPE).await;
    assert_eq!((status, content_type.as_str()), (200, JSON));
    let body = parse(&body);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["choices"][0]["message"]["content"], "one two  three");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], 40, "raised to cached_tokens");
    assert_eq!(usage["completion_tokens"], 3);
    assert_eq!(usage["total_tokens"], 43);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 40);

    p.set_behavior(Behavior::default());
    let body = parse(&body_of(chat(&p, false).await).await);
    assert_eq!(body["usage"]["prompt_tokens"], 35 / 4 + 4);
}

#[tokio::test]
async fn stream_concatenates_to_reply_and_reports_usage_only_when_asked() {
    let p = MockProvider::start("a").await.unwrap();
    let reply = "  Hello,\nstreaming   world ";
    p.set_behavior(Behavior {
        reply: reply.into(),
        ..Default::default()
    });

    let (_, content_type, body) = read(chat(&p, true).await, CONTENT_TYPE).await;
    assert_eq!(content_type, EVENT_STREAM);
    let events = sse_events(&body);
    // The role chunk, three words, the finish chunk and [DONE].
    assert_eq!(events.len(), 6);
    assert_eq!(events[5], "[DONE]");
    let first = parse(events[0]);
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(parse(events[4])["choices"][0]["finish_reason"], "stop");
    assert_eq!(concat_deltas(&events), reply);
    assert!(events[..5].iter().all(|e| parse(e).get("usage").is_none()));

    let body = body_of(try_chat(&p, true, true).await.unwrap()).await;
    let events = sse_events(&body);
    assert_eq!(events.len(), 7);
    assert_eq!(concat_deltas(&events), reply);
    assert!(events[..5].iter().all(|e| parse(e)["usage"].is_null()));
    let usage = parse(events[5]);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn error_faults_answer_with_openai_bodies() {
    let p = MockProvider::start("a").await.unwrap();
    let cases = [
        (
            Fault::RateLimited {
                retry_after: Some("7".into()),
            },
            429,
            "rate_limit_exceeded",
        ),
        (Fault::InsufficientQuota, 429, "insufficient_quota"),
        (Fault::ServerError, 500, ""),
        (Fault::Overloaded, 503, ""),
        (Fault::Status529, 529, "overloaded"),
        (Fault::Unauthorized, 401, "invalid_api_key"),
        (Fault::ContextLength, 400, "context_length_exceeded"),
        (Fault::BadRequest, 400, "decimal_above_max_value"),
    ];
    let headers = vec![("content-type".into(), "text/plain".into())];
    let raw = Fault::Status {
        status: 418,
        body: "teapot".into(),
        headers,
    };
    p.push_faults(
        cases
            .iter()
            .map(|c| c.0.clone())
            .chain([raw, Fault::Garbage]),
    );
    for (fault, status, code) in cases {
        let (got, retry_after, body) = read(chat(&p, true).await, RETRY_AFTER).await;
        assert_eq!(got, status, "{fault:?}");
        assert_eq!(
            retry_after,
            if status == 429 && code != "insufficient_quota" {
                "7"
            } else {
                ""
            }
        );
        let error = &parse(&body)["error"];
        assert_eq!(error["code"].as_str().unwrap_or(""), code, "{fault:?}");
        assert!(error["type"].is_string() && error["message"].is_string());
        assert_eq!(error["param"].is_string(), status == 400, "{fault:?}");
    }
    let raw = read(chat(&p, false).await, CONTENT_TYPE).await;
    assert_eq!(raw, (418, "text/plain".into(), "teapot".into()));
    let (status, content_type, body) = read(chat(&p, false).await, CONTENT_TYPE).await;
    assert_eq!((status, content_type.as_str()), (200, JSON));
    assert!(serde_json::from_str::<Value>(&body).is_err(), "garbage");
    assert_eq!(chat(&p, false).await.status(), 200, "queue drained");
}

#[tokio::test]
async fn reset_and_hang_spare_other_requests_and_shutdown_ends_them() {
    let p = MockProvider::start("a").await.unwrap();
    p.push_faults([Fault::Reset, Fault::Hang]);
    assert!(
        try_chat(&p, false, false).await.is_err(),
        "reset gives a connection error"
    );
    let addr = p.addr();
    let body = json!({"model": "m", "messages": []});
    let hung = tokio::spawn(send(addr, Method::POST, CHAT, Some(body)));
    while p.request_count() < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(chat(&p, true).await.status(), 200);
    assert!(!hung.is_finished());

    p.shutdown();
    let result = timeout(SOON, hung)
        .await
        .expect("shutdown ends the hang")
        .unwrap();
    assert!(
        result.is_err(),
        "the hung request fails once its connection closes"
    );
    let deadline = Instant::now() + SOON;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener closes");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn broken_streams_end_as_scripted() {
    let p = MockProvider::start("a").await.unwrap();
    p.push_faults([
        Fault::StallMidStream { after_chunks: 2 },
        Fault::TruncateStream { after_chunks: 3 },
        Fault::TruncateStream {
            after_chunks: usize::MAX,
        },
        Fault::ErrorMidStream { after_chunks: 1 },
        Fault::AbortMidStream { after_chunks: 2 },
    ]);
    let (body, ended) = read_until_idle(chat(&p, true).await).await;
    assert_eq!((sse_events(&body).len(), ended), (2, false), "stall");
    let (body, ended) = read_until_idle(chat(&p, true).await).await;
    assert_eq!((sse_events(&body).len(), ended), (3, true), "truncate");
    assert!(!body.contains("[DONE]"));
    // The cap is the content chunks: no finish chunk, no [DONE].
    let body = body_of(chat(&p, true).await).await;
    assert_eq!(sse_events(&body).len(), 6);
    assert!(!body.contains("\"stop\"") && !body.contains("[DONE]"));

    let body = body_of(chat(&p, true).await).await;
    let events = sse_events(&body);
    assert_eq!(events.len(), 2);
    assert_eq!(parse(events[1])["error"]["type"], "server_error");

    let mut body = chat(&p, true).await.into_body();
    for _ in 0..2 {
        assert!(body.frame().await.unwrap().unwrap().is_data());
    }
    assert!(
        body.frame().await.unwrap().is_err(),
        "abort is a transport error"
    );
}

#[tokio::test]
async fn stream_faults_on_a_json_request_break_the_body() {
    let p = MockProvider::start("a").await.unwrap();
    p.push_faults([
        Fault::StallMidStream { after_chunks: 1 },
        Fault::TruncateStream { after_chunks: 1 },
        Fault::ErrorMidStream { after_chunks: 1 },
    ]);
    let response = chat(&p, false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(read_until_idle(response).await, (String::new(), false));
    let body = chat(&p, false).await.into_body();
    assert!(body.collect().await.is_err(), "cut off mid-body");
    assert_eq!(chat(&p, false).await.status(), 500);
}

#[tokio::test]
async fn latency_and_chunk_delay_are_real_on_the_wire() {
    let p = MockProvider::start("a").await.unwrap();
    let delay = Duration::from_millis(40);
    let reply = "a b c".to_owned();
    p.set_behavior(Behavior {
        chunk_delay: delay,
        reply,
        ..Default::default()
    });
    let start = Instant::now();
    // Six events, so five delays.
    assert_eq!(sse_events(&body_of(chat(&p, true).await).await).len(), 6);
    assert!(start.elapsed() >= delay * 5);

    p.set_behavior(Behavior {
        latency: IDLE,
        ..Default::default()
    });
    p.push_faults([Fault::SlowFirstToken(IDLE * 2)]);
    let start = Instant::now();
    assert_eq!(chat(&p, false).await.status(), 200);
    assert!(start.elapsed() >= IDLE * 2);
    let start = Instant::now();
    assert_eq!(chat(&p, true).await.status(), 200);
    assert!(start.elapsed() >= IDLE);

    p.set_behavior(Behavior {
        latency: SOON * 5,
        ..Default::default()
    });
    p.push_faults([Fault::ServerError]);
    let response = timeout(SOON, chat(&p, false)).await;
    assert_eq!(
        response.expect("error faults skip the latency").status(),
        500
    );
}

#[tokio::test]
async fn requests_are_recorded_in_order_and_faults_are_fifo() {
    let p = MockProvider::start("a").await.unwrap();
    p.push_faults([Fault::ServerError, Fault::RateLimited { retry_after: None }]);
    p.set_default_fault(Some(Fault::Overloaded));
    let mut statuses = Vec::new();
    for stream in [false, true, false] {
        statuses.push(chat(&p, stream).await.status().as_u16());
    }
    assert_eq!(statuses, [500, 429, 503]);
    p.set_default_fault(None);
    let invalid = send(p.addr(), Method::POST, CHAT, None).await.unwrap();
    assert_eq!(invalid.status(), 400);

    let recorded = p.requests();
    assert_eq!((recorded.len(), p.request_count()), (4, 4));
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, CHAT);
    assert_eq!(recorded[0].headers["authorization"], "Bearer sk-test");
    assert_eq!(recorded[0].model(), Some("gpt-4o-mini"));
    assert!(!recorded[0].is_stream() && recorded[1].is_stream());
    assert!(p.last_request().unwrap().body.is_null());
}

#[tokio::test]
async fn models_are_listed_and_unknown_routes_get_404() {
    let p = MockProvider::start("a").await.unwrap();
    assert_eq!(
        p.base_url(),
        format!("http://127.0.0.1:{}/v1", p.addr().port())
    );
    p.set_models(["m1", "m2"]);
    let response = send(p.addr(), Method::GET, "/v1/models", None)
        .await
        .unwrap();
    let body = parse(&body_of(response).await);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][1]["id"], "m2");
    let response = send(p.addr(), Method::GET, CHAT, None).await.unwrap();
    let (status, _, body) = read(response, CONTENT_TYPE).await;
    assert_eq!(status, 404);
    let message = &parse(&body)["error"]["message"];
    assert_eq!(message, "Invalid URL (GET /v1/chat/completions)");
    assert_eq!(p.request_count(), 0, "only chat requests are recorded");
}

#[tokio::test]
async fn tools_get_a_tool_call_until_the_result_comes_back() {
    let p = MockProvider::start("a").await.unwrap();
    let parameters = json!({"type": "object", "properties": {"location": {"type": "string"}}});
    let weather =
        json!({"type": "function", "function": {"name": "get_weather", "parameters": parameters}});
    let mut request = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather],
    });
    let post = |body| send(p.addr(), Method::POST, CHAT, Some(body));
    let body = parse(&body_of(post(request.clone()).await.unwrap()).await);
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_sim_"));
    assert_eq!(call["type"], "function");
    let function = json!({"name": "get_weather", "arguments": r#"{"location":"Paris"}"#});
    assert_eq!(call["function"], function);

    // Streamed: the head names the call, then the arguments follow in pieces.
    request["stream"] = json!(true);
    let body = body_of(post(request.clone()).await.unwrap()).await;
    let events = sse_events(&body);
    let deltas: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| parse(e)["choices"][0].clone())
        .collect();
    let head = &deltas[0]["delta"]["tool_calls"][0];
    assert_eq!(
        (&head["index"], &head["type"]),
        (&json!(0), &json!("function"))
    );
    assert_eq!(head["function"]["name"], "get_weather");
    assert!(head["id"].as_str().unwrap().starts_with("call_sim_"));
    let pieces: Vec<&str> = deltas[1..]
        .iter()
        .filter_map(|d| d["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(pieces.len() >= 2);
    assert_eq!(pieces.concat(), r#"{"location":"Paris"}"#);
    assert_eq!(deltas.last().unwrap()["finish_reason"], "tool_calls");

    // Without a `location` parameter the call gets `{}`; after a tool result, text again.
    request["stream"] = json!(false);
    request["tools"][0]["function"]["parameters"] = json!({"type": "object"});
    let body = parse(&body_of(post(request.clone()).await.unwrap()).await);
    let arguments = &body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"];
    assert_eq!(arguments, "{}");
    let messages = request["messages"].as_array_mut().unwrap();
    messages.push(body["choices"][0]["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}));
    let body = parse(&body_of(post(request).await.unwrap()).await);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0]["message"]["content"].is_string());
}
