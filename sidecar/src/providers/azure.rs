//! `api: AzureOpenAI`: OpenAI's Chat Completions as an Azure OpenAI resource serves it
//! (docs/reference/crds.md#azure-openai).
//!
//! The body is OpenAI's, so [`OpenAi`] builds it and reads the answers; Azure differs in three
//! places, all handled here:
//! - the URL: the `/openai/v1` API is `{baseUrl}/chat/completions` with `model` in the body;
//!   with `azure.apiVersion` set, a classic deployment
//!   `{baseUrl}/openai/deployments/{model}/chat/completions?api-version=V`, the model (the
//!   deployment's name) path-escaped;
//! - the key goes in the `api-key` header, not `Authorization` (which Azure reads as an Entra ID
//!   token);
//! - the content filter: its 400 (`code: content_filter`, `innererror.code:
//!   ResponsibleAIPolicyViolation`) is `ContentFiltered`, and streams carry annotation-only chunks
//!   (a first one with empty `choices` and `prompt_filter_results`, empty-delta ones with
//!   `content_filter_results`) that are dropped here rather than reach clients as empty noise. A
//!   stream the filter stops before any content is a `ContentFiltered` failure (the role chunk is
//!   held back until content shows, so that it is still one); stopped after some content, the
//!   client gets what came and `finish_reason: "content_filter"`, as Azure sends it.
//!
//! 429s carry `retry-after-ms` (and `retry-after`), which [`failure::retry_after`] reads.
//! Embeddings ([`embeddings_url`]) take the same two URL shapes and the same header; the body and
//! answer are OpenAI's (`super::embeddings`).

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use switchyard_crds::v1alpha1::{Api, FailureClass};

use super::openai::OpenAi;
use super::{Call, Chunk, Completion, Provider, StreamDecoder, malformed, secret_header};
use crate::convert::ClientApi;
use crate::convert::sse::SseEvent;
use crate::failure::{self, AttemptError};

/// The Azure OpenAI protocol.
pub struct Azure;

/// What is escaped in a deployment name or an api-version: everything but RFC 3986's unreserved
/// characters, so a `/`, `?` or `#` in a name cannot change the URL's shape.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Provider for Azure {
    fn api(&self) -> Api {
        Api::AzureOpenAI
    }

    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
        let def = &call.upstream.def;
        // The body (model, stream, stream_options.include_usage) is exactly OpenAI's.
        let mut request = OpenAi.build_request(call)?;
        let url = chat_url(&def.base_url, def.azure_api_version.as_deref(), call.model);
        *request.uri_mut() = url.parse().map_err(|e| {
            AttemptError::new(FailureClass::ServerError, format!("bad upstream URL: {e}"))
        })?;
        authorize(&mut request, def.api_key.as_ref())?;
        Ok(request)
    }

    fn parse_response(
        &self,
        body: Bytes,
        client: ClientApi,
        model: &str,
    ) -> Result<Completion, AttemptError> {
        // A whole answer is OpenAI's plus filter annotations, which OpenAI clients ignore.
        OpenAi.parse_response(body, client, model)
    }

    fn stream_decoder(&self, client: ClientApi, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(Decoder {
            inner: OpenAi.stream_decoder(client, model),
            held_role: None,
            content_seen: false,
        })
    }

    fn classify_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
        let mut error = failure::classify_http(status, headers, body);
        if let Some(class) = quirk(status, body) {
            error.class = class;
        }
        error
    }
}

/// The chat URL: the `/openai/v1` API's when `api_version` is `None`, else the classic
/// deployment's.
pub fn chat_url(base_url: &str, api_version: Option<&str>, model: &str) -> String {
    url(base_url, api_version, model, "chat/completions")
}

/// The embeddings URL, in the same two shapes as [`chat_url`].
pub fn embeddings_url(base_url: &str, api_version: Option<&str>, model: &str) -> String {
    url(base_url, api_version, model, "embeddings")
}

fn url(base_url: &str, api_version: Option<&str>, model: &str, operation: &str) -> String {
    match api_version {
        None => format!("{base_url}/{operation}"),
        Some(version) => format!(
            "{base_url}/openai/deployments/{}/{operation}?api-version={}",
            utf8_percent_encode(model, COMPONENT),
            utf8_percent_encode(version, COMPONENT),
        ),
    }
}

/// Sets the pool's key as Azure takes it: `api-key`, and no `Authorization`.
pub fn authorize(
    request: &mut http::Request<Full<Bytes>>,
    key: Option<&switchyard_crds::secret::SecretString>,
) -> Result<(), AttemptError> {
    let headers = request.headers_mut();
    headers.remove(header::AUTHORIZATION);
    if let Some(key) = key {
        headers.insert("api-key", secret_header(key.expose())?);
    }
    Ok(())
}

/// Where Azure's answers mean something else than the shared classification reads in them.
fn quirk(status: StatusCode, body: &[u8]) -> Option<FailureClass> {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let value = value.as_ref();
    let code = |pointer: &str| {
        value
            .and_then(|v| v.pointer(pointer))
            .and_then(Value::as_str)
    };
    match status.as_u16() {
        // The prompt (or, with some filter settings, the answer) tripped the content filter.
        400..=499
            if code("/error/code") == Some("content_filter")
                || code("/error/innererror/code") == Some("ResponsibleAIPolicyViolation") =>
        {
            Some(FailureClass::ContentFiltered)
        }
        400 if code("/error/code") == Some("context_length_exceeded") => {
            Some(FailureClass::ContextLengthExceeded)
        }
        // Azure's 429s are rate and quota limits that pass with time ("exceeded token rate
        // limit of your current OpenAI S0 pricing tier"); none means an empty balance.
        429 => Some(FailureClass::RateLimited),
        _ => None,
    }
}

/// OpenAI's decoder behind Azure's annotation chunks and output filter.
struct Decoder {
    inner: Box<dyn StreamDecoder>,
    /// A role chunk without content, held until the next chunk says whether the filter stopped
    /// the answer before anything was said.
    held_role: Option<SseEvent>,
    /// Content, a tool call or a refusal has been passed on.
    content_seen: bool,
}

impl Decoder {
    fn release(&mut self, out: &mut Vec<Chunk>) {
        if let Some(role) = self.held_role.take() {
            self.inner.decode(role, out);
        }
    }
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        if event.data.as_ref() == b"[DONE]" {
            self.release(out);
            return self.inner.decode(event, out);
        }
        let chunk: Value = match crate::convert::parse_json(&event.data) {
            Ok(chunk) => chunk,
            Err(e) => return out.push(Chunk::Error(malformed(&e))),
        };
        if !chunk.is_object() {
            return out.push(Chunk::Error(malformed(
                &"a stream chunk that is not an object",
            )));
        }
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            self.held_role = None;
            return self.inner.decode(event, out);
        }
        let choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let has_usage = chunk.get("usage").is_some_and(|u| !u.is_null());
        if !has_usage && !choices.iter().any(carries_something) {
            // `prompt_filter_results` alone, or `content_filter_results` on an empty delta.
            return;
        }
        if !self.content_seen
            && let Some(filtered) = choices.iter().find(|c| finish(c) == Some("content_filter"))
        {
            self.held_role = None;
            return out.push(Chunk::Error(filtered_error(filtered)));
        }
        let says_something = choices.iter().any(has_content);
        if !self.content_seen
            && !says_something
            && !has_usage
            && self.held_role.is_none()
            && choices.iter().all(|c| finish(c).is_none())
        {
            self.held_role = Some(event);
            return;
        }
        self.content_seen |= says_something;
        self.release(out);
        self.inner.decode(event, out);
    }

    fn end(&mut self, out: &mut Vec<Chunk>) {
        self.release(out);
        self.inner.end(out);
    }
}

fn finish(choice: &Value) -> Option<&str> {
    choice.get("finish_reason").and_then(Value::as_str)
}

/// Whether a choice holds anything a client reads: a delta field, a finish reason, log
/// probabilities. Azure's filter annotations do not count.
fn carries_something(choice: &Value) -> bool {
    let set = |key: &str| choice.get(key).is_some_and(|v| !v.is_null());
    let delta = choice.get("delta").and_then(Value::as_object);
    set("finish_reason")
        || set("logprobs")
        || delta.is_some_and(|d| d.values().any(|v| !v.is_null()))
}

/// Whether a choice's delta says something: text, a tool call, a refusal or reasoning.
fn has_content(choice: &Value) -> bool {
    let Some(delta) = choice.get("delta") else {
        return false;
    };
    let text = |key: &str| {
        delta
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    };
    text("content")
        || text("refusal")
        || text("reasoning_content")
        || delta.get("tool_calls").is_some_and(|v| !v.is_null())
        || delta.get("function_call").is_some_and(|v| !v.is_null())
}

/// The failure for an answer the filter stopped before it said anything, naming the categories
/// it flagged.
fn filtered_error(choice: &Value) -> AttemptError {
    let mut message = String::from("the provider's content filter stopped the answer");
    let results = choice
        .get("content_filter_results")
        .and_then(Value::as_object);
    let flagged: Vec<String> = results
        .into_iter()
        .flatten()
        .filter(|(_, r)| r.get("filtered") == Some(&Value::Bool(true)))
        .map(
            |(category, r)| match r.get("severity").and_then(Value::as_str) {
                Some(severity) => format!("{category}: {severity}"),
                None => category.clone(),
            },
        )
        .collect();
    if !flagged.is_empty() {
        let _ = write!(message, " ({})", flagged.join(", "));
    }
    AttemptError::new(FailureClass::ContentFiltered, message)
}

#[cfg(test)]
mod tests;
