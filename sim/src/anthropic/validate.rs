//! The checks Anthropic applies to a Messages request before generating, each failure worded as
//! Anthropic words its 400 `invalid_request_error`. They cover what a translation from another
//! format can get wrong: missing required fields or headers, fields Anthropic does not know,
//! system prompts or roles in the wrong place, empty content, OpenAI-shaped tools, and
//! `tool_use` blocks without their `tool_result` (or the reverse).

use serde_json::{Map, Value};

use super::Recorded;

/// Top-level request fields Anthropic accepts (`BetaCreateMessageParams`, a superset of the
/// stable ones): anything else is "Extra inputs are not permitted".
const FIELDS: [&str; 23] = [
    "cache_control",
    "container",
    "context_management",
    "inference_geo",
    "max_tokens",
    "mcp_servers",
    "messages",
    "metadata",
    "model",
    "output_config",
    "output_format",
    "service_tier",
    "speed",
    "stop_sequences",
    "stream",
    "system",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
    "user_profile_id",
];
const NOT_JSON: &str = "There was an error parsing the body of your request: it is not a JSON \
                        object.";
const SYSTEM_ROLE: &str = "messages: Unexpected role \"system\". The Messages API accepts a \
                           top-level `system` parameter, not \"system\" as an input message role.";
const FIRST_USER: &str = "messages: first message must use the \"user\" role";

/// Why Anthropic would reject the request, if it would.
pub(super) fn check(request: &Recorded) -> Result<(), String> {
    let Some(body) = request.body.as_object() else {
        return Err(NOT_JSON.to_owned());
    };
    if request.header("anthropic-version").is_none() {
        return Err("anthropic-version: header is required".to_owned());
    }
    if let Some(field) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("{field}: Extra inputs are not permitted"));
    }
    if let Some(field) = ["model", "messages", "max_tokens"]
        .into_iter()
        .find(|field| !body.contains_key(*field))
    {
        return Err(format!("{field}: Field required"));
    }
    if !body["model"].is_string() {
        return Err("model: Input should be a valid string".to_owned());
    }
    if !body["max_tokens"].is_u64() {
        return Err("max_tokens: Input should be a valid integer".to_owned());
    }
    if body.get("stream").is_some_and(|s| !s.is_boolean()) {
        return Err("stream: Input should be a valid boolean".to_owned());
    }
    check_system(body)?;
    check_tools(body)?;
    check_messages(&body["messages"])
}

/// Whether `content` is an array holding a block of type `kind`.
pub(super) fn has_block(content: &Value, kind: &str) -> bool {
    blocks(content).any(|block| block["type"] == kind)
}

fn check_system(body: &Map<String, Value>) -> Result<(), String> {
    match body.get("system") {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => match blocks.iter().position(|b| b["type"] != "text") {
            Some(j) => Err(format!("system.{j}.type: Input should be 'text'")),
            None => Ok(()),
        },
        Some(_) => Err("system: Input should be a valid list".to_owned()),
    }
}

fn check_tools(body: &Map<String, Value>) -> Result<(), String> {
    let Some(tools) = body.get("tools") else {
        return Ok(());
    };
    let tools = tools
        .as_array()
        .ok_or("tools: Input should be a valid list")?;
    for (i, tool) in tools.iter().enumerate() {
        match tool["type"].as_str() {
            // A custom tool; server tools (`web_search_20250305` and so on) carry their own
            // fields.
            None | Some("custom") => {
                for (field, valid) in [
                    ("name", tool["name"].is_string()),
                    ("input_schema", tool["input_schema"].is_object()),
                ] {
                    if !valid {
                        return Err(format!("tools.{i}.custom.{field}: Field required"));
                    }
                }
                if tool.get("function").is_some() {
                    let extra = "Extra inputs are not permitted";
                    return Err(format!("tools.{i}.custom.function: {extra}"));
                }
            }
            Some("function") => {
                return Err(format!(
                    "tools.{i}: Input tag 'function' found using 'type' does not match any of \
                     the expected tags"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_messages(messages: &Value) -> Result<(), String> {
    let messages = messages
        .as_array()
        .ok_or("messages: Input should be a valid list")?;
    let Some(first) = messages.first() else {
        return Err("messages: at least one message is required".to_owned());
    };
    for (i, message) in messages.iter().enumerate() {
        match message["role"].as_str() {
            Some("user" | "assistant") => {}
            Some("system") => return Err(SYSTEM_ROLE.to_owned()),
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
        check_content(i, message, i + 1 == messages.len())?;
    }
    if first["role"] != "user" {
        return Err(FIRST_USER.to_owned());
    }
    check_tool_pairs(messages)
}

fn check_content(i: usize, message: &Value, last: bool) -> Result<(), String> {
    let empty = match &message["content"] {
        Value::String(text) => text.is_empty(),
        Value::Array(blocks) => {
            for (j, block) in blocks.iter().enumerate() {
                let Some(kind) = block["type"].as_str() else {
                    return Err(format!("messages.{i}.content.{j}.type: Field required"));
                };
                if kind == "text" && block["text"].as_str().is_none_or(str::is_empty) {
                    return Err("messages: text content blocks must be non-empty".to_owned());
                }
            }
            blocks.is_empty()
        }
        Value::Null => return Err(format!("messages.{i}.content: Field required")),
        _ => {
            return Err(format!(
                "messages.{i}.content: Input should be a valid list"
            ));
        }
    };
    // Only a final assistant message, a prefill, may be empty.
    if empty && !(last && message["role"] == "assistant") {
        return Err(format!(
            "messages.{i}: all messages must have non-empty content except for the optional \
             final assistant message"
        ));
    }
    Ok(())
}

/// Each `tool_use` needs a `tool_result` in the next message, and each `tool_result` a
/// `tool_use` in the previous one.
fn check_tool_pairs(messages: &[Value]) -> Result<(), String> {
    let ids = |message: Option<&Value>, kind: &str, key: &str| -> Vec<String> {
        let content = message.map_or(&Value::Null, |m| &m["content"]);
        let blocks = blocks(content).filter(|block| block["type"] == kind);
        let ids = blocks.filter_map(|block| block[key].as_str());
        ids.map(str::to_owned).collect()
    };
    for (i, message) in messages.iter().enumerate() {
        let previous = i.checked_sub(1).and_then(|p| messages.get(p));
        let next = messages.get(i + 1);
        let results = ids(Some(message), "tool_result", "tool_use_id");
        let uses_before = ids(previous, "tool_use", "id");
        if let Some(orphan) = results.iter().find(|id| !uses_before.contains(id)) {
            return Err(format!(
                "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: \
                 {orphan}. Each `tool_result` block must have a corresponding `tool_use` block \
                 in the previous message."
            ));
        }
        // A trailing assistant turn is a prefill with nothing after it yet.
        if next.is_some() {
            let answered = ids(next, "tool_result", "tool_use_id");
            let uses = ids(Some(message), "tool_use", "id");
            if let Some(open) = uses.iter().find(|id| !answered.contains(id)) {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks \
                     immediately after: {open}. Each `tool_use` block must have a \
                     corresponding `tool_result` block in the next message."
                ));
            }
        }
    }
    Ok(())
}

fn blocks(content: &Value) -> impl Iterator<Item = &Value> {
    content.as_array().into_iter().flatten()
}
