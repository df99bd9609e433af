use k8s_openapi::jiff::Timestamp;
use switchyard_crds::compile::{Kind, ObjectKey};

use super::*;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn problem(reason: &'static str, field: &str, message: &str) -> Problem {
    Problem {
        object: ObjectKey {
            kind: Kind::ModelRoute,
            namespace: "ns".into(),
            name: "r".into(),
        },
        field: field.into(),
        reason,
        message: message.into(),
    }
}

fn sidecars(n: u32) -> SidecarSummary {
    SidecarSummary {
        selected: n,
        in_sync: 0,
        summary: format!("0/{n}"),
    }
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions.iter().find(|c| c.type_ == type_).unwrap()
}

#[test]
fn a_good_route_is_ready() {
    let outcome = RouteOutcome {
        target_count: 2,
        generation: Some(3),
        ..RouteOutcome::default()
    };
    let status = route_status(&outcome, sidecars(4), true, None, at(100));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.target_count, Some(2));
    assert_eq!(status.sidecars, Some(sidecars(4)));
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Accepted", "ResolvedRefs", "Programmed", "Ready"]);
    for c in &status.conditions {
        assert_eq!(c.status, "True", "{c:?}");
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(c.last_transition_time, at(100));
    }
}

#[test]
fn problems_name_what_is_missing() {
    let outcome = RouteOutcome {
        resolved_refs: vec![problem(
            reasons::BACKEND_NOT_FOUND,
            "spec.targets[0].pool",
            "pool missing-pool does not exist",
        )],
        ..RouteOutcome::default()
    };
    let status = route_status(&outcome, sidecars(0), false, None, at(1));
    let resolved = condition(&status.conditions, types::RESOLVED_REFS);
    assert_eq!(resolved.status, "False");
    assert_eq!(resolved.reason, "BackendNotFound");
    assert!(
        resolved.message.contains("missing-pool"),
        "{}",
        resolved.message
    );
    assert!(resolved.message.contains("spec.targets[0].pool"));
    let ready = condition(&status.conditions, types::READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reason::NOT_READY);
    assert_eq!(
        condition(&status.conditions, types::PROGRAMMED).reason,
        reason::PENDING
    );
}

#[test]
fn a_conflicted_route_is_not_accepted() {
    let outcome = RouteOutcome {
        accepted: vec![
            problem(reasons::INVALID, "spec.rules[0]", "bad"),
            problem(
                reasons::CONFLICTED,
                "spec.model",
                "route other serves this model",
            ),
        ],
        ..RouteOutcome::default()
    };
    let status = route_status(&outcome, sidecars(0), false, None, at(1));
    let accepted = condition(&status.conditions, types::ACCEPTED);
    assert_eq!(accepted.status, "False");
    assert_eq!(accepted.reason, "Conflicted");
    assert!(accepted.message.contains("route other"));
}

#[test]
fn unchanged_conditions_keep_their_transition_time() {
    let good = RouteOutcome::default();
    let first = route_status(&good, sidecars(1), false, None, at(10));
    let second = route_status(&good, sidecars(1), true, Some(&first), at(20));
    assert_eq!(
        condition(&second.conditions, types::ACCEPTED).last_transition_time,
        at(10)
    );
    assert_eq!(
        condition(&second.conditions, types::PROGRAMMED).last_transition_time,
        at(20)
    );
    assert_eq!(
        condition(&second.conditions, types::READY).last_transition_time,
        at(20)
    );

    let third = route_status(&good, sidecars(1), true, Some(&second), at(30));
    assert_eq!(third, second, "nothing changed, not even the times");
}

#[test]
fn same_ignoring_time_ignores_only_transition_times() {
    let good = RouteOutcome::default();
    let a = route_status(&good, sidecars(1), true, None, at(10));
    let b = route_status(&good, sidecars(1), true, None, at(99));
    assert_ne!(a, b);
    assert!(same_ignoring_time(&a, &b));
    let c = route_status(&good, sidecars(2), true, None, at(10));
    assert!(!same_ignoring_time(&a, &c));
    let d = route_status(&good, sidecars(1), false, None, at(10));
    assert!(!same_ignoring_time(&a, &d));
}

#[test]
fn pool_conditions_and_summary() {
    let outcome = PoolOutcome {
        resolved_refs: vec![problem(
            reasons::SECRET_NOT_OPTED_IN,
            "spec.providers[0].apiKey",
            "Secret keys lacks the label switchyard.dev/provider-key=true",
        )],
        ..PoolOutcome::default()
    };
    let providers = vec![provider_status("a", &[]), provider_status("b", &[])];
    let status = pool_status(&outcome, providers, Some(2), None, at(5));
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Accepted", "ResolvedRefs", "Ready"]);
    let resolved = condition(&status.conditions, types::RESOLVED_REFS);
    assert_eq!(resolved.reason, "SecretNotOptedIn");
    assert!(resolved.message.contains("Secret keys"));
    assert_eq!(condition(&status.conditions, types::READY).status, "False");
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.summary.as_deref(), Some("2/2 healthy"));
}

fn stats(requests: u64, errors: u64, sidecars: u32, open: u32) -> WindowStats {
    WindowStats {
        requests,
        errors,
        input_tokens: 1_000,
        output_tokens: 234,
        cost_usd: 0.4242,
        latency_buckets: vec![0, requests, 0],
        sidecars,
        circuit_open_sidecars: open,
        ..WindowStats::default()
    }
}

#[test]
fn provider_health_follows_design() {
    let unused = provider_status("p", &[]);
    assert_eq!(unused.state, state::HEALTHY);
    assert_eq!(unused.circuit_open_sidecars, None);
    assert_eq!(unused.error_rate, None);

    let healthy = provider_status("p", &[&stats(1000, 49, 120, 0)]);
    assert_eq!(healthy.state, state::HEALTHY);
    assert_eq!(healthy.circuit_open_sidecars.as_deref(), Some("0/120"));
    assert_eq!(healthy.error_rate.as_deref(), Some("4.9%"));
    assert_eq!(healthy.tokens.as_deref(), Some("1.2k"));
    assert_eq!(healthy.cost_usd.as_deref(), Some("0.42"));
    assert!(healthy.p50_latency_ms.is_some());

    let erroring = provider_status("p", &[&stats(100, 5, 120, 0)]);
    assert_eq!(erroring.state, state::DEGRADED, "5% is degraded");

    let some_open = provider_status("p", &[&stats(100, 0, 120, 3)]);
    assert_eq!(some_open.state, state::DEGRADED);
    assert_eq!(some_open.circuit_open_sidecars.as_deref(), Some("3/120"));

    let half_open = provider_status("p", &[&stats(100, 0, 120, 60)]);
    assert_eq!(half_open.state, state::CIRCUIT_OPEN);
}

#[test]
fn provider_windows_of_several_models_add_up() {
    let a = stats(100, 10, 4, 1);
    let b = stats(100, 0, 6, 1);
    let status = provider_status("p", &[&a, &b]);
    assert_eq!(status.error_rate.as_deref(), Some("5.0%"));
    assert_eq!(status.circuit_open_sidecars.as_deref(), Some("1/6"));
    assert_eq!(status.tokens.as_deref(), Some("2.5k"));
}

// === Budget ===

/// `ns/cap`: limit 0 `Month` of 500 USD, limit 1 `1m` of 600 requests and 2000 tokens.
fn budget(status: Option<serde_json::Value>) -> Budget {
    let mut budget = serde_json::json!({
        "apiVersion": switchyard_crds::v1alpha1::API_VERSION, "kind": "Budget",
        "metadata": {"name": "cap", "namespace": "ns", "generation": 4},
        "spec": {"limits": [
            {"period": "Month", "usd": "500.00"},
            {"period": "1m", "requests": 600, "tokens": 2000},
        ]},
    });
    if let Some(status) = status {
        budget["status"] = status;
    }
    serde_json::from_value(budget).unwrap()
}

/// 2026-12-06T23:30:10Z: in the December window of `Month` and the 23:30 window of `1m`.
fn december() -> Time {
    Time("2026-12-06T23:30:10Z".parse().unwrap())
}

fn book_totals(
    entries: &[(u32, [u64; 3], u32, u32)],
    now: &Time,
) -> HashMap<(String, u32), LimitTotals> {
    let budget = budget(None);
    entries
        .iter()
        .map(|(index, used, reporting, leased)| {
            let period = budget.spec.limits[*index as usize].period().unwrap();
            (
                ("ns/cap".to_string(), *index),
                LimitTotals {
                    window: period.window(now.0).unwrap(),
                    used: *used,
                    refused: if *index == 0 { 7 } else { 3 },
                    reporting: *reporting,
                    leased: *leased,
                },
            )
        })
        .collect()
}

fn accepted() -> BudgetOutcome {
    BudgetOutcome {
        accepted: vec![],
        generation: Some(4),
    }
}

#[test]
fn budget_windows_follow_the_limits_in_their_units() {
    let now = december();
    let totals = book_totals(
        &[(0, [412_100_000, 9, 99], 3, 2), (1, [5, 120, 2_500], 3, 3)],
        &now,
    );
    let status = budget_status(&budget(None), &accepted(), &totals, 3, now);
    let json = serde_json::to_value(&status.windows).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"period": "Month", "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z",
             "used": {"usd": "412.10"}, "limit": {"usd": "500.00"}, "remaining": {"usd": "87.90"}},
            {"period": "1m", "start": "2026-12-06T23:30:00Z", "end": "2026-12-06T23:31:00Z",
             "used": {"requests": 120, "tokens": 2500}, "limit": {"requests": 600, "tokens": 2000},
             "remaining": {"requests": 480, "tokens": 0}},
        ]),
        "only the units each limit sets; remaining never below zero"
    );
    assert_eq!(
        status.summary,
        Some(BudgetSummary {
            period: "1m".into(),
            used: "2500 tokens".into(),
            limit: "2000 tokens".into(),
        }),
        "the unit nearest to running out: tokens at 125 %"
    );
    assert_eq!(
        status.sidecars,
        Some(BudgetSidecars {
            reporting: 3,
            leased: 3
        })
    );
    assert_eq!(status.observed_generation, Some(4));
    assert!(status.top_workloads.is_empty());
    assert_eq!(
        status.refused_requests,
        Some(7),
        "the Month window's refusals, not the minute's"
    );
}

#[test]
fn budget_summary_shows_dollars_and_requests_with_their_units() {
    let now = december();
    let totals = book_totals(
        &[(0, [412_100_000, 0, 0], 1, 1), (1, [0, 30, 10], 1, 1)],
        &now,
    );
    let status = budget_status(&budget(None), &accepted(), &totals, 1, now.clone());
    let summary = status.summary.unwrap();
    assert_eq!(
        (
            summary.period.as_str(),
            summary.used.as_str(),
            summary.limit.as_str()
        ),
        ("Month", "412.10 USD", "500.00 USD")
    );
    let totals = book_totals(&[(0, [0, 0, 0], 1, 1), (1, [0, 512, 10], 1, 1)], &now);
    let summary = budget_status(&budget(None), &accepted(), &totals, 1, now)
        .summary
        .unwrap();
    assert_eq!(summary.used, "512 requests");
    assert_eq!(summary.limit, "600 requests");
}

#[test]
fn a_budget_window_never_goes_below_what_status_said_of_it() {
    let now = december();
    let previous = budget_status(
        &budget(None),
        &accepted(),
        &book_totals(&[(0, [300_000_000, 0, 0], 2, 2)], &now),
        2,
        now.clone(),
    );
    let with_status = budget(Some(serde_json::to_value(&previous).unwrap()));
    // A new leader whose book has heard from one sidecar only so far.
    let fresh = book_totals(&[(0, [100_000_000, 0, 0], 1, 1)], &now);
    let status = budget_status(&with_status, &accepted(), &fresh, 2, now.clone());
    assert_eq!(status.windows[0].used.usd, Some("300.00".into()));
    // A book that counts more wins.
    let more = book_totals(&[(0, [350_000_000, 0, 0], 2, 2)], &now);
    let status = budget_status(&with_status, &accepted(), &more, 2, now);
    assert_eq!(status.windows[0].used.usd, Some("350.00".into()));
    // Next month the old total is not carried.
    let january = Time("2027-01-01T00:00:05Z".parse().unwrap());
    let status = budget_status(&with_status, &accepted(), &fresh, 2, january);
    assert_eq!(status.windows[0].used.usd, Some("0.00".into()));
    assert_eq!(status.windows[0].remaining.usd, Some("500.00".into()));
}

#[test]
fn a_book_window_other_than_the_limits_current_one_counts_nothing() {
    let now = december();
    let mut totals = book_totals(&[(1, [0, 500, 0], 1, 1)], &now);
    // The book last counted the previous minute (nobody reported since it ended).
    let stale = totals.get_mut(&("ns/cap".to_string(), 1)).unwrap();
    stale.window = Period::Fixed(std::time::Duration::from_secs(60))
        .window(Time("2026-12-06T23:29:30Z".parse().unwrap()).0)
        .unwrap();
    let status = budget_status(&budget(None), &accepted(), &totals, 1, now);
    assert_eq!(status.windows[1].used.requests, Some(0));
}

#[test]
fn an_invalid_budget_is_not_accepted_naming_the_field_nor_ready() {
    let outcome = BudgetOutcome {
        accepted: vec![problem(
            reasons::INVALID,
            "spec.limits[1].period",
            "\"Fortnight\" is not Day, Week, Month or a duration of at least 1s such as 1m or 7h",
        )],
        generation: Some(4),
    };
    let status = budget_status(&budget(None), &outcome, &HashMap::new(), 0, december());
    let accepted = condition(&status.conditions, types::ACCEPTED);
    assert_eq!(accepted.status, "False");
    assert_eq!(accepted.reason, reasons::INVALID);
    assert!(
        accepted.message.starts_with("spec.limits[1].period: "),
        "{}",
        accepted.message
    );
    let ready = condition(&status.conditions, types::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::NOT_ACCEPTED)
    );
}

#[test]
fn a_budget_is_ready_only_when_some_sidecar_holds_it() {
    let none = budget_status(&budget(None), &accepted(), &HashMap::new(), 0, december());
    assert_eq!(condition(&none.conditions, types::ACCEPTED).status, "True");
    let ready = condition(&none.conditions, types::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::NO_SIDECARS)
    );
    assert_eq!(none.sidecars, Some(BudgetSidecars::default()));
    let held = budget_status(&budget(None), &accepted(), &HashMap::new(), 2, december());
    assert_eq!(condition(&held.conditions, types::READY).status, "True");
}

#[test]
fn spend_alone_is_told_from_other_budget_changes() {
    let now = december();
    let at = |requests| {
        budget_status(
            &budget(None),
            &accepted(),
            &book_totals(&[(1, [0, requests, 0], 1, 1)], &now),
            1,
            now.clone(),
        )
    };
    assert!(same_but_spend(&at(10), &at(20)));
    assert!(!same_ignoring_time(&at(10), &at(20)));
    let not_ready = budget_status(&budget(None), &accepted(), &HashMap::new(), 0, now.clone());
    assert!(!same_but_spend(&at(10), &not_ready), "Ready changed");
    let later = Time("2026-12-06T23:31:10Z".parse().unwrap());
    let next_minute = budget_status(&budget(None), &accepted(), &HashMap::new(), 1, later);
    assert!(!same_but_spend(&at(10), &next_minute), "a new window");
}

#[test]
fn durable_totals_are_read_back_from_status_windows() {
    let now = december();
    let status = budget_status(
        &budget(None),
        &accepted(),
        &book_totals(
            &[(0, [412_100_000, 0, 0], 1, 1), (1, [0, 7, 70], 1, 1)],
            &now,
        ),
        1,
        now,
    );
    let durable = durable_totals(&[budget(Some(serde_json::to_value(&status).unwrap()))]);
    let month = &durable[&("ns/cap".to_string(), 0)];
    assert_eq!(month.period, "Month");
    assert_eq!(month.window_start, "2026-12-01T00:00:00Z".parse().unwrap());
    assert_eq!(month.used, [412_100_000, 0, 0]);
    assert_eq!(durable[&("ns/cap".to_string(), 1)].used, [0, 7, 70]);
    assert!(durable_totals(&[budget(None)]).is_empty());
}

#[test]
fn a_fleet_limit_of_a_pool_named_like_the_budget_is_not_in_its_status() {
    // `ns/cap/a` is provider `a` of pool `cap`'s fleet limit: it has no Budget object, and
    // Budget `ns/cap` must not count its use or its sidecars.
    let now = december();
    let window = Period::parse("1m").unwrap().window(now.0).unwrap();
    let fleet = HashMap::from([(
        ("ns/cap/a".to_string(), 0),
        LimitTotals {
            window,
            used: [0, 599, 1_999],
            refused: 9,
            reporting: 4,
            leased: 4,
        },
    )]);
    let with_fleet = budget_status(&budget(None), &accepted(), &fleet, 1, now.clone());
    let without = budget_status(&budget(None), &accepted(), &HashMap::new(), 1, now);
    assert_eq!(with_fleet, without);
}
