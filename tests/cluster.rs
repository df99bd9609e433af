//! Cluster tests: the CRDs, the real `switchyard-operator` and the real `switchyard-sidecar`
//! binaries against the kube-apiserver that `KUBECONFIG` names. A real apiserver checks what no
//! mock can: structural schemas, CEL rules, server-side apply ownership, TokenRequest/TokenReview.
//!
//! Every test is `#[ignore]`d, so a plain `cargo test` reports them as ignored rather than
//! passed where no cluster runs. Run them with
//! `KUBECONFIG=... cargo test -p switchyard-tests --test cluster -- --ignored`. Asked for without
//! a usable `KUBECONFIG` (unset, or an unreachable cluster) they print one line, "cluster tests
//! skipped: ...", and pass. With one, each test works in a fresh namespace that
//! it deletes afterwards (a cluster without a namespace controller keeps it `Terminating`, which
//! is harmless).
//!
//! The binaries are built into this test's own target directory on first use (`cargo build`),
//! unless `SWITCHYARD_OPERATOR_BIN` / `SWITCHYARD_SIDECAR_BIN` name them. Operators run one at a
//! time: each watches every namespace and writes status, so two would fight over the same routes.

#[path = "cases/cluster_support.rs"]
mod support;

use std::time::Duration;

use http::StatusCode;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;
use switchyard_tests::MockProvider;

// === Tests: the CRDs on a real apiserver ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn crds_are_structural_and_become_established() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crds(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (file, _) in crd_files() {
        let name = crd_name(&file);
        let crd = serde_json::to_value(crds.get(&name).await.expect("the CRD exists")).unwrap();
        for ty in ["NamesAccepted", "Established"] {
            assert_eq!(
                condition(&crd["status"], ty)["status"],
                "True",
                "{name} {ty}: {crd:#}"
            );
        }
        // A schema the apiserver finds non-structural is stored but flagged, not refused.
        let flagged = condition(&crd["status"], "NonStructuralSchema");
        assert!(flagged.is_null(), "{name}: {flagged}");
    }
    // The CEL rules survived the round trip (a pruned `x-kubernetes-validations` would not fail
    // any object below, silently).
    let routes = crds.get("modelroutes.switchyard.dev").await.unwrap();
    let schema = serde_json::to_value(&routes.spec.versions[0].schema).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    assert!(
        spec["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .is_some_and(|r| r.contains("Weighted")),
        "{spec:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn cel_weighted_strategy_needs_weights_above_zero() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "cel-weighted").await;
    let weighted = |name: &str, weights: [Option<u32>; 2]| {
        route_with(&ns.name, name, "chat", |spec| {
            spec["strategy"] = json!("Weighted");
            for (target, weight) in spec["targets"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .zip(weights)
            {
                if let Some(w) = weight {
                    target["weight"] = json!(w);
                }
            }
        })
    };
    const MESSAGE: &str = "with strategy Weighted every target needs a weight above 0";

    ns.apply(weighted("both-weighted", [Some(1), Some(3)]))
        .await
        .expect("weights above 0");
    ns.apply(weighted("default-weights", [None, None]))
        .await
        .expect("an unset weight is 1");
    assert_refused(
        ns.apply(weighted("zero", [Some(2), Some(0)])).await,
        MESSAGE,
    );
    // The rule binds Weighted routes only.
    let failover_zero = route_with(&ns.name, "failover-zero", "chat", |spec| {
        spec["targets"][0]["weight"] = json!(0);
    });
    ns.apply(failover_zero)
        .await
        .expect("Failover ignores weights");
    // Updates are checked too.
    assert_refused(
        ns.apply(weighted("both-weighted", [Some(0), Some(3)]))
            .await,
        MESSAGE,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn cel_failover_never_retries_client_errors() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "cel-failover").await;
    let on = |name: &str, classes: Value| {
        route_with(&ns.name, name, "chat", |spec| {
            spec["failover"] = json!({"on": classes, "maxAttempts": 2});
        })
    };
    ns.apply(on(
        "some",
        json!(["ConnectError", "Timeout", "RateLimited"]),
    ))
    .await
    .expect("valid");
    ns.apply(on("filtered", json!(["ContentFiltered"])))
        .await
        .expect("opt-in class");
    assert_refused(
        ns.apply(on("client", json!(["Timeout", "ClientError"])))
            .await,
        "ClientError is never failed over",
    );
    assert_refused(
        ns.apply(on("unknown", json!(["Bogus"]))).await,
        "Unsupported value",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn schema_refuses_malformed_values() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "schema").await;
    ns.apply(pool(&ns.name, "good", "http://127.0.0.1:1/v1", None))
        .await
        .expect("a valid pool");
    ns.apply(route(&ns.name, "good", "chat", "good"))
        .await
        .expect("a valid route");

    let bad_routes: [Refusal; 4] = [
        (
            "strategy",
            |s| s["strategy"] = json!("Random"),
            "Unsupported value",
        ),
        (
            "ttl",
            |s| s["cache"] = json!({"ttl": "10 minutes"}),
            "should match",
        ),
        (
            "complexity",
            |s| {
                s["rules"] = json!([{"name": "r", "match": {"minComplexity": 101},
                                 "targets": [{"pool": "p", "provider": "a", "model": "m"}]}]);
            },
            "less than or equal to 100",
        ),
        (
            "duplicate-rule",
            |s| {
                let rule = json!({"name": "same", "targets": [{"pool": "p", "provider": "a", "model": "m"}]});
                s["rules"] = json!([rule.clone(), rule]);
            },
            "Duplicate value",
        ),
    ];
    for (name, edit, message) in bad_routes {
        // NB: create, not apply: server-side apply answers a duplicate list-map key with a 500
        // ("failed to create typed patch object") before validation runs.
        assert_refused(
            ns.post(route_with(&ns.name, name, "chat", edit)).await,
            message,
        );
    }

    let bad_pools: [Refusal; 4] = [
        (
            "api",
            |s| s["providers"][0]["api"] = json!("openai"),
            "Unsupported value",
        ),
        (
            "price",
            |s| s["providers"][0]["models"][0]["inputPerMillion"] = json!(2.5),
            "string",
        ),
        (
            "price-digits",
            |s| s["providers"][0]["models"][0]["outputPerMillion"] = json!("1.1234567"),
            "should match",
        ),
        (
            "duplicate-provider",
            |s| {
                let first = s["providers"][0].clone();
                s["providers"].as_array_mut().unwrap().push(first);
            },
            "Duplicate value",
        ),
    ];
    for (name, edit, message) in bad_pools {
        let mut manifest = pool(&ns.name, name, "http://127.0.0.1:1/v1", None);
        edit(&mut manifest["spec"]);
        assert_refused(ns.post(manifest).await, message);
    }
}

/// An object name, an edit of its spec that makes it invalid, and words of the refusal.
type Refusal = (&'static str, fn(&mut Value), &'static str);

// === Tests: the operator ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn operator_writes_route_and_pool_status() {
    let Some(client) = cluster().await else {
        return;
    };
    let _one_operator = OPERATOR_LOCK.lock().await;
    install_crds(&client).await;
    let home = TestNamespace::create(&client, "operator-home").await;
    let ns = TestNamespace::create(&client, "status").await;
    let operator = Operator::start(&home.name).await;

    ns.apply(key_secret(&ns.name, "llm-keys", true))
        .await
        .expect("secret");
    ns.apply(pool(
        &ns.name,
        "frontier",
        "http://127.0.0.1:1/v1",
        Some("llm-keys"),
    ))
    .await
    .expect("pool");
    ns.apply(route(&ns.name, "support-chat", "chat", "frontier"))
        .await
        .expect("route");

    let ready_route = operator
        .wait_for(
            &ns,
            "ModelRoute",
            "support-chat",
            "all four conditions True",
            all_true(&ROUTE_CONDITIONS),
        )
        .await;
    assert_eq!(ready_route["status"]["targetCount"], 1, "{ready_route:#}");
    operator
        .wait_for(
            &ns,
            "ProviderPool",
            "frontier",
            "all three conditions True",
            all_true(&POOL_CONDITIONS),
        )
        .await;

    // A spec change is a new generation: every condition follows it.
    let mut changed = route(&ns.name, "support-chat", "chat", "frontier");
    changed["spec"]["targets"][0]["model"] = json!("gpt-4o-mini");
    ns.apply(changed).await.expect("update");
    let updated = operator
        .wait_for(
            &ns,
            "ModelRoute",
            "support-chat",
            "generation 2, Ready",
            |o| o["metadata"]["generation"] == 2 && all_true(&ROUTE_CONDITIONS)(o),
        )
        .await;
    assert_eq!(updated["status"]["observedGeneration"], 2);

    // A route whose pool does not exist.
    ns.apply(route(&ns.name, "orphan", "other", "missing-pool"))
        .await
        .expect("route");
    let orphan = operator
        .wait_for(&ns, "ModelRoute", "orphan", "ResolvedRefs=False", |o| {
            condition(&o["status"], "ResolvedRefs")["status"] == "False"
        })
        .await;
    let resolved = condition(&orphan["status"], "ResolvedRefs");
    assert!(
        resolved["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing-pool")),
        "the message names the pool: {resolved}"
    );
    assert_eq!(
        condition(&orphan["status"], "Ready")["status"],
        "False",
        "{orphan:#}"
    );

    // Events: one "Accepted" when a route became ready, a warning for the broken reference.
    let events = ns.events().await;
    let about = |name: &str, reason: &str| {
        events
            .iter()
            .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
            .collect::<Vec<_>>()
    };
    assert_eq!(about("support-chat", "Accepted").len(), 1, "{events:#?}");
    let warnings = events
        .iter()
        .filter(|e| e["regarding"]["name"] == "orphan" && e["type"] == "Warning")
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), 1, "{events:#?}");
    assert!(
        warnings[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("missing-pool")),
        "{warnings:#?}"
    );

    // Two routes for one model: the older wins, the newer is not Accepted and names the winner.
    // NB: conflicts are decided per pod, so it takes an injected pod to have one. The name sorts
    // after the winner's, so a tie on the (one-second) creationTimestamp is decided the same way.
    ns.apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "app", "namespace": ns.name}}))
        .await
        .expect("service account");
    ns.apply(injected_pod(&ns.name, "app", "app"))
        .await
        .expect("pod");
    ns.apply(route(&ns.name, "zz-late-chat", "chat", "frontier"))
        .await
        .expect("route");
    let conflicted = operator
        .wait_for(&ns, "ModelRoute", "zz-late-chat", "Accepted=False", |o| {
            condition(&o["status"], "Accepted")["status"] == "False"
        })
        .await;
    let accepted = condition(&conflicted["status"], "Accepted");
    assert_eq!(accepted["reason"], "Conflicted", "{accepted}");
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|m| m.contains("support-chat")),
        "the message names the winner: {accepted}"
    );

    // A key may not travel over plain HTTP off the pod, nor to a metadata address.
    for (name, url) in [
        ("plain-http", "http://llm.example.com/v1"),
        ("metadata", "https://169.254.169.254/v1"),
    ] {
        ns.apply(pool(&ns.name, name, url, Some("llm-keys")))
            .await
            .expect("pool");
        let refused = operator
            .wait_for(&ns, "ProviderPool", name, "Accepted=False", |o| {
                condition(&o["status"], "Accepted")["status"] == "False"
            })
            .await;
        let accepted = condition(&refused["status"], "Accepted");
        assert_eq!(accepted["reason"], "InvalidProvider", "{name}: {accepted}");
        assert!(
            accepted["message"]
                .as_str()
                .is_some_and(|m| m.contains("openai")),
            "{name}: the message names the provider: {accepted}"
        );
    }

    // A Secret without the opt-in label is not usable (docs/reference/crds.md, security model).
    ns.apply(key_secret(&ns.name, "not-opted-in", false))
        .await
        .expect("secret");
    ns.apply(pool(
        &ns.name,
        "unlabelled",
        "http://127.0.0.1:1/v1",
        Some("not-opted-in"),
    ))
    .await
    .expect("pool");
    let unlabelled = operator
        .wait_for(
            &ns,
            "ProviderPool",
            "unlabelled",
            "ResolvedRefs=False",
            |o| condition(&o["status"], "ResolvedRefs")["status"] == "False",
        )
        .await;
    assert_eq!(
        condition(&unlabelled["status"], "ResolvedRefs")["reason"],
        "SecretNotOptedIn"
    );

    operator.assert_alive_and_quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn sidecar_serves_the_table_the_operator_compiles() {
    let Some(client) = cluster().await else {
        return;
    };
    let _one_operator = OPERATOR_LOCK.lock().await;
    let Routed {
        _home,
        ns,
        operator,
        upstream,
    } = routed(&client, "sidecar").await;

    // An injected pod (no scheduler: it stays Pending) and a token bound to it.
    let (uid, token) = injected_pod_with_token(&ns).await;
    // The pod runs (set by hand: there is no kubelet) before its sidecar first reports, as with
    // a real kubelet: the route counts it at once, in sync only once a report says so.
    ns.set_pod_phase("app", "Running").await;
    operator
        .wait_for(&ns, "ModelRoute", "support-chat", "sidecars 0/1", |o| {
            o["status"]["sidecars"]["summary"] == "0/1"
        })
        .await;
    let sidecar = SidecarProcess::start(&operator, &uid, &token);

    assert_sidecar_ready(&sidecar, &operator).await;

    let models = sidecar
        .get(&sidecar.data_url("/v1/models"))
        .await
        .expect("answer")
        .json();
    assert_eq!(models["data"][0]["id"], "chat", "{models:#}");
    let reply = sidecar.chat("chat").await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = upstream.last_request().expect("the provider was called");
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-from-the-cluster")
    );
    let metrics = sidecar
        .get(&sidecar.admin_url("/metrics"))
        .await
        .expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    let applied = metrics
        .lines()
        .find(|l| l.contains("config_version_info{") && l.ends_with(" 1"))
        .unwrap_or_else(|| panic!("no config_version_info in\n{metrics}"));

    // The config server itself: the bound token gets the table the sidecar serves, others 401.
    let good = operator.config_get(Some(&token)).await;
    assert_eq!(
        good.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&good.body)
    );
    let version = good.json()["version"]
        .as_str()
        .expect("a version")
        .to_string();
    assert!(
        applied.contains(&format!("version=\"{version}\"")),
        "{applied} vs {version}"
    );
    let other_audience = ns.token("app", "not-switchyard", Some(("app", &uid))).await;
    let unbound = ns.token("app", "switchyard", None).await;
    for (what, token) in [
        ("another audience", Some(other_audience.as_str())),
        ("a token bound to no pod", Some(unbound.as_str())),
        ("garbage", Some("not-a-token")),
        ("no token", None),
    ] {
        let reply = operator.config_get(token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {:?}",
            reply.body
        );
    }

    // The sidecar's reports make the running pod in sync; a report with a new version wakes
    // the controller, so this takes seconds, not the 30 s resync.
    let synced = operator
        .wait_for_within(
            Duration::from_secs(10),
            &ns,
            "ModelRoute",
            "support-chat",
            "sidecars 1/1",
            |o| o["status"]["sidecars"]["summary"] == "1/1",
        )
        .await;
    assert_eq!(synced["status"]["sidecars"]["selected"], 1);

    operator.assert_alive_and_quiet();
    drop(sidecar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn operator_in_a_pod_under_the_chart_rbac_elects_publishes_trust_and_injects() {
    let Some(client) = cluster().await else {
        return;
    };
    let _one_operator = OPERATOR_LOCK.lock().await;
    install_crds(&client).await;
    let home = TestNamespace::create(&client, "operator-pod").await;
    let ns = TestNamespace::create(&client, "inject").await;

    // The chart's own RBAC (templates/rbac.yaml) for the operator's ServiceAccount, and a
    // kubeconfig with that account's token: every call the operator makes is checked by it.
    let account = format!("switchyard-operator-{}", home.name);
    let webhook_name = format!("switchyard-{}", ns.name);
    home.apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": account, "namespace": home.name}}))
        .await
        .expect("operator service account");
    let mut cluster_objects = Vec::new();
    for object in chart_rbac(&account, &home.name, &webhook_name) {
        let kind = object["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "ClusterRole" => {
                cluster_objects.push(ClusterObject::apply(&client, "ClusterRole", object).await)
            }
            "ClusterRoleBinding" => {
                cluster_objects
                    .push(ClusterObject::apply(&client, "ClusterRoleBinding", object).await);
            }
            _ => {
                home.apply(object)
                    .await
                    .unwrap_or_else(|e| panic!("apply chart {kind}: {e}"));
            }
        }
    }
    let token = home.token(&account, "", None).await;
    let kubeconfig = kubeconfig_with_token(&home.name, &token);

    // Its own pod (it labels itself leader) and the webhook configuration, without caBundle, as
    // the chart installs them.
    let pod_name = "switchyard-operator-0";
    home.apply(json!({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": pod_name, "namespace": home.name},
                      "spec": {"serviceAccountName": account,
                               "containers": [{"name": "operator", "image": "registry.invalid/op:1"}]}}))
        .await
        .expect("operator pod");
    let webhook_port = free_port();
    let webhook = ClusterObject::apply(
        &client,
        "MutatingWebhookConfiguration",
        webhook_configuration(&webhook_name, &ns.name, webhook_port),
    )
    .await;
    let operator = Operator::start_with(
        &home.name,
        OperatorOptions {
            in_pod: Some(pod_name.into()),
            kubeconfig: Some(kubeconfig),
            webhook_config_name: webhook_name.clone(),
            webhook_port,
        },
    )
    .await;

    // Leader election: a Lease held by this pod, and the pod labelled leader.
    let lease = operator
        .wait_for(
            &home,
            "Lease",
            "switchyard-operator",
            "held by the pod",
            |o| o["spec"]["holderIdentity"] == pod_name,
        )
        .await;
    assert!(
        lease["spec"]["leaseDurationSeconds"].as_i64().is_some(),
        "{lease:#}"
    );
    operator
        .wait_for(&home, "Pod", pod_name, "labelled leader", |o| {
            o["metadata"]["labels"]["switchyard.dev/role"] == "leader"
        })
        .await;

    // Certificates in a Secret (create-only), the CA bundle in the app namespace and the webhook.
    let certs = operator
        .wait_for(&home, "Secret", "switchyard-certs", "created", |o| {
            o["data"]["ca.crt"].is_string()
        })
        .await;
    let ca_pem =
        String::from_utf8(base64_decode(certs["data"]["ca.crt"].as_str().unwrap())).unwrap();
    route_ready(
        &ns,
        &operator,
        pool(&ns.name, "frontier", "http://127.0.0.1:1/v1", None),
    )
    .await;
    let webhooks =
        Api::<DynamicObject>::all_with(client.clone(), &resource("MutatingWebhookConfiguration"));
    let ca_bundle = || async {
        let config = webhooks.get(&webhook.name).await.expect("webhook config");
        let config = serde_json::to_value(config).unwrap();
        config["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .map(|b| String::from_utf8_lossy(&base64_decode(b)).into_owned())
    };
    let webhook_ready = eventually(Duration::from_secs(40), || async {
        ca_bundle().await.is_some_and(|b| b.contains(ca_pem.trim()))
    })
    .await;
    assert!(
        webhook_ready,
        "caBundle not set to the CA within 40 s\n{}",
        operator.logs()
    );

    // The apiserver calls the webhook for a pod labelled for injection.
    let mut pod = injected_pod(&ns.name, "web", "app");
    pod["metadata"]["labels"] = json!({"switchyard.dev/inject": "true", "app": "web"});
    let pod = match ns.post(pod).await {
        Ok(pod) => pod,
        Err(e) => panic!("the injected pod was refused: {e}\n{}", operator.logs()),
    };
    assert_eq!(
        pod["metadata"]["labels"]["switchyard.dev/injected"], "true",
        "{pod:#}"
    );
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod["spec"][k].as_array().into_iter().flatten())
        .collect();
    assert!(
        containers.iter().any(|c| c["name"] == "switchyard-sidecar"),
        "{pod:#}"
    );
    let volumes = pod["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("switchyard-ca-root") && volumes.contains("\"audience\":\"switchyard\""),
        "{volumes}"
    );

    let ca_root = operator
        .wait_for(&ns, "ConfigMap", "switchyard-ca-root", "published", |o| {
            o["data"]["ca.crt"].is_string()
        })
        .await;
    assert_eq!(
        ca_root["data"]["ca.crt"].as_str().unwrap().trim(),
        ca_pem.trim()
    );

    // The sidecar of the injected pod, trusting the CA as the pod mounts it, gets its table.
    std::fs::write(
        &operator.ca_file,
        ca_root["data"]["ca.crt"].as_str().unwrap(),
    )
    .unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let token = ns.token("app", "switchyard", Some(("web", &uid))).await;
    let sidecar = SidecarProcess::start(&operator, &uid, &token);
    assert_sidecar_ready(&sidecar, &operator).await;

    // Someone else overwrites the caBundle: the operator restores it (it checks every 30 s).
    let tampered = json!({"apiVersion": "admissionregistration.k8s.io/v1",
                          "kind": "MutatingWebhookConfiguration",
                          "metadata": {"name": webhook.name},
                          "webhooks": [{"name": "pod.switchyard.dev",
                                        "clientConfig": {"caBundle": "bm90IGEgY2EK"}}]});
    webhooks
        .patch(
            &webhook.name,
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&tampered),
        )
        .await
        .expect("tamper with the caBundle");
    let restored = eventually(Duration::from_secs(45), || async {
        ca_bundle().await.is_some_and(|b| b.contains(ca_pem.trim()))
    })
    .await;
    assert!(
        restored,
        "caBundle not restored within 45 s\n{}",
        operator.logs()
    );

    operator.assert_alive_and_quiet();
    drop(cluster_objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn a_standby_operator_takes_over_when_the_leader_dies() {
    let Some(client) = cluster().await else {
        return;
    };
    let _one_operator = OPERATOR_LOCK.lock().await;
    install_crds(&client).await;
    let home = TestNamespace::create(&client, "operator-ha").await;
    home.apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": "operator", "namespace": home.name}}))
        .await
        .expect("service account");
    for pod in ["operator-0", "operator-1"] {
        home.apply(json!({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": pod, "namespace": home.name},
                          "spec": {"serviceAccountName": "operator",
                                   "containers": [{"name": "operator", "image": "registry.invalid/op:1"}]}}))
            .await
            .expect("operator pod");
    }
    let in_pod = |pod: &str| OperatorOptions {
        in_pod: Some(pod.into()),
        ..OperatorOptions::default()
    };
    let first = Operator::start_with(&home.name, in_pod("operator-0")).await;
    first
        .wait_for(
            &home,
            "Lease",
            "switchyard-operator",
            "held by operator-0",
            |o| o["spec"]["holderIdentity"] == "operator-0",
        )
        .await;
    let second = Operator::start_with(&home.name, in_pod("operator-1")).await;
    let certs = home
        .get("Secret", "switchyard-certs")
        .await
        .expect("the shared certificates");
    let ca = base64_decode(certs["data"]["ca.crt"].as_str().expect("ca.crt"));
    for operator in [&first, &second] {
        std::fs::write(&operator.ca_file, &ca).expect("write ca");
    }
    // Only the leader serves configuration.
    assert_eq!(
        second.config_get(None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        first.config_get(None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The leader dies without stepping down: the standby takes the Lease once it expires.
    first.kill();
    second
        .wait_for_within(
            Duration::from_secs(60),
            &home,
            "Lease",
            "switchyard-operator",
            "held by operator-1",
            |o| o["spec"]["holderIdentity"] == "operator-1",
        )
        .await;
    second
        .wait_for(&home, "Pod", "operator-1", "labelled leader", |o| {
            o["metadata"]["labels"]["switchyard.dev/role"] == "leader"
        })
        .await;
    second
        .wait_for(
            &home,
            "Pod",
            "operator-0",
            "no longer labelled leader",
            |o| o["metadata"]["labels"]["switchyard.dev/role"].is_null(),
        )
        .await;
    let served = eventually(Duration::from_secs(10), || async {
        second.config_get(None).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        served,
        "the new leader serves configuration\n{}",
        second.logs()
    );
    second.assert_alive_and_quiet();
}

// === Tests: Budgets ===

/// `kubectl get budgets` columns, as `additionalPrinterColumns` names them.
const BUDGET_COLUMNS: [&str; 6] = ["MODE", "PERIOD", "USED", "LIMIT", "READY", "AGE"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn budget_crd_is_established_and_cel_refuses_invalid_budgets() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crds(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get("budgets.switchyard.dev")
        .await
        .expect("the Budget CRD exists");
    let stored = serde_json::to_value(&crd).unwrap();
    for ty in ["NamesAccepted", "Established"] {
        assert_eq!(
            condition(&stored["status"], ty)["status"],
            "True",
            "{ty}: {stored:#}"
        );
    }
    let flagged = condition(&stored["status"], "NonStructuralSchema");
    assert!(flagged.is_null(), "{flagged}");
    let version = &stored["spec"]["versions"][0];
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, BUDGET_COLUMNS, "{version:#}");
    // The limit rule survived the round trip: without it a unit-less limit would be stored.
    let limit = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["limits"]
        ["items"];
    assert!(
        limit["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .is_some_and(|r| r.contains("has(self.usd)")),
        "{limit:#}"
    );

    let ns = TestNamespace::create(&client, "cel-budget").await;
    let valid = json!({
        "selector": {"routes": ["support-chat"]},
        "limits": [{"period": "Month", "usd": "500.00"},
                   {"period": "1m", "requests": 600, "tokens": 200000}],
        "mode": "Shadow",
        "whenUnreachable": "FailClosed",
    });
    let stored = ns
        .apply(budget(&ns.name, "valid", valid.clone()))
        .await
        .expect("a valid budget");
    assert_eq!(stored["spec"]["limits"][0]["usd"], "500.00", "{stored:#}");
    // Defaults come from the schema, not from the operator.
    let defaulted = ns
        .apply(budget(
            &ns.name,
            "defaults",
            json!({"limits": [{"period": "Day", "requests": 10}]}),
        ))
        .await
        .expect("a minimal budget");
    assert_eq!(defaulted["spec"]["mode"], "Enforce", "{defaulted:#}");
    assert_eq!(defaulted["spec"]["whenUnreachable"], "LastShare");

    let bad: [BudgetRefusal; 11] = [
        (
            "no-limits",
            |s| s["limits"] = json!([]),
            "spec.limits",
            "should have at least 1 items",
        ),
        (
            "limits-missing",
            |s| {
                s.as_object_mut().unwrap().remove("limits");
            },
            "spec.limits",
            "Required value",
        ),
        (
            "no-unit",
            |s| s["limits"] = json!([{"period": "Day"}]),
            "spec.limits[0]",
            "a limit needs at least one of usd, requests or tokens",
        ),
        (
            "negative-usd",
            |s| s["limits"][0]["usd"] = json!("-5.00"),
            "spec.limits[0].usd",
            "should match",
        ),
        (
            "exponent-usd",
            |s| s["limits"][0]["usd"] = json!("5e2"),
            "spec.limits[0].usd",
            "should match",
        ),
        (
            "seven-decimals",
            |s| s["limits"][0]["usd"] = json!("0.0000001"),
            "spec.limits[0].usd",
            "should match",
        ),
        (
            "number-usd",
            |s| s["limits"][0]["usd"] = json!(500),
            "spec.limits[0].usd",
            "string",
        ),
        (
            "unknown-period",
            |s| s["limits"][0]["period"] = json!("Fortnight"),
            "spec.limits[0].period",
            "should match",
        ),
        (
            "short-period",
            |s| s["limits"][1]["period"] = json!("500ms"),
            "spec.limits[1].period",
            "a fixed period must be at least 1s",
        ),
        (
            "zero-requests",
            |s| s["limits"][1]["requests"] = json!(0),
            "spec.limits[1].requests",
            "greater than or equal to 1",
        ),
        (
            "unknown-mode",
            |s| s["mode"] = json!("Audit"),
            "spec.mode",
            "Unsupported value",
        ),
    ];
    for (name, edit, field, message) in bad {
        let mut spec = valid.clone();
        edit(&mut spec);
        assert_refused_naming(ns.post(budget(&ns.name, name, spec)).await, field, message);
    }
    // Updates are checked too: a stored budget cannot lose its limits.
    let mut emptied = valid;
    emptied["limits"] = json!([]);
    assert_refused_naming(
        ns.apply(budget(&ns.name, "valid", emptied)).await,
        "spec.limits",
        "should have at least 1 items",
    );
}

/// An object name, an edit of a valid Budget spec that makes it invalid, the field the refusal
/// must name and words of it.
type BudgetRefusal = (&'static str, fn(&mut Value), &'static str, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn operator_writes_budget_status_and_refuses_a_selector_naming_nothing() {
    let Some(client) = cluster().await else {
        return;
    };
    let _one_operator = OPERATOR_LOCK.lock().await;
    install_crds(&client).await;
    let home = TestNamespace::create(&client, "operator-home").await;
    let ns = TestNamespace::create(&client, "budget").await;
    let operator = Operator::start(&home.name).await;

    ns.apply(key_secret(&ns.name, "llm-keys", true))
        .await
        .expect("secret");
    let frontier = pool(
        &ns.name,
        "frontier",
        "http://127.0.0.1:1/v1",
        Some("llm-keys"),
    );
    route_ready(&ns, &operator, frontier).await;
    // A running injected pod whose table holds the budget: without one it is not Ready.
    ns.apply(injected_pod(&ns.name, "app", "app"))
        .await
        .expect("pod");
    ns.set_pod_phase("app", "Running").await;

    ns.apply(budget(
        &ns.name,
        "support-daily",
        json!({"selector": {"routes": ["support-chat"]},
               "limits": [{"period": "Day", "usd": "50.00"},
                          {"period": "1m", "requests": 600}]}),
    ))
    .await
    .expect("budget");
    let ready = operator
        .wait_for(
            &ns,
            "Budget",
            "support-daily",
            "Accepted and Ready, with two windows",
            |o| {
                all_true(&["Accepted", "Ready"])(o)
                    && o["status"]["windows"]
                        .as_array()
                        .is_some_and(|w| w.len() == 2)
            },
        )
        .await;
    let status = &ready["status"];
    assert_eq!(status["observedGeneration"], 1, "{ready:#}");
    let day = &status["windows"][0];
    assert_eq!(day["period"], "Day", "{status:#}");
    assert_eq!(day["limit"]["usd"], "50.00", "{status:#}");
    assert!(
        day["limit"]["requests"].is_null(),
        "only the units the limit sets: {status:#}"
    );
    assert!(
        day["start"].as_str() < day["end"].as_str(),
        "a window ends after it starts: {day:#}"
    );
    // Nothing reported yet: nothing used, everything left.
    assert_eq!(day["used"]["usd"], "0.00", "{status:#}");
    assert_eq!(day["remaining"]["usd"], "50.00", "{status:#}");
    let minute = &status["windows"][1];
    assert_eq!(minute["period"], "1m", "{status:#}");
    assert_eq!(minute["limit"]["requests"], 600, "{status:#}");
    assert!(status["summary"]["period"].is_string(), "{status:#}");

    // `kubectl get budgets`: the apiserver renders the printer columns from status.
    let table = printed(&ns, "budgets").await;
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("a Table")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names[0], "Name", "{table:#}");
    assert_eq!(names[1..], BUDGET_COLUMNS, "{table:#}");
    let row = table["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["cells"][0] == "support-daily"))
        .unwrap_or_else(|| panic!("a row for support-daily: {table:#}"));
    let cell = |column: &str| {
        let at = names.iter().position(|n| *n == column).expect("a column");
        row["cells"][at].clone()
    };
    assert_eq!(cell("MODE"), "Enforce", "{row:#}");
    assert_eq!(cell("READY"), "True", "{row:#}");
    for column in ["PERIOD", "USED", "LIMIT"] {
        assert!(
            cell(column).as_str().is_some_and(|c| !c.is_empty()),
            "{column} is filled: {row:#}"
        );
    }

    // A selector naming a route that does not exist: stored (CEL cannot know), not accepted.
    ns.apply(budget(
        &ns.name,
        "ghost",
        json!({"selector": {"routes": ["support-chat", "no-such-route"]},
               "limits": [{"period": "Day", "requests": 100}]}),
    ))
    .await
    .expect("stored: only the operator can tell");
    let ghost = operator
        .wait_for(&ns, "Budget", "ghost", "Accepted=False", |o| {
            condition(&o["status"], "Accepted")["status"] == "False"
        })
        .await;
    let accepted = condition(&ghost["status"], "Accepted");
    assert!(
        accepted["message"].as_str().is_some_and(|m| {
            m.contains("spec.selector.routes[1]") && m.contains("no-such-route")
        }),
        "the message names the field and the route: {accepted}"
    );
    let not_ready = condition(&ghost["status"], "Ready");
    assert_eq!(not_ready["status"], "False", "{ghost:#}");
    assert_eq!(not_ready["reason"], "NotAccepted", "{ghost:#}");

    // A valid budget that no running pod's table holds is accepted but not Ready.
    ns.apply(budget(
        &ns.name,
        "nobody",
        json!({"selector": {"podSelector": {"matchLabels": {"app": "absent"}}},
               "limits": [{"period": "Week", "tokens": 1000000}]}),
    ))
    .await
    .expect("budget");
    let idle = operator
        .wait_for(&ns, "Budget", "nobody", "Accepted, Ready=False", |o| {
            condition(&o["status"], "Accepted")["status"] == "True"
                && condition(&o["status"], "Ready")["status"] == "False"
        })
        .await;
    assert_eq!(
        condition(&idle["status"], "Ready")["reason"],
        "NoSidecars",
        "{idle:#}"
    );
    operator.assert_alive_and_quiet();
}

/// Applies `pool` and the route `support-chat` (model `chat`) to it, waits until the route is
/// Ready, and creates the ServiceAccount `app` that the test pods and their tokens use.
/// An operator (its home namespace kept alive by `_home`) serving a namespace whose route
/// `support-chat` (model `chat`) is Ready on pool `frontier`, backed by `upstream`.
struct Routed {
    _home: TestNamespace,
    ns: TestNamespace,
    operator: Operator,
    upstream: MockProvider,
}

async fn routed(client: &kube::Client, what: &str) -> Routed {
    install_crds(client).await;
    let home = TestNamespace::create(client, "operator-home").await;
    let ns = TestNamespace::create(client, what).await;
    let operator = Operator::start(&home.name).await;
    let upstream = MockProvider::start("upstream")
        .await
        .expect("mock provider");
    ns.apply(key_secret(&ns.name, "llm-keys", true))
        .await
        .expect("secret");
    let frontier = pool(&ns.name, "frontier", &upstream.base_url(), Some("llm-keys"));
    route_ready(&ns, &operator, frontier).await;
    Routed {
        _home: home,
        ns,
        operator,
        upstream,
    }
}

/// The injected pod `app` (ServiceAccount `app`; no scheduler, so it stays Pending) and a
/// token bound to it for the `switchyard` audience: its UID and the token.
async fn injected_pod_with_token(ns: &TestNamespace) -> (String, String) {
    let pod = ns
        .apply(injected_pod(&ns.name, "app", "app"))
        .await
        .expect("pod");
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    let token = ns.token("app", "switchyard", Some(("app", &uid))).await;
    (uid, token)
}

async fn route_ready(ns: &TestNamespace, operator: &Operator, pool: Value) {
    ns.apply(pool).await.expect("pool");
    ns.apply(route(&ns.name, "support-chat", "chat", "frontier"))
        .await
        .expect("route");
    operator
        .wait_for(
            ns,
            "ModelRoute",
            "support-chat",
            "Ready",
            all_true(&ROUTE_CONDITIONS),
        )
        .await;
    ns.apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "app", "namespace": ns.name}}))
        .await
        .expect("service account");
}

/// Waits until `sidecar` serves a table; fails with both processes' logs otherwise.
async fn assert_sidecar_ready(sidecar: &SidecarProcess, operator: &Operator) {
    let ready = eventually(STATUS_TIMEOUT, || async {
        sidecar
            .get(&sidecar.admin_url("/readyz"))
            .await
            .is_some_and(|r| r.status == StatusCode::OK)
    })
    .await;
    assert!(
        ready,
        "the sidecar got a table\n{}\n{}",
        sidecar.logs(),
        operator.logs()
    );
}

/// Spend per workload and budget Events against a real apiserver: the operator resolves the
/// pod's workload (a bare pod is its own) and ServiceAccount into the table it serves, the
/// sidecar's reports fill the Budget's window and `topWorkloads`, and using the whole limit
/// publishes the `BudgetExhausted` warning on the Budget. (Owner chains through ReplicaSets and
/// Jobs need their controllers, which a bare test apiserver lacks: the operator's mock-apiserver
/// tests cover those lookups, operator/src/controller/owners.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn a_sidecar_spends_a_budget_for_its_workload_and_the_budget_raises_events() {
    let Some(client) = cluster().await else {
        return;
    };
    let _one_operator = OPERATOR_LOCK.lock().await;
    let Routed {
        _home,
        ns,
        operator,
        upstream: _upstream,
    } = routed(&client, "spend").await;
    // Two requests a day: a test straddling midnight UTC would see a fresh window (rare; the
    // assertions below would then fail loudly rather than pass wrongly).
    ns.apply(budget(
        &ns.name,
        "tiny",
        json!({"selector": {"routes": ["support-chat"]},
               "limits": [{"period": "Day", "requests": 2}]}),
    ))
    .await
    .expect("budget");

    let (uid, token) = injected_pod_with_token(&ns).await;
    ns.set_pod_phase("app", "Running").await;

    // The table names the workload: a bare pod is `Pod/<name>`, with its ServiceAccount.
    let deadline = tokio::time::Instant::now() + STATUS_TIMEOUT;
    let served = loop {
        let reply = operator.config_get(Some(&token)).await;
        let table = if reply.status == StatusCode::OK {
            reply.json()
        } else {
            Value::Null
        };
        if table["budgets"].is_object() || tokio::time::Instant::now() >= deadline {
            break table;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        served["budgets"].is_object(),
        "no table with the budget: {served:#}"
    );
    assert_eq!(
        served["workload"],
        json!({"namespace": ns.name, "kind": "Pod", "name": "app", "serviceAccount": "app"}),
        "{served:#}"
    );

    let sidecar = SidecarProcess::start(&operator, &uid, &token);
    assert_sidecar_ready(&sidecar, &operator).await;
    // The first lease comes with the first report; until then nothing is capped, so wait for
    // the budget to count this sidecar before spending.
    operator
        .wait_for(&ns, "Budget", "tiny", "leased to the sidecar", |o| {
            o["status"]["sidecars"]["leased"] == 1
        })
        .await;
    for _ in 0..2 {
        let reply = sidecar.chat("chat").await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let refused = sidecar.chat("chat").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.json()["error"]["code"],
        "switchyard_budget_exhausted"
    );

    let spent = operator
        .wait_for(
            &ns,
            "Budget",
            "tiny",
            "two requests used, by Pod/app",
            |o| {
                o["status"]["windows"][0]["used"]["requests"] == 2
                    && o["status"]["topWorkloads"][0]["requests"] == 2
            },
        )
        .await;
    assert_eq!(
        spent["status"]["topWorkloads"][0]["workload"],
        format!("{}/Pod/app", ns.name),
        "{spent:#}"
    );
    let exhausted = eventually(STATUS_TIMEOUT, || async {
        ns.events().await.iter().any(|e| {
            e["reason"] == "BudgetExhausted"
                && e["regarding"]["kind"] == "Budget"
                && e["regarding"]["name"] == "tiny"
                && e["type"] == "Warning"
        })
    })
    .await;
    assert!(
        exhausted,
        "no BudgetExhausted warning: {:#?}",
        ns.events().await
    );

    operator.assert_alive_and_quiet();
    drop(sidecar);
}
