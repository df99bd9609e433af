//! A simulated OpenAI Chat Completions provider on 127.0.0.1 with scripted fault injection.
//!
//! [`MockProvider`] serves `POST /v1/chat/completions` (JSON and SSE), `POST /v1/embeddings`
//! (checked strictly, deterministic vectors: [`super::embeddings`]), `POST /v1/responses` (the
//! Responses API, checked strictly, JSON and typed events: [`super::responses`]) and
//! `GET /v1/models` in
//! OpenAI's real wire format, error bodies included, and answers anything else with OpenAI's 404
//! "Invalid URL" error. Every chat request is recorded, then consumes the next queued [`Fault`];
//! without one it gets the default fault, if set, or else a normal answer shaped by the current
//! [`Behavior`]: text, or a call to the first tool when the request offers `tools` and its last
//! message is the user's. Streamed events leave as separate body frames on their own schedule, so
//! chunk delays, stalls and truncations are real on the wire. The server itself is
//! [`super::server`], shared with the other simulators.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::content::{self, Tokens, ToolCall, random_alphanumeric, word_pieces};
use super::server::{self, Api, EVENT_STREAM, Ending, JSON, Mock, Plan, SimBody, flag};
pub use super::server::{Behavior, Recorded};
use super::{embeddings, responses};

const DEFAULT_MODELS: [&str; 2] = ["gpt-4o", "gpt-4o-mini"];
const FINGERPRINT: &str = "fp_sim";
const INVALID: &str = "invalid_request_error";
const CHAT: &str = "/v1/chat/completions";
const EMBEDDINGS: &str = "/v1/embeddings";
const RESPONSES: &str = "/v1/responses";
/// Valid-looking JSON cut short, as a misbehaving proxy in front of a provider might send it.
const GARBAGE: &[u8] = br#"{"id":"chatcmpl-sim","object":"chat.completion","choices":[{"ind"#;
// OpenAI's error messages, verbatim where the text is known.
const SERVER_ERROR: &str =
    "The server had an error while processing your request. Sorry about that!";
const OVERLOADED: &str = "The engine is currently overloaded, please try again later";
const OVERLOADED_529: &str = "The server is overloaded, please try again later";
const QUOTA: &str = "You exceeded your current quota, please check your plan and billing details.";
const BAD_KEY: &str = "Incorrect API key provided: sk-***. You can find your API key at \
                       https://platform.openai.com/account/api-keys.";
const CONTEXT: &str = "This model's maximum context length is 128000 tokens. However, your \
                       messages resulted in 130000 tokens. Please reduce the length of the \
                       messages.";
const TEMPERATURE: &str = "Invalid 'temperature': decimal above maximum value. Expected a value \
                           <= 2, but got 3 instead.";
/// Follows "Rate limit reached for {model}".
const RATE_LIMIT: &str = "in organization org-simulated on requests per min (RPM): Limit 3, \
                          Used 3, Requested 1. Please try again in 20s. Visit \
                          https://platform.openai.com/account/rate-limits to learn more.";
const NOT_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely \
                        means you aren't using your HTTP library correctly. The OpenAI API \
                        expects a JSON payload, but what was sent was not valid JSON. If you have \
                        trouble figuring out how to fix this, please contact us through our help \
                        center at help.openai.com.)";

/// A simulated OpenAI-compatible upstream bound to a loopback port.
///
/// The server runs on the current tokio runtime until [`Mock::shutdown`] is called or the value
/// is dropped. Point a provider's base URL at [`Mock::base_url`], `http://127.0.0.1:PORT/v1`.
pub type MockProvider = Mock<OpenAI>;

/// A scripted misbehaviour applied to exactly one chat request.
///
/// Faults that break a stream (`StallMidStream`, `ErrorMidStream`, `TruncateStream`,
/// `AbortMidStream`) count "content chunks": the role chunk plus one per word (or, for a tool call,
/// one per piece of the arguments), capped at their number. On a non-streamed request a stall leaves the body hanging after the head, a mid-stream
/// error becomes a 500, and truncation or abort cuts the body off at the transport.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Any raw answer. `content-type: application/json` is added unless `headers` set one.
    Status {
        /// The HTTP status; an invalid code becomes 500.
        status: u16,
        /// The body, sent as-is.
        body: String,
        /// Extra response headers; invalid names or values are skipped.
        headers: Vec<(String, String)>,
    },
    /// 429 with OpenAI's `rate_limit_exceeded` body.
    RateLimited {
        /// The `Retry-After` header value, if any (seconds or an HTTP date).
        retry_after: Option<String>,
    },
    /// 429 with code `insufficient_quota`: the account is out of credits, so retrying won't help.
    InsufficientQuota,
    /// 500 with OpenAI's `server_error` body.
    ServerError,
    /// 503 "The engine is currently overloaded, please try again later".
    Overloaded,
    /// 529 with an overloaded body in OpenAI's error shape.
    Status529,
    /// 401 with OpenAI's `invalid_api_key` body.
    Unauthorized,
    /// 400 with OpenAI's `context_length_exceeded` body and message text.
    ContextLength,
    /// 400 `invalid_request_error` for a bad parameter: a plain client error.
    BadRequest,
    /// 200 with `content-type: application/json` and a body that is not JSON.
    Garbage,
    /// Read the request and never answer, until the client or shutdown closes the connection.
    Hang,
    /// Close the connection without any response.
    Reset,
    /// Answer normally but wait this long (instead of [`Behavior::latency`]) before the head.
    SlowFirstToken(Duration),
    /// Send `after_chunks` content chunks, then go silent until the client or shutdown hangs up.
    StallMidStream {
        /// Content chunks sent before the stall.
        after_chunks: usize,
    },
    /// Send `after_chunks` content chunks, then a `data: {"error":{...}}` event, and end the body.
    ErrorMidStream {
        /// Content chunks sent before the error event.
        after_chunks: usize,
    },
    /// Send `after_chunks` content chunks, then end the body cleanly without `[DONE]`.
    TruncateStream {
        /// Content chunks sent before the body ends.
        after_chunks: usize,
    },
    /// Send `after_chunks` content chunks, then abort the connection mid-body, so the client sees
    /// a transport error rather than a clean end.
    AbortMidStream {
        /// Content chunks sent before the abort.
        after_chunks: usize,
    },
}

/// The OpenAI Chat Completions wire format, and the model list `GET /v1/models` serves.
#[derive(Debug)]
pub struct OpenAI {
    models: Mutex<Vec<String>>,
}

/// The id, timestamp, model, usage and tool call shared by every document of one answer.
struct Completion<'a> {
    id: String,
    created: u64,
    model: &'a str,
    usage: Value,
    tool: Option<(String, ToolCall)>,
}

// === impl MockProvider ===

impl Mock<OpenAI> {
    /// Replaces the model ids listed by `GET /v1/models` (default `gpt-4o`, `gpt-4o-mini`).
    pub fn set_models(&self, models: impl IntoIterator<Item = impl Into<String>>) {
        *server::lock(&self.api().models) = models.into_iter().map(Into::into).collect();
    }
}

// === impl OpenAI ===

impl Default for OpenAI {
    fn default() -> Self {
        let models = DEFAULT_MODELS.map(str::to_owned).to_vec();
        Self {
            models: Mutex::new(models),
        }
    }
}

impl Api for OpenAI {
    type Fault = Fault;
    const LABEL: &'static str = "OpenAI";
    const BASE_PATH: &'static str = "/v1";
    const REQUEST_ID: Option<&'static str> = Some("x-request-id");

    fn is_generation(method: &Method, path: &str) -> bool {
        method == Method::POST && (path == CHAT || path == EMBEDDINGS || path == RESPONSES)
    }

    fn other(&self, method: &Method, path: &str) -> Response<SimBody> {
        if method == Method::GET && path == "/v1/models" {
            let model = |id| json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"});
            let data: Vec<Value> = server::lock(&self.models).iter().map(model).collect();
            return server::json_response(200, &json!({"object": "list", "data": data}));
        }
        let message = format!("Invalid URL ({method} {path})");
        error_response(404, &message, INVALID, None, None)
    }

    fn plan(fault: Fault, request: &Recorded) -> Plan {
        let ending = match fault {
            Fault::Hang => return Plan::Hang,
            Fault::Reset => return Plan::Reset,
            Fault::SlowFirstToken(delay) => return Plan::slow(delay),
            Fault::StallMidStream { after_chunks } => Ending::Stall(after_chunks),
            Fault::ErrorMidStream { after_chunks } => Ending::Error(after_chunks),
            Fault::TruncateStream { after_chunks } => Ending::Truncate(after_chunks),
            Fault::AbortMidStream { after_chunks } => Ending::Abort(after_chunks),
            other => {
                let model = request.model().unwrap_or("unknown");
                return Plan::Respond(fault_response(other, model));
            }
        };
        Plan::ending(ending)
    }

    fn reject(request: &Recorded) -> Option<Response<SimBody>> {
        if request.path == EMBEDDINGS {
            let (message, param) = embeddings::check_openai(&request.body).err()?;
            return Some(error_response(400, &message, INVALID, param, None));
        }
        if request.path == RESPONSES {
            let (message, param) = responses::check(&request.body).err()?;
            return Some(error_response(400, &message, INVALID, param, None));
        }
        let invalid = !request.body.is_object();
        invalid.then(|| error_response(400, NOT_JSON, INVALID, None, None))
    }

    fn answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
        if request.path == EMBEDDINGS {
            let document = embeddings::openai_answer(&request.body).to_string();
            let error = || error_response(500, SERVER_ERROR, "server_error", None, None);
            return server::document(JSON, Bytes::from(document), ending, error);
        }
        if request.path == RESPONSES {
            return responses_answer(request, behavior, ending);
        }
        let completion = Completion::new(request, behavior);
        if request.is_stream() {
            let include_usage = flag(&request.body, "/stream_options/include_usage");
            stream_answer(&completion, behavior, include_usage, ending)
        } else {
            json_answer(&completion, &behavior.reply, ending)
        }
    }
}

/// Answers for the faults that are a single immediate response.
fn fault_response(fault: Fault, model: &str) -> Response<SimBody> {
    let (status, message, kind, param, code) = match fault {
        Fault::Status {
            status,
            body,
            headers,
        } => return server::raw_response(status, body, headers),
        Fault::Garbage => {
            let garbage = Bytes::from_static(GARBAGE);
            return server::full_response(StatusCode::OK, JSON, garbage);
        }
        Fault::RateLimited { retry_after } => {
            let message = format!("Rate limit reached for {model} {RATE_LIMIT}");
            let code = Some("rate_limit_exceeded");
            let response = error_response(429, &message, "requests", None, code);
            return server::with_header(response, RETRY_AFTER.as_str(), retry_after);
        }
        other => openai_error(&other),
    };
    error_response(status, message, kind, param, code)
}

/// Status, `message`, `type`, `param` and `code` of OpenAI's answer for each plain error fault.
// Intentionally a table, one fault per line, so the bodies can be compared with OpenAI's at a
// glance; rustfmt would spread each row over seven lines.
#[rustfmt::skip]
fn openai_error(fault: &Fault) -> (u16, &'static str, &'static str, Option<&'static str>, Option<&'static str>) {
    match fault {
        Fault::InsufficientQuota => (429, QUOTA, "insufficient_quota", None, Some("insufficient_quota")),
        Fault::Overloaded => (503, OVERLOADED, "server_error", None, None),
        Fault::Status529 => (529, OVERLOADED_529, "server_error", None, Some("overloaded")),
        Fault::Unauthorized => (401, BAD_KEY, INVALID, None, Some("invalid_api_key")),
        Fault::ContextLength => (400, CONTEXT, INVALID, Some("messages"), Some("context_length_exceeded")),
        Fault::BadRequest => (400, TEMPERATURE, INVALID, Some("temperature"), Some("decimal_above_max_value")),
        // `plan` handles every other fault itself; a server error is the honest fallback.
        _ => (500, SERVER_ERROR, "server_error", None, None),
    }
}

fn json_answer(completion: &Completion<'_>, reply: &str, ending: Ending) -> Response<SimBody> {
    let message = match &completion.tool {
        None => json!({"role": "assistant", "content": reply, "refusal": null}),
        Some((id, call)) => {
            let function = json!({"name": call.name, "arguments": call.arguments_json()});
            let tool_calls = json!([{"id": id, "type": "function", "function": function}]);
            json!({"role": "assistant", "content": null, "tool_calls": tool_calls, "refusal": null})
        }
    };
    let document = json!({
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": completion.finish_reason(),
        }],
        "usage": completion.usage,
    });
    let error = || error_response(500, SERVER_ERROR, "server_error", None, None);
    server::document(JSON, Bytes::from(document.to_string()), ending, error)
}

fn stream_answer(
    completion: &Completion<'_>,
    behavior: &Behavior,
    include_usage: bool,
    ending: Ending,
) -> Response<SimBody> {
    let deltas = match &completion.tool {
        None => {
            let role = json!({"role": "assistant", "content": "", "refusal": null});
            let words = word_pieces(&behavior.reply).into_iter();
            let mut deltas = vec![role];
            deltas.extend(words.map(|piece| json!({"content": piece})));
            deltas
        }
        Some((id, call)) => {
            // The head names the call; the arguments follow in pieces, as OpenAI streams them.
            let function = json!({"name": call.name, "arguments": ""});
            let head = json!([{"index": 0, "id": id, "type": "function", "function": function}]);
            let role =
                json!({"role": "assistant", "content": null, "tool_calls": head, "refusal": null});
            let arguments = call.arguments_json();
            let pieces = content::json_pieces(&arguments).into_iter().map(
                |piece| json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            );
            std::iter::once(role).chain(pieces).collect()
        }
    };
    let chunk = |delta, finish| completion.chunk(delta, finish, include_usage);
    let mut events: Vec<Bytes> = deltas.into_iter().map(|d| chunk(d, None)).collect();
    let content_chunks = events.len();
    events.push(chunk(json!({}), Some(completion.finish_reason())));
    if include_usage {
        events.push(completion.usage_chunk());
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let error = || sse(&error_json(SERVER_ERROR, "server_error", None, None));
    let delay = behavior.chunk_delay;
    server::event_stream(EVENT_STREAM, events, content_chunks, ending, error, delay)
}

/// A Responses API answer: the whole Response, or its event stream.
fn responses_answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    let answer = responses::Answer::new(request, behavior, since_epoch.map_or(0, |d| d.as_secs()));
    if request.is_stream() {
        let (events, counted) = answer.events();
        let sent = match ending {
            Ending::Error(n) => n.min(counted),
            _ => 0,
        };
        let error = || answer.failed_event(sent, SERVER_ERROR);
        let delay = behavior.chunk_delay;
        return server::event_stream(EVENT_STREAM, events, counted, ending, error, delay);
    }
    let document = answer.response(true).to_string();
    let error = || error_response(500, SERVER_ERROR, "server_error", None, None);
    server::document(JSON, Bytes::from(document), ending, error)
}

// === impl Completion ===

impl<'a> Completion<'a> {
    fn new(request: &'a Recorded, behavior: &Behavior) -> Self {
        let tool = tool_call(&request.body);
        let tokens = Tokens::new(
            estimate_prompt_tokens(&request.body),
            behavior,
            tool.as_ref(),
        );
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
        let created = since_epoch.map_or(0, |d| d.as_secs());
        let usage = json!({
            "prompt_tokens": tokens.prompt,
            "completion_tokens": tokens.completion,
            "total_tokens": tokens.total(),
            "prompt_tokens_details": {"cached_tokens": tokens.cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        });
        let id = format!("chatcmpl-{}", random_alphanumeric(29));
        let tool = tool.map(|call| (format!("call_sim_{}", random_alphanumeric(24)), call));
        Self {
            id,
            created,
            model: request.model().unwrap_or("unknown"),
            usage,
            tool,
        }
    }

    fn finish_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_calls"
        } else {
            "stop"
        }
    }

    fn envelope(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Bytes {
        let choice =
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason});
        let mut chunk = self.envelope(json!([choice]));
        // OpenAI adds `"usage": null` to every chunk once usage is requested, and omits it
        // otherwise.
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse(&chunk)
    }

    fn usage_chunk(&self) -> Bytes {
        let mut chunk = self.envelope(json!([]));
        chunk["usage"] = self.usage.clone();
        sse(&chunk)
    }
}

// === helpers ===

/// A call to the first offered function when the last message is the user's: the simulated
/// model always wants a tool before it answers.
fn tool_call(body: &Value) -> Option<ToolCall> {
    let last = body["messages"].as_array()?.last()?;
    if last["role"] != "user" {
        return None;
    }
    let function = &body["tools"].as_array()?.first()?["function"];
    Some(ToolCall::new(
        function["name"].as_str()?,
        &function["parameters"],
    ))
}

fn error_response(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response<SimBody> {
    server::json_response(status, &error_json(message, kind, param, code))
}

fn error_json(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// A quarter token per character of message text plus four per message.
fn estimate_prompt_tokens(body: &Value) -> u32 {
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let chars: usize = messages
        .iter()
        .map(|m| content::text_chars(&m["content"]))
        .sum();
    content::estimate_tokens(chars, messages.len())
}

#[cfg(test)]
mod tests;
