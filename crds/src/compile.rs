//! The pure compiler: ProviderPools, ModelRoutes, Budgets and Secrets in, one [`RouteTable`] per
//! [`Audience`] and a verdict per object out.
//!
//! `compile` is synchronous, deterministic and does no I/O, so the operator, the standalone
//! sidecar and the tests all run exactly the same code. Problems never abort a compile: each is
//! attached to the object and field at fault, the object (or the one provider or target) is left
//! out, and everything valid is still served. The operator turns verdicts into status
//! conditions; the standalone loader refuses to start on any problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::table::{self, RouteTable, Upstream};
use crate::v1alpha1::{Budget, ModelRoute, ProviderPool};

mod budget;
mod complexity;
mod fleet;
mod pool;
mod route;
mod template;

use self::budget::{compile_budget, selects_pods};
pub use self::complexity::ModelFiles;
use self::pool::compile_pool;
use self::route::compile_route;
pub use self::template::{TemplateOutcome, apply as apply_templates};

/// The label a Secret needs, in a cluster, before a pool may use it.
pub const SECRET_OPT_IN_LABEL: &str = "switchyard.dev/provider-key";

/// Reasons attached to problems; they become status condition reasons.
pub mod reasons {
    /// The spec breaks a rule the schema cannot express.
    pub const INVALID: &str = "Invalid";
    /// A provider's URL is refused by the security rules.
    pub const INVALID_PROVIDER: &str = "InvalidProvider";
    /// The referenced Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The Secret exists but has no such key.
    pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";
    /// The Secret lacks the `switchyard.dev/provider-key: "true"` label.
    pub const SECRET_NOT_OPTED_IN: &str = "SecretNotOptedIn";
    /// A target names a pool, provider or model that does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// A target names a provider that exists but cannot be used.
    pub const BACKEND_NOT_READY: &str = "BackendNotReady";
    /// Residency rules excluded every target.
    pub const NO_ELIGIBLE_TARGETS: &str = "NoEligibleTargets";
    /// Another route wins this `model` for every pod.
    pub const CONFLICTED: &str = "Conflicted";
    /// A PromptTemplate's text does not parse or uses a variable it does not declare.
    pub const INVALID_TEMPLATE: &str = "InvalidTemplate";
    /// A route names a PromptTemplate that does not exist.
    pub const TEMPLATE_NOT_FOUND: &str = "TemplateNotFound";
    /// A route names a PromptTemplate that exists but is not accepted.
    pub const TEMPLATE_NOT_READY: &str = "TemplateNotReady";
    /// The ConfigMap holding a complexity model does not exist.
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    /// The ConfigMap exists but has no such key.
    pub const CONFIG_MAP_KEY_NOT_FOUND: &str = "ConfigMapKeyNotFound";
    /// A complexity model file is corrupt, of another version, too large or unreadable.
    pub const INVALID_MODEL: &str = "InvalidModel";
    /// No route of the namespace serves the classifier model a `Route` scorer names.
    pub const CLASSIFIER_NOT_FOUND: &str = "ClassifierNotFound";
}

/// Which kind of object a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ProviderPool,
    ModelRoute,
    Secret,
    Budget,
    PromptTemplate,
    ConfigMap,
}

/// A namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    fn of(kind: Kind, obj: &impl ResourceExt) -> Self {
        Self {
            kind,
            namespace: obj.namespace().unwrap_or_else(|| "default".to_string()),
            name: obj.name_any(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One thing wrong with one object, precise enough for a person to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub object: ObjectKey,
    /// JSON path of the field at fault, e.g. `spec.targets[1].provider`.
    pub field: String,
    /// One of [`reasons`].
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

/// The problems found in one object so far, sorted by the condition they belong to.
struct Findings<'k> {
    object: &'k ObjectKey,
    /// Spec problems (`Accepted`).
    accepted: Vec<Problem>,
    /// Reference problems (`ResolvedRefs`).
    resolved_refs: Vec<Problem>,
}

impl<'k> Findings<'k> {
    fn new(object: &'k ObjectKey) -> Self {
        Self {
            object,
            accepted: Vec::new(),
            resolved_refs: Vec::new(),
        }
    }

    fn problem(&self, field: String, reason: &'static str, message: String) -> Problem {
        Problem {
            object: self.object.clone(),
            field,
            reason,
            message,
        }
    }

    /// A spec problem for `reason`.
    fn reject(&mut self, field: String, reason: &'static str, message: String) {
        self.accepted.push(self.problem(field, reason, message));
    }

    /// A spec problem of the most common kind, [`reasons::INVALID`].
    fn invalid(&mut self, field: String, message: String) {
        self.reject(field, reasons::INVALID, message);
    }

    /// A reference that does not resolve, for `reason`.
    fn unresolved(&mut self, field: String, reason: &'static str, message: String) {
        self.resolved_refs
            .push(self.problem(field, reason, message));
    }

    fn is_empty(&self) -> bool {
        self.accepted.is_empty() && self.resolved_refs.is_empty()
    }
}

/// The pods a table is compiled for: a namespace and a set of pod labels, and the workload
/// those pods belong to (carried into the table as is; routes and budgets select by labels).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Audience {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Option<table::Workload>,
}

/// Everything `compile` reads.
pub struct Inputs<'a> {
    pub pools: &'a [ProviderPool],
    pub routes: &'a [ModelRoute],
    /// Budgets to compile into the tables of the pods they select. In a cluster each sidecar
    /// then holds the share the operator leases it; standalone, the one sidecar holds it all.
    pub budgets: &'a [Budget],
    pub secrets: &'a [Secret],
    /// ConfigMaps that routes' complexity models may name.
    pub config_maps: &'a [ConfigMap],
    /// Standalone: the model files routes name with `file:`, read by the loader. `None` in a
    /// cluster, which refuses `file:`.
    pub model_files: Option<&'a ModelFiles>,
    pub audiences: &'a [Audience],
    /// In a cluster, Secrets must carry [`SECRET_OPT_IN_LABEL`]; standalone files need not.
    pub require_secret_opt_in: bool,
    /// Written into each table's `generatedBy`.
    pub generated_by: &'a str,
}

/// The verdict on one pool.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolOutcome {
    /// Spec problems: the pool, or some provider of it, cannot be used.
    pub accepted: Vec<Problem>,
    /// Secret problems.
    pub resolved_refs: Vec<Problem>,
}

/// The verdict on one route.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteOutcome {
    pub accepted: Vec<Problem>,
    pub resolved_refs: Vec<Problem>,
    /// Targets that survived references and residency.
    pub target_count: u32,
    /// `pool/provider`s dropped by residency.
    pub excluded_providers: Vec<String>,
    /// The route's `metadata.generation`, for `observedGeneration`.
    pub generation: Option<i64>,
}

/// The verdict on one budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetOutcome {
    /// Spec problems, and selector entries that name nothing: the budget is left out.
    pub accepted: Vec<Problem>,
    /// The budget's `metadata.generation`, for `observedGeneration`.
    pub generation: Option<i64>,
}

/// What `compile` produces.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub tables: BTreeMap<Audience, RouteTable>,
    pub pools: BTreeMap<ObjectKey, PoolOutcome>,
    pub routes: BTreeMap<ObjectKey, RouteOutcome>,
    pub budgets: BTreeMap<ObjectKey, BudgetOutcome>,
    /// Filled by [`apply_templates`].
    pub templates: BTreeMap<ObjectKey, TemplateOutcome>,
}

impl Compiled {
    /// Every problem of every object.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        let pools = self
            .pools
            .values()
            .flat_map(|o| o.accepted.iter().chain(&o.resolved_refs));
        let routes = self
            .routes
            .values()
            .flat_map(|o| o.accepted.iter().chain(&o.resolved_refs));
        let budgets = self.budgets.values().flat_map(|o| &o.accepted);
        let templates = self.templates.values().flat_map(|o| &o.accepted);
        pools.chain(routes).chain(budgets).chain(templates)
    }
}

/// A usable provider of a pool, with its models.
struct CompiledProvider {
    upstream: Upstream,
    models: pool::Models,
}

/// Usable providers by (namespace, pool, provider); `Err` holds why a provider is unusable.
type ProviderIndex = BTreeMap<(String, String, String), Result<CompiledProvider, String>>;

/// Compiles everything. Deterministic: the same inputs give byte-identical tables.
pub fn compile(inputs: &Inputs<'_>) -> Compiled {
    let mut out = Compiled::default();
    let mut providers = ProviderIndex::new();
    for pool in inputs.pools {
        let outcome = compile_pool(pool, inputs, &mut providers);
        out.pools
            .insert(ObjectKey::of(Kind::ProviderPool, pool), outcome);
    }
    let pool_names: BTreeSet<(String, String)> = inputs
        .pools
        .iter()
        .map(|p| {
            (
                p.namespace().unwrap_or_else(|| "default".into()),
                p.name_any(),
            )
        })
        .collect();

    let mut compiled_routes = Vec::new();
    // Complexity model files by checksum; each table takes those its routes use.
    let mut models = BTreeMap::new();
    for route in inputs.routes {
        let key = ObjectKey::of(Kind::ModelRoute, route);
        let (mut outcome, mut compiled) = compile_route(route, &key, &providers, &pool_names);
        complexity::apply(
            route,
            &key,
            inputs,
            &mut outcome,
            &mut compiled,
            &mut models,
        );
        if let Some(compiled) = compiled {
            compiled_routes.push((route, compiled));
        }
        out.routes.insert(key, outcome);
    }

    let mut compiled_budgets = Vec::new();
    for budget in inputs.budgets {
        let key = ObjectKey::of(Kind::Budget, budget);
        let (outcome, compiled) = compile_budget(budget, &key, inputs.routes, &providers);
        if let Some(compiled) = compiled {
            compiled_budgets.push((budget, compiled));
        }
        out.budgets.insert(key, outcome);
    }

    let mut won_somewhere = BTreeSet::new();
    let mut lost_to = BTreeMap::new();
    for audience in inputs.audiences {
        let winners = winners(audience, &compiled_routes, &mut lost_to);
        won_somewhere.extend(
            winners
                .values()
                .map(|(route, _)| ObjectKey::of(Kind::ModelRoute, *route)),
        );
        let mut table = table_of(winners, &providers, inputs.generated_by);
        let fleet = fleet::fleet_limits(&mut table, &audience.namespace, inputs.pools);
        let budgets = compiled_budgets
            .iter()
            .filter(|(budget, compiled)| {
                compiled.namespace == audience.namespace && selects_pods(budget, &audience.labels)
            })
            .map(|(_, compiled)| compiled.clone())
            .chain(fleet)
            .map(|compiled| (compiled.id(), compiled))
            .collect();
        table.budgets = budgets;
        table.workload = audience.workload.clone();
        table.complexity_models = table
            .routes
            .values()
            .filter_map(|r| r.complexity.as_ref()?.model.as_ref())
            .filter_map(|checksum| Some((checksum.clone(), models.get(checksum)?.clone())))
            .collect();
        // One hash for all of it: the fleet limits changed upstreams too.
        table.version = table.content_hash();
        out.tables.insert(audience.clone(), table);
    }
    report_conflicts(&mut out.routes, lost_to, &won_somewhere);
    out
}

/// A compiled route with the object it came from.
type RouteOf<'r> = (&'r ModelRoute, table::Route);

/// The route serving each model for `audience`, by model; each route that lost a model to
/// another is recorded in `lost_to`.
fn winners<'r>(
    audience: &Audience,
    compiled_routes: &'r [RouteOf<'r>],
    lost_to: &mut BTreeMap<ObjectKey, ObjectKey>,
) -> BTreeMap<&'r str, (&'r ModelRoute, &'r table::Route)> {
    let mut winners: BTreeMap<&str, (&ModelRoute, &table::Route)> = BTreeMap::new();
    for (route, compiled) in compiled_routes {
        if compiled.namespace != audience.namespace || !selects(route, &audience.labels) {
            continue;
        }
        match winners.get(compiled.model.as_str()) {
            Some((current, _)) if !beats(route, current) => {
                lost_to.insert(
                    ObjectKey::of(Kind::ModelRoute, *route),
                    ObjectKey::of(Kind::ModelRoute, *current),
                );
            }
            current => {
                if let Some((loser, _)) = current {
                    lost_to.insert(
                        ObjectKey::of(Kind::ModelRoute, *loser),
                        ObjectKey::of(Kind::ModelRoute, *route),
                    );
                }
                winners.insert(&compiled.model, (route, compiled));
            }
        }
    }
    winners
}

/// The table serving `winners`, with the upstreams their targets use.
fn table_of(
    winners: BTreeMap<&str, (&ModelRoute, &table::Route)>,
    providers: &ProviderIndex,
    generated_by: &str,
) -> RouteTable {
    let mut routes = BTreeMap::new();
    let mut upstreams = BTreeMap::new();
    for (model, (_, compiled)) in winners {
        let namespace = &compiled.namespace;
        for target in compiled
            .targets
            .iter()
            .chain(compiled.rules.iter().flat_map(|r| &r.targets))
        {
            let (pool, provider) = target
                .upstream
                .split_once('/')
                .expect("upstream ids are pool/provider");
            let key = (namespace.clone(), pool.to_string(), provider.to_string());
            if let Some(Ok(p)) = providers.get(&key) {
                upstreams.insert(target.upstream.clone(), p.upstream.clone());
            }
        }
        routes.insert(model.to_string(), compiled.clone());
    }
    RouteTable::new(routes, upstreams, generated_by)
}

/// Marks `Conflicted` every route that lost its model for every audience it could serve.
fn report_conflicts(
    routes: &mut BTreeMap<ObjectKey, RouteOutcome>,
    lost_to: BTreeMap<ObjectKey, ObjectKey>,
    won_somewhere: &BTreeSet<ObjectKey>,
) {
    for (loser, winner) in lost_to {
        if won_somewhere.contains(&loser) {
            continue;
        }
        if let Some(outcome) = routes.get_mut(&loser) {
            outcome.accepted.push(Problem {
                object: loser.clone(),
                field: "spec.model".into(),
                reason: reasons::CONFLICTED,
                message: format!(
                    "route {} serves this model for every selected pod",
                    winner.name
                ),
            });
        }
    }
}

/// Whether `route` applies to pods with `labels`. Routes without a selector apply to all.
fn selects(route: &ModelRoute, labels: &BTreeMap<String, String>) -> bool {
    match &route.spec.pod_selector {
        None => true,
        Some(selector) => Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels)),
    }
}

/// The resolution order of docs/reference/crds.md: a selector beats none, then the oldest, then
/// the name.
fn beats(challenger: &ModelRoute, current: &ModelRoute) -> bool {
    let rank = |r: &ModelRoute| {
        (
            r.spec.pod_selector.is_none(),
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    };
    rank(challenger) < rank(current)
}

#[cfg(test)]
mod kind_tests;
#[cfg(test)]
mod tests;
