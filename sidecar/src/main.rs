//! `switchyard-sidecar`: parse flags, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use switchyard_sidecar::app::Sidecar;
use switchyard_sidecar::app::args::Args;
use switchyard_sidecar::app::args::Command;
use switchyard_sidecar::app::complexity;
#[cfg(feature = "demo")]
use switchyard_sidecar::demo;
use switchyard_sidecar::telemetry;
use switchyard_sidecar::telemetry::otel;

/// jemalloc with background threads: it hands memory that a burst of streams freed back to the
/// system within seconds (glibc's allocator kept all of it: bench/streams.rs), which matters for a
/// sidecar that lives under the pod's memory limit.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `EX_USAGE`: bad flags or manifests.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help and --version are not errors.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line, as for every other usage error (clap's own text spans several).
            let text = e.to_string();
            let line = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            eprintln!("switchyard-sidecar: {line}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Some(Command::Complexity(command)) = &args.command {
        return match complexity::run(command, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("switchyard-sidecar complexity: {message}");
                ExitCode::FAILURE
            }
        };
    }
    let log_filter = std::env::var("RUST_LOG").ok();
    #[cfg(feature = "demo")]
    let demo = match &args.command {
        Some(Command::Demo(demo_args)) => Some(demo_args.clone()),
        _ => None,
    };
    #[cfg(not(feature = "demo"))]
    let demo: Option<std::convert::Infallible> = None;
    // Made before the runtime, so that it is dropped after it: requests that the runtime's
    // shutdown drops still log their line, and dropping the guard writes every queued line.
    let _log = match demo {
        Some(_) => telemetry::init(log_filter.as_deref(), "warn", false),
        None => telemetry::init(log_filter.as_deref(), "info", true),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    #[cfg(feature = "demo")]
    if let Some(demo_args) = demo {
        return runtime.block_on(demo::run(demo_args));
    }
    // Each listener bounds its connections (server::Limits), but together with upstream
    // connections they can pass a 1024 soft limit: take what the hard limit allows.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%error, "cannot raise the open-files limit");
    }
    // The pod's UID (downward API) names this sidecar in reports; the hostname (the pod
    // name) stands in where it is not set.
    let identity = std::env::var("POD_UID")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "switchyard-sidecar".into());
    let config = match args.config(&identity) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("switchyard-sidecar: {message}");
            return ExitCode::from(EX_USAGE);
        }
    };
    // OpenTelemetry: the standard OTEL_* variables (docs/reference/observability.md). A
    // mistake in them turns export off with a warning: it never stops the data plane.
    let otel =
        match otel::Settings::from_env(|k| std::env::var(k).ok(), args.otel_propagate_upstream) {
            Ok(settings) => settings,
            Err(problem) => {
                tracing::warn!(%problem, "OpenTelemetry export is off");
                otel::Settings::default()
            }
        };
    runtime.block_on(async {
        if let Err(problem) = otel::install(&otel) {
            tracing::warn!(%problem, "OpenTelemetry export is off");
        }
        let sidecar = match Sidecar::start(config).await {
            Ok(sidecar) => sidecar,
            Err(e @ switchyard_sidecar::Error::Manifests(_)) => {
                eprintln!("switchyard-sidecar: {e}");
                return ExitCode::from(EX_USAGE);
            }
            Err(e) => {
                eprintln!("switchyard-sidecar: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        sidecar.shutdown().await;
        // Spans and metrics still queued are sent while the runtime runs their I/O.
        let _ = tokio::task::spawn_blocking(otel::shutdown).await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
