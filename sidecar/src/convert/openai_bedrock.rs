//! OpenAI-format requests to `api: Bedrock` providers: Chat Completions requests into Bedrock
//! Converse requests, and Converse answers and ConverseStream events back into Chat Completions
//! ones.
//!
//! Deliberate choices (also in `docs/reference/providers.md`): system and developer messages
//! become `system` text blocks; tool messages become `toolResult` blocks in one user turn;
//! consecutive turns of one role are merged, as Converse requires alternation; images are sent
//! only from `data:` URLs (Converse takes bytes or S3 locations, never links), others are
//! dropped; `response_format` becomes an instruction in `system`, since Converse has no JSON
//! mode; `tool_choice: "none"` sends the tools without a `toolChoice` only when the conversation
//! already holds tool blocks (Bedrock then requires `toolConfig`), and no tools otherwise;
//! `n`, `seed`, penalties and `logit_bias` have no equivalent and are dropped. Reasoning deltas
//! (`reasoningContent`) come back as `reasoning_content`. A `guardrail_intervened` or
//! `content_filtered` stop before any content is a `ContentFiltered` failure ([`filtered`],
//! [`Decoded::Filtered`]); after some content, `finish_reason: "content_filter"`.

use serde_json::{Map, Value, json};

use super::json_arguments;
use super::wire::openai::{ChatRequest, Content, Part, Stop, ToolChoice};
use super::wire::read_map;
use crate::convert::Usage;

/// A Chat Completions request as a Converse request body (the model goes in the URL).
pub fn request(hub: &Map<String, Value>) -> Map<String, Value> {
    let hub: ChatRequest = read_map(hub);
    let (mut system, turns) = turns(&hub);
    if let Some(instruction) = hub.response_format.as_instruction() {
        system.push(instruction);
    }
    let has_tool_blocks = turns
        .iter()
        .flat_map(|(_, c)| c)
        .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());

    let mut out = Map::new();
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    out.insert("messages".into(), Value::Array(messages));
    let system: Vec<Value> = system
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|text| json!({"text": text}))
        .collect();
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let config = inference_config(&hub);
    if !config.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(config));
    }
    if let Some(tools) = tool_config(&hub, has_tool_blocks) {
        out.insert("toolConfig".into(), tools);
    }
    out
}

/// The system texts, and the conversation as Converse turns: consecutive messages of one role
/// merged, tool results sent as the user's.
fn turns(hub: &ChatRequest) -> (Vec<String>, Vec<(&'static str, Vec<Value>)>) {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    };
    for message in hub.messages.iter().flatten() {
        let content = &message.content;
        match message.role.as_deref().unwrap_or_default() {
            "system" | "developer" => system.push(content.text()),
            "assistant" => {
                let mut blocks = Vec::new();
                let text = content.text();
                // Converse refuses blank text blocks.
                if !text.trim().is_empty() {
                    blocks.push(json!({"text": text}));
                }
                for call in message.tool_calls.iter().flatten() {
                    let arguments = call.function.arguments.as_deref().unwrap_or("{}");
                    blocks.push(json!({"toolUse": {
                        "toolUseId": call.id, "name": call.function.name,
                        "input": json_arguments(arguments),
                    }}));
                }
                push("assistant", blocks);
            }
            "tool" | "function" => push(
                "user",
                vec![json!({"toolResult": {
                    "toolUseId": message.tool_call_id,
                    "content": [{"text": content.text()}],
                }})],
            ),
            _ => push("user", user_blocks(content)),
        }
    }
    (system, turns)
}

fn user_blocks(content: &Content) -> Vec<Value> {
    match content {
        Content::Text(s) if s.trim().is_empty() => Vec::new(),
        Content::Text(s) => vec![json!({"text": s})],
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => text
                    .as_str()
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| json!({"text": t})),
                Part::ImageUrl { image_url } => image(image_url.url.as_deref()?),
                _ => None, // audio and files: not mapped
            })
            .collect(),
        Content::None => Vec::new(),
    }
}

/// A `data:image/...;base64,` URL as a Converse image block; `None` for links and for formats
/// Converse does not take.
fn image(url: &str) -> Option<Value> {
    let (media_type, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
    let format = match media_type.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    };
    Some(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// `inferenceConfig`: token limit, sampling parameters and stop sequences.
fn inference_config(hub: &ChatRequest) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(max) = hub.max_completion_tokens.or(hub.max_tokens) {
        config.insert("maxTokens".into(), max.into());
    }
    if let Some(t) = &hub.temperature {
        config.insert("temperature".into(), Value::Number(t.clone()));
    }
    if let Some(p) = &hub.top_p {
        config.insert("topP".into(), Value::Number(p.clone()));
    }
    let stops = hub.stop.as_ref().map(Stop::sequences).unwrap_or_default();
    if !stops.is_empty() {
        config.insert("stopSequences".into(), Value::Array(stops));
    }
    config
}

/// Function tools as Converse `toolConfig`, with the matching `toolChoice`.
fn tool_config(hub: &ChatRequest, has_tool_blocks: bool) -> Option<Value> {
    let tools: Vec<Value> = hub
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.function.as_ref())
        .map(|f| {
            let schema = f
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut spec = json!({"name": f.name.clone().unwrap_or(Value::Null),
                                  "inputSchema": {"json": schema}});
            if let Some(d) = f.description.as_ref().filter(|d| !d.is_empty()) {
                spec["description"] = Value::String(d.clone());
            }
            json!({"toolSpec": spec})
        })
        .collect();
    if tools.is_empty() {
        return None;
    }
    let choice = match &hub.tool_choice {
        Some(ToolChoice::Mode(s)) if s == "none" => {
            // Converse has no "none": send no tools, unless the history needs the config.
            return has_tool_blocks.then(|| json!({"tools": tools}));
        }
        Some(ToolChoice::Mode(s)) if s == "required" => json!({"any": {}}),
        Some(ToolChoice::Object(o)) if o.function.name.is_some() => {
            json!({"tool": {"name": o.function.name.clone().unwrap_or(Value::Null)}})
        }
        _ => json!({"auto": {}}),
    };
    Some(json!({"tools": tools, "toolChoice": choice}))
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ => "stop", // end_turn, stop_sequence
    }
}

/// The failure message for an answer Converse stopped with `stop_reason` before any content,
/// when that reason is a filter's (`guardrail_intervened`, `content_filtered`). Such an answer is
/// a `ContentFiltered` failure, as Azure's filter stopping an answer before content is; one
/// stopped after some content is kept, with `finish_reason: "content_filter"`.
fn filter_message(stop_reason: &str) -> Option<String> {
    match stop_reason {
        "guardrail_intervened" => Some("Bedrock guardrail intervened".into()),
        "content_filtered" => Some("Bedrock's content filter stopped the answer".into()),
        _ => None,
    }
}

/// Why Bedrock filtered a whole Converse answer before it said anything (no text, tool use or
/// reasoning), if it did.
pub fn filtered(resp: &Value) -> Option<String> {
    let said_something = resp
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks.iter().any(|b| {
                b.get("text")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.is_empty())
                    || b.get("toolUse").is_some()
                    || b.pointer("/reasoningContent/reasoningText/text")
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty())
            })
        });
    if said_something {
        return None;
    }
    filter_message(resp.get("stopReason").and_then(Value::as_str)?)
}

/// Converse `usage` as token counts. `inputTokens` excludes cache reads and writes, as
/// Anthropic's does; the hub's prompt tokens include them.
pub fn usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cacheReadInputTokens");
    Usage {
        input: n("inputTokens") + cached + n("cacheWriteInputTokens"),
        cached_input: cached,
        output: n("outputTokens"),
    }
}

fn openai_usage(u: Usage) -> Value {
    json!({"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.input + u.output,
           "prompt_tokens_details": {"cached_tokens": u.cached_input}})
}

/// A Converse answer as a `chat.completion` with `id`, with its usage. `None` when it is not a
/// Converse answer (no `output.message`).
pub fn response(resp: &Value, id: &str, model: &str, created: u64) -> Option<(Value, Usage)> {
    let content = resp.pointer("/output/message/content")?.as_array()?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            let input = tool.get("input").map_or("{}".into(), Value::to_string);
            calls.push(json!({"id": tool.get("toolUseId"), "type": "function",
                              "function": {"name": tool.get("name"), "arguments": input}}));
        } else if let Some(t) = block
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            reasoning.push_str(t);
        }
    }
    let usage = usage(resp.get("usage").unwrap_or(&Value::Null));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let stop = resp
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let completion = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(stop)}],
        "usage": openai_usage(usage),
    });
    Some((completion, usage))
}

/// What one ConverseStream event means for the OpenAI side.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// An OpenAI chunk.
    Chunk(Value),
    /// `metadata`: the final usage chunk (`choices: []`).
    Usage(Value, Usage),
    /// Nothing to forward (block boundaries, unknown events, the held role).
    Nothing,
    /// A filter stopped the answer before any content: the attempt fails as `ContentFiltered`
    /// with this message (nothing has committed, since the role waits for content).
    Filtered(String),
}

/// Turns ConverseStream events into OpenAI chunks, one event at a time. The answer is complete
/// once both `messageStop` and `metadata` arrived (Bedrock sends them in that order, last).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    id: String,
    model: String,
    created: u64,
    /// Content-block index → OpenAI tool-call index, for toolUse blocks.
    tools: Vec<(u64, u64)>,
    stopped: bool,
    usage: Option<Usage>,
    /// `messageStart` came and its role is not sent yet: it goes with the first content, so
    /// that a filter stopping the answer before any is still a failure (Azure's mechanism).
    role_held: bool,
}

impl StreamDecoder {
    /// A decoder whose chunks carry `id` and `model` (ConverseStream names neither).
    pub fn new(id: String, model: String, created: u64) -> Self {
        Self {
            id,
            model,
            created,
            ..Self::default()
        }
    }

    /// A chunk for `delta`, which carries the held role if there is one.
    fn chunk(&mut self, mut delta: Value, finish_reason: Option<&str>) -> Value {
        if std::mem::take(&mut self.role_held) {
            delta["role"] = "assistant".into();
        }
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]})
    }

    /// Whether the stream said all it had to say (`messageStop` and `metadata`).
    pub fn complete(&self) -> bool {
        self.stopped && self.usage.is_some()
    }

    /// Decodes one event, named by its `:event-type`.
    pub fn event(&mut self, kind: &str, data: &Value) -> Decoded {
        let block = || {
            data.get("contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        match kind {
            "messageStart" => {
                self.role_held = true;
                Decoded::Nothing
            }
            "contentBlockStart" => match data.pointer("/start/toolUse") {
                Some(tool) => {
                    let index = self.tools.len() as u64;
                    self.tools.push((block(), index));
                    Decoded::Chunk(self.chunk(
                        json!({"tool_calls": [{"index": index,
                        "id": tool.get("toolUseId"), "type": "function",
                        "function": {"name": tool.get("name"), "arguments": ""}}]}),
                        None,
                    ))
                }
                None => Decoded::Nothing,
            },
            "contentBlockDelta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    if text.is_empty() {
                        // Says nothing, and must not release the held role.
                        return Decoded::Nothing;
                    }
                    Decoded::Chunk(self.chunk(json!({"content": text}), None))
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str)
                {
                    let block = block();
                    let index = self
                        .tools
                        .iter()
                        .find(|(b, _)| *b == block)
                        .map_or(0, |(_, i)| *i);
                    Decoded::Chunk(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": input}}]}),
                        None,
                    ))
                } else if let Some(text) = delta
                    .pointer("/reasoningContent/text")
                    .and_then(Value::as_str)
                {
                    Decoded::Chunk(self.chunk(json!({"reasoning_content": text}), None))
                } else {
                    Decoded::Nothing
                }
            }
            "messageStop" => {
                self.stopped = true;
                let reason = data
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                if self.role_held
                    && let Some(message) = filter_message(reason)
                {
                    return Decoded::Filtered(message);
                }
                Decoded::Chunk(self.chunk(json!({}), Some(finish_reason(reason))))
            }
            "metadata" => {
                let usage = usage(data.get("usage").unwrap_or(&Value::Null));
                self.usage = Some(usage);
                let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                   "model": self.model, "choices": [], "usage": openai_usage(usage)});
                Decoded::Usage(chunk, usage)
            }
            _ => Decoded::Nothing,
        }
    }
}

#[cfg(test)]
mod tests;
