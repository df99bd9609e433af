//! The cluster tests' helper layer (see `tests/cluster.rs`): cluster access with the skip line,
//! per-test namespaces and cluster objects that delete themselves, server-side apply and waits,
//! the objects the tests apply, and the real operator and sidecar as child processes.

use std::io::Write as _;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use switchyard_tests::Reply;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// The field manager of everything these tests apply.
pub const MANAGER: &str = "switchyard-tests";
/// How long the operator may take to write a status.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// Operators run one at a time (see the module doc).
pub static OPERATOR_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// === Cluster access ===

/// The cluster `KUBECONFIG` names, or `None` (with one line on stderr) when there is none.
pub async fn cluster() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        skip("KUBECONFIG is not set");
        return None;
    }
    // NB: kube uses rustls with ring; installing it as the process default keeps any path that
    // asks for the default from panicking (docs/development-notes.md).
    let _ = crypto::ring::default_provider().install_default();
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            skip(&format!("KUBECONFIG cannot be used: {e}"));
            return None;
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(_)) => Some(client),
        Ok(Err(e)) => {
            skip(&format!("the cluster in KUBECONFIG is unreachable: {e}"));
            None
        }
        Err(_) => {
            skip("the cluster in KUBECONFIG did not answer within 5 s");
            None
        }
    }
}

pub fn skip(why: &str) {
    static ONCE: Once = Once::new();
    // NB: written to the stderr handle, not with `eprintln!`, which the test harness captures.
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "cluster tests skipped: {why}");
    });
}

/// The generated CRD manifests, `(file name, YAML)`.
pub fn crd_files() -> Vec<(String, String)> {
    let dir = workspace().join("crds/manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/manifests")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let yaml = std::fs::read_to_string(&p).expect("read CRD");
            (p.file_name().unwrap().to_string_lossy().into_owned(), yaml)
        })
        .collect();
    files.sort();
    files
}

pub fn crd_name(file: &str) -> String {
    format!("{}.switchyard.dev", file.trim_end_matches(".yaml"))
}

/// Applies the CRDs (server-side, as `switchyard-tests`) and waits until they are Established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (file, yaml) in crd_files() {
        let manifest: Value = serde_yaml::from_str(&yaml).expect("CRD YAML");
        let name = crd_name(&file);
        if let Err(e) = crds
            .patch(
                &name,
                &PatchParams::apply(MANAGER),
                &Patch::Apply(&manifest),
            )
            .await
        {
            panic!("the apiserver refused {file}: {e}");
        }
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(20), established)
            .await
            .unwrap_or_else(|_| panic!("{name} not Established within 20 s"))
            .expect("watch the CRD");
    }
}

/// A namespace of one test, deleted when the test ends (even by a panic).
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn create(client: &Client, what: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "sy-{what}-{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos & 0xfff
        );
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"switchyard.dev/test": "cluster"}}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        Self {
            name,
            client: client.clone(),
        }
    }

    pub fn api(&self, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.name, &resource(kind))
    }

    /// Server-side apply of one object; the stored object, or the apiserver's refusal.
    pub async fn apply(&self, manifest: Value) -> Result<Value, kube::Error> {
        let kind = manifest["kind"].as_str().expect("kind");
        let name = manifest["metadata"]["name"].as_str().expect("name");
        let stored = self
            .api(kind)
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&manifest))
            .await?;
        Ok(serde_json::to_value(stored).unwrap())
    }

    /// A plain create (POST), for what server-side apply cannot even express (duplicate keys).
    pub async fn post(&self, manifest: Value) -> Result<Value, kube::Error> {
        let kind = manifest["kind"].as_str().expect("kind");
        let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("object");
        let stored = self
            .api(kind)
            .create(&PostParams::default(), &object)
            .await?;
        Ok(serde_json::to_value(stored).unwrap())
    }

    pub async fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let object = self.api(kind).get_opt(name).await.expect("get")?;
        Some(serde_json::to_value(object).unwrap())
    }

    /// A ServiceAccount token for `audience`, bound to `pod` (name, UID) when given.
    pub async fn token(&self, account: &str, audience: &str, pod: Option<(&str, &str)>) -> String {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                // An empty audience asks for the apiserver's own (a token to talk to it with).
                audiences: [audience]
                    .into_iter()
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect(),
                bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.into()),
                    uid: Some(uid.into()),
                }),
                expiration_seconds: Some(3600),
            },
            ..TokenRequest::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.name);
        let granted = api
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {account} ({audience}): {e}"));
        granted.status.expect("a token").token
    }

    /// The namespace's `events.k8s.io/v1` Events.
    pub async fn events(&self) -> Vec<Value> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.name, &resource);
        let list = api.list(&Default::default()).await.expect("list events");
        list.items
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    /// Sets a pod's phase through the status subresource, as a kubelet would.
    pub async fn set_pod_phase(&self, pod: &str, phase: &str) {
        let status = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
                            "status": {"phase": phase}});
        self.api("Pod")
            .patch_status(
                pod,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap_or_else(|e| panic!("set pod {pod} {phase}: {e}"));
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // NB: a cluster without a namespace controller (a bare apiserver) never empties a deleted
        // namespace; deleting the objects first keeps later operators from seeing them.
        let ns = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = Client::try_default().await.ok()?;
                for kind in ["Budget", "ModelRoute", "ProviderPool", "Pod"] {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &ns, &resource(kind));
                    let _ = api
                        .delete_collection(&DeleteParams::background(), &Default::default())
                        .await;
                }
                Some(())
            })
        })
        .join();
        delete_now(resource("Namespace"), &self.name);
    }
}

/// A cluster-scoped object of one test (RBAC, webhook configuration), deleted when it ends.
pub struct ClusterObject {
    pub kind: &'static str,
    pub name: String,
}

impl ClusterObject {
    pub async fn apply(client: &Client, kind: &'static str, manifest: Value) -> Self {
        let name = manifest["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        Api::<DynamicObject>::all_with(client.clone(), &resource(kind))
            .patch(
                &name,
                &PatchParams::apply(MANAGER),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
        Self { kind, name }
    }
}

impl Drop for ClusterObject {
    fn drop(&mut self) {
        delete_now(resource(self.kind), &self.name);
    }
}

/// Deletes a cluster-scoped object from a `Drop`.
pub fn delete_now(resource: ApiResource, name: &str) {
    // NB: the test's runtime may be going away (or panicking); a thread with its own runtime
    // and client deletes the object whatever happened.
    let owned = name.to_string();
    let deleted = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let client = Client::try_default().await.ok()?;
            let api = Api::<DynamicObject>::all_with(client, &resource);
            api.delete(&owned, &DeleteParams::background()).await.ok()
        })
    })
    .join();
    if !matches!(deleted, Ok(Some(_))) {
        eprintln!("could not delete {name}");
    }
}

pub fn resource(kind: &str) -> ApiResource {
    let (group, version, plural) = match kind {
        "ModelRoute" => ("switchyard.dev", "v1alpha1", "modelroutes"),
        "ProviderPool" => ("switchyard.dev", "v1alpha1", "providerpools"),
        "Budget" => ("switchyard.dev", "v1alpha1", "budgets"),
        "Secret" => ("", "v1", "secrets"),
        "ServiceAccount" => ("", "v1", "serviceaccounts"),
        "Pod" => ("", "v1", "pods"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Lease" => ("coordination.k8s.io", "v1", "leases"),
        "Namespace" => ("", "v1", "namespaces"),
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            let plural = match kind {
                "Role" => "roles",
                "ClusterRole" => "clusterroles",
                "RoleBinding" => "rolebindings",
                _ => "clusterrolebindings",
            };
            ("rbac.authorization.k8s.io", "v1", plural)
        }
        "MutatingWebhookConfiguration" => (
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
        ),
        other => panic!("no resource for kind {other}"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Asserts the apiserver refused an object with `message` somewhere in its answer.
pub fn assert_refused(result: Result<Value, kube::Error>, message: &str) {
    match result {
        Ok(stored) => panic!("accepted, expected a refusal with {message:?}: {stored:#}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(message),
                "expected {message:?} in: {}",
                status.message
            );
        }
        Err(other) => panic!("expected a refusal with {message:?}, got {other}"),
    }
}

/// Asserts the apiserver refused an object, and that its message names `field` (a JSON path
/// such as `spec.limits[0].usd`) and says `message`.
pub fn assert_refused_naming(result: Result<Value, kube::Error>, field: &str, message: &str) {
    match result {
        Ok(stored) => panic!("accepted, expected a refusal of {field}: {stored:#}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(field) && status.message.contains(message),
                "expected {field:?} and {message:?} in: {}",
                status.message
            );
        }
        Err(other) => panic!("expected a refusal of {field}, got {other}"),
    }
}

// === Objects ===

pub const ROUTE_CONDITIONS: [&str; 4] = ["Accepted", "ResolvedRefs", "Programmed", "Ready"];
pub const POOL_CONDITIONS: [&str; 3] = ["Accepted", "ResolvedRefs", "Ready"];

pub fn key_secret(ns: &str, name: &str, opted_in: bool) -> Value {
    let labels = if opted_in {
        json!({"switchyard.dev/provider-key": "true"})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "stringData": {"openai": "sk-from-the-cluster"}})
}

/// A pool with one OpenAI provider `openai` at `base_url` offering `gpt-4o` and `gpt-4o-mini`.
pub fn pool(ns: &str, name: &str, base_url: &str, secret: Option<&str>) -> Value {
    let mut provider = json!({
        "name": "openai", "api": "OpenAI", "baseUrl": base_url,
        "models": [
            {"name": "gpt-4o", "inputPerMillion": "2.50", "outputPerMillion": "10.00"},
            {"name": "gpt-4o-mini", "inputPerMillion": "0.15", "outputPerMillion": "0.60"},
        ],
    });
    if let Some(secret) = secret {
        provider["apiKey"] = json!({"secretKeyRef": {"name": secret, "key": "openai"}});
    }
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ProviderPool",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"providers": [provider]}})
}

/// A route for `model` with one target in `pool` (provider `openai`, `gpt-4o`).
pub fn route(ns: &str, name: &str, model: &str, pool: &str) -> Value {
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRoute",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"model": model,
                    "targets": [{"pool": pool, "provider": "openai", "model": "gpt-4o"}]}})
}

/// A route with two targets in pool `p`, its spec edited by `edit`.
pub fn route_with(ns: &str, name: &str, model: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut manifest = route(ns, name, model, "p");
    manifest["spec"]["targets"] = json!([
        {"pool": "p", "provider": "a", "model": "m1"},
        {"pool": "p", "provider": "b", "model": "m2"},
    ]);
    edit(&mut manifest["spec"]);
    manifest
}

/// A Budget with `spec` as given.
pub fn budget(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Budget",
           "metadata": {"name": name, "namespace": ns},
           "spec": spec})
}

/// The Table (`kubectl get`'s view) of every `kind` in `ns`: the apiserver renders it from the
/// CRD's `additionalPrinterColumns`, exactly as `kubectl get` shows it.
pub async fn printed(ns: &TestNamespace, plural: &str) -> Value {
    let request = Request::get(format!(
        "/apis/switchyard.dev/v1alpha1/namespaces/{}/{plural}",
        ns.name
    ))
    .header(
        http::header::ACCEPT,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .body(Vec::new())
    .expect("a valid request");
    ns.client
        .request::<Value>(request)
        .await
        .unwrap_or_else(|e| panic!("get {plural} as a Table: {e}"))
}

pub fn injected_pod(ns: &str, name: &str, account: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns,
                        "labels": {"switchyard.dev/injected": "true", "app": name}},
           "spec": {"serviceAccountName": account,
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}})
}

/// The condition of `ty` in a status (`Null` when absent).
pub fn condition<'a>(status: &'a Value, ty: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

/// Every condition in `types` is True and observed at the object's current generation.
pub fn all_true(types: &'static [&'static str]) -> impl Fn(&Value) -> bool {
    move |object| {
        let generation = &object["metadata"]["generation"];
        let status = &object["status"];
        status["observedGeneration"] == *generation
            && types.iter().all(|ty| {
                let c = condition(status, ty);
                c["status"] == "True" && c["observedGeneration"] == *generation
            })
    }
}

/// The chart's RBAC (`charts/switchyard/templates/rbac.yaml`) for ServiceAccount `account` in
/// `namespace`, with the few template expressions it uses filled in by hand (no Helm here).
pub fn chart_rbac(account: &str, namespace: &str, webhook: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace().join("charts/switchyard/templates/rbac.yaml"))
        .expect("the chart's rbac.yaml");
    let mut kept = Vec::new();
    let mut in_comment = false;
    for line in text.lines() {
        if line.trim_start().starts_with("{{- /*") || line.trim_start().starts_with("{{/*") {
            in_comment = !line.contains("*/}}");
            continue;
        }
        if in_comment {
            in_comment = !line.contains("*/}}");
            continue;
        }
        if line.contains("switchyard.operator.labels") {
            continue;
        }
        kept.push(
            line.replace(r#"{{ include "switchyard.operator.name" . }}"#, account)
                .replace(
                    r#"{{ .Values.webhook.name | quote }}"#,
                    &format!("{webhook:?}"),
                )
                .replace(
                    r#"{{ include "switchyard.certSecret.name" . | quote }}"#,
                    "\"switchyard-certs\"",
                )
                .replace("{{ .Release.Namespace }}", namespace),
        );
    }
    let rendered = kept.join("\n");
    assert!(
        !rendered.contains("{{"),
        "an unknown template expression in rbac.yaml:\n{rendered}"
    );
    rendered
        .split("\n---")
        .map(|doc| {
            let mut object: Value = serde_yaml::from_str(doc).expect("rbac YAML");
            // `labels:` whose only line was a template include.
            if object["metadata"]["labels"].is_null() {
                object["metadata"].as_object_mut().unwrap().remove("labels");
            }
            object
        })
        .collect()
}

/// A kubeconfig for the cluster of `KUBECONFIG` that authenticates with `token`.
pub fn kubeconfig_with_token(name: &str, token: &str) -> PathBuf {
    let path = std::env::var_os("KUBECONFIG").expect("KUBECONFIG");
    let original: Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("read KUBECONFIG"))
            .expect("KUBECONFIG YAML");
    let context_name = original["current-context"]
        .as_str()
        .expect("a current context");
    let context = original["contexts"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == context_name))
        .expect("the current context");
    let cluster = original["clusters"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"] == context["context"]["cluster"])
        })
        .expect("the current cluster");
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}],
        "current-context": "operator",
    });
    let file = temp_dir(&format!("kubeconfig-{name}")).join("kubeconfig");
    std::fs::write(&file, serde_yaml::to_string(&config).unwrap()).expect("write kubeconfig");
    file
}

/// The injection webhook as the chart declares it, limited to namespace `ns` and pointing at
/// the operator on loopback.
pub fn webhook_configuration(name: &str, ns: &str, port: u16) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
    "metadata": {"name": name},
    "webhooks": [{
        "name": "pod.switchyard.dev",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"url": format!("https://127.0.0.1:{port}/inject")},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                   "resources": ["pods"], "scope": "Namespaced"}],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "reinvocationPolicy": "IfNeeded",
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "objectSelector": {"matchLabels": {"switchyard.dev/inject": "true"}},
    }]})
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

// === Processes ===

/// The real binaries, built once per test process.
pub struct Binaries {
    pub operator: PathBuf,
    pub sidecar: PathBuf,
}

pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let overridden = |var: &str| std::env::var_os(var).map(PathBuf::from);
        if let (Some(operator), Some(sidecar)) = (
            overridden("SWITCHYARD_OPERATOR_BIN"),
            overridden("SWITCHYARD_SIDECAR_BIN"),
        ) {
            return Binaries { operator, sidecar };
        }
        // This test runs as target/<profile>/deps/cluster-*: build next to it.
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(workspace())
            .args([
                "build",
                "--bins",
                "-p",
                "switchyard-operator",
                "-p",
                "switchyard-sidecar",
            ])
            .arg("--target-dir")
            .arg(target_dir);
        if profile != "debug" {
            build.args(["--profile", &profile]);
        }
        let output = build.output().expect("run cargo build");
        assert!(
            output.status.success(),
            "cargo build of the operator and sidecar failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Binaries {
            operator: profile_dir.join("switchyard-operator"),
            sidecar: profile_dir.join("switchyard-sidecar"),
        }
    })
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("bound").port()
}

pub fn temp_dir(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-cluster-{what}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A child process whose output goes to a file; killed on drop, its log kept on a panic.
pub struct Process {
    pub child: Child,
    pub dir: PathBuf,
    pub name: &'static str,
}

impl Process {
    pub fn spawn(name: &'static str, dir: PathBuf, command: &mut Command) -> Self {
        // NB: both streams into one file: the operator logs JSON on stdout, errors on stderr.
        let log = std::fs::File::create(dir.join("output.log")).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self { child, dir, name }
    }

    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default();
        format!("--- {} log ({}):\n{text}", self.name, self.dir.display())
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The real operator, out of cluster, on free loopback ports.
pub struct Operator {
    pub process: std::sync::Mutex<Process>,
    pub config_port: u16,
    pub admin_port: u16,
    pub ca_file: PathBuf,
}

/// How an operator runs: out of cluster with `--cert-dir` by default; `in_pod` makes it elect a
/// leader as that pod and keep its certificates in a Secret, as in a cluster.
pub struct OperatorOptions {
    pub in_pod: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub webhook_config_name: String,
    pub webhook_port: u16,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            in_pod: None,
            kubeconfig: None,
            webhook_config_name: "switchyard-cluster-tests-none".into(),
            webhook_port: free_port(),
        }
    }
}

impl Operator {
    /// Starts the operator (its own namespace `home`) and waits for its admin `/readyz`.
    pub async fn start(home: &str) -> Self {
        Self::start_with(home, OperatorOptions::default()).await
    }

    pub async fn start_with(home: &str, options: OperatorOptions) -> Self {
        let dir = temp_dir("operator");
        let (config_port, webhook_port, admin_port) =
            (free_port(), options.webhook_port, free_port());
        let mut command = Command::new(&binaries().operator);
        command.arg("--namespace").arg(home);
        let ca_file = match &options.in_pod {
            None => {
                command.arg("--cert-dir").arg(dir.join("certs"));
                dir.join("certs/ca.crt")
            }
            Some(pod) => {
                command.env("POD_NAME", pod);
                // Filled from the switchyard-ca-root ConfigMap by the test, as a pod mounts it.
                dir.join("ca-root.crt")
            }
        };
        if let Some(kubeconfig) = &options.kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        command
            .arg("--webhook-config-name")
            .arg(&options.webhook_config_name)
            .arg("--config-listen")
            .arg(format!("127.0.0.1:{config_port}"))
            .arg("--webhook-listen")
            .arg(format!("127.0.0.1:{webhook_port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .env("RUST_LOG", "info")
            .env_remove("POD_NAMESPACE");
        if options.in_pod.is_none() {
            command.env_remove("POD_NAME");
        }
        let operator = Self {
            process: std::sync::Mutex::new(Process::spawn("operator", dir.clone(), &mut command)),
            config_port,
            admin_port,
            ca_file,
        };
        let admin = format!("http://127.0.0.1:{admin_port}/readyz");
        let ready = eventually(Duration::from_secs(20), || async {
            operator.check_running();
            http(Method::GET, &admin, Bytes::new())
                .await
                .is_some_and(|r| r.status == StatusCode::OK)
        })
        .await;
        assert!(
            ready,
            "the operator is not ready after 20 s\n{}",
            operator.logs()
        );
        operator
    }

    pub fn logs(&self) -> String {
        self.process.lock().unwrap().logs()
    }

    /// Kills the operator at once (SIGKILL: no stepping down).
    pub fn kill(&self) {
        let mut process = self.process.lock().unwrap();
        let _ = process.child.kill();
        let _ = process.child.wait();
    }

    pub fn check_running(&self) {
        let mut process = self.process.lock().unwrap();
        if let Some(status) = process.exited() {
            panic!("the operator exited ({status})\n{}", process.logs());
        }
    }

    /// Polls `kind/name` until `check` holds; panics with the object and the operator's log.
    pub async fn wait_for(
        &self,
        ns: &TestNamespace,
        kind: &str,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_within(STATUS_TIMEOUT, ns, kind, name, what, check)
            .await
    }

    pub async fn wait_for_within(
        &self,
        limit: Duration,
        ns: &TestNamespace,
        kind: &str,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let deadline = start + limit;
        loop {
            self.check_running();
            let object = ns.get(kind, name).await;
            if let Some(object) = object.as_ref().filter(|o| check(o)) {
                eprintln!("{kind} {name}: {what} after {:?}", start.elapsed());
                return object.clone();
            }
            if Instant::now() >= deadline {
                let mut last = object.unwrap_or_default();
                if let Some(meta) = last["metadata"].as_object_mut() {
                    meta.remove("managedFields");
                }
                panic!(
                    "{kind} {}/{name}: not {what} after {limit:?}; last seen:\n{last:#}\n\
                     operator metrics:\n{}\n{}",
                    ns.name,
                    self.metrics().await,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The operator's own series (`switchyard_*`) from its admin `/metrics`.
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin_port);
        let Some(reply) = http(Method::GET, &url, Bytes::new()).await else {
            return "(no answer)".into();
        };
        String::from_utf8_lossy(&reply.body)
            .lines()
            .filter(|l| l.starts_with("switchyard_"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The operator is still running and logged no error (warnings are printed, not failed).
    pub fn assert_alive_and_quiet(&self) {
        self.check_running();
        let logs = self.logs();
        let level = |l: &str| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["level"].as_str().map(String::from))
        };
        // Warnings once per message, with a count: retries repeat them.
        let mut warnings: std::collections::BTreeMap<String, (usize, &str)> = Default::default();
        for line in logs.lines().filter(|l| level(l).as_deref() == Some("WARN")) {
            let message = serde_json::from_str::<Value>(line)
                .ok()
                .map(|v| v["fields"]["message"].to_string());
            warnings
                .entry(message.unwrap_or_default())
                .or_insert((0, line))
                .0 += 1;
        }
        for (count, first) in warnings.values() {
            eprintln!(
                "operator warning (x{count}): {}",
                first.chars().take(600).collect::<String>()
            );
        }
        let errors: Vec<&str> = logs
            .lines()
            .filter(|l| level(l).as_deref() == Some("ERROR"))
            .collect();
        assert!(
            errors.is_empty(),
            "the operator logged errors:\n{}",
            errors.join("\n")
        );
    }

    /// `GET /v1/config` on the config server, trusting only the operator's CA.
    pub async fn config_get(&self, token: Option<&str>) -> Reply {
        let pem = std::fs::read(&self.ca_file).expect("the operator wrote ca.crt");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let tls = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(("127.0.0.1", self.config_port))
            .await
            .expect("connect");
        let server = ServerName::try_from("127.0.0.1").unwrap();
        let stream = TlsConnector::from(Arc::new(tls))
            .connect(server, tcp)
            .await
            .expect("TLS handshake with the config server");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let mut request =
            Request::get("/v1/config").header("host", format!("127.0.0.1:{}", self.config_port));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("the config server answers");
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    }
}

/// The real sidecar in pod mode, polling `operator` with a token bound to pod `uid`.
pub struct SidecarProcess {
    pub process: Process,
    pub data_port: u16,
    pub admin_port: u16,
}

impl SidecarProcess {
    pub fn start(operator: &Operator, uid: &str, token: &str) -> Self {
        let dir = temp_dir("sidecar");
        let token_file = dir.join("token");
        std::fs::write(&token_file, token).expect("write token");
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).expect("state dir");
        let (data_port, admin_port) = (free_port(), free_port());
        let mut command = Command::new(&binaries().sidecar);
        command
            .arg("--config-server")
            .arg(format!("https://127.0.0.1:{}", operator.config_port))
            .arg("--token-file")
            .arg(&token_file)
            .arg("--ca-file")
            .arg(&operator.ca_file)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{data_port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(["--debug-listen", "", "--report-interval", "1s"])
            .env("POD_UID", uid)
            .env("RUST_LOG", "info");
        Self {
            process: Process::spawn("sidecar", dir, &mut command),
            data_port,
            admin_port,
        }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn data_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.data_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub async fn get(&self, url: &str) -> Option<Reply> {
        http(Method::GET, url, Bytes::new()).await
    }

    pub async fn chat(&self, model: &str) -> Reply {
        let body = switchyard_tests::chat(model, "hello from the cluster test").to_string();
        http(
            Method::POST,
            &self.data_url("/v1/chat/completions"),
            Bytes::from(body),
        )
        .await
        .expect("the sidecar answers")
    }
}

/// One plain-HTTP request; `None` when nothing answers.
pub async fn http(method: Method, url: &str, body: Bytes) -> Option<Reply> {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let response = switchyard_tests::client().request(request).await.ok()?;
    let (parts, body) = response.into_parts();
    Some(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.ok()?.to_bytes(),
    })
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
