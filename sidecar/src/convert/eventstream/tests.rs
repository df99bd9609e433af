use proptest::prelude::*;

use super::*;

fn sample() -> Vec<u8> {
    let mut bytes = frame(
        &[
            (":message-type", "event"),
            (":event-type", "messageStart"),
            (":content-type", "application/json"),
        ],
        br#"{"role":"assistant","p":"abcdefgh"}"#,
    );
    bytes.extend(frame(
        &[
            (":message-type", "event"),
            (":event-type", "contentBlockDelta"),
        ],
        br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
    ));
    bytes.extend(frame(
        &[
            (":message-type", "exception"),
            (":exception-type", "throttlingException"),
        ],
        br#"{"message":"Too many requests, please wait before trying again."}"#,
    ));
    bytes.extend(frame(
        &[
            (":message-type", "error"),
            (":error-code", "InternalFailure"),
            (":error-message", "boom"),
        ],
        b"",
    ));
    bytes
}

fn parse(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, EventStreamError> {
    let mut parser = EventStreamParser::default();
    let mut out = Vec::new();
    for c in chunks {
        parser.push(c, &mut out)?;
    }
    assert!(!parser.has_partial(), "whole frames leave nothing behind");
    Ok(out)
}

#[test]
fn messages_are_named_by_their_type_headers() {
    let events = parse(&[&sample()]).unwrap();
    let names: Vec<_> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "messageStart",
            "contentBlockDelta",
            "throttlingException",
            "error"
        ]
    );
    assert_eq!(
        &events[1].data[..],
        br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#
    );
    let error: serde_json::Value = serde_json::from_slice(&events[3].data).unwrap();
    assert_eq!(
        error,
        serde_json::json!({"code": "InternalFailure", "message": "boom"})
    );
}

#[test]
fn a_bad_message_checksum_is_an_error() {
    let mut bytes = sample();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let mut parser = EventStreamParser::default();
    let mut out = Vec::new();
    let err = parser.push(&bytes, &mut out).unwrap_err();
    assert!(
        matches!(err, EventStreamError::Malformed(ref m) if m.contains("checksum")),
        "{err}"
    );
}

#[test]
fn a_bad_prelude_checksum_is_an_error() {
    let mut bytes = sample();
    bytes[9] ^= 0xff; // inside the prelude CRC
    let err = parse(&[&bytes]).unwrap_err();
    assert!(matches!(err, EventStreamError::Malformed(_)), "{err}");
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_buffered() {
    let mut parser = EventStreamParser::new(1024);
    let mut out = Vec::new();
    // A prelude announcing 1 GiB: refused on its first four bytes.
    let err = parser
        .push(&(1u32 << 30).to_be_bytes(), &mut out)
        .unwrap_err();
    assert_eq!(err, EventStreamError::TooLarge(1024));
}

#[test]
fn a_frame_shorter_than_its_overhead_is_an_error() {
    let err = parse(&[&[0, 0, 0, 3, 0, 0, 0, 0]]).unwrap_err();
    assert!(matches!(err, EventStreamError::Malformed(_)));
}

#[test]
fn a_truncated_frame_is_left_partial() {
    let bytes = sample();
    let mut parser = EventStreamParser::default();
    let mut out = Vec::new();
    parser.push(&bytes[..bytes.len() - 3], &mut out).unwrap();
    assert_eq!(out.len(), 3);
    assert!(
        parser.has_partial(),
        "the reader reports a stream cut inside an event"
    );
}

proptest! {
    #[test]
    fn random_splits_give_the_same_events(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let bytes = sample();
        let expected = parse(&[&bytes]).unwrap();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for p in points {
            chunks.push(&bytes[from..p]);
            from = p;
        }
        chunks.push(&bytes[from..]);
        prop_assert_eq!(parse(&chunks).unwrap(), expected);
    }

    #[test]
    fn corruption_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                               cut in any::<prop::sample::Index>()) {
        let mut bytes = sample();
        for (i, x) in &flips {
            let at = i.index(bytes.len());
            bytes[at] ^= x | 1;
        }
        let at = cut.index(bytes.len() + 1);
        let mut parser = EventStreamParser::new(64 * 1024);
        let mut out = Vec::new();
        // Errors are fine; panics are not. A flipped bit must not pass the CRCs unnoticed.
        if parser.push(&bytes[..at], &mut out).is_ok() {
            let _ = parser.push(&bytes[at..], &mut out);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut parser = EventStreamParser::new(64 * 1024);
        let mut out = Vec::new();
        let _ = parser.push(&bytes, &mut out);
    }
}
