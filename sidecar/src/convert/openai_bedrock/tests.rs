//! Chat Completions ↔ Converse: the rules in the module doc one by one, golden snapshots of the
//! shared request fixtures as Converse bodies and of Converse answers and ConverseStream event
//! sequences (`testdata/bedrock/`) as OpenAI and Anthropic answers, and the stream decoder fed
//! real event-stream frames in random splits. `INSTA_UPDATE=always cargo test -p
//! switchyard-sidecar openai_bedrock` rewrites the snapshots (`convert/snapshots/*bedrock*`).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::convert::eventstream::{EventStreamParser, frame};
use crate::convert::{ClientApi, anthropic_openai, to_client};
use crate::providers::{self, Chunk};
use switchyard_crds::v1alpha1::{Api, FailureClass};

const CREATED: u64 = 1_700_000_000;

fn hub(value: Value) -> Map<String, Value> {
    value.as_object().expect("an object").clone()
}

fn testdata(dir: &str) -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/convert/testdata")
        .join(dir);
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&root)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "fixtures in {}", root.display());
    found
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

/// Snapshots live with the other converters' in `convert/snapshots/`.
fn snapshots(test: impl FnOnce()) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(test);
}

// === requests ===

#[test]
fn system_and_developer_messages_become_system_blocks() {
    let out = request(&hub(json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "hi"},
    ]})));
    assert_eq!(
        out["system"],
        json!([{"text": "Be brief."}, {"text": "Use metric units."}])
    );
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [{"text": "hi"}]}])
    );
    assert!(out.get("inferenceConfig").is_none() && out.get("toolConfig").is_none());
}

#[test]
fn consecutive_turns_of_one_role_are_merged_and_tool_results_go_in_the_user_turn() {
    let out = request(&hub(json!({"messages": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        {"role": "tool", "tool_call_id": "c2", "content": "r2"},
        {"role": "user", "content": "thanks"},
    ], "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "g"}}]})));
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(
        messages[0]["content"],
        json!([{"text": "one"}, {"text": "two"}])
    );
    assert_eq!(
        messages[1]["content"],
        json!([
            {"toolUse": {"toolUseId": "c1", "name": "f", "input": {"a": 1}}},
            {"toolUse": {"toolUseId": "c2", "name": "g", "input": {}}},
        ]),
        "a blank assistant text is left out; empty arguments are an empty object"
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(
        messages[2]["content"],
        json!([
            {"toolResult": {"toolUseId": "c1", "content": [{"text": "r1"}]}},
            {"toolResult": {"toolUseId": "c2", "content": [{"text": "r2"}]}},
            {"text": "thanks"},
        ])
    );
}

#[test]
fn data_url_images_become_bytes_and_links_are_dropped() {
    let out = request(&hub(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,SUkqAA=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]}]})));
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"text": "look"},
            {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
            {"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}},
        ])
    );
}

#[test]
fn inference_config_takes_the_newer_token_limit_and_every_stop_sequence() {
    let out = request(&hub(json!({"messages": [{"role": "user", "content": "x"}],
        "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.2, "top_p": 0.5,
        "stop": "END", "seed": 1, "n": 1, "presence_penalty": 0.3})));
    assert_eq!(
        out["inferenceConfig"],
        json!({"maxTokens": 20, "temperature": 0.2, "topP": 0.5, "stopSequences": ["END"]})
    );
    let many = request(&hub(json!({"messages": [{"role": "user", "content": "x"}],
        "stop": ["a", "b"]})));
    assert_eq!(
        many["inferenceConfig"],
        json!({"stopSequences": ["a", "b"]})
    );
}

#[test]
fn tool_choice_maps_to_auto_any_tool_or_no_tools() {
    let tools = json!([{"type": "function", "function": {"name": "f", "description": "",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}]);
    let with = |choice: Value, messages: Value| {
        request(&hub(
            json!({"messages": messages, "tools": tools, "tool_choice": choice}),
        ))
    };
    let ask = json!([{"role": "user", "content": "x"}]);
    let config = with(json!("auto"), ask.clone());
    assert_eq!(config["toolConfig"]["toolChoice"], json!({"auto": {}}));
    assert_eq!(
        config["toolConfig"]["tools"][0],
        json!({"toolSpec": {"name": "f", "inputSchema": {"json":
            {"type": "object", "properties": {"x": {"type": "string"}}}}}}),
        "an empty description is left out"
    );
    assert_eq!(
        with(json!("required"), ask.clone())["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    let named = json!({"type": "function", "function": {"name": "f"}});
    assert_eq!(
        with(named, ask.clone())["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    assert!(with(json!("none"), ask).get("toolConfig").is_none());
    // With tool blocks in the history Converse needs the tools, so "none" keeps them unforced.
    let history = json!([
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]);
    let kept = with(json!("none"), history);
    assert!(kept["toolConfig"]["tools"].is_array());
    assert!(kept["toolConfig"].get("toolChoice").is_none());
}

#[test]
fn response_format_becomes_a_system_instruction() {
    let out = request(&hub(json!({"messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}})));
    assert_eq!(
        out["system"],
        json!([{"text": "Respond with a single JSON object and nothing else."}])
    );
    let schema = request(&hub(json!({"messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s",
            "schema": {"type": "object"}}}})));
    let text = schema["system"][0]["text"].as_str().unwrap();
    assert!(text.contains(r#"{"type":"object"}"#), "{text}");
}

#[test]
fn hub_requests_to_converse_bodies() {
    snapshots(|| {
        for (case, path) in testdata("requests") {
            let body = request(&hub(read_json(&path)));
            insta::assert_json_snapshot!(format!("bedrock_request.{case}"), body);
        }
    });
}

// === answers ===

#[test]
fn stop_reasons_become_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
    ] {
        assert_eq!(finish_reason(stop), finish, "{stop}");
    }
}

#[test]
fn usage_counts_cache_reads_and_writes_as_prompt_tokens() {
    let u = usage(
        &json!({"inputTokens": 12, "outputTokens": 9, "cacheReadInputTokens": 30,
                          "cacheWriteInputTokens": 10}),
    );
    assert_eq!((u.input, u.cached_input, u.output), (52, 30, 9));
    let none = usage(&Value::Null);
    assert_eq!((none.input, none.cached_input, none.output), (0, 0, 0));
}

#[test]
fn an_answer_without_an_output_message_is_not_a_converse_answer() {
    assert!(response(&json!({"message": "Too many requests"}), "id", "m", 0).is_none());
    assert!(
        response(
            &json!({"output": {"message": {"content": "x"}}}),
            "id",
            "m",
            0
        )
        .is_none()
    );
}

#[test]
fn converse_answers_to_openai_and_anthropic_clients() {
    snapshots(|| {
        for (case, path) in testdata("bedrock") {
            if !case.starts_with("converse_") {
                continue;
            }
            let (hub, usage) = response(&read_json(&path), "chatcmpl-bedrock", "", CREATED)
                .expect("a Converse answer");
            insta::assert_json_snapshot!(
                format!("bedrock_response.{case}.openai"),
                json!({"completion": hub, "usage": format!("{usage:?}")})
            );
            let anthropic: Value =
                serde_json::from_slice(&to_client::answer(ClientApi::Anthropic, &hub)).unwrap();
            insta::assert_json_snapshot!(format!("bedrock_response.{case}.anthropic"), anthropic);
        }
    });
}

// === streams ===

/// A fixture's events as event-stream frames, back to back.
fn frames(path: &Path) -> Vec<u8> {
    let events = read_json(path);
    let mut out = Vec::new();
    for event in events.as_array().expect("a list of [type, payload]") {
        let headers = [
            (":event-type", event[0].as_str().unwrap()),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ];
        out.extend(frame(&headers, event[1].to_string().as_bytes()));
    }
    out
}

/// Bytes through the event-stream parser and the Bedrock decoder, `cuts` splitting them.
fn decode(bytes: &[u8], cuts: &[usize]) -> Vec<Chunk> {
    let provider = providers::for_api(Api::Bedrock).unwrap();
    let mut decoder = provider.stream_decoder(ClientApi::OpenAI, "m");
    let (mut parser, mut events, mut chunks) =
        (EventStreamParser::default(), Vec::new(), Vec::new());
    let mut start = 0;
    for &cut in cuts.iter().chain([&bytes.len()]) {
        let cut = cut.clamp(start, bytes.len());
        parser
            .push(&bytes[start..cut], &mut events)
            .expect("well-formed frames");
        start = cut;
    }
    for event in events {
        decoder.decode(event, &mut chunks);
    }
    decoder.end(&mut chunks);
    chunks
}

/// Chunks as JSON, ids and `created` fixed (the decoder invents them).
fn describe(chunks: Vec<Chunk>) -> Vec<Value> {
    chunks
        .into_iter()
        .map(|chunk| match chunk {
            Chunk::Data {
                json,
                commits,
                usage,
                usage_only,
            } => {
                let mut data: Value = serde_json::from_slice(&json).unwrap();
                data["id"] = json!("chatcmpl-bedrock");
                data["created"] = json!(0);
                json!({"chunk": data, "commits": commits, "usage_only": usage_only,
                       "usage": usage.map(|u| format!("{u:?}"))})
            }
            Chunk::Raw { .. } => json!("RAW"),
            Chunk::Done => json!("DONE"),
            Chunk::Error(e) => json!({"error": e.class.as_str()}),
        })
        .collect()
}

#[test]
fn converse_streams_to_openai_chunks_and_anthropic_events() {
    snapshots(|| {
        for (case, path) in testdata("bedrock") {
            if !case.starts_with("stream_") {
                continue;
            }
            let chunks = describe(decode(&frames(&path), &[]));
            let mut encoder = anthropic_openai::StreamEncoder::default();
            let mut out = Vec::new();
            for chunk in &chunks {
                if let Some(data) = chunk.get("chunk") {
                    encoder.chunk(data, &mut out);
                }
            }
            encoder.finish(&mut out);
            let events: Vec<Value> = String::from_utf8(out)
                .unwrap()
                .split("\n\n")
                .filter(|e| !e.is_empty())
                .map(|e| {
                    let (name, data) = e.split_once('\n').unwrap();
                    json!({"event": name.trim_start_matches("event: "),
                           "data": serde_json::from_str::<Value>(data.trim_start_matches("data: ")).unwrap()})
                })
                .collect();
            insta::assert_json_snapshot!(format!("bedrock_stream.{case}.openai"), chunks);
            insta::assert_json_snapshot!(format!("bedrock_stream.{case}.anthropic"), events);
        }
    });
}

#[test]
fn a_tool_stream_keeps_each_tool_at_its_own_index() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/convert/testdata/bedrock/stream_tool_use.json");
    let chunks = describe(decode(&frames(&path), &[]));
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/chunk/choices/0/delta/tool_calls/0"))
        .collect();
    let indexes: Vec<u64> = calls.iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 0, 0, 1, 1]);
    assert_eq!(calls[0]["id"], "tooluse_A1");
    assert_eq!(calls[3]["id"], "tooluse_B2");
    assert_eq!(chunks.last(), Some(&json!("DONE")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_splits_decode_to_the_same_chunks(
        mut cuts in proptest::collection::vec(0usize..2_000, 0..12),
        tools in any::<bool>(),
    ) {
        let name = if tools { "stream_tool_use.json" } else { "stream_text.json" };
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/convert/testdata/bedrock").join(name);
        let bytes = frames(&path);
        cuts.sort_unstable();
        prop_assert_eq!(describe(decode(&bytes, &cuts)), describe(decode(&bytes, &[])));
    }
}

// --- Filtered answers --------------------------------------------------------------------------

/// ConverseStream events through the converter alone.
fn events(list: &[(&str, Value)]) -> Vec<Decoded> {
    let mut d = StreamDecoder::new("id".into(), "m".into(), 0);
    list.iter()
        .map(|(kind, data)| d.event(kind, data))
        .collect()
}

#[test]
fn a_stream_a_filter_stops_before_content_is_a_failure() {
    for (reason, message) in [
        ("guardrail_intervened", "Bedrock guardrail intervened"),
        (
            "content_filtered",
            "Bedrock's content filter stopped the answer",
        ),
    ] {
        let decoded = events(&[
            ("messageStart", json!({"role": "assistant"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": ""}}),
            ),
            ("messageStop", json!({"stopReason": reason})),
        ]);
        assert_eq!(
            decoded,
            [
                Decoded::Nothing,
                Decoded::Nothing,
                Decoded::Filtered(message.into())
            ],
            "the role is held, so nothing commits before the failure"
        );
    }
    // Through the provider's decoder: no chunk that commits, then a ContentFiltered error.
    let bytes: Vec<u8> = [
        ("messageStart", json!({"role": "assistant"})),
        ("messageStop", json!({"stopReason": "guardrail_intervened"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 3, "outputTokens": 0}}),
        ),
    ]
    .iter()
    .flat_map(|(kind, data)| {
        frame(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            data.to_string().as_bytes(),
        )
    })
    .collect();
    match &decode(&bytes, &[])[..] {
        [Chunk::Error(e)] => {
            assert_eq!(e.class, FailureClass::ContentFiltered);
            assert_eq!(e.message, "Bedrock guardrail intervened");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stream_a_filter_stops_after_content_keeps_it_and_ends_content_filter() {
    let decoded = events(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
        ),
        ("messageStop", json!({"stopReason": "guardrail_intervened"})),
    ]);
    let Decoded::Chunk(first) = &decoded[1] else {
        panic!("{decoded:?}")
    };
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": "Hello"}),
        "the held role goes with the first content"
    );
    let Decoded::Chunk(last) = &decoded[2] else {
        panic!("{decoded:?}")
    };
    assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    // A tool call is content too.
    let decoded = events(&[
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 0,
            "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
        ),
        ("messageStop", json!({"stopReason": "content_filtered"})),
    ]);
    assert!(
        matches!(&decoded[2], Decoded::Chunk(c) if c["choices"][0]["finish_reason"] == "content_filter")
    );
    // A plain stop with no content is an empty answer that carries the role.
    let decoded = events(&[
        ("messageStart", json!({"role": "assistant"})),
        ("messageStop", json!({"stopReason": "end_turn"})),
    ]);
    assert!(matches!(&decoded[1], Decoded::Chunk(c)
        if c["choices"][0]["delta"] == json!({"role": "assistant"}) && c["choices"][0]["finish_reason"] == "stop"));
}

#[test]
fn a_whole_answer_filtered_before_content_is_a_failure_and_after_content_is_not() {
    let empty = json!({"output": {"message": {"role": "assistant", "content": []}},
                       "stopReason": "guardrail_intervened", "usage": {"inputTokens": 3, "outputTokens": 0}});
    assert_eq!(
        filtered(&empty).as_deref(),
        Some("Bedrock guardrail intervened")
    );
    let blank = json!({"output": {"message": {"role": "assistant", "content": [{"text": ""}]}},
                       "stopReason": "content_filtered"});
    assert_eq!(
        filtered(&blank).as_deref(),
        Some("Bedrock's content filter stopped the answer")
    );
    let partial = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
                         "stopReason": "guardrail_intervened"});
    assert_eq!(filtered(&partial), None);
    let (completion, _) = response(&partial, "id", "m", 0).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello");
    assert_eq!(completion["choices"][0]["finish_reason"], "content_filter");
    let stop = json!({"output": {"message": {"role": "assistant", "content": []}}, "stopReason": "end_turn"});
    assert_eq!(filtered(&stop), None);

    // Through the provider: a ContentFiltered failure, not a 200.
    let provider = providers::for_api(Api::Bedrock).unwrap();
    let error = match provider.parse_response(
        bytes::Bytes::from(empty.to_string()),
        ClientApi::OpenAI,
        "m",
    ) {
        Err(e) => e,
        Ok(_) => panic!("a filtered answer is a failure"),
    };
    assert_eq!(error.class, FailureClass::ContentFiltered);
}
