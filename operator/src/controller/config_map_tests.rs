//! Complexity models from ConfigMaps: read by name through the apiserver (a `tower_test` mock
//! speaking its wire format), into the table by checksum; a missing one is `ResolvedRefs=False`
//! and the route is still served.

use k8s_openapi::jiff::Timestamp;
use switchyard_crds::complexity::{FORMAT, FeatureSpec, ModelFile};
use switchyard_crds::v1alpha1::{API_VERSION, OnError};

use super::*;

/// A valid model file (numbers exact in binary, so it parses back bit for bit).
fn model_text() -> String {
    ModelFile {
        format: FORMAT.into(),
        features: FeatureSpec::new(8),
        bias: 0.0,
        weights: vec![0.125; 8],
        calibration: (0..=100).map(|i| f64::from(i) / 8.0 - 6.0).collect(),
        checksum: String::new(),
    }
    .to_json()
}

fn route(name: &str, model: &str, config_map: &str) -> ModelRoute {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": "ns", "generation": 1},
        "spec": {
            "model": model,
            "targets": [{"pool": "pool", "provider": "a", "model": "m"}],
            "complexity": {"scorer": "Model", "onError": "Max",
                "model": {"configMapRef": {"name": config_map, "key": "model.json"}}},
        },
    }))
    .unwrap()
}

/// An apiserver holding one ConfigMap, `ns/router-model` at `resourceVersion` 7, that answers
/// 404 (a `Status`, as the apiserver does) for any other, and refuses anything but a GET of a
/// ConfigMap.
fn apiserver(text: String) -> (Client, Arc<std::sync::Mutex<Vec<String>>>) {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(request.method(), http::Method::GET);
            let path = request.uri().path().to_string();
            log.lock().unwrap().push(path.clone());
            let name = path
                .strip_prefix("/api/v1/namespaces/ns/configmaps/")
                .unwrap_or_else(|| panic!("unexpected request for {path}"));
            let (status, body) = if name == "router-model" {
                let map = serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"},
                    "data": {"model.json": text},
                });
                (200, map)
            } else {
                let status = serde_json::json!({
                    "apiVersion": "v1", "kind": "Status", "metadata": {},
                    "status": "Failure", "reason": "NotFound", "code": 404,
                    "message": format!("configmaps \"{name}\" not found"),
                    "details": {"name": name, "kind": "configmaps"},
                });
                (404, status)
            };
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.to_string().into_bytes()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), seen)
}

fn world() -> World {
    let mut world = super::tests::world();
    world.routes = vec![
        route("found", "chat", "router-model"),
        route("missing", "other", "absent"),
    ];
    world
}

#[tokio::test]
async fn a_referenced_config_map_is_read_into_the_table_and_a_missing_one_is_unresolved() {
    let text = model_text();
    let (client, seen) = apiserver(text.clone());
    let mut world = world();
    assert_eq!(
        config_map_refs(&world.routes),
        BTreeSet::from([
            ("ns".to_string(), "absent".to_string()),
            ("ns".to_string(), "router-model".to_string()),
        ])
    );
    // What the metadata watch holds: router-model at version 7, and absent which it saw
    // before its deletion reached it (the read finds it gone).
    let mut cache = ConfigMapCache::new();
    let known = |_: &str, name: &str| match name {
        "router-model" | "absent" => Some("7".to_string()),
        _ => None,
    };
    world.config_maps = referenced_config_maps(&client, &world, known, &mut cache).await;
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [
            "/api/v1/namespaces/ns/configmaps/absent",
            "/api/v1/namespaces/ns/configmaps/router-model",
        ],
        "only the referenced ConfigMaps, by name"
    );
    assert_eq!(world.config_maps.len(), 1);

    // The next step: the watch says absent is gone and router-model unchanged: no read.
    let unchanged = |_: &str, name: &str| (name == "router-model").then(|| "7".to_string());
    let again = referenced_config_maps(&client, &world, unchanged, &mut cache).await;
    assert_eq!(again, world.config_maps, "from the cache");
    assert_eq!(seen.lock().unwrap().len(), 2, "nothing read again");
    // A new version is read again.
    let changed = |_: &str, name: &str| (name == "router-model").then(|| "8".to_string());
    referenced_config_maps(&client, &world, changed, &mut cache).await;
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(cache.len(), 1);

    let out = step(
        &world,
        &Reports::default(),
        Time(Timestamp::from_second(1_000).unwrap()),
    );
    let pod = out.snapshot.pod("u1").unwrap();
    let table = out.snapshot.table_for(pod);
    let (checksum, stored) = table.complexity_models.iter().next().expect("the model");
    assert_eq!(table.complexity_models.len(), 1);
    assert_eq!(stored, &text);
    let found = table.routes["chat"].complexity.as_ref().unwrap();
    assert_eq!(found.model.as_ref(), Some(checksum));
    let missing = table.routes["other"]
        .complexity
        .as_ref()
        .expect("still served");
    assert_eq!(
        (missing.model.as_ref(), missing.on_error),
        (None, OnError::Max)
    );

    let status = |name: &str| {
        let write = out.routes.iter().find(|w| w.key.name == name).unwrap();
        let resolved = write
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .unwrap();
        (
            resolved.status.clone(),
            resolved.reason.clone(),
            resolved.message.clone(),
        )
    };
    assert_eq!(status("found").0, "True");
    let (state, reason, message) = status("missing");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "ConfigMapNotFound")
    );
    assert!(
        message.contains("ConfigMap ns/absent not found"),
        "{message}"
    );
}

#[test]
fn a_config_map_change_is_noticed_only_for_referenced_ones() {
    let routes = [route("found", "chat", "router-model")];
    let key = |name: &str| ("ns".to_string(), name.to_string());
    let refs = config_map_refs(&routes);
    assert!(refs.contains(&key("router-model")));
    assert!(!refs.contains(&key("kube-root-ca.crt")));
    let other_namespace = ("team-b".to_string(), "router-model".to_string());
    assert!(!refs.contains(&other_namespace));
}
