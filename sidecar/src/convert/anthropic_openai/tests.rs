use serde_json::json;

use super::*;

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn requests_keep_system_tools_results_and_images() {
    let anthropic = map(json!({
        "model": "chat", "max_tokens": 100, "temperature": 0.5, "stop_sequences": ["END"], "stream": true,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"location": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "Thanks"}]},
        ],
    }));
    let hub = request(&anthropic).unwrap();
    assert_eq!(
        hub["messages"][0],
        json!({"role": "system", "content": "Be brief.\nBe kind."})
    );
    assert_eq!(
        hub["messages"][1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBOR"
    );
    assert_eq!(
        hub["messages"][2]["tool_calls"][0]["function"]["arguments"],
        r#"{"location":"Paris"}"#
    );
    assert_eq!(
        hub["messages"][3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
    );
    assert_eq!(
        hub["messages"][4],
        json!({"role": "user", "content": "Thanks"})
    );
    assert_eq!(
        hub["tools"][0]["function"]["parameters"]["properties"]["location"]["type"],
        "string"
    );
    assert_eq!(hub["tool_choice"], "required");
    assert_eq!(hub["parallel_tool_calls"], false);
    assert_eq!(hub["stop"], json!(["END"]));
    assert_eq!(hub["max_tokens"], 100);
    assert_eq!(hub["stream"], true);
}

#[test]
fn bad_content_is_refused() {
    let bad = map(json!({"model": "m", "messages": [{"role": "user", "content": 7}]}));
    assert!(request(&bad).unwrap_err().contains("messages[0]"));
}

#[test]
fn completions_become_messages() {
    let completion = json!({
        "id": "chatcmpl-1", "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me look.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"location\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8}},
    });
    let message = response(&completion);
    assert_eq!(message["id"], "msg_chatcmpl-1");
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(
        message["content"][0],
        json!({"type": "text", "text": "Let me look."})
    );
    assert_eq!(message["content"][1]["input"], json!({"location": "Paris"}));
    assert_eq!(
        message["usage"]["input_tokens"], 12,
        "Anthropic's input excludes cache reads"
    );
    assert_eq!(message["usage"]["cache_read_input_tokens"], 8);
}

fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_string();
            let data = serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
            (name, data)
        })
        .collect()
}

#[test]
fn chunks_become_the_anthropic_event_sequence() {
    let mut encoder = StreamEncoder::default();
    let mut out = Vec::new();
    let chunk = |delta: Value, finish: Value| json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    encoder.chunk(
        &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        &mut out,
    );
    encoder.chunk(&chunk(json!({"content": "Hi"}), Value::Null), &mut out);
    encoder.chunk(&chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "w", "arguments": ""}}]}), Value::Null), &mut out);
    encoder.chunk(
        &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
            Value::Null,
        ),
        &mut out,
    );
    encoder.chunk(
        &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            Value::Null,
        ),
        &mut out,
    );
    encoder.chunk(&chunk(json!({}), json!("tool_calls")), &mut out);
    encoder.chunk(&json!({"id": "c1", "model": "m", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}), &mut out);
    encoder.finish(&mut out);

    let events = events(&out);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &events {
        assert_eq!(
            data["type"],
            name.as_str(),
            "the data's type matches the event name"
        );
    }
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "text_delta", "text": "Hi"})
    );
    assert_eq!(events[4].1["content_block"]["type"], "tool_use");
    assert_eq!(events[4].1["index"], 1);
    assert_eq!(events[6].1["delta"]["partial_json"], "1}");
    assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[8].1["usage"]["output_tokens"], 4);
}

#[test]
fn wrong_typed_optional_fields_are_ignored_and_malformed_ones_stay_errors() {
    let map = |v: Value| v.as_object().unwrap().clone();
    let clean = map(json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}));
    let noisy = map(json!({
        "model": "m", "messages": [{"role": "user", "content": "Hi"}], "system": null,
        "stop_sequences": "END", "metadata": [1], "tools": "x", "tool_choice": "auto", "top_p": null,
    }));
    assert_eq!(request(&noisy).unwrap(), request(&clean).unwrap());
    for bad in [
        json!({"messages": {}}),
        json!({"system": 5, "messages": []}),
        json!({"messages": [7]}),
        json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": 1}}]}]}),
    ] {
        assert!(request(&map(bad.clone())).is_err(), "{bad} is an error");
    }
}
