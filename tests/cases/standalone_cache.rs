//! The per-sidecar response cache (`ModelRoute.spec.cache`, docs/reference/sidecar.md#cache): only
//! deterministic requests (`temperature` 0 or a `seed`, `n` 1, not streamed) on routes with a
//! cache are answered from it; entries expire after `ttl`, the least recently used go first beyond
//! `maxEntries`, and failures are never cached.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::{Fault, Harness, MockProvider, pool, route};

async fn cached_route(cache: &str) -> (Harness, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let extra = if cache.is_empty() {
        String::new()
    } else {
        format!("cache: {cache}")
    };
    let yaml =
        pool(&[("a", &a.base_url(), "m-a")], "", "") + &route("r", "chat", &[("a", "m-a")], &extra);
    (Harness::start(&yaml).await, a)
}

fn body(text: &str, extra: Value) -> Value {
    let mut body = json!({"model": "chat", "messages": [{"role": "user", "content": text}]});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    body
}

const PATH: &str = "/v1/chat/completions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deterministic_request_is_answered_from_the_cache() {
    let (h, a) = cached_route("{ttl: 10m}").await;
    let request = body("what is 2+2?", json!({"temperature": 0}));

    let first = h.post(PATH, &request).await;
    let second = h.post(PATH, &request).await;

    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert_eq!(
        a.request_count(),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(first.body, second.body, "the very same answer");
    assert_eq!(second.header("x-switchyard-cache"), "hit");
    assert_eq!(
        first.header("x-switchyard-cache"),
        "",
        "the first was a miss"
    );
    assert_eq!(second.header("x-switchyard-route"), "r");
    assert_eq!(second.header("x-switchyard-provider"), "pool/a");
    assert_eq!(second.header("x-switchyard-model"), "m-a");
    assert_eq!(
        h.count("switchyard_cache_hits_total", &[("route", "r")])
            .await,
        1.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_makes_a_request_cacheable() {
    let (h, a) = cached_route("{ttl: 10m}").await;
    let request = body("pick a number", json!({"seed": 42, "temperature": 0.9}));

    h.post(PATH, &request).await;
    h.post(PATH, &request).await;

    assert_eq!(a.request_count(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_deterministic_requests_are_never_cached() {
    let (h, a) = cached_route("{ttl: 10m}").await;
    let cases = [
        ("no temperature", body("x", json!({}))),
        ("sampling", body("x", json!({"temperature": 0.7}))),
        (
            "several choices",
            body("x", json!({"temperature": 0, "n": 2})),
        ),
        (
            "streamed",
            body("x", json!({"temperature": 0, "stream": true})),
        ),
    ];
    for (what, request) in cases {
        let before = a.request_count();
        assert_eq!(h.post(PATH, &request).await.status, 200, "{what}");
        let again = h.post(PATH, &request).await;
        assert_eq!(again.status, 200, "{what}");
        assert_eq!(
            a.request_count(),
            before + 2,
            "{what} was answered from the cache"
        );
        assert_eq!(again.header("x-switchyard-cache"), "", "{what}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_a_cache_does_not_cache() {
    let (h, a) = cached_route("").await;
    let request = body("what is 2+2?", json!({"temperature": 0}));

    h.post(PATH, &request).await;
    h.post(PATH, &request).await;

    assert_eq!(a.request_count(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_requests_do_not_share_entries() {
    let (h, a) = cached_route("{ttl: 10m}").await;

    h.post(PATH, &body("question one", json!({"temperature": 0})))
        .await;
    let other = h
        .post(PATH, &body("question two", json!({"temperature": 0})))
        .await;
    let other_params = h
        .post(
            PATH,
            &body("question one", json!({"temperature": 0, "max_tokens": 5})),
        )
        .await;

    assert_eq!(a.request_count(), 3);
    assert_eq!(other.header("x-switchyard-cache"), "");
    assert_eq!(other_params.header("x-switchyard-cache"), "");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_after_the_ttl() {
    let (h, a) = cached_route("{ttl: 300ms}").await;
    let request = body("what is 2+2?", json!({"temperature": 0}));

    h.post(PATH, &request).await;
    h.post(PATH, &request).await;
    assert_eq!(a.request_count(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = h.post(PATH, &request).await;

    assert_eq!(a.request_count(), 2, "an expired entry is not served");
    assert_eq!(after.header("x-switchyard-cache"), "");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_entry_goes_first() {
    let (h, a) = cached_route("{ttl: 10m, maxEntries: 2}").await;
    let [x, y, z] = ["x", "y", "z"].map(|t| body(t, json!({"temperature": 0})));

    h.post(PATH, &x).await;
    h.post(PATH, &y).await;
    h.post(PATH, &x).await; // a hit: x is now the most recent
    h.post(PATH, &z).await; // evicts y
    assert_eq!(a.request_count(), 3);
    assert_eq!(h.post(PATH, &x).await.header("x-switchyard-cache"), "hit");
    assert_eq!(h.post(PATH, &y).await.header("x-switchyard-cache"), "");

    assert_eq!(a.request_count(), 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_not_cached() {
    let (h, a) = cached_route("{ttl: 10m}").await;
    let request = body("what is 2+2?", json!({"temperature": 0}));
    a.push_faults([Fault::BadRequest]);

    assert_eq!(h.post(PATH, &request).await.status, 400);
    let retry = h.post(PATH, &request).await;

    assert_eq!(retry.status, 200);
    assert_eq!(a.request_count(), 2);
    h.stop().await;
}
