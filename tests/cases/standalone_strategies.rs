//! How a route orders its targets (`Failover`, `Weighted`, `LeastLatency`, `LowestCost`) and how
//! `rules` replace them (`minPromptTokens`, `hasTools`, `header`, `minComplexity`, first match
//! wins), observed through which simulated provider answers.

use std::time::Duration;

use serde_json::json;
use switchyard_tests::{Behavior, Harness, MockProvider, ProviderDef, Reply, pool, pool_of, route};

async fn providers(names: &[&'static str]) -> Vec<MockProvider> {
    let mut out = Vec::new();
    for name in names {
        out.push(MockProvider::start(name).await.expect("mock provider"));
    }
    out
}

fn served_by(reply: &Reply) -> &str {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.header("x-switchyard-provider")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_strategy_always_uses_the_first_healthy_target_in_written_order() {
    let m = providers(&["a", "b", "c"]).await;
    let yaml = pool(
        &[
            ("a", &m[0].base_url(), "m"),
            ("b", &m[1].base_url(), "m"),
            ("c", &m[2].base_url(), "m"),
        ],
        "",
        "",
    ) + &route(
        "abc",
        "abc",
        &[("a", "m"), ("b", "m"), ("c", "m")],
        "strategy: Failover",
    ) + &route("cab", "cab", &[("c", "m"), ("a", "m"), ("b", "m")], "");
    let h = Harness::start(&yaml).await;

    for _ in 0..5 {
        assert_eq!(served_by(&h.chat("abc", "hi").await), "pool/a");
        assert_eq!(served_by(&h.chat("cab", "hi").await), "pool/c");
    }
    assert_eq!(
        (
            m[0].request_count(),
            m[1].request_count(),
            m[2].request_count()
        ),
        (5, 0, 5)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_strategy_roughly_follows_the_weights() {
    let m = providers(&["light", "heavy"]).await;
    let yaml = pool(
        &[
            ("light", &m[0].base_url(), "m"),
            ("heavy", &m[1].base_url(), "m"),
        ],
        "",
        "",
    ) + "---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: weighted}
spec:
  model: chat
  strategy: Weighted
  targets:
    - {pool: pool, provider: light, model: m, weight: 1}
    - {pool: pool, provider: heavy, model: m, weight: 3}
";
    let h = Harness::start(&yaml).await;

    for _ in 0..200 {
        served_by(&h.chat("chat", "hi").await);
    }

    let heavy = m[1].request_count();
    assert_eq!(m[0].request_count() + heavy, 200, "one attempt each");
    // Expected 150 (sd ≈ 6): these bounds fail only when the weights are ignored or inverted.
    assert!((120..=180).contains(&heavy), "heavy served {heavy} of 200");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_latency_prefers_the_faster_provider_after_warm_up() {
    let m = providers(&["slow", "fast"]).await;
    m[0].set_behavior(Behavior {
        latency: Duration::from_millis(150),
        ..Behavior::default()
    });
    m[1].set_behavior(Behavior {
        latency: Duration::from_millis(5),
        ..Behavior::default()
    });
    // The slow one is written first, so only measurement can put the fast one ahead.
    let yaml = pool(
        &[
            ("slow", &m[0].base_url(), "m"),
            ("fast", &m[1].base_url(), "m"),
        ],
        "",
        "",
    ) + &route(
        "ll",
        "chat",
        &[("slow", "m"), ("fast", "m")],
        "strategy: LeastLatency",
    );
    let h = Harness::start(&yaml).await;

    // Warm-up: unmeasured targets are tried first, so both get measured.
    for _ in 0..2 {
        served_by(&h.chat("chat", "hi").await);
    }
    assert_eq!((m[0].request_count(), m[1].request_count()), (1, 1));

    let mut fast = 0;
    for _ in 0..20 {
        if served_by(&h.chat("chat", "hi").await) == "pool/fast" {
            fast += 1;
        }
    }
    // 5% of requests explore a random target; 16 of 20 leaves ample room for that.
    assert!(fast >= 16, "the fast provider served only {fast} of 20");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_cost_picks_the_cheapest_target_for_each_request() {
    let m = providers(&["dear-out", "dear-in"]).await;
    let (url_out, url_in) = (m[0].base_url(), m[1].base_url());
    let yaml = pool_of(
        "pool",
        &[
            ProviderDef {
                input: "0.10",
                output: "10.00",
                context_window: 200_000,
                ..ProviderDef::new("dear-out", &url_out, "m")
            },
            ProviderDef {
                input: "5.00",
                output: "0.10",
                context_window: 200_000,
                ..ProviderDef::new("dear-in", &url_in, "m")
            },
        ],
        "",
    ) + &route(
        "cheap",
        "chat",
        &[("dear-out", "m"), ("dear-in", "m")],
        "strategy: LowestCost",
    );
    let h = Harness::start(&yaml).await;

    // A short prompt with a long expected answer: output price dominates.
    let long_answer = json!({"model": "chat", "max_tokens": 4000,
        "messages": [{"role": "user", "content": "hi"}]});
    let reply = h.post("/v1/chat/completions", &long_answer).await;
    assert_eq!(served_by(&reply), "pool/dear-in");

    // Without max_tokens the expected output is 256 tokens: still output-dominated.
    assert_eq!(served_by(&h.chat("chat", "hi").await), "pool/dear-in");

    // A long prompt with a short answer: input price dominates.
    let long_prompt = json!({"model": "chat", "max_completion_tokens": 10,
        "messages": [{"role": "user", "content": "word ".repeat(5000)}]});
    let reply = h.post("/v1/chat/completions", &long_prompt).await;
    assert_eq!(served_by(&reply), "pool/dear-out");
    assert_eq!((m[0].request_count(), m[1].request_count()), (1, 2));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_cost_ties_keep_the_written_order() {
    let m = providers(&["second", "first"]).await;
    let yaml = pool(
        &[
            ("second", &m[0].base_url(), "m"),
            ("first", &m[1].base_url(), "m"),
        ],
        "",
        "",
    ) + &route(
        "tie",
        "chat",
        &[("first", "m"), ("second", "m")],
        "strategy: LowestCost",
    );
    let h = Harness::start(&yaml).await;

    for _ in 0..3 {
        assert_eq!(served_by(&h.chat("chat", "hi").await), "pool/first");
    }
    h.stop().await;
}

/// Provider `base` serves the route's targets, `special` its one rule's targets.
async fn rule_route(rule_match: &str) -> (Harness, Vec<MockProvider>) {
    let m = providers(&["base", "special"]).await;
    let yaml = pool(
        &[
            ("base", &m[0].base_url(), "m"),
            ("special", &m[1].base_url(), "m"),
        ],
        "",
        "",
    ) + &route(
        "ruled",
        "chat",
        &[("base", "m")],
        &format!(
            "rules:\n  - name: the-rule\n    match: {rule_match}\n    targets: [{{pool: pool, provider: special, model: m}}]"
        ),
    );
    (Harness::start(&yaml).await, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_min_prompt_tokens_matches_long_prompts_only() {
    let (h, m) = rule_route("{minPromptTokens: 1000}").await;

    assert_eq!(
        served_by(&h.chat("chat", "a short question").await),
        "pool/base"
    );
    let long = "the quick brown fox jumps ".repeat(300);
    assert_eq!(served_by(&h.chat("chat", &long).await), "pool/special");
    assert_eq!((m[0].request_count(), m[1].request_count()), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_has_tools_matches_requests_offering_tools_only() {
    let (h, m) = rule_route("{hasTools: true}").await;
    let tools = json!({"model": "chat",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]});
    let empty_tools = json!({"model": "chat",
        "messages": [{"role": "user", "content": "weather?"}], "tools": []});

    assert_eq!(
        served_by(&h.post("/v1/chat/completions", &tools).await),
        "pool/special"
    );
    assert_eq!(served_by(&h.chat("chat", "weather?").await), "pool/base");
    assert_eq!(
        served_by(&h.post("/v1/chat/completions", &empty_tools).await),
        "pool/base"
    );
    assert_eq!((m[0].request_count(), m[1].request_count()), (2, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_header_matches_the_exact_header_value_only() {
    let (h, m) = rule_route("{header: {name: X-Tier, value: premium}}").await;
    let body = switchyard_tests::chat("chat", "hi");
    let path = "/v1/chat/completions";

    let premium = h.post_with(path, &body, &[("x-tier", "premium")]).await;
    let free = h.post_with(path, &body, &[("x-tier", "free")]).await;
    let none = h.post(path, &body).await;

    assert_eq!(served_by(&premium), "pool/special");
    assert_eq!(served_by(&free), "pool/base");
    assert_eq!(served_by(&none), "pool/base");
    assert_eq!((m[0].request_count(), m[1].request_count()), (2, 1));
    h.stop().await;
}

/// Scores well above 60 on the documented heuristic (length, code, reasoning words, math,
/// several questions).
const HARD_PROMPT: &str = "Prove step by step that the integral of x^2 from 0 to 1 equals 1/3, \
    then analyze the trade-off between Simpson's rule and the trapezoid rule. Why does one \
    converge faster? What would you optimize first?\n```python\ndef f(x):\n    return x**2\n```";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_min_complexity_matches_hard_prompts_only() {
    let (h, m) = rule_route("{minComplexity: 60}").await;

    assert_eq!(served_by(&h.chat("chat", "hi there").await), "pool/base");
    let hard = HARD_PROMPT.repeat(3);
    assert_eq!(served_by(&h.chat("chat", &hard).await), "pool/special");
    assert_eq!((m[0].request_count(), m[1].request_count()), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_conditions_must_all_hold() {
    let (h, m) = rule_route("{hasTools: true, header: {name: x-tier, value: premium}}").await;
    let tools = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}]});
    let path = "/v1/chat/completions";

    let only_tools = h.post(path, &tools).await;
    let only_header = h
        .post_with(
            path,
            &switchyard_tests::chat("chat", "x"),
            &[("x-tier", "premium")],
        )
        .await;
    let both = h.post_with(path, &tools, &[("x-tier", "premium")]).await;

    assert_eq!(served_by(&only_tools), "pool/base");
    assert_eq!(served_by(&only_header), "pool/base");
    assert_eq!(served_by(&both), "pool/special");
    assert_eq!((m[0].request_count(), m[1].request_count()), (2, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_matching_rule_wins() {
    let m = providers(&["base", "first", "second"]).await;
    let yaml = pool(
        &[
            ("base", &m[0].base_url(), "m"),
            ("first", &m[1].base_url(), "m"),
            ("second", &m[2].base_url(), "m"),
        ],
        "",
        "",
    ) + &route(
        "ruled",
        "chat",
        &[("base", "m")],
        "rules:
  - name: by-header
    match: {header: {name: x-tier, value: premium}}
    targets: [{pool: pool, provider: first, model: m}]
  - name: anything
    match: {}
    targets: [{pool: pool, provider: second, model: m}]",
    );
    let h = Harness::start(&yaml).await;
    let body = switchyard_tests::chat("chat", "hi");

    let premium = h
        .post_with("/v1/chat/completions", &body, &[("x-tier", "premium")])
        .await;
    let other = h.post("/v1/chat/completions", &body).await;

    assert_eq!(served_by(&premium), "pool/first");
    assert_eq!(
        served_by(&other),
        "pool/second",
        "an empty match always holds"
    );
    assert_eq!(m[0].request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_strategy_still_fails_over_to_every_target() {
    let m = providers(&["light", "heavy"]).await;
    m[1].set_default_fault(Some(switchyard_tests::Fault::ServerError));
    let yaml = pool(
        &[
            ("light", &m[0].base_url(), "m"),
            ("heavy", &m[1].base_url(), "m"),
        ],
        "",
        "{consecutiveFailures: 1000}",
    ) + "---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: weighted}
spec:
  model: chat
  strategy: Weighted
  targets:
    - {pool: pool, provider: light, model: m, weight: 1}
    - {pool: pool, provider: heavy, model: m, weight: 9}
";
    let h = Harness::start(&yaml).await;

    for _ in 0..20 {
        assert_eq!(served_by(&h.chat("chat", "hi").await), "pool/light");
    }
    assert_eq!(m[0].request_count(), 20);
    assert!(
        m[1].request_count() >= 10,
        "heavy is picked first most of the time"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_rule_fails_over_within_its_own_targets_only() {
    let (h, m) = rule_route("{header: {name: x-tier, value: premium}}").await;
    m[1].push_faults([switchyard_tests::Fault::ServerError]);

    let reply = h
        .post_with(
            "/v1/chat/completions",
            &switchyard_tests::chat("chat", "hi"),
            &[("x-tier", "premium")],
        )
        .await;

    assert_eq!(reply.status, 502, "the rule replaced the targets");
    assert_eq!((m[0].request_count(), m[1].request_count()), (0, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_cost_expects_256_output_tokens_unless_told() {
    // `per-out` charges only output, `per-in` only input: `per-in` is cheaper exactly when the
    // prompt is shorter than the expected output.
    let m = providers(&["per-out", "per-in"]).await;
    let (url_out, url_in) = (m[0].base_url(), m[1].base_url());
    let yaml = pool_of(
        "pool",
        &[
            ProviderDef {
                input: "0",
                output: "1.00",
                context_window: 200_000,
                ..ProviderDef::new("per-out", &url_out, "m")
            },
            ProviderDef {
                input: "1.00",
                output: "0",
                context_window: 200_000,
                ..ProviderDef::new("per-in", &url_in, "m")
            },
        ],
        "",
    ) + &route(
        "cheap",
        "chat",
        &[("per-out", "m"), ("per-in", "m")],
        "strategy: LowestCost",
    );
    let h = Harness::start(&yaml).await;
    // About 150 and 400 prompt tokens, either side of the 256 default.
    let (short, long) = ("word ".repeat(150), "word ".repeat(400));

    assert_eq!(served_by(&h.chat("chat", &short).await), "pool/per-in");
    assert_eq!(served_by(&h.chat("chat", &long).await), "pool/per-out");

    // max_completion_tokens wins over max_tokens.
    let both = json!({"model": "chat", "max_tokens": 4000, "max_completion_tokens": 10,
        "messages": [{"role": "user", "content": short}]});
    let reply = h.post("/v1/chat/completions", &both).await;
    assert_eq!(served_by(&reply), "pool/per-out");
    h.stop().await;
}
