//! The operator's metrics: one [`Metrics`] registered once under the `switchyard_`
//! prefix, with a struct per subsystem, passed to whoever records. Never a global.

use prometheus::{
    CounterVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::Result;

/// Every metric the operator exports, and the registry `/metrics` renders.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub config: ConfigMetrics,
    pub controller: ControllerMetrics,
    /// `switchyard_leader`: 1 while this replica holds the Lease.
    pub leader: IntGauge,
    /// `switchyard_webhook_admissions_total{result}`: admission reviews answered, by outcome.
    pub admissions: IntCounterVec,
}

/// Metrics of the controller.
#[derive(Clone)]
pub struct ControllerMetrics {
    /// `switchyard_controller_reconciles_total`: compile-publish-status steps run.
    pub reconciles: IntCounter,
    /// `switchyard_controller_reconcile_duration_seconds`: time of one step, status writes
    /// included.
    pub reconcile_duration: Histogram,
    /// `switchyard_controller_errors_total{reason}`: failures the controller retried
    /// (`watch`, `status_write`).
    pub errors: IntCounterVec,
}

/// Metrics of the config server.
#[derive(Clone)]
pub struct ConfigMetrics {
    /// `switchyard_config_long_polls`: requests waiting for a table change right now.
    pub long_polls: IntGauge,
    /// `switchyard_config_responses_total{code}`: `/v1/config` responses by status code.
    pub responses: IntCounterVec,
    /// `switchyard_config_reports_total{outcome}`: `/v1/report` requests by outcome
    /// (`accepted`, `unauthenticated`, `invalid`).
    pub reports: IntCounterVec,
    /// `switchyard_config_token_reviews_total{result}`: TokenReviews sent to the apiserver
    /// (`authenticated`, `rejected`, `error`); cache hits are not counted.
    pub token_reviews: IntCounterVec,
    /// Spend per workload, from the reports.
    pub workload: WorkloadMetrics,
}

/// Spend per workload (docs/reference/operator.md#spend-per-workload), from sidecar reports,
/// attributed to the workload the operator resolved for the reporting pod. Labels `namespace`,
/// `workload` (`<kind>/<name>`) and `route` (the ModelRoute's name).
#[derive(Clone)]
pub struct WorkloadMetrics {
    /// `switchyard_workload_cost_usd_total{namespace,workload,route}`: US dollars.
    pub cost_usd: CounterVec,
    /// `switchyard_workload_tokens_total{namespace,workload,route,direction}`: tokens, by
    /// `input` (uncached), `cached_input`, `output`.
    pub tokens: IntCounterVec,
    /// `switchyard_workload_requests_total{namespace,workload,route}`: client requests sent to a
    /// provider or answered from cache, whether they succeeded or not.
    pub requests: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self> {
        let registry = Registry::new_custom(Some("switchyard".to_string()), None)?;
        let config = ConfigMetrics {
            long_polls: IntGauge::with_opts(Opts::new(
                "config_long_polls",
                "Config requests waiting for a table change",
            ))?,
            responses: IntCounterVec::new(
                Opts::new("config_responses_total", "Config responses by status code"),
                &["code"],
            )?,
            reports: IntCounterVec::new(
                Opts::new("config_reports_total", "Sidecar reports by outcome"),
                &["outcome"],
            )?,
            token_reviews: IntCounterVec::new(
                Opts::new("config_token_reviews_total", "TokenReviews sent, by result"),
                &["result"],
            )?,
            workload: WorkloadMetrics {
                cost_usd: CounterVec::new(
                    Opts::new(
                        "workload_cost_usd_total",
                        "US dollars spent per workload and route, from sidecar reports",
                    ),
                    &["namespace", "workload", "route"],
                )?,
                tokens: IntCounterVec::new(
                    Opts::new(
                        "workload_tokens_total",
                        "Tokens per workload and route by direction: input (uncached), cached_input, output",
                    ),
                    &["namespace", "workload", "route", "direction"],
                )?,
                requests: IntCounterVec::new(
                    Opts::new(
                        "workload_requests_total",
                        "Client requests per workload and route, from sidecar reports",
                    ),
                    &["namespace", "workload", "route"],
                )?,
            },
        };
        registry.register(Box::new(config.long_polls.clone()))?;
        registry.register(Box::new(config.workload.cost_usd.clone()))?;
        registry.register(Box::new(config.workload.tokens.clone()))?;
        registry.register(Box::new(config.workload.requests.clone()))?;
        registry.register(Box::new(config.responses.clone()))?;
        registry.register(Box::new(config.reports.clone()))?;
        registry.register(Box::new(config.token_reviews.clone()))?;
        let controller = ControllerMetrics {
            reconciles: IntCounter::with_opts(Opts::new(
                "controller_reconciles_total",
                "Compile, publish and status steps run",
            ))?,
            reconcile_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "controller_reconcile_duration_seconds",
                    "Duration of one controller step, status writes included",
                )
                .buckets(vec![0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0]),
            )?,
            errors: IntCounterVec::new(
                Opts::new("controller_errors_total", "Controller failures, by reason"),
                &["reason"],
            )?,
        };
        registry.register(Box::new(controller.errors.clone()))?;
        registry.register(Box::new(controller.reconciles.clone()))?;
        registry.register(Box::new(controller.reconcile_duration.clone()))?;
        let leader = IntGauge::with_opts(Opts::new(
            "leader",
            "1 while this replica holds the leader Lease",
        ))?;
        let admissions = IntCounterVec::new(
            Opts::new(
                "webhook_admissions_total",
                "Admission reviews answered, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(admissions.clone()))?;
        Ok(Self {
            registry,
            config,
            controller,
            leader,
            admissions,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String only fails on a non-UTF-8 label, which config never produces.
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

/// Counts one long-poller while alive (a Drop guard, so a cancelled request is uncounted too).
pub struct LongPollGuard(IntGauge);

impl LongPollGuard {
    /// Increments the gauge until the guard drops.
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for LongPollGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_the_guard_decrements() {
        let metrics = Metrics::new().unwrap();
        metrics.config.responses.with_label_values(&["200"]).inc();
        {
            let _guard = LongPollGuard::new(&metrics.config.long_polls);
            assert_eq!(metrics.config.long_polls.get(), 1);
        }
        assert_eq!(metrics.config.long_polls.get(), 0);
        let text = metrics.render();
        assert!(
            text.contains("switchyard_config_responses_total{code=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("switchyard_config_long_polls 0"));
    }
}
