//! A whole answer in the client's format, assembled from the client-format stream events of the
//! same answer (docs/reference/sidecar.md#streaming).
//!
//! Every chat request streams upstream, so that `firstToken` and `idle` bound it and silence is
//! measured on a head that comes at once; a client that asked for no stream gets what this module
//! builds from the events a streaming client would have received. It reads the client's format,
//! not the provider's, so one assembler per client API covers every provider, passthrough
//! included. The answer carries what the provider's own non-streamed answer carries, as far as
//! the stream carries it (key order aside).
//!
//! Each event is read as a borrowed tree ([`json`]), not a `serde_json::Value`: text deltas are
//! appended straight from the event's bytes and only what the answer keeps is copied (issue 15:
//! parsing every event into a `Value` again was the largest item of a non-streamed request).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

pub use self::json::{Json, Members};
use self::json::{find, into_map};
use super::sse::{SseEvent, SseParser};
use super::{ClientApi, json_arguments};

pub mod json;

/// Largest client-format event the assembler reads: four times the provider event limit, so
/// that a conversion that escapes an event's text still fits.
const MAX_CLIENT_EVENT_BYTES: usize = 4 * super::sse::MAX_EVENT_BYTES;

/// Collects a client-format stream into one whole answer.
pub struct Assembler {
    parser: SseParser,
    events: Vec<SseEvent>,
    answer: Answer,
    /// Roughly the bytes gathered so far ([`json_size`]): what the answer's size grows with.
    size: usize,
}

/// The answer being assembled, per client API.
enum Answer {
    OpenAI(OpenAiAnswer),
    Anthropic(AnthropicAnswer),
}

impl Assembler {
    pub fn new(api: ClientApi) -> Self {
        let answer = match api {
            // Responses answers are assembled in the hub format, then converted whole.
            ClientApi::OpenAI | ClientApi::Responses => Answer::OpenAI(OpenAiAnswer::default()),
            ClientApi::Anthropic => Answer::Anthropic(AnthropicAnswer::default()),
        };
        Self {
            // Events in the client's format can outgrow the provider's (Gemini's arguments
            // re-encoded as an escaped string): their own bound is the answer's.
            parser: SseParser::new(MAX_CLIENT_EVENT_BYTES),
            events: Vec::new(),
            answer,
            size: 0,
        }
    }

    /// Takes client-format stream bytes (whole events or parts of them).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.parser
            .push(bytes, &mut self.events)
            .map_err(|e| e.to_string())?;
        let events = std::mem::take(&mut self.events);
        for event in &events {
            if event.data.as_ref() != b"[DONE]" {
                self.event(&event.data)?;
            }
        }
        // The list goes back empty, keeping its room for the next push.
        self.events = events;
        self.events.clear();
        Ok(())
    }

    /// Takes one event's data: a client-format event, or a hub chunk for an OpenAI (or
    /// Responses) answer. A hub chunk is the OpenAI client's event as it is, so the stream
    /// that a non-streaming client never sees hands its chunks here without being framed as
    /// server-sent events and read back.
    pub fn event(&mut self, data: &[u8]) -> Result<(), String> {
        // Read borrowed: only what the answer keeps is copied out of the event.
        let data = Json::parse(data).map_err(|e| format!("stream event is not JSON: {e}"))?;
        let Json::Object(data) = data else {
            return Err("stream event is not a JSON object".into());
        };
        self.object(data)
    }

    /// Takes one event already read: a client-format event's members, or a hub chunk's for an
    /// OpenAI (or Responses) answer.
    pub fn object(&mut self, members: Members<'_>) -> Result<(), String> {
        self.size += match &mut self.answer {
            Answer::OpenAI(answer) => answer.chunk(members)?,
            Answer::Anthropic(answer) => answer.event(members)?,
        };
        Ok(())
    }

    /// Roughly the bytes gathered so far, to bound the answer while it grows.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The whole answer, once the stream has ended cleanly.
    pub fn finish(self) -> Result<Bytes, String> {
        let answer = match self.answer {
            Answer::OpenAI(answer) => answer.finish()?,
            Answer::Anthropic(answer) => answer.finish()?,
        };
        // Bytes, not `to_string`: that goes through `fmt::Write` piece by piece, which cost
        // about 5,000 instructions more per answer (bench/callgrind.sh). The gathered size plus
        // room for the keys is most answers' length, so the buffer is rarely grown.
        let mut out = Vec::with_capacity(self.size + 256);
        serde_json::to_writer(&mut out, &answer)
            .map_err(|e| format!("the answer could not be written: {e}"))?;
        Ok(Bytes::from(out))
    }
}

/// Merges a stream delta into what came before, as OpenAI's own SDKs accumulate chunks: strings
/// are appended, objects merged, lists of objects merged by their `index` (appended when they
/// have none), other lists appended. `index`, `type`, `id` and `role` are replaced, never
/// appended, and never by a blank value: some OpenAI-compatible servers repeat the role in every
/// delta or send `"id": ""` on a tool call's later deltas. Returns roughly the bytes added.
fn accumulate(acc: &mut Map<String, Value>, delta: Map<String, Value>) -> usize {
    let mut added = 0;
    for (key, value) in delta {
        let Some(slot) = acc.get_mut(&key).filter(|v| !v.is_null()) else {
            added += json_size(&value);
            acc.insert(key, value);
            continue;
        };
        if matches!(key.as_str(), "index" | "type" | "id" | "role") {
            if !is_blank(&value) {
                *slot = value;
            }
            continue;
        }
        added += merge(slot, value);
    }
    added
}

fn merge(slot: &mut Value, value: Value) -> usize {
    match (slot, value) {
        (_, Value::Null) => 0,
        (Value::String(s), Value::String(more)) => {
            s.push_str(&more);
            more.len()
        }
        (Value::Object(map), Value::Object(more)) => accumulate(map, more),
        (Value::Array(list), Value::Array(more)) => {
            let mut added = 0;
            for item in more {
                let index = item.get("index").filter(|i| !i.is_null()).cloned();
                let existing = index.as_ref().and_then(|index| {
                    list.iter_mut()
                        .find(|entry| entry.get("index") == Some(index))
                });
                match (existing, item) {
                    (Some(Value::Object(entry)), Value::Object(item)) => {
                        added += accumulate(entry, item)
                    }
                    (_, item) => {
                        added += json_size(&item);
                        list.push(item);
                    }
                }
            }
            added
        }
        (slot, value) => {
            *slot = value;
            0
        }
    }
}

/// [`accumulate`] for a delta read borrowed from its event: text is appended straight from the
/// event's bytes, and only fields seen for the first time and values that are not text become
/// `Value`s.
fn accumulate_json(acc: &mut Map<String, Value>, delta: Members<'_>) -> usize {
    let mut added = 0;
    for (key, value) in delta {
        let Some(slot) = acc.get_mut(key.as_ref()).filter(|v| !v.is_null()) else {
            let value = value.into_value();
            added += json_size(&value);
            acc.insert(key.into_owned(), value);
            continue;
        };
        if matches!(key.as_ref(), "index" | "type" | "id" | "role") {
            if !is_blank_json(&value) {
                *slot = value.into_value();
            }
            continue;
        }
        added += merge_json(slot, value);
    }
    added
}

fn merge_json(slot: &mut Value, value: Json<'_>) -> usize {
    match (slot, value) {
        (_, Json::Null) => 0,
        (Value::String(s), Json::Str(more)) => {
            s.push_str(&more);
            more.len()
        }
        (Value::Object(map), Json::Object(more)) => accumulate_json(map, more),
        (slot, value) => merge(slot, value.into_value()),
    }
}

/// A member's value taken out of the list (a null left in its place).
fn take<'a>(members: &mut Members<'a>, key: &str) -> Option<Json<'a>> {
    let (_, value) = members.iter_mut().rev().find(|(k, _)| k == key)?;
    Some(std::mem::replace(value, Json::Null))
}

fn is_blank_json(value: &Json<'_>) -> bool {
    match value {
        Json::Null => true,
        Json::Str(s) => s.is_empty(),
        Json::Scalar(value) => is_blank(value),
        _ => false,
    }
}

/// Null, `""` or `0`: what a chunk carries for a field it does not really set (Azure's first chunk,
/// with only `prompt_filter_results`, has `"id": ""`, `"model": ""` and `"created": 0`).
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_u64() == Some(0),
        _ => false,
    }
}

/// Roughly the bytes a value adds to the answer: its strings and keys, and 8 for every other
/// scalar, so that numbers (logprobs, token bytes) count towards the cap as well as text.
fn json_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(json_size).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + json_size(v)).sum(),
        _ => 8,
    }
}

/// `chat.completion.chunk`s into one `chat.completion`.
#[derive(Default)]
struct OpenAiAnswer {
    /// Top-level fields other than the choices and usage: `id`, `created`, `model`,
    /// `system_fingerprint`, `service_tier` and whatever else the provider adds.
    top: Map<String, Value>,
    choices: BTreeMap<u64, OpenAiChoice>,
    usage: Option<Value>,
    chunks: usize,
}

#[derive(Default)]
struct OpenAiChoice {
    message: Map<String, Value>,
    logprobs: Option<Map<String, Value>>,
    finish_reason: Option<Value>,
    /// Per-choice fields beyond these (Azure's `content_filter_results`, say).
    other: Map<String, Value>,
}

impl OpenAiAnswer {
    fn chunk(&mut self, chunk: Members<'_>) -> Result<usize, String> {
        if chunk.iter().any(|(key, _)| key == "error") {
            return Err("the stream reported an error".into());
        }
        self.chunks += 1;
        let mut added = 0;
        for (key, value) in chunk {
            match key.as_ref() {
                "choices" => {
                    if let Json::Array(choices) = value {
                        for choice in choices {
                            added += self.choice(choice);
                        }
                    }
                }
                "usage" if !value.is_null() => self.usage = Some(value.into_value()),
                // The stream's own markers, which a whole answer does not carry.
                "object" | "usage" | "obfuscation" => {}
                // Sent on every chunk; the last one stands, as in the whole answer.
                "system_fingerprint" | "service_tier" if !value.is_null() => {
                    self.top.insert(key.into_owned(), value.into_value());
                }
                // The first value that is not blank stands.
                _ => {
                    if self.top.get(key.as_ref()).is_none_or(is_blank) {
                        self.top.insert(key.into_owned(), value.into_value());
                    }
                }
            }
        }
        Ok(added)
    }

    fn choice(&mut self, choice: Json<'_>) -> usize {
        let index = choice.get("index").and_then(Json::as_u64).unwrap_or(0);
        let Json::Object(choice) = choice else {
            return 0;
        };
        let state = self.choices.entry(index).or_default();
        let mut added = 0;
        for (key, value) in choice {
            match (key.as_ref(), value) {
                ("index", _) | (_, Json::Null) => {}
                ("delta", Json::Object(delta)) => {
                    added += accumulate_json(&mut state.message, delta)
                }
                ("logprobs", Json::Object(logprobs)) => {
                    added += accumulate_json(state.logprobs.get_or_insert_with(Map::new), logprobs)
                }
                ("finish_reason", reason) => state.finish_reason = Some(reason.into_value()),
                // Whole objects repeated on each chunk (Azure's `content_filter_results`):
                // the latest stands, nothing is appended.
                (name, value) => {
                    state.other.insert(name.to_owned(), value.into_value());
                }
            }
        }
        added
    }

    fn finish(self) -> Result<Value, String> {
        if self.chunks == 0 {
            return Err("the stream carried no answer".into());
        }
        let mut answer = self.top;
        answer.insert("object".into(), json!("chat.completion"));
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, choice)| choice.finish(index))
            .collect();
        answer.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = self.usage {
            answer.insert("usage".into(), usage);
        }
        Ok(Value::Object(answer))
    }
}

impl OpenAiChoice {
    fn finish(self, index: u64) -> Value {
        let mut message = self.message;
        if message.get("role").is_none_or(Value::is_null) {
            message.insert("role".into(), json!("assistant"));
        }
        message.entry("content").or_insert(Value::Null);
        if message.get("content").and_then(Value::as_str) == Some("")
            && message.contains_key("tool_calls")
        {
            // A whole answer that only calls tools has `"content": null`.
            message.insert("content".into(), Value::Null);
        }
        if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
            calls.sort_by_key(|call| call.get("index").and_then(Value::as_u64).unwrap_or(0));
            for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                // The position in the list says it in a whole answer.
                call.remove("index");
            }
        }
        let mut choice = self.other;
        choice.insert("index".into(), json!(index));
        choice.insert("message".into(), Value::Object(message));
        choice.insert(
            "logprobs".into(),
            self.logprobs.map_or(Value::Null, Value::Object),
        );
        choice.insert(
            "finish_reason".into(),
            self.finish_reason.unwrap_or(Value::Null),
        );
        Value::Object(choice)
    }
}

/// Anthropic stream events into one `message`.
#[derive(Default)]
struct AnthropicAnswer {
    message: Option<Map<String, Value>>,
    blocks: BTreeMap<u64, AnthropicBlock>,
}

struct AnthropicBlock {
    block: Map<String, Value>,
    /// `input_json_delta` parts, parsed into `input` at the end.
    json: String,
}

impl AnthropicAnswer {
    fn event(&mut self, mut event: Members<'_>) -> Result<usize, String> {
        let kind = take(&mut event, "type");
        let kind = kind.as_ref().and_then(Json::as_str).unwrap_or_default();
        let index = find(&event, "index").and_then(Json::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                let Some(Json::Object(message)) = take(&mut event, "message") else {
                    return Err("message_start without a message".into());
                };
                self.message = Some(into_map(message));
                Ok(0)
            }
            "content_block_start" => {
                let Some(Json::Object(block)) = take(&mut event, "content_block") else {
                    return Err("content_block_start without a block".into());
                };
                let block = into_map(block);
                let added = block.iter().map(|(k, v)| k.len() + json_size(v)).sum();
                let block = AnthropicBlock {
                    block,
                    json: String::new(),
                };
                self.blocks.insert(index, block);
                Ok(added)
            }
            "content_block_delta" => {
                let block = self
                    .blocks
                    .get_mut(&index)
                    .ok_or("content_block_delta before its content_block_start")?;
                let Some(Json::Object(delta)) = take(&mut event, "delta") else {
                    return Ok(0);
                };
                Ok(block.delta(delta))
            }
            "message_delta" => {
                let message = self
                    .message
                    .as_mut()
                    .ok_or("message_delta before message_start")?;
                if let Some(Json::Object(delta)) = take(&mut event, "delta") {
                    for (key, value) in delta {
                        message.insert(key.into_owned(), value.into_value());
                    }
                }
                if let Some(Json::Object(usage)) = take(&mut event, "usage") {
                    let total = message.entry("usage").or_insert_with(|| json!({}));
                    if let Value::Object(total) = total {
                        // A null does not overwrite a count from `message_start`.
                        for (key, value) in usage.into_iter().filter(|(_, v)| !v.is_null()) {
                            total.insert(key.into_owned(), value.into_value());
                        }
                    }
                }
                Ok(0)
            }
            "error" => Err("the stream reported an error".into()),
            // `content_block_stop`, `message_stop`, `ping` and events yet to be invented.
            _ => Ok(0),
        }
    }

    fn finish(self) -> Result<Value, String> {
        let mut message = self.message.ok_or("the stream carried no message")?;
        let content: Vec<Value> = self
            .blocks
            .into_values()
            .map(AnthropicBlock::finish)
            .collect();
        message.insert("content".into(), Value::Array(content));
        Ok(Value::Object(message))
    }
}

impl AnthropicBlock {
    /// Applies one `content_block_delta`; returns roughly the bytes added.
    fn delta(&mut self, mut delta: Members<'_>) -> usize {
        let append = |block: &mut Map<String, Value>, key: &str, more: &str| {
            match block.get_mut(key) {
                Some(Value::String(s)) => s.push_str(more),
                _ => {
                    block.insert(key.to_string(), json!(more));
                }
            }
            more.len()
        };
        let kind = take(&mut delta, "type");
        let kind = kind.as_ref().and_then(Json::as_str).unwrap_or_default();
        let text = |key: &str| find(&delta, key).and_then(Json::as_str).unwrap_or_default();
        match kind {
            "text_delta" => append(&mut self.block, "text", text("text")),
            "thinking_delta" => append(&mut self.block, "thinking", text("thinking")),
            "signature_delta" => append(&mut self.block, "signature", text("signature")),
            "input_json_delta" => {
                let part = text("partial_json");
                self.json.push_str(part);
                part.len()
            }
            "citations_delta" => {
                let Some(citation) = take(&mut delta, "citation") else {
                    return 0;
                };
                let citation = citation.into_value();
                let added = json_size(&citation);
                match self.block.get_mut("citations") {
                    Some(Value::Array(list)) => list.push(citation),
                    _ => {
                        self.block.insert("citations".into(), json!([citation]));
                    }
                }
                added
            }
            // A delta kind yet to be invented: its text fields append to the block's.
            _ => delta
                .iter()
                .filter(|(key, _)| key != "type")
                .filter_map(|(key, value)| Some((key, value.as_str()?)))
                .map(|(key, more)| append(&mut self.block, key, more))
                .sum(),
        }
    }

    fn finish(self) -> Value {
        let mut block = self.block;
        if !self.json.is_empty() {
            // The same reading as a converted whole answer: arguments that are not a JSON object
            // are kept rather than lost.
            block.insert("input".into(), json_arguments(&self.json));
        } else if block.get("input").is_some_and(Value::is_null) {
            block.insert("input".into(), json!({}));
        }
        Value::Object(block)
    }
}

#[cfg(test)]
mod tests;
