//! A fake operator config server (HTTPS with a CA generated here), route tables against mock
//! providers, and pod-mode sidecars, shared by the pod-mode and chaos tests.
#![allow(dead_code)] // each test file uses its own part of the helpers

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use switchyard_crds::report::Report;
use switchyard_crds::table::RouteTable;
use switchyard_sidecar::app::{Config, PodConfig, Sidecar, Source};
use switchyard_sidecar::table::standalone::{self, Selection};
use switchyard_sim::openai::MockProvider;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Long enough for a poll, a backoff step or two and a swap on a loaded machine.
pub const SOON: Duration = Duration::from_secs(10);

pub static DIRS: AtomicU32 = AtomicU32::new(0);

pub fn temp_dir(what: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("switchyard-pod-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

// === Certificates ===

/// A CA and a serving certificate for `localhost`/`127.0.0.1` signed by it.
pub struct Pki {
    pub ca_pem: String,
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("serving key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("serving params");
    let cert = params.signed_by(&key, &issuer).expect("serving cert");
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

// === The fake config server ===

/// What `GET /v1/config` answers when the sidecar's version is not current.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub body: String,
    /// Sends the head (with the whole body's Content-Length) and this many bytes of the body,
    /// then drops the connection: a server that dies mid-answer.
    pub cut_after: Option<usize>,
}

impl Answer {
    pub fn table(table: &RouteTable) -> Self {
        Self {
            status: 200,
            etag: Some(format!("\"{}\"", table.version)),
            body: serde_json::to_string(table).expect("tables serialize"),
            cut_after: None,
        }
    }

    /// `table`'s answer, cut after `bytes` bytes of its body.
    pub fn cut(table: &RouteTable, bytes: usize) -> Self {
        Self {
            cut_after: Some(bytes),
            ..Self::table(table)
        }
    }

    /// Any other answer, sent whole.
    pub fn other(status: u16, etag: Option<&str>, body: &str) -> Self {
        Self {
            status,
            etag: etag.map(str::to_string),
            body: body.to_string(),
            cut_after: None,
        }
    }
}

#[derive(Default)]
pub struct Seen {
    pub reports: Vec<Report>,
    pub tokens: Vec<String>,
    pub headers: Vec<http::HeaderMap>,
}

pub struct Shared {
    pub answer: watch::Sender<Answer>,
    pub token: Mutex<String>,
    pub seen: Mutex<Seen>,
    /// TLS handshakes completed: connections, as opposed to requests.
    pub handshakes: std::sync::atomic::AtomicUsize,
    /// When set, how long an unchanged long-poll is held instead of the asked-for wait.
    pub hold: Mutex<Option<Duration>>,
    /// `GET /v1/config` requests seen.
    pub polls: std::sync::atomic::AtomicUsize,
    /// When set, `POST /v1/report` answers `200` with these leases instead of `204`.
    pub leases: Mutex<Option<switchyard_crds::report::ReportAnswer>>,
}

/// An operator config server: long-polls on `GET /v1/config`, records `POST /v1/report`.
pub struct FakeOperator {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeOperator {
    pub async fn start(pki: &Pki, token: &str, first: Answer) -> Self {
        Self::start_at(pki, token, first, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// Started on `addr`, which may be the address of an operator that was stopped.
    pub async fn start_at(pki: &Pki, token: &str, first: Answer, addr: SocketAddr) -> Self {
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .expect("serving cert");
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        // NB: SO_REUSEADDR, so that a restart can take the port while old connections linger.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(addr).expect("bind");
        let listener = socket.listen(128).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            answer: watch::channel(first).0,
            token: Mutex::new(token.to_string()),
            seen: Mutex::new(Seen::default()),
            handshakes: Default::default(),
            hold: Mutex::new(None),
            polls: Default::default(),
            leases: Mutex::new(None),
        });
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (s, t) = (shared.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, shared) = (acceptor.clone(), s.clone());
                let connection = tokio::spawn(async move {
                    // A client that does not trust us ends the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    shared
                        .handshakes
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let service = service_fn(move |r| handle(shared.clone(), r));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
                t.lock().unwrap().push(connection);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self {
            addr,
            shared,
            tasks,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn set(&self, answer: Answer) {
        self.shared.answer.send_replace(answer);
    }

    /// Answers unchanged long-polls after `hold` instead of the wait they ask for.
    pub fn hold_polls_for(&self, hold: Duration) {
        *self.shared.hold.lock().unwrap() = Some(hold);
    }

    pub fn accept_only(&self, token: &str) {
        *self.shared.token.lock().unwrap() = token.to_string();
    }

    pub fn reports(&self) -> Vec<Report> {
        self.shared.seen.lock().unwrap().reports.clone()
    }

    /// The operator goes away: the listener and every open connection close.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// A response body that may end in an error after part of it: hyper then drops the connection.
pub struct Scripted {
    data: Option<Bytes>,
    declared: u64,
    /// When set, the body fails once this pause is over: long enough for hyper to have flushed
    /// the head and the part sent, so that the client really gets half an answer.
    fail: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for Scripted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        if let Some(data) = self.data.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
        }
        if let Some(pause) = self.fail.as_mut() {
            std::task::ready!(std::future::Future::poll(pause.as_mut(), cx));
            self.fail = None;
            return std::task::Poll::Ready(Some(Err(std::io::Error::other("cut"))));
        }
        std::task::Poll::Ready(None)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.declared)
    }
}

pub fn reply(status: u16, etag: Option<&str>, body: impl Into<Bytes>) -> Response<Scripted> {
    let body: Bytes = body.into();
    let declared = body.len() as u64;
    respond(
        status,
        etag,
        Scripted {
            data: Some(body).filter(|b| !b.is_empty()),
            declared,
            fail: None,
        },
    )
}

/// `answer` as sent: whole, or cut.
fn reply_with(answer: &Answer) -> Response<Scripted> {
    let body = Bytes::from(answer.body.clone());
    let Some(cut) = answer.cut_after else {
        return reply(answer.status, answer.etag.as_deref(), body);
    };
    let declared = body.len() as u64;
    let part = body.slice(..cut.min(body.len()));
    respond(
        answer.status,
        answer.etag.as_deref(),
        Scripted {
            data: Some(part),
            declared,
            fail: Some(Box::pin(tokio::time::sleep(Duration::from_millis(100)))),
        },
    )
}

fn respond(status: u16, etag: Option<&str>, body: Scripted) -> Response<Scripted> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    if let Some(etag) = etag {
        response
            .headers_mut()
            .insert(header::ETAG, etag.parse().expect("etag"));
    }
    response
}

pub async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Scripted>, Infallible> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    {
        let mut seen = shared.seen.lock().unwrap();
        seen.tokens.push(token.clone());
        seen.headers.push(request.headers().clone());
    }
    if token != *shared.token.lock().unwrap() {
        return Ok(reply(401, None, "token refused"));
    }
    match (request.method().as_str(), request.uri().path()) {
        ("POST", "/v1/report") => {
            let body = request
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let report: Report = serde_json::from_slice(&body).expect("a report");
            shared.seen.lock().unwrap().reports.push(report);
            match &*shared.leases.lock().unwrap() {
                Some(answer) => Ok(reply(
                    200,
                    None,
                    serde_json::to_vec(answer).expect("leases serialize"),
                )),
                None => Ok(reply(204, None, "")),
            }
        }
        ("GET", "/v1/config") => {
            shared
                .polls
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let asked = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("wait="))
                .and_then(switchyard_crds::duration::parse)
                .unwrap_or(Duration::from_secs(30));
            let wait = shared.hold.lock().unwrap().unwrap_or(asked);
            let known = request
                .headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut changes = shared.answer.subscribe();
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                let answer = changes.borrow_and_update().clone();
                if answer.etag.is_none() || answer.etag != known {
                    return Ok(reply_with(&answer));
                }
                tokio::select! {
                    _ = &mut deadline => return Ok(reply(304, answer.etag.as_deref(), "")),
                    _ = changes.changed() => {}
                }
            }
        }
        _ => Ok(reply(404, None, "not found")),
    }
}

// === Tables and the sidecar ===

/// A table whose route `model` sends to `provider` (a mock) as `gpt-4o-mini`.
pub fn table(provider: &MockProvider, model: &str) -> RouteTable {
    table_with(provider, model, "")
}

/// [`table`], plus the objects of `extra` (YAML documents, each starting with `---`).
pub fn table_with(provider: &MockProvider, model: &str, extra: &str) -> RouteTable {
    let dir = temp_dir("manifests");
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: main}}
spec:
  providers:
    - name: sim
      api: OpenAI
      baseUrl: {}
      apiKey: {{secretKeyRef: {{name: keys, key: sim}}}}
      models:
        - {{name: gpt-4o-mini, inputPerMillion: \"1.00\", outputPerMillion: \"2.00\"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{sim: sk-pod-secret}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {{name: r}}
spec:
  model: {model}
  targets:
    - {{pool: main, provider: sim, model: gpt-4o-mini}}
",
        provider.base_url()
    );
    std::fs::write(dir.join("m.yaml"), yaml + extra).expect("write manifests");
    let loaded =
        standalone::load(std::slice::from_ref(&dir), &Selection::default()).expect("compiles");
    let _ = std::fs::remove_dir_all(&dir);
    loaded.table
}

/// The files a pod-mode sidecar reads.
pub struct PodFiles {
    pub token: PathBuf,
    pub ca: PathBuf,
    pub state: PathBuf,
}

impl PodFiles {
    pub fn new(ca_pem: &str, token: &str) -> Self {
        let dir = temp_dir("files");
        let files = Self {
            token: dir.join("token"),
            ca: dir.join("ca.crt"),
            state: dir.join("state"),
        };
        std::fs::write(&files.token, format!("{token}\n")).expect("token");
        std::fs::write(&files.ca, ca_pem).expect("ca");
        files
    }
}

pub async fn start_sidecar(url: &str, files: &PodFiles) -> Sidecar {
    start_sidecar_reporting(url, files, Duration::from_millis(200)).await
}

pub async fn start_sidecar_reporting(url: &str, files: &PodFiles, every: Duration) -> Sidecar {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    Sidecar::start(Config {
        listen: loopback,
        admin_listen: loopback,
        debug_listen: None,
        max_body_bytes: 1 << 20,
        drain: switchyard_sidecar::app::DEFAULT_DRAIN,
        accept_while_draining: false,
        source: Source::ConfigServer(PodConfig {
            url: url.to_string(),
            token_file: files.token.clone(),
            ca_file: files.ca.clone(),
            state_dir: files.state.clone(),
            report_interval: every,
            instance: "pod-uid-1-1700000000".into(),
        }),
    })
    .await
    .expect("the sidecar starts")
}

pub fn version(sidecar: &Sidecar) -> Option<String> {
    sidecar.runtime.snapshot().map(|s| s.table.version.clone())
}

/// Polls `check` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}

pub async fn http(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = tokio::time::timeout(SOON, client.request(request))
        .await
        .expect("answers in time")
        .expect("answers");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

pub async fn chat(sidecar: &Sidecar, model: &str) -> (u16, Value) {
    http(
        "POST",
        format!("http://{}/v1/chat/completions", sidecar.data_addr),
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
}

pub async fn readyz(sidecar: &Sidecar) -> (u16, String) {
    let (status, body) = http("GET", format!("http://{}/readyz", sidecar.admin_addr), None).await;
    (status, body.as_str().unwrap_or_default().to_string())
}
