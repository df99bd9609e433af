//! Which workload an injected pod belongs to (docs/reference/operator.md#spend-per-workload):
//! its namespace, its controlling owner resolved to the top workload, and its ServiceAccount.
//!
//! Pure: [`resolve`] reads the pod and what is known of its controller's own controller
//! ([`Owners`], filled by the controller's metadata lookups, `controller/owners.rs`). Only two
//! kinds need a lookup, because only their objects are made by another controller in the usual
//! chains: a ReplicaSet (made by a Deployment, or by another controller such as an Argo
//! Rollout) and a Job (made by a CronJob). Every other controller (StatefulSet, DaemonSet, an
//! operator's custom resource) is the workload itself. Until a lookup answers, the pod's own
//! controller is the workload: an interim answer, replaced within a step or two.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use switchyard_crds::table::Workload;

/// The ServiceAccount of a pod whose spec names none, as the apiserver fills it in.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The kind (and name) of the controller that controls a ReplicaSet or Job, as its own
/// controlling owner reference says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// What lookups found, by the UID of a pod's controller (a ReplicaSet or Job): its own
/// controller, or `None` when it has none (it is the top workload itself). A UID missing from
/// the map has not been looked up (yet).
pub type Owners = HashMap<String, Option<Owner>>;

/// A controller whose own controller must be looked up before a pod's workload is final.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lookup {
    pub namespace: String,
    /// [`LookupKind::ReplicaSet`] or [`LookupKind::Job`].
    pub kind: LookupKind,
    pub name: String,
    /// Checked against the object found, so that a same-named successor is not taken for it.
    pub uid: String,
}

/// The kinds whose objects are usually made by another controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LookupKind {
    /// `apps/v1` ReplicaSet, made by a Deployment.
    ReplicaSet,
    /// `batch/v1` Job, made by a CronJob.
    Job,
}

/// The pod's workload: namespace, top controller (or the pod itself), ServiceAccount.
pub fn resolve(pod: &Pod, owners: &Owners) -> Workload {
    let meta = &pod.metadata;
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    let (kind, name) = match controller_of(meta) {
        None => ("Pod".to_string(), meta.name.clone().unwrap_or_default()),
        Some(owner) => match (lookup_kind(owner), owners.get(&owner.uid)) {
            // The ReplicaSet's or Job's own controller: Deployment, CronJob, or whatever
            // controller made it (reported as that kind).
            (Some(_), Some(Some(top))) => (top.kind.clone(), top.name.clone()),
            // Known to have no controller, not looked up yet, or not a kind that needs it.
            _ => (owner.kind.clone(), owner.name.clone()),
        },
    };
    Workload {
        namespace: meta.namespace.clone().unwrap_or_default(),
        kind,
        name,
        service_account,
    }
}

/// The lookup the pod's workload still waits for, if any: its controller is a ReplicaSet or Job
/// that `owners` does not know yet.
pub fn lookup_for(pod: &Pod, owners: &Owners) -> Option<Lookup> {
    let owner = controller_of(&pod.metadata)?;
    let kind = lookup_kind(owner)?;
    (!owners.contains_key(&owner.uid)).then(|| Lookup {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        kind,
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    })
}

/// The controller of a looked-up ReplicaSet or Job, from its metadata: what [`Owners`] holds.
pub fn owner_of(meta: &ObjectMeta) -> Option<Owner> {
    controller_of(meta).map(|o| Owner {
        kind: o.kind.clone(),
        name: o.name.clone(),
    })
}

/// The owner reference with `controller: true`; Kubernetes allows at most one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.controller == Some(true))
}

/// Whether a controller of this kind is itself usually controlled, by group as well as kind, so
/// that a custom resource that happens to be called `Job` is taken as the workload it is.
fn lookup_kind(owner: &OwnerReference) -> Option<LookupKind> {
    let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, owner.kind.as_str()) {
        ("apps", "ReplicaSet") => Some(LookupKind::ReplicaSet),
        ("batch", "Job") => Some(LookupKind::Job),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
