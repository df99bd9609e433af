//! Hub (OpenAI) answers into the client's format, in one place for whole answers ([`answer`])
//! and streams ([`ClientEncoder`]).

use bytes::Bytes;
use serde_json::Value;

use super::{ClientApi, anthropic_openai, responses, responses_stream};

/// A whole hub answer in the client's format.
pub fn answer(client: ClientApi, hub: &Value) -> Bytes {
    let body = match client {
        ClientApi::OpenAI => hub.to_string(),
        ClientApi::Anthropic => anthropic_openai::response(hub).to_string(),
        ClientApi::Responses => responses::response(hub, &responses::Echo::default()).to_string(),
    };
    Bytes::from(body)
}

/// Writes chunks in the client's format.
pub enum ClientEncoder {
    /// OpenAI chunks as `data:` events, `[DONE]` at the end.
    OpenAI { wants_usage: bool },
    /// Hub chunks converted to Anthropic events.
    Anthropic(anthropic_openai::StreamEncoder),
    /// Hub chunks converted to Responses API events.
    Responses(responses_stream::StreamEncoder),
    /// Events already in the client's format; the provider's own end event closes the stream.
    Passthrough,
}

impl ClientEncoder {
    /// An encoder for `api`; `wants_usage` keeps OpenAI usage-only chunks (the client asked for
    /// `stream_options.include_usage`).
    pub fn new(api: ClientApi, wants_usage: bool) -> Self {
        match api {
            ClientApi::OpenAI => ClientEncoder::OpenAI { wants_usage },
            ClientApi::Anthropic => {
                ClientEncoder::Anthropic(anthropic_openai::StreamEncoder::default())
            }
            ClientApi::Responses => {
                ClientEncoder::Responses(responses_stream::StreamEncoder::default())
            }
        }
    }

    /// The client's bytes for one chunk (possibly none).
    pub fn chunk(&mut self, json: &[u8], usage_only: bool) -> Vec<u8> {
        match self {
            ClientEncoder::OpenAI { wants_usage } => {
                if usage_only && !*wants_usage {
                    return Vec::new();
                }
                let mut frame = Vec::with_capacity(json.len() + 8);
                frame.extend_from_slice(b"data: ");
                frame.extend_from_slice(json);
                frame.extend_from_slice(b"\n\n");
                frame
            }
            ClientEncoder::Anthropic(encoder) => {
                let mut out = Vec::new();
                if let Ok(chunk) = serde_json::from_slice::<Value>(json) {
                    encoder.chunk(&chunk, &mut out);
                }
                out
            }
            ClientEncoder::Responses(encoder) => {
                let mut out = Vec::new();
                if let Ok(chunk) = serde_json::from_slice::<Value>(json) {
                    encoder.chunk(&chunk, &mut out);
                }
                out
            }
            ClientEncoder::Passthrough => json.to_vec(),
        }
    }

    /// A provider event passed through as is; from then on the stream is passed through.
    pub fn raw(&mut self, frame: &Bytes) -> Vec<u8> {
        *self = ClientEncoder::Passthrough;
        frame.to_vec()
    }

    /// The bytes that end a clean stream.
    pub fn done(&mut self) -> Vec<u8> {
        match self {
            ClientEncoder::OpenAI { .. } => b"data: [DONE]\n\n".to_vec(),
            ClientEncoder::Anthropic(encoder) => {
                let mut out = Vec::new();
                encoder.finish(&mut out);
                out
            }
            ClientEncoder::Responses(encoder) => {
                let mut out = Vec::new();
                encoder.finish(&mut out);
                out
            }
            ClientEncoder::Passthrough => Vec::new(),
        }
    }

    /// The event that ends a committed stream after a failure, for a format whose error event
    /// depends on what was sent before (the Responses API's `response.failed` carries the
    /// response so far and continues the `sequence_number`s); `None` for the others, whose
    /// error event stands alone.
    pub fn failed(&mut self, code: &str, message: &str) -> Option<Vec<u8>> {
        match self {
            ClientEncoder::Responses(encoder) => {
                let mut out = Vec::new();
                encoder.failed(code, message, &mut out);
                Some(out)
            }
            _ => None,
        }
    }
}

/// A whole hub answer (`chat.completion` JSON) in the client's format; malformed JSON is an
/// error.
pub fn whole(client: ClientApi, hub: &[u8]) -> Result<Bytes, String> {
    let hub: Value =
        serde_json::from_slice(hub).map_err(|e| format!("assembled answer is not JSON: {e}"))?;
    Ok(answer(client, &hub))
}
