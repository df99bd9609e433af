//! OpenTelemetry export (DESIGN §9, docs/reference/observability.md): a span per request with a
//! child per attempt, and the GenAI client metrics, over OTLP (gRPC or HTTP/protobuf).
//!
//! Off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the traces or
//! metrics variant). Off, nothing here runs on the request path: [`RequestTrace::start`] is one
//! load of a `OnceLock` that returns `None`, and every hook in `proxy/ctx.rs` is one branch on
//! that `None`. On, the request path only fills a [`RequestTrace`]: spans are started with the
//! instants the request already has and ended with explicit timestamps, and the SDK's batch
//! processor exports them from its own thread.
//!
//! Nothing a client wrote is recorded but the model it named: no prompt, no completion, no
//! error detail (a provider's error may quote the prompt), no header.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::Protocol;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use switchyard_crds::v1alpha1::Api;

use crate::convert::Usage;
use crate::upstream::TargetRt;

/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "switchyard-sidecar";

/// Semantic-convention bucket advice for `gen_ai.client.token.usage`.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Semantic-convention bucket advice for `gen_ai.client.operation.duration` (seconds).
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Semantic-convention bucket advice for `gen_ai.server.time_to_first_token` (seconds).
const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// What the environment asks for; read once in `main`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// `OTEL_SERVICE_NAME`, when set.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, values percent-decoded as the specification says (the SDK
    /// reads the variable too, but keeps `%20` as it is; these override its values).
    pub resource_attributes: Vec<(String, String)>,
    /// Export spans, with this protocol.
    pub traces: Option<Protocol>,
    /// Export the GenAI metrics, with this protocol.
    pub metrics: Option<Protocol>,
    /// Send a W3C `traceparent` naming the attempt's span to providers.
    pub propagate_upstream: bool,
}

impl Settings {
    /// Reads the standard variables through `var` (`std::env::var` in `main`): a signal is on
    /// when `OTEL_EXPORTER_OTLP_ENDPOINT` or its own `..._{TRACES,METRICS}_ENDPOINT` is set, and
    /// `OTEL_SDK_DISABLED=true` turns everything off. An unknown protocol, or an `https://`
    /// endpoint for gRPC (built without TLS), is an error naming the variable; `main` then runs
    /// with export off rather than stopping the data plane.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
        propagate_upstream: bool,
    ) -> Result<Self, String> {
        if switchyard_otel::sdk_disabled(&var) {
            return Ok(Self::default());
        }
        Ok(Self {
            service_name: var("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()),
            resource_attributes: var("OTEL_RESOURCE_ATTRIBUTES")
                .map(|v| resource_attributes(&v))
                .unwrap_or_default(),
            traces: switchyard_otel::signal(&var, "traces")?,
            metrics: switchyard_otel::signal(&var, "metrics")?,
            propagate_upstream,
        })
    }

    /// Neither signal is exported.
    pub fn is_off(&self) -> bool {
        self.traces.is_none() && self.metrics.is_none()
    }
}

/// `key=value,...` with percent-encoded values (the W3C Baggage format the specification uses).
fn resource_attributes(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(key, value)| {
            let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
            (key.trim().to_string(), value.into_owned())
        })
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// The exporters, once installed.
pub struct Otel {
    tracer_provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    meter_provider: Option<SdkMeterProvider>,
    metrics: Option<GenAiMetrics>,
    propagate_upstream: bool,
}

static OTEL: OnceLock<Otel> = OnceLock::new();

/// The installed exporters, if any: the one branch the request path takes when off.
#[inline]
fn active() -> Option<&'static Otel> {
    OTEL.get()
}

/// Builds the exporters `settings` asks for and installs them for the request path. Call
/// inside the tokio runtime: the gRPC channel and the HTTP client run their I/O on it.
/// Does nothing when `settings` is off; a second call keeps the first installation. On error
/// nothing is installed (export stays off) and the message names the variables to look at.
pub fn install(settings: &Settings) -> Result<(), String> {
    build(settings).map_err(|error| switchyard_otel::build_error(&error))
}

fn build(settings: &Settings) -> Result<(), opentelemetry_otlp::ExporterBuildError> {
    if settings.is_off() || OTEL.get().is_some() {
        return Ok(());
    }
    let service = settings
        .service_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    let resource = Resource::builder()
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(service)
        .build();
    let scope = InstrumentationScope::builder("switchyard-sidecar")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let tracer_provider = match settings.traces {
        Some(protocol) => {
            let exporter = switchyard_otel::span_exporter(protocol)?;
            Some(
                SdkTracerProvider::builder()
                    .with_resource(resource.clone())
                    .with_batch_exporter(exporter)
                    .build(),
            )
        }
        None => None,
    };
    let meter_provider = match settings.metrics {
        Some(protocol) => {
            let exporter = switchyard_otel::metric_exporter(protocol)?;
            Some(
                SdkMeterProvider::builder()
                    .with_resource(resource)
                    .with_periodic_exporter(exporter)
                    .build(),
            )
        }
        None => None,
    };
    let otel = Otel {
        tracer: tracer_provider
            .as_ref()
            .map(|p| p.tracer_with_scope(scope.clone())),
        metrics: meter_provider
            .as_ref()
            .map(|p| GenAiMetrics::new(&p.meter_with_scope(scope))),
        tracer_provider,
        meter_provider,
        propagate_upstream: settings.propagate_upstream,
    };
    let _ = OTEL.set(otel);
    Ok(())
}

/// Exports what is queued and stops the exporters. Blocks until they are done: call it from a
/// blocking thread while the runtime still runs (their I/O is on it).
pub fn shutdown() {
    let Some(otel) = active() else { return };
    if let Some(provider) = &otel.tracer_provider
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "OpenTelemetry traces: shutdown");
    }
    if let Some(provider) = &otel.meter_provider
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "OpenTelemetry metrics: shutdown");
    }
}

/// The GenAI client metrics (semantic conventions, "gen_ai" metrics).
struct GenAiMetrics {
    token_usage: Histogram<u64>,
    operation_duration: Histogram<f64>,
    time_to_first_token: Histogram<f64>,
}

impl GenAiMetrics {
    fn new(meter: &Meter) -> Self {
        Self {
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Tokens used per attempt, by gen_ai.token.type")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            operation_duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("Duration of each attempt at a provider")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            time_to_first_token: meter
                .f64_histogram("gen_ai.server.time_to_first_token")
                .with_unit("s")
                .with_description("Time from the request to the first streamed content")
                .with_boundaries(TTFT_BUCKETS.to_vec())
                .build(),
        }
    }
}

/// `gen_ai.provider.name` for a provider API.
pub fn provider_name(api: Api) -> &'static str {
    match api {
        Api::OpenAI => "openai",
        Api::Anthropic => "anthropic",
        Api::Gemini => "gcp.gemini",
        Api::AzureOpenAI => "azure.ai.openai",
        Api::Bedrock => "aws.bedrock",
        Api::VertexAI => "gcp.vertex_ai",
    }
}

/// `gen_ai.operation.name` for a data-plane path.
pub fn operation_for_path(path: &str) -> &'static str {
    match path {
        "/v1/embeddings" => "embeddings",
        _ => "chat",
    }
}

/// One request's spans and metric state, from its first hook to its record.
pub struct RequestTrace {
    otel: &'static Otel,
    started: SystemTime,
    operation: &'static str,
    /// The client's trace, when it sent a `traceparent`.
    parent: Context,
    /// The request span (in a context, to parent the attempts), once started.
    request: Option<Context>,
    attempt: Option<AttemptTrace>,
}

/// The attempt in flight.
struct AttemptTrace {
    span: Option<Span>,
    started: tokio::time::Instant,
    usage: Option<Usage>,
    /// `usage` is the sidecar's estimate (the provider reported none).
    estimated: bool,
}

/// How a request ended, as the request span shows it.
pub struct RequestEnd<'a> {
    pub client_model: &'a str,
    pub route: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub target: Option<&'a TargetRt>,
    pub attempts: u32,
    pub status: u16,
    /// `None` for a success; else the outcome label (`Failed` classes, `Rejected`, ...).
    pub error: Option<&'a str>,
    pub usage: Usage,
    /// `usage` is the sidecar's estimate: not exported as `gen_ai.usage.*`.
    pub usage_estimated: bool,
    pub cost_usd: f64,
}

impl RequestTrace {
    /// A trace for a new request, when export is on; `None` (one branch) when off.
    #[inline]
    pub fn start() -> Option<Box<Self>> {
        let otel = active()?;
        Some(Box::new(Self {
            otel,
            started: SystemTime::now(),
            operation: "chat",
            parent: Context::new(),
            request: None,
            attempt: None,
        }))
    }

    /// Continues the client's W3C trace (`traceparent`, `tracestate`), and names the operation
    /// from the request's path.
    pub fn continue_from(&mut self, headers: &HeaderMap, path: &str) {
        self.operation = operation_for_path(path);
        if self.otel.tracer.is_some() {
            self.parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        }
    }

    /// The request span, started now if it was not yet (at the request's own start time).
    fn request_cx(&mut self, client_model: &str) -> Option<&Context> {
        let tracer = self.otel.tracer.as_ref()?;
        if self.request.is_none() {
            let span = tracer
                .span_builder(span_name(self.operation, client_model))
                .with_kind(SpanKind::Server)
                .with_start_time(self.started)
                .start_with_context(tracer, &self.parent);
            self.request = Some(self.parent.with_span(span));
        }
        self.request.as_ref()
    }

    /// An attempt at `target` starts now.
    pub fn begin_attempt(&mut self, client_model: &str, target: &TargetRt) {
        let span = match (self.request_cx(client_model).cloned(), &self.otel.tracer) {
            (Some(parent), Some(tracer)) => Some(
                tracer
                    .span_builder(span_name(self.operation, &target.target.model))
                    .with_kind(SpanKind::Client)
                    .start_with_context(tracer, &parent),
            ),
            _ => None,
        };
        self.attempt = Some(AttemptTrace {
            span,
            started: tokio::time::Instant::now(),
            usage: None,
            estimated: false,
        });
    }

    /// Adds the attempt's `traceparent` to an upstream request, when configured to.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        if !self.otel.propagate_upstream {
            return;
        }
        if let Some(span) = self.attempt.as_ref().and_then(|a| a.span.as_ref()) {
            let cx = Context::new().with_remote_span_context(span.span_context().clone());
            TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
        }
    }

    /// The attempt in flight was answered with `usage`; `estimated` when the provider reported
    /// none and the sidecar counted it (a cut stream): an estimate is not the provider's count,
    /// so it goes into no `gen_ai.usage.*` attribute nor `gen_ai.client.token.usage`, and the
    /// span says `switchyard.usage_estimated=true` instead.
    pub fn usage(&mut self, usage: Usage, estimated: bool) {
        if let Some(attempt) = &mut self.attempt {
            attempt.usage = Some(usage);
            attempt.estimated = estimated;
        }
    }

    /// The attempt in flight at `target` ended with `outcome` (`Success`, `StreamError`,
    /// `Cancelled` or a failure class): its span ends now, its duration and tokens are counted.
    pub fn end_attempt(&mut self, route: Option<&str>, target: &TargetRt, outcome: &str) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let error = (outcome != "Success").then_some(outcome);
        let mut attributes = target_attributes(self.operation, &target.target.model, target);
        // A provider's count; an estimate is only flagged.
        let reported = attempt.usage.filter(|_| !attempt.estimated);
        if let Some(span) = attempt.span {
            let mut span = span;
            if let Some(usage) = reported {
                attributes.push(KeyValue::new(
                    "gen_ai.usage.input_tokens",
                    saturating_i64(usage.input),
                ));
                attributes.push(KeyValue::new(
                    "gen_ai.usage.output_tokens",
                    saturating_i64(usage.output),
                ));
            } else if attempt.usage.is_some() {
                span.set_attribute(KeyValue::new("switchyard.usage_estimated", true));
            }
            if let Some(error) = error {
                attributes.push(KeyValue::new("error.type", error.to_string()));
                span.set_status(Status::error(error.to_string()));
            }
            span.set_attributes(attributes.iter().cloned());
            span.end_with_timestamp(SystemTime::now());
            attributes.retain(|kv| !kv.key.as_str().starts_with("gen_ai.usage"));
        }
        let Some(metrics) = &self.otel.metrics else {
            return;
        };
        attributes.retain(|kv| kv.key.as_str() != "error.type");
        if let Some(route) = route {
            attributes.push(KeyValue::new("switchyard.route", route.to_string()));
        }
        if let Some(usage) = reported {
            for (kind, n) in [("input", usage.input), ("output", usage.output)] {
                let mut with_type = attributes.clone();
                with_type.push(KeyValue::new("gen_ai.token.type", kind));
                metrics.token_usage.record(n, &with_type);
            }
        }
        if let Some(error) = error {
            attributes.push(KeyValue::new("error.type", error.to_string()));
        }
        metrics
            .operation_duration
            .record(attempt.started.elapsed().as_secs_f64(), &attributes);
    }

    /// The first streamed content from `target`, `elapsed` after the request came in.
    pub fn first_token(&self, route: Option<&str>, target: &TargetRt, elapsed: Duration) {
        if let Some(metrics) = &self.otel.metrics {
            let mut attributes = target_attributes(self.operation, &target.target.model, target);
            if let Some(route) = route {
                attributes.push(KeyValue::new("switchyard.route", route.to_string()));
            }
            metrics
                .time_to_first_token
                .record(elapsed.as_secs_f64(), &attributes);
        }
    }

    /// The request ended: its span gets what it came to and ends now.
    pub fn end_request(mut self, end: &RequestEnd<'_>) {
        let operation = self.operation;
        let Some(cx) = self.request_cx(end.client_model) else {
            return;
        };
        let span = cx.span();
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("gen_ai.request.model", end.client_model.to_string()),
            KeyValue::new("switchyard.attempts", i64::from(end.attempts)),
            KeyValue::new("http.response.status_code", i64::from(end.status)),
        ];
        if let Some(route) = end.route {
            attributes.push(KeyValue::new("switchyard.route", route.to_string()));
        }
        if let Some(workload) = end.workload {
            attributes.push(KeyValue::new("switchyard.workload", workload.to_string()));
        }
        if let Some(target) = end.target {
            attributes.extend([
                KeyValue::new(
                    "gen_ai.provider.name",
                    provider_name(target.upstream.def.api),
                ),
                KeyValue::new("gen_ai.response.model", target.target.model.clone()),
                KeyValue::new("switchyard.provider", target.upstream.id.clone()),
            ]);
        }
        if end.error.is_none() && end.target.is_some() {
            if end.usage_estimated {
                attributes.push(KeyValue::new("switchyard.usage_estimated", true));
            } else {
                attributes.extend([
                    KeyValue::new("gen_ai.usage.input_tokens", saturating_i64(end.usage.input)),
                    KeyValue::new(
                        "gen_ai.usage.output_tokens",
                        saturating_i64(end.usage.output),
                    ),
                ]);
            }
            attributes.push(KeyValue::new("switchyard.cost_usd", end.cost_usd));
        }
        if let Some(error) = end.error {
            attributes.push(KeyValue::new("error.type", error.to_string()));
            // A SERVER span is an error when the sidecar failed the request (HTTP semantic
            // conventions: 5xx) or a committed stream broke; a refused request (4xx, a
            // cancelled one's 499) is the client's, and keeps its outcome in error.type only.
            if end.status >= 500 || error == "StreamError" {
                span.set_status(Status::error(error.to_string()));
            }
        }
        for attribute in attributes {
            span.set_attribute(attribute);
        }
        span.end_with_timestamp(SystemTime::now());
    }
}

/// A token count as an OTel integer (i64), saturating rather than wrapping.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `{operation} {model}`, or the operation alone before a model is known.
fn span_name(operation: &'static str, model: &str) -> Cow<'static, str> {
    if model.is_empty() {
        Cow::Borrowed(operation)
    } else {
        Cow::Owned(format!("{operation} {model}"))
    }
}

/// The attributes an attempt at `target` shares with its metrics.
fn target_attributes(operation: &'static str, model: &str, target: &TargetRt) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new(
            "gen_ai.provider.name",
            provider_name(target.upstream.def.api),
        ),
        KeyValue::new("gen_ai.request.model", model.to_string()),
        KeyValue::new("gen_ai.response.model", model.to_string()),
        KeyValue::new("switchyard.provider", target.upstream.id.clone()),
    ];
    if let Ok(uri) = target.upstream.def.base_url.parse::<http::Uri>()
        && let Some(host) = uri.host()
    {
        attributes.push(KeyValue::new("server.address", host.to_string()));
        if let Some(port) = uri.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_without_an_endpoint() {
        let settings = Settings::from_env(env(&[("OTEL_SERVICE_NAME", "x")]), true).unwrap();
        assert!(settings.is_off());
    }

    #[test]
    fn the_generic_endpoint_turns_both_signals_on_over_http_by_default() {
        let settings = Settings::from_env(
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]),
            false,
        )
        .unwrap();
        assert_eq!(settings.traces, Some(Protocol::HttpBinary));
        assert_eq!(settings.metrics, Some(Protocol::HttpBinary));
    }

    #[test]
    fn a_signal_endpoint_and_protocol_apply_to_that_signal_only() {
        let settings = Settings::from_env(
            env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(settings.traces, Some(Protocol::Grpc));
        assert_eq!(settings.metrics, None);
    }

    #[test]
    fn sdk_disabled_wins_and_an_unknown_protocol_is_an_error() {
        let disabled = Settings::from_env(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
            false,
        )
        .unwrap();
        assert!(disabled.is_off());
        let error = Settings::from_env(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ]),
            false,
        )
        .unwrap_err();
        assert!(error.contains("http/json"), "{error}");
        assert!(error.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{error}");
        let error = Settings::from_env(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ]),
            false,
        )
        .unwrap_err();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"),
            "{error}"
        );
    }

    #[test]
    fn grpc_to_an_https_endpoint_is_refused_naming_the_variable_not_the_value() {
        let error = Settings::from_env(
            env(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "HTTPS://user:secret@c:4317",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
            false,
        )
        .unwrap_err();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
        // https over HTTP/protobuf, and plain-http gRPC, are fine.
        for (endpoint, protocol) in [
            ("https://c:4318", "http/protobuf"),
            ("http://c:4317", "grpc"),
        ] {
            let settings = Settings::from_env(
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ]),
                false,
            )
            .unwrap();
            assert!(settings.traces.is_some() && settings.metrics.is_some());
        }
    }

    #[test]
    fn resource_attribute_values_are_percent_decoded() {
        let settings = Settings::from_env(
            env(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "team=a%2Cb, deployment.environment=prod%20east,k8s.x=a=b,broken",
            )]),
            false,
        )
        .unwrap();
        assert_eq!(
            settings.resource_attributes,
            [
                ("team".to_string(), "a,b".to_string()),
                ("deployment.environment".into(), "prod east".into()),
                ("k8s.x".into(), "a=b".into()),
            ]
        );
    }

    #[test]
    fn provider_names_follow_the_conventions() {
        assert_eq!(provider_name(Api::OpenAI), "openai");
        assert_eq!(provider_name(Api::Anthropic), "anthropic");
        assert_eq!(provider_name(Api::Gemini), "gcp.gemini");
        assert_eq!(provider_name(Api::AzureOpenAI), "azure.ai.openai");
        assert_eq!(provider_name(Api::Bedrock), "aws.bedrock");
        assert_eq!(provider_name(Api::VertexAI), "gcp.vertex_ai");
        assert_eq!(operation_for_path("/v1/embeddings"), "embeddings");
        assert_eq!(operation_for_path("/v1/messages"), "chat");
    }

    #[test]
    fn off_means_no_trace() {
        // Nothing is installed in unit tests.
        assert!(RequestTrace::start().is_none());
    }
}
