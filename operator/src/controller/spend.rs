//! Pure builders of the spend parts of status (docs/reference/operator.md#spend-per-workload):
//! ModelRoute `costUsd` and `requests` over the 5-minute report window, and Budget
//! `topWorkloads` from the lease book's holders.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use switchyard_crds::v1alpha1::{Budget, ModelRouteStatus, Usd, WorkloadSpend};
use switchyard_crds::window::Timestamp;

use crate::config_server::TopWorkloads;
use crate::config_server::reports::RouteStats;

/// Sets a route's `costUsd` and `requests` from its window; both absent without one (no
/// sidecar reported the route in the last 5 minutes).
pub fn set_route_window(status: &mut ModelRouteStatus, window: Option<&RouteStats>) {
    status.cost_usd = window.map(|w| Usd::from_micros(micros(w.cost_usd)));
    status.requests = window.map(|w| w.requests);
}

/// The biggest spenders of the budget's longest-running current window (the one whose `start`
/// is earliest, as `refusedRequests` counts), as the lease book counted them; none when the
/// book has not counted that window (no holder reported in it yet, or a new leader).
pub fn budget_top_workloads(budget: &Budget, top: &TopWorkloads, now: &Time) -> Vec<WorkloadSpend> {
    let namespace = budget.metadata.namespace.as_deref().unwrap_or("default");
    let name = budget.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let mut best: Option<(Timestamp, &Vec<WorkloadSpend>)> = None;
    for (index, limit) in budget.spec.limits.iter().enumerate() {
        let Some(window) = limit.period().and_then(|p| p.window(now.0)) else {
            continue;
        };
        let Some((_, spenders)) = u32::try_from(index)
            .ok()
            .and_then(|i| top.get(&(id.clone(), i)))
            .filter(|(counted, _)| *counted == window)
        else {
            continue;
        };
        if best.is_none_or(|(start, _)| window.start < start) {
            best = Some((window.start, spenders));
        }
    }
    best.map(|(_, spenders)| spenders.clone())
        .unwrap_or_default()
}

/// Dollars as whole micro-dollars; a negative or non-finite sum (never reported) is zero.
fn micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
