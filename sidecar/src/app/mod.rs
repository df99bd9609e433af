//! Starting and stopping a sidecar: bind every listener, load the first table, serve, and keep
//! tables coming (the manifest watcher, or the operator subscription and reporter).
//! `main` and the in-process tests both go through [`Sidecar::start`]; [`args`] turns flags into
//! a [`Config`].

pub mod args;
pub mod complexity;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout_at};

use crate::listen::{admin, server};
pub use crate::pod::PodConfig;
use crate::pod::{persist, report, subscribe};
use crate::proxy::Proxy;
use crate::table::Runtime;
use crate::table::standalone::{self, Selection};
use crate::telemetry::metrics::Metrics;

/// `--drain-timeout`'s default: within Kubernetes' default 30 s grace period, with time left to
/// end cut streams and exit before the kubelet's SIGKILL.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(25);

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub debug_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    /// How long requests in flight get to finish once shutdown begins.
    pub drain: Duration,
    /// Whether to keep accepting after shutdown begins, until the app has gone quiet.
    pub accept_while_draining: bool,
    /// Where route tables come from.
    pub source: Source,
}

/// Where route tables come from: the two modes of docs/reference/sidecar.md.
#[derive(Clone, Debug)]
pub enum Source {
    /// Standalone: YAML files, compiled here and watched.
    Manifests {
        paths: Vec<PathBuf>,
        selection: Selection,
    },
    /// In a pod: the operator's config server.
    ConfigServer(PodConfig),
}

// === impl Config ===

impl Config {
    /// The pod a standalone sidecar plays, to adjust before start; `None` in pod mode, where the
    /// operator decides.
    pub fn selection_mut(&mut self) -> Option<&mut Selection> {
        match &mut self.source {
            Source::Manifests { selection, .. } => Some(selection),
            Source::ConfigServer(_) => None,
        }
    }
}

/// A running sidecar.
pub struct Sidecar {
    /// The bound data-plane address (useful with port 0).
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub debug_addr: Option<SocketAddr>,
    pub runtime: Arc<Runtime>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    data_slots: server::Slots,
    drain: Duration,
    accept_while_draining: bool,
}

/// With `accept_while_draining`, how long the data plane must have had no connection open
/// before the sidecar stops accepting: the app has exited (its connections closed with it) or
/// has stopped calling.
const QUIET: Duration = Duration::from_secs(1);
/// How long before the drain timeout streams still open are told to end, so that they can send
/// their clients an error event before the connections are cut.
const CUT_NOTICE: Duration = Duration::from_secs(1);
/// How often to look while waiting for that.
const QUIET_POLL: Duration = Duration::from_millis(100);

impl Sidecar {
    /// Standalone: loads the manifests (an invalid set is an error: nothing is bound), then
    /// serves. In a pod: binds first, so `/healthz` answers and the data plane says
    /// `switchyard_no_config` until a table arrives, from the state dir or the operator.
    pub async fn start(config: Config) -> crate::Result<Self> {
        let runtime = Runtime::new(Metrics::new());
        if matches!(config.source, Source::ConfigServer(_)) {
            runtime.lease_budgets();
        }
        if let Source::Manifests { paths, selection } = &config.source {
            let loaded = standalone::load(paths, selection)?;
            for warning in &loaded.warnings {
                tracing::warn!(%warning, "route served with a problem");
            }
            for skipped in &loaded.skipped {
                tracing::debug!(%skipped, "not a Switchyard object; skipped");
            }
            tracing::info!(
                version = %loaded.table.version,
                namespace = %loaded.audience.namespace,
                routes = loaded.table.routes.len(),
                "loaded manifests"
            );
            runtime.swap(loaded.table);
        }

        let data = server::bind(config.listen).await?;
        let admin_listener = server::bind(config.admin_listen).await?;
        let debug_listener = match config.debug_listen {
            Some(addr) => Some(server::bind(addr).await?),
            None => None,
        };
        let data_addr = data.local_addr().expect("bound sockets have an address");
        let admin_addr = admin_listener
            .local_addr()
            .expect("bound sockets have an address");
        let debug_addr = debug_listener
            .as_ref()
            .map(|l| l.local_addr().expect("bound sockets have an address"));

        let (shutdown, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        let proxy = Proxy::new(runtime.clone(), config.max_body_bytes);
        let data_slots = server::Slots::new(server::Limits::DATA_PLANE);
        tasks.push(tokio::spawn(server::serve(
            data,
            data_slots.clone(),
            move |r| proxy.clone().handle(r),
            stop.clone(),
        )));
        let rt = runtime.clone();
        tasks.push(tokio::spawn(server::serve(
            admin_listener,
            server::Limits::ADMIN,
            move |r| admin::admin(rt.clone(), r),
            stop.clone(),
        )));
        if let Some(listener) = debug_listener {
            let rt = runtime.clone();
            tasks.push(tokio::spawn(server::serve(
                listener,
                server::Limits::ADMIN,
                move |r| admin::debug(rt.clone(), r),
                stop.clone(),
            )));
        }
        tasks.extend(keep_tables_coming(&config.source, &runtime, stop)?);
        let debug_listen = debug_addr.map(tracing::field::display);
        tracing::info!(%data_addr, %admin_addr, debug_addr = debug_listen, "serving");
        Ok(Self {
            data_addr,
            admin_addr,
            debug_addr,
            runtime,
            shutdown,
            tasks,
            data_slots,
            drain: config.drain,
            accept_while_draining: config.accept_while_draining,
        })
    }

    /// Stops accepting (with `accept_while_draining`, once the app has gone quiet), lets the
    /// requests in flight finish and waits for every task, all within the drain timeout. Shortly
    /// before it ends, streams still open are ended with an error event (so clients learn why);
    /// whatever is still running at the timeout is cut.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.drain;
        let cut_at = deadline - CUT_NOTICE.min(self.drain / 4);
        if self.accept_while_draining {
            self.until_quiet(cut_at).await;
        }
        let _ = self.shutdown.send(true);
        let mut tasks = self.tasks;
        let mut join = async |until: Instant| {
            let all = async {
                for task in &mut tasks {
                    let _ = task.await;
                }
            };
            timeout_at(until, all).await.is_ok()
        };
        if join(cut_at).await {
            return;
        }
        self.runtime.cut_streams();
        if !join(deadline).await {
            tracing::warn!(drain = ?self.drain, "requests still in flight at the drain timeout are cut");
            for task in &tasks {
                task.abort();
            }
        }
    }

    /// Waits until the data plane has had no connection for [`QUIET`], or until `deadline`.
    async fn until_quiet(&self, deadline: Instant) {
        let mut quiet_since = None;
        while Instant::now() < deadline {
            let now = Instant::now();
            if self.data_slots.open() > 0 {
                quiet_since = None;
            } else if now - *quiet_since.get_or_insert(now) >= QUIET {
                return;
            }
            sleep(QUIET_POLL).await;
        }
    }
}

/// The tasks that bring new tables: the manifest watcher, or (after serving the table kept on
/// disk, if any) the operator subscription and the reporter.
fn keep_tables_coming(
    source: &Source,
    runtime: &Arc<Runtime>,
    stop: watch::Receiver<bool>,
) -> crate::Result<Vec<JoinHandle<()>>> {
    Ok(match source {
        Source::Manifests { paths, selection } => vec![standalone::watch(
            paths.clone(),
            selection.clone(),
            runtime.clone(),
            stop,
        )?],
        Source::ConfigServer(pod) => {
            match persist::load(&pod.state_dir) {
                Ok(Some(table)) => {
                    tracing::info!(version = %table.version, "serving the persisted route table");
                    runtime.swap(table);
                }
                Ok(None) => {}
                // A bad file is not fatal: the operator will send a good table.
                Err(e) => tracing::warn!(error = %e, "persisted route table ignored"),
            }
            vec![
                subscribe::spawn(pod.clone(), runtime.clone(), stop.clone()),
                report::spawn(pod.clone(), runtime.clone(), stop),
            ]
        }
    })
}
