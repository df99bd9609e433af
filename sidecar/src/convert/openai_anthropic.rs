//! OpenAI-format requests to `api: Anthropic` providers: Chat Completions requests into Messages
//! requests, and Messages answers and stream events back into Chat Completions ones.
//!
//! Deliberate choices (also in the README's translation table): system and developer messages
//! become `system`; tool messages become `tool_result` blocks in one user turn; consecutive turns
//! of one role are merged, as Messages requires alternation; `max_tokens` defaults to
//! [`DEFAULT_MAX_TOKENS`] because Anthropic requires it; `temperature` is clamped to Anthropic's
//! 0–1; `response_format` becomes an instruction in `system`, since Messages has no JSON mode;
//! `n`, `logprobs`, `seed`, penalties and `logit_bias` have no equivalent and are dropped.

use serde_json::{Map, Value, json};

use super::{json_arguments, text_of};
use crate::convert::Usage;

/// `max_tokens` sent when the client gave none: Anthropic requires one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A Chat Completions request as a Messages request for `model`.
pub fn request(hub: &Map<String, Value>, model: &str, stream: bool) -> Map<String, Value> {
    let (mut system, turns) = turns(hub);
    if let Some(instruction) = json_instruction(hub.get("response_format")) {
        system.push(instruction);
    }

    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n\n")));
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    out.insert("messages".into(), Value::Array(messages));
    sampling(hub, &mut out);
    tools(hub, &mut out);
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    out
}

/// The system texts, and the conversation as Anthropic turns: consecutive messages of one role
/// merged, tool results sent as the user's.
fn turns(hub: &Map<String, Value>) -> (Vec<String>, Vec<(String, Vec<Value>)>) {
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((last, content)) if last == role => content.extend(blocks),
            _ => turns.push((role.to_string(), blocks)),
        }
    };
    for message in hub
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let content = &message["content"];
        match message["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.push(text_of(content)),
            "assistant" => {
                let mut blocks = Vec::new();
                let text = text_of(content);
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    blocks.push(json!({
                        "type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                        "input": json_arguments(call["function"]["arguments"].as_str().unwrap_or("{}")),
                    }));
                }
                push("assistant", blocks);
            }
            "tool" | "function" => push(
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": message.get("tool_call_id").cloned().unwrap_or(Value::Null), "content": text_of(content)}),
                ],
            ),
            _ => push("user", user_blocks(content)),
        }
    }
    (system, turns)
}

/// Token limit, sampling parameters, stop sequences and the end user.
fn sampling(hub: &Map<String, Value>, out: &mut Map<String, Value>) {
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| hub.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), max_tokens.into());
    if let Some(t) = hub.get("temperature").and_then(Value::as_f64) {
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = hub.get("top_p").filter(|v| v.is_number()) {
        out.insert("top_p".into(), p.clone());
    }
    let stops = match hub.get("stop") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    if let Some(user) = hub.get("user").filter(|u| u.is_string()) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
}

/// Function tools as Anthropic tools, with the matching `tool_choice`.
fn tools(hub: &Map<String, Value>, out: &mut Map<String, Value>) {
    if let Some(tools) = hub
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut tool = json!({"name": f["name"], "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
                if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
        let mut choice = match hub.get("tool_choice") {
            Some(Value::String(s)) if s == "required" => json!({"type": "any"}),
            Some(Value::String(s)) if s == "none" => json!({"type": "none"}),
            Some(Value::Object(o)) => {
                json!({"type": "tool", "name": o.get("function").and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null)})
            }
            _ => json!({"type": "auto"}),
        };
        if hub.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false)
            && choice["type"] != "none"
        {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        out.insert("tool_choice".into(), choice);
    }
}

fn user_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part["type"].as_str() {
                Some("text") => Some(json!({"type": "text", "text": part["text"]})),
                Some("image_url") => {
                    let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                    Some(match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                        Some((media_type, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None, // audio and files: no Messages equivalent
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Messages has no JSON mode: ask for it in the system prompt, with the schema when given.
fn json_instruction(format: Option<&Value>) -> Option<String> {
    match format?.get("type")?.as_str()? {
        "json_object" => Some("Respond with a single JSON object and nothing else.".into()),
        "json_schema" => {
            let schema = format?
                .pointer("/json_schema/schema")
                .cloned()
                .unwrap_or(Value::Null);
            Some(format!(
                "Respond with a single JSON object that validates against this JSON Schema, and nothing else:\n{schema}"
            ))
        }
        _ => None,
    }
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic usage (input excludes cache reads and writes) as token counts.
pub fn usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    Usage {
        input: n("input_tokens") + cached + n("cache_creation_input_tokens"),
        cached_input: cached,
        output: n("output_tokens"),
    }
}

fn openai_usage(u: Usage) -> Value {
    json!({"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.input + u.output,
           "prompt_tokens_details": {"cached_tokens": u.cached_input}})
}

/// A Messages answer as a `chat.completion`, with its usage. `None` when it is not a message.
pub fn response(message: &Value, created: u64) -> Option<(Value, Usage)> {
    let content = message.get("content")?.as_array()?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({"id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block.get("input").map_or("{}".into(), Value::to_string)}})),
            _ => {}
        }
    }
    let usage = usage(&message["usage"]);
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }, "refusal": null});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    let completion = json!({
        "id": message["id"], "object": "chat.completion", "created": created, "model": message["model"],
        "choices": [{"index": 0, "message": msg, "logprobs": null,
                     "finish_reason": finish_reason(message["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": openai_usage(usage),
    });
    Some((completion, usage))
}

/// Turns Anthropic stream events into OpenAI chunks, one event at a time.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    id: String,
    model: String,
    created: u64,
    usage: Usage,
    /// Content-block index → OpenAI tool-call index, for tool_use blocks.
    tools: Vec<(u64, u64)>,
}

/// What one Anthropic event means for the OpenAI side.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// An OpenAI chunk.
    Chunk(Value),
    /// `message_stop`: the final usage chunk (`choices: []`); the answer is complete.
    Usage(Value, Usage),
    /// An `error` event's error object.
    Error(Value),
    /// Nothing to forward (`ping`, block boundaries, thinking).
    Nothing,
}

impl StreamDecoder {
    pub fn new(created: u64) -> Self {
        Self {
            created,
            ..Self::default()
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]})
    }

    /// Decodes one event (its `type` field says which).
    pub fn event(&mut self, data: &Value) -> Decoded {
        match data["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let message = &data["message"];
                self.id = message["id"].as_str().unwrap_or("msg").to_string();
                self.model = message["model"].as_str().unwrap_or_default().to_string();
                self.usage = usage(&message["usage"]);
                Decoded::Chunk(self.chunk(json!({"role": "assistant", "content": ""}), None))
            }
            "content_block_start" if data["content_block"]["type"] == "tool_use" => {
                let index = self.tools.len() as u64;
                self.tools
                    .push((data["index"].as_u64().unwrap_or(0), index));
                let block = &data["content_block"];
                Decoded::Chunk(self.chunk(json!({"tool_calls": [{"index": index, "id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": ""}}]}), None))
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        Decoded::Chunk(self.chunk(json!({"content": delta["text"]}), None))
                    }
                    Some("input_json_delta") => {
                        let block = data["index"].as_u64().unwrap_or(0);
                        let index = self
                            .tools
                            .iter()
                            .find(|(b, _)| *b == block)
                            .map_or(0, |(_, i)| *i);
                        Decoded::Chunk(self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]}), None))
                    }
                    _ => Decoded::Nothing,
                }
            }
            "message_delta" => {
                if let Some(output) = data.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.output = output;
                }
                match data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    Some(reason) => {
                        Decoded::Chunk(self.chunk(json!({}), Some(finish_reason(reason))))
                    }
                    None => Decoded::Nothing,
                }
            }
            "message_stop" => {
                let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                                   "choices": [], "usage": openai_usage(self.usage)});
                Decoded::Usage(chunk, self.usage)
            }
            "error" => Decoded::Error(data["error"].clone()),
            _ => Decoded::Nothing,
        }
    }

    /// Usage seen so far (for passthrough streams, where no chunks are built).
    pub fn usage(&self) -> Usage {
        self.usage
    }
}

#[cfg(test)]
mod tests;
