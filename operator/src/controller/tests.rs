use std::collections::BTreeMap;

use http_body_util::BodyExt as _;
use k8s_openapi::jiff::Timestamp;
use switchyard_crds::compile::Kind;
use switchyard_crds::v1alpha1::API_VERSION;

use super::*;
use crate::config_server::leases::LimitTotals;
use crate::config_server::reports::{RouteKey, RouteStats};
use crate::workload::{self, Owners};

fn now() -> Time {
    Time(Timestamp::from_second(1_000).unwrap())
}

fn pool() -> ProviderPool {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "ProviderPool",
        "metadata": {"name": "pool", "namespace": "ns", "generation": 1},
        "spec": {"providers": [{
            "name": "a", "api": "OpenAI", "baseUrl": "https://a.example", "region": "eu",
            "apiKey": {"secretKeyRef": {"name": "keys", "key": "a"}},
            "models": [{"name": "m", "inputPerMillion": "1", "outputPerMillion": "2"}],
        }]},
    }))
    .unwrap()
}

fn route(name: &str, provider: &str, created: &str) -> ModelRoute {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": "ns", "generation": 2, "creationTimestamp": created},
        "spec": {"model": "chat", "targets": [{"pool": "pool", "provider": provider, "model": "m"}]},
    }))
    .unwrap()
}

fn secret() -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "keys", "namespace": "ns", "labels": {SECRET_OPT_IN_LABEL: "true"}},
        "stringData": {"a": "key-a"},
    }))
    .unwrap()
}

/// A pod of the ReplicaSet `<app>-7d4f` (UID `rs-<app>`), as a Deployment's pods are.
fn pod(uid: &str, app: &str, phase: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-{uid}"), "namespace": "ns", "uid": uid,
                     "labels": {"app": app, INJECTED_LABEL: "true"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": format!("{app}-7d4f"), "uid": format!("rs-{app}"),
                                          "controller": true}]},
        "spec": {"containers": [], "serviceAccountName": format!("{app}-sa")},
        "status": {"phase": phase},
    }))
    .unwrap()
}

pub(super) fn world() -> World {
    World {
        pools: vec![pool()],
        routes: vec![
            route("old", "a", "2024-01-01T00:00:00Z"),
            route("new", "a", "2025-01-01T00:00:00Z"),
        ],
        budgets: vec![],
        secrets: vec![secret()],
        config_maps: vec![],
        templates: vec![],
        pods: vec![
            pod("u1", "chat", "Running"),
            pod("u2", "chat", "Running"),
            pod("u3", "web", "Pending"),
        ],
        namespaces: vec![],
        // The chat ReplicaSet was looked up; the web one not yet.
        owners: Owners::from([(
            "rs-chat".to_string(),
            Some(workload::Owner {
                kind: "Deployment".into(),
                name: "chat".into(),
            }),
        )]),
    }
}

#[test]
fn pods_carry_their_workload_into_their_audience_and_table() {
    let out = step(&world(), &Reports::default(), now());
    let u1 = out.snapshot.pod("u1").unwrap();
    assert_eq!(u1.workload.id(), "ns/Deployment/chat");
    assert_eq!(u1.workload.service_account, "chat-sa");
    let table = out.snapshot.table_for(u1);
    assert_eq!(table.workload.as_ref(), Some(&u1.workload));
    // Not looked up yet: the pod's own controller stands in.
    let u3 = out.snapshot.pod("u3").unwrap();
    assert_eq!(u3.workload.kind_name(), "ReplicaSet/web-7d4f");
    assert_eq!(
        out.snapshot.table_for(u3).workload.as_ref(),
        Some(&u3.workload)
    );
}

#[test]
fn step_publishes_one_shared_table_per_audience_and_every_status() {
    let out = step(&world(), &Reports::default(), now());
    assert_eq!(out.snapshot.pods.len(), 3);
    assert_eq!(
        out.snapshot.tables.len(),
        2,
        "chat and web (Pending pods get tables too)"
    );
    let u1 = out.snapshot.pod("u1").unwrap();
    let u2 = out.snapshot.pod("u2").unwrap();
    assert!(Arc::ptr_eq(
        &out.snapshot.table_for(u1),
        &out.snapshot.table_for(u2)
    ));
    assert_eq!(out.snapshot.table_for(u1).routes["chat"].name, "old");

    let statuses: BTreeMap<_, _> = out
        .routes
        .iter()
        .map(|w| (w.key.name.as_str(), &w.status))
        .collect();
    let old = statuses["old"];
    assert_eq!(old.observed_generation, Some(2));
    assert_eq!(
        old.sidecars
            .as_ref()
            .map(|s| (s.selected, s.summary.as_str())),
        Some((2, "0/2")),
        "only the Running pods count"
    );
    assert!(old.conditions.iter().all(|c| c.status == "True"), "{old:?}");
    let new = statuses["new"];
    let accepted = new
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "Conflicted")
    );

    assert_eq!(out.pools.len(), 1);
    let (key, pool) = &out.pools[0];
    assert_eq!(key.name, "pool");
    assert_eq!(pool.providers[0].state, "Healthy");
}

#[test]
fn unchanged_statuses_are_not_written_again() {
    let mut world = world();
    let first = step(&world, &Reports::default(), now());
    for route in &mut world.routes {
        route.status = first
            .routes
            .iter()
            .find(|w| w.key.name == route.name_any())
            .map(|w| w.status.clone());
    }
    world.pools[0].status = Some(first.pools[0].1.clone());
    let later = Time(Timestamp::from_second(2_000).unwrap());
    let second = step(&world, &Reports::default(), later.clone());
    assert!(second.routes.is_empty() && second.pools.is_empty());
    assert_eq!(
        second.snapshot.tables.len(),
        2,
        "the tables are still published"
    );

    world.pods.push(pod("u4", "chat", "Running"));
    let third = step(&world, &Reports::default(), later);
    let names: Vec<_> = third.routes.iter().map(|w| w.key.name.as_str()).collect();
    assert_eq!(names, ["old"], "one more sidecar selected");
}

#[test]
fn a_missing_secret_key_is_a_pool_problem() {
    let mut world = world();
    world.secrets.clear();
    let out = step(&world, &Reports::default(), now());
    let resolved = out.pools[0]
        .1
        .conditions
        .iter()
        .find(|c| c.type_ == "ResolvedRefs")
        .unwrap();
    assert_eq!(resolved.status, "False");
    assert!(resolved.message.contains("keys"), "{}", resolved.message);
}

#[tokio::test]
async fn status_is_written_by_forced_server_side_apply() {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("one request");
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        send.send_response(
            http::Response::builder()
                .status(200)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&serde_json::json!({
                        "apiVersion": API_VERSION, "kind": "ModelRoute",
                        "metadata": {"name": "name", "namespace": "ns"},
                        "spec": {"model": "chat", "targets": [{"pool": "p", "provider": "a", "model": "m"}]},
                        "status": body["status"],
                    }))
                    .unwrap(),
                ))
                .unwrap(),
        );
        (parts, body)
    });
    let key = ObjectKey {
        kind: Kind::ModelRoute,
        namespace: "ns".into(),
        name: "name".into(),
    };
    let out = step(&world(), &Reports::default(), now());
    let status = out.routes[0].status.clone();
    apply_route_status(&client, &key, &status).await.unwrap();

    let (parts, body) = server.await.unwrap();
    assert_eq!(parts.method, http::Method::PATCH);
    assert_eq!(
        parts.uri.path(),
        "/apis/switchyard.dev/v1alpha1/namespaces/ns/modelroutes/name/status"
    );
    let mut query: Vec<&str> = parts
        .uri
        .query()
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    query.sort_unstable();
    assert_eq!(query, ["fieldManager=switchyard-operator", "force=true"]);
    assert_eq!(
        parts.headers.get(http::header::CONTENT_TYPE).unwrap(),
        "application/apply-patch+yaml"
    );
    assert_eq!(body["apiVersion"], API_VERSION);
    assert_eq!(body["kind"], "ModelRoute");
    assert_eq!(body["status"], serde_json::to_value(&status).unwrap());
    assert!(
        body.get("spec").is_none(),
        "status only: the spec has other owners"
    );
}

#[test]
fn in_sync_counts_pods_whose_report_carries_their_tables_version() {
    let first = step(&world(), &Reports::default(), now());
    let version = first
        .snapshot
        .table_for(first.snapshot.pod("u1").unwrap())
        .version
        .clone();
    let reports = Reports {
        versions: HashMap::from([
            ("u1".to_string(), version),
            ("u2".to_string(), "stale".to_string()),
        ]),
        ..Reports::default()
    };
    let out = step(&world(), &reports, now());
    let old = out.routes.iter().find(|w| w.key.name == "old").unwrap();
    let sidecars = old.status.sidecars.as_ref().unwrap();
    assert_eq!((sidecars.selected, sidecars.in_sync), (2, 1));
    assert_eq!(sidecars.summary, "1/2");
}

#[test]
fn a_step_announces_transitions_and_names_the_namespaces_needing_trust() {
    let mut world = world();
    world.routes.push(
        serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "ModelRoute",
            "metadata": {"name": "broken", "namespace": "other", "generation": 1},
            "spec": {"model": "x", "targets": [{"pool": "missing", "provider": "a", "model": "m"}]},
        }))
        .unwrap(),
    );
    world.namespaces.push(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "labelled", "labels": {INJECT_LABEL: "true"}},
        }))
        .unwrap(),
    );
    let out = step(&world, &Reports::default(), now());
    let broken: Vec<_> = out
        .events
        .iter()
        .filter(|(r, _)| r.name.as_deref() == Some("broken"))
        .collect();
    assert!(!broken.is_empty());
    assert!(broken.iter().all(|(_, n)| n.warning));
    assert!(
        broken.iter().any(|(_, n)| n.note.contains("missing")),
        "{broken:?}"
    );
    let accepted = out
        .events
        .iter()
        .find(|(r, _)| r.name.as_deref() == Some("pool"))
        .expect("the pool is announced");
    assert_eq!(accepted.1.reason, events::ACCEPTED);
    assert_eq!(accepted.0.kind.as_deref(), Some("ProviderPool"));
    assert_eq!(
        out.trust_namespaces,
        BTreeSet::from(["labelled".into(), "ns".into(), "other".into()])
    );

    // Once the statuses are written, the same world announces nothing.
    for route in &mut world.routes {
        let key = key_of(Kind::ModelRoute, route);
        route.status = out
            .routes
            .iter()
            .find(|w| w.key == key)
            .map(|w| w.status.clone());
    }
    for pool in &mut world.pools {
        let key = key_of(Kind::ProviderPool, pool);
        pool.status = out
            .pools
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone());
    }
    assert!(step(&world, &Reports::default(), now()).events.is_empty());
}

#[test]
fn a_referenced_secret_outside_the_labelled_watch_is_looked_up_and_reported_not_opted_in() {
    let mut world = world();
    assert!(
        unseen_secret_refs(&world).is_empty(),
        "the labelled Secret is seen"
    );
    world.secrets.clear();
    assert_eq!(
        unseen_secret_refs(&world),
        BTreeSet::from([("ns".to_string(), "keys".to_string())])
    );
    // What the metadata-only lookup returns for a Secret that exists without the label.
    world.secrets.push(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("keys".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        ..Secret::default()
    });
    let out = step(&world, &Reports::default(), now());
    let (_, status) = out
        .pools
        .iter()
        .find(|(k, _)| k.name == "pool")
        .expect("a pool status");
    let resolved = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::types::RESOLVED_REFS)
        .unwrap();
    assert_eq!(
        resolved.reason,
        switchyard_crds::compile::reasons::SECRET_NOT_OPTED_IN
    );
}

fn budget(name: &str, app: &str, requests: u64) -> Budget {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "Budget",
        "metadata": {"name": name, "namespace": "ns", "generation": 1},
        "spec": {
            "selector": {"podSelector": {"matchLabels": {"app": app}}},
            "limits": [{"period": "1m", "requests": requests}],
        },
    }))
    .unwrap()
}

#[test]
fn budgets_are_compiled_into_the_tables_of_the_pods_they_select() {
    let mut world = world();
    world.budgets = vec![budget("chat-cap", "chat", 600), budget("broken", "chat", 0)];
    world.budgets[1].spec.limits.clear();
    let out = step(&world, &Reports::default(), now());
    let chat = out.snapshot.table_for(out.snapshot.pod("u1").unwrap());
    assert_eq!(
        chat.budgets.keys().collect::<Vec<_>>(),
        vec!["ns/chat-cap"],
        "the accepted budget only: one without limits is left out"
    );
    assert_eq!(chat.budgets["ns/chat-cap"].limits[0].requests, Some(600));
    let web = out.snapshot.table_for(out.snapshot.pod("u3").unwrap());
    assert!(web.budgets.is_empty(), "the selector names app=chat only");
}

/// Reports in which the lease book counted `requests` of `ns/chat-cap`'s `1m` limit at [`now`].
fn chat_cap_spent(requests: u64) -> Reports {
    let window = switchyard_crds::window::Period::parse("1m")
        .unwrap()
        .window(now().0)
        .unwrap();
    Reports {
        budgets: HashMap::from([(
            ("ns/chat-cap".to_string(), 0),
            LimitTotals {
                window,
                used: [0, requests, 0],
                refused: 0,
                reporting: 2,
                leased: 2,
            },
        )]),
        ..Reports::default()
    }
}

#[test]
fn budget_status_is_written_from_the_lease_book_and_read_back_as_durable_totals() {
    let mut world = world();
    world.budgets = vec![budget("chat-cap", "chat", 600)];
    let out = step(&world, &chat_cap_spent(500), now());
    assert_eq!(out.budgets.len(), 1);
    let write = &out.budgets[0];
    assert_eq!(write.key.name, "chat-cap");
    assert!(!write.spend_only, "a first status is never deferred");
    let window = &write.status.windows[0];
    assert_eq!(
        (window.used.requests, window.remaining.requests),
        (Some(500), Some(100))
    );
    let ready = write
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::types::READY)
        .unwrap();
    assert_eq!(ready.status, "True", "u1 and u2 run with it in their table");
    let reasons: Vec<&str> = write
        .events
        .iter()
        .map(|(_, n)| n.reason.as_str())
        .collect();
    assert_eq!(reasons, [events::ACCEPTED, events::BUDGET_NEARLY_EXHAUSTED]);
    assert!(
        out.snapshot.durable.is_empty(),
        "no status written yet, nothing to resume from"
    );

    // Once written, the next step resumes from it and only spend moves.
    world.budgets[0].status = Some(write.status.clone());
    let out = step(&world, &chat_cap_spent(510), now());
    assert_eq!(
        out.snapshot.durable[&("ns/chat-cap".to_string(), 0)].used,
        [0, 500, 0]
    );
    assert_eq!(out.budgets.len(), 1);
    assert!(out.budgets[0].spend_only);
    assert!(out.budgets[0].events.is_empty());
    let out = step(&world, &chat_cap_spent(500), now());
    assert!(out.budgets.is_empty(), "unchanged: nothing to write");
    // A new leader whose book knows nothing yet keeps what status says.
    let out = step(&world, &Reports::default(), now());
    assert!(
        out.budgets
            .iter()
            .all(|w| w.status.windows[0].used.requests == Some(500)),
        "never written below the durable total"
    );
}

#[test]
fn spend_only_budget_writes_wait_their_turn_others_do_not() {
    let key = |name: &str| ObjectKey {
        kind: Kind::Budget,
        namespace: "ns".into(),
        name: name.into(),
    };
    let write = |name: &str, spend_only| BudgetWrite {
        key: key(name),
        status: BudgetStatus::default(),
        spend_only,
        events: vec![],
    };
    let now = Instant::now();
    let written = HashMap::from([
        (key("recent"), now - Duration::from_secs(4)),
        (key("old"), now - SPEND_WRITE_EVERY),
    ]);
    let (due, next) = spend::due(
        vec![
            write("recent", true),
            write("recent-changed", false),
            write("old", true),
            write("never", true),
        ],
        &written,
        now,
    );
    let names: Vec<&str> = due.iter().map(|w| w.key.name.as_str()).collect();
    assert_eq!(names, ["recent-changed", "old", "never"]);
    assert_eq!(next, Some(SPEND_WRITE_EVERY - Duration::from_secs(4)));
    let mut written = written;
    written.insert(key("recent-changed"), now);
    let (due, _) = spend::due(vec![write("recent-changed", false)], &written, now);
    assert_eq!(due.len(), 1, "a change other than spend is written at once");
}

#[tokio::test]
async fn budget_status_is_applied_to_its_status_subresource() {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("one request");
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut object = serde_json::to_value(budget("chat-cap", "chat", 600)).unwrap();
        object["status"] = body["status"].clone();
        send.send_response(
            http::Response::builder()
                .status(200)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&object).unwrap(),
                ))
                .unwrap(),
        );
        (parts, body)
    });
    let mut world = world();
    world.budgets = vec![budget("chat-cap", "chat", 600)];
    let write = step(&world, &chat_cap_spent(7), now()).budgets.remove(0);
    apply_budget_status(&client, &write.key, &write.status)
        .await
        .unwrap();

    let (parts, body) = server.await.unwrap();
    assert_eq!(parts.method, http::Method::PATCH);
    assert_eq!(
        parts.uri.path(),
        "/apis/switchyard.dev/v1alpha1/namespaces/ns/budgets/chat-cap/status"
    );
    assert!(
        parts
            .uri
            .query()
            .unwrap()
            .contains("fieldManager=switchyard-operator")
    );
    assert_eq!(body["kind"], "Budget");
    assert_eq!(body["status"]["windows"][0]["used"]["requests"], 7);
    assert_eq!(body["status"]["summary"]["used"], "7 requests");
    assert!(body.get("spec").is_none());
}

/// Reports in which the route `old` answered `requests` requests for `usd` in the window.
fn old_route_spent(requests: u64, usd: f64) -> Reports {
    Reports {
        routes: BTreeMap::from([(
            RouteKey {
                namespace: "ns".into(),
                route: "old".into(),
            },
            RouteStats {
                requests,
                cost_usd: usd,
            },
        )]),
        ..Reports::default()
    }
}

#[test]
fn a_route_status_that_differs_only_in_spend_is_a_spend_only_write() {
    let mut world = world();
    let first = step(&world, &old_route_spent(3, 0.5), now());
    for write in &first.routes {
        assert!(!write.spend_only, "a first status is never deferred");
        let route = world
            .routes
            .iter_mut()
            .find(|r| r.name_any() == write.key.name)
            .unwrap();
        route.status = Some(write.status.clone());
    }
    let out = step(&world, &Reports::default(), now());
    let old = out.routes.iter().find(|w| w.key.name == "old").unwrap();
    assert_eq!(old.status.requests, None, "the window emptied");
    assert!(old.spend_only);
    let out = step(&world, &old_route_spent(4, 0.75), now());
    assert_eq!(out.routes.len(), 1, "`new` is unchanged: {:?}", out.routes);
    assert_eq!(out.routes[0].status.requests, Some(4));
    assert!(out.routes[0].spend_only);

    // Spend and sync state moved together: written at once.
    let version = out
        .snapshot
        .table_for(out.snapshot.pod("u1").unwrap())
        .version
        .clone();
    let mut reports = old_route_spent(5, 1.0);
    reports.versions = HashMap::from([("u1".to_string(), version)]);
    let out = step(&world, &reports, now());
    let old = out.routes.iter().find(|w| w.key.name == "old").unwrap();
    assert!(!old.spend_only, "inSync changed too");
}

#[test]
fn spend_only_route_writes_wait_their_turn_and_share_the_clock_with_budgets() {
    let mut world = world();
    let first = step(&world, &Reports::default(), now());
    let old = first.routes.iter().find(|w| w.key.name == "old").unwrap();
    world.routes[0].status = Some(old.status.clone());
    let now_ = Instant::now();
    let written = HashMap::from([(old.key.clone(), now_ - Duration::from_secs(3))]);
    let writes = step(&world, &old_route_spent(1, 0.1), now()).routes;
    let (due, next) = spend::due(writes, &written, now_);
    assert!(
        due.iter().all(|w| w.key.name != "old"),
        "written 3 s ago: deferred"
    );
    assert_eq!(next, Some(SPEND_WRITE_EVERY - Duration::from_secs(3)));
    let writes = step(&world, &old_route_spent(2, 0.2), now()).routes;
    let (due, next) = spend::due(writes, &written, now_ + Duration::from_secs(7));
    assert!(due.iter().any(|w| w.key.name == "old"), "its 10 s are up");
    assert_eq!(next, None);
    let budget_written = HashMap::from([(
        ObjectKey {
            kind: Kind::Budget,
            namespace: "ns".into(),
            name: "old".into(),
        },
        now_,
    )]);
    let writes = step(&world, &old_route_spent(3, 0.3), now()).routes;
    let (due, _) = spend::due(writes, &budget_written, now_);
    assert!(
        due.iter().any(|w| w.key.name == "old"),
        "a Budget of the same name is another object"
    );
}

/// The pod cache keeps only what the controller reads: a trimmed pod indexes and resolves
/// exactly as the full one, and the bulk of a real pod is gone.
#[test]
fn trimmed_pods_index_as_full_ones() {
    let full: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "chat-7d9f-abcde", "namespace": "team-a", "uid": "uid-1",
            "labels": {"app": "chat", "switchyard.dev/injected": "true"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-07T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "chat-7d9f", "uid": "rs-1", "controller": true}],
            "managedFields": [{"manager": "kubelet", "operation": "Update",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}],
        },
        "spec": {
            "serviceAccountName": "chat-sa",
            "containers": [{"name": "app", "image": "chat:1",
                "env": [{"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:9400/v1"}]}],
        },
        "status": {"phase": "Running", "podIP": "10.0.0.7",
            "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap();
    let mut trimmed = full.clone();
    trim_pod(&mut trimmed);

    let owners = crate::workload::Owners::new();
    assert_eq!(pod_info(&trimmed, &owners), pod_info(&full, &owners));
    assert!(pod_info(&trimmed, &owners).is_some());
    assert_eq!(
        crate::workload::lookup_for(&trimmed, &owners),
        crate::workload::lookup_for(&full, &owners)
    );
    assert!(is_running(&trimmed));
    assert_eq!(trimmed.uid(), full.uid());
    let size = |pod: &Pod| serde_json::to_vec(pod).unwrap().len();
    assert!(
        size(&trimmed) * 2 < size(&full),
        "{} of {} bytes kept",
        size(&trimmed),
        size(&full)
    );
    assert!(trimmed.metadata.managed_fields.is_none());
    assert!(trimmed.spec.as_ref().unwrap().containers.is_empty());
}
