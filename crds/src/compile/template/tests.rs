use serde_json::json;

use super::*;
use k8s_openapi::api::core::v1::Secret;

use crate::compile::{Audience, Compiled, Inputs, SECRET_OPT_IN_LABEL, compile, reasons};
use crate::v1alpha1::{API_VERSION, ProviderPool};

fn pool() -> ProviderPool {
    let provider = |name: &str| {
        json!({"name": name, "api": "OpenAI", "baseUrl": format!("https://{name}.example/v1"),
            "apiKey": {"secretKeyRef": {"name": "keys", "key": name}},
            "models": [{"name": "m", "inputPerMillion": "1", "outputPerMillion": "2"}]})
    };
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ProviderPool",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"providers": [provider("a"), provider("b")]},
    }))
    .unwrap()
}

fn secret() -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "keys", "namespace": "ns", "labels": {SECRET_OPT_IN_LABEL: "true"}},
        "stringData": {"a": "key-a", "b": "key-b"},
    }))
    .unwrap()
}

fn template(name: &str, prepend: &str) -> PromptTemplate {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "PromptTemplate",
        "metadata": {"name": name, "namespace": "ns", "generation": 3},
        "spec": {"variants": [{"system": {"prepend": prepend}}]},
    }))
    .unwrap()
}

/// Route `r`: template `route-t`; target `a` names `target-t`; rule `tools` names `rule-t`.
fn route(spec: serde_json::Value) -> ModelRoute {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": spec,
    }))
    .unwrap()
}

fn layered() -> ModelRoute {
    route(json!({
        "model": "chat",
        "promptTemplate": {"name": "route-t"},
        "targets": [
            {"pool": "p", "provider": "a", "model": "m", "promptTemplate": {"name": "target-t"}},
            {"pool": "p", "provider": "b", "model": "m"}
        ],
        "rules": [
            {"name": "tools", "match": {"hasTools": true}, "promptTemplate": {"name": "rule-t"},
             "targets": [{"pool": "p", "provider": "a", "model": "m"},
                         {"pool": "p", "provider": "b", "model": "m", "promptTemplate": {"name": "target-t"}}]},
            {"name": "plain", "match": {"hasTools": false},
             "targets": [{"pool": "p", "provider": "b", "model": "m"}]}
        ]
    }))
}

fn run(routes: &[ModelRoute], templates: &[PromptTemplate]) -> Compiled {
    let audiences = [Audience {
        namespace: "ns".into(),
        labels: Default::default(),
        workload: None,
    }];
    let mut compiled = compile(&Inputs {
        pools: &[pool()],
        routes,
        budgets: &[],
        secrets: &[secret()],
        config_maps: &[],
        model_files: None,
        audiences: &audiences,
        require_secret_opt_in: true,
        generated_by: "test",
    });
    apply(&mut compiled, routes, templates);
    compiled
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn table(compiled: &Compiled) -> &table::RouteTable {
    compiled.tables.values().next().expect("one table")
}

#[test]
fn the_most_specific_reference_wins_target_then_rule_then_route() {
    let templates = [
        template("route-t", "route"),
        template("rule-t", "rule"),
        template("target-t", "target"),
        template("unused", "nobody"),
    ];
    let compiled = run(&[layered()], &templates);
    let route = &table(&compiled).routes["chat"];
    let names = |targets: &[table::Target]| -> Vec<Option<String>> {
        targets.iter().map(|t| t.prompt_template.clone()).collect()
    };
    assert_eq!(
        names(&route.targets),
        [Some("target-t".into()), Some("route-t".into())]
    );
    assert_eq!(
        names(&route.rules[0].targets),
        [Some("rule-t".into()), Some("target-t".into())]
    );
    assert_eq!(names(&route.rules[1].targets), [Some("route-t".into())]);

    let carried: Vec<&String> = table(&compiled).templates.keys().collect();
    assert_eq!(carried, ["route-t", "rule-t", "target-t"], "only used ones");
    let outcome = &compiled.templates[&key(Kind::PromptTemplate, "route-t")];
    assert_eq!(outcome.used_by, ["r"]);
    assert!(outcome.accepted.is_empty());
    assert_eq!(outcome.generation, Some(3));
    assert!(outcome.label.starts_with("route-t@"));
    let unused = &compiled.templates[&key(Kind::PromptTemplate, "unused")];
    assert!(unused.used_by.is_empty());
    assert!(
        compiled.routes[&key(Kind::ModelRoute, "r")]
            .resolved_refs
            .is_empty()
    );
}

#[test]
fn a_missing_or_broken_template_leaves_the_route_served_without_it() {
    let templates = [template("rule-t", "{% if %}"), template("target-t", "fine")];
    let compiled = run(&[layered()], &templates);

    let broken = &compiled.templates[&key(Kind::PromptTemplate, "rule-t")];
    assert_eq!(broken.accepted.len(), 1);
    assert_eq!(broken.accepted[0].reason, reasons::INVALID_TEMPLATE);
    assert_eq!(broken.accepted[0].field, "spec.variants[0].system.prepend");
    assert_eq!(
        broken.used_by,
        ["r"],
        "a broken template still lists its users"
    );

    let route = &compiled.routes[&key(Kind::ModelRoute, "r")];
    let found: Vec<(&str, &str)> = route
        .resolved_refs
        .iter()
        .map(|p| (p.reason, p.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (reasons::TEMPLATE_NOT_FOUND, "spec.promptTemplate"),
            (reasons::TEMPLATE_NOT_READY, "spec.rules[0].promptTemplate"),
        ]
    );
    assert!(route.resolved_refs[0].message.contains("served without it"));

    let served = &table(&compiled).routes["chat"];
    assert_eq!(served.targets.len(), 2, "every target still served");
    assert_eq!(
        served.targets[0].prompt_template.as_deref(),
        Some("target-t")
    );
    assert_eq!(served.targets[1].prompt_template, None);
    assert_eq!(served.rules[0].targets[0].prompt_template, None);
}

#[test]
fn tables_without_templates_keep_their_version() {
    let plain = route(json!({"model": "chat",
        "targets": [{"pool": "p", "provider": "a", "model": "m"}]}));
    let before = {
        let audiences = [Audience {
            namespace: "ns".into(),
            labels: Default::default(),
            workload: None,
        }];
        let compiled = compile(&Inputs {
            pools: &[pool()],
            routes: std::slice::from_ref(&plain),
            budgets: &[],
            secrets: &[secret()],
            config_maps: &[],
            model_files: None,
            audiences: &audiences,
            require_secret_opt_in: true,
            generated_by: "test",
        });
        table(&compiled).version.clone()
    };
    let after = run(std::slice::from_ref(&plain), &[template("unused", "x")]);
    assert_eq!(table(&after).version, before);
    assert!(
        !serde_json::to_string(table(&after))
            .unwrap()
            .contains("promptTemplate")
    );

    let mut templated = plain;
    templated.spec.prompt_template = Some(PromptTemplateRef {
        name: "unused".into(),
    });
    let changed = run(&[templated], &[template("unused", "x")]);
    assert_ne!(
        table(&changed).version,
        before,
        "a template is part of the content"
    );
}
