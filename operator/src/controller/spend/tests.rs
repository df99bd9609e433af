use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp as JiffTimestamp;
use switchyard_crds::v1alpha1::API_VERSION;
use switchyard_crds::window::Window;

use super::*;

fn at(rfc3339: &str) -> Time {
    Time(rfc3339.parse::<JiffTimestamp>().unwrap())
}

fn budget() -> Budget {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "Budget",
        "metadata": {"name": "monthly", "namespace": "team-a"},
        "spec": {"limits": [{"period": "1h", "requests": 100}, {"period": "Month", "usd": "500"}]},
    }))
    .unwrap()
}

fn spender(name: &str, requests: u64) -> WorkloadSpend {
    WorkloadSpend {
        workload: format!("team-a/Deployment/{name}"),
        usd: Usd::from_micros(requests * 1000),
        requests,
    }
}

fn window_of(budget: &Budget, index: usize, now: &Time) -> Window {
    budget.spec.limits[index]
        .period()
        .and_then(|p| p.window(now.0))
        .unwrap()
}

#[test]
fn top_workloads_come_from_the_longest_running_current_window() {
    let now = at("2026-03-10T12:30:00Z");
    let budget = budget();
    let id = "team-a/monthly".to_string();
    let top: TopWorkloads = HashMap::from([
        (
            (id.clone(), 0),
            (window_of(&budget, 0, &now), vec![spender("hourly", 1)]),
        ),
        (
            (id.clone(), 1),
            (
                window_of(&budget, 1, &now),
                vec![spender("web", 9), spender("etl", 2)],
            ),
        ),
    ]);
    assert_eq!(
        budget_top_workloads(&budget, &top, &now),
        vec![spender("web", 9), spender("etl", 2)],
        "the month started before the hour"
    );
    // The book counted last month: nothing of this month is known, so the hour's spenders.
    let last_month = at("2026-02-10T00:00:00Z");
    let mut stale = top.clone();
    stale.get_mut(&(id.clone(), 1)).unwrap().0 = window_of(&budget, 1, &last_month);
    assert_eq!(
        budget_top_workloads(&budget, &stale, &now),
        vec![spender("hourly", 1)]
    );
    assert!(budget_top_workloads(&budget, &TopWorkloads::new(), &now).is_empty());
}

#[test]
fn route_spend_is_set_from_its_window_or_left_out() {
    let mut status = ModelRouteStatus::default();
    let window = RouteStats {
        requests: 12,
        cost_usd: 1.2345674,
    };
    set_route_window(&mut status, Some(&window));
    assert_eq!(status.cost_usd, Some(Usd::from("1.234567")));
    assert_eq!(status.requests, Some(12));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["costUsd"], "1.234567");
    set_route_window(&mut status, None);
    assert_eq!((&status.cost_usd, status.requests), (&None, None));
    assert!(
        serde_json::to_value(&status)
            .unwrap()
            .get("costUsd")
            .is_none()
    );
}
