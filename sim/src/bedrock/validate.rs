//! The Converse request checks Bedrock makes before a model sees the request: known fields
//! only, a conversation that starts with the user and alternates, non-blank text, one member per
//! content block, image formats and bytes, tool uses answered by tool results, and a `toolConfig`
//! whenever tool blocks appear. Messages are Bedrock's where the text is known.

use base64::Engine;
use serde_json::{Map, Value};

const TOP_LEVEL: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
    "projectIdentifier",
];
const INFERENCE: &[&str] = &["maxTokens", "temperature", "topP", "stopSequences"];
const BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardContent",
    "reasoningContent",
    "cachePoint",
];

type Checked = Result<(), String>;

/// Checks a Converse body; the error is the `ValidationException` message.
pub fn check(body: &Value) -> Checked {
    let body = body
        .as_object()
        .ok_or("Malformed input request, please reformat your input and try again.")?;
    known(body, TOP_LEVEL, "")?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("The model returned the following errors: messages: field required")?;
    if let Some(system) = body.get("system") {
        for (i, block) in system
            .as_array()
            .ok_or("system must be a list")?
            .iter()
            .enumerate()
        {
            let text = block.get("text").and_then(Value::as_str);
            if text.is_some_and(|t| t.trim().is_empty()) {
                return Err(format!(
                    "The text field in the SystemContentBlock object at system.{i} is blank. Add text to the text field, and try again."
                ));
            }
            if text.is_none()
                && block.get("cachePoint").is_none()
                && block.get("guardContent").is_none()
            {
                return Err(format!(
                    "system.{i}: a SystemContentBlock must set exactly one member"
                ));
            }
        }
    }
    let mut has_tool_blocks = false;
    let mut open_tool_uses: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if !matches!(role, "user" | "assistant") {
            return Err(format!("messages.{i}.role: must be one of user, assistant"));
        }
        if role != expected {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        if let Some(object) = message.as_object() {
            known(object, &["role", "content"], &format!("messages.{i}."))?;
        }
        let content = message
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("messages.{i}.content: must have at least one content block"))?;
        let mut answered = Vec::new();
        let mut uses = Vec::new();
        for (j, block) in content.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            let object = block
                .as_object()
                .ok_or_else(|| format!("{at}: must be an object"))?;
            known(object, BLOCKS, &format!("{at}."))?;
            if object.len() != 1 {
                return Err(format!("{at}: a ContentBlock must set exactly one member"));
            }
            let (kind, value) = object.iter().next().expect("one member");
            match kind.as_str() {
                "text" => {
                    let text = value
                        .as_str()
                        .ok_or_else(|| format!("{at}.text: must be a string"))?;
                    if text.trim().is_empty() {
                        return Err(format!(
                            "The text field in the ContentBlock object at {at} is blank. Add text to the text field, and try again."
                        ));
                    }
                }
                "image" => image(value, &at)?,
                "toolUse" => {
                    has_tool_blocks = true;
                    if role != "assistant" {
                        return Err(format!(
                            "{at}: toolUse blocks are only allowed in assistant messages"
                        ));
                    }
                    let id = value
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let name = value
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if id.is_empty()
                        || name.is_empty()
                        || !value.get("input").is_some_and(Value::is_object)
                    {
                        return Err(format!(
                            "{at}.toolUse: toolUseId, name and an object input are required"
                        ));
                    }
                    uses.push(id.to_owned());
                }
                "toolResult" => {
                    has_tool_blocks = true;
                    let id = value
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !open_tool_uses.iter().any(|u| u == id) {
                        return Err(format!(
                            "The toolResult blocks at {at} contain a toolUseId {id:?} that does not match a toolUse block in the previous turn."
                        ));
                    }
                    let parts = value.get("content").and_then(Value::as_array);
                    if parts.is_none_or(|p| p.is_empty()) {
                        return Err(format!(
                            "{at}.toolResult.content: must have at least one block"
                        ));
                    }
                    answered.push(id.to_owned());
                }
                _ => {}
            }
        }
        if role == "user"
            && let Some(missing) = open_tool_uses.iter().find(|u| !answered.contains(u))
        {
            return Err(format!(
                "Expected toolResult blocks at messages.{i}.content for the following Ids: {missing}"
            ));
        }
        open_tool_uses = uses;
    }
    if let Some(config) = body.get("inferenceConfig") {
        inference(config)?;
    }
    match body.get("toolConfig") {
        Some(config) => tools(config)?,
        None if has_tool_blocks => {
            return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
        }
        None => {}
    }
    Ok(())
}

fn known(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Checked {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "Malformed input request: extraneous key [{at}{key}] is not permitted, please reformat your input and try again."
        )),
        None => Ok(()),
    }
}

fn image(value: &Value, at: &str) -> Checked {
    let format = value
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(format, "png" | "jpeg" | "gif" | "webp") {
        return Err(format!(
            "{at}.image.format: must be one of png, jpeg, gif, webp"
        ));
    }
    let bytes = value.pointer("/source/bytes").and_then(Value::as_str);
    let decoded = bytes.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    if decoded.is_none_or(|d| d.is_empty()) {
        return Err(format!("{at}.image.source.bytes: must be non-empty base64"));
    }
    Ok(())
}

fn inference(config: &Value) -> Checked {
    let object = config
        .as_object()
        .ok_or("inferenceConfig must be an object")?;
    known(object, INFERENCE, "inferenceConfig.")?;
    if let Some(max) = object.get("maxTokens")
        && max.as_u64().is_none_or(|m| m < 1)
    {
        return Err("inferenceConfig.maxTokens: must be an integer of at least 1".into());
    }
    for key in ["temperature", "topP"] {
        if let Some(value) = object.get(key)
            && value.as_f64().is_none_or(|v| !(0.0..=1.0).contains(&v))
        {
            return Err(format!(
                "The model returned the following errors: {key}: must be between 0 and 1"
            ));
        }
    }
    if let Some(stops) = object.get("stopSequences") {
        let stops = stops
            .as_array()
            .ok_or("inferenceConfig.stopSequences: must be a list")?;
        if stops.iter().any(|s| s.as_str().is_none_or(str::is_empty)) {
            return Err("inferenceConfig.stopSequences: members must be non-empty strings".into());
        }
    }
    Ok(())
}

fn tools(config: &Value) -> Checked {
    let object = config.as_object().ok_or("toolConfig must be an object")?;
    known(object, &["tools", "toolChoice"], "toolConfig.")?;
    let tools = object
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or("toolConfig.tools: must have at least one tool")?;
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let spec = tool
            .get("toolSpec")
            .ok_or_else(|| format!("toolConfig.tools.{i}: toolSpec required"))?;
        let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "toolConfig.tools.{i}.toolSpec.name: must match [a-zA-Z0-9_-]{{1,64}}"
            ));
        }
        if !spec
            .pointer("/inputSchema/json")
            .is_some_and(Value::is_object)
        {
            return Err(format!(
                "toolConfig.tools.{i}.toolSpec.inputSchema.json: must be a JSON object"
            ));
        }
        names.push(name);
    }
    if let Some(choice) = object.get("toolChoice") {
        let choice = choice
            .as_object()
            .filter(|c| c.len() == 1)
            .ok_or("toolConfig.toolChoice: must set exactly one member")?;
        let (kind, value) = choice.iter().next().expect("one member");
        match kind.as_str() {
            "auto" | "any" => {}
            "tool" => {
                let name = value
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !names.contains(&name) {
                    return Err(format!(
                        "toolConfig.toolChoice.tool.name: {name:?} is not one of the tools"
                    ));
                }
            }
            other => return Err(format!("toolConfig.toolChoice: unknown member {other}")),
        }
    }
    Ok(())
}
