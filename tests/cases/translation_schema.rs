//! What the sidecar sends upstream is valid by each provider's official API schema
//! (`tests/specs/`, see SOURCES.md there): OpenAI's and Anthropic's OpenAPI 3.1 documents and
//! Gemini's OpenAPI 3.0 conversion of its discovery document, trimmed by `scripts/trim-specs` to
//! the request schema each test validates against and the schemas it references. Requests go through the real
//! sidecar from both client formats to a simulated provider of each API, and the body each
//! provider received is validated. Each validator is first shown to reject a bad request, since
//! a validator that accepts everything would make these tests worthless.

use std::path::PathBuf;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::{Value, json};
use switchyard_sim::{anthropic, gemini, openai};
use switchyard_tests::Harness;

fn specs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs")
}

/// OpenAPI's `nullable` as JSON Schema, and (for Gemini, whose converted schemas never close
/// their objects) `additionalProperties: false` on every object with declared properties, so
/// that a misspelled field is an error rather than silently ignored.
fn to_json_schema(value: &mut Value, close_objects: bool) {
    match value {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
            if close_objects
                && map.contains_key("properties")
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut()
                .for_each(|v| to_json_schema(v, close_objects));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| to_json_schema(v, close_objects)),
        _ => {}
    }
}

pub(super) fn validator(file: &str, schema: &str, close_objects: bool) -> Validator {
    let path = specs_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/trim-specs regenerates tests/specs)",
            path.display()
        )
    });
    // NB: OpenAI's spec bounds `seed` with ±9223372036854776000, an integer literal past i64 that
    // YAML parsers refuse and JSON parsers read inconsistently; as a float it means the same bound.
    let text = text.replace("9223372036854776000", "9.223372036854776e18");
    let mut spec: Value = if file.ends_with(".yaml") {
        serde_yaml::from_str(&text).expect("spec YAML")
    } else {
        serde_json::from_str(&text).expect("spec JSON")
    };
    let mut components = spec["components"].take();
    to_json_schema(&mut components, close_objects);
    let root = json!({"$ref": format!("#/components/schemas/{schema}"), "components": components});
    jsonschema::draft202012::options()
        .build(&root)
        .unwrap_or_else(|e| panic!("{file} {schema} compiles: {e}"))
}

fn openai_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| validator("openai.schemas.json", "CreateChatCompletionRequest", false))
}

fn anthropic_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| validator("anthropic.schemas.json", "CreateMessageParams", false))
}

fn gemini_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| validator("gemini.schemas.json", "GenerateContentRequest", true))
}

pub(super) fn errors(validator: &Validator, body: &Value) -> Vec<String> {
    validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_validators_reject_bad_requests() {
    let good_openai = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    assert!(errors(openai_validator(), &good_openai).is_empty());
    let bad_openai = json!({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "hi"}]});
    assert!(
        !errors(openai_validator(), &bad_openai).is_empty(),
        "unknown role accepted"
    );
    assert!(
        !errors(
            openai_validator(),
            &json!({"model": "gpt-4o", "messages": "hi"})
        )
        .is_empty()
    );

    let good_anthropic = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert!(errors(anthropic_validator(), &good_anthropic).is_empty());
    let mut bad = good_anthropic.clone();
    bad["system_prompt"] = json!("x");
    assert!(
        !errors(anthropic_validator(), &bad).is_empty(),
        "unknown field accepted"
    );
    let no_max = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    assert!(
        !errors(anthropic_validator(), &no_max).is_empty(),
        "missing max_tokens accepted"
    );

    let good_gemini = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    assert!(errors(gemini_validator(), &good_gemini).is_empty());
    let bad_gemini = json!({"contents": [{"role": "user", "partz": [{"text": "hi"}]}]});
    assert!(
        !errors(gemini_validator(), &bad_gemini).is_empty(),
        "misspelled field accepted"
    );
    let bad_mode =
        json!({"contents": [], "toolConfig": {"functionCallingConfig": {"mode": "REQUIRED"}}});
    assert!(
        !errors(gemini_validator(), &bad_mode).is_empty(),
        "enum violation accepted"
    );
}

fn fixture(path: &str) -> Value {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sidecar/src/convert/testdata")
        .join(path);
    serde_json::from_str(&std::fs::read_to_string(&file).expect("fixture")).expect("fixture JSON")
}

struct Upstreams {
    openai: openai::MockProvider,
    anthropic: anthropic::MockProvider,
    gemini: gemini::MockProvider,
}

async fn sidecar() -> (Harness, Upstreams) {
    let up = Upstreams {
        openai: openai::MockProvider::start("openai").await.unwrap(),
        anthropic: anthropic::MockProvider::start("anthropic").await.unwrap(),
        gemini: gemini::MockProvider::start("gemini").await.unwrap(),
    };
    let provider = |name: &str, api: &str, url: String, model: &str| {
        format!(
            "    - {{name: {name}, api: {api}, baseUrl: \"{url}\", apiKey: {{secretKeyRef: {{name: keys, key: k}}}}, models: [{{name: {model}, inputPerMillion: \"1\", outputPerMillion: \"1\"}}]}}\n"
        )
    };
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: keys}\nstringData: {k: sk-test}\n---\napiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {name: p}\nspec:\n  providers:\n",
    );
    yaml += &provider("openai", "OpenAI", up.openai.base_url(), "gpt-4o");
    yaml += &provider(
        "anthropic",
        "Anthropic",
        up.anthropic.base_url(),
        "claude-sonnet-4",
    );
    yaml += &provider("gemini", "Gemini", up.gemini.base_url(), "gemini-2.5-flash");
    for (name, model) in [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4"),
        ("gemini", "gemini-2.5-flash"),
    ] {
        yaml += &format!(
            "---\napiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: via-{name}}}\nspec: {{model: via-{name}, targets: [{{pool: p, provider: {name}, model: {model}}}]}}\n"
        );
    }
    (Harness::start(&yaml).await, up)
}

/// Sends `body` (with `model` set to each route) and checks what each provider received.
async fn check_every_upstream(harness: &Harness, up: &Upstreams, path: &str, body: &Value) {
    for (route, validator) in [
        ("via-openai", openai_validator()),
        ("via-anthropic", anthropic_validator()),
        ("via-gemini", gemini_validator()),
    ] {
        let sent = || {
            match route {
                "via-openai" => up.openai.last_request(),
                "via-anthropic" => up.anthropic.last_request(),
                _ => up.gemini.last_request(),
            }
            .map(|r| r.body)
        };
        let mut request = body.clone();
        request["model"] = json!(route);
        let reply = harness.post(path, &request).await;
        let sent = sent().unwrap_or_else(|| panic!("{route}: the provider received nothing"));
        let problems = errors(validator, &sent);
        assert!(
            problems.is_empty(),
            "{path} {route}: invalid upstream request:\n{}\n{sent:#}",
            problems.join("\n")
        );
        assert_eq!(
            reply.status,
            200,
            "{path} {route}: the strict simulated provider accepted it: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_requests_are_valid_for_every_provider() {
    let (harness, up) = sidecar().await;
    for case in [
        "requests/full.json",
        "requests/minimal.json",
        "requests/forced_tool.json",
    ] {
        check_every_upstream(&harness, &up, "/v1/chat/completions", &fixture(case)).await;
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_client_requests_are_valid_for_every_provider() {
    let (harness, up) = sidecar().await;
    let mut full = fixture("anthropic_requests/full.json");
    check_every_upstream(&harness, &up, "/v1/messages", &full).await;
    full["stream"] = json!(false);
    check_every_upstream(&harness, &up, "/v1/messages", &full).await;
    harness.stop().await;
}

// === The Responses API (`POST /v1/responses`) ===

/// `oneOf` read as `anyOf`, everywhere under `value`.
fn one_of_as_any_of(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(options) = map.remove("oneOf") {
                map.insert("anyOf".into(), options);
            }
            map.values_mut().for_each(one_of_as_any_of);
        }
        Value::Array(items) => items.iter_mut().for_each(one_of_as_any_of),
        _ => {}
    }
}

/// `CreateResponse`, with its unions read as `anyOf`: the spec's input item union is ambiguous
/// (a message with content parts is both an `EasyInputMessage` and an `InputMessage`, an
/// assistant message with an `id` both that and an `OutputMessage`), so `oneOf` would refuse
/// every such message that OpenAI accepts.
fn responses_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = specs_dir().join("openai-responses.schemas.json");
        let text = std::fs::read_to_string(&path).expect("scripts/trim-specs regenerates it");
        let text = text.replace("9223372036854776000", "9.223372036854776e18");
        let spec: Value = serde_json::from_str(&text).expect("spec JSON");
        let mut components = spec["components"].clone();
        to_json_schema(&mut components, false);
        one_of_as_any_of(&mut components);
        let root = json!({"$ref": "#/components/schemas/CreateResponse", "components": components});
        jsonschema::draft202012::options()
            .build(&root)
            .expect("CreateResponse compiles")
    })
}

#[test]
fn the_responses_validator_rejects_bad_requests() {
    let good = json!({"model": "gpt-4.1", "input": [{"role": "user", "content": "hi"}]});
    assert!(errors(responses_validator(), &good).is_empty());
    let bad_role = json!({"model": "gpt-4.1", "input": [{"role": "wizard", "content": "hi"}]});
    assert!(
        !errors(responses_validator(), &bad_role).is_empty(),
        "unknown role accepted"
    );
    let bad_temperature = json!({"model": "gpt-4.1", "input": "hi", "temperature": "hot"});
    assert!(
        !errors(responses_validator(), &bad_temperature).is_empty(),
        "wrong type accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_client_requests_are_valid_for_every_provider() {
    let (harness, up) = sidecar().await;
    for case in [
        "responses_api/request_full.json",
        "responses_api/request_minimal.json",
    ] {
        let body = fixture(case);
        // The fixtures are valid Responses API requests in the first place.
        let problems = errors(responses_validator(), &body);
        assert!(problems.is_empty(), "{case}: {}", problems.join("\n"));
        check_every_upstream(&harness, &up, "/v1/responses", &body).await;
        let mut whole = body.clone();
        whole["stream"] = json!(false);
        check_every_upstream(&harness, &up, "/v1/responses", &whole).await;
    }
    harness.stop().await;
}

/// A route whose one target declares `responsesApi: true`: what the simulated OpenAI provider
/// receives is the client's body, valid by `CreateResponse`, and the simulator accepts exactly
/// what the schema accepts for these bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_passthrough_bodies_and_the_simulator_agree_with_the_spec() {
    let sim = openai::MockProvider::start("responses").await.unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: keys}}\nstringData: {{k: sk-test}}\n---\napiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {{name: p}}\nspec:\n  providers:\n    - {{name: r, api: OpenAI, baseUrl: \"{}\", responsesApi: true, apiKey: {{secretKeyRef: {{name: keys, key: k}}}}, models: [{{name: gpt-4.1, inputPerMillion: \"1\", outputPerMillion: \"1\"}}]}}\n---\napiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: pass}}\nspec: {{model: pass, targets: [{{pool: p, provider: r, model: gpt-4.1}}]}}\n",
        sim.base_url()
    );
    let harness = Harness::start(&yaml).await;
    let mut stateful = fixture("responses_api/request_minimal.json");
    stateful["previous_response_id"] = json!("resp_1");
    stateful["store"] = json!(true);
    stateful["tools"] = json!([{"type": "web_search"}]);
    stateful["tool_choice"] = json!("auto");
    let cases = [
        (fixture("responses_api/request_full.json"), true),
        (fixture("responses_api/request_minimal.json"), true),
        (stateful, true),
        (json!({"input": [{"type": "telepathy"}]}), false),
        (
            json!({"input": [{"role": "wizard", "content": "hi"}]}),
            false,
        ),
    ];
    for (mut body, valid) in cases {
        body["model"] = json!("pass");
        let reply = harness.post("/v1/responses", &body).await;
        let sent = sim.last_request().expect("passed through").body;
        body["model"] = json!("gpt-4.1");
        assert_eq!(sent, body, "unchanged but for the model");
        let problems = errors(responses_validator(), &sent);
        assert_eq!(problems.is_empty(), valid, "{sent:#}: {problems:?}");
        assert_eq!(
            reply.status == 200,
            valid,
            "the simulator agrees with the spec on {sent:#}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    // Stricter than the spec, as OpenAI is: its objects are open, the API refuses unknown
    // parameters.
    let unknown = json!({"model": "pass", "input": "hi", "messages": []});
    let reply = harness.post("/v1/responses", &unknown).await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert!(String::from_utf8_lossy(&reply.body).contains("Unknown parameter: 'messages'"));
    harness.stop().await;
}
