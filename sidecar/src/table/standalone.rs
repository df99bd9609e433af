//! Standalone mode: route tables compiled from the YAML files a user would `kubectl apply`.
//!
//! The files are watched; a change reloads them after a short debounce. A reload that fails
//! (bad YAML, a broken reference) keeps the previous table serving and says why in the log, the
//! `switchyard_config_reload_failures_total` metric and `/readyz`.
//!
//! Two things make a reload trustworthy. Only changes to the manifests count: reading a file
//! raises inotify access events of its own, which must not trigger the next reload (that loop
//! re-read the files five times a second and counted every re-read as a failure). And a file
//! that is empty on reload is refused: `cmd > routes.yaml` truncates before it writes, and a
//! reload in between would drop every route the file held. To remove a file's objects, delete the
//! file. Model files routes name with `complexity.model.file` are watched too: a change to one
//! reloads like a change to a manifest.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use switchyard_crds::compile::Audience;
use switchyard_crds::manifests::{self, Manifests};
use switchyard_crds::table::RouteTable;
use tokio::sync::{mpsc, watch};

use crate::table::Runtime;

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
    /// The model files routes name with `complexity.model.file`, watched with the manifests.
    pub model_paths: Vec<PathBuf>,
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
        workload: None,
    };
    let (table, warnings) = manifests.compile(&audience, "switchyard-sidecar --manifests")?;
    Ok(Loaded {
        table,
        audience,
        warnings,
        skipped: manifests.skipped.clone(),
        model_paths: manifests.model_paths.clone(),
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
    let watched: Vec<Watched> = paths.iter().map(|p| Watched::new(p)).collect();
    // The model files of the current manifests; the start-up load read them a moment ago, so
    // reading the manifests once more here only learns their paths.
    let models: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
    let initial = manifests::load(&paths).map(|m| m.model_paths);
    let in_watcher = models.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let concerns = event.is_ok_and(|event| {
            let models = in_watcher.lock().unwrap_or_else(|p| p.into_inner());
            concerns_manifests(&event, &watched)
                || event.paths.iter().any(|changed| models.contains(changed))
        });
        if concerns {
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
    let mut model_dirs = HashSet::new();
    if let Ok(initial) = initial {
        watch_models(&mut watcher, &models, &mut model_dirs, initial);
    }
    Ok(tokio::spawn(async move {
        let mut watcher = watcher; // dropping it would stop the events
        loop {
            tokio::select! {
                event = rx.recv() => if event.is_none() { break },
                _ = shutdown.changed() => break,
            }
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            if let Some(paths) = reload(&paths, &selection, &runtime) {
                watch_models(&mut watcher, &models, &mut model_dirs, paths);
            }
        }
    }))
}

/// Makes `paths` the model files whose changes reload, watching their directories (a file
/// replaced by a rename is seen there). A directory that cannot be watched is logged: the
/// model is still read at every reload of the manifests.
fn watch_models(
    watcher: &mut impl Watcher,
    models: &Mutex<HashSet<PathBuf>>,
    dirs: &mut HashSet<PathBuf>,
    paths: Vec<PathBuf>,
) {
    for path in &paths {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if dirs.contains(&dir) {
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                dirs.insert(dir);
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch a model file's directory")
            }
        }
    }
    *models.lock().unwrap_or_else(|p| p.into_inner()) = paths.into_iter().collect();
}

/// A manifests path as given on the command line, and whether it named a folder: decided once,
/// not per event, because a folder shared with a busy file (a log written beside the manifests)
/// raises an event per write, and a `stat` for each cost every request a system call (issue 15).
struct Watched {
    path: PathBuf,
    is_dir: bool,
}

impl Watched {
    fn new(path: &Path) -> Watched {
        Watched {
            path: path.to_path_buf(),
            is_dir: path.is_dir(),
        }
    }
}

/// Whether a file event can change what the manifests say: a write, create, remove or rename of
/// a YAML file we read. Access events (our own reads) and other files in a watched directory
/// cannot.
fn concerns_manifests(event: &notify::Event, watched: &[Watched]) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|changed| {
        watched.iter().any(|w| {
            if w.is_dir {
                changed.parent() == Some(w.path.as_path()) && manifests::is_yaml(changed)
            } else {
                changed.file_name() == w.path.file_name()
            }
        })
    })
}

/// Files among the manifests that hold no document at all: nothing but white space, comments
/// and `---`. On reload such a file is far more likely half-written than meant.
fn empty_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(files) = manifests::files(paths) else {
        return Vec::new(); // the load itself reports the error
    };
    files
        .into_iter()
        .filter(|file| {
            std::fs::read_to_string(file).is_ok_and(|text| {
                text.lines().map(str::trim).all(|line| {
                    line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
                })
            })
        })
        .collect()
}

/// Reloads the manifests; the model files they name when they loaded.
fn reload(paths: &[PathBuf], selection: &Selection, runtime: &Runtime) -> Option<Vec<PathBuf>> {
    let empty = empty_files(paths);
    if !empty.is_empty() && runtime.snapshot().is_some() {
        let names: Vec<_> = empty.iter().map(|f| f.display().to_string()).collect();
        let why = format!(
            "{} is empty (truncated while being written?); delete a file to remove its objects",
            names.join(", ")
        );
        tracing::error!(error = %why, "manifest reload refused; still serving the previous table");
        runtime.reject(why);
        return None;
    }
    match load(paths, selection) {
        Ok(loaded) => {
            let current = runtime.snapshot().map(|s| s.table.version.clone());
            if current.as_deref() == Some(loaded.table.version.as_str()) {
                // Nothing we serve changed, but the files are good again: forget a failed load,
                // and say so, or the log's last word on the files would be the refusal.
                if let Some(error) = runtime.last_error() {
                    tracing::info!(version = %loaded.table.version, previous_error = %error, "manifests fixed; still serving the same table");
                }
                runtime.clear_error();
                return Some(loaded.model_paths);
            }
            for warning in &loaded.warnings {
                tracing::warn!(%warning, "route served with a problem");
            }
            tracing::info!(version = %loaded.table.version, routes = loaded.table.routes.len(), "reloaded manifests");
            runtime.swap(loaded.table);
            Some(loaded.model_paths)
        }
        Err(e) => {
            tracing::error!(error = %e, "manifest reload failed; still serving the previous table");
            runtime.reject(e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, DataChange, EventKind, ModifyKind};

    use super::*;

    fn event(kind: EventKind, path: &Path) -> notify::Event {
        notify::Event::new(kind).add_path(path.to_path_buf())
    }

    fn write() -> EventKind {
        EventKind::Modify(ModifyKind::Data(DataChange::Content))
    }

    #[test]
    fn only_changes_to_the_manifests_count() {
        let dir = std::env::temp_dir().join(format!("switchyard-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let routes = dir.join("routes.yaml");
        std::fs::write(&routes, "").unwrap();
        let folder = [Watched::new(&dir)];
        let file = [Watched::new(&routes)];

        for watched in [&folder[..], &file[..]] {
            assert!(concerns_manifests(&event(write(), &routes), watched));
            assert!(concerns_manifests(
                &event(EventKind::Create(CreateKind::File), &routes),
                watched
            ));
            // Our own reads, and a log written beside the manifests, do not.
            let read = EventKind::Access(AccessKind::Read);
            assert!(!concerns_manifests(&event(read, &routes), watched));
            assert!(!concerns_manifests(
                &event(write(), &dir.join("sidecar.log")),
                watched
            ));
        }
        // A new YAML file counts when the folder is watched, not when one file is.
        let more = dir.join("more.yml");
        assert!(concerns_manifests(&event(write(), &more), &folder));
        assert!(!concerns_manifests(&event(write(), &more), &file));

        // Whether a path is a folder is decided once: events are judged without a `stat`, so
        // they are judged the same after the folder is gone.
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(concerns_manifests(&event(write(), &more), &folder));
    }
}
