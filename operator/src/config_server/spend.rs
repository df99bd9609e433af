//! Spend per workload on the report path (docs/reference/operator.md#spend-per-workload): the
//! `switchyard_workload_*` counters fed with the route deltas of each report, attributed to the
//! workload the operator resolved for the reporting pod, and the biggest spenders of a budget
//! window, for Budget status `topWorkloads`.
//!
//! Label values are the namespace, `<kind>/<name>` of the workload and the route name of the
//! pod's own table: bounded by the workloads and routes that exist, never a pod of a workload or
//! a request value. A bare pod is its own workload, so its name is a label value while it lives;
//! series of a workload no report has touched for [`SERIES_TTL`] are removed, so pods and
//! workloads that come and go do not grow the exposition forever.

use std::collections::HashMap;
use std::time::Duration;

use switchyard_crds::report::RouteReport;
use switchyard_crds::table::Workload;
use switchyard_crds::v1alpha1::{Usd, WorkloadSpend};
use tokio::time::Instant;

use super::leases::HolderKey;
use crate::metrics::WorkloadMetrics;

/// How long the series of a workload stay without a report touching them. An hour: far longer
/// than any report interval, so a live workload's counters never reset; a deleted one's go.
pub const SERIES_TTL: Duration = Duration::from_secs(3600);
/// How often stale series are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Budget status lists at most this many workloads (DESIGN §6).
pub const TOP_WORKLOADS: usize = 5;
/// The `direction` label values, as the sidecar's own token metric has them.
pub const DIRECTIONS: [&str; 3] = ["input", "cached_input", "output"];

/// The workload counters and when each (namespace, workload, route) series was last touched.
pub struct WorkloadSeries {
    metrics: WorkloadMetrics,
    touched: HashMap<[String; 3], Instant>,
    pruned_at: Instant,
}

// === impl WorkloadSeries ===

impl WorkloadSeries {
    /// Counters exported through `metrics`, with nothing recorded yet.
    pub fn new(metrics: WorkloadMetrics, now: Instant) -> Self {
        Self {
            metrics,
            touched: HashMap::new(),
            pruned_at: now,
        }
    }

    /// Adds one report's route deltas (already limited to the pod's own table) to `workload`.
    pub fn record(&mut self, workload: &Workload, deltas: &[RouteReport], now: Instant) {
        let kind_name = workload.kind_name();
        for delta in deltas {
            let labels = [
                workload.namespace.as_str(),
                kind_name.as_str(),
                delta.route.as_str(),
            ];
            self.metrics
                .cost_usd
                .with_label_values(&labels)
                .inc_by(delta.cost_usd.max(0.0));
            saturating_inc(
                &self.metrics.requests.with_label_values(&labels),
                delta.requests,
            );
            let tokens = [
                delta.input_tokens,
                delta.cached_input_tokens,
                delta.output_tokens,
            ];
            for (direction, count) in DIRECTIONS.into_iter().zip(tokens) {
                let [ns, wl, route] = labels;
                let counter = self
                    .metrics
                    .tokens
                    .with_label_values(&[ns, wl, route, direction]);
                saturating_inc(&counter, count);
            }
            self.touched.insert(labels.map(str::to_string), now);
        }
        if now.saturating_duration_since(self.pruned_at) >= PRUNE_EVERY {
            self.prune(now);
        }
    }

    /// Forgets every series, for a replica that starts leading again: what it counted in its
    /// last term is not continued (its report aggregator starts afresh too), so its counters
    /// start from zero, which Prometheus's `rate`/`increase` read as a reset.
    pub fn reset(&mut self, now: Instant) {
        self.metrics.cost_usd.reset();
        self.metrics.requests.reset();
        self.metrics.tokens.reset();
        self.touched.clear();
        self.pruned_at = now;
    }

    /// Removes the series untouched for [`SERIES_TTL`].
    fn prune(&mut self, now: Instant) {
        self.pruned_at = now;
        let metrics = &self.metrics;
        self.touched.retain(|labels, at| {
            if now.saturating_duration_since(*at) < SERIES_TTL {
                return true;
            }
            let [ns, wl, route] = labels.each_ref().map(String::as_str);
            // Removing a series that is not there only errs; nothing to do about it.
            let _ = metrics.cost_usd.remove_label_values(&[ns, wl, route]);
            let _ = metrics.requests.remove_label_values(&[ns, wl, route]);
            for direction in DIRECTIONS {
                let _ = metrics
                    .tokens
                    .remove_label_values(&[ns, wl, route, direction]);
            }
            false
        });
    }
}

/// Adds a reported count to `counter`, stopping at `u64::MAX`: the counter's own add wraps, and
/// a counter that wraps looks like a reset to Prometheus. (Only [`WorkloadSeries`], under its
/// lock, adds to these counters, so reading then adding does not race.)
fn saturating_inc(counter: &prometheus::IntCounter, count: u64) {
    counter.inc_by(count.min(u64::MAX - counter.get()));
}

/// The [`TOP_WORKLOADS`] biggest spenders among `holders` (each holder's use of one limit's
/// window: micro-dollars, requests, tokens), by the workload each holder reported for: most
/// dollars first, then most requests, then by name, so that the order is stable. Holders of no
/// known workload and workloads that used nothing are left out.
pub fn top_workloads(
    holders: &[(HolderKey, [u64; 3])],
    workloads: &HashMap<HolderKey, Workload>,
) -> Vec<WorkloadSpend> {
    let mut by_workload: HashMap<String, (u64, u64)> = HashMap::new();
    for (holder, used) in holders {
        let Some(workload) = workloads.get(holder) else {
            continue;
        };
        // Reported by sidecars: saturating, so that no report can panic or wrap the sum.
        let total = by_workload.entry(workload.id()).or_default();
        total.0 = total.0.saturating_add(used[0]);
        total.1 = total.1.saturating_add(used[1]);
    }
    let mut top: Vec<(String, (u64, u64))> = by_workload
        .into_iter()
        .filter(|(_, (usd, requests))| *usd > 0 || *requests > 0)
        .collect();
    top.sort_by(|(a, (a_usd, a_req)), (b, (b_usd, b_req))| {
        b_usd.cmp(a_usd).then(b_req.cmp(a_req)).then(a.cmp(b))
    });
    top.into_iter()
        .take(TOP_WORKLOADS)
        .map(|(workload, (usd, requests))| WorkloadSpend {
            workload,
            usd: Usd::from_micros(usd),
            requests,
        })
        .collect()
}

#[cfg(test)]
mod tests;
