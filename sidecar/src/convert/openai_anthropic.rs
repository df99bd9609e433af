//! OpenAI-format requests to `api: Anthropic` providers: Chat Completions requests into Messages
//! requests, and Messages answers and stream events back into Chat Completions ones.
//!
//! Deliberate choices (also in `docs/reference/translation.md`): system and developer messages
//! become `system`; tool messages become `tool_result` blocks in one user turn; consecutive turns
//! of one role are merged, as Messages requires alternation; `max_tokens` defaults to
//! [`DEFAULT_MAX_TOKENS`] because Anthropic requires it; `temperature` is clamped to Anthropic's
//! 0–1; `response_format` becomes an instruction in `system`, since Messages has no JSON mode;
//! `n`, `logprobs`, `seed`, penalties and `logit_bias` have no equivalent and are dropped.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::assemble::Json;
use super::json_arguments;
use super::wire::anthropic::{self, Block, BlockDelta, StreamEvent};
use super::wire::openai::{ChatRequest, Content, Part, Stop, ToolChoice};
use super::wire::{ObjectOnly, read, read_map, read_tagged};
use crate::convert::Usage;

/// `max_tokens` sent when the client gave none: Anthropic requires one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A Chat Completions request as a Messages request for `model`.
pub fn request(hub: &Map<String, Value>, model: &str, stream: bool) -> Map<String, Value> {
    let hub: ChatRequest = read_map(hub);
    let (mut system, turns) = turns(&hub);
    if let Some(instruction) = hub.response_format.as_instruction() {
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
    sampling(&hub, &mut out);
    tools(&hub, &mut out);
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    out
}

/// The system texts, and the conversation as Anthropic turns: consecutive messages of one role
/// merged, tool results sent as the user's.
fn turns(hub: &ChatRequest) -> (Vec<String>, Vec<(String, Vec<Value>)>) {
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
    for message in hub.messages.iter().flatten() {
        let content = &message.content;
        match message.role.as_deref().unwrap_or_default() {
            "system" | "developer" => system.push(content.text()),
            "assistant" => {
                let mut blocks = Vec::new();
                let text = content.text();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in message.tool_calls.iter().flatten() {
                    let arguments = call.function.arguments.as_deref().unwrap_or("{}");
                    blocks.push(json!({
                        "type": "tool_use", "id": call.id, "name": call.function.name,
                        "input": json_arguments(arguments),
                    }));
                }
                push("assistant", blocks);
            }
            "tool" | "function" => push(
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content.text()}),
                ],
            ),
            _ => push("user", user_blocks(content)),
        }
    }
    (system, turns)
}

/// Token limit, sampling parameters, stop sequences and the end user.
fn sampling(hub: &ChatRequest, out: &mut Map<String, Value>) {
    let max_tokens = hub
        .max_completion_tokens
        .or(hub.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), max_tokens.into());
    if let Some(t) = hub.temperature.as_ref().and_then(|t| t.as_f64()) {
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = &hub.top_p {
        out.insert("top_p".into(), Value::Number(p.clone()));
    }
    let stops = hub.stop.as_ref().map(Stop::sequences).unwrap_or_default();
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    if let Some(user) = &hub.user {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
}

/// Function tools as Anthropic tools, with the matching `tool_choice`.
fn tools(hub: &ChatRequest, out: &mut Map<String, Value>) {
    if let Some(tools) = hub.tools.as_ref().filter(|t| !t.is_empty()) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.function.as_ref())
            .map(|f| {
                let schema = f
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                let mut tool =
                    json!({"name": f.name.clone().unwrap_or(Value::Null), "input_schema": schema});
                if let Some(d) = &f.description {
                    tool["description"] = Value::String(d.clone());
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
        let mut choice = match &hub.tool_choice {
            Some(ToolChoice::Mode(s)) if s == "required" => json!({"type": "any"}),
            Some(ToolChoice::Mode(s)) if s == "none" => json!({"type": "none"}),
            Some(ToolChoice::Object(o)) => {
                json!({"type": "tool", "name": o.function.name.clone().unwrap_or(Value::Null)})
            }
            _ => json!({"type": "auto"}),
        };
        if hub.parallel_tool_calls == Some(false) && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        out.insert("tool_choice".into(), choice);
    }
}

fn user_blocks(content: &Content) -> Vec<Value> {
    match content {
        Content::Text(s) if s.is_empty() => Vec::new(),
        Content::Text(s) => vec![json!({"type": "text", "text": s})],
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => Some(json!({"type": "text", "text": text})),
                Part::ImageUrl { image_url } => {
                    let url = image_url.url.as_deref().unwrap_or_default();
                    Some(match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                        Some((media_type, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None, // audio and files: no Messages equivalent
            })
            .collect(),
        Content::None => Vec::new(),
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
pub fn usage(u: &anthropic::MessageUsage) -> Usage {
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    Usage {
        input: u.input_tokens.unwrap_or(0) + cached + u.cache_creation_input_tokens.unwrap_or(0),
        cached_input: cached,
        output: u.output_tokens.unwrap_or(0),
    }
}

fn openai_usage(u: Usage) -> Value {
    json!({"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.input + u.output,
           "prompt_tokens_details": {"cached_tokens": u.cached_input}})
}

/// A Messages answer as a `chat.completion`, with its usage. `None` when it is not a message.
pub fn response(message: &Value, created: u64) -> Option<(Value, Usage)> {
    let message: anthropic::Message = read(message);
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in message.content.as_ref()? {
        match block {
            Block::Text { text: t } => text.push_str(t.as_str().unwrap_or_default()),
            Block::ToolUse { id, name, input } => calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": input.as_ref().map_or("{}".into(), Value::to_string)}})),
            _ => {}
        }
    }
    let usage = usage(&message.usage);
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }, "refusal": null});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    let completion = json!({
        "id": message.id, "object": "chat.completion", "created": created, "model": message.model,
        "choices": [{"index": 0, "message": msg, "logprobs": null,
                     "finish_reason": finish_reason(message.stop_reason.as_deref().unwrap_or("end_turn"))}],
        "usage": openai_usage(usage),
    });
    Some((completion, usage))
}

/// The text of a `content_block_delta` event carrying text, read borrowed; `None` for any other
/// event, and for one this reading cannot take (a field of another type, a repeated key).
fn delta_text(data: &str) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        delta: Option<ObjectOnly<Delta<'a>>>,
    }
    #[derive(Deserialize)]
    struct Delta<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        text: Option<Cow<'a, str>>,
    }
    let ObjectOnly(event) = serde_json::from_str::<ObjectOnly<Event<'_>>>(data).ok()?;
    let ObjectOnly(delta) = event
        .delta
        .filter(|_| event.kind == "content_block_delta")?;
    delta.text.filter(|_| delta.kind == "text_delta")
}

/// The fields of the events [`StreamDecoder::framing_event`] reads, borrowed. The token counts and
/// the stop reason read as the general reading reads them (a value of another type as absent).
#[derive(Deserialize)]
struct Framing<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    message: Option<ObjectOnly<StartedMessage<'a>>>,
    #[serde(borrow)]
    content_block: Option<ObjectOnly<BlockType<'a>>>,
    delta: Option<ObjectOnly<anthropic::MessageDelta>>,
    usage: Option<ObjectOnly<anthropic::MessageUsage>>,
}

/// What `message_start` says of the message.
#[derive(Default, Deserialize)]
struct StartedMessage<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<ObjectOnly<anthropic::MessageUsage>>,
}

/// A content block's type.
#[derive(Deserialize)]
struct BlockType<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// Turns Anthropic stream events into OpenAI chunks, one event at a time.
#[derive(Clone, Debug, Default, PartialEq)]
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

    /// The hub chunk of a `content_block_delta` carrying text, read and written without a
    /// `Value` tree; `None` for any other event, and for one this reading cannot take (a field
    /// of another type, a repeated key), which [`StreamDecoder::event`] then reads. It is the
    /// event a streamed answer is made of, one per token or so: the general reading (a tree of
    /// the event, a typed view of the tree, the chunk built as a tree and written) cost about
    /// 17,000 instructions per event, twice what passing an OpenAI event through costs
    /// (bench/RESULTS.md, issue 15). The bytes are the general reading's, byte for byte.
    pub fn text_delta(&self, data: &str) -> Option<Vec<u8>> {
        let text = delta_text(data)?;
        // A `Value` map writes its keys in sorted order: so do these.
        #[derive(Serialize)]
        struct Chunk<'a> {
            choices: [Choice<'a>; 1],
            created: u64,
            id: &'a str,
            model: &'a str,
            object: &'static str,
        }
        #[derive(Serialize)]
        struct Choice<'a> {
            delta: Content<'a>,
            finish_reason: Option<&'a str>,
            index: u64,
            logprobs: Option<()>,
        }
        #[derive(Serialize)]
        struct Content<'a> {
            content: &'a str,
        }
        let chunk = Chunk {
            choices: [Choice {
                delta: Content { content: &text },
                finish_reason: None,
                index: 0,
                logprobs: None,
            }],
            created: self.created,
            id: &self.id,
            model: &self.model,
            object: "chat.completion.chunk",
        };
        let mut out = Vec::with_capacity(data.len() + self.id.len() + self.model.len() + 96);
        serde_json::to_writer(&mut out, &chunk).ok()?;
        Some(out)
    }

    /// [`Self::text_delta`]'s chunk as the tree a whole answer reads it into
    /// ([`crate::providers::StreamDecoder::decode_whole`]), without writing it out and reading it
    /// back: the same members, in the same order.
    pub fn text_delta_tree<'a>(&'a self, data: &'a str) -> Option<Json<'a>> {
        let text = delta_text(data)?;
        let choice = Json::Object(vec![
            (
                "delta".into(),
                Json::Object(vec![("content".into(), Json::Str(text))]),
            ),
            ("finish_reason".into(), Json::Null),
            ("index".into(), Json::Scalar(Value::from(0u64))),
            ("logprobs".into(), Json::Null),
        ]);
        Some(Json::Object(vec![
            ("choices".into(), Json::Array(vec![choice])),
            ("created".into(), Json::Scalar(Value::from(self.created))),
            ("id".into(), Json::Str(Cow::Borrowed(&self.id))),
            ("model".into(), Json::Str(Cow::Borrowed(&self.model))),
            (
                "object".into(),
                Json::Str(Cow::Borrowed("chat.completion.chunk")),
            ),
        ]))
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]})
    }

    /// Decodes one event (its `type` field says which).
    pub fn event(&mut self, data: &Value) -> Decoded {
        match read_tagged(data) {
            StreamEvent::MessageStart { message } => self.started(
                message.id.as_str().unwrap_or("msg"),
                message.model.as_str().unwrap_or_default(),
                &message.usage,
            ),
            StreamEvent::ContentBlockStart {
                index: block,
                content_block: Block::ToolUse { id, name, .. },
            } => {
                let index = self.tools.len() as u64;
                self.tools.push((block.unwrap_or(0), index));
                Decoded::Chunk(self.chunk(json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}), None))
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => {
                    Decoded::Chunk(self.chunk(json!({"content": text}), None))
                }
                BlockDelta::InputJsonDelta { partial_json } => {
                    let block = index.unwrap_or(0);
                    let index = self
                        .tools
                        .iter()
                        .find(|(b, _)| *b == block)
                        .map_or(0, |(_, i)| *i);
                    Decoded::Chunk(self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": partial_json}}]}), None))
                }
                BlockDelta::Other => Decoded::Nothing,
            },
            StreamEvent::MessageDelta { delta, usage } => self.message_delta(&delta, &usage),
            StreamEvent::MessageStop => self.stopped(),
            StreamEvent::Error { error } => Decoded::Error(error),
            _ => Decoded::Nothing,
        }
    }

    /// [`Self::event`] for the events that frame an answer, read borrowed and strictly from
    /// the event's text: `message_start`, `content_block_start` of any block but a tool call,
    /// `content_block_stop`, `ping`, `message_delta`, `message_stop`, and types it does not know
    /// (which say nothing). `None` for a delta, an error, a tool call's start, and any event
    /// this reading cannot take (a field of another type, a repeated key, an array where an
    /// object belongs), which [`Self::event`] then reads. These are five of a short answer's
    /// seven events: the general reading (a tree of the event, then a typed view of the tree)
    /// cost about 12,000 instructions each (bench/RESULTS.md, issue 15).
    /// Gives the event's `type` with what it means.
    pub fn framing_event<'d>(&mut self, data: &'d str) -> Option<(Cow<'d, str>, Decoded)> {
        let ObjectOnly(event) = serde_json::from_str::<ObjectOnly<Framing<'_>>>(data).ok()?;
        let decoded = match event.kind.as_ref() {
            "content_block_delta" | "error" => return None,
            "message_start" => {
                let message = event.message.map(|m| m.0).unwrap_or_default();
                let usage = message.usage.map(|u| u.0).unwrap_or_default();
                self.started(
                    message.id.as_deref().unwrap_or("msg"),
                    message.model.as_deref().unwrap_or_default(),
                    &usage,
                )
            }
            "content_block_start" => match event.content_block {
                Some(ObjectOnly(block)) if block.kind == "tool_use" => return None,
                _ => Decoded::Nothing,
            },
            "message_delta" => self.message_delta(
                &event.delta.map(|d| d.0).unwrap_or_default(),
                &event.usage.map(|u| u.0).unwrap_or_default(),
            ),
            "message_stop" => self.stopped(),
            _ => Decoded::Nothing,
        };
        Some((event.kind, decoded))
    }

    /// `message_start`: the answer's id, model and input tokens; the role's chunk.
    fn started(&mut self, id: &str, model: &str, tokens: &anthropic::MessageUsage) -> Decoded {
        self.id = id.to_string();
        self.model = model.to_string();
        self.usage = usage(tokens);
        Decoded::Chunk(self.chunk(json!({"role": "assistant", "content": ""}), None))
    }

    /// `message_delta`: the output tokens so far, and the stop reason's chunk if it has one.
    fn message_delta(
        &mut self,
        delta: &anthropic::MessageDelta,
        tokens: &anthropic::MessageUsage,
    ) -> Decoded {
        if let Some(output) = tokens.output_tokens {
            self.usage.output = output;
        }
        match &delta.stop_reason {
            Some(reason) => Decoded::Chunk(self.chunk(json!({}), Some(finish_reason(reason)))),
            None => Decoded::Nothing,
        }
    }

    /// `message_stop`: the usage chunk that ends the answer.
    fn stopped(&self) -> Decoded {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                           "choices": [], "usage": openai_usage(self.usage)});
        Decoded::Usage(chunk, self.usage)
    }

    /// Usage seen so far (for passthrough streams, where no chunks are built).
    pub fn usage(&self) -> Usage {
        self.usage
    }
}

#[cfg(test)]
mod tests;
