//! Phase 3: order a request's targets by the route's strategy.
//!
//! - `Failover`: as written.
//! - `Weighted`: a weighted random permutation (Efraimidis–Spirakis: sort by `u^(1/w)`), so the
//!   first pick follows the weights and failover still reaches every target.
//! - `LeastLatency`: lowest latency average first. Targets never measured, or not measured for
//!   [`STALE_AFTER`], go first so that a recovered provider is noticed. Once every target has a
//!   fresh average, with probability [`EXPLORE`] a random target is tried first, so averages do
//!   not go stale under load. (While one is unmeasured it goes first anyway: exploring then
//!   would only delay its measurement, and makes the warm-up order random.)
//! - `LowestCost`: estimated prompt tokens × input price + expected output × output price; ties
//!   keep the written order.

use std::time::Duration;

use rand::Rng;
use switchyard_crds::v1alpha1::Strategy;
use tokio::time::Instant;

use super::rules::RequestFacts;
use crate::upstream::TargetRt;

/// Share of `LeastLatency` requests that explore a random target first.
pub const EXPLORE: f64 = 0.05;
/// A latency average older than this is treated as unknown.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// The order in which to try `targets`.
pub fn order(
    strategy: Strategy,
    targets: &[TargetRt],
    facts: &mut RequestFacts<'_>,
    rng: &mut impl Rng,
    now: Instant,
) -> Vec<TargetRt> {
    let mut ordered = targets.to_vec();
    if ordered.len() < 2 {
        return ordered;
    }
    match strategy {
        Strategy::Failover => {}
        Strategy::Weighted => {
            let mut keyed: Vec<(f64, TargetRt)> = ordered
                .into_iter()
                .map(|t| {
                    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                    (u.powf(1.0 / f64::from(t.target.weight.max(1))), t)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            ordered = keyed.into_iter().map(|(_, t)| t).collect();
        }
        Strategy::LeastLatency => {
            let latency = |t: &TargetRt| match t.health.latency() {
                (Some(avg), Some(at)) if now.saturating_duration_since(at) < STALE_AFTER => avg,
                _ => f64::NEG_INFINITY, // unknown: measure it
            };
            ordered.sort_by(|a, b| latency(a).total_cmp(&latency(b)));
            let all_measured = latency(&ordered[0]).is_finite();
            if all_measured && rng.random_bool(EXPLORE) {
                let pick = rng.random_range(0..ordered.len());
                let explored = ordered.remove(pick);
                ordered.insert(0, explored);
            }
        }
        Strategy::LowestCost => {
            let prompt = f64::from(facts.prompt_tokens());
            let output = f64::from(facts.expected_output_tokens());
            let cost = |t: &TargetRt| {
                prompt * t.target.pricing.input_per_million
                    + output * t.target.pricing.output_per_million
            };
            // `sort_by` is stable: equal costs keep the order of `targets`.
            ordered.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use http::HeaderMap;
    use prometheus::IntGauge;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use switchyard_crds::table::{Breaker, Limits, Pricing, Target, TimeoutsMs, Upstream};
    use switchyard_crds::v1alpha1::Api;

    use super::*;
    use crate::upstream::UpstreamRt;
    use crate::upstream::health::TargetHealth;

    fn target(name: &str, weight: u32, input: f64, output: f64) -> TargetRt {
        let def = Upstream {
            pool: "p".into(),
            provider: name.into(),
            api: Api::OpenAI,
            base_url: "http://127.0.0.1:1".into(),
            region: None,
            api_key: None,
            forward_headers: vec![],
            responses_api: false,
            timeouts: TimeoutsMs::default(),
            limits: Limits::default(),
            breaker: Breaker::default(),
            azure_api_version: None,
            aws: None,
            gcp: None,
        };
        TargetRt {
            target: Target {
                upstream: format!("p/{name}"),
                model: "m".into(),
                weight,
                pricing: Pricing {
                    input_per_million: input,
                    cached_input_per_million: input,
                    output_per_million: output,
                },
                context_window: None,
                kind: Default::default(),
                publisher: Default::default(),
                prompt_template: None,
            },
            upstream: Arc::new(UpstreamRt::new(def)),
            health: TargetHealth::new(IntGauge::new("g", "g").unwrap()),
            budgets: Arc::new([]),
        }
    }

    fn names(ts: &[TargetRt]) -> Vec<String> {
        ts.iter().map(|t| t.upstream.def.provider.clone()).collect()
    }

    fn run(
        strategy: Strategy,
        targets: &[TargetRt],
        body: serde_json::Value,
        rng: &mut StdRng,
    ) -> Vec<String> {
        let body = body.as_object().unwrap().clone();
        let headers = HeaderMap::new();
        let mut facts = RequestFacts::new(&body, &headers);
        names(&order(strategy, targets, &mut facts, rng, Instant::now()))
    }

    #[tokio::test]
    async fn failover_keeps_the_written_order() {
        let ts = [target("a", 1, 1.0, 1.0), target("b", 1, 0.0, 0.0)];
        assert_eq!(
            run(
                Strategy::Failover,
                &ts,
                serde_json::json!({}),
                &mut StdRng::seed_from_u64(1)
            ),
            ["a", "b"]
        );
    }

    #[tokio::test]
    async fn weighted_follows_the_weights() {
        let ts = [target("a", 1, 0.0, 0.0), target("b", 3, 0.0, 0.0)];
        let mut rng = StdRng::seed_from_u64(7);
        let mut first: HashMap<String, u32> = HashMap::new();
        for _ in 0..4000 {
            let order = run(Strategy::Weighted, &ts, serde_json::json!({}), &mut rng);
            assert_eq!(order.len(), 2, "every target stays reachable");
            *first.entry(order[0].clone()).or_default() += 1;
        }
        let share = f64::from(first["b"]) / 4000.0;
        assert!((0.72..0.78).contains(&share), "b first {share}");
    }

    #[tokio::test]
    async fn least_latency_prefers_fast_and_measures_the_unknown() {
        let ts = [
            target("slow", 1, 0.0, 0.0),
            target("fast", 1, 0.0, 0.0),
            target("new", 1, 0.0, 0.0),
        ];
        let now = Instant::now();
        ts[0].health.record_success(Duration::from_millis(900), now);
        ts[1].health.record_success(Duration::from_millis(50), now);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..500 {
            let order = run(Strategy::LeastLatency, &ts, serde_json::json!({}), &mut rng);
            assert_eq!(
                order,
                ["new", "fast", "slow"],
                "the unmeasured goes first, always"
            );
        }
        ts[2].health.record_success(Duration::from_millis(500), now);
        let mut explored = 0;
        for _ in 0..2000 {
            let order = run(Strategy::LeastLatency, &ts, serde_json::json!({}), &mut rng);
            if order != ["fast", "new", "slow"] {
                explored += 1;
            }
        }
        // A random pick lands on the fastest a third of the time: 2000 × 5% × 2/3 ≈ 67.
        assert!(
            (30..120).contains(&explored),
            "about 5% explore once all are measured: {explored}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn least_latency_forgets_stale_averages() {
        let ts = [
            target("fast", 1, 0.0, 0.0),
            target("recovered", 1, 0.0, 0.0),
        ];
        ts[0]
            .health
            .record_success(Duration::from_millis(50), Instant::now());
        ts[1]
            .health
            .record_success(Duration::from_millis(5000), Instant::now());
        tokio::time::advance(STALE_AFTER + Duration::from_secs(1)).await;
        ts[0]
            .health
            .record_success(Duration::from_millis(50), Instant::now());
        let order = run(
            Strategy::LeastLatency,
            &ts,
            serde_json::json!({}),
            &mut StdRng::seed_from_u64(5),
        );
        assert_eq!(order[0], "recovered", "a stale average is measured again");
    }

    #[tokio::test]
    async fn lowest_cost_prices_the_request() {
        // Cheap input, dear output vs the reverse: the answer depends on the request.
        let ts = [
            target("dear-out", 1, 0.1, 10.0),
            target("dear-in", 1, 5.0, 0.1),
        ];
        let small_prompt_long_answer = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000});
        let long_prompt_short_answer = serde_json::json!({
            "messages": [{"role": "user", "content": "word ".repeat(5000)}], "max_completion_tokens": 10});
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            run(
                Strategy::LowestCost,
                &ts,
                small_prompt_long_answer,
                &mut rng
            )[0],
            "dear-in"
        );
        assert_eq!(
            run(
                Strategy::LowestCost,
                &ts,
                long_prompt_short_answer,
                &mut rng
            )[0],
            "dear-out"
        );
        let ties = [target("first", 1, 1.0, 1.0), target("second", 1, 1.0, 1.0)];
        assert_eq!(
            run(Strategy::LowestCost, &ties, serde_json::json!({}), &mut rng),
            ["first", "second"]
        );
    }
}
