//! Fuzz-style robustness of the stream path: real recorded streams of every protocol, split at
//! random points and mutated at random (truncated, bytes flipped, invalid UTF-8 inserted), fed
//! through the SSE parser, each provider's decoder and each client encoder. Nothing may panic,
//! and an unmutated stream must decode the same however it is split across reads.
//!
//! Each property tries `ROUNDS` seeds per fixture and client; `FUZZ_SECONDS=N cargo test --release
//! -p switchyard-sidecar robustness` keeps trying new seeds for N seconds each instead (a failure
//! names its seed, so it replays).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use switchyard_crds::v1alpha1::Api;

use super::assemble::Assembler;
use super::{ClientApi, anthropic_openai};
use crate::convert::sse::SseParser;
use crate::providers::{self, Chunk};

const ROUNDS: u64 = 400;

/// The seeds to try: `ROUNDS` of them, or as many as `FUZZ_SECONDS` allows.
fn seeds() -> impl Iterator<Item = u64> {
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let started = std::time::SystemTime::now();
    (0..).take_while(move |seed| match budget {
        None => *seed < ROUNDS,
        Some(seconds) => started
            .elapsed()
            .is_ok_and(|elapsed| elapsed.as_secs() < seconds),
    })
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/convert/testdata/streams/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// Feeds `bytes` in random pieces; returns a summary of what came out (or the error).
fn run(api: Api, client: ClientApi, bytes: &[u8], rng: &mut StdRng) -> Vec<String> {
    let mut parser = SseParser::new(64 * 1024);
    let mut decoder = providers::for_api(api)
        .expect("provider")
        .stream_decoder(client, "m");
    let mut encoder = anthropic_openai::StreamEncoder::default();
    let (mut events, mut chunks, mut out, mut summary) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut at = 0;
    while at < bytes.len() {
        let take = rng
            .random_range(1..=bytes.len() - at)
            .min(rng.random_range(1..64));
        if let Err(e) = parser.push(&bytes[at..at + take], &mut events) {
            summary.push(format!("parse error: {e}"));
            return summary;
        }
        at += take;
        for event in events.drain(..) {
            decoder.decode(event, &mut chunks);
        }
    }
    decoder.end(&mut chunks);
    for chunk in chunks {
        match chunk {
            Chunk::Data {
                json,
                commits,
                usage,
                usage_only,
            } => {
                // NB: OpenAI chunks pass through as the provider sent them, so a mutated one may
                // not even be JSON (a lone surrogate escape, say); the encoder skips those.
                match serde_json::from_slice::<Value>(&json) {
                    Ok(mut value) => {
                        encoder.chunk(&value, &mut out);
                        // The clock is the one thing that may differ between two runs. (A mutated
                        // chunk may be any JSON, an array say.)
                        if let Some(object) = value.as_object_mut() {
                            object.insert("created".into(), Value::Null);
                        }
                        summary.push(format!("data {value} {commits} {usage:?} {usage_only}"));
                    }
                    Err(_) => summary.push(format!("data (not JSON) {commits}")),
                }
            }
            Chunk::Raw {
                frame,
                commits,
                usage,
            } => summary.push(format!("raw {} {commits} {usage:?}", frame.len())),
            Chunk::Done => summary.push("done".into()),
            Chunk::Error(e) => summary.push(format!("error {}", e.class)),
        }
    }
    encoder.finish(&mut out);
    summary
}

fn mutate(bytes: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.random_range(0..4) {
        0 => out.truncate(rng.random_range(0..out.len())),
        1 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..out.len());
                out[i] = rng.random();
            }
        }
        2 => {
            let i = rng.random_range(0..out.len());
            out.splice(i..i, [0xff, 0xfe, 0xc0]);
        }
        _ => {
            let i = rng.random_range(0..out.len());
            let j = rng.random_range(i..out.len());
            out.drain(i..j);
        }
    }
    out
}

#[test]
fn random_splits_never_change_what_a_stream_means() {
    for (name, api) in [
        ("anthropic_tool_use.sse", Api::Anthropic),
        ("gemini_text.sse", Api::Gemini),
        ("openai_tool_calls.sse", Api::OpenAI),
    ] {
        let bytes = fixture(name);
        for client in [ClientApi::OpenAI, ClientApi::Anthropic] {
            let whole = run(api, client, &bytes, &mut StdRng::seed_from_u64(0));
            assert!(
                whole.last().is_some_and(|l| l == "done"),
                "{name}: {whole:?}"
            );
            for seed in seeds().skip(1) {
                let split = run(api, client, &bytes, &mut StdRng::seed_from_u64(seed));
                assert_eq!(split, whole, "{name} {client:?} seed {seed}");
            }
        }
    }
}

#[test]
fn mutated_streams_never_panic() {
    for (name, api) in [
        ("anthropic_tool_use.sse", Api::Anthropic),
        ("gemini_text.sse", Api::Gemini),
        ("openai_tool_calls.sse", Api::OpenAI),
    ] {
        let bytes = fixture(name);
        for seed in seeds() {
            let mut rng = StdRng::seed_from_u64(seed);
            let broken = mutate(&bytes, &mut rng);
            for client in [ClientApi::OpenAI, ClientApi::Anthropic] {
                // Reaching the end without a panic is the property; the summary must also never
                // claim a clean end for a stream that was cut before its end event.
                let summary = run(api, client, &broken, &mut rng);
                if broken.len() < bytes.len() / 2 && api != Api::Gemini {
                    assert!(
                        summary.last().is_none_or(|l| l != "done") || broken.ends_with(b"\n\n"),
                        "{name} seed {seed}: {summary:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn invalid_utf8_and_garbage_json_are_errors_not_panics() {
    for api in [Api::OpenAI, Api::Anthropic, Api::Gemini] {
        for client in [ClientApi::OpenAI, ClientApi::Anthropic] {
            let summary = run(
                api,
                client,
                b"data: {\"text\": \"\xff\xfe\"}\n\ndata: {{{\n\n",
                &mut StdRng::seed_from_u64(1),
            );
            assert!(
                summary.iter().filter(|s| s.starts_with("error")).count() >= 1,
                "{api:?} {client:?}: {summary:?}"
            );
        }
    }
}

/// The assembler reads client-format events (what a streaming client would get) into a whole
/// answer: split anywhere it builds the same answer, and mutated it answers or refuses, never
/// panics.
#[test]
fn assembled_answers_ignore_splits_and_survive_mutations() {
    for (name, client) in [
        ("anthropic_tool_use.sse", ClientApi::Anthropic),
        ("openai_tool_calls.sse", ClientApi::OpenAI),
    ] {
        let bytes = fixture(name);
        let assemble = |bytes: &[u8], rng: &mut StdRng| {
            let mut assembler = Assembler::new(client);
            let mut at = 0;
            while at < bytes.len() {
                let take = rng.random_range(1..=(bytes.len() - at).min(64));
                assembler.push(&bytes[at..at + take])?;
                at += take;
            }
            assembler.finish()
        };
        let whole = assemble(&bytes, &mut StdRng::seed_from_u64(0)).expect("the fixture assembles");
        for seed in seeds().skip(1) {
            let mut rng = StdRng::seed_from_u64(seed);
            let split = assemble(&bytes, &mut rng).expect("the fixture assembles");
            assert_eq!(split, whole, "{name} seed {seed}");
            let broken = mutate(&bytes, &mut rng);
            // Either outcome is fine; a panic is not.
            let _ = assemble(&broken, &mut rng);
        }
    }
}
