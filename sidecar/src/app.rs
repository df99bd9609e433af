//! Starting and stopping a sidecar: load the first table, bind every listener, serve, watch.
//! `main` and the in-process tests both go through [`Sidecar::start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::standalone::{self, Selection};
use crate::state::Runtime;
use crate::{admin, server};

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub debug_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    pub manifests: Vec<PathBuf>,
    pub selection: Selection,
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
    /// Loads the manifests (an invalid set is an error: nothing is bound), then serves.
    pub async fn start(config: Config) -> crate::Result<Self> {
        let loaded = standalone::load(&config.manifests, &config.selection)?;
        let runtime = Runtime::new(Metrics::new());
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
            move |r| proxy.clone().handle(r),
            stop.clone(),
        )));
        let rt = runtime.clone();
        tasks.push(tokio::spawn(server::serve(
            admin_listener,
            move |r| admin::admin(rt.clone(), r),
            stop.clone(),
        )));
        if let Some(listener) = debug_listener {
            let rt = runtime.clone();
            tasks.push(tokio::spawn(server::serve(
                listener,
                move |r| admin::debug(rt.clone(), r),
                stop.clone(),
            )));
        }
        tasks.push(standalone::watch(
            config.manifests.clone(),
            config.selection.clone(),
            runtime.clone(),
            stop,
        )?);
        tracing::info!(%data_addr, %admin_addr, ?debug_addr, "serving");
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
