//! `POST /v1/embeddings`: the OpenAI request as the sidecar reads it ([`EmbeddingRequest`]), and
//! its translation to Gemini's `batchEmbedContents` and back (docs/reference/translation.md).
//!
//! OpenAI's format is the hub for embeddings, as Chat Completions is for chat: an `api: OpenAI`
//! target gets the client's body with only `model` replaced, a Gemini target one
//! `EmbedContentRequest` per input, in input order, and its answer comes back as OpenAI's
//! `list` of `embedding` objects. Gemini reports no token usage for embeddings, so the answer's
//! `usage` is the sidecar's own count of the input text (the o200k tokenizer chat uses for
//! estimates), which also prices the request.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// What an embeddings request embeds.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// One string or an array of strings.
    Texts(Vec<String>),
    /// Pre-tokenized input: one token array or an array of them. Only OpenAI-compatible
    /// providers take tokens.
    Tokens(Vec<Vec<u64>>),
}

impl Input {
    /// How many embeddings the answer holds.
    pub fn len(&self) -> usize {
        match self {
            Input::Texts(t) => t.len(),
            Input::Tokens(t) => t.len(),
        }
    }

    /// Input tokens, for routing: token arrays counted exactly, text at 4 bytes a token (the
    /// tokenizer is not worth running to rank targets or match `minPromptTokens`).
    pub fn estimated_tokens(&self) -> u32 {
        let n = match self {
            Input::Texts(t) => t.iter().map(|s| s.len().div_ceil(4)).sum::<usize>(),
            Input::Tokens(t) => t.iter().map(Vec::len).sum::<usize>(),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether there is nothing to embed (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An embeddings request that passed the shape check.
#[derive(Clone, Debug)]
pub struct EmbeddingRequest {
    /// The client's body, passed through to OpenAI-compatible providers.
    pub body: Map<String, Value>,
    pub model: String,
    pub input: Input,
    /// `dimensions`: how long each vector should be, when the model can shorten them.
    pub dimensions: Option<u64>,
    /// `encoding_format: base64`: vectors as base64 of little-endian `f32`s.
    pub base64: bool,
}

/// Parses and checks an OpenAI `CreateEmbeddingRequest`: what routing and translation need, with
/// a message naming the field when it is wrong. Everything else is the provider's to judge.
pub fn parse(bytes: &[u8]) -> Result<EmbeddingRequest, String> {
    let value: Value =
        super::parse_json(bytes).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let Value::Object(body) = value else {
        return Err("request body must be a JSON object".into());
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err("`model` must be a non-empty string".into()),
        None => return Err("`model` is required".into()),
    };
    let input = input(body.get("input").ok_or("`input` is required")?)?;
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(d) => Some(
            d.as_u64()
                .filter(|d| *d > 0)
                .ok_or("`dimensions` must be a positive integer")?,
        ),
    };
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => return Err("`encoding_format` must be \"float\" or \"base64\"".into()),
    };
    if body.get("user").is_some_and(|u| !u.is_string()) {
        return Err("`user` must be a string".into());
    }
    Ok(EmbeddingRequest {
        body,
        model,
        input,
        dimensions,
        base64,
    })
}

const INPUT_SHAPES: &str =
    "`input` must be a string, an array of strings, an array of tokens or an array of token arrays";

/// `input` in one of the four shapes OpenAI documents; never empty, no empty string or array.
fn input(value: &Value) -> Result<Input, String> {
    let items = match value {
        Value::String(s) if s.is_empty() => return Err("`input` must not be empty".into()),
        Value::String(s) => return Ok(Input::Texts(vec![s.clone()])),
        Value::Array(items) if items.is_empty() => {
            return Err("`input` must not be an empty array".into());
        }
        Value::Array(items) => items,
        _ => return Err(INPUT_SHAPES.into()),
    };
    if items.iter().all(Value::is_string) {
        let texts: Vec<String> = items
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect();
        if let Some(i) = texts.iter().position(String::is_empty) {
            return Err(format!("`input[{i}]` must not be an empty string"));
        }
        return Ok(Input::Texts(texts));
    }
    if let Some(tokens) = token_array(items) {
        return Ok(Input::Tokens(vec![tokens]));
    }
    let mut arrays = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_array().and_then(|a| token_array(a)) {
            Some(tokens) if !tokens.is_empty() => arrays.push(tokens),
            Some(_) => return Err(format!("`input[{i}]` must not be an empty token array")),
            None => return Err(format!("{INPUT_SHAPES}; `input[{i}]` is neither")),
        }
    }
    Ok(Input::Tokens(arrays))
}

/// The items as token ids, when every one is a non-negative integer.
fn token_array(items: &[Value]) -> Option<Vec<u64>> {
    items.iter().map(Value::as_u64).collect()
}

/// Gemini's `BatchEmbedContentsRequest` for `texts`, one request per text in input order, each
/// naming the model as Gemini requires (`models/{model}`, the same as the URL's).
pub fn gemini_request(model: &str, texts: &[String], dimensions: Option<u64>) -> Value {
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            let mut request = json!({
                "model": format!("models/{model}"),
                "content": {"parts": [{"text": text}]},
            });
            if let Some(d) = dimensions {
                request["outputDimensionality"] = json!(d);
            }
            request
        })
        .collect();
    json!({"requests": requests})
}

/// OpenAI's answer for Gemini's `BatchEmbedContentsResponse`: one `embedding` per input, in
/// order, as floats or base64. `None` when the answer is not one, or holds another number of
/// embeddings than `expected` (an order that cannot be trusted must not reach the client).
pub fn gemini_response(
    answer: &Value,
    expected: usize,
    model: &str,
    base64: bool,
    prompt_tokens: u64,
) -> Option<Value> {
    let embeddings = answer.get("embeddings")?.as_array()?;
    if embeddings.len() != expected {
        return None;
    }
    let mut data = Vec::with_capacity(expected);
    for (index, embedding) in embeddings.iter().enumerate() {
        let values = embedding.get("values")?.as_array()?;
        if !values.iter().all(Value::is_number) {
            return None;
        }
        let vector = if base64 {
            Value::String(base64_f32(values))
        } else {
            Value::Array(values.clone())
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": vector}));
    }
    Some(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

/// The vector as OpenAI sends it for `encoding_format: base64`: standard base64 (with padding)
/// of the values as little-endian 32-bit floats.
pub fn base64_f32(values: &[Value]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        // NB: OpenAI's vectors are f32; the narrowing is what its own base64 answers carry.
        let x = v.as_f64().unwrap_or(0.0) as f32;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests;
