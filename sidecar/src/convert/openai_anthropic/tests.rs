use serde_json::json;

use super::*;

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn requests_follow_the_messages_rules() {
    let hub = map(json!({
        "model": "chat", "temperature": 1.7, "stop": "END", "user": "u1", "parallel_tool_calls": false,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
        ],
    }));
    let out = request(&hub, "claude-sonnet-4", true);
    assert_eq!(out["model"], "claude-sonnet-4");
    assert!(
        out["system"]
            .as_str()
            .unwrap()
            .starts_with("Be brief.\n\nUse metric units.\n\nRespond with a single JSON object")
    );
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        3,
        "consecutive user turns merge; tool results share one user turn"
    );
    assert_eq!(messages[0]["content"].as_array().unwrap().len(), 3);
    assert_eq!(
        messages[0]["content"][2]["source"],
        json!({"type": "url", "url": "https://x/cat.png"})
    );
    assert_eq!(
        messages[1]["content"][1]["input"],
        json!({"location": "Rome"})
    );
    assert_eq!(
        messages[2]["content"][1],
        json!({"type": "tool_result", "tool_use_id": "call_2", "content": "24C"})
    );
    assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(out["temperature"], 1.0, "clamped to Anthropic's range");
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(out["metadata"]["user_id"], "u1");
    assert_eq!(out["stream"], true);
}

#[test]
fn messages_become_completions_with_full_usage() {
    let message = json!({"id": "msg_1", "type": "message", "model": "claude", "stop_reason": "max_tokens",
        "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
        "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2}});
    let (completion, usage) = response(&message, 7).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello");
    assert_eq!(completion["choices"][0]["finish_reason"], "length");
    assert_eq!(
        usage,
        Usage {
            input: 17,
            cached_input: 5,
            output: 3
        }
    );
    assert_eq!(completion["usage"]["prompt_tokens"], 17);
    assert!(response(&json!({"type": "error"}), 0).is_none());
}

/// The chunk `decoder` makes of `event` (the general reading), as a `Value`.
fn chunk_of(decoder: &mut StreamDecoder, event: Value) -> Option<Value> {
    let decoded = decoder.event(&event);
    decoder.chunk(decoded).map(Json::into_value)
}

#[test]
fn stream_events_become_chunks() {
    let mut d = StreamDecoder::new(1);
    let start = chunk_of(
        &mut d,
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    );
    assert_eq!(
        start,
        Some(
            json!({"id": "msg_1", "object": "chat.completion.chunk", "created": 1, "model": "claude",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]})
        )
    );
    assert_eq!(d.event(&json!({"type": "ping"})), Decoded::Nothing);
    assert_eq!(d.event(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})), Decoded::Nothing);
    let text = chunk_of(&mut d, json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})).unwrap();
    assert_eq!(text["choices"][0]["delta"], json!({"content": "Hi"}));
    let tool = chunk_of(&mut d, json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}})).unwrap();
    assert_eq!(
        tool["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": ""}}]})
    );
    let args = chunk_of(&mut d, json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}})).unwrap();
    assert_eq!(
        args["choices"][0]["delta"]["tool_calls"][0],
        json!({"index": 0, "function": {"arguments": "{\"a\""}})
    );
    let finish = chunk_of(&mut d, json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let stop = d.event(&json!({"type": "message_stop"}));
    let usage = Usage {
        input: 12,
        cached_input: 0,
        output: 9,
    };
    assert_eq!(stop, Decoded::Usage(usage));
    assert_eq!(
        d.chunk(stop).map(Json::into_value),
        Some(
            json!({"id": "msg_1", "object": "chat.completion.chunk", "created": 1, "model": "claude", "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 0}}})
        )
    );
    assert!(matches!(
        d.event(&json!({"type": "error", "error": {"type": "overloaded_error"}})),
        Decoded::Error(_)
    ));
}

#[test]
fn chunks_are_written_with_their_keys_sorted_as_a_value_writes_them() {
    // Streaming clients received `Value` chunks before the chunks became trees: the same bytes.
    let d = started("msg_\"quoted\"\\id", "claude-é/\u{1F600}");
    let usage = Usage {
        input: 3,
        cached_input: 1,
        output: 2,
    };
    for decoded in [
        Decoded::Delta(Delta::Role),
        Decoded::Delta(Delta::Text(Json::Str(
            "esc \" \\ \n \u{1} é 😀 </script>".into(),
        ))),
        Decoded::Delta(Delta::Text(Json::Scalar(json!(7)))),
        Decoded::Delta(Delta::ToolCall {
            index: 2,
            id: Json::Str("toolu_1".into()),
            name: Json::Null,
        }),
        Decoded::Delta(Delta::Arguments {
            index: 1,
            partial_json: Json::Str("{\"a\"".into()),
        }),
        Decoded::Finish("stop"),
        Decoded::Usage(usage),
    ] {
        let tree = d.chunk(decoded).unwrap();
        let bytes = crate::convert::json_bytes(&tree);
        let value = tree.into_value();
        assert_eq!(bytes, crate::convert::json_bytes(&value), "{value}");
    }
    assert_eq!(d.chunk(Decoded::Nothing), None);
    assert_eq!(d.chunk(Decoded::Error(json!({}))), None);
}

/// A decoder that has read a `message_start` with this id and model.
fn started(id: &str, model: &str) -> StreamDecoder {
    let mut decoder = StreamDecoder::new(1_700_000_000);
    let start = json!({"type": "message_start", "message": {"id": id, "model": model,
        "role": "assistant", "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}});
    assert_eq!(decoder.event(&start), Decoded::Delta(Delta::Role));
    decoder
}

/// `read_fast` of `data` against `event` of its tree, from the same decoder state: the same
/// `type`, the same meaning, the same state after. Panics if the fast reading does not take it.
fn assert_reads_as_the_general_reading(decoder: &StreamDecoder, data: &str) {
    let (mut fast, mut general) = (decoder.clone(), decoder.clone());
    let (kind, read_fast) = fast
        .read_fast(data)
        .unwrap_or_else(|| panic!("not read fast: {data}"));
    let value: Value = serde_json::from_str(data).unwrap();
    assert_eq!(read_fast, general.event(&value), "{data}");
    assert_eq!(fast, general, "{data}");
    assert_eq!(Some(kind.as_ref()), value["type"].as_str(), "{data}");
}

#[test]
fn events_read_fast_as_the_general_reading_reads_them() {
    let decoder = started("msg_0", "claude");
    for data in [
        // Text deltas.
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"{"delta":{"text":"key order","type":"text_delta"},"index":3,"type":"content_block_delta"}"#,
        r#"{"type":"content_block_delta","index":"x","delta":{"type":"text_delta","text":""}}"#,
        r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"esc \" \\ \n \t \u0001 \u00e9 \ud83d\ude00 </script>"},"extra":[1,{"a":null}]}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ünïcödé 漢字","more":{}}}"#,
        // The events that frame an answer.
        r#"{"type":"message_start","message":{"id":"msg_\"1\"","type":"message","role":"assistant","model":"claude-é","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}"#,
        r#"{"message":{"usage":{"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"input_tokens":"x","output_tokens":null},"model":"m","id":"i"},"type":"message_start"}"#,
        r#"{"type":"message_start","message":{"id":null,"model":null,"usage":null}}"#,
        r#"{"type":"message_start","message":null}"#,
        r#"{"type":"message_start"}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_start","index":"x","content_block":{"type":"thinking","thinking":""}}"#,
        r#"{"type":"content_block_start","content_block":null}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"a_future_event","data":[1,{"x":null}]}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5.0}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":7},"usage":{"output_tokens":-1}}"#,
        r#"{"type":"message_delta","delta":null,"usage":null}"#,
        r#"{"type":"message_delta"}"#,
        r#"{"type":"message_stop"}"#,
        r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":9}}"#,
    ] {
        assert_reads_as_the_general_reading(&decoder, data);
    }
}

#[test]
fn events_the_fast_reading_cannot_take_are_left_to_the_general_one() {
    let mut decoder = started("msg_1", "claude");
    for data in [
        // Tool calls, thinking and errors.
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        // Text that is not a string (the general reading passes it on as it is), a repeated key
        // (the general reading keeps the last), a delta that is not an object, no text at all.
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}"#,
        r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a","text":"b"}}"#,
        r#"{"type":"content_block_delta","delta":"text_delta"}"#,
        r#"{"type":"content_block_delta","delta":{"type":"text_delta"}}"#,
        r#"{"type":"ping","type":"message_stop"}"#,
        r#"{"type":"message_start","message":{"id":"a","id":"b"}}"#,
        // An id or a type of another type.
        r#"{"type":"message_start","message":{"id":7,"model":"m"}}"#,
        r#"{"type":7,"delta":{"type":"text_delta","text":"a"}}"#,
        r#"{"index":0}"#,
        // An array where an object belongs: serde's derive would read it field by field, where
        // the general reading finds no event, message or delta in it.
        r#"["content_block_delta",{"type":"text_delta","text":"a"}]"#,
        r#"{"type":"content_block_delta","delta":["text_delta","a"]}"#,
        r#"["message_stop"]"#,
        r#"{"type":"message_start","message":["msg_x","model_x"]}"#,
        r#"{"type":"message_delta","delta":["end_turn"]}"#,
        // Not JSON, or JSON with something after it.
        r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}"#,
        r#"{"type":"message_stop"} x"#,
    ] {
        assert_eq!(decoder.read_fast(data), None, "{data}");
    }
}

proptest::proptest! {
    #[test]
    fn any_text_reads_fast_as_the_general_reading_does(
        text in ".*",
        id in "[ -~]{0,12}",
        model in ".{0,12}",
    ) {
        let decoder = started(&id, &model);
        let data = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": text}}).to_string();
        assert_reads_as_the_general_reading(&decoder, &data);
    }
}

/// JSON text from a small vocabulary of the events' own keys and values, repeated keys, arrays
/// and wrong types included, written by hand (a `Value` cannot hold a repeated key).
fn vocabulary_json() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let keys = prop::sample::select(vec![
        "type",
        "message",
        "id",
        "model",
        "usage",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "content_block",
        "delta",
        "stop_reason",
        "text",
        "index",
    ]);
    let words = prop::sample::select(vec![
        "message_start",
        "content_block_start",
        "content_block_stop",
        "ping",
        "message_delta",
        "message_stop",
        "error",
        "content_block_delta",
        "text",
        "tool_use",
        "end_turn",
        "max_tokens",
        "msg_1",
        "text_delta",
        "é\\\"",
    ]);
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        (-3i64..20).prop_map(|n| n.to_string()),
        Just("2.5".to_string()),
        words.prop_map(|w| format!("\"{w}\"")),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((keys.clone(), inner), 0..5).prop_map(|members| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn whatever_the_fast_reading_takes_it_reads_as_the_general_one(
        kind in proptest::sample::select(vec!["message_start", "content_block_start",
            "content_block_delta", "content_block_stop", "message_delta", "message_stop", "ping"]),
        rest in vocabulary_json(),
    ) {
        let decoder = started("msg_0", "claude");
        // Most events start with a known `type`, as real ones do; `rest` adds members after it
        // (or makes the text something else than an object).
        let data = match rest.strip_prefix('{') {
            Some("}") => format!(r#"{{"type":"{kind}"}}"#),
            Some(members) => format!(r#"{{"type":"{kind}",{members}"#),
            None => rest.clone(),
        };
        if decoder.clone().read_fast(&data).is_some() {
            assert_reads_as_the_general_reading(&decoder, &data);
        }
    }
}
