//! Soak: the sidecar binary under steady load while its providers flap, checked for what the
//! contract promises. Printed as a markdown table; see bench/RESULTS.md and bench/soak.sh.
//!
//! Two simulated OpenAI providers run in this process behind one `Failover` route. The providers
//! flap every `SOAK_FLAP_SECONDS` (default 10): a period where one of them, alternately, is faulty
//! in the next way of a cycle (503 bursts, hanging without an answer, streams aborted mid-way, 429
//! with `Retry-After: 2`) while the other stays healthy, then a period where both are healthy. The
//! route's `total` timeout is half a period, so a request caught by a hang fails over within the
//! healthy period that follows. Requests arrive open-loop at `SOAK_RATE` per second (default
//! 1000; one in ten streamed) for `SOAK_SECONDS` (default 60). Measured and checked:
//!
//! - client-visible errors before the first byte: none may happen while a target is healthy;
//! - streams broken after their first byte (expected while a provider aborts streams);
//! - every request logged exactly once (the sidecar's `request` log lines against requests sent);
//! - the sidecar's RSS and open files, sampled every 5 s, with their slope per hour.
//!
//! `SOAK_CHECK=1` (what CI runs, for a short time) fails the run when a check fails.

#[path = "procfs.rs"]
mod procfs;
#[path = "sidecar_process.rs"]
mod sidecar_process;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use switchyard_tests::{Fault, MockProvider, pool, route, write_manifests};
use tokio::sync::Semaphore;
use tokio::time::{Instant, interval, sleep, timeout};

use sidecar_process::{SidecarProcess, wait_ready};

type BenchClient = Client<HttpConnector, Full<Bytes>>;

/// Requests in flight at most; a tick past that is counted as shed rather than queued, so the
/// load stays open-loop.
const MAX_IN_FLIGHT: usize = 2048;
/// Longest any request may take: the route's `total` timeout plus a failover.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the sidecar's RSS and open files are read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    let settings = Settings {
        seconds: env_or("SOAK_SECONDS", 60),
        rate: env_or("SOAK_RATE", 1000),
        flap: Duration::from_secs(env_or("SOAK_FLAP_SECONDS", 10)),
        check: env_or("SOAK_CHECK", 0) == 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let report = runtime.block_on(run(&settings));
    println!("{}", report.render(&settings));
    let failed = report.failed_checks();
    if settings.check && !failed.is_empty() {
        eprintln!("soak checks failed: {}", failed.join("; "));
        std::process::exit(1);
    }
}

struct Settings {
    seconds: u64,
    rate: u64,
    flap: Duration,
    check: bool,
}

/// What the clients saw, counted as it happens.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    /// An error status or no response at all: before the first byte.
    early_errors: AtomicU64,
    /// A stream that ended with an error event or was cut after its head.
    broken_streams: AtomicU64,
    shed: AtomicU64,
}

struct Report {
    sent: u64,
    ok: u64,
    early_errors: u64,
    broken_streams: u64,
    shed: u64,
    logged: u64,
    elapsed: Duration,
    /// (seconds since start, RSS KiB, open files)
    samples: Vec<(f64, u64, u64)>,
}

async fn run(settings: &Settings) -> Report {
    let providers = [
        MockProvider::start("a").await.expect("simulator starts"),
        MockProvider::start("b").await.expect("simulator starts"),
    ];
    for provider in &providers {
        provider.stop_recording();
    }
    let yaml = pool(
        &[
            ("a", &providers[0].base_url(), "m"),
            ("b", &providers[1].base_url(), "m"),
        ],
        &format!(
            "timeouts: {{firstToken: 1s, idle: 2s, total: {}ms}}",
            (settings.flap.as_millis() / 2).max(1000)
        ),
        "{consecutiveFailures: 3, cooldown: 2s}",
    ) + &route("soak", "soak", &[("a", "m"), ("b", "m")], "");
    let dir = write_manifests(&yaml);
    let client: BenchClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let mut sidecar = SidecarProcess::start_logging(&dir, "info").await;
    wait_ready(&client, &mut sidecar).await;
    let uri = format!("http://{}/v1/chat/completions", sidecar.data);

    let counts = Arc::new(Counts::default());
    let providers = Arc::new(providers);
    let flapping = tokio::spawn(flap(providers.clone(), settings.flap));
    let pid = sidecar.pid.to_string();
    let started = Instant::now();
    let mut samples = vec![sample(&pid, 0.0)];
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut ticks = interval(Duration::from_secs(1) / settings.rate.max(1) as u32);
    let mut next_sample = started + SAMPLE_EVERY;
    let end = started + Duration::from_secs(settings.seconds);
    let mut n: u64 = 0;
    while Instant::now() < end {
        ticks.tick().await;
        if Instant::now() >= next_sample {
            samples.push(sample(&pid, started.elapsed().as_secs_f64()));
            next_sample += SAMPLE_EVERY;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            counts.shed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        n += 1;
        let stream = n.is_multiple_of(10);
        let (client, uri, counts) = (client.clone(), uri.clone(), counts.clone());
        counts.sent.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            one(&client, &uri, stream, &counts).await;
            drop(permit);
        });
    }
    // Let the requests in flight finish.
    let _ = timeout(REQUEST_TIMEOUT, slots.acquire_many(MAX_IN_FLIGHT as u32)).await;
    let elapsed = started.elapsed();
    samples.push(sample(&pid, elapsed.as_secs_f64()));
    flapping.abort();
    sleep(Duration::from_millis(500)).await;
    let logged = sidecar.terminate_counting_lines("\"message\":\"request\"");
    Report {
        sent: counts.sent.load(Ordering::Relaxed),
        ok: counts.ok.load(Ordering::Relaxed),
        early_errors: counts.early_errors.load(Ordering::Relaxed),
        broken_streams: counts.broken_streams.load(Ordering::Relaxed),
        shed: counts.shed.load(Ordering::Relaxed),
        logged,
        elapsed,
        samples,
    }
}

/// Turns one provider faulty every other period, alternately, cycling through the fault kinds;
/// both are healthy in between.
async fn flap(providers: Arc<[MockProvider; 2]>, every: Duration) {
    let faults = [
        Fault::Overloaded,
        Fault::Hang,
        Fault::AbortMidStream { after_chunks: 2 },
        Fault::RateLimited {
            retry_after: Some("2".into()),
        },
    ];
    for round in 0usize.. {
        for provider in providers.iter() {
            provider.set_default_fault(None);
        }
        if round % 2 == 1 {
            let sick = round / 2;
            providers[sick % 2].set_default_fault(Some(faults[(sick / 2) % faults.len()].clone()));
        }
        sleep(every).await;
    }
}

/// Sends one request and counts how it ended.
async fn one(client: &BenchClient, uri: &str, stream: bool, counts: &Counts) {
    let body = serde_json::json!({"model": "soak", "stream": stream,
        "messages": [{"role": "user", "content": "soak"}]})
    .to_string();
    let request = Request::post(uri)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request");
    let answer = timeout(REQUEST_TIMEOUT, async {
        let response = client.request(request).await.ok()?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes());
        Some((status, bytes))
    })
    .await;
    if let Ok(Some((status, Ok(bytes)))) = &answer
        && !status.is_success()
        && counts.early_errors.load(Ordering::Relaxed) < 5
    {
        eprintln!("early error {status}: {}", String::from_utf8_lossy(bytes));
    }
    let counter = match answer {
        Ok(Some((status, Ok(bytes)))) if status.is_success() => {
            let clean = !stream || bytes.ends_with(b"data: [DONE]\n\n");
            if clean {
                &counts.ok
            } else {
                &counts.broken_streams
            }
        }
        Ok(Some((status, Err(_)))) if status.is_success() && stream => &counts.broken_streams,
        _ => &counts.early_errors,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The sidecar's RSS (KiB) and open files at `t` seconds.
fn sample(pid: &str, t: f64) -> (f64, u64, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (t, procfs::status_kib(pid, "VmRSS:"), fds)
}

/// Least-squares slope of `y` over `x`, per hour of `x` seconds.
fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den * 3600.0 }
}

impl Report {
    /// Samples after the first flap period, when pools and caches have warmed up.
    fn steady(&self, series: impl Fn(&(f64, u64, u64)) -> f64) -> Vec<(f64, f64)> {
        let warm = self.samples.len() / 4;
        self.samples[warm..]
            .iter()
            .map(|s| (s.0, series(s)))
            .collect()
    }

    fn failed_checks(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if self.early_errors > 0 {
            failed.push(format!(
                "{} requests failed before their first byte while a target was healthy",
                self.early_errors
            ));
        }
        if self.logged != self.sent {
            failed.push(format!(
                "{} requests sent but {} request log lines",
                self.sent, self.logged
            ));
        }
        failed
    }

    fn render(&self, settings: &Settings) -> String {
        let rss = self.steady(|s| s.1 as f64 / 1024.0);
        let fds = self.steady(|s| s.2 as f64);
        let (first, last) = (self.samples[0], self.samples[self.samples.len() - 1]);
        format!(
            "Soak: {} s at {} req/s offered, providers flapping every {} s\n\n\
             | sent | ok | errors before the first byte | streams broken mid-way | shed | request log lines | achieved rate | RSS start → end | RSS slope | open files start → end | open files slope |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | {} | {} | {} | {} | {} | {} | {:.0}/s | {:.1} → {:.1} MiB | {:+.1} MiB/h | {} → {} | {:+.0}/h |\n",
            settings.seconds,
            settings.rate,
            settings.flap.as_secs(),
            self.sent,
            self.ok,
            self.early_errors,
            self.broken_streams,
            self.shed,
            self.logged,
            self.sent as f64 / self.elapsed.as_secs_f64(),
            first.1 as f64 / 1024.0,
            last.1 as f64 / 1024.0,
            slope_per_hour(&rss),
            first.2,
            last.2,
            slope_per_hour(&fds),
        )
    }
}
