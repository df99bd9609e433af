//! An incremental Server-Sent Events parser for upstream streams.
//!
//! Written here rather than taken from a crate because the proxy needs what general SSE crates
//! do not give: a hard cap on event size (an upstream must not make us buffer without bound),
//! events handed out as `Bytes` without copying them into `String`s, and byte-exact framing
//! across arbitrary TCP read boundaries. Lines end in `\n` or `\r\n` (every provider we speak
//! uses one of these).

use bytes::{Bytes, BytesMut};

/// The largest event accepted from a provider. Generous for text and tool-call deltas; an image
/// in a stream larger than this fails the stream cleanly instead of growing memory.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when present.
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub data: Bytes,
}

/// The stream broke the framing rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("stream event larger than {0} bytes")]
    TooLarge(usize),
}

/// Feeds on chunks, yields complete events.
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    data: BytesMut,
    has_data: bool,
    event: Option<String>,
    max: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that refuses events over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            data: BytesMut::new(),
            has_data: false,
            event: None,
            max,
        }
    }

    /// Adds a chunk and appends every event it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        // memchr: a byte-at-a-time search was half of this parser's instructions (every event
        // is scanned twice, once from the provider and once more when it is assembled).
        while let Some(pos) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let line = self.buf.split_to(self.scanned + pos + 1);
            self.scanned = 0;
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line(line, out)?;
        }
        self.scanned = self.buf.len();
        if self.buf.len() + self.data.len() > self.max {
            return Err(SseError::TooLarge(self.max));
        }
        Ok(())
    }

    /// Whether bytes of an unfinished event are pending (a stream that ends here was cut off).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.has_data
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: self.data.split().freeze(),
                });
            }
            self.has_data = false;
            self.event = None;
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => return Ok(()), // a comment, e.g. a keep-alive ": ping"
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.extend_from_slice(b"\n");
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry and unknown fields mean nothing to a proxy
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn events_split_across_reads_are_reassembled() {
        let whole = b"event: message_start\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\n: ping\n\ndata: [DONE]\n\n";
        let expected = parse_all(&[whole]);
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[0].event.as_deref(), Some("message_start"));
        assert_eq!(&expected[1].data[..], b"x\ny");
        assert_eq!(&expected[2].data[..], b"[DONE]");
        // Every split point, including inside "\r\n", gives the same events.
        for cut in 0..whole.len() {
            assert_eq!(
                parse_all(&[&whole[..cut], &whole[cut..]]),
                expected,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(parse_all(&bytes), expected);
    }

    #[test]
    fn oversized_events_fail_cleanly() {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        let big = vec![b'a'; 2048];
        assert_eq!(p.push(b"data: ", &mut out), Ok(()));
        assert_eq!(p.push(&big, &mut out), Err(SseError::TooLarge(1024)));
        let mut p = SseParser::new(1024);
        let lines = b"data: 0123456789\n".repeat(100);
        assert_eq!(
            p.push(&lines, &mut out),
            Err(SseError::TooLarge(1024)),
            "many small lines add up"
        );
    }

    #[test]
    fn partial_events_are_visible() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.push(b"data: {\"trunc", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(p.has_partial());
        p.push(b"ated\"}\n\n", &mut out).unwrap();
        assert!(!p.has_partial());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn invalid_utf8_passes_through_as_bytes() {
        let out = parse_all(&[b"data: \xff\xfe\n\n"]);
        assert_eq!(&out[0].data[..], b"\xff\xfe");
    }
}
