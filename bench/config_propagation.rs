//! Config propagation benchmark: the time from a route change to N simulated sidecars holding the
//! new table, the operator's memory and CPU with N sidecars connected, and the reconnect storm
//! after a leader failover. See bench/RESULTS.md for the figures and bench/config_run.sh for how
//! to run it.
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
//!   *clients* processes, waits until all N hold a long-poll, then runs `CONFIG_BENCH_ROUNDS`
//!   (default 20) rounds: change one route's weights in every namespace, `step`, publish, and wait
//!   until every client has reported the new version. Its own RSS and CPU are read from /proc,
//!   and jemalloc's own figures (allocated, active, resident) with N connected and 12 s later,
//!   which tell live memory from allocator retention; `CONFIG_BENCH_MALLOC_STATS=<dir>` also
//!   writes jemalloc's statistics per size class at those moments.
//!   The config server runs on a runtime of its own (threads `operator`), and the fake apiserver
//!   on another (`fake-apiserver`), so that the apiserver's CPU can be taken out of the
//!   operator's and the config server can be stopped as a whole.
//! - *clients*: simulated sidecars in separate processes (`CONFIG_BENCH_CLIENT_PROCS`, default
//!   enough that each holds at most 2,500), so that their memory and CPU are not the operator's.
//!   Each long-polls like sidecar/src/pod/subscribe.rs: `GET /v1/config?wait=30s` with its bearer
//!   token, `If-None-Match`, `X-Switchyard-Table-Schema` and `X-Switchyard-Sidecar-Version`,
//!   HTTP/1.1 over rustls trusting only the bench CA. Like the sidecar it keeps its connection
//!   alive between polls; `CONFIG_BENCH_KEEPALIVE=0` opens a fresh TLS connection for every poll
//!   instead (full handshake, no session resumption), as the first pod-mode sidecar did. On a
//!   `200` it parses the table, checks schema, content hash and ETag, and only then timestamps
//!   the receive and polls again. On a failure it backs off as the sidecar does ([`Backoff`]).
//!
//! The reconnect storm (`CONFIG_BENCH_STORM=1`, the default; `0` skips it) follows the rounds.
//! The server stops its config server the way SIGTERM stops the operator (operator/src/main.rs
//! `drain`: waiting long-polls are answered and new requests refused with 503, up to 5 s for them
//! to leave, 100 ms to flush) and then drops its runtime, which closes every connection and the
//! listener at once, as the exiting process would. After `CONFIG_BENCH_STORM_GAP_MS` (default
//! 3000: a graceful step-down lets the follower take the Lease within a few seconds; a crash
//! waits out the 15 s Lease) a fresh config server (new TokenReview cache, new metrics, the same
//! tables, as a new leader would compile them) listens on the same port. Measured: the time from
//! the drain until each client's first long-poll reached the new server (p50, p99, max; the
//! handler notes it before `ConfigServer::handle`, and the poll parks once its TokenReview is
//! back; the new server's long-poll gauge must then reach N), every client error by kind,
//! TokenReviews, the operator's CPU and peak RSS over the storm, and
//! whether any client held anything but the latest table at any of its errors (it must not: a
//! sidecar keeps serving its last good table while reconnecting). One more route change after
//! the storm checks that every client is really subscribed again.
//!
//! `CONFIG_BENCH_REPORTS=1` replaces the rounds and the storm by the reporting mode of
//! bench/config_reports.rs: every namespace gets two Budgets, and each simulated sidecar also
//! reports (`POST /v1/report`) every 5 s ± 20 % and takes the leases of the answer, as a sidecar
//! with budgets does; measured are the operator's CPU and RSS and the reports as the clients saw
//! them.
//!
//! Times cross the process boundary as `SystemTime` nanoseconds: all processes read the same
//! CLOCK_REALTIME on this machine, so only a clock step during a round could distort a figure.
//! Propagation = client receive time − the moment before the route change was compiled, so it
//! includes `step` (compile + statuses), publish, the server's wake-ups, encoding, TLS and the
//! client's parse and checks. It excludes the controller's debounce ([`DEBOUNCE_NOTE_MS`]) and the
//! apiserver watch that precedes it in a cluster.

#[path = "procfs.rs"]
mod procfs;
#[path = "config_reports.rs"]
mod report_load;

/// The allocator the operator binary uses (operator/src/main.rs), so that the server role's RSS
/// is the operator's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
use rand::Rng as _;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_crds::compile::SECRET_OPT_IN_LABEL;
use switchyard_crds::table::{RouteTable, SCHEMA_VERSION};
use switchyard_crds::v1alpha1::{API_VERSION, ModelRoute, ProviderPool};
use switchyard_operator::certs;
use switchyard_operator::config_server::ConfigServer;
use switchyard_operator::config_server::tables::{Snapshot, Tables};
use switchyard_operator::controller::{Reports, World, step};
use switchyard_operator::listener::{self, Limits};
use switchyard_operator::metrics::Metrics;
use switchyard_operator::names::INJECTED_LABEL;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, mpsc, watch};
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
/// The sidecar's TCP connect timeout (its `HttpConnector`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients per process doing their first fetch at once, so start-up does not open N connections
/// in one go.
const START_CONCURRENCY: usize = 64;
/// The most simulated sidecars one clients process holds by default.
const CLIENTS_PER_PROCESS: usize = 2500;
/// Bound on every wait of the server role, so that the run always ends.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// `DEBOUNCE` in operator/src/controller/mod.rs (private there): the controller waits this long
/// after a watch event before compiling. Not measured here; add it.
const DEBOUNCE_NOTE_MS: u64 = 100;
/// Pause between rounds once every client polls again.
const ROUND_GAP: Duration = Duration::from_millis(200);
/// `DRAIN_TIMEOUT`, `DRAIN_POLL` and `DRAIN_FLUSH` of operator/src/main.rs (private there).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DRAIN_POLL: Duration = Duration::from_millis(20);
const DRAIN_FLUSH: Duration = Duration::from_millis(100);
/// The backlog of the operator's listeners (tokio's `TcpListener::bind`).
const BACKLOG: u32 = 1024;
/// Names of the server process's threads; bench-only threads are left out of the operator's CPU.
const OPERATOR_THREADS: &str = "operator";
const APISERVER_THREADS: &str = "fake-apiserver";
const READER_THREADS: &str = "bench-reader";
const SAMPLER_THREADS: &str = "bench-sampler";
/// How often the storm samples the RSS.
const STORM_SAMPLE: Duration = Duration::from_millis(20);
/// How long the idle fleet is left before the settled reading: longer than jemalloc's default
/// `dirty_decay_ms` (10 s), so that pages the handshakes dirtied and freed have been purged.
const SETTLE: Duration = Duration::from_secs(12);

fn main() {
    // Each sidecar is a socket in the server process and one in a clients process.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let role = std::env::var(ROLE_VAR).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match role.as_str() {
        "server" => {
            let settings = Settings::from_env();
            let result = runtime.block_on(server(settings));
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

fn env_flag(name: &str, default: bool) -> bool {
    std::env::var(name).map_or(default, |v| v.trim() != "0")
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64
}

fn ms_since(t0_ns: u64, at_ns: u64) -> f64 {
    at_ns.saturating_sub(t0_ns) as f64 / 1e6
}

/// What a server process is asked to do.
struct Settings {
    n: usize,
    rounds: usize,
    keepalive: bool,
    client_procs: usize,
    /// `None`: no storm.
    storm_gap: Option<Duration>,
    /// `Some`: the reporting mode (`CONFIG_BENCH_REPORTS=1`, bench/config_reports.rs) instead
    /// of the rounds and the storm.
    reports: Option<report_load::ReportSettings>,
}

impl Settings {
    fn from_env() -> Self {
        let n = env_usize("CONFIG_BENCH_N", 10);
        Self {
            n,
            rounds: env_usize("CONFIG_BENCH_ROUNDS", 20),
            keepalive: env_flag("CONFIG_BENCH_KEEPALIVE", true),
            client_procs: env_usize("CONFIG_BENCH_CLIENT_PROCS", n.div_ceil(CLIENTS_PER_PROCESS))
                .min(n),
            storm_gap: env_flag("CONFIG_BENCH_STORM", true).then(|| {
                let ms = std::env::var("CONFIG_BENCH_STORM_GAP_MS")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(3000);
                Duration::from_millis(ms)
            }),
            reports: report_load::ReportSettings::from_env(),
        }
    }
}

// === coordinator ===

/// What one server process measured.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Outcome {
    n: usize,
    rounds: usize,
    keepalive: bool,
    client_procs: usize,
    /// Every client's propagation time of every round, in ms, sorted.
    latencies_ms: Vec<f64>,
    /// Per round, the time until the last of the N clients had the new table, in ms, sorted.
    round_ms: Vec<f64>,
    /// Per round, `step` + publish, in ms, sorted.
    compile_publish_ms: Vec<f64>,
    /// Receives missing after the round timeout, or of an unexpected version.
    missing: usize,
    unexpected: usize,
    /// Client errors outside the storm, by kind.
    client_errors: BTreeMap<String, usize>,
    start_ms: f64,
    token_reviews: usize,
    /// Serialized size of one table, bytes.
    table_bytes: usize,
    tables: usize,
    rss_before_kib: u64,
    anon_before_kib: u64,
    rss_connected_kib: u64,
    anon_connected_kib: u64,
    rss_after_kib: u64,
    /// jemalloc's figures at the same moment: live memory apart from pages freed in the rounds.
    heap_after: Heap,
    hwm_kib: u64,
    /// jemalloc's own figures before the clients and with N connected (idle), read with the
    /// RSS figures of the same moment.
    heap_before: Heap,
    heap_connected: Heap,
    /// The same, [`SETTLE`] later: what is left once jemalloc has had time to purge the pages
    /// that the handshakes dirtied.
    rss_settled_kib: u64,
    heap_settled: Heap,
    /// CPU (user + system) over all rounds, ms: the whole server process, and without the
    /// bench's own threads (fake apiserver, line readers).
    cpu_rounds_ms: f64,
    cpu_rounds_operator_ms: f64,
    open_files_limit: u64,
    storm: Option<StormOutcome>,
    reports: Option<report_load::ReportsOutcome>,
}

/// What the reconnect storm measured.
#[derive(Serialize, Deserialize, Debug, Default)]
struct StormOutcome {
    gap_ms: f64,
    /// From the drain to the old server's runtime dropped.
    drain_ms: f64,
    /// From the drain until 50 %, 99 % and all N sent their first long-poll to the new server
    /// (each parks there as soon as its TokenReview is back).
    held_p50_ms: f64,
    held_p99_ms: f64,
    held_max_ms: f64,
    /// Clients that long-polled the new server, and long-polls parked there at the end.
    arrived: usize,
    held: usize,
    errors: BTreeMap<String, usize>,
    /// Error reports of a client holding anything but the latest table (or none).
    lost: usize,
    /// Tables received during the storm (none expected: nothing changed).
    tables_received: usize,
    token_reviews: usize,
    cpu_ms: f64,
    cpu_operator_ms: f64,
    peak_rss_kib: u64,
    rss_reconnected_kib: u64,
    /// The route change after the storm: all N served, ms, and receives missing.
    after_round_ms: f64,
    after_missing: usize,
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

/// One line from a clients process.
enum Event {
    Got {
        client: usize,
        version: String,
        at_ns: u64,
    },
    Error {
        client: usize,
        kind: String,
        /// The version the client held (serves) at the error, `none` before its first.
        held: String,
    },
    /// One report's outcome (reporting mode).
    Report(report_load::ReportEvent),
}

/// An operator's config server on a runtime of its own: stopping it drops every connection at
/// once, as the operator process exiting would.
struct Operator {
    runtime: Option<Runtime>,
    server: Arc<ConfigServer>,
    metrics: Metrics,
    addr: SocketAddr,
    /// When each token's first long-poll (a request with `If-None-Match`) arrived, ns.
    arrivals: Arc<std::sync::Mutex<HashMap<Vec<u8>, u64>>>,
    /// What a successor starts from.
    tables: Tables,
    apiserver: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
}

impl Operator {
    /// A fresh config server (new TokenReview cache, new metrics) answering from `tables` on
    /// `addr` (port 0: any), reviewing tokens at the fake apiserver.
    fn start(
        addr: SocketAddr,
        tables: Tables,
        apiserver: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(OPERATOR_THREADS)
            .enable_all()
            .build()
            .expect("the operator runtime starts");
        // The kube client's worker and every connection task belong to this runtime.
        let entered = runtime.enter();
        let kube_config = kube::Config::new(
            format!("http://{apiserver}")
                .parse()
                .expect("a valid apiserver URL"),
        );
        let client = kube::Client::try_from(kube_config).expect("a kube client");
        let metrics = Metrics::new().expect("metrics register");
        let server = ConfigServer::new(tables.clone(), Some(client), metrics.config.clone());
        // Like the operator's bind (SO_REUSEADDR, backlog 1024), so that a new server can take
        // the port while the old connections are in TIME_WAIT.
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(addr).expect("bind the config port");
        let listener = socket.listen(BACKLOG).expect("listen");
        let addr = listener.local_addr().expect("a bound address");
        // `config_server::serve` with a note of each token's first long-poll.
        let arrivals = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let handler = {
            let (server, arrivals) = (server.clone(), arrivals.clone());
            move |req: Request<listener::RequestBody>| {
                note_arrival(&arrivals, &req);
                server.clone().handle(req)
            }
        };
        let limits = Limits::CONFIG;
        runtime.spawn(listener::serve(
            listener,
            Some(tls.clone()),
            "config",
            limits,
            handler,
        ));
        drop(entered);
        Self {
            runtime: Some(runtime),
            server,
            metrics,
            addr,
            arrivals,
            tables,
            apiserver,
            tls,
        }
    }

    /// What SIGTERM does (operator/src/main.rs `drain`), then the process's exit.
    async fn stop(mut self) {
        self.server.drain();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.metrics.config.long_polls.get() > 0 && Instant::now() < deadline {
            sleep(DRAIN_POLL).await;
        }
        sleep(DRAIN_FLUSH).await;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    fn long_polls(&self) -> usize {
        self.metrics.config.long_polls.get().max(0) as usize
    }

    /// Waits until `n` requests are parked in the long-poll loop.
    async fn wait_long_polls(&self, n: usize) {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        while self.long_polls() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} clients long-poll",
                self.long_polls()
            );
            sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        // NB: dropping a runtime inside another one's task would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Notes when `req`'s token first long-polled here.
fn note_arrival<B>(arrivals: &std::sync::Mutex<HashMap<Vec<u8>, u64>>, req: &Request<B>) {
    let (Some(token), true) = (
        req.headers().get(header::AUTHORIZATION),
        req.headers().contains_key(header::IF_NONE_MATCH),
    ) else {
        return;
    };
    let mut arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    if !arrivals.contains_key(token.as_bytes()) {
        arrivals.insert(token.as_bytes().to_vec(), now_ns());
    }
}

/// The server process's view of the simulated sidecars.
struct Fleet {
    n: usize,
    rx: mpsc::UnboundedReceiver<Event>,
    /// The table version each client must hold now.
    expected: Vec<String>,
    errors: BTreeMap<String, usize>,
    /// Errors of a client that held anything but `expected`.
    lost: usize,
    /// Reports the clients made, as they saw them (reporting mode).
    reports: Vec<report_load::ReportEvent>,
    _children: Vec<ChildGuard>,
}

impl Fleet {
    /// Starts the clients processes, `procs` of them, against `addr`.
    fn start(settings: &Settings, addr: SocketAddr, dir: &Path, expected: Vec<String>) -> Self {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let (tx, rx) = mpsc::unbounded_channel();
        let per = settings.n.div_ceil(settings.client_procs);
        let mut children = Vec::new();
        for first in (0..settings.n).step_by(per) {
            let count = per.min(settings.n - first);
            let mut child = ChildGuard(
                Command::new(&exe)
                    .env(ROLE_VAR, "clients")
                    .env("CONFIG_BENCH_ADDR", addr.to_string())
                    .env("CONFIG_BENCH_DIR", dir)
                    .env("CONFIG_BENCH_FIRST", first.to_string())
                    .env("CONFIG_BENCH_COUNT", count.to_string())
                    .env(
                        "CONFIG_BENCH_KEEPALIVE",
                        if settings.keepalive { "1" } else { "0" },
                    )
                    .env(
                        "CONFIG_BENCH_REPORTS",
                        if settings.reports.is_some() { "1" } else { "0" },
                    )
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("a clients process starts"),
            );
            let stdout = child.0.stdout.take().expect("piped stdout");
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(READER_THREADS.to_string())
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(parse_event(&line)).is_err() {
                            break;
                        }
                    }
                })
                .expect("a reader thread");
            children.push(child);
        }
        Self {
            n: settings.n,
            rx,
            expected,
            errors: BTreeMap::new(),
            lost: 0,
            reports: Vec::new(),
            _children: children,
        }
    }

    /// The next event within `deadline`; errors are tallied here and not returned.
    async fn next_got(&mut self, deadline: Instant) -> Option<(usize, String, u64)> {
        loop {
            let event = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!("the clients processes ended"),
                Err(_) => return None,
            };
            match event {
                Event::Got {
                    client,
                    version,
                    at_ns,
                } => return Some((client, version, at_ns)),
                Event::Error { client, kind, held } => {
                    *self.errors.entry(kind).or_default() += 1;
                    if held != self.expected[client] {
                        self.lost += 1;
                    }
                }
                Event::Report(report) => self.reports.push(report),
            }
        }
    }

    /// Tallies what arrived without waiting; the number of tables received.
    fn drain_events(&mut self) -> usize {
        let mut tables = 0;
        while let Ok(event) = self.rx.try_recv() {
            match event {
                Event::Got { .. } => tables += 1,
                Event::Error { client, kind, held } => {
                    *self.errors.entry(kind).or_default() += 1;
                    if held != self.expected[client] {
                        self.lost += 1;
                    }
                }
                Event::Report(report) => self.reports.push(report),
            }
        }
        tables
    }
}

/// What one round measured.
struct Round {
    /// Each client's propagation, ms.
    latencies_ms: Vec<f64>,
    /// Until the last client had it, ms.
    all_ms: f64,
    compile_publish_ms: f64,
    missing: usize,
    unexpected: usize,
}

/// One route change: `step` with the routes of `round`, publish, and wait for every client.
async fn round(world: &mut World, tables: &Tables, fleet: &mut Fleet, round: usize) -> Round {
    // The change: one route's weights in every namespace, so that every pod's table changes.
    let t0 = now_ns();
    let clock = Instant::now();
    world.routes = routes(round);
    let out = step(
        world,
        &Reports::default(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    fleet.expected = expected_versions(&out.snapshot, fleet.n);
    tables.publish(out.snapshot);
    let compile_publish_ms = clock.elapsed().as_secs_f64() * 1000.0;

    let mut done = vec![false; fleet.n];
    let (mut have, mut unexpected) = (0, 0);
    let mut latencies_ms = Vec::with_capacity(fleet.n);
    let mut last_ns = t0;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while have < fleet.n {
        let Some((client, version, at_ns)) = fleet.next_got(deadline).await else {
            break;
        };
        if version == fleet.expected[client] && !done[client] {
            done[client] = true;
            have += 1;
            last_ns = last_ns.max(at_ns);
            latencies_ms.push(ms_since(t0, at_ns));
        } else {
            unexpected += 1;
        }
    }
    Round {
        latencies_ms,
        all_ms: ms_since(t0, last_ns),
        compile_publish_ms,
        missing: fleet.n - have,
        unexpected,
    }
}

/// CPU of this process, ms: in all, and without the bench's own threads.
fn cpu_ms() -> (f64, f64) {
    let ticks = procfs::clock_ticks_per_second();
    let all = procfs::cpu_ticks("self") as f64;
    let bench = threads_cpu_ticks(&[APISERVER_THREADS, READER_THREADS, SAMPLER_THREADS]) as f64;
    (all * 1000.0 / ticks, (all - bench) * 1000.0 / ticks)
}

async fn server(settings: Settings) -> Outcome {
    let n = settings.n;
    let limit = open_files_limit();
    if limit < (n + 512) as u64 {
        eprintln!(
            "warning: open-file limit {limit} is low for N = {n} (about {} needed); raise `ulimit -n`",
            n + 512
        );
    }
    let dir = std::env::temp_dir().join(format!("switchyard-config-bench-{}", std::process::id()));
    let (bundle, _) = certs::ensure(&dir, "switchyard-system", SystemTime::now())
        .expect("certificates are generated");
    assert!(dir.join("ca.crt").exists(), "certs::ensure writes ca.crt");
    let tls = bundle.server_config().expect("a TLS config");

    // The sidecars' tokens, and what the apiserver says about each.
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
    let (apiserver_runtime, apiserver) = fake_apiserver(script, reviews.clone());

    // The controller's path: World → step → publish.
    let mut world = World {
        pools: (0..NAMESPACES).map(pool).collect(),
        routes: routes(0),
        secrets: (0..NAMESPACES).map(secret).collect(),
        pods: (0..n).map(pod).collect(),
        budgets: if settings.reports.is_some() {
            report_load::budgets()
        } else {
            Vec::new()
        },
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
    let tables = Tables::new(first.snapshot);
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let operator = Operator::start(any_port, tables.clone(), apiserver, tls.clone());
    let addr = operator.addr;
    eprintln!(
        "N = {n}: config server on {addr}, {table_count} tables of {table_bytes} bytes, open-file limit {limit}, {} clients processes",
        settings.client_procs
    );
    sleep(Duration::from_millis(300)).await;
    let rss_before_kib = procfs::status_kib("self", "VmRSS:");
    let anon_before_kib = procfs::status_kib("self", "RssAnon:");
    let heap_before = Heap::read();
    Heap::dump(n, "before");

    let started = Instant::now();
    let mut fleet = Fleet::start(&settings, addr, &dir, expected_first);
    let mut initial = vec![false; n];
    let mut have = 0;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while have < n {
        let Some((client, version, _)) = fleet.next_got(deadline).await else {
            panic!("only {have} of {n} clients got their first table");
        };
        assert_eq!(
            version, fleet.expected[client],
            "client {client} got another audience's table"
        );
        if !std::mem::replace(&mut initial[client], true) {
            have += 1;
        }
    }
    operator.wait_long_polls(n).await;
    let start_ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "N = {n}: all clients served and long-polling after {start_ms:.0} ms ({} TokenReviews)",
        reviews.load(Ordering::SeqCst)
    );
    // Let start-up allocations and handshakes settle before reading the idle footprint.
    sleep(Duration::from_secs(1)).await;
    let rss_connected_kib = procfs::status_kib("self", "VmRSS:");
    let anon_connected_kib = procfs::status_kib("self", "RssAnon:");
    let heap_connected = Heap::read();
    Heap::dump(n, "connected");
    eprintln!(
        "N = {n}: connected, idle: RSS {:.1} MiB, {heap_connected}",
        mib(rss_connected_kib)
    );
    sleep(SETTLE).await;
    let rss_settled_kib = procfs::status_kib("self", "VmRSS:");
    let heap_settled = Heap::read();
    Heap::dump(n, "settled");
    eprintln!(
        "N = {n}: {} s later: RSS {:.1} MiB, {heap_settled}",
        SETTLE.as_secs(),
        mib(rss_settled_kib)
    );

    let mut outcome = Outcome {
        n,
        rounds: settings.rounds,
        keepalive: settings.keepalive,
        client_procs: settings.client_procs,
        start_ms,
        table_bytes,
        tables: table_count,
        rss_before_kib,
        anon_before_kib,
        rss_connected_kib,
        anon_connected_kib,
        heap_before,
        heap_connected,
        rss_settled_kib,
        heap_settled,
        open_files_limit: limit,
        ..Outcome::default()
    };
    if let Some(reports) = &settings.reports {
        let snapshot = tables.current();
        let measured = report_load::measure(&operator, &mut fleet, &dir, reports, &reviews).await;
        outcome.reports = Some(measured);
        outcome.client_errors = std::mem::take(&mut fleet.errors);
        outcome.token_reviews = reviews.load(Ordering::SeqCst);
        drop(fleet);
        drop(operator);
        apiserver_runtime.shutdown_background();
        // With the clients gone, so that they do not share the cores with it.
        if let Some(measured) = &mut outcome.reports {
            measured.lease_book_us = report_load::lease_book_us(&snapshot, n);
        }
        let _ = std::fs::remove_dir_all(&dir);
        return outcome;
    }
    let cpu_start = cpu_ms();
    for r in 1..=settings.rounds {
        let measured = round(&mut world, &tables, &mut fleet, r).await;
        eprintln!(
            "N = {n}: round {r}/{}: {} clients in {:.1} ms (step + publish {:.2} ms)",
            settings.rounds,
            n - measured.missing,
            measured.all_ms,
            measured.compile_publish_ms
        );
        outcome.latencies_ms.extend(measured.latencies_ms);
        outcome.round_ms.push(measured.all_ms);
        outcome.compile_publish_ms.push(measured.compile_publish_ms);
        outcome.missing += measured.missing;
        outcome.unexpected += measured.unexpected;
        operator.wait_long_polls(n).await;
        sleep(ROUND_GAP).await;
    }
    let cpu_end = cpu_ms();
    outcome.cpu_rounds_ms = cpu_end.0 - cpu_start.0;
    outcome.cpu_rounds_operator_ms = cpu_end.1 - cpu_start.1;
    outcome.rss_after_kib = procfs::status_kib("self", "VmRSS:");
    outcome.heap_after = Heap::read();
    outcome.hwm_kib = procfs::status_kib("self", "VmHWM:");
    fleet.drain_events();
    outcome.client_errors = std::mem::take(&mut fleet.errors);
    outcome.unexpected += std::mem::take(&mut fleet.lost);
    outcome.token_reviews = reviews.load(Ordering::SeqCst);

    if let Some(gap) = settings.storm_gap {
        let storm = storm(
            operator,
            gap,
            &mut fleet,
            &reviews,
            (&mut world, &tables, settings.rounds + 1),
        )
        .await;
        outcome.storm = Some(storm.0);
        drop(storm.1);
    }
    drop(fleet);
    apiserver_runtime.shutdown_background();
    let _ = std::fs::remove_dir_all(&dir);
    for v in [
        &mut outcome.latencies_ms,
        &mut outcome.round_ms,
        &mut outcome.compile_publish_ms,
    ] {
        v.sort_by(f64::total_cmp);
    }
    outcome
}

/// The leader goes away and a new one starts after `gap`; see the module's header. Returns the
/// figures and the new operator.
async fn storm(
    old: Operator,
    gap: Duration,
    fleet: &mut Fleet,
    reviews: &AtomicUsize,
    (world, tables, after_round): (&mut World, &Tables, usize),
) -> (StormOutcome, Operator) {
    let n = fleet.n;
    let addr = old.addr;
    let reviews_before = reviews.load(Ordering::SeqCst);
    let cpu_before = cpu_ms();
    let t0 = now_ns();
    let stop_sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sampler(stop_sampling.clone());
    eprintln!("N = {n}: storm: draining and stopping the config server");
    let successor = (old.tables.clone(), old.apiserver, old.tls.clone());
    old.stop().await;
    let drain_ms = ms_since(t0, now_ns());
    // The gap counts from the moment the old leader is gone.
    let mut tables_received = 0;
    let gap_end = Instant::now() + gap;
    while Instant::now() < gap_end {
        tables_received += fleet.drain_events();
        sleep(Duration::from_millis(10)).await;
    }
    let new = Operator::start(addr, successor.0, successor.1, successor.2);
    eprintln!(
        "N = {n}: storm: a new config server on {addr} after {:.0} ms",
        ms_since(t0, now_ns())
    );
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let arrived = || new.arrivals.lock().map_or(0, |a| a.len());
    while arrived() < n && Instant::now() < deadline {
        tables_received += fleet.drain_events();
        sleep(Duration::from_millis(10)).await;
    }
    // The last ones arrived: let their TokenReviews finish and their polls park.
    let parked = Instant::now();
    while new.long_polls() < n && parked.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(5)).await;
    }
    let held = new.long_polls();
    stop_sampling.store(true, Ordering::SeqCst);
    let (peak_rss_kib, sampler_ticks) = sampler.join().expect("the sampler thread");
    let cpu_after = cpu_ms();
    let sampler_ms = sampler_ticks as f64 * 1000.0 / procfs::clock_ticks_per_second();
    tables_received += fleet.drain_events();
    let mut arrivals: Vec<f64> = new
        .arrivals
        .lock()
        .map(|a| a.values().map(|at| ms_since(t0, *at)).collect())
        .unwrap_or_default();
    arrivals.sort_by(f64::total_cmp);
    eprintln!(
        "N = {n}: storm: {} of {n} long-polled the new server, {held} parked, after {:.0} ms; errors {:?}",
        arrivals.len(),
        ms_since(t0, now_ns()),
        fleet.errors
    );
    sleep(Duration::from_secs(1)).await;
    let rss_reconnected_kib = procfs::status_kib("self", "VmRSS:");
    let mut outcome = StormOutcome {
        gap_ms: gap.as_secs_f64() * 1000.0,
        drain_ms,
        held_p50_ms: percentile(&arrivals, 50.0),
        held_p99_ms: percentile(&arrivals, 99.0),
        held_max_ms: if arrivals.len() == n {
            arrivals.last().copied().unwrap_or(f64::NAN)
        } else {
            f64::NAN
        },
        arrived: arrivals.len(),
        held,
        errors: std::mem::take(&mut fleet.errors),
        lost: std::mem::take(&mut fleet.lost),
        tables_received,
        token_reviews: reviews.load(Ordering::SeqCst) - reviews_before,
        cpu_ms: cpu_after.0 - cpu_before.0 - sampler_ms,
        cpu_operator_ms: cpu_after.1 - cpu_before.1 - sampler_ms,
        peak_rss_kib,
        rss_reconnected_kib,
        ..StormOutcome::default()
    };
    // Every client subscribed again: one more change reaches all of them.
    let after = round(world, tables, fleet, after_round).await;
    eprintln!(
        "N = {n}: after the storm: {} clients in {:.1} ms",
        n - after.missing,
        after.all_ms
    );
    outcome.after_round_ms = after.all_ms;
    outcome.after_missing = after.missing;
    (outcome, new)
}

/// Samples the RSS until `stop`; returns its peak and the thread's own CPU ticks. A thread of its
/// own, so that reading /proc is not counted as the operator's CPU (a thread that has exited is
/// no longer listed, so it reports its CPU itself).
fn sampler(stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::Builder::new()
        .name(SAMPLER_THREADS.to_string())
        .spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::SeqCst) {
                peak = peak.max(procfs::status_kib("self", "VmRSS:"));
                std::thread::sleep(STORM_SAMPLE);
            }
            (peak, procfs::cpu_ticks("thread-self"))
        })
        .expect("a sampler thread")
}

fn parse_event(line: &str) -> Event {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("got"), Some(client), Some(version), Some(at)) => Event::Got {
            client: client.parse().expect("a client index"),
            version: version.to_string(),
            at_ns: at.parse().expect("a timestamp"),
        },
        (Some("error"), Some(client), Some(kind), Some(held)) => Event::Error {
            client: client.parse().expect("a client index"),
            kind: kind.to_string(),
            held: held.to_string(),
        },
        (Some("report"), ..) => {
            let fields: Vec<&str> = line.split(' ').skip(1).collect();
            Event::Report(
                report_load::parse_report(&fields)
                    .unwrap_or_else(|| panic!("a clients process wrote {line:?}")),
            )
        }
        _ => panic!("a clients process wrote {line:?}"),
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

/// Pod `i`, a replica of the StatefulSet named after its app: the pods of one app share a
/// workload, hence an audience and its table, as a real fleet's replicas do (a bare pod would be
/// its own workload, with a table of its own).
fn pod(i: usize) -> Pod {
    let owner = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": app(i),
                       "uid": format!("{}-{}", namespace(i), app(i)), "controller": true});
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(i), "namespace": namespace(i), "uid": uid(i),
                     "labels": {"app": app(i), INJECTED_LABEL: "true"},
                     "ownerReferences": [owner]},
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
/// not authenticated) and counts the reviews, on a runtime of its own whose threads are left out
/// of the operator's CPU.
fn fake_apiserver(
    script: HashMap<String, Value>,
    calls: Arc<AtomicUsize>,
) -> (Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(APISERVER_THREADS)
        .enable_all()
        .build()
        .expect("the apiserver runtime starts");
    let entered = runtime.enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking socket");
    let listener = TcpListener::from_std(listener).expect("a tokio listener");
    let addr = listener.local_addr().expect("a bound address");
    let script = Arc::new(script);
    runtime.spawn(async move {
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
    drop(entered);
    (runtime, addr)
}

// === clients ===

/// Why a poll failed, as the report counts it.
struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
        }
    }
}

async fn clients() {
    let addr: SocketAddr = std::env::var("CONFIG_BENCH_ADDR")
        .expect("CONFIG_BENCH_ADDR")
        .parse()
        .expect("a socket address");
    let dir = PathBuf::from(std::env::var("CONFIG_BENCH_DIR").expect("CONFIG_BENCH_DIR"));
    let first = env_usize("CONFIG_BENCH_FIRST", 0);
    let count = env_usize("CONFIG_BENCH_COUNT", usize::MAX);
    let keepalive = env_flag("CONFIG_BENCH_KEEPALIVE", true);
    let reports = env_flag("CONFIG_BENCH_REPORTS", false);
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
    let shown = Arc::new(AtomicUsize::new(0));
    for (i, token) in tokens.into_iter().enumerate().skip(first).take(count) {
        // In the reporting mode each sidecar also reports, from the table its poll accepted.
        let held = reports.then(|| {
            let (held, table) = watch::channel(None);
            let reporter = report_load::Reporter {
                i,
                token: token.clone(),
                tls: tls.clone(),
                addr,
                table,
                out: tx.clone(),
                dir: dir.clone(),
            };
            tokio::spawn(reporter.run());
            held
        });
        let sidecar = Sidecar {
            i,
            token,
            tls: tls.clone(),
            addr,
            keepalive,
            out: tx.clone(),
            shown: shown.clone(),
            held,
        };
        tokio::spawn(sidecar.run(start.clone()));
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
    // No ALPN, as the sidecar's client (hyper-rustls offers none for an HTTP/1-only client).
    tls.resumption = rustls::client::Resumption::disabled();
    Arc::new(tls)
}

/// The sidecar's reconnect delays (sidecar/src/pod/subscribe.rs `Backoff`, mirrored: the bench
/// is built with the operator's dependencies only): exponential from 1 s to 30 s, each delay
/// uniform in [0, cap] (full jitter), back to the first step after a success.
struct Backoff {
    next_cap: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self {
            next_cap: Self::MIN,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let cap = self.next_cap;
        self.next_cap = (cap * 2).min(Self::MAX);
        cap.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    fn reset(&mut self) {
        self.next_cap = Self::MIN;
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One simulated sidecar.
struct Sidecar {
    i: usize,
    token: String,
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    keepalive: bool,
    out: mpsc::UnboundedSender<String>,
    /// Error messages written to stderr so far, by the whole process.
    shown: Arc<AtomicUsize>,
    /// Where each accepted table goes for the report loop (reporting mode).
    held: Option<watch::Sender<Option<Arc<RouteTable>>>>,
}

impl Sidecar {
    /// Polls forever, reporting each new table and each failure with the table it still holds.
    async fn run(self, start: Arc<Semaphore>) {
        let mut permit = Some(start.acquire_owned().await.expect("the semaphore is open"));
        let mut known: Option<String> = None;
        let mut connection: Option<Sender> = None;
        let mut backoff = Backoff::new();
        loop {
            let polled = timeout(
                REQUEST_TIMEOUT,
                self.poll(&mut connection, known.as_deref()),
            )
            .await
            .unwrap_or_else(|_| Err(Failure::new("timeout", "the request timed out")));
            match polled {
                Ok(Some(table)) => {
                    let version = table.version.clone();
                    let _ = self
                        .out
                        .send(format!("got {} {version} {}", self.i, now_ns()));
                    if let Some(held) = &self.held {
                        held.send_replace(Some(Arc::new(table)));
                    }
                    known = Some(version);
                    // The first table is in: let the next client start.
                    drop(permit.take());
                    backoff.reset();
                }
                Ok(None) => backoff.reset(),
                Err(failure) => {
                    // A sidecar keeps serving what it holds; report what that is.
                    let held = known.as_deref().unwrap_or("none");
                    let _ = self.out.send(format!(
                        "error {} {} {held} {}",
                        self.i,
                        failure.kind,
                        now_ns()
                    ));
                    if self.shown.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("client {}: {}: {}", self.i, failure.kind, failure.message);
                    }
                    sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// A kept-alive connection if it is still open, else a new one.
    async fn connection(&self, kept: Option<Sender>) -> Result<Sender, Failure> {
        if let Some(mut sender) = kept.filter(|_| self.keepalive)
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        open_connection(self.addr, &self.tls).await
    }

    /// One long-poll: the checked table on a `200`, `None` on a `304`.
    async fn poll(
        &self,
        connection: &mut Option<Sender>,
        known: Option<&str>,
    ) -> Result<Option<RouteTable>, Failure> {
        let mut sender = self.connection(connection.take()).await?;
        let mut request = Request::get(format!("/v1/config?wait={LONG_POLL_WAIT}"))
            .header(header::HOST, "localhost")
            .header("x-switchyard-sidecar-version", "bench")
            .header("x-switchyard-table-schema", SCHEMA_VERSION.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(version) = known {
            request = request.header(header::IF_NONE_MATCH, format!("\"{version}\""));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        // A connection the server closed mid-request (or before it) is "closed".
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::new("closed", e))?;
        let status = response.status();
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string());
        let body = Limited::new(response.into_body(), 64 << 20)
            .collect()
            .await
            .map_err(|e| Failure::new("closed", e))?
            .to_bytes();
        // A complete answer, whatever its status, leaves the connection usable, as in the
        // sidecar's pool.
        *connection = Some(sender);
        match status {
            StatusCode::OK => check(&body, etag.as_deref()).map(Some),
            StatusCode::NOT_MODIFIED => Ok(None),
            StatusCode::SERVICE_UNAVAILABLE => Err(Failure::new(
                "503",
                String::from_utf8_lossy(&body).into_owned(),
            )),
            status => Err(Failure::new(
                "status",
                format!("{status}: {}", String::from_utf8_lossy(&body)),
            )),
        }
    }
}

/// A new TLS connection to the config server at `addr`, HTTP/1.1, trusting what `tls` trusts.
async fn open_connection(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Sender, Failure> {
    let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(Failure::new("timeout", "connect timed out")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Failure::new("refused", e));
        }
        Ok(Err(e)) => return Err(Failure::new("connect", e)),
        Ok(Ok(tcp)) => tcp,
    };
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let name = ServerName::try_from("localhost").expect("a server name");
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| Failure::new("tls", e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::new("closed", e))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The sidecar's checks of a served table; the table.
fn check(body: &[u8], etag: Option<&str>) -> Result<RouteTable, Failure> {
    let table: RouteTable =
        serde_json::from_slice(body).map_err(|e| Failure::new("refused-table", e))?;
    if table.schema_version != SCHEMA_VERSION {
        let message = format!("schema {}", table.schema_version);
        return Err(Failure::new("refused-table", message));
    }
    if table.content_hash() != table.version {
        return Err(Failure::new(
            "refused-table",
            "version is not the content hash",
        ));
    }
    if etag != Some(table.version.as_str()) {
        return Err(Failure::new("refused-table", "ETag is not the version"));
    }
    Ok(table)
}

// === jemalloc ===

/// jemalloc's view of its heap, in bytes (`stats.*` of its `mallctl` interface): `allocated` is
/// what the program holds; `active` the pages those allocations occupy (`allocated` plus the
/// free slots of partly used pages); `resident` what jemalloc has in RAM, that is `active` plus
/// freed pages not yet purged plus its own `metadata`; `retained` address space it keeps
/// without memory behind it. `resident` well above `allocated` is allocator retention or
/// fragmentation; RSS above `resident` is memory outside the heap (binary, stacks).
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy)]
struct Heap {
    allocated: u64,
    active: u64,
    resident: u64,
    metadata: u64,
    retained: u64,
    arenas: u32,
}

impl Heap {
    fn read() -> Self {
        use tikv_jemalloc_ctl::{arenas, epoch, stats};
        // The statistics are a snapshot taken when the epoch advances.
        let _ = epoch::advance();
        let bytes = |read: tikv_jemalloc_ctl::Result<usize>| read.unwrap_or(0) as u64;
        Self {
            allocated: bytes(stats::allocated::read()),
            active: bytes(stats::active::read()),
            resident: bytes(stats::resident::read()),
            metadata: bytes(stats::metadata::read()),
            retained: bytes(stats::retained::read()),
            arenas: arenas::narenas::read().unwrap_or(0),
        }
    }

    fn mib(bytes: u64) -> f64 {
        bytes as f64 / (1024.0 * 1024.0)
    }

    /// With `CONFIG_BENCH_MALLOC_STATS=<dir>`, jemalloc's full statistics (JSON, per size
    /// class: live regions and bytes) as `<dir>/<n>-<moment>.json`, to see which sizes of
    /// allocation a connection holds.
    fn dump(n: usize, moment: &str) {
        let Some(dir) = std::env::var_os("CONFIG_BENCH_MALLOC_STATS") else {
            return;
        };
        let path = Path::new(&dir).join(format!("{n}-{moment}.json"));
        let mut options = tikv_jemalloc_ctl::stats_print::Options::default();
        options.json_format = true;
        options.skip_per_arena = true;
        options.skip_mutex_statistics = true;
        let written = std::fs::File::create(&path)
            .and_then(|file| tikv_jemalloc_ctl::stats_print::stats_print(file, options));
        match written {
            Ok(()) => eprintln!("N = {n}: jemalloc statistics in {}", path.display()),
            Err(e) => eprintln!("N = {n}: cannot write {}: {e}", path.display()),
        }
    }
}

impl std::fmt::Display for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "jemalloc allocated {:.1} / active {:.1} / resident {:.1} / metadata {:.1} / retained {:.1} MiB ({} arenas)",
            Self::mib(self.allocated),
            Self::mib(self.active),
            Self::mib(self.resident),
            Self::mib(self.metadata),
            Self::mib(self.retained),
            self.arenas
        )
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

/// utime + stime of this process's live threads whose name starts with one of `names`, in
/// clock ticks.
fn threads_cpu_ticks(names: &[&str]) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            names.iter().any(|name| comm.trim_end().starts_with(name))
        })
        .map(|task| procfs::cpu_ticks(&format!("self/task/{}", task.file_name().to_string_lossy())))
        .sum()
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

fn p50_p99_max(sorted: &[f64]) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        percentile(sorted, 50.0),
        percentile(sorted, 99.0),
        sorted.last().copied().unwrap_or(f64::NAN)
    )
}

fn kinds(errors: &BTreeMap<String, usize>) -> String {
    if errors.is_empty() {
        return "0".to_string();
    }
    let total: usize = errors.values().sum();
    let each: Vec<String> = errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{total} ({})", each.join(", "))
}

/// The rows of one outcome, in order.
fn cells(o: &Outcome) -> Vec<(&'static str, String)> {
    let per_round = |ms: f64| format!("{:.0}", ms / o.rounds as f64);
    let mut rows = vec![
        (
            "route change → all N serving, p50 / p99 / max over the rounds (ms)",
            p50_p99_max(&o.round_ms),
        ),
        (
            "propagation per sidecar, p50 / p99 / max (ms)",
            p50_p99_max(&o.latencies_ms),
        ),
        (
            "step + publish, median (ms)",
            format!("{:.2}", percentile(&o.compile_publish_ms, 50.0)),
        ),
        (
            "operator CPU per change, process / without bench threads (ms)",
            format!(
                "{} / {}",
                per_round(o.cpu_rounds_ms),
                per_round(o.cpu_rounds_operator_ms)
            ),
        ),
        (
            "RSS before clients (MiB)",
            format!("{:.1}", mib(o.rss_before_kib)),
        ),
        (
            "RSS with N connected, idle (MiB)",
            format!(
                "{:.1} (anon {:.1})",
                mib(o.rss_connected_kib),
                mib(o.anon_connected_kib)
            ),
        ),
        (
            "RSS per connected sidecar (KiB)",
            format!(
                "{:.0}",
                o.rss_connected_kib.saturating_sub(o.rss_before_kib) as f64 / o.n as f64
            ),
        ),
        (
            "jemalloc with N connected, idle: allocated / active / resident (MiB)",
            format!(
                "{:.1} / {:.1} / {:.1}",
                Heap::mib(o.heap_connected.allocated),
                Heap::mib(o.heap_connected.active),
                Heap::mib(o.heap_connected.resident)
            ),
        ),
        (
            "jemalloc allocated per connected sidecar (KiB)",
            format!(
                "{:.1}",
                o.heap_connected
                    .allocated
                    .saturating_sub(o.heap_before.allocated) as f64
                    / 1024.0
                    / o.n as f64
            ),
        ),
        (
            "12 s later: RSS / jemalloc allocated / resident (MiB)",
            format!(
                "{:.1} / {:.1} / {:.1}",
                mib(o.rss_settled_kib),
                Heap::mib(o.heap_settled.allocated),
                Heap::mib(o.heap_settled.resident)
            ),
        ),
        (
            "RSS after the rounds / peak VmHWM (MiB)",
            format!("{:.1} / {:.1}", mib(o.rss_after_kib), mib(o.hwm_kib)),
        ),
        (
            "jemalloc after the rounds: allocated / resident (MiB)",
            format!(
                "{:.1} / {:.1}",
                Heap::mib(o.heap_after.allocated),
                Heap::mib(o.heap_after.resident)
            ),
        ),
        (
            "start-up: all N served and long-polling (ms)",
            format!("{:.0}", o.start_ms),
        ),
        ("TokenReviews sent", o.token_reviews.to_string()),
        (
            "receives measured / missing / unexpected",
            format!(
                "{} / {} / {}",
                o.latencies_ms.len(),
                o.missing,
                o.unexpected
            ),
        ),
        ("client errors", kinds(&o.client_errors)),
        (
            "tables (audiences) per publish",
            format!("{} × {} B", o.tables, o.table_bytes),
        ),
        ("clients processes", o.client_procs.to_string()),
    ];
    if let Some(s) = &o.storm {
        rows.extend(storm_cells(s));
    }
    rows
}

fn storm_cells(s: &StormOutcome) -> Vec<(&'static str, String)> {
    vec![
        (
            "storm: drain + stop / gap before the new server (ms)",
            format!("{:.0} / {:.0}", s.drain_ms, s.gap_ms),
        ),
        (
            "storm: all N long-poll the new server again, p50 / p99 / max from the drain (ms)",
            format!(
                "{:.0} / {:.0} / {:.0}",
                s.held_p50_ms, s.held_p99_ms, s.held_max_ms
            ),
        ),
        (
            "storm: clients that reached the new server / long-polls parked at the end",
            format!("{} / {}", s.arrived, s.held),
        ),
        ("storm: client errors by kind", kinds(&s.errors)),
        (
            "storm: errors while not holding the latest table / tables received",
            format!("{} / {}", s.lost, s.tables_received),
        ),
        ("storm: TokenReviews", s.token_reviews.to_string()),
        (
            "storm: operator CPU, process / without bench threads (ms)",
            format!("{:.0} / {:.0}", s.cpu_ms, s.cpu_operator_ms),
        ),
        (
            "storm: peak RSS / RSS reconnected, idle (MiB)",
            format!(
                "{:.1} / {:.1}",
                mib(s.peak_rss_kib),
                mib(s.rss_reconnected_kib)
            ),
        ),
        (
            "storm: next change, all N serving (ms) / missing",
            format!("{:.1} / {}", s.after_round_ms, s.after_missing),
        ),
    ]
}

fn render(outcomes: &[Outcome]) -> String {
    let reporting: Vec<(usize, &report_load::ReportsOutcome)> = outcomes
        .iter()
        .filter_map(|o| Some((o.n, o.reports.as_ref()?)))
        .collect();
    if !reporting.is_empty() {
        let mut out = report_load::render(&reporting);
        for o in outcomes {
            out.push_str(&format!(
                "N = {}: start-up (all served and long-polling) {:.0} ms, {} TokenReviews, client errors {}, {} clients processes.\n",
                o.n,
                o.start_ms,
                o.token_reviews,
                kinds(&o.client_errors),
                o.client_procs
            ));
        }
        return out;
    }
    let mut rows: Vec<(&'static str, Vec<String>)> = Vec::new();
    for (column, o) in outcomes.iter().enumerate() {
        for (name, cell) in cells(o) {
            let at = match rows.iter().position(|(n, _)| *n == name) {
                Some(at) => at,
                None => {
                    // A row that another N may lack (a run without the storm): "–" there.
                    rows.push((name, vec!["–".to_string(); outcomes.len()]));
                    rows.len() - 1
                }
            };
            rows[at].1[column] = cell;
        }
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
    for (name, cells) in &rows {
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
    if let Some(big) = outcomes.iter().max_by_key(|o| o.n) {
        let check = |ok: bool| if ok { "met" } else { "MISSED" };
        let p99 = percentile(&big.round_ms, 99.0);
        out.push_str(&format!(
            "Targets at N = {}: route change → all serving p99 ≤ 1 s: {} ({p99:.1} ms; with the debounce {:.1} ms); RSS with N connected ≤ 256 MiB: {} ({:.1} MiB; peak {:.1} MiB).\n",
            big.n,
            check(p99 + DEBOUNCE_NOTE_MS as f64 <= 1000.0),
            p99 + DEBOUNCE_NOTE_MS as f64,
            check(mib(big.rss_connected_kib) <= 256.0),
            mib(big.rss_connected_kib),
            mib(big.hwm_kib),
        ));
    }
    out
}
