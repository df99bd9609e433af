//! The config server end to end, in process: real HTTPS on loopback with the generated CA, and a
//! real `kube::Client` talking to a fake apiserver that answers TokenReviews as scripted.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use switchyard_crds::report::{LATENCY_BUCKETS_MS, Report, TargetReport};
use switchyard_crds::table::RouteTable;
use switchyard_operator::leader::Leadership;
use tokio::time::Instant;

use support::*;

#[tokio::test]
async fn a_bound_token_gets_its_pods_table() {
    let h = start().await;
    let answer = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let expected = team_a_v1();
    assert_eq!(answer.headers["etag"], format!("\"{}\"", expected.version));
    assert_eq!(answer.headers["cache-control"], "no-store");
    let served: RouteTable = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(&served, expected.as_ref());
}

#[tokio::test]
async fn each_namespace_sees_only_its_own_table() {
    let h = start().await;
    let a = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await
        .json();
    let b = h
        .get("/v1/config", &[("authorization", "Bearer tok-b")])
        .await
        .json();
    assert_eq!(
        a["routes"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["gpt"]
    );
    assert_eq!(
        b["routes"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["claude"]
    );
    assert!(
        !b.to_string().contains("pool-a"),
        "no trace of team-a's table"
    );
}

#[tokio::test]
async fn a_pod_without_routes_gets_an_empty_table() {
    let h = start().await;
    let mut snap = snapshot(team_a_v1());
    snap.tables
        .remove(&pod("team-a", "chat-0", true).audience());
    h.tables.publish(snap);
    let answer = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["routes"], json!({}));
}

#[tokio::test]
async fn an_unchanged_table_long_polls_then_answers_304() {
    let h = start().await;
    let version = team_a_v1().version.clone();
    let etag = format!("\"{version}\"");
    let started = Instant::now();
    let answer = h
        .get(
            "/v1/config?wait=200ms",
            &[("authorization", "Bearer tok-a"), ("if-none-match", &etag)],
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    assert_eq!(answer.headers["etag"], etag);
    assert!(
        waited >= Duration::from_millis(200),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_millis(1_000), "waited {waited:?}");

    // `?version=` is an alias, and a stale version answers at once.
    let started = Instant::now();
    let stale = h
        .get(
            "/v1/config?version=0000&wait=5s",
            &[("authorization", "Bearer tok-a")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_change_mid_wait_answers_at_once() {
    let h = Arc::new(start().await);
    let etag = format!("\"{}\"", team_a_v1().version);
    let waiter = {
        let h = h.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = h
                .get(
                    "/v1/config?wait=10s",
                    &[("authorization", "Bearer tok-a"), ("if-none-match", &etag)],
                )
                .await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.metrics.config.long_polls.get(), 1);
    // A change to another namespace's table does not wake team-a with a 200.
    let mut snap = snapshot(team_a_v1());
    snap.tables.insert(
        pod("team-b", "chat-0", true).audience(),
        table("team-b", "other", "pool-b/anthropic", "claude-haiku"),
    );
    h.tables.publish(snap);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());

    let v2 = table("team-a", "gpt", "pool-a/openai", "gpt-4.1");
    h.tables.publish(snapshot(v2.clone()));
    let (answer, waited) = waiter.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["etag"], format!("\"{}\"", v2.version));
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
    assert_eq!(h.metrics.config.long_polls.get(), 0);
}

#[tokio::test]
async fn a_sidecar_with_too_old_a_schema_gets_409() {
    let h = start().await;
    let answer = h
        .get(
            "/v1/config",
            &[
                ("authorization", "Bearer tok-a"),
                ("x-switchyard-table-schema", "0"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("upgrade the sidecar")
    );
    let current = h
        .get(
            "/v1/config",
            &[
                ("authorization", "Bearer tok-a"),
                ("x-switchyard-table-schema", "1"),
            ],
        )
        .await;
    assert_eq!(current.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_tokens_get_401() {
    let h = start().await;
    let cases: [(&str, &[(&str, &str)]); 7] = [
        ("missing", &[]),
        ("not bearer", &[("authorization", "Basic dXNlcjpwYXNz")]),
        ("garbage", &[("authorization", "Bearer garbage")]),
        (
            "wrong audience",
            &[("authorization", "Bearer tok-wrong-audience")],
        ),
        ("unbound", &[("authorization", "Bearer tok-unbound")]),
        (
            "unknown uid",
            &[("authorization", "Bearer tok-unknown-uid")],
        ),
        (
            "not injected",
            &[("authorization", "Bearer tok-not-injected")],
        ),
    ];
    for (case, headers) in cases {
        let answer = h.get("/v1/config", headers).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{case}");
        assert!(answer.json()["error"].is_string(), "{case}: JSON error");
    }
    let text = h.metrics.render();
    assert!(
        text.contains("switchyard_config_responses_total{code=\"401\"} 7"),
        "{text}"
    );
}

#[tokio::test]
async fn reviews_are_cached_per_token() {
    let h = start().await;
    let token = format!("Bearer {}", hour_jwt());
    for _ in 0..3 {
        let answer = h.get("/v1/config", &[("authorization", &token)]).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(
        h.reviews.load(Ordering::SeqCst),
        1,
        "one TokenReview for three requests"
    );
    h.get("/v1/config", &[("authorization", "Bearer tok-b")])
        .await;
    assert_eq!(
        h.reviews.load(Ordering::SeqCst),
        2,
        "another token is reviewed"
    );

    // The pod check is not cached: a pod that loses its injected label loses access at once.
    let mut snap = snapshot(team_a_v1());
    snap.pods.get_mut("uid-a").unwrap().injected = false;
    h.tables.publish(snap);
    let answer = h.get("/v1/config", &[("authorization", &token)]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.reviews.load(Ordering::SeqCst), 2);
}

fn target(
    provider: &str,
    model: &str,
    successes: u64,
    errors: u64,
    tokens: u64,
    circuit_open: bool,
) -> TargetReport {
    let mut latency_buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
    latency_buckets[3] = successes + errors; // 500 ms
    TargetReport {
        provider: provider.into(),
        model: model.into(),
        outcomes: BTreeMap::from([
            ("Success".to_string(), successes),
            ("RateLimited".to_string(), errors),
        ]),
        input_tokens: tokens,
        cached_input_tokens: 0,
        output_tokens: tokens,
        cost_usd: 0.01 * successes as f64,
        circuit_open,
        latency_buckets,
    }
}

#[tokio::test]
async fn reports_become_windowed_deltas_for_the_pods_own_targets() {
    let h = start().await;
    let post = |report: Report| {
        let h = &h;
        async move {
            let body = serde_json::to_string(&report).unwrap();
            h.call(
                Method::POST,
                "/v1/report",
                &[
                    ("authorization", "Bearer tok-a"),
                    ("content-type", "application/json"),
                ],
                &body,
            )
            .await
        }
    };
    let report = |targets| Report {
        instance: started_now("uid-a"),
        table_version: team_a_v1().version.clone(),
        targets,
        budgets: vec![],
        routes: vec![],
    };
    let first = post(report(vec![
        target("pool-a/openai", "gpt-4o", 10, 2, 100, false),
        // team-b's target: not in team-a's table, dropped.
        target("pool-b/anthropic", "claude-sonnet-4", 99, 0, 999, false),
    ]))
    .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    // A version the pod had not reported before wakes the controller to recount inSync.
    tokio::time::timeout(
        Duration::from_secs(1),
        h.server.versions_reported().notified(),
    )
    .await
    .expect("the controller is told");
    post(report(vec![target(
        "pool-a/openai",
        "gpt-4o",
        15,
        3,
        150,
        true,
    )]))
    .await;
    // A restart: counters lower than before count as they are.
    post(report(vec![target(
        "pool-a/openai",
        "gpt-4o",
        1,
        0,
        10,
        true,
    )]))
    .await;

    let windows = h.server.report_windows();
    assert_eq!(windows.len(), 1, "{windows:?}");
    let (key, stats) = windows.iter().next().unwrap();
    assert_eq!(
        (
            key.namespace.as_str(),
            key.provider.as_str(),
            key.model.as_str()
        ),
        ("team-a", "pool-a/openai", "gpt-4o")
    );
    assert_eq!(stats.requests, 18 + 1);
    assert_eq!(stats.errors, 3);
    assert_eq!(stats.input_tokens, 160);
    assert_eq!(stats.p50_latency_ms(), Some(500));
    assert_eq!((stats.sidecars, stats.circuit_open_sidecars), (1, 1));

    let unauthenticated = h.call(Method::POST, "/v1/report", &[], "{}").await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let invalid = h
        .call(
            Method::POST,
            "/v1/report",
            &[("authorization", "Bearer tok-a")],
            "{not json",
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert!(
        h.metrics
            .render()
            .contains("switchyard_config_reports_total{outcome=\"accepted\"} 3")
    );
}

#[tokio::test]
async fn shutting_down_answers_waiting_polls_at_once_and_refuses_new_ones() {
    let h = Arc::new(start().await);
    let etag = format!("\"{}\"", team_a_v1().version);
    let waiting = {
        let h = h.clone();
        let etag = etag.clone();
        tokio::spawn(async move {
            let headers = [
                ("authorization", "Bearer tok-a"),
                ("if-none-match", etag.as_str()),
            ];
            h.get("/v1/config?wait=30s", &headers).await
        })
    };
    while h.metrics.config.long_polls.get() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    h.server.drain();
    let answer = waiting.await.unwrap();
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    assert_eq!(answer.headers["etag"], etag);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    let refused = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn only_the_leader_serves() {
    let (leading, rx) = tokio::sync::watch::channel(false);
    let h = start_with(Leadership::from_receiver(rx)).await;
    let follower = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await;
    assert_eq!(follower.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        h.reviews.load(Ordering::SeqCst),
        0,
        "a follower reviews no token"
    );
    leading.send_replace(true);
    let leader = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await;
    assert_eq!(leader.status, StatusCode::OK);
}

/// A snapshot whose two pods belong to named workloads: team-a's `chat-0` to Deployment `chat`
/// (route `gpt`), team-b's to StatefulSet `batch` (route `claude`).
fn workload_snapshot() -> switchyard_operator::config_server::tables::Snapshot {
    let mut snap = snapshot(team_a_v1());
    let team_b = snap
        .tables
        .values()
        .find(|t| t.routes.contains_key("claude"))
        .unwrap()
        .clone();
    let mut a = snap.pods["uid-a"].clone();
    a.workload.kind = "Deployment".into();
    a.workload.name = "chat".into();
    let mut b = snap.pods["uid-b"].clone();
    b.workload.kind = "StatefulSet".into();
    b.workload.name = "batch".into();
    snap.tables = [(a.audience(), team_a_v1()), (b.audience(), team_b)].into();
    snap.pods.insert("uid-a".into(), a);
    snap.pods.insert("uid-b".into(), b);
    snap
}

/// The operator's `/metrics`, over real HTTP from its admin server on loopback.
async fn scrape(metrics: &switchyard_operator::metrics::Metrics) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = switchyard_operator::admin::AdminState {
        metrics: metrics.clone(),
        ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    tokio::spawn(switchyard_operator::admin::serve(listener, state));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

#[tokio::test]
async fn route_spend_is_exported_per_workload_and_a_pod_cannot_spend_for_another() {
    let h = start_from(
        Leadership::always(),
        scripted_reviews(),
        workload_snapshot(),
    )
    .await;
    let post = |token: &'static str, body: serde_json::Value| {
        let h = &h;
        async move {
            let auth = format!("Bearer {token}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            h.call(Method::POST, "/v1/report", &headers, &body.to_string())
                .await
        }
    };
    let route = |name: &str, requests: u64, cost: f64| {
        json!({"route": name, "requests": requests, "inputTokens": requests * 100,
               "cachedInputTokens": 0, "outputTokens": requests * 10, "costUsd": cost})
    };
    let report = |instance: &str, routes: Vec<serde_json::Value>| {
        // `workload` is not part of the protocol: whatever a report says, the operator
        // attributes by the pod it authenticated.
        json!({"instance": started_now(instance), "tableVersion": "v", "targets": [], "routes": routes,
               "workload": {"namespace": "team-b", "kind": "StatefulSet", "name": "batch",
                            "serviceAccount": "default"}})
    };
    // team-a's pod also claims team-b's route: not in its table, dropped.
    let first = post(
        "tok-a",
        report(
            "a-1",
            vec![route("gpt", 3, 0.25), route("claude", 100, 50.0)],
        ),
    )
    .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    // Cumulative: 2 more requests, 0.25 more dollars.
    post("tok-a", report("a-1", vec![route("gpt", 5, 0.5)])).await;
    // A restarted sidecar (new instance) counts from zero again.
    post("tok-a", report("a-2", vec![route("gpt", 1, 0.125)])).await;
    post("tok-b", report("b-1", vec![route("claude", 2, 0.75)])).await;

    let text = scrape(&h.metrics).await;
    for line in [
        r#"switchyard_workload_cost_usd_total{namespace="team-a",route="gpt",workload="Deployment/chat"} 0.625"#,
        r#"switchyard_workload_requests_total{namespace="team-a",route="gpt",workload="Deployment/chat"} 6"#,
        r#"switchyard_workload_tokens_total{direction="input",namespace="team-a",route="gpt",workload="Deployment/chat"} 600"#,
        r#"switchyard_workload_tokens_total{direction="output",namespace="team-a",route="gpt",workload="Deployment/chat"} 60"#,
        r#"switchyard_workload_cost_usd_total{namespace="team-b",route="claude",workload="StatefulSet/batch"} 0.75"#,
        r#"switchyard_workload_requests_total{namespace="team-b",route="claude",workload="StatefulSet/batch"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let workload_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("switchyard_workload_"))
        .collect();
    assert_eq!(
        workload_lines.len(),
        2 * 5,
        "two series sets only: {workload_lines:#?}"
    );
    assert!(
        !workload_lines
            .iter()
            .any(|l| l.contains("chat-0") || l.contains("uid-")),
        "no pod in any label"
    );

    // The route window for ModelRoute status.
    let windows = h.server.route_windows();
    let gpt = windows
        .iter()
        .find(|(k, _)| k.namespace == "team-a" && k.route == "gpt")
        .map(|(_, s)| s.clone())
        .unwrap();
    assert_eq!(gpt.requests, 6);
    assert!(
        !windows
            .keys()
            .any(|k| k.namespace == "team-a" && k.route == "claude")
    );
}

/// `requests_total` of team-a's `gpt` route for `Deployment/chat`, if the series exists.
async fn chat_gpt_requests(h: &Harness) -> Option<String> {
    let text = scrape(&h.metrics).await;
    let series = r#"switchyard_workload_requests_total{namespace="team-a",route="gpt",workload="Deployment/chat"} "#;
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .map(str::to_string)
}

#[tokio::test]
async fn lifetime_totals_are_a_baseline_after_a_restart_or_a_new_term() {
    let (tx, rx) = tokio::sync::watch::channel(true);
    let h = start_from(
        Leadership::from_receiver(rx),
        scripted_reviews(),
        workload_snapshot(),
    )
    .await;
    let post = |instance: String, requests: u64| {
        let h = &h;
        let body = json!({"instance": instance, "tableVersion": "v", "targets": [],
            "routes": [{"route": "gpt", "requests": requests, "inputTokens": 0,
                        "cachedInputTokens": 0, "outputTokens": 0, "costUsd": 0.0}]});
        async move {
            let headers = [
                ("authorization", "Bearer tok-a"),
                ("content-type", "application/json"),
            ];
            let answer = h
                .call(Method::POST, "/v1/report", &headers, &body.to_string())
                .await;
            assert_eq!(answer.status, StatusCode::NO_CONTENT);
        }
    };
    let gpt_window = || {
        h.server
            .route_windows()
            .into_iter()
            .find(|(k, _)| k.namespace == "team-a" && k.route == "gpt")
            .map(|(_, s)| s.requests)
    };
    // A sidecar that has run for an hour when this operator starts: what it did before is not
    // "the last 5 minutes".
    let now = switchyard_crds::window::Timestamp::now().as_second();
    let old = format!("uid-a-{}", now - 3600);
    post(old.clone(), 50).await;
    assert_eq!(gpt_window(), None);
    assert_eq!(chat_gpt_requests(&h).await, None);
    post(old.clone(), 53).await;
    assert_eq!(gpt_window(), Some(3));
    assert_eq!(chat_gpt_requests(&h).await.as_deref(), Some("3"));

    // Another replica leads for a while and counts what the sidecar does meanwhile; then this
    // one leads again and must not count it a second time.
    tx.send_replace(false);
    tx.send_replace(true);
    post(old.clone(), 60).await;
    assert_eq!(
        gpt_window(),
        None,
        "a new term's first report is a baseline"
    );
    assert_eq!(
        chat_gpt_requests(&h).await,
        None,
        "the last term's series are gone"
    );
    post(old, 62).await;
    assert_eq!(gpt_window(), Some(2));
    assert_eq!(chat_gpt_requests(&h).await.as_deref(), Some("2"));
}

/// A period whose windows are about 45 years long (the longest duration the format allows): no
/// window boundary falls inside a test run, whatever the wall clock says.
const LONG_PERIOD: &str = "99999h99999h99999h99999h";

#[tokio::test]
async fn budget_spend_is_ranked_by_the_workload_of_each_reporting_pod() {
    use switchyard_crds::report::{Amounts, BudgetUsage};
    use switchyard_crds::table;
    use switchyard_crds::v1alpha1::{BudgetMode, WhenUnreachable};
    use switchyard_crds::window::{Period, Timestamp};

    let budget = table::Budget {
        namespace: "team-a".into(),
        name: "cap".into(),
        routes: vec![],
        providers: vec![],
        limits: vec![table::BudgetLimit {
            period: LONG_PERIOD.into(),
            usd_micros: Some(100_000_000),
            requests: None,
            tokens: None,
        }],
        mode: BudgetMode::Enforce,
        when_unreachable: WhenUnreachable::LastShare,
        kind: table::BudgetKind::Budget,
    };
    let budgeted = Arc::new(
        (*team_a_v1())
            .clone()
            .with_budgets(BTreeMap::from([(budget.id(), budget)])),
    );
    // team-a's chat-0 (Deployment chat) and nightly-0 (CronJob nightly) share the budget.
    let mut snap = workload_snapshot();
    let chat = snap.pods["uid-a"].clone();
    let mut nightly = chat.clone();
    nightly.name = "nightly-0".into();
    nightly.workload.kind = "CronJob".into();
    nightly.workload.name = "nightly".into();
    snap.tables.insert(chat.audience(), budgeted.clone());
    snap.tables.insert(nightly.audience(), budgeted);
    snap.pods.insert("uid-n".into(), nightly);
    let mut script = scripted_reviews();
    script.insert("tok-n".into(), bound_status("team-a", "nightly-0", "uid-n"));
    let h = start_from(Leadership::always(), script, snap).await;

    let window = Period::parse(LONG_PERIOD)
        .unwrap()
        .window(Timestamp::now())
        .unwrap();
    let post = |token: &'static str, instance: &'static str, usd_micros: u64, requests: u64| {
        let h = &h;
        let report = Report {
            instance: instance.into(),
            table_version: "v".into(),
            budgets: vec![BudgetUsage {
                budget: "team-a/cap".into(),
                limit: 0,
                period: LONG_PERIOD.into(),
                window_start: window.start.as_second(),
                used: Amounts {
                    usd_micros: Some(usd_micros),
                    requests: Some(requests),
                    tokens: Some(0),
                },
                holds: None,
                refused: 0,
            }],
            ..Report::default()
        };
        async move {
            let auth = format!("Bearer {token}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let body = serde_json::to_string(&report).unwrap();
            h.call(Method::POST, "/v1/report", &headers, &body).await
        }
    };
    assert_eq!(
        post("tok-a", "a-1", 1_500_000, 30).await.status,
        StatusCode::OK
    );
    // A restarted chat sidecar is another holder of the same workload: their use adds up.
    assert_eq!(
        post("tok-a", "a-2", 1_000_000, 10).await.status,
        StatusCode::OK
    );
    assert_eq!(
        post("tok-n", "n-1", 2_000_000, 5).await.status,
        StatusCode::OK
    );

    let top = h.server.top_workloads();
    let (counted, spenders) = &top[&("team-a/cap".to_string(), 0)];
    assert_eq!(*counted, window);
    let ranked: Vec<(&str, &str, u64)> = spenders
        .iter()
        .map(|s| (s.workload.as_str(), s.usd.0.as_str(), s.requests))
        .collect();
    assert_eq!(
        ranked,
        [
            ("team-a/Deployment/chat", "2.50", 40),
            ("team-a/CronJob/nightly", "2.00", 5),
        ]
    );
}
