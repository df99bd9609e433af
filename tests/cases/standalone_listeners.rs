//! The bounds every listener keeps, so that no client can hold the sidecar's resources: request
//! headers must arrive in time, idle kept-alive connections are closed, and each listener holds
//! a bounded number of connections, so a flood of one port leaves the others serving.

use std::time::Duration;

use switchyard_sidecar::listen::server::{self, Limits};
use switchyard_sidecar::table::Runtime;
use switchyard_sidecar::table::standalone::{self, Selection};
use switchyard_sidecar::telemetry::metrics::Metrics;
use switchyard_sidecar::{listen::admin, proxy::Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SHORT: Limits = Limits {
    max_connections: 2,
    header_read: Duration::from_millis(300),
};

/// The admin listener (it answers `/healthz` without a table) under `limits`.
async fn admin_with(limits: Limits) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let runtime = Runtime::new(Metrics::new());
    let (stop, stopped) = watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        limits,
        move |r| admin::admin(runtime.clone(), r),
        stopped,
    ));
    (addr, stop)
}

/// Reads until the peer closes; `None` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (addr, _stop) = admin_with(SHORT).await;
    let mut slowloris = TcpStream::connect(addr).await.unwrap();
    slowloris
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();

    let closed = closed_within(&mut slowloris, Duration::from_secs(5)).await;

    assert!(closed.is_some(), "a half-sent request held its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_connects_and_says_nothing_is_disconnected() {
    let (addr, _stop) = admin_with(SHORT).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();

    let closed = closed_within(&mut silent, Duration::from_secs(5)).await;

    assert_eq!(
        closed.as_deref(),
        Some(&b""[..]),
        "a silent connection held its slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let (addr, _stop) = admin_with(SHORT).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();

    let seen = closed_within(&mut idle, Duration::from_secs(5)).await;

    let seen = seen.expect("the idle connection stayed open");
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "the request itself was answered: {}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_queues_new_connections_and_others_keep_serving() {
    let limits = Limits {
        max_connections: 2,
        header_read: Duration::from_secs(30),
    };
    let (admin_addr, _stop_admin) = admin_with(limits).await;
    let (other_addr, _stop_other) = admin_with(limits).await;
    let hogs = [
        TcpStream::connect(admin_addr).await.unwrap(),
        TcpStream::connect(admin_addr).await.unwrap(),
    ];
    // Let the listener accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut queued = TcpStream::connect(admin_addr).await.unwrap();
    queued.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), queued.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served past the limit"
    );

    // Another listener is untouched by this one's flood.
    let mut other = TcpStream::connect(other_addr).await.unwrap();
    other.write_all(HEALTHZ).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), other.read(&mut buf))
        .await
        .expect("the other listener answers")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // A slot frees up: the queued connection is served.
    drop(hogs);
    let n = tokio::time::timeout(Duration::from_secs(5), queued.read(&mut buf))
        .await
        .expect("the queued connection is served once a slot is free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_disconnects_a_slow_header_too() {
    let runtime = Runtime::new(Metrics::new());
    let proxy = Proxy::new(runtime, 1 << 20);
    let (_stop, stopped) = watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        SHORT,
        move |r| proxy.clone().handle(r),
        stopped,
    ));
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
        .await
        .unwrap();

    assert!(
        closed_within(&mut slow, Duration::from_secs(5))
            .await
            .is_some()
    );
}

/// The data plane with a table loaded (so requests get as far as reading their body), giving
/// clients `body_read` to send a body.
async fn data_plane_with(body_read: Duration) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let runtime = Runtime::new(Metrics::new());
    let manifests = switchyard_tests::write_manifests(&format!(
        "{}{}",
        switchyard_tests::pool(&[("a", &switchyard_tests::refused_url(), "m")], "", ""),
        switchyard_tests::route("chat", "chat", &[("a", "m")], ""),
    ));
    let loaded = standalone::load(&[manifests], &Selection::default()).expect("manifests load");
    runtime.swap(loaded.table);
    let proxy = Proxy::with_body_read(runtime, 1 << 20, body_read);
    let (stop, stopped) = watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        Limits::DATA_PLANE,
        move |r| proxy.clone().handle(r),
        stopped,
    ));
    (addr, stop)
}

/// Sends `request` (headers and part of a body) to a data plane that gives bodies 300 ms, and
/// returns everything it answers before it closes the connection.
async fn answer_to_an_unfinished_body(request: &[u8]) -> String {
    let (addr, _stop) = data_plane_with(Duration::from_millis(300)).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(request).await.unwrap();
    let seen = closed_within(&mut client, Duration::from_secs(5))
        .await
        .expect("the connection is answered and closed");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_content_length_gets_408_in_time() {
    let text = answer_to_an_unfinished_body(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"model\":",
    )
    .await;

    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_that_never_ends_gets_408_in_time() {
    let text = answer_to_an_unfinished_body(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\n8\r\n{\"model\"\r\n",
    )
    .await;

    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}
