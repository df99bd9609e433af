//! Per-request state, and the one place a request's outcome is recorded: metrics and the single
//! JSON log line (DESIGN.md §3).

use std::sync::Arc;

use tokio::time::Instant;

use super::respond::ClientApi;
use crate::cache::{self, ResponseCache};
use crate::providers::Usage;
use crate::state::{Runtime, TargetRt};

/// What one request carries through the phases.
#[derive(Clone)]
pub struct RequestCtx {
    pub runtime: Arc<Runtime>,
    pub client_api: ClientApi,
    pub started: Instant,
    /// The `model` the client sent.
    pub client_model: String,
    /// The route's `metadata.name`, once routed.
    pub route: Option<String>,
    /// The rule that chose the targets, if any.
    pub rule: Option<String>,
    pub stream: bool,
    /// The client asked for `stream_options.include_usage`.
    pub wants_usage: bool,
    pub attempts: u32,
    /// Where to store a successful answer, for cacheable requests on routes with a cache.
    pub cache_slot: Option<(Arc<ResponseCache>, cache::Key)>,
}

/// How a request ended, for the `outcome` label and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A committed stream that ended with an error event (or whose client went away).
    StreamError,
    /// Every attempt failed; the label is the last failure's class.
    Failed(&'static str),
    /// Refused before any attempt (bad request, unknown model, no table).
    Rejected,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "Success",
            Outcome::StreamError => "StreamError",
            Outcome::Failed(class) => class,
            Outcome::Rejected => "Rejected",
        }
    }
}

/// Tokens and what they cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spend {
    pub usage: Usage,
    pub cost_usd: f64,
}

impl Spend {
    /// Usage priced with the target's prices: uncached input, cached input and output each at
    /// their own rate.
    pub fn price(usage: Usage, target: &TargetRt) -> Self {
        let p = &target.target.pricing;
        let uncached = usage.input.saturating_sub(usage.cached_input) as f64;
        let cost = (uncached * p.input_per_million
            + usage.cached_input as f64 * p.cached_input_per_million
            + usage.output as f64 * p.output_per_million)
            / 1_000_000.0;
        Self {
            usage,
            cost_usd: cost,
        }
    }
}

impl RequestCtx {
    pub fn new(runtime: Arc<Runtime>, client_api: ClientApi) -> Self {
        Self {
            runtime,
            client_api,
            started: Instant::now(),
            client_model: String::new(),
            route: None,
            rule: None,
            stream: false,
            wants_usage: false,
            attempts: 0,
            cache_slot: None,
        }
    }

    /// Counts a successful or stream-broken attempt's tokens and cost against its target.
    pub fn record_spend(&self, target: &TargetRt, spend: &Spend) {
        let m = &self.runtime.metrics;
        let route = self.route.as_deref().unwrap_or_default();
        let (provider, model) = (target.upstream.id.as_str(), target.target.model.as_str());
        let u = spend.usage;
        for (direction, n) in [
            ("input", u.input.saturating_sub(u.cached_input)),
            ("cached_input", u.cached_input),
            ("output", u.output),
        ] {
            if n > 0 {
                m.tokens
                    .with_label_values(&[route, provider, model, direction])
                    .inc_by(n);
            }
        }
        if spend.cost_usd > 0.0 {
            m.cost_usd
                .with_label_values(&[route, provider, model])
                .inc_by(spend.cost_usd);
        }
    }

    /// Counts one attempt at `target` with `outcome`.
    pub fn record_attempt(&self, target: &TargetRt, outcome: &str) {
        let route = self.route.as_deref().unwrap_or_default();
        self.runtime
            .metrics
            .requests
            .with_label_values(&[route, &target.upstream.id, &target.target.model, outcome])
            .inc();
    }

    /// Records the first streamed content of `target`.
    pub fn record_first_token(&self, target: &TargetRt) {
        let route = self.route.as_deref().unwrap_or_default();
        self.runtime
            .metrics
            .time_to_first_token
            .with_label_values(&[route, &target.upstream.id])
            .observe(self.started.elapsed().as_secs_f64());
    }

    /// Ends the request: its duration metric and its one log line.
    pub fn finish(
        &self,
        outcome: Outcome,
        status: u16,
        target: Option<&TargetRt>,
        spend: Spend,
        detail: Option<&str>,
    ) {
        let elapsed = self.started.elapsed();
        let route = self.route.as_deref().unwrap_or_default();
        let provider = target.map_or("", |t| t.upstream.id.as_str());
        if let Some(target) = target {
            self.runtime
                .metrics
                .request_duration
                .with_label_values(&[route, &target.upstream.id])
                .observe(elapsed.as_secs_f64());
        }
        tracing::info!(
            target: "switchyard::request",
            route,
            rule = self.rule.as_deref(),
            model = %self.client_model,
            provider,
            upstream_model = target.map(|t| t.target.model.as_str()),
            attempts = self.attempts,
            status,
            outcome = outcome.label(),
            stream = self.stream,
            input_tokens = spend.usage.input,
            cached_input_tokens = spend.usage.cached_input,
            output_tokens = spend.usage.output,
            cost_usd = spend.cost_usd,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            detail,
            "request"
        );
    }
}
