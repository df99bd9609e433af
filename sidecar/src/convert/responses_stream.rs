//! Hub (Chat Completions) chunks as the Responses API's typed stream events, in the order
//! OpenAI sends them and its SDKs parse them: `response.created` and `response.in_progress`,
//! then per output item `response.output_item.added`, its content (`response.content_part.added`,
//! `response.output_text.delta`…`.done`, `response.content_part.done`, or
//! `response.function_call_arguments.delta`…`.done`) and `response.output_item.done`, and at
//! the end `response.completed` (`response.incomplete` after a length or content-filter stop)
//! carrying the whole Response. Every event is `event: <type>` plus `data:` with `type` and a
//! `sequence_number` counting from 0.

use serde_json::{Value, json};

use super::responses::{
    Ids, envelope, function_call_item, message_item, output_text, status, usage,
};
use super::wire::openai::Completion;
use super::wire::read;

/// Turns hub chunks into Responses events as they arrive.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    /// The ids and head of the response, from the first chunk.
    head: Option<Head>,
    sequence: u64,
    /// Output items already done, for the final Response.
    done: Vec<Value>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

#[derive(Debug)]
struct Head {
    ids: Ids,
    created_at: u64,
    model: Value,
}

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Message {
        text: String,
    },
    Call {
        /// The hub's tool-call index.
        index: u64,
        call_id: Value,
        name: Value,
        arguments: String,
    },
}

impl StreamEncoder {
    /// Events for one hub chunk, appended to `out`.
    pub fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
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
        // A refusal is the model's answer too: shown as text, which every client reads.
        let text = delta
            .content
            .as_str()
            .or_else(|| {
                chunk
                    .pointer("/choices/0/delta/refusal")
                    .and_then(Value::as_str)
            })
            .filter(|t| !t.is_empty());
        if let Some(text) = text {
            if !matches!(self.open, Some(Open::Message { .. })) {
                self.close(out);
                self.open_message(out);
            }
            let item_id = self.ids().message();
            let output_index = self.done.len();
            self.emit(
                out,
                "response.output_text.delta",
                json!({
                    "item_id": item_id, "output_index": output_index, "content_index": 0,
                    "delta": text, "logprobs": [],
                }),
            );
            if let Some(Open::Message { text: all }) = &mut self.open {
                all.push_str(text);
            }
        }
        for (n, call) in delta.tool_calls.iter().flatten().enumerate() {
            let index = call.index.unwrap_or(n as u64);
            if !matches!(&self.open, Some(Open::Call { index: i, .. }) if *i == index) {
                self.close(out);
                self.open = Some(Open::Call {
                    index,
                    call_id: call.id.clone(),
                    name: call.function.name.clone(),
                    arguments: String::new(),
                });
                let item = function_call_item(
                    &self.ids().function_call(index),
                    &call.id,
                    &call.function.name,
                    "",
                    "in_progress",
                );
                let output_index = self.done.len();
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": item}),
                );
            }
            if let Some(arguments) = call.function.arguments.as_deref().filter(|a| !a.is_empty()) {
                let item_id = self.ids().function_call(index);
                let output_index = self.done.len();
                self.emit(
                    out,
                    "response.function_call_arguments.delta",
                    json!({
                        "item_id": item_id, "output_index": output_index, "delta": arguments,
                    }),
                );
                if let Some(Open::Call { arguments: all, .. }) = &mut self.open {
                    all.push_str(arguments);
                }
            }
        }
        if let Some(reason) = &choice.finish_reason {
            self.finish_reason = Some(reason.clone());
        }
    }

    /// The closing events, after the last chunk: the open item's `done` events, then
    /// `response.completed` (or `response.incomplete`).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
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
    /// the items finished so far and `error` (`code`, `message`).
    pub fn failed(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.head.is_none() {
            self.start(Ids::new(None), 0, Value::Null, out);
        }
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

    /// The Response as it stands.
    fn response(&self, status: &str) -> Value {
        let head = self.head.as_ref().expect("started");
        let mut response = envelope(
            &head.ids,
            head.created_at,
            &head.model,
            status,
            self.done.clone(),
        );
        if status != "in_progress" {
            response["usage"] = self.usage.clone().unwrap_or(Value::Null);
        }
        response
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        let id = self.ids().message();
        let output_index = self.done.len();
        self.emit(out, "response.output_item.added", json!({
            "output_index": output_index,
            "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []},
        }));
        self.emit(out, "response.content_part.added", json!({
            "item_id": id, "output_index": output_index, "content_index": 0, "part": output_text(""),
        }));
        self.open = Some(Open::Message {
            text: String::new(),
        });
    }

    /// Ends the open item, if any, with its `done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        let output_index = self.done.len();
        let item = match self.open.take() {
            None => return,
            Some(Open::Message { text }) => {
                let id = self.ids().message();
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({
                        "item_id": id, "output_index": output_index, "content_index": 0,
                        "text": text, "logprobs": [],
                    }),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({
                        "item_id": id, "output_index": output_index, "content_index": 0,
                        "part": output_text(&text),
                    }),
                );
                let (status, _) = status(self.finish_reason.as_deref());
                let item_status = if status == "completed" {
                    "completed"
                } else {
                    "incomplete"
                };
                message_item(&id, &text, item_status)
            }
            Some(Open::Call {
                index,
                call_id,
                name,
                arguments,
            }) => {
                let id = self.ids().function_call(index);
                self.emit(out, "response.function_call_arguments.done", json!({
                    "item_id": id, "output_index": output_index, "name": name, "arguments": arguments,
                }));
                function_call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
        self.done.push(item);
    }

    /// One event: `type` and `sequence_number` added to `data`.
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = Value::String(kind.to_string());
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(data.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}
