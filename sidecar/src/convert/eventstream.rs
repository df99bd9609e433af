//! AWS event-stream framing (`application/vnd.amazon.eventstream`, Bedrock's ConverseStream) as
//! [`SseEvent`]s, so that stream decoders see one kind of event whatever the wire framing.
//!
//! Frames are decoded and CRC-checked (prelude and message) by `aws-smithy-eventstream`; this
//! adapter only cuts the byte stream into whole frames, enforces the event-size cap the SSE
//! parser has, and names each message: an `event` message by its `:event-type`, an `exception`
//! message by its `:exception-type` (Bedrock's names all end in `Exception`), and an `error`
//! message as `error` with a JSON `{"code", "message"}` body built from its headers.

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, BytesMut};

use super::sse::{MAX_EVENT_BYTES, SseEvent};

/// Prelude (total length, headers length, prelude CRC) plus the message CRC.
const FRAME_OVERHEAD: usize = 16;

/// The stream broke the framing rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventStreamError {
    #[error("stream event larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed event-stream frame: {0}")]
    Malformed(String),
}

/// Feeds on chunks, yields complete events.
#[derive(Debug)]
pub struct EventStreamParser {
    buf: BytesMut,
    max: usize,
}

impl Default for EventStreamParser {
    fn default() -> Self {
        Self::new(MAX_EVENT_BYTES)
    }
}

impl EventStreamParser {
    /// A parser that refuses frames over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Adds a chunk and appends every event it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventStreamError> {
        self.buf.extend_from_slice(chunk);
        while self.buf.len() >= 4 {
            let total = (&self.buf[..4]).get_u32() as usize;
            // Checked before waiting for the frame: a huge length must not make us buffer it.
            if total > self.max {
                return Err(EventStreamError::TooLarge(self.max));
            }
            if total < FRAME_OVERHEAD {
                return Err(EventStreamError::Malformed(format!(
                    "frame length {total} is shorter than a frame's prelude and checksum"
                )));
            }
            if self.buf.len() < total {
                break;
            }
            let frame = self.buf.split_to(total).freeze();
            let message =
                read_message_from(frame).map_err(|e| EventStreamError::Malformed(e.to_string()))?;
            out.push(event(message));
        }
        Ok(())
    }

    /// Whether bytes of an unfinished frame are pending (a stream that ends here was cut off).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn event(message: Message) -> SseEvent {
    match header(&message, ":message-type").unwrap_or("event") {
        "exception" => SseEvent {
            event: Some(
                header(&message, ":exception-type")
                    .unwrap_or("unknownException")
                    .to_string(),
            ),
            data: message.payload().clone(),
        },
        "error" => {
            let body = serde_json::json!({
                "code": header(&message, ":error-code").unwrap_or("error"),
                "message": header(&message, ":error-message").unwrap_or("error in stream"),
            });
            SseEvent {
                event: Some("error".into()),
                data: super::json_bytes(&body),
            }
        }
        _ => SseEvent {
            event: header(&message, ":event-type").map(str::to_string),
            data: message.payload().clone(),
        },
    }
}

/// One frame as bytes, for tests and the simulated Bedrock: an `event` message named `kind`.
#[cfg(test)]
pub(crate) fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    use aws_smithy_types::event_stream::Header;
    let mut message = Message::new(bytes::Bytes::copy_from_slice(payload));
    for (name, value) in headers {
        message = message.add_header(Header::new(
            name.to_string(),
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).expect("encodable frame");
    out
}

#[cfg(test)]
mod tests;
