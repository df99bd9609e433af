//! Anthropic-format clients (`POST /v1/messages`) on the OpenAI-format hub: their requests into
//! Chat Completions requests, and Chat Completions answers and chunks back into Messages answers
//! and events.
//!
//! What has no OpenAI equivalent is dropped on purpose (see the README's translation table):
//! `top_k`, `thinking`, cache-control markers, citations, documents and server tools.

use serde_json::{Map, Value, json};

use super::{blocks_text, json_arguments};

/// An Anthropic Messages request as an OpenAI Chat Completions request.
pub fn request(anthropic: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let messages = messages(anthropic)?;
    let mut out = Map::new();
    out.insert(
        "model".into(),
        anthropic.get("model").cloned().unwrap_or(Value::Null),
    );
    out.insert("messages".into(), Value::Array(messages));
    parameters(anthropic, &mut out);
    tools(anthropic, &mut out);
    Ok(out)
}

/// The system prompt and the turns as OpenAI messages.
fn messages(anthropic: &Map<String, Value>) -> Result<Vec<Value>, String> {
    let mut messages = Vec::new();
    match anthropic.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(Value::Array(blocks)) => {
            messages.push(json!({"role": "system", "content": blocks_text(blocks)}))
        }
        Some(_) => return Err("`system` must be a string or an array of text blocks".into()),
    }
    let turns = anthropic
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be an array")?;
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or_default();
        match (role, turn.get("content")) {
            (_, Some(Value::String(text))) => messages.push(json!({"role": role, "content": text})),
            ("user", Some(Value::Array(blocks))) => user_turn(blocks, &mut messages)?,
            ("assistant", Some(Value::Array(blocks))) => messages.push(assistant_turn(blocks)),
            _ => {
                return Err(format!(
                    "messages[{i}].content must be a string or an array of content blocks"
                ));
            }
        }
    }
    Ok(messages)
}

/// Token limit, sampling parameters, streaming, stop sequences and the end user.
fn parameters(anthropic: &Map<String, Value>, out: &mut Map<String, Value>) {
    for (from, to) in [
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stream", "stream"),
    ] {
        if let Some(v) = anthropic.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(stops) = anthropic
        .get("stop_sequences")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        out.insert("stop".into(), Value::Array(stops.clone()));
    }
    if let Some(user) = anthropic
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .filter(|v| v.is_string())
    {
        out.insert("user".into(), user.clone());
    }
}

/// Client tools as OpenAI functions (server tools have no equivalent), with `tool_choice`.
fn tools(anthropic: &Map<String, Value>, out: &mut Map<String, Value>) {
    if let Some(tools) = anthropic
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        let functions: Vec<Value> = tools
            .iter()
            // Server tools (web search, code execution) have a `type` and no schema: no equivalent.
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                let mut function = json!({"name": t["name"], "parameters": t["input_schema"]});
                if let Some(description) = t.get("description").filter(|d| d.is_string()) {
                    function["description"] = description.clone();
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        if !functions.is_empty() {
            out.insert("tools".into(), Value::Array(functions));
        }
    }
    if let Some(choice) = anthropic.get("tool_choice").and_then(Value::as_object) {
        let converted = match choice.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
            }
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), converted);
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
}

/// A user turn: tool results become `tool` messages (OpenAI wants them right after the assistant
/// turn that called), the rest one `user` message.
fn user_turn(blocks: &[Value], messages: &mut Vec<Value>) -> Result<(), String> {
    let mut parts = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_result") => {
                let content = match block.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(inner)) => blocks_text(inner),
                    _ => String::new(),
                };
                let content = if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    format!("Error: {content}")
                } else {
                    content
                };
                messages.push(json!({"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}));
            }
            Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
            Some("image") => {
                let source = &block["source"];
                let url = match source.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source["media_type"].as_str().unwrap_or("image/png"),
                        source["data"].as_str().unwrap_or_default()
                    ),
                    Some("url") => source["url"].as_str().unwrap_or_default().to_string(),
                    _ => return Err("image blocks need a base64 or url source".into()),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            _ => {} // documents, search results, thinking: no Chat Completions equivalent
        }
    }
    if !parts.is_empty() {
        // A lone text part reads better, and older OpenAI-compatible servers want a string.
        let content = match parts.as_slice() {
            [only] if only["type"] == "text" => only["text"].clone(),
            _ => Value::Array(parts),
        };
        messages.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

fn assistant_turn(blocks: &[Value]) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block.get("input").map_or("{}".into(), Value::to_string)},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// An OpenAI `chat.completion` as an Anthropic `message`.
pub fn response(completion: &Value) -> Value {
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(json!({
            "type": "tool_use", "id": call["id"], "name": call["function"]["name"],
            "input": json_arguments(call["function"]["arguments"].as_str().unwrap_or("{}")),
        }));
    }
    let usage = &completion["usage"];
    let cached = usage
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    json!({
        "id": message_id(completion),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": {
            "input_tokens": prompt.saturating_sub(cached),
            "output_tokens": usage["completion_tokens"].as_u64().unwrap_or(0),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
        },
    })
}

fn message_id(completion: &Value) -> String {
    match completion.get("id").and_then(Value::as_str) {
        Some(id) if id.starts_with("msg_") => id.to_string(),
        Some(id) => format!("msg_{id}"),
        None => "msg_switchyard".to_string(),
    }
}

/// Turns OpenAI chunks into Anthropic stream events as they arrive: `message_start`, then a
/// `content_block_start`/`_delta`/`_stop` run per text or tool-call block, then `message_delta`
/// and `message_stop` at the end.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    started: bool,
    /// The open block: its index and whether it is text (else the OpenAI tool-call index).
    open: Option<(usize, Block)>,
    next_index: usize,
    stop_reason: Option<&'static str>,
    usage: Option<(u64, u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool(u64),
}

fn event(name: &str, data: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

impl StreamEncoder {
    /// Events for one OpenAI chunk, appended to `out`.
    pub fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let start = json!({"type": "message_start", "message": {
                "id": message_id(chunk), "type": "message", "role": "assistant", "model": chunk["model"],
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }});
            out.extend(event("message_start", &start));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let cached = usage
                .pointer("/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
            self.usage = Some((
                prompt.saturating_sub(cached),
                usage["completion_tokens"].as_u64().unwrap_or(0),
                cached,
            ));
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let index = self.open_block(Block::Text, out, |_| json!({"type": "text", "text": ""}));
            out.extend(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})));
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let index = self.open_block(Block::Tool(tool), out, |_| {
                json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}})
            });
            if let Some(arguments) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                out.extend(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": arguments}})));
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason(reason));
        }
    }

    /// The index of the block `kind`, opening it (and closing the previous one) when needed.
    fn open_block(
        &mut self,
        kind: Block,
        out: &mut Vec<u8>,
        content_block: impl FnOnce(usize) -> Value,
    ) -> usize {
        if let Some((index, open)) = self.open
            && open == kind
        {
            return index;
        }
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        let start = json!({"type": "content_block_start", "index": index, "content_block": content_block(index)});
        out.extend(event("content_block_start", &start));
        self.open = Some((index, kind));
        index
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            out.extend(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// The closing events, after the last chunk.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        let (input, output, cached) = self.usage.unwrap_or_default();
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": cached}});
        out.extend(event("message_delta", &delta));
        out.extend(event("message_stop", &json!({"type": "message_stop"})));
    }
}

#[cfg(test)]
mod tests;
