//! Prompt templates (DESIGN §7, docs/reference/templates.md) through the real sidecar: a route
//! whose template has one variant for Anthropic and one for everything else, over an OpenAI sim
//! then an Anthropic sim. When the OpenAI attempt fails with 503 and the request fails over,
//! each sim receives its own variant (the template is rendered per attempt, for the target
//! being tried); the `x-switchyard-template` header names the template and its hash; the vars
//! header overrides defaults, and a bad one is a 400 in the client's format; a route naming a
//! missing template is still served, without it, and standalone reports the problem.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::anthropic;
use switchyard_tests::{Fault, Harness, MockProvider, Reply, eventually, write_manifests};

/// The template of DESIGN §7.
const TEMPLATE: &str = r#"apiVersion: switchyard.dev/v1alpha1
kind: PromptTemplate
metadata: {name: support}
spec:
  variables: [{name: product, default: Acme}]
  variants:
    - match: {api: Anthropic}
      system: {prepend: "<role>You support {{ product }} customers.</role>"}
    - match: {}
      system: {prepend: "You support {{ product }} customers.", append: "Answer in under 200 words."}
"#;

/// Pool `pool` with `openai` (model `gpt`) and `anthropic` (model `claude`); route `r` (model
/// `chat`) over both in that order with template `support`; route `broken` (model `broken`)
/// naming template `missing`.
fn manifests(openai: &str, anthropic: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: openai
      api: OpenAI
      baseUrl: {openai}
      apiKey: {{secretKeyRef: {{name: keys, key: openai}}}}
      models: [{{name: gpt, inputPerMillion: "1", outputPerMillion: "1"}}]
    - name: anthropic
      api: Anthropic
      baseUrl: {anthropic}
      apiKey: {{secretKeyRef: {{name: keys, key: anthropic}}}}
      models: [{{name: claude, inputPerMillion: "1", outputPerMillion: "1"}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{openai: sk-openai, anthropic: sk-anthropic}}
---
{TEMPLATE}---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {{name: r}}
spec:
  model: chat
  promptTemplate: {{name: support}}
  targets:
    - {{pool: pool, provider: openai, model: gpt}}
    - {{pool: pool, provider: anthropic, model: claude}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {{name: broken}}
spec:
  model: broken
  promptTemplate: {{name: missing}}
  targets:
    - {{pool: pool, provider: openai, model: gpt}}
"#
    )
}

struct Setup {
    h: Harness,
    openai: MockProvider,
    anthropic: anthropic::MockProvider,
}

async fn setup() -> Setup {
    let openai = MockProvider::start("openai").await.expect("openai sim");
    let anthropic = anthropic::MockProvider::start("anthropic")
        .await
        .expect("anthropic sim");
    let h = Harness::start(&manifests(&openai.base_url(), &anthropic.base_url())).await;
    Setup {
        h,
        openai,
        anthropic,
    }
}

/// `name@hash8` as the sidecar must show it: the hash of the spec the manifests hold.
fn expected_label() -> String {
    let template: switchyard_crds::v1alpha1::PromptTemplate =
        serde_yaml::from_str(TEMPLATE).expect("the template parses");
    switchyard_crds::template::label("support", &template.spec)
}

async fn send(h: &Harness, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), h.post_with(path, body, headers))
        .await
        .expect("bounded")
}

fn openai_request() -> Value {
    json!({"model": "chat", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"}
    ]})
}

fn anthropic_request() -> Value {
    json!({"model": "chat", "max_tokens": 64, "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}]})
}

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

/// The system text an Anthropic request carried (a string or text blocks).
fn anthropic_system(body: &Value) -> String {
    match &body["system"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        other => panic!("no system in {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_renders_each_providers_own_variant() {
    let s = setup().await;
    s.openai.push_faults([Fault::Overloaded]);

    let vars = ("x-switchyard-template-vars", r#"{"product": "Widgets"}"#);
    let reply = send(&s.h, "/v1/chat/completions", &openai_request(), &[vars]).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/anthropic");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(reply.header("x-switchyard-template"), expected_label());
    assert!(reply.json()["choices"].is_array(), "an OpenAI answer");

    let to_openai = s.openai.last_request().expect("openai was tried").body;
    assert_eq!(
        to_openai["messages"][0],
        json!({"role": "system",
            "content": "You support Widgets customers.\n\nBe brief.\n\nAnswer in under 200 words."}),
        "the default variant, with the header's product"
    );
    assert_eq!(to_openai["messages"][1]["role"], "user");
    let to_anthropic = s.anthropic.last_request().expect("anthropic answered").body;
    assert_eq!(
        anthropic_system(&to_anthropic),
        "<role>You support Widgets customers.</role>\n\nBe brief.",
        "Anthropic's variant, rendered again for the failover"
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_apply_without_the_header_and_anthropic_clients_get_it_too() {
    let s = setup().await;

    // No vars header: the default product; no system message: one is created.
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let reply = send(&s.h, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/openai");
    assert_eq!(reply.header("x-switchyard-template"), expected_label());
    let sent = s.openai.last_request().expect("sent").body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system",
            "content": "You support Acme customers.\n\nAnswer in under 200 words."})
    );

    // An Anthropic client failing over to Anthropic: its own body goes there, edited.
    s.openai.push_faults([Fault::Overloaded]);
    let vars = ("x-switchyard-template-vars", r#"{"product": "Gadgets"}"#);
    let reply = send(&s.h, "/v1/messages", &anthropic_request(), &[VERSION, vars]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["type"], "message");
    assert_eq!(reply.header("x-switchyard-template"), expected_label());
    let to_openai = s.openai.last_request().expect("tried").body;
    assert_eq!(
        to_openai["messages"][0]["content"],
        "You support Gadgets customers.\n\nBe brief.\n\nAnswer in under 200 words."
    );
    let to_anthropic = s.anthropic.last_request().expect("answered").body;
    assert_eq!(
        anthropic_system(&to_anthropic),
        "<role>You support Gadgets customers.</role>\n\nBe brief."
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_vars_header_is_a_400_in_the_clients_format() {
    let s = setup().await;
    let cases = [
        ("{not json", "JSON object of strings"),
        (r#"["product"]"#, "JSON object of strings"),
        (r#"{"product": 7}"#, "must be a string, not a number"),
        (r#"{"colour": "red"}"#, "does not declare"),
    ];
    let oversized = format!(r#"{{"product": "{}"}}"#, "x".repeat(5000));
    let cases = cases
        .iter()
        .map(|(v, m)| (v.to_string(), *m))
        .chain([(oversized, "at most 4096")]);
    for (value, wanted) in cases {
        let vars = ("x-switchyard-template-vars", value.as_str());
        let reply = send(&s.h, "/v1/chat/completions", &openai_request(), &[vars]).await;
        assert_eq!(reply.status, 400, "{value}: {:?}", reply.body);
        let body = reply.json();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains(wanted), "{value}: {message}");

        let reply = send(&s.h, "/v1/messages", &anthropic_request(), &[VERSION, vars]).await;
        assert_eq!(reply.status, 400, "{value}: {:?}", reply.body);
        let body = reply.json();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains(wanted), "{value}: {message}");
    }
    assert_eq!(s.openai.request_count(), 0, "no provider was called");
    assert_eq!(s.anthropic.request_count(), 0, "no provider was called");
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_naming_a_missing_template_is_served_without_it_and_says_so() {
    let s = setup().await;

    let body = json!({"model": "broken", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]});
    let reply = send(&s.h, "/v1/chat/completions", &body, &[]).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-route"), "broken");
    assert_eq!(
        reply.header("x-switchyard-template"),
        "",
        "no template applied"
    );
    let sent = s.openai.last_request().expect("sent").body;
    assert_eq!(
        sent["messages"], body["messages"],
        "the prompt is unchanged"
    );

    // Standalone's conditions are its load warnings (logged at start and on every reload).
    let dir = write_manifests(&manifests(&s.openai.base_url(), &s.anthropic.base_url()));
    let loaded = switchyard_sidecar::table::standalone::load(
        std::slice::from_ref(&dir),
        &Default::default(),
    )
    .expect("the files load");
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let warning = &loaded.warnings[0];
    for wanted in [
        "spec.promptTemplate",
        "default/missing not found",
        "served without it",
    ] {
        assert!(warning.contains(wanted), "{wanted} in {warning}");
    }
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_does_not_parse_fails_the_load() {
    let openai = MockProvider::start("openai").await.expect("openai sim");
    let yaml = manifests(&openai.base_url(), "http://127.0.0.1:9")
        .replace("Answer in under 200 words.", "{% if product %}unclosed");
    let error = Harness::try_start_with(&yaml, |_| {})
        .await
        .err()
        .expect("refused")
        .to_string();
    for wanted in ["spec.variants[1].system.append", "syntax error"] {
        assert!(error.contains(wanted), "{wanted} in {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_responses_clients_get_the_template_too() {
    let s = setup().await;

    // A stream failing over: the header comes with the committed stream's head.
    s.openai.push_faults([Fault::Overloaded]);
    let mut body = openai_request();
    body["stream"] = json!(true);
    let reply = send(&s.h, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/anthropic");
    assert_eq!(reply.header("x-switchyard-template"), expected_label());
    assert!(reply.events().last().is_some_and(|e| e == "[DONE]"));
    let to_anthropic = s.anthropic.last_request().expect("answered").body;
    assert_eq!(
        anthropic_system(&to_anthropic),
        "<role>You support Acme customers.</role>\n\nBe brief."
    );

    // A Responses API client (translated, as the route mixes APIs): `instructions` is the
    // system prompt the template edits.
    let body = json!({"model": "chat", "instructions": "Be brief.", "input": "hi"});
    let reply = send(&s.h, "/v1/responses", &body, &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-template"), expected_label());
    let sent = s.openai.last_request().expect("sent").body;
    assert_eq!(
        sent["messages"][0]["content"],
        "You support Acme customers.\n\nBe brief.\n\nAnswer in under 200 words."
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_are_kept_apart_by_variables_and_template_text() {
    let openai = MockProvider::start("openai").await.expect("openai sim");
    let anthropic = anthropic::MockProvider::start("anthropic")
        .await
        .expect("anthropic sim");
    let cached = |yaml: String| {
        yaml.replacen(
            "  promptTemplate: {name: support}\n  targets:",
            "  promptTemplate: {name: support}\n  cache: {ttl: 10m}\n  targets:",
            1,
        )
    };
    let yaml = cached(manifests(&openai.base_url(), &anthropic.base_url()));
    let h = Harness::start(&yaml).await;
    let mut body = openai_request();
    body["temperature"] = json!(0);
    let vars = ("x-switchyard-template-vars", r#"{"product": "Widgets"}"#);

    let first = send(&h, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = send(&h, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(again.header("x-switchyard-cache"), "hit");
    assert_eq!(openai.request_count(), 1);
    let other_vars = send(&h, "/v1/chat/completions", &body, &[vars]).await;
    assert_eq!(
        other_vars.header("x-switchyard-cache"),
        "",
        "other variables"
    );
    assert_eq!(openai.request_count(), 2);

    // The template's text changes, the route does not: the route keeps its cache, but the
    // answers of the old text are not served for the new one.
    h.rewrite(
        &cached(manifests(&openai.base_url(), &anthropic.base_url()))
            .replace("default: Acme", "default: Acme Corp"),
    );
    // Until the reload, the cached answer (which names no template) keeps being served.
    let label = std::sync::Mutex::new(String::new());
    let reloaded = eventually(Duration::from_secs(10), || async {
        let reply = send(&h, "/v1/chat/completions", &body, &[]).await;
        *label.lock().unwrap() = reply.header("x-switchyard-template").to_string();
        reply.header("x-switchyard-cache") != "hit"
    })
    .await;
    assert!(reloaded, "the edited template was loaded");
    let label = label.into_inner().unwrap();
    assert!(
        label.starts_with("support@") && label != expected_label(),
        "{label}"
    );
    assert_eq!(openai.request_count(), 3, "a miss after the edit");
    let sent = openai.last_request().expect("sent").body;
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You support Acme Corp customers."),
        "{system}"
    );
    h.stop().await;
}
