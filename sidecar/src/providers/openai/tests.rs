use http::HeaderMap;
use serde_json::Map;
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::{Breaker, Limits, TimeoutsMs, Upstream};

use super::*;
use crate::convert::ClientApi;
use crate::upstream::UpstreamRt;

fn upstream(forward: &[&str]) -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "openai".into(),
        api: Api::OpenAI,
        base_url: "http://127.0.0.1:1/v1".into(),
        region: None,
        api_key: Some(SecretString::new("sk-pool")),
        forward_headers: forward.iter().map(|s| s.to_string()).collect(),
        responses_api: false,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
        azure_api_version: None,
        aws: None,
        gcp: None,
    })
}

fn request() -> Map<String, Value> {
    serde_json::json!({
        "model": "chat", "stream": true, "stream_options": {"x": 1}, "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}],
    })
    .as_object()
    .unwrap()
    .clone()
}

#[test]
fn requests_carry_the_target_model_usage_and_only_the_pool_key() {
    let up = upstream(&["x-tenant", "authorization", "cookie"]);
    let mut client = HeaderMap::new();
    client.insert("authorization", "Bearer sk-client".parse().unwrap());
    client.insert("cookie", "session=1".parse().unwrap());
    client.insert("x-api-key", "sk-client".parse().unwrap());
    client.insert("x-tenant", "acme".parse().unwrap());
    client.insert("x-other", "nope".parse().unwrap());
    let req = request();
    let call = Call {
        upstream: &up,
        model: "gpt-4o",
        request: &req,
        original: None,
        client: ClientApi::OpenAI,
        stream: true,
        client_headers: &client,
        credential: &crate::upstream::credentials::Credential::None,
        publisher: switchyard_crds::v1alpha1::Publisher::Google,
    };
    let built = OpenAi.build_request(&call).unwrap();

    assert_eq!(built.uri(), "http://127.0.0.1:1/v1/chat/completions");
    let h = built.headers();
    assert_eq!(h["authorization"], "Bearer sk-pool");
    assert!(h["authorization"].is_sensitive());
    assert_eq!(h["x-tenant"], "acme");
    for absent in ["cookie", "x-api-key", "x-other"] {
        assert!(!h.contains_key(absent), "{absent} must not be forwarded");
    }
    let body: Value = crate::providers::sent_json(built);
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["stream_options"],
        serde_json::json!({"x": 1, "include_usage": true})
    );
    assert_eq!(body["temperature"], 0);
}

#[test]
fn non_streamed_requests_say_so() {
    let up = upstream(&[]);
    let req = request();
    let call = Call {
        upstream: &up,
        model: "m",
        request: &req,
        original: None,
        client: ClientApi::OpenAI,
        stream: false,
        client_headers: &HeaderMap::new(),
        credential: &crate::upstream::credentials::Credential::None,
        publisher: switchyard_crds::v1alpha1::Publisher::Google,
    };
    let built = OpenAi.build_request(&call).unwrap();
    let body: Value = crate::providers::sent_json(built);
    assert_eq!(body["stream"], false);
    assert!(body.get("stream_options").is_none());
}

#[test]
fn responses_need_choices_and_report_cached_usage() {
    let ok = br#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#;
    let c = OpenAi
        .parse_response(Bytes::from_static(ok), ClientApi::OpenAI, "m")
        .unwrap();
    assert_eq!(
        c.usage,
        Some(Usage {
            input: 10,
            cached_input: 4,
            output: 3
        })
    );
    let deepseek = br#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_cache_hit_tokens":6}}"#;
    assert_eq!(
        OpenAi
            .parse_response(Bytes::from_static(deepseek), ClientApi::OpenAI, "m")
            .unwrap()
            .usage
            .unwrap()
            .cached_input,
        6
    );
    for bad in [&b"not json"[..], b"{}", b"[]", br#"{"choices":"x"}"#] {
        let e = OpenAi
            .parse_response(Bytes::copy_from_slice(bad), ClientApi::OpenAI, "m")
            .err()
            .unwrap();
        assert_eq!(e.class, FailureClass::ServerError);
    }
}

#[test]
fn stream_events_decode() {
    let mut d = OpenAi.stream_decoder(ClientApi::OpenAI, "m");
    let mut out = Vec::new();
    let ev = |s: &str| SseEvent {
        event: None,
        data: Bytes::copy_from_slice(s.as_bytes()),
    };
    d.decode(
        ev(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#),
        &mut out,
    );
    d.decode(ev(r#"{"choices":[{"index":0,"delta":{}}]}"#), &mut out);
    d.decode(
        ev(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#),
        &mut out,
    );
    d.decode(ev(r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#), &mut out);
    d.decode(ev("{garbage"), &mut out);
    d.decode(ev("[DONE]"), &mut out);
    assert!(matches!(
        out[0],
        Chunk::Data {
            commits: true,
            usage_only: false,
            ..
        }
    ));
    assert!(matches!(out[1], Chunk::Data { commits: false, .. }));
    assert!(matches!(
        out[2],
        Chunk::Data {
            commits: false,
            usage_only: true,
            usage: Some(Usage {
                input: 5,
                cached_input: 0,
                output: 2
            }),
            ..
        }
    ));
    assert!(matches!(&out[3], Chunk::Error(e) if e.class == FailureClass::RateLimited));
    assert!(matches!(&out[4], Chunk::Error(e) if e.class == FailureClass::ServerError));
    assert!(matches!(out[5], Chunk::Done));
}

/// The commit point reads the delta's fields without building it: a field set to null, or one
/// that is not content, does not commit; any committing field set to something does, whatever
/// its key's spelling in JSON.
#[test]
fn only_a_committing_field_with_a_value_commits() {
    let commits = |data: &str| {
        let mut out = Vec::new();
        Decoder.decode(
            SseEvent {
                event: None,
                data: Bytes::copy_from_slice(data.as_bytes()),
            },
            &mut out,
        );
        match out.as_slice() {
            [Chunk::Data { commits, .. }] => *commits,
            _ => panic!("one data chunk for {data}"),
        }
    };
    let delta = |d: &str| format!(r#"{{"choices":[{{"index":0,"delta":{d}}}]}}"#);
    assert!(!commits(&delta(
        r#"{"content":null,"role":null,"tool_calls":null}"#
    )));
    assert!(!commits(&delta(
        r#"{"obfuscation":"abc","extra":{"content":"x"}}"#
    )));
    assert!(commits(&delta(r#"{"tool_calls":[{"index":0,"id":"c"}]}"#)));
    assert!(commits(&delta(r#"{"reasoning_content":""}"#)));
    assert!(commits(&delta(r#"{"con\u0074ent":"hi"}"#)));
    assert!(!commits(&delta("null")));
}

/// Reads `events` both ways, one answer each, and asserts at every event that they come to the
/// same: the same error class for the same bad event, the same commit point, usage and end.
/// Returns the events read into the answers, those refused, and the two answers.
fn read_both(events: &[SseEvent]) -> (usize, usize, Result<Bytes, String>, Result<Bytes, String>) {
    use crate::convert::assemble::Assembler;

    let mut decoded_answer = Assembler::new(ClientApi::OpenAI);
    let mut whole_answer = Assembler::new(ClientApi::OpenAI);
    let (mut read, mut failed) = (0, 0);
    for event in events {
        let data = String::from_utf8_lossy(&event.data);
        let mut out = Vec::new();
        Decoder.decode(event.clone(), &mut out);
        let whole = Decoder
            .decode_whole(event, &mut whole_answer)
            .expect("OpenAI's events are hub chunks");
        // The decoded path's verdict: the decoder's, then the assembler's on the chunk (a
        // chunk it cannot take fails the attempt as a `ServerError`).
        let decoded = match out.pop() {
            Some(Chunk::Done) => Ok(None),
            Some(Chunk::Data {
                json,
                commits,
                usage,
                ..
            }) => match decoded_answer.event(&json) {
                Ok(()) => Ok(Some((commits, usage))),
                Err(_) => Err(FailureClass::ServerError),
            },
            Some(Chunk::Error(e)) => Err(e.class),
            other => panic!("{data}: decoded {other:?}"),
        };
        assert!(out.is_empty(), "{data}: one chunk per event");
        match (decoded, whole) {
            (Ok(None), Ok(whole)) => assert!(whole.done, "{data}"),
            (Ok(Some(decoded)), Ok(whole)) => {
                assert_eq!((whole.commits, whole.usage), decoded, "{data}");
                assert!(!whole.done, "{data}");
                read += 1;
            }
            (Err(decoded), Err(whole)) => {
                assert_eq!(decoded, whole.class, "{data}");
                failed += 1;
            }
            (decoded, whole) => panic!("{data}: decoded {decoded:?}, read whole {whole:?}"),
        }
    }
    (read, failed, decoded_answer.finish(), whole_answer.finish())
}

fn events(data: &[&str]) -> Vec<SseEvent> {
    data.iter()
        .map(|d| SseEvent {
            event: None,
            data: Bytes::copy_from_slice(d.as_bytes()),
        })
        .collect()
}

/// A whole answer reads each event once (`decode_whole`); it must come to what decoding the
/// event and assembling its chunk come to, good events and bad alike, and to the same answer.
#[test]
fn reading_an_event_into_a_whole_answer_agrees_with_decoding_it() {
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
        "[DONE]",
    ]);
    let (read, failed, decoded, whole) = read_both(&events);
    assert_eq!((read, failed), (7, 10));
    let (decoded, whole) = (decoded.unwrap(), whole.unwrap());
    assert_eq!(decoded, whole);
    let answer: Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
    assert_eq!(answer["usage"]["prompt_cache_hit_tokens"], 4);
}

/// The same, for a recorded stream with bytes changed at random: a changed event is refused or
/// read alike both ways.
#[test]
fn mutated_events_read_whole_as_they_decode() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let recorded = std::fs::read(format!(
        "{}/src/convert/testdata/streams/openai_tool_calls.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut parsed = Vec::new();
    crate::convert::sse::SseParser::default()
        .push(&recorded, &mut parsed)
        .unwrap();
    let (mut read, mut failed) = (0, 0);
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
                    event: None,
                    data: data.into(),
                }
            })
            .collect();
        let both = read_both(&events);
        read += both.0;
        failed += both.1;
        match (both.2, both.3) {
            (Ok(decoded), Ok(whole)) => assert_eq!(decoded, whole, "seed {seed}"),
            (decoded, whole) => assert_eq!(decoded.is_ok(), whole.is_ok(), "seed {seed}"),
        }
    }
    // The mutations reach both verdicts.
    assert!(read > 300 && failed > 300, "{read} read, {failed} refused");
}
