//! Leases end to end (docs/reference/operator.md#leases): sidecars whose table holds a budget
//! post reports over real HTTPS and get their share of each limit in the answer.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;
use switchyard_crds::report::{Amounts, BudgetUsage, Report, ReportAnswer};
use switchyard_crds::table::{self, RouteTable};
use switchyard_crds::v1alpha1::{BudgetMode, WhenUnreachable};
use switchyard_crds::window::{Period, Timestamp};
use switchyard_operator::config_server::leases::{Durable, DurableTotals, LEASE_TTL};
use switchyard_operator::leader::Leadership;
use tokio::sync::watch;

use support::*;

const LIMIT: u64 = 1_000;
const BUDGET: &str = "team-a/cap";
/// Calendar months: no window boundary falls within a test run except at a month's end.
const PERIOD: &str = "Month";

/// team-a's table with one budget: [`LIMIT`] requests a month.
fn team_a_with_budget() -> Arc<RouteTable> {
    let budget = table::Budget {
        namespace: "team-a".into(),
        name: "cap".into(),
        routes: vec![],
        providers: vec![],
        limits: vec![table::BudgetLimit {
            period: PERIOD.into(),
            usd_micros: None,
            requests: Some(LIMIT),
            tokens: None,
        }],
        mode: BudgetMode::Enforce,
        when_unreachable: WhenUnreachable::LastShare,
        kind: table::BudgetKind::Budget,
    };
    let table = (*team_a_v1())
        .clone()
        .with_budgets(BTreeMap::from([(budget.id(), budget)]));
    Arc::new(table)
}

/// team-a's table with provider `pool/a`'s fleet-wide limit of [`LIMIT`] requests a minute
/// (as the compiler writes it for `limits.scope: Fleet`) and no Budget.
fn team_a_with_fleet_limit() -> Arc<RouteTable> {
    let fleet = table::Budget {
        namespace: "team-a".into(),
        name: "pool/a".into(),
        routes: vec![],
        providers: vec!["pool/a".into()],
        limits: vec![table::BudgetLimit {
            period: "1m".into(),
            usd_micros: None,
            requests: Some(LIMIT),
            tokens: None,
        }],
        mode: BudgetMode::Enforce,
        when_unreachable: WhenUnreachable::LastShare,
        kind: table::BudgetKind::FleetLimit,
    };
    let table = (*team_a_v1())
        .clone()
        .with_budgets(BTreeMap::from([(fleet.id(), fleet)]));
    Arc::new(table)
}

/// Three team-a pods (`a0`, `a1`, `a2`) sharing the budget's table; team-b's has none.
async fn start_budgeted(leadership: Leadership) -> Harness {
    start_sharing(leadership, team_a_with_budget()).await
}

/// Three team-a pods (`a0`, `a1`, `a2`) sharing `table`.
async fn start_sharing(leadership: Leadership, table: Arc<RouteTable>) -> Harness {
    let mut script = scripted_reviews();
    let mut snap = snapshot(table);
    for i in 0..3 {
        script.insert(
            format!("tok-a{i}"),
            bound_status("team-a", &format!("chat-{i}"), &format!("uid-a{i}")),
        );
        snap.pods.insert(
            format!("uid-a{i}"),
            pod("team-a", &format!("chat-{i}"), true),
        );
    }
    start_from(leadership, script, snap).await
}

fn window_start() -> i64 {
    let window = Period::parse(PERIOD)
        .unwrap()
        .window(Timestamp::now())
        .unwrap();
    window.start.as_second()
}

fn usage(requests: u64, holds: Option<u64>) -> BudgetUsage {
    BudgetUsage {
        budget: BUDGET.into(),
        limit: 0,
        period: PERIOD.into(),
        window_start: window_start(),
        used: Amounts {
            usd_micros: Some(0),
            requests: Some(requests),
            tokens: Some(0),
        },
        holds: holds.map(|requests| Amounts {
            requests: Some(requests),
            ..Amounts::default()
        }),
        refused: 0,
    }
}

/// Posts a report as the pod of `token`; the answer's status and body.
async fn post(h: &Harness, token: &str, budgets: Vec<BudgetUsage>) -> (StatusCode, Vec<u8>) {
    let report = Report {
        instance: format!("{token}/2026-01-01T00:00:00Z"),
        table_version: "v".into(),
        targets: vec![],
        budgets,
        routes: vec![],
    };
    let auth = format!("Bearer {token}");
    let answer = h
        .call(
            Method::POST,
            "/v1/report",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            &serde_json::to_string(&report).unwrap(),
        )
        .await;
    (answer.status, answer.body.to_vec())
}

/// Posts `requests` used (and what the sidecar holds) and returns its request allowance,
/// checking the lease's shape on the way.
async fn lease(h: &Harness, token: &str, requests: u64, holds: Option<u64>) -> u64 {
    let before = Timestamp::now().as_millisecond();
    let (status, body) = post(h, token, vec![usage(requests, holds)]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: ReportAnswer = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer.leases.len(),
        1,
        "one per (budget, limit) of the table"
    );
    let lease = &answer.leases[0];
    assert_eq!(
        (lease.budget.as_str(), lease.limit, lease.period.as_str()),
        (BUDGET, 0, PERIOD)
    );
    assert_eq!(lease.window_start, window_start(), "the operator's window");
    assert!(lease.window_end > lease.window_start);
    let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap();
    let after = Timestamp::now().as_millisecond();
    assert!(
        (before + ttl..=after + ttl).contains(&lease.expires_at_ms),
        "expires LEASE_TTL from now"
    );
    assert_eq!(
        (lease.allowance.usd_micros, lease.allowance.tokens),
        (None, None),
        "only the units the limit caps"
    );
    lease.allowance.requests.unwrap()
}

#[tokio::test]
async fn pods_sharing_a_budget_get_leases_that_fit_the_limit_and_follow_demand() {
    let h = start_budgeted(Leadership::always()).await;
    h.server.end_lease_learning();
    let tokens = ["tok-a0", "tok-a1", "tok-a2"];
    // a0 is busy, a1 and a2 barely: each uses what it would, within what it holds.
    let wants = [100, 3, 3];
    let mut used = [0u64; 3];
    let mut allowance = [0u64; 3];
    for round in 0..6 {
        for i in 0..3 {
            allowance[i] = lease(&h, tokens[i], used[i], None).await;
            let total: u64 = allowance.iter().sum();
            assert!(total <= LIMIT, "round {round}: {allowance:?}");
            used[i] += wants[i].min(allowance[i] - used[i]);
        }
    }
    let grants: Vec<u64> = (0..3).map(|i| allowance[i] - used[i]).collect();
    assert!(
        grants[0] > 2 * grants[1] && grants[0] > 2 * grants[2],
        "the busy pod gets more: {grants:?}"
    );
    assert!(
        grants[1] > 0 && grants[2] > 0,
        "the others keep a floor: {grants:?}"
    );
}

#[tokio::test]
async fn a_pod_whose_table_has_no_budget_gets_204() {
    let h = start_budgeted(Leadership::always()).await;
    h.server.end_lease_learning();
    // team-b's table has no budget, whatever its report says.
    let (status, body) = post(&h, "tok-b", vec![usage(5, None)]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    // The same report from a budgeted pod is answered with its lease.
    let (status, body) = post(&h, "tok-a0", vec![usage(5, None)]).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["leases"][0]["allowance"]["requests"], LIMIT);
}

#[tokio::test]
async fn a_new_term_learns_what_sidecars_hold_before_dividing() {
    let (tx, rx) = watch::channel(true);
    let h = start_budgeted(Leadership::from_receiver(rx)).await;
    // A new leader echoes what the sidecar says it holds, even with the whole limit unused...
    assert_eq!(lease(&h, "tok-a0", 100, Some(300)).await, 300);
    // ...and hands a sidecar that holds nothing the floor only: (1000 − 100)·0.1/2.
    assert_eq!(lease(&h, "tok-a1", 0, None).await, 45);
    h.server.end_lease_learning();
    assert!(
        lease(&h, "tok-a0", 100, Some(300)).await > 300,
        "divides once learnt"
    );

    // Leadership lost and won again: whatever was granted meanwhile is unknown, learn again.
    tx.send_replace(false);
    tx.send_replace(true);
    assert_eq!(lease(&h, "tok-a0", 100, Some(250)).await, 250);
}

#[tokio::test]
async fn a_new_leader_resumes_counting_from_budget_status() {
    let (tx, rx) = watch::channel(true);
    let h = start_budgeted(Leadership::from_receiver(rx)).await;
    assert_eq!(
        lease(&h, "tok-a0", 100, None).await,
        100 + 90,
        "learning: the floor"
    );
    // Another replica led meanwhile, and its status says the fleet used 900 this month; then
    // this one leads again.
    tx.send_replace(false);
    let mut snap = (*h.tables.current()).clone();
    snap.durable = Arc::new(DurableTotals::from([(
        (BUDGET.to_string(), 0),
        Durable {
            period: PERIOD.into(),
            window_start: Timestamp::from_second(window_start()).unwrap(),
            used: [0, 900, 0],
        },
    )]));
    h.tables.publish(snap);
    tx.send_replace(true);
    h.server.end_lease_learning();
    // a0 reports the 100 it used (part of the 900): only 100 are left, not 800.
    assert_eq!(lease(&h, "tok-a0", 100, None).await, 100 + 100);
    let totals = h.server.budget_totals();
    let limit = &totals[&(BUDGET.to_string(), 0)];
    assert_eq!(limit.used, [0, 900, 0], "the status total, not 900 + 100");
    assert_eq!((limit.reporting, limit.leased), (1, 1));
}

/// Waits until the current minute has at least 20 s left. A fleet limit counts per minute
/// aligned to the epoch: a test that crossed a minute boundary would see every count start
/// again. 20 s is far more than the test takes.
async fn wait_for_room_in_the_minute() {
    let left = Period::parse("1m")
        .and_then(|p| p.until_next(Timestamp::now()))
        .expect("a minute window");
    if left < Duration::from_secs(20) {
        tokio::time::sleep(left + Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn pods_sharing_a_fleet_limit_get_leases_that_fit_it_and_follow_demand() {
    wait_for_room_in_the_minute().await;
    let h = start_sharing(Leadership::always(), team_a_with_fleet_limit()).await;
    h.server.end_lease_learning();
    let minute = Period::parse("1m").unwrap();
    let tokens = ["tok-a0", "tok-a1", "tok-a2"];
    let wants = [100, 3, 3];
    let mut used = [0u64; 3];
    let mut allowance = [0u64; 3];
    for round in 0..6 {
        for i in 0..3 {
            // The operator decides the window by its own clock; the report names the same
            // minute, since the test started with 20 s of it left.
            let window_start = minute.window(Timestamp::now()).unwrap().start.as_second();
            let report = BudgetUsage {
                budget: "team-a/pool/a".into(),
                period: "1m".into(),
                window_start,
                ..usage(used[i], None)
            };
            let (status, body) = post(&h, tokens[i], vec![report]).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let answer: ReportAnswer = serde_json::from_slice(&body).unwrap();
            assert_eq!(answer.leases.len(), 1);
            let lease = &answer.leases[0];
            assert_eq!(
                (lease.budget.as_str(), lease.period.as_str()),
                ("team-a/pool/a", "1m")
            );
            assert_eq!(
                lease.window_start, window_start,
                "round {round}: the minute the report names"
            );
            allowance[i] = lease.allowance.requests.unwrap();
            let total: u64 = allowance.iter().sum();
            assert!(total <= LIMIT, "round {round}: {allowance:?}");
            used[i] += wants[i].min(allowance[i] - used[i]);
        }
    }
    let grants: Vec<u64> = (0..3).map(|i| allowance[i] - used[i]).collect();
    assert!(
        grants[0] > 2 * grants[1] && grants[0] > 2 * grants[2],
        "the busy pod gets more: {grants:?}"
    );
    assert!(
        grants[1] > 0 && grants[2] > 0,
        "the others keep a floor: {grants:?}"
    );
}
