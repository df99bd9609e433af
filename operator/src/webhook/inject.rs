//! The pure half of the webhook: given a pod being created, decide whether it gets the
//! sidecar and compute the JSON patch that adds it. No I/O, no clock: the handler in
//! [`super`] only decodes, calls [`inject`] and encodes.
//!
//! The patch is written operation by operation against the pod *as the apiserver sent it*,
//! rather than by diffing a re-serialised typed pod: `json_patch::diff` compares arrays by
//! position, so prepending the sidecar would rewrite every existing container field by field, and
//! a typed round trip would drop fields newer than our k8s-openapi. Each operation here only
//! adds, so nothing the pod already has is touched. Keys are escaped by `jsonptr` tokens
//! (`switchyard.dev/injected` becomes `switchyard.dev~1injected`).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Pod, PodSpec, ResourceRequirements};
use serde::Serialize;
use serde_json::Value;

use super::mode::Mode;
use super::sidecar::{self, ADMIN_PORT, LLM_PORT, SIDECAR_NAME, SidecarSpec};
use crate::names::{
    DEFAULT_CONTAINER_ANNOTATION, INJECT_LABEL, INJECTED_LABEL, MODE_ANNOTATION,
    SKIPPED_ANNOTATION, VERSION_ANNOTATION,
};

/// Namespaces never injected, whatever their labels say, besides the operator's own.
pub const EXCLUDED_NAMESPACES: [&str; 2] = ["kube-system", "kube-node-lease"];

/// What the webhook injects, from the operator's flags.
#[derive(Clone, Debug, PartialEq)]
pub struct SidecarDefaults {
    /// The sidecar image.
    pub image: String,
    /// The mode for pods without a `switchyard.dev/sidecar-mode` annotation.
    pub mode: Mode,
    /// The sidecar's requests and limits.
    pub resources: ResourceRequirements,
    /// The operator's namespace: never injected, and where the config server lives.
    pub operator_namespace: String,
    /// Written to `switchyard.dev/sidecar-version`.
    pub version: String,
    /// Extra environment of the sidecar (`--sidecar-env`: OpenTelemetry settings).
    pub env: BTreeMap<String, String>,
}

/// Why a pod was left exactly as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The pod has `switchyard.dev/inject: "false"`.
    OptedOut,
    /// `kube-system`, `kube-node-lease` or the operator's namespace.
    ExcludedNamespace,
    /// The pod carries the injected label or a `switchyard-sidecar` container already.
    AlreadyInjected,
    /// An earlier call already annotated the pod as skipped.
    AlreadySkipped,
    /// The pod has no containers: the apiserver's validation rejects it after us, with a
    /// clearer message than anything a lone sidecar would produce.
    NoContainers,
}

/// The outcome of [`inject`]. Every outcome allows the pod: the webhook never blocks a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Not for us, or already done: no patch.
    Ignore(Ignored),
    /// Selected but cannot take the sidecar: annotate `switchyard.dev/skipped: <reason>` only.
    Skip { reason: String, patch: Patch },
    /// Add the sidecar. `warnings` go back to the client that created the pod.
    Inject {
        mode: Mode,
        patch: Patch,
        warnings: Vec<String>,
    },
}

// === impl Ignored ===

impl Ignored {
    /// A stable, low-cardinality name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::OptedOut => "opted_out",
            Ignored::ExcludedNamespace => "excluded_namespace",
            Ignored::AlreadyInjected => "already_injected",
            Ignored::AlreadySkipped => "already_skipped",
            Ignored::NoContainers => "no_containers",
        }
    }
}

// === impl Decision ===

impl Decision {
    /// The patch to return, if any.
    pub fn patch(&self) -> Option<&Patch> {
        match self {
            Decision::Ignore(_) => None,
            Decision::Skip { patch, .. } | Decision::Inject { patch, .. } => Some(patch),
        }
    }

    /// A stable, low-cardinality name for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Ignore(why) => why.as_str(),
            Decision::Skip { .. } => "skipped",
            Decision::Inject { .. } => "injected",
        }
    }
}

/// Decides what happens to `pod`, created in `namespace` (the request's: pods from controllers
/// carry none in their metadata yet).
///
/// The apiserver only calls the webhook for pods its selectors picked (a pod labelled
/// `switchyard.dev/inject: "true"`, or any pod in a namespace so labelled), so every pod is a
/// candidate unless it opts out or is excluded here. Calling this again on the patched pod
/// yields no patch, which `reinvocationPolicy: IfNeeded` relies on.
pub fn inject(pod: &Pod, namespace: &str, defaults: &SidecarDefaults) -> Decision {
    let namespace = match namespace {
        "" => pod.metadata.namespace.as_deref().unwrap_or_default(),
        ns => ns,
    };
    if let Some(why) = ignored(pod, namespace, &defaults.operator_namespace) {
        return Decision::Ignore(why);
    }
    let spec = pod.spec.as_ref();
    if let Some(reason) = spec.and_then(cannot_inject) {
        return skip(pod, reason);
    }
    let Some(spec) = spec.filter(|s| !s.containers.is_empty()) else {
        return Decision::Ignore(Ignored::NoContainers);
    };
    let mut warnings = Vec::new();
    let mode = mode_for(pod, defaults.mode, &mut warnings);
    if mode == Mode::Container
        && spec
            .restart_policy
            .as_deref()
            .is_some_and(|p| p != "Always")
    {
        warnings.push(
            "switchyard: in container mode the sidecar keeps this pod running after its other \
             containers finish; use sidecar-mode native on Kubernetes 1.29+"
                .into(),
        );
    }
    Decision::Inject {
        mode,
        patch: injection_patch(pod, spec, mode, defaults),
        warnings,
    }
}

/// Marks `pod` skipped, so that users see why it has no sidecar.
fn skip(pod: &Pod, reason: String) -> Decision {
    let mut ops = Ops::default();
    ops.set_entries(
        &["metadata", "annotations"],
        pod.metadata.annotations.is_some(),
        &[(SKIPPED_ANNOTATION, &reason)],
    );
    Decision::Skip {
        reason,
        patch: ops.into_patch(),
    }
}

/// Why `pod` is left alone, if it is.
fn ignored(pod: &Pod, namespace: &str, operator_namespace: &str) -> Option<Ignored> {
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if label(INJECT_LABEL) == Some("false") {
        return Some(Ignored::OptedOut);
    }
    if EXCLUDED_NAMESPACES.contains(&namespace) || namespace == operator_namespace {
        return Some(Ignored::ExcludedNamespace);
    }
    if label(INJECTED_LABEL) == Some("true") || has_sidecar(pod) {
        return Some(Ignored::AlreadyInjected);
    }
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(SKIPPED_ANNOTATION)) {
        return Some(Ignored::AlreadySkipped);
    }
    None
}

fn has_sidecar(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == SIDECAR_NAME)
    })
}

/// Why a selected pod cannot take the sidecar, as the value of `switchyard.dev/skipped`.
fn cannot_inject(spec: &PodSpec) -> Option<String> {
    if spec.host_network == Some(true) {
        // The sidecar's ports would be the node's, shared by every hostNetwork pod on it.
        return Some("hostNetwork".into());
    }
    let ours = [
        sidecar::TOKEN_VOLUME,
        sidecar::STATE_VOLUME,
        sidecar::CA_VOLUME,
    ];
    if let Some(volume) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| ours.contains(&v.name.as_str()))
    {
        return Some(format!("volume name {} already in use", volume.name));
    }
    // Containers share the pod's network namespace: the sidecar could not bind.
    let ports = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten().map(move |p| (c, p.container_port)));
    for (container, port) in ports {
        if port == LLM_PORT || port == ADMIN_PORT {
            return Some(format!("port {port} already used by {}", container.name));
        }
    }
    None
}

/// The pod's annotation if it names a mode, else `default`.
fn mode_for(pod: &Pod, default: Mode, warnings: &mut Vec<String>) -> Mode {
    let annotations = pod.metadata.annotations.as_ref();
    let Some(value) = annotations.and_then(|a| a.get(MODE_ANNOTATION)) else {
        return default;
    };
    Mode::from_annotation(value).unwrap_or_else(|| {
        warnings.push(format!(
            "switchyard: {MODE_ANNOTATION} {value:?} is neither native nor container, using {}",
            default.as_str()
        ));
        default
    })
}

/// The operations that inject the sidecar. Order matters: the application containers' env is
/// patched by index before the sidecar is inserted in front of them.
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// Left of the grace period after the drain, for the sidecar to end cut streams with an error
/// event and exit before the kubelet's SIGKILL.
const DRAIN_MARGIN_SECONDS: i64 = 5;

/// The sidecar's drain: the pod's grace period less the margin, at least a second.
fn drain_seconds(grace: Option<i64>) -> i64 {
    (grace.unwrap_or(DEFAULT_GRACE_SECONDS) - DRAIN_MARGIN_SECONDS).max(1)
}

fn injection_patch(pod: &Pod, spec: &PodSpec, mode: Mode, defaults: &SidecarDefaults) -> Patch {
    let mut ops = Ops::default();
    // Intentionally only regular containers: init containers run before a container-mode
    // sidecar exists, and even after a native one they may start before its table is loaded.
    for (index, container) in spec.containers.iter().enumerate() {
        let missing = sidecar::missing_app_env(container);
        let path = ["spec", "containers", &index.to_string(), "env"];
        ops.append(&path, container.env.is_some(), &missing);
    }
    ops.append(
        &["spec", "volumes"],
        spec.volumes.is_some(),
        &sidecar::volumes(),
    );
    let container = sidecar::container(&SidecarSpec {
        image: &defaults.image,
        resources: &defaults.resources,
        operator_namespace: &defaults.operator_namespace,
        mode,
        drain_seconds: drain_seconds(spec.termination_grace_period_seconds),
        env: &defaults.env,
    });
    match mode {
        Mode::Native => ops.prepend(
            &["spec", "initContainers"],
            spec.init_containers.is_some(),
            &container,
        ),
        Mode::Container => ops.prepend(&["spec", "containers"], true, &container),
    }
    ops.set_entries(
        &["metadata", "labels"],
        pod.metadata.labels.is_some(),
        &[(INJECTED_LABEL, "true")],
    );
    let annotations = pod.metadata.annotations.as_ref();
    let mut entries = vec![(VERSION_ANNOTATION, defaults.version.as_str())];
    // In front of the app, the sidecar would become what `kubectl logs` shows by default.
    let has_default = annotations.is_some_and(|a| a.contains_key(DEFAULT_CONTAINER_ANNOTATION));
    if mode == Mode::Container && !has_default {
        entries.push((DEFAULT_CONTAINER_ANNOTATION, &spec.containers[0].name));
    }
    ops.set_entries(
        &["metadata", "annotations"],
        annotations.is_some(),
        &entries,
    );
    ops.into_patch()
}

/// A patch under construction, made of `add` operations only.
#[derive(Default)]
struct Ops(Vec<PatchOperation>);

// === impl Ops ===

impl Ops {
    /// Sets `entries` in the string map at `path`, creating the map when the pod has none.
    fn set_entries(&mut self, path: &[&str], exists: bool, entries: &[(&str, &str)]) {
        if exists {
            for (key, value) in entries {
                let path = pointer(path.iter().copied().chain([*key]));
                self.add(path, (*value).into());
            }
        } else {
            let map: BTreeMap<&str, &str> = entries.iter().copied().collect();
            self.add(pointer(path.iter().copied()), to_value(&map));
        }
    }

    /// Appends `items` to the list at `path`, creating the list when the pod has none.
    fn append<T: Serialize>(&mut self, path: &[&str], exists: bool, items: &[T]) {
        if items.is_empty() {
            return;
        }
        if !exists {
            self.add(pointer(path.iter().copied()), to_value(items));
            return;
        }
        for item in items {
            self.add(pointer(path.iter().copied().chain(["-"])), to_value(item));
        }
    }

    /// Inserts `item` first in the list at `path`, creating the list when the pod has none.
    fn prepend<T: Serialize>(&mut self, path: &[&str], exists: bool, item: &T) {
        if exists {
            self.add(pointer(path.iter().copied().chain(["0"])), to_value(item));
        } else {
            self.add(pointer(path.iter().copied()), to_value(&[item]));
        }
    }

    fn add(&mut self, path: PointerBuf, value: Value) {
        self.0
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    fn into_patch(self) -> Patch {
        Patch(self.0)
    }
}

fn pointer<'a>(tokens: impl Iterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// Serialises our own typed objects; k8s-openapi types and string maps always serialise.
fn to_value<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|error| {
        // Unreachable in practice; a null makes the apiserver reject the patch loudly.
        tracing::error!(%error, "cannot serialise an injected object");
        Value::Null
    })
}

#[cfg(test)]
mod tests;
