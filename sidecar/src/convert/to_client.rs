//! Hub (OpenAI) answers into the client's format, in one place for whole answers ([`answer`])
//! and streams ([`ClientEncoder`]).

use bytes::Bytes;
use serde_json::Value;

use super::{ClientApi, anthropic_openai, json_bytes, responses, responses_stream};

/// A whole hub answer in the client's format.
pub fn answer(client: ClientApi, hub: &Value) -> Bytes {
    match client {
        ClientApi::OpenAI => json_bytes(hub),
        ClientApi::Anthropic => json_bytes(&anthropic_openai::response(hub)),
        ClientApi::Responses => json_bytes(&responses::response(hub, &responses::Echo::default())),
    }
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
    Passthrough(Passthrough),
}

/// What a passed-through stream has shown of itself, for the event that ends it after a failure.
#[derive(Debug, Default)]
pub struct Passthrough {
    /// The last Responses `sequence_number` forwarded (none in other formats' events).
    sequence: Option<u64>,
    /// A Responses event that ends the stream (`response.failed`, `error`) was forwarded: the
    /// provider said why, and nothing more is sent.
    ended: bool,
}

impl Passthrough {
    fn saw(&mut self, frame: &[u8]) {
        let Some(sequence) = sequence_number(frame) else {
            return;
        };
        self.sequence = Some(sequence);
        self.ended |=
            frame.starts_with(b"event: response.failed\n") || frame.starts_with(b"event: error\n");
    }
}

/// The top-level `sequence_number` of a Responses event frame, without parsing the JSON: the
/// key's quotes appear unescaped only as a key (inside a string they are `\"`), and no object
/// nested in an event has one.
fn sequence_number(frame: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sequence_number\":";
    let at = frame.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: String = frame[at..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    digits.parse().ok()
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

    /// The encoder with the request fields a Responses client's Response echoes (no change for
    /// the other formats).
    pub fn echoing(self, echo: &responses::Echo) -> Self {
        match self {
            ClientEncoder::Responses(_) => {
                ClientEncoder::Responses(responses_stream::StreamEncoder::new(echo.clone()))
            }
            other => other,
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
                if let Ok(chunk) = super::parse_json::<Value>(json) {
                    encoder.chunk(&chunk, &mut out);
                }
                out
            }
            ClientEncoder::Responses(encoder) => {
                let mut out = Vec::new();
                if let Ok(chunk) = super::parse_json::<Value>(json) {
                    encoder.chunk(&chunk, &mut out);
                }
                out
            }
            ClientEncoder::Passthrough(_) => json.to_vec(),
        }
    }

    /// A provider event passed through as is; from then on the stream is passed through.
    pub fn raw(&mut self, frame: &Bytes) -> Vec<u8> {
        if !matches!(self, ClientEncoder::Passthrough(_)) {
            *self = ClientEncoder::Passthrough(Passthrough::default());
        }
        if let ClientEncoder::Passthrough(seen) = self {
            seen.saw(frame);
        }
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
            ClientEncoder::Passthrough(_) => Vec::new(),
        }
    }

    /// The event that ends a committed stream after a failure, for a format whose error event
    /// depends on what was sent before (the Responses API's `response.failed` carries the
    /// response so far and continues the `sequence_number`s; a passed-through Responses stream
    /// gets an `error` event continuing the provider's numbers, or nothing after the provider's
    /// own failure event); `None` for the others, whose error event stands alone.
    pub fn failed(&mut self, code: &str, message: &str) -> Option<Vec<u8>> {
        match self {
            ClientEncoder::Responses(encoder) => {
                let mut out = Vec::new();
                encoder.failed(code, message, &mut out);
                Some(out)
            }
            ClientEncoder::Passthrough(Passthrough { ended: true, .. }) => Some(Vec::new()),
            ClientEncoder::Passthrough(Passthrough {
                sequence: Some(last),
                ended,
            }) => {
                *ended = true;
                let data = serde_json::json!({"type": "error", "code": code, "message": message,
                    "param": null, "sequence_number": last.saturating_add(1)});
                Some(format!("event: error\ndata: {data}\n\n").into_bytes())
            }
            _ => None,
        }
    }
}

/// A whole hub answer (`chat.completion` JSON) in the client's format, a Response echoing
/// `echo`; malformed JSON is an error.
pub fn whole(client: ClientApi, hub: &[u8], echo: &responses::Echo) -> Result<Bytes, String> {
    let hub: Value =
        serde_json::from_slice(hub).map_err(|e| format!("assembled answer is not JSON: {e}"))?;
    Ok(match client {
        ClientApi::Responses => json_bytes(&responses::response(&hub, echo)),
        _ => answer(client, &hub),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(encoder: &mut ClientEncoder, kind: &str, data: Value) {
        let frame = Bytes::from(format!("event: {kind}\ndata: {data}\n\n"));
        encoder.raw(&frame);
    }

    #[test]
    fn a_passed_through_responses_stream_ends_continuing_the_providers_numbers() {
        let mut encoder = ClientEncoder::new(ClientApi::Responses, true);
        raw(
            &mut encoder,
            "response.created",
            serde_json::json!({"type": "response.created",
            "sequence_number": 0, "response": {"output": []}}),
        );
        raw(
            &mut encoder,
            "response.output_text.delta",
            serde_json::json!({
            "type": "response.output_text.delta", "delta": "say \"sequence_number\": 99",
            "sequence_number": 7}),
        );
        let event = encoder
            .failed("upstream_timeout", "stalled")
            .expect("an event");
        let text = String::from_utf8(event).unwrap();
        let data: Value =
            serde_json::from_str(text.strip_prefix("event: error\ndata: ").unwrap().trim())
                .unwrap();
        assert_eq!(data["sequence_number"], 8);
        assert_eq!(data["code"], "upstream_timeout");
    }

    #[test]
    fn nothing_follows_the_providers_own_failure_event() {
        let mut encoder = ClientEncoder::new(ClientApi::Responses, true);
        raw(
            &mut encoder,
            "response.output_item.added",
            serde_json::json!({
            "type": "response.output_item.added", "sequence_number": 2}),
        );
        raw(
            &mut encoder,
            "response.failed",
            serde_json::json!({"type": "response.failed",
            "sequence_number": 3, "response": {"error": {"code": "server_error"}}}),
        );
        assert_eq!(encoder.failed("server_error", "boom"), Some(Vec::new()));
    }

    #[test]
    fn other_passed_through_formats_keep_their_own_error_event() {
        let mut encoder = ClientEncoder::new(ClientApi::Anthropic, true);
        encoder.raw(&Bytes::from_static(
            b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
        ));
        assert_eq!(encoder.failed("server_error", "boom"), None);
    }
}
