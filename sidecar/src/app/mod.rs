//! Starting and stopping a sidecar: bind every listener, load the first table, serve, and keep
//! tables coming (the manifest watcher, or the operator subscription and reporter).
//! `main` and the in-process tests both go through [`Sidecar::start`]; [`args`] turns flags into
//! a [`Config`].

pub mod args;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::listen::{admin, server};
pub use crate::pod::PodConfig;
use crate::pod::{persist, report, subscribe};
use crate::proxy::Proxy;
use crate::table::Runtime;
use crate::table::standalone::{self, Selection};
use crate::telemetry::metrics::Metrics;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub debug_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    /// Where route tables come from.
    pub source: Source,
}

/// Where route tables come from: the two ways DESIGN.md §3 runs the sidecar.
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
}

impl Sidecar {
    /// Standalone: loads the manifests (an invalid set is an error: nothing is bound), then
    /// serves. In a pod: binds first, so `/healthz` answers and the data plane says
    /// `switchyard_no_config` until a table arrives, from the state dir or the operator.
    pub async fn start(config: Config) -> crate::Result<Self> {
        let runtime = Runtime::new(Metrics::new());
        if let Source::Manifests { paths, selection } = &config.source {
            let loaded = standalone::load(paths, selection)?;
            for warning in &loaded.warnings {
                tracing::warn!(%warning, "route conflict");
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
        tasks.push(tokio::spawn(server::serve(
            data,
            server::Limits::DATA_PLANE,
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
        })
    }

    /// Stops accepting, drains in-flight requests and waits for every task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
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
