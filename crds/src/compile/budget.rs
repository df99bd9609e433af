//! Compiling one Budget: its spec on its own (`BudgetSpec::validate`), then the routes and
//! providers its selector names, which must exist in the budget's namespace.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::{BudgetOutcome, Findings, ObjectKey, ProviderIndex, reasons};
use crate::table;
use crate::v1alpha1::{Budget, ModelRoute};

pub(super) fn compile_budget(
    budget: &Budget,
    key: &ObjectKey,
    routes: &[ModelRoute],
    providers: &ProviderIndex,
) -> (BudgetOutcome, Option<table::Budget>) {
    let spec = &budget.spec;
    let mut findings = Findings::new(key);
    for error in spec.validate() {
        findings.invalid(error.field, error.message);
    }
    let route_names: BTreeSet<String> = routes
        .iter()
        .filter(|r| r.namespace().unwrap_or_else(|| "default".into()) == key.namespace)
        .map(|r| r.name_any())
        .collect();
    for (i, route) in spec.selector.routes.iter().enumerate() {
        if !route_names.contains(route) {
            findings.reject(
                format!("spec.selector.routes[{i}]"),
                reasons::BACKEND_NOT_FOUND,
                format!("no ModelRoute {route} in namespace {}", key.namespace),
            );
        }
    }
    for (i, p) in spec.selector.providers.iter().enumerate() {
        let at = (key.namespace.clone(), p.pool.clone(), p.provider.clone());
        if !providers.contains_key(&at) {
            findings.reject(
                format!("spec.selector.providers[{i}]"),
                reasons::BACKEND_NOT_FOUND,
                format!(
                    "no provider {} in ProviderPool {} of namespace {}",
                    p.provider, p.pool, key.namespace
                ),
            );
        }
    }
    let outcome = BudgetOutcome {
        accepted: findings.accepted,
        generation: budget.metadata.generation,
    };
    if !outcome.accepted.is_empty() {
        return (outcome, None);
    }
    let limits = spec
        .limits
        .iter()
        .map(|l| table::BudgetLimit {
            period: l.period.clone(),
            // `validate` refused any amount that does not parse.
            usd_micros: l.usd.as_ref().and_then(|u| u.micros()),
            requests: l.requests,
            tokens: l.tokens,
        })
        .collect();
    let compiled = table::Budget {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        routes: spec.selector.routes.clone(),
        providers: spec
            .selector
            .providers
            .iter()
            .map(|p| format!("{}/{}", p.pool, p.provider))
            .collect(),
        limits,
        mode: spec.mode,
        when_unreachable: spec.when_unreachable,
        kind: table::BudgetKind::Budget,
    };
    (outcome, Some(compiled))
}

/// Whether `budget` counts the requests of pods with `labels`: no pod selector counts all.
pub(super) fn selects_pods(
    budget: &Budget,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    match &budget.spec.selector.pod_selector {
        None => true,
        Some(selector) => Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels)),
    }
}
