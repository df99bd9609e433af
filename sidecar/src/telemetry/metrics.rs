//! The sidecar's Prometheus metrics (docs/reference/metrics.md).
//!
//! One [`Metrics`] is built at start-up, registered under the `switchyard_` prefix and passed
//! down; it is never a global. Label values come only from the route table (route, pool/provider
//! and model names), never from request bodies, so a client cannot blow up cardinality.

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the sidecar.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub tokens: IntCounterVec,
    pub cost_usd: CounterVec,
    pub failovers: IntCounterVec,
    pub circuit_open: IntGaugeVec,
    pub config_version: IntGaugeVec,
    pub config_reload_failures: IntCounter,
    pub cache_hits: IntCounterVec,
    pub budget_refusals: IntCounterVec,
    pub budget_remaining: GaugeVec,
    /// A provider's fleet-wide rate limit (`limits.scope: Fleet`) is not a Budget: its refusals
    /// and this sidecar's remaining share have series of their own, by `pool/provider`.
    pub fleet_limit_refusals: IntCounterVec,
    pub fleet_limit_remaining: GaugeVec,
    /// The complexity score of each request on a route that scores (buckets of 10).
    pub complexity_score: HistogramVec,
}

/// The labels that identify one target in metrics.
#[derive(Clone, Copy, Debug)]
pub struct TargetLabels<'a> {
    pub route: &'a str,
    /// `pool/provider`.
    pub provider: &'a str,
    pub model: &'a str,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("switchyard".into()), None).expect("static prefix is valid");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            register(&registry, HistogramVec::new(opts, &["route", "provider"]))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let cost_usd = register(
            &registry,
            CounterVec::new(
                Opts::new(
                    "cost_usd_total",
                    "Spend in USD from provider-reported usage and pool prices",
                ),
                &["route", "provider", "model"],
            ),
        );
        let budget_remaining = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "budget_remaining",
                    "What the current window of a budget limit has left here (standalone: the whole limit)",
                ),
                &["budget", "period", "unit"],
            ),
        );
        let fleet_limit_remaining = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "fleet_limit_remaining",
                    "What this sidecar's share of a provider's fleet-wide rate limit has left in the current minute (standalone: the whole limit)",
                ),
                &["provider", "unit"],
            ),
        );
        let config_reload_failures = register(
            &registry,
            IntCounter::new(
                "config_reload_failures_total",
                "Table loads refused; the previous table kept serving",
            ),
        );

        let complexity_score = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "complexity_score",
                    "Complexity score (0-100) of requests on routes that score them",
                )
                .buckets((1..=10).map(|i| f64::from(i * 10)).collect()),
                &["route"],
            ),
        );

        Self {
            complexity_score,
            requests: counter(
                "requests_total",
                "Attempts by route, provider, model and outcome (Success, StreamError, Cancelled or a failure class)",
                &["route", "provider", "model", "outcome"],
            ),
            request_duration: histogram(
                "request_duration_seconds",
                "Time from request to the end of the answer",
                &[
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
                ],
            ),
            time_to_first_token: histogram(
                "time_to_first_token_seconds",
                "Time from request to the first streamed content",
                &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
            ),
            tokens: counter(
                "tokens_total",
                "Tokens by direction: input (uncached), cached_input, output",
                &["route", "provider", "model", "direction"],
            ),
            cost_usd,
            failovers: counter(
                "failovers_total",
                "Attempts that failed over to another target, by the failing provider and reason",
                &["route", "provider", "reason"],
            ),
            circuit_open: gauge(
                "circuit_open",
                "1 while the target's circuit is open or half-open",
                &["provider", "model"],
            ),
            config_version: gauge(
                "config_version_info",
                "The route table version being served",
                &["version"],
            ),
            config_reload_failures,
            cache_hits: counter(
                "cache_hits_total",
                "Answers served from the route's response cache",
                &["route"],
            ),
            budget_refusals: counter(
                "budget_refusals_total",
                "Requests refused, or targets passed over, for want of budget (Shadow: would-be refusals)",
                &["budget"],
            ),
            budget_remaining,
            fleet_limit_refusals: counter(
                "fleet_limit_refusals_total",
                "Targets passed over because their provider's fleet-wide rate limit had no room here",
                &["provider"],
            ),
            fleet_limit_remaining,
            registry,
        }
    }

    /// Marks `version` as the one table being served.
    pub fn set_config_version(&self, version: &str) {
        self.config_version.reset();
        self.config_version.with_label_values(&[version]).set(1);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

/// Registers a metric built from static names and labels (which cannot fail) exactly once.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<C>,
) -> C {
    let metric = metric.expect("static metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
