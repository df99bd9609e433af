//! A simulated Gemini API (`generativelanguage.googleapis.com/v1beta`) on 127.0.0.1 with
//! scripted fault injection.
//!
//! [`MockProvider`] serves `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent` in Google's real wire format: a `GenerateContentResponse`, SSE
//! events separated by `\r\n\r\n` with `?alt=sse` (and no `[DONE]`), or a streamed JSON array
//! without it, and `{"error":{"code","message","status"}}` bodies. Every request is recorded,
//! then consumes the next queued [`Fault`]; without one it is checked as Google checks requests
//! (required `contents`, valid roles, non-empty parts, no unknown fields), so tests can prove a
//! translated request valid, and answered as the current [`Behavior`] says: text, or a
//! `functionCall` of the first function declaration when the last content is a user turn
//! without a `functionResponse`. `POST /v1beta/models/{model}:batchEmbedContents` is checked as
//! Google checks a `BatchEmbedContentsRequest` and answered with deterministic vectors
//! ([`super::embeddings`]).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::content::{self, Tokens, ToolCall, random_alphanumeric, word_pieces};
use super::embeddings;
use super::server::{self, Api, EVENT_STREAM, Ending, Mock, Plan, SimBody};
pub use super::server::{Behavior, Recorded};

mod validate;

/// Google's JSON content type, charset included.
const JSON: &str = "application/json; charset=UTF-8";
const MODELS: &str = "/v1beta/models/";
const INVALID: &str = "INVALID_ARGUMENT";
/// Valid-looking JSON cut short, as a misbehaving proxy in front of a provider might send it.
const GARBAGE: &[u8] = br#"{"candidates":[{"content":{"role":"model","parts":[{"te"#;

// Google's error messages, verbatim where the text is known.
const EXHAUSTED: &str = "Resource has been exhausted (e.g. check quota).";
const OVERLOADED: &str = "The model is overloaded. Please try again later.";
const INTERNAL: &str = "An internal error has occurred. Please retry or report in \
                        https://developers.generativeai.google/guide/troubleshooting";
const BAD_KEY: &str = "API key not valid. Please pass a valid API key.";
const FORBIDDEN: &str = "The caller does not have permission";
const CONTEXT: &str = "The input token count (1200000) exceeds the maximum number of tokens \
                       allowed (1048576).";
const MAX_TOKENS: &str = "* GenerateContentRequest.generation_config.max_output_tokens: \
                          max_output_tokens must be positive.\n";

/// A simulated Gemini upstream bound to a loopback port.
///
/// The server runs on the current tokio runtime until [`Mock::shutdown`] is called or the value
/// is dropped. Point a provider's base URL at [`Mock::base_url`],
/// `http://127.0.0.1:PORT/v1beta`.
pub type MockProvider = Mock<Gemini>;

/// A scripted misbehaviour applied to exactly one `generateContent` request.
///
/// Faults that break a stream (`StallMidStream`, `TruncateStream`, `AbortMidStream`) count
/// "content chunks": every chunk but the last, which carries the final words together with
/// `finishReason` and the full `usageMetadata` (a function call is a single, final chunk), capped
/// at their number. On a non-streamed request a stall leaves the body hanging after the head, and
/// truncation or abort cut the body off at the transport.
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
    /// 429 `RESOURCE_EXHAUSTED`.
    RateLimited {
        /// Sent as a `google.rpc.RetryInfo` detail (`"retryDelay": "7s"`), as Google does,
        /// rather than a header.
        retry_delay: Option<Duration>,
    },
    /// 503 `UNAVAILABLE` "The model is overloaded. Please try again later."
    Overloaded,
    /// 500 `INTERNAL`.
    ServerError,
    /// 400 `INVALID_ARGUMENT` "API key not valid. Please pass a valid API key." with reason
    /// `API_KEY_INVALID`: Google's answer to a bad key is a 400, not a 401.
    Unauthorized,
    /// 403 `PERMISSION_DENIED`, e.g. a key without access to the model.
    Forbidden,
    /// 400 `INVALID_ARGUMENT` "The input token count (1200000) exceeds the maximum number of
    /// tokens allowed (1048576)."
    ContextLength,
    /// 400 `INVALID_ARGUMENT` for a bad parameter: a plain client error.
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
    /// Send `after_chunks` content chunks, then end the body cleanly without the final chunk.
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

/// The Gemini `generateContent` wire format.
#[derive(Debug, Default)]
pub struct Gemini;

/// The response id, model, token counts and function call shared by every chunk of one answer.
struct Generation<'a> {
    id: String,
    model: &'a str,
    tokens: Tokens,
    tool: Option<ToolCall>,
}

// === impl Gemini ===

impl Api for Gemini {
    type Fault = Fault;
    const LABEL: &'static str = "Gemini";
    const BASE_PATH: &'static str = "/v1beta";
    const REQUEST_ID: Option<&'static str> = None;

    fn is_generation(method: &Method, path: &str) -> bool {
        let Some((model, method_name)) = path.strip_prefix(MODELS).and_then(|r| r.split_once(':'))
        else {
            return false;
        };
        let generates = matches!(
            method_name,
            "generateContent" | "streamGenerateContent" | "batchEmbedContents"
        );
        method == Method::POST && generates && !model.is_empty() && !model.contains('/')
    }

    fn other(&self, method: &Method, path: &str) -> Response<SimBody> {
        let message = format!("Method not found: {method} {path}");
        error_response(404, "NOT_FOUND", &message, None)
    }

    fn plan(fault: Fault, _: &Recorded) -> Plan {
        let ending = match fault {
            Fault::Hang => return Plan::Hang,
            Fault::Reset => return Plan::Reset,
            Fault::SlowFirstToken(delay) => return Plan::slow(delay),
            Fault::StallMidStream { after_chunks } => Ending::Stall(after_chunks),
            Fault::TruncateStream { after_chunks } => Ending::Truncate(after_chunks),
            Fault::AbortMidStream { after_chunks } => Ending::Abort(after_chunks),
            other => return Plan::Respond(fault_response(other)),
        };
        Plan::ending(ending)
    }

    fn reject(request: &Recorded) -> Option<Response<SimBody>> {
        let why = match embedding_model(request) {
            Some(model) => validate::check_batch(&request.body, model).err()?,
            None => validate::check(&request.body).err()?,
        };
        Some(error_response(400, INVALID, &why, None))
    }

    fn answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
        if embedding_model(request).is_some() {
            let document = embeddings::gemini_answer(&request.body).to_string();
            let error = || fault_response(Fault::ServerError);
            return server::document(JSON, Bytes::from(document), ending, error);
        }
        let generation = Generation::new(request, behavior);
        if request.is_stream() {
            stream_answer(&generation, request, behavior, ending)
        } else {
            let part = generation.whole_part(&behavior.reply);
            let document = generation.chunk(part, true).to_string();
            let error = || fault_response(Fault::ServerError);
            server::document(JSON, Bytes::from(document), ending, error)
        }
    }
}

fn stream_answer(
    generation: &Generation<'_>,
    request: &Recorded,
    behavior: &Behavior,
    ending: Ending,
) -> Response<SimBody> {
    // One chunk per word, or the whole function call at once.
    let parts = match &generation.tool {
        Some(_) => vec![generation.whole_part(&behavior.reply)],
        None => {
            let words = word_pieces(&behavior.reply);
            let pieces = if words.is_empty() { vec![""] } else { words };
            pieces
                .into_iter()
                .map(|text| json!({"text": text}))
                .collect()
        }
    };
    let content_chunks = parts.len() - 1;
    let documents = parts.into_iter().enumerate().map(|(i, part)| {
        let document = generation.chunk(part, i == content_chunks);
        if alt_sse(request) {
            format!("data: {document}\r\n\r\n")
        } else if i == 0 {
            // Without `alt=sse`, Google streams one JSON array, element by element.
            format!("[{document}")
        } else {
            format!(",\r\n{document}")
        }
    });
    let mut events: Vec<Bytes> = documents.map(Bytes::from).collect();
    let content_type = if alt_sse(request) {
        EVENT_STREAM
    } else {
        events.push(Bytes::from_static(b"]"));
        JSON
    };
    // Unused: Gemini has no mid-stream error fault.
    let error = || {
        let error = error_json(500, "INTERNAL", INTERNAL, None);
        Bytes::from(format!("data: {error}\r\n\r\n"))
    };
    let delay = behavior.chunk_delay;
    server::event_stream(content_type, events, content_chunks, ending, error, delay)
}

/// Answers for the faults that are a single immediate response.
fn fault_response(fault: Fault) -> Response<SimBody> {
    let (code, status, message, details) = match fault {
        Fault::Status {
            status,
            body,
            headers,
        } => return server::raw_response(status, body, headers),
        Fault::Garbage => {
            let garbage = Bytes::from_static(GARBAGE);
            return server::full_response(StatusCode::OK, JSON, garbage);
        }
        Fault::RateLimited { retry_delay } => {
            let info = retry_delay.map(|delay| {
                let retry_delay = format!("{}s", delay.as_secs_f64());
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}])
            });
            (429, "RESOURCE_EXHAUSTED", EXHAUSTED, info)
        }
        Fault::Overloaded => (503, "UNAVAILABLE", OVERLOADED, None),
        Fault::Unauthorized => {
            let metadata = json!({"service": "generativelanguage.googleapis.com"});
            let info = json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": metadata,
            }]);
            (400, INVALID, BAD_KEY, Some(info))
        }
        Fault::Forbidden => (403, "PERMISSION_DENIED", FORBIDDEN, None),
        Fault::ContextLength => (400, INVALID, CONTEXT, None),
        Fault::BadRequest => (400, INVALID, MAX_TOKENS, None),
        // `plan` handles every other fault itself; a server error is the honest fallback.
        _ => (500, "INTERNAL", INTERNAL, None),
    };
    error_response(code, status, message, details)
}

// === impl Generation ===

impl<'a> Generation<'a> {
    fn new(request: &'a Recorded, behavior: &Behavior) -> Self {
        let tool = tool_call(&request.body);
        let prompt = estimate_prompt_tokens(&request.body);
        Self {
            id: random_alphanumeric(22),
            model: request.model().unwrap_or("unknown"),
            tokens: Tokens::new(prompt, behavior, tool.as_ref()),
            tool,
        }
    }

    /// The whole answer as one part: the reply, or the function call.
    fn whole_part(&self, reply: &str) -> Value {
        match &self.tool {
            Some(call) => json!({"functionCall": {"name": call.name, "args": call.arguments}}),
            None => json!({"text": reply}),
        }
    }

    /// One `GenerateContentResponse`; the final one finishes and counts every token, the others
    /// count only the prompt, as Google's streams do.
    fn chunk(&self, part: Value, last: bool) -> Value {
        let tokens = self.tokens;
        let mut candidate = json!({"content": {"role": "model", "parts": [part]}, "index": 0});
        let mut usage =
            json!({"promptTokenCount": tokens.prompt, "totalTokenCount": tokens.prompt});
        if last {
            candidate["finishReason"] = json!("STOP");
            usage["candidatesTokenCount"] = json!(tokens.completion);
            usage["totalTokenCount"] = json!(tokens.total());
        }
        if tokens.cached > 0 {
            usage["cachedContentTokenCount"] = json!(tokens.cached);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.model,
            "responseId": self.id,
        })
    }
}

// === helpers ===

/// The model of a `:batchEmbedContents` request, `None` for a generation.
fn embedding_model(request: &Recorded) -> Option<&str> {
    let rest = request.path.strip_prefix(MODELS)?;
    rest.strip_suffix(":batchEmbedContents")
}

/// Whether a stream request asked for SSE rather than a JSON array.
fn alt_sse(request: &Recorded) -> bool {
    let query = request.query.as_deref().unwrap_or_default();
    query.split('&').any(|pair| pair == "alt=sse")
}

/// A call to the first function declared when the last content is a user turn without a
/// function response: the simulated model always wants a tool before it answers.
fn tool_call(body: &Value) -> Option<ToolCall> {
    let last = validate::field(body, "contents").as_array()?.last()?;
    let role = last["role"].as_str().unwrap_or("user");
    let parts = validate::field(last, "parts").as_array()?;
    let answered = parts
        .iter()
        .any(|part| !validate::field(part, "functionResponse").is_null());
    if role != "user" || answered {
        return None;
    }
    let tools = validate::field(body, "tools").as_array()?;
    let mut declarations = tools.iter().filter_map(|tool| {
        let declarations = validate::field(tool, "functionDeclarations").as_array()?;
        declarations.first()
    });
    let declaration = declarations.next()?;
    let schema = match validate::field(declaration, "parameters") {
        Value::Null => validate::field(declaration, "parametersJsonSchema"),
        parameters => parameters,
    };
    Some(ToolCall::new(declaration["name"].as_str()?, schema))
}

/// Google's error document; `details` holds `google.rpc` detail objects.
fn error_json(code: u16, status: &str, message: &str, details: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message, "status": status});
    if let Some(details) = details {
        error["details"] = details;
    }
    json!({"error": error})
}

fn error_response(
    code: u16,
    status: &str,
    message: &str,
    details: Option<Value>,
) -> Response<SimBody> {
    let body = error_json(code, status, message, details).to_string();
    server::full_response(server::status_code(code), JSON, Bytes::from(body))
}

/// A quarter token per character of content and system text plus four per content.
fn estimate_prompt_tokens(body: &Value) -> u32 {
    let contents = validate::field(body, "contents").as_array();
    let contents = contents.map_or(&[][..], Vec::as_slice);
    let parts = |content: &Value| content::text_chars(validate::field(content, "parts"));
    let chars: usize = contents.iter().map(parts).sum();
    let system = parts(validate::field(body, "systemInstruction"));
    content::estimate_tokens(chars + system, contents.len())
}

#[cfg(test)]
mod tests;
