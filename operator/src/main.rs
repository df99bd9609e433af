//! `switchyard-operator`: serves by default; `crds` prints the CRD manifests. Flags are read and
//! validated here, once; everything else lives in the library.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use backon::{ExponentialBuilder, Retryable as _};
use clap::Parser as _;
use switchyard_operator::admin::{self, AdminState};
use switchyard_operator::args::{Args, Command, Config};
use switchyard_operator::certs::{self, CertBundle, ServingCert};
use switchyard_operator::config_server::{self, ConfigServer, tables::Tables};
use switchyard_operator::leader::{self, Leadership};
use switchyard_operator::listener::Limits;
use switchyard_operator::metrics::Metrics;
use switchyard_operator::webhook::inject::SidecarDefaults;
use switchyard_operator::webhook::{self, Webhook, mode};
use switchyard_operator::{controller, telemetry, trust};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// jemalloc, as the sidecar: measured with 10,000 long-polling sidecars (bench/RESULTS.md,
/// "Operator allocator"), a route change cost the process about 30 % less CPU than with glibc's
/// allocator, for about 6 % more RSS.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `EX_USAGE` from sysexits.h: the flags were wrong.
const EX_USAGE: u8 = 64;
/// The longest a shutdown waits for long-polls to be answered: well inside the pod's default
/// 30 s termination grace period, and sidecars reconnect anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a shutdown looks whether the long-polls are answered: quick enough that a drained
/// server exits at once, rare enough to cost nothing.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Time given to answered long-polls to leave: one flush of a small response.
const DRAIN_FLUSH: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage(e.to_string().lines().next().unwrap_or("invalid arguments")),
    };
    if let Some(Command::Crds { out_dir }) = &args.command {
        return report(print_crds(out_dir.as_deref()));
    }
    let config = match args.into_config(std::env::var("POD_NAMESPACE").ok()) {
        Ok(config) => config,
        Err(e) => return usage(&e.to_string()),
    };
    init_tracing();
    // OpenTelemetry spans: the standard OTEL_* variables (docs/reference/observability.md). A
    // mistake in them turns export off with a warning: it never stops the operator.
    let otel = match telemetry::Settings::from_env(|k| std::env::var(k).ok()) {
        Ok(otel) => otel,
        Err(problem) => {
            tracing::warn!(%problem, "OpenTelemetry export is off");
            telemetry::Settings::default()
        }
    };
    raise_open_files_limit(config.config_max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    report(runtime.context("cannot start the runtime").and_then(|rt| {
        rt.block_on(async {
            if let Err(problem) = telemetry::install(&otel) {
                tracing::warn!(%problem, "OpenTelemetry export is off");
            }
            let served = serve(config).await;
            // Spans still queued are sent while the runtime runs their I/O.
            let _ = tokio::task::spawn_blocking(telemetry::shutdown).await;
            served
        })
    }))
}

/// Descriptors kept aside for everything but the config server's connections: the other
/// listeners (256 + 64), the apiserver connections, certificates, logs.
const OTHER_FILES: u64 = 512;

/// Every sidecar long-polls the config server: its connection cap is only reachable above the
/// usual soft limit of 1024 open files, so take what the hard limit allows, and say so when even
/// that cannot hold the cap (accepts would then fail with EMFILE instead of queueing).
fn raise_open_files_limit(config_max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < config_max_connections as u64 + OTHER_FILES => tracing::warn!(
            limit,
            config_max_connections,
            "the open-files limit is below the config server's connection cap; raise the hard limit or lower --config-max-connections"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-files limit"),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "switchyard-operator: {}",
        message.trim_start_matches("error: ")
    );
    ExitCode::from(EX_USAGE)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds(out_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let manifests = switchyard_crds::v1alpha1::crd_manifests();
    match out_dir {
        None => {
            for (_, yaml) in manifests {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (file, yaml) in manifests {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr, like the sidecar's: stdout is for what a subcommand prints.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .json()
        .with_env_filter(filter)
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // NB: kube and our servers both use rustls with ring; installing it as the process default
    // keeps any code path that asks for the default from panicking.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let (client, review_client) = kube_clients().await.unzip();
    // In a cluster the chart passes the pod's name; its absence means "out of cluster".
    let pod_name = std::env::var("POD_NAME").ok().filter(|n| !n.is_empty());
    let metrics = Metrics::new()?;
    // Ready once the controller has synced and published (without a cluster there is nothing
    // to wait for: config requests are answered 503 anyway).
    let synced = Arc::new(AtomicBool::new(client.is_none()));
    // The admin server starts first, so that liveness holds while certificates wait for an
    // apiserver that is not there yet.
    let admin_state = AdminState {
        metrics: metrics.clone(),
        ready: synced.clone(),
    };
    let admin_server = tokio::spawn(admin::serve(bind(config.admin_listen).await?, admin_state));

    let store = cert_store(&config, client.as_ref())?;
    let bundle = certificates(&store, &config.namespace).await?;
    let serving = Arc::new(ServingCert::new(&bundle)?);
    let tls = certs::server_config(serving.clone());

    let (election, leadership) = elect(
        client.as_ref(),
        pod_name.as_deref(),
        &config.namespace,
        &metrics,
    );

    let tables = Tables::default();
    let server = ConfigServer::with_leadership(
        tables.clone(),
        review_client,
        metrics.config.clone(),
        leadership.clone(),
    );
    if let Some(client) = &client {
        let instance = pod_name.unwrap_or_else(|| "out-of-cluster".to_string());
        let namespaces = spawn_controller(
            client,
            tables,
            &server,
            &metrics,
            &leadership,
            &synced,
            instance,
        );
        let publisher = trust::Publisher {
            client: client.clone(),
            store,
            namespace: config.namespace.clone(),
            webhook_config_name: config.webhook_config_name.clone(),
            serving,
            leadership: leadership.clone(),
            namespaces,
        };
        tokio::spawn(publisher.run(bundle));
    }
    let webhook = webhook(&config, client, &metrics);

    let (config_listener, webhook_listener) = listen(&config).await?;
    let config_limits = Limits {
        max_connections: config.config_max_connections,
        ..Limits::CONFIG
    };

    tokio::select! {
        result = config_server::serve_within(config_listener, tls.clone(), server.clone(), config_limits) => result?,
        result = webhook::serve(webhook_listener, tls, webhook) => result?,
        result = admin_server => result??,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            drain(&server, &metrics).await;
            if let Some(election) = election {
                election.step_down().await;
            }
        }
    }
    Ok(())
}

/// Binds the config server and webhook listeners (the admin one is bound first, on its own).
async fn listen(config: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
    let config_listener = bind(config.config_listen).await?;
    let webhook_listener = bind(config.webhook_listen).await?;
    tracing::info!(
        config = %config.config_listen,
        webhook = %config.webhook_listen,
        admin = %config.admin_listen,
        namespace = %config.namespace,
        "serving"
    );
    Ok((config_listener, webhook_listener))
}

/// The cluster's clients, or `None` out of a cluster: one for the controller, leader election
/// and publishing, and one for the config server's TokenReviews without kube's retries of
/// 429/503/504. A review holds up a sidecar's poll; during an apiserver outage retrying it only
/// adds load to the apiserver and seconds to an answer the sidecar backs off from anyway (it
/// keeps serving its table).
async fn kube_clients() -> Option<(kube::Client, kube::Client)> {
    let clients = async {
        let config = kube::Config::infer().await?;
        let mut reviews = config.clone();
        reviews.default_retry = false;
        anyhow::Ok((
            kube::Client::try_from(config)?,
            kube::Client::try_from(reviews)?,
        ))
    };
    match clients.await {
        Ok(clients) => Some(clients),
        Err(error) => {
            tracing::warn!(%error, "no Kubernetes configuration: config requests will be answered 503");
            None
        }
    }
}

/// Where the certificates live: `--cert-dir` if given, else a Secret in the cluster.
fn cert_store(config: &Config, client: Option<&kube::Client>) -> anyhow::Result<trust::Store> {
    match (&config.cert_dir, client) {
        (Some(dir), _) => Ok(trust::Store::Dir(dir.clone())),
        (None, Some(client)) => Ok(trust::Store::Secret {
            client: client.clone(),
            namespace: config.namespace.clone(),
        }),
        (None, None) => anyhow::bail!("--cert-dir is required without a Kubernetes configuration"),
    }
}

/// Starts competing for leadership when in a pod of a cluster; otherwise this process leads.
fn elect(
    client: Option<&kube::Client>,
    pod_name: Option<&str>,
    namespace: &str,
    metrics: &Metrics,
) -> (Option<leader::Election>, Leadership) {
    let (Some(client), Some(pod)) = (client, pod_name) else {
        tracing::info!("not in a pod: no leader election, this process leads");
        metrics.leader.set(1);
        return (None, Leadership::always());
    };
    let election = leader::spawn(
        client.clone(),
        namespace.to_string(),
        pod.to_string(),
        metrics.leader.clone(),
    );
    let leadership = election.leadership.clone();
    (Some(election), leadership)
}

/// Starts the controller; returns where it publishes the namespaces that need the CA bundle.
fn spawn_controller(
    client: &kube::Client,
    tables: Tables,
    server: &Arc<ConfigServer>,
    metrics: &Metrics,
    leadership: &Leadership,
    synced: &Arc<AtomicBool>,
    instance: String,
) -> watch::Receiver<BTreeSet<String>> {
    let (trust_namespaces, namespaces) = watch::channel(BTreeSet::new());
    let reports = server.clone();
    tokio::spawn(controller::run(controller::Context {
        client: client.clone(),
        tables,
        reports: Box::new(move || controller::Reports {
            windows: reports.report_windows(),
            versions: reports.report_versions(),
            budgets: reports.budget_totals(),
            routes: reports.route_windows(),
            top_workloads: reports.top_workloads(),
        }),
        metrics: metrics.controller.clone(),
        leadership: leadership.clone(),
        synced: synced.clone(),
        trust_namespaces,
        instance,
        versions_reported: server.versions_reported(),
    }));
    namespaces
}

/// The injection webhook, with the mode detection it needs started.
fn webhook(config: &Config, client: Option<kube::Client>, metrics: &Metrics) -> Arc<Webhook> {
    let (mode, detect) = mode::source(config.sidecar_mode, client, mode::AUTO_REFRESH);
    if let Some(detect) = detect {
        tokio::spawn(detect);
    }
    Webhook::new(
        SidecarDefaults::from_config(config),
        mode,
        metrics.admissions.clone(),
    )
}

/// The retries while the certificate Secret cannot be read: from 1 s, doubling, up to 30 s
/// (backon's jitter adds up to one more delay to each, so replicas starting together spread
/// out), soon enough that an apiserver coming back is noticed quickly.
const CERT_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_secs(1))
    .with_max_delay(Duration::from_secs(30))
    .with_factor(2.0)
    .with_jitter()
    .without_max_times();

/// Loads or creates the certificates. A Secret store is retried while the apiserver is away
/// (nothing can be served without them); a bad `--cert-dir` is an error at once.
async fn certificates(store: &trust::Store, namespace: &str) -> anyhow::Result<CertBundle> {
    let (bundle, action) = (|| store.ensure(namespace, SystemTime::now()))
        .retry(CERT_RETRY)
        .when(|_| matches!(store, trust::Store::Secret { .. }))
        .notify(|error, _| tracing::warn!(%error, "cannot load the certificates; retrying"))
        .await?;
    tracing::info!(?action, "certificates ready");
    Ok(bundle)
}

/// Answers every waiting long-poll and gives the answers a moment to leave, so that sidecars
/// reconnect to the next leader instead of finding a dead connection.
async fn drain(server: &ConfigServer, metrics: &Metrics) {
    server.drain();
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while metrics.config.long_polls.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    // The responses are written by their connection tasks; let them flush.
    tokio::time::sleep(DRAIN_FLUSH).await;
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| switchyard_operator::Error::Bind { addr, source }.into())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
