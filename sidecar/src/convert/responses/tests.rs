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
    pub(crate) fn events(bytes: &[u8]) -> Vec<(String, Value)> {
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
