//! OpenTelemetry overhead: two release sidecar processes in front of one simulated provider, one
//! with export off (no `OTEL_*` variables) and one exporting traces and metrics over OTLP/HTTP to
//! a receiver in this process that reads and drops every export. Prints a markdown table: latency
//! (sequential, p50/p99) and the sidecar's CPU per 10,000 requests, for whole answers and streams,
//! and throughput at 32 concurrent clients. Phases alternate off/on in one-second slices (or
//! rounds), so a shared machine's background load hits both alike. `BENCH_SECONDS` (default 5)
//! sets each phase per side. Run: `cargo build --release -p switchyard-sidecar && cargo bench -p
//! switchyard-tests --bench otel`.

#[path = "procfs.rs"]
mod procfs;
#[path = "sidecar_process.rs"]
mod sidecar_process;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_tests::{MockProvider, pool, route, write_manifests};
use tokio::time::{Instant, sleep};

type BenchClient = Client<HttpConnector, Full<Bytes>>;

const ROUNDS: usize = 10;
const CONCURRENCY: usize = 32;

/// A sidecar process with its own environment; killed on drop.
struct Sidecar {
    child: Child,
    data: SocketAddr,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    fn start(manifests: &std::path::Path, env: &[(&str, String)]) -> Self {
        let [data, admin] = sidecar_process::free_ports();
        let mut command = Command::new(sidecar_process::sidecar_binary());
        command
            .arg("--manifests")
            .arg(manifests)
            .args(["--listen", &data.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--debug-listen", ""])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("the sidecar starts");
        Self { child, data }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

/// An OTLP/HTTP receiver that reads every export, counts its bytes and answers 200.
async fn receiver(bytes: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let bytes = bytes.clone();
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    print!("{}", runtime.block_on(run(seconds)));
}

async fn run(seconds: f64) -> String {
    let provider = MockProvider::start("p").await.expect("mock");
    let yaml = pool(&[("p", &provider.base_url(), "m")], "", "")
        + &route("bench", "bench", &[("p", "m")], "");
    let manifests = write_manifests(&yaml);
    let exported = Arc::new(AtomicU64::new(0));
    let otlp = receiver(exported.clone()).await;
    let off = Sidecar::start(&manifests, &[]);
    let on = Sidecar::start(
        &manifests,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ],
    );
    let client: BenchClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let whole = Bytes::from(r#"{"model":"bench","messages":[{"role":"user","content":"hi"}]}"#);
    let stream = Bytes::from(
        r#"{"model":"bench","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    let uri = |s: &Sidecar| -> Uri {
        format!("http://{}/v1/chat/completions", s.data)
            .parse()
            .unwrap()
    };
    let (off_uri, on_uri) = (uri(&off), uri(&on));
    for u in [&off_uri, &on_uri] {
        let ready = Instant::now() + Duration::from_secs(20);
        while one(&client, u, &whole).await.is_none() {
            assert!(Instant::now() < ready, "a sidecar did not start");
            sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..500 {
            one(&client, u, &whole).await;
        }
    }
    let mut out = String::from(
        "| phase | off p50 ms | on p50 ms | off p99 ms | on p99 ms | off CPU ms / 10k | on CPU ms / 10k |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let per_round = ((1000.0 * seconds) as usize / ROUNDS).max(10);
    for (name, body) in [("whole c1", &whole), ("stream c1", &stream)] {
        let mut lat = [Vec::new(), Vec::new()];
        let mut ticks = [0u64; 2];
        for _ in 0..ROUNDS {
            for (i, (s, u)) in [(&off, &off_uri), (&on, &on_uri)].into_iter().enumerate() {
                let before = procfs::cpu_ticks(&s.pid());
                for _ in 0..per_round {
                    if let Some(d) = one(&client, u, body).await {
                        lat[i].push(d);
                    }
                }
                ticks[i] += procfs::cpu_ticks(&s.pid()) - before;
            }
        }
        let tick_ms = 1000.0 / procfs::clock_ticks_per_second();
        let n = (per_round * ROUNDS) as f64;
        for l in &mut lat {
            l.sort();
        }
        writeln_row(
            &mut out,
            name,
            [
                pct(&lat[0], 0.5),
                pct(&lat[1], 0.5),
                pct(&lat[0], 0.99),
                pct(&lat[1], 0.99),
                ticks[0] as f64 * tick_ms * 10_000.0 / n,
                ticks[1] as f64 * tick_ms * 10_000.0 / n,
            ],
        );
    }
    // Throughput at 32 concurrent clients, one-second slices alternating.
    let mut done = [0u64; 2];
    let mut ticks = [0u64; 2];
    let slices = seconds.ceil() as usize;
    for _ in 0..slices {
        for (i, (s, u)) in [(&off, &off_uri), (&on, &on_uri)].into_iter().enumerate() {
            let before = procfs::cpu_ticks(&s.pid());
            done[i] += load(&client, u, &whole, Duration::from_secs(1)).await;
            ticks[i] += procfs::cpu_ticks(&s.pid()) - before;
        }
    }
    let tick_ms = 1000.0 / procfs::clock_ticks_per_second();
    out.push_str(&format!(
        "\n| c{CONCURRENCY} whole | off | on |\n| --- | ---: | ---: |\n| requests/s | {:.0} | {:.0} |\n| sidecar CPU ms / 10k requests | {:.0} | {:.0} |\n",
        done[0] as f64 / slices as f64,
        done[1] as f64 / slices as f64,
        ticks[0] as f64 * tick_ms * 10_000.0 / done[0].max(1) as f64,
        ticks[1] as f64 * tick_ms * 10_000.0 / done[1].max(1) as f64,
    ));
    sleep(Duration::from_secs(6)).await; // one more batch (5 s default delay)
    out.push_str(&format!(
        "\nOTLP bytes received from the `on` sidecar: {} ({:.0} per request)\n",
        exported.load(Ordering::Relaxed),
        exported.load(Ordering::Relaxed) as f64
            / (2.0 * (per_round * ROUNDS) as f64 + done[1] as f64)
    ));
    out
}

fn writeln_row(out: &mut String, name: &str, v: [f64; 6]) {
    out.push_str(&format!(
        "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} |\n",
        v[0], v[1], v[2], v[3], v[4], v[5]
    ));
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// One request, read to its end; its duration, or `None` on any failure.
async fn one(client: &BenchClient, uri: &Uri, body: &Bytes) -> Option<Duration> {
    let request = Request::post(uri.clone())
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .ok()?;
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.into_body().collect().await.ok()?;
    Some(started.elapsed())
}

/// Requests completed by [`CONCURRENCY`] clients within `duration`.
async fn load(client: &BenchClient, uri: &Uri, body: &Bytes, duration: Duration) -> u64 {
    let end = Instant::now() + duration;
    let count = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, uri, body, count) =
                (client.clone(), uri.clone(), body.clone(), count.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    if one(&client, &uri, &body).await.is_some() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    count.load(Ordering::Relaxed)
}
