//! Failover across clouds (issue 14): one route over an Azure OpenAI deployment, a Bedrock model
//! (static keys, SigV4 checked by the simulator) and a Gemini model on Vertex AI (service
//! account, token from the simulated OAuth2 endpoint), each behind its own strict simulator.
//! Each cloud's own rate-limit answer moves the request on to the next cloud, and each target is
//! then skipped for as long as its answer said; clients of either format see one answer.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::bedrock::{self, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use switchyard_sim::vertex::{self, TokenServer};
use switchyard_sim::{azure, gemini};
use switchyard_tests::{Behavior, Harness, Reply, route};

const BEDROCK_MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const GEMINI: &str = "gemini-2.5-flash";
const REPLY: &str = "Hello from some cloud";

struct Clouds {
    azure: azure::MockProvider,
    bedrock: bedrock::MockProvider,
    vertex: vertex::MockProvider,
    /// Kept alive: the sidecar fetches Vertex tokens from it.
    _tokens: TokenServer,
    h: Harness,
}

/// Pool `clouds` with providers `azure`, `bedrock` and `vertex`; route `r` (model `chat`) over
/// them in that order.
fn manifests(azure_url: &str, bedrock_url: &str, vertex_url: &str, key_file: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: azure
      api: AzureOpenAI
      baseUrl: {azure_url}
      apiKey: {{secretKeyRef: {{name: keys, key: azure}}}}
      models:
        - {{name: gpt-4o, inputPerMillion: \"2.5\", outputPerMillion: \"10\"}}
    - name: bedrock
      api: Bedrock
      baseUrl: {bedrock_url}
      region: {REGION}
      aws: {{credentialsSecretRef: {{name: aws}}}}
      models:
        - {{name: \"{BEDROCK_MODEL}\", inputPerMillion: \"0.8\", outputPerMillion: \"4\"}}
    - name: vertex
      api: VertexAI
      baseUrl: {vertex_url}
      region: us-east5
      gcp:
        project: {project}
        serviceAccountKeySecretRef: {{name: gcp, key: key.json}}
      models:
        - {{name: {GEMINI}, publisher: Google, inputPerMillion: \"0.3\", outputPerMillion: \"2.5\"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{azure: sk-azure-secret}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws}}
stringData:
  accessKeyId: {ACCESS_KEY_ID}
  secretAccessKey: \"{SECRET_ACCESS_KEY}\"
---
apiVersion: v1
kind: Secret
metadata: {{name: gcp}}
stringData:
  key.json: |
    {key_file}
",
        project = vertex::PROJECT,
    ) + &route(
        "r",
        "chat",
        &[
            ("azure", "gpt-4o"),
            ("bedrock", &format!("\"{BEDROCK_MODEL}\"")),
            ("vertex", GEMINI),
        ],
        "",
    )
}

async fn start() -> Clouds {
    let behavior = Behavior {
        reply: REPLY.into(),
        ..Behavior::default()
    };
    let azure = azure::MockProvider::start("azure")
        .await
        .expect("azure sim");
    let bedrock = bedrock::MockProvider::start("bedrock")
        .await
        .expect("bedrock sim");
    let vertex = vertex::MockProvider::start("vertex")
        .await
        .expect("vertex sim");
    azure.set_behavior(behavior.clone());
    bedrock.set_behavior(behavior.clone());
    vertex.set_behavior(behavior);
    let tokens = TokenServer::start().await.expect("token server");
    let yaml = manifests(
        &azure.base_url(),
        &bedrock.base_url(),
        &vertex.base_url(),
        &tokens.key_file(),
    );
    let h = Harness::start(&yaml).await;
    Clouds {
        azure,
        bedrock,
        vertex,
        _tokens: tokens,
        h,
    }
}

async fn send(h: &Harness, anthropic: bool, stream: bool) -> Reply {
    let (path, body, headers): (&str, Value, &[(&str, &str)]) = if anthropic {
        let body = json!({"model": "chat", "max_tokens": 64, "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]});
        ("/v1/messages", body, &[("anthropic-version", "2023-06-01")])
    } else {
        let body = json!({"model": "chat", "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]});
        ("/v1/chat/completions", body, &[])
    };
    tokio::time::timeout(Duration::from_secs(15), h.post_with(path, &body, headers))
        .await
        .expect("bounded")
}

fn served_by(reply: &Reply, provider: &str, attempts: &str) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("x-switchyard-provider"),
        format!("pool/{provider}")
    );
    assert_eq!(reply.header("x-switchyard-attempts"), attempts);
}

/// The text of an answer in either client format, streamed or not.
fn text(reply: &Reply, anthropic: bool, stream: bool) -> String {
    if !stream {
        let body = reply.json();
        let text = if anthropic {
            &body["content"][0]["text"]
        } else {
            &body["choices"][0]["message"]["content"]
        };
        return text.as_str().unwrap_or_default().to_string();
    }
    let events = reply.events();
    let pointer = if anthropic {
        "/delta/text"
    } else {
        "/choices/0/delta/content"
    };
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            let event: Value = serde_json::from_str(e).expect("json event");
            event
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_429_then_bedrock_throttling_fail_over_to_vertex_and_each_is_skipped_as_told() {
    let c = start().await;
    // Azure asks for 2.5 s; Bedrock's throttling carries no hint (the 1 s default block).
    c.azure.push_faults([azure::Fault::RateLimited {
        retry_after_ms: 2500,
    }]);
    c.bedrock.push_faults([bedrock::Fault::Throttling]);

    let reply = send(&c.h, false, false).await;
    served_by(&reply, "vertex", "3");
    assert_eq!(text(&reply, false, false), REPLY);
    for (provider, reason) in [
        ("pool/azure", "RateLimited"),
        ("pool/bedrock", "RateLimited"),
    ] {
        let labels = [("route", "r"), ("provider", provider), ("reason", reason)];
        assert_eq!(
            c.h.count("switchyard_failovers_total", &labels).await,
            1.0,
            "{provider}"
        );
    }
    assert_eq!(
        (
            c.azure.request_count(),
            c.bedrock.request_count(),
            c.vertex.request_count()
        ),
        (1, 1, 1)
    );

    // At once: both blocked, Vertex serves with one attempt, streamed to an Anthropic client.
    let reply = send(&c.h, true, true).await;
    served_by(&reply, "vertex", "1");
    assert_eq!(text(&reply, true, true), REPLY);

    // After Bedrock's 1 s but inside Azure's 2.5 s: Bedrock serves, Azure is still skipped.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reply = send(&c.h, false, true).await;
    served_by(&reply, "bedrock", "1");
    assert_eq!(text(&reply, false, true), REPLY);
    assert_eq!(
        c.azure.request_count(),
        1,
        "Azure was contacted while blocked"
    );

    // After Azure's 2.5 s: Azure serves again.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let reply = send(&c.h, true, false).await;
    served_by(&reply, "azure", "1");
    assert_eq!(text(&reply, true, false), REPLY);
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_in_each_cloud_fail_over_streamed_before_anything_reaches_the_client() {
    let c = start().await;
    c.azure.push_faults([azure::Fault::ServerError]);
    c.bedrock.push_faults([bedrock::Fault::ServiceUnavailable]);
    c.vertex
        .push_faults([vertex::Fault::Gemini(gemini::Fault::ServerError)]);
    // Every cloud fails once: the client gets one error naming the last failure.
    let reply = send(&c.h, false, true).await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("x-switchyard-attempts"), "3");
    assert_eq!(reply.json()["error"]["code"], "upstream_server_error");

    // Then a streamed Anthropic client is served by the first cloud whose circuit is closed.
    let reply = send(&c.h, true, true).await;
    served_by(&reply, "azure", "1");
    assert_eq!(text(&reply, true, true), REPLY);
    c.h.stop().await;
}
