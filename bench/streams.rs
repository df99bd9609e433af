//! Memory per concurrent stream: how much the release sidecar holds while N streams are open
//! at once, and how much of it it gives back afterwards. Printed as a markdown table; see
//! bench/RESULTS.md for the figures and bench/streams.sh for how to run it.
//!
//! One simulated OpenAI provider in this process streams a 40-word answer at one word per
//! 100 ms (about 4 s a stream). For each N in `STREAMS` (default `500,1000,2000`), N clients
//! each open one streamed request on their own connection; once every one has its response
//! head, the sidecar's RSS is read (all streams open), then again 15 s after the last stream
//! ended (what it kept).

#[path = "procfs.rs"]
mod procfs;
#[path = "sidecar_process.rs"]
mod sidecar_process;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use switchyard_tests::{Behavior, MockProvider, pool, route, write_manifests};
use tokio::sync::Barrier;
use tokio::time::{sleep, timeout};

use sidecar_process::{SidecarProcess, wait_ready};

type BenchClient = Client<HttpConnector, Full<Bytes>>;

/// Words in each streamed answer; one chunk each.
const WORDS: usize = 40;
/// Delay between chunks: with [`WORDS`], about 4 s a stream.
const CHUNK_DELAY: Duration = Duration::from_millis(100);
/// Longest wait for N streams to open, or to finish.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the last stream the sidecar's memory is read again.
const SETTLE: Duration = Duration::from_secs(15);

fn main() {
    let counts: Vec<usize> = std::env::var("STREAMS")
        .unwrap_or_else(|_| "500,1000,2000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    println!("{}", runtime.block_on(run(&counts)));
}

/// One row of the table.
struct Row {
    streams: usize,
    open_kib: u64,
    open_anon_kib: u64,
    after_kib: u64,
    after_anon_kib: u64,
    failed: usize,
}

async fn run(counts: &[usize]) -> String {
    let mock = MockProvider::start("streams")
        .await
        .expect("simulator starts");
    mock.set_behavior(Behavior {
        chunk_delay: CHUNK_DELAY,
        reply: vec!["word"; WORDS].join(" "),
        ..Behavior::default()
    });
    let yaml = format!(
        "{}{}",
        pool(&[("streams", &mock.base_url(), "m")], "", ""),
        route("streams", "streams", &[("streams", "m")], "")
    );
    let dir = write_manifests(&yaml);
    let client: BenchClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut sidecar = SidecarProcess::start(&dir).await;
    wait_ready(&client, &mut sidecar).await;
    let pid = sidecar.pid.to_string();
    let idle_kib = procfs::status_kib(&pid, "VmRSS:");
    let idle_anon_kib = procfs::status_kib(&pid, "RssAnon:");

    let uri = format!("http://{}/v1/chat/completions", sidecar.data);
    let body = Bytes::from(
        serde_json::json!({"model": "streams", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string(),
    );
    let mut rows = Vec::new();
    for &n in counts {
        eprintln!("{n} concurrent streams");
        rows.push(streams(n, &client, &uri, &body, &pid).await);
    }
    let log = sidecar.stop();
    if log.contains("panicked") {
        panic!("the sidecar panicked:\n{log}");
    }
    render(idle_kib, idle_anon_kib, &rows)
}

/// Opens `n` streams at once, reads memory with all open and after they end.
async fn streams(n: usize, client: &BenchClient, uri: &str, body: &Bytes, pid: &str) -> Row {
    let opened = Arc::new(Barrier::new(n + 1));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (client, opened, failed) = (client.clone(), opened.clone(), failed.clone());
        let request = Request::post(uri)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .expect("a valid request");
        tasks.push(tokio::spawn(async move {
            let response = client.request(request).await;
            opened.wait().await;
            let complete = match response {
                Ok(r) if r.status().is_success() => {
                    let text = r.into_body().collect().await.map(|b| b.to_bytes());
                    let done = text
                        .as_ref()
                        .is_ok_and(|t| t.ends_with(b"data: [DONE]\n\n"));
                    done.then_some(()).ok_or_else(|| format!("{text:?}"))
                }
                other => Err(format!("{other:?}")),
            };
            if let Err(what) = complete
                && failed.fetch_add(1, Ordering::Relaxed) == 0
            {
                eprintln!("first failed stream: {what}");
            }
        }));
    }
    timeout(PHASE_TIMEOUT, opened.wait())
        .await
        .expect("every stream opens in time");
    let open_kib = procfs::status_kib(pid, "VmRSS:");
    let open_anon_kib = procfs::status_kib(pid, "RssAnon:");
    for task in tasks {
        timeout(PHASE_TIMEOUT, task)
            .await
            .expect("every stream ends in time")
            .expect("a client task");
    }
    sleep(SETTLE).await;
    Row {
        streams: n,
        open_kib,
        open_anon_kib,
        after_kib: procfs::status_kib(pid, "VmRSS:"),
        after_anon_kib: procfs::status_kib(pid, "RssAnon:"),
        failed: failed.load(Ordering::Relaxed),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn render(idle_kib: u64, idle_anon_kib: u64, rows: &[Row]) -> String {
    let mut out = format!(
        "Sidecar idle: RSS {:.1} MiB (anonymous {:.1} MiB)\n\n\
         | streams open | RSS all open | per stream (over idle) | RSS 15 s after | anonymous open → after | failed |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        mib(idle_kib),
        mib(idle_anon_kib)
    );
    for r in rows {
        let per_stream = r.open_kib.saturating_sub(idle_kib) as f64 / r.streams as f64;
        writeln!(
            out,
            "| {} | {:.1} MiB | {per_stream:.1} KiB | {:.1} MiB | {:.1} → {:.1} MiB | {} |",
            r.streams,
            mib(r.open_kib),
            mib(r.after_kib),
            mib(r.open_anon_kib),
            mib(r.after_anon_kib),
            r.failed
        )
        .expect("write to a String");
    }
    out
}
