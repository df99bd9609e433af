//! The config server harness shared by the integration tests: a real ConfigServer on loopback
//! HTTPS with the generated CA, and a fake apiserver answering TokenReviews as scripted.
#![allow(dead_code)] // each test file uses its own part of the harness

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use switchyard_crds::table::{Pricing, Route, RouteTable, Target};
use switchyard_crds::v1alpha1::Strategy;
use switchyard_operator::certs;
use switchyard_operator::config_server::tables::{PodInfo, Snapshot, Tables};
use switchyard_operator::config_server::{self, ConfigServer};
use switchyard_operator::leader::Leadership;
use switchyard_operator::metrics::Metrics;
use tokio::net::TcpListener;

/// The id of a sidecar instance of `identity` started now, after the server under test (as
/// the sidecar builds it: `<pod UID>-<start unix seconds>`): its first report counts from zero,
/// where an older instance's would be a baseline.
pub fn started_now(identity: &str) -> String {
    let started = switchyard_crds::window::Timestamp::now().as_second();
    format!("{identity}-{started}")
}

/// One running config server with its fake apiserver.
pub struct Harness {
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
    pub tables: Tables,
    pub server: Arc<ConfigServer>,
    pub metrics: Metrics,
    pub reviews: Arc<AtomicUsize>,
    /// Takes the fake apiserver down and up again.
    pub apiserver: ApiserverSwitch,
    pub dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JWT-shaped token valid for an hour, the same string wherever it is used: the fake
/// apiserver's script knows it by value, and two `jwt(…)` calls a second apart differ in `exp`
/// (a test that built its own copy failed whenever a second boundary fell between them).
pub fn hour_jwt() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| jwt(Duration::from_secs(3600)))
}

pub fn jwt(exp_in: Duration) -> String {
    use base64::Engine as _;
    let exp = (std::time::SystemTime::now() + exp_in)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({ "exp": exp, "aud": ["switchyard"] }).to_string());
    format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
}

pub fn bound_status(namespace: &str, pod: &str, uid: &str) -> Value {
    json!({
        "authenticated": true,
        "audiences": ["switchyard"],
        "user": {
            "username": format!("system:serviceaccount:{namespace}:default"),
            "extra": {
                "authentication.kubernetes.io/pod-name": [pod],
                "authentication.kubernetes.io/pod-uid": [uid],
            }
        }
    })
}

/// The statuses the fake apiserver returns, by token. Unknown tokens are not authenticated.
pub fn scripted_reviews() -> HashMap<String, Value> {
    HashMap::from([
        (
            "tok-a".to_string(),
            bound_status("team-a", "chat-0", "uid-a"),
        ),
        (
            "tok-b".to_string(),
            bound_status("team-b", "chat-0", "uid-b"),
        ),
        (
            "tok-wrong-audience".to_string(),
            json!({ "authenticated": true, "audiences": ["https://kubernetes.default.svc"],
                    "user": bound_status("team-a", "chat-0", "uid-a")["user"] }),
        ),
        (
            "tok-unbound".to_string(),
            json!({ "authenticated": true, "audiences": ["switchyard"],
                    "user": { "username": "system:serviceaccount:team-a:default" } }),
        ),
        (
            "tok-unknown-uid".to_string(),
            bound_status("team-a", "chat-0", "uid-gone"),
        ),
        (
            "tok-not-injected".to_string(),
            bound_status("team-a", "plain-0", "uid-plain"),
        ),
        (
            hour_jwt().to_string(),
            bound_status("team-a", "chat-0", "uid-a"),
        ),
    ])
}

/// What the fake apiserver does with a TokenReview.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Apiserver {
    /// Answers as scripted.
    Up = 0,
    /// Answers 503, as an apiserver whose etcd is gone does.
    Unavailable = 1,
    /// Closes the connection without an answer, as a dead apiserver behind a proxy does.
    Unreachable = 2,
}

/// The fake apiserver's current behaviour, switchable while it runs.
#[derive(Clone, Default)]
pub struct ApiserverSwitch(Arc<AtomicU8>);

impl ApiserverSwitch {
    pub fn set(&self, mode: Apiserver) {
        self.0.store(mode as u8, Ordering::SeqCst);
    }

    fn get(&self) -> Apiserver {
        match self.0.load(Ordering::SeqCst) {
            0 => Apiserver::Up,
            1 => Apiserver::Unavailable,
            _ => Apiserver::Unreachable,
        }
    }
}

pub async fn fake_apiserver(
    script: HashMap<String, Value>,
    calls: Arc<AtomicUsize>,
    switch: ApiserverSwitch,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (script, calls, switch) = (script.clone(), calls.clone(), switch.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| {
                        let (script, calls, switch) =
                            (script.clone(), calls.clone(), switch.clone());
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            match switch.get() {
                                Apiserver::Up => Ok(answer_review(&script, req).await),
                                Apiserver::Unavailable => Ok(hyper::Response::builder()
                                    .status(503)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(
                                        br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out","reason":"ServiceUnavailable","code":503}"#,
                                    )))
                                    .unwrap()),
                                // An error from the service makes hyper drop the connection.
                                Apiserver::Unreachable => Err("the apiserver is gone"),
                            }
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// The scripted status for the review in `req`; unknown tokens are not authenticated.
async fn answer_review(
    script: &HashMap<String, Value>,
    req: Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        req.uri().path(),
        "/apis/authentication.k8s.io/v1/tokenreviews"
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(review["spec"]["audiences"], json!(["switchyard"]));
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let status = script
        .get(token)
        .cloned()
        .unwrap_or_else(|| json!({ "authenticated": false, "error": "invalid bearer token" }));
    let answer = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {},
        "spec": review["spec"],
        "status": status,
    });
    hyper::Response::builder()
        .status(201)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap()
}

pub fn route(namespace: &str, model: &str, upstream: &str, upstream_model: &str) -> Route {
    Route {
        name: model.into(),
        namespace: namespace.into(),
        model: model.into(),
        strategy: Strategy::Failover,
        targets: vec![Target {
            upstream: upstream.into(),
            model: upstream_model.into(),
            weight: 1,
            pricing: Pricing::default(),
            context_window: None,
            kind: Default::default(),
            publisher: Default::default(),
            prompt_template: None,
        }],
        rules: vec![],
        failover_on: vec![],
        max_attempts: 1,
        cache: None,
        complexity: None,
    }
}

pub fn table(
    namespace: &str,
    model: &str,
    upstream: &str,
    upstream_model: &str,
) -> Arc<RouteTable> {
    let routes = BTreeMap::from([(
        model.to_string(),
        route(namespace, model, upstream, upstream_model),
    )]);
    Arc::new(RouteTable::new(routes, BTreeMap::new(), "test"))
}

/// An injected (or not) pod labelled `app=chat`. Pods named `<workload>-<n>` are replicas of the
/// Deployment `<workload>`, so that pods of one name prefix share an audience and its table, as
/// the replicas of a Deployment do.
pub fn pod(namespace: &str, name: &str, injected: bool) -> PodInfo {
    let mut pod = PodInfo {
        injected,
        ..PodInfo::bare(
            namespace,
            name,
            BTreeMap::from([("app".to_string(), "chat".to_string())]),
        )
    };
    if let Some((deployment, _)) = name.rsplit_once('-') {
        pod.workload.kind = "Deployment".into();
        pod.workload.name = deployment.into();
    }
    pod
}

pub fn snapshot(team_a_table: Arc<RouteTable>) -> Snapshot {
    let (a, b) = (pod("team-a", "chat-0", true), pod("team-b", "chat-0", true));
    Snapshot {
        tables: BTreeMap::from([
            (a.audience(), team_a_table),
            (
                b.audience(),
                table("team-b", "claude", "pool-b/anthropic", "claude-sonnet-4"),
            ),
        ]),
        pods: HashMap::from([
            ("uid-a".to_string(), a),
            ("uid-b".to_string(), b),
            ("uid-plain".to_string(), pod("team-a", "plain-0", false)),
        ]),
        durable: Default::default(),
    }
}

pub fn team_a_v1() -> Arc<RouteTable> {
    table("team-a", "gpt", "pool-a/openai", "gpt-4o")
}

pub async fn start() -> Harness {
    start_with(Leadership::always()).await
}

pub async fn start_with(leadership: Leadership) -> Harness {
    start_from(leadership, scripted_reviews(), snapshot(team_a_v1())).await
}

/// A harness whose apiserver answers `script` and whose tables start as `initial`.
pub async fn start_from(
    leadership: Leadership,
    script: HashMap<String, Value>,
    initial: Snapshot,
) -> Harness {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-config-server-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let (bundle, _) =
        certs::ensure(&dir, "switchyard-system", std::time::SystemTime::now()).unwrap();

    let reviews = Arc::new(AtomicUsize::new(0));
    let apiserver_switch = ApiserverSwitch::default();
    let apiserver = fake_apiserver(script, reviews.clone(), apiserver_switch.clone()).await;
    let kube_config = kube::Config::new(format!("http://{apiserver}").parse().unwrap());
    let client = kube::Client::try_from(kube_config).unwrap();

    let metrics = Metrics::new().unwrap();
    let tables = Tables::new(initial);
    let server = ConfigServer::with_leadership(
        tables.clone(),
        Some(client),
        metrics.config.clone(),
        leadership,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(config_server::serve(
        listener,
        bundle.server_config().unwrap(),
        server.clone(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(bundle.ca_ders());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Harness {
        addr,
        tls: Arc::new(tls),
        tables,
        server,
        metrics,
        reviews,
        apiserver: apiserver_switch,
        dir,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Harness {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        // The serving certificate covers `localhost`; verification against the CA is real.
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.call(Method::GET, path, headers, "").await
    }
}
