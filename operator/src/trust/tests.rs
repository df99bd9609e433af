use std::time::UNIX_EPOCH;

use http_body_util::BodyExt as _;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};

use super::*;

type Mock =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

fn mock() -> (Client, Mock) {
    let (service, handle) = tower_test::mock::pair();
    (Client::new(service, "ops"), handle)
}

fn json_response(status: u16, body: &serde_json::Value) -> http::Response<kube::client::Body> {
    http::Response::builder()
        .status(status)
        .body(kube::client::Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn api_error(code: u16, reason: &str) -> http::Response<kube::client::Body> {
    json_response(
        code,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "code": code, "message": reason}),
    )
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// Answers the next request with `response` and returns its method, path and JSON body.
async fn answer(
    handle: &mut Mock,
    response: http::Response<kube::client::Body>,
) -> (http::Method, String, serde_json::Value) {
    let (request, send) = handle.next_request().await.expect("a request");
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    send.send_response(response);
    (parts.method, parts.uri.path().to_string(), body)
}

#[tokio::test]
async fn the_first_replica_creates_the_secret() {
    let (client, mut handle) = mock();
    let store = Store::Secret {
        client,
        namespace: "ops".into(),
    };
    let task = tokio::spawn(async move { store.ensure("ops", now()).await });
    let path = "/api/v1/namespaces/ops/secrets/switchyard-certs";
    let (method, got, _) = answer(&mut handle, api_error(404, "NotFound")).await;
    assert_eq!((method, got.as_str()), (http::Method::GET, path));
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.uri().path(), "/api/v1/namespaces/ops/secrets");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let created: Secret = serde_json::from_slice(&body).unwrap();
    send.send_response(json_response(201, &serde_json::to_value(&created).unwrap()));
    let (bundle, action) = task.await.unwrap().unwrap();
    assert_eq!(action, CertAction::Generated);
    let stored = material_of(&created);
    assert_eq!(stored.bundle().unwrap().cert_pem, bundle.cert_pem);
    assert!(
        stored.get(certs::entry::CA_KEY).is_some(),
        "renewal needs the CA key"
    );
}

#[tokio::test]
async fn a_replica_that_loses_the_create_race_serves_the_winners_certificate() {
    let (winner, _) =
        certs::plan(&Material::default(), &certs::serving_names("ops"), now()).unwrap();
    let mut stored = secret_of(&winner);
    stored.metadata.namespace = Some("ops".into());
    stored.metadata.resource_version = Some("7".into());
    let (client, mut handle) = mock();
    let store = Store::Secret {
        client,
        namespace: "ops".into(),
    };
    let task = tokio::spawn(async move { store.ensure("ops", now()).await });
    answer(&mut handle, api_error(404, "NotFound")).await;
    let (method, _, _) = answer(&mut handle, api_error(409, "AlreadyExists")).await;
    assert_eq!(method, http::Method::POST);
    let (method, _, _) = answer(
        &mut handle,
        json_response(200, &serde_json::to_value(&stored).unwrap()),
    )
    .await;
    assert_eq!(method, http::Method::GET);
    let (bundle, action) = task.await.unwrap().unwrap();
    assert_eq!(action, CertAction::Loaded);
    assert_eq!(
        bundle.cert_pem,
        winner.bundle().unwrap().cert_pem,
        "no write: theirs is used"
    );
}

#[tokio::test]
async fn a_due_renewal_replaces_the_secret_at_the_version_it_read() {
    let names = certs::serving_names("ops");
    let (old, _) = certs::plan(
        &Material::default(),
        &names,
        now() - Duration::from_secs(300 * 86_400),
    )
    .unwrap();
    let mut stored = secret_of(&old);
    stored.metadata.resource_version = Some("42".into());
    let (client, mut handle) = mock();
    let store = Store::Secret {
        client,
        namespace: "ops".into(),
    };
    let task = tokio::spawn(async move { store.ensure("ops", now()).await });
    answer(
        &mut handle,
        json_response(200, &serde_json::to_value(&stored).unwrap()),
    )
    .await;
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.method(), http::Method::PUT);
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let replaced: Secret = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        replaced.metadata.resource_version.as_deref(),
        Some("42"),
        "optimistic concurrency"
    );
    send.send_response(json_response(
        200,
        &serde_json::to_value(&replaced).unwrap(),
    ));
    let (bundle, action) = task.await.unwrap().unwrap();
    assert_eq!(action, CertAction::RenewedServing);
    let renewed = material_of(&replaced);
    assert_eq!(
        renewed.get(certs::entry::CA_CERT),
        old.get(certs::entry::CA_CERT),
        "same CA"
    );
    assert_ne!(
        renewed.get(certs::entry::TLS_CERT),
        old.get(certs::entry::TLS_CERT)
    );
    assert_eq!(bundle.cert_pem, renewed.bundle().unwrap().cert_pem);
}

fn webhook_config(bundles: &[Option<&str>]) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some("switchyard".into()),
            ..Default::default()
        },
        webhooks: Some(
            bundles
                .iter()
                .enumerate()
                .map(|(i, bundle)| MutatingWebhook {
                    name: format!("w{i}.switchyard.dev"),
                    client_config: WebhookClientConfig {
                        ca_bundle: bundle.map(|b| ByteString(b.as_bytes().to_vec())),
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

#[test]
fn the_webhook_bundle_is_applied_only_when_some_webhook_lacks_it() {
    assert_eq!(
        webhook_apply(&webhook_config(&[Some("CA"), Some("CA")]), "CA"),
        None
    );
    let body = webhook_apply(&webhook_config(&[Some("CA"), None]), "CA").expect("one is missing");
    assert_eq!(body["metadata"]["name"], "switchyard");
    let entries = body["webhooks"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        2,
        "every webhook by name (a list-map keyed by name)"
    );
    assert_eq!(entries[1]["name"], "w1.switchyard.dev");
    assert_eq!(entries[1]["clientConfig"]["caBundle"], "Q0E=");
    assert_eq!(
        entries[1]["clientConfig"].as_object().unwrap().len(),
        1,
        "only caBundle: the chart owns the rest"
    );
    assert!(
        webhook_apply(&webhook_config(&[Some("OLD")]), "NEW").is_some(),
        "a changed bundle is restored"
    );
}

#[tokio::test]
async fn the_ca_root_configmap_is_server_side_applied() {
    let (client, mut handle) = mock();
    let (_, namespaces) = watch::channel(BTreeSet::from(["apps".to_string()]));
    let (bundle, _) =
        certs::plan(&Material::default(), &certs::serving_names("ops"), now()).unwrap();
    let bundle = bundle.bundle().unwrap();
    let publisher = Publisher {
        client: client.clone(),
        store: Store::Dir("/nonexistent".into()),
        namespace: "ops".into(),
        webhook_config_name: "switchyard".into(),
        serving: Arc::new(ServingCert::new(&bundle).unwrap()),
        leadership: Leadership::always(),
        namespaces,
    };
    let ca = bundle.ca_pem.clone();
    let task = tokio::spawn(async move {
        let mut applied = HashMap::new();
        publisher.publish_configmaps(&ca, &mut applied).await;
        applied
    });
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.method(), http::Method::PATCH);
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/apps/configmaps/switchyard-ca-root"
    );
    assert!(
        request
            .uri()
            .query()
            .unwrap()
            .contains("fieldManager=switchyard-operator")
    );
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["data"]["ca.crt"], bundle.ca_pem);
    send.send_response(json_response(200, &body));
    let applied = task.await.unwrap();
    assert_eq!(applied.get("apps"), Some(&bundle.ca_pem));
}
