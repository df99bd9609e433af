//! `StreamDecoder::decode_whole` against `decode`: a whole answer read one event at a time
//! straight into the assembler must come to what decoding each event and assembling its chunks
//! come to, for good events and bad, recorded streams and mutated ones.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use switchyard_crds::v1alpha1::{Api, FailureClass};

use super::{Chunk, for_api};
use crate::convert::ClientApi;
use crate::convert::assemble::Assembler;
use crate::convert::sse::{SseEvent, SseParser};

/// What the two readings made of a stream.
struct Both {
    /// Events read into the answers, and events refused.
    read: usize,
    refused: usize,
    decoded: Result<Value, String>,
    whole: Result<Value, String>,
}

/// Reads `events` both ways, each with a decoder of its own, and asserts at every event that the
/// two agree: the same error class for the same bad event, the same commit point, usage and end.
fn read_both(api: Api, events: &[SseEvent]) -> Both {
    let provider = for_api(api).expect("known api");
    let mut decoder = provider.stream_decoder(ClientApi::OpenAI, "m");
    let mut reader = provider.stream_decoder(ClientApi::OpenAI, "m");
    let mut decoded_answer = Assembler::new(ClientApi::OpenAI);
    let mut whole_answer = Assembler::new(ClientApi::OpenAI);
    let (mut read, mut refused) = (0, 0);
    for event in events {
        let data = String::from_utf8_lossy(&event.data);
        let mut out = Vec::new();
        decoder.decode(event.clone(), &mut out);
        let whole = reader
            .decode_whole(event, &mut whole_answer)
            .expect("this protocol reads whole answers");
        // The decoded path's verdict: the decoder's, then the assembler's on each chunk (a chunk
        // it cannot take fails the attempt as a `ServerError`).
        let mut decoded = Ok((false, None, false));
        for chunk in out {
            decoded = decoded.and_then(|(commits, usage, done)| match chunk {
                Chunk::Done => Ok((commits, usage, true)),
                Chunk::Data {
                    json,
                    commits: c,
                    usage: u,
                    ..
                } => match decoded_answer.event(&json) {
                    Ok(()) => Ok((commits || c, u.or(usage), done)),
                    Err(_) => Err(FailureClass::ServerError),
                },
                Chunk::Error(e) => Err(e.class),
                Chunk::Raw { .. } => panic!("{data}: a raw frame for an OpenAI client"),
            });
        }
        match (decoded, whole) {
            (Ok((commits, usage, done)), Ok(whole)) => {
                assert_eq!(
                    (whole.commits, whole.usage, whole.done),
                    (commits, usage, done),
                    "{data}"
                );
                read += 1;
            }
            (Err(decoded), Err(whole)) => {
                assert_eq!(decoded, whole.class, "{data}");
                refused += 1;
            }
            (decoded, whole) => panic!("{data}: decoded {decoded:?}, read whole {whole:?}"),
        }
    }
    // Converters stamp `created` with the time their decoder was made.
    let answer = |bytes: Result<Bytes, String>| {
        bytes.map(|bytes| {
            let mut answer: Value = serde_json::from_slice(&bytes).expect("JSON");
            answer["created"] = Value::Null;
            answer
        })
    };
    Both {
        read,
        refused,
        decoded: answer(decoded_answer.finish()),
        whole: answer(whole_answer.finish()),
    }
}

fn events(data: &[&str]) -> Vec<SseEvent> {
    data.iter()
        .map(|d| SseEvent {
            event: None,
            data: Bytes::copy_from_slice(d.as_bytes()),
        })
        .collect()
}

fn recorded(name: &str) -> Vec<SseEvent> {
    let path = format!(
        "{}/src/convert/testdata/streams/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut events = Vec::new();
    SseParser::default()
        .push(&std::fs::read(path).unwrap(), &mut events)
        .unwrap();
    events
}

#[test]
fn openai_events_read_whole_as_they_decode() {
    let events = events(&[
        r#"{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{"content":null,"obfuscation":"x"}}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{"con\u0074ent":"lo"}}]}"#,
        r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_cache_hit_tokens":4}}"#,
        r#"{"choices":null,"usage":null}"#,
        r#"{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}"#,
        r#"{"error":{"message":"The server is overloaded"}}"#,
        r#"{"error":null,"choices":[]}"#,
        "{garbage",
        "[]",
        r#""text""#,
        r#"{"choices":{}}"#,
        r#"{"choices":[1]}"#,
        r#"{"choices":[{"delta":"x"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":"nine"}}"#,
        "\u{7f}\u{0}",
        // Fields given twice, lists where objects belong, an error event that is malformed too.
        r#"{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}"#,
        r#"{"choices":[{"delta":{"content":"a"},"delta":{}}]}"#,
        r#"{"usage":{"prompt_tokens":1},"usage":null}"#,
        r#"{"choices":[{"delta":{"content":"","content":null}}]}"#,
        r#"{"choices":[[null,"stop"]]}"#,
        r#"{"choices":[[]]}"#,
        r#"{"error":{"code":"rate_limit_exceeded"},"choices":{}}"#,
        "[DONE]",
    ]);
    let both = read_both(Api::OpenAI, &events);
    assert_eq!((both.read, both.refused), (9, 17));
    let whole = both.whole.unwrap();
    assert_eq!(both.decoded.unwrap(), whole);
    assert_eq!(whole["choices"][0]["message"]["content"], "Hello");
    assert_eq!(whole["usage"]["prompt_cache_hit_tokens"], 4);
}

#[test]
fn anthropic_events_read_whole_as_they_decode() {
    let mut events = recorded("anthropic_tool_use.sse");
    let named = |name: &str, data: &str| SseEvent {
        event: Some(name.into()),
        data: Bytes::copy_from_slice(data.as_bytes()),
    };
    // Bad events before the end: refused alike.
    let stop = events.pop().expect("message_stop");
    events.extend([
        named("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" more"}}"#),
        named("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}"#),
        named("content_block_delta", "{garbage"),
        named("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        named("ping", r#"{"type":"ping"}"#),
        stop,
    ]);
    let both = read_both(Api::Anthropic, &events);
    // The garbage and the error event refused; the rest read (a text that is a number says
    // nothing, both ways).
    assert_eq!((both.read, both.refused), (events.len() - 2, 2));
    let whole = both.whole.unwrap();
    assert_eq!(both.decoded.unwrap(), whole);
    assert!(
        whole["choices"][0]["message"]["tool_calls"].is_array(),
        "{whole}"
    );
}

/// Recorded streams with bytes changed at random: a changed event is refused or read alike both
/// ways, and the answers agree.
#[test]
fn mutated_events_read_whole_as_they_decode() {
    for (api, name) in [
        (Api::OpenAI, "openai_tool_calls.sse"),
        (Api::Anthropic, "anthropic_tool_use.sse"),
    ] {
        let parsed = recorded(name);
        let (mut read, mut refused) = (0, 0);
        for seed in 0..300 {
            let mut rng = StdRng::seed_from_u64(seed);
            let events: Vec<SseEvent> = parsed
                .iter()
                .map(|event| {
                    let mut data = event.data.to_vec();
                    for _ in 0..rng.random_range(0..3) {
                        let i = rng.random_range(0..data.len());
                        data[i] = *b"{}[]\",:0an\\\xff"
                            .get(rng.random_range(0..13))
                            .unwrap_or(&b' ');
                    }
                    SseEvent {
                        event: event.event.clone(),
                        data: data.into(),
                    }
                })
                .collect();
            let both = read_both(api, &events);
            read += both.read;
            refused += both.refused;
            match (both.decoded, both.whole) {
                (Ok(decoded), Ok(whole)) => assert_eq!(decoded, whole, "{name} seed {seed}"),
                (decoded, whole) => {
                    assert_eq!(decoded.is_ok(), whole.is_ok(), "{name} seed {seed}")
                }
            }
        }
        // The mutations reach both verdicts.
        assert!(
            read > 300 && refused > 300,
            "{name}: {read} read, {refused} refused"
        );
    }
}
