use http::HeaderMap;
use serde_json::{Map, json};
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::{Breaker, Limits, TimeoutsMs, Upstream};
use switchyard_crds::v1alpha1::Publisher;

use super::*;
use crate::upstream::UpstreamRt;
use crate::upstream::credentials::Credential;

// Azure's answers, verbatim but for the request ids.
const PROMPT_FILTERED: &str = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":true,"severity":"medium"},"violence":{"filtered":false,"severity":"safe"}}}}}"#;
const RATE_LIMITED: &str = r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#;
const BAD_KEY: &str = r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#;
const NO_DEPLOYMENT: &str = r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#;
const CONTEXT: &str = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded","status":400}}"#;
const BAD_PARAM: &str = r#"{"error":{"message":"Invalid value for 'temperature': must be <= 2.","type":"invalid_request_error","param":"temperature","code":null,"status":400}}"#;

fn upstream(api_version: Option<&str>) -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "azure".into(),
        api: Api::AzureOpenAI,
        base_url: match api_version {
            None => "https://myres.openai.azure.com/openai/v1".into(),
            Some(_) => "https://myres.openai.azure.com".into(),
        },
        region: None,
        api_key: Some(SecretString::new("azure-key-123")),
        forward_headers: vec!["api-key".into(), "authorization".into(), "x-tenant".into()],
        responses_api: false,
        azure_api_version: api_version.map(str::to_string),
        aws: None,
        gcp: None,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
    })
}

fn request() -> Map<String, Value> {
    json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
        .as_object()
        .unwrap()
        .clone()
}

fn build(up: &UpstreamRt, model: &str, client: &HeaderMap) -> http::Request<Full<Bytes>> {
    let req = request();
    let call = Call {
        upstream: up,
        model,
        request: &req,
        original: None,
        client: ClientApi::OpenAI,
        stream: true,
        client_headers: client,
        credential: &Credential::None,
        publisher: Publisher::Google,
    };
    Azure.build_request(&call).unwrap()
}

#[test]
fn urls_for_the_v1_api_and_classic_deployments() {
    let v1 = "https://r.openai.azure.com/openai/v1";
    assert_eq!(
        chat_url(v1, None, "gpt-4o"),
        "https://r.openai.azure.com/openai/v1/chat/completions"
    );
    let root = "https://r.openai.azure.com";
    assert_eq!(
        chat_url(root, Some("2024-10-21"), "gpt-4o-prod"),
        "https://r.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    // A deployment name cannot reshape the URL, nor can the version.
    assert_eq!(
        chat_url(root, Some("2025-01-01-preview&x=1"), "a/../b c?d#e"),
        "https://r.openai.azure.com/openai/deployments/a%2F..%2Fb%20c%3Fd%23e/chat/completions?api-version=2025-01-01-preview%26x%3D1"
    );
}

#[test]
fn embeddings_urls_take_the_same_two_shapes() {
    assert_eq!(
        embeddings_url("https://r.openai.azure.com/openai/v1", None, "emb"),
        "https://r.openai.azure.com/openai/v1/embeddings"
    );
    assert_eq!(
        embeddings_url(
            "https://r.openai.azure.com",
            Some("2024-10-21"),
            "emb small"
        ),
        "https://r.openai.azure.com/openai/deployments/emb%20small/embeddings?api-version=2024-10-21"
    );
}

#[test]
fn requests_carry_the_key_as_api_key_and_never_authorization() {
    let mut client = HeaderMap::new();
    client.insert("authorization", "Bearer client".parse().unwrap());
    client.insert("api-key", "client-key".parse().unwrap());
    client.insert("x-tenant", "acme".parse().unwrap());
    let built = build(&upstream(None), "gpt-4o", &client);

    assert_eq!(
        built.uri(),
        "https://myres.openai.azure.com/openai/v1/chat/completions"
    );
    let h = built.headers();
    assert_eq!(h.get_all("api-key").iter().count(), 1);
    assert_eq!(h["api-key"], "azure-key-123");
    assert!(h["api-key"].is_sensitive(), "hyper must never log it");
    assert!(!h.contains_key("authorization"));
    assert_eq!(h["x-tenant"], "acme");
    let body = crate::providers::sent_json(built);
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[test]
fn classic_deployments_take_the_model_in_the_path() {
    let built = build(
        &upstream(Some("2024-10-21")),
        "my deployment",
        &HeaderMap::new(),
    );
    assert_eq!(
        built.uri(),
        "https://myres.openai.azure.com/openai/deployments/my%20deployment/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(built.headers()["api-key"], "azure-key-123");
    // Azure ignores `model` on a deployment URL; it stays, as it is harmless.
    assert_eq!(crate::providers::sent_json(built)["model"], "my deployment");
}

fn classify(status: u16, headers: &[(&str, &str)], body: &str) -> AttemptError {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Azure.classify_error(StatusCode::from_u16(status).unwrap(), &map, body.as_bytes())
}

#[test]
fn azure_errors_classify_from_their_real_bodies() {
    let e = classify(400, &[], PROMPT_FILTERED);
    assert_eq!(e.class, FailureClass::ContentFiltered);
    assert!(
        e.message.contains("content management policy"),
        "{}",
        e.message
    );
    // The inner code alone is enough.
    let inner_only = PROMPT_FILTERED.replace(r#""code":"content_filter""#, r#""code":null"#);
    assert_eq!(
        classify(400, &[], &inner_only).class,
        FailureClass::ContentFiltered
    );

    let e = classify(
        429,
        &[("retry-after", "6"), ("retry-after-ms", "5300")],
        RATE_LIMITED,
    );
    assert_eq!(e.class, FailureClass::RateLimited);
    assert_eq!(e.retry_after, Some(std::time::Duration::from_millis(5300)));
    let e = classify(429, &[("retry-after", "6")], RATE_LIMITED);
    assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(6)));
    // A quota message that happens to mention billing is still a rate limit on Azure.
    let billing = RATE_LIMITED.replace("pricing tier", "billing tier");
    assert_eq!(
        classify(429, &[], &billing).class,
        FailureClass::RateLimited
    );

    assert_eq!(classify(401, &[], BAD_KEY).class, FailureClass::AuthError);
    assert_eq!(
        classify(404, &[], NO_DEPLOYMENT).class,
        FailureClass::ServerError
    );
    assert_eq!(
        classify(400, &[], CONTEXT).class,
        FailureClass::ContextLengthExceeded
    );
    assert_eq!(
        classify(400, &[], BAD_PARAM).class,
        FailureClass::ClientError
    );
    assert_eq!(classify(500, &[], "{}").class, FailureClass::ServerError);
}

/// An Azure stream as the service sends it: the prompt-filter chunk, the role chunk, content
/// with annotations, the finish, a trailing annotation chunk, usage, `[DONE]`.
fn azure_stream(finish: &str, words: &[&str]) -> Vec<String> {
    let safe = json!({"hate": {"filtered": false, "severity": "safe"},
                      "violence": {"filtered": false, "severity": "safe"}});
    let chunk = |delta: Value, finish: Value, results: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish,
                            "content_filter_results": results}], "usage": null})
        .to_string()
    };
    let mut events = vec![
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": safe}]})
        .to_string(),
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
            json!({}),
        ),
    ];
    for word in words {
        events.push(chunk(json!({"content": word}), Value::Null, safe.clone()));
    }
    let results = if finish == "content_filter" {
        json!({"violence": {"filtered": true, "severity": "high"}})
    } else {
        json!({})
    };
    events.push(chunk(json!({}), json!(finish), results));
    let mut trailing: Value = serde_json::from_str(&chunk(json!({}), Value::Null, safe)).unwrap();
    trailing["choices"][0]["content_filter_offsets"] =
        json!({"check_offset": 0, "start_offset": 0, "end_offset": 40});
    events.push(trailing.to_string());
    events.push(
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
               "prompt_tokens_details": {"cached_tokens": 4}}})
        .to_string(),
    );
    events.push("[DONE]".into());
    events
}

fn decode(client: ClientApi, events: &[String]) -> Vec<Chunk> {
    let mut decoder = Azure.stream_decoder(client, "m");
    let mut out = Vec::new();
    for data in events {
        decoder.decode(
            SseEvent {
                event: None,
                data: Bytes::from(data.clone()),
            },
            &mut out,
        );
    }
    decoder.end(&mut out);
    out
}

fn data(chunk: &Chunk) -> Value {
    match chunk {
        Chunk::Data { json, .. } => serde_json::from_slice(json).unwrap(),
        other => panic!("not a data chunk: {other:?}"),
    }
}

#[test]
fn annotation_only_chunks_never_reach_the_client() {
    let out = decode(
        ClientApi::OpenAI,
        &azure_stream("stop", &["Hello", " there"]),
    );
    // role, two words, finish, usage, done: no prompt-filter chunk, no trailing annotation.
    assert_eq!(out.len(), 6, "{out:?}");
    let role = data(&out[0]);
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    assert!(matches!(out[0], Chunk::Data { commits: true, .. }));
    assert_eq!(data(&out[1])["choices"][0]["delta"]["content"], "Hello");
    assert_eq!(data(&out[3])["choices"][0]["finish_reason"], "stop");
    match &out[4] {
        Chunk::Data {
            usage: Some(u),
            usage_only: true,
            ..
        } => assert_eq!((u.input, u.cached_input, u.output), (9, 4, 2)),
        other => panic!("the usage chunk: {other:?}"),
    }
    assert!(matches!(out[5], Chunk::Done));
    for chunk in &out[..5] {
        let c = data(chunk);
        assert_ne!(c["id"], "", "the empty-id prompt-filter chunk leaked: {c}");
        assert!(c.get("prompt_filter_results").is_none());
    }
}

#[test]
fn a_filter_before_any_content_is_content_filtered_and_the_role_never_leaves() {
    let out = decode(ClientApi::OpenAI, &azure_stream("content_filter", &[]));
    let Some(Chunk::Error(e)) = out.first() else {
        panic!("first chunk should be the failure: {out:?}");
    };
    assert_eq!(e.class, FailureClass::ContentFiltered);
    assert!(e.message.contains("violence: high"), "{}", e.message);
    assert!(
        !out.iter()
            .any(|c| matches!(c, Chunk::Data { commits: true, .. })),
        "nothing may commit the stream before the failure: {out:?}"
    );
}

#[test]
fn a_filter_after_content_passes_on_as_the_finish_reason() {
    let out = decode(
        ClientApi::Anthropic,
        &azure_stream("content_filter", &["Once"]),
    );
    assert!(!out.iter().any(|c| matches!(c, Chunk::Error(_))), "{out:?}");
    let finishes: Vec<Value> = out
        .iter()
        .filter(|c| matches!(c, Chunk::Data { .. }))
        .map(|c| data(c)["choices"][0]["finish_reason"].clone())
        .collect();
    assert!(finishes.contains(&json!("content_filter")), "{finishes:?}");
}

#[test]
fn an_empty_answer_and_a_tool_call_still_flow() {
    // Role then a bare finish: the held role is released before the finish.
    let out = decode(ClientApi::OpenAI, &azure_stream("stop", &[]));
    assert_eq!(data(&out[0])["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(data(&out[1])["choices"][0]["finish_reason"], "stop");
    // A role chunk that already carries a tool call is content: nothing held.
    let call = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": null, "content_filter_results": {},
                     "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1",
                               "type": "function", "function": {"name": "f", "arguments": ""}}]}}]});
    let mut decoder = Azure.stream_decoder(ClientApi::OpenAI, "m");
    let mut out = Vec::new();
    decoder.decode(
        SseEvent {
            event: None,
            data: Bytes::from(call.to_string()),
        },
        &mut out,
    );
    assert!(
        matches!(out[..], [Chunk::Data { commits: true, .. }]),
        "{out:?}"
    );
}

#[test]
fn errors_inside_streams_classify() {
    let event = json!({"error": {"code": "content_filter", "message": "filtered"}}).to_string();
    let out = decode(ClientApi::OpenAI, &[event]);
    assert!(matches!(&out[0], Chunk::Error(e) if e.class == FailureClass::ContentFiltered));
    let out = decode(ClientApi::OpenAI, &["{not json".to_string()]);
    assert!(matches!(&out[0], Chunk::Error(e) if e.class == FailureClass::ServerError));
}

#[test]
fn whole_answers_read_like_openai_ones() {
    let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "choices": [{"index": 0, "finish_reason": "stop", "content_filter_results": {},
                     "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}});
    let done = Azure
        .parse_response(Bytes::from(body.to_string()), ClientApi::Anthropic, "m")
        .unwrap();
    let answer: Value = serde_json::from_slice(&done.body).unwrap();
    assert_eq!(answer["content"][0]["text"], "Hi");
    assert_eq!(done.usage.unwrap().input, 5);
}

#[test]
fn odd_chunks_are_dropped_or_malformed_never_a_panic_or_noise() {
    // Annotation-shaped oddities carry nothing: dropped.
    for odd in [
        json!({"choices": null}),
        json!({"choices": [{"index": 0, "delta": null}]}),
        json!({"choices": [{"index": 0}], "usage": null}),
        json!({}),
    ] {
        let out = decode(ClientApi::OpenAI, &[odd.to_string()]);
        assert!(
            out.iter()
                .all(|c| matches!(c, Chunk::Done) || matches!(c, Chunk::Error(_))),
            "{odd}: {out:?}"
        );
        assert!(
            !out.iter().any(|c| matches!(c, Chunk::Data { .. })),
            "{odd}: {out:?}"
        );
    }
    // JSON that is not a chunk object is a malformed answer, not silently skipped.
    for odd in ["42", "[]", "\"text\"", "null"] {
        let out = decode(ClientApi::Anthropic, &[odd.to_string()]);
        assert!(
            matches!(out.first(), Some(Chunk::Error(e)) if e.class == FailureClass::ServerError),
            "{odd}: {out:?}"
        );
    }
}
