//! The checks Google applies to a `GenerateContentRequest` before generating, each failure worded
//! as Google words its 400 `INVALID_ARGUMENT`. Google's JSON parser knows every field in
//! camelCase and in its proto snake_case, and rejects any other name, so a translation that
//! leaves an OpenAI or Anthropic field behind (`max_tokens`, `messages`, a part's `type`) fails
//! here as it would against Google.

use serde_json::{Map, Value};

const REQUEST: [&str; 10] = [
    "cachedContent",
    "contents",
    "generationConfig",
    "model",
    "safetySettings",
    "serviceTier",
    "store",
    "systemInstruction",
    "toolConfig",
    "tools",
];
const GENERATION_CONFIG: [&str; 24] = [
    "audioTranscriptionConfig",
    "candidateCount",
    "enableAffectiveDialog",
    "enableEnhancedCivicAnswers",
    "frequencyPenalty",
    "imageConfig",
    "logprobs",
    "maxOutputTokens",
    "mediaResolution",
    "presencePenalty",
    "responseFormat",
    "responseJsonSchema",
    "responseLogprobs",
    "responseMimeType",
    "responseModalities",
    "responseSchema",
    "seed",
    "speechConfig",
    "stopSequences",
    "temperature",
    "thinkingConfig",
    "topK",
    "topP",
    "translationConfig",
];
const CONTENT: [&str; 2] = ["role", "parts"];
const PART: [&str; 15] = [
    "codeExecutionResult",
    "executableCode",
    "fileData",
    "functionCall",
    "functionResponse",
    "inlineData",
    "mediaProcessing",
    "mediaResolution",
    "partMetadata",
    "text",
    "thought",
    "thoughtSignature",
    "toolCall",
    "toolResponse",
    "videoMetadata",
];
const TYPES: &str = "type.googleapis.com/google.ai.generativelanguage.v1beta";
const NOT_JSON: &str = "Invalid JSON payload received. Unexpected token.";
const NO_CONTENTS: &str = "* GenerateContentRequest.contents: contents is not specified\n";
const ROLE: &str = "Please use a valid role: user, model.";

const EMBED_REQUEST: [&str; 6] = [
    "model",
    "content",
    "embedContentConfig",
    "taskType",
    "title",
    "outputDimensionality",
];

/// Most requests Google takes in one `batchEmbedContents` call.
const MAX_BATCH: usize = 100;

/// Why Google would reject a `BatchEmbedContentsRequest` to `models/{model}`, if it would: each
/// request must name the URL's model, carry text parts, and use only known fields; at most
/// [`MAX_BATCH`] of them.
pub(super) fn check_batch(body: &Value, model: &str) -> Result<(), String> {
    let body = body.as_object().ok_or(NOT_JSON)?;
    known_fields(body, &["requests"], None)?;
    let requests = match lookup(body, "requests") {
        Some(Value::Array(r)) if !r.is_empty() => r,
        _ => {
            return Err("* BatchEmbedContentsRequest.requests: requests is not specified\n".into());
        }
    };
    if requests.len() > MAX_BATCH {
        return Err(format!(
            "* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one batch\n"
        ));
    }
    for (i, request) in requests.iter().enumerate() {
        let at = format!("requests[{i}]");
        let request = object(request, &at, "EmbedContentRequest")?;
        known_fields(request, &EMBED_REQUEST, Some(&at))?;
        let named = lookup(request, "model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if named != format!("models/{model}") {
            return Err(format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: the model of every request must be the batch's: models/{model}, not {named:?}\n"
            ));
        }
        let content = lookup(request, "content").ok_or_else(|| {
            format!("* BatchEmbedContentsRequest.requests[{i}].content: content is not specified\n")
        })?;
        let content = object(content, &format!("{at}.content"), "Content")?;
        known_fields(content, &CONTENT, Some(&format!("{at}.content")))?;
        let parts = match lookup(content, "parts") {
            Some(Value::Array(p)) if !p.is_empty() => p,
            _ => {
                return Err(format!(
                    "* BatchEmbedContentsRequest.requests[{i}].content.parts: contents.parts must not be empty.\n"
                ));
            }
        };
        if !parts.iter().all(|p| {
            p.as_object()
                .is_some_and(|p| p.len() == 1 && p.get("text").is_some_and(Value::is_string))
        }) {
            return Err(format!(
                "* BatchEmbedContentsRequest.requests[{i}].content.parts: only text parts can be embedded\n"
            ));
        }
        if lookup(request, "outputDimensionality")
            .is_some_and(|d| d.as_u64().is_none_or(|d| d == 0))
        {
            return Err(format!(
                "* BatchEmbedContentsRequest.requests[{i}].output_dimensionality: must be positive\n"
            ));
        }
    }
    Ok(())
}

/// Why Google would reject the request, if it would.
pub(super) fn check(body: &Value) -> Result<(), String> {
    let body = body.as_object().ok_or(NOT_JSON)?;
    known_fields(body, &REQUEST, None)?;
    if let Some(config) = lookup(body, "generationConfig") {
        let config = object(config, "generation_config", "GenerationConfig")?;
        known_fields(config, &GENERATION_CONFIG, Some("generation_config"))?;
    }
    if let Some(system) = lookup(body, "systemInstruction") {
        let system = object(system, "system_instruction", "Content")?;
        known_fields(system, &CONTENT, Some("system_instruction"))?;
    }
    let contents = match lookup(body, "contents") {
        Some(Value::Array(contents)) if !contents.is_empty() => contents,
        None | Some(Value::Array(_)) => return Err(NO_CONTENTS.to_owned()),
        Some(other) => return Err(invalid_value("contents", "Content", other)),
    };
    for (i, content) in contents.iter().enumerate() {
        let at = format!("contents[{i}]");
        let content = object(content, &at, "Content")?;
        known_fields(content, &CONTENT, Some(&at))?;
        match content.get("role") {
            None => {}
            Some(role) if role == "user" || role == "model" => {}
            Some(_) => return Err(ROLE.to_owned()),
        }
        let parts = match lookup(content, "parts") {
            Some(Value::Array(parts)) if !parts.is_empty() => parts,
            _ => {
                return Err(format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be \
                     empty.\n"
                ));
            }
        };
        for (j, part) in parts.iter().enumerate() {
            let at = format!("{at}.parts[{j}]");
            known_fields(object(part, &at, "Part")?, &PART, Some(&at))?;
        }
    }
    Ok(())
}

/// A field by its camelCase name or its snake_case one, `Null` when absent.
pub(super) fn field<'a>(object: &'a Value, camel: &str) -> &'a Value {
    object
        .as_object()
        .and_then(|object| lookup(object, camel))
        .unwrap_or(&Value::Null)
}

fn lookup<'a>(object: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    object.get(camel).or_else(|| object.get(&snake_case(camel)))
}

fn known_fields(
    object: &Map<String, Value>,
    known: &[&str],
    at: Option<&str>,
) -> Result<(), String> {
    let Some(unknown) = object
        .keys()
        .find(|name| !known.contains(&camel_case(name).as_str()))
    else {
        return Ok(());
    };
    let at = at.map_or_else(String::new, |at| format!(" at '{at}'"));
    Err(format!(
        "Invalid JSON payload received. Unknown name \"{unknown}\"{at}: Cannot find field."
    ))
}

fn object<'a>(value: &'a Value, at: &str, kind: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| invalid_value(at, kind, value))
}

fn invalid_value(at: &str, kind: &str, value: &Value) -> String {
    format!("Invalid value at '{at}' ({TYPES}.{kind}), {value}")
}

fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for ch in name.chars() {
        match ch {
            '_' => upper = true,
            ch if upper => {
                out.extend(ch.to_uppercase());
                upper = false;
            }
            ch => out.push(ch),
        }
    }
    out
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for ch in name.chars() {
        if ch.is_uppercase() {
            out.push('_');
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
