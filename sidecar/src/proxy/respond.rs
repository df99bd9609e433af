//! Everything the client sees is rendered here, in the client's own format: error bodies, stream
//! error events and the `x-switchyard-*` headers (docs/reference/api.md). No other module writes
//! an error body.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use switchyard_crds::v1alpha1::{Api, FailureClass};

pub use crate::convert::ClientApi;

use crate::convert::to_client::ClientEncoder;
use crate::failure::AttemptError;
use crate::proxy::body::{self, ResponseBody};
use crate::upstream::TargetRt;

/// `Retry-After` for a rate-limited answer whose providers gave no hint: long enough that a client
/// does not hammer, short enough that a passing limit is not stretched.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An error for the client: status, a stable code and a message.
#[derive(Clone, Debug)]
pub struct ClientError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` seconds to send along.
    pub retry_after: Option<u64>,
}

impl ClientError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `switchyard_budget_exhausted` naming the budget, or for a provider's fleet-wide rate
    /// limit `rate_limit_exceeded` naming the provider and its limit, with `Retry-After` until
    /// the window has room again.
    pub fn budget_exhausted(exhausted: &crate::budget::Exhausted) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            exhausted.code(),
            exhausted.message(),
        );
        error.retry_after = Some(exhausted.retry_after());
        error
    }
}

/// OpenAI's `error.type` for a status, as its API and SDKs use them.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Anthropic's `error.type` for a status, from its documented list.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The error body in the client's format.
pub fn error_body(api: ClientApi, error: &ClientError) -> Bytes {
    let value = match api {
        ClientApi::OpenAI | ClientApi::Responses => json!({"error": {
            "message": error.message, "type": openai_type(error.status), "param": null, "code": error.code,
        }}),
        // Anthropic's errors have no `code`; ours carries one anyway (clients ignore unknown
        // fields) so that `switchyard_no_config` and the like are machine-readable in both formats.
        ClientApi::Anthropic => json!({"type": "error", "error": {
            "type": anthropic_type(error.status), "message": error.message, "code": error.code,
        }}),
    };
    Bytes::from(value.to_string())
}

/// The one event that ends a committed stream after a failure, from the stream's encoder when
/// the event depends on what was sent (the Responses API's `response.failed`), else
/// [`stream_error_event`].
pub fn stream_failure(encoder: &mut ClientEncoder, api: ClientApi, error: &ClientError) -> Bytes {
    match encoder.failed(error.code, &error.message) {
        Some(event) => Bytes::from(event),
        None => stream_error_event(api, error),
    }
}

/// The one event that ends a committed stream after a failure: never a hang, never a clean end.
/// A Responses stream gets the API's `error` event; this one carries `sequence_number` 0, for a
/// stream that has shown none ([`ClientEncoder::failed`] continues a passed-through stream's).
pub fn stream_error_event(api: ClientApi, error: &ClientError) -> Bytes {
    if api == ClientApi::Responses {
        let data = json!({"type": "error", "code": error.code, "message": error.message,
            "param": null, "sequence_number": 0});
        return Bytes::from(format!("event: error\ndata: {data}\n\n"));
    }
    let body = error_body(api, error);
    let mut event = Vec::with_capacity(body.len() + 32);
    if api == ClientApi::Anthropic {
        event.extend_from_slice(b"event: error\n");
    }
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(&body);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// A JSON error response in the client's format.
pub fn error_response(api: ClientApi, error: &ClientError) -> Response<ResponseBody> {
    let mut response = json_response(error.status, error_body(api, error));
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The answer when no attempt succeeded, without the `x-switchyard-*` headers, and the message
/// for the log line. With no attempt at all it is a 503; the caller's own mistake goes back as
/// the provider said it when the formats agree; otherwise one error that names each attempt.
pub fn all_failed(
    api: ClientApi,
    failures: &[(TargetRt, AttemptError)],
) -> (Response<ResponseBody>, String) {
    let Some((last_target, last)) = failures.last() else {
        let error = ClientError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_available_target",
            "no target of this route can take the request now",
        );
        return (error_response(api, &error), error.message);
    };
    if last.class == FailureClass::ClientError
        && matches!(api, ClientApi::OpenAI | ClientApi::Responses)
        && last_target.upstream.def.api == Api::OpenAI
        && let Some(body) = &last.upstream_body
        && serde_json::from_slice::<Value>(body).is_ok_and(|v| v.get("error").is_some())
    {
        return (
            json_response(last.status(), body.clone()),
            last.message.clone(),
        );
    }
    let named = |(t, e): &(TargetRt, AttemptError)| {
        format!(
            "{} ({}): {}: {}",
            t.upstream.id, t.target.model, e.class, e.message
        )
    };
    let message = if failures.len() == 1 {
        named(&failures[0])
    } else {
        let each: Vec<String> = failures.iter().map(named).collect();
        format!(
            "all {} attempts failed: {}",
            failures.len(),
            each.join("; ")
        )
    };
    let mut error = ClientError::new(last.status(), last.code(), message);
    if last.class == FailureClass::RateLimited {
        let soonest = failures
            .iter()
            .filter_map(|(_, e)| e.retry_after)
            .min()
            .unwrap_or(DEFAULT_RETRY_AFTER);
        error.retry_after = Some(soonest.as_secs_f64().ceil() as u64);
    }
    (error_response(api, &error), error.message)
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The head of a streamed answer.
pub fn stream_response(body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Which route and target answered, and after how many attempts.
#[derive(Clone, Debug, Default)]
pub struct Served<'a> {
    pub route: Option<&'a str>,
    /// `pool/provider`.
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub attempts: u32,
    /// The prompt's complexity score, when the route scores.
    pub complexity: Option<u8>,
    /// `name@hash8` of the prompt template applied to the answer's request.
    pub template: Option<&'a str>,
}

// Header names built at compile time: a `&'static str` name is validated on every insert.
const ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
const PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
const MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
const COMPLEXITY: HeaderName = HeaderName::from_static("x-switchyard-complexity");
const TEMPLATE: HeaderName = HeaderName::from_static(switchyard_crds::template::TEMPLATE_HEADER);

/// Adds the `x-switchyard-*` headers.
pub fn add_served_headers(response: &mut Response<ResponseBody>, served: &Served<'_>) {
    let headers = response.headers_mut();
    let text = |value: &str| HeaderValue::from_str(value).ok();
    let values = [
        (ROUTE, served.route.and_then(text)),
        (PROVIDER, served.provider.and_then(text)),
        (MODEL, served.model.and_then(text)),
        (ATTEMPTS, served.route.map(|_| served.attempts.into())),
        (COMPLEXITY, served.complexity.map(|s| u16::from(s).into())),
        (TEMPLATE, served.template.and_then(text)),
    ];
    for (name, value) in values {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_in_each_client_format() {
        let e = ClientError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "slow down",
        );
        let openai: serde_json::Value =
            serde_json::from_slice(&error_body(ClientApi::OpenAI, &e)).unwrap();
        assert_eq!(openai["error"]["type"], "rate_limit_error");
        assert_eq!(openai["error"]["code"], "rate_limit_exceeded");
        assert_eq!(openai["error"]["message"], "slow down");
        let anthropic: serde_json::Value =
            serde_json::from_slice(&error_body(ClientApi::Anthropic, &e)).unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
    }

    #[test]
    fn stream_error_events_follow_each_protocol() {
        let e = ClientError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "stalled");
        let openai = stream_error_event(ClientApi::OpenAI, &e);
        assert!(openai.starts_with(b"data: {\"error\":"));
        assert!(openai.ends_with(b"\n\n"));
        let anthropic = stream_error_event(ClientApi::Anthropic, &e);
        assert!(anthropic.starts_with(b"event: error\ndata: {"));
    }
}
