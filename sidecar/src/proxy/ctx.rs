//! Per-request state, and the one place a request's outcome is recorded: metrics and the single
//! JSON log line (docs/reference/metrics.md).
//!
//! [`RequestCtx`] is a guard: paths only say how the request ended ([`RequestCtx::finish`]), and
//! its `Drop` records that, once, whichever way the request leaves. A request whose handler is
//! dropped before any outcome was set (the client disconnected before the answer, or the sidecar
//! shut down under a stream) is recorded as cancelled: outcome `Cancelled` in the log line with
//! status 499 (nginx's "client closed request"), and, when an attempt was in flight, one
//! `switchyard_requests_total{outcome="Cancelled"}` for that attempt's target. `Cancelled` joins
//! `Success`, `StreamError` and the failure classes as an outcome label value.
//!
//! A committed stream takes the guard with it ([`RequestCtx::hand_over`]) into the task that
//! forwards the body, so that the request is recorded when the stream ends or is dropped.

use std::sync::Arc;

use tokio::time::Instant;

use switchyard_crds::window::Timestamp;

use super::respond::{ClientApi, Served};
use crate::budget::BudgetRt;
use crate::convert::Usage;
use crate::table::Runtime;
use crate::table::cache::{self, ResponseCache};
use crate::table::runtime::WorkloadLog;
use crate::telemetry::otel::{RequestEnd, RequestTrace};
use crate::upstream::TargetRt;

/// Status logged for a cancelled request: nginx's 499, "client closed request".
pub const CANCELLED_STATUS: u16 = 499;

/// What one request carries through the phases; records the request when dropped.
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
    /// The pod's workload, from the table that routed the request.
    pub workload: Option<Arc<WorkloadLog>>,
    pub stream: bool,
    /// The client asked for `stream_options.include_usage`.
    pub wants_usage: bool,
    pub attempts: u32,
    /// Where to store a successful answer, for cacheable requests on routes with a cache.
    pub cache_slot: Option<(Arc<ResponseCache>, cache::Key)>,
    /// The target of the attempt in flight: a cancellation is charged to it.
    pub in_flight: Option<TargetRt>,
    /// The route's budgets that admitted the request; charged with what it used.
    pub budgets: Arc<[Arc<BudgetRt>]>,
    /// The request body's size, for a usage estimate when a provider reports none.
    pub request_bytes: usize,
    /// The prompt's complexity score, when the route scores (docs/reference/complexity.md).
    pub complexity: Option<u8>,
    /// The prompt template texts rendered for the request's targets ([`super::template`]).
    pub prompts: super::template::Prepared,
    /// `name@hash8` of the template applied to the last attempt, for its header and the log.
    pub template: Option<String>,
    /// How the request ended, once a path said so.
    ending: Option<Ending>,
    /// False once the duty to record has moved to another guard.
    armed: bool,
    /// Spans and GenAI metrics, when OpenTelemetry export is on (`None`, one branch, when off).
    trace: Option<Box<RequestTrace>>,
}

/// What [`RequestCtx::finish`] was told.
struct Ending {
    outcome: Outcome,
    status: u16,
    target: Option<TargetRt>,
    spend: Spend,
    detail: Option<String>,
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
    /// Dropped before it ended: the client went away before the answer, or the sidecar shut down.
    Cancelled,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "Success",
            Outcome::StreamError => "StreamError",
            Outcome::Failed(class) => class,
            Outcome::Rejected => "Rejected",
            Outcome::Cancelled => "Cancelled",
        }
    }
}

/// Tokens and what they cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spend {
    pub usage: Usage,
    pub cost_usd: f64,
    /// The provider reported no usage; `usage` is the sidecar's estimate.
    pub estimated: bool,
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
            estimated: false,
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
            workload: None,
            stream: false,
            wants_usage: false,
            attempts: 0,
            cache_slot: None,
            in_flight: None,
            budgets: Arc::new([]),
            request_bytes: 0,
            complexity: None,
            prompts: Default::default(),
            template: None,
            ending: None,
            armed: true,
            trace: RequestTrace::start(),
        }
    }

    /// The request head is in: continues the client's trace, if tracing is on.
    pub fn received(&mut self, head: &http::request::Parts) {
        if let Some(trace) = &mut self.trace {
            trace.continue_from(&head.headers, head.uri.path());
        }
    }

    /// An attempt at `target` starts now: a cancellation is charged to it.
    pub fn begin_attempt(&mut self, target: &TargetRt) {
        self.in_flight = Some(target.clone());
        if let Some(trace) = &mut self.trace {
            trace.begin_attempt(&self.client_model, target);
        }
    }

    /// Adds a `traceparent` for the attempt to an upstream request, when configured to.
    pub fn propagate(&self, headers: &mut http::HeaderMap) {
        if let Some(trace) = &self.trace {
            trace.propagate(headers);
        }
    }

    /// Moves the duty to record this request to the returned guard (a committed stream's task);
    /// `self` then records nothing.
    pub fn hand_over(&mut self) -> Self {
        self.armed = false;
        Self {
            runtime: self.runtime.clone(),
            client_api: self.client_api,
            started: self.started,
            client_model: self.client_model.clone(),
            route: self.route.clone(),
            rule: self.rule.clone(),
            workload: self.workload.clone(),
            stream: self.stream,
            wants_usage: self.wants_usage,
            attempts: self.attempts,
            cache_slot: self.cache_slot.take(),
            in_flight: self.in_flight.take(),
            budgets: self.budgets.clone(),
            request_bytes: self.request_bytes,
            complexity: self.complexity,
            prompts: std::mem::take(&mut self.prompts),
            template: self.template.clone(),
            ending: self.ending.take(),
            armed: true,
            trace: self.trace.take(),
        }
    }

    /// The `x-switchyard-*` header values, for an answer from `target` (if any).
    pub fn served<'a>(&'a self, target: Option<&'a TargetRt>) -> Served<'a> {
        Served {
            route: self.route.as_deref(),
            provider: target.map(|t| t.upstream.id.as_str()),
            model: target.map(|t| t.target.model.as_str()),
            attempts: self.attempts,
            complexity: self.complexity,
            template: self.template.as_deref(),
        }
    }

    /// Charges an answered attempt's usage: to the target's token limit, to the budgets that
    /// count it and to the token and cost metrics. Returns what it cost, for the log line.
    pub fn charge(&mut self, target: &TargetRt, usage: Option<Usage>) -> Spend {
        self.charge_with(target, usage, false)
    }

    /// [`RequestCtx::charge`], `estimated` when the provider reported no usage and `usage` is
    /// the sidecar's estimate (charged all the same; traced as an estimate).
    pub fn charge_with(
        &mut self,
        target: &TargetRt,
        usage: Option<Usage>,
        estimated: bool,
    ) -> Spend {
        let mut spend = usage.map(|u| Spend::price(u, target)).unwrap_or_default();
        spend.estimated = estimated;
        let tokens = spend.usage.input + spend.usage.output;
        target.upstream.limits.charge_tokens(tokens, Instant::now());
        if !self.budgets.is_empty() || !target.budgets.is_empty() {
            let now = Timestamp::now();
            for budget in self.budgets.iter() {
                budget.charge(tokens, spend.cost_usd, now);
            }
            // The route's budgets counted the request when they admitted it, and a provider's
            // fleet limits when the target's turn came; a target's budgets count what it served.
            for budget in target.budgets.iter() {
                if !budget.def.is_fleet_limit() {
                    budget.count_request(now);
                }
                budget.charge(tokens, spend.cost_usd, now);
            }
        }
        self.record_spend(target, &spend);
        if let (Some(trace), Some(usage)) = (&mut self.trace, usage) {
            trace.usage(usage, estimated);
        }
        spend
    }

    /// Counts a successful or stream-broken attempt's tokens and cost against its target.
    fn record_spend(&self, target: &TargetRt, spend: &Spend) {
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
    pub fn record_attempt(&mut self, target: &TargetRt, outcome: &str) {
        let route = self.route.as_deref().unwrap_or_default();
        self.runtime
            .metrics
            .requests
            .with_label_values(&[route, &target.upstream.id, &target.target.model, outcome])
            .inc();
        if let Some(trace) = &mut self.trace {
            trace.end_attempt(self.route.as_deref(), target, outcome);
        }
    }

    /// Records the first streamed content of `target`.
    pub fn record_first_token(&self, target: &TargetRt) {
        let route = self.route.as_deref().unwrap_or_default();
        let elapsed = self.started.elapsed();
        self.runtime
            .metrics
            .time_to_first_token
            .with_label_values(&[route, &target.upstream.id])
            .observe(elapsed.as_secs_f64());
        if let Some(trace) = &self.trace {
            trace.first_token(self.route.as_deref(), target, elapsed);
        }
    }

    /// Says how the request ended; it is recorded when the guard drops. The first call wins.
    pub fn finish(
        &mut self,
        outcome: Outcome,
        status: u16,
        target: Option<&TargetRt>,
        spend: Spend,
        detail: Option<&str>,
    ) {
        if self.ending.is_none() {
            self.ending = Some(Ending {
                outcome,
                status,
                target: target.cloned(),
                spend,
                detail: detail.map(str::to_string),
            });
        }
    }

    /// The ending of a request dropped before any path finished it.
    fn cancelled(&mut self) -> Ending {
        let target = self.in_flight.take();
        if let Some(target) = &target {
            self.record_attempt(target, Outcome::Cancelled.label());
        }
        Ending {
            outcome: Outcome::Cancelled,
            status: CANCELLED_STATUS,
            target,
            spend: Spend::default(),
            detail: Some(
                "dropped before it ended: the client went away or the sidecar stopped".into(),
            ),
        }
    }

    /// The request's duration metric, its span and its one log line.
    fn record(&mut self, ending: &Ending) {
        let elapsed = self.started.elapsed();
        let route = self.route.as_deref().unwrap_or_default();
        let target = ending.target.as_ref();
        let provider = target.map_or("", |t| t.upstream.id.as_str());
        if let Some(target) = target {
            self.runtime
                .metrics
                .request_duration
                .with_label_values(&[route, &target.upstream.id])
                .observe(elapsed.as_secs_f64());
        }
        let spend = ending.spend;
        tracing::info!(
            target: "switchyard::request",
            route,
            rule = self.rule.as_deref(),
            complexity = self.complexity,
            template = self.template.as_deref(),
            workload = self.workload.as_deref().map(|w| w.workload.as_str()),
            serviceAccount = self.workload.as_deref().map(|w| w.service_account.as_str()),
            model = %self.client_model,
            provider,
            upstream_model = target.map(|t| t.target.model.as_str()),
            attempts = self.attempts,
            status = ending.status,
            outcome = ending.outcome.label(),
            stream = self.stream,
            input_tokens = spend.usage.input,
            cached_input_tokens = spend.usage.cached_input,
            output_tokens = spend.usage.output,
            cost_usd = spend.cost_usd,
            usage_estimated = spend.estimated.then_some(true),
            latency_ms = round_to_tenth(elapsed.as_secs_f64() * 1000.0),
            detail = ending.detail.as_deref(),
            "request"
        );
        if let Some(trace) = self.trace.take() {
            trace.end_request(&RequestEnd {
                client_model: &self.client_model,
                route: self.route.as_deref(),
                workload: self.workload.as_deref().map(|w| w.workload.as_str()),
                target,
                attempts: self.attempts,
                status: ending.status,
                error: (ending.outcome != Outcome::Success).then(|| ending.outcome.label()),
                usage: spend.usage,
                usage_estimated: spend.estimated,
                cost_usd: spend.cost_usd,
            });
        }
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let ending = match self.ending.take() {
            Some(ending) => ending,
            None => self.cancelled(),
        };
        self.record(&ending);
    }
}

/// `x` rounded to one decimal: the log shows latency to 0.1 ms, not float noise.
fn round_to_tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
