//! The controller: label-filtered reflectors over ModelRoutes, ProviderPools, Budgets, opted-in
//! Secrets and injected Pods, and a metadata-only watch of ConfigMaps (those routes name for a
//! complexity model are read by name at each step); on any change (debounced) one [`step()`] compiles every table, the result is
//! published into [`Tables`], and statuses that changed are written by server-side apply.
//!
//! Every replica runs the reflectors and publishes tables (a standby is warm); only the leader
//! writes status and publishes [`events`]. The reflector wiring in [`run`] is deliberately thin:
//! everything decidable is in [`step()`], a function over plain object lists, and in the pure
//! builders of [`conditions`] and [`events`].

pub mod conditions;
pub mod events;
pub mod owners;
mod references;
pub mod spend;
mod step;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use switchyard_crds::compile::{ObjectKey, SECRET_OPT_IN_LABEL};
use switchyard_crds::v1alpha1::{
    Budget, BudgetStatus, ModelRoute, ModelRouteStatus, PromptTemplate, PromptTemplateStatus,
    ProviderPool, ProviderPoolStatus,
};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use self::events::Notice;
use crate::config_server::tables::Tables;
use crate::leader::Leadership;
use crate::metrics::ControllerMetrics;
use crate::names::{FIELD_MANAGER, INJECT_LABEL, INJECTED_LABEL};
use crate::telemetry;
use crate::{Error, Result};
use owners::OwnerCache;
#[cfg(test)]
use spend::SPEND_WRITE_EVERY;

pub use references::{ConfigMapCache, config_map_refs, referenced_config_maps, unseen_secret_refs};
use references::{spawn_config_map_watch, unlabelled_secrets};
pub use step::{BudgetWrite, Reports, RouteWrite, Step, World, step};
#[cfg(test)]
use step::{is_running, key_of, pod_info};

/// How long to wait after a change for more changes before compiling.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Report windows and budget spend change without any object changing: recompute pool health
/// and budget windows this often.
const RESYNC: Duration = Duration::from_secs(30);
/// The backoff after a failed status write: from 1 s, doubling, up to a minute (backon's jitter
/// adds up to one more delay to each), so that a broken apiserver is not hammered and a
/// recovered one is written to soon.
const RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_secs(1))
    .with_max_delay(Duration::from_secs(60))
    .with_factor(2.0)
    .with_jitter()
    .without_max_times();

/// Writes a route's status: server-side apply on the status subresource, forced, so that the
/// operator owns every status field whoever wrote it before.
pub async fn apply_route_status(
    client: &Client,
    key: &ObjectKey,
    status: &ModelRouteStatus,
) -> Result<()> {
    apply_status::<ModelRoute>(client, key, status).await
}

/// Writes a budget's status, like [`apply_route_status`].
pub async fn apply_budget_status(
    client: &Client,
    key: &ObjectKey,
    status: &BudgetStatus,
) -> Result<()> {
    apply_status::<Budget>(client, key, status).await
}

/// Writes a prompt template's status, like [`apply_route_status`].
pub async fn apply_template_status(
    client: &Client,
    key: &ObjectKey,
    status: &PromptTemplateStatus,
) -> Result<()> {
    apply_status::<PromptTemplate>(client, key, status).await
}

/// Writes a pool's status, like [`apply_route_status`].
pub async fn apply_pool_status(
    client: &Client,
    key: &ObjectKey,
    status: &ProviderPoolStatus,
) -> Result<()> {
    apply_status::<ProviderPool>(client, key, status).await
}

async fn apply_status<K>(
    client: &Client,
    key: &ObjectKey,
    status: &impl serde::Serialize,
) -> Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    let body = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(&key.name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(|source| Error::StatusWrite {
            object: key.to_string(),
            source,
        })?;
    Ok(())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// What the controller needs besides the apiserver.
pub struct Context {
    pub client: Client,
    /// Where every replica publishes the compiled tables.
    pub tables: Tables,
    /// Reads what the config server learnt from sidecar reports.
    pub reports: Box<dyn Fn() -> Reports + Send>,
    pub metrics: ControllerMetrics,
    /// Only the leader writes status and publishes events.
    pub leadership: Leadership,
    /// Set once every cache has synced and the first tables are published (`/readyz`).
    pub synced: Arc<AtomicBool>,
    /// Receives [`Step::trust_namespaces`] after every step.
    pub trust_namespaces: watch::Sender<BTreeSet<String>>,
    /// Names this replica in events (the pod name, or the host outside a cluster).
    pub instance: String,
    /// Notified when a sidecar reports a new table version: `inSync` counts change.
    pub versions_reported: Arc<Notify>,
}

/// Runs the controller until the process ends: never returns, never exits on an error (watch
/// errors are retried by the watchers' backoff, status writes by ours), and never publishes
/// before every cache has synced, so an error can never replace good tables by empty ones.
pub async fn run(mut ctx: Context) {
    let changed = Arc::new(Notify::new());
    let stores = Stores::spawn(&ctx.client, &changed, &ctx.metrics);
    stores.wait_until_ready().await;
    tracing::info!("controller caches synced");
    let recorder = Recorder::new(
        ctx.client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(ctx.instance.clone()),
        },
    );

    let mut retries = RETRY.build();
    let mut wait = Duration::ZERO;
    let mut first = true;
    // When each route's and budget's status was last written by this replica, to space
    // spend-only writes.
    let mut written = HashMap::new();
    loop {
        if !first {
            next_trigger(&mut ctx, &changed, wait).await;
        }
        first = false;
        let (failed, deferred) = reconcile(&mut ctx, &stores, &recorder, &mut written).await;
        // A failed write is retried by the next step (the object still carries its old
        // status); back off so that a broken apiserver is not hammered.
        if failed {
            // Never exhausted: built without a maximum number of attempts.
            wait = retries.next().unwrap_or(RESYNC);
        } else {
            // A deferred spend write is made when it is due, not at the next resync.
            wait = deferred.unwrap_or(Duration::ZERO);
            retries = RETRY.build();
        }
    }
}

/// Waits for a reason to step again: a change (debounced), a new leader, or `wait` (the
/// retry backoff, or the resync period when zero).
async fn next_trigger(ctx: &mut Context, changed: &Notify, wait: Duration) {
    tokio::select! {
        () = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
        () = ctx.versions_reported.notified() => tokio::time::sleep(DEBOUNCE).await,
        // A new leader writes whatever the old one left undone, at once.
        _ = ctx.leadership.changed() => {}
        () = tokio::time::sleep(if wait.is_zero() { RESYNC } else { wait }) => {}
    }
}

/// One step over what the caches hold: publishes its tables and trust namespaces and, when
/// leading, writes its statuses. True when a write failed; and how long until a route or budget
/// write deferred by [`spend::SPEND_WRITE_EVERY`] is due. (`&mut`: the context is not `Sync`, and this future
/// must be `Send`.)
async fn reconcile(
    ctx: &mut Context,
    stores: &Stores,
    recorder: &Recorder,
    written: &mut HashMap<ObjectKey, Instant>,
) -> (bool, Option<Duration>) {
    let timer = ctx.metrics.reconcile_duration.start_timer();
    let span = telemetry::Step::start("reconcile");
    let mut world = stores.world();
    // Lookups run beside the step; the pods they resolve move to their workload at a later one.
    stores
        .owners
        .refresh(&ctx.client, &world.pods, &stores.changed, &ctx.metrics);
    let unlabelled = unlabelled_secrets(&ctx.client, &world).await;
    world.secrets.extend(unlabelled);
    // Taken out for the reads: a std mutex is not held across an await.
    let mut cache = std::mem::take(
        &mut *stores
            .config_map_data
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let version = |namespace: &str, name: &str| {
        let key = reflector::ObjectRef::new(name).within(namespace);
        let meta = stores.config_maps.get(&key)?;
        Some(meta.resource_version().unwrap_or_default())
    };
    world.config_maps = referenced_config_maps(&ctx.client, &world, version, &mut cache).await;
    *stores
        .config_map_data
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = cache;
    let compile = span.child("compile");
    let out = step(
        &world,
        &(ctx.reports)(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    drop(compile);
    // The push: long-polling sidecars whose table changed are answered from here.
    let publish = span.child("publish tables");
    ctx.tables.publish(out.snapshot);
    drop(publish);
    ctx.synced.store(true, Ordering::Release);
    ctx.trust_namespaces.send_if_modified(|current| {
        let modified = *current != out.trust_namespaces;
        *current = out.trust_namespaces;
        modified
    });
    let mut deferred = None;
    let mut failed = false;
    if ctx.leadership.is_leader() {
        let now = Instant::now();
        // An entry older than SPEND_WRITE_EVERY defers nothing, as no entry does: forgetting
        // it keeps the map to the objects written lately (deleted ones included).
        written.retain(|_, at| now.saturating_duration_since(*at) < spend::SPEND_WRITE_EVERY);
        let (route_writes, next_route) = spend::due(out.routes, written, now);
        let (budgets, next_budget) = spend::due(out.budgets, written, now);
        deferred = next_route.into_iter().chain(next_budget).min();
        let mut routes = Vec::with_capacity(route_writes.len());
        for write in route_writes {
            written.insert(write.key.clone(), now);
            routes.push((write.key, write.status));
        }
        let mut events = out.events;
        let mut statuses = Vec::with_capacity(budgets.len());
        for write in budgets {
            written.insert(write.key.clone(), now);
            events.extend(write.events);
            statuses.push((write.key, write.status));
        }
        let writes = Writes {
            routes: &routes,
            pools: &out.pools,
            budgets: &statuses,
            templates: &out.templates,
            events: &events,
        };
        let write = span.child("write status");
        write.set("switchyard.status_writes", || {
            ((routes.len() + out.pools.len() + statuses.len() + out.templates.len()) as i64).into()
        });
        failed = !write_status(&ctx.client, recorder, &writes, &ctx.metrics).await;
        if failed {
            write.fail("status_write");
        }
    }
    ctx.metrics.reconciles.inc();
    timer.observe_duration();
    (failed, deferred)
}

/// The statuses and events one step writes.
struct Writes<'a> {
    routes: &'a [(ObjectKey, ModelRouteStatus)],
    pools: &'a [(ObjectKey, ProviderPoolStatus)],
    budgets: &'a [(ObjectKey, BudgetStatus)],
    templates: &'a [(ObjectKey, PromptTemplateStatus)],
    events: &'a [(ObjectReference, Notice)],
}

/// The reflectors' caches, one per watched kind.
struct Stores {
    routes: Store<ModelRoute>,
    pools: Store<ProviderPool>,
    budgets: Store<Budget>,
    templates: Store<PromptTemplate>,
    secrets: Store<Secret>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    /// The (namespace, name) and `resourceVersion` of every ConfigMap (metadata only): a change
    /// to one a route references triggers a step, which reads it by name.
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// The referenced ConfigMaps as last read ([`referenced_config_maps`]).
    config_map_data: std::sync::Mutex<ConfigMapCache>,
    owners: Arc<OwnerCache>,
    /// Notified by every reflector and by owner lookups that found something.
    changed: Arc<Notify>,
}

impl Stores {
    /// Starts a reflector per kind; each notifies `changed` on every event.
    fn spawn(client: &Client, changed: &Arc<Notify>, errors: &ControllerMetrics) -> Self {
        let labelled = |label: &str| watcher::Config::default().labels(&format!("{label}=true"));
        let routes = spawn_reflector(
            Api::all(client.clone()),
            watcher::Config::default(),
            "modelroutes",
            changed,
            errors,
            |_| {},
        );
        let routes_reader = routes.clone();
        Self {
            routes,
            pools: spawn_reflector(
                Api::all(client.clone()),
                watcher::Config::default(),
                "providerpools",
                changed,
                errors,
                |_| {},
            ),
            budgets: spawn_reflector(
                Api::all(client.clone()),
                watcher::Config::default(),
                "budgets",
                changed,
                errors,
                |_| {},
            ),
            templates: spawn_reflector(
                Api::all(client.clone()),
                watcher::Config::default(),
                "prompttemplates",
                changed,
                errors,
                |_| {},
            ),
            secrets: spawn_reflector(
                Api::all(client.clone()),
                labelled(SECRET_OPT_IN_LABEL),
                "secrets",
                changed,
                errors,
                |_| {},
            ),
            pods: spawn_reflector(
                Api::all(client.clone()),
                labelled(INJECTED_LABEL),
                "pods",
                changed,
                errors,
                trim_pod,
            ),
            namespaces: spawn_reflector(
                Api::all(client.clone()),
                labelled(INJECT_LABEL),
                "namespaces",
                changed,
                errors,
                |_| {},
            ),
            config_maps: spawn_config_map_watch(client, routes_reader, changed, errors),
            config_map_data: std::sync::Mutex::default(),
            owners: Arc::default(),
            changed: changed.clone(),
        }
    }

    /// Waits until every cache has synced once.
    async fn wait_until_ready(&self) {
        for (name, store) in [
            ("modelroutes", self.routes.wait_until_ready().await),
            ("providerpools", self.pools.wait_until_ready().await),
            ("budgets", self.budgets.wait_until_ready().await),
            ("prompttemplates", self.templates.wait_until_ready().await),
            ("secrets", self.secrets.wait_until_ready().await),
            ("pods", self.pods.wait_until_ready().await),
            ("namespaces", self.namespaces.wait_until_ready().await),
            ("configmaps", self.config_maps.wait_until_ready().await),
        ] {
            if let Err(error) = store {
                // Only when the writer was dropped, i.e. its task ended: keep going on what we
                // have.
                tracing::error!(%error, resource = name, "reflector ended before syncing");
            }
        }
    }

    fn world(&self) -> World {
        World {
            pools: cloned(&self.pools),
            routes: cloned(&self.routes),
            budgets: cloned(&self.budgets),
            templates: cloned(&self.templates),
            secrets: cloned(&self.secrets),
            pods: cloned(&self.pods),
            namespaces: cloned(&self.namespaces),
            // Read by name at each step (`referenced_config_maps`).
            config_maps: Vec::new(),
            owners: self.owners.known(),
        }
    }
}

/// Writes the statuses a step decided and then its events; false when any write failed.
/// Events are best effort: a lost event is logged, never retried.
async fn write_status(
    client: &Client,
    recorder: &Recorder,
    writes: &Writes<'_>,
    metrics: &ControllerMetrics,
) -> bool {
    let mut ok = true;
    let mut failed = |error: Error| {
        // An object deleted since the step read it has no status to write.
        if let Error::StatusWrite { source, .. } = &error
            && crate::is_gone(source)
        {
            tracing::debug!(%error, "object gone before its status was written");
            return;
        }
        record(metrics, &error);
        ok = false;
    };
    for (key, status) in writes.routes {
        if let Err(error) = apply_route_status(client, key, status).await {
            failed(error);
        }
    }
    for (key, status) in writes.pools {
        if let Err(error) = apply_pool_status(client, key, status).await {
            failed(error);
        }
    }
    for (key, status) in writes.budgets {
        if let Err(error) = apply_budget_status(client, key, status).await {
            failed(error);
        }
    }
    for (key, status) in writes.templates {
        if let Err(error) = apply_template_status(client, key, status).await {
            failed(error);
        }
    }
    for (reference, notice) in writes.events {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.clone(),
            note: Some(notice.note.clone()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        match recorder.publish(&event, reference).await {
            Ok(()) => {}
            Err(error) if crate::is_gone(&error) => {
                tracing::debug!(%error, "no event for an object that is going away");
            }
            Err(error) => {
                tracing::warn!(%error, reason = %notice.reason, "cannot publish an event")
            }
        }
    }
    ok
}

fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    name: &'static str,
    changed: &Arc<Notify>,
    metrics: &ControllerMetrics,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let metrics = metrics.clone();
    let stream = reflector::reflector(writer, watcher(api, config).modify(trim)).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(source) => record(
                    &metrics,
                    &Error::Watch {
                        resource: name,
                        source,
                    },
                ),
            }
        }
    });
    reader
}

/// Logs a failure the controller will retry and counts it by reason.
fn record(metrics: &ControllerMetrics, error: &Error) {
    tracing::warn!(%error, "controller error; retrying");
    metrics
        .errors
        .with_label_values(&[error.metric_label()])
        .inc();
}

fn cloned<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// Keeps of a watched Pod only what the controller reads: name, namespace, UID, labels, owner
/// references, deletion time, ServiceAccount and phase (`pod_info`, [`crate::workload::resolve`],
/// the owner lookups). The pod cache holds every injected pod of the cluster and `Stores::world`
/// copies it on every step, so the rest (managed fields, annotations, containers, volumes,
/// conditions: several KiB a pod, tens of MiB at 10,000 pods) is dropped before it is stored.
pub fn trim_pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.finalizers = None;
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.clone());
    pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
        service_account_name: service_account,
        ..Default::default()
    });
    let phase = pod.status.as_ref().and_then(|status| status.phase.clone());
    pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase,
        ..Default::default()
    });
}

#[cfg(test)]
mod config_map_tests;
#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod tests;
