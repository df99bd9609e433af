//! The one place failures are classified (docs/reference/sidecar.md#failure-classes).
//!
//! Every upstream attempt that does not succeed ends as an [`AttemptError`]. Its class decides
//! whether the request fails over, what the circuit breaker counts, which status the client sees
//! and which metric label is used; each of those is one exhaustive `match` below.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use switchyard_crds::v1alpha1::FailureClass;

/// Why one attempt at one target failed.
#[derive(Clone, Debug)]
pub struct AttemptError {
    pub class: FailureClass,
    /// The provider's HTTP status, when it answered with one.
    pub upstream_status: Option<StatusCode>,
    /// A short, key-free description for the client and the log.
    pub message: String,
    /// The provider's `Retry-After` hint, when it gave one.
    pub retry_after: Option<Duration>,
    /// The provider's error body, kept for `ClientError`s that go back to the caller as they are.
    pub upstream_body: Option<bytes::Bytes>,
}

impl AttemptError {
    /// A `Timeout`: `what` did not happen within `after`.
    pub fn timeout(what: &str, after: std::time::Duration) -> Self {
        Self::new(
            FailureClass::Timeout,
            format!("{what} within {}", switchyard_crds::duration::format(after)),
        )
    }

    /// An error without an upstream answer (connect failures, timeouts, broken streams).
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            upstream_status: None,
            message: message.into(),
            retry_after: None,
            upstream_body: None,
        }
    }

    /// Removes every occurrence of `secret` from what this error could show: a provider that
    /// echoes the key it was sent must not make it reach a client or a log line.
    pub fn redact(mut self, secret: &str) -> Self {
        if secret.len() < 4 {
            return self;
        }
        if self.message.contains(secret) {
            self.message = self.message.replace(secret, "***");
        }
        if let Some(body) = &self.upstream_body
            && let Some(redacted) = redact_body(body, secret)
        {
            self.upstream_body = Some(redacted);
        }
        self
    }

    /// Whether a route with `failover_on` moves on to the next target after this error.
    pub fn fails_over(&self, failover_on: &[FailureClass]) -> bool {
        self.class != FailureClass::ClientError && failover_on.contains(&self.class)
    }

    /// The status the client sees when this is the error it gets.
    pub fn status(&self) -> StatusCode {
        match self.class {
            FailureClass::ConnectError | FailureClass::ServerError => StatusCode::BAD_GATEWAY,
            FailureClass::AuthError | FailureClass::OutOfCredits => StatusCode::BAD_GATEWAY,
            FailureClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
            FailureClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            FailureClass::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            FailureClass::ContextLengthExceeded | FailureClass::ContentFiltered => {
                StatusCode::BAD_REQUEST
            }
            FailureClass::ClientError => self.upstream_status.unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// The `code` in the client's error body.
    pub fn code(&self) -> &'static str {
        match self.class {
            FailureClass::ConnectError => "upstream_connect_error",
            FailureClass::Timeout => "upstream_timeout",
            FailureClass::RateLimited => "rate_limit_exceeded",
            FailureClass::Overloaded => "upstream_overloaded",
            FailureClass::ServerError => "upstream_server_error",
            FailureClass::AuthError => "upstream_auth_error",
            FailureClass::OutOfCredits => "upstream_out_of_credits",
            FailureClass::ContextLengthExceeded => "context_length_exceeded",
            FailureClass::ContentFiltered => "content_filter",
            FailureClass::ClientError => "invalid_request_error",
        }
    }

    /// How the circuit breaker treats it.
    pub fn breaker_effect(&self) -> BreakerEffect {
        match self.class {
            FailureClass::AuthError | FailureClass::OutOfCredits => BreakerEffect::OpenLong,
            FailureClass::ConnectError
            | FailureClass::Timeout
            | FailureClass::RateLimited
            | FailureClass::Overloaded
            | FailureClass::ServerError => BreakerEffect::Count,
            FailureClass::ContextLengthExceeded
            | FailureClass::ContentFiltered
            | FailureClass::ClientError => BreakerEffect::None,
        }
    }

    /// The metric label: the class name.
    pub fn metric_label(&self) -> &'static str {
        self.class.as_str()
    }
}

/// What a failure does to the target's circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerEffect {
    /// Not the provider's fault.
    None,
    /// One more consecutive failure.
    Count,
    /// The key is refused or out of credit: open at once, for 10 × cooldown.
    OpenLong,
}

/// Classifies an HTTP error answer from a provider of any API. `body` is the provider's error
/// body; its text breaks ties that the status alone cannot (503 overloaded vs down, a 400 that is
/// really a context-length error, a 429 that is really an empty balance).
pub fn classify_http(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    let says = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let class = match status.as_u16() {
        402 => FailureClass::OutOfCredits,
        401 | 403 => FailureClass::AuthError,
        429 if says(&["insufficient_quota", "credit balance", "billing"]) => {
            FailureClass::OutOfCredits
        }
        429 => FailureClass::RateLimited,
        408 => FailureClass::Timeout,
        529 => FailureClass::Overloaded,
        503 if says(&["overload"]) => FailureClass::Overloaded,
        // NB: a provider that does not know the model is a configuration problem of this target,
        // not the caller's mistake: fail over rather than hand the caller a 404 it cannot fix.
        404 => FailureClass::ServerError,
        400..=499 if says(&["credit balance"]) => FailureClass::OutOfCredits,
        400..=499
            if says(&[
                "context_length",
                "context length",
                "context window",
                "maximum context",
                "too many tokens",
                "prompt is too long",
            ]) =>
        {
            FailureClass::ContextLengthExceeded
        }
        // "safety system" is OpenAI's wording; a bare "safety" also names request fields
        // (Gemini's `safety_settings`), which are the caller's mistakes.
        400..=499
            if says(&[
                "content_filter",
                "content management policy",
                "safety system",
            ]) =>
        {
            FailureClass::ContentFiltered
        }
        400..=499 => FailureClass::ClientError,
        _ => FailureClass::ServerError,
    };
    let detail = provider_message(body)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    AttemptError {
        class,
        upstream_status: Some(status),
        message: format!("HTTP {}: {}", status.as_u16(), detail),
        retry_after: retry_after(headers),
        upstream_body: Some(bytes::Bytes::copy_from_slice(body)),
    }
}

/// Classifies an error object sent inside a stream (OpenAI's `{"error":{...}}` data or
/// Anthropic's `error` event), where there is no status code to go by.
pub fn classify_stream_error(error: &serde_json::Value) -> AttemptError {
    let text = error.to_string().to_ascii_lowercase();
    let says = |n: &str| text.contains(n);
    let class = if says("rate_limit") {
        FailureClass::RateLimited
    } else if says("overload") {
        FailureClass::Overloaded
    } else if says("context_length") || says("prompt is too long") {
        FailureClass::ContextLengthExceeded
    } else if says("content_filter") {
        FailureClass::ContentFiltered
    } else {
        FailureClass::ServerError
    };
    let message = error
        .get("message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("error event in stream");
    AttemptError::new(
        class,
        format!(
            "provider stream error: {}",
            message.chars().take(300).collect::<String>()
        ),
    )
}

/// The `message` of an OpenAI-, Anthropic- or Gemini-style error body, shortened.
fn provider_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value
        .pointer("/error/message")
        .or_else(|| value.get("message"))?
        .as_str()?;
    let mut message: String = message.chars().take(300).collect();
    if message.len() < message.chars().count() {
        message.push('…');
    }
    Some(message)
}

/// Parses `retry-after-ms`, then `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_millis(ms as u64));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // A date in the past means "now", not "never".
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `body` without `secret`, or `None` when it never held it. A JSON body is redacted in its
/// decoded strings, because JSON may escape any character (`sk\u002d…`, `\/`) and the client
/// decodes what we pass on: a byte search alone would miss the key. What is not JSON is searched
/// as bytes.
fn redact_body(body: &bytes::Bytes, secret: &str) -> Option<bytes::Bytes> {
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) {
        return redact_json(&mut value, secret)
            .then(|| serde_json::to_vec(&value).map(bytes::Bytes::from).ok())
            .flatten();
    }
    let contains = body.windows(secret.len()).any(|w| w == secret.as_bytes());
    contains.then(|| bytes::Bytes::from(String::from_utf8_lossy(body).replace(secret, "***")))
}

/// Replaces `secret` in every string and object key of `value`; says whether it found any.
fn redact_json(value: &mut serde_json::Value, secret: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains(secret) => {
            *text = text.replace(secret, "***");
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |found, item| redact_json(item, secret) | found),
        Value::Object(map) => {
            let mut found = false;
            if map.keys().any(|k| k.contains(secret)) {
                let entries = std::mem::take(map);
                *map = entries
                    .into_iter()
                    .map(|(k, v)| (k.replace(secret, "***"), v))
                    .collect();
                found = true;
            }
            map.values_mut()
                .fold(found, |found, item| redact_json(item, secret) | found)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, body: &str) -> FailureClass {
        classify_http(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
        .class
    }

    #[test]
    fn statuses_and_bodies_classify() {
        use FailureClass::*;
        assert_eq!(
            class(429, r#"{"error":{"code":"rate_limit_exceeded"}}"#),
            RateLimited
        );
        assert_eq!(
            class(429, r#"{"error":{"type":"insufficient_quota"}}"#),
            OutOfCredits
        );
        assert_eq!(class(402, ""), OutOfCredits);
        assert_eq!(
            class(
                400,
                r#"{"error":{"message":"Your credit balance is too low"}}"#
            ),
            OutOfCredits
        );
        assert_eq!(class(401, ""), AuthError);
        assert_eq!(class(403, ""), AuthError);
        assert_eq!(class(529, ""), Overloaded);
        assert_eq!(class(503, "The engine is currently overloaded"), Overloaded);
        assert_eq!(class(503, "upstream connect error"), ServerError);
        assert_eq!(class(500, ""), ServerError);
        assert_eq!(
            class(400, r#"{"error":{"code":"context_length_exceeded"}}"#),
            ContextLengthExceeded
        );
        assert_eq!(
            class(
                400,
                r#"{"error":{"message":"prompt is too long: 210000 tokens"}}"#
            ),
            ContextLengthExceeded
        );
        assert_eq!(
            class(400, r#"{"error":{"code":"content_filter"}}"#),
            ContentFiltered
        );
        assert_eq!(
            class(
                400,
                r#"{"error":{"message":"Your request was rejected as a result of our safety system."}}"#
            ),
            ContentFiltered
        );
        assert_eq!(
            class(
                400,
                r#"{"error":{"message":"Invalid value at 'safety_settings[0].threshold'"}}"#
            ),
            ClientError
        );
        assert_eq!(
            class(400, r#"{"error":{"message":"temperature must be <= 2"}}"#),
            ClientError
        );
        assert_eq!(class(404, ""), ServerError);
    }

    #[test]
    fn client_errors_never_fail_over_and_keep_their_status() {
        let e = classify_http(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), b"{}");
        assert!(!e.fails_over(&FailureClass::ALL));
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let e = AttemptError::new(FailureClass::Timeout, "slow");
        assert!(e.fails_over(&[FailureClass::Timeout]));
        assert!(!e.fails_over(&[FailureClass::RateLimited]));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(
            retry_after(&h),
            Some(Duration::from_millis(1500)),
            "the ms form wins"
        );
        let mut h = HeaderMap::new();
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn echoed_keys_are_redacted() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-abcdef"}}"#;
        let e = classify_http(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body)
            .redact("sk-live-abcdef");
        assert!(!e.message.contains("sk-live-abcdef"), "{}", e.message);
        assert!(e.message.contains("***"));
        let kept = e.upstream_body.unwrap();
        assert!(!String::from_utf8_lossy(&kept).contains("sk-live-abcdef"));
    }

    #[test]
    fn keys_escaped_in_json_are_redacted_in_their_decoded_form() {
        // `\u002d` is `-` and `\/` is `/`: a byte search for the key finds neither.
        let body = br#"{"error":{"message":"bad key sk\u002dlive\/abc\u002ddef","sk\u002dlive\/abc-def":1}}"#;
        let e = classify_http(StatusCode::BAD_REQUEST, &HeaderMap::new(), body)
            .redact("sk-live/abc-def");
        let kept = e.upstream_body.unwrap();
        let decoded: serde_json::Value = serde_json::from_slice(&kept).unwrap();
        assert!(
            !decoded.to_string().contains("sk-live/abc-def"),
            "{decoded}"
        );
        assert_eq!(decoded["error"]["message"], "bad key ***");
        assert!(!e.message.contains("sk-live/abc-def"), "{}", e.message);
    }

    #[test]
    fn a_body_without_the_key_is_kept_byte_for_byte() {
        let body = br#"{"error": {"message": "slow down"}}"#;
        let e = classify_http(StatusCode::BAD_REQUEST, &HeaderMap::new(), body).redact("sk-1234");
        assert_eq!(e.upstream_body.unwrap().as_ref(), body);
    }

    #[test]
    fn messages_come_from_the_provider_body() {
        let e = classify_http(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            br#"{"error":{"message":"slow down"}}"#,
        );
        assert_eq!(e.message, "HTTP 429: slow down");
    }
}
