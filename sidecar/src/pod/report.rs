//! Pod mode: reports to the operator (`POST /v1/report`) every `--report-interval` ±20%, and
//! within [`AFTER_SWAP`] of serving a new table, so that route status counts this pod in sync
//! without waiting out the interval.
//!
//! A report carries cumulative counters per (pool/provider, model) since this sidecar started,
//! read from the Prometheus metrics (summed over routes) and each target's health, so that a lost
//! report loses nothing: the operator derives deltas. A failed report is logged and the next one
//! carries the same counts; reporting never touches serving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use rand::Rng;
use switchyard_crds::report::{LATENCY_BUCKETS_MS, Report, TargetReport};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::PodConfig;
use super::subscribe::{ConfigClient, status_message};
use crate::table::Runtime;

/// How long one report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest wait before reporting a new table; uniform, so that a fleet woken by the same
/// change does not report at the same instant.
const AFTER_SWAP: Duration = Duration::from_secs(2);

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
            let delay = pod
                .report_interval
                .mul_f64(rand::rng().random_range(0.8..=1.2));
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
            let sent = tokio::select! {
                sent = client.send(Method::POST, "/v1/report", &[], body, REPORT_TIMEOUT) => sent,
                _ = shutdown.changed() => break,
            };
            match sent {
                Ok(answer) if answer.status.is_success() => {
                    tracing::debug!(targets = report.targets.len(), "reported to the operator");
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
        budgets: Vec::new(),
    })
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
        .map(|m| {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            (labels, m.get_counter().get_value())
        })
        .collect()
}
