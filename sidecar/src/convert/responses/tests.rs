//! Focused tests of the Responses request conversion: what is refused and why. The mappings
//! themselves are golden snapshots (`golden_tests.rs`).

use serde_json::{Map, Value, json};

use super::*;

fn body(value: Value) -> Map<String, Value> {
    value.as_object().expect("an object").clone()
}

#[test]
fn stateful_features_are_refused_with_the_reason() {
    for (field, value, says) in [
        (
            "previous_response_id",
            json!("resp_1"),
            "`previous_response_id`",
        ),
        ("conversation", json!("conv_1"), "`conversation`"),
        ("store", json!(true), "`store: true`"),
        ("background", json!(true), "`background: true`"),
        ("prompt", json!({"id": "pmpt_1"}), "`prompt`"),
        ("tools", json!([{"type": "web_search"}]), "\"web_search\""),
    ] {
        let mut request = body(json!({"model": "m", "input": "hi"}));
        request.insert(field.into(), value);
        let why = stateful(&request).unwrap_or_else(|| panic!("{field} is refused"));
        assert!(why.contains(says), "{why}");
    }
    let referenced =
        body(json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}));
    assert!(stateful(&referenced).unwrap().contains("item_reference"));
    let plain = body(
        json!({"model": "m", "input": "hi", "store": false, "previous_response_id": null,
        "tools": [{"type": "function", "name": "f"}]}),
    );
    assert_eq!(stateful(&plain), None);
}

#[test]
fn malformed_input_is_a_clear_error() {
    let err = |v: Value| request(&body(v)).unwrap_err();
    assert!(err(json!({"model": "m"})).contains("`input` is required"));
    assert!(err(json!({"model": "m", "input": 7})).contains("string or an array"));
    assert!(err(json!({"model": "m", "input": [7]})).contains("input[0] must be an object"));
    assert!(
        err(json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]}))
            .contains("\"wizard\"")
    );
    assert!(
        err(json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}))
            .contains("call_id")
    );
    assert!(
        err(json!({"model": "m", "input": [{"type": "computer_call"}]})).contains("computer_call")
    );
    assert!(err(json!({"model": "m", "input": "x", "instructions": 3})).contains("`instructions`"));
    assert!(
        err(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}))
            .contains("`name`")
    );
    assert!(
        err(json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search"}}))
            .contains("tool_choice")
    );
    assert!(err(json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]})).contains("file_id"));
}

#[test]
fn function_calls_join_the_assistant_turn_before_them() {
    let hub = request(&body(json!({"model": "m", "input": [
        {"role": "user", "content": "weather?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"city\":\"Rome\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
    ]}))).unwrap();
    let messages = hub["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert_eq!(messages[1]["content"], "Checking.");
    assert_eq!(messages[1]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(messages[3]["content"], "rain");
}

// === Golden snapshots (testdata/responses_api, and the hub fixtures of the other directions) ===

mod golden {
    use std::path::{Path, PathBuf};

    use serde_json::{Value, json};

    use crate::convert::responses_stream::StreamEncoder;
    use crate::convert::{openai_anthropic, openai_gemini, responses};

    fn testdata(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/convert/testdata")
            .join(rel)
    }

    fn cases(prefix: &str, ext: &str) -> Vec<(String, PathBuf)> {
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(testdata("responses_api"))
            .expect("fixture dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_string();
                stem.starts_with(prefix).then_some((stem, p))
            })
            .collect();
        found.sort();
        assert!(!found.is_empty(), "no {prefix}*.{ext} fixtures");
        found
    }

    fn json_file(path: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
    }

    #[test]
    fn responses_requests_to_the_hub_and_on_to_each_provider() {
        for (case, path) in cases("request_", "json") {
            let body = json_file(&path).as_object().cloned().unwrap();
            assert_eq!(responses::stateful(&body), None, "{case} is translatable");
            let hub = responses::request(&body).expect("valid fixture");
            insta::assert_json_snapshot!(format!("{case}.hub"), hub);
            let stream = hub.get("stream").and_then(Value::as_bool).unwrap_or(false);
            insta::assert_json_snapshot!(
                format!("{case}.anthropic"),
                openai_anthropic::request(&hub, "claude-sonnet-4", stream)
            );
            insta::assert_json_snapshot!(format!("{case}.gemini"), openai_gemini::request(&hub));
        }
    }

    #[test]
    fn hub_answers_to_response_objects() {
        let mut answers = cases("answer_", "json");
        answers.push((
            "openai_tool_calls".into(),
            testdata("responses/openai_tool_calls.json"),
        ));
        for (case, path) in answers {
            insta::assert_json_snapshot!(
                format!("{case}.response"),
                responses::response(&json_file(&path))
            );
        }
    }

    /// The hub chunks of a recorded stream, as the encoder gets them.
    fn chunks(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// Events as (`event:` name, data) pairs; panics on anything but `event:` + `data:` frames.
    pub(super) fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').expect("two lines");
                let name = name.strip_prefix("event: ").expect("event line");
                let data = data.strip_prefix("data: ").expect("data line");
                (
                    name.to_string(),
                    serde_json::from_str(data).expect("JSON data"),
                )
            })
            .collect()
    }

    #[test]
    fn hub_streams_to_responses_events() {
        let mut streams = cases("stream_", "sse");
        streams.push((
            "openai_tool_calls".into(),
            testdata("streams/openai_tool_calls.sse"),
        ));
        for (case, path) in streams {
            let mut encoder = StreamEncoder::default();
            let mut out = Vec::new();
            for chunk in chunks(&path) {
                encoder.chunk(&chunk, &mut out);
            }
            encoder.finish(&mut out);
            let events = events(&out);
            for (n, (name, data)) in events.iter().enumerate() {
                assert_eq!(data["type"], name.as_str(), "{case}: type matches event");
                assert_eq!(
                    data["sequence_number"], n as u64,
                    "{case}: numbered in order"
                );
            }
            let listed: Vec<Value> = events
                .into_iter()
                .map(|(event, data)| json!({"event": event, "data": data}))
                .collect();
            insta::assert_json_snapshot!(format!("{case}.events"), listed);
        }
    }

    #[test]
    fn a_failure_after_the_commit_is_response_failed_with_the_items_so_far() {
        let mut encoder = StreamEncoder::default();
        let mut out = Vec::new();
        for chunk in chunks(&testdata("responses_api/stream_text_then_tool.sse"))
            .iter()
            .take(4)
        {
            encoder.chunk(chunk, &mut out);
        }
        let before = events(&out).len();
        let mut last = Vec::new();
        encoder.failed("upstream_timeout", "stalled", &mut last);
        let failed = events(&last);
        assert_eq!(failed.len(), 1);
        let (name, data) = &failed[0];
        assert_eq!(name, "response.failed");
        assert_eq!(data["sequence_number"], before as u64);
        assert_eq!(data["response"]["status"], "failed");
        assert_eq!(data["response"]["error"]["code"], "upstream_timeout");
        assert_eq!(
            data["response"]["output"][0]["content"][0]["text"],
            "Let me check."
        );
    }
}

// === Random splits (as `robustness_tests.rs` does for the other client formats) ===

mod robustness {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::Value;
    use switchyard_crds::v1alpha1::Api;

    use super::golden::events;
    use crate::convert::ClientApi;
    use crate::convert::assemble::Assembler;
    use crate::convert::responses;
    use crate::convert::sse::SseParser;
    use crate::convert::to_client::ClientEncoder;
    use crate::providers::{self, Chunk};

    const ROUNDS: u64 = 200;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/src/convert/testdata/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    /// A provider stream fed in random pieces (none when `rng` is `None`) through the parser,
    /// the provider's decoder and the Responses encoder: the client's events, and the hub
    /// chunks' answer assembled as a non-streaming client's would be.
    fn run(api: Api, bytes: &[u8], rng: Option<&mut StdRng>) -> (Vec<u8>, Option<Value>) {
        let mut parser = SseParser::new(64 * 1024);
        let mut decoder = providers::for_api(api)
            .expect("provider")
            .stream_decoder(ClientApi::Responses);
        let mut encoder = ClientEncoder::new(ClientApi::Responses, true);
        let mut hub = ClientEncoder::new(ClientApi::OpenAI, true);
        let mut assembler = Assembler::new(ClientApi::Responses);
        let (mut parsed, mut chunks, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let mut pieces = Vec::new();
        match rng {
            None => pieces.push(bytes),
            Some(rng) => {
                let mut at = 0;
                while at < bytes.len() {
                    let take = rng.random_range(1..=(bytes.len() - at).min(48));
                    pieces.push(&bytes[at..at + take]);
                    at += take;
                }
            }
        }
        for piece in pieces {
            if parser.push(piece, &mut parsed).is_err() {
                return (out, None);
            }
            for event in parsed.drain(..) {
                decoder.decode(event, &mut chunks);
            }
        }
        decoder.end(&mut chunks);
        let mut clean = false;
        for chunk in chunks {
            match chunk {
                Chunk::Data {
                    json, usage_only, ..
                } => {
                    out.extend(encoder.chunk(&json, usage_only));
                    let _ = assembler.push(&hub.chunk(&json, usage_only));
                }
                Chunk::Done => {
                    out.extend(encoder.done());
                    let _ = assembler.push(&hub.done());
                    clean = true;
                    break;
                }
                Chunk::Raw { .. } | Chunk::Error(_) => return (out, None),
            }
        }
        let whole = clean
            .then(|| assembler.finish().ok())
            .flatten()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|hub| responses::response(&hub));
        (out, whole)
    }

    /// Events with the clock (which converters of other protocols read) taken out.
    fn timeless(out: &[u8]) -> Vec<(String, Value)> {
        let mut events = events(out);
        for (_, data) in &mut events {
            if let Some(response) = data.get_mut("response") {
                response["created_at"] = Value::Null;
            }
        }
        events
    }

    fn cases() -> Vec<(&'static str, Api)> {
        vec![
            ("streams/anthropic_tool_use.sse", Api::Anthropic),
            ("streams/gemini_text.sse", Api::Gemini),
            ("streams/openai_tool_calls.sse", Api::OpenAI),
            ("responses_api/stream_text_then_tool.sse", Api::OpenAI),
            ("responses_api/stream_text_length.sse", Api::OpenAI),
        ]
    }

    #[test]
    fn random_splits_never_change_the_responses_events() {
        for (name, api) in cases() {
            let bytes = fixture(name);
            let (whole, answer) = run(api, &bytes, None);
            let expected = timeless(&whole);
            let (last, data) = expected.last().expect("events");
            assert!(
                last == "response.completed" || last == "response.incomplete",
                "{name}: {last}"
            );
            // The streamed Response is the one a non-streaming client gets, id and all.
            let mut answer = answer.expect("a clean end assembles");
            answer["created_at"] = Value::Null;
            assert_eq!(data["response"]["output"], answer["output"], "{name}");
            assert_eq!(data["response"]["id"], answer["id"], "{name}");
            assert_eq!(data["response"]["status"], answer["status"], "{name}");
            for seed in 0..ROUNDS {
                let mut rng = StdRng::seed_from_u64(seed);
                let (split, _) = run(api, &bytes, Some(&mut rng));
                assert_eq!(timeless(&split), expected, "{name}, seed {seed}");
            }
        }
    }

    #[test]
    fn mutated_streams_never_panic_the_responses_encoder() {
        for (name, api) in cases() {
            let bytes = fixture(name);
            for seed in 0..ROUNDS {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut mutated = bytes.clone();
                for _ in 0..rng.random_range(1..6) {
                    let i = rng.random_range(0..mutated.len());
                    mutated[i] = rng.random();
                }
                if rng.random_bool(0.3) {
                    mutated.truncate(rng.random_range(0..mutated.len()));
                }
                let _ = run(api, &mutated, Some(&mut rng));
            }
        }
    }
}
