//! Pure status builders: compile verdicts, sidecar counts and report windows in, the
//! `ModelRoute`/`ProviderPool` status out. No I/O and no clock (the caller passes `now`), so that
//! every rule of docs/reference/crds.md "Status" is unit-tested here and the controller only
//! decides
//! *whether* to write.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use switchyard_crds::compile::{PoolOutcome, Problem, RouteOutcome, reasons};
use switchyard_crds::v1alpha1::{
    ModelRouteStatus, ProviderPoolStatus, ProviderStatus, SidecarSummary,
};

use crate::config_server::reports::WindowStats;

/// The condition types.
pub mod types {
    pub const ACCEPTED: &str = "Accepted";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const PROGRAMMED: &str = "Programmed";
    pub const READY: &str = "Ready";
}

/// Reasons of our own; problem reasons come from [`reasons`].
pub mod reason {
    /// The spec is valid (`Accepted=True`).
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference resolved (`ResolvedRefs=True`).
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The tables holding this generation are being served (`Programmed=True`).
    pub const PROGRAMMED: &str = "Programmed";
    /// Not (yet) in the served tables.
    pub const PENDING: &str = "Pending";
    /// Every other condition is true.
    pub const READY: &str = "Ready";
    /// Some other condition is false.
    pub const NOT_READY: &str = "NotReady";
}

/// Provider health states (docs/reference/crds.md).
pub mod state {
    pub const HEALTHY: &str = "Healthy";
    pub const DEGRADED: &str = "Degraded";
    pub const CIRCUIT_OPEN: &str = "CircuitOpen";
}

/// Error rate at or above which a provider is `Degraded`.
pub const DEGRADED_ERROR_RATE: f64 = 0.05;

/// The status of a route.
pub fn route_status(
    outcome: &RouteOutcome,
    sidecars: SidecarSummary,
    programmed: bool,
    previous: Option<&ModelRouteStatus>,
    now: Time,
) -> ModelRouteStatus {
    let generation = outcome.generation;
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let accepted = from_problems(reason::ACCEPTED, &outcome.accepted, "the route is valid");
    let resolved = from_problems(
        reason::RESOLVED_REFS,
        &outcome.resolved_refs,
        "every pool, provider and model resolved",
    );
    let programmed = if programmed {
        (
            true,
            reason::PROGRAMMED,
            "the tables holding this generation are being served".to_string(),
        )
    } else {
        (
            false,
            reason::PENDING,
            "not in the served tables yet".to_string(),
        )
    };
    let mut conditions = vec![accepted, resolved, programmed];
    conditions.push(ready(&conditions));
    let names = [
        types::ACCEPTED,
        types::RESOLVED_REFS,
        types::PROGRAMMED,
        types::READY,
    ];
    ModelRouteStatus {
        conditions: build(&names, conditions, generation, prev, &now),
        observed_generation: generation,
        target_count: Some(outcome.target_count),
        excluded_providers: outcome.excluded_providers.clone(),
        sidecars: Some(sidecars),
    }
}

/// The status of a pool. `generation` is the pool's `metadata.generation`.
pub fn pool_status(
    outcome: &PoolOutcome,
    providers: Vec<ProviderStatus>,
    generation: Option<i64>,
    previous: Option<&ProviderPoolStatus>,
    now: Time,
) -> ProviderPoolStatus {
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let accepted = from_problems(
        reason::ACCEPTED,
        &outcome.accepted,
        "every provider is valid",
    );
    let resolved = from_problems(
        reason::RESOLVED_REFS,
        &outcome.resolved_refs,
        "every Secret key resolved",
    );
    let mut conditions = vec![accepted, resolved];
    conditions.push(ready(&conditions));
    let names = [types::ACCEPTED, types::RESOLVED_REFS, types::READY];
    let healthy = providers
        .iter()
        .filter(|p| p.state == state::HEALTHY)
        .count();
    ProviderPoolStatus {
        conditions: build(&names, conditions, generation, prev, &now),
        observed_generation: generation,
        summary: (!providers.is_empty()).then(|| format!("{healthy}/{} healthy", providers.len())),
        providers,
    }
}

/// A provider's health from its report windows (one per model; empty when nobody used it).
pub fn provider_status(name: &str, windows: &[&WindowStats]) -> ProviderStatus {
    let mut total = WindowStats::default();
    for w in windows {
        total.requests += w.requests;
        total.errors += w.errors;
        total.input_tokens += w.input_tokens;
        total.cached_input_tokens += w.cached_input_tokens;
        total.output_tokens += w.output_tokens;
        total.cost_usd += w.cost_usd;
        if total.latency_buckets.len() < w.latency_buckets.len() {
            total.latency_buckets.resize(w.latency_buckets.len(), 0);
        }
        for (t, c) in total.latency_buckets.iter_mut().zip(&w.latency_buckets) {
            *t += c;
        }
        // The circuit is per provider, not per model: a sidecar reporting two models of one
        // provider is one sidecar, so take the largest count rather than the sum.
        total.sidecars = total.sidecars.max(w.sidecars);
        total.circuit_open_sidecars = total.circuit_open_sidecars.max(w.circuit_open_sidecars);
    }
    let error_rate = total.error_rate();
    let open = total.circuit_open_sidecars;
    let state = if open > 0 && open * 2 >= total.sidecars {
        state::CIRCUIT_OPEN
    } else if open > 0 || error_rate.is_some_and(|r| r >= DEGRADED_ERROR_RATE) {
        state::DEGRADED
    } else {
        state::HEALTHY
    };
    let used = total.sidecars > 0 || total.requests > 0;
    ProviderStatus {
        name: name.to_string(),
        state: state.to_string(),
        circuit_open_sidecars: used.then(|| format!("{open}/{}", total.sidecars)),
        error_rate: error_rate.map(|r| format!("{:.1}%", r * 100.0)),
        p50_latency_ms: total.p50_latency_ms().map(|ms| ms.to_string()),
        tokens: used.then(|| short_count(total.input_tokens + total.output_tokens)),
        cost_usd: used.then(|| format!("{:.2}", total.cost_usd)),
    }
}

/// Whether two statuses differ only in condition transition times (which `route_status` and
/// `pool_status` take from `now` for new transitions): if so, there is nothing to write.
pub fn same_ignoring_time<T: serde::Serialize>(a: &T, b: &T) -> bool {
    fn strip(v: &mut serde_json::Value) {
        if let Some(conditions) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conditions {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastTransitionTime");
                }
            }
        }
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(mut a), Ok(mut b)) => {
            strip(&mut a);
            strip(&mut b);
            a == b
        }
        _ => false,
    }
}

/// `1234` → `1.2k`, `5600000` → `5.6M`: status strings stay short.
fn short_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// (status, reason, message) of one condition.
type Verdict = (bool, &'static str, String);

/// True with `ok_reason` when there are no problems; otherwise false with the first problem's
/// reason ([`reasons::CONFLICTED`] first, as it explains the rest) and every message.
fn from_problems(ok_reason: &'static str, problems: &[Problem], ok: &str) -> Verdict {
    if problems.is_empty() {
        return (true, ok_reason, ok.to_string());
    }
    let first = problems
        .iter()
        .find(|p| p.reason == reasons::CONFLICTED)
        .unwrap_or(&problems[0]);
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    (false, first.reason, message)
}

fn ready(others: &[Verdict]) -> Verdict {
    let failing: Vec<&str> = others.iter().filter(|v| !v.0).map(|v| v.1).collect();
    if failing.is_empty() {
        (true, reason::READY, "ready".to_string())
    } else {
        (
            false,
            reason::NOT_READY,
            format!("not ready: {}", failing.join(", ")),
        )
    }
}

/// Conditions with `lastTransitionTime` kept from `previous` when the status did not change.
fn build(
    names: &[&str],
    verdicts: Vec<Verdict>,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let prev: BTreeMap<&str, &Condition> = previous.iter().map(|c| (c.type_.as_str(), c)).collect();
    names
        .iter()
        .zip(verdicts)
        .map(|(name, (ok, reason, message))| {
            let status = if ok { "True" } else { "False" };
            let last_transition_time = match prev.get(name) {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: (*name).to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
