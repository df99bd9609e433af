//! What budget enforcement costs on the request path (issue 11: at most 1 µs).
//!
//! A request on a route with budgets pays, in order: the admission check of the route's budgets
//! (`budget::admit`: every limit's window, a compare-and-swap per request limit), the check of each
//! target's provider budgets (`budget::claim_target`), and at its end the charge of its tokens and cost
//! (`BudgetRt::charge`, per budget). This bench times that whole sequence for a route with one
//! budget of two limits and a target with one provider budget, in one thread and in two threads
//! hitting the same counters (the machine has 2 cores; contention on the atomics is the worst
//! case), and the pieces on their own.
//!
//! ```sh
//! cargo bench -p switchyard-sidecar --bench budget_admission
//! BUDGET_BENCH_ITERS=2000000 cargo bench -p switchyard-sidecar --bench budget_admission
//! ```
//! Each figure is the median of 15 batches of `BUDGET_BENCH_ITERS` operations (default 1,000,000),
//! in ns per request. Limits are set so high that nothing is refused: the cost measured is the
//! admitting path, which is what every request pays.

use std::hint::black_box;
use std::sync::Arc;
use tokio::time::Instant;

use switchyard_crds::table::{Budget, BudgetKind, BudgetLimit};
use switchyard_crds::v1alpha1::{BudgetMode, WhenUnreachable};
use switchyard_crds::window::Timestamp;
use switchyard_sidecar::budget::{self, BudgetRt};
use switchyard_sidecar::telemetry::metrics::Metrics;

const BATCHES: usize = 15;

fn budget(metrics: &Metrics, name: &str, providers: Vec<String>) -> Arc<BudgetRt> {
    let limit = |period: &str, usd_micros, requests| BudgetLimit {
        period: period.into(),
        usd_micros,
        requests,
        tokens: Some(u64::MAX / 2),
    };
    let def = Budget {
        namespace: "bench".into(),
        name: name.into(),
        routes: vec![],
        providers,
        limits: vec![
            limit("Month", Some(u64::MAX / 2_000), None),
            limit("1m", None, Some(u64::MAX / 2)),
        ],
        mode: BudgetMode::Enforce,
        when_unreachable: WhenUnreachable::LastShare,
        kind: BudgetKind::Budget,
    };
    Arc::new(BudgetRt::new(def, None, metrics, false, Timestamp::now()))
}

/// ns per call of `op`, the median of [`BATCHES`] batches of `iters`.
fn time(iters: u64, mut op: impl FnMut()) -> f64 {
    let mut batches: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iters {
                op();
            }
            started.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[BATCHES / 2]
}

fn main() {
    let iters: u64 = std::env::var("BUDGET_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let metrics = Metrics::new();
    let route_budgets: Arc<[Arc<BudgetRt>]> = Arc::new([budget(&metrics, "route", vec![])]);
    let target_budgets: Arc<[Arc<BudgetRt>]> =
        Arc::new([budget(&metrics, "provider", vec!["pool/a".into()])]);

    // What one request does, with the clock read as the proxy reads it.
    let request = || {
        let now = Timestamp::now();
        black_box(budget::admit(&route_budgets, now)).expect("room");
        black_box(budget::claim_target(&target_budgets, Timestamp::now())).expect("room");
        let now = Timestamp::now();
        for b in route_budgets.iter() {
            b.charge(black_box(1_200), black_box(0.000_42), now);
        }
        for b in target_budgets.iter() {
            b.count_request(now);
            b.charge(black_box(1_200), black_box(0.000_42), now);
        }
    };

    println!(
        "# {}; BUDGET_BENCH_ITERS={iters}; median of {BATCHES} batches",
        stamp()
    );
    println!("{:<52} {:>10}", "operation", "ns/request");
    let now = Timestamp::now();
    let clock = time(iters, || {
        black_box(Timestamp::now());
    });
    println!("{:<52} {clock:>10.1}", "clock read (Timestamp::now)");
    let admit = time(iters, || {
        black_box(budget::admit(&route_budgets, now)).expect("room");
    });
    println!("{:<52} {admit:>10.1}", "admit: 1 route budget, 2 limits");
    let check = time(iters, || {
        black_box(budget::claim_target(&target_budgets, now)).expect("room");
    });
    println!("{:<52} {check:>10.1}", "check: 1 provider budget, 2 limits");
    let charge = time(iters, || route_budgets[0].charge(1_200, 0.000_42, now));
    println!("{:<52} {charge:>10.1}", "charge: 1 budget, 2 limits");
    let one = time(iters, request);
    println!(
        "{:<52} {one:>10.1}",
        "whole request, 1 thread (3 clock reads)"
    );
    let two = std::thread::scope(|s| {
        let other = s.spawn(|| time(iters, request));
        let mine = time(iters, request);
        (mine + other.join().expect("bench thread")) / 2.0
    });
    println!(
        "{:<52} {two:>10.1}",
        "whole request, 2 threads on the same counters"
    );
}

fn stamp() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "{} UTC; {cores} cores",
        Timestamp::now().strftime("%Y-%m-%d %H:%M")
    )
}
