//! Proxy benchmark: the same requests sent straight to a simulated OpenAI provider ("direct") and
//! through the release sidecar binary in front of it ("via"), in one run, printed as a markdown
//! table. See bench/RESULTS.md for the figures and bench/run.sh for how to run it.
//!
//! - The sidecar is a separate process (`target/release/switchyard-sidecar`, or
//!   `SWITCHYARD_SIDECAR_BIN`) on free loopback ports, with `RUST_LOG=warn` so that the one info
//!   line per request does not dominate; it is killed at the end, also on panic.
//! - The simulated providers run in this process. Each measurement gets fresh ones (the simulator
//!   records every request it receives, so a long-lived one would grow for the whole run); direct
//!   and via use twin simulators with the same default behaviour (no latency, no chunk delay).
//! - The load generator is one hyper-util legacy client (HTTP/1.1 keep-alive, one pool keeping up
//!   to 256 idle connections per host, so c128 reuses its connections) driven by tokio tasks,
//!   each request bounded by [`REQUEST_TIMEOUT`] and each load phase by its duration, so the run
//!   always ends.
//! - `BENCH_SECONDS` (default 5) sets each throughput phase per side, run as one-second slices
//!   alternating direct and via; the sequential phases send 1000 × `BENCH_SECONDS` (latency) and
//!   400 × `BENCH_SECONDS` (first byte) requests per side, interleaved direct/via in ten rounds.
//!   Interleaving makes a shared machine's background load hit both sides alike.

#[path = "procfs.rs"]
mod procfs;
#[path = "sidecar_process.rs"]
mod sidecar_process;

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use switchyard_sim::anthropic;
use switchyard_tests::{MockProvider, pool, write_manifests};

use sidecar_process::{SidecarProcess, wait_ready};
use tokio::time::{Instant, sleep, timeout};

type BenchClient = Client<HttpConnector, Full<Bytes>>;

/// Upper bound on any single request; a request that takes longer counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Sequential rounds the latency and first-byte phases are split into, alternating direct/via.
const ROUNDS: usize = 10;
/// Requests per side before the sequential phases are measured.
const WARMUP_REQUESTS: usize = 500;
/// One simulated provider behind the sidecar per measurement, each with a route of its name.
const PHASES: [&str; 4] = ["bench-c1", "bench-c32", "bench-c128", "bench-sse"];
/// Routes to simulated Anthropic providers, for the translation phases.
const TRANSLATED: [&str; 2] = ["bench-anthropic", "bench-anthropic-sse"];

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let table = runtime.block_on(run(seconds));
    println!("{table}");
}

/// Everything measured, for the table.
struct Results {
    seconds: f64,
    latency_n: usize,
    ttfb_n: usize,
    latency: Sequential,
    first_byte: Sequential,
    c32: Throughput,
    c128: Throughput,
    rss_idle_kib: u64,
    rss_after_c128_kib: u64,
    /// The anonymous (heap and stack) part of RSS; the rest is mostly the binary's own pages.
    anon_idle_kib: u64,
    anon_after_c128_kib: u64,
    hwm_kib: u64,
    tick_ms: f64,
    /// OpenAI-format requests to an Anthropic provider vs Anthropic-format requests sent directly.
    translation: Sequential,
    translation_first_byte: Sequential,
}

async fn run(seconds: f64) -> String {
    let latency_n = ((1000.0 * seconds) as usize).max(100);
    let ttfb_n = ((400.0 * seconds) as usize).max(50);
    let phase = Duration::from_secs_f64(seconds);
    let warmup = Duration::from_secs_f64((seconds / 5.0).clamp(0.2, 1.0));

    // The providers behind the sidecar, one per measurement, each with its own route.
    let mut upstream = Vec::new();
    for name in PHASES {
        let mock = MockProvider::start(name).await.expect("simulator starts");
        upstream.push(mock);
    }
    let urls: Vec<String> = upstream.iter().map(MockProvider::base_url).collect();
    let providers: Vec<(&str, &str, &str)> = PHASES
        .iter()
        .zip(&urls)
        .map(|(name, url)| (*name, url.as_str(), *name))
        .collect();
    let mut yaml = pool(&providers, "", "");
    for name in PHASES {
        write!(
            yaml,
            "---\napiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}}}\n\
             spec:\n  model: {name}\n  targets:\n    - {{pool: pool, provider: {name}, model: {name}}}\n"
        )
        .expect("write to a String");
    }
    // Translation (issue 3): OpenAI-format requests to an `api: Anthropic` provider.
    let translated = [
        anthropic::MockProvider::start("anthropic")
            .await
            .expect("simulator starts"),
        anthropic::MockProvider::start("anthropic-sse")
            .await
            .expect("simulator starts"),
    ];
    yaml.push_str("---\napiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {name: translated}\nspec:\n  providers:\n");
    for (name, mock) in TRANSLATED.iter().zip(&translated) {
        writeln!(
            yaml,
            "    - {{name: {name}, api: Anthropic, baseUrl: \"{}\", apiKey: {{secretKeyRef: {{name: keys, key: {}}}}}, \
             models: [{{name: claude-bench, inputPerMillion: \"1\", outputPerMillion: \"1\"}}]}}",
            mock.base_url(),
            PHASES[0],
        )
        .expect("write to a String");
    }
    for name in TRANSLATED {
        write!(
            yaml,
            "---\napiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}}}\n\
             spec: {{model: {name}, targets: [{{pool: translated, provider: {name}, model: claude-bench}}]}}\n"
        )
        .expect("write to a String");
    }
    let dir = write_manifests(&yaml);

    // One client, one pool: enough idle connections kept for the widest phase.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: BenchClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);

    let mut sidecar = SidecarProcess::start(&dir).await;
    let via_base = format!("http://{}/v1", sidecar.data);
    wait_ready(&client, &mut sidecar).await;
    // Let start-up allocations settle before reading the idle footprint.
    sleep(Duration::from_millis(300)).await;
    let rss_idle_kib = procfs::status_kib(&sidecar.pid.to_string(), "VmRSS:");
    let anon_idle_kib = procfs::status_kib(&sidecar.pid.to_string(), "RssAnon:");
    eprintln!(
        "sidecar pid {} ready on {}; idle RSS {} KiB",
        sidecar.pid, sidecar.data, rss_idle_kib
    );

    let mut upstream = upstream.into_iter();
    let mut next_via = || upstream.next().expect("one simulator per phase");

    // 1. Sequential latency, non-streamed.
    let (via_mock, direct_mock) = (next_via(), start_mock("direct-c1").await);
    let body = chat_body("bench-c1", false);
    let direct = endpoint(&direct_mock.base_url());
    let via = endpoint(&via_base);
    eprintln!("latency: {WARMUP_REQUESTS} warm-up + {latency_n} sequential requests per side");
    let latency = sequential(
        &client,
        [(&direct, &body), (&via, &body)],
        latency_n,
        Measure::Total,
        sidecar.pid,
    )
    .await;
    drop((via_mock, direct_mock));

    // 2. Throughput at 32 connections, with CPU accounting.
    let (via_mock, direct_mock) = (next_via(), start_mock("direct-c32").await);
    let body = chat_body("bench-c32", false);
    let direct = endpoint(&direct_mock.base_url());
    let slices = slice_count(seconds);
    eprintln!(
        "c32: warm-up {warmup:?} per side, then {phase:?} per side in {slices} alternating slices"
    );
    let c32 = throughput(
        &client,
        [&direct, &via],
        &body,
        32,
        phase,
        warmup,
        sidecar.pid,
    )
    .await;
    drop((via_mock, direct_mock));

    // 3. Throughput at 128 connections, then the sidecar's peak footprint.
    let (via_mock, direct_mock) = (next_via(), start_mock("direct-c128").await);
    let body = chat_body("bench-c128", false);
    let direct = endpoint(&direct_mock.base_url());
    eprintln!(
        "c128: warm-up {warmup:?} per side, then {phase:?} per side in {slices} alternating slices"
    );
    let c128 = throughput(
        &client,
        [&direct, &via],
        &body,
        128,
        phase,
        warmup,
        sidecar.pid,
    )
    .await;
    let rss_after_c128_kib = procfs::status_kib(&sidecar.pid.to_string(), "VmRSS:");
    let hwm_kib = procfs::status_kib(&sidecar.pid.to_string(), "VmHWM:");
    let anon_after_c128_kib = procfs::status_kib(&sidecar.pid.to_string(), "RssAnon:");
    drop((via_mock, direct_mock));

    // 4. Time to the first streamed body byte.
    let (via_mock, direct_mock) = (next_via(), start_mock("direct-sse").await);
    let body = chat_body("bench-sse", true);
    let direct = endpoint(&direct_mock.base_url());
    eprintln!("first byte: {WARMUP_REQUESTS} warm-up + {ttfb_n} streamed requests per side");
    let first_byte = sequential(
        &client,
        [(&direct, &body), (&via, &body)],
        ttfb_n,
        Measure::FirstByte,
        sidecar.pid,
    )
    .await;
    drop((via_mock, direct_mock));

    // 5. and 6. Translation: an OpenAI-format client through the sidecar to an Anthropic
    // provider, against an Anthropic-format client talking to the same kind of provider directly.
    let [via_anthropic, via_anthropic_sse] = translated;
    let direct_anthropic = anthropic::MockProvider::start("direct-anthropic")
        .await
        .expect("simulator starts");
    let direct_messages: Uri = format!("{}/v1/messages", direct_anthropic.base_url())
        .parse()
        .expect("a valid URI");
    eprintln!(
        "translation: {WARMUP_REQUESTS} warm-up + {latency_n} requests per side, then streamed"
    );
    let translation = sequential(
        &client,
        [
            (&direct_messages, &messages_body(false)),
            (&via, &chat_body(TRANSLATED[0], false)),
        ],
        latency_n,
        Measure::Total,
        sidecar.pid,
    )
    .await;
    let translation_first_byte = sequential(
        &client,
        [
            (&direct_messages, &messages_body(true)),
            (&via, &chat_body(TRANSLATED[1], true)),
        ],
        ttfb_n,
        Measure::FirstByte,
        sidecar.pid,
    )
    .await;
    drop((via_anthropic, via_anthropic_sse, direct_anthropic));

    let log = sidecar.stop();
    if !log.trim().is_empty() {
        let lines: Vec<&str> = log.lines().collect();
        eprintln!("sidecar stderr ({} lines), last ones:", lines.len());
        for line in lines.iter().rev().take(5).rev() {
            eprintln!("  {line}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let tick_ms = 1000.0 / procfs::clock_ticks_per_second();
    let streamed = (WARMUP_REQUESTS + ttfb_n) as u64;
    let via_total = (WARMUP_REQUESTS + latency_n) as u64
        + streamed
        + [&c32, &c128]
            .iter()
            .map(|t| t.via_warmup + t.via.ok + t.via.errors)
            .sum::<u64>();
    eprintln!("the sidecar was sent {via_total} requests in all, {streamed} of them streamed");
    let results = Results {
        seconds,
        latency_n,
        ttfb_n,
        latency,
        first_byte,
        rss_idle_kib,
        rss_after_c128_kib,
        anon_idle_kib,
        anon_after_c128_kib,
        hwm_kib,
        tick_ms,
        c32,
        c128,
        translation,
        translation_first_byte,
    };
    render(results)
}

// === load generation ===

/// What a sequential request measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Until the whole body has arrived.
    Total,
    /// Until the first body byte has arrived (the rest is then read, untimed).
    FirstByte,
}

/// `POST {base}/chat/completions`.
fn endpoint(base: &str) -> Uri {
    format!("{base}/chat/completions")
        .parse()
        .expect("a valid URI")
}

/// The Anthropic-format twin of [`chat_body`], for the direct side of the translation phases.
fn messages_body(stream: bool) -> Bytes {
    let stream = if stream { r#","stream":true"# } else { "" };
    Bytes::from(format!(
        r#"{{"model":"claude-bench","max_tokens":4096,"messages":[{{"role":"user","content":"Say hello in five words."}}]{stream}}}"#
    ))
}

/// A small chat request for `model`.
fn chat_body(model: &str, stream: bool) -> Bytes {
    let stream = if stream { r#","stream":true"# } else { "" };
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello in five words."}}]{stream}}}"#
    ))
}

async fn start_mock(name: &str) -> MockProvider {
    MockProvider::start(name).await.expect("simulator starts")
}

/// One request. Returns the measured time, or `None` on any failure or a non-200 status.
async fn one(client: &BenchClient, uri: &Uri, body: &Bytes, measure: Measure) -> Option<Duration> {
    let exchange = async {
        let request = Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, "Bearer sk-bench")
            // Needed by the simulated Anthropic API, ignored by the others.
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(body.clone()))
            .expect("a valid request");
        let started = Instant::now();
        let response = client.request(request).await.ok()?;
        let status = response.status();
        let mut body = response.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.ok()?;
            if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                first = Some(started.elapsed());
            }
        }
        let total = started.elapsed();
        (status == StatusCode::OK).then_some(match measure {
            Measure::Total => total,
            Measure::FirstByte => first?,
        })
    };
    timeout(REQUEST_TIMEOUT, exchange).await.ok().flatten()
}

/// The samples of a sequential phase.
#[derive(Debug, Default)]
struct Sequential {
    direct: Vec<Duration>,
    via: Vec<Duration>,
    errors: u64,
    /// The sidecar's CPU ticks over the measured via requests.
    sidecar_ticks: u64,
}

/// Sequential requests, direct and via interleaved in rounds after a warm-up of each.
async fn sequential(
    client: &BenchClient,
    [(direct, direct_body), (via, via_body)]: [(&Uri, &Bytes); 2],
    n: usize,
    measure: Measure,
    sidecar_pid: u32,
) -> Sequential {
    let mut s = Sequential {
        direct: Vec::with_capacity(n),
        via: Vec::with_capacity(n),
        ..Sequential::default()
    };
    for _ in 0..WARMUP_REQUESTS {
        for (uri, body) in [(direct, direct_body), (via, via_body)] {
            s.errors += u64::from(one(client, uri, body, measure).await.is_none());
        }
    }
    let sidecar = sidecar_pid.to_string();
    let per_round = n.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let count = per_round.min(n - (round * per_round).min(n));
        for (side, body) in [(direct, direct_body), (via, via_body)] {
            let before = procfs::cpu_ticks(&sidecar);
            for _ in 0..count {
                match one(client, side, body, measure).await {
                    Some(t) if side == via => s.via.push(t),
                    Some(t) => s.direct.push(t),
                    None => s.errors += 1,
                }
            }
            if side == via {
                s.sidecar_ticks += procfs::cpu_ticks(&sidecar) - before;
            }
        }
    }
    s
}

/// The outcome of a fixed-duration load phase.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    ok: u64,
    errors: u64,
    elapsed: Duration,
}

impl Load {
    fn add(&mut self, other: Load) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` workers send requests back to back until `duration` is over.
async fn load(
    client: &BenchClient,
    uri: &Uri,
    body: &Bytes,
    concurrency: usize,
    duration: Duration,
) -> Load {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, uri, body) = (client.clone(), uri.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match one(&client, &uri, &body, Measure::Total).await {
                    Some(_) => ok += 1,
                    None => errors += 1,
                }
            }
            (ok, errors)
        }));
    }
    let mut result = Load::default();
    for worker in workers {
        // Each request is bounded by REQUEST_TIMEOUT, so a worker ends soon after the deadline.
        let (ok, errors) = worker.await.expect("a load worker does not panic");
        result.ok += ok;
        result.errors += errors;
    }
    result.elapsed = started.elapsed();
    result
}

/// Direct and via at one concurrency: totals over alternating slices, and CPU ticks spent in
/// each side's slices.
#[derive(Debug, Default)]
struct Throughput {
    direct: Load,
    via: Load,
    /// via/direct of each pair of slices, to show how much background load moved things.
    slice_ratios: Vec<f64>,
    /// Requests sent to the sidecar while warming up.
    via_warmup: u64,
    sidecar_ticks: u64,
    bench_ticks_direct: u64,
    bench_ticks_via: u64,
}

impl Throughput {
    fn ratio(&self) -> f64 {
        self.via.rate() / self.direct.rate()
    }

    fn ratio_range(&self) -> (f64, f64) {
        let min = self
            .slice_ratios
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let max = self.slice_ratios.iter().copied().fold(0.0, f64::max);
        (min, max)
    }
}

/// One slice per second of the phase (at least one), so that a shared machine's background
/// load falls on both sides alike.
fn slice_count(seconds: f64) -> u32 {
    (seconds.round() as u32).max(1)
}

/// Warms both sides up, then alternates direct and via slices until each has had `per_side`.
async fn throughput(
    client: &BenchClient,
    [direct, via]: [&Uri; 2],
    body: &Bytes,
    concurrency: usize,
    per_side: Duration,
    warmup: Duration,
    sidecar_pid: u32,
) -> Throughput {
    load(client, direct, body, concurrency, warmup).await;
    let warm = load(client, via, body, concurrency, warmup).await;
    let slices = slice_count(per_side.as_secs_f64());
    let slice = per_side / slices;
    let sidecar = sidecar_pid.to_string();
    let mut t = Throughput {
        via_warmup: warm.ok + warm.errors,
        ..Throughput::default()
    };
    for _ in 0..slices {
        let before = procfs::cpu_ticks("self");
        let d = load(client, direct, body, concurrency, slice).await;
        t.bench_ticks_direct += procfs::cpu_ticks("self") - before;

        let (before, sidecar_before) = (procfs::cpu_ticks("self"), procfs::cpu_ticks(&sidecar));
        let v = load(client, via, body, concurrency, slice).await;
        t.bench_ticks_via += procfs::cpu_ticks("self") - before;
        t.sidecar_ticks += procfs::cpu_ticks(&sidecar) - sidecar_before;

        t.slice_ratios.push(v.rate() / d.rate());
        t.direct.add(d);
        t.via.add(v);
    }
    t
}

// === report ===

/// The `p`-th percentile (nearest rank) of sorted samples, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// The ratio via/direct with the range over slices.
fn ratio_cell(t: &Throughput) -> String {
    let (min, max) = t.ratio_range();
    format!("{:.2}× (slices {min:.2}–{max:.2})", t.ratio())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn render(mut r: Results) -> String {
    for samples in [
        &mut r.latency.direct,
        &mut r.latency.via,
        &mut r.first_byte.direct,
        &mut r.first_byte.via,
        &mut r.translation.direct,
        &mut r.translation.via,
        &mut r.translation_first_byte.direct,
        &mut r.translation_first_byte.via,
    ] {
        samples.sort_unstable();
    }
    let lat = |s: &[Duration], p| percentile_ms(s, p);
    let (l, f) = (&r.latency, &r.first_byte);
    let (ld50, lv50) = (lat(&l.direct, 50.0), lat(&l.via, 50.0));
    let (ld99, lv99) = (lat(&l.direct, 99.0), lat(&l.via, 99.0));
    let (td50, tv50) = (lat(&f.direct, 50.0), lat(&f.via, 50.0));
    let (td99, tv99) = (lat(&f.direct, 99.0), lat(&f.via, 99.0));
    let ratio32 = r.c32.ratio();
    let (x, xf) = (&r.translation, &r.translation_first_byte);
    let (xd50, xv50) = (lat(&x.direct, 50.0), lat(&x.via, 50.0));
    let (xfd50, xfv50) = (lat(&xf.direct, 50.0), lat(&xf.via, 50.0));
    // Added latency of translation relative to the added latency of passthrough.
    let x_ratio = (xv50 - xd50) / (lv50 - ld50);
    let xf_ratio = (xfv50 - xfd50) / (tv50 - td50);
    let per_10k =
        |ticks: u64, requests: u64| ticks as f64 * r.tick_ms * 10_000.0 / requests.max(1) as f64;
    let cpu_10k = per_10k(r.c32.sidecar_ticks, r.c32.via.ok);
    let bench_via_10k = per_10k(r.c32.bench_ticks_via, r.c32.via.ok);
    let bench_direct_10k = per_10k(r.c32.bench_ticks_direct, r.c32.direct.ok);
    let cpu_10k_c1 = per_10k(l.sidecar_ticks, l.via.len() as u64);
    let errors = l.errors
        + f.errors
        + x.errors
        + xf.errors
        + [&r.c32, &r.c128]
            .iter()
            .map(|t| t.direct.errors + t.via.errors)
            .sum::<u64>();
    let mut t = String::new();
    let mut row = |cells: [String; 4]| {
        writeln!(
            t,
            "| {} | {} | {} | {} |",
            cells[0], cells[1], cells[2], cells[3]
        )
        .expect("write to a String");
    };
    let s = |x: &str| x.to_string();
    row([
        s("metric"),
        s("direct"),
        s("via sidecar"),
        s("added / ratio"),
    ]);
    row([s("---"), s("---:"), s("---:"), s("---:")]);
    row([
        s("latency p50, c1, non-streamed (ms)"),
        format!("{ld50:.3}"),
        format!("{lv50:.3}"),
        format!("+{:.3} ms", lv50 - ld50),
    ]);
    row([
        s("latency p99, c1, non-streamed (ms)"),
        format!("{ld99:.3}"),
        format!("{lv99:.3}"),
        format!("+{:.3} ms", lv99 - ld99),
    ]);
    row([
        s("requests/s, c32"),
        format!("{:.0}", r.c32.direct.rate()),
        format!("{:.0}", r.c32.via.rate()),
        ratio_cell(&r.c32),
    ]);
    row([
        s("requests/s, c128"),
        format!("{:.0}", r.c128.direct.rate()),
        format!("{:.0}", r.c128.via.rate()),
        ratio_cell(&r.c128),
    ]);
    row([
        s("first streamed byte p50 (ms)"),
        format!("{td50:.3}"),
        format!("{tv50:.3}"),
        format!("+{:.3} ms", tv50 - td50),
    ]);
    row([
        s("first streamed byte p99 (ms)"),
        format!("{td99:.3}"),
        format!("{tv99:.3}"),
        format!("+{:.3} ms", tv99 - td99),
    ]);
    row([
        s("OpenAI client → Anthropic provider, latency p50 (ms)"),
        format!("{xd50:.3}"),
        format!("{xv50:.3}"),
        format!("+{:.3} ms ({x_ratio:.2}× passthrough's)", xv50 - xd50),
    ]);
    row([
        s("OpenAI client → Anthropic provider, first streamed byte p50 (ms)"),
        format!("{xfd50:.3}"),
        format!("{xfv50:.3}"),
        format!("+{:.3} ms ({xf_ratio:.2}× passthrough's)", xfv50 - xfd50),
    ]);
    row([
        s("sidecar RSS idle (MiB)"),
        s("–"),
        format!("{:.1}", mib(r.rss_idle_kib)),
        format!("of which anon {:.1}", mib(r.anon_idle_kib)),
    ]);
    row([
        s("sidecar RSS peak, VmHWM after c128 (MiB)"),
        s("–"),
        format!("{:.1}", mib(r.hwm_kib)),
        format!(
            "VmRSS then {:.1}, anon {:.1}",
            mib(r.rss_after_c128_kib),
            mib(r.anon_after_c128_kib)
        ),
    ]);
    row([
        s("sidecar CPU per 10k requests, c32 (ms)"),
        s("–"),
        format!("{cpu_10k:.0}"),
        s(""),
    ]);
    row([
        s("sidecar CPU per 10k requests, c1 (ms)"),
        s("–"),
        format!("{cpu_10k_c1:.0}"),
        s(""),
    ]);
    row([
        s("bench process (client + simulator) CPU per 10k, c32 (ms)"),
        format!("{bench_direct_10k:.0}"),
        format!("{bench_via_10k:.0}"),
        s(""),
    ]);

    let check = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Run: BENCH_SECONDS={} ({} s per throughput side after warm-up), {} sequential and {} \
         streamed requests per side, sidecar with RUST_LOG=warn; failed requests: {}.",
        r.seconds, r.seconds, r.latency_n, r.ttfb_n, errors
    );
    let _ = writeln!(
        t,
        "Requests completed: c32 {} direct / {} via, c128 {} direct / {} via.",
        r.c32.direct.ok, r.c32.via.ok, r.c128.direct.ok, r.c128.via.ok
    );
    let _ = writeln!(
        t,
        "Targets: added p50 ≤ 0.1 ms: {}; via/direct ≥ 0.4 at c32: {}; RSS ≤ 16 MiB idle: {}; \
         RSS ≤ 32 MiB at c128: {}.",
        check(lv50 - ld50 <= 0.1),
        check(ratio32 >= 0.4),
        check(mib(r.rss_idle_kib) <= 16.0),
        check(mib(r.hwm_kib) <= 32.0),
    );
    let _ = writeln!(
        t,
        "Translation (direct = an Anthropic-format client straight to the provider): added latency \
         within 1.5× passthrough's: non-streamed {}, first streamed byte {}.",
        check(x_ratio <= 1.5),
        check(xf_ratio <= 1.5),
    );
    t
}
