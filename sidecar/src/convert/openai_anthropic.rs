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

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::assemble::Json;
use super::json_arguments;
use super::wire::anthropic::{self, Block, BlockDelta, StreamEvent};
use super::wire::openai::{ChatRequest, Content, Part, Stop, ToolChoice};
use super::wire::{ObjectOnly, lenient, read, read_map, read_tagged};
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

/// The fields of the events [`StreamDecoder::read_fast`] reads, borrowed. Token counts and the
/// stop reason read as the general reading reads them (a value of another type as absent); the
/// rest strictly, so that an event this reading cannot take is an error here.
#[derive(Deserialize)]
struct FastEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    message: Option<ObjectOnly<StartedMessage<'a>>>,
    #[serde(borrow)]
    content_block: Option<ObjectOnly<BlockType<'a>>>,
    #[serde(borrow)]
    delta: Option<ObjectOnly<FastDelta<'a>>>,
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

/// A `delta`: a text delta's (`type`, `text`) or a `message_delta`'s (`stop_reason`).
#[derive(Default, Deserialize)]
struct FastDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient")]
    stop_reason: Option<String>,
}

/// One member of a chunk being built.
fn member<'a>(key: &'static str, value: Json<'a>) -> (Cow<'a, str>, Json<'a>) {
    (Cow::Borrowed(key), value)
}

fn borrowed(s: &str) -> Json<'_> {
    Json::Str(Cow::Borrowed(s))
}

fn number(n: u64) -> Json<'static> {
    Json::Scalar(Value::from(n))
}

/// A delta of one tool call with these members.
fn tool_call<'a>(call: Vec<(Cow<'a, str>, Json<'a>)>) -> Json<'a> {
    Json::Object(vec![member(
        "tool_calls",
        Json::Array(vec![Json::Object(call)]),
    )])
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

/// What one Anthropic event means for the OpenAI side: [`StreamDecoder::chunk`] makes it a
/// chunk.
#[derive(Debug, PartialEq)]
pub enum Decoded<'a> {
    /// A chunk with this delta.
    Delta(Delta<'a>),
    /// `message_delta` with a stop reason: the chunk that finishes the choice, for this
    /// `finish_reason`.
    Finish(&'static str),
    /// `message_stop`: the final usage chunk (`choices: []`); the answer is complete.
    Usage(Usage),
    /// An `error` event's error object.
    Error(Value),
    /// Nothing to forward (`ping`, block boundaries, thinking).
    Nothing,
}

/// A chunk's `delta`.
#[derive(Debug, PartialEq)]
pub enum Delta<'a> {
    /// `message_start`: the role, with empty content.
    Role,
    /// A text delta's `text`, as given.
    Text(Json<'a>),
    /// A tool call begins: its OpenAI index, and the block's `id` and `name` as given.
    ToolCall {
        index: u64,
        id: Json<'a>,
        name: Json<'a>,
    },
    /// More of a tool call's arguments (`partial_json` as given).
    Arguments { index: u64, partial_json: Json<'a> },
}

impl Decoded<'_> {
    /// The usage of the answer, when this event ends it.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Decoded::Usage(usage) => Some(*usage),
            _ => None,
        }
    }

    /// Whether its chunk commits the stream (`providers::Chunk::Data`): a chunk with a role,
    /// content that is not `null`, a tool call or a finish reason.
    pub fn commits(&self) -> bool {
        match self {
            Decoded::Delta(Delta::Text(text)) => !text.is_null(),
            Decoded::Delta(_) | Decoded::Finish(_) => true,
            Decoded::Usage(_) | Decoded::Error(_) | Decoded::Nothing => false,
        }
    }
}

impl StreamDecoder {
    pub fn new(created: u64) -> Self {
        Self {
            created,
            ..Self::default()
        }
    }

    /// Decodes one event (its `type` field says which): the general reading, of any event.
    pub fn event(&mut self, data: &Value) -> Decoded<'static> {
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
                Decoded::Delta(Delta::ToolCall {
                    index,
                    id: Json::from(id),
                    name: Json::from(name),
                })
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => Decoded::Delta(Delta::Text(Json::from(text))),
                BlockDelta::InputJsonDelta { partial_json } => {
                    let block = index.unwrap_or(0);
                    let index = self
                        .tools
                        .iter()
                        .find(|(b, _)| *b == block)
                        .map_or(0, |(_, i)| *i);
                    Decoded::Delta(Delta::Arguments {
                        index,
                        partial_json: Json::from(partial_json),
                    })
                }
                BlockDelta::Other => Decoded::Nothing,
            },
            StreamEvent::MessageDelta { delta, usage } => {
                self.message_delta(delta.stop_reason.as_deref(), &usage)
            }
            StreamEvent::MessageStop => Decoded::Usage(self.usage),
            StreamEvent::Error { error } => Decoded::Error(error),
            _ => Decoded::Nothing,
        }
    }

    /// [`Self::event`] for the events most of an answer is made of, read borrowed and strictly
    /// from the event's text, with the event's `type`: text deltas, `message_start`,
    /// `content_block_start` of any block but a tool call, `content_block_stop`, `ping`,
    /// `message_delta`, `message_stop`, and types it does not know (which say nothing). `None`
    /// for a tool call's start or arguments, an error, thinking, and any event this reading
    /// cannot take (a field of another type, a repeated key, an array where an object
    /// belongs), which [`Self::event`] then reads. The general reading (a tree of the event,
    /// then a typed view of the tree) costs about 12,000 instructions an event: with it a short
    /// translated answer cost 1.6× a passed-through one (bench/RESULTS.md, issue 15).
    pub fn read_fast<'d>(&mut self, data: &'d str) -> Option<(Cow<'d, str>, Decoded<'d>)> {
        let ObjectOnly(event) = serde_json::from_str::<ObjectOnly<FastEvent<'_>>>(data).ok()?;
        let delta = event.delta.map(|d| d.0).unwrap_or_default();
        let decoded = match event.kind.as_ref() {
            "content_block_delta" => match (delta.kind.as_deref(), delta.text) {
                (Some("text_delta"), Some(text)) => Decoded::Delta(Delta::Text(Json::Str(text))),
                _ => return None,
            },
            "error" => return None,
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
                delta.stop_reason.as_deref(),
                &event.usage.map(|u| u.0).unwrap_or_default(),
            ),
            "message_stop" => Decoded::Usage(self.usage),
            _ => Decoded::Nothing,
        };
        Some((event.kind, decoded))
    }

    /// `message_start`: the answer's id, model and input tokens; the role's chunk.
    fn started(
        &mut self,
        id: &str,
        model: &str,
        tokens: &anthropic::MessageUsage,
    ) -> Decoded<'static> {
        self.id = id.to_string();
        self.model = model.to_string();
        self.usage = usage(tokens);
        Decoded::Delta(Delta::Role)
    }

    /// `message_delta`: the output tokens so far, and the finishing chunk if it has a stop
    /// reason.
    fn message_delta(
        &mut self,
        stop_reason: Option<&str>,
        tokens: &anthropic::MessageUsage,
    ) -> Decoded<'static> {
        if let Some(output) = tokens.output_tokens {
            self.usage.output = output;
        }
        stop_reason.map_or(Decoded::Nothing, |reason| {
            Decoded::Finish(finish_reason(reason))
        })
    }

    /// The OpenAI chunk of `decoded`, as a tree: written out for a streaming client, read
    /// into the answer for the others. `None` for an error and for nothing. A `Value` map
    /// writes its keys in sorted order, as the chunks did when they were built as `Value`s: so
    /// do these.
    pub fn chunk<'a>(&'a self, decoded: Decoded<'a>) -> Option<Json<'a>> {
        let delta = match decoded {
            Decoded::Delta(Delta::Role) => Json::Object(vec![
                member("content", borrowed("")),
                member("role", borrowed("assistant")),
            ]),
            Decoded::Delta(Delta::Text(content)) => Json::Object(vec![member("content", content)]),
            Decoded::Delta(Delta::ToolCall { index, id, name }) => {
                let function = Json::Object(vec![
                    member("arguments", borrowed("")),
                    member("name", name),
                ]);
                tool_call(vec![
                    member("function", function),
                    member("id", id),
                    member("index", number(index)),
                    member("type", borrowed("function")),
                ])
            }
            Decoded::Delta(Delta::Arguments {
                index,
                partial_json,
            }) => {
                let function = Json::Object(vec![member("arguments", partial_json)]);
                tool_call(vec![
                    member("function", function),
                    member("index", number(index)),
                ])
            }
            Decoded::Finish(reason) => {
                return Some(self.chunk_with(Json::Object(Vec::new()), Some(reason)));
            }
            Decoded::Usage(u) => {
                let usage = Json::Object(vec![
                    member("completion_tokens", number(u.output)),
                    member("prompt_tokens", number(u.input)),
                    member(
                        "prompt_tokens_details",
                        Json::Object(vec![member("cached_tokens", number(u.cached_input))]),
                    ),
                    member("total_tokens", number(u.input + u.output)),
                ]);
                return Some(Json::Object(vec![
                    member("choices", Json::Array(Vec::new())),
                    member("created", number(self.created)),
                    member("id", borrowed(&self.id)),
                    member("model", borrowed(&self.model)),
                    member("object", borrowed("chat.completion.chunk")),
                    member("usage", usage),
                ]));
            }
            Decoded::Error(_) | Decoded::Nothing => return None,
        };
        Some(self.chunk_with(delta, None))
    }

    /// A `chat.completion.chunk` with one choice of this delta and finish reason.
    fn chunk_with<'a>(&'a self, delta: Json<'a>, finish_reason: Option<&'static str>) -> Json<'a> {
        let choice = Json::Object(vec![
            member("delta", delta),
            member("finish_reason", finish_reason.map_or(Json::Null, borrowed)),
            member("index", number(0)),
            member("logprobs", Json::Null),
        ]);
        Json::Object(vec![
            member("choices", Json::Array(vec![choice])),
            member("created", number(self.created)),
            member("id", borrowed(&self.id)),
            member("model", borrowed(&self.model)),
            member("object", borrowed("chat.completion.chunk")),
        ])
    }

    /// Usage seen so far (for passthrough streams, where no chunks are built).
    pub fn usage(&self) -> Usage {
        self.usage
    }
}

#[cfg(test)]
mod tests;
