//! Pod mode: reports to the operator (`POST /v1/report`) every `--report-interval` ±20%, and
//! within [`AFTER_SWAP`] of serving a new table, so that route status counts this pod in sync
//! without waiting out the interval.
//!
//! A report carries cumulative counters per (pool/provider, model) since this sidecar started,
//! read from the Prometheus metrics (summed over routes) and each target's health, so that a lost
//! report loses nothing: the operator derives deltas. A failed report is logged and the next one
//! carries the same counts; reporting never touches serving.
//!
//! A table with budgets adds what this sidecar used of each budget limit in its window, and the
//! operator answers with leases ([`crate::budget::lease`]); such a sidecar reports every
//! [`BUDGET_INTERVAL`] at most, so that its leases are renewed well before they lapse.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use rand::Rng;
use switchyard_crds::report::{
    BudgetUsage, LATENCY_BUCKETS_MS, Report, ReportAnswer, RouteReport, TargetReport,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::PodConfig;
use super::subscribe::{Answer, ConfigClient, status_message};
use crate::table::Runtime;

/// How long one report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest wait before reporting a new table; uniform, so that a fleet woken by the same
/// change does not report at the same instant.
const AFTER_SWAP: Duration = Duration::from_secs(2);
/// The longest mean time between reports while the table holds budgets (DESIGN §6: every 5 s
/// ± 20 %; a lease lasts three of them).
pub const BUDGET_INTERVAL: Duration = Duration::from_secs(5);

/// Reports until `shutdown`.
pub fn spawn(
    pod: PodConfig,
    runtime: Arc<Runtime>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = ConfigClient::new(&pod);
        loop {
            // ±20% so that a fleet started together does not report in lockstep.
            let has_budgets = runtime.snapshot().is_some_and(|s| !s.budgets.is_empty());
            let interval = if has_budgets {
                pod.report_interval.min(BUDGET_INTERVAL)
            } else {
                pod.report_interval
            };
            let delay = interval.mul_f64(rand::rng().random_range(0.8..=1.2));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                () = runtime.swapped() => {
                    let spread = AFTER_SWAP.mul_f64(rand::rng().random_range(0.0..=1.0));
                    tokio::time::sleep(spread).await;
                }
                _ = shutdown.changed() => break,
            }
            // Until a table is served there is nothing the operator would accept.
            let Some(report) = build(&runtime, &pod.instance) else {
                continue;
            };
            let body = Bytes::from(serde_json::to_vec(&report).expect("reports serialize"));
            // With budgets, a slow report must not hold up the next: leases last three intervals.
            let timeout = if has_budgets {
                REPORT_TIMEOUT.min(interval)
            } else {
                REPORT_TIMEOUT
            };
            let sent = tokio::select! {
                sent = client.send(Method::POST, "/v1/report", &[], body, timeout) => sent,
                _ = shutdown.changed() => break,
            };
            match sent {
                Ok(answer) if answer.status.is_success() => {
                    tracing::debug!(targets = report.targets.len(), "reported to the operator");
                    take_leases(&runtime, &answer);
                }
                Ok(answer) => tracing::warn!(
                    status = answer.status.as_u16(),
                    message = %status_message(&answer.body),
                    "the operator refused a report; the next one carries the same counts"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "report failed; the next one carries the same counts"
                ),
            }
        }
    })
}

/// Takes the leases of a report's answer: `200` carries them, `204` (a table without
/// budgets, or an operator that does not lease) none.
fn take_leases(runtime: &Runtime, answer: &Answer) {
    if answer.status != http::StatusCode::OK || answer.body.is_empty() {
        return;
    }
    match serde_json::from_slice::<ReportAnswer>(&answer.body) {
        Ok(mut leases) => {
            let offset = clock_offset_ms(answer.date, std::time::SystemTime::now());
            for lease in &mut leases.leases {
                lease.expires_at_ms = lease.expires_at_ms.saturating_add(offset);
            }
            runtime.apply_leases(&leases.leases);
            tracing::debug!(
                leases = leases.leases.len(),
                offset_ms = offset,
                "leases renewed"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "the operator's leases could not be read; the current ones stay")
        }
    }
}

/// How far this sidecar's clock is ahead of the operator's (`date`, its `Date` header), in ms:
/// a lease's expiry is an instant on the operator's clock, and a node whose clock is off would
/// otherwise take every lease as lapsed (or as good for too long). `Date` has whole seconds, so
/// offsets within [`CLOCK_SLACK_MS`] are taken as none.
fn clock_offset_ms(date: Option<std::time::SystemTime>, now: std::time::SystemTime) -> i64 {
    let Some(date) = date else {
        return 0;
    };
    let offset = match now.duration_since(date) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_millis()).unwrap_or(i64::MAX),
    };
    if offset.abs() <= CLOCK_SLACK_MS {
        0
    } else {
        offset
    }
}

/// Clock offsets this small are the `Date` header's rounding, not skew.
const CLOCK_SLACK_MS: i64 = 2_000;

/// The report for now, or `None` before the first table.
pub fn build(runtime: &Runtime, instance: &str) -> Option<Report> {
    let snapshot = runtime.snapshot()?;
    let mut targets: BTreeMap<(String, String), TargetReport> = BTreeMap::new();

    // Every target of the table is reported, also those without traffic yet, with its health.
    for route in snapshot.routes.values() {
        let all = route
            .targets
            .iter()
            .chain(route.rules.iter().flat_map(|(_, t)| t));
        for target in all {
            let report = entry(&mut targets, &target.target.upstream, &target.target.model);
            report.circuit_open = target.health.is_open();
            report.latency_buckets = target.health.latencies.snapshot();
        }
    }

    let metrics = &runtime.metrics;
    for (labels, value) in samples(&metrics.requests.collect()) {
        if let (Some(p), Some(m), Some(outcome)) = (
            labels.get("provider"),
            labels.get("model"),
            labels.get("outcome"),
        ) {
            *entry(&mut targets, p, m)
                .outcomes
                .entry(outcome.clone())
                .or_default() += value as u64;
        }
    }
    for (labels, value) in samples(&metrics.tokens.collect()) {
        if let (Some(p), Some(m), Some(direction)) = (
            labels.get("provider"),
            labels.get("model"),
            labels.get("direction"),
        ) {
            let report = entry(&mut targets, p, m);
            match direction.as_str() {
                "input" => report.input_tokens += value as u64,
                "cached_input" => report.cached_input_tokens += value as u64,
                "output" => report.output_tokens += value as u64,
                _ => {}
            }
        }
    }
    for (labels, value) in samples(&metrics.cost_usd.collect()) {
        if let (Some(p), Some(m)) = (labels.get("provider"), labels.get("model")) {
            entry(&mut targets, p, m).cost_usd += value;
        }
    }

    Some(Report {
        instance: instance.to_string(),
        table_version: snapshot.table.version.clone(),
        targets: targets.into_values().collect(),
        budgets: budget_usage(&snapshot.budgets),
        routes: route_counters(metrics),
    })
}

/// Counters per route, for spend per workload: requests answered through a provider (one
/// duration sample each) or from the route's cache, and the tokens and cost of every attempt.
fn route_counters(metrics: &crate::telemetry::metrics::Metrics) -> Vec<RouteReport> {
    let mut routes: BTreeMap<String, RouteReport> = BTreeMap::new();
    for family in metrics.request_duration.collect() {
        for m in family.get_metric() {
            route_entry(&mut routes, &labels_of(m)).requests +=
                m.get_histogram().get_sample_count();
        }
    }
    for (labels, value) in samples(&metrics.cache_hits.collect()) {
        route_entry(&mut routes, &labels).requests += value as u64;
    }
    for (labels, value) in samples(&metrics.tokens.collect()) {
        let report = route_entry(&mut routes, &labels);
        match labels.get("direction").map(String::as_str) {
            Some("input") => report.input_tokens += value as u64,
            Some("cached_input") => report.cached_input_tokens += value as u64,
            Some("output") => report.output_tokens += value as u64,
            _ => {}
        }
    }
    for (labels, value) in samples(&metrics.cost_usd.collect()) {
        route_entry(&mut routes, &labels).cost_usd += value;
    }
    routes.remove("");
    routes.into_values().collect()
}

/// The counters of the route `labels` name, created empty on first use.
fn route_entry<'a>(
    routes: &'a mut BTreeMap<String, RouteReport>,
    labels: &BTreeMap<String, String>,
) -> &'a mut RouteReport {
    let route = labels.get("route").cloned().unwrap_or_default();
    routes.entry(route.clone()).or_insert_with(|| RouteReport {
        route,
        ..RouteReport::default()
    })
}

/// What this sidecar used of every budget limit in its table, in a stable order.
fn budget_usage(
    budgets: &std::collections::HashMap<String, Arc<crate::budget::BudgetRt>>,
) -> Vec<BudgetUsage> {
    let now = switchyard_crds::window::Timestamp::now();
    let mut ids: Vec<&String> = budgets.keys().collect();
    ids.sort();
    ids.into_iter()
        .flat_map(|id| budgets[id].usage(now))
        .collect()
}

/// The report of (`provider`, `model`), created empty on first use.
fn entry<'a>(
    targets: &'a mut BTreeMap<(String, String), TargetReport>,
    provider: &str,
    model: &str,
) -> &'a mut TargetReport {
    targets
        .entry((provider.to_string(), model.to_string()))
        .or_insert_with(|| TargetReport {
            provider: provider.to_string(),
            model: model.to_string(),
            latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            ..TargetReport::default()
        })
}

/// Every counter sample of `families` with its labels.
fn samples(families: &[MetricFamily]) -> Vec<(BTreeMap<String, String>, f64)> {
    families
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| (labels_of(m), m.get_counter().get_value()))
        .collect()
}

fn labels_of(metric: &prometheus::proto::Metric) -> BTreeMap<String, String> {
    metric
        .get_label()
        .iter()
        .map(|l| (l.name().to_string(), l.value().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::clock_offset_ms;

    #[test]
    fn lease_expiry_moves_to_this_sidecars_clock_when_the_clocks_disagree() {
        let operator = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ahead = operator + Duration::from_secs(20);
        assert_eq!(clock_offset_ms(Some(operator), ahead), 20_000);
        let behind = operator - Duration::from_secs(7);
        assert_eq!(clock_offset_ms(Some(operator), behind), -7_000);
        let rounding = operator + Duration::from_millis(900);
        assert_eq!(
            clock_offset_ms(Some(operator), rounding),
            0,
            "Date's whole seconds"
        );
        assert_eq!(
            clock_offset_ms(None, ahead),
            0,
            "no Date: trust the lease as sent"
        );
    }
}
