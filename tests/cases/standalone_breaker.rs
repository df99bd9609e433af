//! Target eligibility over time, with real clocks and short windows: the circuit breaker (opens
//! after `consecutiveFailures`, one probe after `cooldown`, a good probe closes and a bad one
//! reopens, the `switchyard_circuit_open` gauge follows), the "every target blocked" fallback, and
//! the per-sidecar `limits` (`maxConcurrent`, `requestsPerMinute`, `tokensPerMinute`).

use std::sync::Arc;
use std::time::Duration;

use switchyard_tests::{Behavior, Fault, Harness, MockProvider, pool, route};

/// Route `r` (model `chat`) over `a` (model `m-a`) then `b` (model `m-b`), with the pool's
/// `circuitBreaker` set to `breaker`.
async fn pair(provider_extra: &str, breaker: &str) -> (Harness, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        provider_extra,
        breaker,
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "");
    (Harness::start(&yaml).await, a, b)
}

const SHORT_BREAKER: &str = "{consecutiveFailures: 2, cooldown: 300ms}";
const COOLDOWN: Duration = Duration::from_millis(300);

async fn served_by(h: &Harness) -> (String, String) {
    let reply = h.chat("chat", "hi").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    (
        reply.header("x-switchyard-provider").to_string(),
        reply.header("x-switchyard-attempts").to_string(),
    )
}

async fn gauge_a(h: &Harness) -> f64 {
    h.count(
        "switchyard_circuit_open",
        &[("provider", "pool/a"), ("model", "m-a")],
    )
    .await
}

fn owned(provider: &str, attempts: &str) -> (String, String) {
    (provider.to_string(), attempts.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_consecutive_failures_and_a_good_probe_closes_it() {
    let (h, a, b) = pair("", SHORT_BREAKER).await;
    a.set_default_fault(Some(Fault::ServerError));

    assert_eq!(served_by(&h).await, owned("pool/b", "2"));
    assert_eq!(gauge_a(&h).await, 0.0, "one failure of two");
    assert_eq!(served_by(&h).await, owned("pool/b", "2"));
    assert_eq!(gauge_a(&h).await, 1.0, "the second failure opens it");

    // Open: a is not contacted.
    for _ in 0..3 {
        assert_eq!(served_by(&h).await, owned("pool/b", "1"));
    }
    assert_eq!(a.request_count(), 2);

    // After the cooldown one probe goes through; a has recovered, so it closes.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    a.set_default_fault(None);
    assert_eq!(served_by(&h).await, owned("pool/a", "1"));
    assert_eq!(gauge_a(&h).await, 0.0);
    assert_eq!(served_by(&h).await, owned("pool/a", "1"));
    assert_eq!(a.request_count(), 4);
    assert_eq!(b.request_count(), 5);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_reopens_the_circuit() {
    let (h, a, _b) = pair("", SHORT_BREAKER).await;
    a.set_default_fault(Some(Fault::ServerError));
    served_by(&h).await;
    served_by(&h).await;
    assert_eq!(gauge_a(&h).await, 1.0);

    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    // The probe fails: one failure is enough to reopen a half-open circuit.
    assert_eq!(served_by(&h).await, owned("pool/b", "2"));
    assert_eq!(a.request_count(), 3, "exactly one probe");
    assert_eq!(gauge_a(&h).await, 1.0);
    assert_eq!(served_by(&h).await, owned("pool/b", "1"), "open again");
    assert_eq!(a.request_count(), 3);

    // And the next cooldown gives it another chance.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    a.set_default_fault(None);
    assert_eq!(served_by(&h).await, owned("pool/a", "1"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_resets_the_consecutive_failure_count() {
    let (h, a, _b) = pair("", SHORT_BREAKER).await;
    a.push_faults([Fault::ServerError]);
    assert_eq!(served_by(&h).await, owned("pool/b", "2"));
    assert_eq!(served_by(&h).await, owned("pool/a", "1"));
    a.push_faults([Fault::ServerError]);
    assert_eq!(served_by(&h).await, owned("pool/b", "2"));

    assert_eq!(gauge_a(&h).await, 0.0, "two failures, but not consecutive");
    assert_eq!(served_by(&h).await, owned("pool/a", "1"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_errors_keep_the_circuit_open_for_ten_cooldowns() {
    let (h, a, _b) = pair("", "{consecutiveFailures: 5, cooldown: 200ms}").await;
    a.push_faults([Fault::Unauthorized]);
    assert_eq!(served_by(&h).await, owned("pool/b", "2"));

    // Well past one cooldown, still open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_by(&h).await, owned("pool/b", "1"));
    assert_eq!(a.request_count(), 1);

    // Past 10 × 200 ms, a probe goes through.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(served_by(&h).await, owned("pool/a", "1"));
    h.stop().await;
}

/// Providers `a` and `b` behind route `r` (a first), plus one-target routes `a-only` and
/// `b-only` to open one circuit at a time; circuits open at the first failure, for 30 s.
async fn open_circuits() -> (Harness, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "{consecutiveFailures: 1, cooldown: 30s}",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "")
        + &route("a-only", "a-only", &[("a", "m-a")], "")
        + &route("b-only", "b-only", &[("b", "m-b")], "");
    (Harness::start(&yaml).await, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_circuit_is_open_the_one_reopening_first_is_tried() {
    let (h, a, b) = open_circuits().await;
    // b's circuit opens before a's, so b's block ends first although a is written first in `r`.
    b.push_faults([Fault::ServerError]);
    assert_eq!(h.chat("b-only", "hi").await.status, 502);
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.push_faults([Fault::ServerError]);
    assert_eq!(h.chat("a-only", "hi").await.status, 502);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 200, "not refused: {:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    assert_eq!((a.request_count(), b.request_count()), (1, 2));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_circuit_is_open_is_the_last_resort_when_the_eligible_ones_fail() {
    let (h, a, b) = open_circuits().await;
    b.push_faults([Fault::ServerError]);
    assert_eq!(h.chat("b-only", "hi").await.status, 502);
    a.push_faults([Fault::ServerError]);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 200, "b has recovered: {:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(
        reply.header("x-switchyard-attempts"),
        "2",
        "a first, then b"
    );
    assert_eq!((a.request_count(), b.request_count()), (1, 2));
    // b's answer closed its circuit; a's is open now: b serves alone.
    let reply = h.chat("chat", "again").await;
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_target_route_still_tries_its_blocked_target() {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a")],
        "",
        "{consecutiveFailures: 1, cooldown: 30s}",
    ) + &route("solo", "chat", &[("a", "m-a")], "");
    let h = Harness::start(&yaml).await;
    a.push_faults([Fault::ServerError]);
    assert_eq!(h.chat("chat", "hi").await.status, 502);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 200);
    assert_eq!(a.request_count(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_sends_the_overflow_to_the_next_target() {
    let (h, a, b) = pair("limits: {maxConcurrent: 1}", "").await;
    a.set_behavior(Behavior {
        latency: Duration::from_millis(600),
        ..Behavior::default()
    });
    let h = Arc::new(h);

    let first = tokio::spawn({
        let h = h.clone();
        async move { h.chat("chat", "slow one").await }
    });
    let in_flight =
        switchyard_tests::eventually(Duration::from_secs(2), || async { a.request_count() == 1 })
            .await;
    assert!(in_flight, "the first request reached a");

    let second = h.chat("chat", "overflow").await;
    assert_eq!(second.header("x-switchyard-provider"), "pool/b");
    assert_eq!(
        second.header("x-switchyard-attempts"),
        "1",
        "a was not tried"
    );
    assert_eq!(a.request_count(), 1);

    let first = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("bounded")
        .expect("task");
    assert_eq!(first.header("x-switchyard-provider"), "pool/a");
    assert_eq!(b.request_count(), 1);

    // The slot is free again.
    a.set_behavior(Behavior::default());
    let third = h.chat("chat", "after").await;
    assert_eq!(third.header("x-switchyard-provider"), "pool/a");
    Harness::stop_shared(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_stream_holds_its_concurrency_slot() {
    let (h, a, b) = pair("limits: {maxConcurrent: 1}\ntimeouts: {idle: 1s}", "").await;
    a.push_faults([Fault::StallMidStream { after_chunks: 2 }]);
    let h = Arc::new(h);
    let body = serde_json::json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "stream"}]});

    let stalled = tokio::spawn({
        let h = h.clone();
        async move { h.post("/v1/chat/completions", &body).await }
    });
    assert!(
        switchyard_tests::eventually(Duration::from_secs(2), || async { a.request_count() == 1 })
            .await
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let second = h.chat("chat", "meanwhile").await;
    assert_eq!(second.header("x-switchyard-provider"), "pool/b");
    assert_eq!(a.request_count(), 1);
    let stalled = tokio::time::timeout(Duration::from_secs(5), stalled)
        .await
        .expect("the idle timeout ends the stream")
        .expect("task");
    assert_eq!(stalled.header("x-switchyard-provider"), "pool/a");
    assert_eq!(b.request_count(), 1);
    Harness::stop_shared(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_sends_the_excess_to_the_next_target() {
    let (h, a, b) = pair("limits: {requestsPerMinute: 2}", "").await;

    let mut providers = Vec::new();
    for _ in 0..4 {
        providers.push(served_by(&h).await.0);
    }

    assert_eq!(providers, ["pool/a", "pool/a", "pool/b", "pool/b"]);
    // b has the same limit: its own two requests are within it.
    assert_eq!((a.request_count(), b.request_count()), (2, 2));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_over_its_local_limit_is_not_a_last_resort() {
    let (h, a, b) = pair("limits: {requestsPerMinute: 1}", "").await;
    assert_eq!(served_by(&h).await.0, "pool/a");
    b.push_faults([Fault::ServerError]);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 502, "b failed and a is over its limit");
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_minute_are_charged_with_reported_usage() {
    let (h, a, b) = pair("limits: {tokensPerMinute: 20}", "").await;
    // One request reports well over 20 tokens: the bucket goes negative.
    let reply = h.chat("chat", &"lots of words here ".repeat(30)).await;
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    assert!(reply.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 20);

    let next = h.chat("chat", "hi").await;

    assert_eq!(next.header("x-switchyard-provider"), "pool/b");
    assert_eq!(next.header("x-switchyard-attempts"), "1");
    assert_eq!(a.request_count(), 1);
    assert_eq!(b.request_count(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_circuit_lets_exactly_one_probe_through() {
    let (h, a, b) = pair("", SHORT_BREAKER).await;
    a.set_default_fault(Some(Fault::ServerError));
    served_by(&h).await;
    served_by(&h).await;
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    a.set_default_fault(None);
    // A slow probe, so that the other requests arrive while it is out.
    a.set_behavior(Behavior {
        latency: Duration::from_millis(800),
        ..Behavior::default()
    });
    let h = Arc::new(h);

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.chat("chat", "probe?")
                .await
                .header("x-switchyard-provider")
                .to_string()
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut providers = Vec::new();
    for task in tasks {
        let provider = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("bounded")
            .expect("task");
        providers.push(provider);
    }

    let probes = providers.iter().filter(|p| *p == "pool/a").count();
    assert_eq!(probes, 1, "{providers:?}");
    assert_eq!(a.request_count(), 3, "two failures, one probe");
    assert_eq!(b.request_count(), 5);
    Harness::stop_shared(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_survives_a_reload() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "{consecutiveFailures: 1, cooldown: 30s}",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "");
    let h = Harness::start(&yaml).await;
    a.push_faults([Fault::ServerError]);
    assert_eq!(served_by(&h).await, owned("pool/b", "2"));

    h.rewrite(&(yaml + &route("other", "other", &[("b", "m-b")], "")));
    let reloaded = switchyard_tests::eventually(Duration::from_secs(5), || async {
        h.chat("other", "hi").await.status == 200
    })
    .await;
    assert!(reloaded);

    assert_eq!(
        served_by(&h).await,
        owned("pool/b", "1"),
        "a is still known to be down"
    );
    assert_eq!(a.request_count(), 1);
    assert_eq!(gauge_a(&h).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuits_are_per_pool_provider_and_model() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: a
      api: OpenAI
      baseUrl: {a_url}
      models:
        - {{name: m1, inputPerMillion: \"1\", outputPerMillion: \"1\"}}
        - {{name: m2, inputPerMillion: \"1\", outputPerMillion: \"1\"}}
    - name: b
      api: OpenAI
      baseUrl: {b_url}
      models:
        - {{name: m-b, inputPerMillion: \"1\", outputPerMillion: \"1\"}}
  circuitBreaker: {{consecutiveFailures: 1, cooldown: 30s}}
",
        a_url = a.base_url(),
        b_url = b.base_url()
    ) + &route("one", "one", &[("a", "m1"), ("b", "m-b")], "")
        + &route("two", "two", &[("a", "m2"), ("b", "m-b")], "");
    let h = Harness::start(&yaml).await;
    a.push_faults([Fault::ServerError]);

    let first = h.chat("one", "hi").await;
    assert_eq!(first.header("x-switchyard-provider"), "pool/b");
    let m1 = [("provider", "pool/a"), ("model", "m1")];
    assert_eq!(h.count("switchyard_circuit_open", &m1).await, 1.0);

    let other_model = h.chat("two", "hi").await;

    assert_eq!(other_model.header("x-switchyard-provider"), "pool/a");
    assert_eq!(other_model.header("x-switchyard-model"), "m2");
    let m2 = [("provider", "pool/a"), ("model", "m2")];
    assert_eq!(h.count("switchyard_circuit_open", &m2).await, 0.0);
    // And m1 is still open, for both routes that use it.
    assert_eq!(
        h.chat("one", "hi").await.header("x-switchyard-provider"),
        "pool/b"
    );
    assert_eq!(a.request_count(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_break_after_their_first_tokens_open_the_circuit() {
    let (h, a, _b) = pair("", SHORT_BREAKER).await;
    a.set_default_fault(Some(Fault::ErrorMidStream { after_chunks: 2 }));
    let streamed = serde_json::json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let provider_of = |reply: &switchyard_tests::Reply| {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.header("x-switchyard-provider").to_string()
    };

    // Each stream commits to a (so it cannot fail over) and then breaks.
    let first = h.post("/v1/chat/completions", &streamed).await;
    assert_eq!(provider_of(&first), "pool/a");
    assert_eq!(gauge_a(&h).await, 0.0, "one failure of two");
    let second = h.post("/v1/chat/completions", &streamed).await;
    assert_eq!(provider_of(&second), "pool/a");
    assert_eq!(gauge_a(&h).await, 1.0, "the second broken stream opens it");

    let third = h.post("/v1/chat/completions", &streamed).await;
    assert_eq!(provider_of(&third), "pool/b", "new streams avoid a");
    assert_eq!(a.request_count(), 2);
    h.stop().await;
}
