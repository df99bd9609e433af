//! `api: VertexAI` end to end (docs/reference/crds.md#vertex-ai): the real sidecar, started from
//! manifests naming a Vertex provider whose service account key is a Secret, against the
//! simulated Vertex AI and its OAuth2 token endpoint. The token endpoint verifies each JWT
//! assertion's RS256 signature and claims; the model server accepts only its current tokens and
//! checks the project, location, publisher, method and (for Anthropic models) the Vertex body.
//! OpenAI and Anthropic clients, both publishers, streamed and not; one token for many requests,
//! a new one before it expires; a token the model server refuses, and a key the token endpoint
//! refuses, are `AuthError`s that fail over. Gemini filtering an answer before any content is
//! `ContentFiltered` (failed over only when listed); after some content, `content_filter`.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::vertex::{self, TokenServer, token};
use switchyard_tests::{Harness, MockProvider, route};

const GEMINI: &str = "gemini-2.5-flash";
const CLAUDE: &str = "claude-sonnet-4@20250514";
const REPLY: &str = "Hello from the simulated provider.";

/// Pool `pool` with Vertex provider `v` (both publishers' models, key file `key`) and, when
/// `backup` is given, an OpenAI provider `b` there; routes `gemini` and `claude` to Vertex (then
/// `b`).
fn manifests(vertex_url: &str, key: &str, backup: Option<&str>) -> String {
    routed_manifests(vertex_url, key, backup, "")
}

/// [`manifests`] with `extra` (route spec YAML, such as a failover policy) on both routes.
fn routed_manifests(vertex_url: &str, key: &str, backup: Option<&str>, extra: &str) -> String {
    let backup_provider = backup.map_or(String::new(), |url| {
        format!(
            "    - name: b
      api: OpenAI
      baseUrl: {url}
      apiKey: {{secretKeyRef: {{name: keys, key: b}}}}
      models:
        - {{name: m, inputPerMillion: \"1\", outputPerMillion: \"1\"}}
"
        )
    });
    let mut yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: v
      api: VertexAI
      baseUrl: {vertex_url}
      region: us-east5
      gcp:
        project: {project}
        serviceAccountKeySecretRef: {{name: gcp, key: key.json}}
      models:
        - {{name: {GEMINI}, publisher: Google, inputPerMillion: \"1\", outputPerMillion: \"1\"}}
        - {{name: \"{CLAUDE}\", publisher: Anthropic, inputPerMillion: \"3\", outputPerMillion: \"15\"}}
{backup_provider}---
apiVersion: v1
kind: Secret
metadata: {{name: gcp}}
stringData:
  key.json: |
    {key}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{b: sk-b-secret}}
",
        project = vertex::PROJECT,
    );
    let targets = |model| {
        let mut targets = vec![("v", model)];
        if backup.is_some() {
            targets.push(("b", "m"));
        }
        targets
    };
    yaml += &route("gemini", "gemini", &targets(GEMINI), extra);
    yaml += &route(
        "claude",
        "claude",
        &targets(&format!("\"{CLAUDE}\"")),
        extra,
    );
    yaml
}

struct Setup {
    tokens: TokenServer,
    vertex: vertex::MockProvider,
    h: Harness,
}

async fn setup() -> Setup {
    let tokens = TokenServer::start().await.expect("token server");
    let vertex = vertex::MockProvider::start("v").await.expect("vertex");
    let h = Harness::start(&manifests(&vertex.base_url(), &tokens.key_file(), None)).await;
    Setup { tokens, vertex, h }
}

fn openai_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn anthropic_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 64,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// The text of a streamed OpenAI answer.
fn openai_stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            let chunk: Value = serde_json::from_str(e).expect("chunks are JSON");
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// The text of a streamed Anthropic answer.
fn anthropic_stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| {
            let event: Value = serde_json::from_str(e).expect("events are JSON");
            event["delta"]["text"].as_str().map(str::to_string)
        })
        .collect()
}

fn vertex_path(publisher: &str, model: &str, method: &str) -> String {
    format!(
        "/v1/projects/{}/locations/us-east5/publishers/{publisher}/models/{model}:{method}",
        vertex::PROJECT
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_reach_both_publishers_streamed_and_not() {
    let Setup { tokens, vertex, h } = setup().await;

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["choices"][0]["message"]["content"], REPLY);
    assert!(reply.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let seen = vertex.last_request().expect("called");
    assert_eq!(
        seen.path,
        vertex_path("google", GEMINI, "streamGenerateContent")
    );
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    let auth = seen.header("authorization").expect("a bearer token");
    assert!(auth.starts_with("Bearer ya29."), "{auth}");

    let reply = h
        .post("/v1/chat/completions", &openai_body("claude", true))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(openai_stream_text(&reply.events()), REPLY);
    let seen = vertex.last_request().expect("called");
    assert_eq!(
        seen.path,
        vertex_path("anthropic", CLAUDE, "streamRawPredict")
    );
    let body = &seen.body;
    assert_eq!(body["anthropic_version"], vertex::ANTHROPIC_VERSION);
    assert!(body.get("model").is_none(), "{body}");

    let reply = h
        .post("/v1/chat/completions", &openai_body("claude", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["choices"][0]["message"]["content"], REPLY);
    assert_eq!(reply.json()["choices"][0]["finish_reason"], "stop");

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", true))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(openai_stream_text(&reply.events()), REPLY);
    assert_eq!(reply.events().last().map(String::as_str), Some("[DONE]"));

    assert_eq!(vertex.request_count(), 4);
    assert_eq!(tokens.grants(), 1, "one token for every request");
    assert_eq!(tokens.requests(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_clients_reach_both_publishers_streamed_and_not() {
    let Setup { tokens, vertex, h } = setup().await;

    // To an Anthropic model the client's body passes through, `model` swapped for the version.
    let mut sent = anthropic_body("claude", false);
    sent["metadata"] = json!({"user_id": "u-1"});
    let reply = h.post("/v1/messages", &sent).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["type"], "message");
    assert_eq!(reply.json()["content"][0]["text"], REPLY);
    let seen = vertex.last_request().expect("called");
    assert_eq!(
        seen.path,
        vertex_path("anthropic", CLAUDE, "streamRawPredict")
    );
    let body = &seen.body;
    assert_eq!(body["metadata"]["user_id"], "u-1", "{body}");
    assert_eq!(body["anthropic_version"], vertex::ANTHROPIC_VERSION);
    assert!(body.get("model").is_none(), "{body}");

    let reply = h
        .post("/v1/messages", &anthropic_body("claude", true))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(anthropic_stream_text(&reply.events()), REPLY);

    let reply = h
        .post("/v1/messages", &anthropic_body("gemini", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["content"][0]["text"], REPLY);
    assert_eq!(reply.json()["stop_reason"], "end_turn");

    let reply = h
        .post("/v1/messages", &anthropic_body("gemini", true))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(anthropic_stream_text(&reply.events()), REPLY);
    assert!(
        String::from_utf8_lossy(&reply.body).contains("event: message_stop"),
        "a complete Anthropic stream"
    );

    assert_eq!(tokens.grants(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_replaced_before_they_expire() {
    let Setup { tokens, vertex, h } = setup().await;
    // Tokens live 2 s: the sidecar replaces them after 1.6 s, before the model server would
    // refuse them.
    tokens.set_lifetime(2, 2);
    let first = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let first_token = vertex
        .last_request()
        .unwrap()
        .header("authorization")
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let again = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(tokens.grants(), 1, "still within 80 % of its life");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = h
        .post("/v1/chat/completions", &openai_body("claude", false))
        .await;
    assert_eq!(later.status, 200, "{:?}", later.body);
    assert_eq!(tokens.grants(), 2, "a new token after 80 % of its life");
    let second_token = vertex
        .last_request()
        .unwrap()
        .header("authorization")
        .unwrap()
        .to_string();
    assert_ne!(first_token, second_token);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_model_server_refuses_is_an_auth_error_that_fails_over() {
    let (tokens, vertex, backup, h) = gemini_with_backup("").await;
    // The token endpoint says an hour, the model server honours one second: the sidecar's
    // cached token is refused (401 UNAUTHENTICATED) while it still believes in it.
    tokens.set_lifetime(3600, 1);
    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    assert_eq!(
        reply.header("x-switchyard-attempts"),
        "1",
        "{:?}",
        reply.body
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(backup.request_count(), 1);
    let seen = vertex.last_request().unwrap();
    assert!(seen.header("authorization").is_some());
    let failovers = [
        ("route", "gemini"),
        ("provider", "pool/v"),
        ("reason", "AuthError"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_token_endpoint_refuses_fails_over_without_leaking_it() {
    let tokens = TokenServer::start().await.expect("token server");
    let vertex = vertex::MockProvider::start("v").await.expect("vertex");
    let backup = MockProvider::start("b").await.expect("backup");
    let key = token::key_file(token::THROWAWAY_OTHER_PRIVATE_KEY, &tokens.token_url());
    let h = Harness::start(&manifests(
        &vertex.base_url(),
        &key,
        Some(&backup.base_url()),
    ))
    .await;

    let reply = h
        .post("/v1/messages", &anthropic_body("claude", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(tokens.requests(), 1);
    assert_eq!(tokens.grants(), 0);
    assert_eq!(vertex.request_count(), 0, "no model call without a token");
    let failovers = [
        ("route", "claude"),
        ("provider", "pool/v"),
        ("reason", "AuthError"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    let metrics = h.metrics().await;
    assert!(!metrics.contains("PRIVATE KEY") && !metrics.contains("ya29."));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertex_error_answers_are_classified_and_fail_over() {
    use switchyard_sim::anthropic::Fault as AnthropicFault;
    let cases = [
        ("gemini", vertex::Fault::ResourceExhausted, "RateLimited"),
        ("gemini", vertex::Fault::PermissionDenied, "AuthError"),
        ("claude", vertex::Fault::Unauthenticated, "AuthError"),
        (
            "claude",
            vertex::Fault::Anthropic(AnthropicFault::Overloaded),
            "Overloaded",
        ),
        // An Anthropic `error` event inside the Vertex stream, before any content.
        (
            "claude",
            vertex::Fault::Anthropic(AnthropicFault::ErrorMidStream { after_chunks: 0 }),
            "Overloaded",
        ),
    ];
    for (route, fault, reason) in cases {
        let tokens = TokenServer::start().await.expect("token server");
        let vertex = vertex::MockProvider::start("v").await.expect("vertex");
        let backup = MockProvider::start("b").await.expect("backup");
        let yaml = manifests(
            &vertex.base_url(),
            &tokens.key_file(),
            Some(&backup.base_url()),
        );
        let h = Harness::start(&yaml).await;
        vertex.push_faults([fault.clone()]);

        let reply = h
            .post("/v1/chat/completions", &openai_body(route, false))
            .await;
        assert_eq!(reply.status, 200, "{fault:?}: {:?}", reply.body);
        assert_eq!(reply.header("x-switchyard-attempts"), "2", "{fault:?}");
        assert_eq!(backup.request_count(), 1, "{fault:?}");
        let failovers = [("route", route), ("provider", "pool/v"), ("reason", reason)];
        assert_eq!(
            h.count("switchyard_failovers_total", &failovers).await,
            1.0,
            "{fault:?} is {reason}"
        );
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_clients_ride_the_hub_to_both_publishers() {
    let Setup { tokens, vertex, h } = setup().await;
    for (model, publisher) in [("gemini", "google"), ("claude", "anthropic")] {
        let reply = h
            .post("/v1/responses", &json!({"model": model, "input": "hi"}))
            .await;
        assert_eq!(reply.status, 200, "{model}: {:?}", reply.body);
        let response = reply.json();
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "completed");
        let text: String = response["output"]
            .as_array()
            .expect("output items")
            .iter()
            .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
            .filter(|part| part["type"] == "output_text")
            .filter_map(|part| part["text"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, REPLY, "{model}");
        let seen = vertex.last_request().expect("called");
        assert!(
            seen.path.contains(&format!("/publishers/{publisher}/")),
            "{}",
            seen.path
        );
    }
    assert_eq!(tokens.grants(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_cached_prompt_tokens_for_both_publishers() {
    let Setup {
        tokens: _tokens,
        vertex,
        h,
    } = setup().await;
    vertex.set_behavior(vertex::Behavior {
        cached_tokens: 7,
        ..vertex::Behavior::default()
    });
    for model in ["gemini", "claude"] {
        for stream in [false, true] {
            let mut body = openai_body(model, stream);
            if stream {
                body["stream_options"] = json!({"include_usage": true});
            }
            let reply = h.post("/v1/chat/completions", &body).await;
            assert_eq!(reply.status, 200, "{model}: {:?}", reply.body);
            let usage = if stream {
                let last = reply
                    .events()
                    .iter()
                    .rev()
                    .find(|e| e.contains("\"usage\""))
                    .cloned()
                    .expect("a usage chunk");
                serde_json::from_str::<Value>(&last).unwrap()["usage"].clone()
            } else {
                reply.json()["usage"].clone()
            };
            assert_eq!(
                usage["prompt_tokens_details"]["cached_tokens"], 7,
                "{model} stream {stream}: {usage}"
            );
            assert!(usage["prompt_tokens"].as_u64().unwrap() >= 7, "{usage}");
        }
    }
    h.stop().await;
}

/// A 200 Gemini stream of these `GenerateContentResponse`s, as the simulated Vertex AI sends it.
fn gemini_stream(events: &[Value]) -> vertex::Fault {
    let body: String = events
        .iter()
        .map(|e| format!("data: {e}\r\n\r\n"))
        .collect();
    vertex::Fault::Gemini(switchyard_sim::gemini::Fault::Status {
        status: 200,
        body,
        headers: vec![("content-type".into(), "text/event-stream".into())],
    })
}

/// Gemini blocking the prompt: no candidate, a `promptFeedback.blockReason`.
fn prompt_blocked() -> vertex::Fault {
    gemini_stream(&[json!({"promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}, "modelVersion": GEMINI})])
}

/// Gemini's safety filter stopping the answer after `text` (none: before any content).
fn answer_stopped_after(text: &str) -> vertex::Fault {
    let mut events = Vec::new();
    if !text.is_empty() {
        events.push(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
            "modelVersion": GEMINI}));
    }
    events.push(json!({"candidates": [{"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
        "modelVersion": GEMINI}));
    gemini_stream(&events)
}

/// A Gemini route on Vertex with an OpenAI-API backup target, `extra` on the routes; the token
/// server must live as long as the sidecar.
async fn gemini_with_backup(
    extra: &str,
) -> (TokenServer, vertex::MockProvider, MockProvider, Harness) {
    let tokens = TokenServer::start().await.expect("token server");
    let vertex = vertex::MockProvider::start("v").await.expect("vertex");
    let backup = MockProvider::start("b").await.expect("backup");
    let yaml = routed_manifests(
        &vertex.base_url(),
        &tokens.key_file(),
        Some(&backup.base_url()),
        extra,
    );
    let h = Harness::start(&yaml).await;
    (tokens, vertex, backup, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_filtering_before_content_fails_over_when_listed() {
    let (_tokens, vertex, backup, h) =
        gemini_with_backup("failover: {on: [ContentFiltered]}").await;
    vertex.push_faults([prompt_blocked(), answer_stopped_after("")]);

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.json()["choices"][0]["finish_reason"], "stop");

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", true))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    let events = reply.events();
    assert!(!openai_stream_text(&events).is_empty());
    assert!(
        !events.iter().any(|e| e.contains("content_filter")),
        "nothing of Gemini's stopped answer is left: {events:?}"
    );

    assert_eq!(backup.request_count(), 2);
    let failovers = [
        ("route", "gemini"),
        ("provider", "pool/v"),
        ("reason", "ContentFiltered"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 2.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_filtering_before_content_is_content_filtered_in_each_clients_format() {
    let (_tokens, vertex, backup, h) = gemini_with_backup("").await;
    vertex.push_faults([prompt_blocked(), answer_stopped_after(""), prompt_blocked()]);

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    reply.assert_openai_error(400, "content_filter", "Gemini blocked the prompt: SAFETY");
    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", true))
        .await;
    reply.assert_openai_error(400, "content_filter", "SAFETY");

    let reply = h
        .post("/v1/messages", &anthropic_body("gemini", true))
        .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert_eq!(reply.json()["type"], "error");

    assert_eq!(
        backup.request_count(),
        0,
        "ContentFiltered is not failed over by default"
    );
    let filtered = [
        ("route", "gemini"),
        ("provider", "pool/v"),
        ("outcome", "ContentFiltered"),
    ];
    assert_eq!(h.count("switchyard_requests_total", &filtered).await, 3.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_filtering_after_content_reaches_the_client_as_its_finish_reason() {
    let (_tokens, vertex, backup, h) =
        gemini_with_backup("failover: {on: [ContentFiltered]}").await;
    vertex.push_faults([
        answer_stopped_after("Hello from"),
        answer_stopped_after("Hello from"),
        answer_stopped_after("Hello from"),
    ]);

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", true))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let events = reply.events();
    assert_eq!(openai_stream_text(&events), "Hello from");
    assert!(
        events
            .iter()
            .any(|e| e.contains(r#""finish_reason":"content_filter""#)),
        "{events:?}"
    );

    let reply = h
        .post("/v1/chat/completions", &openai_body("gemini", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(
        body["choices"][0]["message"]["content"], "Hello from",
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");

    let reply = h
        .post("/v1/messages", &anthropic_body("gemini", false))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["content"][0]["text"], "Hello from", "{body}");
    assert_eq!(body["stop_reason"], "refusal", "{body}");

    assert_eq!(
        backup.request_count(),
        0,
        "a committed answer is not failed over"
    );
    h.stop().await;
}
