//! Config propagation benchmark: the time from a route change to N simulated sidecars holding the
//! new table, and the operator's memory with N sidecars connected. See bench/RESULTS.md for the
//! figures and bench/config_run.sh for how to run it.
//!
//! Three roles of this one binary, chosen by `SWITCHYARD_BENCH_ROLE`:
//!
//! - *coordinator* (no role): runs one *server* process per N (`CONFIG_BENCH_SIZES`, default
//!   `10,100,1000`) so that each N starts from a fresh heap, collects their results and prints
//!   the markdown table on stdout.
//! - *server*: the operator's real code. A [`ConfigServer`] over HTTPS on 127.0.0.1 with
//!   certificates from [`certs::ensure`], reviewing tokens through a real `kube::Client` pointed at
//!   a fake apiserver on loopback that answers TokenReviews (and counts them). The route tables
//!   come from the controller's pure [`step`] over a [`World`] of N injected pods in 10
//!   namespaces, and are published with [`Tables::publish`], as the controller does. It starts the
//!   *clients* process, waits until all N hold a long-poll, then runs `CONFIG_BENCH_ROUNDS`
//!   (default 20) rounds: change one route's weights in every namespace, `step`, publish, and wait
//!   until every client has reported the new version. Its own RSS is read from /proc/self.
//! - *clients*: N simulated sidecars in a separate process, so that their memory is not the
//!   operator's. Each long-polls like sidecar/src/pod/subscribe.rs: `GET /v1/config?wait=30s` with
//!   its bearer token, `If-None-Match`, `X-Switchyard-Table-Schema` and
//!   `X-Switchyard-Sidecar-Version`, HTTP/1.1 over rustls trusting only the bench CA. Like the
//!   sidecar it keeps its connection alive between polls; `CONFIG_BENCH_KEEPALIVE=0` opens a
//!   fresh TLS connection for every poll instead (full handshake, no session resumption), as
//!   the first pod-mode sidecar did. On a `200` it parses the table, checks schema,
//!   content hash and ETag, and only then timestamps the receive and polls again.
//!
//! Times cross the process boundary as `SystemTime` nanoseconds: both processes read the same
//! CLOCK_REALTIME on this machine, so only a clock step during a round could distort a figure.
//! Propagation = client receive time − the moment before the route change was compiled, so it
//! includes `step` (compile + statuses), publish, the server's wake-ups, encoding, TLS and the
//! client's parse and checks. It excludes the controller's debounce ([`DEBOUNCE_NOTE_MS`]) and the
//! apiserver watch that precedes it in a cluster.

#[path = "procfs.rs"]
mod procfs;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_crds::compile::SECRET_OPT_IN_LABEL;
use switchyard_crds::table::{RouteTable, SCHEMA_VERSION};
use switchyard_crds::v1alpha1::{API_VERSION, ModelRoute, ProviderPool};
use switchyard_operator::certs;
use switchyard_operator::config_server::tables::{Snapshot, Tables};
use switchyard_operator::config_server::{self, ConfigServer};
use switchyard_operator::controller::{Reports, World, step};
use switchyard_operator::metrics::Metrics;
use switchyard_operator::names::INJECTED_LABEL;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, sleep, timeout};

/// The environment variable that picks this process's role.
const ROLE_VAR: &str = "SWITCHYARD_BENCH_ROLE";
/// Namespaces the pods are spread over; each has its pool, secret and routes.
const NAMESPACES: usize = 10;
/// Deployments (`app` label values) per namespace: pods of one share an audience and a table.
const APPS: usize = 2;
/// Model names routed in every namespace.
const MODELS: usize = 8;
/// The long-poll wait the sidecar asks for (sidecar `LONG_POLL_WAIT`).
const LONG_POLL_WAIT: &str = "30s";
/// The sidecar's request timeout: the wait plus its slack.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);
/// Clients doing their first fetch at once, so start-up does not open N connections in one go.
const START_CONCURRENCY: usize = 64;
/// Bound on every wait of the server role, so that the run always ends.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// `DEBOUNCE` in operator/src/controller/mod.rs (private there): the controller waits this long
/// after a watch event before compiling. Not measured here; add it.
const DEBOUNCE_NOTE_MS: u64 = 100;
/// Pause between rounds once every client polls again.
const ROUND_GAP: Duration = Duration::from_millis(200);

fn main() {
    let role = std::env::var(ROLE_VAR).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match role.as_str() {
        "server" => {
            let n = env_usize("CONFIG_BENCH_N", 10);
            let rounds = env_usize("CONFIG_BENCH_ROUNDS", 20);
            let result = runtime.block_on(server(n, rounds, keepalive()));
            println!(
                "RESULT {}",
                serde_json::to_string(&result).expect("results serialize")
            );
        }
        "clients" => runtime.block_on(clients()),
        _ => coordinator(),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn keepalive() -> bool {
    !std::env::var("CONFIG_BENCH_KEEPALIVE").is_ok_and(|v| v.trim() == "0")
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64
}

// === coordinator ===

/// What one server process measured.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Outcome {
    n: usize,
    rounds: usize,
    keepalive: bool,
    /// Every client's propagation time of every round, in ms, sorted.
    latencies_ms: Vec<f64>,
    /// Per round, the time until the last of the N clients had the new table, in ms, sorted.
    round_ms: Vec<f64>,
    /// Per round, `step` + publish, in ms, sorted.
    compile_publish_ms: Vec<f64>,
    /// Receives missing after the round timeout, or of an unexpected version.
    missing: usize,
    unexpected: usize,
    client_errors: usize,
    token_reviews: usize,
    /// Serialized size of one table, bytes.
    table_bytes: usize,
    tables: usize,
    rss_before_kib: u64,
    anon_before_kib: u64,
    rss_connected_kib: u64,
    anon_connected_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    /// Server CPU (user + system) over all rounds, ms.
    cpu_rounds_ms: f64,
    open_files_limit: u64,
}

fn coordinator() {
    let sizes: Vec<usize> = std::env::var("CONFIG_BENCH_SIZES")
        .unwrap_or_else(|_| "10,100,1000".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut outcomes = Vec::new();
    for n in sizes {
        eprintln!("== N = {n}: starting a server process");
        let output = Command::new(&exe)
            .env(ROLE_VAR, "server")
            .env("CONFIG_BENCH_N", n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .expect("the server process runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
            panic!("the server process for N = {n} failed ({})", output.status);
        };
        outcomes.push(serde_json::from_str::<Outcome>(line).expect("a result line"));
    }
    println!("{}", render(&outcomes));
}

// === server ===

/// Kills and reaps the child on drop, also on panic.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One line from the clients process.
enum Event {
    Got {
        client: usize,
        version: String,
        at_ns: u64,
    },
    Error,
}

async fn server(n: usize, rounds: usize, keepalive: bool) -> Outcome {
    let limit = open_files_limit();
    if limit < (2 * n + 512) as u64 {
        eprintln!(
            "warning: open-file limit {limit} is low for N = {n} (about {} needed); raise `ulimit -n`",
            2 * n + 512
        );
    }
    let dir = std::env::temp_dir().join(format!("switchyard-config-bench-{}", std::process::id()));
    let (bundle, _) = certs::ensure(&dir, "switchyard-system", SystemTime::now())
        .expect("certificates are generated");
    let ca_file = dir.join("ca.crt");
    assert!(ca_file.exists(), "certs::ensure writes ca.crt");

    // The sidecars' tokens, and what the apiserver says about each.
    let world_pods: Vec<Pod> = (0..n).map(pod).collect();
    let mut script = HashMap::new();
    let mut token_lines = String::new();
    for i in 0..n {
        let token = token(i);
        token_lines.push_str(&token);
        token_lines.push('\n');
        script.insert(token, review_status(i));
    }
    std::fs::write(dir.join("tokens"), token_lines).expect("write the token file");

    let reviews = Arc::new(AtomicUsize::new(0));
    let apiserver = fake_apiserver(script, reviews.clone()).await;
    let kube_config = kube::Config::new(
        format!("http://{apiserver}")
            .parse()
            .expect("a valid apiserver URL"),
    );
    let client = kube::Client::try_from(kube_config).expect("a kube client");

    // The controller's path: World → step → publish.
    let mut world = World {
        pools: (0..NAMESPACES).map(pool).collect(),
        routes: routes(0),
        secrets: (0..NAMESPACES).map(secret).collect(),
        pods: world_pods,
        ..World::default()
    };
    let first = step(
        &world,
        &Reports::default(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let table_count = first.snapshot.tables.len();
    let table_bytes = first
        .snapshot
        .tables
        .values()
        .next()
        .map(|t| {
            serde_json::to_vec(t.as_ref())
                .expect("a table serializes")
                .len()
        })
        .unwrap_or(0);
    let expected_first = expected_versions(&first.snapshot, n);
    let metrics = Metrics::new().expect("metrics register");
    let tables = Tables::new(first.snapshot);
    let config = ConfigServer::new(tables.clone(), Some(client), metrics.config.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("a bound address");
    let serving = tokio::spawn(config_server::serve(
        listener,
        bundle.server_config().expect("a TLS config"),
        config,
    ));
    eprintln!(
        "N = {n}: config server on {addr}, {table_count} tables of {table_bytes} bytes, open-file limit {limit}"
    );
    sleep(Duration::from_millis(300)).await;
    let rss_before_kib = procfs::status_kib("self", "VmRSS:");
    let anon_before_kib = procfs::status_kib("self", "RssAnon:");

    // The simulated sidecars.
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut child = ChildGuard(
        Command::new(exe)
            .env(ROLE_VAR, "clients")
            .env("CONFIG_BENCH_ADDR", addr.to_string())
            .env("CONFIG_BENCH_DIR", &dir)
            .env("CONFIG_BENCH_KEEPALIVE", if keepalive { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the clients process starts"),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stdout = child.0.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let event = parse_event(&line);
            if tx.send(event).is_err() {
                break;
            }
        }
    });

    let mut client_errors = 0;
    let started = Instant::now();
    let mut initial = vec![false; n];
    let mut have = 0;
    while have < n {
        match timeout(PHASE_TIMEOUT, rx.recv()).await {
            Ok(Some(Event::Got {
                client, version, ..
            })) => {
                assert_eq!(
                    version, expected_first[client],
                    "client {client} got another audience's table"
                );
                if !std::mem::replace(&mut initial[client], true) {
                    have += 1;
                }
            }
            Ok(Some(Event::Error)) => client_errors += 1,
            Ok(None) => panic!("the clients process ended"),
            Err(_) => panic!("only {have} of {n} clients got their first table"),
        }
    }
    wait_long_polls(&metrics, n).await;
    eprintln!(
        "N = {n}: all clients served and long-polling after {:?} ({} TokenReviews)",
        started.elapsed(),
        reviews.load(Ordering::SeqCst)
    );
    // Let start-up allocations and handshakes settle before reading the idle footprint.
    sleep(Duration::from_secs(1)).await;
    let rss_connected_kib = procfs::status_kib("self", "VmRSS:");
    let anon_connected_kib = procfs::status_kib("self", "RssAnon:");

    let mut latencies_ms = Vec::with_capacity(n * rounds);
    let mut round_ms = Vec::with_capacity(rounds);
    let mut compile_publish_ms = Vec::with_capacity(rounds);
    let (mut missing, mut unexpected) = (0, 0);
    let cpu_start = procfs::cpu_ticks("self");
    for round in 1..=rounds {
        // The change: one route's weights in every namespace, so that every pod's table changes.
        let t0 = now_ns();
        let clock = Instant::now();
        world.routes = routes(round);
        let out = step(
            &world,
            &Reports::default(),
            Time(k8s_openapi::jiff::Timestamp::now()),
        );
        let expected = expected_versions(&out.snapshot, n);
        tables.publish(out.snapshot);
        compile_publish_ms.push(clock.elapsed().as_secs_f64() * 1000.0);

        let mut done = vec![false; n];
        let mut have = 0;
        let mut last_ns = t0;
        let deadline = Instant::now() + PHASE_TIMEOUT;
        while have < n {
            let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!("the clients process ended"),
                Err(_) => break,
            };
            match event {
                Event::Got {
                    client,
                    version,
                    at_ns,
                } if version == expected[client] && !done[client] => {
                    done[client] = true;
                    have += 1;
                    last_ns = last_ns.max(at_ns);
                    latencies_ms.push(at_ns.saturating_sub(t0) as f64 / 1e6);
                }
                Event::Got { .. } => unexpected += 1,
                Event::Error => client_errors += 1,
            }
        }
        missing += n - have;
        round_ms.push(last_ns.saturating_sub(t0) as f64 / 1e6);
        eprintln!(
            "N = {n}: round {round}/{rounds}: {have} clients in {:.1} ms (step + publish {:.2} ms)",
            last_ns.saturating_sub(t0) as f64 / 1e6,
            compile_publish_ms.last().copied().unwrap_or_default()
        );
        wait_long_polls(&metrics, n).await;
        sleep(ROUND_GAP).await;
    }
    let cpu_rounds_ms =
        (procfs::cpu_ticks("self") - cpu_start) as f64 * 1000.0 / procfs::clock_ticks_per_second();
    let rss_after_kib = procfs::status_kib("self", "VmRSS:");
    let hwm_kib = procfs::status_kib("self", "VmHWM:");

    // Closing stdin ends the clients process.
    drop(child.0.stdin.take());
    drop(child);
    serving.abort();
    let _ = std::fs::remove_dir_all(&dir);
    for v in [&mut latencies_ms, &mut round_ms, &mut compile_publish_ms] {
        v.sort_by(f64::total_cmp);
    }
    Outcome {
        n,
        rounds,
        keepalive,
        latencies_ms,
        round_ms,
        compile_publish_ms,
        missing,
        unexpected,
        client_errors,
        token_reviews: reviews.load(Ordering::SeqCst),
        table_bytes,
        tables: table_count,
        rss_before_kib,
        anon_before_kib,
        rss_connected_kib,
        anon_connected_kib,
        rss_after_kib,
        hwm_kib,
        cpu_rounds_ms,
        open_files_limit: limit,
    }
}

fn parse_event(line: &str) -> Event {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("got"), Some(client), Some(version), Some(at)) => Event::Got {
            client: client.parse().expect("a client index"),
            version: version.to_string(),
            at_ns: at.parse().expect("a timestamp"),
        },
        _ => {
            eprintln!("clients: {line}");
            Event::Error
        }
    }
}

/// The table version each client's pod should be served.
fn expected_versions(snapshot: &Snapshot, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let pod = snapshot.pod(&uid(i)).expect("every pod is indexed");
            snapshot.table_for(pod).version.clone()
        })
        .collect()
}

/// Waits until `n` requests are parked in the long-poll loop.
async fn wait_long_polls(metrics: &Metrics, n: usize) {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while metrics.config.long_polls.get() < n as i64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} clients long-poll",
            metrics.config.long_polls.get()
        );
        sleep(Duration::from_millis(5)).await;
    }
}

// === the world ===

fn namespace(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

fn app(i: usize) -> String {
    format!("app-{}", (i / NAMESPACES) % APPS)
}

fn uid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn pod_name(i: usize) -> String {
    format!("{}-{i}", app(i))
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(i), "namespace": namespace(i), "uid": uid(i),
                     "labels": {"app": app(i), INJECTED_LABEL: "true"}},
        "status": {"phase": "Running"},
    }))
    .expect("a valid Pod")
}

fn pool(ns: usize) -> ProviderPool {
    let models: Vec<Value> = (0..MODELS)
        .map(|m| json!({"name": format!("m-{m}"), "inputPerMillion": "1.25", "outputPerMillion": "10", "contextWindow": 128000}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ProviderPool",
        "metadata": {"name": "pool", "namespace": format!("team-{ns}"), "generation": 1},
        "spec": {"providers": [
            {"name": "a", "api": "OpenAI", "baseUrl": "https://a.example/v1", "region": "eu",
             "apiKey": {"secretKeyRef": {"name": "keys", "key": "a"}}, "models": models},
            {"name": "b", "api": "Anthropic", "baseUrl": "https://b.example", "region": "eu",
             "apiKey": {"secretKeyRef": {"name": "keys", "key": "b"}}, "models": models},
        ]},
    }))
    .expect("a valid ProviderPool")
}

fn secret(ns: usize) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "keys", "namespace": format!("team-{ns}"),
                     "labels": {SECRET_OPT_IN_LABEL: "true"}},
        "stringData": {"a": "sk-bench-a", "b": "sk-bench-b"},
    }))
    .expect("a valid Secret")
}

/// Every namespace's routes at `round`: `MODELS` weighted routes, one more model for `app-1` pods
/// only (so that the two apps of a namespace get different tables), and route `chat-0`'s weights
/// set by the round, so that every pod's table changes with the round.
fn routes(round: usize) -> Vec<ModelRoute> {
    let mut out = Vec::new();
    for ns in 0..NAMESPACES {
        for m in 0..MODELS {
            let first = if m == 0 { round as u32 + 1 } else { 1 };
            let model = format!("m-{m}");
            out.push(route(ns, &format!("chat-{m}"), &model, &model, None, first));
        }
        out.push(route(
            ns,
            "app-1-only",
            "app-1-model",
            "m-1",
            Some("app-1"),
            1,
        ));
    }
    out
}

fn route(
    ns: usize,
    name: &str,
    model: &str,
    target: &str,
    app: Option<&str>,
    weight: u32,
) -> ModelRoute {
    let mut spec = json!({
        "model": model, "strategy": "Weighted",
        "targets": [
            {"pool": "pool", "provider": "a", "model": target, "weight": weight},
            {"pool": "pool", "provider": "b", "model": target, "weight": 1},
        ],
    });
    if let Some(app) = app {
        spec["podSelector"] = json!({"matchLabels": {"app": app}});
    }
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": format!("team-{ns}"), "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .expect("a valid ModelRoute")
}

// === the fake apiserver ===

/// A projected-token look-alike: a JWT whose payload carries an expiry an hour out, so the
/// operator caches its review for the 5-minute maximum, as with real tokens.
fn token(i: usize) -> String {
    use base64::Engine as _;
    let exp = (SystemTime::now() + Duration::from_secs(3600))
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let payload = json!({
        "aud": ["switchyard"], "exp": exp,
        "sub": format!("system:serviceaccount:{}:default", namespace(i)),
        "kubernetes.io": {"pod": {"name": pod_name(i), "uid": uid(i)}},
    });
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl")
}

fn review_status(i: usize) -> Value {
    json!({
        "authenticated": true,
        "audiences": ["switchyard"],
        "user": {
            "username": format!("system:serviceaccount:{}:default", namespace(i)),
            "extra": {
                "authentication.kubernetes.io/pod-name": [pod_name(i)],
                "authentication.kubernetes.io/pod-uid": [uid(i)],
            }
        }
    })
}

/// Answers `POST /apis/authentication.k8s.io/v1/tokenreviews` from `script` (unknown tokens are
/// not authenticated) and counts the reviews.
async fn fake_apiserver(script: HashMap<String, Value>, calls: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("a bound address");
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                sleep(Duration::from_millis(10)).await;
                continue;
            };
            let (script, calls) = (script.clone(), calls.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (script, calls) = (script.clone(), calls.clone());
                        async move {
                            let ok =
                                req.uri().path() == "/apis/authentication.k8s.io/v1/tokenreviews";
                            calls.fetch_add(1, Ordering::SeqCst);
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let review: Value = body
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or_default();
                            let token = review["spec"]["token"].as_str().unwrap_or_default();
                            let status = script.get(token).cloned().filter(|_| ok).unwrap_or_else(
                                || json!({"authenticated": false, "error": "invalid bearer token"}),
                            );
                            let answer = json!({
                                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                "metadata": {}, "spec": review["spec"], "status": status,
                            });
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(201)
                                    .header(header::CONTENT_TYPE, "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .expect("a valid response"),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

// === clients ===

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn clients() {
    let addr: SocketAddr = std::env::var("CONFIG_BENCH_ADDR")
        .expect("CONFIG_BENCH_ADDR")
        .parse()
        .expect("a socket address");
    let dir = PathBuf::from(std::env::var("CONFIG_BENCH_DIR").expect("CONFIG_BENCH_DIR"));
    let keepalive = keepalive();
    let tokens: Vec<String> = std::fs::read_to_string(dir.join("tokens"))
        .expect("the token file")
        .lines()
        .map(str::to_string)
        .collect();
    let tls = client_tls(&dir.join("ca.crt"));

    // The parent closes our stdin to stop us.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });

    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let start = Arc::new(Semaphore::new(START_CONCURRENCY));
    for (i, token) in tokens.into_iter().enumerate() {
        tokio::spawn(sidecar(
            i,
            token,
            tls.clone(),
            addr,
            keepalive,
            tx.clone(),
            start.clone(),
        ));
    }
    drop(tx);
    // One writer: lines are formatted by the clients after their timestamp is taken.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(line) = rx.recv().await {
        let _ = writeln!(out, "{line}");
        while let Ok(line) = rx.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

/// Like the sidecar's: only the bench CA, HTTP/1.1. The sidecar builds a fresh config for every
/// request, so it never resumes a TLS session; neither do we.
fn client_tls(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("the CA file") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    Arc::new(tls)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One simulated sidecar: polls forever, reporting each new table.
async fn sidecar(
    i: usize,
    token: String,
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    keepalive: bool,
    out: mpsc::UnboundedSender<String>,
    start: Arc<Semaphore>,
) {
    let mut permit = Some(start.acquire_owned().await.expect("the semaphore is open"));
    let mut known: Option<String> = None;
    let mut connection: Option<Sender> = None;
    loop {
        let polled = timeout(
            REQUEST_TIMEOUT,
            poll(
                &mut connection,
                &tls,
                addr,
                keepalive,
                &token,
                known.as_deref(),
            ),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match polled {
            Ok(Some(version)) => {
                let _ = out.send(format!("got {i} {version} {}", now_ns()));
                known = Some(version);
                // The first table is in: let the next client start.
                drop(permit.take());
            }
            Ok(None) => {}
            Err(e) => {
                let _ = out.send(format!("error client {i}: {e}"));
                connection = None;
                // The sidecar backs off from 1 s.
                sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn connect(tls: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<Sender, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One long-poll: the checked table's version on a `200`, `None` on a `304`.
async fn poll(
    connection: &mut Option<Sender>,
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    keepalive: bool,
    token: &str,
    known: Option<&str>,
) -> Result<Option<String>, BoxError> {
    let mut sender = match connection.take() {
        Some(mut sender) if keepalive => match sender.ready().await {
            Ok(()) => sender,
            Err(_) => connect(tls, addr).await?,
        },
        _ => connect(tls, addr).await?,
    };
    let mut request = Request::get(format!("/v1/config?wait={LONG_POLL_WAIT}"))
        .header(header::HOST, "localhost")
        .header("x-switchyard-sidecar-version", "bench")
        .header("x-switchyard-table-schema", SCHEMA_VERSION.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(version) = known {
        request = request.header(header::IF_NONE_MATCH, format!("\"{version}\""));
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status();
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string());
    let body = Limited::new(response.into_body(), 64 << 20)
        .collect()
        .await?
        .to_bytes();
    if keepalive {
        *connection = Some(sender);
    }
    match status {
        StatusCode::OK => {
            let table: RouteTable = serde_json::from_slice(&body)?;
            if table.schema_version != SCHEMA_VERSION {
                return Err(format!("schema {}", table.schema_version).into());
            }
            if table.content_hash() != table.version {
                return Err("version is not the content hash".into());
            }
            if etag.as_deref() != Some(table.version.as_str()) {
                return Err("ETag is not the version".into());
            }
            Ok(Some(table.version))
        }
        StatusCode::NOT_MODIFIED => Ok(None),
        status => Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into()),
    }
}

// === /proc ===

/// The soft open-file limit, from /proc/self/limits.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

// === report ===

/// The `p`-th percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn render(outcomes: &[Outcome]) -> String {
    let mut rows: BTreeMap<usize, (String, Vec<String>)> = BTreeMap::new();
    let mut row = |order: usize, name: &str, cell: String| {
        rows.entry(order)
            .or_insert_with(|| (name.to_string(), Vec::new()))
            .1
            .push(cell);
    };
    for o in outcomes {
        let l = &o.latencies_ms;
        row(
            0,
            "propagation p50, per sidecar (ms)",
            format!("{:.1}", percentile(l, 50.0)),
        );
        row(
            1,
            "propagation p99, per sidecar (ms)",
            format!("{:.1}", percentile(l, 99.0)),
        );
        row(
            2,
            "propagation max (ms)",
            format!("{:.1}", l.last().copied().unwrap_or(f64::NAN)),
        );
        row(
            3,
            "all N served, median round (ms)",
            format!("{:.1}", percentile(&o.round_ms, 50.0)),
        );
        row(
            4,
            "all N served, worst round (ms)",
            format!("{:.1}", o.round_ms.last().copied().unwrap_or(f64::NAN)),
        );
        row(
            5,
            "step + publish, median (ms)",
            format!("{:.2}", percentile(&o.compile_publish_ms, 50.0)),
        );
        row(
            6,
            "operator CPU per round (ms)",
            format!("{:.0}", o.cpu_rounds_ms / o.rounds as f64),
        );
        row(
            7,
            "RSS before clients (MiB)",
            format!("{:.1}", mib(o.rss_before_kib)),
        );
        row(
            8,
            "RSS with N connected, idle (MiB)",
            format!(
                "{:.1} (anon {:.1})",
                mib(o.rss_connected_kib),
                mib(o.anon_connected_kib)
            ),
        );
        row(
            9,
            "RSS per connected sidecar (KiB)",
            format!(
                "{:.0}",
                o.rss_connected_kib.saturating_sub(o.rss_before_kib) as f64 / o.n as f64
            ),
        );
        row(
            10,
            "RSS after the rounds / peak VmHWM (MiB)",
            format!("{:.1} / {:.1}", mib(o.rss_after_kib), mib(o.hwm_kib)),
        );
        row(11, "TokenReviews sent", o.token_reviews.to_string());
        row(
            14,
            "tables (audiences) per publish",
            format!("{} × {} B", o.tables, o.table_bytes),
        );
        row(
            12,
            "receives measured / missing / unexpected",
            format!(
                "{} / {} / {}",
                o.latencies_ms.len(),
                o.missing,
                o.unexpected
            ),
        );
        row(13, "client errors", o.client_errors.to_string());
    }
    let mut out = String::from("| metric |");
    for o in outcomes {
        out.push_str(&format!(" N = {} |", o.n));
    }
    out.push_str("\n| --- |");
    for _ in outcomes {
        out.push_str(" ---: |");
    }
    out.push('\n');
    for (name, cells) in rows.values() {
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    let Some(first) = outcomes.first() else {
        return out;
    };
    out.push_str(&format!(
        "\nRounds per N: {}; connections: {}; open-file limit {}.\n",
        first.rounds,
        if first.keepalive {
            "kept alive between polls, like the sidecar"
        } else {
            "a fresh TLS connection per poll (CONFIG_BENCH_KEEPALIVE=0)"
        },
        first.open_files_limit,
    ));
    out.push_str(&format!(
        "Not included: the controller's debounce ({DEBOUNCE_NOTE_MS} ms after the first watch event) and the apiserver watch before it.\n"
    ));
    if let Some(big) = outcomes.iter().find(|o| o.n == 1000) {
        let check = |ok: bool| if ok { "met" } else { "MISSED" };
        out.push_str(&format!(
            "Targets at N = 1000: p99 ≤ 1 s: {} ({:.1} ms; with the debounce {:.1} ms); RSS ≤ 100 MiB: {} (peak {:.1} MiB).\n",
            check(percentile(&big.latencies_ms, 99.0) <= 1000.0),
            percentile(&big.latencies_ms, 99.0),
            percentile(&big.latencies_ms, 99.0) + DEBOUNCE_NOTE_MS as f64,
            check(mib(big.hwm_kib) <= 100.0),
            mib(big.hwm_kib),
        ));
    }
    out
}
