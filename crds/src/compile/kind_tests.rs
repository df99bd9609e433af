//! Model types: `Chat` and `Embedding` targets never share a route, and Anthropic serves no
//! embeddings.

use serde_json::{Value, json};

use super::*;
use crate::v1alpha1::*;

fn pool(providers: Value) -> ProviderPool {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ProviderPool",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"providers": providers},
    }))
    .unwrap()
}

/// Provider `name` of `api` serving `chat-m` (Chat, by default) and `embed-m` (Embedding).
fn provider(name: &str, api: &str) -> Value {
    json!({
        "name": name, "api": api, "baseUrl": "http://127.0.0.1:1/v1",
        "models": [
            {"name": "chat-m", "inputPerMillion": "1", "outputPerMillion": "2"},
            {"name": "embed-m", "type": "Embedding", "inputPerMillion": "0.02", "outputPerMillion": "0"},
        ],
    })
}

fn route(spec: Value) -> ModelRoute {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": spec,
    }))
    .unwrap()
}

fn run(pools: &[ProviderPool], routes: &[ModelRoute]) -> Compiled {
    compile(&Inputs {
        pools,
        routes,
        budgets: &[],
        secrets: &[],
        config_maps: &[],
        model_files: None,
        audiences: &[Audience {
            namespace: "ns".into(),
            ..Audience::default()
        }],
        require_secret_opt_in: false,
        generated_by: "test",
    })
}

fn target(provider: &str, model: &str) -> Value {
    json!({"pool": "p", "provider": provider, "model": model})
}

fn problems(compiled: &Compiled) -> Vec<String> {
    compiled.problems().map(ToString::to_string).collect()
}

#[test]
fn an_embedding_route_compiles_and_its_targets_carry_the_type() {
    let pools = [pool(json!([
        provider("o", "OpenAI"),
        provider("g", "Gemini")
    ]))];
    let routes = [route(
        json!({"model": "embed", "targets": [target("o", "embed-m"), target("g", "embed-m")]}),
    )];
    let compiled = run(&pools, &routes);
    assert_eq!(problems(&compiled), Vec::<String>::new());
    let table = compiled.tables.values().next().unwrap();
    let targets = &table.routes["embed"].targets;
    assert!(targets.iter().all(|t| t.kind == ModelType::Embedding));
    let wire = serde_json::to_value(&targets[0]).unwrap();
    assert_eq!(wire["type"], "Embedding");
}

#[test]
fn chat_targets_leave_the_type_out_of_the_table() {
    let pools = [pool(json!([provider("o", "OpenAI")]))];
    let routes = [route(
        json!({"model": "chat", "targets": [target("o", "chat-m")]}),
    )];
    let compiled = run(&pools, &routes);
    let table = compiled.tables.values().next().unwrap();
    let wire = serde_json::to_value(&table.routes["chat"].targets[0]).unwrap();
    assert!(wire.get("type").is_none(), "{wire}");
}

#[test]
fn a_route_mixing_chat_and_embedding_models_is_refused_naming_the_field() {
    let pools = [pool(json!([provider("o", "OpenAI")]))];
    let routes = [route(json!({
        "model": "mixed",
        "targets": [target("o", "chat-m")],
        "rules": [{"name": "big", "match": {"minPromptTokens": 10}, "targets": [target("o", "embed-m")]}],
    }))];
    let compiled = run(&pools, &routes);
    let problems = problems(&compiled);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("spec.rules[0].targets[0].model"),
        "{problems:?}"
    );
    assert!(
        problems[0].contains("cannot mix Chat and Embedding"),
        "{problems:?}"
    );
    let table = compiled.tables.values().next().unwrap();
    assert!(table.routes.is_empty(), "the route is left out");
}

#[test]
fn an_anthropic_provider_cannot_declare_an_embedding_model() {
    let pools = [pool(json!([provider("a", "Anthropic")]))];
    let compiled = run(&pools, &[]);
    let problems = problems(&compiled);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("spec.providers[0].models[1].type"),
        "{problems:?}"
    );
    assert!(
        problems[0].contains("embeddings for api OpenAI, AzureOpenAI and Gemini only"),
        "{problems:?}"
    );
}

#[test]
fn responses_api_is_compiled_for_openai_providers_and_refused_for_others() {
    let mut openai = provider("o", "OpenAI");
    openai["responsesApi"] = json!(true);
    let mut gemini = provider("g", "Gemini");
    gemini["responsesApi"] = json!(true);
    let pools = [pool(json!([openai, provider("plain", "OpenAI"), gemini]))];
    let compiled = run(&pools, &[]);
    let problems = problems(&compiled);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("spec.providers[2].responsesApi")
            && problems[0].contains("api OpenAI only"),
        "{problems:?}"
    );
    let routes = [route(
        json!({"model": "m", "targets": [target("o", "chat-m")]}),
    )];
    let compiled = run(&pools, &routes);
    let table = compiled.tables.values().next().unwrap();
    assert!(table.upstreams["p/o"].responses_api);
    let plain = [route(
        json!({"model": "m", "targets": [target("plain", "chat-m")]}),
    )];
    let compiled = run(&pools, &plain);
    let table = compiled.tables.values().next().unwrap();
    assert!(!table.upstreams["p/plain"].responses_api);
}
