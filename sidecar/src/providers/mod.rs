//! The provider seam: one module per wire protocol behind the small [`Provider`] trait.
//!
//! The request path speaks OpenAI Chat Completions internally: a client's request arrives as (or
//! is converted to, see [`crate::convert`]) an OpenAI-format JSON object, and every provider
//! turns it into its own request and turns its answers back into OpenAI-format completions and
//! chunks. `api: OpenAI` covers DeepSeek, Qwen, Mistral, vLLM and the like with no module of
//! their own.

pub mod openai;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};
use switchyard_crds::v1alpha1::{Api, FailureClass};

use crate::failure::{self, AttemptError};
use crate::sse::SseEvent;
use crate::state::UpstreamRt;

/// Client headers that are never sent upstream, whatever `forwardHeaders` says: the sidecar
/// authenticates with the pool's key, not the caller's.
pub const NEVER_FORWARDED: [&str; 5] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
];

/// One upstream call: the OpenAI-format request and where it goes.
pub struct Call<'a> {
    pub upstream: &'a UpstreamRt,
    /// The provider's model name for this target.
    pub model: &'a str,
    pub request: &'a Map<String, Value>,
    pub stream: bool,
    pub client_headers: &'a HeaderMap,
}

/// Tokens a provider reported for one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_input: u64,
    pub output: u64,
}

/// A complete answer, as an OpenAI `chat.completion` body.
pub struct Completion {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// One decoded stream event.
#[derive(Debug)]
pub enum Chunk {
    /// An OpenAI `chat.completion.chunk` body.
    Data {
        json: Bytes,
        /// Carries content, a tool call, a role or a finish reason: the stream may commit.
        commits: bool,
        usage: Option<Usage>,
        /// Carries nothing but usage (the chunk a client that did not ask for usage must not see).
        usage_only: bool,
    },
    /// The provider's end of stream.
    Done,
    /// The provider reported an error inside the stream.
    Error(AttemptError),
}

/// Turns a provider's stream events into [`Chunk`]s; stateful for protocols that need it.
pub trait StreamDecoder: Send {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>);
}

/// A wire protocol.
pub trait Provider: Sync {
    /// The protocol this module speaks.
    fn api(&self) -> Api;
    /// The upstream request for `call`.
    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError>;
    /// A successful non-streamed answer; malformed bodies are `ServerError`s.
    fn parse_response(&self, body: Bytes) -> Result<Completion, AttemptError>;
    /// A decoder for one streamed answer.
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;
    /// An error answer. The shared classification fits every provider we know; a protocol with
    /// quirks overrides it.
    fn classify_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
        failure::classify_http(status, headers, body)
    }
}

/// The module for `api`, or why there is none yet.
pub fn for_api(api: Api) -> Result<&'static dyn Provider, AttemptError> {
    match api {
        Api::OpenAI => Ok(&openai::OpenAi),
        // TODO(translation): Anthropic and Gemini modules arrive with the translation issue.
        Api::Anthropic | Api::Gemini => Err(AttemptError::new(
            FailureClass::ServerError,
            format!("api {api:?} upstreams are not supported by this sidecar version"),
        )),
    }
}

/// Headers every upstream request carries, plus the client headers the provider may see.
pub fn forwarded_headers(call: &Call<'_>, headers: &mut HeaderMap) {
    for name in &call.upstream.def.forward_headers {
        if NEVER_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        for value in call.client_headers.get_all(name.as_str()) {
            if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
                headers.append(name, value.clone());
            }
        }
    }
    headers.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(concat!("switchyard-sidecar/", env!("CARGO_PKG_VERSION"))),
    );
}
