//! Standalone mode: route tables compiled from the YAML files a user would `kubectl apply`.
//!
//! The files are watched; a change reloads them after a short debounce. A reload that fails
//! (bad YAML, a broken reference) keeps the previous table serving and says why in the log, the
//! `switchyard_config_reload_failures_total` metric and `/readyz`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use switchyard_crds::compile::Audience;
use switchyard_crds::manifests::{self, Manifests};
use switchyard_crds::table::RouteTable;
use tokio::sync::{mpsc, watch};

use crate::state::Runtime;

/// How long to wait for a burst of file events (an editor's save, `kubectl cp`) to settle.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Which pod the standalone sidecar plays: its namespace and labels, which decide the routes it
/// gets exactly as for a pod in a cluster.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Default: the namespace every route shares, else `default`.
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A compiled load of the files.
pub struct Loaded {
    pub table: RouteTable,
    pub audience: Audience,
    /// Route conflicts, resolved as in a cluster.
    pub warnings: Vec<String>,
    /// Documents of kinds that are not ours.
    pub skipped: Vec<String>,
}

/// Reads and compiles the files.
pub fn load(paths: &[PathBuf], selection: &Selection) -> crate::Result<Loaded> {
    let manifests = manifests::load(paths)?;
    compile(&manifests, selection)
}

/// Compiles loaded manifests for the selected pod.
pub fn compile(manifests: &Manifests, selection: &Selection) -> crate::Result<Loaded> {
    let audience = Audience {
        namespace: selection
            .namespace
            .clone()
            .unwrap_or_else(|| manifests.default_namespace()),
        labels: selection.labels.clone(),
    };
    let (table, warnings) = manifests.compile(&audience, "switchyard-sidecar --manifests")?;
    Ok(Loaded {
        table,
        audience,
        warnings,
        skipped: manifests.skipped.clone(),
    })
}

/// Watches `paths` and swaps in every good reload until `shutdown`.
pub fn watch(
    paths: Vec<PathBuf>,
    selection: Selection,
    runtime: Arc<Runtime>,
    mut shutdown: watch::Receiver<bool>,
) -> crate::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full channel already means "reload soon"; more events add nothing.
            let _ = tx.try_send(());
        }
    })?;
    for path in &paths {
        // Watch the directory even for a file: editors and ConfigMap mounts replace files by
        // renaming, which a watch on the file itself would miss.
        let dir = if path.is_dir() {
            path.as_path()
        } else {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        };
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropping it would stop the events
        loop {
            tokio::select! {
                event = rx.recv() => if event.is_none() { break },
                _ = shutdown.changed() => break,
            }
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            reload(&paths, &selection, &runtime);
        }
    }))
}

fn reload(paths: &[PathBuf], selection: &Selection, runtime: &Runtime) {
    match load(paths, selection) {
        Ok(loaded) => {
            let current = runtime.snapshot().map(|s| s.table.version.clone());
            if current.as_deref() == Some(loaded.table.version.as_str()) {
                // Nothing we serve changed, but the files are good again: forget a failed load.
                runtime.clear_error();
                return;
            }
            for warning in &loaded.warnings {
                tracing::warn!(%warning, "route conflict");
            }
            tracing::info!(version = %loaded.table.version, routes = loaded.table.routes.len(), "reloaded manifests");
            runtime.swap(loaded.table);
        }
        Err(e) => {
            tracing::error!(error = %e, "manifest reload failed; still serving the previous table");
            runtime.reject(e.to_string());
        }
    }
}
