use serde_json::{Value, json};
use switchyard_crds::v1alpha1::Api;

use super::Assembler;
use crate::convert::ClientApi;
use crate::convert::sse::SseParser;
use crate::convert::to_client::ClientEncoder;
use crate::providers::{self, Chunk};

/// Runs a recorded provider stream through the proxy's pipeline (SSE parser, the provider's
/// decoder, the client encoder) and assembles what a streaming client would have received.
fn assembled(api: Api, client: ClientApi, raw: &[u8]) -> Value {
    let frames = client_frames(api, client, raw);
    let mut assembler = Assembler::new(client);
    for frame in &frames {
        assembler.push(frame).expect("a valid client stream");
    }
    let mut answer: Value =
        serde_json::from_slice(&assembler.finish().expect("complete")).expect("the answer is JSON");
    // Converters stamp the time they ran.
    if answer.get("created").is_some() && api != Api::OpenAI {
        answer["created"] = json!(0);
    }
    answer
}

/// The client-format frames for a provider stream, the end frame included.
fn client_frames(api: Api, client: ClientApi, raw: &[u8]) -> Vec<Vec<u8>> {
    let provider = providers::for_api(api).expect("known api");
    let mut decoder = provider.stream_decoder(client, "m");
    let mut events = Vec::new();
    SseParser::default()
        .push(raw, &mut events)
        .expect("valid SSE");
    let mut chunks = Vec::new();
    for event in events {
        decoder.decode(event, &mut chunks);
    }
    decoder.end(&mut chunks);
    let mut encoder = ClientEncoder::new(client, true);
    let mut frames = Vec::new();
    for chunk in chunks {
        match chunk {
            Chunk::Data {
                json, usage_only, ..
            } => frames.push(encoder.chunk(&json, usage_only)),
            Chunk::Raw { frame, .. } => frames.push(encoder.raw(&frame)),
            Chunk::Done => {
                frames.push(encoder.done());
                return frames;
            }
            Chunk::Error(e) => panic!("stream error: {e:?}"),
        }
    }
    panic!("the stream did not end cleanly")
}

fn recorded(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/src/convert/testdata/streams/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).expect("recorded stream")
}

fn sse(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(format!("data: {event}\n\n").as_bytes());
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn anthropic_sse(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let name = event["type"].as_str().unwrap();
        out.extend_from_slice(format!("event: {name}\ndata: {event}\n\n").as_bytes());
    }
    out
}

fn assemble_bytes(client: ClientApi, stream: &[u8]) -> Result<Value, String> {
    let mut assembler = Assembler::new(client);
    assembler.push(stream)?;
    let body = assembler.finish()?;
    Ok(serde_json::from_slice(&body).expect("JSON"))
}

#[test]
fn an_openai_tool_call_stream_becomes_the_completion_it_streamed() {
    let answer = assembled(
        Api::OpenAI,
        ClientApi::OpenAI,
        &recorded("openai_tool_calls.sse"),
    );
    assert_eq!(
        answer,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1752000000, "model": "gpt-4o",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                    {"id": "call_b2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}},
                ]},
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": {"prompt_tokens": 82, "completion_tokens": 48, "total_tokens": 130, "prompt_tokens_details": {"cached_tokens": 64}},
        })
    );
}

#[test]
fn the_assembled_openai_answer_matches_the_recorded_whole_answer_where_the_stream_carries_it() {
    // The recorded whole answer of the same tool calls carries more than its stream (annotations,
    // more usage details, service_tier, system_fingerprint): what both carry must agree.
    let answer = assembled(
        Api::OpenAI,
        ClientApi::OpenAI,
        &recorded("openai_tool_calls.sse"),
    );
    let path = format!(
        "{}/src/convert/testdata/responses/openai_tool_calls.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let whole: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(answer["object"], whole["object"]);
    assert_eq!(
        answer["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    assert_eq!(
        answer["choices"][0]["logprobs"],
        whole["choices"][0]["logprobs"]
    );
    let (mine, theirs) = (
        &answer["choices"][0]["message"],
        &whole["choices"][0]["message"],
    );
    for key in ["role", "content", "tool_calls"] {
        assert_eq!(mine[key], theirs[key], "{key}");
    }
    for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(answer["usage"][key], whole["usage"][key], "{key}");
    }
}

#[test]
fn choices_refusals_logprobs_and_usage_details_are_assembled_per_index() {
    let chunk = |extra: Value| {
        let mut base = json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x", "system_fingerprint": null, "service_tier": "default"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    let stream = sse(&[
        chunk(json!({"choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": {"content": [{"token": "He", "logprob": -0.1, "bytes": [72, 101], "top_logprobs": []}], "refusal": null}, "finish_reason": null},
            {"index": 1, "delta": {"role": "assistant", "refusal": "I can"}, "logprobs": null, "finish_reason": null},
        ]})),
        chunk(json!({"system_fingerprint": "fp_1", "choices": [
            {"index": 1, "delta": {"refusal": "'t help."}, "finish_reason": null},
            {"index": 0, "delta": {"content": "He"}, "logprobs": {"content": [{"token": "llo", "logprob": -0.2, "bytes": [108, 108, 111], "top_logprobs": []}]}, "finish_reason": null},
        ]})),
        chunk(
            json!({"choices": [{"index": 0, "delta": {"content": "llo"}, "finish_reason": null}]}),
        ),
        chunk(json!({"system_fingerprint": "fp_1", "choices": [
            {"index": 0, "delta": {}, "finish_reason": "stop"},
            {"index": 1, "delta": {}, "finish_reason": "stop"},
        ]})),
        chunk(
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0}}}),
        ),
    ]);

    let answer = assemble_bytes(ClientApi::OpenAI, &stream).unwrap();

    assert_eq!(
        answer,
        json!({
            "id": "c1", "object": "chat.completion", "created": 5, "model": "gpt-x",
            "system_fingerprint": "fp_1", "service_tier": "default",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": null},
                 "logprobs": {"content": [
                     {"token": "He", "logprob": -0.1, "bytes": [72, 101], "top_logprobs": []},
                     {"token": "llo", "logprob": -0.2, "bytes": [108, 108, 111], "top_logprobs": []},
                 ], "refusal": null},
                 "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": null, "refusal": "I can't help."},
                 "logprobs": null, "finish_reason": "stop"},
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0}},
        })
    );
}

#[test]
fn an_anthropic_stream_passed_through_becomes_the_message_it_streamed() {
    let answer = assembled(
        Api::Anthropic,
        ClientApi::Anthropic,
        &recorded("anthropic_tool_use.sse"),
    );
    assert_eq!(
        answer,
        json!({
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "content": [
                {"type": "text", "text": "Okay, let me check the weather."},
                {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                 "input": {"location": "San Francisco, CA"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 128, "output_tokens": 89},
        })
    );
}

#[test]
fn thinking_signatures_citations_and_empty_tool_inputs_are_assembled_per_block() {
    let stream = anthropic_sse(&[
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think."}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "abc"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta", "citation": {"type": "char_location", "cited_text": "Paris", "document_index": 0, "start_char_index": 0, "end_char_index": 5}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "It is Paris."}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "ping"}),
        json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_stop", "index": 3}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42, "cache_read_input_tokens": 3}}),
        json!({"type": "message_stop"}),
    ]);

    let answer = assemble_bytes(ClientApi::Anthropic, &stream).unwrap();

    assert_eq!(
        answer,
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCgIYAhIM"},
                {"type": "redacted_thinking", "data": "abc"},
                {"type": "text", "text": "It is Paris.", "citations": [
                    {"type": "char_location", "cited_text": "Paris", "document_index": 0, "start_char_index": 0, "end_char_index": 5},
                ]},
                {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 42, "cache_read_input_tokens": 3},
        })
    );
}

#[test]
fn converted_streams_assemble_into_each_client_format() {
    let openai = assembled(
        Api::Anthropic,
        ClientApi::OpenAI,
        &recorded("anthropic_tool_use.sse"),
    );
    let message = &openai["choices"][0]["message"];
    assert_eq!(openai["object"], "chat.completion");
    assert_eq!(message["content"], "Okay, let me check the weather.");
    assert_eq!(
        message["tool_calls"][0]["id"],
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    );
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"location\": \"San Francisco, CA\"}"
    );
    assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");

    let anthropic = assembled(
        Api::OpenAI,
        ClientApi::Anthropic,
        &recorded("openai_tool_calls.sse"),
    );
    assert_eq!(anthropic["type"], "message");
    assert_eq!(anthropic["stop_reason"], "tool_use");
    assert_eq!(
        anthropic["content"][0]["input"],
        json!({"location": "Paris"})
    );
    assert_eq!(
        anthropic["content"][1]["input"],
        json!({"location": "Rome"})
    );
    assert_eq!(anthropic["usage"]["input_tokens"], 18);
    assert_eq!(anthropic["usage"]["cache_read_input_tokens"], 64);
    assert_eq!(anthropic["usage"]["output_tokens"], 48);

    for client in [ClientApi::OpenAI, ClientApi::Anthropic] {
        let answer = assembled(Api::Gemini, client, &recorded("gemini_text.sse"));
        let text = match client {
            ClientApi::OpenAI => &answer["choices"][0]["message"]["content"],
            ClientApi::Anthropic => &answer["content"][0]["text"],
            ClientApi::Responses => unreachable!("not in this loop"),
        };
        assert_eq!(text, "The weather in Paris is clear.", "{client:?}");
    }
}

#[test]
fn events_split_anywhere_assemble_the_same() {
    for (api, client, name) in [
        (Api::OpenAI, ClientApi::OpenAI, "openai_tool_calls.sse"),
        (
            Api::Anthropic,
            ClientApi::Anthropic,
            "anthropic_tool_use.sse",
        ),
    ] {
        let frames = client_frames(api, client, &recorded(name));
        let whole = assemble_bytes(client, &frames.concat()).unwrap();
        let mut assembler = Assembler::new(client);
        for byte in frames.concat() {
            assembler.push(&[byte]).unwrap();
        }
        let bytewise: Value = serde_json::from_slice(&assembler.finish().unwrap()).unwrap();
        assert_eq!(bytewise, whole, "{name}");
    }
}

#[test]
fn a_stream_with_no_answer_in_it_assembles_nothing() {
    assert!(assemble_bytes(ClientApi::OpenAI, b"data: [DONE]\n\n").is_err());
    assert!(
        assemble_bytes(
            ClientApi::Anthropic,
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        )
        .is_err()
    );
    assert!(assemble_bytes(ClientApi::OpenAI, b"data: not json\n\n").is_err());
}

#[test]
fn the_size_counts_what_the_answer_gathers_numbers_included() {
    let mut assembler = Assembler::new(ClientApi::OpenAI);
    let text = "x".repeat(1000);
    let chunk = json!({"id": "c", "choices": [{"index": 0, "delta": {"content": text}}]});
    for _ in 0..3 {
        assembler
            .push(format!("data: {chunk}\n\n").as_bytes())
            .unwrap();
    }
    assert!(
        (3000..3100).contains(&assembler.size()),
        "{}",
        assembler.size()
    );

    // Logprobs are mostly numbers: 1,000 entries of a 1-byte token count far more than 1 byte each.
    let mut assembler = Assembler::new(ClientApi::OpenAI);
    let entries: Vec<_> = (0..1000)
        .map(|_| json!({"token": "x", "logprob": -0.5, "bytes": [120], "top_logprobs": []}))
        .collect();
    let chunk = json!({"id": "c", "choices": [{"index": 0, "delta": {},
        "logprobs": {"content": entries}}]});
    assembler
        .push(format!("data: {chunk}\n\n").as_bytes())
        .unwrap();
    assert!(assembler.size() >= 1000 * 16, "{}", assembler.size());
}

/// Not a benchmark: a rough unit-level comparison of the step that assembling adds, run by hand
/// with `cargo test -p switchyard-sidecar --release assembling_costs -- --ignored --nocapture`.
#[test]
#[ignore]
fn assembling_costs_one_more_parse_per_event() {
    use tokio::time::Instant;
    let words = 2000;
    let chunk = |delta: Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}))];
    events.extend((0..words).map(|_| chunk(json!({"content": " word"}))));
    let stream = sse(&events);
    let whole = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " word".repeat(words)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1}})
    .to_string();
    let provider = providers::for_api(Api::OpenAI).unwrap();
    let rounds = 50;

    let started = Instant::now();
    for _ in 0..rounds {
        let frames = client_frames(Api::OpenAI, ClientApi::OpenAI, &stream);
        std::hint::black_box(frames);
    }
    let pipeline = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        let frames = client_frames(Api::OpenAI, ClientApi::OpenAI, &stream);
        let mut assembler = Assembler::new(ClientApi::OpenAI);
        for frame in &frames {
            assembler.push(frame).unwrap();
        }
        std::hint::black_box(assembler.finish().unwrap());
    }
    let assembled = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        let body = bytes::Bytes::from(whole.clone());
        std::hint::black_box(
            provider
                .parse_response(body, ClientApi::OpenAI, "m")
                .unwrap(),
        );
    }
    let parsed = started.elapsed() / rounds;
    println!(
        "{words} events: stream pipeline {pipeline:?}, pipeline + assembling {assembled:?} \
         ({:.2} µs per event added); whole answer parsed {parsed:?}",
        (assembled - pipeline).as_secs_f64() * 1e6 / words as f64
    );
}

#[test]
fn repeated_roles_blank_ids_and_azure_filter_results_are_not_appended() {
    let stream = sse(&[
        // Azure's first chunk: prompt filter results, blank identifiers, no choices.
        json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
               "prompt_filter_results": [{"prompt_index": 0}]}),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": "",
                   "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "f", "arguments": "{\"a\":"}}]},
                   "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}]}),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
               "choices": [{"index": 0, "delta": {"role": "assistant",
                   "tool_calls": [{"index": 0, "id": "", "function": {"arguments": "1}"}}]},
                   "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}},
                   "finish_reason": "tool_calls"}]}),
    ]);
    let answer = assemble_bytes(ClientApi::OpenAI, &stream).expect("assembles");
    assert_eq!(answer["id"], "chatcmpl-1");
    assert_eq!(answer["model"], "m");
    assert_eq!(answer["created"], 7);
    let choice = &answer["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        Value::Null,
        "a tool-only answer"
    );
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["function"]["arguments"], "{\"a\":1}");
    assert_eq!(
        choice["content_filter_results"]["hate"]["severity"], "safe",
        "whole objects on each chunk are replaced, not appended"
    );
}

#[test]
fn a_null_in_the_final_usage_keeps_the_count_from_the_start() {
    let stream = anthropic_sse(&[
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
               "role": "assistant", "model": "m", "content": [], "stop_reason": null,
               "usage": {"input_tokens": 10, "cache_creation_input_tokens": 4, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": "hi"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
               "usage": {"output_tokens": 2, "cache_creation_input_tokens": null}}),
        json!({"type": "message_stop"}),
    ]);
    let answer = assemble_bytes(ClientApi::Anthropic, &stream).expect("assembles");
    assert_eq!(answer["usage"]["cache_creation_input_tokens"], 4);
    assert_eq!(answer["usage"]["output_tokens"], 2);
    assert_eq!(answer["stop_reason"], "end_turn");
}

#[test]
fn hub_chunks_handed_over_as_they_are_make_the_answer_their_framed_events_make() {
    // The proxy hands an OpenAI-format answer's hub chunks to `Assembler::event` without
    // framing them; for every provider's recorded stream that must give the same answer as the
    // events a streaming client would have received.
    for (api, name) in [
        (Api::OpenAI, "openai_tool_calls.sse"),
        (Api::Anthropic, "anthropic_tool_use.sse"),
        (Api::Gemini, "gemini_text.sse"),
    ] {
        let raw = recorded(name);
        let provider = providers::for_api(api).expect("known api");
        let mut decoder = provider.stream_decoder(ClientApi::OpenAI, "m");
        let mut events = Vec::new();
        SseParser::default().push(&raw, &mut events).unwrap();
        let mut chunks = Vec::new();
        for event in events {
            decoder.decode(event, &mut chunks);
        }
        decoder.end(&mut chunks);
        let mut direct = Assembler::new(ClientApi::OpenAI);
        let mut handed = 0;
        for chunk in &chunks {
            if let Chunk::Data { json, .. } = chunk {
                direct.event(json).expect("a hub chunk");
                handed += 1;
            }
        }
        assert!(handed > 1, "{name}: the stream carries hub chunks");
        let direct: Value = serde_json::from_slice(&direct.finish().unwrap()).unwrap();
        // The same chunks (converters stamp `created` when they decode), framed by the encoder.
        let mut encoder = ClientEncoder::new(ClientApi::OpenAI, true);
        let mut framed = Assembler::new(ClientApi::OpenAI);
        for chunk in chunks {
            match chunk {
                Chunk::Data {
                    json, usage_only, ..
                } => framed.push(&encoder.chunk(&json, usage_only)).unwrap(),
                Chunk::Done => framed.push(&encoder.done()).unwrap(),
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
        let framed: Value = serde_json::from_slice(&framed.finish().unwrap()).unwrap();
        assert_eq!(direct, framed, "{name}");
    }
}
