//! Format conversions between client and provider protocols, one module per direction.
//!
//! The request path speaks OpenAI Chat Completions internally (the "hub" format): an
//! Anthropic-format client's request is converted to it on the way in ([`anthropic_openai`]) and
//! the answer back on the way out; each provider module converts the hub format to its own wire
//! format and back ([`openai_anthropic`], [`openai_gemini`]). Responses API clients are a third
//! client format ([`responses`], [`responses_stream`]). When client and provider speak the
//! same protocol nothing is converted: the body passes through with only the model replaced.
//! [`sse`] frames and parses server-sent events; [`wire`] holds the typed (and lenient) views
//! of each format that the converters read; [`Usage`] is the token count every direction
//! extracts.

pub mod anthropic_openai;
pub mod assemble;
pub mod embeddings;
pub mod eventstream;
pub mod openai_anthropic;
pub mod openai_bedrock;
pub mod openai_gemini;
pub mod responses;
pub mod responses_stream;
pub mod sse;
pub mod to_client;
pub mod wire;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod robustness_tests;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// Reads JSON bytes, as `serde_json::from_slice` does. The input is checked as UTF-8 once, in
/// one pass, and then read as text: read from bytes, serde_json checks every string it meets on
/// its own, a call per key and value (4,400 instructions of a non-streamed chat request,
/// bench/callgrind.sh, issue 15). Input that is not UTF-8 is read from bytes after all, for
/// serde_json's own error, which says where.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// `value` (a `Value`, or a [`assemble::Json`] tree) as JSON bytes.
pub fn json_bytes(value: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(128);
    write_json(&mut out, value);
    Bytes::from(out)
}

/// Appends `value` as JSON. Through `serde_json::to_writer`, not `to_string`: `Display` writes
/// through `fmt::Write` piece by piece, which made serialising the chunks of a translated
/// stream take twice the instructions (bench/callgrind.sh, issue 15).
pub fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    // Writing a JSON tree into a `Vec` cannot fail: its keys are strings and the Vec grows.
    serde_json::to_writer(out, value).expect("a JSON tree serialises");
}

/// Tokens a provider reported for one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_input: u64,
    pub output: u64,
}

/// The API format the client speaks, chosen by the endpoint it called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientApi {
    /// `POST /v1/chat/completions`.
    OpenAI,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/responses` (OpenAI's Responses API), translated through the hub
    /// ([`responses`]) unless its route passes it through.
    Responses,
}

/// Tool-call arguments (a JSON string in OpenAI's format) as a JSON object, which Anthropic and
/// Gemini require. Arguments that are not a JSON object are kept under `"arguments"` rather than
/// lost.
pub fn json_arguments(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ if arguments.trim().is_empty() => Value::Object(Default::default()),
        _ => serde_json::json!({"arguments": arguments}),
    }
}
