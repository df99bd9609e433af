use std::sync::OnceLock;

use serde_json::json;

use super::*;

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

// --- A structural check against the official schema ---------------------------------------------

/// Gemini's request schemas, vendored with the integration tests (see tests/specs/SOURCES.md).
const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/specs/gemini.schemas.json"
);

/// The schemas of the Gemini spec.
fn schemas() -> &'static Map<String, Value> {
    static SPEC_JSON: OnceLock<Value> = OnceLock::new();
    SPEC_JSON
        .get_or_init(|| {
            let text = std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("{SPEC}: {e}"));
            serde_json::from_str(&text).expect("the Gemini spec is JSON")
        })
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .expect("the Gemini spec has components.schemas")
}

/// Where `value` breaks the `GenerateContentRequest` schema: keys the schema does not declare,
/// values outside an enum, wrong JSON types.
pub(crate) fn spec_errors(value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let root = json!({"$ref": "#/components/schemas/GenerateContentRequest"});
    check(schemas(), value, &root, "request", &mut errors);
    errors
}

fn check<'a>(
    schemas: &'a Map<String, Value>,
    value: &Value,
    mut schema: &'a Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    // The component the schema came from, for messages and the `Content.role` rule.
    let mut name = None;
    while let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let key = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        name = Some(key);
        schema = schemas
            .get(key)
            .unwrap_or_else(|| panic!("dangling $ref {target}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let kind = schema.get("type").and_then(Value::as_str);
    let type_ok = match kind {
        Some("string") => value.is_string(),
        Some("number") => value.is_number(),
        Some("integer") => match schema.get("format").and_then(Value::as_str) {
            Some("int32") => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            _ => value.is_i64() || value.is_u64(),
        },
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!(
            "{path}: {value} is not of type {}",
            kind.unwrap_or("?")
        ));
        return;
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            check(schemas, item, items, &format!("{path}[{i}]"), errors);
        }
    }
    // An object schema with no `properties` (`args`, `response`, `parametersJsonSchema`,
    // `responseJsonSchema`) is free-form.
    let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) else {
        return;
    };
    for (key, field) in object {
        let path = format!("{path}.{key}");
        match properties.get(key) {
            None => errors.push(format!("{path}: not a property of {}", name.unwrap_or("?"))),
            Some(property) => check(schemas, field, property, &path, errors),
        }
        // `Content.role` is a plain string; its description restricts it to these two.
        if name == Some("Content")
            && key == "role"
            && !matches!(field.as_str(), Some("user" | "model"))
        {
            errors.push(format!("{path}: {field} is neither \"user\" nor \"model\""));
        }
    }
}

/// `request(hub)`, after checking it against the spec.
fn valid_request(hub: Value) -> Map<String, Value> {
    let out = request(&map(hub));
    assert_valid(&Value::Object(out.clone()));
    out
}

pub(crate) fn assert_valid(request: &Value) {
    let errors = spec_errors(request);
    assert!(errors.is_empty(), "{errors:#?}\nin {request:#}");
}

#[test]
fn the_spec_check_rejects_what_gemini_would() {
    let errors = spec_errors(&json!({
        "systemInstructions": {"parts": [{"text": "x"}]},
        "contents": [{"role": "assistant", "parts": [{"text": 1, "functionCall": {"name": "f", "arguments": "{}"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "REQUIRED"}},
        "generationConfig": {"stopSequences": "END", "seed": 1u64 << 40},
    }));
    for expected in [
        "request.systemInstructions: not a property of GenerateContentRequest",
        "request.contents[0].role: \"assistant\" is neither",
        "request.contents[0].parts[0].text: 1 is not of type string",
        "request.contents[0].parts[0].functionCall.arguments: not a property of FunctionCall",
        "request.toolConfig.functionCallingConfig.mode: \"REQUIRED\" is not one of",
        "request.generationConfig.stopSequences: \"END\" is not of type array",
        "request.generationConfig.seed: 1099511627776 is not of type integer",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected} not in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 7, "{errors:#?}");
}

// --- Requests ----------------------------------------------------------------------------------

#[test]
fn system_and_developer_messages_become_the_system_instruction() {
    let out = valid_request(json!({"model": "chat", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Hi"},
    ]}));
    assert_eq!(
        out["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]})
    );
    assert_eq!(
        out["contents"],
        json!([{"role": "user", "parts": [{"text": "Hi"}]}])
    );
    assert!(
        !out.contains_key("generationConfig"),
        "nothing to configure"
    );
    assert!(!out.contains_key("model"), "the model goes in the URL");
}

#[test]
fn consecutive_turns_of_one_role_merge() {
    let out = valid_request(json!({"model": "chat", "messages": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": ""}]},
        {"role": "assistant", "content": "three"},
        {"role": "assistant", "content": [{"type": "text", "text": "four"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "five"},
    ]}));
    assert_eq!(
        out["contents"],
        json!([
            {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
            {"role": "model", "parts": [{"text": "three"}, {"text": "four"}]},
            {"role": "user", "parts": [{"text": "five"}]},
        ]),
        "empty text parts are dropped: Gemini rejects them"
    );
}

#[test]
fn images_are_inline_data_or_file_links() {
    let out = valid_request(
        json!({"model": "chat", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What are these?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.WEBP?size=large#top", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "mp3"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "file", "file": {"file_id": "file-abc"}},
        ]}]}),
    );
    assert_eq!(
        out["contents"][0]["parts"],
        json!([
            {"text": "What are these?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"fileUri": "https://example.com/cat.WEBP?size=large#top", "mimeType": "image/webp"}},
            {"fileData": {"fileUri": "https://example.com/photo", "mimeType": "image/jpeg"}},
            {"inlineData": {"mimeType": "audio/mp3", "data": "UklGR"}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        ])
    );
}

fn with_tool_choice(choice: Option<Value>) -> Map<String, Value> {
    let mut hub = json!({"model": "chat", "messages": [{"role": "user", "content": "Weather?"}],
    "parallel_tool_calls": false,
    "tools": [
        {"type": "function", "function": {"name": "weather", "description": "Current weather",
            "strict": true,
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "time"}},
    ]});
    if let Some(choice) = choice {
        hub["tool_choice"] = choice;
    }
    valid_request(hub)
}

#[test]
fn tools_become_function_declarations_with_raw_json_schema() {
    let out = with_tool_choice(None);
    assert_eq!(
        out["tools"],
        json!([{"functionDeclarations": [
            {"name": "weather", "description": "Current weather",
             "parametersJsonSchema": {"type": "object", "properties": {"location": {"type": "string"}},
                                      "required": ["location"], "additionalProperties": false}},
            {"name": "time"},
        ]}])
    );
    assert!(!out.contains_key("toolConfig"), "Gemini's default is AUTO");
    let without_tools = valid_request(
        json!({"model": "chat", "tools": [], "tool_choice": "required",
        "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert!(!without_tools.contains_key("tools") && !without_tools.contains_key("toolConfig"));
}

#[test]
fn tool_choice_becomes_the_function_calling_mode() {
    let mode = |choice: Value| {
        with_tool_choice(Some(choice))["toolConfig"]["functionCallingConfig"].clone()
    };
    assert_eq!(mode(json!("auto")), json!({"mode": "AUTO"}));
    assert_eq!(mode(json!("required")), json!({"mode": "ANY"}));
    assert_eq!(mode(json!("none")), json!({"mode": "NONE"}));
    assert_eq!(
        mode(json!({"type": "function", "function": {"name": "weather"}})),
        json!({"mode": "ANY", "allowedFunctionNames": ["weather"]})
    );
    let allowed = |mode: &str| {
        json!({"type": "allowed_tools", "allowed_tools": {"mode": mode,
               "tools": [{"type": "function", "function": {"name": "time"}}]}})
    };
    assert_eq!(
        mode(allowed("required")),
        json!({"mode": "ANY", "allowedFunctionNames": ["time"]})
    );
    assert_eq!(mode(allowed("auto")), json!({"mode": "AUTO"}));
}

#[test]
fn a_tool_round_trip_names_each_result_after_its_call() {
    let out = valid_request(json!({"model": "chat", "messages": [
        {"role": "user", "content": "Weather in Paris and Rome, then the time?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Paris\"}"},
             "extra_content": {"google": {"thought_signature": "c2lnMQ=="}}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"celsius\": 18}"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
        {"role": "user", "content": "Thanks"},
    ]}));
    assert_eq!(
        out["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris and Rome, then the time?"}]},
            {"role": "model", "parts": [
                {"text": "Checking."},
                {"functionCall": {"id": "call_1", "name": "weather", "args": {"location": "Paris"}},
                 "thoughtSignature": "c2lnMQ=="},
                {"functionCall": {"id": "call_2", "name": "weather", "args": {"location": "Rome"}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "call_1", "name": "weather", "response": {"celsius": 18}}},
                {"functionResponse": {"id": "call_2", "name": "weather", "response": {"content": "24C"}}},
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"id": "call_1", "name": "time", "args": {}},
                 "thoughtSignature": SKIP_SIGNATURE},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "call_1", "name": "time", "response": {"content": "noon"}}},
                {"text": "Thanks"},
            ]},
        ]),
        "a reused id answers the latest call; an unsigned turn gets the placeholder"
    );
}

#[test]
fn json_mode_and_schemas_set_the_response_format() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}},
                        "required": ["answer"], "additionalProperties": false});
    let out = valid_request(
        json!({"model": "chat", "messages": [{"role": "user", "content": "2+2?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "sum", "strict": true, "schema": schema}}}),
    );
    assert_eq!(
        out["generationConfig"],
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema})
    );
    let out = valid_request(
        json!({"model": "chat", "messages": [{"role": "user", "content": "2+2?"}],
        "response_format": {"type": "json_object"}}),
    );
    assert_eq!(
        out["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    let out = valid_request(
        json!({"model": "chat", "messages": [{"role": "user", "content": "2+2?"}],
        "response_format": {"type": "text"}}),
    );
    assert!(!out.contains_key("generationConfig"));
}

#[test]
fn sampling_parameters_become_the_generation_config() {
    let out = valid_request(
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1.5, "top_p": 0.9, "max_completion_tokens": 300, "max_tokens": 100,
        "stop": ["END", "STOP"], "n": 2, "seed": 42, "presence_penalty": 0.5, "frequency_penalty": 0,
        "logprobs": true, "top_logprobs": 3, "logit_bias": {"50256": -100}, "user": "u1",
        "stream": true, "stream_options": {"include_usage": true}, "reasoning_effort": "low"}),
    );
    assert_eq!(
        Value::Object(out.clone()),
        json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"temperature": 1.5, "topP": 0.9, "maxOutputTokens": 300,
                "stopSequences": ["END", "STOP"], "candidateCount": 2, "seed": 42, "presencePenalty": 0.5},
        }),
        "max_completion_tokens wins; a zero penalty and the dropped fields are absent"
    );
    let out = valid_request(
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100, "stop": "END", "seed": (1u64 << 32) + 7}),
    );
    assert_eq!(
        out["generationConfig"],
        json!({"maxOutputTokens": 100, "stopSequences": ["END"], "seed": 7}),
        "a seed beyond int32 keeps its low bits"
    );
}

// --- Responses ---------------------------------------------------------------------------------

#[test]
fn text_answers_skip_thoughts_and_count_them_as_output() {
    let resp = json!({
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
            {"text": "Let me think.", "thought": true},
            {"text": "Hel"}, {"text": "lo", "thoughtSignature": "c2ln"},
        ]}}],
        "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60,
                          "candidatesTokenCount": 5, "thoughtsTokenCount": 20, "totalTokenCount": 125},
        "modelVersion": "gemini-2.5-flash", "responseId": "resp1",
    });
    let (completion, usage) = response(&resp, "gemini-2.5-flash", 7).unwrap();
    assert_eq!(
        completion,
        json!({
            "id": "chatcmpl-resp1", "object": "chat.completion", "created": 7, "model": "gemini-2.5-flash",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hello", "refusal": null}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 25, "total_tokens": 125,
                      "prompt_tokens_details": {"cached_tokens": 60},
                      "completion_tokens_details": {"reasoning_tokens": 20}},
        })
    );
    assert_eq!(
        usage,
        Usage {
            input: 100,
            cached_input: 60,
            output: 25
        }
    );
}

#[test]
fn function_calls_become_tool_calls() {
    let resp = json!({
        "candidates": [{"finishReason": "STOP", "content": {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2lnMQ=="},
            {"functionCall": {"name": "time"}},
            {"functionCall": {"id": "fc-9", "name": "weather", "args": {"location": "Rome"}}},
        ]}}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 8},
        "responseId": "r/2",
    });
    let (completion, _) = response(&resp, "gemini", 0).unwrap();
    let choice = &completion["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "call_r2_0", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Paris\"}"},
             "extra_content": {"google": {"thought_signature": "c2lnMQ=="}}},
            {"id": "call_r2_1", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            {"id": "fc-9", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Rome\"}"}},
        ])
    );
    assert_eq!(completion["usage"]["completion_tokens"], 8);

    // What the client sends back is what Gemini needs: the same names and signatures.
    let message = choice["message"].clone();
    let round_trip = valid_request(json!({"model": "chat", "messages": [
        {"role": "user", "content": "Weather?"}, message,
        {"role": "tool", "tool_call_id": "call_r2_1", "content": "noon"},
    ]}));
    assert_eq!(
        round_trip["contents"][1]["parts"][0],
        json!({"functionCall": {"id": "call_r2_0", "name": "weather", "args": {"location": "Paris"}},
               "thoughtSignature": "c2lnMQ=="})
    );
    assert_eq!(
        round_trip["contents"][2]["parts"][0]["functionResponse"]["name"],
        "time"
    );
    let unnamed = json!({"candidates": [{"finishReason": "STOP", "content": {"parts": [{"functionCall": {"name": "f"}}]}}]});
    assert_eq!(
        response(&unnamed, "gemini", 0).unwrap().0["choices"][0]["message"]["tool_calls"][0]["id"],
        "call_0",
        "no response id: ids are numbered only"
    );
}

#[test]
fn finish_reasons_map_to_openai_ones() {
    let finish = |reason: &str, parts: Value| {
        let resp = json!({"candidates": [{"finishReason": reason, "content": {"role": "model", "parts": parts}}]});
        let (completion, _) = response(&resp, "gemini", 0).unwrap();
        completion["choices"][0].clone()
    };
    let length = finish("MAX_TOKENS", json!([{"text": "Once upon"}]));
    assert_eq!(length["finish_reason"], "length");
    assert_eq!(length["message"]["content"], "Once upon");
    for reason in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
    ] {
        let filtered = finish(reason, json!([]));
        assert_eq!(filtered["finish_reason"], "content_filter", "{reason}");
        assert_eq!(filtered["message"]["content"], Value::Null);
    }
    for reason in [
        "OTHER",
        "MALFORMED_FUNCTION_CALL",
        "LANGUAGE",
        "FINISH_REASON_UNSPECIFIED",
    ] {
        assert_eq!(
            finish(reason, json!([{"text": "x"}]))["finish_reason"],
            "stop",
            "{reason}"
        );
    }
    let max_tokens_in_thought =
        json!({"candidates": [{"finishReason": "MAX_TOKENS", "content": {"role": "model"}}]});
    assert_eq!(
        response(&max_tokens_in_thought, "g", 0).unwrap().0["choices"][0]["message"]["content"],
        "",
        "all the budget went to thinking: an empty answer, not a missing one"
    );
}

#[test]
fn candidates_become_choices() {
    let resp = json!({"candidates": [
        {"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "A"}]}},
        {"index": 1, "finishReason": "MAX_TOKENS", "content": {"role": "model", "parts": [{"text": "B"}]}},
    ]});
    let (completion, _) = response(&resp, "gemini", 0).unwrap();
    let choices = completion["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(choices[1]["message"]["content"], "B");
    assert_eq!(choices[1]["finish_reason"], "length");
}

#[test]
fn a_blocked_prompt_is_one_filtered_choice() {
    let resp = json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                      "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}});
    let (completion, usage) = response(&resp, "gemini", 0).unwrap();
    assert_eq!(
        completion["choices"],
        json!([{"index": 0, "logprobs": null, "finish_reason": "content_filter",
                "message": {"role": "assistant", "content": null, "refusal": null}}])
    );
    assert_eq!(usage.input, 12);
}

#[test]
fn other_bodies_are_not_responses() {
    for body in [
        json!({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}),
        json!({"candidates": []}),
        json!({"choices": []}),
        json!([1, 2]),
        json!("text"),
    ] {
        assert!(response(&body, "gemini", 0).is_none(), "{body}");
    }
}

// --- Streams -----------------------------------------------------------------------------------

#[test]
fn stream_responses_become_chunks() {
    let mut d = StreamDecoder::new(3);
    let first = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.0-flash", "responseId": "abc"}),
    );
    assert_eq!(
        first,
        vec![
            json!({"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 3, "model": "gemini-2.0-flash",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "logprobs": null, "finish_reason": null}]})
        ]
    );
    assert!(!d.complete());
    let nothing = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "c2ln"}]}}]}),
    );
    assert!(nothing.is_empty(), "{nothing:?}");
    let last = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 12}}),
    );
    assert_eq!(last.len(), 2);
    assert_eq!(last[0]["choices"][0]["delta"], json!({"content": "lo"}));
    assert_eq!(last[1]["choices"][0]["delta"], json!({}));
    assert_eq!(last[1]["choices"][0]["finish_reason"], "stop");
    assert!(d.complete());
    let (chunk, usage) = d.usage_chunk().unwrap();
    assert_eq!(chunk["choices"], json!([]));
    assert_eq!(
        chunk["usage"]["completion_tokens_details"]["reasoning_tokens"],
        3
    );
    assert_eq!(
        usage,
        Usage {
            input: 7,
            cached_input: 0,
            output: 5
        }
    );
}

#[test]
fn streamed_function_calls_arrive_whole() {
    let mut d = StreamDecoder::new(0);
    let calls = ok(
        &mut d,
        &json!({"responseId": "r1", "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "weather", "args": {"location": "Rome"}}},
        ]}}]}),
    );
    assert_eq!(
        calls[0]["choices"][0]["delta"],
        json!({"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_r1_0", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Paris\"}"},
             "extra_content": {"google": {"thought_signature": "c2ln"}}},
            {"index": 1, "id": "call_r1_1", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Rome\"}"}},
        ]})
    );
    let more = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "time"}}]}, "finishReason": "STOP"}]}),
    );
    assert_eq!(more[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 2);
    assert_eq!(more[1]["choices"][0]["finish_reason"], "tool_calls");
    assert!(d.usage_chunk().is_none(), "Gemini reported no usage");
}

/// The chunks of one event that Gemini did not filter.
fn ok(d: &mut StreamDecoder, event: &Value) -> Vec<Value> {
    d.event(event).expect("not filtered")
}

#[test]
fn a_stream_with_a_blocked_prompt_fails_as_filtered() {
    let mut d = StreamDecoder::new(0);
    let reason = d
        .event(
            &json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                       "usageMetadata": {"promptTokenCount": 4}}),
        )
        .expect_err("filtered before any content");
    assert_eq!(reason, "Gemini blocked the prompt: PROHIBITED_CONTENT");
}

#[test]
fn a_stream_stopped_by_safety_before_content_fails_even_after_empty_events() {
    let mut d = StreamDecoder::new(0);
    // An event with nothing a client reads (a thought signature) neither commits nor counts.
    let nothing = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "c2ln"}]}}]}),
    );
    assert!(nothing.is_empty(), "{nothing:?}");
    for reason in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
    ] {
        let mut fresh = StreamDecoder::new(0);
        let failure = fresh
            .event(&json!({"candidates": [{"content": {"role": "model"}, "finishReason": reason, "index": 0}]}))
            .expect_err(reason);
        assert_eq!(
            failure,
            format!("Gemini stopped the answer before any content: {reason}")
        );
    }
    let failure = d
        .event(&json!({"candidates": [{"finishReason": "SAFETY", "safetyRatings": []}]}))
        .expect_err("filtered");
    assert!(failure.contains("SAFETY"), "{failure}");
    // A plain stop with no content is an (empty) answer, not a failure.
    let mut empty = StreamDecoder::new(0);
    let stop = ok(
        &mut empty,
        &json!({"candidates": [{"finishReason": "STOP"}]}),
    );
    assert_eq!(stop[0]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn a_stream_filtered_after_content_keeps_it_and_ends_content_filter() {
    let mut d = StreamDecoder::new(0);
    let first = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "index": 0}]}),
    );
    assert_eq!(first[0]["choices"][0]["delta"]["content"], "Hello");
    let last = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0}]}),
    );
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(last[0]["choices"][0]["delta"], json!({}));
    assert!(d.complete());
    // Text and the filter in one event: the text is content, so the stop is the answer's end.
    let mut d = StreamDecoder::new(0);
    let both = ok(
        &mut d,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "RECITATION"}]}),
    );
    assert_eq!(both[0]["choices"][0]["delta"]["content"], "Hi");
    assert_eq!(both[1]["choices"][0]["finish_reason"], "content_filter");
}

#[test]
fn whole_answers_filtered_before_content_are_failures_and_after_content_are_not() {
    assert_eq!(
        filtered(&json!({"promptFeedback": {"blockReason": "SAFETY"}})).as_deref(),
        Some("Gemini blocked the prompt: SAFETY")
    );
    assert_eq!(
        filtered(
            &json!({"candidates": [{"content": {"role": "model"}, "finishReason": "SAFETY"}]})
        )
        .as_deref(),
        Some("Gemini stopped the answer before any content: SAFETY")
    );
    let partial = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]},
                                         "finishReason": "SAFETY"}]});
    assert_eq!(filtered(&partial), None);
    let (completion, _) = response(&partial, "gemini", 0).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello");
    assert_eq!(completion["choices"][0]["finish_reason"], "content_filter");
    let call = json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                                      "finishReason": "SAFETY"}]});
    assert_eq!(filtered(&call), None, "a function call is content");
    assert_eq!(
        filtered(&json!({"candidates": [{"finishReason": "STOP"}]})),
        None
    );
    assert_eq!(
        filtered(&json!({"candidates": [{"finishReason": "MAX_TOKENS"}]})),
        None
    );
}

#[test]
fn wrong_typed_fields_are_ignored_rather_than_rejected() {
    let clean = map(json!({"messages": [{"role": "user", "content": "Hi"}]}));
    let noisy = map(json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "n": -1, "seed": 1.5, "presence_penalty": 0, "frequency_penalty": "1", "tool_choice": 5,
        "tools": [], "stop": [1, 2], "response_format": {"type": 1},
    }));
    assert_eq!(request(&noisy), request(&clean));

    // Both with a `responseId`: without one, each answer gets an id of its own.
    let clean = json!({"responseId": "r", "candidates": [{}]});
    let noisy = json!({"responseId": "r", "candidates": [{"index": "0", "finishReason": 1,
        "content": {"parts": [{"text": 5}, {"functionCall": "x"}, 3]}}]});
    assert_eq!(response(&noisy, "m", 0), response(&clean, "m", 0));
}

#[test]
fn answers_without_a_response_id_get_distinct_ids() {
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]},
        "finishReason": "STOP", "index": 0}]});
    let id =
        |resp: &Value| response(resp, "gemini-2.5-flash", 0).expect("an answer").0["id"].clone();
    let (a, b) = (id(&answer), id(&answer));
    assert_ne!(a, b);
    assert!(a.as_str().unwrap().starts_with("chatcmpl-gemini-"), "{a}");
    let mut named = answer.clone();
    named["responseId"] = json!("r1");
    assert_eq!(id(&named), "chatcmpl-r1");
}
