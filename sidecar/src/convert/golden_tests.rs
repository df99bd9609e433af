//! Golden tests: every fixture under `testdata/` converted in each direction it can
//! travel, compared with its snapshot under `snapshots/`. A changed snapshot is reviewed like code:
//! `INSTA_UPDATE=always cargo test -p switchyard-sidecar golden` rewrites them.
//!
//! Fixtures are real wire shapes. Extend `requests/full.json` rather than adding a file per field.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{ClientApi, anthropic_openai, openai_anthropic, openai_gemini};
use crate::convert::sse::SseParser;
use crate::providers::{self, Chunk};
use switchyard_crds::v1alpha1::Api;

/// `created` timestamps are the one nondeterministic field of converted answers.
const CREATED: u64 = 1_700_000_000;

fn fixtures(dir: &str, prefix: &str) -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/convert/testdata")
        .join(dir);
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("readable fixture dir").path())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            stem.starts_with(prefix).then_some((stem, p))
        })
        .collect();
    found.sort();
    assert!(
        !found.is_empty(),
        "no fixtures {prefix}* in {}",
        root.display()
    );
    found
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture"))
        .expect("fixtures are JSON")
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().expect("fixture is an object").clone()
}

/// Zeroes every `created`, wherever the converters had to invent one.
fn scrub(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "created" {
                    *v = json!(0);
                } else {
                    scrub(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

#[test]
fn hub_requests_to_each_provider() {
    for (case, path) in fixtures("requests", "") {
        let hub = object(read_json(&path));
        let stream = hub.get("stream").and_then(Value::as_bool).unwrap_or(false);
        insta::assert_json_snapshot!(
            format!("request.{case}.anthropic"),
            openai_anthropic::request(&hub, "claude-sonnet-4", stream)
        );
        insta::assert_json_snapshot!(
            format!("request.{case}.gemini"),
            openai_gemini::request(&hub)
        );
    }
}

#[test]
fn anthropic_client_requests_to_the_hub() {
    for (case, path) in fixtures("anthropic_requests", "") {
        let hub = anthropic_openai::request(&object(read_json(&path))).expect("valid fixture");
        insta::assert_json_snapshot!(format!("anthropic_request.{case}.openai"), hub);
    }
}

#[test]
fn provider_answers_to_the_hub() {
    for (case, path) in fixtures("responses", "anthropic_") {
        let (hub, usage) =
            openai_anthropic::response(&read_json(&path), CREATED).expect("a message");
        insta::assert_json_snapshot!(
            format!("response.{case}.openai"),
            json!({"completion": hub, "usage": format!("{usage:?}")})
        );
    }
    for (case, path) in fixtures("responses", "gemini_") {
        let (hub, usage) = openai_gemini::response(&read_json(&path), "gemini-2.5-flash", CREATED)
            .expect("a response");
        insta::assert_json_snapshot!(
            format!("response.{case}.openai"),
            json!({"completion": hub, "usage": format!("{usage:?}")})
        );
    }
}

#[test]
fn hub_answers_to_anthropic_clients() {
    for (case, path) in fixtures("responses", "openai_") {
        insta::assert_json_snapshot!(
            format!("response.{case}.anthropic"),
            anthropic_openai::response(&read_json(&path))
        );
    }
}

/// Feeds a recorded stream through a provider's decoder, as the proxy does, and lists the chunks.
fn decode(api: Api, raw: &[u8]) -> Vec<Value> {
    let provider = providers::for_api(api).expect("a provider");
    let mut decoder = provider.stream_decoder(ClientApi::OpenAI, "m");
    let (mut parser, mut events, mut chunks) = (SseParser::default(), Vec::new(), Vec::new());
    parser.push(raw, &mut events).expect("well-formed fixture");
    for event in events {
        decoder.decode(event, &mut chunks);
    }
    decoder.end(&mut chunks);
    chunks
        .into_iter()
        .map(|chunk| match chunk {
            Chunk::Data { json, commits, usage, usage_only } => {
                let mut data: Value = serde_json::from_slice(&json).expect("hub chunks are JSON");
                scrub(&mut data);
                json!({"chunk": data, "commits": commits, "usage_only": usage_only, "usage": usage.map(|u| format!("{u:?}"))})
            }
            Chunk::Raw { .. } => json!("RAW"),
            Chunk::Done => json!("DONE"),
            Chunk::Error(e) => json!({"error": e.class.as_str()}),
        })
        .collect()
}

#[test]
fn provider_streams_to_hub_chunks() {
    for (case, path) in fixtures("streams", "anthropic_") {
        insta::assert_json_snapshot!(
            format!("stream.{case}.openai"),
            decode(Api::Anthropic, &std::fs::read(&path).unwrap())
        );
    }
    for (case, path) in fixtures("streams", "gemini_") {
        insta::assert_json_snapshot!(
            format!("stream.{case}.openai"),
            decode(Api::Gemini, &std::fs::read(&path).unwrap())
        );
    }
}

#[test]
fn hub_streams_to_anthropic_events() {
    for (case, path) in fixtures("streams", "openai_") {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut encoder = anthropic_openai::StreamEncoder::default();
        let mut out = Vec::new();
        for data in text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
        {
            encoder.chunk(&serde_json::from_str(data).unwrap(), &mut out);
        }
        encoder.finish(&mut out);
        let events: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                json!({"event": name.trim_start_matches("event: "), "data": serde_json::from_str::<Value>(data.trim_start_matches("data: ")).unwrap()})
            })
            .collect();
        insta::assert_json_snapshot!(format!("stream.{case}.anthropic"), events);
    }
}

/// Embeddings both ways through Gemini (`api: OpenAI` targets get the client's body with only
/// `model` replaced, so there is nothing to snapshot): each `request_*` fixture as the
/// `batchEmbedContents` body it becomes, and its `gemini_*` answer as the OpenAI list the client
/// gets. The prompt-token count is the proxy's (its tokenizer's), given here as a fixed number.
#[test]
fn embeddings_to_gemini_and_back() {
    use super::embeddings::{self, Input};
    for (case, path) in fixtures("embeddings", "request_") {
        let bytes = std::fs::read(&path).expect("fixture");
        let request = embeddings::parse(&bytes).expect("valid fixture");
        let Input::Texts(texts) = &request.input else {
            panic!("{case}: Gemini embeds text only")
        };
        insta::assert_json_snapshot!(
            format!("embeddings.{case}.gemini"),
            embeddings::gemini_request("text-embedding-004", texts, request.dimensions)
        );
        let answer_path =
            path.with_file_name(format!("{}.json", case.replacen("request_", "gemini_", 1)));
        let answer = read_json(&answer_path);
        let openai = embeddings::gemini_response(
            &answer,
            texts.len(),
            "text-embedding-004",
            request.base64,
            42,
        )
        .expect("an answer with one embedding per input");
        insta::assert_json_snapshot!(format!("embeddings.{case}.openai"), openai);
    }
}
