//! Hub (Chat Completions) chunks as the Responses API's typed stream events, in the order
//! OpenAI sends them and its SDKs parse them: `response.created` and `response.in_progress`,
//! then per output item `response.output_item.added`, its content (`response.content_part.added`,
//! `response.output_text.delta`…`.done` or `response.refusal.delta`…`.done`,
//! `response.content_part.done`, or `response.function_call_arguments.delta`…`.done`) and
//! `response.output_item.done`, and at the end `response.completed` (`response.incomplete`
//! after a length or content-filter stop) carrying the whole Response. Every event is
//! `event: <type>` plus `data:` with `type` and a `sequence_number` counting from 0.
//!
//! The answer has one message item (all its text, as the non-streamed answer has) and one
//! function-call item per hub tool-call index. A hub stream may interleave them (text after a
//! call, deltas going back to an earlier call), so every item stays open, at the output index it
//! was added at, until the stream ends: then each gets its `done` events, in output order, and
//! the final Response equals the one a non-streaming client gets.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::responses::{
    Echo, Ids, content_part, envelope, function_call_item, item_status, message_content, status,
    usage,
};
use super::wire::openai::{Completion, ToolCall};
use super::wire::read;

/// Turns hub chunks into Responses events as they arrive.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    /// The request fields a Response echoes.
    echo: Echo,
    /// The ids and head of the response, from the first chunk.
    head: Option<Head>,
    sequence: u64,
    /// The output items added so far, open or done, in output-index order.
    items: Vec<Item>,
    /// The message item's output index, once text or a refusal arrived.
    message: Option<usize>,
    /// The hub's tool-call index to the call item's output index.
    calls: BTreeMap<u64, usize>,
    /// Calls whose `id` or `name` has not arrived yet: added once both are known (the SDKs
    /// identify a call by `call_id`, which must not change between `added` and `done`).
    pending: BTreeMap<u64, Call>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    /// Every item's `done` events were sent.
    closed: bool,
}

#[derive(Debug)]
struct Head {
    ids: Ids,
    created_at: u64,
    model: Value,
}

/// One output item.
#[derive(Debug)]
enum Item {
    /// The assistant message: its content parts (`output_text`, `refusal`) in the order they
    /// began.
    Message {
        parts: Vec<Part>,
    },
    Call(Call),
}

#[derive(Debug)]
struct Part {
    refusal: bool,
    text: String,
}

#[derive(Debug, Default)]
struct Call {
    /// The hub's tool-call index.
    index: u64,
    call_id: Value,
    name: Value,
    arguments: String,
    /// Gemini's thought signature, handed back with the call.
    signature: Option<String>,
}

impl Call {
    fn known(&self) -> bool {
        !self.call_id.is_null() && !self.name.is_null()
    }

    /// Fills what a later delta brings.
    fn update(&mut self, call: &ToolCall) {
        if self.call_id.is_null() && !call.id.is_null() {
            self.call_id = call.id.clone();
        }
        if self.name.is_null() && !call.function.name.is_null() {
            self.name = call.function.name.clone();
        }
        if self.signature.is_none() {
            self.signature = call.extra_content.google.thought_signature.clone();
        }
    }
}

impl StreamEncoder {
    /// An encoder whose Responses echo the request's fields.
    pub fn new(echo: Echo) -> Self {
        Self {
            echo,
            ..Self::default()
        }
    }

    /// Events for one hub chunk, appended to `out`.
    pub fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let parsed: Completion = read(chunk);
        if self.head.is_none() {
            let created_at = chunk.get("created").and_then(Value::as_u64).unwrap_or(0);
            self.start(
                Ids::new(parsed.id.as_deref()),
                created_at,
                parsed.model.clone(),
                out,
            );
        }
        if let Some(u) = &parsed.usage {
            self.usage = Some(usage(u, chunk.get("usage")));
        }
        let Some(choice) = parsed.choices.as_ref().and_then(|c| c.first()) else {
            return;
        };
        let delta = &choice.delta;
        if let Some(text) = delta.content.as_str().filter(|t| !t.is_empty()) {
            self.text(false, text, out);
        }
        if let Some(text) = chunk
            .pointer("/choices/0/delta/refusal")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text(true, text, out);
        }
        for (n, call) in delta.tool_calls.iter().flatten().enumerate() {
            self.call(call.index.unwrap_or(n as u64), call, out);
        }
        if let Some(reason) = &choice.finish_reason {
            self.finish_reason = Some(reason.clone());
        }
    }

    /// The closing events, after the last chunk: every item's `done` events, then
    /// `response.completed` (or `response.incomplete`).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if self.head.is_none() {
            self.start(Ids::new(None), 0, Value::Null, out);
        }
        self.close(out);
        let (status, incomplete) = status(self.finish_reason.as_deref());
        let mut response = self.response(status);
        response["incomplete_details"] = incomplete;
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({"response": response}));
    }

    /// The event that ends a stream after a failure: `response.failed`, whose Response carries
    /// the items so far (those still open as `incomplete`) and `error` (`code`, `message`).
    pub fn failed(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if self.head.is_none() {
            self.start(Ids::new(None), 0, Value::Null, out);
        }
        self.closed = true;
        let mut response = self.response("failed");
        response["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({"response": response}));
    }

    fn start(&mut self, ids: Ids, created_at: u64, model: Value, out: &mut Vec<u8>) {
        self.head = Some(Head {
            ids,
            created_at,
            model,
        });
        let response = self.response("in_progress");
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn ids(&self) -> &Ids {
        &self.head.as_ref().expect("started before any item").ids
    }

    /// A text (or refusal) delta, into the message item's part of that kind.
    fn text(&mut self, refusal: bool, text: &str, out: &mut Vec<u8>) {
        let output_index = match self.message {
            Some(at) => at,
            None => {
                let at = self.items.len();
                let id = self.ids().message();
                self.emit(out, "response.output_item.added", json!({
                    "output_index": at,
                    "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []},
                }));
                self.items.push(Item::Message { parts: Vec::new() });
                self.message = Some(at);
                at
            }
        };
        let id = self.ids().message();
        let Item::Message { parts } = &mut self.items[output_index] else {
            unreachable!("the message index holds the message");
        };
        let content_index = match parts.iter().position(|p| p.refusal == refusal) {
            Some(at) => at,
            None => {
                parts.push(Part {
                    refusal,
                    text: String::new(),
                });
                let at = parts.len() - 1;
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({
                        "item_id": id, "output_index": output_index, "content_index": at,
                        "part": content_part(refusal, ""),
                    }),
                );
                at
            }
        };
        if let Item::Message { parts } = &mut self.items[output_index] {
            parts[content_index].text.push_str(text);
        }
        let (kind, data) = if refusal {
            (
                "response.refusal.delta",
                json!({"item_id": id, "output_index": output_index,
                    "content_index": content_index, "delta": text}),
            )
        } else {
            (
                "response.output_text.delta",
                json!({"item_id": id, "output_index": output_index,
                    "content_index": content_index, "delta": text, "logprobs": []}),
            )
        };
        self.emit(out, kind, data);
    }

    /// A tool-call delta: the call's item is added once its id and name are known, later
    /// deltas of the same index append to it.
    fn call(&mut self, index: u64, call: &ToolCall, out: &mut Vec<u8>) {
        let arguments = call.function.arguments.as_deref().unwrap_or_default();
        if let Some(&at) = self.calls.get(&index) {
            if let Item::Call(open) = &mut self.items[at] {
                open.update(call);
                open.arguments.push_str(arguments);
            }
            if !arguments.is_empty() {
                self.arguments_delta(at, arguments, out);
            }
            return;
        }
        let pending = self.pending.entry(index).or_insert_with(|| Call {
            index,
            ..Call::default()
        });
        pending.update(call);
        pending.arguments.push_str(arguments);
        if pending.known() {
            let pending = self.pending.remove(&index).expect("just seen");
            self.add_call(pending, out);
        }
    }

    /// Adds a call item (with the arguments gathered so far as its first delta).
    fn add_call(&mut self, call: Call, out: &mut Vec<u8>) {
        let at = self.items.len();
        let id = self.ids().function_call(call.index);
        let item = function_call_item(
            &id,
            &call.call_id,
            &call.name,
            "",
            "in_progress",
            call.signature.as_deref(),
        );
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
        );
        let arguments = call.arguments.clone();
        self.calls.insert(call.index, at);
        self.items.push(Item::Call(call));
        if !arguments.is_empty() {
            self.arguments_delta(at, &arguments, out);
        }
    }

    fn arguments_delta(&mut self, at: usize, arguments: &str, out: &mut Vec<u8>) {
        let Item::Call(call) = &self.items[at] else {
            return;
        };
        let item_id = self.ids().function_call(call.index);
        self.emit(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": at, "delta": arguments}),
        );
    }

    /// The Response as it stands: done items as they ended, open ones as they are.
    fn response(&self, status: &str) -> Value {
        let head = self.head.as_ref().expect("started");
        let item_status = match status {
            "in_progress" => "in_progress",
            "failed" => "incomplete",
            _ => item_status(self.finish_reason.as_deref()),
        };
        let output = self
            .items
            .iter()
            .map(|i| self.item(i, item_status))
            .collect();
        let mut response = envelope(
            &head.ids,
            &self.echo,
            head.created_at,
            &head.model,
            status,
            output,
        );
        if status != "in_progress" {
            response["usage"] = self.usage.clone().unwrap_or(Value::Null);
        }
        response
    }

    /// An item as an output item with `status`.
    fn item(&self, item: &Item, status: &str) -> Value {
        match item {
            Item::Message { parts } => message_content(
                &self.ids().message(),
                parts
                    .iter()
                    .map(|p| content_part(p.refusal, &p.text))
                    .collect(),
                status,
            ),
            Item::Call(call) => function_call_item(
                &self.ids().function_call(call.index),
                &call.call_id,
                &call.name,
                &call.arguments,
                status,
                call.signature.as_deref(),
            ),
        }
    }

    /// Ends every item, in output order, with its `done` events; calls whose id or name never
    /// came are added first.
    fn close(&mut self, out: &mut Vec<u8>) {
        for (_, call) in std::mem::take(&mut self.pending) {
            self.add_call(call, out);
        }
        let status = item_status(self.finish_reason.as_deref());
        for output_index in 0..self.items.len() {
            let item = &self.items[output_index];
            let done = self.item(item, status);
            match item {
                Item::Message { parts } => {
                    let id = self.ids().message();
                    let parts: Vec<(bool, String)> =
                        parts.iter().map(|p| (p.refusal, p.text.clone())).collect();
                    for (content_index, (refusal, text)) in parts.into_iter().enumerate() {
                        let (kind, data) = if refusal {
                            (
                                "response.refusal.done",
                                json!({"item_id": id, "output_index": output_index,
                                    "content_index": content_index, "refusal": text}),
                            )
                        } else {
                            (
                                "response.output_text.done",
                                json!({"item_id": id, "output_index": output_index,
                                    "content_index": content_index, "text": text, "logprobs": []}),
                            )
                        };
                        self.emit(out, kind, data);
                        self.emit(out, "response.content_part.done", json!({
                            "item_id": id, "output_index": output_index,
                            "content_index": content_index, "part": content_part(refusal, &text),
                        }));
                    }
                }
                Item::Call(call) => {
                    let data = json!({
                        "item_id": done["id"], "output_index": output_index,
                        "name": call.name, "arguments": call.arguments,
                    });
                    self.emit(out, "response.function_call_arguments.done", data);
                }
            }
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": output_index, "item": done}),
            );
        }
        self.closed = true;
    }

    /// One event: `type` and `sequence_number` added to `data`.
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = Value::String(kind.to_string());
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        super::write_json(out, &data);
        out.extend_from_slice(b"\n\n");
    }
}
