//! The pure compiler: ProviderPools, ModelRoutes and Secrets in, one [`RouteTable`] per
//! [`Audience`] and a verdict per object out.
//!
//! `compile` is synchronous, deterministic and does no I/O, so the operator, the standalone
//! sidecar and the tests all run exactly the same code. Problems never abort a compile: each is
//! attached to the object and field at fault, the object (or the one provider or target) is left
//! out, and everything valid is still served. The operator turns verdicts into status
//! conditions; the standalone loader refuses to start on any problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::secret::SecretString;
use crate::table::{self, CachePolicy, Pricing, RouteTable, TimeoutsMs, Upstream};
use crate::v1alpha1::{FailureClass, ModelRoute, ProviderPool, Strategy};

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
}

/// Which kind of object a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ProviderPool,
    ModelRoute,
    Secret,
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

/// The pods a table is compiled for: a namespace and a set of pod labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Audience {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Everything `compile` reads.
pub struct Inputs<'a> {
    pub pools: &'a [ProviderPool],
    pub routes: &'a [ModelRoute],
    pub secrets: &'a [Secret],
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

/// What `compile` produces.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub tables: BTreeMap<Audience, RouteTable>,
    pub pools: BTreeMap<ObjectKey, PoolOutcome>,
    pub routes: BTreeMap<ObjectKey, RouteOutcome>,
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
        pools.chain(routes)
    }
}

/// A usable provider of a pool, with its models.
struct CompiledProvider {
    upstream: Upstream,
    models: BTreeMap<String, (Pricing, Option<u32>)>,
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
    for route in inputs.routes {
        let key = ObjectKey::of(Kind::ModelRoute, route);
        let (outcome, compiled) = compile_route(route, &key, &providers, &pool_names);
        if let Some(compiled) = compiled {
            compiled_routes.push((route, compiled));
        }
        out.routes.insert(key, outcome);
    }

    let mut won_somewhere = BTreeSet::new();
    let mut lost_to: BTreeMap<ObjectKey, ObjectKey> = BTreeMap::new();
    for audience in inputs.audiences {
        let mut winners: BTreeMap<&str, (&ModelRoute, &table::Route)> = BTreeMap::new();
        for (route, compiled) in &compiled_routes {
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
        let mut routes = BTreeMap::new();
        let mut upstreams = BTreeMap::new();
        for (model, (route, compiled)) in winners {
            won_somewhere.insert(ObjectKey::of(Kind::ModelRoute, route));
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
        out.tables.insert(
            audience.clone(),
            RouteTable::new(routes, upstreams, inputs.generated_by),
        );
    }

    for (loser, winner) in lost_to {
        if won_somewhere.contains(&loser) {
            continue;
        }
        if let Some(outcome) = out.routes.get_mut(&loser) {
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
    out
}

/// Whether `route` applies to pods with `labels`. Routes without a selector apply to all.
fn selects(route: &ModelRoute, labels: &BTreeMap<String, String>) -> bool {
    match &route.spec.pod_selector {
        None => true,
        Some(selector) => Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels)),
    }
}

/// The resolution order of DESIGN.md §2: a selector beats none, then the oldest, then the name.
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

// === pools ===

fn compile_pool(
    pool: &ProviderPool,
    inputs: &Inputs<'_>,
    index: &mut ProviderIndex,
) -> PoolOutcome {
    let key = ObjectKey::of(Kind::ProviderPool, pool);
    let mut outcome = PoolOutcome::default();
    let problem = |field: String, reason: &'static str, message: String| Problem {
        object: key.clone(),
        field,
        reason,
        message,
    };

    let breaker = {
        let cb = pool.spec.circuit_breaker.clone().unwrap_or_default();
        let defaults = table::Breaker::default();
        let mut ms = |d: &Option<crate::v1alpha1::Duration>, field: &str, default: u64| match d
            .as_ref()
            .map(|d| (d, d.parse()))
        {
            None => default,
            Some((_, Some(v))) => v.as_millis() as u64,
            Some((d, None)) => {
                outcome.accepted.push(problem(
                    format!("spec.circuitBreaker.{field}"),
                    reasons::INVALID,
                    format!("{:?} is not a duration like 30s or 1m30s", d.0),
                ));
                default
            }
        };
        table::Breaker {
            consecutive_failures: cb
                .consecutive_failures
                .unwrap_or(defaults.consecutive_failures)
                .max(1),
            cooldown_ms: ms(&cb.cooldown, "cooldown", defaults.cooldown_ms),
            max_retry_after_ms: ms(
                &cb.max_retry_after,
                "maxRetryAfter",
                defaults.max_retry_after_ms,
            ),
        }
    };
    let pool_level_ok = outcome.accepted.is_empty();

    let mut seen = BTreeSet::new();
    for (i, provider) in pool.spec.providers.iter().enumerate() {
        let at = format!("spec.providers[{i}]");
        let mut accepted = Vec::new();
        let mut refs = Vec::new();
        if !seen.insert(provider.name.as_str()) {
            accepted.push(problem(
                format!("{at}.name"),
                reasons::INVALID,
                format!("duplicate provider name {:?}", provider.name),
            ));
        }
        if provider.name.is_empty() || provider.name.contains('/') {
            accepted.push(problem(
                format!("{at}.name"),
                reasons::INVALID,
                "provider names must be non-empty and contain no '/'".into(),
            ));
        }
        let base_url = provider
            .base_url
            .clone()
            .unwrap_or_else(|| provider.api.default_base_url().to_string())
            .trim_end_matches('/')
            .to_string();
        if let Err(why) = check_url(&base_url, provider.api_key.is_some()) {
            accepted.push(problem(
                format!("{at}.baseUrl"),
                reasons::INVALID_PROVIDER,
                format!("provider {:?}: {why}", provider.name),
            ));
        }
        let timeouts = {
            let t = provider.timeouts.clone().unwrap_or_default();
            let d = TimeoutsMs::default();
            let mut ms = |v: &Option<crate::v1alpha1::Duration>, field: &str, default: u64| match v
            {
                None => default,
                Some(v) => match v.parse() {
                    Some(v) if !v.is_zero() => v.as_millis() as u64,
                    _ => {
                        accepted.push(problem(
                            format!("{at}.timeouts.{field}"),
                            reasons::INVALID,
                            format!("{:?} is not a positive duration like 2s or 1m30s", v.0),
                        ));
                        default
                    }
                },
            };
            TimeoutsMs {
                connect: ms(&t.connect, "connect", d.connect),
                first_token: ms(&t.first_token, "firstToken", d.first_token),
                idle: ms(&t.idle, "idle", d.idle),
                total: ms(&t.total, "total", d.total),
            }
        };
        let mut models = BTreeMap::new();
        for (j, model) in provider.models.iter().enumerate() {
            let at = format!("{at}.models[{j}]");
            let mut price = |p: &crate::v1alpha1::Price, field: &str| {
                p.parse().unwrap_or_else(|| {
                    accepted.push(problem(
                        format!("{at}.{field}"),
                        reasons::INVALID,
                        format!(
                            "{:?} is not a non-negative decimal price such as \"2.50\"",
                            p.0
                        ),
                    ));
                    0.0
                })
            };
            let input = price(&model.input_per_million, "inputPerMillion");
            let output = price(&model.output_per_million, "outputPerMillion");
            let cached = model
                .cached_input_per_million
                .as_ref()
                .map_or(input, |p| price(p, "cachedInputPerMillion"));
            let pricing = Pricing {
                input_per_million: input,
                cached_input_per_million: cached,
                output_per_million: output,
            };
            if model.name.is_empty()
                || models
                    .insert(model.name.clone(), (pricing, model.context_window))
                    .is_some()
            {
                accepted.push(problem(
                    format!("{at}.name"),
                    reasons::INVALID,
                    format!("duplicate or empty model name {:?}", model.name),
                ));
            }
        }
        if provider.models.is_empty() {
            accepted.push(problem(
                format!("{at}.models"),
                reasons::INVALID,
                "a provider needs at least one model".into(),
            ));
        }

        let api_key = provider.api_key.as_ref().and_then(|source| {
            let r = &source.secret_key_ref;
            match resolve_secret(&key.namespace, &r.name, &r.key, inputs) {
                Ok(value) => Some(value),
                Err((reason, message)) => {
                    refs.push(problem(
                        format!("{at}.apiKey.secretKeyRef"),
                        reason,
                        message,
                    ));
                    None
                }
            }
        });

        let usable = if accepted.is_empty() && refs.is_empty() && pool_level_ok {
            let limits = provider.limits.clone().unwrap_or_default();
            Ok(CompiledProvider {
                upstream: Upstream {
                    pool: key.name.clone(),
                    provider: provider.name.clone(),
                    api: provider.api,
                    base_url,
                    region: provider.region.clone(),
                    api_key,
                    forward_headers: provider
                        .forward_headers
                        .iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect(),
                    timeouts,
                    limits: table::Limits {
                        requests_per_minute: limits.requests_per_minute,
                        tokens_per_minute: limits.tokens_per_minute,
                        max_concurrent: limits.max_concurrent,
                    },
                    breaker,
                },
                models,
            })
        } else {
            let first = accepted.iter().chain(&refs).next().map_or_else(
                || format!("pool {} is invalid", key.name),
                |p| p.message.clone(),
            );
            Err(first)
        };
        // The first provider of a name wins the index slot, so a duplicate cannot shadow it.
        index
            .entry((
                key.namespace.clone(),
                key.name.clone(),
                provider.name.clone(),
            ))
            .or_insert(usable);
        outcome.accepted.extend(accepted);
        outcome.resolved_refs.extend(refs);
    }
    outcome
}

/// The security rules for provider URLs (DESIGN.md §2, Security model).
fn check_url(base_url: &str, has_key: bool) -> Result<(), String> {
    let uri: http::Uri = base_url
        .parse()
        .map_err(|_| format!("baseUrl {base_url:?} is not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    let host = uri
        .host()
        .ok_or_else(|| format!("baseUrl {base_url:?} has no host"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("baseUrl {base_url:?} must use http:// or https://"));
    }
    let ip: Option<IpAddr> = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    let metadata = match ip {
        Some(IpAddr::V4(v4)) => v4.is_link_local(),
        Some(IpAddr::V6(v6)) => {
            v6 == "fd00:ec2::254"
                .parse::<std::net::Ipv6Addr>()
                .expect("valid literal")
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
        None => false,
    };
    if metadata {
        return Err(format!(
            "link-local and cloud metadata addresses ({host}) are always refused"
        ));
    }
    let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host.eq_ignore_ascii_case("localhost");
    let cluster_local = host.ends_with(".svc") || host.ends_with(".svc.cluster.local");
    if has_key && scheme == "http" && !loopback && !cluster_local {
        return Err(format!(
            "a provider with an apiKey must use https:// unless its host is loopback or cluster-local (*.svc), not {host}"
        ));
    }
    Ok(())
}

fn resolve_secret(
    namespace: &str,
    name: &str,
    key: &str,
    inputs: &Inputs<'_>,
) -> Result<SecretString, (&'static str, String)> {
    let secret = inputs
        .secrets
        .iter()
        .find(|s| {
            s.name_any() == name && s.namespace().as_deref().unwrap_or("default") == namespace
        })
        .ok_or((
            reasons::SECRET_NOT_FOUND,
            format!("Secret {namespace}/{name} not found"),
        ))?;
    if inputs.require_secret_opt_in
        && secret.labels().get(SECRET_OPT_IN_LABEL).map(String::as_str) != Some("true")
    {
        return Err((
            reasons::SECRET_NOT_OPTED_IN,
            format!("Secret {namespace}/{name} lacks the label {SECRET_OPT_IN_LABEL}: \"true\""),
        ));
    }
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8(v.0.clone()));
    let value = match from_data {
        Some(Ok(v)) => v,
        Some(Err(_)) => {
            return Err((
                reasons::SECRET_KEY_NOT_FOUND,
                format!("Secret {namespace}/{name} key {key:?} is not UTF-8"),
            ));
        }
        None => secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .ok_or((
                reasons::SECRET_KEY_NOT_FOUND,
                format!("Secret {namespace}/{name} has no key {key:?}"),
            ))?,
    };
    // Keys made with `--from-file` often end in a newline, which no provider accepts in a header.
    Ok(SecretString::new(value.trim()))
}

// === routes ===

fn compile_route(
    route: &ModelRoute,
    key: &ObjectKey,
    providers: &ProviderIndex,
    pools: &BTreeSet<(String, String)>,
) -> (RouteOutcome, Option<table::Route>) {
    let spec = &route.spec;
    let mut outcome = RouteOutcome {
        generation: route.metadata.generation,
        ..Default::default()
    };
    let problem = |field: String, reason: &'static str, message: String| Problem {
        object: key.clone(),
        field,
        reason,
        message,
    };

    if spec.model.is_empty() {
        outcome.accepted.push(problem(
            "spec.model".into(),
            reasons::INVALID,
            "model must not be empty".into(),
        ));
    }
    let failover = spec.failover.clone().unwrap_or_default();
    let failover_on = failover
        .on
        .clone()
        .unwrap_or_else(FailureClass::default_failover);
    if failover_on.contains(&FailureClass::ClientError) {
        outcome.accepted.push(problem(
            "spec.failover.on".into(),
            reasons::INVALID,
            "ClientError is never failed over".into(),
        ));
    }
    let max_attempts = failover.max_attempts.unwrap_or(3);
    if max_attempts == 0 {
        outcome.accepted.push(problem(
            "spec.failover.maxAttempts".into(),
            reasons::INVALID,
            "maxAttempts must be at least 1".into(),
        ));
    }
    let cache = spec.cache.as_ref().and_then(|c| match c.ttl.parse() {
        Some(ttl) if !ttl.is_zero() => Some(CachePolicy {
            ttl_ms: ttl.as_millis() as u64,
            max_entries: c.max_entries.unwrap_or(1000).max(1),
        }),
        _ => {
            outcome.accepted.push(problem(
                "spec.cache.ttl".into(),
                reasons::INVALID,
                format!("{:?} is not a positive duration like 10m", c.ttl.0),
            ));
            None
        }
    });
    if let Some(selector) = &spec.pod_selector
        && let Err(e) = Selector::try_from(selector.clone())
    {
        outcome.accepted.push(problem(
            "spec.podSelector".into(),
            reasons::INVALID,
            e.to_string(),
        ));
    }
    let allowed: Option<BTreeSet<&str>> = spec
        .residency
        .as_ref()
        .map(|r| r.allowed_regions.iter().map(String::as_str).collect());

    let mut excluded = BTreeSet::new();
    let mut resolve = |targets: &[crate::v1alpha1::Target],
                       at: &str,
                       outcome: &mut RouteOutcome|
     -> Vec<table::Target> {
        let mut out = Vec::new();
        if targets.is_empty() {
            outcome.accepted.push(problem(
                at.to_string(),
                reasons::INVALID,
                "at least one target is required".into(),
            ));
        }
        for (i, t) in targets.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let same = |o: &&crate::v1alpha1::Target| {
                (&o.pool, &o.provider, &o.model) == (&t.pool, &t.provider, &t.model)
            };
            if targets[..i].iter().any(|o| same(&o)) {
                outcome.accepted.push(problem(
                    at,
                    reasons::INVALID,
                    format!(
                        "{}/{} {} is listed twice; use weight to give it more traffic",
                        t.pool, t.provider, t.model
                    ),
                ));
                continue;
            }
            let weight = t.weight.unwrap_or(1);
            if weight == 0 && spec.strategy == Strategy::Weighted {
                outcome.accepted.push(problem(
                    format!("{at}.weight"),
                    reasons::INVALID,
                    "with strategy Weighted a weight must be above 0".into(),
                ));
                continue;
            }
            if !pools.contains(&(key.namespace.clone(), t.pool.clone())) {
                outcome.resolved_refs.push(problem(
                    format!("{at}.pool"),
                    reasons::BACKEND_NOT_FOUND,
                    format!("ProviderPool {}/{} not found", key.namespace, t.pool),
                ));
                continue;
            }
            let provider =
                match providers.get(&(key.namespace.clone(), t.pool.clone(), t.provider.clone())) {
                    None => {
                        outcome.resolved_refs.push(problem(
                            format!("{at}.provider"),
                            reasons::BACKEND_NOT_FOUND,
                            format!("pool {} has no provider {:?}", t.pool, t.provider),
                        ));
                        continue;
                    }
                    Some(Err(why)) => {
                        outcome.resolved_refs.push(problem(
                            format!("{at}.provider"),
                            reasons::BACKEND_NOT_READY,
                            format!("provider {}/{} is not usable: {why}", t.pool, t.provider),
                        ));
                        continue;
                    }
                    Some(Ok(p)) => p,
                };
            let Some((pricing, context_window)) = provider.models.get(&t.model) else {
                outcome.resolved_refs.push(problem(
                    format!("{at}.model"),
                    reasons::BACKEND_NOT_FOUND,
                    format!(
                        "provider {}/{} has no model {:?}",
                        t.pool, t.provider, t.model
                    ),
                ));
                continue;
            };
            let upstream = provider.upstream.id();
            if let Some(allowed) = &allowed
                && !provider
                    .upstream
                    .region
                    .as_deref()
                    .is_some_and(|r| allowed.contains(r))
            {
                excluded.insert(upstream);
                continue;
            }
            out.push(table::Target {
                upstream,
                model: t.model.clone(),
                weight: weight.max(1),
                pricing: *pricing,
                context_window: *context_window,
            });
        }
        out
    };

    let targets = resolve(&spec.targets, "spec.targets", &mut outcome);
    let mut rules = Vec::new();
    let mut rule_names = BTreeSet::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        if !rule_names.insert(rule.name.as_str()) {
            outcome.accepted.push(problem(
                format!("spec.rules[{i}].name"),
                reasons::INVALID,
                format!("duplicate rule name {:?}", rule.name),
            ));
        }
        if rule.match_.min_complexity.is_some_and(|c| c > 100) {
            outcome.accepted.push(problem(
                format!("spec.rules[{i}].match.minComplexity"),
                reasons::INVALID,
                "minComplexity is 0 to 100".into(),
            ));
        }
        let targets = resolve(
            &rule.targets,
            &format!("spec.rules[{i}].targets"),
            &mut outcome,
        );
        if !targets.is_empty() {
            let m = &rule.match_;
            rules.push(table::Rule {
                name: rule.name.clone(),
                min_prompt_tokens: m.min_prompt_tokens,
                has_tools: m.has_tools,
                header: m
                    .header
                    .as_ref()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.clone())),
                min_complexity: m.min_complexity,
                targets,
            });
        }
    }
    outcome.target_count = targets.len() as u32;
    outcome.excluded_providers = excluded.into_iter().collect();
    if targets.is_empty()
        && outcome.resolved_refs.is_empty()
        && !outcome.excluded_providers.is_empty()
    {
        outcome.resolved_refs.push(problem(
            "spec.residency.allowedRegions".into(),
            reasons::NO_ELIGIBLE_TARGETS,
            format!(
                "residency excludes every target ({})",
                outcome.excluded_providers.join(", ")
            ),
        ));
    }

    let compiled = (outcome.accepted.is_empty() && !targets.is_empty()).then(|| table::Route {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        model: spec.model.clone(),
        strategy: spec.strategy,
        targets,
        rules,
        failover_on,
        max_attempts: max_attempts.max(1),
        cache,
    });
    (outcome, compiled)
}

#[cfg(test)]
mod tests;
