use super::*;

fn target(provider: &str, success: u64, errors: u64, tokens: u64) -> TargetReport {
    let mut outcomes = BTreeMap::from([(SUCCESS.to_string(), success)]);
    if errors > 0 {
        outcomes.insert("ServerError".to_string(), errors);
    }
    let mut latency_buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
    latency_buckets[2] = success + errors; // 250 ms
    TargetReport {
        provider: provider.into(),
        model: "gpt-4o".into(),
        outcomes,
        input_tokens: tokens,
        cached_input_tokens: 0,
        output_tokens: tokens / 2,
        cost_usd: tokens as f64 / 1000.0,
        circuit_open: false,
        latency_buckets,
    }
}

/// When the aggregators of these tests began, by the wall clock.
const BEGAN: i64 = 1_800_000_000;

fn began() -> Timestamp {
    Timestamp::from_second(BEGAN).unwrap()
}

/// A report of the instance `<instance>-<BEGAN + 1>`: a sidecar started after the aggregator
/// began, whose first report counts.
fn report(instance: &str, targets: Vec<TargetReport>) -> Report {
    Report {
        instance: format!("{instance}-{}", BEGAN + 1),
        table_version: "v1".into(),
        targets,
        budgets: vec![],
        routes: vec![],
    }
}

fn allowed() -> BTreeSet<(String, String)> {
    BTreeSet::from([("pool/openai".to_string(), "gpt-4o".to_string())])
}

fn key() -> WindowKey {
    WindowKey {
        namespace: "team-a".into(),
        provider: "pool/openai".into(),
        model: "gpt-4o".into(),
    }
}

#[test]
fn cumulative_counters_become_deltas() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("i1", vec![target("pool/openai", 10, 0, 100)]),
        t0,
    );
    agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("i1", vec![target("pool/openai", 15, 5, 300)]),
        t0 + BUCKET,
    );
    let stats = &agg.summary(t0 + BUCKET)[&key()];
    assert_eq!(
        (stats.requests, stats.errors),
        (20, 5),
        "the latest totals, counted once"
    );
    assert_eq!(stats.input_tokens, 300);
    assert!((stats.cost_usd - 0.3).abs() < 1e-9);
    assert_eq!(stats.error_rate(), Some(0.25));
    assert_eq!(stats.p50_latency_ms(), Some(250));
    assert_eq!((stats.sidecars, stats.circuit_open_sidecars), (1, 0));
}

#[test]
fn a_new_table_version_is_news_once() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let mut ingest = |version: &str| {
        let mut r = report("i1", vec![target("pool/openai", 1, 0, 10)]);
        r.table_version = version.into();
        agg.ingest("uid", "team-a", &allowed(), &r, t0)
            .version_changed
    };
    assert!(ingest("v1"), "a first report is news");
    assert!(!ingest("v1"));
    assert!(ingest("v2"));
    assert!(!ingest("v2"));
}

#[test]
fn a_counter_going_down_is_a_restart() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("i1", vec![target("pool/openai", 100, 0, 1000)]),
        t0,
    );
    let outcome = agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("i1", vec![target("pool/openai", 3, 0, 30)]),
        t0,
    );
    assert_eq!(
        outcome,
        IngestOutcome {
            accepted: 1,
            dropped: 0,
            version_changed: false,
        }
    );
    let stats = &agg.summary(t0)[&key()];
    assert_eq!(
        stats.requests, 103,
        "the restarted counters count from zero"
    );
    assert_eq!(stats.input_tokens, 1030);
}

#[test]
fn targets_outside_the_pods_table_are_dropped() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let foreign = target("other-pool/anthropic", 50, 0, 10);
    let outcome = agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("i1", vec![target("pool/openai", 1, 0, 1), foreign]),
        t0,
    );
    assert_eq!(
        outcome,
        IngestOutcome {
            accepted: 1,
            dropped: 1,
            version_changed: true,
        }
    );
    let summary = agg.summary(t0);
    assert_eq!(summary.keys().collect::<Vec<_>>(), vec![&key()]);
}

#[test]
fn the_window_forgets_after_five_minutes() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("i1", vec![target("pool/openai", 10, 0, 0)]),
        t0,
    );
    agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("i1", vec![target("pool/openai", 12, 0, 0)]),
        t0 + BUCKET * 5,
    );
    assert_eq!(agg.summary(t0 + BUCKET * 9)[&key()].requests, 12);
    // The first bucket has left the window; the second has not.
    assert_eq!(agg.summary(t0 + BUCKET * 10)[&key()].requests, 2);
    assert!(
        !agg.summary(t0 + BUCKET * 15).contains_key(&key()),
        "everything aged out"
    );
}

#[test]
fn open_circuits_are_counted_per_reporting_instance() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let mut open = target("pool/openai", 1, 1, 0);
    open.circuit_open = true;
    agg.ingest("uid-1", "team-a", &allowed(), &report("a", vec![open]), t0);
    agg.ingest(
        "uid-2",
        "team-a",
        &allowed(),
        &report("b", vec![target("pool/openai", 1, 0, 0)]),
        t0,
    );
    // The same instance id from another pod is another instance.
    agg.ingest(
        "uid-3",
        "team-a",
        &allowed(),
        &report("a", vec![target("pool/openai", 1, 0, 0)]),
        t0,
    );
    let stats = &agg.summary(t0)[&key()];
    assert_eq!((stats.sidecars, stats.circuit_open_sidecars), (3, 1));
    assert_eq!(stats.requests, 4);
}

#[test]
fn median_latency_comes_from_the_buckets() {
    let mut stats = WindowStats::default();
    assert_eq!(stats.p50_latency_ms(), None);
    stats.latency_buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
    stats.latency_buckets[0] = 1;
    stats.latency_buckets[4] = 3;
    assert_eq!(stats.p50_latency_ms(), Some(1_000));
    stats.latency_buckets[LATENCY_BUCKETS_MS.len()] = 10;
    assert_eq!(
        stats.p50_latency_ms(),
        Some(600_000),
        "overflow: at least the largest bound"
    );
}

#[test]
fn report_versions_are_each_pods_latest() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    agg.ingest("uid-a", "team-a", &allowed(), &report("i1", vec![]), t0);
    let mut restarted = report("i2", vec![]);
    restarted.table_version = "v2".into();
    agg.ingest(
        "uid-a",
        "team-a",
        &allowed(),
        &restarted,
        t0 + Duration::from_secs(1),
    );
    agg.ingest("uid-b", "team-a", &allowed(), &report("i3", vec![]), t0);
    let versions = agg.report_versions();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions["uid-a"], "v2", "the newer instance's report wins");
    assert_eq!(versions["uid-b"], "v1");
}

fn route(name: &str, requests: u64, cost_usd: f64) -> RouteReport {
    RouteReport {
        route: name.into(),
        requests,
        input_tokens: requests * 100,
        cached_input_tokens: requests * 10,
        output_tokens: requests * 50,
        cost_usd,
    }
}

fn routes_report(instance: &str, routes: Vec<RouteReport>) -> Report {
    Report {
        routes,
        ..report(instance, vec![])
    }
}

fn chat_only() -> BTreeSet<String> {
    BTreeSet::from(["chat".to_string()])
}

fn chat_key() -> RouteKey {
    RouteKey {
        namespace: "team-a".into(),
        route: "chat".into(),
    }
}

#[test]
fn route_counters_become_deltas_and_a_restart_counts_from_zero() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let mut send = |instance: &str, requests: u64, cost: f64| {
        agg.ingest_routes(
            "uid",
            "team-a",
            &chat_only(),
            &routes_report(instance, vec![route("chat", requests, cost)]),
            t0,
        )
    };
    assert_eq!(send("i1", 4, 0.5).deltas, vec![route("chat", 4, 0.5)]);
    assert_eq!(send("i1", 10, 1.25).deltas, vec![route("chat", 6, 0.75)]);
    assert_eq!(send("i1", 10, 1.25).deltas, vec![], "nothing new: no delta");
    // The same instance id whose counters went down restarted: its counters are the delta.
    assert_eq!(send("i1", 3, 0.25).deltas, vec![route("chat", 3, 0.25)]);
    // A new instance (a restarted sidecar's new id) starts from zero too.
    assert_eq!(send("i2", 2, 0.5).deltas, vec![route("chat", 2, 0.5)]);
    let summary = agg.route_summary(t0);
    assert_eq!(summary[&chat_key()].requests, 4 + 6 + 3 + 2);
    assert!((summary[&chat_key()].cost_usd - 2.0).abs() < 1e-9);
}

#[test]
fn routes_outside_the_pods_table_are_dropped() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let outcome = agg.ingest_routes(
        "uid",
        "team-a",
        &chat_only(),
        &routes_report(
            "i1",
            vec![
                route("chat", 1, 0.1),
                route("someone-elses-route", 99, 99.0),
            ],
        ),
        t0,
    );
    assert_eq!(outcome.dropped, 1);
    assert_eq!(outcome.deltas, vec![route("chat", 1, 0.1)]);
    assert_eq!(
        agg.route_summary(t0).keys().cloned().collect::<Vec<_>>(),
        vec![chat_key()]
    );
}

#[test]
fn the_route_window_forgets_what_is_older_than_five_minutes() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let r = |requests| routes_report("i1", vec![route("chat", requests, 0.0)]);
    agg.ingest("uid", "team-a", &allowed(), &r(5), t0);
    agg.ingest_routes("uid", "team-a", &chat_only(), &r(5), t0);
    let later = t0 + BUCKET * 6;
    agg.ingest("uid", "team-a", &allowed(), &r(7), later);
    agg.ingest_routes("uid", "team-a", &chat_only(), &r(7), later);
    assert_eq!(agg.route_summary(later)[&chat_key()].requests, 7);
    let past = t0 + BUCKET * 11;
    assert_eq!(
        agg.route_summary(past)[&chat_key()].requests,
        2,
        "the first bucket left the window"
    );
    agg.ingest("uid", "team-a", &allowed(), &r(7), t0 + BUCKET * 17);
    assert!(
        agg.route_summary(t0 + BUCKET * 17).is_empty(),
        "expired buckets are dropped"
    );
}

#[test]
fn counters_near_u64_max_saturate_instead_of_panicking_or_wrapping() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let huge = u64::MAX - 1;
    let mut big = target("pool/openai", huge, 0, huge);
    big.outcomes.insert("ServerError".into(), huge);
    big.cached_input_tokens = huge;
    for instance in ["a", "b"] {
        // A first report of zeros, then the huge one: its delta is huge whatever a first
        // report counts.
        let zero = target("pool/openai", 0, 0, 0);
        agg.ingest(
            "uid",
            "team-a",
            &allowed(),
            &report(instance, vec![zero]),
            t0,
        );
        agg.ingest(
            "uid",
            "team-a",
            &allowed(),
            &report(instance, vec![big.clone()]),
            t0,
        );
        let routes = routes_report(instance, vec![route("chat", 0, 0.0)]);
        agg.ingest_routes("uid", "team-a", &chat_only(), &routes, t0);
        let routes = RouteReport {
            requests: huge,
            ..route("chat", 0, 1.0)
        };
        let routes = routes_report(instance, vec![routes]);
        agg.ingest_routes("uid", "team-a", &chat_only(), &routes, t0);
    }
    // And once more in the next bucket, so that summing buckets saturates too.
    agg.ingest(
        "uid",
        "team-a",
        &allowed(),
        &report("c", vec![]),
        t0 + BUCKET,
    );
    let stats = &agg.summary(t0 + BUCKET)[&key()];
    assert_eq!((stats.requests, stats.errors), (u64::MAX, u64::MAX));
    assert_eq!(stats.input_tokens, u64::MAX);
    assert_eq!(stats.cached_input_tokens, u64::MAX);
    assert_eq!(stats.latency_buckets[2], u64::MAX);
    assert_eq!(stats.p50_latency_ms(), Some(250));
    assert_eq!(agg.route_summary(t0)[&chat_key()].requests, u64::MAX);
}

#[test]
fn the_start_time_is_read_from_the_end_of_the_instance_id() {
    let uid = "3f1c2a9e-5b7d-4c1e-9a0b-123456789012";
    assert_eq!(start_of(&format!("{uid}-1800000001")), Some(1_800_000_001));
    assert_eq!(start_of("web-0-1800000001"), Some(1_800_000_001));
    for bad in [
        "nodash",
        "uid-",
        "-1800000001",
        "uid-18e8",
        "uid-+1800000001",
        "uid-1800000001 ",
        "uid-99999999999999999999",
        "",
    ] {
        assert_eq!(start_of(bad), None, "{bad:?}");
    }
}

#[test]
fn the_first_report_of_a_sidecar_older_than_the_aggregator_is_a_baseline() {
    let t0 = Instant::now();
    let mut agg = ReportAggregator::new(t0, began());
    let old = |instance: &str, success: u64, routes: Vec<RouteReport>| Report {
        instance: instance.into(),
        routes,
        ..report(
            "unused",
            vec![target("pool/openai", success, 0, success * 10)],
        )
    };
    // Started before the aggregator began, with no start time, and with one in the future.
    let instances = [
        format!("uid-a-{}", BEGAN - 3600),
        "uid-b".to_string(),
        format!("uid-c-{}", BEGAN + 86_400),
    ];
    for instance in &instances {
        agg.ingest("uid", "team-a", &allowed(), &old(instance, 100, vec![]), t0);
        let first = old(instance, 100, vec![route("chat", 100, 9.0)]);
        let spent = agg.ingest_routes("uid", "team-a", &chat_only(), &first, t0);
        assert_eq!(
            spent.deltas,
            vec![],
            "{instance}: lifetime totals are no delta"
        );
    }
    let stats = &agg.summary(t0)[&key()];
    assert_eq!((stats.requests, stats.sidecars), (0, 3));
    assert!(!agg.route_summary(t0).contains_key(&chat_key()));

    // What they do from then on counts, a route new to them included.
    let next = old(
        &instances[0],
        105,
        vec![route("chat", 104, 9.5), route("chat-2", 2, 0.5)],
    );
    agg.ingest("uid", "team-a", &allowed(), &next, t0 + BUCKET);
    let both = BTreeSet::from(["chat".to_string(), "chat-2".to_string()]);
    let spent = agg.ingest_routes("uid", "team-a", &both, &next, t0 + BUCKET);
    assert_eq!(
        spent.deltas,
        vec![
            RouteReport {
                route: "chat".into(),
                requests: 4,
                input_tokens: 400,
                cached_input_tokens: 40,
                output_tokens: 200,
                cost_usd: 0.5,
            },
            route("chat-2", 2, 0.5),
        ]
    );
    assert_eq!(agg.summary(t0 + BUCKET)[&key()].requests, 5);

    // A sidecar started since (a new pod, a restarted container) counts from zero.
    let fresh = old(&format!("uid-d-{BEGAN}"), 7, vec![route("chat", 7, 0.25)]);
    agg.ingest("uid", "team-a", &allowed(), &fresh, t0 + BUCKET);
    let spent = agg.ingest_routes("uid", "team-a", &chat_only(), &fresh, t0 + BUCKET);
    assert_eq!(spent.deltas, vec![route("chat", 7, 0.25)]);
    assert_eq!(agg.summary(t0 + BUCKET)[&key()].requests, 5 + 7);
}
