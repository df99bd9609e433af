//! Pod mode against a fake operator config server (HTTPS with a CA generated here): the sidecar
//! gets a table and serves through it, follows changes, re-reads a rotated token, keeps serving
//! when the operator goes away and after a restart from its state dir, refuses 409s and bad
//! tables while keeping the old one, reports cumulative counters, and trusts only its CA (read
//! again for every connection).

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
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Long enough for a poll, a backoff step or two and a swap on a loaded machine.
const SOON: Duration = Duration::from_secs(10);

static DIRS: AtomicU32 = AtomicU32::new(0);

fn temp_dir(what: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("switchyard-pod-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

// === Certificates ===

/// A CA and a serving certificate for `localhost`/`127.0.0.1` signed by it.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
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
struct Answer {
    status: u16,
    etag: Option<String>,
    body: String,
}

impl Answer {
    fn table(table: &RouteTable) -> Self {
        Self {
            status: 200,
            etag: Some(format!("\"{}\"", table.version)),
            body: serde_json::to_string(table).expect("tables serialize"),
        }
    }
}

#[derive(Default)]
struct Seen {
    reports: Vec<Report>,
    tokens: Vec<String>,
    headers: Vec<http::HeaderMap>,
}

struct Shared {
    answer: watch::Sender<Answer>,
    token: Mutex<String>,
    seen: Mutex<Seen>,
    /// TLS handshakes completed: connections, as opposed to requests.
    handshakes: std::sync::atomic::AtomicUsize,
}

/// An operator config server: long-polls on `GET /v1/config`, records `POST /v1/report`.
struct FakeOperator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeOperator {
    async fn start(pki: &Pki, token: &str, first: Answer) -> Self {
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .expect("serving cert");
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            answer: watch::channel(first).0,
            token: Mutex::new(token.to_string()),
            seen: Mutex::new(Seen::default()),
            handshakes: Default::default(),
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

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn set(&self, answer: Answer) {
        self.shared.answer.send_replace(answer);
    }

    fn accept_only(&self, token: &str) {
        *self.shared.token.lock().unwrap() = token.to_string();
    }

    fn reports(&self) -> Vec<Report> {
        self.shared.seen.lock().unwrap().reports.clone()
    }

    /// The operator goes away: the listener and every open connection close.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

fn reply(status: u16, etag: Option<&str>, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    if let Some(etag) = etag {
        response
            .headers_mut()
            .insert(header::ETAG, etag.parse().expect("etag"));
    }
    response
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
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
            Ok(reply(204, None, ""))
        }
        ("GET", "/v1/config") => {
            let wait = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("wait="))
                .and_then(switchyard_crds::duration::parse)
                .unwrap_or(Duration::from_secs(30));
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
                    return Ok(reply(answer.status, answer.etag.as_deref(), answer.body));
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
fn table(provider: &MockProvider, model: &str) -> RouteTable {
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
    std::fs::write(dir.join("m.yaml"), yaml).expect("write manifests");
    let loaded =
        standalone::load(std::slice::from_ref(&dir), &Selection::default()).expect("compiles");
    let _ = std::fs::remove_dir_all(&dir);
    loaded.table
}

/// The files a pod-mode sidecar reads.
struct PodFiles {
    token: PathBuf,
    ca: PathBuf,
    state: PathBuf,
}

impl PodFiles {
    fn new(ca_pem: &str, token: &str) -> Self {
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

async fn start_sidecar(url: &str, files: &PodFiles) -> Sidecar {
    start_sidecar_reporting(url, files, Duration::from_millis(200)).await
}

async fn start_sidecar_reporting(url: &str, files: &PodFiles, every: Duration) -> Sidecar {
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

fn version(sidecar: &Sidecar) -> Option<String> {
    sidecar.runtime.snapshot().map(|s| s.table.version.clone())
}

/// Polls `check` until it holds or `limit` passes.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}

async fn http(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
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

async fn chat(sidecar: &Sidecar, model: &str) -> (u16, Value) {
    http(
        "POST",
        format!("http://{}/v1/chat/completions", sidecar.data_addr),
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
}

async fn readyz(sidecar: &Sidecar) -> (u16, String) {
    let (status, body) = http("GET", format!("http://{}/readyz", sidecar.admin_addr), None).await;
    (status, body.as_str().unwrap_or_default().to_string())
}

// === Cases ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_a_table_serves_it_and_follows_changes() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token-1", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token-1");
    let sidecar = start_sidecar(&operator.url(), &files).await;

    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);
    assert_eq!(readyz(&sidecar).await.0, 200);
    let (status, body) = chat(&sidecar, "chat").await;
    assert_eq!(status, 200, "{body}");
    assert!(provider.request_count() >= 1);

    // What the operator saw: the trimmed token, our version and schema, then our ETag.
    {
        let seen = operator.shared.seen.lock().unwrap();
        assert!(
            seen.tokens.iter().all(|t| t == "token-1"),
            "{:?}",
            seen.tokens
        );
        let first_poll = &seen.headers[0];
        assert_eq!(
            first_poll["x-switchyard-sidecar-version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(first_poll["x-switchyard-table-schema"], "1");
        assert!(first_poll.get(header::IF_NONE_MATCH).is_none());
    }
    assert!(
        eventually(SOON, || {
            let seen = operator.shared.seen.lock().unwrap();
            seen.headers.iter().any(|h| {
                h.get(header::IF_NONE_MATCH)
                    .is_some_and(|v| *v == format!("\"{}\"", first.version))
            })
        })
        .await,
        "later polls carry If-None-Match"
    );

    // A new table wakes the long-poll and is served.
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(eventually(SOON, || version(&sidecar) == Some(second.version.clone())).await);
    assert_eq!(chat(&sidecar, "chat-2").await.0, 200);
    assert_eq!(chat(&sidecar, "chat").await.0, 404);
    let polls = operator.shared.seen.lock().unwrap().headers.len();
    let handshakes = operator
        .shared
        .handshakes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        polls >= 3 && handshakes < polls,
        "polls reuse a kept-alive connection: {handshakes} handshakes for {polls} polls"
    );

    // The table is on disk, mode 0600, and holds the served version.
    let stored = std::fs::read_to_string(files.state.join("route-table.json")).expect("stored");
    assert!(stored.contains(&second.version));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(files.state.join("route-table.json"))
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_read_again() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "old-token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "old-token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    // The kubelet rotates the token; from now on the operator accepts only the new one.
    std::fs::write(&files.token, "new-token").expect("rotate");
    operator.accept_only("new-token");
    // The poll in flight (authorized with the old token) returns this one; the next poll must
    // carry the new token to get the third.
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(eventually(SOON, || version(&sidecar) == Some(second.version.clone())).await);
    let third = table(&provider, "chat-3");
    operator.set(Answer::table(&third));
    assert!(
        eventually(SOON, || version(&sidecar) == Some(third.version.clone())).await,
        "served only with the new token"
    );
    let tokens = operator.shared.seen.lock().unwrap().tokens.clone();
    assert!(tokens.iter().any(|t| t == "new-token"), "{tokens:?}");

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_without_the_operator_and_after_a_restart() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    operator.stop();
    // Give the sidecar time to notice the broken long-poll and back off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(readyz(&sidecar).await.0, 200);
    sidecar.shutdown().await;

    // A container restart: same state dir, no operator. Ready at once, from disk.
    let restarted = start_sidecar(&operator.url(), &files).await;
    assert_eq!(version(&restarted), Some(first.version.clone()));
    assert_eq!(readyz(&restarted).await.0, 200);
    let (status, body) = chat(&restarted, "chat").await;
    assert_eq!(status, 200, "{body}");
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_answers_keep_the_previous_table() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    operator.set(Answer {
        status: 409,
        etag: None,
        body: "schema 1 is no longer served".into(),
    });
    assert!(
        eventually(SOON, || sidecar
            .runtime
            .last_error()
            .is_some_and(|e| e.contains("409")))
        .await
    );
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    let (status, body) = readyz(&sidecar).await;
    assert_eq!(status, 200);
    assert!(body.contains("409"), "{body}");

    // A table whose version is not its content hash (tampered or corrupted in transit).
    let mut bad = table(&provider, "chat-bad");
    bad.version = first.version.clone();
    operator.set(Answer {
        status: 200,
        etag: Some("\"bogus\"".into()),
        body: serde_json::to_string(&bad).expect("serializes"),
    });
    assert!(
        eventually(SOON, || sidecar
            .runtime
            .last_error()
            .is_some_and(|e| e.contains("content hash")))
        .await
    );
    // Garbage.
    operator.set(Answer {
        status: 200,
        etag: Some("\"garbage\"".into()),
        body: "{\"not\": \"a table\"}".into(),
    });
    assert!(
        eventually(SOON, || sidecar
            .runtime
            .last_error()
            .is_some_and(|e| e.contains("not a route table")))
        .await
    );
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(chat(&sidecar, "chat-bad").await.0, 404);
    let stored = std::fs::read_to_string(files.state.join("route-table.json")).expect("stored");
    assert!(stored.contains(&format!("\"version\":\"{}\"", first.version)));

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_carry_cumulative_counters() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    for _ in 0..2 {
        assert_eq!(chat(&sidecar, "chat").await.0, 200);
    }
    let successes = |r: &Report| {
        r.targets
            .iter()
            .find(|t| t.provider == "main/sim" && t.model == "gpt-4o-mini")
            .and_then(|t| t.outcomes.get("Success").copied())
            .unwrap_or(0)
    };
    assert!(
        eventually(SOON, || operator
            .reports()
            .iter()
            .any(|r| successes(r) == 2))
        .await,
        "{:?}",
        operator.reports()
    );
    let reports = operator.reports();
    let report = reports
        .iter()
        .rev()
        .find(|r| successes(r) == 2)
        .expect("a report");
    assert_eq!(report.instance, "pod-uid-1-1700000000");
    assert_eq!(report.table_version, first.version);
    let target = &report.targets[0];
    assert!(
        target.input_tokens > 0 && target.output_tokens > 0,
        "{target:?}"
    );
    assert!(target.cost_usd > 0.0, "{target:?}");
    assert!(!target.circuit_open);
    assert_eq!(
        target.latency_buckets.len(),
        switchyard_crds::report::LATENCY_BUCKETS_MS.len() + 1
    );
    assert_eq!(target.latency_buckets.iter().sum::<u64>(), 2);

    // Cumulative: a later report still counts both (never a delta).
    let seen = reports.len();
    assert!(eventually(SOON, || operator.reports().len() > seen + 1).await);
    assert_eq!(successes(operator.reports().last().expect("a report")), 2);

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_gives_no_table() {
    let (provider, pki, other) = (
        MockProvider::start("sim").await.expect("mock"),
        pki(),
        pki(),
    );
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    // The sidecar trusts a different CA.
    let files = PodFiles::new(&other.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(version(&sidecar), None);
    assert_eq!(readyz(&sidecar).await.0, 503);
    let (status, body) = chat(&sidecar, "chat").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "switchyard_no_config", "{body}");
    assert!(
        operator.reports().is_empty() && operator.shared.seen.lock().unwrap().tokens.is_empty(),
        "no request got through"
    );

    // The CA bundle is read for every connection: once it holds the right CA, the table comes.
    std::fs::write(&files.ca, &pki.ca_pem).expect("rotate the CA");
    assert!(
        eventually(3 * SOON, || version(&sidecar)
            == Some(first.version.clone()))
        .await,
        "the new CA bundle is used"
    );

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_table_is_reported_without_waiting_for_the_interval() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar_reporting(&operator.url(), &files, Duration::from_secs(3600)).await;
    let reported = |version: &str| {
        operator
            .reports()
            .iter()
            .any(|r| r.table_version == version)
    };
    let prompt = Duration::from_secs(5);
    assert!(
        eventually(prompt, || reported(&first.version)).await,
        "the first table is reported at once, not after the hour"
    );
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(
        eventually(prompt, || reported(&second.version)).await,
        "so is the next one"
    );
    sidecar.shutdown().await;
    operator.stop();
}
