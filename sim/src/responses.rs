//! OpenAI's Responses API (`POST /v1/responses`) on the simulated OpenAI provider: the request is
//! checked strictly against the shape OpenAI accepts (a 400 in OpenAI's error format names the
//! parameter otherwise), and the answer is a Response object or its typed event stream
//! (`response.created` … `response.completed`, each with `type` and `sequence_number`), text or
//! a call to the first function tool when the last input item is the user's. Stored state is
//! simulated as far as the sidecar can see it: `previous_response_id`, `store` and
//! `conversation` are accepted (the passthrough case sends them).

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::content::{self, Tokens, ToolCall, random_alphanumeric, word_pieces};
use super::server::{Behavior, Recorded};

/// Top-level fields of a Responses request (OpenAI's `CreateResponse`).
const FIELDS: [&str; 30] = [
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "previous_response_id",
    "store",
    "conversation",
    "background",
    "metadata",
    "parallel_tool_calls",
    "reasoning",
    "truncation",
    "user",
    "include",
    "prompt",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "top_logprobs",
    "max_tool_calls",
    "context_management",
    "verbosity",
    "prompt_cache_retention",
];

/// Input item types the simulated API knows.
const ITEM_TYPES: [&str; 5] = [
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
];

/// The first problem with a Responses request, as OpenAI's message and `param`.
pub(super) fn check(body: &Value) -> Result<(), (String, Option<&'static str>)> {
    let Some(body) = body.as_object() else {
        return Err(("The request body must be a JSON object.".into(), None));
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err((format!("Unknown parameter: '{unknown}'."), None));
    }
    if !body.get("model").is_some_and(Value::is_string) {
        return Err(("Missing required parameter: 'model'.".into(), Some("model")));
    }
    let stateful = ["previous_response_id", "conversation", "prompt"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()));
    match body.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => check_items(items)?,
        None if stateful => {}
        _ => {
            return Err((
                "Invalid type for 'input': expected a string or an array of input items.".into(),
                Some("input"),
            ));
        }
    }
    if let Some(stream) = body
        .get("stream")
        .filter(|s| !s.is_boolean() && !s.is_null())
    {
        return Err((
            format!("Invalid type for 'stream': expected a boolean, but got {stream}."),
            Some("stream"),
        ));
    }
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = tool.get("type").and_then(Value::as_str);
        if kind == Some("function") && !tool.get("name").is_some_and(Value::is_string) {
            return Err((
                "Missing required parameter: 'tools[0].name'.".into(),
                Some("tools"),
            ));
        }
        if kind.is_none() {
            return Err((
                "Missing required parameter: 'tools[0].type'.".into(),
                Some("tools"),
            ));
        }
    }
    Ok(())
}

fn check_items(items: &[Value]) -> Result<(), (String, Option<&'static str>)> {
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        if !ITEM_TYPES.contains(&kind) {
            return Err((
                format!(
                    "Invalid value: '{kind}'. Supported values are: {}.",
                    ITEM_TYPES.join(", ")
                ),
                Some("input"),
            ));
        }
        if kind == "message" && !item.get("role").is_some_and(Value::is_string) {
            return Err((
                format!("Missing required parameter: 'input[{i}].role'."),
                Some("input"),
            ));
        }
        let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
        if kind == "message" && !["user", "assistant", "system", "developer"].contains(&role) {
            return Err((
                format!(
                    "Invalid value: '{role}'. Supported values are: 'user', 'assistant', 'system', and 'developer'."
                ),
                Some("input"),
            ));
        }
        if kind == "message" && item.get("messages").is_some() {
            return Err((
                format!("Unknown parameter: 'input[{i}].messages'."),
                Some("input"),
            ));
        }
    }
    Ok(())
}

/// One answer's documents: the Response (in progress, or done) and its events.
pub(super) struct Answer {
    id: String,
    message_id: String,
    created_at: u64,
    model: String,
    request: Map<String, Value>,
    usage: Value,
    tool: Option<(String, ToolCall)>,
    reply: String,
}

impl Answer {
    pub(super) fn new(request: &Recorded, behavior: &Behavior, created_at: u64) -> Self {
        let body = request.body.as_object().cloned().unwrap_or_default();
        let tool = tool_call(&body);
        let tokens = Tokens::new(prompt_tokens(&body), behavior, tool.as_ref());
        let usage = json!({
            "input_tokens": tokens.prompt,
            "input_tokens_details": {"cached_tokens": tokens.cached},
            "output_tokens": tokens.completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens.total(),
        });
        let suffix = random_alphanumeric(24);
        Self {
            id: format!("resp_sim{suffix}"),
            message_id: format!("msg_sim{suffix}"),
            created_at,
            model: request.model().unwrap_or("unknown").to_string(),
            request: body,
            usage,
            tool: tool.map(|call| (format!("call_sim_{}", random_alphanumeric(24)), call)),
            reply: behavior.reply.clone(),
        }
    }

    /// The finished output items.
    fn output(&self) -> Vec<Value> {
        match &self.tool {
            None => vec![self.message(&self.reply, "completed")],
            Some((call_id, call)) => {
                vec![self.function_call(call_id, call, &call.arguments_json(), "completed")]
            }
        }
    }

    fn message(&self, text: &str, status: &str) -> Value {
        json!({"id": self.message_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
    }

    fn function_call(
        &self,
        call_id: &str,
        call: &ToolCall,
        arguments: &str,
        status: &str,
    ) -> Value {
        json!({"id": format!("fc_{}", &self.id[5..]), "type": "function_call", "status": status,
            "call_id": call_id, "name": call.name, "arguments": arguments})
    }

    /// The Response object; `done` fills in the output and usage.
    pub(super) fn response(&self, done: bool) -> Value {
        let echo = |key: &str, default: Value| self.request.get(key).cloned().unwrap_or(default);
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": if done { "completed" } else { "in_progress" },
            "background": echo("background", json!(false)),
            "error": null,
            "incomplete_details": null,
            "instructions": echo("instructions", Value::Null),
            "max_output_tokens": echo("max_output_tokens", Value::Null),
            "model": self.model,
            "output": if done { self.output() } else { vec![] },
            "parallel_tool_calls": echo("parallel_tool_calls", json!(true)),
            "previous_response_id": echo("previous_response_id", Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "store": echo("store", json!(true)),
            "temperature": echo("temperature", json!(1.0)),
            "text": echo("text", json!({"format": {"type": "text"}})),
            "tool_choice": echo("tool_choice", json!("auto")),
            "tools": echo("tools", json!([])),
            "top_p": echo("top_p", json!(1.0)),
            "truncation": echo("truncation", json!("disabled")),
            "usage": if done { self.usage.clone() } else { Value::Null },
            "user": echo("user", Value::Null),
            "metadata": echo("metadata", json!({})),
        })
    }

    /// The events of the streamed answer, and how many of them stream faults count (all but
    /// the final `response.completed`).
    pub(super) fn events(&self) -> (Vec<Bytes>, usize) {
        let mut events = Vec::new();
        let mut push = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(events.len());
            events.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
        };
        let start = self.response(false);
        push("response.created", json!({"response": start}));
        push("response.in_progress", json!({"response": start}));
        match &self.tool {
            None => {
                let id = &self.message_id;
                push(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": self.message("", "in_progress")}),
                );
                let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                push(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": 0, "content_index": 0, "part": part("")}),
                );
                for piece in word_pieces(&self.reply) {
                    push(
                        "response.output_text.delta",
                        json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
                    );
                }
                push(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": 0, "content_index": 0, "text": self.reply, "logprobs": []}),
                );
                push(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": 0, "content_index": 0, "part": part(&self.reply)}),
                );
                push(
                    "response.output_item.done",
                    json!({"output_index": 0, "item": self.message(&self.reply, "completed")}),
                );
            }
            Some((call_id, call)) => {
                let arguments = call.arguments_json();
                let item = self.function_call(call_id, call, "", "in_progress");
                let id = item["id"].clone();
                push(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": item}),
                );
                for piece in content::json_pieces(&arguments) {
                    push(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": 0, "delta": piece}),
                    );
                }
                push(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": 0, "name": call.name, "arguments": arguments}),
                );
                push(
                    "response.output_item.done",
                    json!({"output_index": 0, "item": self.function_call(call_id, call, &arguments, "completed")}),
                );
            }
        }
        let counted = events.len();
        let mut done = self.response(true);
        done["status"] = json!("completed");
        let n = events.len();
        let data = json!({"type": "response.completed", "response": done, "sequence_number": n});
        events.push(Bytes::from(format!(
            "event: response.completed\ndata: {data}\n\n"
        )));
        (events, counted)
    }

    /// The event a stream failing after `sent` events ends with, as OpenAI ends one:
    /// `response.failed`, its Response `failed` with `error`, numbered after the events sent.
    pub(super) fn failed_event(&self, sent: usize, message: &str) -> Bytes {
        let mut response = self.response(false);
        response["status"] = json!("failed");
        response["error"] = json!({"code": "server_error", "message": message});
        let data =
            json!({"type": "response.failed", "response": response, "sequence_number": sent});
        Bytes::from(format!("event: response.failed\ndata: {data}\n\n"))
    }
}

/// A call to the first function tool when the last input item is a user message.
fn tool_call(body: &Map<String, Value>) -> Option<ToolCall> {
    let last = body.get("input")?.as_array()?.last()?;
    let kind = last
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    if kind != "message" || last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    let tool = body
        .get("tools")?
        .as_array()?
        .iter()
        .find(|t| t.get("type").and_then(Value::as_str) == Some("function"))?;
    let parameters = tool.get("parameters").cloned().unwrap_or(Value::Null);
    Some(ToolCall::new(tool.get("name")?.as_str()?, &parameters))
}

/// A quarter token per character of input text plus four per item.
fn prompt_tokens(body: &Map<String, Value>) -> u32 {
    match body.get("input") {
        Some(Value::String(text)) => content::estimate_tokens(text.chars().count(), 1),
        Some(Value::Array(items)) => {
            let chars: usize = items
                .iter()
                .map(|i| content::text_chars(i.get("content").unwrap_or(&Value::Null)))
                .sum();
            content::estimate_tokens(chars, items.len())
        }
        _ => content::estimate_tokens(0, 1),
    }
}
