//! A simulated Amazon Bedrock runtime (`bedrock-runtime.{region}.amazonaws.com`) on 127.0.0.1,
//! serving Converse and ConverseStream, with a simulated STS ([`sts`]) for web identity.
//!
//! [`MockProvider`] serves `POST /model/{modelId}/converse` (JSON) and
//! `/model/{modelId}/converse-stream` (`application/vnd.amazon.eventstream`, real binary
//! event-stream frames with CRCs, written by `aws-smithy-eventstream`'s encoder). Before
//! answering it checks what AWS checks ([`auth`]): a SigV4 `Authorization` header for service
//! `bedrock` in [`REGION`], signed with the static keys [`ACCESS_KEY_ID`] / [`SECRET_ACCESS_KEY`]
//! or with keys the simulated STS issued (session token required), recomputed with the
//! maintained `aws-sigv4` crate over the request's bytes; failures are AWS's 403 answers
//! (`MissingAuthenticationTokenException`, `IncompleteSignatureException`,
//! `UnrecognizedClientException`, `ExpiredTokenException`, `InvalidSignatureException`). Then
//! the body is validated as Converse validates it ([`validate`]; 400 `ValidationException`).
//!
//! Answers follow the current [`Behavior`]: text, or a `toolUse` of the first tool when the
//! request offers tools and its last message is a user turn without a `toolResult`. Errors are
//! Bedrock's shapes: a JSON `{"message"}` body with the type in `x-amzn-ErrorType`. Every
//! request is recorded and consumes the next queued [`Fault`] first; faults skip the checks.

use std::time::Duration;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http::{Method, Response};
use percent_decode::decode;
use serde_json::{Value, json};

use super::content::{self, Tokens, ToolCall, random_alphanumeric, word_pieces};
use super::server::{self, Api, Ending, JSON, Mock, Plan, SimBody};
pub use super::server::{Behavior, Recorded};
pub use auth::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

pub mod auth;
pub mod sts;
mod validate;

/// The content type of ConverseStream answers.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

// Bedrock's error messages, verbatim where the text is known.
const THROTTLED: &str = "Too many requests, please wait before trying again.";
const UNAVAILABLE: &str = "Bedrock is unable to process your request.";
const INTERNAL: &str = "The server encountered an internal error while processing the request.";
const CONTEXT: &str = "Input is too long for requested model.";
const BAD_PARAMETER: &str = "The model returned the following errors: temperature: must be \
                             less than or equal to 1";
const ACCESS_DENIED: &str = "You don't have access to the model with the specified model ID.";
const NOT_FOUND: &str = "The provided model identifier is invalid.";
const NOT_READY: &str = "Model is not ready for inference. Wait and try your request again.";
const STREAM_ERROR: &str = "The system encountered an unexpected error during processing. \
                            Try your request again.";
const QUOTA: &str = "Your request rate is too high. Reduce the frequency of requests.";

/// A simulated Bedrock runtime bound to a loopback port. Point a provider's `baseUrl` at
/// [`Mock::base_url`], `http://127.0.0.1:PORT`, with `region` [`REGION`].
pub type MockProvider = Mock<Bedrock>;

/// A scripted misbehaviour applied to exactly one Converse request.
///
/// Stream faults count content chunks: `messageStart`, a tool's `contentBlockStart` and each
/// `contentBlockDelta`. On a non-streamed request a stall leaves the body hanging, a mid-stream
/// error becomes a 500 `InternalServerException`, and truncation or abort cut the body off.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Any raw answer. `content-type: application/json` is added unless `headers` set one.
    Status {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// 429 `ThrottlingException`.
    Throttling,
    /// 429 `ServiceQuotaExceededException`.
    QuotaExceeded,
    /// 503 `ServiceUnavailableException`.
    ServiceUnavailable,
    /// 500 `InternalServerException`.
    InternalServer,
    /// 429 `ModelNotReadyException`.
    ModelNotReady,
    /// 403 `AccessDeniedException` (no access to the model).
    AccessDenied,
    /// 404 `ResourceNotFoundException`.
    NotFound,
    /// 400 `ValidationException` "Input is too long for requested model."
    ContextLength,
    /// 400 `ValidationException` for a bad parameter.
    BadRequest,
    /// Read the request and never answer.
    Hang,
    /// Close the connection without any response.
    Reset,
    /// Answer normally but wait this long before the head.
    SlowFirstToken(Duration),
    /// Send `after_chunks` content chunks, then go silent.
    StallMidStream { after_chunks: usize },
    /// Send `after_chunks` content chunks, then a `modelStreamErrorException` exception frame.
    ErrorMidStream { after_chunks: usize },
    /// Send `after_chunks` content chunks, then a `throttlingException` exception frame.
    ThrottledMidStream { after_chunks: usize },
    /// Send `after_chunks` content chunks, then end the body without `messageStop`/`metadata`.
    TruncateStream { after_chunks: usize },
    /// Send `after_chunks` content chunks, then abort the connection.
    AbortMidStream { after_chunks: usize },
    /// A 200 whose answer a guardrail stops after this many words of the reply (zero: before any
    /// content, with an empty `content` list): `stopReason: guardrail_intervened`.
    GuardrailIntervened { after_words: usize },
}

/// The Bedrock Converse wire format.
#[derive(Debug, Default)]
pub struct Bedrock;

/// A Converse call's path: `/model/{modelId}/converse` or `/converse-stream`.
#[derive(Debug, PartialEq, Eq)]
pub struct ConversePath {
    /// The model id, percent-decoded (ARNs and inference profile ids hold `:` and `/`).
    pub model: String,
    pub stream: bool,
}

/// The model and operation of a Converse path; `None` for any other path.
pub fn parse_path(path: &str) -> Option<ConversePath> {
    let rest = path.strip_prefix("/model/")?;
    let (model, operation) = rest.rsplit_once('/')?;
    let stream = match operation {
        "converse" => false,
        "converse-stream" => true,
        _ => return None,
    };
    // The id is one escaped path segment: a raw `/` would be another segment.
    if model.is_empty() || model.contains('/') {
        return None;
    }
    Some(ConversePath {
        model: decode(model)?,
        stream,
    })
}

impl Api for Bedrock {
    type Fault = Fault;
    const LABEL: &'static str = "Bedrock";
    const BASE_PATH: &'static str = "";
    const REQUEST_ID: Option<&'static str> = Some("x-amzn-requestid");

    fn is_generation(method: &Method, path: &str) -> bool {
        method == Method::POST && parse_path(path).is_some()
    }

    fn other(&self, _: &Method, _: &str) -> Response<SimBody> {
        error_response(404, "UnknownOperationException", "Not Found")
    }

    fn plan(fault: Fault, request: &Recorded) -> Plan {
        let ending = match fault {
            Fault::Hang => return Plan::Hang,
            Fault::Reset => return Plan::Reset,
            Fault::SlowFirstToken(delay) => return Plan::slow(delay),
            Fault::StallMidStream { after_chunks } => Ending::Stall(after_chunks),
            Fault::ErrorMidStream { after_chunks } => Ending::Error(after_chunks),
            Fault::ThrottledMidStream { after_chunks } => {
                // `Ending::Error` always sends the model-stream error; this one is built here.
                let answer = Answer::new(request, &Behavior::default());
                let error = || exception("throttlingException", THROTTLED);
                return Plan::Respond(stream_answer(
                    &answer,
                    &Behavior::default(),
                    Ending::Error(after_chunks),
                    error,
                ));
            }
            Fault::TruncateStream { after_chunks } => Ending::Truncate(after_chunks),
            Fault::AbortMidStream { after_chunks } => Ending::Abort(after_chunks),
            Fault::GuardrailIntervened { after_words } => {
                return Plan::Respond(guardrail_answer(request, after_words));
            }
            other => return Plan::Respond(fault_response(other)),
        };
        Plan::ending(ending)
    }

    fn reject(request: &Recorded) -> Option<Response<SimBody>> {
        if let Err(e) = auth::check(request) {
            return Some(error_response(e.status, e.kind, &e.message));
        }
        let why = validate::check(&request.body).err()?;
        Some(error_response(400, "ValidationException", &why))
    }

    fn answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
        let answer = Answer::new(request, behavior);
        if parse_path(&request.path).is_some_and(|p| p.stream) {
            let error = || exception("modelStreamErrorException", STREAM_ERROR);
            stream_answer(&answer, behavior, ending, error)
        } else {
            json_answer(&answer, &behavior.reply, ending)
        }
    }
}

/// Answers for the faults that are a single immediate response.
fn fault_response(fault: Fault) -> Response<SimBody> {
    let (status, kind, message) = match fault {
        Fault::Status {
            status,
            body,
            headers,
        } => return server::raw_response(status, body, headers),
        Fault::Throttling => (429, "ThrottlingException", THROTTLED),
        Fault::QuotaExceeded => (429, "ServiceQuotaExceededException", QUOTA),
        Fault::ServiceUnavailable => (503, "ServiceUnavailableException", UNAVAILABLE),
        Fault::ModelNotReady => (429, "ModelNotReadyException", NOT_READY),
        Fault::AccessDenied => (403, "AccessDeniedException", ACCESS_DENIED),
        Fault::NotFound => (404, "ResourceNotFoundException", NOT_FOUND),
        Fault::ContextLength => (400, "ValidationException", CONTEXT),
        Fault::BadRequest => (400, "ValidationException", BAD_PARAMETER),
        // `plan` handles every other fault itself; a server error is the honest fallback.
        _ => (500, "InternalServerException", INTERNAL),
    };
    error_response(status, kind, message)
}

/// The reply, token counts and tool call of one answer.
struct Answer {
    tokens: Tokens,
    tool: Option<(String, ToolCall)>,
}

impl Answer {
    fn new(request: &Recorded, behavior: &Behavior) -> Self {
        let tool = tool_call(&request.body);
        let tokens = Tokens::new(
            estimate_prompt_tokens(&request.body),
            behavior,
            tool.as_ref(),
        );
        let tool = tool.map(|call| (format!("tooluse_{}", random_alphanumeric(22)), call));
        Self { tokens, tool }
    }

    fn stop_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    /// Converse usage: `inputTokens` leaves out the tokens read from the cache.
    fn usage(&self) -> Value {
        let input = self.tokens.prompt - self.tokens.cached;
        json!({
            "inputTokens": input,
            "outputTokens": self.tokens.completion,
            "totalTokens": self.tokens.total(),
            "cacheReadInputTokens": self.tokens.cached,
            "cacheWriteInputTokens": 0,
        })
    }
}

fn json_answer(answer: &Answer, reply: &str, ending: Ending) -> Response<SimBody> {
    let block = match &answer.tool {
        None => json!({"text": reply}),
        Some((id, call)) => {
            json!({"toolUse": {"toolUseId": id, "name": call.name, "input": call.arguments}})
        }
    };
    let document = json!({
        "output": {"message": {"role": "assistant", "content": [block]}},
        "stopReason": answer.stop_reason(),
        "usage": answer.usage(),
        "metrics": {"latencyMs": 42},
    });
    let error = || error_response(500, "InternalServerException", INTERNAL);
    server::document(JSON, Bytes::from(document.to_string()), ending, error)
}

fn stream_answer(
    answer: &Answer,
    behavior: &Behavior,
    ending: Ending,
    error: impl FnOnce() -> Bytes,
) -> Response<SimBody> {
    let mut events = vec![event("messageStart", json!({"role": "assistant"}))];
    let delta = |delta: Value| {
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": delta}),
        )
    };
    match &answer.tool {
        None => {
            let words = word_pieces(&behavior.reply).into_iter();
            events.extend(words.map(|text| delta(json!({"text": text}))));
        }
        Some((id, call)) => {
            let start = json!({"toolUse": {"toolUseId": id, "name": call.name}});
            events.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": start}),
            ));
            let arguments = call.arguments_json();
            let pieces = content::json_pieces(&arguments).into_iter();
            events.extend(pieces.map(|input| delta(json!({"toolUse": {"input": input}}))));
        }
    }
    let content_chunks = events.len();
    events.extend([
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("messageStop", json!({"stopReason": answer.stop_reason()})),
        event(
            "metadata",
            json!({"usage": answer.usage(), "metrics": {"latencyMs": 42}}),
        ),
    ]);
    let delay = behavior.chunk_delay;
    server::event_stream(EVENT_STREAM, events, content_chunks, ending, error, delay)
}

/// The answer a guardrail stopped after `after_words` words of the default reply, streamed or
/// whole as the request asked.
fn guardrail_answer(request: &Recorded, after_words: usize) -> Response<SimBody> {
    let behavior = Behavior::default();
    let answer = Answer::new(request, &behavior);
    let words = word_pieces(&behavior.reply);
    let said: Vec<&str> = words.into_iter().take(after_words).collect();
    let usage = answer.usage();
    let stop = "guardrail_intervened";
    if parse_path(&request.path).is_some_and(|p| p.stream) {
        let mut events = vec![event("messageStart", json!({"role": "assistant"}))];
        events.extend(said.iter().map(|text| {
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": text}}),
            )
        }));
        if !said.is_empty() {
            events.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
        }
        events.extend([
            event("messageStop", json!({"stopReason": stop})),
            event(
                "metadata",
                json!({"usage": usage, "metrics": {"latencyMs": 42}}),
            ),
        ]);
        let content_chunks = events.len();
        let error = || exception("modelStreamErrorException", STREAM_ERROR);
        server::event_stream(
            EVENT_STREAM,
            events,
            content_chunks,
            Ending::Complete,
            error,
            behavior.chunk_delay,
        )
    } else {
        let content: Vec<Value> = if said.is_empty() {
            Vec::new()
        } else {
            vec![json!({"text": said.concat()})]
        };
        let document = json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 42},
        });
        let error = || error_response(500, "InternalServerException", INTERNAL);
        server::document(
            JSON,
            Bytes::from(document.to_string()),
            Ending::Complete,
            error,
        )
    }
}

// === frames ===

/// One event-stream frame with string headers.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut message = Message::new(Bytes::copy_from_slice(payload));
    for (name, value) in headers {
        let value = HeaderValue::String(value.to_string().into());
        message = message.add_header(Header::new(name.to_string(), value));
    }
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out)
        .expect("string headers and a payload always encode");
    Bytes::from(out)
}

/// A ConverseStream event. Like Bedrock, each payload carries a `p` field of padding (so that
/// frame lengths do not reveal the text), which clients ignore.
fn event(kind: &str, mut payload: Value) -> Bytes {
    let padding = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    payload["p"] = json!(&padding[..(kind.len() * 7) % padding.len()]);
    let headers = [
        (":event-type", kind),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ];
    frame(&headers, payload.to_string().as_bytes())
}

/// An exception frame inside a stream (`:message-type: exception`).
fn exception(kind: &str, message: &str) -> Bytes {
    let headers = [
        (":exception-type", kind),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    ];
    frame(&headers, json!({"message": message}).to_string().as_bytes())
}

// === helpers ===

/// Bedrock's error answer: `{"message"}` with the type in `x-amzn-ErrorType`.
pub(crate) fn error_response(status: u16, kind: &str, message: &str) -> Response<SimBody> {
    let namespace = if kind.ends_with("SignatureException")
        || kind == "UnrecognizedClientException"
        || kind == "MissingAuthenticationTokenException"
        || kind == "ExpiredTokenException"
    {
        "http://internal.amazon.com/coral/com.amazon.coral.service/"
    } else {
        "http://internal.amazon.com/coral/com.amazon.bedrock/"
    };
    let response = server::json_response(status, &json!({"message": message}));
    server::with_header(
        response,
        "x-amzn-errortype",
        Some(format!("{kind}:{namespace}")),
    )
}

/// A call to the first offered tool when the last message is a user turn without a tool
/// result: the simulated model always wants a tool before it answers.
fn tool_call(body: &Value) -> Option<ToolCall> {
    let last = body["messages"].as_array()?.last()?;
    let blocks = last["content"].as_array()?;
    if last["role"] != "user" || blocks.iter().any(|b| b.get("toolResult").is_some()) {
        return None;
    }
    let spec = &body.pointer("/toolConfig/tools")?.as_array()?.first()?["toolSpec"];
    Some(ToolCall::new(
        spec["name"].as_str()?,
        &spec["inputSchema"]["json"],
    ))
}

/// A quarter token per character of message and system text plus four per message.
fn estimate_prompt_tokens(body: &Value) -> u32 {
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let chars: usize = messages
        .iter()
        .map(|m| content::text_chars(&m["content"]))
        .sum();
    let system = content::text_chars(&body["system"]);
    content::estimate_tokens(chars + system, messages.len())
}

mod percent_decode {
    /// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
    pub fn decode(s: &str) -> Option<String> {
        let mut out = Vec::with_capacity(s.len());
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).ok()
    }
}

#[cfg(test)]
mod tests;
