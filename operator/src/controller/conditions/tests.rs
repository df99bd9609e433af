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
