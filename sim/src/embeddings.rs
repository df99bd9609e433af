//! Simulated embeddings: OpenAI's `POST /v1/embeddings` (checked as OpenAI checks a
//! `CreateEmbeddingRequest`) and the vectors both it and Gemini's `:batchEmbedContents` return.
//!
//! Vectors are deterministic: each component is a hash of the text (or token ids) and its
//! position, and the vector is normalized to length 1, as real embedding models return them. So
//! a test can compute the vector a text must get, and two texts never share one.

use serde_json::{Value, json};

use super::content;

/// Components of a vector when the request names no `dimensions`: short, so that tests read
/// well; real models return hundreds.
pub const DEFAULT_DIMENSIONS: usize = 8;

const FIELDS: [&str; 5] = ["input", "model", "encoding_format", "dimensions", "user"];

/// The unit vector of `dimensions` components for `text`.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let raw: Vec<f64> = (0..dimensions)
        .map(|i| {
            let h = fnv1a(text.as_bytes(), i as u64);
            // The hash's top 53 bits as a float in [-1, 1).
            (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

fn fnv1a(bytes: &[u8], salt: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Why OpenAI would refuse an embeddings request, in its words, with the `param` it names.
pub fn check_openai(body: &Value) -> Result<(), (String, Option<&'static str>)> {
    let Some(body) = body.as_object() else {
        return Err((
            "We could not parse the JSON body of your request.".into(),
            None,
        ));
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let message = format!("Unrecognized request argument supplied: {unknown}");
        return Err((message, None));
    }
    if !body.get("model").is_some_and(Value::is_string) {
        return Err(("you must provide a model parameter".into(), Some("model")));
    }
    let invalid = |param: &'static str| {
        let message = format!(
            "'$.{param}' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
        );
        Err((message, Some(param)))
    };
    match body.get("input") {
        None => return Err(("'input' is a required property".into(), Some("input"))),
        Some(input) if openai_inputs(input).is_none() => return invalid("input"),
        Some(_) => {}
    }
    match body.get("encoding_format").and_then(Value::as_str) {
        None if body.contains_key("encoding_format") => return invalid("encoding_format"),
        Some(f) if f != "float" && f != "base64" => return invalid("encoding_format"),
        _ => {}
    }
    if body
        .get("dimensions")
        .is_some_and(|d| d.as_u64().is_none_or(|d| d == 0))
    {
        return invalid("dimensions");
    }
    if body.get("user").is_some_and(|u| !u.is_string()) {
        return invalid("user");
    }
    Ok(())
}

/// Each input as the text its vector is made from (token ids joined by spaces), when `input`
/// has one of the four shapes OpenAI accepts, with nothing empty.
fn openai_inputs(input: &Value) -> Option<Vec<String>> {
    let tokens = |items: &[Value]| -> Option<String> {
        let ids: Option<Vec<String>> = items
            .iter()
            .map(|t| t.as_u64().map(|t| t.to_string()))
            .collect();
        ids.filter(|ids| !ids.is_empty()).map(|ids| ids.join(" "))
    };
    match input {
        Value::String(s) if !s.is_empty() => Some(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|s| s.as_str().filter(|s| !s.is_empty()).map(String::from))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_u64) => Some(vec![tokens(items)?]),
        Value::Array(items) => items.iter().map(|i| tokens(i.as_array()?)).collect(),
        _ => None,
    }
}

/// OpenAI's answer to a request that passed [`check_openai`].
pub fn openai_answer(body: &Value) -> Value {
    let inputs = openai_inputs(&body["input"]).unwrap_or_default();
    let dimensions = body["dimensions"]
        .as_u64()
        .map_or(DEFAULT_DIMENSIONS, |d| d as usize);
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = vector(text, dimensions);
            let embedding = if base64 {
                json!(base64_f32(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let chars = inputs.iter().map(|t| t.chars().count()).sum();
    let tokens = content::estimate_tokens(chars, 0);
    json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

/// Gemini's `BatchEmbedContentsResponse` for a request that passed its checks.
pub fn gemini_answer(body: &Value) -> Value {
    let requests = body["requests"].as_array().map_or(&[][..], Vec::as_slice);
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|request| {
            let parts = request["content"]["parts"].as_array();
            let text: String = parts
                .map(|p| p.iter().filter_map(|p| p["text"].as_str()).collect())
                .unwrap_or_default();
            let dimensions = request
                .get("outputDimensionality")
                .or_else(|| request.get("output_dimensionality"))
                .and_then(Value::as_u64)
                .map_or(DEFAULT_DIMENSIONS, |d| d as usize);
            json!({"values": vector(&text, dimensions)})
        })
        .collect();
    json!({"embeddings": embeddings})
}

/// Standard padded base64 of the values as little-endian `f32`s, as OpenAI sends
/// `encoding_format: base64`.
pub fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[((n >> shift) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_differ_by_text() {
        let a = vector("alpha", 16);
        assert_eq!(a, vector("alpha", 16));
        assert_ne!(a, vector("beta", 16));
        let length: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-5, "{length}");
    }

    #[test]
    fn openai_checks_name_the_parameter() {
        let err = |body: Value| check_openai(&body).unwrap_err();
        assert_eq!(err(json!({"model": "m"})).1, Some("input"));
        assert_eq!(err(json!({"input": "x"})).1, Some("model"));
        assert_eq!(err(json!({"model": "m", "input": []})).1, Some("input"));
        assert_eq!(err(json!({"model": "m", "input": [[]]})).1, Some("input"));
        let format = json!({"model": "m", "input": "x", "encoding_format": "hex"});
        assert_eq!(err(format).1, Some("encoding_format"));
        assert!(
            err(json!({"model": "m", "input": "x", "stream": true}))
                .0
                .contains("stream")
        );
        for input in [
            json!("x"),
            json!(["x", "y"]),
            json!([1, 2]),
            json!([[1], [2, 3]]),
        ] {
            assert!(check_openai(&json!({"model": "m", "input": input})).is_ok());
        }
    }

    #[test]
    fn base64_of_one_and_minus_two() {
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    }
}
