//! A simulated Anthropic Messages API on 127.0.0.1 with scripted fault injection.
//!
//! [`MockProvider`] serves `POST /v1/messages` (JSON and SSE) in Anthropic's real wire format,
//! error bodies and `request-id` headers included, and answers anything else with a 404
//! `not_found_error`. Every request is recorded, then consumes the next queued [`Fault`]; without
//! one it is checked as Anthropic checks requests (required fields and headers, roles, content,
//! tool pairing, no unknown fields), so tests can prove a translated request valid, and answered
//! as the current [`Behavior`] says: text, or a `tool_use` block calling the first tool when the
//! request offers `tools` and its last message is a user turn that is not a `tool_result`.
//! Streams send the real event sequence (`message_start`, `content_block_start`, `ping`,
//! deltas, `content_block_stop`, `message_delta`, `message_stop`), each event its own frame.

use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::content::{self, Tokens, ToolCall, random_alphanumeric, word_pieces};
use super::server::{self, Api, EVENT_STREAM, Ending, JSON, Mock, Plan, SimBody};
pub use super::server::{Behavior, Recorded};

mod validate;

const MESSAGES: &str = "/v1/messages";
const INVALID: &str = "invalid_request_error";
/// Valid-looking JSON cut short, as a misbehaving proxy in front of a provider might send it.
const GARBAGE: &[u8] = br#"{"id":"msg_sim","type":"message","role":"assistant","content":[{"ty"#;

// Anthropic's error messages, verbatim where the text is known.
const OVERLOADED: &str = "Overloaded";
const SERVER_ERROR: &str = "Internal server error";
const BAD_KEY: &str = "invalid x-api-key";
const CREDIT: &str = "Your credit balance is too low to access the Anthropic API. Please go to \
                      Plans & Billing to upgrade or purchase credits.";
const CONTEXT: &str = "prompt is too long: 210000 tokens > 200000 maximum";
const TEMPERATURE: &str = "temperature: Input should be less than or equal to 1";
const RATE_LIMIT: &str = "This request would exceed the rate limit for your organization \
                          (org-simulated) of 50 requests per minute. For details, refer to: \
                          https://docs.claude.com/en/api/rate-limits. You can see the response \
                          headers for current usage. Please reduce the prompt length or the \
                          maximum tokens requested, or try again later. You may also contact \
                          sales at https://www.anthropic.com/contact-sales to discuss your \
                          options for a rate limit increase.";

/// A simulated Anthropic upstream bound to a loopback port.
///
/// The server runs on the current tokio runtime until [`Mock::shutdown`] is called or the value
/// is dropped. Point a provider's base URL at [`Mock::base_url`], `http://127.0.0.1:PORT`
/// (Anthropic's clients append `/v1/messages`).
pub type MockProvider = Mock<Anthropic>;

/// A scripted misbehaviour applied to exactly one Messages request.
///
/// Faults that break a stream (`StallMidStream`, `ErrorMidStream`, `TruncateStream`,
/// `AbortMidStream`) count "content chunks": `message_start`, `content_block_start`, `ping` and
/// each `content_block_delta`, capped at their number. On a non-streamed request a stall leaves
/// the body hanging after the head, a mid-stream error becomes a 529, and truncation or abort cut
/// the body off at the transport.
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
    /// 429 `rate_limit_error`.
    RateLimited {
        /// The `retry-after` header value in seconds, if any.
        retry_after: Option<String>,
    },
    /// 529 `overloaded_error` "Overloaded": Anthropic's own status for a busy fleet.
    Overloaded,
    /// 500 `api_error`.
    ServerError,
    /// 401 `authentication_error` "invalid x-api-key".
    Unauthorized,
    /// 400 `invalid_request_error` about the credit balance: retrying won't help.
    CreditBalance,
    /// 400 `invalid_request_error` "prompt is too long: 210000 tokens > 200000 maximum".
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
    /// Send `after_chunks` content chunks, then an `event: error` with an `overloaded_error`,
    /// and end the body.
    ErrorMidStream {
        /// Content chunks sent before the error event.
        after_chunks: usize,
    },
    /// Send `after_chunks` content chunks, then end the body cleanly without `message_stop`.
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

/// The Anthropic Messages wire format.
#[derive(Debug, Default)]
pub struct Anthropic;

/// The id, model, token counts and tool call shared by every event of one answer.
struct Message<'a> {
    id: String,
    model: &'a str,
    tokens: Tokens,
    tool: Option<(String, ToolCall)>,
}

// === impl Anthropic ===

impl Api for Anthropic {
    type Fault = Fault;
    const LABEL: &'static str = "Anthropic";
    const BASE_PATH: &'static str = "";
    const REQUEST_ID: Option<&'static str> = Some("request-id");

    fn is_generation(method: &Method, path: &str) -> bool {
        method == Method::POST && path == MESSAGES
    }

    fn other(&self, _: &Method, _: &str) -> Response<SimBody> {
        error_response(404, "not_found_error", "Not Found")
    }

    fn plan(fault: Fault, _: &Recorded) -> Plan {
        let ending = match fault {
            Fault::Hang => return Plan::Hang,
            Fault::Reset => return Plan::Reset,
            Fault::SlowFirstToken(delay) => return Plan::slow(delay),
            Fault::StallMidStream { after_chunks } => Ending::Stall(after_chunks),
            Fault::ErrorMidStream { after_chunks } => Ending::Error(after_chunks),
            Fault::TruncateStream { after_chunks } => Ending::Truncate(after_chunks),
            Fault::AbortMidStream { after_chunks } => Ending::Abort(after_chunks),
            other => return Plan::Respond(fault_response(other)),
        };
        Plan::ending(ending)
    }

    fn reject(request: &Recorded) -> Option<Response<SimBody>> {
        let why = validate::check(request).err()?;
        Some(error_response(400, INVALID, &why))
    }

    fn answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
        let message = Message::new(request, behavior);
        if request.is_stream() {
            stream_answer(&message, behavior, ending)
        } else {
            json_answer(&message, &behavior.reply, ending)
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
        Fault::Garbage => {
            let garbage = Bytes::from_static(GARBAGE);
            return server::full_response(StatusCode::OK, JSON, garbage);
        }
        Fault::RateLimited { retry_after } => {
            let response = error_response(429, "rate_limit_error", RATE_LIMIT);
            return server::with_header(response, RETRY_AFTER.as_str(), retry_after);
        }
        Fault::Overloaded => (529, "overloaded_error", OVERLOADED),
        Fault::Unauthorized => (401, "authentication_error", BAD_KEY),
        Fault::CreditBalance => (400, INVALID, CREDIT),
        Fault::ContextLength => (400, INVALID, CONTEXT),
        Fault::BadRequest => (400, INVALID, TEMPERATURE),
        // `plan` handles every other fault itself; a server error is the honest fallback.
        _ => (500, "api_error", SERVER_ERROR),
    };
    error_response(status, kind, message)
}

fn json_answer(message: &Message<'_>, reply: &str, ending: Ending) -> Response<SimBody> {
    let block = match &message.tool {
        None => text_block(reply),
        Some((id, call)) => tool_block(id, call, call.arguments.clone()),
    };
    let stop_reason = json!(message.stop_reason());
    let document = message.document(json!([block]), stop_reason, message.tokens.completion);
    let error = || error_response(529, "overloaded_error", OVERLOADED);
    server::document(JSON, Bytes::from(document.to_string()), ending, error)
}

fn stream_answer(message: &Message<'_>, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
    // Like Anthropic, count one output token in `message_start`; `message_delta` has the total.
    let start = message.document(json!([]), Value::Null, 1);
    let (block, deltas) = match &message.tool {
        None => {
            let words = word_pieces(&behavior.reply).into_iter();
            let deltas = words.map(|text| json!({"type": "text_delta", "text": text}));
            (text_block(""), deltas.collect::<Vec<_>>())
        }
        Some((id, call)) => {
            // The block opens with empty input; the JSON follows in pieces.
            let arguments = call.arguments_json();
            let pieces = content::json_pieces(&arguments).into_iter();
            let deltas =
                pieces.map(|json| json!({"type": "input_json_delta", "partial_json": json}));
            (tool_block(id, call, json!({})), deltas.collect())
        }
    };
    let mut events = vec![
        event("message_start", json!({"message": start})),
        event(
            "content_block_start",
            json!({"index": 0, "content_block": block}),
        ),
        event("ping", json!({})),
    ];
    let delta = |delta| event("content_block_delta", json!({"index": 0, "delta": delta}));
    events.extend(deltas.into_iter().map(delta));
    let content_chunks = events.len();
    let stop = json!({
        "stop_reason": message.stop_reason(),
        "stop_sequence": null,
        "stop_details": null,
        "container": null,
    });
    let usage = message.delta_usage();
    events.extend([
        event("content_block_stop", json!({"index": 0})),
        event("message_delta", json!({"delta": stop, "usage": usage})),
        event("message_stop", json!({})),
    ]);
    let error = || {
        let error = json!({"type": "overloaded_error", "message": OVERLOADED});
        event("error", json!({"error": error}))
    };
    let delay = behavior.chunk_delay;
    server::event_stream(EVENT_STREAM, events, content_chunks, ending, error, delay)
}

// === impl Message ===

impl<'a> Message<'a> {
    fn new(request: &'a Recorded, behavior: &Behavior) -> Self {
        let tool = tool_call(&request.body);
        let tokens = Tokens::new(
            estimate_prompt_tokens(&request.body),
            behavior,
            tool.as_ref(),
        );
        let tool = tool.map(|call| (format!("toolu_sim_{}", random_alphanumeric(24)), call));
        Self {
            id: format!("msg_{}", random_alphanumeric(24)),
            model: request.model().unwrap_or("unknown"),
            tokens,
            tool,
        }
    }

    fn stop_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    /// A `Message` object, with every field the schema requires.
    fn document(&self, content: Value, stop_reason: Value, output_tokens: u32) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "stop_details": null,
            "container": null,
            "usage": self.usage(output_tokens),
        })
    }

    /// Anthropic's `input_tokens` leaves out the tokens read from the cache.
    fn input_tokens(&self) -> u32 {
        self.tokens.prompt - self.tokens.cached
    }

    fn usage(&self, output_tokens: u32) -> Value {
        json!({
            "input_tokens": self.input_tokens(),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.tokens.cached,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "server_tool_use": null,
            "service_tier": "standard",
            "inference_geo": null,
        })
    }

    /// The cumulative counts `message_delta` carries.
    fn delta_usage(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens(),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.tokens.cached,
            "output_tokens": self.tokens.completion,
            "server_tool_use": null,
        })
    }
}

// === helpers ===

/// A call to the first offered tool when the last message is a user turn other than a tool
/// result: the simulated model always wants a tool before it answers.
fn tool_call(body: &Value) -> Option<ToolCall> {
    let last = body["messages"].as_array()?.last()?;
    if last["role"] != "user" || validate::has_block(&last["content"], "tool_result") {
        return None;
    }
    let tool = body["tools"].as_array()?.first()?;
    Some(ToolCall::new(tool["name"].as_str()?, &tool["input_schema"]))
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text, "citations": null})
}

fn tool_block(id: &str, call: &ToolCall, input: Value) -> Value {
    json!({
        "type": "tool_use",
        "id": id,
        "name": call.name,
        "input": input,
        "caller": {"type": "direct"},
    })
}

/// An SSE event: Anthropic names each one and repeats the name as the data's `type`.
fn event(name: &str, mut data: Value) -> Bytes {
    data["type"] = json!(name);
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Anthropic's error document, whose `request_id` matches the `request-id` header.
fn error_response(status: u16, kind: &str, message: &str) -> Response<SimBody> {
    let id = format!("req_{}", random_alphanumeric(24));
    let error = json!({"type": kind, "message": message});
    let body = json!({"type": "error", "error": error, "request_id": id});
    server::with_header(server::json_response(status, &body), "request-id", Some(id))
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

#[cfg(test)]
mod tests;
