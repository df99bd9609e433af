//! The security model's header rules for every upstream API (docs/reference/crds.md): the sidecar
//! sets each provider's own auth header from the pool's key (`Authorization: Bearer` for OpenAI,
//! `x-api-key` for Anthropic, `x-goog-api-key` for Gemini), never forwards the client's
//! credentials, and passes `anthropic-version`/`anthropic-beta` to Anthropic upstreams only.

use http::HeaderMap;
use serde_json::json;
use switchyard_sim::{anthropic, gemini};
use switchyard_tests::{Harness, MockProvider, Reply, route};

/// Every credential a client might send, plus the two Anthropic headers.
const CLIENT_HEADERS: [(&str, &str); 7] = [
    ("authorization", "Bearer client-authorization"),
    ("x-api-key", "client-x-api-key"),
    ("api-key", "client-api-key"),
    ("x-goog-api-key", "client-goog"),
    ("cookie", "session=client-cookie"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "tools-2024-04-04"),
];

/// A pool with one provider `p` of `api` at `url` serving model `m`, with key `sk-p-secret`
/// unless `keyless`, and route `r` for model `chat`.
fn manifests(api: &str, url: &str, keyless: bool) -> String {
    let key = if keyless {
        ""
    } else {
        "      apiKey: {secretKeyRef: {name: keys, key: p}}\n"
    };
    format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: p
      api: {api}
      baseUrl: {url}
{key}      models:
        - {{name: m, inputPerMillion: \"1\", outputPerMillion: \"1\"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{p: sk-p-secret}}
"
    ) + &route("r", "chat", &[("p", "m")], "")
}

async fn send(h: &Harness) -> Reply {
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let reply = h
        .post_with("/v1/chat/completions", &body, &CLIENT_HEADERS)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply
}

/// No header value the provider received came from the client's credentials.
fn assert_no_client_credentials(seen: &HeaderMap) {
    for (name, value) in seen {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains("client-"),
            "{name}: {value} came from the client"
        );
    }
    assert!(!seen.contains_key("cookie"));
    assert!(!seen.contains_key("api-key"));
}

fn values<'a>(seen: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    seen.get_all(name)
        .iter()
        .map(|v| v.to_str().expect("text"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_upstreams_get_the_pool_key_as_bearer_and_no_anthropic_headers() {
    let p = MockProvider::start("p").await.expect("mock");
    let h = Harness::start(&manifests("OpenAI", &p.base_url(), false)).await;

    send(&h).await;

    let seen = p.last_request().expect("called").headers;
    assert_eq!(values(&seen, "authorization"), ["Bearer sk-p-secret"]);
    assert!(!seen.contains_key("x-api-key") && !seen.contains_key("x-goog-api-key"));
    assert!(
        !seen.contains_key("anthropic-version") && !seen.contains_key("anthropic-beta"),
        "Anthropic headers go to api: Anthropic only"
    );
    assert_no_client_credentials(&seen);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_upstreams_get_the_pool_key_as_x_api_key_and_the_anthropic_headers() {
    let p = anthropic::MockProvider::start("p").await.expect("mock");
    let h = Harness::start(&manifests("Anthropic", &p.base_url(), false)).await;

    send(&h).await;

    let seen = p.last_request().expect("called");
    assert_eq!(seen.path, "/v1/messages");
    let seen = seen.headers;
    assert_eq!(values(&seen, "x-api-key"), ["sk-p-secret"]);
    assert!(!seen.contains_key("authorization"));
    assert_eq!(values(&seen, "anthropic-version"), ["2023-06-01"]);
    assert_eq!(values(&seen, "anthropic-beta"), ["tools-2024-04-04"]);
    assert_no_client_credentials(&seen);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_upstreams_get_the_pool_key_as_x_goog_api_key() {
    let p = gemini::MockProvider::start("p").await.expect("mock");
    let h = Harness::start(&manifests("Gemini", &p.base_url(), false)).await;

    send(&h).await;

    let seen = p.last_request().expect("called");
    // Every request streams upstream (docs/reference/sidecar.md#streaming).
    assert_eq!(seen.path, "/v1beta/models/m:streamGenerateContent");
    let query = seen.query.clone().unwrap_or_default();
    assert_eq!(query, "alt=sse");
    assert!(
        !query.contains("sk-p-secret"),
        "the key is not in the URL: {query}"
    );
    let seen = seen.headers;
    assert_eq!(values(&seen, "x-goog-api-key"), ["sk-p-secret"]);
    assert!(!seen.contains_key("authorization") && !seen.contains_key("x-api-key"));
    assert!(!seen.contains_key("anthropic-version"));
    assert_no_client_credentials(&seen);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_provider_gets_no_credentials_at_all() {
    let p = MockProvider::start("p").await.expect("mock");
    let h = Harness::start(&manifests("OpenAI", &p.base_url(), true)).await;

    send(&h).await;

    let seen = p.last_request().expect("called").headers;
    assert!(
        !seen.contains_key("authorization"),
        "the client's Authorization must not fill in for a missing pool key"
    );
    assert!(!seen.contains_key("x-api-key"));
    assert_no_client_credentials(&seen);
    h.stop().await;
}
