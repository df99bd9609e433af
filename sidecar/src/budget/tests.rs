use std::sync::Arc;
use std::time::Duration;

use switchyard_crds::table::{self, BudgetLimit};
use switchyard_crds::v1alpha1::{BudgetMode, WhenUnreachable};
use switchyard_crds::window::Timestamp;

use super::*;
use crate::telemetry::metrics::Metrics;

fn limit(period: &str, usd_micros: Option<u64>, requests: Option<u64>) -> BudgetLimit {
    BudgetLimit {
        period: period.into(),
        usd_micros,
        requests,
        tokens: None,
    }
}

fn def(name: &str, mode: BudgetMode, limits: Vec<BudgetLimit>) -> table::Budget {
    table::Budget {
        namespace: "ns".into(),
        name: name.into(),
        routes: vec![],
        providers: vec![],
        limits,
        mode,
        when_unreachable: WhenUnreachable::LastShare,
        kind: table::BudgetKind::Budget,
    }
}

fn budget(metrics: &Metrics, limits: Vec<BudgetLimit>) -> Arc<BudgetRt> {
    Arc::new(BudgetRt::new(
        def("b", BudgetMode::Enforce, limits),
        None,
        metrics,
        false,
        at(0),
    ))
}

/// 2026-12-06T10:00:00Z, on a minute boundary.
fn at(seconds_after: i64) -> Timestamp {
    Timestamp::from_second(1_796_551_200 + seconds_after).unwrap()
}

#[test]
fn a_request_limit_admits_exactly_its_count_and_names_the_budget() {
    let metrics = Metrics::new();
    let b = budget(&metrics, vec![limit("1m", None, Some(3))]);
    for _ in 0..3 {
        assert_eq!(b.admit(at(0)), Ok(()));
    }
    let refused = b.admit(at(20)).unwrap_err();
    assert_eq!(refused.budget, "ns/b");
    assert_eq!(refused.used, "3 of 3 requests");
    assert_eq!(
        refused.wait,
        Duration::from_secs(40),
        "until the minute ends"
    );
    assert_eq!(refused.retry_after(), 40);
    assert!(refused.message().contains("budget ns/b is exhausted"));
    assert_eq!(
        metrics.budget_refusals.with_label_values(&["ns/b"]).get(),
        1
    );
}

#[test]
fn concurrent_requests_cannot_pass_a_request_limit() {
    let metrics = Metrics::new();
    let b = budget(&metrics, vec![limit("1m", None, Some(100))]);
    let now = at(1);
    let admitted: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| (0..1000).filter(|_| b.admit(now).is_ok()).count()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(admitted, 100);
}

#[test]
fn a_new_window_starts_from_zero() {
    let metrics = Metrics::new();
    let b = budget(&metrics, vec![limit("1m", None, Some(1))]);
    assert!(b.admit(at(59)).is_ok());
    assert!(b.admit(at(59)).is_err());
    assert!(b.admit(at(60)).is_ok(), "the next minute has room");
    assert!(b.admit(at(61)).is_err());
}

#[test]
fn dollars_are_charged_after_the_fact_and_stop_the_next_request() {
    let metrics = Metrics::new();
    // 50 micro-dollars a day.
    let b = budget(&metrics, vec![limit("Day", Some(50), None)]);
    assert!(b.admit(at(0)).is_ok());
    b.charge(30, 0.000_030_4, at(1));
    assert!(b.admit(at(2)).is_ok(), "30.4 of 50 µ$ used: room left");
    // Admitted with room, charged in full: the budget may end above its limit.
    b.charge(30, 0.000_030_4, at(3));
    let refused = b.check(at(4)).unwrap_err();
    assert_eq!(refused.used, "0.00006 of 0.00005 USD");
    b.refresh_remaining(at(4));
    let left = metrics
        .budget_remaining
        .with_label_values(&["ns/b", "Day", "usd"])
        .get();
    assert_eq!(left, 0.0, "never below zero");
}

#[test]
fn costs_below_a_micro_dollar_add_up() {
    let metrics = Metrics::new();
    let b = budget(&metrics, vec![limit("Day", Some(1), None)]);
    for _ in 0..9 {
        b.charge(1, 0.000_000_1, at(0));
    }
    assert!(b.check(at(0)).is_ok(), "0.9 µ$ of 1");
    b.charge(1, 0.000_000_1, at(0));
    assert!(b.check(at(0)).is_err(), "ten tenths of a micro-dollar");
}

#[test]
fn shadow_mode_counts_would_be_refusals_and_refuses_nothing() {
    let metrics = Metrics::new();
    let b = BudgetRt::new(
        def("s", BudgetMode::Shadow, vec![limit("1h", None, Some(1))]),
        None,
        &metrics,
        false,
        at(0),
    );
    for _ in 0..4 {
        assert_eq!(b.admit(at(0)), Ok(()));
    }
    assert_eq!(
        metrics.budget_refusals.with_label_values(&["ns/s"]).get(),
        3
    );
    b.refresh_remaining(at(0));
    let left = metrics
        .budget_remaining
        .with_label_values(&["ns/s", "1h", "requests"])
        .get();
    assert_eq!(left, 0.0);
}

#[test]
fn a_refusal_by_one_budget_gives_back_the_slots_of_the_others() {
    let metrics = Metrics::new();
    let roomy = budget(&metrics, vec![limit("1h", None, Some(10))]);
    let tight = Arc::new(BudgetRt::new(
        def(
            "tight",
            BudgetMode::Enforce,
            vec![limit("1h", None, Some(1))],
        ),
        None,
        &metrics,
        false,
        at(0),
    ));
    let both = [roomy.clone(), tight];
    assert!(admit(&both, at(0)).is_ok());
    assert_eq!(admit(&both, at(0)).unwrap_err().budget, "ns/tight");
    roomy.refresh_remaining(at(0));
    let left = metrics
        .budget_remaining
        .with_label_values(&["ns/b", "1h", "requests"])
        .get();
    assert_eq!(left, 9.0, "the refused request holds no slot of ns/b");
}

#[test]
fn every_limit_must_have_room() {
    let metrics = Metrics::new();
    let b = budget(
        &metrics,
        vec![limit("Month", None, Some(100)), limit("1s", None, Some(1))],
    );
    assert!(b.admit(at(0)).is_ok());
    let refused = b.admit(at(0)).unwrap_err();
    assert_eq!(refused.period, "1s");
    assert!(
        b.admit(at(1)).is_ok(),
        "a new second, and the month has room"
    );
}

#[test]
fn a_changed_budget_keeps_the_windows_of_its_unchanged_limits() {
    let metrics = Metrics::new();
    let old = budget(
        &metrics,
        vec![limit("Day", None, Some(2)), limit("1h", None, Some(5))],
    );
    let now = at(0);
    assert!(old.admit(now).is_ok());
    assert!(old.admit(now).is_ok());
    // Raised from 2 to 3 a day; the hourly limit is gone.
    let new = BudgetRt::new(
        def("b", BudgetMode::Enforce, vec![limit("Day", None, Some(3))]),
        Some(&old),
        &metrics,
        false,
        at(0),
    );
    assert!(new.admit(now).is_ok(), "2 of 3 used");
    assert!(new.admit(now).is_err(), "the day's count carried over");
}

fn leased(metrics: &Metrics, mode: WhenUnreachable) -> BudgetRt {
    let mut def = def(
        "fleet",
        BudgetMode::Enforce,
        vec![limit("1m", None, Some(100))],
    );
    def.when_unreachable = mode;
    BudgetRt::new(def, None, metrics, true, at(0))
}

/// A lease on limit 0 of `ns/fleet` for the minute of [`at`]`(0)`, lapsing at `at(expires)`.
fn lease(requests: u64, expires: i64) -> switchyard_crds::report::Lease {
    switchyard_crds::report::Lease {
        budget: "ns/fleet".into(),
        limit: 0,
        period: "1m".into(),
        window_start: at(0).as_second(),
        window_end: at(60).as_second(),
        allowance: switchyard_crds::report::Amounts {
            usd_micros: None,
            requests: Some(requests),
            tokens: None,
        },
        expires_at_ms: at(expires).as_millisecond(),
    }
}

#[test]
fn a_leased_budget_admits_up_to_its_allowance_not_the_whole_limit() {
    let metrics = Metrics::new();
    let b = leased(&metrics, WhenUnreachable::LastShare);
    for _ in 0..3 {
        assert!(b.admit(at(1)).is_ok(), "no lease yet: nothing capped");
    }
    b.apply(&lease(5, 15), at(1));
    assert!(b.admit(at(2)).is_ok());
    assert!(b.admit(at(2)).is_ok());
    let refused = b.admit(at(3)).unwrap_err();
    assert_eq!(refused.used, "5 of 5 requests (this sidecar's share)");
    assert_eq!(
        refused.wait,
        Duration::from_secs(6),
        "the next lease may bring room before the window ends"
    );
    let usage = b.usage(at(3));
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].window_start, at(0).as_second());
    assert_eq!(usage[0].used.requests, Some(5));
    assert_eq!(usage[0].holds.and_then(|h| h.requests), Some(5));
}

#[test]
fn a_lapsed_lease_follows_when_unreachable() {
    let metrics = Metrics::new();
    for (mode, admitted) in [
        (WhenUnreachable::LastShare, 2),
        (WhenUnreachable::FailOpen, 10),
        (WhenUnreachable::FailClosed, 0),
    ] {
        let b = leased(&metrics, mode);
        b.apply(&lease(2, 15), at(1));
        let n = (0..10).filter(|_| b.admit(at(20)).is_ok()).count();
        assert_eq!(n, admitted, "{mode:?}");
    }
}

#[test]
fn a_lease_for_a_limit_the_table_no_longer_has_is_ignored() {
    let metrics = Metrics::new();
    let b = leased(&metrics, WhenUnreachable::LastShare);
    let mut other = lease(0, 15);
    other.period = "1h".into();
    b.apply(&other, at(1));
    assert!(b.admit(at(2)).is_ok(), "not capped at 0 by a stale lease");
    other.period = "1m".into();
    other.limit = 3;
    b.apply(&other, at(1));
    assert!(b.admit(at(2)).is_ok());
}

#[test]
fn a_late_clock_reading_counts_in_the_current_window_and_never_reopens_the_last() {
    let metrics = Metrics::new();
    let b = budget(&metrics, vec![limit("1m", None, Some(1))]);
    assert!(b.admit(at(60)).is_ok(), "the second minute begins");
    // A reading from the first minute, taken before that (a preempted thread).
    assert!(
        b.admit(at(59)).is_err(),
        "counted in the second minute, which is full, not in a fresh first minute"
    );
    assert!(b.admit(at(61)).is_err(), "the second minute kept its count");
}

#[test]
fn limits_sharing_a_period_keep_their_own_counts_across_a_reload() {
    let metrics = Metrics::new();
    let tokens = |n| BudgetLimit {
        tokens: Some(n),
        ..limit("1m", None, None)
    };
    let old = budget(&metrics, vec![limit("1m", None, Some(10)), tokens(1000)]);
    let now = at(0);
    assert!(old.admit(now).is_ok());
    old.charge(400, 0.0, now);
    let new = BudgetRt::new(
        def(
            "b",
            BudgetMode::Enforce,
            vec![limit("1m", None, Some(10)), tokens(500)],
        ),
        Some(&old),
        &metrics,
        false,
        at(0),
    );
    let usage = new.usage(now);
    assert_eq!(usage[0].used.requests, Some(1), "one request, not two");
    assert_eq!(usage[1].used.tokens, Some(400), "the token count kept");
    new.charge(100, 0.0, now);
    assert_eq!(new.usage(now)[1].used.tokens, Some(500));
    assert!(new.check(now).is_err(), "500 of 500 tokens");
}

#[test]
fn refusals_are_reported_in_every_limits_window() {
    let metrics = Metrics::new();
    let b = budget(
        &metrics,
        vec![limit("Day", None, Some(1)), limit("1m", None, Some(100))],
    );
    assert!(b.admit(at(0)).is_ok());
    assert!(b.admit(at(1)).is_err());
    assert!(b.admit(at(2)).is_err());
    let usage = b.usage(at(3));
    assert_eq!(
        usage.iter().map(|u| u.refused).collect::<Vec<_>>(),
        [2, 2],
        "each refusal counts in the day's and the minute's window"
    );
    assert_eq!(b.usage(at(61))[1].refused, 0, "a new minute");
    assert_eq!(b.usage(at(61))[0].refused, 2, "the same day");
}

/// A fleet limit entry for provider `p/a`, as the compiler writes it.
fn fleet(metrics: &Metrics, requests: Option<u64>, tokens: Option<u64>) -> Arc<BudgetRt> {
    let def = table::Budget {
        name: "p/a".into(),
        providers: vec!["p/a".into()],
        limits: vec![BudgetLimit {
            period: "1m".into(),
            usd_micros: None,
            requests,
            tokens,
        }],
        kind: table::BudgetKind::FleetLimit,
        ..def("unused", BudgetMode::Enforce, vec![])
    };
    Arc::new(BudgetRt::new(def, None, metrics, false, at(0)))
}

#[test]
fn a_fleet_limit_takes_its_slot_when_the_targets_turn_comes() {
    let metrics = Metrics::new();
    let limit = fleet(&metrics, Some(2), None);
    let provider_budget = Arc::new(BudgetRt::new(
        table::Budget {
            providers: vec!["p/a".into()],
            ..def("quota", BudgetMode::Enforce, vec![limit_of(Some(5))])
        },
        None,
        &metrics,
        false,
        at(0),
    ));
    let budgets = [provider_budget.clone(), limit.clone()];
    assert_eq!(claim_target(&budgets, at(1)), Ok(()));
    // Not sent after all (its circuit held it back): the slot goes back.
    release_target(&budgets, at(1));
    assert_eq!(claim_target(&budgets, at(2)), Ok(()));
    assert_eq!(claim_target(&budgets, at(3)), Ok(()));
    let refused = claim_target(&budgets, at(20)).unwrap_err();
    assert_eq!(refused.used, "2 of 2 requests", "two sent, one given back");
    assert_eq!(
        refused.wait,
        Duration::from_secs(40),
        "until the minute ends"
    );
    assert_eq!(refused.code(), "rate_limit_exceeded");
    assert_eq!(
        refused.message(),
        "provider p/a is at its fleet-wide rate limit of 2 requests per minute: 2 of 2 \
         requests used in the current minute; it has room again in 40 s"
    );
    // The provider budget only needs room: it counts what the target served, at the end.
    provider_budget.refresh_remaining(at(20));
    let quota_left = metrics
        .budget_remaining
        .with_label_values(&["ns/quota", "1m", "requests"])
        .get();
    assert_eq!(quota_left, 5.0);
}

#[test]
fn a_fleet_limit_shows_in_its_own_series_not_as_a_budget() {
    let metrics = Metrics::new();
    let limit = fleet(&metrics, Some(1), Some(100));
    assert!(limit.admit(at(0)).is_ok());
    limit.charge(40, 0.0, at(0));
    assert!(claim_target(std::slice::from_ref(&limit), at(1)).is_err());
    limit.refresh_remaining(at(1));
    let remaining = |unit| {
        metrics
            .fleet_limit_remaining
            .with_label_values(&["p/a", unit])
            .get()
    };
    assert_eq!((remaining("requests"), remaining("tokens")), (0.0, 60.0));
    assert_eq!(
        metrics
            .fleet_limit_refusals
            .with_label_values(&["p/a"])
            .get(),
        1
    );
    let shown = String::from_utf8(metrics.render()).unwrap();
    assert!(!shown.contains("switchyard_budget_"), "{shown}");

    limit.forget_metrics(&metrics, false);
    let shown = String::from_utf8(metrics.render()).unwrap();
    assert!(!shown.contains("switchyard_fleet_limit_"), "{shown}");
}

#[test]
fn a_fleet_limit_names_the_unit_that_ran_out() {
    let metrics = Metrics::new();
    let limit = fleet(&metrics, Some(10), Some(100));
    assert!(limit.admit(at(0)).is_ok());
    limit.charge(150, 0.0, at(0));
    let refused = limit.check(at(1)).unwrap_err();
    assert!(
        refused
            .message()
            .contains("fleet-wide rate limit of 100 tokens per minute: 150 of 100 tokens"),
        "{}",
        refused.message()
    );
}

fn limit_of(requests: Option<u64>) -> BudgetLimit {
    limit("1m", None, requests)
}
