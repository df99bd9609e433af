//! The reporting mode of the config propagation benchmark (`CONFIG_BENCH_REPORTS=1`): the
//! operator under N sidecars that long-poll *and* report, as sidecars whose tables hold budgets
//! do (DESIGN §4 and §6, sidecar/src/pod/report.rs). Results in bench/RESULTS.md, "Operator
//! under reporting sidecars".
//!
//! Every namespace gets two Budgets with two limits each, selecting every pod of it, so the
//! controller's `step` compiles them into every table and the config server answers each report
//! with `200` and four leases from its real [`LeaseBook`]. Each limit is shared by the N / 10
//! pods of its namespace.
//!
//! Phases, after the start-up of the propagation bench (all N served and long-polling):
//! 1. *idle* ([`IDLE`]): long-polls only, for the operator's CPU without reports;
//! 2. the server creates [`START_FILE`]; each simulated sidecar sends its first report within
//!    [`FIRST_SPREAD`] (as the sidecar does after a new table) and then one every
//!    [`INTERVAL`] ± 20 %, on a connection of its own kept alive between reports (the sidecar's
//!    long-poll holds the other one);
//! 3. *warm-up* ([`WARMUP`]), then the *measured* window (`CONFIG_BENCH_REPORT_SECONDS`,
//!    default 60): the operator's CPU and RSS from /proc, and every report the clients sent in
//!    it, with its latency as the client saw it (request written to body read, a reconnect
//!    included) and whether it came back `200` with one lease per limit of the table.
//!
//! A report carries what the brief for issue 11 asks for: the 4 targets and 2 routes the
//! simulated traffic uses (cumulative counters, latency buckets), and per budget limit the use in
//! the current window with the allowance last leased (`holds`). Each sidecar sends 0 to 2·w
//! requests per interval, w = 1 + i mod 4, so load is uneven.
//!
//! Last, the lease book alone: [`LeaseBook::report`] timed directly in a book holding all N
//! sidecars, to show what share of the operator's CPU per report it takes at this N.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_crds::report::{Amounts, BudgetUsage, Report, ReportAnswer, RouteReport};
use switchyard_crds::report::{LATENCY_BUCKETS_MS, TargetReport};
use switchyard_crds::table::{RouteTable, SCHEMA_VERSION};
use switchyard_crds::v1alpha1::{API_VERSION, Budget};
use switchyard_crds::window::{Period, Timestamp};
use switchyard_operator::config_server::leases::{HolderKey, LeaseBook};
use switchyard_operator::config_server::tables::Snapshot;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, timeout};

use super::{
    Failure, Fleet, NAMESPACES, Operator, Sender, cpu_ms, env_flag, env_usize, mib, now_ns,
    open_connection, percentile, procfs, sampler, uid,
};

/// The sidecar's report interval while its table holds budgets (`BUDGET_INTERVAL`).
const INTERVAL: Duration = Duration::from_secs(5);
/// The sidecar reports within this of serving a new table (`AFTER_SWAP`): the first report.
const FIRST_SPREAD: Duration = Duration::from_secs(2);
/// The sidecar abandons a report after one interval (`REPORT_TIMEOUT.min(interval)`).
const REPORT_TIMEOUT: Duration = INTERVAL;
/// Long-polls only, before the reports start.
const IDLE: Duration = Duration::from_secs(10);
/// Reports run this long before the measured window: every sidecar has reported twice.
const WARMUP: Duration = Duration::from_secs(10);
/// Created in the bench directory to start the reports.
const START_FILE: &str = "reports-start";
/// The routes the simulated traffic uses; each has two targets.
const ROUTES: [&str; 2] = ["chat-0", "chat-1"];
/// Per simulated request: prompt (cached part included), cached, completion tokens, and cost
/// at the bench pool's prices (1.25 $ in, 10 $ out per million).
const INPUT_TOKENS: u64 = 500;
const CACHED_TOKENS: u64 = 100;
const OUTPUT_TOKENS: u64 = 200;
const COST_MICROS: u64 = 2_625;

/// What the server is asked to measure.
pub struct ReportSettings {
    pub seconds: Duration,
}

impl ReportSettings {
    /// `Some` with `CONFIG_BENCH_REPORTS=1`.
    pub fn from_env() -> Option<Self> {
        env_flag("CONFIG_BENCH_REPORTS", false).then(|| Self {
            seconds: Duration::from_secs(env_usize("CONFIG_BENCH_REPORT_SECONDS", 60) as u64),
        })
    }
}

/// Two budgets per namespace, two limits each, selecting every pod: one over everything the
/// namespace spends, one over the two chat routes.
pub fn budgets() -> Vec<Budget> {
    let mut out = Vec::new();
    for ns in 0..NAMESPACES {
        let namespace = format!("team-{ns}");
        for (name, spec) in [
            (
                "team-spend",
                json!({"limits": [{"period": "Month", "usd": "5000.00"},
                                  {"period": "Day", "requests": 10_000_000}]}),
            ),
            (
                "chat-rate",
                json!({"selector": {"routes": ROUTES},
                       "limits": [{"period": "1m", "requests": 20_000, "tokens": 20_000_000},
                                  {"period": "1h", "usd": "400.00"}]}),
            ),
        ] {
            out.push(
                serde_json::from_value(json!({
                    "apiVersion": API_VERSION, "kind": "Budget",
                    "metadata": {"name": name, "namespace": namespace, "generation": 1,
                                 "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": spec,
                }))
                .expect("a valid Budget"),
            );
        }
    }
    out
}

// === clients ===

/// One simulated sidecar's report loop, beside its long-poll.
pub struct Reporter {
    pub i: usize,
    pub token: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub addr: SocketAddr,
    /// The table the long-poll last accepted.
    pub table: watch::Receiver<Option<Arc<RouteTable>>>,
    pub out: mpsc::UnboundedSender<String>,
    pub dir: PathBuf,
}

impl Reporter {
    /// Waits for the start file, then reports forever; one line per report.
    pub async fn run(self) {
        let start = self.dir.join(START_FILE);
        while !start.exists() {
            sleep(Duration::from_millis(100)).await;
        }
        let mut counters = Counters::new(self.i);
        let mut connection: Option<Sender> = None;
        let mut delay = FIRST_SPREAD.mul_f64(rand::rng().random_range(0.0..=1.0));
        loop {
            sleep(delay).await;
            delay = INTERVAL.mul_f64(rand::rng().random_range(0.8..=1.2));
            let Some(table) = self.table.borrow().clone() else {
                continue;
            };
            let requests = rand::rng().random_range(0..=2 * counters.weight);
            counters.serve(&table, requests, Timestamp::now());
            let body = serde_json::to_vec(&counters.report(&table, Timestamp::now()))
                .expect("reports serialize");
            let (bytes, expected) = (body.len(), leases_expected(&table));
            let sent = Instant::now();
            let answer = timeout(REPORT_TIMEOUT, self.post(&mut connection, body))
                .await
                .unwrap_or_else(|_| Err(Failure::new("timeout", "the report timed out")));
            let latency_us = sent.elapsed().as_micros();
            let (outcome, leases) = match answer {
                Ok((status, body)) => {
                    let leases = if status == StatusCode::OK {
                        serde_json::from_slice::<ReportAnswer>(&body)
                            .map(|a| counters.take(a))
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    (status.as_u16().to_string(), leases)
                }
                Err(failure) => {
                    // A failed report loses nothing: the next carries the same cumulative counts.
                    connection = None;
                    (failure.kind.to_string(), 0)
                }
            };
            let _ = self.out.send(format!(
                "report {} {outcome} {leases} {expected} {latency_us} {bytes} {}",
                self.i,
                now_ns()
            ));
        }
    }

    /// One `POST /v1/report` on the kept connection (a new one if it closed): status and body.
    async fn post(
        &self,
        connection: &mut Option<Sender>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let kept = match connection.take() {
            Some(mut kept) => kept.ready().await.is_ok().then_some(kept),
            None => None,
        };
        let mut sender = match kept {
            Some(kept) => kept,
            None => open_connection(self.addr, &self.tls).await?,
        };
        let request = Request::post("/v1/report")
            .header(header::HOST, "localhost")
            .header("x-switchyard-sidecar-version", "bench")
            .header("x-switchyard-table-schema", SCHEMA_VERSION.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::new("closed", e))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| Failure::new("closed", e))?
            .to_bytes();
        *connection = Some(sender);
        Ok((status, body))
    }
}

/// One lease per limit of every budget in the table.
fn leases_expected(table: &RouteTable) -> usize {
    table.budgets.values().map(|b| b.limits.len()).sum()
}

/// What one simulated sidecar has served since it started, as its Prometheus counters and
/// budget counters would hold it.
struct Counters {
    instance: String,
    /// Load factor 1–4: the fleet's load is uneven.
    weight: usize,
    /// Requests served so far; picks route and target round-robin.
    turn: usize,
    targets: BTreeMap<(String, String), TargetReport>,
    routes: BTreeMap<String, RouteReport>,
    /// Use per (budget, limit) in the window starting at the key's `i64` (Unix seconds).
    used: BTreeMap<(String, u32), (i64, Amounts)>,
    /// The allowance of the last lease per (budget, limit), for its window.
    holds: BTreeMap<(String, u32), (i64, Amounts)>,
}

impl Counters {
    fn new(i: usize) -> Self {
        Self {
            // As the sidecar names itself (sidecar/src/app/args.rs): `<pod UID>-<start Unix seconds>`.
            instance: format!("{}-{}", uid(i), now_ns() / 1_000_000_000),
            weight: 1 + i % 4,
            turn: 0,
            targets: BTreeMap::new(),
            routes: BTreeMap::new(),
            used: BTreeMap::new(),
            holds: BTreeMap::new(),
        }
    }

    /// Counts `requests` served now through [`ROUTES`] by `table`.
    fn serve(&mut self, table: &RouteTable, requests: usize, now: Timestamp) {
        for _ in 0..requests {
            let name = ROUTES[self.turn % ROUTES.len()];
            let Some(route) = table.routes.values().find(|r| r.name == name) else {
                continue;
            };
            let target = &route.targets[(self.turn / ROUTES.len()) % route.targets.len()];
            let bucket = self.turn % 6;
            self.turn += 1;
            let counts = self
                .targets
                .entry((target.upstream.clone(), target.model.clone()))
                .or_insert_with(|| TargetReport {
                    provider: target.upstream.clone(),
                    model: target.model.clone(),
                    latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
                    ..TargetReport::default()
                });
            *counts.outcomes.entry("Success".to_string()).or_default() += 1;
            counts.input_tokens += INPUT_TOKENS;
            counts.cached_input_tokens += CACHED_TOKENS;
            counts.output_tokens += OUTPUT_TOKENS;
            counts.cost_usd += COST_MICROS as f64 / 1e6;
            counts.latency_buckets[2 + bucket] += 1;
            let counts = self
                .routes
                .entry(name.to_string())
                .or_insert_with(|| RouteReport {
                    route: name.to_string(),
                    ..RouteReport::default()
                });
            counts.requests += 1;
            counts.input_tokens += INPUT_TOKENS;
            counts.cached_input_tokens += CACHED_TOKENS;
            counts.output_tokens += OUTPUT_TOKENS;
            counts.cost_usd += COST_MICROS as f64 / 1e6;
            for (id, budget) in &table.budgets {
                if !budget.selects_route(&route.namespace, name) {
                    continue;
                }
                for (index, limit) in budget.limits.iter().enumerate() {
                    let Some(window) = Period::parse(&limit.period).and_then(|p| p.window(now))
                    else {
                        continue;
                    };
                    let start = window.start.as_second();
                    let entry = self
                        .used
                        .entry((id.clone(), index as u32))
                        .or_insert((start, Amounts::default()));
                    // A new window counts from zero, as the sidecar's budget counters do.
                    if entry.0 != start {
                        *entry = (start, Amounts::default());
                    }
                    let add = |v: &mut Option<u64>, n: u64| *v = Some(v.unwrap_or(0) + n);
                    add(&mut entry.1.usd_micros, COST_MICROS);
                    add(&mut entry.1.requests, 1);
                    add(&mut entry.1.tokens, INPUT_TOKENS + OUTPUT_TOKENS);
                }
            }
        }
    }

    /// The report for now: cumulative counters, and per limit the use in its current window.
    fn report(&self, table: &RouteTable, now: Timestamp) -> Report {
        let mut budgets = Vec::new();
        for (id, budget) in &table.budgets {
            for (index, limit) in budget.limits.iter().enumerate() {
                let Some(window) = Period::parse(&limit.period).and_then(|p| p.window(now)) else {
                    continue;
                };
                let (start, key) = (window.start.as_second(), (id.clone(), index as u32));
                let in_window = |m: &BTreeMap<_, (i64, Amounts)>| {
                    m.get(&key).filter(|(s, _)| *s == start).map(|(_, a)| *a)
                };
                let zero = Some(0);
                budgets.push(BudgetUsage {
                    budget: id.clone(),
                    limit: index as u32,
                    period: limit.period.clone(),
                    window_start: start,
                    used: in_window(&self.used).unwrap_or(Amounts {
                        usd_micros: zero,
                        requests: zero,
                        tokens: zero,
                    }),
                    holds: in_window(&self.holds),
                    refused: 0,
                });
            }
        }
        Report {
            instance: self.instance.clone(),
            table_version: table.version.clone(),
            targets: self.targets.values().cloned().collect(),
            budgets,
            routes: self.routes.values().cloned().collect(),
        }
    }

    /// Keeps the leases' allowances, echoed as `holds`; the number of leases.
    fn take(&mut self, answer: ReportAnswer) -> usize {
        for lease in &answer.leases {
            self.holds.insert(
                (lease.budget.clone(), lease.limit),
                (lease.window_start, lease.allowance),
            );
        }
        answer.leases.len()
    }
}

// === server ===

/// One report as a client saw it.
#[derive(Clone, Debug)]
pub struct ReportEvent {
    pub client: usize,
    /// The HTTP status, or the failure kind (`closed`, `timeout`, ...).
    pub outcome: String,
    pub leases: usize,
    pub expected: usize,
    pub latency_us: u64,
    pub bytes: usize,
    pub at_ns: u64,
}

/// Reads `report <client> <outcome> <leases> <expected> <latency_us> <bytes> <at_ns>`.
pub fn parse_report(fields: &[&str]) -> Option<ReportEvent> {
    let [client, outcome, leases, expected, latency_us, bytes, at_ns] = fields else {
        return None;
    };
    Some(ReportEvent {
        client: client.parse().ok()?,
        outcome: outcome.to_string(),
        leases: leases.parse().ok()?,
        expected: expected.parse().ok()?,
        latency_us: latency_us.parse().ok()?,
        bytes: bytes.parse().ok()?,
        at_ns: at_ns.parse().ok()?,
    })
}

/// What the reporting phases measured.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct ReportsOutcome {
    pub holders_per_limit: usize,
    pub idle_s: f64,
    pub idle_cpu_ms: f64,
    pub idle_cpu_operator_ms: f64,
    pub measured_s: f64,
    pub cpu_ms: f64,
    pub cpu_operator_ms: f64,
    pub reports: usize,
    /// Reports answered `200` with one lease per limit of the table.
    pub with_leases: usize,
    /// Reports by outcome (status or failure kind).
    pub outcomes: BTreeMap<String, usize>,
    /// Distinct clients that reported in the window.
    pub clients: usize,
    /// Latency of every report in the window, ms, sorted.
    pub latencies_ms: Vec<f64>,
    pub body_bytes_median: usize,
    /// From the lease book at the end: (budget, limit) entries, and the fewest reporting and
    /// leased holders of any of them.
    pub limits: usize,
    pub min_reporting: u32,
    pub min_leased: u32,
    pub rss_idle_kib: u64,
    pub rss_reporting_kib: u64,
    pub peak_rss_kib: u64,
    pub token_reviews: usize,
    /// `LeaseBook::report` alone for one holder of `holders_per_limit`, µs.
    pub lease_book_us: f64,
}

/// Runs the phases of the module header with `fleet` connected and long-polling.
pub async fn measure(
    operator: &Operator,
    fleet: &mut Fleet,
    dir: &Path,
    settings: &ReportSettings,
    reviews: &AtomicUsize,
) -> ReportsOutcome {
    let n = fleet.n;
    let mut outcome = ReportsOutcome {
        holders_per_limit: n / NAMESPACES,
        rss_idle_kib: procfs::status_kib("self", "VmRSS:"),
        ..ReportsOutcome::default()
    };
    eprintln!("N = {n}: reports: {IDLE:?} of long-polls only");
    let (before, started) = (cpu_ms(), Instant::now());
    wait_draining(fleet, IDLE).await;
    let after = cpu_ms();
    outcome.idle_s = started.elapsed().as_secs_f64();
    outcome.idle_cpu_ms = after.0 - before.0;
    outcome.idle_cpu_operator_ms = after.1 - before.1;

    std::fs::write(dir.join(START_FILE), b"").expect("write the start file");
    eprintln!("N = {n}: reports started; {WARMUP:?} of warm-up");
    wait_draining(fleet, WARMUP).await;
    fleet.reports.clear();

    eprintln!("N = {n}: reports: measuring for {:?}", settings.seconds);
    let reviews_before = reviews.load(Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(stop.clone());
    let (before, started, t0) = (cpu_ms(), Instant::now(), now_ns());
    wait_draining(fleet, settings.seconds).await;
    let t1 = now_ns();
    stop.store(true, Ordering::SeqCst);
    let (peak, sampler_ticks) = sampling.join().expect("the sampler thread");
    // NB: after the join: an exited thread is no longer listed, so its CPU is taken out here.
    let after = cpu_ms();
    outcome.measured_s = started.elapsed().as_secs_f64();
    let sampler_ms = sampler_ticks as f64 * 1000.0 / procfs::clock_ticks_per_second();
    outcome.cpu_ms = after.0 - before.0 - sampler_ms;
    outcome.cpu_operator_ms = after.1 - before.1 - sampler_ms;
    outcome.rss_reporting_kib = procfs::status_kib("self", "VmRSS:");
    outcome.peak_rss_kib = peak.max(outcome.rss_reporting_kib);
    outcome.token_reviews = reviews.load(Ordering::SeqCst) - reviews_before;

    let window: Vec<ReportEvent> = std::mem::take(&mut fleet.reports)
        .into_iter()
        .filter(|r| (t0..t1).contains(&r.at_ns))
        .collect();
    outcome.reports = window.len();
    let mut clients = vec![false; n];
    let mut bytes = Vec::with_capacity(window.len());
    for report in &window {
        *outcome.outcomes.entry(report.outcome.clone()).or_default() += 1;
        if report.outcome == "200" && report.expected > 0 && report.leases == report.expected {
            outcome.with_leases += 1;
        }
        clients[report.client] = true;
        outcome.latencies_ms.push(report.latency_us as f64 / 1000.0);
        bytes.push(report.bytes);
    }
    outcome.clients = clients.iter().filter(|c| **c).count();
    outcome.latencies_ms.sort_by(f64::total_cmp);
    bytes.sort_unstable();
    outcome.body_bytes_median = bytes.get(bytes.len() / 2).copied().unwrap_or(0);

    let totals = operator.server.budget_totals();
    outcome.limits = totals.len();
    outcome.min_reporting = totals.values().map(|t| t.reporting).min().unwrap_or(0);
    outcome.min_leased = totals.values().map(|t| t.leased).min().unwrap_or(0);
    eprintln!(
        "N = {n}: reports: {} in {:.0} s, {} with every lease, outcomes {:?}",
        outcome.reports, outcome.measured_s, outcome.with_leases, outcome.outcomes
    );
    outcome
}

/// Sleeps `length` while tallying what the clients write.
async fn wait_draining(fleet: &mut Fleet, length: Duration) {
    let end = Instant::now() + length;
    while Instant::now() < end {
        fleet.drain_events();
        sleep(Duration::from_millis(50)).await;
    }
    fleet.drain_events();
}

/// [`LeaseBook::report`] alone, in a book holding every one of the N sidecars (each holds all
/// four limits of its namespace, N / 10 holders per limit; the book's expiry pass walks all of
/// them on every report, as in the server): µs per report, averaged over rounds in which each
/// holder reports once. Call it with the clients gone: it is timed by this thread's CPU, but a
/// busy machine still slows it (shared caches).
pub fn lease_book_us(snapshot: &Snapshot, n: usize) -> f64 {
    let now = Timestamp::now();
    // What each holder reports is built once: that is the sidecar's work, not the book's.
    let holders: Vec<(HolderKey, Arc<RouteTable>, Vec<BudgetUsage>)> = (0..n)
        .map(|i| {
            let pod = snapshot.pod(&uid(i)).expect("every pod is indexed");
            let table = snapshot.table_for(pod);
            let mut counters = Counters::new(i);
            counters.serve(&table, 4, now);
            let usage = counters.report(&table, now).budgets;
            ((uid(i), counters.instance), table, usage)
        })
        .collect();
    let mut book = LeaseBook::new(now);
    book.end_learning();
    let round = |book: &mut LeaseBook| {
        for (holder, table, usage) in &holders {
            let leases = book.report(holder, &table.budgets, usage, Timestamp::now());
            std::hint::black_box(leases);
        }
    };
    // The first round fills the book; the cost of a report is that of a known holder.
    round(&mut book);
    // NB: this thread's CPU time, in clock ticks: a second or more keeps the rounding near 1 %.
    let (started, ticks, mut rounds) = (Instant::now(), procfs::cpu_ticks("thread-self"), 0);
    while rounds < 2 || started.elapsed() < Duration::from_secs(1) {
        round(&mut book);
        rounds += 1;
    }
    let ticks = procfs::cpu_ticks("thread-self") - ticks;
    let cpu_s = ticks as f64 / procfs::clock_ticks_per_second();
    cpu_s * 1e6 / (rounds * holders.len()) as f64
}

// === report ===

/// One row's cell for an N and its outcome.
type Cell = Box<dyn Fn(usize, &ReportsOutcome) -> String>;

/// The markdown table of the reporting runs.
pub fn render(outcomes: &[(usize, &ReportsOutcome)]) -> String {
    let cores = |ms: f64, s: f64| ms / 1000.0 / s;
    let rows: Vec<(&str, Cell)> = vec![
        (
            "holders of each budget limit (N / 10 namespaces)",
            Box::new(|_, o| o.holders_per_limit.to_string()),
        ),
        (
            "operator CPU, long-polls only (cores, process / without bench threads)",
            Box::new(move |_, o| {
                format!(
                    "{:.3} / {:.3}",
                    cores(o.idle_cpu_ms, o.idle_s),
                    cores(o.idle_cpu_operator_ms, o.idle_s)
                )
            }),
        ),
        (
            "operator CPU, reporting (cores, process / without bench threads)",
            Box::new(move |_, o| {
                format!(
                    "{:.3} / {:.3}",
                    cores(o.cpu_ms, o.measured_s),
                    cores(o.cpu_operator_ms, o.measured_s)
                )
            }),
        ),
        (
            "operator CPU per report, above long-polls only (µs)",
            Box::new(move |_, o| {
                let extra = cores(o.cpu_operator_ms, o.measured_s)
                    - cores(o.idle_cpu_operator_ms, o.idle_s);
                format!("{:.0}", extra * 1e6 / (o.reports as f64 / o.measured_s))
            }),
        ),
        (
            "reports/s (expected N / 5 s)",
            Box::new(|n, o| {
                format!(
                    "{:.1} ({:.1})",
                    o.reports as f64 / o.measured_s,
                    n as f64 / 5.0
                )
            }),
        ),
        (
            "report latency as the client sees it, p50 / p99 / max (ms)",
            Box::new(|_, o| {
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    percentile(&o.latencies_ms, 50.0),
                    percentile(&o.latencies_ms, 99.0),
                    o.latencies_ms.last().copied().unwrap_or(f64::NAN)
                )
            }),
        ),
        (
            "reports answered 200 with every lease (4) / all reports",
            Box::new(|_, o| format!("{} / {}", o.with_leases, o.reports)),
        ),
        (
            "reports by outcome",
            Box::new(|_, o| {
                let each: Vec<String> = o
                    .outcomes
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                each.join(", ")
            }),
        ),
        (
            "sidecars that reported in the window",
            Box::new(|n, o| format!("{} of {n}", o.clients)),
        ),
        (
            "lease book at the end: limits, fewest reporting / leased holders of one",
            Box::new(|_, o| format!("{}, {} / {}", o.limits, o.min_reporting, o.min_leased)),
        ),
        (
            "report body, median (bytes)",
            Box::new(|_, o| o.body_bytes_median.to_string()),
        ),
        (
            "RSS long-polling / reporting / peak while reporting (MiB)",
            Box::new(|_, o| {
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    mib(o.rss_idle_kib),
                    mib(o.rss_reporting_kib),
                    mib(o.peak_rss_kib)
                )
            }),
        ),
        (
            "TokenReviews while reporting",
            Box::new(|_, o| o.token_reviews.to_string()),
        ),
        (
            "LeaseBook::report alone, book of N holders, 4 limits per report (µs)",
            Box::new(|_, o| format!("{:.1}", o.lease_book_us)),
        ),
    ];
    let mut out = String::from("| metric |");
    for (n, _) in outcomes {
        out.push_str(&format!(" N = {n} |"));
    }
    out.push_str("\n| --- |");
    for _ in outcomes {
        out.push_str(" ---: |");
    }
    out.push('\n');
    for (name, cell) in &rows {
        let cells: Vec<String> = outcomes.iter().map(|(n, o)| cell(*n, o)).collect();
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    if let Some((_, o)) = outcomes.first() {
        out.push_str(&format!(
            "\nIdle {:.0} s, warm-up {} s, measured {:.0} s per N; reports every {} s ± 20 % on a kept-alive connection of their own.\n",
            o.idle_s,
            WARMUP.as_secs(),
            o.measured_s,
            INTERVAL.as_secs()
        ));
    }
    out
}
