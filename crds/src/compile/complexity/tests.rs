//! Compiling `complexity`: model sources, classifier routes, table versions.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{Value, json};

use crate::compile::{Audience, Compiled, Inputs, Kind, ModelFiles, ObjectKey, compile, reasons};
use crate::complexity::{FORMAT, FeatureSpec, ModelFile};
use crate::v1alpha1::{API_VERSION, ModelRoute, OnError, ProviderPool, ScorerKind};

fn pool() -> ProviderPool {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ProviderPool",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"providers": [{
            "name": "a", "api": "OpenAI", "baseUrl": "https://a.example/v1",
            "apiKey": {"secretKeyRef": {"name": "k", "key": "key"}},
            "models": [{"name": "m", "inputPerMillion": "1", "outputPerMillion": "2"}],
        }]},
    }))
    .unwrap()
}

fn secret() -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "k", "namespace": "ns"},
        "stringData": {"key": "sk-test"},
    }))
    .unwrap()
}

fn route(name: &str, model: &str, complexity: Option<Value>) -> ModelRoute {
    let mut spec =
        json!({"model": model, "targets": [{"pool": "p", "provider": "a", "model": "m"}]});
    if let Some(c) = complexity {
        spec["complexity"] = c;
    }
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": "ns"}, "spec": spec,
    }))
    .unwrap()
}

fn config_map(key: &str, text: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "router-model", "namespace": "ns"},
        "data": {key: text},
    }))
    .unwrap()
}

/// A valid model file's text.
fn model_text() -> String {
    let mut file = ModelFile {
        format: FORMAT.into(),
        features: FeatureSpec::new(8),
        bias: 0.0,
        // Values exact in binary, so the text parses back to the same numbers bit for bit
        // (serde_json's default float parser may differ by one ulp on others).
        weights: vec![0.125; 8],
        calibration: (0..=100).map(|i| f64::from(i) / 8.0 - 6.0).collect(),
        checksum: String::new(),
    };
    file.to_json()
}

fn run(routes: &[ModelRoute], config_maps: &[ConfigMap], files: Option<&ModelFiles>) -> Compiled {
    compile(&Inputs {
        pools: &[pool()],
        routes,
        budgets: &[],
        secrets: &[secret()],
        config_maps,
        model_files: files,
        audiences: &[Audience {
            namespace: "ns".into(),
            ..Audience::default()
        }],
        require_secret_opt_in: false,
        generated_by: "test",
    })
}

fn key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::ModelRoute,
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn model_route(on_error: &str) -> ModelRoute {
    route(
        "r",
        "chat",
        Some(json!({"scorer": "Model", "onError": on_error,
            "model": {"configMapRef": {"name": "router-model", "key": "model.json"}}})),
    )
}

#[test]
fn a_model_from_a_config_map_travels_in_the_table_once_by_checksum() {
    let text = model_text();
    let routes = [
        model_route("Max"),
        route(
            "r2",
            "chat2",
            Some(json!({"scorer": "Model",
                "model": {"configMapRef": {"name": "router-model", "key": "model.json"}}})),
        ),
    ];
    let compiled = run(&routes, &[config_map("model.json", &text)], None);
    assert_eq!(
        compiled.problems().count(),
        0,
        "{:?}",
        compiled.problems().collect::<Vec<_>>()
    );
    let table = compiled.tables.values().next().unwrap();
    assert_eq!(table.complexity_models.len(), 1, "one file, two routes");
    let (checksum, stored) = table.complexity_models.iter().next().unwrap();
    assert!(checksum.starts_with("sha256:"));
    assert_eq!(stored, &text);
    let c = table.routes["chat"].complexity.as_ref().unwrap();
    assert_eq!(c.scorer, ScorerKind::Model);
    assert_eq!(c.model.as_ref(), Some(checksum));
    assert_eq!(c.on_error, OnError::Max);
}

#[test]
fn a_missing_config_map_or_key_or_a_bad_model_is_resolved_refs_and_the_route_still_serves() {
    let mut wrong_version: Value = serde_json::from_str(&model_text()).unwrap();
    wrong_version["format"] = json!("switchyard.complexity/v9");
    let mut bad_checksum: Value = serde_json::from_str(&model_text()).unwrap();
    bad_checksum["bias"] = json!(3.0);
    let too_large = format!("{{\"format\": \"{}\"}}", " ".repeat(1 << 20));
    let cases: Vec<(Vec<ConfigMap>, &str, &str)> = vec![
        (
            vec![],
            reasons::CONFIG_MAP_NOT_FOUND,
            "ConfigMap ns/router-model not found",
        ),
        (
            vec![config_map("other", "{}")],
            reasons::CONFIG_MAP_KEY_NOT_FOUND,
            "has no key \"model.json\"",
        ),
        (
            vec![config_map("model.json", "{not json")],
            reasons::INVALID_MODEL,
            "not a model file",
        ),
        (
            vec![config_map("model.json", &wrong_version.to_string())],
            reasons::INVALID_MODEL,
            "switchyard.complexity/v9",
        ),
        (
            vec![config_map("model.json", &bad_checksum.to_string())],
            reasons::INVALID_MODEL,
            "checksum",
        ),
        (
            vec![config_map("model.json", &too_large)],
            reasons::INVALID_MODEL,
            "the limit is 1048576",
        ),
    ];
    for (maps, reason, message) in cases {
        let compiled = run(&[model_route("Min")], &maps, None);
        let outcome = &compiled.routes[&key("r")];
        assert!(outcome.accepted.is_empty(), "{outcome:?}");
        let problem = &outcome.resolved_refs[0];
        assert_eq!(problem.reason, reason);
        assert!(
            problem.message.contains(message),
            "{} lacks {message}",
            problem.message
        );
        assert_eq!(problem.field, "spec.complexity.model.configMapRef");
        let table = compiled.tables.values().next().unwrap();
        let c = table.routes["chat"]
            .complexity
            .as_ref()
            .expect("still served");
        assert_eq!((c.model.as_ref(), c.on_error), (None, OnError::Min));
        assert!(table.complexity_models.is_empty());
    }
}

#[test]
fn a_model_file_is_read_by_the_standalone_loader_and_refused_in_a_cluster() {
    let file_route = route(
        "r",
        "chat",
        Some(json!({"scorer": "Model", "model": {"file": "model.json"}})),
    );
    let routes = [file_route];
    let cluster = run(&routes, &[], None);
    let outcome = &cluster.routes[&key("r")];
    assert!(
        outcome.accepted[0]
            .message
            .contains("standalone manifests only"),
        "{outcome:?}"
    );
    assert!(cluster.tables.values().next().unwrap().routes.is_empty());

    let files = ModelFiles::from([(key("r"), Ok(model_text()))]);
    let standalone = run(&routes, &[], Some(&files));
    assert_eq!(standalone.problems().count(), 0);
    assert_eq!(
        standalone
            .tables
            .values()
            .next()
            .unwrap()
            .complexity_models
            .len(),
        1
    );

    let files = ModelFiles::from([(key("r"), Err("cannot read model file /x/model.json".into()))]);
    let unreadable = run(&routes, &[], Some(&files));
    let problem = &unreadable.routes[&key("r")].resolved_refs[0];
    assert_eq!(problem.reason, reasons::INVALID_MODEL);
    assert!(problem.message.contains("/x/model.json"));
}

#[test]
fn a_classifier_route_compiles_with_its_defaults() {
    let routes = [
        route(
            "r",
            "chat",
            Some(json!({"scorer": "Route", "route": {"model": "classifier", "timeout": "300ms"}})),
        ),
        route("c", "classifier", None),
    ];
    let compiled = run(&routes, &[], None);
    assert_eq!(compiled.problems().count(), 0);
    let table = compiled.tables.values().next().unwrap();
    let classifier = table.routes["chat"]
        .complexity
        .as_ref()
        .unwrap()
        .route
        .as_ref()
        .unwrap();
    assert_eq!(classifier.model, "classifier");
    assert_eq!(classifier.timeout_ms, 300);
    assert_eq!(classifier.cache_ttl_ms, 3_600_000);
}

#[test]
fn self_reference_and_chains_are_refused_and_an_unknown_classifier_is_unresolved() {
    let own = [route(
        "r",
        "chat",
        Some(json!({"scorer": "Route", "route": {"model": "chat"}})),
    )];
    let compiled = run(&own, &[], None);
    let problem = &compiled.routes[&key("r")].accepted[0];
    assert_eq!(problem.field, "spec.complexity.route.model");
    assert!(
        problem.message.contains("cannot score its own prompts"),
        "{problem}"
    );
    assert!(
        compiled.tables.values().next().unwrap().routes.is_empty(),
        "refused"
    );

    let chain = [
        route(
            "r",
            "chat",
            Some(json!({"scorer": "Route", "route": {"model": "classifier"}})),
        ),
        route(
            "c",
            "classifier",
            Some(json!({"scorer": "Route", "route": {"model": "third"}})),
        ),
        route("t", "third", None),
    ];
    let compiled = run(&chain, &[], None);
    let problem = &compiled.routes[&key("r")].accepted[0];
    assert!(
        problem.message.contains("uses scorer Route itself"),
        "{problem}"
    );
    let table = compiled.tables.values().next().unwrap();
    assert!(!table.routes.contains_key("chat"));
    assert!(
        table.routes.contains_key("classifier"),
        "the classifier's own chain ends at a plain route"
    );

    let unknown = [route(
        "r",
        "chat",
        Some(json!({"scorer": "Route", "route": {"model": "nope"}})),
    )];
    let compiled = run(&unknown, &[], None);
    let problem = &compiled.routes[&key("r")].resolved_refs[0];
    assert_eq!(problem.reason, reasons::CLASSIFIER_NOT_FOUND);
    let c = compiled.tables.values().next().unwrap().routes["chat"]
        .complexity
        .clone();
    assert_eq!(c.unwrap().route, None, "served, scored by onError");
}

#[test]
fn fields_of_another_scorer_are_refused() {
    for (spec, field) in [
        (json!({"scorer": "Model"}), "spec.complexity.model"),
        (json!({"scorer": "Route"}), "spec.complexity.route"),
        (
            json!({"scorer": "Heuristic", "route": {"model": "x"}}),
            "spec.complexity.route",
        ),
        (
            json!({"scorer": "Route", "route": {"model": "x"}, "model": {"file": "m"}}),
            "spec.complexity.model",
        ),
        (
            json!({"scorer": "Model", "model": {}}),
            "spec.complexity.model",
        ),
    ] {
        let compiled = run(&[route("r", "chat", Some(spec.clone()))], &[], None);
        let outcome = &compiled.routes[&key("r")];
        assert_eq!(
            outcome.accepted.first().map(|p| p.field.as_str()),
            Some(field),
            "{spec}"
        );
    }
}

#[test]
fn tables_without_complexity_keep_their_versions() {
    // The version of this table before `complexity` existed: a new optional field must not
    // change the hash of tables that do not use it.
    let plain = run(&[route("r", "chat", None)], &[], None);
    let table = plain.tables.values().next().unwrap();
    let json = serde_json::to_string(table).unwrap();
    assert!(!json.contains("complexity"), "{json}");
    let heuristic = run(
        &[route("r", "chat", Some(json!({"scorer": "Heuristic"})))],
        &[],
        None,
    );
    assert_ne!(
        heuristic.tables.values().next().unwrap().version,
        table.version
    );
}
