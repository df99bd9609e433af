//! The provider seam: one module per wire protocol behind the small [`Provider`] trait.
//!
//! The request path speaks OpenAI Chat Completions internally (the hub format, see
//! [`crate::convert`]). Each provider turns a hub request into its own, and its answers into the
//! client's format: straight through when the client speaks the provider's protocol, otherwise
//! via the hub. `api: OpenAI` covers DeepSeek, Qwen, Mistral, vLLM and the like with no module of
//! their own.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod embeddings;
pub mod gemini;
pub mod openai;
pub mod responses;
pub mod vertex;
#[cfg(test)]
mod whole_tests;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};
use switchyard_crds::v1alpha1::{Api, FailureClass, Publisher};

use crate::convert::assemble::Assembler;
use crate::convert::sse::SseEvent;
use crate::convert::{ClientApi, Usage, to_client};
use crate::failure::{self, AttemptError};
use crate::upstream::credentials::Credential;
use crate::upstream::{Prepared, UpstreamRt};

/// Client headers that are never sent upstream, whatever `forwardHeaders` says: the sidecar
/// authenticates with the pool's key, not the caller's.
pub const NEVER_FORWARDED: [&str; 5] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
];

/// Delta fields that make a chunk "carry content, a tool call or a role": the commit point.
pub const COMMITTING_DELTA_FIELDS: [&str; 6] = [
    "role",
    "content",
    "tool_calls",
    "refusal",
    "reasoning_content",
    "function_call",
];

/// One upstream call.
pub struct Call<'a> {
    pub upstream: &'a UpstreamRt,
    /// The provider's model name for this target.
    pub model: &'a str,
    /// The request in the hub (OpenAI) format.
    pub request: &'a Map<String, Value>,
    /// The client's own body, when the client does not speak OpenAI: a provider of the client's
    /// protocol forwards it instead of a conversion of a conversion.
    pub original: Option<&'a Map<String, Value>>,
    pub client: ClientApi,
    pub stream: bool,
    pub client_headers: &'a HeaderMap,
    /// Signing keys or an access token from the upstream's credential source, if it has one.
    pub credential: &'a Credential,
    /// The target model's publisher (Vertex AI serves Google's and Anthropic's models).
    pub publisher: Publisher,
}

/// A complete answer, in the client's format.
pub struct Completion {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// One decoded stream event.
#[derive(Debug)]
pub enum Chunk {
    /// An OpenAI `chat.completion.chunk` body (the hub format).
    Data {
        json: Bytes,
        /// Carries content, a tool call, a role or a finish reason: the stream may commit.
        commits: bool,
        usage: Option<Usage>,
        /// Carries nothing but usage (the chunk a client that did not ask for usage must not see).
        usage_only: bool,
    },
    /// An event already in the client's format (client and provider speak the same protocol).
    Raw {
        frame: Bytes,
        commits: bool,
        usage: Option<Usage>,
    },
    /// The provider's end of stream.
    Done,
    /// The provider reported an error inside the stream.
    Error(AttemptError),
}

/// How a provider's stream is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events.
    Sse,
    /// AWS's binary `application/vnd.amazon.eventstream` (Bedrock), read as named events.
    AwsEventStream,
}

/// Turns a provider's stream events into [`Chunk`]s; stateful for protocols that need it.
pub trait StreamDecoder: Send {
    /// The framing of the events this decoder reads.
    fn framing(&self) -> Framing {
        Framing::Sse
    }
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>);
    /// The body ended without a transport error. Protocols that have no end-of-stream event
    /// (Gemini) emit [`Chunk::Done`] here when the answer was complete.
    fn end(&mut self, _out: &mut Vec<Chunk>) {}
    /// Reads one event straight into a whole OpenAI-format answer, where decoding it into hub
    /// chunk bytes and assembling those would read the same JSON twice: OpenAI's events are hub
    /// chunks as they are, Anthropic's decoder builds its chunks as trees. Must come to what
    /// [`Self::decode`] and assembling the chunks come to (the same refusals, commit point,
    /// usage and end), and keep whatever state [`Self::end`] relies on. `None`, the default, for
    /// a decoder that does not: it is asked with the first event, which is then left untouched
    /// for [`Self::decode`], and one that answers `Some` answers `Some` for every event.
    fn decode_whole(
        &mut self,
        _event: &SseEvent,
        _answer: &mut Assembler,
    ) -> Option<Result<Decoded, AttemptError>> {
        None
    }
}

/// What [`StreamDecoder::decode_whole`] read of one event besides what went into the answer.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// The provider's end of stream.
    pub done: bool,
    /// As [`Chunk::Data`]'s.
    pub commits: bool,
    pub usage: Option<Usage>,
}

/// A wire protocol.
pub trait Provider: Sync {
    /// The protocol this module speaks.
    fn api(&self) -> Api;
    /// The upstream request for `call`.
    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError>;
    /// A successful non-streamed answer, in the client's format; malformed bodies are
    /// `ServerError`s. Not on the request path, which always streams upstream: it is the
    /// reference reading of a provider's whole answer that tests hold assembled answers to.
    /// `model` is the target's: protocols whose answers do not name it (Bedrock) name it so.
    fn parse_response(
        &self,
        body: Bytes,
        client: ClientApi,
        model: &str,
    ) -> Result<Completion, AttemptError>;
    /// A decoder for one streamed answer of `model` to a client of `client`'s format.
    fn stream_decoder(&self, client: ClientApi, model: &str) -> Box<dyn StreamDecoder>;
    /// The parts of this protocol's requests to `def` that are the same for every request
    /// (its `host` is filled in by the caller).
    fn prepare(&self, _def: &switchyard_crds::table::Upstream) -> Prepared {
        Prepared::default()
    }
    /// An error answer. The shared classification fits every provider we know; a protocol with
    /// quirks overrides it.
    fn classify_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
        failure::classify_http(status, headers, body)
    }
}

/// The module for `api`.
pub fn for_api(api: Api) -> Result<&'static dyn Provider, AttemptError> {
    match api {
        Api::OpenAI => Ok(&openai::OpenAi),
        Api::Anthropic => Ok(&anthropic::Anthropic),
        Api::Gemini => Ok(&gemini::Gemini),
        Api::AzureOpenAI => Ok(&azure::Azure),
        Api::Bedrock => Ok(&bedrock::Bedrock),
        Api::VertexAI => Ok(&vertex::Vertex),
    }
}

/// A JSON POST to `uri` with the headers every upstream request carries and the client headers
/// the provider may see. The caller adds the provider's auth header.
pub fn post_json<U>(
    uri: U,
    body: Vec<u8>,
    call: &Call<'_>,
) -> Result<http::Request<Full<Bytes>>, AttemptError>
where
    http::Uri: TryFrom<U>,
    <http::Uri as TryFrom<U>>::Error: Into<http::Error>,
{
    let mut request = http::Request::post(uri)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| {
            AttemptError::new(FailureClass::ServerError, format!("bad upstream URL: {e}"))
        })?;
    // The `Host` hyper-util would add when the request goes, made once per upstream.
    let host = match (&call.upstream.prepared.host, request.uri().authority()) {
        (Some((authority, host)), Some(to)) if to == authority => Some(host.clone()),
        _ => None,
    };
    let headers = request.headers_mut();
    for name in &call.upstream.def.forward_headers {
        if NEVER_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
            for value in call.client_headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    if let Some(host) = host {
        headers.entry(header::HOST).or_insert(host);
    }
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("switchyard-sidecar/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let accept = if call.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    Ok(request)
}

/// A header value holding a secret: marked sensitive so that hyper never logs it.
pub fn secret_header(value: &str) -> Result<HeaderValue, AttemptError> {
    let mut value = HeaderValue::try_from(value).map_err(|_| {
        AttemptError::new(
            FailureClass::AuthError,
            "the provider key is not a valid header value",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A client body with its `model` and `stream` replaced, serialized without cloning the
/// (possibly large) message list.
pub struct WithModel<'a> {
    pub body: &'a Map<String, Value>,
    pub model: &'a str,
    pub stream: bool,
}

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        for (key, value) in self.body {
            if key != "model" && key != "stream" {
                map.serialize_entry(key, value)?;
            }
        }
        if self.stream {
            map.serialize_entry("stream", &true)?;
        } else if self.body.contains_key("stream") {
            map.serialize_entry("stream", &false)?;
        }
        map.end()
    }
}

/// A hub chunk built by a converter, with its commit and usage flags.
pub fn hub_chunk(chunk: &Value, usage: Option<Usage>) -> Chunk {
    let choices = choices(chunk);
    Chunk::Data {
        json: crate::convert::json_bytes(chunk),
        commits: commits(chunk),
        usage,
        usage_only: choices.is_empty() && usage.is_some(),
    }
}

fn choices(chunk: &Value) -> &[Value] {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// Whether a hub chunk built by a converter commits the stream (see [`Chunk::Data`]).
pub fn commits(chunk: &Value) -> bool {
    choices(chunk).iter().any(|c| {
        c.get("finish_reason").is_some_and(|f| !f.is_null())
            || COMMITTING_DELTA_FIELDS.iter().any(|k| {
                c.get("delta")
                    .and_then(|d| d.get(*k))
                    .is_some_and(|v| !v.is_null())
            })
    })
}

/// A hub completion in the client's format.
pub fn completion_for(client: ClientApi, hub: &Value, usage: Option<Usage>) -> Completion {
    Completion {
        body: to_client::answer(client, hub),
        usage,
    }
}

/// Seconds since the epoch, for the `created` field of converted answers.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn malformed(e: &dyn std::fmt::Display) -> AttemptError {
    AttemptError::new(
        FailureClass::ServerError,
        format!("malformed provider answer: {e}"),
    )
}

/// The JSON body of a built upstream request (a `Full` body is ready at once).
#[cfg(test)]
pub(crate) fn sent_json(request: http::Request<Full<Bytes>>) -> Value {
    use http_body_util::BodyExt;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let collect = request.into_body().collect();
    let std::task::Poll::Ready(Ok(collected)) =
        std::future::Future::poll(std::pin::pin!(collect), &mut cx)
    else {
        panic!("a Full body is ready at once")
    };
    serde_json::from_slice(&collected.to_bytes()).expect("upstream bodies are JSON")
}
