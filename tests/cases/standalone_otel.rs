//! OpenTelemetry export (docs/reference/observability.md): the real sidecar process, with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP (or OTLP/gRPC) receiver in this test,
//! sends a SERVER span per request that continues the client's `traceparent`, a CLIENT span per
//! attempt with the GenAI attributes (the failed one with `error.type`), and the GenAI metrics
//! with their attributes, for chat and embeddings; a refused request is not an ERROR span and an
//! estimated usage is flagged, not exported as the provider's; the prompt's text is in none of
//! it. The sidecar's `switchyard_*` families are tested elsewhere.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use switchyard_tests::{Fault, MockProvider, client, eventually, pool, route, write_manifests};

/// What the receiver got: `(path, body)` per export request.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP receiver on 127.0.0.1: it keeps every export and answers with an empty
/// (successful) protobuf response.
async fn receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    let received: Received = Arc::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let body = request.into_body().collect().await?.to_bytes();
                        store.lock().unwrap().push((path, body));
                        let mut response = Response::new(Full::new(Bytes::new()));
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/x-protobuf"),
                        );
                        Ok::<_, hyper::Error>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// An OTLP/gRPC receiver on 127.0.0.1 (h2c, as the sidecar's plain-text gRPC export speaks):
/// each `Export` call's message is kept under the HTTP path of its signal (`/v1/traces`,
/// `/v1/metrics`), so the readers above serve both receivers, and answered with an empty
/// message and `grpc-status: 0`.
async fn grpc_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    let received: Received = Arc::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = match request.uri().path() {
                            "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => {
                                "/v1/traces"
                            }
                            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => {
                                "/v1/metrics"
                            }
                            other => panic!("not an OTLP gRPC method: {other}"),
                        };
                        let grpc = request.headers()["content-type"].to_str().unwrap_or("");
                        assert!(grpc.starts_with("application/grpc"), "{grpc}");
                        let body = request.into_body().collect().await?.to_bytes();
                        // One length-prefixed message: no compression flag, 4-byte length.
                        assert_eq!(body[0], 0, "uncompressed");
                        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
                        assert_eq!(body.len(), 5 + length);
                        store
                            .lock()
                            .unwrap()
                            .push((path.to_string(), body.slice(5..)));
                        let mut response = Response::new(GrpcOk(0));
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        Ok::<_, hyper::Error>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// A successful unary gRPC answer: an empty message, then the `grpc-status: 0` trailer.
struct GrpcOk(u8);

impl hyper::body::Body for GrpcOk {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0 += 1;
        std::task::Poll::Ready(match self.0 {
            1 => Some(Ok(hyper::body::Frame::data(Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))),
            2 => {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                Some(Ok(hyper::body::Frame::trailers(trailers)))
            }
            _ => None,
        })
    }
}

/// The sidecar binary, built next to this test (as the cluster tests do).
fn sidecar_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("SWITCHYARD_SIDECAR_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut build = Command::new(cargo);
        build
            .current_dir(workspace)
            .args([
                "build",
                "--bin",
                "switchyard-sidecar",
                "-p",
                "switchyard-sidecar",
            ])
            .arg("--target-dir")
            .arg(target_dir);
        if profile != "debug" {
            build.args(["--profile", &profile]);
        }
        let output = build.output().expect("run cargo build");
        assert!(
            output.status.success(),
            "cargo build of the sidecar failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        profile_dir.join("switchyard-sidecar")
    })
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The sidecar process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Sends SIGTERM and waits (bounded) for a clean exit, which flushes the exporters.
    async fn stop(mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.0.try_wait() {
                assert!(status.success(), "the sidecar exited with {status}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sidecar did not stop within 5 s of SIGTERM");
    }
}

/// Starts the sidecar on `yaml` exporting to `otlp` over OTLP/HTTP; returns it and its
/// data-plane base URL.
async fn start_sidecar(yaml: &str, otlp: SocketAddr) -> (Process, String) {
    start_sidecar_with(yaml, otlp, "http/protobuf").await
}

/// [`start_sidecar`] with the OTLP `protocol`.
async fn start_sidecar_with(yaml: &str, otlp: SocketAddr, protocol: &str) -> (Process, String) {
    let dir = write_manifests(yaml);
    let (data, admin) = (free_port(), free_port());
    let child = Command::new(sidecar_binary())
        .arg("--manifests")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{data}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--debug-listen", ""])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_SERVICE_NAME", "otel-test")
        // Percent-encoded values, as the chart writes them.
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.namespace.name=testns,team=a%2Cb%20c",
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("SWITCHYARD_OTEL_PROPAGATE_UPSTREAM", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("the sidecar starts");
    let process = Process(child);
    let base = format!("http://127.0.0.1:{data}");
    let models = format!("{base}/v1/models");
    let ready = eventually(Duration::from_secs(20), || {
        let models = models.clone();
        async move { get_status(&models).await == Some(200) }
    })
    .await;
    assert!(ready, "the sidecar serves within 20 s");
    (process, base)
}

async fn get_status(url: &str) -> Option<u16> {
    let request = Request::get(url).body(Full::new(Bytes::new())).ok()?;
    let response = client().request(request).await.ok()?;
    Some(response.status().as_u16())
}

/// POSTs `body` with `headers`; returns the status and the whole body.
async fn post(url: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> (u16, Bytes) {
    let mut request = Request::post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = client()
        .request(request)
        .await
        .expect("the sidecar answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

/// Every span exported so far.
fn spans(received: &Received) -> Vec<Span> {
    let received = received.lock().unwrap();
    received
        .iter()
        .filter(|(path, _)| path == "/v1/traces")
        .flat_map(|(_, body)| {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP traces");
            request
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
        })
        .collect()
}

/// The exported metric names (and the resource attributes of the last export).
fn metric_names(received: &Received) -> Vec<String> {
    let received = received.lock().unwrap();
    received
        .iter()
        .filter(|(path, _)| path == "/v1/metrics")
        .flat_map(|(_, body)| {
            let request = ExportMetricsServiceRequest::decode(body.as_ref()).expect("OTLP metrics");
            request
                .resource_metrics
                .into_iter()
                .flat_map(|r| r.scope_metrics)
                .flat_map(|s| s.metrics)
                .map(|m| m.name)
        })
        .collect()
}

/// The attributes of every exported data point of histogram `name`.
fn metric_points(received: &Received, name: &str) -> Vec<HashMap<String, String>> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let received = received.lock().unwrap();
    received
        .iter()
        .filter(|(path, _)| path == "/v1/metrics")
        .flat_map(|(_, body)| {
            let request = ExportMetricsServiceRequest::decode(body.as_ref()).expect("OTLP metrics");
            request
                .resource_metrics
                .into_iter()
                .flat_map(|r| r.scope_metrics)
                .flat_map(|s| s.metrics)
                .filter(|m| m.name == name)
                .flat_map(|m| match m.data {
                    Some(Data::Histogram(h)) => h.data_points,
                    other => panic!("{name} is not a histogram: {other:?}"),
                })
                .map(|point| {
                    point
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), show(kv)))
                        .collect()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.clone(), show(kv)))
        .collect()
}

/// An attribute's value as text.
fn show(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "the-secret-prompt-text-7f3a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_genai_metrics_for_a_failover_and_a_stream() {
    let (otlp, received) = receiver().await;
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "");
    let (sidecar, base) = start_sidecar(&yaml, otlp).await;

    // A failover: `a` answers 500, `b` serves.
    a.push_faults([Fault::ServerError]);
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": PROMPT}]});
    let (status, answer) = post(
        &format!("{base}/v1/chat/completions"),
        &body,
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));

    // A stream, with no client trace.
    let stream = json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": PROMPT}]});
    let (status, events) = post(&format!("{base}/v1/chat/completions"), &stream, &[]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&events).contains("[DONE]"));

    let exported = eventually(Duration::from_secs(10), || {
        let received = received.clone();
        async move {
            spans(&received).len() >= 5
                && [
                    "gen_ai.client.token.usage",
                    "gen_ai.client.operation.duration",
                ]
                .iter()
                .all(|name| metric_names(&received).iter().any(|m| m == name))
        }
    })
    .await;
    let all = spans(&received);
    assert!(
        exported,
        "5 spans and the GenAI metrics within 10 s; got {all:#?}"
    );

    // The failed-over request: a SERVER span continuing the client's trace ...
    let servers: Vec<&Span> = all
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(
        servers.len(),
        2,
        "one request span per request: {servers:#?}"
    );
    let failover = servers
        .iter()
        .find(|s| hex(&s.trace_id) == CLIENT_TRACE)
        .expect("the request span continues the client's trace");
    assert_eq!(failover.name, "chat chat");
    assert_eq!(hex(&failover.parent_span_id), CLIENT_SPAN);
    let attrs = attributes(failover);
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "chat"),
        ("gen_ai.response.model", "m-b"),
        ("gen_ai.provider.name", "openai"),
        ("switchyard.route", "r"),
        ("switchyard.attempts", "2"),
        ("switchyard.provider", "pool/b"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(
            attrs.get(key).map(String::as_str),
            Some(value),
            "{key} in {attrs:#?}"
        );
    }
    assert!(attrs["switchyard.cost_usd"].parse::<f64>().unwrap() > 0.0);
    assert!(attrs["gen_ai.usage.input_tokens"].parse::<u64>().unwrap() > 0);
    assert!(!attrs.contains_key("error.type"), "the request succeeded");

    // ... with two CLIENT children, in order, the first failed with its class.
    let mut children: Vec<&Span> = all
        .iter()
        .filter(|s| s.parent_span_id == failover.span_id)
        .collect();
    children.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(children.len(), 2, "{children:#?}");
    assert!(children.iter().all(|s| s.kind == SpanKind::Client as i32));
    assert!(children.iter().all(|s| s.trace_id == failover.trace_id));
    let (first, second) = (attributes(children[0]), attributes(children[1]));
    assert_eq!(children[0].name, "chat m-a");
    assert_eq!(first["error.type"], "ServerError");
    assert_eq!(first["gen_ai.request.model"], "m-a");
    assert_eq!(first["server.address"], "127.0.0.1");
    assert_eq!(children[1].name, "chat m-b");
    assert!(!second.contains_key("error.type"));
    assert_eq!(second["gen_ai.response.model"], "m-b");
    assert_eq!(second["gen_ai.provider.name"], "openai");
    assert!(second["gen_ai.usage.output_tokens"].parse::<u64>().unwrap() > 0);
    assert!(children[0].start_time_unix_nano >= failover.start_time_unix_nano);
    assert!(children[1].end_time_unix_nano <= failover.end_time_unix_nano);

    // The attempt's traceparent went to the provider that served (propagation is on).
    let sent = b.requests()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sent,
        format!("00-{CLIENT_TRACE}-{}-01", hex(&children[1].span_id)),
        "b got the second attempt's span as its parent"
    );

    // The stream: a new trace, one attempt, usage counted at the end of the stream.
    let streamed = servers
        .iter()
        .find(|s| hex(&s.trace_id) != CLIENT_TRACE)
        .expect("the stream's request span");
    assert!(streamed.parent_span_id.is_empty(), "a root span");
    let attempts: Vec<&Span> = all
        .iter()
        .filter(|s| s.parent_span_id == streamed.span_id)
        .collect();
    assert_eq!(attempts.len(), 1);
    let attempt = attributes(attempts[0]);
    assert_eq!(attempts[0].kind, SpanKind::Client as i32);
    assert!(
        attempt["gen_ai.usage.output_tokens"]
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(attributes(streamed)["switchyard.attempts"], "1");

    // No prompt text anywhere in what was exported, spans or metrics.
    for (path, body) in received.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains(PROMPT), "{path} carried the prompt");
        assert!(
            !text.contains("sk-a-secret") && !text.contains("sk-b-secret"),
            "{path} carried a key"
        );
    }
    // The resource names the service as OTEL_SERVICE_NAME says, with OTEL_RESOURCE_ATTRIBUTES.
    let first_export = received
        .lock()
        .unwrap()
        .iter()
        .find(|(path, _)| path == "/v1/traces")
        .map(|(_, body)| ExportTraceServiceRequest::decode(body.as_ref()).unwrap())
        .unwrap();
    let resource = first_export.resource_spans[0].resource.as_ref().unwrap();
    let resource: HashMap<_, _> = resource
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), show(kv)))
        .collect();
    assert_eq!(resource["service.name"], "otel-test");
    assert_eq!(resource["k8s.namespace.name"], "testns");
    assert_eq!(resource["team"], "a,b c", "values are percent-decoded");

    sidecar.stop().await;
}

/// A refused request, a stream whose usage the sidecar had to estimate, an embeddings request,
/// and the three GenAI metrics with their attributes (review findings 7, 15, 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_estimates_embeddings_and_the_genai_metric_attributes() {
    let (otlp, received) = receiver().await;
    let a = MockProvider::start("a").await.expect("mock a");
    let embedding_model = "  - {name: text-embedding-3-small, type: Embedding, \
        inputPerMillion: \"0.02\", outputPerMillion: \"0\"}";
    let yaml = pool(&[("a", &a.base_url(), "m-a")], embedding_model, "")
        + &route("r", "chat", &[("a", "m-a")], "failover: {maxAttempts: 1}")
        + &route("e", "embed", &[("a", "text-embedding-3-small")], "");
    let (sidecar, base) = start_sidecar(&yaml, otlp).await;
    let chat = format!("{base}/v1/chat/completions");

    // A refused request (no such model) in the client's trace.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let unknown = json!({"model": "nope", "messages": [{"role": "user", "content": PROMPT}]});
    let (status, _) = post(&chat, &unknown, &[("traceparent", &traceparent)]).await;
    assert_eq!(status, 404);

    // A stream that breaks after content, before the provider reported usage.
    a.push_faults([Fault::ErrorMidStream { after_chunks: 2 }]);
    let stream = json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": PROMPT}]});
    let (status, _) = post(&chat, &stream, &[]).await;
    assert_eq!(status, 200, "committed before the break");

    // A whole stream (time to first token) and an embeddings request.
    let (status, _) = post(&chat, &stream, &[]).await;
    assert_eq!(status, 200);
    let embed = json!({"model": "embed", "input": ["a", "b"]});
    let (status, answer) = post(&format!("{base}/v1/embeddings"), &embed, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));

    const METRICS: [&str; 3] = [
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "gen_ai.server.time_to_first_token",
    ];
    let exported = eventually(Duration::from_secs(10), || {
        let received = received.clone();
        async move {
            let servers = spans(&received)
                .iter()
                .filter(|s| s.kind == SpanKind::Server as i32)
                .count();
            servers >= 4
                && METRICS
                    .iter()
                    .all(|name| metric_names(&received).iter().any(|m| m == name))
                && metric_points(&received, METRICS[1])
                    .iter()
                    .any(|p| p["gen_ai.operation.name"] == "embeddings")
        }
    })
    .await;
    let all = spans(&received);
    assert!(exported, "4 request spans and 3 metrics in 10 s: {all:#?}");
    let server = |pred: &dyn Fn(&Span) -> bool| -> Vec<&Span> {
        all.iter()
            .filter(|s| s.kind == SpanKind::Server as i32 && pred(s))
            .collect()
    };
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    let code = |span: &Span| span.status.as_ref().map_or(0, |s| s.code);

    // The refusal joins the client's trace; a 4xx is the client's, not an ERROR span.
    let refused = server(&|s| hex(&s.trace_id) == CLIENT_TRACE);
    assert_eq!(refused.len(), 1, "{refused:#?}");
    let attrs = attributes(refused[0]);
    assert_eq!(attrs["http.response.status_code"], "404");
    assert_eq!(attrs["error.type"], "Rejected");
    assert_ne!(code(refused[0]), StatusCode::Error as i32, "{refused:#?}");

    // The broken stream: an ERROR request span; its attempt flags the estimate and exports
    // no gen_ai.usage.* (the provider never said).
    let broken =
        server(&|s| attributes(s).get("error.type").map(String::as_str) == Some("StreamError"));
    assert_eq!(broken.len(), 1, "{all:#?}");
    assert_eq!(code(broken[0]), StatusCode::Error as i32);
    let attempt = all
        .iter()
        .find(|s| s.parent_span_id == broken[0].span_id)
        .expect("the broken stream's attempt");
    let attempt = attributes(attempt);
    assert_eq!(
        attempt["switchyard.usage_estimated"], "true",
        "{attempt:#?}"
    );
    assert!(
        !attempt.keys().any(|k| k.starts_with("gen_ai.usage")),
        "{attempt:#?}"
    );

    // The embeddings request: operation embeddings, on both spans.
    let embedded = server(&|s| attributes(s)["gen_ai.operation.name"] == "embeddings");
    assert_eq!(embedded.len(), 1, "{all:#?}");
    assert_eq!(embedded[0].name, "embeddings embed");
    assert_eq!(attributes(embedded[0])["gen_ai.request.model"], "embed");
    let child = all
        .iter()
        .find(|s| s.parent_span_id == embedded[0].span_id)
        .expect("the embeddings attempt");
    assert_eq!(child.name, "embeddings text-embedding-3-small");
    assert_eq!(attributes(child)["gen_ai.operation.name"], "embeddings");

    // The metrics, with their attributes.
    let usage = metric_points(&received, METRICS[0]);
    let types: std::collections::BTreeSet<&str> = usage
        .iter()
        .map(|p| p["gen_ai.token.type"].as_str())
        .collect();
    assert_eq!(types, ["input", "output"].into(), "{usage:#?}");
    for point in &usage {
        assert_eq!(point["gen_ai.provider.name"], "openai", "{point:#?}");
        assert!(point.contains_key("switchyard.route"), "{point:#?}");
        assert!(!point.contains_key("error.type"), "{point:#?}");
    }
    let durations = metric_points(&received, METRICS[1]);
    assert!(
        durations
            .iter()
            .any(|p| p.get("error.type").map(String::as_str) == Some("StreamError")),
        "{durations:#?}"
    );
    assert!(
        durations
            .iter()
            .any(|p| p["gen_ai.operation.name"] == "embeddings"
                && p["gen_ai.request.model"] == "text-embedding-3-small"),
        "{durations:#?}"
    );
    let ttft = metric_points(&received, METRICS[2]);
    assert!(
        ttft.iter().all(|p| p["gen_ai.operation.name"] == "chat"
            && p["gen_ai.request.model"] == "m-a"
            && p["switchyard.route"] == "r"),
        "{ttft:#?}"
    );
    for (path, body) in received.lock().unwrap().iter() {
        assert!(!String::from_utf8_lossy(body).contains(PROMPT), "{path}");
    }
    sidecar.stop().await;
}

/// gRPC export (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, plain-text h2c) reaches a gRPC receiver:
/// the request's spans and the GenAI metrics arrive as OTLP `Export` calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_reaches_a_grpc_receiver() {
    let (otlp, received) = grpc_receiver().await;
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml =
        pool(&[("a", &a.base_url(), "m-a")], "", "") + &route("r", "chat", &[("a", "m-a")], "");
    let (sidecar, base) = start_sidecar_with(&yaml, otlp, "grpc").await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": PROMPT}]});
    let (status, _) = post(&format!("{base}/v1/chat/completions"), &body, &[]).await;
    assert_eq!(status, 200);
    let exported = eventually(Duration::from_secs(10), || {
        let received = received.clone();
        async move {
            spans(&received).len() >= 2
                && metric_names(&received)
                    .iter()
                    .any(|m| m == "gen_ai.client.operation.duration")
        }
    })
    .await;
    let all = spans(&received);
    assert!(
        exported,
        "spans and metrics over gRPC within 10 s: {all:#?}"
    );
    let server = all
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("the request span");
    assert_eq!(server.name, "chat chat");
    assert_eq!(attributes(server)["gen_ai.response.model"], "m-a");
    sidecar.stop().await;
}

/// The Grafana dashboard's queries name metrics a running sidecar serves: after a failover, a
/// cache hit, a budgeted request and a stream, every sidecar family the dashboard uses is in the
/// sidecar's scrape, but for those that need a refusal or an open circuit to appear at all
/// (their tests are standalone_budgets, standalone_fleet_limits and standalone_breaker). The
/// operator's names are checked against docs/reference/metrics.md by scripts/chart_test.py.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_name_metrics_the_sidecar_serves() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let board =
        std::fs::read_to_string(workspace.join("charts/switchyard/dashboards/switchyard.json"))
            .expect("the dashboard");
    let board: serde_json::Value = serde_json::from_str(&board).expect("the dashboard is JSON");
    let doc = std::fs::read_to_string(workspace.join("docs/reference/metrics.md")).expect("doc");
    let sidecar_section = doc
        .split("## Sidecar")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the doc's Sidecar section");
    let sidecar_names: Vec<&str> = sidecar_section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    assert!(sidecar_names.len() > 10, "{sidecar_names:?}");

    let mut used = std::collections::BTreeSet::new();
    for panel in board["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(name) = word.strip_prefix("switchyard_") {
                    let name = format!("switchyard_{name}");
                    let base = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(&name)
                        .to_string();
                    used.insert(base);
                }
            }
        }
    }
    let from_sidecar: Vec<&String> = used
        .iter()
        .filter(|n| sidecar_names.contains(&n.as_str()))
        .collect();
    assert!(from_sidecar.len() >= 8, "{from_sidecar:?}");

    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "",
    ) + &route(
        "r",
        "chat",
        &[("a", "m-a"), ("b", "m-b")],
        "cache: {ttl: 10m}",
    ) + "---\napiVersion: switchyard.dev/v1alpha1\nkind: Budget\nmetadata: {name: day}\nspec:\n  limits: [{period: Day, requests: 1000}]\n";
    let h = switchyard_tests::Harness::start(&yaml).await;
    a.push_faults([Fault::ServerError]);
    let deterministic = json!({"model": "chat", "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        h.post("/v1/chat/completions", &deterministic).await.status,
        200
    );
    let again = h.post("/v1/chat/completions", &deterministic).await;
    assert_eq!(again.header("x-switchyard-cache"), "hit");
    let stream =
        json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "s"}]});
    assert_eq!(h.post("/v1/chat/completions", &stream).await.status, 200);

    let scrape = h.metrics().await;
    let served = |name: &str| {
        scrape.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
        })
    };
    // Families that exist only once something was refused or a circuit opened.
    let need_an_event = [
        "switchyard_budget_refusals_total",
        "switchyard_fleet_limit_refusals_total",
        "switchyard_circuit_open",
    ];
    for name in from_sidecar {
        if need_an_event.contains(&name.as_str()) {
            continue;
        }
        assert!(
            served(name),
            "the dashboard uses {name}, not in the scrape:\n{scrape}"
        );
    }
    h.stop().await;
}
