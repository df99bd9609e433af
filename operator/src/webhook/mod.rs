//! The mutating admission webhook that injects the sidecar (docs/reference/operator.md), HTTPS on
//! `--webhook-listen`:
//!
//! - `POST /inject`: an `admission.k8s.io/v1` AdmissionReview of a Pod CREATE, answered with an
//!   AdmissionReview that allows the pod, with a JSONPatch when [`inject::inject`] adds the
//!   sidecar or marks the pod skipped.
//!
//! The handler only decodes, calls the pure [`inject::inject`] and encodes. Decisions
//! the design leaves open:
//! - Requests that are not an AdmissionReview of a Pod are refused with a plain-text message:
//!   405 (not POST), 415 (not JSON), 413 (over 4 MiB), 400 (undecodable, no `request`, not a
//!   Pod). They mean the webhook is misconfigured, which should be loud.
//! - A Pod review the webhook cannot act on is *allowed unchanged*, with a warning for the
//!   client: an operation other than CREATE, a subresource, a missing or undecodable object.
//!   The webhook never blocks a pod, it only adds to pods it understands.
//! - `--sidecar-image` defaults to `ghcr.io/switchyard-dev/switchyard-sidecar:<operator version>`,
//!   so that injection works without it and operator and sidecar versions match.
//! - Warnings (an invalid `switchyard.dev/sidecar-mode`, a Job pod in container mode) go back in
//!   the response's `warnings`, which `kubectl` prints to whoever created the pod.
//!
//! Wiring, in `main`:
//!
//! ```text
//! let (mode, detect) = webhook::mode::source(config.sidecar_mode, client.clone(),
//! mode::AUTO_REFRESH); if let Some(detect) = detect { tokio::spawn(detect); }
//! let hook = Webhook::new(SidecarDefaults::from_config(&config), mode, metrics.admissions);
//! webhook::serve(bind(config.webhook_listen).await?, tls.clone(), hook).await
//! ```

pub mod inject;
pub mod mode;
pub mod sidecar;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use prometheus::IntCounterVec;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::inject::{Decision, SidecarDefaults};
use self::mode::Mode;
use crate::args::{Config, SidecarMode};
use crate::listener::{self, Limits};

/// The path the MutatingWebhookConfiguration calls.
pub const INJECT_PATH: &str = "/inject";
/// The largest AdmissionReview accepted. The apiserver refuses objects over 3 MiB, so a review
/// of one fits with room for its envelope.
pub const MAX_REVIEW_BYTES: usize = 4 << 20;
/// The image injected when `--sidecar-image` is not given, tagged with [`VERSION`].
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/switchyard-dev/switchyard-sidecar";
/// This operator's version, written to `switchyard.dev/sidecar-version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// What the handler shares between requests: the injection defaults and the current mode.
pub struct Webhook {
    defaults: SidecarDefaults,
    /// Overrides `defaults.mode`; `--sidecar-mode auto` changes it as the cluster is upgraded.
    mode: watch::Receiver<Mode>,
    /// `switchyard_webhook_admissions_total{result}`: [`Decision::outcome`], `unreadable` for
    /// pods that cannot be decoded, `invalid` for requests that are not a Pod review.
    admissions: IntCounterVec,
}

// === impl SidecarDefaults ===

impl SidecarDefaults {
    /// The defaults the flags ask for. The mode is the flag's, with `auto` as container until
    /// [`mode::source`] has looked at the cluster.
    pub fn from_config(config: &Config) -> Self {
        Self {
            image: config
                .sidecar_image
                .clone()
                .unwrap_or_else(|| format!("{DEFAULT_IMAGE_REPOSITORY}:{VERSION}")),
            mode: match config.sidecar_mode {
                SidecarMode::Native => Mode::Native,
                SidecarMode::Container | SidecarMode::Auto => Mode::Container,
            },
            resources: config.sidecar_resources.clone(),
            operator_namespace: config.namespace.clone(),
            version: VERSION.into(),
            env: config.sidecar_env.clone(),
        }
    }
}

// === impl Webhook ===

impl Webhook {
    /// A webhook injecting `defaults`, in whatever mode `mode` holds at each request.
    pub fn new(
        defaults: SidecarDefaults,
        mode: watch::Receiver<Mode>,
        admissions: IntCounterVec,
    ) -> Arc<Self> {
        Arc::new(Self {
            defaults,
            mode,
            admissions,
        })
    }

    fn count(&self, outcome: &str) {
        self.admissions.with_label_values(&[outcome]).inc();
    }

    /// Routes one request.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.uri().path() != INJECT_PATH {
            return plain(StatusCode::NOT_FOUND, "not found");
        }
        if req.method() != Method::POST {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            response
                .headers_mut()
                .insert(ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        if let Err(response) = check_headers(req.headers()) {
            return *response;
        }
        let body = match read_body(req.into_body()).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let (request, object) = match decode_review(&body) {
            Ok(decoded) => decoded,
            Err(response) => {
                self.count("invalid");
                return *response;
            }
        };
        let response = self.review(&request, object);
        json(StatusCode::OK, &encode_review(response))
    }

    /// Answers a decoded Pod review; always allows the pod.
    fn review(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        object: serde_json::Value,
    ) -> AdmissionResponse {
        let allowed = AdmissionResponse::from(request);
        let namespace = request.namespace.as_deref().unwrap_or_default();
        if request.operation != Operation::Create || request.sub_resource.is_some() {
            // Only pod creation can take a new container; the configuration should not send more.
            return allowed;
        }
        let pod = match decode_pod(object) {
            Ok(pod) => pod,
            Err(why) => {
                self.count("unreadable");
                tracing::warn!(%namespace, name = %request.name, %why, "pod not injected");
                return with_warnings(allowed, vec![format!("switchyard: not injected: {why}")]);
            }
        };
        let mut defaults = self.defaults.clone();
        defaults.mode = *self.mode.borrow();
        let decision = inject::inject(&pod, namespace, &defaults);
        log_decision(&pod, namespace, &decision);
        self.count(decision.outcome());
        respond(allowed, decision)
    }
}

/// Serves the webhook on `listener` with `tls` within [`Limits::WEBHOOK`] until the task is
/// dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    webhook: Arc<Webhook>,
) -> crate::Result<()> {
    serve_within(listener, tls, webhook, Limits::WEBHOOK).await
}

/// [`serve`] within other `limits`.
pub async fn serve_within(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    webhook: Arc<Webhook>,
    limits: Limits,
) -> crate::Result<()> {
    listener::serve(listener, Some(tls), "webhook", limits, move |req| {
        webhook.clone().handle(req)
    })
    .await
}

/// Refuses what cannot be an AdmissionReview before reading the body. A missing content type is
/// tolerated: the apiserver always sends one, and curl users may not.
fn check_headers(headers: &HeaderMap) -> Result<(), Box<Response<Body>>> {
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            let message = "expected an AdmissionReview as application/json";
            return Err(Box::new(plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)));
        }
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_REVIEW_BYTES) {
        return Err(Box::new(too_large()));
    }
    Ok(())
}

async fn read_body<B>(body: B) -> Result<Bytes, Box<Response<Body>>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, MAX_REVIEW_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Box::new(too_large())),
        Err(error) => Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the body: {error}"),
        ))),
    }
}

/// The review's request, if the body is an AdmissionReview of a Pod, and its object apart.
///
/// The object is taken out before the envelope is decoded, so that a pod we cannot read fails
/// only its own decoding (and is allowed), not the whole review's (which would be a 400).
fn decode_review(
    body: &[u8],
) -> Result<(AdmissionRequest<DynamicObject>, serde_json::Value), Box<Response<Body>>> {
    let bad = |message: String| Box::new(plain(StatusCode::BAD_REQUEST, &message));
    let not_review = |e: serde_json::Error| bad(format!("body is not an AdmissionReview: {e}"));
    let mut review: serde_json::Value = serde_json::from_slice(body).map_err(not_review)?;
    let object = review
        .pointer_mut("/request/object")
        .map(serde_json::Value::take)
        .unwrap_or_default();
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(review).map_err(not_review)?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| bad("AdmissionReview has no request".into()))?;
    let kind = &request.kind;
    if !(kind.group.is_empty() && kind.version == "v1" && kind.kind == "Pod") {
        let gvk = format!("{}/{}/{}", kind.group, kind.version, kind.kind);
        return Err(bad(format!("only v1 Pods are injected, got {gvk}")));
    }
    Ok((request, object))
}

/// The typed pod of a review, or why there is none.
fn decode_pod(object: serde_json::Value) -> Result<Pod, String> {
    if object.is_null() {
        return Err("the review carries no object".into());
    }
    serde_json::from_value(object).map_err(|e| format!("cannot read the pod: {e}"))
}

fn respond(allowed: AdmissionResponse, decision: Decision) -> AdmissionResponse {
    let warnings = match &decision {
        Decision::Inject { warnings, .. } => warnings.clone(),
        Decision::Ignore(_) | Decision::Skip { .. } => Vec::new(),
    };
    let response = match decision.patch() {
        None => allowed,
        Some(patch) => match allowed.clone().with_patch(patch.clone()) {
            Ok(patched) => patched,
            Err(error) => {
                // Unreachable: a patch of JSON values always serialises.
                tracing::error!(%error, "cannot encode the patch");
                allowed
            }
        },
    };
    with_warnings(response, warnings)
}

/// The AdmissionReview answering with `response`, its patch base64-encoded.
///
/// NB: kube-core serialises `patch: Vec<u8>` as an array of numbers (kube-rs/kube#1781); the
/// API's JSON encoding of a `[]byte` is a base64 string, which is what every apiserver documents
/// and accepts.
fn encode_review(response: AdmissionResponse) -> serde_json::Value {
    use base64::Engine as _;
    let encoded = response
        .patch
        .as_deref()
        .map(|patch| base64::engine::general_purpose::STANDARD.encode(patch));
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(encoded), Some(slot)) = (encoded, review.pointer_mut("/response/patch")) {
        *slot = encoded.into();
    }
    review
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

fn log_decision(pod: &Pod, namespace: &str, decision: &Decision) {
    // Pods made by controllers have no name yet, only a prefix.
    let meta = &pod.metadata;
    let name = meta
        .name
        .as_deref()
        .or(meta.generate_name.as_deref())
        .unwrap_or_default();
    match decision {
        Decision::Inject { mode, warnings, .. } => {
            tracing::info!(%namespace, %name, mode = mode.as_str(), ?warnings, "sidecar injected");
        }
        Decision::Skip { reason, .. } => {
            tracing::info!(%namespace, %name, %reason, "injection skipped");
        }
        Decision::Ignore(why) => {
            tracing::debug!(%namespace, %name, reason = why.as_str(), "pod left alone");
        }
    }
}

fn too_large() -> Response<Body> {
    let message = format!("AdmissionReview larger than {MAX_REVIEW_BYTES} bytes");
    plain(StatusCode::PAYLOAD_TOO_LARGE, &message)
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a valid response"),
        Err(error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the response: {error}"),
        ),
    }
}

/// A plain-text error: what `kubectl` shows when the apiserver reports a failed webhook call.
fn plain(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!("{message}\n")))
        .expect("a valid response")
}

#[cfg(test)]
mod tests;
