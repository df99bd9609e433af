//! Broken streams from providers of every API end cleanly: a stream cut off inside an event, an
//! event far over the size limit, or events that are not JSON fail the attempt before anything
//! reached the client, so the request fails over to the next target, with no panic and no hang.
//! (Splits at every byte and invalid UTF-8 are covered by the parser's and decoders' unit tests.)

use std::time::Duration;

use serde_json::json;
use switchyard_sim::{anthropic, gemini, openai};
use switchyard_tests::Harness;

/// A 200 streamed answer with `body` as its whole content.
fn stream_of(body: String) -> (u16, String, Vec<(String, String)>) {
    (
        200,
        body,
        vec![("content-type".to_string(), "text/event-stream".to_string())],
    )
}

fn broken_bodies() -> Vec<(&'static str, String)> {
    vec![
        (
            "cut off inside an event",
            "data: {\"choices\": [{\"delta\": {\"content\": \"Hel".to_string(),
        ),
        (
            "an event over the size limit",
            format!("data: \"{}\"\n\n", "x".repeat(5 * 1024 * 1024)),
        ),
        (
            "events that are not JSON",
            "data: this is not json\n\n".to_string(),
        ),
        ("a body that ends before any event", String::new()),
    ]
}

/// A route whose first target speaks `api` at `url` and whose second is a healthy OpenAI mock.
fn manifests(api: &str, url: &str, backup: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: keys}}\nstringData: {{k: sk-test}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {{name: p}}\nspec:\n  providers:\n\
         \x20   - {{name: broken, api: {api}, baseUrl: \"{url}\", apiKey: {{secretKeyRef: {{name: keys, key: k}}}}, timeouts: {{firstToken: 3s, total: 10s}}, models: [{{name: m, inputPerMillion: \"1\", outputPerMillion: \"1\"}}]}}\n\
         \x20   - {{name: backup, api: OpenAI, baseUrl: \"{backup}\", apiKey: {{secretKeyRef: {{name: keys, key: k}}}}, models: [{{name: m, inputPerMillion: \"1\", outputPerMillion: \"1\"}}]}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: r}}\nspec: {{model: chat, targets: [{{pool: p, provider: broken, model: m}}, {{pool: p, provider: backup, model: m}}]}}\n"
    )
}

async fn check(
    api: &str,
    url: String,
    push: impl Fn(u16, String, Vec<(String, String)>),
    backup: &openai::MockProvider,
) {
    let harness = Harness::start(&manifests(api, &url, &backup.base_url())).await;
    for (what, body) in broken_bodies() {
        let (status, body, headers) = stream_of(body);
        push(status, body, headers);
        let request = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            harness.post("/v1/chat/completions", &request),
        )
        .await
        .unwrap_or_else(|_| panic!("{api}, {what}: the sidecar hung"));
        assert_eq!(
            reply.status,
            200,
            "{api}, {what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.header("x-switchyard-provider"),
            "p/backup",
            "{api}, {what}: failed over"
        );
        assert_eq!(reply.header("x-switchyard-attempts"), "2", "{api}, {what}");
        assert_eq!(
            reply.events().last().map(String::as_str),
            Some("[DONE]"),
            "{api}, {what}: a clean end"
        );
    }
    let outcomes = harness.metrics().await;
    assert!(
        outcomes.contains("outcome=\"ServerError\""),
        "{api}: broken streams count as ServerError:\n{outcomes}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_streams_fail_over_for_every_upstream_api() {
    let backup = openai::MockProvider::start("backup").await.unwrap();

    let o = openai::MockProvider::start("openai").await.unwrap();
    check(
        "OpenAI",
        o.base_url(),
        |status, body, headers| {
            o.push_faults([openai::Fault::Status {
                status,
                body,
                headers,
            }])
        },
        &backup,
    )
    .await;

    let a = anthropic::MockProvider::start("anthropic").await.unwrap();
    check(
        "Anthropic",
        a.base_url(),
        |status, body, headers| {
            a.push_faults([anthropic::Fault::Status {
                status,
                body,
                headers,
            }])
        },
        &backup,
    )
    .await;

    let g = gemini::MockProvider::start("gemini").await.unwrap();
    check(
        "Gemini",
        g.base_url(),
        |status, body, headers| {
            g.push_faults([gemini::Fault::Status {
                status,
                body,
                headers,
            }])
        },
        &backup,
    )
    .await;
}
