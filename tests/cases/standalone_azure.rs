//! `api: AzureOpenAI` (docs/reference/crds.md#azure-openai) through the real sidecar against the
//! simulated Azure resource: both URL shapes (`/openai/v1` and classic deployments with
//! `azure.apiVersion`), the key in `api-key` only, OpenAI and Anthropic clients streamed and not
//! (Azure's annotation-only chunks never reach them), the content filter as `ContentFiltered`
//! (prompt and output filter, what each client sees, failover only when listed), and a 429's
//! `retry-after-ms` blocking the target for exactly that long; embeddings in both URL shapes.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::azure::{self, Fault};
use switchyard_tests::{Behavior, Harness, MockProvider, Reply, route};

const REPLY: &str = "Hello from Azure today";
const KEY: &str = "sk-azure-secret";
const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

/// Pool `pool` with Azure provider `az` (model `gpt-4o`) at `url` and, when `backup` is set, an
/// OpenAI provider `b` (model `m-b`); route `r` for model `chat` over them in that order.
fn manifests(
    url: &str,
    api_version: Option<&str>,
    backup: Option<&str>,
    route_extra: &str,
) -> String {
    let azure = api_version.map_or(String::new(), |v| {
        format!("      azure: {{apiVersion: \"{v}\"}}\n")
    });
    let mut yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: az
      api: AzureOpenAI
      baseUrl: {url}
{azure}      apiKey: {{secretKeyRef: {{name: keys, key: az}}}}
      models:
        - {{name: gpt-4o, inputPerMillion: \"1\", outputPerMillion: \"2\"}}
"
    );
    let mut targets = vec![("az", "gpt-4o")];
    if let Some(b) = backup {
        yaml.push_str(&format!(
            "    - name: b
      api: OpenAI
      baseUrl: {b}
      apiKey: {{secretKeyRef: {{name: keys, key: b}}}}
      models:
        - {{name: m-b, inputPerMillion: \"1\", outputPerMillion: \"2\"}}
"
        ));
        targets.push(("b", "m-b"));
    }
    yaml.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: keys}}\nstringData: {{az: {KEY}, b: sk-b-secret}}\n"
    ));
    yaml + &route("r", "chat", &targets, route_extra)
}

async fn azure_sim() -> azure::MockProvider {
    let p = azure::MockProvider::start("az").await.expect("azure sim");
    p.set_behavior(Behavior {
        reply: REPLY.into(),
        ..Behavior::default()
    });
    p
}

fn openai_request(stream: bool) -> Value {
    json!({"model": "chat", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "say hello"}]})
}

fn anthropic_request(stream: bool) -> Value {
    json!({"model": "chat", "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": "say hello"}]})
}

async fn send(h: &Harness, path: &str, body: &Value) -> Reply {
    let headers: &[(&str, &str)] = if path == "/v1/messages" {
        &[VERSION]
    } else {
        &[]
    };
    tokio::time::timeout(Duration::from_secs(10), h.post_with(path, body, headers))
        .await
        .expect("bounded")
}

fn ok(reply: &Reply) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// The JSON chunks of an OpenAI-format stream, checking it ends with `[DONE]` and that none of
/// Azure's annotation-only chunks came through.
fn openai_chunks(reply: &Reply) -> Vec<Value> {
    let mut events = reply.events();
    assert_eq!(events.pop().as_deref(), Some("[DONE]"), "{events:?}");
    let chunks: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).expect("json"))
        .collect();
    for chunk in &chunks {
        assert!(
            chunk.get("prompt_filter_results").is_none(),
            "prompt filter chunk leaked: {chunk}"
        );
        assert_ne!(chunk["id"], "", "an empty-id chunk leaked: {chunk}");
        let choices = chunk["choices"].as_array().expect("choices");
        if choices.is_empty() {
            assert!(
                chunk["usage"].is_object(),
                "an empty chunk reached the client: {chunk}"
            );
        }
        for choice in choices {
            let delta = choice["delta"].as_object().expect("delta");
            let says = delta.values().any(|v| !v.is_null()) || !choice["finish_reason"].is_null();
            assert!(says, "an annotation-only chunk reached the client: {chunk}");
        }
    }
    chunks
}

fn openai_text(chunks: &[Value]) -> String {
    let deltas = chunks.iter().map(|c| &c["choices"][0]["delta"]["content"]);
    deltas.filter_map(Value::as_str).collect()
}

fn finish_reasons(chunks: &[Value]) -> Vec<String> {
    let reasons = chunks.iter().map(|c| &c["choices"][0]["finish_reason"]);
    reasons
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The text of an Anthropic-format stream's `text_delta`s and its `message_delta`'s stop reason.
fn anthropic_stream(reply: &Reply) -> (String, String) {
    let events: Vec<Value> = reply
        .events()
        .iter()
        .map(|e| serde_json::from_str(e).expect("json"))
        .collect();
    assert_eq!(
        events.first().map(|e| &e["type"]),
        Some(&json!("message_start")),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(|e| &e["type"]),
        Some(&json!("message_stop")),
        "{events:?}"
    );
    let text = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    let stop = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .and_then(|e| e["delta"]["stop_reason"].as_str())
        .unwrap_or_default()
        .to_string();
    (text, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_api_serves_openai_and_anthropic_clients_streamed_and_not() {
    let az = azure_sim().await;
    let h = Harness::start(&manifests(&az.base_url(), None, None, "")).await;

    let reply = send(&h, "/v1/chat/completions", &openai_request(false)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/az");
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(
        body["usage"]["prompt_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{body}"
    );

    let seen = az.last_request().expect("called");
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(seen.query, None);
    assert_eq!(seen.header("api-key"), Some(KEY));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.body["model"], "gpt-4o");
    assert_eq!(seen.body["stream"], true, "every request streams upstream");

    let reply = send(&h, "/v1/chat/completions", &openai_request(true)).await;
    ok(&reply);
    let chunks = openai_chunks(&reply);
    assert_eq!(openai_text(&chunks), REPLY);
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    let usage = chunks.last().expect("a usage chunk");
    assert!(
        usage["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{usage}"
    );

    let reply = send(&h, "/v1/messages", &anthropic_request(false)).await;
    ok(&reply);
    let body = reply.json();
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["content"][0]["text"], REPLY);
    assert_eq!(body["stop_reason"], "end_turn");

    let reply = send(&h, "/v1/messages", &anthropic_request(true)).await;
    ok(&reply);
    assert_eq!(
        anthropic_stream(&reply),
        (REPLY.to_string(), "end_turn".to_string())
    );
    assert_eq!(az.request_count(), 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_deployments_put_the_model_in_the_path_with_the_api_version() {
    let az = azure_sim().await;
    let h = Harness::start(&manifests(&az.resource_url(), Some("2024-10-21"), None, "")).await;

    for stream in [false, true] {
        let reply = send(&h, "/v1/chat/completions", &openai_request(stream)).await;
        ok(&reply);
        let seen = az.last_request().expect("called");
        assert_eq!(seen.path, "/openai/deployments/gpt-4o/chat/completions");
        assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(seen.header("api-key"), Some(KEY));
        if stream {
            assert_eq!(openai_text(&openai_chunks(&reply)), REPLY);
        } else {
            assert_eq!(reply.json()["choices"][0]["message"]["content"], REPLY);
        }
    }
    let reply = send(&h, "/v1/messages", &anthropic_request(true)).await;
    ok(&reply);
    assert_eq!(anthropic_stream(&reply).0, REPLY);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_filter_is_content_filtered_in_each_clients_format_and_not_failed_over() {
    let az = azure_sim().await;
    let b = MockProvider::start("b").await.expect("mock b");
    let h = Harness::start(&manifests(&az.base_url(), None, Some(&b.base_url()), "")).await;
    az.push_faults([Fault::PromptFiltered, Fault::PromptFiltered]);

    let reply = send(&h, "/v1/chat/completions", &openai_request(true)).await;
    let message = reply.assert_openai_error(400, "content_filter", "content management policy");
    assert!(!message.contains(KEY));

    let reply = send(&h, "/v1/messages", &anthropic_request(false)).await;
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["type"], "error");

    assert_eq!(
        b.request_count(),
        0,
        "ContentFiltered is not failed over by default"
    );
    let filtered = [
        ("route", "r"),
        ("provider", "pool/az"),
        ("outcome", "ContentFiltered"),
    ];
    assert_eq!(h.count("switchyard_requests_total", &filtered).await, 2.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_filter_before_any_content_fails_the_attempt_and_fails_over_when_listed() {
    let az = azure_sim().await;
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = manifests(
        &az.base_url(),
        None,
        Some(&b.base_url()),
        "failover: {on: [ContentFiltered]}",
    );
    let h = Harness::start(&yaml).await;
    az.push_faults([Fault::OutputFiltered { after_words: 0 }]);

    let reply = send(&h, "/v1/chat/completions", &openai_request(true)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    let chunks = openai_chunks(&reply);
    assert!(!openai_text(&chunks).is_empty());
    assert_eq!(
        finish_reasons(&chunks),
        ["stop"],
        "nothing of Azure's stopped answer is left"
    );
    let failovers = [
        ("route", "r"),
        ("provider", "pool/az"),
        ("reason", "ContentFiltered"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    h.stop().await;

    // Without failover on ContentFiltered the client gets the class's error.
    let az = azure_sim().await;
    let h = Harness::start(&manifests(&az.base_url(), None, None, "")).await;
    az.push_faults([Fault::OutputFiltered { after_words: 0 }]);
    let reply = send(&h, "/v1/chat/completions", &openai_request(false)).await;
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["error"]["code"], "content_filter", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("violence: high"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_filter_after_content_reaches_the_client_as_its_finish_reason() {
    let az = azure_sim().await;
    let h = Harness::start(&manifests(&az.base_url(), None, None, "")).await;
    az.push_faults([
        Fault::OutputFiltered { after_words: 2 },
        Fault::OutputFiltered { after_words: 2 },
        Fault::OutputFiltered { after_words: 2 },
    ]);

    let reply = send(&h, "/v1/chat/completions", &openai_request(true)).await;
    ok(&reply);
    let chunks = openai_chunks(&reply);
    assert_eq!(openai_text(&chunks), "Hello from");
    assert_eq!(finish_reasons(&chunks), ["content_filter"]);

    let reply = send(&h, "/v1/chat/completions", &openai_request(false)).await;
    ok(&reply);
    let body = reply.json();
    assert_eq!(
        body["choices"][0]["message"]["content"], "Hello from",
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");

    let reply = send(&h, "/v1/messages", &anthropic_request(true)).await;
    ok(&reply);
    let (text, stop) = anthropic_stream(&reply);
    assert_eq!((text.as_str(), stop.as_str()), ("Hello from", "refusal"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429s_retry_after_ms_fails_over_and_skips_azure_for_exactly_that_long() {
    let az = azure_sim().await;
    let b = MockProvider::start("b").await.expect("mock b");
    let h = Harness::start(&manifests(&az.base_url(), None, Some(&b.base_url()), "")).await;
    // 2.1 s: longer than the 1 s block of a 429 without a hint, shorter than the 3 s its
    // `retry-after` (whole seconds, rounded up) would give.
    az.push_faults([Fault::RateLimited {
        retry_after_ms: 2100,
    }]);

    let reply = send(&h, "/v1/chat/completions", &openai_request(false)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    let failovers = [
        ("route", "r"),
        ("provider", "pool/az"),
        ("reason", "RateLimited"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = send(&h, "/v1/messages", &anthropic_request(true)).await;
    ok(&reply);
    assert_eq!(
        reply.header("x-switchyard-provider"),
        "pool/b",
        "still blocked at 1.2 s"
    );
    assert_eq!(
        reply.header("x-switchyard-attempts"),
        "1",
        "Azure was not tried"
    );
    assert_eq!(az.request_count(), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = send(&h, "/v1/chat/completions", &openai_request(true)).await;
    ok(&reply);
    assert_eq!(
        reply.header("x-switchyard-provider"),
        "pool/az",
        "free again after 2.1 s, not 3 s"
    );
    assert_eq!(az.request_count(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_an_auth_error_that_fails_over_and_never_shows_the_key() {
    let az = azure_sim().await;
    let b = MockProvider::start("b").await.expect("mock b");
    let h = Harness::start(&manifests(&az.base_url(), None, Some(&b.base_url()), "")).await;
    az.push_faults([Fault::Unauthorized]);

    let reply = send(&h, "/v1/chat/completions", &openai_request(false)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    let failovers = [
        ("route", "r"),
        ("provider", "pool/az"),
        ("reason", "AuthError"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    assert!(!h.metrics().await.contains(KEY));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_reach_both_url_shapes_with_the_key_in_api_key() {
    let az = azure_sim().await;
    let provider = |name: &str, url: &str, azure: &str| {
        format!(
            "    - name: {name}
      api: AzureOpenAI
      baseUrl: {url}
{azure}      apiKey: {{secretKeyRef: {{name: keys, key: az}}}}
      models:
        - {{name: text-embedding-3-small, type: Embedding, inputPerMillion: \"0.02\", outputPerMillion: \"0\"}}
"
        )
    };
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
{}{}---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{az: {KEY}}}
",
        provider("v1", &az.base_url(), ""),
        provider(
            "classic",
            &az.resource_url(),
            "      azure: {apiVersion: \"2024-10-21\"}\n"
        ),
    ) + &route("e1", "embed-v1", &[("v1", "text-embedding-3-small")], "")
        + &route(
            "e2",
            "embed-classic",
            &[("classic", "text-embedding-3-small")],
            "",
        );
    let h = Harness::start(&yaml).await;

    for (model, path, query) in [
        ("embed-v1", "/openai/v1/embeddings", None),
        (
            "embed-classic",
            "/openai/deployments/text-embedding-3-small/embeddings",
            Some("api-version=2024-10-21"),
        ),
    ] {
        let body = json!({"model": model, "input": ["one", "two", "three"]});
        let reply = send(&h, "/v1/embeddings", &body).await;
        ok(&reply);
        let answer = reply.json();
        assert_eq!(answer["data"].as_array().map(Vec::len), Some(3), "{answer}");
        assert!(
            answer["usage"]["prompt_tokens"]
                .as_u64()
                .is_some_and(|n| n > 0)
        );
        let seen = az.last_request().expect("called");
        assert_eq!((seen.path.as_str(), seen.query.as_deref()), (path, query));
        assert_eq!(seen.header("api-key"), Some(KEY));
        assert_eq!(seen.header("authorization"), None);
        assert_eq!(seen.body["model"], "text-embedding-3-small");
    }
    // Token arrays are OpenAI's input too, which Azure takes.
    let body = json!({"model": "embed-v1", "input": [[1, 2, 3]]});
    ok(&send(&h, "/v1/embeddings", &body).await);
    h.stop().await;
}
