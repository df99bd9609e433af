use super::*;
use crate::metrics::Metrics;

fn workload(kind: &str, name: &str) -> Workload {
    Workload {
        namespace: "team-a".into(),
        kind: kind.into(),
        name: name.into(),
        service_account: "default".into(),
    }
}

fn holder(uid: &str) -> HolderKey {
    (uid.to_string(), format!("{uid}-instance"))
}

#[test]
fn the_top_five_are_ordered_by_dollars_then_requests_then_name() {
    let workloads: HashMap<HolderKey, Workload> = [
        ("a1", "web"),
        ("a2", "web"),
        ("b", "batch"),
        ("c", "chat"),
        ("d", "docs"),
        ("e", "etl"),
        ("f", "feed"),
        ("g", "gone"),
    ]
    .into_iter()
    .map(|(uid, name)| (holder(uid), workload("Deployment", name)))
    .collect();
    let holders = vec![
        // Two pods of one workload add up: 3 USD.
        (holder("a1"), [1_000_000, 10, 0]),
        (holder("a2"), [2_000_000, 10, 0]),
        (holder("b"), [2_500_000, 1, 0]),
        // Equal dollars: more requests first, then by name.
        (holder("c"), [1_000_000, 7, 0]),
        (holder("d"), [1_000_000, 9, 0]),
        (holder("e"), [1_000_000, 9, 0]),
        // Sixth: left out.
        (holder("f"), [500_000, 100, 0]),
        // Used nothing: never a spender.
        (holder("g"), [0, 0, 0]),
        // A holder of no known workload is left out.
        (holder("unknown"), [9_000_000, 1, 0]),
    ];
    let top = top_workloads(&holders, &workloads);
    let names: Vec<(&str, &str, u64)> = top
        .iter()
        .map(|w| (w.workload.as_str(), w.usd.0.as_str(), w.requests))
        .collect();
    assert_eq!(
        names,
        vec![
            ("team-a/Deployment/web", "3.00", 20),
            ("team-a/Deployment/batch", "2.50", 1),
            ("team-a/Deployment/docs", "1.00", 9),
            ("team-a/Deployment/etl", "1.00", 9),
            ("team-a/Deployment/chat", "1.00", 7),
        ]
    );
}

#[test]
fn spend_summed_over_holders_saturates_at_u64_max() {
    let workloads: HashMap<HolderKey, Workload> = ["a", "b"]
        .into_iter()
        .map(|uid| (holder(uid), workload("Deployment", "web")))
        .collect();
    let huge = [u64::MAX - 1, u64::MAX - 1, 0];
    let holders = vec![(holder("a"), huge), (holder("b"), huge)];
    let top = top_workloads(&holders, &workloads);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].requests, u64::MAX);
    assert_eq!(top[0].usd, Usd::from_micros(u64::MAX));
}

#[test]
fn deltas_are_counted_per_workload_and_route_and_stale_series_go() {
    let metrics = Metrics::new().unwrap();
    let t0 = Instant::now();
    let mut series = WorkloadSeries::new(metrics.config.workload.clone(), t0);
    let delta = RouteReport {
        route: "chat".into(),
        requests: 3,
        input_tokens: 300,
        cached_input_tokens: 30,
        output_tokens: 150,
        cost_usd: 0.25,
    };
    let web = workload("Deployment", "web");
    series.record(&web, std::slice::from_ref(&delta), t0);
    series.record(&web, std::slice::from_ref(&delta), t0);
    series.record(
        &workload("Pod", "scratch"),
        &[delta],
        t0 + Duration::from_secs(10),
    );
    let text = metrics.render();
    for line in [
        r#"switchyard_workload_cost_usd_total{namespace="team-a",route="chat",workload="Deployment/web"} 0.5"#,
        r#"switchyard_workload_requests_total{namespace="team-a",route="chat",workload="Deployment/web"} 6"#,
        r#"switchyard_workload_tokens_total{direction="cached_input",namespace="team-a",route="chat",workload="Deployment/web"} 60"#,
        r#"switchyard_workload_tokens_total{direction="input",namespace="team-a",route="chat",workload="Deployment/web"} 600"#,
        r#"switchyard_workload_tokens_total{direction="output",namespace="team-a",route="chat",workload="Deployment/web"} 300"#,
        r#"switchyard_workload_requests_total{namespace="team-a",route="chat",workload="Pod/scratch"} 3"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    // An hour later only the workload still reporting keeps its series.
    let later = t0 + SERIES_TTL + Duration::from_secs(60);
    let again = RouteReport {
        route: "chat".into(),
        requests: 1,
        ..RouteReport::default()
    };
    series.record(&web, &[again], later);
    let text = metrics.render();
    assert!(!text.contains("Pod/scratch"), "{text}");
    assert!(
        text.contains(r#"switchyard_workload_requests_total{namespace="team-a",route="chat",workload="Deployment/web"} 7"#),
        "{text}"
    );
}

#[test]
fn workload_counters_saturate_at_u64_max() {
    let metrics = Metrics::new().unwrap();
    let t0 = Instant::now();
    let mut series = WorkloadSeries::new(metrics.config.workload.clone(), t0);
    let huge = RouteReport {
        route: "chat".into(),
        requests: u64::MAX - 1,
        output_tokens: u64::MAX - 1,
        ..RouteReport::default()
    };
    let web = workload("Deployment", "web");
    series.record(&web, std::slice::from_ref(&huge), t0);
    series.record(&web, std::slice::from_ref(&huge), t0);
    let labels = ["team-a", "Deployment/web", "chat"];
    let requests = metrics.config.workload.requests.with_label_values(&labels);
    assert_eq!(requests.get(), u64::MAX);
    let output = metrics.config.workload.tokens.with_label_values(&[
        "team-a",
        "Deployment/web",
        "chat",
        "output",
    ]);
    assert_eq!(output.get(), u64::MAX);
}
