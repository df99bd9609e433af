//! OpenAI-format requests to `api: Gemini` providers: Chat Completions requests into
//! `GenerateContentRequest`s, and `GenerateContentResponse`s (whole or streamed) back into Chat
//! Completions answers and chunks.
//!
//! Deliberate choices (also in `docs/reference/translation.md`): system and developer messages
//! become `systemInstruction`; assistant turns become `model` turns and tool results
//! `functionResponse` parts of a `user` turn, named after the tool call they answer (Gemini
//! matches by name); consecutive turns of one role are merged, as Gemini requires alternation;
//! images are `inlineData` (data URLs) or `fileData` (links); JSON schemas go to the fields that
//! take raw JSON Schema (`parametersJsonSchema`, `responseJsonSchema`), not to the OpenAPI-subset
//! `parameters`/`responseSchema`; zero penalties are omitted (some Gemini models reject the
//! field outright) and a `seed` beyond Gemini's int32 keeps its low 32 bits. Gemini 3 requires
//! the `thoughtSignature` of each function call back with the history: answers carry it in
//! `tool_calls[].extra_content.google.thought_signature` (the field Google's own OpenAI
//! endpoint uses), requests read it from there, and a turn without one gets Google's documented
//! [`SKIP_SIGNATURE`] placeholder. Thought parts are not returned (we never ask for them), but
//! their tokens count as completion tokens, as OpenAI counts reasoning. Dropped, with no Gemini
//! equivalent: `logprobs`/`top_logprobs` (Gemini's log-probability shape is not OpenAI's),
//! `logit_bias`, `user`, `parallel_tool_calls` (Gemini has no switch), `stream_options` (Gemini
//! always reports usage), `reasoning_effort` (Gemini 2.5 and 3 take different thinking knobs)
//! and the `strict` flag of tools.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::json_arguments;
use super::wire::gemini::{Candidate, GenerateContentResponse, UsageMetadata};
use super::wire::openai::{ChatRequest, Content, Message, Part, Stop, Tool, ToolChoice};
use super::wire::{gemini, read, read_map};
use crate::convert::Usage;

/// The `thoughtSignature` Google documents for function calls that Gemini did not produce (or
/// whose signature the client did not keep): it skips Gemini 3's signature check.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// A Chat Completions request as a `GenerateContentRequest` (the model goes in the URL).
pub fn request(hub: &Map<String, Value>) -> Map<String, Value> {
    let hub: ChatRequest = read_map(hub);
    let mut system = Vec::new();
    let mut contents: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, parts: Vec<Value>| {
        if parts.is_empty() {
            return;
        }
        match contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => contents.push((role, parts)),
        }
    };
    // Tool-call id → function name, as of the message being converted: ids may repeat across
    // turns, so the latest call with an id is the one a later result answers.
    let mut names: HashMap<String, Value> = HashMap::new();
    for message in hub.messages.iter().flatten() {
        let content = &message.content;
        match message.role.as_deref().unwrap_or_default() {
            "system" | "developer" => {
                let text = content.text();
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
            }
            "assistant" => push("model", model_parts(message, &mut names)),
            "tool" | "function" => {
                let id = message.tool_call_id.as_str();
                let name = id
                    .and_then(|id| names.get(id).cloned())
                    .or_else(|| message.name.clone().map(Value::String))
                    .unwrap_or_else(|| Value::String(id.unwrap_or("tool").to_string()));
                let mut response = json!({"name": name, "response": response_object(content)});
                if let Some(id) = id {
                    response["id"] = Value::String(id.to_string());
                }
                push("user", vec![json!({"functionResponse": response})]);
            }
            _ => push("user", user_parts(content)),
        }
    }

    let mut out = Map::new();
    let contents: Vec<Value> = contents
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if let Some(tools) = tools(&hub) {
        out.insert("tools".into(), tools);
        if let Some(config) = tool_config(hub.tool_choice.as_ref()) {
            out.insert("toolConfig".into(), config);
        }
    }
    let config = generation_config(&hub);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    out
}

/// An assistant message's text and function calls, recording each call's name under its id.
fn model_parts(message: &Message, names: &mut HashMap<String, Value>) -> Vec<Value> {
    let mut parts = Vec::new();
    let text = message.content.text();
    // NB: Gemini rejects empty text parts.
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    for (i, call) in message.tool_calls.iter().flatten().enumerate() {
        let function = &call.function;
        let mut function_call = json!({
            "name": function.name,
            "args": json_arguments(function.arguments.as_deref().unwrap_or("{}")),
        });
        if let Some(id) = call.id.as_str() {
            names.insert(id.to_string(), function.name.clone());
            function_call["id"] = Value::String(id.to_string());
        }
        let mut part = json!({"functionCall": function_call});
        let signature = &call.extra_content.google.thought_signature;
        // Gemini signs the first call of a turn (parallel calls share it), so the placeholder
        // goes there too.
        match signature {
            Some(signature) => part["thoughtSignature"] = Value::String(signature.clone()),
            None if i == 0 => part["thoughtSignature"] = Value::String(SKIP_SIGNATURE.into()),
            None => {}
        }
        parts.push(part);
    }
    parts
}

/// A tool result as Gemini's `response`, which must be an object: the result itself when it is
/// a JSON object, else the text under `content`.
fn response_object(content: &Content) -> Value {
    let text = content.text();
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => json!({"content": text}),
    }
}

fn user_parts(content: &Content) -> Vec<Value> {
    match content {
        Content::Text(s) if s.is_empty() => Vec::new(),
        Content::Text(s) => vec![json!({"text": s})],
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => text
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map(|t| json!({"text": t})),
                Part::ImageUrl { image_url } => {
                    let url = image_url.url.as_deref()?;
                    let mime = mime_from_extension(url);
                    data_url(url)
                        .or_else(|| Some(json!({"fileData": {"fileUri": url, "mimeType": mime}})))
                }
                Part::InputAudio { input_audio } => {
                    let format = input_audio.format.as_deref().unwrap_or("wav");
                    let mime = format!("audio/{format}");
                    Some(json!({"inlineData": {"mimeType": mime, "data": input_audio.data}}))
                }
                // Only inline files: an OpenAI `file_id` means nothing to Gemini.
                Part::File { file } => data_url(file.file_data.as_deref()?),
                Part::Other => None,
            })
            .collect(),
        Content::None => Vec::new(),
    }
}

/// A base64 `data:` URL as an `inlineData` part.
fn data_url(url: &str) -> Option<Value> {
    let (header, data) = url.strip_prefix("data:")?.split_once(',')?;
    let header = header.strip_suffix(";base64")?;
    let mime = header.split(';').next().filter(|m| !m.is_empty())?;
    Some(json!({"inlineData": {"mimeType": mime, "data": data}}))
}

/// The MIME type of a linked file, from its extension; `image/jpeg` when unknown, since links
/// arrive as `image_url` parts.
fn mime_from_extension(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

/// `tools` as one Gemini tool holding every function declaration; `None` when there are none.
fn tools(hub: &ChatRequest) -> Option<Value> {
    let declarations: Vec<Value> = hub
        .tools
        .as_ref()?
        .iter()
        .filter_map(|t| t.function.as_ref())
        .map(|f| {
            let mut declaration = json!({"name": f.name.clone().unwrap_or(Value::Null)});
            if let Some(d) = &f.description {
                declaration["description"] = Value::String(d.clone());
            }
            if let Some(p) = f.parameters.as_ref().filter(|p| p.is_object()) {
                declaration["parametersJsonSchema"] = p.clone();
            }
            declaration
        })
        .collect();
    (!declarations.is_empty()).then(|| json!([{"functionDeclarations": declarations}]))
}

/// `tool_choice` as `toolConfig`; `None` leaves Gemini's default (`AUTO`).
fn tool_config(choice: Option<&ToolChoice>) -> Option<Value> {
    let names = |tools: &[Tool]| -> Vec<Value> {
        tools
            .iter()
            .filter_map(|t| t.function.as_ref()?.name.clone())
            .collect()
    };
    let config = match choice? {
        ToolChoice::Mode(s) => match s.as_str() {
            "required" => json!({"mode": "ANY"}),
            "none" => json!({"mode": "NONE"}),
            _ => json!({"mode": "AUTO"}),
        },
        ToolChoice::Object(o) => match o.kind.as_deref() {
            Some("function") => {
                json!({"mode": "ANY", "allowedFunctionNames": [o.function.name.clone()?]})
            }
            // NB: Gemini restricts the choice of functions only in ANY mode, so `allowed_tools`
            // in `auto` mode allows every declared function.
            Some("allowed_tools") => {
                let allowed = &o.allowed_tools;
                let tools = allowed.tools.as_ref()?;
                match allowed.mode.as_deref() {
                    Some("required") => {
                        json!({"mode": "ANY", "allowedFunctionNames": names(tools)})
                    }
                    _ => json!({"mode": "AUTO"}),
                }
            }
            _ => return None,
        },
    };
    Some(json!({"functionCallingConfig": config}))
}

fn generation_config(hub: &ChatRequest) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(t) = &hub.temperature {
        config.insert("temperature".into(), Value::Number(t.clone()));
    }
    if let Some(p) = &hub.top_p {
        config.insert("topP".into(), Value::Number(p.clone()));
    }
    if let Some(max) = hub.max_completion_tokens.or(hub.max_tokens) {
        config.insert("maxOutputTokens".into(), max.into());
    }
    let stops: Vec<Value> = match &hub.stop {
        Some(Stop::One(s)) => vec![Value::String(s.clone())],
        Some(Stop::Many(a)) => a.iter().filter(|s| s.is_string()).cloned().collect(),
        None => Vec::new(),
    };
    if !stops.is_empty() {
        config.insert("stopSequences".into(), Value::Array(stops));
    }
    if let Some(n) = hub.n {
        config.insert("candidateCount".into(), n.into());
    }
    if let Some(seed) = hub.seed {
        // Gemini's seed is an int32; the low bits keep one seed mapping to one Gemini seed.
        config.insert("seed".into(), (seed as i32).into());
    }
    for (penalty, gemini) in [
        (&hub.presence_penalty, "presencePenalty"),
        (&hub.frequency_penalty, "frequencyPenalty"),
    ] {
        if let Some(p) = penalty
            .as_ref()
            .filter(|p| p.as_f64().is_some_and(|p| p != 0.0))
        {
            config.insert(gemini.into(), Value::Number(p.clone()));
        }
    }
    let format = &hub.response_format;
    match format.kind.as_deref() {
        Some("json_object") => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), "application/json".into());
            if let Some(schema) = &format.json_schema.schema {
                config.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        _ => {}
    }
    config
}

/// OpenAI's `finish_reason` for a Gemini `finishReason`; `calls` says whether the candidate
/// called functions (Gemini says `STOP` for those too).
pub fn finish_reason(reason: &str, calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// Gemini's `usageMetadata` as token counts. Thoughts count as output, as OpenAI counts
/// reasoning; tool-use prompt tokens (built-in tools) are billed as input.
pub fn usage(u: &UsageMetadata) -> Usage {
    let input = u.prompt_token_count.unwrap_or(0) + u.tool_use_prompt_token_count.unwrap_or(0);
    Usage {
        input,
        // `promptTokenCount` includes the cached part.
        cached_input: u.cached_content_token_count.unwrap_or(0).min(input),
        output: u.candidates_token_count.unwrap_or(0) + u.thoughts_token_count.unwrap_or(0),
    }
}

fn openai_usage(u: Usage, reasoning: u64) -> Value {
    json!({"prompt_tokens": u.input, "completion_tokens": u.output,
           "total_tokens": u.input + u.output,
           "prompt_tokens_details": {"cached_tokens": u.cached_input},
           "completion_tokens_details": {"reasoning_tokens": reasoning}})
}

fn reasoning_tokens(u: &UsageMetadata) -> u64 {
    u.thoughts_token_count.unwrap_or(0)
}

/// The chunk or completion id for a Gemini `responseId`; an answer without one gets a random id,
/// since clients (and the Responses API's item ids made from it) expect ids not to repeat.
fn completion_id(resp: &GenerateContentResponse) -> String {
    match resp.response_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => format!("chatcmpl-{id}"),
        None => format!("chatcmpl-gemini-{:016x}", rand::random::<u64>()),
    }
}

/// The stem of generated tool-call ids. Gemini usually gives none; the response id makes ours
/// unique across turns, which matters when a conversation fails over to a provider that rejects
/// repeated ids.
fn call_stem(resp: &GenerateContentResponse) -> String {
    let id: String = resp
        .response_id
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if id.is_empty() {
        "call_".into()
    } else {
        format!("call_{id}_")
    }
}

/// One `functionCall` part as an OpenAI tool call (`n` numbers the candidate's calls).
fn tool_call(part: &gemini::Part, stem: &str, n: u64) -> Value {
    let call = part.function_call.as_ref();
    let id = match call.and_then(|c| c.id.as_deref()) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("{stem}{n}"),
    };
    let arguments = call
        .and_then(|c| c.args.as_ref())
        .map_or_else(|| "{}".into(), Value::to_string);
    let name = call.map_or(Value::Null, |c| c.name.clone());
    let mut out = json!({"id": id, "type": "function",
                         "function": {"name": name, "arguments": arguments}});
    if let Some(signature) = &part.thought_signature {
        out["extra_content"] = json!({"google": {"thought_signature": signature}});
    }
    out
}

/// A candidate's answer parts: its visible text and its function-call parts.
fn split_parts(candidate: &Candidate) -> (String, Vec<&gemini::Part>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in candidate.content.parts.iter().flatten() {
        if part.function_call.is_some() {
            calls.push(part);
        } else if part.thought != Some(true)
            && let Some(t) = &part.text
        {
            text.push_str(t);
        }
    }
    (text, calls)
}

/// Why Gemini filtered a whole answer before it said anything (no text, no function call in any
/// candidate): the prompt's `blockReason`, or a candidate's filtering `finishReason`. Such an
/// answer is a `ContentFiltered` failure, as Azure's filter stopping an answer before content
/// is; an answer filtered after some content is kept, with `finish_reason: "content_filter"`.
pub fn filtered(resp: &Value) -> Option<String> {
    filtered_before_content(&read(resp))
}

fn filtered_before_content(resp: &GenerateContentResponse) -> Option<String> {
    let candidates = resp.candidates.as_deref().unwrap_or_default();
    if candidates.is_empty() {
        return resp
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_ref())
            .map(blocked_prompt);
    }
    let said_something = candidates.iter().any(|c| {
        let (text, calls) = split_parts(c);
        !text.is_empty() || !calls.is_empty()
    });
    if said_something {
        return None;
    }
    candidates
        .iter()
        .filter_map(|c| c.finish_reason.as_deref())
        .find(|r| finish_reason(r, false) == "content_filter")
        .map(stopped_answer)
}

/// The failure message for a prompt Gemini blocked.
fn blocked_prompt(reason: &Value) -> String {
    match reason.as_str() {
        Some(reason) => format!("Gemini blocked the prompt: {reason}"),
        None => format!("Gemini blocked the prompt: {reason}"),
    }
}

/// The failure message for an answer Gemini stopped before any content.
fn stopped_answer(reason: &str) -> String {
    format!("Gemini stopped the answer before any content: {reason}")
}

/// A `GenerateContentResponse` as a `chat.completion` (one choice per candidate), with its
/// usage. `None` when the body is not a `GenerateContentResponse`.
pub fn response(resp: &Value, model: &str, created: u64) -> Option<(Value, Usage)> {
    let resp: GenerateContentResponse = read(resp);
    let candidates = resp.candidates.as_ref().filter(|c| !c.is_empty());
    let choices: Vec<Value> = match (candidates, &resp.prompt_feedback) {
        (None, None) => return None,
        // The prompt itself was blocked: Gemini answers with no candidate at all.
        (None, Some(_)) => vec![
            json!({"index": 0, "logprobs": null, "finish_reason": "content_filter",
            "message": {"role": "assistant", "content": null, "refusal": null}}),
        ],
        (Some(candidates), _) => {
            let stem = call_stem(&resp);
            candidates
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (text, parts) = split_parts(c);
                    let calls: Vec<Value> = (0..)
                        .zip(&parts)
                        .map(|(n, p)| tool_call(p, &stem, n))
                        .collect();
                    let finish = finish_reason(
                        c.finish_reason.as_deref().unwrap_or("STOP"),
                        !calls.is_empty(),
                    );
                    let content =
                        if text.is_empty() && (!calls.is_empty() || finish == "content_filter") {
                            Value::Null
                        } else {
                            Value::String(text)
                        };
                    let mut message =
                        json!({"role": "assistant", "content": content, "refusal": null});
                    if !calls.is_empty() {
                        message["tool_calls"] = Value::Array(calls);
                    }
                    json!({"index": c.index.unwrap_or(i as u64),
                           "message": message, "logprobs": null, "finish_reason": finish})
                })
                .collect()
        }
    };
    let no_usage = UsageMetadata::default();
    let metadata = resp.usage_metadata.as_ref().unwrap_or(&no_usage);
    let usage = usage(metadata);
    let completion = json!({
        "id": completion_id(&resp), "object": "chat.completion", "created": created, "model": model,
        "choices": choices, "usage": openai_usage(usage, reasoning_tokens(metadata)),
    });
    Some((completion, usage))
}

/// Turns the `GenerateContentResponse`s of a Gemini stream into OpenAI chunks. Gemini streams
/// have no end event: the answer is complete once a candidate has reported a `finishReason`,
/// and the final usage chunk comes from [`StreamDecoder::usage_chunk`] when the body ends.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    id: Option<String>,
    model: String,
    created: u64,
    stem: String,
    /// Per candidate index: whether its role was sent, and its tool calls so far.
    choices: Vec<(u64, ChoiceState)>,
    /// The latest `usageMetadata` (Gemini repeats running totals in every response).
    usage: Option<(Usage, u64)>,
    finished: bool,
    /// A delta with text or a function call has been produced.
    content_seen: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct ChoiceState {
    started: bool,
    calls: u64,
}

impl StreamDecoder {
    /// A decoder for one stream; `created` stamps every chunk.
    pub fn new(created: u64) -> Self {
        Self {
            created,
            ..Self::default()
        }
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model, "choices": choices})
    }

    fn state(&mut self, index: u64) -> &mut ChoiceState {
        let at = match self.choices.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None => {
                self.choices.push((index, ChoiceState::default()));
                self.choices.len() - 1
            }
        };
        &mut self.choices[at].1
    }

    /// The chunks for one streamed `GenerateContentResponse` (possibly none), or, when Gemini
    /// filtered the answer before any content (see [`filtered`]), why: the stream has not
    /// committed then (roles wait for content), so the attempt fails as `ContentFiltered`.
    pub fn event(&mut self, data: &Value) -> Result<Vec<Value>, String> {
        let data: GenerateContentResponse = read(data);
        if self.id.is_none() {
            self.id = Some(completion_id(&data));
            self.stem = call_stem(&data);
        }
        if self.model.is_empty()
            && let Some(model) = &data.model_version
        {
            self.model = model.clone();
        }
        if let Some(metadata) = &data.usage_metadata {
            self.usage = Some((usage(metadata), reasoning_tokens(metadata)));
        }
        let mut out = Vec::new();
        let candidates = data.candidates.as_deref().unwrap_or_default();
        if candidates.is_empty() {
            if let Some(reason) = data
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_ref())
            {
                if !self.content_seen {
                    return Err(blocked_prompt(reason));
                }
                self.finished = true;
                out.push(
                    self.chunk(json!([{"index": 0, "delta": {}, "logprobs": null,
                            "finish_reason": "content_filter"}])),
                );
            }
            return Ok(out);
        }
        if !self.content_seen
            && let Some(reason) = filtered_before_content(&data)
        {
            return Err(reason);
        }
        for (i, candidate) in candidates.iter().enumerate() {
            self.candidate(i, candidate, &mut out);
        }
        Ok(out)
    }

    /// The hub chunks for one candidate of an event: its delta (text, whole function calls) and
    /// its finish, if it finished.
    fn candidate(&mut self, i: usize, candidate: &Candidate, out: &mut Vec<Value>) {
        let index = candidate.index.unwrap_or(i as u64);
        let (text, parts) = split_parts(candidate);
        let stem = self.stem.clone();
        let state = self.state(index);
        let mut delta = Map::new();
        if !text.is_empty() {
            delta.insert("content".into(), Value::String(text));
        }
        if !parts.is_empty() {
            // Gemini streams each function call whole: one delta carries id, name and all
            // the arguments.
            let calls: Vec<Value> = parts
                .iter()
                .map(|part| {
                    let mut call = tool_call(part, &stem, state.calls);
                    call["index"] = state.calls.into();
                    state.calls += 1;
                    call
                })
                .collect();
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
        // The role waits for the first delta worth sending, so that an event with nothing
        // in it (say, only a thought signature) does not commit the stream.
        if !delta.is_empty() && !state.started {
            state.started = true;
            delta.insert("role".into(), "assistant".into());
        }
        let saw_calls = state.calls > 0;
        if !delta.is_empty() {
            self.content_seen = true;
            out.push(
                self.chunk(json!([{"index": index, "delta": delta, "logprobs": null,
                                         "finish_reason": null}])),
            );
        }
        if let Some(reason) = &candidate.finish_reason {
            self.finished = true;
            let mut delta = json!({});
            let state = self.state(index);
            if !state.started {
                state.started = true;
                delta["role"] = "assistant".into();
            }
            out.push(
                self.chunk(json!([{"index": index, "delta": delta, "logprobs": null,
                                         "finish_reason": finish_reason(reason, saw_calls)}])),
            );
        }
    }

    /// Whether a candidate finished: a stream that ends before that was cut off.
    pub fn complete(&self) -> bool {
        self.finished
    }

    /// The final usage chunk (`choices: []`), when Gemini reported usage.
    pub fn usage_chunk(&self) -> Option<(Value, Usage)> {
        let (usage, reasoning) = self.usage?;
        let mut chunk = self.chunk(json!([]));
        chunk["usage"] = openai_usage(usage, reasoning);
        Some((chunk, usage))
    }
}

#[cfg(test)]
pub(crate) mod tests;
