//! Focused tests of the Responses conversions: what is refused and why, and the stream's item
//! bookkeeping. The mappings themselves are golden snapshots (`mod golden` below).

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
                responses::response(&json_file(&path), &responses::Echo::default())
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
            .stream_decoder(ClientApi::Responses, "m");
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
            .map(|hub| responses::response(&hub, &responses::Echo::default()));
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
            ("responses_api/gemini_tool_call.sse", Api::Gemini),
        ]
    }

    #[test]
    fn random_splits_never_change_the_responses_events() {
        for (name, api) in cases() {
            let bytes = fixture(name);
            let (whole, answer) = run(api, &bytes, None);
            super::stream_items::check_invariants(&events(&whole));
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
            if name.contains("gemini_tool_call") {
                // The thought signature rides on the call item, streamed or not.
                let call = &data["response"]["output"][1];
                assert_eq!(call["type"], "function_call", "{data}");
                assert_eq!(
                    call["extra_content"]["google"]["thought_signature"],
                    "CiQBVKhc7wAbc123=="
                );
            }
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

// === Stream item bookkeeping: ids, indexes and the final Response ===

mod stream_items {
    use serde_json::{Value, json};

    use super::golden::events;
    use crate::convert::responses::{self, Echo};
    use crate::convert::responses_stream::StreamEncoder;

    fn chunk(delta: Value, finish: Option<&str>) -> Value {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    fn call(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
        let mut call = json!({"index": index, "function": {"arguments": arguments}});
        if let Some(id) = id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        if let Some(name) = name {
            call["function"]["name"] = json!(name);
        }
        json!({"tool_calls": [call]})
    }

    fn encode(chunks: &[Value]) -> Vec<(String, Value)> {
        let mut encoder = StreamEncoder::default();
        let mut out = Vec::new();
        for c in chunks {
            encoder.chunk(c, &mut out);
        }
        encoder.finish(&mut out);
        events(&out)
    }

    /// What an SDK's accumulator checks: each item added once at the next output index, every
    /// delta and `done` naming an added item by its id and index, each item done once with the
    /// id it was added with, and the final Response's output being the items as done.
    pub(super) fn check_invariants(events: &[(String, Value)]) -> Value {
        let mut added: Vec<Value> = Vec::new();
        let mut done: Vec<Option<Value>> = Vec::new();
        let mut last = Value::Null;
        for (n, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["sequence_number"], n as u64, "{name}");
            match name.as_str() {
                "response.output_item.added" => {
                    assert_eq!(data["output_index"], added.len() as u64, "{data}");
                    let id = &data["item"]["id"];
                    assert!(added.iter().all(|a| &a["id"] != id), "id {id} reused");
                    added.push(data["item"].clone());
                    done.push(None);
                }
                "response.output_item.done" => {
                    let at = data["output_index"].as_u64().unwrap() as usize;
                    assert_eq!(added[at]["id"], data["item"]["id"], "{data}");
                    assert_eq!(added[at]["call_id"], data["item"]["call_id"], "{data}");
                    assert!(done[at].is_none(), "item {at} done twice");
                    done[at] = Some(data["item"].clone());
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    last = data["response"].clone();
                }
                kind if kind.ends_with(".delta") || kind.ends_with(".done") => {
                    let at = data["output_index"].as_u64().unwrap() as usize;
                    assert_eq!(added[at]["id"], data["item_id"], "{name}: {data}");
                    assert!(done[at].is_none(), "{name} after the item's done");
                }
                _ => {}
            }
        }
        let done: Vec<Value> = done
            .into_iter()
            .map(|d| d.expect("every item done"))
            .collect();
        assert_eq!(
            last["output"],
            Value::Array(done),
            "final output = items done"
        );
        last
    }

    /// The non-streamed Response of the same answer, for comparison.
    fn whole(message: Value, finish: &str) -> Value {
        responses::response(
            &json!({"id": "chatcmpl-s", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}]}),
            &Echo::default(),
        )
    }

    #[test]
    fn text_after_a_tool_call_stays_in_the_one_message_item() {
        let events = encode(&[
            chunk(json!({"content": "Let me "}), None),
            chunk(call(0, Some("call_a"), Some("f"), "{}"), None),
            chunk(json!({"content": "check."}), None),
            chunk(json!({}), Some("tool_calls")),
        ]);
        let response = check_invariants(&events);
        let output = response["output"].as_array().unwrap();
        assert_eq!(output.len(), 2, "{output:?}");
        assert_eq!(output[0]["content"][0]["text"], "Let me check.");
        let expected = whole(
            json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function",
                 "function": {"name": "f", "arguments": "{}"}}]}),
            "tool_calls",
        );
        assert_eq!(response["output"], expected["output"]);
    }

    #[test]
    fn deltas_back_to_an_earlier_call_append_to_its_item() {
        let events = encode(&[
            chunk(call(0, Some("call_a"), Some("f"), "{\"a\":"), None),
            chunk(call(1, Some("call_b"), Some("g"), "{\"b\":"), None),
            chunk(call(0, None, None, "1}"), None),
            chunk(call(1, None, None, "2}"), None),
            chunk(json!({}), Some("tool_calls")),
        ]);
        let response = check_invariants(&events);
        let added = events
            .iter()
            .filter(|(n, _)| n == "response.output_item.added")
            .count();
        assert_eq!(added, 2);
        let output = response["output"].as_array().unwrap();
        assert_eq!(output.len(), 2);
        assert_eq!(output[0]["id"], "fc_s_0");
        assert_eq!(output[0]["arguments"], "{\"a\":1}");
        assert_eq!(output[1]["arguments"], "{\"b\":2}");
        // The late delta of call 0 names call 0's item and index.
        let late = events
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .nth(2)
            .unwrap();
        assert_eq!(late.1["item_id"], "fc_s_0");
        assert_eq!(late.1["output_index"], 0);
    }

    #[test]
    fn a_calls_id_and_name_may_come_in_a_later_delta() {
        let events = encode(&[
            chunk(call(0, None, None, "{\"q\":"), None),
            chunk(call(0, Some("call_late"), None, ""), None),
            chunk(call(0, None, Some("search"), "1}"), None),
            chunk(json!({}), Some("tool_calls")),
        ]);
        let response = check_invariants(&events);
        let (_, added) = events
            .iter()
            .find(|(n, _)| n == "response.output_item.added")
            .unwrap();
        assert_eq!(added["item"]["call_id"], "call_late");
        assert_eq!(added["item"]["name"], "search");
        assert_eq!(response["output"][0]["call_id"], "call_late");
        assert_eq!(response["output"][0]["name"], "search");
        assert_eq!(response["output"][0]["arguments"], "{\"q\":1}");
    }

    #[test]
    fn a_call_cut_off_by_the_token_limit_is_incomplete() {
        let events = encode(&[
            chunk(call(0, Some("call_a"), Some("f"), "{\"a\":"), None),
            chunk(json!({}), Some("length")),
        ]);
        let response = check_invariants(&events);
        assert_eq!(events.last().unwrap().0, "response.incomplete");
        assert_eq!(response["output"][0]["status"], "incomplete");
        let expected = whole(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function",
                 "function": {"name": "f", "arguments": "{\"a\":"}}]}),
            "length",
        );
        assert_eq!(expected["output"][0]["status"], "incomplete");
        assert_eq!(response["output"], expected["output"]);
    }

    #[test]
    fn a_refusal_is_a_refusal_part_streamed_or_not() {
        let events = encode(&[
            chunk(json!({"refusal": "I can't "}), None),
            chunk(json!({"refusal": "help with that."}), None),
            chunk(json!({}), Some("stop")),
        ]);
        let response = check_invariants(&events);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"response.refusal.delta"), "{names:?}");
        assert!(names.contains(&"response.refusal.done"), "{names:?}");
        let part = json!({"type": "refusal", "refusal": "I can't help with that."});
        assert_eq!(response["output"][0]["content"], json!([part]));
        let expected = whole(
            json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
            "stop",
        );
        assert_eq!(expected["output"][0]["content"], json!([part]));
        assert_eq!(response["output"], expected["output"]);
    }

    #[test]
    fn answers_without_an_upstream_id_get_distinct_ids() {
        let answer = |id: Option<&str>| {
            let mut hub = json!({"object": "chat.completion", "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]});
            if let Some(id) = id {
                hub["id"] = json!(id);
            }
            responses::response(&hub, &Echo::default())
        };
        for id in [None, Some("")] {
            let (a, b) = (answer(id), answer(id));
            assert_ne!(a["id"], b["id"], "{id:?}");
            assert_ne!(a["output"][0]["id"], b["output"][0]["id"], "{id:?}");
            assert!(a["id"].as_str().unwrap().starts_with("resp_"));
        }
        assert_eq!(answer(Some("chatcmpl-x1"))["id"], "resp_x1");
        let mut first = StreamEncoder::default();
        let mut second = StreamEncoder::default();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        first.finish(&mut one);
        second.finish(&mut two);
        assert_ne!(
            events(&one)[0].1["response"]["id"],
            events(&two)[0].1["response"]["id"]
        );
    }

    #[test]
    fn usage_totals_saturate() {
        let hub = json!({"id": "chatcmpl-u", "model": "m", "choices": [],
            "usage": {"prompt_tokens": u64::MAX, "completion_tokens": 5}});
        let response = responses::response(&hub, &Echo::default());
        assert_eq!(response["usage"]["total_tokens"], u64::MAX);
    }

    #[test]
    fn a_gemini_thought_signature_rides_on_the_call_and_back() {
        let events = encode(&[
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "c", "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                    "extra_content": {"google": {"thought_signature": "sig=="}}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]);
        let response = check_invariants(&events);
        let item = &response["output"][0];
        assert_eq!(
            item["extra_content"]["google"]["thought_signature"],
            "sig=="
        );
        // The client sends the item back as input: the hub call carries the signature again.
        let mut back = item.clone();
        back.as_object_mut().unwrap().remove("status");
        let hub = responses::request(
            json!({"model": "m", "input": [{"role": "user", "content": "x"}, back,
                {"type": "function_call_output", "call_id": "c", "output": "ok"}]})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            hub["messages"][1]["tool_calls"][0]["extra_content"]["google"]["thought_signature"],
            "sig=="
        );
    }

    #[test]
    fn responses_echo_the_requests_fields_streamed_or_not() {
        let request = json!({"model": "m", "input": "x", "instructions": "Be brief.",
            "tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
            "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 64,
            "parallel_tool_calls": false, "metadata": {"k": "v"},
            "text": {"format": {"type": "json_object"}}, "store": false});
        let echo = Echo::new(request.as_object().unwrap());
        let check = |response: &Value| {
            for key in [
                "instructions",
                "tools",
                "tool_choice",
                "temperature",
                "top_p",
                "max_output_tokens",
                "parallel_tool_calls",
                "metadata",
                "text",
            ] {
                assert_eq!(response[key], request[key], "{key}");
            }
            assert_eq!(response["store"], false);
        };
        let mut encoder = StreamEncoder::new(echo.clone());
        let mut out = Vec::new();
        encoder.chunk(&chunk(json!({"content": "{}"}), Some("stop")), &mut out);
        encoder.finish(&mut out);
        let events = events(&out);
        check(&events[0].1["response"]);
        check(&check_invariants(&events));
        let whole = responses::response(
            &json!({"id": "chatcmpl-s", "model": "m", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}]}),
            &echo,
        );
        check(&whole);
        // Without a request the defaults OpenAI echoes for fields left out.
        let bare = responses::response(&json!({"choices": []}), &Echo::default());
        assert_eq!(bare["tools"], json!([]));
        assert_eq!(bare["tool_choice"], "auto");
    }
}
