//! OTLP export plumbing the operator and the sidecar share (docs/reference/observability.md):
//! which signals the standard `OTEL_*` variables turn on and with which protocol, the exporters
//! for them, the HTTP client those export through, and build errors cleaned of endpoint values.
//! What each binary records, and its resource, stay in its own `telemetry` module.

use std::time::Duration;

use async_trait::async_trait;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{
    ExporterBuildError, MetricExporter, Protocol, SpanExporter, WithExportConfig as _,
    WithHttpConfig as _,
};

/// How long one export may take (the HTTP client's deadline).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `OTEL_SDK_DISABLED=true` turns everything off.
pub fn sdk_disabled(var: &impl Fn(&str) -> Option<String>) -> bool {
    var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The protocol `signal` (`traces` or `metrics`) is exported with, or `None` when no endpoint
/// is set for it: its own `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT` / `_PROTOCOL` first, then the
/// shared `OTEL_EXPORTER_OTLP_ENDPOINT` / `_PROTOCOL`. An unknown protocol, or an `https://`
/// endpoint for gRPC, is an error naming the variable (never its value: an endpoint may carry
/// credentials in its user part).
pub fn signal(
    var: &impl Fn(&str) -> Option<String>,
    signal: &str,
) -> Result<Option<Protocol>, String> {
    let value = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let upper = signal.to_ascii_uppercase();
    let own = format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT");
    let (endpoint_var, endpoint) = match value(&own) {
        Some(endpoint) => (own, endpoint),
        None => match value("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(endpoint) => ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), endpoint),
            None => return Ok(None),
        },
    };
    let own = format!("OTEL_EXPORTER_OTLP_{upper}_PROTOCOL");
    let (protocol_var, named) = match var(&own) {
        Some(named) => (own, Some(named)),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_string(),
            var("OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    };
    let protocol = parse_protocol(&protocol_var, named.as_deref())?;
    check_endpoint(&endpoint_var, &endpoint, protocol)?;
    Ok(Some(protocol))
}

/// `grpc` or `http/protobuf` (the specification's default when unset), read from `variable`.
fn parse_protocol(variable: &str, value: Option<&str>) -> Result<Protocol, String> {
    match value.map(str::trim) {
        None | Some("") | Some("http/protobuf") => Ok(Protocol::HttpBinary),
        Some("grpc") => Ok(Protocol::Grpc),
        Some(other) => Err(format!(
            "{variable} {other:?} is not supported: use grpc or http/protobuf"
        )),
    }
}

/// The gRPC exporter is built without TLS (tonic's TLS would add a second TLS stack): an
/// `https://` collector over gRPC would fail on every export, so it is refused up front.
fn check_endpoint(variable: &str, endpoint: &str, protocol: Protocol) -> Result<(), String> {
    let https = endpoint
        .trim()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if protocol == Protocol::Grpc && https {
        return Err(format!(
            "{variable} is an https:// endpoint, but gRPC export has no TLS: \
             use http/protobuf for an https:// collector, or a plain http:// gRPC endpoint"
        ));
    }
    Ok(())
}

/// The span exporter for `protocol` (as [`signal`] returns it). Call inside the tokio runtime:
/// the gRPC channel and the HTTP client run their I/O on it.
pub fn span_exporter(protocol: Protocol) -> Result<SpanExporter, ExporterBuildError> {
    let builder = SpanExporter::builder();
    match protocol {
        Protocol::Grpc => builder.with_tonic().build(),
        // http/protobuf: `signal` yields no other.
        _ => builder
            .with_http()
            .with_protocol(protocol)
            .with_http_client(OnRuntime::new())
            .build(),
    }
}

/// The metric exporter for `protocol`, as [`span_exporter`].
pub fn metric_exporter(protocol: Protocol) -> Result<MetricExporter, ExporterBuildError> {
    let builder = MetricExporter::builder();
    match protocol {
        Protocol::Grpc => builder.with_tonic().build(),
        _ => builder
            .with_http()
            .with_protocol(protocol)
            .with_http_client(OnRuntime::new())
            .build(),
    }
}

/// Why an exporter could not be built, without the endpoint's value: the SDK's message names
/// the variable and quotes its value in single quotes.
pub fn build_error(error: &ExporterBuildError) -> String {
    redact_quoted(&error.to_string())
}

/// `text` with every single-quoted part replaced by `'…'`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('\'');
    out.push_str(parts.next().unwrap_or_default());
    // Odd parts were quoted; a trailing unmatched quote hides the rest too.
    while parts.next().is_some() {
        out.push_str("'…'");
        if let Some(after) = parts.next() {
            out.push_str(after);
        }
    }
    out
}

/// The OTLP/HTTP client: hyper with rustls (https or plain http), run on the binary's tokio
/// runtime. The SDK exports from its own threads, outside any runtime, where hyper cannot run:
/// each export is spawned onto the runtime and awaited from there.
#[derive(Debug, Clone)]
struct OnRuntime {
    handle: tokio::runtime::Handle,
    client: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>>,
}

impl OnRuntime {
    /// Must be called inside the runtime.
    fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            handle: tokio::runtime::Handle::current(),
            client: HyperClient::new(https, EXPORT_TIMEOUT, None),
        }
    }
}

#[async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.handle
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_signal_is_on_with_an_endpoint_its_own_variables_first() {
        assert_eq!(signal(&env(&[]), "traces"), Ok(None));
        let shared = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(signal(&shared, "traces"), Ok(Some(Protocol::HttpBinary)));
        let own = env(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(signal(&own, "metrics"), Ok(Some(Protocol::Grpc)));
        assert_eq!(signal(&own, "traces"), Ok(None));
    }

    #[test]
    fn bad_settings_name_the_variable_not_its_value() {
        let unknown = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        let e = signal(&unknown, "traces").unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        let tls = env(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://user:secret@c:4317",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let e = signal(&tls, "traces").unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") && !e.contains("secret"));
        assert!(sdk_disabled(&env(&[("OTEL_SDK_DISABLED", " TRUE ")])));
        assert!(!sdk_disabled(&env(&[])));
    }

    #[test]
    fn an_invalid_endpoint_error_does_not_quote_the_endpoint() {
        let error = ExporterBuildError::InvalidConfiguration(
            "OTEL_EXPORTER_OTLP_ENDPOINT: invalid endpoint 'http://u:secret@bad host': \
             invalid uri character"
                .into(),
        );
        let message = build_error(&error);
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{message}");
        assert!(message.contains("invalid uri character"), "{message}");
    }

    #[test]
    fn quoted_parts_are_hidden() {
        assert_eq!(
            redact_quoted("invalid uri 'http://u:pw@x' for 'X'"),
            "invalid uri '…' for '…'"
        );
        assert_eq!(redact_quoted("cut 'off"), "cut '…'");
        assert_eq!(redact_quoted("none"), "none");
    }
}
