//! Pure builders of the spend parts of status (docs/reference/operator.md#spend-per-workload):
//! ModelRoute `costUsd` and `requests` over the 5-minute report window, and Budget
//! `topWorkloads` from the lease book's holders; and the spacing of writes whose only change is
//! spend ([`due`]), which would otherwise loop: every write is a watch event that triggers
//! another step, by when spend has moved again.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use switchyard_crds::compile::ObjectKey;
use switchyard_crds::v1alpha1::{Budget, ModelRouteStatus, Usd, WorkloadSpend};
use switchyard_crds::window::Timestamp;
use tokio::time::Instant;

use super::conditions;
use crate::config_server::TopWorkloads;
use crate::config_server::reports::RouteStats;

/// A status whose only change is spend (a Budget's per
/// [`conditions::same_but_spend`], a ModelRoute's per [`same_route_but_spend`]) is written at
/// most this often per object: every write is itself a watch event that triggers a step, and
/// with many sidecars reporting, spend has changed by then, which would write again at once.
/// Deferred writes are made when this has passed, so status still follows spend at least every
/// resync.
pub const SPEND_WRITE_EVERY: Duration = Duration::from_secs(10);

/// A status write a step decided, which [`due`] may defer.
pub trait SpendWrite {
    /// The object written.
    fn key(&self) -> &ObjectKey;
    /// Only spend changed and no event is due: the write may wait for [`SPEND_WRITE_EVERY`].
    fn spend_only(&self) -> bool;
}

/// Which of `writes` to make at `now`, given when each object was last written; spend-only
/// changes wait until [`SPEND_WRITE_EVERY`] has passed since the last write. Also how long until
/// the first deferred one is due.
pub fn due<W: SpendWrite>(
    writes: Vec<W>,
    written: &HashMap<ObjectKey, Instant>,
    now: Instant,
) -> (Vec<W>, Option<Duration>) {
    let mut due = Vec::new();
    let mut next: Option<Duration> = None;
    for write in writes {
        let since = written
            .get(write.key())
            .map(|at| now.saturating_duration_since(*at));
        match since {
            Some(since) if write.spend_only() && since < SPEND_WRITE_EVERY => {
                let wait = SPEND_WRITE_EVERY - since;
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
            _ => due.push(write),
        }
    }
    (due, next)
}

/// Whether two route statuses differ at most in spend (`costUsd`, `requests`) and transition
/// times: such a change is written at most every [`SPEND_WRITE_EVERY`].
pub fn same_route_but_spend(a: &ModelRouteStatus, b: &ModelRouteStatus) -> bool {
    let strip = |status: &ModelRouteStatus| ModelRouteStatus {
        cost_usd: None,
        requests: None,
        ..status.clone()
    };
    conditions::same_ignoring_time(&strip(a), &strip(b))
}

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
