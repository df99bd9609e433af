//! OpenTelemetry spans for the operator's reconcile steps and table pushes
//! (docs/reference/observability.md): off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, as in the sidecar; `OTEL_SERVICE_NAME` defaults
//! to `switchyard-operator`. Off, [`Step::start`] is one load of a `OnceLock`.
//!
//! The variables, the exporters and their HTTP client are the sidecar's too (`switchyard-otel`):
//! HTTP export runs on the tokio runtime through hyper and rustls, gRPC through tonic.

use std::borrow::Cow;
use std::sync::OnceLock;

use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::Protocol;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "switchyard-operator";

/// What the environment asks for; read once in `main`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub service_name: Option<String>,
    /// Export spans, with this protocol.
    pub traces: Option<Protocol>,
}

impl Settings {
    /// Reads the standard variables through `var` (`std::env::var` in `main`). An unknown
    /// protocol, or an `https://` endpoint for gRPC (built without TLS), is an error naming the
    /// variable (never its value); `main` then runs with export off.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        if switchyard_otel::sdk_disabled(&var) {
            return Ok(Self::default());
        }
        Ok(Self {
            service_name: var("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()),
            traces: switchyard_otel::signal(&var, "traces")?,
        })
    }
}

struct Otel {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

static OTEL: OnceLock<Otel> = OnceLock::new();

/// Builds the span exporter and installs it. Call inside the tokio runtime. On error nothing is
/// installed and the message names the variables to look at, not their values.
pub fn install(settings: &Settings) -> Result<(), String> {
    build(settings).map_err(|error| switchyard_otel::build_error(&error))
}

fn build(settings: &Settings) -> Result<(), opentelemetry_otlp::ExporterBuildError> {
    let Some(protocol) = settings.traces else {
        return Ok(());
    };
    let exporter = switchyard_otel::span_exporter(protocol)?;
    let service = settings
        .service_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    let provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build())
        .with_batch_exporter(exporter)
        .build();
    let scope = InstrumentationScope::builder("switchyard-operator")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let tracer = provider.tracer_with_scope(scope);
    let _ = OTEL.set(Otel { provider, tracer });
    Ok(())
}

/// Exports what is queued; call from a blocking thread while the runtime runs.
pub fn shutdown() {
    if let Some(otel) = OTEL.get()
        && let Err(error) = otel.provider.shutdown()
    {
        tracing::warn!(%error, "OpenTelemetry traces: shutdown");
    }
}

/// A span of the operator's work, ended when dropped; nothing when export is off.
pub struct Step(Option<Context>);

impl Step {
    /// A root span (a reconcile step).
    #[inline]
    pub fn start(name: &'static str) -> Self {
        Self(OTEL.get().map(|otel| {
            let span = otel
                .tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .start(&otel.tracer);
            Context::new().with_span(span)
        }))
    }

    /// A span under this one.
    pub fn child(&self, name: &'static str) -> Self {
        Self(self.0.as_ref().zip(OTEL.get()).map(|(parent, otel)| {
            let span = otel
                .tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .start_with_context(&otel.tracer, parent);
            parent.with_span(span)
        }))
    }

    /// Sets an attribute (computed only when export is on).
    pub fn set(&self, key: &'static str, value: impl FnOnce() -> opentelemetry::Value) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(KeyValue::new(key, value()));
        }
    }

    /// Marks the span failed with `error_type`.
    pub fn fail(&self, error_type: impl Into<Cow<'static, str>>) {
        if let Some(cx) = &self.0 {
            let error_type = error_type.into();
            cx.span()
                .set_attribute(KeyValue::new("error.type", error_type.to_string()));
            cx.span()
                .set_status(opentelemetry::trace::Status::error(error_type));
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(cx) = &self.0 {
            cx.span().end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_an_endpoint_and_grpc_when_asked() {
        let none = |_: &str| None;
        assert_eq!(Settings::from_env(none).unwrap(), Settings::default());
        let grpc = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some("http://c:4317".to_string()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_string()),
            _ => None,
        };
        assert_eq!(
            Settings::from_env(grpc).unwrap().traces,
            Some(Protocol::Grpc)
        );
        let json = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://c:4318".to_string()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/json".to_string()),
            _ => None,
        };
        let error = Settings::from_env(json).unwrap_err();
        assert!(error.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{error}");
        let tls = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("https://user:secret@c:4317".to_string()),
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" => Some("grpc".to_string()),
            _ => None,
        };
        let error = Settings::from_env(tls).unwrap_err();
        assert!(error.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn steps_are_nothing_when_off() {
        let step = Step::start("reconcile");
        assert!(step.0.is_none());
        assert!(step.child("compile").0.is_none());
    }
}
