//! Budgets in standalone mode (docs/reference/sidecar.md#budgets): the one sidecar is the whole
//! fleet and holds each whole limit. A budget without `providers` refuses with 429
//! `switchyard_budget_exhausted` in the client's format; one with `providers` makes its targets
//! ineligible so the request fails over; `Shadow` refuses nothing and counts.

use std::time::Duration;

use serde_json::json;
use switchyard_tests::{Harness, MockProvider, Reply, pool, route};

/// A Budget named `name` in `default` with `body` as its spec (YAML at spec indentation).
fn budget(name: &str, spec: &str) -> String {
    let mut yaml = format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: Budget\nmetadata: {{name: {name}}}\nspec:\n"
    );
    for line in spec.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str(&format!("  {line}\n"));
    }
    yaml
}

/// One provider `a` behind route `r` (model `chat`), plus `budgets`.
async fn one_provider(budgets: &str) -> (Harness, MockProvider, String) {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "m")], "", "")
        + &route("r", "chat", &[("a", "m")], "")
        + budgets;
    (Harness::start(&yaml).await, a, yaml)
}

fn assert_refused(reply: &Reply, budget: &str) -> String {
    assert_eq!(
        reply.status,
        429,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(message.contains(&format!("budget {budget} ")), "{message}");
    message.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_request_budget_refuses_in_each_client_format_with_retry_after() {
    let (h, a, _) =
        one_provider(&budget("two-a-day", "limits: [{period: Day, requests: 2}]")).await;
    for _ in 0..2 {
        assert_eq!(h.chat("chat", "hi").await.status, 200);
    }

    let openai = h.chat("chat", "hi").await;
    let message = assert_refused(&openai, "default/two-a-day");
    assert!(message.contains("2 of 2 requests"), "{message}");
    assert_eq!(
        openai.json()["error"]["code"],
        "switchyard_budget_exhausted"
    );
    assert_eq!(openai.json()["error"]["type"], "rate_limit_error");
    let wait: u64 = openai.header("retry-after").parse().expect("Retry-After");
    assert!((1..=86_400).contains(&wait), "until the day ends: {wait}");
    assert_eq!(openai.header("x-switchyard-route"), "r");

    let anthropic = h
        .post_with(
            "/v1/messages",
            &json!({"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_refused(&anthropic, "default/two-a-day");
    assert_eq!(anthropic.json()["type"], "error");
    assert_eq!(anthropic.json()["error"]["type"], "rate_limit_error");
    assert!(!anthropic.header("retry-after").is_empty());

    assert_eq!(
        a.request_count(),
        2,
        "refused requests never reach the provider"
    );
    let refusals = h
        .count(
            "switchyard_budget_refusals_total",
            &[("budget", "default/two-a-day")],
        )
        .await;
    assert_eq!(refusals, 2.0);
    let left = h
        .metric(
            "switchyard_budget_remaining",
            &[
                ("budget", "default/two-a-day"),
                ("period", "Day"),
                ("unit", "requests"),
            ],
        )
        .await;
    assert_eq!(left, Some(0.0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dollar_budget_is_charged_with_each_answers_cost() {
    // One micro-dollar a day: the first answer (priced 1.00/2.00 per million tokens) spends it.
    let (h, a, _) = one_provider(&budget(
        "tiny",
        r#"limits: [{period: Day, usd: "0.000001"}]"#,
    ))
    .await;
    let first = h.chat("chat", "hi").await;
    assert_eq!(first.status, 200);
    let streamed = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let message = assert_refused(&streamed, "default/tiny");
    assert!(message.contains("USD"), "{message}");
    assert_eq!(a.request_count(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_provider_budget_fails_over_to_the_routes_other_targets() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m"), ("b", &b.base_url(), "m")],
        "",
        "",
    ) + &route("r", "chat", &[("a", "m"), ("b", "m")], "")
        + &route("only-a", "chat-a", &[("a", "m")], "")
        + &budget(
            "a-quota",
            "selector: {providers: [{pool: pool, provider: a}]}\nlimits: [{period: Day, requests: 1}]",
        )
        + &budget(
            "only-a-cap",
            "selector: {routes: [only-a]}\nlimits: [{period: Day, requests: 5}]",
        );
    let h = Harness::start(&yaml).await;

    let first = h.chat("chat", "hi").await;
    assert_eq!(first.header("x-switchyard-provider"), "pool/a");
    let second = h.chat("chat", "hi").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-switchyard-provider"), "pool/b");
    assert_eq!(
        second.header("x-switchyard-attempts"),
        "1",
        "a is skipped, not tried"
    );
    assert_eq!(a.request_count(), 1);

    // A route with no other target has nothing to fail over to.
    let refused = h.chat("chat-a", "hi").await;
    assert_refused(&refused, "default/a-quota");
    assert_eq!(
        refused.json()["error"]["code"],
        "switchyard_budget_exhausted"
    );
    assert_eq!(a.request_count(), 1);
    assert_eq!(
        h.count("switchyard_circuit_open", &[("provider", "pool/a")])
            .await,
        0.0,
        "a budget is not a provider failure"
    );
    let route_cap_left = h
        .metric(
            "switchyard_budget_remaining",
            &[("budget", "default/only-a-cap"), ("unit", "requests")],
        )
        .await;
    assert_eq!(
        route_cap_left,
        Some(5.0),
        "the refused request gave back the route budget's slot"
    );
    assert_eq!(
        h.count(
            "switchyard_budget_refusals_total",
            &[("budget", "default/a-quota")]
        )
        .await,
        2.0,
        "once per request that reached a: the second, and the refused one"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_serves_everything_and_counts_would_be_refusals() {
    let (h, a, _) = one_provider(&budget(
        "watch",
        "mode: Shadow\nlimits: [{period: Day, requests: 1}]",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(h.chat("chat", "hi").await.status, 200);
    }
    assert_eq!(a.request_count(), 3);
    let refusals = h
        .count(
            "switchyard_budget_refusals_total",
            &[("budget", "default/watch")],
        )
        .await;
    assert_eq!(refusals, 2.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_selects_only_the_routes_it_names() {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "m")], "", "")
        + &route("capped", "chat", &[("a", "m")], "")
        + &route("free", "other", &[("a", "m")], "")
        + &budget(
            "capped-only",
            "selector: {routes: [capped]}\nlimits: [{period: Day, requests: 1}]",
        );
    let h = Harness::start(&yaml).await;
    assert_eq!(h.chat("chat", "hi").await.status, 200);
    assert_eq!(h.chat("chat", "hi").await.status, 429);
    for _ in 0..3 {
        assert_eq!(h.chat("other", "hi").await.status, 200, "not selected");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_window_has_room_again() {
    let (h, _a, _) = one_provider(&budget("per-2s", "limits: [{period: 2s, requests: 1}]")).await;
    // Two tries: the first request may land at the very end of a window.
    let mut refused = None;
    for _ in 0..2 {
        assert_eq!(h.chat("chat", "hi").await.status, 200);
        let next = h.chat("chat", "hi").await;
        if next.status == 429 {
            refused = Some(next);
            break;
        }
    }
    let refused = refused.expect("the second request in one window is refused");
    let wait: u64 = refused.header("retry-after").parse().expect("Retry-After");
    assert!((1..=2).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(h.chat("chat", "hi").await.status, 200, "after Retry-After");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_what_was_spent() {
    let (h, a, yaml) = one_provider(&budget("b", "limits: [{period: Day, requests: 2}]")).await;
    for _ in 0..2 {
        assert_eq!(h.chat("chat", "hi").await.status, 200);
    }
    assert_eq!(h.chat("chat", "hi").await.status, 429);

    // Raise the limit to 3: one more request, not three.
    h.rewrite(&yaml.replace("requests: 2", "requests: 3"));
    let raised = switchyard_tests::eventually(Duration::from_secs(10), || async {
        h.chat("chat", "hi").await.status == 200
    })
    .await;
    assert!(raised, "the reload raised the limit");
    assert_eq!(h.chat("chat", "hi").await.status, 429, "2 + 1 of 3 used");
    assert_eq!(a.request_count(), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_naming_a_missing_route_is_refused_on_load() {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "m")], "", "")
        + &route("r", "chat", &[("a", "m")], "")
        + &budget(
            "typo",
            "selector: {routes: [rr]}\nlimits: [{period: Day, requests: 1}]",
        );
    let error = Harness::try_start_with(&yaml, |_| {})
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("spec.selector.routes[0]") && error.contains("no ModelRoute rr"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_before_its_usage_is_charged_an_estimate() {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "m")], "timeouts: {idle: 300ms}", "")
        + &route("r", "chat", &[("a", "m")], "")
        + &budget("tokens", "limits: [{period: Day, tokens: 10}]");
    let h = Harness::start(&yaml).await;
    // Two events, then silence: the stream ends at the idle timeout, without the usage event.
    a.push_faults([switchyard_tests::Fault::StallMidStream { after_chunks: 2 }]);
    let streamed = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let broken = h.post("/v1/chat/completions", &streamed).await;
    assert_eq!(broken.status, 200, "committed before it broke");

    // Charged nothing, the budget would still have room; the estimate (the request's bytes / 4
    // plus a token per event) has used it up.
    let refused = h.chat("chat", "hi").await;
    let message = assert_refused(&refused, "default/tokens");
    assert!(message.contains("tokens"), "{message}");
    let tokens = h.count("switchyard_tokens_total", &[("route", "r")]).await;
    assert!(tokens >= 10.0, "the estimate is counted: {tokens}");
    h.stop().await;
}
