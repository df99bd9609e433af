//! The operator's listeners are bounded: a client that connects and then stalls, before or in the
//! middle of its request headers, is closed once the header-read limit passes (shortened here),
//! on the config server and the webhook (TLS, whichever protocol ALPN chose) as on the admin
//! server (plain HTTP); and a listener at its connection cap serves the next client only once
//! another leaves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::ResourceRequirements;
use rustls::pki_types::ServerName;
use switchyard_operator::admin::{self, AdminState};
use switchyard_operator::certs::{self, Material};
use switchyard_operator::config_server::tables::Tables;
use switchyard_operator::config_server::{self, ConfigServer};
use switchyard_operator::leader::Leadership;
use switchyard_operator::listener::Limits;
use switchyard_operator::metrics::Metrics;
use switchyard_operator::webhook::inject::SidecarDefaults;
use switchyard_operator::webhook::mode::Mode;
use switchyard_operator::webhook::{self, Webhook};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// The header-read limit of every listener under test.
const HEADER_READ: Duration = Duration::from_millis(300);
/// Far longer than [`HEADER_READ`]: a connection still open then was never going to close.
const PATIENCE: Duration = Duration::from_secs(5);
/// The start of a request whose headers never end.
const HALF_A_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: operator\r\nAcc";

fn limits() -> Limits {
    Limits {
        max_connections: 8,
        handshake: PATIENCE,
        header_read: HEADER_READ,
    }
}

/// A server certificate for `localhost`, and a client configuration trusting its CA.
fn tls() -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    tls_offering(&[])
}

/// [`tls`] with a client that offers `protocols` by ALPN.
fn tls_offering(protocols: &[&[u8]]) -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    let names = certs::serving_names("switchyard-system");
    let (material, _) = certs::plan(&Material::default(), &names, SystemTime::now()).unwrap();
    let bundle = material.bundle().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(bundle.ca_ders());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    (bundle.server_config().unwrap(), connector)
}

/// A listener on a free loopback port, and its address.
async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn tls_connect(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// An HTTP/1.1 client over `stream`, and its connection, driven in the background.
async fn http1_client<B>(
    stream: TlsStream<TcpStream>,
) -> (
    hyper::client::conn::http1::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    (sender, tokio::spawn(conn))
}

/// An HTTP/2 client over `stream`, its connection driven in the background.
async fn http2_client<B>(stream: TlsStream<TcpStream>) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `prefix` and waits for the server to close the connection; returns how long it took
/// from the send.
async fn closed_after<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, prefix: &[u8]) -> Duration {
    stream.write_all(prefix).await.unwrap();
    stream.flush().await.unwrap();
    let sent = Instant::now();
    let mut sink = Vec::new();
    // An error (a reset, TLS without close_notify) closes as surely as an EOF does.
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {PATIENCE:?}"
    );
    sent.elapsed()
}

fn assert_closed_by_the_limit(elapsed: Duration) {
    assert!(
        elapsed >= HEADER_READ - Duration::from_millis(50),
        "closed after {elapsed:?}, before the limit: not by it"
    );
    assert!(elapsed < PATIENCE, "closed after {elapsed:?}");
}

async fn config_server(server_tls: Arc<rustls::ServerConfig>) -> SocketAddr {
    let metrics = Metrics::new().unwrap();
    let server = ConfigServer::with_leadership(
        Tables::default(),
        None,
        metrics.config.clone(),
        Leadership::always(),
    );
    let (listener, addr) = loopback().await;
    tokio::spawn(config_server::serve_within(
        listener,
        server_tls,
        server,
        limits(),
    ));
    addr
}

async fn webhook_server(server_tls: Arc<rustls::ServerConfig>) -> SocketAddr {
    let metrics = Metrics::new().unwrap();
    let defaults = SidecarDefaults {
        image: "sidecar:test".into(),
        mode: Mode::Native,
        resources: ResourceRequirements::default(),
        operator_namespace: "switchyard-system".into(),
        version: "0.0.0".into(),
        env: Default::default(),
    };
    let (_, mode) = tokio::sync::watch::channel(Mode::Native);
    let hook = Webhook::new(defaults, mode, metrics.admissions.clone());
    let (listener, addr) = loopback().await;
    tokio::spawn(webhook::serve_within(listener, server_tls, hook, limits()));
    addr
}

async fn admin_server(limits: Limits) -> SocketAddr {
    let state = AdminState {
        metrics: Metrics::new().unwrap(),
        ready: Arc::new(AtomicBool::new(true)),
    };
    let (listener, addr) = loopback().await;
    tokio::spawn(admin::serve_within(listener, state, limits));
    addr
}

#[tokio::test]
async fn the_config_server_closes_a_client_that_stalls_in_its_headers() {
    let (server_tls, connector) = tls();
    let addr = config_server(server_tls).await;
    let stream = tls_connect(addr, &connector).await;
    assert_closed_by_the_limit(closed_after(stream, HALF_A_HEADER).await);
}

#[tokio::test]
async fn the_config_server_closes_a_client_that_says_nothing_after_the_handshake() {
    let (server_tls, connector) = tls();
    let addr = config_server(server_tls).await;
    let stream = tls_connect(addr, &connector).await;
    assert_closed_by_the_limit(closed_after(stream, b"").await);
}

// Sidecars choose HTTP/1.1 by ALPN, and such connections are served by hyper's HTTP/1 connection
// alone (its future is a fraction of the protocol-detecting one's, and one is kept per connected
// sidecar): the same bounds hold on that path.

#[tokio::test]
async fn the_config_server_closes_an_http1_client_that_stalls_in_its_headers() {
    let (server_tls, connector) = tls_offering(&[b"http/1.1"]);
    let addr = config_server(server_tls).await;
    let stream = tls_connect(addr, &connector).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_closed_by_the_limit(closed_after(stream, HALF_A_HEADER).await);
}

#[tokio::test]
async fn the_config_server_closes_an_http1_client_that_says_nothing() {
    let (server_tls, connector) = tls_offering(&[b"http/1.1"]);
    let addr = config_server(server_tls).await;
    let stream = tls_connect(addr, &connector).await;
    assert_closed_by_the_limit(closed_after(stream, b"").await);
}

#[tokio::test]
async fn the_config_server_speaks_the_protocol_alpn_chose() {
    use http_body_util::Empty;
    use hyper::{Request, StatusCode, Version};

    let request = || {
        Request::get("https://localhost/v1/config")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // Unauthenticated, so 401 either way: what matters is that each protocol is spoken.
    let (server_tls, http1) = tls_offering(&[b"http/1.1"]);
    let addr = config_server(server_tls).await;
    let stream = tls_connect(addr, &http1).await;
    let (mut sender, _) = http1_client(stream).await;
    let response = sender.send_request(request()).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let (server_tls, h2) = tls_offering(&[b"h2", b"http/1.1"]);
    let addr = config_server(server_tls).await;
    let stream = tls_connect(addr, &h2).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = http2_client(stream).await;
    let response = sender.send_request(request()).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A sidecar offers no ALPN and sends its long-polls and its reports over the same pooled
/// connections: the listener answers those itself, and hands the connection to hyper at the
/// first request that needs it (a chunked body here), after which hyper answers the rest.
#[tokio::test]
async fn one_connection_carries_polls_and_reports_and_then_a_chunked_body() {
    use futures_util::stream;
    use http_body_util::{BodyExt as _, Full, StreamBody};
    use hyper::body::Frame;
    use hyper::{Request, StatusCode};

    let (server_tls, connector) = tls_offering(&[]);
    let addr = config_server(server_tls).await;
    let stream = tls_connect(addr, &connector).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let (mut sender, connection) = http1_client(stream).await;
    let poll = || {
        Request::get("/v1/config")
            .header("host", "localhost")
            .body(Full::new(bytes::Bytes::new()).boxed())
            .unwrap()
    };
    let report =
        |body: http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>| {
            Request::post("/v1/report")
                .header("host", "localhost")
                .body(body)
                .unwrap()
        };
    let chunked = || {
        let frames = stream::iter([Ok(Frame::data(bytes::Bytes::from_static(b"{}")))]);
        StreamBody::new(frames).boxed()
    };
    let sized = || Full::new(bytes::Bytes::from_static(b"{\"instance\":\"x\"}")).boxed();
    // Unauthenticated, so 401 each time; each answer must arrive whole, in turn, on the one
    // connection, and its body be the config server's JSON error.
    for (i, request) in [
        poll(),
        report(sized()),
        poll(),
        report(chunked()),
        poll(),
        report(sized()),
    ]
    .into_iter()
    .enumerate()
    {
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "request {i}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(error["error"].is_string(), "request {i}: {error}");
    }
    drop(sender);
    connection.await.unwrap().unwrap();
}

/// The apiserver's review reaches the webhook whichever protocol the connection speaks: HTTP/1.1
/// (read outside hyper: a body with a `Content-Length`) and HTTP/2 (hyper) answer it the same.
#[tokio::test]
async fn the_webhook_answers_a_review_the_same_over_http1_and_http2() {
    use http_body_util::{BodyExt as _, Full};
    use hyper::{Request, StatusCode};

    let uid = "705ab4f5-6393-11e8-b7cc-42010a800002";
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "app-", "namespace": "team-a"},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        }
    });
    let request = || {
        Request::post(webhook::INJECT_PATH)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(review.to_string())))
            .unwrap()
    };

    let (server_tls, http1) = tls_offering(&[]);
    let addr = webhook_server(server_tls).await;
    let stream = tls_connect(addr, &http1).await;
    let (mut sender, _) = http1_client(stream).await;
    let response = sender.send_request(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let over_http1 = response.into_body().collect().await.unwrap().to_bytes();

    let (server_tls, h2) = tls_offering(&[b"h2"]);
    let addr = webhook_server(server_tls).await;
    let stream = tls_connect(addr, &h2).await;
    let mut sender = http2_client(stream).await;
    let response = sender.send_request(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let over_http2 = response.into_body().collect().await.unwrap().to_bytes();

    let answer: serde_json::Value = serde_json::from_slice(&over_http1).unwrap();
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], uid);
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(over_http1, over_http2);
}

#[tokio::test]
async fn the_webhook_closes_a_client_that_stalls_in_its_headers() {
    let (server_tls, connector) = tls();
    let addr = webhook_server(server_tls).await;
    let stream = tls_connect(addr, &connector).await;
    assert_closed_by_the_limit(closed_after(stream, HALF_A_HEADER).await);
}

#[tokio::test]
async fn the_admin_server_closes_a_client_that_stalls_in_its_headers() {
    let addr = admin_server(limits()).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    assert_closed_by_the_limit(closed_after(stream, HALF_A_HEADER).await);
}

#[tokio::test]
async fn the_admin_server_closes_a_client_that_says_nothing() {
    let addr = admin_server(limits()).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    assert_closed_by_the_limit(closed_after(stream, b"").await);
}

#[tokio::test]
async fn a_listener_at_its_connection_cap_serves_the_next_client_once_one_leaves() {
    let addr = admin_server(Limits {
        max_connections: 1,
        ..limits()
    })
    .await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n";

    let first = TcpStream::connect(addr).await.unwrap();
    // Let the server accept the first before the second arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(HEADER_READ / 2, second.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "answered while the only slot was taken");

    drop(first);
    tokio::time::timeout(PATIENCE, second.read_to_end(&mut answer))
        .await
        .expect("answered once the slot was free")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
