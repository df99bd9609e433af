use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::v1alpha1::*;

fn pool(name: &str, providers: serde_json::Value) -> ProviderPool {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "ProviderPool",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"providers": providers},
    }))
    .unwrap()
}

fn provider(name: &str, url: &str, key: bool) -> serde_json::Value {
    let mut p = serde_json::json!({
        "name": name, "api": "OpenAI", "baseUrl": url, "region": "eu",
        "models": [{"name": "m", "inputPerMillion": "1", "outputPerMillion": "2", "contextWindow": 1000}],
    });
    if key {
        p["apiKey"] = serde_json::json!({"secretKeyRef": {"name": "keys", "key": name}});
    }
    p
}

fn route(name: &str, model: &str, targets: &[(&str, &str)]) -> ModelRoute {
    let targets: Vec<_> = targets
        .iter()
        .map(|(p, pr)| serde_json::json!({"pool": p, "provider": pr, "model": "m"}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"model": model, "targets": targets},
    }))
    .unwrap()
}

fn secret(labelled: bool) -> Secret {
    let labels = if labelled {
        serde_json::json!({SECRET_OPT_IN_LABEL: "true"})
    } else {
        serde_json::json!({})
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "keys", "namespace": "ns", "labels": labels},
        "stringData": {"a": "key-a", "b": "key-b"},
    }))
    .unwrap()
}

fn audience(labels: &[(&str, &str)]) -> Audience {
    Audience {
        namespace: "ns".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        workload: None,
    }
}

fn run(
    pools: &[ProviderPool],
    routes: &[ModelRoute],
    secrets: &[Secret],
    audiences: &[Audience],
) -> Compiled {
    compile(&Inputs {
        pools,
        routes,
        budgets: &[],
        secrets,
        config_maps: &[],
        model_files: None,
        audiences,
        require_secret_opt_in: true,
        generated_by: "test",
    })
}

fn reasons_of(outcome: &RouteOutcome) -> Vec<&'static str> {
    outcome
        .accepted
        .iter()
        .chain(&outcome.resolved_refs)
        .map(|p| p.reason)
        .collect()
}

fn route_key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::ModelRoute,
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn pool_key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::ProviderPool,
        namespace: "ns".into(),
        name: name.into(),
    }
}

#[test]
fn a_valid_setup_compiles_with_only_the_upstreams_it_uses() {
    let pools = [pool(
        "p",
        serde_json::json!([
            provider("a", "https://a.example/v1", true),
            provider("b", "https://b.example", true)
        ]),
    )];
    let routes = [route("r", "chat", &[("p", "a")])];
    let out = run(&pools, &routes, &[secret(true)], &[audience(&[])]);
    assert_eq!(
        out.problems().count(),
        0,
        "{:?}",
        out.problems().collect::<Vec<_>>()
    );
    let table = &out.tables[&audience(&[])];
    assert_eq!(
        table.upstreams.keys().collect::<Vec<_>>(),
        ["p/a"],
        "keys of unused providers stay home"
    );
    assert_eq!(table.routes["chat"].targets[0].upstream, "p/a");
    assert_eq!(table.routes["chat"].max_attempts, 3);
    assert_eq!(
        table.routes["chat"].failover_on,
        FailureClass::default_failover()
    );
    assert_eq!(out.routes[&route_key("r")].target_count, 1);
}

#[test]
fn compiling_is_deterministic() {
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example", true)]),
    )];
    let routes = [route("r", "chat", &[("p", "a")])];
    let a = run(&pools, &routes, &[secret(true)], &[audience(&[])]);
    let b = run(&pools, &routes, &[secret(true)], &[audience(&[])]);
    assert_eq!(a.tables, b.tables);
}

#[test]
fn secrets_must_opt_in_exist_and_have_the_key() {
    let pools = [pool(
        "p",
        serde_json::json!([
            provider("a", "https://a.example", true),
            provider("c", "https://c.example", true)
        ]),
    )];
    let routes = [route("r", "chat", &[("p", "a")])];
    let out = run(&pools, &routes, &[secret(false)], &[audience(&[])]);
    let refs = &out.pools[&pool_key("p")].resolved_refs;
    assert!(
        refs.iter()
            .any(|p| p.reason == reasons::SECRET_NOT_OPTED_IN),
        "{refs:?}"
    );

    let out = run(&pools, &routes, &[secret(true)], &[audience(&[])]);
    let refs = &out.pools[&pool_key("p")].resolved_refs;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].reason, reasons::SECRET_KEY_NOT_FOUND);
    assert_eq!(refs[0].field, "spec.providers[1].apiKey.secretKeyRef");
    assert!(
        out.tables[&audience(&[])].routes.contains_key("chat"),
        "a bad provider does not take the pool down"
    );

    let out = run(&pools, &routes, &[], &[audience(&[])]);
    assert!(
        out.pools[&pool_key("p")]
            .resolved_refs
            .iter()
            .all(|p| p.reason == reasons::SECRET_NOT_FOUND)
    );
    assert_eq!(
        reasons_of(&out.routes[&route_key("r")]),
        [reasons::BACKEND_NOT_READY]
    );
    assert!(out.tables[&audience(&[])].routes.is_empty());
}

#[test]
fn provider_urls_follow_the_security_rules() {
    let cases = [
        ("http://api.example.com/v1", true, false),
        ("https://api.example.com/v1", true, true),
        ("http://127.0.0.1:8000/v1", true, true),
        ("http://localhost:8000/v1", true, true),
        ("http://vllm.models.svc:8000/v1", true, true),
        ("http://vllm.models.svc.cluster.local/v1", true, true),
        ("http://api.example.com/v1", false, true),
        ("http://169.254.169.254/latest", false, false),
        ("http://[fd00:ec2::254]/", false, false),
        ("ftp://files.example.com", false, false),
        ("not a url", false, false),
    ];
    for (url, key, ok) in cases {
        let pools = [pool("p", serde_json::json!([provider("a", url, key)]))];
        let out = run(&pools, &[], &[secret(true)], &[]);
        let accepted = &out.pools[&pool_key("p")].accepted;
        assert_eq!(accepted.is_empty(), ok, "{url} key={key}: {accepted:?}");
        if !ok {
            assert_eq!(accepted[0].reason, reasons::INVALID_PROVIDER);
            assert!(
                accepted[0].message.contains("\"a\""),
                "names the provider: {}",
                accepted[0].message
            );
        }
    }
}

#[test]
fn invalid_pools_are_reported_by_field() {
    let mut bad = provider("a", "https://a.example", false);
    bad["models"][0]["inputPerMillion"] = "-1".into();
    bad["timeouts"] = serde_json::json!({"idle": "forever"});
    let pools = [pool(
        "p",
        serde_json::json!([bad, provider("a", "https://b.example", false)]),
    )];
    let out = run(&pools, &[], &[], &[]);
    let fields: Vec<_> = out.pools[&pool_key("p")]
        .accepted
        .iter()
        .map(|p| p.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.providers[0].timeouts.idle",
            "spec.providers[0].models[0].inputPerMillion",
            "spec.providers[1].name"
        ]
    );
}

#[test]
fn broken_references_are_named() {
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example", false)]),
    )];
    let mut r = route("r", "chat", &[("p", "zzz"), ("nope", "a"), ("p", "a")]);
    r.spec.targets[2].model = "m2".into();
    let out = run(&pools, &[r], &[], &[audience(&[])]);
    let problems = &out.routes[&route_key("r")].resolved_refs;
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.targets[0].provider",
            "spec.targets[1].pool",
            "spec.targets[2].model"
        ]
    );
    assert!(
        problems[1]
            .message
            .contains("ProviderPool ns/nope not found")
    );
}

#[test]
fn weighted_routes_need_positive_weights() {
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example", false)]),
    )];
    let mut r = route("r", "chat", &[("p", "a")]);
    r.spec.strategy = Strategy::Weighted;
    r.spec.targets[0].weight = Some(0);
    let out = run(&pools, &[r.clone()], &[], &[audience(&[])]);
    assert_eq!(reasons_of(&out.routes[&route_key("r")]), [reasons::INVALID]);
    r.spec.strategy = Strategy::Failover;
    let out = run(&pools, &[r], &[], &[audience(&[])]);
    assert!(
        reasons_of(&out.routes[&route_key("r")]).is_empty(),
        "weight 0 is harmless without Weighted"
    );
}

#[test]
fn failover_on_client_error_is_refused() {
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example", false)]),
    )];
    let mut r = route("r", "chat", &[("p", "a")]);
    r.spec.failover = Some(Failover {
        on: Some(vec![FailureClass::ClientError]),
        max_attempts: Some(2),
    });
    let out = run(&pools, &[r], &[], &[audience(&[])]);
    assert_eq!(
        out.routes[&route_key("r")].accepted[0].field,
        "spec.failover.on"
    );
}

#[test]
fn residency_excludes_providers_without_an_allowed_region() {
    let mut us = provider("b", "https://b.example", false);
    us["region"] = "us".into();
    let mut none = provider("c", "https://c.example", false);
    none.as_object_mut().unwrap().remove("region");
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example", false), us, none]),
    )];
    let mut r = route("r", "chat", &[("p", "a"), ("p", "b"), ("p", "c")]);
    r.spec.residency = Some(Residency {
        allowed_regions: vec!["eu".into()],
    });
    let out = run(&pools, &[r.clone()], &[], &[audience(&[])]);
    let outcome = &out.routes[&route_key("r")];
    assert_eq!(outcome.excluded_providers, ["p/b", "p/c"]);
    assert_eq!(outcome.target_count, 1);

    r.spec.residency = Some(Residency {
        allowed_regions: vec!["apac".into()],
    });
    let out = run(&pools, &[r], &[], &[audience(&[])]);
    assert_eq!(
        reasons_of(&out.routes[&route_key("r")]),
        [reasons::NO_ELIGIBLE_TARGETS]
    );
}

#[test]
fn conflicts_resolve_by_selector_then_age_then_name() {
    let pools = [pool(
        "p",
        serde_json::json!([
            provider("a", "https://a.example", false),
            provider("b", "https://b.example", false)
        ]),
    )];
    let plain_old = {
        let mut r = route("old", "chat", &[("p", "a")]);
        r.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_000).unwrap()));
        r
    };
    let plain_new = {
        let mut r = route("aaa-new", "chat", &[("p", "a")]);
        r.metadata.creation_timestamp = Some(Time(Timestamp::from_second(2_000).unwrap()));
        r
    };
    let selected = {
        let mut r = route("selected", "chat", &[("p", "b")]);
        r.metadata.creation_timestamp = Some(Time(Timestamp::from_second(3_000).unwrap()));
        r.spec.pod_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "tier".to_string(),
                "premium".to_string(),
            )])),
            ..Default::default()
        });
        r
    };
    let routes = [plain_new, selected, plain_old];
    let premium = audience(&[("tier", "premium")]);
    let others = audience(&[("tier", "free")]);
    let out = run(&pools, &routes, &[], &[premium.clone(), others.clone()]);

    assert_eq!(out.tables[&premium].routes["chat"].name, "selected");
    assert_eq!(
        out.tables[&others].routes["chat"].name, "old",
        "the oldest wins among equals"
    );
    assert!(
        reasons_of(&out.routes[&route_key("old")]).is_empty(),
        "old wins somewhere: not conflicted"
    );
    let loser = &out.routes[&route_key("aaa-new")];
    assert_eq!(reasons_of(loser), [reasons::CONFLICTED]);
    assert!(
        loser.accepted[0].message.contains("route old"),
        "{}",
        loser.accepted[0].message
    );
}

#[test]
fn names_break_ties_when_routes_have_no_timestamps() {
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example", false)]),
    )];
    let routes = [
        route("zeta", "chat", &[("p", "a")]),
        route("alpha", "chat", &[("p", "a")]),
    ];
    let out = run(&pools, &routes, &[], &[audience(&[])]);
    assert_eq!(out.tables[&audience(&[])].routes["chat"].name, "alpha");
    assert_eq!(
        reasons_of(&out.routes[&route_key("zeta")]),
        [reasons::CONFLICTED]
    );
}

#[test]
fn a_target_listed_twice_is_refused() {
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example", false)]),
    )];
    let out = run(
        &pools,
        &[route("r", "chat", &[("p", "a"), ("p", "a")])],
        &[],
        &[audience(&[])],
    );
    let problems = &out.routes[&route_key("r")].accepted;
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "spec.targets[1]");
    assert!(problems[0].message.contains("listed twice"));
}

/// The table for one provider `a` (in pool `p`, behind route `r`) with `limits`.
fn table_with_limits(limits: serde_json::Value) -> RouteTable {
    let mut a = provider("a", "http://127.0.0.1:1", false);
    a["limits"] = limits;
    let out = run(
        &[pool("p", serde_json::json!([a]))],
        &[route("r", "chat", &[("p", "a")])],
        &[],
        &[audience(&[])],
    );
    assert_eq!(out.problems().count(), 0);
    out.tables.into_values().next().unwrap()
}

#[test]
fn a_fleet_scope_becomes_a_fleet_limit_that_replaces_the_sidecar_rates() {
    let table = table_with_limits(serde_json::json!(
        {"scope": "Fleet", "requestsPerMinute": 60, "tokensPerMinute": 9000, "maxConcurrent": 4}
    ));
    let limits = table.upstreams["p/a"].limits;
    assert_eq!(
        (limits.requests_per_minute, limits.tokens_per_minute),
        (None, None),
        "the fleet share replaces the per-sidecar rates"
    );
    assert_eq!(limits.max_concurrent, Some(4), "always per sidecar");
    let fleet = &table.budgets["ns/p/a"];
    let expected = table::Budget {
        namespace: "ns".into(),
        name: "p/a".into(),
        routes: vec![],
        providers: vec!["p/a".into()],
        limits: vec![table::BudgetLimit {
            period: "1m".into(),
            usd_micros: None,
            requests: Some(60),
            tokens: Some(9000),
        }],
        mode: BudgetMode::Enforce,
        when_unreachable: WhenUnreachable::LastShare,
        kind: table::BudgetKind::FleetLimit,
    };
    assert_eq!(*fleet, expected);
    assert_eq!(fleet.id(), "ns/p/a", "the key it is filed under");
    let json = serde_json::to_value(fleet).unwrap();
    assert_eq!(json["kind"], "FleetLimit");
}

#[test]
fn a_fleet_limit_counts_for_every_route_that_uses_the_provider_and_no_other() {
    let mut a = provider("a", "http://127.0.0.1:1", false);
    a["limits"] = serde_json::json!({"scope": "Fleet", "requestsPerMinute": 60});
    let b = provider("b", "http://127.0.0.1:2", false);
    let out = run(
        &[pool("p", serde_json::json!([a, b]))],
        &[
            route("r", "chat", &[("p", "a"), ("p", "b")]),
            route("s", "other", &[("p", "a")]),
            route("t", "b-only", &[("p", "b")]),
        ],
        &[],
        &[audience(&[])],
    );
    let table = &out.tables[&audience(&[])];
    assert_eq!(table.budgets.keys().collect::<Vec<_>>(), ["ns/p/a"]);
    let fleet = &table.budgets["ns/p/a"];
    assert!(fleet.selects_route("ns", "r") && fleet.selects_route("ns", "s"));
    assert!(fleet.selects_route("ns", "t"), "harmless: t never uses p/a");
    assert_eq!(fleet.providers, ["p/a"]);
}

#[test]
fn a_fleet_scope_without_rates_or_an_unused_provider_adds_nothing() {
    let concurrent_only =
        table_with_limits(serde_json::json!({"scope": "Fleet", "maxConcurrent": 2}));
    assert!(concurrent_only.budgets.is_empty());
    assert_eq!(
        concurrent_only.version,
        table_with_limits(serde_json::json!({"maxConcurrent": 2})).version
    );

    let mut unused = provider("z", "http://127.0.0.1:3", false);
    unused["limits"] = serde_json::json!({"scope": "Fleet", "requestsPerMinute": 5});
    let a = provider("a", "http://127.0.0.1:1", false);
    let out = run(
        &[pool("p", serde_json::json!([a, unused]))],
        &[route("r", "chat", &[("p", "a")])],
        &[],
        &[audience(&[])],
    );
    assert!(out.tables[&audience(&[])].budgets.is_empty());
}

#[test]
fn sidecar_scoped_limits_keep_their_table_and_its_version() {
    let unset = table_with_limits(serde_json::json!({"requestsPerMinute": 60}));
    let sidecar =
        table_with_limits(serde_json::json!({"scope": "Sidecar", "requestsPerMinute": 60}));
    assert_eq!(
        sidecar.upstreams["p/a"].limits.requests_per_minute,
        Some(60)
    );
    assert!(sidecar.budgets.is_empty());
    assert_eq!(sidecar.version, unset.version);
    assert_eq!(sidecar, unset);
    let fleet = table_with_limits(serde_json::json!({"scope": "Fleet", "requestsPerMinute": 60}));
    assert_ne!(fleet.version, sidecar.version);
}

fn budget(name: &str, selector: serde_json::Value) -> Budget {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "Budget",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"selector": selector, "limits": [{"period": "Month", "usd": "12.50"}, {"period": "1m", "requests": 60}]},
    }))
    .unwrap()
}

fn run_with_budgets(budgets: &[Budget], audiences: &[Audience]) -> Compiled {
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example/v1", true)]),
    )];
    let routes = [route("r", "chat", &[("p", "a")])];
    compile(&Inputs {
        pools: &pools,
        routes: &routes,
        budgets,
        secrets: &[secret(true)],
        config_maps: &[],
        model_files: None,
        audiences,
        require_secret_opt_in: true,
        generated_by: "test",
    })
}

#[test]
fn budgets_compile_into_the_tables_of_the_pods_they_select() {
    let budgets = [
        budget("all", serde_json::json!({})),
        budget(
            "bots",
            serde_json::json!({"podSelector": {"matchLabels": {"app": "bot"}}, "routes": ["r"], "providers": [{"pool": "p", "provider": "a"}]}),
        ),
    ];
    let (plain, bot) = (audience(&[]), audience(&[("app", "bot")]));
    let out = run_with_budgets(&budgets, &[plain.clone(), bot.clone()]);
    assert_eq!(out.problems().count(), 0);
    assert_eq!(
        out.tables[&plain].budgets.keys().collect::<Vec<_>>(),
        ["ns/all"]
    );
    let compiled = &out.tables[&bot].budgets["ns/bots"];
    assert_eq!(compiled.routes, ["r"]);
    assert_eq!(
        compiled.providers,
        ["p/a"],
        "upstream ids, as targets name them"
    );
    assert_eq!(compiled.limits[0].usd_micros, Some(12_500_000), "exact");
    assert_eq!(compiled.limits[1].requests, Some(60));
    assert_ne!(
        out.tables[&plain].version, out.tables[&bot].version,
        "budgets are part of the content version"
    );
    let json = serde_json::to_value(compiled).unwrap();
    assert!(
        json.get("kind").is_none(),
        "written only for fleet limits, so budgeted tables keep their versions: {json}"
    );
}

#[test]
fn a_table_without_budgets_keeps_its_version() {
    let with_none = run_with_budgets(&[], &[audience(&[])]);
    let pools = [pool(
        "p",
        serde_json::json!([provider("a", "https://a.example/v1", true)]),
    )];
    let routes = [route("r", "chat", &[("p", "a")])];
    let before_budgets = run(&pools, &routes, &[secret(true)], &[audience(&[])]);
    assert_eq!(
        with_none.tables[&audience(&[])].version,
        before_budgets.tables[&audience(&[])].version
    );
    let json = serde_json::to_string(&with_none.tables[&audience(&[])]).unwrap();
    assert!(!json.contains("budgets"), "absent, not empty: {json}");
}

#[test]
fn budget_selectors_naming_nothing_are_problems_and_leave_the_budget_out() {
    let budgets = [budget(
        "typos",
        serde_json::json!({"routes": ["rr"], "providers": [{"pool": "p", "provider": "zz"}]}),
    )];
    let out = run_with_budgets(&budgets, &[audience(&[])]);
    let fields: Vec<_> = out.problems().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.selector.routes[0]", "spec.selector.providers[0]"]
    );
    assert!(
        out.problems()
            .all(|p| p.reason == reasons::BACKEND_NOT_FOUND)
    );
    assert!(out.tables[&audience(&[])].budgets.is_empty());
}

#[test]
fn vertex_key_files_token_uri_follows_the_url_rules() {
    let cases = [
        (Some("https://oauth2.googleapis.com/token"), None, true),
        (Some("http://127.0.0.1:9000/token"), None, true),
        (
            Some("http://169.254.169.254/computeMetadata/v1/token"),
            None,
            false,
        ),
        (Some("http://oauth2.example.com/token"), None, false),
        (None, None, false),
        // The provider's tokenUrl replaces the key file's.
        (
            Some("http://169.254.169.254/token"),
            Some("https://oauth2.googleapis.com/token"),
            true,
        ),
    ];
    for (token_uri, token_url, ok) in cases {
        let mut key = serde_json::json!({"type": "service_account", "client_email": "a@p.iam"});
        if let Some(uri) = token_uri {
            key["token_uri"] = serde_json::json!(uri);
        }
        let mut gcp = serde_json::json!({
            "project": "p", "serviceAccountKeySecretRef": {"name": "gcp", "key": "key.json"},
        });
        if let Some(url) = token_url {
            gcp["tokenUrl"] = serde_json::json!(url);
        }
        let vertex = serde_json::json!({
            "name": "v", "api": "VertexAI", "region": "us-east5", "gcp": gcp,
            "models": [{"name": "m", "inputPerMillion": "1", "outputPerMillion": "2"}],
        });
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "gcp", "namespace": "ns",
                         "labels": {SECRET_OPT_IN_LABEL: "true"}},
            "stringData": {"key.json": key.to_string()},
        }))
        .unwrap();
        let pools = [pool("p", serde_json::json!([vertex]))];
        let out = run(&pools, &[], &[secret], &[]);
        let accepted = &out.pools[&pool_key("p")].accepted;
        assert_eq!(
            accepted.is_empty(),
            ok,
            "{token_uri:?} {token_url:?}: {accepted:?}"
        );
        if !ok {
            assert_eq!(accepted[0].reason, reasons::INVALID_PROVIDER);
            assert!(
                accepted[0].message.contains("service account key"),
                "{accepted:?}"
            );
            assert!(
                !accepted[0].message.contains("client_email"),
                "no key content"
            );
        }
    }
}
