//! Failure classes (docs/reference/sidecar.md) on non-streamed requests: each failover class moves
//! on to the next target and is counted under its class; `ClientError` and classes left out of
//! `failover.on` are not failed over; `maxAttempts` caps attempts; `ContextLengthExceeded` only
//! moves to a larger window; and when every target fails the client gets one error naming each
//! attempt, with a status that fits the last failure.

use std::time::Duration;

use switchyard_tests::{
    Fault, Harness, MockProvider, ProviderDef, Reply, eventually, pool, pool_of, refused_url, route,
};
use tokio::time::Instant;

/// Route `r` (model `chat`) over provider `a` (model `m-a`) then `b` (model `m-b`).
async fn pair_at(
    a_url: &str,
    b: &MockProvider,
    provider_extra: &str,
    route_extra: &str,
) -> Harness {
    let yaml = pool(
        &[("a", a_url, "m-a"), ("b", &b.base_url(), "m-b")],
        provider_extra,
        "",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], route_extra);
    Harness::start(&yaml).await
}

async fn pair(provider_extra: &str, route_extra: &str) -> (Harness, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let h = pair_at(&a.base_url(), &b, provider_extra, route_extra).await;
    (h, a, b)
}

/// `b` answered after `a` failed with `class`, and the metrics say so.
async fn assert_failed_over(h: &Harness, reply: &Reply, class: &str) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-model"), "m-b");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert!(reply.json()["choices"].is_array(), "b's completion");
    let failovers = [("route", "r"), ("provider", "pool/a"), ("reason", class)];
    assert_eq!(
        h.count("switchyard_failovers_total", &failovers).await,
        1.0,
        "failovers_total{{reason={class}}}"
    );
    let failed = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("model", "m-a"),
        ("outcome", class),
    ];
    assert_eq!(h.count("switchyard_requests_total", &failed).await, 1.0);
    let served = [
        ("route", "r"),
        ("provider", "pool/b"),
        ("outcome", "Success"),
    ];
    assert_eq!(h.count("switchyard_requests_total", &served).await, 1.0);
}

/// `a` fails once with `fault`; the request must fail over to `b` under `class`.
async fn fails_over_on(fault: Fault, class: &str) -> (Harness, MockProvider, MockProvider) {
    let (h, a, b) = pair("", "").await;
    a.push_faults([fault]);
    let reply = h.chat("chat", "hi").await;
    assert_failed_over(&h, &reply, class).await;
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    (h, a, b)
}

/// The next request does not contact `a` at all: it is blocked.
async fn assert_a_is_skipped(h: &Harness, a: &MockProvider, b: &MockProvider) {
    let (a_before, b_before) = (a.request_count(), b.request_count());
    let reply = h.chat("chat", "again").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(
        reply.header("x-switchyard-attempts"),
        "1",
        "a was not tried"
    );
    assert_eq!(a.request_count(), a_before, "a was contacted while blocked");
    assert_eq!(b.request_count(), b_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_fails_over_as_connect_error() {
    let b = MockProvider::start("b").await.expect("mock b");
    let h = pair_at(&refused_url(), &b, "", "").await;

    let reply = h.chat("chat", "hi").await;

    assert_failed_over(&h, &reply, "ConnectError").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_fails_over_as_connect_error() {
    let (h, ..) = fails_over_on(Fault::Reset, "ConnectError").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_provider_times_out_at_the_total_timeout_and_fails_over() {
    let (h, a, b) = pair("timeouts: {total: 300ms}", "").await;
    a.push_faults([Fault::Hang]);

    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), h.chat("chat", "hi"))
        .await
        .expect("the hang is cut off by the timeout");
    let took = started.elapsed();

    assert_failed_over(&h, &reply, "Timeout").await;
    assert!(
        took >= Duration::from_millis(290),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "gave up late: {took:?}");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_requests_skip_a_provider_that_answers_nothing_for_its_first_token_timeout() {
    // Each attempt waits at most `firstToken` for its head, so the target has left requests
    // unanswered that long only while a later attempt still waits: the first gives up at 1 s and
    // fails over, the second (sent at 0.6 s) still waits, and the next request skips the target.
    let (h, a, b) = pair("timeouts: {firstToken: 1s, total: 20s}", "").await;
    a.set_default_fault(Some(Fault::Hang));
    let h = std::sync::Arc::new(h);
    let send = |text: &'static str| {
        let h = h.clone();
        tokio::spawn(async move { h.chat("chat", text).await })
    };
    let first = send("stuck");
    assert!(eventually(Duration::from_secs(2), || async { a.request_count() == 1 }).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = send("stuck too");
    assert!(eventually(Duration::from_secs(2), || async { a.request_count() == 2 }).await);
    let first = first.await.expect("first request");
    assert_eq!(first.header("x-switchyard-provider"), "pool/b");

    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), h.chat("chat", "next"))
        .await
        .expect("the next request is not held by the silent provider");

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(
        reply.header("x-switchyard-attempts"),
        "1",
        "a was not tried"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(a.request_count(), 2, "a got another request while silent");
    let second = second.await.expect("second request");
    assert_eq!(second.header("x-switchyard-provider"), "pool/b");
    assert_eq!(b.request_count(), 3);
    Harness::stop_shared(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_with_retry_after_fails_over_and_blocks_the_target() {
    let (h, a, b) = fails_over_on(
        Fault::RateLimited {
            retry_after: Some("30".into()),
        },
        "RateLimited",
    )
    .await;

    assert_a_is_skipped(&h, &a, &b).await;
    let gauge = [("provider", "pool/a"), ("model", "m-a")];
    assert_eq!(
        h.count("switchyard_circuit_open", &gauge).await,
        0.0,
        "a Retry-After blocks without opening the circuit"
    );
    // Past the 1 s block of a 429 without a hint: the 30 s hint still holds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_a_is_skipped(&h, &a, &b).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_read_in_seconds_http_dates_and_milliseconds() {
    let in_30s = std::time::SystemTime::now() + Duration::from_secs(30);
    let forms = [
        ("retry-after", "30".to_string()),
        ("retry-after", httpdate::fmt_http_date(in_30s)),
        ("retry-after-ms", "30000".to_string()),
    ];
    for (name, value) in forms {
        let a = MockProvider::start("a").await.expect("mock a");
        let yaml = pool(&[("a", &a.base_url(), "m-a")], "", "")
            + &route("solo", "chat", &[("a", "m-a")], "");
        let h = Harness::start(&yaml).await;
        a.push_faults([Fault::Status {
            status: 429,
            body: r#"{"error":{"message":"slow down","code":"rate_limit_exceeded"}}"#.into(),
            headers: vec![(name.to_string(), value.clone())],
        }]);

        let reply = h.chat("chat", "hi").await;

        assert_eq!(reply.status, 429);
        let seconds: u64 = reply.header("retry-after").parse().expect("seconds");
        assert!(
            (29..=30).contains(&seconds),
            "{name}: {value} gave {seconds}"
        );
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_blocks_are_capped_at_max_retry_after() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "{maxRetryAfter: 1s}",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "");
    let h = Harness::start(&yaml).await;
    a.push_faults([Fault::RateLimited {
        retry_after: Some("3600".into()),
    }]);

    assert_eq!(
        h.chat("chat", "hi").await.header("x-switchyard-provider"),
        "pool/b"
    );
    assert_a_is_skipped(&h, &a, &b).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = h.chat("chat", "later").await;

    assert_eq!(
        reply.header("x-switchyard-provider"),
        "pool/a",
        "blocked for 1 s, not 1 h"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_without_retry_after_blocks_the_target_for_about_a_second() {
    let (h, a, b) = fails_over_on(Fault::RateLimited { retry_after: None }, "RateLimited").await;

    assert_a_is_skipped(&h, &a, &b).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = h.chat("chat", "later").await;
    assert_eq!(
        reply.header("x-switchyard-provider"),
        "pool/a",
        "the block ended"
    );
    assert_eq!(a.request_count(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_500_fails_over() {
    let (h, ..) = fails_over_on(Fault::ServerError, "ServerError").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_503_fails_over_as_overloaded() {
    let (h, ..) = fails_over_on(Fault::Overloaded, "Overloaded").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_529_fails_over_as_overloaded() {
    let (h, ..) = fails_over_on(Fault::Status529, "Overloaded").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_fails_over_as_server_error() {
    let (h, ..) = fails_over_on(Fault::Garbage, "ServerError").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_fails_over_and_opens_the_circuit_at_once() {
    let (h, a, b) = fails_over_on(Fault::Unauthorized, "AuthError").await;

    let gauge = [("provider", "pool/a"), ("model", "m-a")];
    assert_eq!(h.count("switchyard_circuit_open", &gauge).await, 1.0);
    assert_a_is_skipped(&h, &a, &b).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_quota_fails_over_as_out_of_credits_and_opens_the_circuit() {
    let (h, a, b) = fails_over_on(Fault::InsufficientQuota, "OutOfCredits").await;

    let gauge = [("provider", "pool/a"), ("model", "m-a")];
    assert_eq!(h.count("switchyard_circuit_open", &gauge).await, 1.0);
    assert_a_is_skipped(&h, &a, &b).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_statuses_classify_as_designed() {
    let cases = [
        (402, "{}", "OutOfCredits"),
        (403, "{}", "AuthError"),
        (502, "bad gateway", "ServerError"),
        (504, "gateway timeout", "ServerError"),
        (503, "upstream connect error", "ServerError"),
        (
            400,
            r#"{"error":{"message":"Your credit balance is too low"}}"#,
            "OutOfCredits",
        ),
        (
            404,
            r#"{"error":{"message":"model not found"}}"#,
            "ServerError",
        ),
    ];
    for (status, body, class) in cases {
        let (h, a, _b) = pair("", "").await;
        a.push_faults([Fault::Status {
            status,
            body: body.into(),
            headers: vec![],
        }]);
        let reply = h.chat("chat", "hi").await;
        assert_eq!(reply.status, 200, "HTTP {status} was not failed over");
        assert_failed_over(&h, &reply, class).await;
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_length_fails_over_only_to_a_larger_window() {
    let m: Vec<MockProvider> = start_all(&["a", "smaller", "equal", "larger"]).await;
    let urls: Vec<String> = m.iter().map(MockProvider::base_url).collect();
    let def = |name, url, window| ProviderDef {
        context_window: window,
        ..ProviderDef::new(name, url, "m")
    };
    let yaml = pool_of(
        "pool",
        &[
            def("a", &urls[0], 4000),
            def("smaller", &urls[1], 2000),
            def("equal", &urls[2], 4000),
            def("larger", &urls[3], 8000),
        ],
        "",
    ) + &route(
        "r",
        "chat",
        &[
            ("a", "m"),
            ("smaller", "m"),
            ("equal", "m"),
            ("larger", "m"),
        ],
        "failover: {maxAttempts: 4}",
    );
    let h = Harness::start(&yaml).await;
    m[0].push_faults([Fault::ContextLength]);

    let reply = h.chat("chat", "a very long conversation").await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/larger");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    let counts: Vec<usize> = m.iter().map(MockProvider::request_count).collect();
    assert_eq!(
        counts,
        [1, 0, 0, 1],
        "smaller and equal windows are not tried"
    );
    let failovers = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("reason", "ContextLengthExceeded"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_length_without_a_larger_window_returns_400() {
    let (h, a, b) = pair("", "").await; // both windows are 1000
    a.push_faults([Fault::ContextLength]);

    let reply = h.chat("chat", "too long").await;

    assert_eq!(reply.status, 400);
    assert_eq!(b.request_count(), 0, "an equal window cannot help");
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "context_length_exceeded", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("context length")
    );
    assert_eq!(a.request_count(), 1);
    h.stop().await;
}

async fn start_all(names: &[&str]) -> Vec<MockProvider> {
    let mut out = Vec::new();
    for name in names {
        out.push(MockProvider::start(name).await.expect("mock provider"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_is_returned_as_is_and_not_failed_over() {
    let (h, a, b) = pair("", "").await;
    a.push_faults([Fault::BadRequest]);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 400);
    assert_eq!(b.request_count(), 0, "ClientError is never failed over");
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    let error = &reply.json()["error"];
    assert_eq!(
        error["param"], "temperature",
        "the provider's own body: {error}"
    );
    assert_eq!(error["code"], "decimal_above_max_value");
    assert!(error["message"].as_str().unwrap().contains("temperature"));
    let failed = [("provider", "pool/a"), ("outcome", "ClientError")];
    assert_eq!(h.count("switchyard_requests_total", &failed).await, 1.0);
    assert_eq!(a.request_count(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_do_not_open_the_circuit() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "{consecutiveFailures: 1, cooldown: 30s}",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "");
    let h = Harness::start(&yaml).await;
    a.push_faults([Fault::BadRequest, Fault::BadRequest]);

    assert_eq!(h.chat("chat", "hi").await.status, 400);
    assert_eq!(h.chat("chat", "hi").await.status, 400);
    let reply = h.chat("chat", "hi").await;

    assert_eq!(
        reply.header("x-switchyard-provider"),
        "pool/a",
        "still closed"
    );
    assert_eq!((a.request_count(), b.request_count()), (3, 0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_filtered_is_not_failed_over_by_default() {
    let (h, a, b) = pair("", "").await;
    a.push_faults([Fault::Status {
        status: 400,
        body: r#"{"error":{"message":"flagged","type":"invalid_request_error","code":"content_filter"}}"#
            .into(),
        headers: vec![],
    }]);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 400);
    assert_eq!(b.request_count(), 0);
    assert_eq!(reply.json()["error"]["code"], "content_filter");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_filtered_fails_over_when_listed() {
    let (h, a, _b) = pair("", "failover: {on: [ContentFiltered]}").await;
    a.push_faults([Fault::Status {
        status: 400,
        body: r#"{"error":{"message":"flagged","code":"content_filter"}}"#.into(),
        headers: vec![],
    }]);

    let reply = h.chat("chat", "hi").await;

    assert_failed_over(&h, &reply, "ContentFiltered").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_missing_from_failover_on_is_not_failed_over() {
    let (h, a, b) = pair("", "failover: {on: [Timeout, ConnectError]}").await;
    a.push_faults([Fault::ServerError]);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 502);
    assert_eq!(b.request_count(), 0);
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    assert_eq!(reply.json()["error"]["code"], "upstream_server_error");
    let failovers = [("route", "r"), ("provider", "pool/a")];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 0.0);

    // A listed class still fails over.
    a.push_faults([Fault::Reset]);
    let reply = h.chat("chat", "hi").await;
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_one_stops_after_the_first_failure() {
    let (h, a, b) = pair("", "failover: {maxAttempts: 1}").await;
    a.push_faults([Fault::ServerError]);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    assert_eq!((a.request_count(), b.request_count()), (1, 0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_reaches_the_third_target_and_stops_at_max_attempts() {
    let m = start_all(&["a", "b", "c", "d"]).await;
    let yaml = pool(
        &[
            ("a", &m[0].base_url(), "m"),
            ("b", &m[1].base_url(), "m"),
            ("c", &m[2].base_url(), "m"),
            ("d", &m[3].base_url(), "m"),
        ],
        "",
        "",
    ) + &route(
        "r",
        "chat",
        &[("a", "m"), ("b", "m"), ("c", "m"), ("d", "m")],
        "",
    );
    let h = Harness::start(&yaml).await;
    m[0].push_faults([Fault::ServerError]);
    m[1].push_faults([Fault::Overloaded]);

    let reply = h.chat("chat", "hi").await;
    assert_eq!(reply.header("x-switchyard-provider"), "pool/c");
    assert_eq!(reply.header("x-switchyard-attempts"), "3");

    // Default maxAttempts is 3: with a, b and c failing, d is never tried.
    m[0].push_faults([Fault::ServerError]);
    m[1].push_faults([Fault::ServerError]);
    m[2].push_faults([Fault::ServerError]);
    let reply = h.chat("chat", "hi").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("x-switchyard-attempts"), "3");
    assert_eq!(m[3].request_count(), 0);
    h.stop().await;
}

/// Every target fails; returns the reply.
async fn all_fail(a_fault: Fault, b_fault: Fault, provider_extra: &str) -> (Harness, Reply) {
    let (h, a, b) = pair(provider_extra, "").await;
    a.push_faults([a_fault]);
    b.push_faults([b_fault]);
    let reply = tokio::time::timeout(Duration::from_secs(5), h.chat("chat", "hi"))
        .await
        .expect("bounded");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    (h, reply)
}

/// The OpenAI-format error lists both attempts and their classes.
fn assert_lists_attempts(reply: &Reply, a_class: &str, b_class: &str) {
    let error = &reply.json()["error"];
    let message = error["message"].as_str().expect("an OpenAI error message");
    assert!(
        message.contains("pool/a") && message.contains(a_class),
        "{message}"
    );
    assert!(
        message.contains("pool/b") && message.contains(b_class),
        "{message}"
    );
    assert!(
        error["type"].is_string() && error["code"].is_string(),
        "{error}"
    );
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(reply.header("x-switchyard-route"), "r");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_failing_ends_in_502_for_a_last_server_error() {
    let (h, reply) = all_fail(Fault::Overloaded, Fault::ServerError, "").await;
    assert_eq!(reply.status, 502);
    assert_lists_attempts(&reply, "Overloaded", "ServerError");
    let last = [
        ("route", "r"),
        ("provider", "pool/b"),
        ("outcome", "ServerError"),
    ];
    assert_eq!(h.count("switchyard_requests_total", &last).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_failing_ends_in_503_for_a_last_overload() {
    let (h, reply) = all_fail(Fault::ServerError, Fault::Status529, "").await;
    assert_eq!(reply.status, 503);
    assert_lists_attempts(&reply, "ServerError", "Overloaded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_failing_ends_in_504_for_a_last_timeout() {
    let (h, reply) = all_fail(Fault::Reset, Fault::Hang, "timeouts: {total: 300ms}").await;
    assert_eq!(reply.status, 504);
    assert_lists_attempts(&reply, "ConnectError", "Timeout");
    assert_eq!(reply.json()["error"]["code"], "upstream_timeout");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_rate_limited_ends_in_429_with_the_soonest_retry_after() {
    let (h, reply) = all_fail(
        Fault::RateLimited {
            retry_after: Some("7".into()),
        },
        Fault::RateLimited {
            retry_after: Some("3".into()),
        },
        "",
    )
    .await;
    assert_eq!(reply.status, 429);
    assert_lists_attempts(&reply, "RateLimited", "RateLimited");
    assert_eq!(reply.header("retry-after"), "3");
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_rate_limited_without_hints_still_sends_retry_after() {
    let (h, reply) = all_fail(
        Fault::RateLimited { retry_after: None },
        Fault::RateLimited { retry_after: None },
        "",
    )
    .await;
    assert_eq!(reply.status, 429);
    let seconds: u64 = reply
        .header("retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!(seconds >= 1, "{seconds}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_request_to_a_provider_that_never_answers_fails_over_after_the_first_token_timeout()
 {
    // Every request streams upstream (docs/reference/sidecar.md#streaming), so `firstToken`, not
    // `total` (600 s by default), bounds a provider that accepts and answers nothing.
    let (h, a, _b) = pair("timeouts: {firstToken: 300ms}", "").await;
    a.push_faults([Fault::Hang]);

    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), h.chat("chat", "hi"))
        .await
        .expect("the hang is cut off by the first-token timeout");
    let took = started.elapsed();

    assert_failed_over(&h, &reply, "Timeout").await;
    assert!(
        took >= Duration::from_millis(290),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "gave up late: {took:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_request_whose_upstream_stream_breaks_fails_over_and_gets_one_whole_answer()
{
    for (fault, class) in [
        (Fault::AbortMidStream { after_chunks: 2 }, "ConnectError"),
        (Fault::TruncateStream { after_chunks: 2 }, "ServerError"),
        (Fault::ErrorMidStream { after_chunks: 2 }, "ServerError"),
        (Fault::StallMidStream { after_chunks: 2 }, "Timeout"),
    ] {
        let (h, a, b) = pair("timeouts: {idle: 300ms}", "").await;
        a.push_faults([fault]);

        let reply = h.chat("chat", "hi").await;

        assert_failed_over(&h, &reply, class).await;
        let answer = reply.json();
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["choices"].as_array().map(Vec::len), Some(1));
        let message = &answer["choices"][0]["message"];
        assert_eq!(message["role"], "assistant");
        assert_eq!(
            message["content"],
            switchyard_tests::Behavior::default().reply.as_str(),
            "b's whole reply, none of a's"
        );
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert!(answer["usage"]["completion_tokens"].as_u64() > Some(0));
        assert_eq!((a.request_count(), b.request_count()), (1, 1));
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_non_streamed_generation_within_idle_neither_fails_nor_silences_its_target() {
    // The head comes at once and tokens keep coming within `idle`: the generation may take far
    // longer than `firstToken` without the target looking silent to the requests that follow.
    let (h, a, b) = pair("timeouts: {firstToken: 300ms, idle: 1s, total: 10s}", "").await;
    let reply_text = "one two three four five six seven eight nine ten eleven twelve";
    a.set_behavior(switchyard_tests::Behavior {
        chunk_delay: Duration::from_millis(100),
        reply: reply_text.to_string(),
        ..switchyard_tests::Behavior::default()
    });
    let h = std::sync::Arc::new(h);
    let started = Instant::now();
    let long = tokio::spawn({
        let h = h.clone();
        async move { h.chat("chat", "take your time").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let next = h.chat("chat", "meanwhile").await;
    let long = long.await.expect("the long request");

    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "a long generation"
    );
    for reply in [&long, &next] {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
        assert_eq!(reply.header("x-switchyard-attempts"), "1");
        assert_eq!(reply.json()["choices"][0]["message"]["content"], reply_text);
    }
    assert_eq!(b.request_count(), 0);
    assert_eq!(a.request_count(), 2);
    Harness::stop_shared(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_listed_twice_is_refused_so_no_target_is_tried_twice() {
    // docs/reference/sidecar.md: each target at most once per request. A route that lists one
    // twice is refused when loaded (weight is the way to give a target more traffic).
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "m-a")], "", "")
        + &route("r", "chat", &[("a", "m-a"), ("a", "m-a")], "");
    let error = Harness::try_start_with(&yaml, |_| {})
        .await
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(message.contains("spec.targets[1]"), "{message}");
    assert!(message.contains("listed twice"), "{message}");
    assert_eq!(a.request_count(), 0);
}
