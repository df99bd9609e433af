//! The I/O behind [`crate::workload`]: metadata-only GETs of the ReplicaSets and Jobs that
//! control injected pods, cached by UID, so that a pod's workload is its Deployment or CronJob.
//!
//! Why GETs and not reflectors: a watch of every ReplicaSet and Job in the cluster would cache
//! objects of namespaces without a single injected pod, and every old ReplicaSet a Deployment
//! keeps for rollbacks (ten by default), and wake the operator on each of their status changes.
//! The cache here holds one small entry (a UID, a kind and a name) per controller of an
//! injected pod, about one per workload, and costs one GET per new ReplicaSet or Job. A
//! ReplicaSet's or Job's controller does not change in practice (adoption of an orphan is the
//! exception, picked up when the pods are replaced), so an answer is kept for as long as some
//! pod refers to it, and never fetched again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Error;
use crate::metrics::ControllerMetrics;
use crate::workload::{self, Lookup, LookupKind, Owners};

/// Lookups in flight at once: a burst of new workloads (an operator restart in a big cluster)
/// should not flood the apiserver.
const CONCURRENT: usize = 8;
/// After a failed lookup (apiserver trouble, missing permission), wait this long before asking
/// again; the interim answer (the pod's own controller) stands meanwhile.
const RETRY_FAILED: Duration = Duration::from_secs(30);
/// After a lookup found the object gone, or replaced by a same-named one: its pods are going
/// away too, so asking often would be waste.
const RETRY_GONE: Duration = Duration::from_secs(300);

/// What is known of the controllers of injected pods' controllers, shared by the controller
/// loop and the lookup tasks it starts.
#[derive(Default)]
pub struct OwnerCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    owners: Owners,
    in_flight: HashSet<String>,
    /// Failed or gone lookups, by UID: when to try again.
    retry_at: HashMap<String, Instant>,
}

/// How one lookup ended.
enum Found {
    /// The object, with its controller (or none).
    Owner(Option<workload::Owner>),
    /// Not found, or found with another UID.
    Gone,
    Failed(Error),
}

// === impl OwnerCache ===

impl OwnerCache {
    /// What lookups have found so far.
    pub fn known(&self) -> Owners {
        self.lock().owners.clone()
    }

    /// Forgets controllers no pod refers to any more and starts the lookups `pods` still wait
    /// for, notifying `changed` when some found an owner (so the controller steps again).
    pub fn refresh(
        self: &Arc<Self>,
        client: &Client,
        pods: &[Pod],
        changed: &Arc<Notify>,
        metrics: &ControllerMetrics,
    ) {
        let now = Instant::now();
        let lookups: Vec<Lookup> = {
            let mut state = self.lock();
            let referenced: HashSet<&str> = pods
                .iter()
                .filter_map(|p| workload::controller_of(&p.metadata))
                .map(|o| o.uid.as_str())
                .collect();
            state
                .owners
                .retain(|uid, _| referenced.contains(uid.as_str()));
            state
                .retry_at
                .retain(|uid, _| referenced.contains(uid.as_str()));
            let owners = state.owners.clone();
            let wanted: Vec<Lookup> = pods
                .iter()
                .filter_map(|p| workload::lookup_for(p, &owners))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|l| !state.in_flight.contains(&l.uid))
                .filter(|l| state.retry_at.get(&l.uid).is_none_or(|at| *at <= now))
                .collect();
            state.in_flight.extend(wanted.iter().map(|l| l.uid.clone()));
            wanted
        };
        if lookups.is_empty() {
            return;
        }
        let (cache, client, changed, metrics) = (
            self.clone(),
            client.clone(),
            changed.clone(),
            metrics.clone(),
        );
        tokio::spawn(async move {
            let found: Vec<(Lookup, Found)> = futures_util::stream::iter(lookups)
                .map(|lookup| {
                    let client = client.clone();
                    async move {
                        let found = look_up(&client, &lookup).await;
                        (lookup, found)
                    }
                })
                .buffer_unordered(CONCURRENT)
                .collect()
                .await;
            if cache.record(found, &metrics) {
                changed.notify_one();
            }
        });
    }

    /// Stores what lookups found; true when some found an owner.
    fn record(&self, found: Vec<(Lookup, Found)>, metrics: &ControllerMetrics) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let mut learnt = false;
        for (lookup, found) in found {
            state.in_flight.remove(&lookup.uid);
            match found {
                Found::Owner(owner) => {
                    learnt = true;
                    state.retry_at.remove(&lookup.uid);
                    state.owners.insert(lookup.uid, owner);
                }
                Found::Gone => {
                    tracing::debug!(namespace = %lookup.namespace, name = %lookup.name, kind = ?lookup.kind, "pod controller gone before its owner was looked up");
                    state.retry_at.insert(lookup.uid, now + RETRY_GONE);
                }
                Found::Failed(error) => {
                    super::record(metrics, &error);
                    state.retry_at.insert(lookup.uid, now + RETRY_FAILED);
                }
            }
        }
        learnt
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // NB: every update leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One metadata-only GET (no spec, no status: only what names the controller).
async fn look_up(client: &Client, lookup: &Lookup) -> Found {
    let result = match lookup.kind {
        LookupKind::ReplicaSet => Api::<ReplicaSet>::namespaced(client.clone(), &lookup.namespace)
            .get_metadata(&lookup.name)
            .await
            .map(|m| m.metadata),
        LookupKind::Job => Api::<Job>::namespaced(client.clone(), &lookup.namespace)
            .get_metadata(&lookup.name)
            .await
            .map(|m| m.metadata),
    };
    found(lookup, result)
}

/// Classifies a lookup's answer: a same-named object with another UID is a successor, not the
/// pod's controller.
fn found(lookup: &Lookup, result: kube::Result<ObjectMeta>) -> Found {
    match result {
        Ok(meta) if meta.uid.as_deref() == Some(lookup.uid.as_str()) => {
            Found::Owner(workload::owner_of(&meta))
        }
        Ok(_) => Found::Gone,
        Err(source) if crate::is_gone(&source) => Found::Gone,
        Err(source) => Found::Failed(Error::OwnerLookup {
            owner: format!("{:?} {}/{}", lookup.kind, lookup.namespace, lookup.name),
            source,
        }),
    }
}

#[cfg(test)]
mod tests;
