//! [`step`]: the pure core of the controller. From plain lists of the objects the reflectors
//! hold (the [`World`]) and what sidecars reported, it compiles every table and decides every
//! status and event; [`super::run`] only feeds it and writes what it returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Resource, ResourceExt};
use switchyard_crds::compile::{
    self, Audience, Inputs, Kind, ObjectKey, PoolOutcome, RouteOutcome,
};
use switchyard_crds::table::RouteTable;
use switchyard_crds::v1alpha1::{
    Budget, BudgetStatus, ModelRoute, ModelRouteStatus, PromptTemplate, PromptTemplateStatus,
    ProviderPool, ProviderPoolStatus, SidecarSummary,
};

use super::events::{self, Notice};
use super::{conditions, spend};
use crate::config_server::TopWorkloads;
use crate::config_server::leases::LimitTotals;
use crate::config_server::reports::{RouteKey, RouteStats, WindowKey, WindowStats};
use crate::config_server::tables::{PodInfo, Snapshot};
use crate::names::{GENERATED_BY, INJECTED_LABEL};
use crate::workload::{self, Owners};
use spend::SpendWrite;

/// Everything [`step`] reads: the reflectors' contents.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub pools: Vec<ProviderPool>,
    pub routes: Vec<ModelRoute>,
    /// Every Budget, all namespaces: compiled into the tables of the pods they select, whose
    /// sidecars then share each limit through leases (docs/reference/operator.md#leases).
    pub budgets: Vec<Budget>,
    pub secrets: Vec<Secret>,
    /// The ConfigMaps routes' `complexity.model.configMapRef` name, as read by name at the
    /// step ([`super::referenced_config_maps`]); a missing one is absent.
    pub config_maps: Vec<ConfigMap>,
    /// Every PromptTemplate, all namespaces: each table carries those its routes name.
    pub templates: Vec<PromptTemplate>,
    pub pods: Vec<Pod>,
    /// Namespaces labelled for injection.
    pub namespaces: Vec<Namespace>,
    /// The controllers of the ReplicaSets and Jobs that control pods, as far as looked up
    /// ([`super::owners`]), to resolve each pod's workload.
    pub owners: Owners,
}

/// What the config server learnt from sidecar reports.
#[derive(Clone, Debug, Default)]
pub struct Reports {
    /// The 5-minute windows, for pool provider health.
    pub windows: BTreeMap<WindowKey, WindowStats>,
    /// The table version of each pod's latest report, by pod UID, for `inSync`.
    pub versions: HashMap<String, String>,
    /// The lease book's totals by (budget `namespace/name`, limit index), for Budget status.
    pub budgets: HashMap<(String, u32), LimitTotals>,
    /// The 5-minute route windows, for ModelRoute `costUsd` and `requests`.
    pub routes: BTreeMap<RouteKey, RouteStats>,
    /// The biggest spenders of each budget limit's window, for Budget `topWorkloads`.
    pub top_workloads: TopWorkloads,
}

/// A route status a step decided to write.
#[derive(Debug)]
pub struct RouteWrite {
    pub key: ObjectKey,
    pub status: ModelRouteStatus,
    /// Only `costUsd`/`requests` changed ([`spend::same_route_but_spend`]) and no event is due:
    /// the write may wait for [`spend::SPEND_WRITE_EVERY`].
    pub spend_only: bool,
}

/// A budget status a step decided to write.
#[derive(Debug)]
pub struct BudgetWrite {
    pub key: ObjectKey,
    pub status: BudgetStatus,
    /// Only spend changed ([`conditions::same_but_spend`]) and no event is due: the write may
    /// wait for [`spend::SPEND_WRITE_EVERY`].
    pub spend_only: bool,
    /// Events the change deserves, published after the write (dropped with a deferred write,
    /// and decided again from the unchanged status at the next step).
    pub events: Vec<(ObjectReference, Notice)>,
}

/// What one [`step`] decided: the snapshot to publish and the statuses to write.
#[derive(Debug, Default)]
pub struct Step {
    pub snapshot: Snapshot,
    /// Routes whose status changed.
    pub routes: Vec<RouteWrite>,
    /// Pools whose status changed, with the new status.
    pub pools: Vec<(ObjectKey, ProviderPoolStatus)>,
    /// Budgets whose status changed.
    pub budgets: Vec<BudgetWrite>,
    /// Prompt templates whose status changed.
    pub templates: Vec<(ObjectKey, PromptTemplateStatus)>,
    /// Events the status changes deserve, published after the writes.
    pub events: Vec<(ObjectReference, Notice)>,
    /// Namespaces that have or may get injected pods, which need the CA bundle ConfigMap: those
    /// labelled for injection, with injected pods, or with routes.
    pub trust_namespaces: BTreeSet<String>,
}

/// Compiles `world`, builds the snapshot and every status, and keeps only the statuses that
/// differ (ignoring transition times) from what the objects carry.
pub fn step(world: &World, reports: &Reports, now: Time) -> Step {
    let pods = PodIndex::of(&world.pods, &world.owners);
    let mut compiled = compile::compile(&Inputs {
        pools: &world.pools,
        routes: &world.routes,
        budgets: &world.budgets,
        secrets: &world.secrets,
        config_maps: &world.config_maps,
        // A cluster reads model files from ConfigMaps only; `file:` is refused.
        model_files: None,
        audiences: &pods.audiences,
        require_secret_opt_in: true,
        generated_by: GENERATED_BY,
    });
    compile::apply_templates(&mut compiled, &world.routes, &world.templates);
    let tables: BTreeMap<Audience, Arc<_>> = compiled
        .tables
        .into_iter()
        .map(|(audience, table)| (audience, Arc::new(table)))
        .collect();
    let selected = sidecar_counts(&pods.running, &tables, reports);
    let holding = budget_counts(&pods.running, &tables);

    let mut out = Step::default();
    route_statuses(world, &compiled.routes, &selected, reports, &now, &mut out);
    pool_statuses(world, &compiled.pools, reports, &now, &mut out);
    budget_statuses(world, &compiled.budgets, reports, &holding, &now, &mut out);
    template_statuses(world, &compiled.templates, &now, &mut out);
    out.trust_namespaces = world
        .namespaces
        .iter()
        .map(|ns| ns.name_any())
        .chain(pods.by_uid.values().map(|p| p.namespace.clone()))
        .chain(world.routes.iter().filter_map(|r| r.namespace()))
        .collect();
    out.snapshot = Snapshot {
        tables,
        pods: pods.by_uid,
        durable: Arc::new(conditions::durable_totals(&world.budgets)),
    };
    out
}

/// Adds to `out` the template statuses that changed, and the events they deserve.
fn template_statuses(
    world: &World,
    outcomes: &BTreeMap<ObjectKey, compile::TemplateOutcome>,
    now: &Time,
    out: &mut Step,
) {
    for template in &world.templates {
        let key = key_of(Kind::PromptTemplate, template);
        let Some(outcome) = outcomes.get(&key) else {
            continue;
        };
        let previous = template.status.as_ref();
        let status = conditions::template_status(outcome, previous, now.clone());
        if !previous.is_some_and(|p| conditions::same_ignoring_time(p, &status)) {
            let before = previous.map(|p| p.conditions.as_slice());
            out.events.extend(notices(
                template.object_ref(&()),
                before,
                &status.conditions,
            ));
            out.templates.push((key, status));
        }
    }
}

/// For each budget by `namespace/name`, the running pods whose table holds it.
fn budget_counts(
    running: &[(String, PodInfo)],
    tables: &BTreeMap<Audience, Arc<RouteTable>>,
) -> HashMap<String, u32> {
    let mut holding: HashMap<String, u32> = HashMap::new();
    for (_, pod) in running {
        if let Some(table) = tables.get(&pod.audience()) {
            for id in table.budgets.keys() {
                *holding.entry(id.clone()).or_default() += 1;
            }
        }
    }
    holding
}

/// Adds to `out` the budget statuses that changed, and the events they deserve. A budget with
/// problems is left out of every table (its pods' sidecars do not enforce it); its status says
/// why.
fn budget_statuses(
    world: &World,
    outcomes: &BTreeMap<ObjectKey, compile::BudgetOutcome>,
    reports: &Reports,
    holding: &HashMap<String, u32>,
    now: &Time,
    out: &mut Step,
) {
    for budget in &world.budgets {
        let key = key_of(Kind::Budget, budget);
        let Some(outcome) = outcomes.get(&key) else {
            continue;
        };
        let id = format!("{}/{}", key.namespace, key.name);
        let selected = holding.get(&id).copied().unwrap_or(0);
        let previous = budget.status.as_ref();
        let mut status =
            conditions::budget_status(budget, outcome, &reports.budgets, selected, now.clone());
        status.top_workloads = spend::budget_top_workloads(budget, &reports.top_workloads, now);
        if previous.is_some_and(|p| conditions::same_ignoring_time(p, &status)) {
            continue;
        }
        let object = budget.object_ref(&());
        let before = previous.map(|p| p.conditions.as_slice());
        let mut events = notices(object.clone(), before, &status.conditions);
        events.extend(
            events::budget_notices(previous, &status)
                .into_iter()
                .map(|notice| (object.clone(), notice)),
        );
        let spend_only =
            events.is_empty() && previous.is_some_and(|p| conditions::same_but_spend(p, &status));
        out.budgets.push(BudgetWrite {
            key,
            status,
            spend_only,
            events,
        });
    }
}

// === impl RouteWrite, BudgetWrite ===

impl SpendWrite for RouteWrite {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn spend_only(&self) -> bool {
        self.spend_only
    }
}

impl SpendWrite for BudgetWrite {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn spend_only(&self) -> bool {
        self.spend_only
    }
}

/// The injected pods a step serves.
struct PodIndex {
    /// Every injected, non-terminating pod by UID.
    by_uid: HashMap<String, PodInfo>,
    /// The audiences of those pods, each once, in order.
    audiences: Vec<Audience>,
    /// Those of them running, with their UID.
    running: Vec<(String, PodInfo)>,
}

impl PodIndex {
    fn of(pods: &[Pod], owners: &Owners) -> Self {
        let mut by_uid = HashMap::new();
        let mut audiences = BTreeSet::new();
        let mut running = Vec::new();
        for pod in pods {
            let Some(info) = pod_info(pod, owners) else {
                continue;
            };
            // NB: Pending pods get an audience too: a native sidecar starts (and asks for its
            // table) while its pod is still Pending, and should not be served the empty table
            // then.
            audiences.insert(info.audience());
            let uid = pod.uid().unwrap_or_default();
            if is_running(pod) {
                running.push((uid.clone(), info.clone()));
            }
            by_uid.insert(uid, info);
        }
        Self {
            by_uid,
            audiences: audiences.into_iter().collect(),
            running,
        }
    }
}

/// For each route by (namespace, name), the running pods it wins for (selected) and those of
/// them whose last report carried their table's current version (in sync).
fn sidecar_counts(
    running: &[(String, PodInfo)],
    tables: &BTreeMap<Audience, Arc<RouteTable>>,
    reports: &Reports,
) -> BTreeMap<(String, String), (u32, u32)> {
    let mut selected: BTreeMap<(String, String), (u32, u32)> = BTreeMap::new();
    for (uid, pod) in running {
        if let Some(table) = tables.get(&pod.audience()) {
            let in_sync = reports.versions.get(uid) == Some(&table.version);
            for route in table.routes.values() {
                let counts = selected
                    .entry((route.namespace.clone(), route.name.clone()))
                    .or_default();
                counts.0 += 1;
                counts.1 += u32::from(in_sync);
            }
        }
    }
    selected
}

/// Adds to `out` the route statuses that changed, and the events they deserve.
fn route_statuses(
    world: &World,
    outcomes: &BTreeMap<ObjectKey, RouteOutcome>,
    selected: &BTreeMap<(String, String), (u32, u32)>,
    reports: &Reports,
    now: &Time,
    out: &mut Step,
) {
    for route in &world.routes {
        let key = key_of(Kind::ModelRoute, route);
        let Some(outcome) = outcomes.get(&key) else {
            continue;
        };
        let (count, in_sync) = selected
            .get(&(key.namespace.clone(), key.name.clone()))
            .copied()
            .unwrap_or_default();
        let sidecars = SidecarSummary {
            selected: count,
            in_sync,
            summary: format!("{in_sync}/{count}"),
        };
        // The snapshot holding this compile is published before any status is written, so a
        // route without problems is in the served tables.
        let programmed = outcome.accepted.is_empty() && outcome.resolved_refs.is_empty();
        let previous = route.status.as_ref();
        let mut status =
            conditions::route_status(outcome, sidecars, programmed, previous, now.clone());
        let window = RouteKey {
            namespace: key.namespace.clone(),
            route: key.name.clone(),
        };
        spend::set_route_window(&mut status, reports.routes.get(&window));
        if !previous.is_some_and(|p| conditions::same_ignoring_time(p, &status)) {
            let before = previous.map(|p| p.conditions.as_slice());
            let events = notices(route.object_ref(&()), before, &status.conditions);
            let spend_only = events.is_empty()
                && previous.is_some_and(|p| spend::same_route_but_spend(p, &status));
            out.events.extend(events);
            out.routes.push(RouteWrite {
                key,
                status,
                spend_only,
            });
        }
    }
}

/// Adds to `out` the pool statuses that changed, and the events they deserve.
fn pool_statuses(
    world: &World,
    outcomes: &BTreeMap<ObjectKey, PoolOutcome>,
    reports: &Reports,
    now: &Time,
    out: &mut Step,
) {
    for pool in &world.pools {
        let key = key_of(Kind::ProviderPool, pool);
        let Some(outcome) = outcomes.get(&key) else {
            continue;
        };
        let providers = pool
            .spec
            .providers
            .iter()
            .map(|p| {
                let id = format!("{}/{}", key.name, p.name);
                let stats: Vec<&WindowStats> = reports
                    .windows
                    .iter()
                    .filter(|(k, _)| k.namespace == key.namespace && k.provider == id)
                    .map(|(_, s)| s)
                    .collect();
                conditions::provider_status(&p.name, &stats)
            })
            .collect();
        let previous = pool.status.as_ref();
        let status = conditions::pool_status(
            outcome,
            providers,
            pool.metadata.generation,
            previous,
            now.clone(),
        );
        if !previous.is_some_and(|p| conditions::same_ignoring_time(p, &status)) {
            let before = previous.map(|p| p.conditions.as_slice());
            out.events
                .extend(notices(pool.object_ref(&()), before, &status.conditions));
            out.pools.push((key, status));
        }
    }
}

/// The events a change of conditions from `before` to `after` deserves, about `object`.
fn notices(
    object: ObjectReference,
    before: Option<&[Condition]>,
    after: &[Condition],
) -> Vec<(ObjectReference, Notice)> {
    events::notices(before.unwrap_or_default(), after)
        .into_iter()
        .map(|notice| (object.clone(), notice))
        .collect()
}

pub(super) fn key_of(kind: Kind, obj: &impl ResourceExt) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: obj.namespace().unwrap_or_else(|| "default".to_string()),
        name: obj.name_any(),
    }
}

/// The index entry of an injected, non-terminating pod.
pub(super) fn pod_info(pod: &Pod, owners: &Owners) -> Option<PodInfo> {
    let injected = pod
        .labels()
        .get(INJECTED_LABEL)
        .is_some_and(|v| v == "true");
    if !injected || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some(PodInfo {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        labels: pod.labels().clone(),
        injected,
        workload: workload::resolve(pod, owners),
    })
}

pub(super) fn is_running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Running")
}
