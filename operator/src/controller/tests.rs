use http_body_util::BodyExt as _;
use k8s_openapi::jiff::Timestamp;
use switchyard_crds::v1alpha1::API_VERSION;

use super::*;

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

fn pod(uid: &str, app: &str, phase: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-{uid}"), "namespace": "ns", "uid": uid,
                     "labels": {"app": app, INJECTED_LABEL: "true"}},
        "status": {"phase": phase},
    }))
    .unwrap()
}

fn world() -> World {
    World {
        pools: vec![pool()],
        routes: vec![
            route("old", "a", "2024-01-01T00:00:00Z"),
            route("new", "a", "2025-01-01T00:00:00Z"),
        ],
        budgets: vec![],
        secrets: vec![secret()],
        pods: vec![
            pod("u1", "chat", "Running"),
            pod("u2", "chat", "Running"),
            pod("u3", "web", "Pending"),
        ],
        namespaces: vec![],
    }
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
        .map(|(k, s)| (k.name.as_str(), s))
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
            .find(|(k, _)| k.name == route.name_any())
            .map(|(_, s)| s.clone());
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
    let names: Vec<_> = third.routes.iter().map(|(k, _)| k.name.as_str()).collect();
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
    let status = out.routes[0].1.clone();
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
    let (_, old) = out.routes.iter().find(|(k, _)| k.name == "old").unwrap();
    let sidecars = old.sidecars.as_ref().unwrap();
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
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone());
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
