//! What the sidecar sends to `api: Bedrock` is valid by AWS's own Converse request model:
//! `tests/specs/bedrock-converse.schemas.json`, derived by `scripts/bedrock-converse-schema` from
//! botocore's `bedrock-runtime` service model (see `tests/specs/SOURCES.md`). Requests go through
//! the real sidecar, from OpenAI and Anthropic clients, to the simulated Bedrock, and the body it
//! received is validated. The validator is first shown to reject bad bodies.

use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::{Value, json};
use switchyard_sim::bedrock::{self, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use switchyard_tests::Harness;

use super::translation_schema::errors;

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("specs/bedrock-converse.schemas.json");
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file"))
                .expect("JSON");
        jsonschema::draft202012::options()
            .build(&schema)
            .expect("the Converse schema compiles")
    })
}

#[test]
fn the_converse_validator_rejects_bad_bodies() {
    let good = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
    assert!(errors(validator(), &good).is_empty());
    let bad_role = json!({"messages": [{"role": "wizard", "content": [{"text": "hi"}]}]});
    assert!(
        !errors(validator(), &bad_role).is_empty(),
        "unknown role accepted"
    );
    let two_members =
        json!({"messages": [{"role": "user", "content": [{"text": "hi", "image": {}}]}]});
    assert!(
        !errors(validator(), &two_members).is_empty(),
        "a union with two members accepted"
    );
    let extra = json!({"messages": [], "model": "m"});
    assert!(
        !errors(validator(), &extra).is_empty(),
        "an unknown field accepted"
    );
    let zero = json!({"messages": [], "inferenceConfig": {"maxTokens": 0}});
    assert!(
        !errors(validator(), &zero).is_empty(),
        "maxTokens 0 accepted"
    );
}

fn manifests(url: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: a
      api: Bedrock
      baseUrl: {url}
      region: {REGION}
      aws: {{credentialsSecretRef: {{name: aws-a}}}}
      models:
        - {{name: \"anthropic.claude-3-5-haiku-20241022-v1:0\", inputPerMillion: \"1\", outputPerMillion: \"5\"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws-a}}
stringData:
  accessKeyId: {ACCESS_KEY_ID}
  secretAccessKey: \"{SECRET_ACCESS_KEY}\"
"
    ) + &switchyard_tests::route(
        "r",
        "chat",
        &[("a", "\"anthropic.claude-3-5-haiku-20241022-v1:0\"")],
        "",
    )
}

/// OpenAI requests with every mapped feature, then Anthropic ones.
fn requests() -> Vec<(&'static str, Value)> {
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather", "parameters": {"type": "object",
        "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]);
    let call = json!({"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}});
    vec![
        (
            "/v1/chat/completions",
            json!({"model": "chat", "max_completion_tokens": 100,
            "temperature": 0.3, "top_p": 0.9, "stop": ["END"], "seed": 3, "n": 1,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
                {"role": "assistant", "content": "A picture."},
                {"role": "user", "content": "Thanks"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "chat", "stream": true, "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "chat", "max_tokens": 64, "system": "be brief",
            "stop_sequences": ["STOP"],
            "tools": [{"name": "get_weather", "description": "Weather",
                       "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
            "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "chat", "max_tokens": 64, "stream": true,
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                    "name": "get_weather", "input": {"location": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                    "content": "18C"}]}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_bodies_from_both_client_formats_are_valid_by_the_service_model() {
    let sim = bedrock::MockProvider::start("a")
        .await
        .expect("bedrock sim");
    let h = Harness::start(&manifests(&sim.base_url())).await;
    for (path, body) in requests() {
        let reply = h
            .post_with(path, &body, &[("anthropic-version", "2023-06-01")])
            .await;
        assert_eq!(
            reply.status,
            200,
            "{path} {body}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let sent = sim.last_request().expect("called").body;
        let problems = errors(validator(), &sent);
        assert!(
            problems.is_empty(),
            "{path} {body}\nsent {sent}\n{problems:#?}"
        );
    }
    assert_eq!(sim.request_count(), requests().len());
    h.stop().await;
}
