//! Anthropic-format clients (`POST /v1/messages`) on the OpenAI-format hub: their requests into
//! Chat Completions requests, and Chat Completions answers and chunks back into Messages answers
//! and events.
//!
//! What has no OpenAI equivalent is dropped on purpose (see `docs/reference/translation.md`):
//! `top_k`, `thinking`, cache-control markers, citations, documents and server tools.

use serde_json::{Map, Value, json};

use super::json_arguments;
use super::wire::anthropic::{
    Block, ImageSource, MessagesRequest, System, TurnContent, blocks_text,
};
use super::wire::openai::{Choice, Completion, CompletionUsage};
use super::wire::{read, read_map};

/// An Anthropic Messages request as an OpenAI Chat Completions request.
pub fn request(anthropic: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let anthropic: MessagesRequest = read_map(anthropic);
    let messages = messages(&anthropic)?;
    let mut out = Map::new();
    out.insert("model".into(), anthropic.model.clone());
    out.insert("messages".into(), Value::Array(messages));
    parameters(&anthropic, &mut out);
    tools(&anthropic, &mut out);
    Ok(out)
}

/// The system prompt and the turns as OpenAI messages.
fn messages(anthropic: &MessagesRequest) -> Result<Vec<Value>, String> {
    let mut messages = Vec::new();
    match &anthropic.system {
        System::None => {}
        System::Text(text) => messages.push(json!({"role": "system", "content": text})),
        System::Blocks(blocks) => {
            messages.push(json!({"role": "system", "content": blocks_text(blocks)}))
        }
        System::Invalid => {
            return Err("`system` must be a string or an array of text blocks".into());
        }
    }
    let turns = anthropic
        .messages
        .as_ref()
        .ok_or("`messages` must be an array")?;
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.role.as_deref().unwrap_or_default();
        match (role, &turn.content) {
            (_, TurnContent::Text(text)) => messages.push(json!({"role": role, "content": text})),
            ("user", TurnContent::Blocks(blocks)) => user_turn(blocks, &mut messages)?,
            ("assistant", TurnContent::Blocks(blocks)) => messages.push(assistant_turn(blocks)),
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
fn parameters(anthropic: &MessagesRequest, out: &mut Map<String, Value>) {
    // Copied as given: the hub's own reader decides what a wrong-typed value means.
    for (key, value) in [
        ("max_tokens", &anthropic.max_tokens),
        ("temperature", &anthropic.temperature),
        ("top_p", &anthropic.top_p),
        ("stream", &anthropic.stream),
    ] {
        if let Some(v) = value {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stops) = anthropic.stop_sequences.as_ref().filter(|s| !s.is_empty()) {
        out.insert("stop".into(), Value::Array(stops.clone()));
    }
    if let Some(user) = &anthropic.metadata.user_id {
        out.insert("user".into(), Value::String(user.clone()));
    }
}

/// Client tools as OpenAI functions (server tools have no equivalent), with `tool_choice`.
fn tools(anthropic: &MessagesRequest, out: &mut Map<String, Value>) {
    if let Some(tools) = anthropic.tools.as_ref().filter(|t| !t.is_empty()) {
        let functions: Vec<Value> = tools
            .iter()
            // Server tools (web search, code execution) have a `type` and no schema: no equivalent.
            .filter_map(|t| Some((t, t.input_schema.as_ref()?)))
            .map(|(t, schema)| {
                let mut function = json!({"name": t.name, "parameters": schema});
                if let Some(description) = &t.description {
                    function["description"] = Value::String(description.clone());
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        if !functions.is_empty() {
            out.insert("tools".into(), Value::Array(functions));
        }
    }
    if let Some(choice) = &anthropic.tool_choice {
        let converted = match choice.kind.as_deref() {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.name}})
            }
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), converted);
        if choice.disable_parallel_tool_use == Some(true) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
}

/// A user turn: tool results become `tool` messages (OpenAI wants them right after the assistant
/// turn that called), the rest one `user` message.
fn user_turn(blocks: &[Block], messages: &mut Vec<Value>) -> Result<(), String> {
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let content = match content {
                    TurnContent::Text(s) => s.clone(),
                    TurnContent::Blocks(inner) => blocks_text(inner),
                    TurnContent::Invalid => String::new(),
                };
                let content = if *is_error == Some(true) {
                    format!("Error: {content}")
                } else {
                    content
                };
                messages
                    .push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
            }
            Block::Text { text } => parts.push(json!({"type": "text", "text": text})),
            Block::Image { source } => {
                let url = match source {
                    ImageSource::Base64 { media_type, data } => format!(
                        "data:{};base64,{}",
                        media_type.as_deref().unwrap_or("image/png"),
                        data.as_deref().unwrap_or_default()
                    ),
                    ImageSource::Url { url } => url.clone().unwrap_or_default(),
                    ImageSource::Other => {
                        return Err("image blocks need a base64 or url source".into());
                    }
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

fn assistant_turn(blocks: &[Block]) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            Block::Text { text: t } => text.push_str(t.as_str().unwrap_or_default()),
            Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": input.as_ref().map_or("{}".into(), Value::to_string)},
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
    let completion: Completion = read(completion);
    let no_choice = Choice::default();
    let choice = completion
        .choices
        .as_ref()
        .and_then(|c| c.first())
        .unwrap_or(&no_choice);
    let message = &choice.message;
    let mut content = Vec::new();
    if let Some(text) = message.content.as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message.tool_calls.iter().flatten() {
        let arguments = call.function.arguments.as_deref().unwrap_or("{}");
        content.push(json!({
            "type": "tool_use", "id": call.id, "name": call.function.name,
            "input": json_arguments(arguments),
        }));
    }
    let (input, output, cached) = usage(&completion.usage.unwrap_or_default());
    json!({
        "id": message_id(completion.id.as_deref()),
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": stop_reason(choice.finish_reason.as_deref().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": {
            "input_tokens": input,
            "output_tokens": output,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
        },
    })
}

/// OpenAI usage as Anthropic's (input, output, cache reads): Anthropic's input excludes the
/// cached part.
fn usage(usage: &CompletionUsage) -> (u64, u64, u64) {
    let cached = usage.prompt_tokens_details.cached_tokens.unwrap_or(0);
    let prompt = usage.prompt_tokens.unwrap_or(0);
    (
        prompt.saturating_sub(cached),
        usage.completion_tokens.unwrap_or(0),
        cached,
    )
}

fn message_id(id: Option<&str>) -> String {
    match id {
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
    open: Option<(usize, OpenBlock)>,
    next_index: usize,
    stop_reason: Option<&'static str>,
    usage: Option<(u64, u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Tool(u64),
}

fn event(name: &str, data: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    super::write_json(&mut out, data);
    out.extend_from_slice(b"\n\n");
    out
}

impl StreamEncoder {
    /// Events for one OpenAI chunk, appended to `out`.
    pub fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        let chunk: Completion = read(chunk);
        if !self.started {
            self.started = true;
            let start = json!({"type": "message_start", "message": {
                "id": message_id(chunk.id.as_deref()), "type": "message", "role": "assistant", "model": chunk.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }});
            out.extend(event("message_start", &start));
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(usage(u));
        }
        let Some(choice) = chunk.choices.as_ref().and_then(|c| c.first()) else {
            return;
        };
        let delta = &choice.delta;
        if let Some(text) = delta.content.as_str().filter(|t| !t.is_empty()) {
            let index = self.open_block(
                OpenBlock::Text,
                out,
                |_| json!({"type": "text", "text": ""}),
            );
            out.extend(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})));
        }
        for call in delta.tool_calls.iter().flatten() {
            let tool = call.index.unwrap_or(0);
            let index = self.open_block(OpenBlock::Tool(tool), out, |_| {
                json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": {}})
            });
            if let Some(arguments) = call.function.arguments.as_deref().filter(|a| !a.is_empty()) {
                out.extend(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": arguments}})));
            }
        }
        if let Some(reason) = &choice.finish_reason {
            self.stop_reason = Some(stop_reason(reason));
        }
    }

    /// The index of the block `kind`, opening it (and closing the previous one) when needed.
    fn open_block(
        &mut self,
        kind: OpenBlock,
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
