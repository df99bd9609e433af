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

/// A call of `req` to `up` for model `model`, with the client's headers.
fn call<'a>(
    up: &'a UpstreamRt,
    model: &'a str,
    req: &'a Map<String, Value>,
    client: &'a HeaderMap,
    stream: bool,
) -> Call<'a> {
    Call {
        upstream: up,
        model,
        request: req,
        original: None,
        client: ClientApi::OpenAI,
        stream,
        client_headers: client,
        credential: &crate::upstream::credentials::Credential::None,
        publisher: switchyard_crds::v1alpha1::Publisher::Google,
    }
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
    let built = OpenAi
        .build_request(&call(&up, "gpt-4o", &req, &client, true))
        .unwrap();

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
    let built = OpenAi
        .build_request(&call(&up, "m", &req, &HeaderMap::new(), false))
        .unwrap();
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
    // `[[], null]`: a list, which serde's derive would read field by field as an answer.
    for bad in [
        &b"not json"[..],
        b"{}",
        b"[]",
        br#"{"choices":"x"}"#,
        b"[[], null]",
    ] {
        let e = OpenAi
            .parse_response(Bytes::copy_from_slice(bad), ClientApi::OpenAI, "m")
            .err()
            .unwrap();
        assert_eq!(e.class, FailureClass::ServerError);
    }
}

/// An unnamed event with this data.
fn data_event(data: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: Bytes::copy_from_slice(data.as_bytes()),
    }
}

#[test]
fn stream_events_decode() {
    let mut d = OpenAi.stream_decoder(ClientApi::OpenAI, "m");
    let mut out = Vec::new();
    d.decode(
        data_event(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#),
        &mut out,
    );
    d.decode(
        data_event(r#"{"choices":[{"index":0,"delta":{}}]}"#),
        &mut out,
    );
    d.decode(
        data_event(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#),
        &mut out,
    );
    d.decode(data_event(r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#), &mut out);
    d.decode(data_event("{garbage"), &mut out);
    d.decode(data_event("[DONE]"), &mut out);
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

#[test]
fn a_chunk_that_is_a_list_is_refused_not_passed_on() {
    // serde's derive would read a list field by field: `[[choice]]` as a chunk with choices,
    // passed to a streaming client as it came.
    let mut d = OpenAi.stream_decoder(ClientApi::OpenAI, "m");
    for data in [
        "[]",
        r#" [[{"index":0,"delta":{"content":"x"}}]]"#,
        r#"[[],{"prompt_tokens":1}]"#,
    ] {
        let mut out = Vec::new();
        d.decode(data_event(data), &mut out);
        assert!(
            matches!(&out[..], [Chunk::Error(e)] if e.class == FailureClass::ServerError),
            "{data}"
        );
    }
}

/// The commit point reads the delta's fields without building it: a field set to null, or one
/// that is not content, does not commit; any committing field set to something does, whatever
/// its key's spelling in JSON.
#[test]
fn only_a_committing_field_with_a_value_commits() {
    let commits = |data: &str| {
        let mut out = Vec::new();
        Decoder.decode(data_event(data), &mut out);
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

/// The URI, `Host` and `Authorization` made once per upstream are what each request made for
/// itself, and a request to an upstream whose parts could not be made still goes, or fails, as
/// it did.
#[test]
fn prepared_parts_are_what_each_request_would_make() {
    let (req, client) = (request(), HeaderMap::new());
    let call_for = |up: &UpstreamRt| OpenAi.build_request(&call(up, "gpt-4o", &req, &client, true));
    let prepared = upstream(&[]);
    assert!(prepared.prepared.chat_uri.is_some() && prepared.prepared.authorization.is_some());
    let mut unprepared = upstream(&[]);
    unprepared.prepared = crate::upstream::Prepared::default();

    let (a, b) = (call_for(&prepared).unwrap(), call_for(&unprepared).unwrap());
    assert_eq!(a.uri(), b.uri());
    assert_eq!(a.headers()["authorization"], b.headers()["authorization"]);
    assert!(a.headers()["authorization"].is_sensitive());
    // hyper-util adds `Host` to the unprepared one when it sends it: the same value.
    assert_eq!(a.headers()["host"], "127.0.0.1:1");
    assert!(!b.headers().contains_key("host"));

    // A key that is no header value cannot be prepared; the request fails as it did.
    let mut bad = upstream(&[]);
    bad.def.api_key = Some(SecretString::new("sk-bad\nkey"));
    bad.prepared = crate::upstream::Prepared::default();
    let error = call_for(&bad).unwrap_err();
    assert_eq!(error.class, FailureClass::AuthError);
}
