//! Shutdown follows the drain timeout: requests in flight finish within it and are cut at it;
//! with `accept_while_draining` (container mode, where the app drains at the same moment) new
//! requests are served until the app has closed its connections.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use switchyard_tests::{Behavior, Harness, MockProvider, chat, client, eventually, pool, route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn started(drain: Duration, accept_while_draining: bool) -> (Harness, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml =
        pool(&[("a", &a.base_url(), "m-a")], "", "") + &route("r", "chat", &[("a", "m-a")], "");
    let h = Harness::start_with(&yaml, |c| {
        c.drain = drain;
        c.accept_while_draining = accept_while_draining;
    })
    .await;
    (h, a)
}

/// A chat request for `model` to the data plane at `base`, on `client`.
fn request(base: &str) -> Request<Full<Bytes>> {
    Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat("chat", "hi").to_string())))
        .expect("a valid request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_drain_timeout_is_cut_at_the_timeout() {
    let (h, a) = started(Duration::from_millis(300), false).await;
    a.set_behavior(Behavior {
        latency: Duration::from_secs(5),
        ..Behavior::default()
    });
    let slow = client().request(request(&h.base()));
    let in_flight = tokio::spawn(slow);
    assert!(eventually(Duration::from_secs(2), || async { a.request_count() == 1 }).await);

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), h.stop())
        .await
        .expect("shutdown ends at the drain timeout, not when the request would");

    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    in_flight.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_new_connections_are_refused_once_shutdown_begins() {
    let (h, a) = started(Duration::from_secs(5), false).await;
    a.set_behavior(Behavior {
        latency: Duration::from_millis(600),
        ..Behavior::default()
    });
    let base = h.base();
    // A request in flight keeps the shutdown draining while the next one tries to connect.
    let in_flight = tokio::spawn(client().request(request(&base)));
    assert!(eventually(Duration::from_secs(2), || async { a.request_count() == 1 }).await);
    let stopping = tokio::spawn(h.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;

    let late = tokio::time::timeout(Duration::from_secs(2), client().request(request(&base))).await;

    assert!(
        !matches!(late, Ok(Ok(_))),
        "a new connection was served after shutdown began: {late:?}"
    );
    let answered = in_flight
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert_eq!(answered.status(), StatusCode::OK);
    stopping.await.expect("shutdown");
}

/// Sends one chat request on `stream` (kept alive) and reads its answer's status line.
async fn exchange(stream: &mut TcpStream) -> String {
    let body = chat("chat", "hi").to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_while_draining_serves_new_requests_until_the_app_goes_quiet() {
    let (h, _a) = started(Duration::from_secs(10), true).await;
    let addr = h.sidecar.data_addr;
    // The app's keep-alive connection: open until the app goes away.
    let mut app = TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange(&mut app).await, "HTTP/1.1 200 OK");
    let stopping = tokio::spawn(h.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut late = TcpStream::connect(addr)
        .await
        .expect("a new connection is accepted while the app drains");
    assert_eq!(exchange(&mut late).await, "HTTP/1.1 200 OK");
    assert!(
        !stopping.is_finished(),
        "stopped while the app was connected"
    );

    drop((app, late));
    let gone = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown follows once the app has closed its connections")
        .expect("shutdown");
    assert!(
        gone.elapsed() < Duration::from_secs(4),
        "waited for the drain timeout instead: {:?}",
        gone.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_still_open_at_the_drain_timeout_ends_with_an_error_event() {
    let (h, a) = started(Duration::from_secs(1), false).await;
    a.set_behavior(Behavior {
        chunk_delay: Duration::from_millis(100),
        reply: vec!["word"; 100].join(" "),
        ..Behavior::default()
    });
    let mut body = chat("chat", "hi");
    body["stream"] = true.into();
    let request = Request::post(format!("{}/v1/chat/completions", h.base()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request");
    let response = client().request(request).await.expect("the stream starts");
    assert_eq!(response.status(), StatusCode::OK);
    let read = tokio::spawn(async move {
        use http_body_util::BodyExt;
        response.into_body().collect().await.map(|b| b.to_bytes())
    });

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), h.stop())
        .await
        .expect("shutdown ends at the drain timeout");
    let text = read.await.expect("task").expect("the stream ends cleanly");
    let text = String::from_utf8_lossy(&text);

    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or("");
    assert!(
        last.contains("switchyard_shutdown"),
        "the stream's last event says why it ended: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_has_sent_nothing_does_not_hold_the_drain() {
    // A client's spare connection (pools open them and may never use them): accepted, silent.
    let (h, _a) = started(Duration::from_secs(20), false).await;
    let mut silent = TcpStream::connect(h.sidecar.data_addr)
        .await
        .expect("connect");
    let mut served = TcpStream::connect(h.sidecar.data_addr)
        .await
        .expect("connect");
    assert_eq!(exchange(&mut served).await, "HTTP/1.1 200 OK");
    drop(served);

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), h.stop())
        .await
        .expect("shutdown does not wait for a connection with nothing in flight");

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut rest = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection is closed: {closed:?}"
    );
}
