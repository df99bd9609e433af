//! How the sidecar is injected, and `--sidecar-mode auto`'s choice between the two.
//!
//! Native sidecars (init containers with `restartPolicy: Always`) are on by default from
//! Kubernetes 1.29. The apiserver must accept the field *and* every kubelet must honour it: an
//! older kubelet runs such an init container as an ordinary one, which never exits, so the pod
//! would hang in `Init` forever. Auto mode therefore picks native only when the apiserver and
//! every node are at least 1.29, and falls back to container mode whenever it cannot tell.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use tokio::sync::watch;

use crate::args::SidecarMode;

/// The first Kubernetes minor version (of 1.x) with native sidecars on by default.
pub const NATIVE_SIDECAR_MINOR: u32 = 29;

/// How often auto mode looks at the cluster again: nodes are upgraded (or old node pools added)
/// over time. A cached node list every five minutes costs the apiserver little.
pub const AUTO_REFRESH: Duration = Duration::from_secs(300);

/// How the sidecar container is added to a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Prepended to `initContainers` with `restartPolicy: Always`: it starts before every other
    /// container and does not keep Job pods alive.
    Native,
    /// The first regular container: works on every Kubernetes version.
    Container,
}

// === impl Mode ===

impl Mode {
    /// The value of the `switchyard.dev/sidecar-mode` annotation, if it names a mode.
    pub fn from_annotation(value: &str) -> Option<Self> {
        match value.trim() {
            "native" => Some(Mode::Native),
            "container" => Some(Mode::Container),
            _ => None,
        }
    }

    /// The annotation spelling of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Container => "container",
        }
    }
}

/// The mode for a cluster whose apiserver reports `apiserver_git_version` and whose nodes run the
/// kubelets in `kubelet_versions` (`v1.29.3`, `v1.30.0-eks-abc`, `v1.28.15+k3s1`).
///
/// Anything unparsable means container mode, the choice that works everywhere. So does a cluster
/// without nodes: whatever joins later may be older than the control plane (kubelets may lag
/// three minors), and the next refresh switches to native once real nodes are seen.
pub fn resolve_mode(apiserver_git_version: &str, kubelet_versions: &[&str]) -> Mode {
    if supports_native(apiserver_git_version)
        && !kubelet_versions.is_empty()
        && kubelet_versions.iter().all(|v| supports_native(v))
    {
        Mode::Native
    } else {
        Mode::Container
    }
}

/// Whether a component reporting `version` runs native sidecars by default.
fn supports_native(version: &str) -> bool {
    parse_minor(version).is_some_and(|minor| minor >= NATIVE_SIDECAR_MINOR)
}

/// The minor version of a `v1.<minor>...` version string; `None` for anything but Kubernetes 1.x.
fn parse_minor(version: &str) -> Option<u32> {
    let rest = version.trim().strip_prefix('v').unwrap_or(version.trim());
    let (major, rest) = rest.split_once('.')?;
    if major != "1" {
        return None;
    }
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits.parse().ok()
}

/// Asks the cluster which mode fits it: the apiserver's version, then (only when that one is new
/// enough) every node's kubelet version, from the apiserver's watch cache.
pub async fn detect(client: &kube::Client) -> Result<Mode, kube::Error> {
    let apiserver = client.apiserver_version().await?;
    if !supports_native(&apiserver.git_version) {
        // No need to list the nodes.
        return Ok(Mode::Container);
    }
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().match_any())
        .await?;
    let kubelets: Vec<&str> = nodes
        .items
        .iter()
        .map(|node| {
            node.status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map_or("", |info| info.kubelet_version.as_str())
        })
        .collect();
    Ok(resolve_mode(&apiserver.git_version, &kubelets))
}

/// The mode the webhook reads for each request, and for `auto` the task that keeps it current.
///
/// A fixed flag gives a channel that never changes. `auto` starts in container mode (safe until
/// the cluster has been looked at) and returns a future that `main` spawns: it detects at once,
/// then every `refresh`, and keeps the last answer when the apiserver cannot be asked (RBAC:
/// `get /version` and `list nodes`). Without a client, `auto` stays in container mode.
pub fn source(
    flag: SidecarMode,
    client: Option<kube::Client>,
    refresh: Duration,
) -> (
    watch::Receiver<Mode>,
    Option<impl Future<Output = ()> + Send + 'static>,
) {
    let initial = match flag {
        SidecarMode::Native => Mode::Native,
        SidecarMode::Container | SidecarMode::Auto => Mode::Container,
    };
    let (tx, rx) = watch::channel(initial);
    let task = match (flag, client) {
        (SidecarMode::Auto, Some(client)) => Some(track(client, tx, refresh)),
        (SidecarMode::Auto, None) => {
            tracing::warn!("no Kubernetes client: --sidecar-mode auto stays in container mode");
            None
        }
        _ => None,
    };
    (rx, task)
}

/// Re-detects the mode every `refresh` for as long as anyone reads it.
async fn track(client: kube::Client, tx: watch::Sender<Mode>, refresh: Duration) {
    loop {
        match detect(&client).await {
            Ok(mode) => {
                let changed = tx.send_if_modified(|current| {
                    let changed = *current != mode;
                    *current = mode;
                    changed
                });
                if changed {
                    tracing::info!(mode = mode.as_str(), "sidecar mode detected");
                }
            }
            Err(error) => {
                tracing::warn!(%error, mode = tx.borrow().as_str(), "cannot detect the sidecar mode, keeping the current one");
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(refresh).await;
    }
}

#[cfg(test)]
mod tests;
