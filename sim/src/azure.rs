//! A simulated Azure OpenAI resource on 127.0.0.1 with scripted fault injection.
//!
//! [`MockProvider`] serves Chat Completions in both URL shapes Azure has:
//! - the `/openai/v1` API: `POST /openai/v1/chat/completions` with `model` in the body
//!   ([`Mock::base_url`]);
//! - classic deployments: `POST /openai/deployments/{deployment}/chat/completions?api-version=V`
//!   ([`Mock::resource_url`] is the resource root a client is configured with), where a missing
//!   or malformed `api-version` is Azure's 404 "Resource not found".
//!
//! Like Azure it takes the key in the `api-key` header only: a request without one, or with an
//! `Authorization` header (Azure reads that as an Entra ID token, which an API key is not), gets
//! Azure's 401. Answers carry Azure's content-filter annotations: a top-level
//! `prompt_filter_results`, `content_filter_results` on every choice and, in streams, a first chunk
//! with empty `choices` (and empty id and model) holding the prompt's results, then a trailing
//! annotation chunk with an empty delta after the finish. Faults script Azure's own errors: the
//! prompt filter's 400 (`content_filter` / `ResponsibleAIPolicyViolation`), the output filter
//! (`finish_reason: "content_filter"`), and 429s with `retry-after-ms`. The server itself is
//! [`super::server`], shared with the other simulators.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Response};
use serde_json::{Value, json};

use super::content::{self, Tokens, ToolCall, random_alphanumeric, word_pieces};
use super::embeddings;
use super::server::{self, Api, EVENT_STREAM, Ending, JSON, Mock, Plan, SimBody, flag};
pub use super::server::{Behavior, Recorded};

/// The `/openai/v1` API's paths.
const V1_CHAT: &str = "/openai/v1/chat/completions";
const V1_EMBEDDINGS: &str = "/openai/v1/embeddings";
/// Classic deployment paths are `{DEPLOYMENTS}{name}/chat/completions` (or `/embeddings`).
const DEPLOYMENTS: &str = "/openai/deployments/";
const FINGERPRINT: &str = "fp_sim_azure";
const INVALID: &str = "invalid_request_error";

// Azure's error messages, verbatim where the text is known.
const NOT_FOUND: &str = "Resource not found";
const BAD_KEY: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make \
                       sure to provide a valid key for an active subscription and use a correct \
                       regional API endpoint for your resource.";
const BAD_TOKEN: &str = "Unauthorized. Access token is missing, invalid, audience is incorrect \
                         (https://cognitiveservices.azure.com), or have expired.";
const PROMPT_FILTERED: &str = "The response was filtered due to the prompt triggering Azure \
                               OpenAI's content management policy. Please modify your prompt and \
                               retry. To learn more about our content filtering policies please \
                               read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766";
const SERVER_ERROR: &str =
    "The server had an error while processing your request. Sorry about that!";
const CONTEXT: &str = "This model's maximum context length is 128000 tokens. However, your \
                       messages resulted in 130000 tokens. Please reduce the length of the \
                       messages.";
const NOT_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely \
                        means you aren't using your HTTP library correctly. The OpenAI API \
                        expects a JSON payload, but what was sent was not valid JSON.)";

/// A simulated Azure OpenAI resource bound to a loopback port.
///
/// [`Mock::base_url`] is the `/openai/v1` API's base, `http://127.0.0.1:PORT/openai/v1`;
/// [`Mock::resource_url`] the resource root for classic deployment URLs.
pub type MockProvider = Mock<Azure>;

/// A scripted misbehaviour applied to exactly one request.
///
/// Stream faults count "content chunks": the prompt-filter chunk, the role chunk and one per word
/// (or piece of a tool call's arguments), capped at their number.
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
    /// 429 "exceeded token rate limit" with `retry-after-ms` and `retry-after` (whole seconds,
    /// rounded up), as Azure sends them.
    RateLimited {
        /// The `retry-after-ms` value.
        retry_after_ms: u64,
    },
    /// 400 `content_filter` with `innererror.code: ResponsibleAIPolicyViolation`: the prompt
    /// tripped the content filter.
    PromptFiltered,
    /// A 200 whose output the filter stops after this many words: the stream ends with
    /// `finish_reason: "content_filter"` (a whole answer has the words so far and that reason).
    OutputFiltered {
        /// Words of the reply sent before the filter stops it.
        after_words: usize,
    },
    /// 401 for a bad key.
    Unauthorized,
    /// 400 `context_length_exceeded`.
    ContextLength,
    /// 500 `server_error`.
    ServerError,
    /// Read the request and never answer.
    Hang,
    /// Close the connection without any response.
    Reset,
    /// Send `after_chunks` content chunks, then a `data: {"error":{...}}` event, and end the body.
    ErrorMidStream {
        /// Content chunks sent before the error event.
        after_chunks: usize,
    },
}

/// The Azure OpenAI wire format.
#[derive(Debug, Default)]
pub struct Azure;

/// Which of Azure's two URL shapes a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    V1,
    Deployment,
}

/// The id, timestamp, model, usage and tool call shared by every document of one answer.
struct Completion {
    id: String,
    created: u64,
    model: String,
    usage: Value,
    tool: Option<(String, ToolCall)>,
}

// === impl MockProvider ===

impl Mock<Azure> {
    /// The resource root, `http://127.0.0.1:PORT`: the `baseUrl` of a classic-deployment
    /// provider (`azure.apiVersion` set).
    pub fn resource_url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

// === impl Azure ===

impl Api for Azure {
    type Fault = Fault;
    const LABEL: &'static str = "Azure OpenAI";
    const BASE_PATH: &'static str = "/openai/v1";
    const REQUEST_ID: Option<&'static str> = Some("apim-request-id");

    fn is_generation(method: &Method, path: &str) -> bool {
        method == Method::POST && operation(path).is_some()
    }

    fn other(&self, method: &Method, path: &str) -> Response<SimBody> {
        if method == Method::GET && path == "/openai/v1/models" {
            let data = json!([{"id": "gpt-4o", "object": "model", "created": 1_715_367_049,
                               "owned_by": "system"}]);
            return server::json_response(200, &json!({"object": "list", "data": data}));
        }
        azure_error(404, "404", NOT_FOUND)
    }

    fn plan(fault: Fault, request: &Recorded) -> Plan {
        match fault {
            Fault::Hang => Plan::Hang,
            Fault::Reset => Plan::Reset,
            Fault::ErrorMidStream { after_chunks } => Plan::ending(Ending::Error(after_chunks)),
            Fault::OutputFiltered { after_words } => {
                Plan::Respond(filtered_answer(request, after_words))
            }
            Fault::Status {
                status,
                body,
                headers,
            } => Plan::Respond(server::raw_response(status, body, headers)),
            Fault::RateLimited { retry_after_ms } => {
                let version = api_version(request).unwrap_or("v1");
                let seconds = retry_after_ms.div_ceil(1000);
                let message = format!(
                    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API \
                     version {version} have exceeded token rate limit of your current OpenAI S0 \
                     pricing tier. Please retry after {seconds} seconds. Please go here: \
                     https://aka.ms/oai/quotaincrease if you would like to further increase the \
                     default rate limit."
                );
                let response = azure_error(429, "429", &message);
                let response = server::with_header(
                    response,
                    "retry-after-ms",
                    Some(retry_after_ms.to_string()),
                );
                let response =
                    server::with_header(response, "retry-after", Some(seconds.to_string()));
                Plan::Respond(server::with_header(
                    response,
                    "x-ratelimit-remaining-tokens",
                    Some("0".into()),
                ))
            }
            Fault::PromptFiltered => {
                let mut results = safe_results();
                results["sexual"] = json!({"filtered": true, "severity": "medium"});
                let body = json!({"error": {
                    "message": PROMPT_FILTERED, "type": null, "param": "prompt",
                    "code": "content_filter", "status": 400,
                    "innererror": {"code": "ResponsibleAIPolicyViolation",
                                   "content_filter_result": results},
                }});
                Plan::Respond(server::json_response(400, &body))
            }
            Fault::Unauthorized => Plan::Respond(azure_error(401, "401", BAD_KEY)),
            Fault::ContextLength => Plan::Respond(openai_error(
                400,
                CONTEXT,
                Some("messages"),
                Some("context_length_exceeded"),
            )),
            Fault::ServerError => Plan::Respond(openai_error(500, SERVER_ERROR, None, None)),
        }
    }

    fn reject(request: &Recorded) -> Option<Response<SimBody>> {
        if request.header("authorization").is_some() {
            return Some(azure_error(401, "401", BAD_TOKEN));
        }
        if request.header("api-key").is_none_or(str::is_empty) {
            return Some(azure_error(401, "401", BAD_KEY));
        }
        let (shape, embeddings) = operation(&request.path)?;
        // Classic deployments need a dated api-version; Azure answers a missing or unknown one
        // as a path it does not know.
        if shape == Shape::Deployment && api_version(request).is_none_or(|v| !dated(v)) {
            return Some(azure_error(404, "404", NOT_FOUND));
        }
        if !request.body.is_object() {
            return Some(openai_error(400, NOT_JSON, None, None));
        }
        if shape == Shape::V1 && request.body.get("model").and_then(Value::as_str).is_none() {
            let message = "Missing required parameter: 'model'.";
            return Some(openai_error(
                400,
                message,
                Some("model"),
                Some("missing_required_parameter"),
            ));
        }
        if embeddings {
            // A deployment names the model; OpenAI's checks want it in the body.
            let mut body = request.body.clone();
            if shape == Shape::Deployment && body.get("model").is_none() {
                body["model"] = Value::String(model_of(request));
            }
            let (message, param) = embeddings::check_openai(&body).err()?;
            return Some(openai_error(400, &message, param, None));
        }
        let messages = request.body.get("messages").and_then(Value::as_array);
        if messages.is_none_or(Vec::is_empty) {
            let message = "Missing required parameter: 'messages'.";
            return Some(openai_error(400, message, Some("messages"), None));
        }
        None
    }

    fn answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
        let error = || openai_error(500, SERVER_ERROR, None, None);
        if operation(&request.path).is_some_and(|(_, embeddings)| embeddings) {
            let mut document = embeddings::openai_answer(&request.body);
            document["model"] = Value::String(model_of(request));
            return server::document(JSON, Bytes::from(document.to_string()), ending, error);
        }
        let completion = Completion::new(request, behavior);
        let pieces = completion.pieces(&behavior.reply);
        if request.is_stream() {
            let finish = completion.finish_reason();
            stream_answer(
                &completion,
                request,
                pieces,
                finish,
                ending,
                behavior.chunk_delay,
            )
        } else {
            let document = completion.whole(pieces.concat(), completion.finish_reason());
            server::document(JSON, Bytes::from(document.to_string()), ending, error)
        }
    }
}

/// The answer whose output the filter stops after `after_words` words, default [`Behavior`].
fn filtered_answer(request: &Recorded, after_words: usize) -> Response<SimBody> {
    let behavior = Behavior::default();
    // The filter stops text; a tool call is not what this fault is about.
    let completion = Completion {
        tool: None,
        ..Completion::new(request, &behavior)
    };
    let mut pieces = word_pieces(&behavior.reply)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    pieces.truncate(after_words);
    if request.is_stream() {
        let delay = behavior.chunk_delay;
        stream_answer(
            &completion,
            request,
            pieces,
            "content_filter",
            Ending::Complete,
            delay,
        )
    } else {
        let document = completion.whole(pieces.concat(), "content_filter");
        server::json_response(200, &document)
    }
}

fn stream_answer(
    completion: &Completion,
    request: &Recorded,
    pieces: Vec<String>,
    finish: &str,
    ending: Ending,
    delay: std::time::Duration,
) -> Response<SimBody> {
    let include_usage = flag(&request.body, "/stream_options/include_usage");
    // Azure's first event: the prompt's filter results, with no choice and no id or model.
    let prompt = json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                        "prompt_filter_results": prompt_filter_results()});
    let mut events = vec![sse(&prompt)];
    let deltas = match &completion.tool {
        None => {
            let role = json!({"role": "assistant", "content": "", "refusal": null});
            let words = pieces.into_iter().map(|piece| json!({"content": piece}));
            std::iter::once(role).chain(words).collect::<Vec<_>>()
        }
        Some((id, call)) => {
            let function = json!({"name": call.name, "arguments": ""});
            let head = json!([{"index": 0, "id": id, "type": "function", "function": function}]);
            let role =
                json!({"role": "assistant", "content": null, "tool_calls": head, "refusal": null});
            let arguments = call.arguments_json();
            let rest = content::json_pieces(&arguments).into_iter().map(
                |piece| json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            );
            std::iter::once(role).chain(rest).collect()
        }
    };
    for (i, delta) in deltas.into_iter().enumerate() {
        // The role chunk has not been checked yet: its results are empty.
        let results = if i == 0 { json!({}) } else { safe_results() };
        events.push(completion.chunk(delta, None, results, include_usage));
    }
    let content_chunks = events.len();
    let finish_results = if finish == "content_filter" {
        let mut results = safe_results();
        results["violence"] = json!({"filtered": true, "severity": "high"});
        results
    } else {
        json!({})
    };
    events.push(completion.chunk(json!({}), Some(finish), finish_results, include_usage));
    // Azure's asynchronous filter annotates what it checked after the finish, with an empty delta.
    let mut trailing = completion.chunk_value(json!({}), None, safe_results(), include_usage);
    trailing["choices"][0]["content_filter_offsets"] =
        json!({"check_offset": 0, "start_offset": 0, "end_offset": 64});
    events.push(sse(&trailing));
    if include_usage {
        let mut usage = completion.envelope(json!([]));
        usage["usage"] = completion.usage.clone();
        events.push(sse(&usage));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let error = || sse(&error_json(SERVER_ERROR, "server_error", None, None));
    server::event_stream(EVENT_STREAM, events, content_chunks, ending, error, delay)
}

// === impl Completion ===

impl Completion {
    fn new(request: &Recorded, behavior: &Behavior) -> Self {
        let tool = tool_call(&request.body);
        let messages = request.body["messages"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let chars = messages
            .iter()
            .map(|m| content::text_chars(&m["content"]))
            .sum();
        let prompt = content::estimate_tokens(chars, messages.len());
        let tokens = Tokens::new(prompt, behavior, tool.as_ref());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let usage = json!({
            "prompt_tokens": tokens.prompt,
            "completion_tokens": tokens.completion,
            "total_tokens": tokens.total(),
            "prompt_tokens_details": {"cached_tokens": tokens.cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        });
        Self {
            id: format!("chatcmpl-{}", random_alphanumeric(29)),
            created,
            model: model_of(request),
            usage,
            tool: tool.map(|call| (format!("call_{}", random_alphanumeric(24)), call)),
        }
    }

    /// The reply's stream pieces (none for a tool call).
    fn pieces(&self, reply: &str) -> Vec<String> {
        if self.tool.is_some() {
            return Vec::new();
        }
        word_pieces(reply).into_iter().map(str::to_owned).collect()
    }

    fn finish_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_calls"
        } else {
            "stop"
        }
    }

    /// The whole `chat.completion`, with Azure's filter annotations.
    fn whole(&self, text: String, finish: &str) -> Value {
        let message = match &self.tool {
            Some((id, call)) => {
                let function = json!({"name": call.name, "arguments": call.arguments_json()});
                let calls = json!([{"id": id, "type": "function", "function": function}]);
                json!({"role": "assistant", "content": null, "tool_calls": calls, "refusal": null})
            }
            None if text.is_empty() => json!({"role": "assistant", "content": null}),
            None => json!({"role": "assistant", "content": text, "refusal": null}),
        };
        let mut results = safe_results();
        if finish == "content_filter" {
            results["violence"] = json!({"filtered": true, "severity": "high"});
        }
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": FINGERPRINT,
            "prompt_filter_results": prompt_filter_results(),
            "choices": [{"index": 0, "message": message, "logprobs": null,
                         "finish_reason": finish, "content_filter_results": results}],
            "usage": self.usage,
        })
    }

    fn envelope(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model, "system_fingerprint": FINGERPRINT, "choices": choices})
    }

    fn chunk_value(
        &self,
        delta: Value,
        finish: Option<&str>,
        results: Value,
        usage: bool,
    ) -> Value {
        let choice = json!({"index": 0, "delta": delta, "logprobs": null,
                            "finish_reason": finish, "content_filter_results": results});
        let mut chunk = self.envelope(json!([choice]));
        if usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, results: Value, usage: bool) -> Bytes {
        sse(&self.chunk_value(delta, finish, results, usage))
    }
}

// === helpers ===

/// The URL shape of a generation path, and whether it is an embeddings call.
fn operation(path: &str) -> Option<(Shape, bool)> {
    match path {
        V1_CHAT => return Some((Shape::V1, false)),
        V1_EMBEDDINGS => return Some((Shape::V1, true)),
        _ => {}
    }
    let (deployment, operation) = path.strip_prefix(DEPLOYMENTS)?.split_once('/')?;
    if deployment.is_empty() {
        return None;
    }
    match operation {
        "chat/completions" => Some((Shape::Deployment, false)),
        "embeddings" => Some((Shape::Deployment, true)),
        _ => None,
    }
}

/// The `api-version` query parameter.
fn api_version(request: &Recorded) -> Option<&str> {
    let query = request.query.as_deref()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("api-version="))
}

/// Whether `version` looks like Azure's `2024-10-21` or `2025-01-01-preview`.
fn dated(version: &str) -> bool {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let parts: Vec<&str> = date.split('-').collect();
    parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(len, part)| part.len() == *len && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The body's `model`, or else the deployment named in the path (percent-decoding left to the
/// test that cares).
fn model_of(request: &Recorded) -> String {
    let from_path = || {
        let rest = request.path.strip_prefix(DEPLOYMENTS)?;
        rest.split_once('/').map(|(d, _)| d)
    };
    request
        .body
        .get("model")
        .and_then(Value::as_str)
        .or_else(from_path)
        .unwrap_or("unknown")
        .to_owned()
}

/// A call to the first offered function when the last message is the user's, as the OpenAI
/// simulator does.
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

/// Every category checked and nothing filtered.
fn safe_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

fn prompt_filter_results() -> Value {
    let mut results = safe_results();
    results["jailbreak"] = json!({"filtered": false, "detected": false});
    json!([{"prompt_index": 0, "content_filter_results": results}])
}

/// Azure's own error shape (gateway errors: auth, quota, routing): a string `code`.
fn azure_error(status: u16, code: &str, message: &str) -> Response<SimBody> {
    let body = json!({"error": {"code": code, "message": message}});
    server::json_response(status, &body)
}

/// The OpenAI error shape Azure passes on from the model service, with its `status`.
fn openai_error(
    status: u16,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response<SimBody> {
    let mut body = error_json(message, INVALID, param, code);
    if status >= 500 {
        body["error"]["type"] = json!("server_error");
    }
    body["error"]["status"] = json!(status);
    server::json_response(status, &body)
}

fn error_json(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

#[cfg(test)]
mod tests;
