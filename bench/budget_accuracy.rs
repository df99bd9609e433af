//! How closely a fleet keeps a shared budget (issue 11): 100 sidecars with uneven load, each
//! admitting with its own counters (`switchyard_sidecar::budget`, pod mode), share one Budget
//! through the operator's lease book (`switchyard_operator::config_server::leases`), renewed by
//! reports every 5 s ± 20 %, as in a cluster; then the leader fails over mid-window and a new
//! book resumes from the last Budget status.
//!
//! Time is simulated (10 ms steps), so the run is deterministic for a seed and takes about a
//! second; everything else is the real code: the sidecars' admission, charging, usage reports and
//! lease handling, and the book's division, expiry, learning and durable totals. Not modelled:
//! the network (a report is answered at once), requests in flight (each is charged as soon as it
//! is admitted: the DESIGN's tolerance of one in-flight request per sidecar is not used), and the
//! status write itself (its totals are taken from the book every 10 s, the status write spacing).
//!
//! ```sh
//! cargo bench -p switchyard-tests --bench budget_accuracy
//! BUDGET_ACCURACY_SEED=7 cargo bench -p switchyard-tests --bench budget_accuracy
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchyard_crds::table::{Budget, BudgetKind, BudgetLimit};
use switchyard_crds::v1alpha1::{BudgetMode, WhenUnreachable};
use switchyard_crds::window::{Period, Timestamp};
use switchyard_operator::config_server::leases::{Durable, DurableTotals, HolderKey, LeaseBook};
use switchyard_sidecar::budget::BudgetRt;
use switchyard_sidecar::telemetry::metrics::Metrics;

const SIDECARS: usize = 100;
/// The budget: 6,000 requests and $1.20 a minute.
const REQUESTS_PER_MINUTE: u64 = 6_000;
const MICRO_USD_PER_MINUTE: u64 = 1_200_000;
/// Offered load: twice the request limit, spread over the sidecars by a Zipf-like law (the
/// busiest sidecar gets about 19 % of it, the quietest under 0.2 %).
const OFFERED_PER_MINUTE: f64 = 2.0 * REQUESTS_PER_MINUTE as f64;
const STEP: Duration = Duration::from_millis(10);
const MINUTES: i64 = 4;
/// The leader fails over this far into the third minute.
const FAILOVER_AT: Duration = Duration::from_secs(150);
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Budget status is written at most this often while spend changes.
const STATUS_EVERY: Duration = Duration::from_secs(10);

struct Sidecar {
    budget: BudgetRt,
    key: HolderKey,
    /// Requests per step.
    rate: f64,
    next_report: Timestamp,
}

#[derive(Default, Clone, Copy)]
struct Minute {
    admitted: u64,
    refused: u64,
    micro_usd: u64,
}

fn main() {
    let seed = std::env::var("BUDGET_ACCURACY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let def = Budget {
        namespace: "bench".into(),
        name: "fleet".into(),
        routes: vec![],
        providers: vec![],
        limits: vec![
            limit(Some(REQUESTS_PER_MINUTE), None),
            limit(None, Some(MICRO_USD_PER_MINUTE)),
        ],
        mode: BudgetMode::Enforce,
        when_unreachable: WhenUnreachable::LastShare,
        kind: BudgetKind::Budget,
    };
    let table = BTreeMap::from([(def.id(), def.clone())]);
    let metrics = Metrics::new();

    // A minute boundary, so that minute k of the run is window k.
    let start = Period::Fixed(Duration::from_secs(60))
        .window(Timestamp::from_second(1_796_551_200).expect("a time"))
        .expect("a window")
        .start;
    let zipf: Vec<f64> = (1..=SIDECARS).map(|i| 1.0 / i as f64).collect();
    let zipf_sum: f64 = zipf.iter().sum();
    let steps_per_minute = 60.0 / STEP.as_secs_f64();
    let mut sidecars: Vec<Sidecar> = zipf
        .iter()
        .enumerate()
        .map(|(i, w)| Sidecar {
            budget: BudgetRt::new(def.clone(), None, &metrics, true, start),
            key: (format!("pod-{i}"), format!("pod-{i}-1")),
            rate: OFFERED_PER_MINUTE * w / zipf_sum / steps_per_minute,
            // A new sidecar reports within 2 s of its first table.
            next_report: start + Duration::from_millis(rng.random_range(0..2_000)),
        })
        .collect();

    let mut book = LeaseBook::new(start);
    // The first leader of a new cluster: nobody granted anything before it.
    book.end_learning();
    let mut minutes = vec![Minute::default(); MINUTES as usize];
    let mut durable = DurableTotals::new();
    let mut next_status = start + STATUS_EVERY;
    let mut failed_over = false;
    let end = start + Duration::from_secs(60 * MINUTES as u64);
    let mut now = start;
    while now < end {
        let minute = (now.duration_since(start).as_secs() / 60) as usize;
        if !failed_over && now >= start + FAILOVER_AT {
            // A new leader: a fresh book that learns, resuming from the last status write.
            failed_over = true;
            book = LeaseBook::new(now);
            book.resume_from(Arc::new(durable.clone()));
        }
        for sidecar in &mut sidecars {
            for _ in 0..poisson(&mut rng, sidecar.rate) {
                if sidecar.budget.admit(now).is_ok() {
                    // $0.0001 to $0.0003 a request, charged at its end (here, at once).
                    let micro_usd: u64 = rng.random_range(100..=300);
                    sidecar.budget.charge(1_000, micro_usd as f64 / 1e6, now);
                    minutes[minute].admitted += 1;
                    minutes[minute].micro_usd += micro_usd;
                } else {
                    minutes[minute].refused += 1;
                }
            }
            if now >= sidecar.next_report {
                let usage = sidecar.budget.usage(now);
                for lease in book.report(&sidecar.key, &table, &usage, now) {
                    sidecar.budget.apply(&lease, now);
                }
                let jitter = rng.random_range(0.8..=1.2);
                sidecar.next_report = now + REPORT_EVERY.mul_f64(jitter);
            }
        }
        if now >= next_status {
            durable = status_totals(&book, &def, now);
            next_status = now + STATUS_EVERY;
        }
        now += STEP;
    }

    println!(
        "# seed {seed}; {SIDECARS} sidecars, Zipf load offering {OFFERED_PER_MINUTE:.0} requests/min \
         against {REQUESTS_PER_MINUTE} requests and ${:.2} a minute; leader failover at {} s",
        MICRO_USD_PER_MINUTE as f64 / 1e6,
        FAILOVER_AT.as_secs()
    );
    println!();
    println!(
        "| minute | admitted | of the request limit | spent (USD) | of the dollar limit | refused |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, m) in minutes.iter().enumerate() {
        let note = match i {
            0 => " (cold start: no lease yet in the first 2 s)",
            2 => " (failover at 30 s into it)",
            _ => "",
        };
        println!(
            "| {}{note} | {} | {:.2} % | {:.4} | {:.2} % | {} |",
            i + 1,
            m.admitted,
            100.0 * m.admitted as f64 / REQUESTS_PER_MINUTE as f64,
            m.micro_usd as f64 / 1e6,
            100.0 * m.micro_usd as f64 / MICRO_USD_PER_MINUTE as f64,
            m.refused
        );
    }
}

fn limit(requests: Option<u64>, usd_micros: Option<u64>) -> BudgetLimit {
    BudgetLimit {
        period: "1m".into(),
        usd_micros,
        requests,
        tokens: None,
    }
}

/// What Budget status would say now: the book's totals for the limits' current windows.
fn status_totals(book: &LeaseBook, def: &Budget, now: Timestamp) -> DurableTotals {
    book.totals(now)
        .into_iter()
        .filter(|(_, t)| t.window.contains(now))
        .map(|((id, index), t)| {
            let period = def.limits[index as usize].period.clone();
            let durable = Durable {
                period,
                window_start: t.window.start,
                used: t.used,
            };
            ((id, index), durable)
        })
        .collect()
}

/// A Poisson draw with mean `mean` (Knuth's method: the means here are small).
fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    let threshold = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut n = 0;
    while product > threshold {
        n += 1;
        product *= rng.random::<f64>();
    }
    n
}
