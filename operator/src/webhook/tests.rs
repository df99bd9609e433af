//! The handler: bad input in process, and one real HTTPS round trip on loopback with the
//! operator's own certificates, as the apiserver would make it.

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::ResourceRequirements;
use serde_json::{Value, json};

use super::*;

fn defaults() -> SidecarDefaults {
    SidecarDefaults {
        image: "ghcr.io/switchyard-dev/switchyard-sidecar:test".into(),
        mode: Mode::Container,
        resources: ResourceRequirements::default(),
        operator_namespace: "switchyard-system".into(),
        version: VERSION.into(),
        env: Default::default(),
    }
}

fn admissions() -> prometheus::IntCounterVec {
    crate::metrics::Metrics::new().unwrap().admissions
}

fn webhook(mode: Mode) -> Arc<Webhook> {
    let (_tx, rx) = watch::channel(mode);
    Webhook::new(defaults(), rx, admissions())
}

fn pod() -> Value {
    serde_yaml::from_str(include_str!("testdata/deployment.yaml")).unwrap()
}

/// An AdmissionReview as the apiserver sends it for a Pod CREATE in `team-a`.
fn review(object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "",
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

fn post(body: impl Into<Bytes>) -> Request<Body> {
    Request::post(INJECT_PATH)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::new(body.into()))
        .unwrap()
}

async fn call(req: Request<Body>, mode: Mode) -> (StatusCode, Bytes) {
    let response = webhook(mode).handle(req).await;
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// The response of a 200 answer, with its patch decoded.
fn admission(body: &[u8]) -> (Value, Option<Value>) {
    let review: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = review["response"].clone();
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true, "the webhook never blocks a pod");
    let patch = response["patch"].as_str().map(|b64| {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    });
    (response, patch)
}

fn patched(patch: Value) -> Value {
    let mut doc = pod();
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    doc
}

#[tokio::test]
async fn a_pod_review_is_answered_with_the_patch() {
    let body = serde_json::to_vec(&review(pod())).unwrap();
    let (status, body) = call(post(body), Mode::Native).await;
    assert_eq!(status, StatusCode::OK);
    let (response, patch) = admission(&body);
    let pod = patched(patch.unwrap_or_else(|| panic!("a patch: {response}")));
    assert_eq!(
        pod["spec"]["initContainers"][0]["name"],
        "switchyard-sidecar"
    );
    assert_eq!(pod["metadata"]["labels"]["switchyard.dev/injected"], "true");
}

#[tokio::test]
async fn the_current_mode_is_read_at_each_request() {
    let (tx, rx) = watch::channel(Mode::Container);
    let admissions = admissions();
    let webhook = Webhook::new(defaults(), rx, admissions.clone());
    let body = serde_json::to_vec(&review(pod())).unwrap();
    let first = webhook.clone().handle(post(body.clone())).await;
    tx.send_replace(Mode::Native);
    let second = webhook.handle(post(body)).await;
    let sidecar_at = |response: Response<Body>| async move {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let pod = patched(admission(&body).1.unwrap());
        pod["spec"]["containers"][0]["name"] == "switchyard-sidecar"
    };
    assert!(sidecar_at(first).await, "container mode");
    assert!(!sidecar_at(second).await, "native mode");
    assert_eq!(admissions.with_label_values(&["injected"]).get(), 2);
}

#[tokio::test]
async fn pods_it_cannot_act_on_are_allowed_unchanged() {
    let mut unreadable =
        review(json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": 7}}));
    let mut update = review(pod());
    update["request"]["operation"] = json!("UPDATE");
    let mut subresource = review(pod());
    subresource["request"]["subResource"] = json!("ephemeralcontainers");
    let mut no_object = review(pod());
    no_object["request"]["object"] = Value::Null;
    let mut bad_metadata = review(pod());
    bad_metadata["request"]["object"]["metadata"] = json!(5);
    let mut excluded = review(pod());
    excluded["request"]["namespace"] = json!("kube-system");
    for (name, review, warns) in [
        ("unreadable", &mut unreadable, true),
        ("update", &mut update, false),
        ("subresource", &mut subresource, false),
        ("no object", &mut no_object, true),
        ("bad metadata", &mut bad_metadata, true),
        ("excluded", &mut excluded, false),
    ] {
        let (status, body) = call(post(review.to_string()), Mode::Native).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        let (response, patch) = admission(&body);
        assert_eq!(patch, None, "{name}");
        assert_eq!(response["warnings"].is_array(), warns, "{name}: {response}");
    }
}

#[tokio::test]
async fn bad_requests_get_plain_errors() {
    let mut deployment = review(pod());
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let mut no_request = review(pod());
    no_request.as_object_mut().unwrap().remove("request");
    let get = Request::get(INJECT_PATH).body(Body::default()).unwrap();
    let elsewhere = Request::post("/mutate").body(Body::default()).unwrap();
    let text = Request::post(INJECT_PATH)
        .header(CONTENT_TYPE, "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    let huge = post(vec![b' '; MAX_REVIEW_BYTES + 1]);
    let declared_huge = Request::post(INJECT_PATH)
        .header(CONTENT_LENGTH, (MAX_REVIEW_BYTES + 1).to_string())
        .body(Body::default())
        .unwrap();
    let cases = [
        ("get", get, StatusCode::METHOD_NOT_ALLOWED, "use POST"),
        ("path", elsewhere, StatusCode::NOT_FOUND, "not found"),
        (
            "text",
            text,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        ("huge", huge, StatusCode::PAYLOAD_TOO_LARGE, "larger than"),
        (
            "declared huge",
            declared_huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            "garbage",
            post("{not json"),
            StatusCode::BAD_REQUEST,
            "not an AdmissionReview",
        ),
        (
            "empty",
            post(""),
            StatusCode::BAD_REQUEST,
            "not an AdmissionReview",
        ),
        (
            "no request",
            post(no_request.to_string()),
            StatusCode::BAD_REQUEST,
            "no request",
        ),
        (
            "deployment",
            post(deployment.to_string()),
            StatusCode::BAD_REQUEST,
            "apps/v1/Deployment",
        ),
    ];
    for (name, req, want, message) in cases {
        let (status, body) = call(req, Mode::Native).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, want, "{name}: {body}");
        assert!(body.contains(message), "{name}: {body}");
    }
}

#[test]
fn defaults_come_from_the_flags() {
    use clap::Parser as _;
    let config = crate::args::Args::try_parse_from(["x", "--cert-dir", "d"])
        .unwrap()
        .into_config(None)
        .unwrap();
    let defaults = SidecarDefaults::from_config(&config);
    assert_eq!(
        defaults.image,
        format!("ghcr.io/switchyard-dev/switchyard-sidecar:{VERSION}")
    );
    assert_eq!(defaults.mode, Mode::Container, "auto starts safe");
    assert_eq!(defaults.operator_namespace, "switchyard-system");
    assert_eq!(defaults.resources, config.sidecar_resources);
}

/// Real TLS on loopback with certificates from [`crate::certs`], HTTP/1.1 like the apiserver.
#[tokio::test]
async fn the_webhook_answers_over_https() {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-webhook-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let (bundle, _) =
        crate::certs::ensure(&dir, "switchyard-system", std::time::SystemTime::now()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(
        listener,
        bundle.server_config().unwrap(),
        webhook(Mode::Native),
    ));

    let mut roots = rustls::RootCertStore::empty();
    for ca in bundle.ca_ders() {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    let body = serde_json::to_vec(&review(pod())).unwrap();
    let response = sender.send_request(post(body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let pod = patched(admission(&body).1.expect("a patch"));
    assert_eq!(
        pod["spec"]["initContainers"][0]["name"],
        "switchyard-sidecar"
    );

    let bad = sender.send_request(post("{")).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
