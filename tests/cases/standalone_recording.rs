//! Each request is recorded exactly once (docs/reference/metrics.md): a normal answer, a failover,
//! a stream, an exhausted route, a broken stream, and requests whose client leaves early, before
//! the answer (outcome `Cancelled`) or in the middle of a stream. The per-request duration
//! histogram is observed when the log line is written, so its count is the number of log lines.

use std::time::Duration;

use serde_json::json;
use switchyard_tests::{Behavior, Fault, Harness, MockProvider, eventually, pool, route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Route `r` (model `chat`) over `a` (model `m-a`) then `b` (model `m-b`).
async fn pair() -> (Harness, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    for p in [&a, &b] {
        p.set_behavior(Behavior {
            reply: "one two three four five six".into(),
            ..Behavior::default()
        });
    }
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "");
    (Harness::start(&yaml).await, a, b)
}

/// How many requests of route `r` were recorded, over every provider.
async fn recorded(h: &Harness) -> f64 {
    h.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("switchyard_request_duration_seconds_count{"))
        .filter(|l| l.contains("route=\"r\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn outcomes(h: &Harness, provider: &str, outcome: &str) -> f64 {
    h.count(
        "switchyard_requests_total",
        &[("route", "r"), ("provider", provider), ("outcome", outcome)],
    )
    .await
}

/// Sends a raw HTTP/1.1 request for `body` on a fresh connection and returns the open stream.
async fn send_raw(h: &Harness, body: &serde_json::Value) -> TcpStream {
    let addr = h.base().trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    conn.write_all(body.as_bytes()).await.expect("write body");
    conn
}

/// Waits for the count to reach `want`, then a little longer to see that it stays there.
async fn settles_at(h: &Harness, want: f64) -> f64 {
    eventually(Duration::from_secs(5), || async {
        recorded(h).await >= want
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    recorded(h).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_normal_path_records_one_request() {
    let (h, a, b) = pair().await;
    let plain = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let streamed = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});

    assert_eq!(h.post("/v1/chat/completions", &plain).await.status, 200);
    assert_eq!(recorded(&h).await, 1.0, "a plain answer");

    a.push_faults([Fault::ServerError]);
    assert_eq!(h.post("/v1/chat/completions", &plain).await.status, 200);
    assert_eq!(recorded(&h).await, 2.0, "a failover");

    assert_eq!(h.post("/v1/chat/completions", &streamed).await.status, 200);
    assert_eq!(settles_at(&h, 3.0).await, 3.0, "a stream");

    a.push_faults([Fault::ServerError]);
    b.push_faults([Fault::ServerError]);
    assert_eq!(h.post("/v1/chat/completions", &plain).await.status, 502);
    assert_eq!(recorded(&h).await, 4.0, "every target failed");

    a.push_faults([Fault::ErrorMidStream { after_chunks: 2 }]);
    assert_eq!(h.post("/v1/chat/completions", &streamed).await.status, 200);
    assert_eq!(settles_at(&h, 5.0).await, 5.0, "a broken stream");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_answer_is_recorded_once_as_cancelled() {
    let (h, a, _b) = pair().await;
    a.push_faults([Fault::Hang]);
    let plain = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let conn = send_raw(&h, &plain).await;
    assert!(
        eventually(Duration::from_secs(5), || async { a.request_count() == 1 }).await,
        "the request reached the provider"
    );
    drop(conn);

    assert_eq!(settles_at(&h, 1.0).await, 1.0);
    assert_eq!(outcomes(&h, "pool/a", "Cancelled").await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_client_that_leaves_mid_stream_is_recorded_once() {
    let (h, a, _b) = pair().await;
    a.push_faults([Fault::StallMidStream { after_chunks: 2 }]);
    let streamed = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let mut conn = send_raw(&h, &streamed).await;
    let mut head = [0u8; 256];
    let n = conn.read(&mut head).await.expect("the stream starts");
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"),
        "committed"
    );
    drop(conn);

    assert_eq!(settles_at(&h, 1.0).await, 1.0);
    assert_eq!(outcomes(&h, "pool/a", "StreamError").await, 1.0);
    h.stop().await;
}
