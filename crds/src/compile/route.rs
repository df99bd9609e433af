//! Compiling one ModelRoute: its own rules (weights, failover classes, cache, selector) and its
//! references to pools, providers and models, with residency applied.

use std::collections::BTreeSet;

use kube::core::Selector;

use super::{CompiledProvider, Findings, ObjectKey, ProviderIndex, RouteOutcome, reasons};
use crate::complexity::MAX_SCORE;
use crate::table::{self, CachePolicy};
use crate::v1alpha1::{self, FailureClass, ModelRoute, ModelRouteSpec, ModelType, Strategy};

/// Targets tried for one request unless `failover.maxAttempts` says otherwise: the first and two
/// failovers ride out one provider's outage without a client waiting through a long list.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Answers a sidecar's cache keeps unless `cache.maxEntries` says otherwise: small enough to stay
/// a few megabytes of memory-backed state per pod, large enough for repeated prompts to hit.
const DEFAULT_CACHE_ENTRIES: u32 = 1000;
/// A target's share of weighted traffic unless it names one: equal shares.
const DEFAULT_WEIGHT: u32 = 1;

pub(super) fn compile_route(
    route: &ModelRoute,
    key: &ObjectKey,
    providers: &ProviderIndex,
    pools: &BTreeSet<(String, String)>,
) -> (RouteOutcome, Option<table::Route>) {
    let spec = &route.spec;
    let mut compiler = RouteCompiler {
        key,
        spec,
        providers,
        pools,
        allowed: spec
            .residency
            .as_ref()
            .map(|r| r.allowed_regions.iter().map(String::as_str).collect()),
        excluded: BTreeSet::new(),
        kind: None,
        findings: Findings::new(key),
    };
    compiler.check_model();
    let (failover_on, max_attempts) = compiler.failover();
    let cache = compiler.cache();
    compiler.check_selector();
    let targets = compiler.resolve(&spec.targets, "spec.targets");
    let rules = compiler.rules();
    let outcome = compiler.finish(route.metadata.generation, targets.len());

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
        complexity: None,
    });
    (outcome, compiled)
}

/// One route being compiled: what it reads, and what it found so far.
struct RouteCompiler<'a> {
    key: &'a ObjectKey,
    spec: &'a ModelRouteSpec,
    providers: &'a ProviderIndex,
    pools: &'a BTreeSet<(String, String)>,
    /// The regions residency allows, if it restricts them.
    allowed: Option<BTreeSet<&'a str>>,
    /// `pool/provider`s dropped by residency.
    excluded: BTreeSet<String>,
    /// The model type of the first target resolved and where it is: every other must match.
    kind: Option<(ModelType, String)>,
    findings: Findings<'a>,
}

impl<'a> RouteCompiler<'a> {
    fn check_model(&mut self) {
        if self.spec.model.is_empty() {
            self.findings
                .invalid("spec.model".into(), "model must not be empty".into());
        }
    }

    /// The failure classes failed over and the attempts allowed, defaults applied.
    fn failover(&mut self) -> (Vec<FailureClass>, u32) {
        let failover = self.spec.failover.clone().unwrap_or_default();
        let failover_on = failover
            .on
            .clone()
            .unwrap_or_else(FailureClass::default_failover);
        if failover_on.contains(&FailureClass::ClientError) {
            self.findings.invalid(
                "spec.failover.on".into(),
                "ClientError is never failed over".into(),
            );
        }
        let max_attempts = failover.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 {
            self.findings.invalid(
                "spec.failover.maxAttempts".into(),
                "maxAttempts must be at least 1".into(),
            );
        }
        (failover_on, max_attempts)
    }

    /// The response cache, when the route asks for one with a valid TTL.
    fn cache(&mut self) -> Option<CachePolicy> {
        let c = self.spec.cache.as_ref()?;
        match c.ttl.parse() {
            Some(ttl) if !ttl.is_zero() => Some(CachePolicy {
                ttl_ms: ttl.as_millis() as u64,
                max_entries: c.max_entries.unwrap_or(DEFAULT_CACHE_ENTRIES).max(1),
            }),
            _ => {
                self.findings.invalid(
                    "spec.cache.ttl".into(),
                    format!("{:?} is not a positive duration like 10m", c.ttl.0),
                );
                None
            }
        }
    }

    fn check_selector(&mut self) {
        if let Some(selector) = &self.spec.pod_selector
            && let Err(e) = Selector::try_from(selector.clone())
        {
            self.findings
                .invalid("spec.podSelector".into(), e.to_string());
        }
    }

    /// The rules whose targets resolve, each checked on its own.
    fn rules(&mut self) -> Vec<table::Rule> {
        let mut rules = Vec::new();
        let mut rule_names = BTreeSet::new();
        for (i, rule) in self.spec.rules.iter().enumerate() {
            if !rule_names.insert(rule.name.as_str()) {
                self.findings.invalid(
                    format!("spec.rules[{i}].name"),
                    format!("duplicate rule name {:?}", rule.name),
                );
            }
            if rule.match_.min_complexity.is_some_and(|c| c > MAX_SCORE) {
                self.findings.invalid(
                    format!("spec.rules[{i}].match.minComplexity"),
                    format!("minComplexity is 0 to {MAX_SCORE}"),
                );
            }
            let targets = self.resolve(&rule.targets, &format!("spec.rules[{i}].targets"));
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
        rules
    }

    /// The targets at `at` that are valid, resolve and pass residency.
    fn resolve(&mut self, targets: &'a [v1alpha1::Target], at: &str) -> Vec<table::Target> {
        if targets.is_empty() {
            self.findings
                .invalid(at.to_string(), "at least one target is required".into());
        }
        let mut out = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            if let Some(target) = self.target(&targets[..i], target, &format!("{at}[{i}]")) {
                out.push(target);
            }
        }
        out
    }

    /// One target after the `earlier` ones of its list, or `None` when it is left out.
    fn target(
        &mut self,
        earlier: &[v1alpha1::Target],
        t: &v1alpha1::Target,
        at: &str,
    ) -> Option<table::Target> {
        let same = |o: &v1alpha1::Target| {
            (&o.pool, &o.provider, &o.model) == (&t.pool, &t.provider, &t.model)
        };
        if earlier.iter().any(same) {
            self.findings.invalid(
                at.to_string(),
                format!(
                    "{}/{} {} is listed twice; use weight to give it more traffic",
                    t.pool, t.provider, t.model
                ),
            );
            return None;
        }
        let weight = t.weight.unwrap_or(DEFAULT_WEIGHT);
        if weight == 0 && self.spec.strategy == Strategy::Weighted {
            self.findings.invalid(
                format!("{at}.weight"),
                "with strategy Weighted a weight must be above 0".into(),
            );
            return None;
        }
        let provider = self.provider(t, at)?;
        let Some(model) = provider.models.get(&t.model) else {
            self.findings.unresolved(
                format!("{at}.model"),
                reasons::BACKEND_NOT_FOUND,
                format!(
                    "provider {}/{} has no model {:?}",
                    t.pool, t.provider, t.model
                ),
            );
            return None;
        };
        // Before residency: whether a route mixes types does not depend on where it may run.
        if !self.same_kind(model.kind, at) {
            return None;
        }
        let upstream = provider.upstream.id();
        if !self.resident(provider) {
            self.excluded.insert(upstream);
            return None;
        }
        Some(table::Target {
            upstream,
            model: t.model.clone(),
            weight: weight.max(1),
            pricing: model.pricing,
            context_window: model.context_window,
            kind: model.kind,
            publisher: model.publisher,
            // Resolved after every route compiled (compile/template.rs).
            prompt_template: None,
        })
    }

    /// Whether a target of type `kind` at `at` matches the route's other targets (rules
    /// included): a route serves chat or embeddings, never both, since a client calls one
    /// endpoint and every target must be able to answer it.
    fn same_kind(&mut self, kind: ModelType, at: &str) -> bool {
        match &self.kind {
            None => {
                self.kind = Some((kind, at.to_string()));
                true
            }
            Some((first, _)) if *first == kind => true,
            Some((first, first_at)) => {
                let message = format!(
                    "a route cannot mix Chat and Embedding models: this target's model is {} but {first_at}'s is {}",
                    kind.as_str(),
                    first.as_str()
                );
                self.findings.invalid(format!("{at}.model"), message);
                false
            }
        }
    }

    /// The usable provider a target names, in the route's namespace.
    fn provider(&mut self, t: &v1alpha1::Target, at: &str) -> Option<&'a CompiledProvider> {
        let namespace = &self.key.namespace;
        if !self.pools.contains(&(namespace.clone(), t.pool.clone())) {
            self.findings.unresolved(
                format!("{at}.pool"),
                reasons::BACKEND_NOT_FOUND,
                format!("ProviderPool {namespace}/{} not found", t.pool),
            );
            return None;
        }
        let providers = self.providers;
        match providers.get(&(namespace.clone(), t.pool.clone(), t.provider.clone())) {
            None => {
                self.findings.unresolved(
                    format!("{at}.provider"),
                    reasons::BACKEND_NOT_FOUND,
                    format!("pool {} has no provider {:?}", t.pool, t.provider),
                );
                None
            }
            Some(Err(why)) => {
                self.findings.unresolved(
                    format!("{at}.provider"),
                    reasons::BACKEND_NOT_READY,
                    format!("provider {}/{} is not usable: {why}", t.pool, t.provider),
                );
                None
            }
            Some(Ok(p)) => Some(p),
        }
    }

    /// Whether residency allows `provider`'s region (a provider without one is never allowed
    /// by a route that restricts regions).
    fn resident(&self, provider: &CompiledProvider) -> bool {
        self.allowed.as_ref().is_none_or(|allowed| {
            provider
                .upstream
                .region
                .as_deref()
                .is_some_and(|r| allowed.contains(r))
        })
    }

    /// The verdict, once every target is resolved: a route that residency alone left without
    /// targets says so.
    fn finish(self, generation: Option<i64>, target_count: usize) -> RouteOutcome {
        let mut findings = self.findings;
        let excluded_providers: Vec<String> = self.excluded.into_iter().collect();
        if target_count == 0 && findings.resolved_refs.is_empty() && !excluded_providers.is_empty()
        {
            findings.unresolved(
                "spec.residency.allowedRegions".into(),
                reasons::NO_ELIGIBLE_TARGETS,
                format!(
                    "residency excludes every target ({})",
                    excluded_providers.join(", ")
                ),
            );
        }
        RouteOutcome {
            accepted: findings.accepted,
            resolved_refs: findings.resolved_refs,
            target_count: target_count as u32,
            excluded_providers,
            generation,
        }
    }
}
