//! The serving state: the current route table, resolved for the request path, and everything
//! that must outlive a table swap (circuit breakers, limits, pooled connections, metrics).
//!
//! Tables arrive whole and are swapped atomically ([`Runtime::swap`]); in-flight requests finish
//! on the snapshot they started with. Standalone files and the operator (pod mode) feed the same
//! swap, so the data plane cannot tell where a table came from.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwapOption;
use switchyard_crds::table::{Route, RouteTable, Rule, Target};
use switchyard_crds::template::Renderer;

use super::cache::ResponseCache;
use super::scorer::{self, RouteScorer};
use crate::budget::BudgetRt;
use crate::telemetry::metrics::Metrics;
use crate::upstream::health::TargetHealth;
use crate::upstream::{TargetRt, UpstreamRt};
use switchyard_crds::complexity::Model;

/// Everything the sidecar serves from, shared by every connection.
pub struct Runtime {
    snapshot: ArcSwapOption<Snapshot>,
    /// Health by (`pool/provider`, model), kept across swaps.
    health: Mutex<HashMap<(String, String), Arc<TargetHealth>>>,
    ready: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Signalled after every swap (a stored permit when nobody waits), so that pod mode reports
    /// the new version at once and route status shows the sidecar in sync.
    swapped: tokio::sync::Notify,
    /// Turns true when shutdown's drain time is up: streams still open end with an error event.
    cut: tokio::sync::watch::Sender<bool>,
    /// Pod mode: budgets hold the operator's leased share, not the whole limit.
    leased_budgets: AtomicBool,
    pub metrics: Metrics,
}

/// One table, resolved for fast lookups.
pub struct Snapshot {
    pub table: RouteTable,
    pub routes: HashMap<String, Arc<RouteRt>>,
    /// Budgets by `namespace/name`, their counters kept across swaps.
    pub budgets: HashMap<String, Arc<BudgetRt>>,
    /// The pod's workload as the request log shows it, when the table names one (pod mode).
    pub workload: Option<Arc<WorkloadLog>>,
    /// The table's complexity models, parsed once, by checksum.
    pub models: HashMap<String, Arc<Model>>,
    /// The table's prompt templates, parsed once (crate::proxy::template renders them).
    pub templates: Renderer,
}

/// The table's workload, formatted once per table rather than once per request.
#[derive(Debug, PartialEq, Eq)]
pub struct WorkloadLog {
    /// `<kind>/<name>`; the namespace is the route's.
    pub workload: String,
    pub service_account: String,
}

/// A route with its targets resolved to live upstreams and health.
pub struct RouteRt {
    pub route: Route,
    /// The route's response cache, kept across swaps while the route is unchanged.
    pub cache: Option<Arc<ResponseCache>>,
    pub targets: Vec<TargetRt>,
    pub rules: Vec<(Rule, Vec<TargetRt>)>,
    /// Budgets without `providers` that count this route's requests: checked on admission.
    pub budgets: Arc<[Arc<BudgetRt>]>,
    /// How the route scores complexity; `None` when it needs no score.
    pub scorer: Option<RouteScorer>,
}

impl Runtime {
    /// An empty runtime: no table yet, so the data plane answers 503.
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwapOption::empty(),
            health: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            last_error: Mutex::new(None),
            swapped: tokio::sync::Notify::new(),
            cut: tokio::sync::watch::Sender::new(false),
            leased_budgets: AtomicBool::new(false),
            metrics,
        })
    }

    /// Pod mode: from the next table on, each budget holds the share the operator leases this
    /// sidecar (docs/reference/sidecar.md#budgets). Call before the first swap.
    pub fn lease_budgets(&self) {
        self.leased_budgets.store(true, Ordering::Release);
    }

    /// Whether budgets hold leased shares (pod mode).
    pub fn budgets_are_leased(&self) -> bool {
        self.leased_budgets.load(Ordering::Acquire)
    }

    /// Takes the leases of a report's answer; leases for budgets not in the table are ignored.
    pub fn apply_leases(&self, leases: &[switchyard_crds::report::Lease]) {
        let Some(snapshot) = self.snapshot() else {
            return;
        };
        let now = switchyard_crds::window::Timestamp::now();
        for lease in leases {
            if let Some(budget) = snapshot.budgets.get(&lease.budget) {
                budget.apply(lease, now);
            }
        }
    }

    /// Tells streams still open to end now, with an error event: the drain time is up.
    pub fn cut_streams(&self) {
        self.cut.send_replace(true);
    }

    /// Completes once [`Runtime::cut_streams`] has been called.
    pub async fn streams_cut(&self) {
        let mut cut = self.cut.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = cut.wait_for(|cut| *cut).await;
    }

    /// The snapshot to serve a request from, if a table has been loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// True once a table has been loaded; never goes back (a later bad table keeps the old one).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Why the last table load failed, when it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets a failed load, once the files are good again.
    pub fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records a refused table: the previous one keeps serving.
    pub fn reject(&self, why: String) {
        self.metrics.config_reload_failures.inc();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Serves `table` from now on. Upstreams, health and caches that did not change carry over.
    pub fn swap(&self, table: RouteTable) {
        let previous = self.snapshot();
        let previous = previous.as_deref();
        let budgets = budgets(previous, &table, &self.metrics, self.budgets_are_leased());
        let models = scorer::models(&table, previous.map(|s| &s.models));
        let mut resolver = Resolver {
            models: &models,
            upstreams: upstreams(previous, &table),
            health: self.health.lock().unwrap_or_else(|p| p.into_inner()),
            used: HashSet::new(),
            budgets: &budgets,
            metrics: &self.metrics,
        };
        let routes = table
            .routes
            .iter()
            .map(|(model, route)| {
                let resolved = resolver.route(route, previous.and_then(|s| s.routes.get(model)));
                (model.clone(), Arc::new(resolved))
            })
            .collect();
        resolver.forget_unused();
        warm_tokenizer_if_needed(&table);
        let (templates, broken) = Renderer::new(&table.templates);
        for error in broken {
            // The compiler refuses such text: only a table written by hand gets here.
            tracing::warn!(%error, "prompt template left out");
        }
        self.metrics.set_config_version(&table.version);
        let workload = table.workload.as_ref().map(|w| {
            Arc::new(WorkloadLog {
                workload: w.kind_name(),
                service_account: w.service_account.clone(),
            })
        });
        self.snapshot.store(Some(Arc::new(Snapshot {
            table,
            routes,
            budgets,
            workload,
            models,
            templates,
        })));
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.ready.store(true, Ordering::Release);
        self.swapped.notify_one();
    }

    /// Brings `switchyard_budget_remaining` up to date: a window that ended since the last
    /// request shows its fresh limit, not the old window's leftovers.
    pub fn refresh_budget_gauges(&self) {
        let now = switchyard_crds::window::Timestamp::now();
        for budget in self.snapshot().iter().flat_map(|s| s.budgets.values()) {
            budget.refresh_remaining(now);
        }
    }

    /// Completes after the next [`Runtime::swap`] (at once if one happened since the last wait).
    pub async fn swapped(&self) {
        self.swapped.notified().await;
    }
}

fn all_targets(route: &RouteRt) -> impl Iterator<Item = &TargetRt> {
    route
        .targets
        .iter()
        .chain(route.rules.iter().flat_map(|(_, t)| t))
}

/// Each upstream of `table`: the previous table's one when its definition is unchanged (its
/// pooled connections and limit state carry over), else a fresh one.
fn upstreams<'t>(
    previous: Option<&Snapshot>,
    table: &'t RouteTable,
) -> HashMap<&'t str, Arc<UpstreamRt>> {
    let mut upstreams = HashMap::new();
    for (id, def) in &table.upstreams {
        let reused = previous
            .and_then(|s| {
                s.routes
                    .values()
                    .flat_map(|r| all_targets(r))
                    .find(|t| t.upstream.id == *id)
            })
            .map(|t| t.upstream.clone())
            .filter(|u| u.def == *def);
        let upstream = reused.unwrap_or_else(|| Arc::new(UpstreamRt::new(def.clone())));
        upstreams.insert(id.as_str(), upstream);
    }
    upstreams
}

/// Each budget of `table`: the previous table's one when unchanged (its counters and metric
/// series carry on), else a new one that keeps the windows of its unchanged limits. The series
/// of budgets that changed or left are removed first, so none lingers with a stale value.
fn budgets(
    previous: Option<&Snapshot>,
    table: &RouteTable,
    metrics: &Metrics,
    leased: bool,
) -> HashMap<String, Arc<BudgetRt>> {
    let old = previous.map(|s| &s.budgets);
    for (id, budget) in old.into_iter().flatten() {
        match table.budgets.get(id) {
            Some(def) if *def == budget.def => {}
            kept => budget.forget_metrics(metrics, kept.is_some()),
        }
    }
    table
        .budgets
        .iter()
        .map(|(id, def)| {
            let previous = old.and_then(|b| b.get(id));
            let budget = match previous {
                Some(p) if p.def == *def => p.clone(),
                _ => Arc::new(BudgetRt::new(
                    def.clone(),
                    previous.map(|p| &**p),
                    metrics,
                    leased,
                    switchyard_crds::window::Timestamp::now(),
                )),
            };
            (id.clone(), budget)
        })
        .collect()
}

/// Resolves one table's targets to live upstreams and health, noting which health it used.
struct Resolver<'a> {
    models: &'a HashMap<String, Arc<Model>>,
    upstreams: HashMap<&'a str, Arc<UpstreamRt>>,
    health: MutexGuard<'a, HashMap<(String, String), Arc<TargetHealth>>>,
    used: HashSet<(String, String)>,
    budgets: &'a HashMap<String, Arc<BudgetRt>>,
    metrics: &'a Metrics,
}

impl Resolver<'_> {
    /// `route` resolved; its cache is kept from `previous` when the route did not change.
    fn route(&mut self, route: &Route, previous: Option<&Arc<RouteRt>>) -> RouteRt {
        let targets = self.targets(route, &route.targets);
        let rules = route
            .rules
            .iter()
            .map(|r| (r.clone(), self.targets(route, &r.targets)))
            .collect();
        let budgets = self.budgets_of(route, None);
        let kept = previous
            .filter(|r| r.route == *route)
            .and_then(|r| r.cache.clone());
        let cache = kept.or_else(|| {
            route
                .cache
                .as_ref()
                .map(|p| Arc::new(ResponseCache::new(p)))
        });
        let scorer = RouteScorer::of(route, self.models, previous.and_then(|r| r.scorer.as_ref()));
        RouteRt {
            route: route.clone(),
            cache,
            targets,
            rules,
            budgets,
            scorer,
        }
    }

    /// The budgets that count `route`'s requests: with `upstream`, those whose `providers` name
    /// it; without, those that name no providers.
    fn budgets_of(&self, route: &Route, upstream: Option<&str>) -> Arc<[Arc<BudgetRt>]> {
        let mut selected: Vec<_> = self
            .budgets
            .values()
            .filter(|b| b.def.selects_route(&route.namespace, &route.name))
            .filter(|b| match upstream {
                None => b.def.providers.is_empty(),
                Some(id) => b.def.providers.iter().any(|p| p == id),
            })
            .cloned()
            .collect();
        // A stable order: the refusal a client reads does not depend on hashing.
        selected.sort_by(|a, b| a.id.cmp(&b.id));
        selected.into()
    }

    fn targets(&mut self, route: &Route, targets: &[Target]) -> Vec<TargetRt> {
        targets
            .iter()
            .filter_map(|t| {
                let upstream = self.upstreams.get(t.upstream.as_str())?.clone();
                let key = (t.upstream.clone(), t.model.clone());
                self.used.insert(key.clone());
                let metrics = self.metrics;
                let health = self
                    .health
                    .entry(key)
                    .or_insert_with(|| {
                        let gauge = metrics
                            .circuit_open
                            .with_label_values(&[&t.upstream, &t.model]);
                        TargetHealth::new(gauge)
                    })
                    .clone();
                Some(TargetRt {
                    target: t.clone(),
                    upstream,
                    health,
                    budgets: self.budgets_of(route, Some(&t.upstream)),
                })
            })
            .collect()
    }

    /// Forgets targets that left the table, and their gauge series.
    fn forget_unused(mut self) {
        let (used, metrics) = (&self.used, self.metrics);
        self.health.retain(|key, _| {
            let keep = used.contains(key);
            if !keep {
                let _ = metrics.circuit_open.remove_label_values(&[&key.0, &key.1]);
            }
            keep
        });
    }
}

/// Builds the tokenizer off the request path before the first request that needs it.
fn warm_tokenizer_if_needed(table: &RouteTable) {
    // Gemini reports no usage for embeddings: the sidecar counts their input itself.
    let embeds_on_gemini = |r: &switchyard_crds::table::Route| {
        r.targets
            .iter()
            .chain(r.rules.iter().flat_map(|rule| &rule.targets))
            .any(|t| {
                t.kind == switchyard_crds::v1alpha1::ModelType::Embedding
                    && table
                        .upstreams
                        .get(&t.upstream)
                        .is_some_and(|u| u.api == switchyard_crds::v1alpha1::Api::Gemini)
            })
    };
    let needs_tokens = table.routes.values().any(|r| {
        r.strategy == switchyard_crds::v1alpha1::Strategy::LowestCost
            || r.rules.iter().any(|rule| rule.min_prompt_tokens.is_some())
            || embeds_on_gemini(r)
    });
    if needs_tokens && let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn_blocking(crate::upstream::tokens::warm);
    }
}
