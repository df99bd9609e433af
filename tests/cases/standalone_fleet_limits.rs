//! Fleet-wide provider limits in standalone mode (docs/reference/sidecar.md#fleet-wide-provider-limits):
//! the one sidecar is the whole fleet and holds the whole `requestsPerMinute` of a provider with
//! `limits.scope: Fleet`. Once the minute is used its targets are skipped (failover, never
//! counted by the breaker); a route with no other target answers like a provider at its rate
//! limit: 429 `rate_limit_exceeded` in the client's format, with `Retry-After`.

use std::time::Duration;

use serde_json::json;
use switchyard_crds::window::{Period, Timestamp};
use switchyard_tests::{Fault, Harness, MockProvider, Reply, pool, route};

/// Waits until the current minute has at least 20 s left. A fleet limit counts per minute
/// aligned to the epoch: a test that crossed a minute boundary would see the count start again
/// and a refusal turn into an answer. 20 s is far more than these tests take.
async fn wait_for_room_in_the_minute() {
    let now = Timestamp::now();
    let left = Period::parse("1m")
        .and_then(|p| p.until_next(now))
        .expect("a minute window");
    if left < Duration::from_secs(20) {
        tokio::time::sleep(left + Duration::from_millis(200)).await;
    }
}

/// Pool `pool` with providers `a` (at most `rpm` requests a minute for the whole fleet) and
/// `b`; routes `r` (model `chat`: a, then b) and `only-a` (model `chat-a`).
async fn fleet_limited_a(rpm: u32) -> (Harness, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let pools = pool(
        &[("a", &a.base_url(), "m"), ("b", &b.base_url(), "m")],
        "",
        "",
    )
    .replacen(
        "    - name: b\n",
        &format!("      limits: {{scope: Fleet, requestsPerMinute: {rpm}}}\n    - name: b\n"),
        1,
    );
    let yaml = pools
        + &route("r", "chat", &[("a", "m"), ("b", "m")], "")
        + &route("only-a", "chat-a", &[("a", "m")], "");
    (Harness::start(&yaml).await, a, b)
}

fn assert_fleet_refusal(reply: &Reply, message: &str) {
    assert_eq!(
        reply.status,
        429,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        message
            .contains("provider pool/a is at its fleet-wide rate limit of 2 requests per minute"),
        "{message}"
    );
    let wait: u64 = reply.header("retry-after").parse().expect("Retry-After");
    assert!((1..=60).contains(&wait), "until the minute ends: {wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_fleet_limit_fails_over_then_refuses_like_a_rate_limited_provider() {
    wait_for_room_in_the_minute().await;
    let (h, a, b) = fleet_limited_a(2).await;
    for _ in 0..2 {
        let served = h.chat("chat", "hi").await;
        assert_eq!(served.status, 200);
        assert_eq!(served.header("x-switchyard-provider"), "pool/a");
    }

    let third = h.chat("chat", "hi").await;
    assert_eq!(third.status, 200);
    assert_eq!(third.header("x-switchyard-provider"), "pool/b");
    assert_eq!(
        third.header("x-switchyard-attempts"),
        "1",
        "a is skipped, not tried"
    );

    let openai = h.chat("chat-a", "hi").await;
    let body = openai.json();
    assert_fleet_refusal(&openai, body["error"]["message"].as_str().unwrap());
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(openai.header("x-switchyard-route"), "only-a");

    let anthropic = h
        .post_with(
            "/v1/messages",
            &json!({"model": "chat-a", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    let body = anthropic.json();
    assert_fleet_refusal(&anthropic, body["error"]["message"].as_str().unwrap());
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    assert_eq!(a.request_count(), 2, "the fleet limit, exactly");
    assert_eq!(b.request_count(), 1);
    assert_eq!(
        h.count("switchyard_circuit_open", &[("provider", "pool/a")])
            .await,
        0.0,
        "a limit kept by the fleet is not a provider failure"
    );
    assert_eq!(
        h.count(
            "switchyard_fleet_limit_refusals_total",
            &[("provider", "pool/a")]
        )
        .await,
        3.0,
        "the failover and the two refusals"
    );
    assert_eq!(
        h.metric(
            "switchyard_fleet_limit_remaining",
            &[("provider", "pool/a"), ("unit", "requests")]
        )
        .await,
        Some(0.0)
    );
    let metrics = h.metrics().await;
    assert!(
        !metrics.contains("switchyard_budget_"),
        "a fleet limit is not a budget:\n{metrics}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_counts_against_the_fleet_limit_as_the_provider_counts_it() {
    wait_for_room_in_the_minute().await;
    let (h, a, _b) = fleet_limited_a(2).await;
    a.push_faults([Fault::ServerError]);
    // a fails (counted: the provider saw it), b answers.
    let first = h.chat("chat", "hi").await;
    assert_eq!(first.header("x-switchyard-provider"), "pool/b");
    assert_eq!(h.chat("chat-a", "hi").await.status, 200);
    let refused = h.chat("chat-a", "hi").await;
    assert_eq!(refused.status, 429);
    assert_eq!(a.request_count(), 2);
    h.stop().await;
}
