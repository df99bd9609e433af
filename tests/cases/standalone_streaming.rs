//! Streamed answers (docs/reference/sidecar.md#streaming): passthrough ending in `[DONE]`, the
//! usage chunk the sidecar always asks for and drops unless the client asked, failover before the
//! commit point (slow first token, an error status or event before any content), and after it
//! exactly one error event and no `[DONE]` for stalls, error events, truncation, aborts and the
//! total timeout, promptly.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use switchyard_tests::{Behavior, Fault, Harness, MockProvider, Reply, pool, route};
use tokio::time::Instant;

const REPLY: &str = "one two three four five six";

/// Route `r` (model `chat`) over `a` (model `m-a`) then `b` (model `m-b`); both reply [`REPLY`].
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

fn streamed(stream_options: Option<Value>) -> Value {
    let mut body = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "count to six"}]});
    if let Some(options) = stream_options {
        body["stream_options"] = options;
    }
    body
}

/// Sends a streamed request, bounded in time; returns the reply and how long it took.
async fn stream(h: &Harness, body: &Value) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        h.post("/v1/chat/completions", body),
    )
    .await
    .expect("the stream ends");
    (reply, started.elapsed())
}

/// The concatenated `delta.content` of every chunk.
fn text_of(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn is_error_event(event: &str) -> bool {
    serde_json::from_str::<Value>(event).is_ok_and(|v| v.get("error").is_some())
}

/// A committed stream that broke: 200, some content, then exactly one error event, last, and no
/// `[DONE]`. Returns the error object.
fn assert_ends_with_one_error(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    let events = reply.events();
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let errors = events.iter().filter(|e| is_error_event(e)).count();
    assert_eq!(errors, 1, "{events:?}");
    let last = events.last().expect("events");
    assert!(
        is_error_event(last),
        "the error event comes last: {events:?}"
    );
    let error: Value = serde_json::from_str(last).unwrap();
    let error = error["error"].clone();
    assert!(
        error["message"].is_string() && error["type"].is_string(),
        "{error}"
    );
    assert!(error["code"].is_string(), "{error}");
    assert!(
        !text_of(&events).is_empty(),
        "content came before the error"
    );
    error
}

async fn stream_errors(h: &Harness) -> f64 {
    h.count(
        "switchyard_requests_total",
        &[
            ("route", "r"),
            ("provider", "pool/a"),
            ("outcome", "StreamError"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_passes_through_and_ends_with_done() {
    let (h, a, b) = pair("").await;

    let (reply, _) = stream(&h, &streamed(None)).await;

    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/event-stream")
    );
    assert_eq!(reply.header("x-switchyard-route"), "r");
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    assert_eq!(reply.header("x-switchyard-model"), "m-a");
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).expect("a JSON chunk");
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    assert_eq!(text_of(&events), REPLY);
    assert_eq!(b.request_count(), 0);
    let seen = a.last_request().expect("a was asked");
    assert!(seen.is_stream());
    assert_eq!(seen.model(), Some("m-a"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_always_requested_and_dropped_when_the_client_did_not_ask() {
    let (h, a, _b) = pair("").await;

    for options in [None, Some(json!({"include_usage": false}))] {
        let (reply, _) = stream(&h, &streamed(options.clone())).await;
        assert_eq!(reply.status, 200);
        let seen = a.last_request().expect("a was asked");
        assert_eq!(
            seen.body["stream_options"]["include_usage"], true,
            "asked for usage with client options {options:?}"
        );
        let events = reply.events();
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        for event in events.iter().filter(|e| *e != "[DONE]") {
            let chunk: Value = serde_json::from_str(event).unwrap();
            assert!(
                chunk["usage"].is_null(),
                "usage leaked to a client that did not ask: {event}"
            );
            assert!(!chunk["choices"].as_array().unwrap().is_empty(), "{event}");
        }
        assert_eq!(text_of(&events), REPLY);
    }

    // Counted anyway: six words of output per request.
    let output = h
        .count(
            "switchyard_tokens_total",
            &[
                ("route", "r"),
                ("provider", "pool/a"),
                ("direction", "output"),
            ],
        )
        .await;
    assert_eq!(output, 12.0);
    let input = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("direction", "input"),
    ];
    assert!(h.count("switchyard_tokens_total", &input).await > 0.0);
    let cost = [("route", "r"), ("provider", "pool/a"), ("model", "m-a")];
    assert!(h.count("switchyard_cost_usd_total", &cost).await > 0.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_chunk_is_kept_when_the_client_asked() {
    let (h, a, _b) = pair("").await;
    let options = json!({"include_usage": true, "vendor_option": 7});

    let (reply, _) = stream(&h, &streamed(Some(options))).await;

    assert_eq!(reply.status, 200);
    let seen = a.last_request().expect("a was asked");
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    assert_eq!(
        seen.body["stream_options"]["vendor_option"], 7,
        "other options pass"
    );
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|c| c["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1, "{events:?}");
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(usage[0]["usage"]["completion_tokens"], 6);

    let output = h
        .count(
            "switchyard_tokens_total",
            &[
                ("route", "r"),
                ("provider", "pool/a"),
                ("direction", "output"),
            ],
        )
        .await;
    assert_eq!(output, 6.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_records_time_to_first_token_and_duration() {
    let (h, _a, _b) = pair("").await;

    let (reply, _) = stream(&h, &streamed(None)).await;
    assert_eq!(reply.status, 200);

    let labels = [("route", "r"), ("provider", "pool/a")];
    // The stream's accounting finishes just after the last byte; give it a moment.
    let recorded = switchyard_tests::eventually(Duration::from_secs(2), || async {
        h.count("switchyard_request_duration_seconds_count", &labels)
            .await
            == 1.0
    })
    .await;
    assert!(recorded, "request_duration_seconds was not observed");
    assert_eq!(
        h.count("switchyard_time_to_first_token_seconds_count", &labels)
            .await,
        1.0
    );
    let success = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("outcome", "Success"),
    ];
    assert_eq!(h.count("switchyard_requests_total", &success).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_token_fails_over_before_commit() {
    let (h, a, b) = pair("timeouts: {firstToken: 300ms}").await;
    a.push_faults([Fault::SlowFirstToken(Duration::from_secs(3))]);

    let (reply, took) = stream(&h, &streamed(None)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(text_of(&events), REPLY, "only b's stream, whole");
    assert!(!events.iter().any(|e| is_error_event(e)));
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    let failovers = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("reason", "Timeout"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_status_before_any_event_fails_over() {
    let (h, a, b) = pair("").await;
    a.push_faults([Fault::Overloaded]);

    let (reply, _) = stream(&h, &streamed(None)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(text_of(&reply.events()), REPLY);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    let failovers = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("reason", "Overloaded"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_before_any_content_fails_over() {
    let (h, a, b) = pair("").await;
    a.push_faults([Fault::ErrorMidStream { after_chunks: 0 }]);

    let (reply, _) = stream(&h, &streamed(None)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    let events = reply.events();
    assert!(!events.iter().any(|e| is_error_event(e)), "{events:?}");
    assert_eq!(text_of(&events), REPLY);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_before_any_content_fails_over() {
    let (h, a, b) = pair("").await;
    a.push_faults([Fault::TruncateStream { after_chunks: 0 }]);

    let (reply, _) = stream(&h, &streamed(None)).await;

    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(text_of(&reply.events()), REPLY);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_after_commit_ends_with_one_error_event_at_the_idle_timeout() {
    let (h, a, b) = pair("timeouts: {idle: 300ms}").await;
    a.push_faults([Fault::StallMidStream { after_chunks: 2 }]);

    let (reply, took) = stream(&h, &streamed(None)).await;

    let error = assert_ends_with_one_error(&reply);
    assert_eq!(error["code"], "upstream_timeout", "{error}");
    assert_eq!(
        text_of(&reply.events()),
        "one",
        "what came before the stall"
    );
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_secs(2), "not promptly: {took:?}");
    assert_eq!(
        b.request_count(),
        0,
        "a committed stream is not failed over"
    );
    assert_eq!(a.request_count(), 1);
    assert_eq!(stream_errors(&h).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_after_commit_ends_the_stream_with_one_error_event() {
    let (h, a, b) = pair("").await;
    a.push_faults([Fault::ErrorMidStream { after_chunks: 3 }]);

    let (reply, took) = stream(&h, &streamed(None)).await;

    let error = assert_ends_with_one_error(&reply);
    assert!(
        error["message"].as_str().unwrap().contains("pool/a"),
        "{error}"
    );
    assert_eq!(text_of(&reply.events()), "one two");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!((a.request_count(), b.request_count()), (1, 0));
    assert_eq!(stream_errors(&h).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_stream_ends_with_one_error_event() {
    let (h, a, b) = pair("").await;
    a.push_faults([Fault::TruncateStream { after_chunks: 3 }]);

    let (reply, took) = stream(&h, &streamed(None)).await;

    assert_ends_with_one_error(&reply);
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!((a.request_count(), b.request_count()), (1, 0));
    assert_eq!(stream_errors(&h).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_stream_ends_with_one_error_event() {
    let (h, a, b) = pair("").await;
    a.push_faults([Fault::AbortMidStream { after_chunks: 3 }]);

    let (reply, took) = stream(&h, &streamed(None)).await;

    assert_ends_with_one_error(&reply);
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!((a.request_count(), b.request_count()), (1, 0));
    assert_eq!(stream_errors(&h).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_timeout_bounds_a_slow_stream() {
    let (h, a, _b) = pair("timeouts: {total: 500ms, idle: 2s}").await;
    a.set_behavior(Behavior {
        reply: "word ".repeat(40),
        chunk_delay: Duration::from_millis(50),
        ..Behavior::default()
    });

    let (reply, took) = stream(&h, &streamed(None)).await;

    let error = assert_ends_with_one_error(&reply);
    assert_eq!(error["code"], "upstream_timeout", "{error}");
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_steady_streams_are_not_cut_by_the_idle_timeout() {
    let (h, a, _b) = pair("timeouts: {idle: 300ms}").await;
    a.set_behavior(Behavior {
        reply: REPLY.into(),
        chunk_delay: Duration::from_millis(100),
        ..Behavior::default()
    });

    let (reply, took) = stream(&h, &streamed(None)).await;

    assert_eq!(reply.status, 200);
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(text_of(&events), REPLY);
    assert!(
        took > Duration::from_millis(300),
        "longer than one idle window: {took:?}"
    );
    h.stop().await;
}

/// A provider that sends its whole streamed answer in one write, as a short answer often comes:
/// a plain hyper server with the stream as one fixed body.
async fn one_write_provider(stream: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind provider");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    request.into_body().collect().await?;
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(stream.as_bytes())));
                    response.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("text/event-stream"),
                    );
                    Ok::<_, hyper::Error>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/v1")
}

/// Events that arrive together with the committing one leave with it: the client's first body
/// frame (one HTTP chunk, whatever TCP does) holds the whole answer, not its first event only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_with_the_committing_one_are_sent_with_it() {
    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",",
        "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",",
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",",
        "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",",
        "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );
    let base = one_write_provider(STREAM).await;
    let yaml = pool(&[("p", &base, "m")], "", "") + &route("r", "chat", &[("p", "m")], "");
    let h = Harness::start(&yaml).await;
    let request = Request::post(format!("{}/v1/chat/completions", h.base()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(streamed(None).to_string())))
        .expect("a request");
    let response = h.client.request(request).await.expect("an answer");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("a frame in time")
        .expect("a frame")
        .expect("no error")
        .into_data()
        .expect("data");
    let first = String::from_utf8(first.to_vec()).expect("UTF-8");
    assert!(first.contains("Hello"), "{first}");
    assert!(
        first.contains(" there") && first.ends_with("data: [DONE]\n\n"),
        "the whole answer in the first frame: {first}"
    );
    // The usage chunk is dropped, as for any client that did not ask for it.
    assert!(!first.contains("total_tokens"), "{first}");
    h.stop().await;
}
