//! Compiling one ModelRoute: its own rules (weights, failover classes, cache, selector) and its
//! references to pools, providers and models, with residency applied.

use std::collections::BTreeSet;

use kube::core::Selector;

use super::{ObjectKey, Problem, ProviderIndex, RouteOutcome, reasons};
use crate::table::{self, CachePolicy};
use crate::v1alpha1::{FailureClass, ModelRoute, Strategy};
pub(super) fn compile_route(
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
