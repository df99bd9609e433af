//! OpenAI Responses API clients (`POST /v1/responses`) on the OpenAI-format hub: their requests
//! into Chat Completions requests ([`request`]) and whole Chat Completions answers back into
//! Response objects ([`response`]); streams are [`super::responses_stream`]'s.
//!
//! The sidecar keeps no state, so it serves the API as `store: false` does: every request carries
//! its whole conversation as `input` items. What needs state held by the provider
//! (`previous_response_id`, `store: true`, `conversation`, `background`, stored prompts, item
//! references) or a tool run by the provider (web search, file search, ...) is refused by
//! [`stateful`] with a message saying why, unless the route passes requests through to providers
//! that serve the Responses API themselves (docs/reference/api.md#responses). What maps to what
//! is in docs/reference/translation.md#responses.

use serde_json::{Map, Value, json};

use super::wire::openai::{Completion, CompletionUsage};
use super::wire::read;

/// Why `background: true` is refused even where requests pass through.
pub const BACKGROUND: &str = "`background: true` is not supported: a background response is read and cancelled with GET /v1/responses/{id} and POST /v1/responses/{id}/cancel, which this sidecar does not proxy, so it could never be read; send the request without `background` (or with `stream: true`)";

/// The first field of a request that names state stored in one provider account (a stored
/// response, conversation, item or prompt, or `store: true`), as the error shows it.
pub fn stored_state(body: &Map<String, Value>) -> Option<String> {
    let set = |key: &str| body.get(key).is_some_and(|v| !v.is_null());
    if set("previous_response_id") {
        return Some("`previous_response_id`".into());
    }
    if set("conversation") {
        return Some("`conversation`".into());
    }
    if body.get("store") == Some(&Value::Bool(true)) {
        return Some("`store: true`".into());
    }
    if set("prompt") {
        return Some("`prompt` (a stored prompt template)".into());
    }
    if let Some(Value::Array(items)) = body.get("input") {
        for (i, item) in items.iter().enumerate() {
            if item.get("type").and_then(Value::as_str) == Some("item_reference") {
                return Some(format!(
                    "input[{i}], an `item_reference` (which points at a stored item),"
                ));
            }
        }
    }
    None
}

/// Why a request needs what only a stateful Responses API can give, as the message of the 400;
/// `None` when it can be translated.
pub fn stateful(body: &Map<String, Value>) -> Option<String> {
    const WHY: &str = "this sidecar serves the Responses API statelessly (as `store: false`): send the whole conversation as `input` items";
    if body.get("background") == Some(&Value::Bool(true)) {
        return Some(BACKGROUND.into());
    }
    if let Some(field) = stored_state(body) {
        let and = if field == "`store: true`" {
            ", and omit `store` or set it to false"
        } else {
            ""
        };
        return Some(format!("{field} is not supported: {WHY}{and}"));
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        for (i, tool) in tools.iter().enumerate() {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
            if kind != "function" {
                return Some(format!(
                    "tools[{i}] has type {kind:?}: only `function` tools are supported, since the sidecar translates requests to providers that run no built-in tools"
                ));
            }
        }
    }
    None
}

/// A Responses API request as a Chat Completions request. Call [`stateful`] first: what it
/// refuses is not translated here.
pub fn request(body: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut messages = Vec::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        Some(_) => return Err("`instructions` must be a string".into()),
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(i, item, &mut messages)?;
            }
        }
        None | Some(Value::Null) => return Err("`input` is required".into()),
        _ => return Err("`input` must be a string or an array of input items".into()),
    }
    if messages.is_empty() {
        return Err("`input` must not be empty".into());
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    out.insert("messages".into(), Value::Array(messages));
    parameters(body, &mut out)?;
    tools(body, &mut out)?;
    text_format(body, &mut out)?;
    Ok(out)
}

/// One `input` item, appended to `messages`. Consecutive function calls (and the assistant text
/// before them) become one assistant message, as Chat Completions expects them.
fn input_item(i: usize, item: &Value, messages: &mut Vec<Value>) -> Result<(), String> {
    let Some(item) = item.as_object() else {
        return Err(format!("input[{i}] must be an object"));
    };
    let kind = match item.get("type") {
        None => "message",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(format!("input[{i}].type must be a string")),
    };
    match kind {
        "message" => message(i, item, messages),
        "function_call" => {
            let call_id = string(item, "call_id").ok_or(format!("input[{i}] needs `call_id`"))?;
            let name = string(item, "name").ok_or(format!("input[{i}] needs `name`"))?;
            let arguments = string(item, "arguments").unwrap_or("{}");
            let mut call = json!({"id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments}});
            // Gemini's thought signature, which the answer's item carried (see
            // [`function_call_item`]); Gemini refuses a call sent back without it.
            if let Some(extra) = item.get("extra_content").filter(|e| e.is_object()) {
                call["extra_content"] = extra.clone();
            }
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                    if let Some(Value::Array(calls)) = last.get_mut("tool_calls") {
                        calls.push(call);
                    }
                }
                Some(last) if last["role"] == "assistant" && last["content"].is_string() => {
                    last["tool_calls"] = json!([call]);
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
            Ok(())
        }
        "function_call_output" => {
            let call_id = string(item, "call_id").ok_or(format!("input[{i}] needs `call_id`"))?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts_text(parts),
                _ => {
                    return Err(format!(
                        "input[{i}].output must be a string or an array of parts"
                    ));
                }
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            Ok(())
        }
        // Reasoning carried over from an earlier answer: its encrypted content is the
        // provider's own, and no chat API takes it back.
        "reasoning" => Ok(()),
        other => Err(format!(
            "input[{i}] has type {other:?}, which the sidecar cannot translate: use `message`, `function_call` and `function_call_output` items"
        )),
    }
}

/// A `message` item: a role and text, or content parts.
fn message(i: usize, item: &Map<String, Value>, messages: &mut Vec<Value>) -> Result<(), String> {
    let role = match string(item, "role") {
        Some(role @ ("user" | "system" | "developer" | "assistant")) => role,
        Some(role) => {
            return Err(format!(
                "input[{i}].role {role:?} is not one of user, system, developer, assistant"
            ));
        }
        None => return Err(format!("input[{i}] needs a string `role`")),
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(Value::Array(parts)) if role == "user" => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                out.push(user_part(i, j, part)?);
            }
            Value::Array(out)
        }
        // Chat Completions takes text only from the other roles.
        Some(Value::Array(parts)) => Value::String(parts_text(parts)),
        _ => {
            return Err(format!(
                "input[{i}].content must be a string or an array of parts"
            ));
        }
    };
    messages.push(json!({"role": role, "content": content}));
    Ok(())
}

/// One content part of a user message as a Chat Completions part.
fn user_part(i: usize, j: usize, part: &Value) -> Result<Value, String> {
    let at = || format!("input[{i}].content[{j}]");
    match part.get("type").and_then(Value::as_str).unwrap_or_default() {
        "input_text" | "output_text" | "text" => Ok(
            json!({"type": "text", "text": part.get("text").and_then(Value::as_str).unwrap_or_default()}),
        ),
        "input_image" => {
            let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                return Err(format!(
                    "{}: an `input_image` needs `image_url` (a URL or a data: URL); `file_id` points at a stored file",
                    at()
                ));
            };
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        "input_file" => {
            let Some(data) = part.get("file_data").and_then(Value::as_str) else {
                return Err(format!(
                    "{}: an `input_file` needs `file_data`; `file_id` and `file_url` point at stored or remote files",
                    at()
                ));
            };
            let mut file = json!({"file_data": data});
            if let Some(name) = part.get("filename").filter(|n| n.is_string()) {
                file["filename"] = name.clone();
            }
            Ok(json!({"type": "file", "file": file}))
        }
        other => Err(format!(
            "{} has type {other:?}, which has no Chat Completions equivalent",
            at()
        )),
    }
}

/// The text of content parts (`input_text`, `output_text`, `refusal`), joined.
fn parts_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| p.get("text").or_else(|| p.get("refusal")))
        .filter_map(Value::as_str)
        .collect()
}

fn string<'a>(item: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Value::as_str)
}

/// Sampling, limits and the fields that keep their name.
fn parameters(body: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), String> {
    for key in [
        "temperature",
        "top_p",
        "stream",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "top_logprobs",
    ] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if out.contains_key("top_logprobs") {
        out.insert("logprobs".into(), Value::Bool(true));
    }
    if let Some(max) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_completion_tokens".into(), max.clone());
    }
    match body.get("reasoning").and_then(|r| r.get("effort")) {
        None | Some(Value::Null) => {}
        Some(effort @ Value::String(_)) => {
            out.insert("reasoning_effort".into(), effort.clone());
        }
        Some(_) => return Err("`reasoning.effort` must be a string".into()),
    }
    Ok(())
}

/// Function tools and `tool_choice`; [`stateful`] has refused every other kind of tool.
fn tools(body: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), String> {
    match body.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            let mut converted = Vec::with_capacity(tools.len());
            for (i, tool) in tools.iter().enumerate() {
                let name = tool
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or(format!("tools[{i}] needs a string `name`"))?;
                let mut function = json!({"name": name});
                for key in ["description", "parameters", "strict"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        function[key] = v.clone();
                    }
                }
                converted.push(json!({"type": "function", "function": function}));
            }
            if !converted.is_empty() {
                out.insert("tools".into(), Value::Array(converted));
            }
        }
        Some(_) => return Err("`tools` must be an array".into()),
    }
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(mode)) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Value::String(mode.clone())
        }
        Some(Value::Object(choice)) => match choice.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = choice
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("`tool_choice` of type function needs a `name`")?;
                json!({"type": "function", "function": {"name": name}})
            }
            Some("allowed_tools") => {
                let named = choice
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.get("name"))
                    .map(|name| json!({"type": "function", "function": {"name": name}}))
                    .collect::<Vec<_>>();
                let mode = choice.get("mode").cloned().unwrap_or(json!("auto"));
                json!({"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": named}})
            }
            other => {
                return Err(format!(
                    "`tool_choice` of type {other:?} is not supported: only function tools are"
                ));
            }
        },
        Some(_) => {
            return Err(
                "`tool_choice` must be \"auto\", \"none\", \"required\" or a function choice"
                    .into(),
            );
        }
    };
    out.insert("tool_choice".into(), choice);
    Ok(())
}

/// `text.format` as `response_format`, and `text.verbosity` as `verbosity`.
fn text_format(body: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), String> {
    let Some(text) = body.get("text").filter(|t| !t.is_null()) else {
        return Ok(());
    };
    if let Some(verbosity) = text.get("verbosity").filter(|v| v.is_string()) {
        out.insert("verbosity".into(), verbosity.clone());
    }
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    let format = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(()),
        Some("json_object") => json!({"type": "json_object"}),
        Some("json_schema") => {
            let name = format
                .get("name")
                .and_then(Value::as_str)
                .ok_or("`text.format` of type json_schema needs a `name`")?;
            let schema = format
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or("`text.format` of type json_schema needs a `schema` object")?;
            let mut json_schema = json!({"name": name, "schema": schema});
            for key in ["description", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    json_schema[key] = v.clone();
                }
            }
            json!({"type": "json_schema", "json_schema": json_schema})
        }
        _ => {
            return Err(
                "`text.format.type` must be \"text\", \"json_object\" or \"json_schema\"".into(),
            );
        }
    };
    out.insert("response_format".into(), format);
    Ok(())
}

/// Ids of one answer: the response's and its items', derived from the hub answer's id so that
/// a stream and its assembled answer agree; random when the upstream gave none, so that no two
/// answers share an id.
#[derive(Clone, Debug)]
pub struct Ids {
    suffix: String,
}

impl Ids {
    /// Ids for the hub answer or chunk id `id` (`chatcmpl-…` and the like).
    pub fn new(id: Option<&str>) -> Self {
        let suffix = id
            .map(|id| {
                id.strip_prefix("chatcmpl-")
                    .or_else(|| id.strip_prefix("resp_"))
                    .unwrap_or(id)
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect::<String>()
            })
            .filter(|suffix| !suffix.is_empty())
            .unwrap_or_else(|| format!("sy{:032x}", rand::random::<u128>()));
        Self { suffix }
    }

    pub fn response(&self) -> String {
        format!("resp_{}", self.suffix)
    }

    /// The id of the answer's message item (one per answer: all its text and refusal).
    pub fn message(&self) -> String {
        format!("msg_{}", self.suffix)
    }

    /// The item id of the function call at the hub's tool-call `index`.
    pub fn function_call(&self, index: u64) -> String {
        format!("fc_{}_{index}", self.suffix)
    }
}

/// How a hub answer ended, as a Response's `status` and `incomplete_details`.
pub fn status(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The `status` of the output items of an answer that ended so: `incomplete` when the answer
/// is (a call cut off by the token limit has unfinished arguments).
pub fn item_status(finish_reason: Option<&str>) -> &'static str {
    match status(finish_reason).0 {
        "completed" => "completed",
        _ => "incomplete",
    }
}

/// Hub usage as a Response's `usage`.
pub fn usage(usage: &CompletionUsage, raw: Option<&Value>) -> Value {
    let input = usage.prompt_tokens.unwrap_or(0);
    let output = usage.completion_tokens.unwrap_or(0);
    let reasoning = raw
        .and_then(|u| u.pointer("/completion_tokens_details/reasoning_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": usage.prompt_tokens_details.cached_tokens.unwrap_or(0)},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input.saturating_add(output),
    })
}

/// The request fields a Response echoes (`instructions`, `tools`, `temperature`, ...), as the
/// client sent them; the defaults OpenAI echoes for what it left out.
#[derive(Clone, Debug, Default)]
pub struct Echo {
    fields: Map<String, Value>,
}

/// What a Response echoes of its request.
const ECHOED: &[&str] = &[
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
];

impl Echo {
    /// The echoed fields of a Responses request.
    pub fn new(body: &Map<String, Value>) -> Self {
        let fields = ECHOED
            .iter()
            .filter_map(|key| {
                let value = body.get(*key).filter(|v| !v.is_null())?;
                Some(((*key).to_string(), value.clone()))
            })
            .collect();
        Self { fields }
    }
}

/// A Response object around `output`: what the SDKs read, echoing the request's fields.
pub fn envelope(
    ids: &Ids,
    echo: &Echo,
    created_at: u64,
    model: &Value,
    status: &str,
    output: Vec<Value>,
) -> Value {
    let mut response = json!({
        "id": ids.response(),
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": null,
        "metadata": {},
    });
    for (key, value) in &echo.fields {
        response[key.as_str()] = value.clone();
    }
    response
}

/// An assistant `message` output item with content parts.
pub fn message_content(id: &str, content: Vec<Value>, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": content})
}

/// An `output_text` content part, or a `refusal` one.
pub fn content_part(refusal: bool, text: &str) -> Value {
    if refusal {
        json!({"type": "refusal", "refusal": text})
    } else {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }
}

/// A `function_call` output item. Gemini's thought signature rides along as the hub carries it
/// (`extra_content.google.thought_signature`), for the client to send back with the call.
pub fn function_call_item(
    id: &str,
    call_id: &Value,
    name: &Value,
    arguments: &str,
    status: &str,
    signature: Option<&str>,
) -> Value {
    let mut item = json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status});
    if let Some(signature) = signature {
        item["extra_content"] = json!({"google": {"thought_signature": signature}});
    }
    item
}

/// A whole Chat Completions answer (`chat.completion`) as a Response object echoing `echo`.
pub fn response(completion: &Value, echo: &Echo) -> Value {
    let parsed: Completion = read(completion);
    let ids = Ids::new(parsed.id.as_deref());
    let choice = parsed.choices.as_ref().and_then(|c| c.first());
    let finish = choice.and_then(|c| c.finish_reason.as_deref());
    let (status, incomplete) = status(finish);
    let item_status = item_status(finish);
    let mut output = Vec::new();
    if let Some(choice) = choice {
        let message = &choice.message;
        let mut content = Vec::new();
        if let Some(text) = message.content.as_str().filter(|t| !t.is_empty()) {
            content.push(content_part(false, text));
        }
        if let Some(refusal) = completion
            .pointer("/choices/0/message/refusal")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            content.push(content_part(true, refusal));
        }
        if !content.is_empty() {
            output.push(message_content(&ids.message(), content, item_status));
        }
        for (n, call) in message.tool_calls.iter().flatten().enumerate() {
            let index = call.index.unwrap_or(n as u64);
            output.push(function_call_item(
                &ids.function_call(index),
                &call.id,
                &call.function.name,
                call.function.arguments.as_deref().unwrap_or("{}"),
                item_status,
                call.extra_content.google.thought_signature.as_deref(),
            ));
        }
    }
    let created = completion
        .get("created")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut out = envelope(&ids, echo, created, &parsed.model, status, output);
    out["incomplete_details"] = incomplete;
    if let Some(u) = &parsed.usage {
        out["usage"] = usage(u, completion.get("usage"));
    }
    out
}

#[cfg(test)]
mod tests;
