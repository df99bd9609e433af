use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;

fn example() -> Value {
    json!({
        "apiVersion": "switchyard.dev/v1alpha1", "kind": "PromptTemplate",
        "metadata": {"name": "support", "namespace": "support"},
        "spec": {
            "variables": [{"name": "product", "default": "Acme"}],
            "variants": [
                {"match": {"api": "Anthropic"},
                 "system": {"prepend": "<role>You support {{ product }} customers.</role>"}},
                {"match": {},
                 "system": {"prepend": "You support {{ product }} customers.",
                            "append": "Answer in under 200 words."}}
            ]
        }
    })
}

fn cel(template: Value) -> Result<(), String> {
    let template: PromptTemplate = serde_json::from_value(template).unwrap();
    kube::core::cel::validate_cel(&template).map_err(|e| e.to_string())
}

#[test]
fn the_design_example_passes_the_cel_rules_and_round_trips() {
    assert_eq!(cel(example()), Ok(()));
    let parsed: PromptTemplate = serde_json::from_value(example()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), example());
}

#[test]
fn a_variant_matches_on_at_most_one_key_and_adds_some_text() {
    let mut two_keys = example();
    two_keys["spec"]["variants"][0]["match"] = json!({"api": "OpenAI", "model": "gpt-4o"});
    let error = cel(two_keys).unwrap_err();
    assert!(
        error.contains("at most one of api, provider and model"),
        "{error}"
    );

    let mut no_text = example();
    no_text["spec"]["variants"][1]["system"] = json!({});
    let error = cel(no_text).unwrap_err();
    assert!(error.contains("prepend, append or both"), "{error}");
}

#[test]
fn variable_names_are_list_map_keys_so_the_apiserver_refuses_duplicates() {
    let crd = serde_json::to_value(PromptTemplate::crd()).unwrap();
    let variables = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["variables"];
    assert_eq!(variables["x-kubernetes-list-type"], "map", "{variables}");
    assert_eq!(variables["x-kubernetes-list-map-keys"], json!(["name"]));
}
