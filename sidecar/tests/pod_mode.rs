//! Pod mode against a fake operator config server (HTTPS with a CA generated here): the sidecar
//! gets a table and serves through it, follows changes, re-reads a rotated token, keeps serving
//! when the operator goes away and after a restart from its state dir, refuses 409s and bad
//! tables while keeping the old one, reports cumulative counters (per target and per route), logs
//! the workload the table names, and trusts only its CA (read again for every connection).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::header;
use switchyard_crds::report::Report;
use switchyard_crds::table::Workload;
use switchyard_sim::openai::MockProvider;

use support::*;

// === Cases ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_a_table_serves_it_and_follows_changes() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token-1", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token-1");
    let sidecar = start_sidecar(&operator.url(), &files).await;

    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);
    assert_eq!(readyz(&sidecar).await.0, 200);
    let (status, body) = chat(&sidecar, "chat").await;
    assert_eq!(status, 200, "{body}");
    assert!(provider.request_count() >= 1);

    // What the operator saw: the trimmed token, our version and schema, then our ETag.
    {
        let seen = operator.shared.seen.lock().unwrap();
        assert!(
            seen.tokens.iter().all(|t| t == "token-1"),
            "{:?}",
            seen.tokens
        );
        let first_poll = &seen.headers[0];
        assert_eq!(
            first_poll["x-switchyard-sidecar-version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(first_poll["x-switchyard-table-schema"], "1");
        assert!(first_poll.get(header::IF_NONE_MATCH).is_none());
    }
    assert!(
        eventually(SOON, || {
            let seen = operator.shared.seen.lock().unwrap();
            seen.headers.iter().any(|h| {
                h.get(header::IF_NONE_MATCH)
                    .is_some_and(|v| *v == format!("\"{}\"", first.version))
            })
        })
        .await,
        "later polls carry If-None-Match"
    );

    // A new table wakes the long-poll and is served.
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(eventually(SOON, || version(&sidecar) == Some(second.version.clone())).await);
    assert_eq!(chat(&sidecar, "chat-2").await.0, 200);
    assert_eq!(chat(&sidecar, "chat").await.0, 404);
    let polls = operator.shared.seen.lock().unwrap().headers.len();
    let handshakes = operator
        .shared
        .handshakes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        polls >= 3 && handshakes < polls,
        "polls reuse a kept-alive connection: {handshakes} handshakes for {polls} polls"
    );

    // The table is on disk, mode 0600, and holds the served version.
    let stored = std::fs::read_to_string(files.state.join("route-table.json")).expect("stored");
    assert!(stored.contains(&second.version));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(files.state.join("route-table.json"))
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_read_again() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "old-token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "old-token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    // The kubelet rotates the token; from now on the operator accepts only the new one.
    std::fs::write(&files.token, "new-token").expect("rotate");
    operator.accept_only("new-token");
    // The poll in flight (authorized with the old token) returns this one; the next poll must
    // carry the new token to get the third.
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(eventually(SOON, || version(&sidecar) == Some(second.version.clone())).await);
    let third = table(&provider, "chat-3");
    operator.set(Answer::table(&third));
    assert!(
        eventually(SOON, || version(&sidecar) == Some(third.version.clone())).await,
        "served only with the new token"
    );
    let tokens = operator.shared.seen.lock().unwrap().tokens.clone();
    assert!(tokens.iter().any(|t| t == "new-token"), "{tokens:?}");

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_without_the_operator_and_after_a_restart() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    operator.stop();
    // Give the sidecar time to notice the broken long-poll and back off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(readyz(&sidecar).await.0, 200);
    sidecar.shutdown().await;

    // A container restart: same state dir, no operator. Ready at once, from disk.
    let restarted = start_sidecar(&operator.url(), &files).await;
    assert_eq!(version(&restarted), Some(first.version.clone()));
    assert_eq!(readyz(&restarted).await.0, 200);
    let (status, body) = chat(&restarted, "chat").await;
    assert_eq!(status, 200, "{body}");
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_answers_keep_the_previous_table() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    operator.set(Answer {
        status: 409,
        etag: None,
        body: "schema 1 is no longer served".into(),
        cut_after: None,
    });
    assert!(
        eventually(SOON, || sidecar
            .runtime
            .last_error()
            .is_some_and(|e| e.contains("409")))
        .await
    );
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    let (status, body) = readyz(&sidecar).await;
    assert_eq!(status, 200);
    assert!(body.contains("409"), "{body}");

    // A table whose version is not its content hash (tampered or corrupted in transit).
    let mut bad = table(&provider, "chat-bad");
    bad.version = first.version.clone();
    operator.set(Answer {
        status: 200,
        etag: Some("\"bogus\"".into()),
        body: serde_json::to_string(&bad).expect("serializes"),
        cut_after: None,
    });
    assert!(
        eventually(SOON, || sidecar
            .runtime
            .last_error()
            .is_some_and(|e| e.contains("content hash")))
        .await
    );
    // Garbage.
    operator.set(Answer {
        status: 200,
        etag: Some("\"garbage\"".into()),
        body: "{\"not\": \"a table\"}".into(),
        cut_after: None,
    });
    assert!(
        eventually(SOON, || sidecar
            .runtime
            .last_error()
            .is_some_and(|e| e.contains("not a route table")))
        .await
    );
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(chat(&sidecar, "chat-bad").await.0, 404);
    let stored = std::fs::read_to_string(files.state.join("route-table.json")).expect("stored");
    assert!(stored.contains(&format!("\"version\":\"{}\"", first.version)));

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_carry_cumulative_counters() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    for _ in 0..2 {
        assert_eq!(chat(&sidecar, "chat").await.0, 200);
    }
    let successes = |r: &Report| {
        r.targets
            .iter()
            .find(|t| t.provider == "main/sim" && t.model == "gpt-4o-mini")
            .and_then(|t| t.outcomes.get("Success").copied())
            .unwrap_or(0)
    };
    assert!(
        eventually(SOON, || operator
            .reports()
            .iter()
            .any(|r| successes(r) == 2))
        .await,
        "{:?}",
        operator.reports()
    );
    let reports = operator.reports();
    let report = reports
        .iter()
        .rev()
        .find(|r| successes(r) == 2)
        .expect("a report");
    assert_eq!(report.instance, "pod-uid-1-1700000000");
    assert_eq!(report.table_version, first.version);
    let target = &report.targets[0];
    assert!(
        target.input_tokens > 0 && target.output_tokens > 0,
        "{target:?}"
    );
    assert!(target.cost_usd > 0.0, "{target:?}");
    assert!(!target.circuit_open);
    assert_eq!(
        target.latency_buckets.len(),
        switchyard_crds::report::LATENCY_BUCKETS_MS.len() + 1
    );
    assert_eq!(target.latency_buckets.iter().sum::<u64>(), 2);

    // Cumulative: a later report still counts both (never a delta).
    let seen = reports.len();
    assert!(eventually(SOON, || operator.reports().len() > seen + 1).await);
    assert_eq!(successes(operator.reports().last().expect("a report")), 2);

    sidecar.shutdown().await;
    operator.stop();
}

/// Spend per workload, the sidecar's part: its reports count each route's requests, tokens and
/// cost, and its request log names the workload and ServiceAccount of the table it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_count_per_route_and_the_log_names_the_workload() {
    let log = captured_log();
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat").with_workload(Some(Workload {
        namespace: "default".into(),
        kind: "Deployment".into(),
        name: "chat-app-for-workload-test".into(),
        service_account: "chat-sa".into(),
    }));
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    for _ in 0..3 {
        assert_eq!(chat(&sidecar, "chat").await.0, 200);
    }
    let route_requests = |r: &Report| r.routes.iter().find(|c| c.route == "r").map(|c| c.requests);
    assert!(
        eventually(SOON, || operator
            .reports()
            .iter()
            .any(|r| route_requests(r) == Some(3)))
        .await,
        "{:?}",
        operator.reports()
    );
    let reports = operator.reports();
    let report = reports
        .iter()
        .rev()
        .find(|r| route_requests(r) == Some(3))
        .expect("a report");
    assert_eq!(
        report.routes.len(),
        1,
        "only routes with traffic: {report:?}"
    );
    // One target served the route, so the route's sums are that target's.
    let (route, target) = (&report.routes[0], &report.targets[0]);
    assert_eq!(route.input_tokens, target.input_tokens);
    assert_eq!(route.output_tokens, target.output_tokens);
    assert!(route.output_tokens > 0 && route.cost_usd > 0.0, "{route:?}");
    assert!((route.cost_usd - target.cost_usd).abs() < 1e-12);

    let lines = log.lock().unwrap().clone();
    let logged = String::from_utf8_lossy(&lines)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["workload"] == "Deployment/chat-app-for-workload-test")
        .count();
    assert_eq!(logged, 3, "one request line per request names the workload");
    let line = String::from_utf8_lossy(&lines).into_owned();
    assert!(line.contains(r#""serviceAccount":"chat-sa""#), "{line}");

    sidecar.shutdown().await;
    operator.stop();
}

/// Every log line of this test binary, as JSON: the sidecars run in-process, so their request
/// lines go to the global subscriber, installed once.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("switchyard::request=info")
            .with_writer(move || Sink(sink.clone()))
            .init();
        buffer
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_gives_no_table() {
    let (provider, pki, other) = (
        MockProvider::start("sim").await.expect("mock"),
        pki(),
        pki(),
    );
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    // The sidecar trusts a different CA.
    let files = PodFiles::new(&other.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(version(&sidecar), None);
    assert_eq!(readyz(&sidecar).await.0, 503);
    let (status, body) = chat(&sidecar, "chat").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "switchyard_no_config", "{body}");
    assert!(
        operator.reports().is_empty() && operator.shared.seen.lock().unwrap().tokens.is_empty(),
        "no request got through"
    );

    // The CA bundle is read for every connection: once it holds the right CA, the table comes.
    std::fs::write(&files.ca, &pki.ca_pem).expect("rotate the CA");
    assert!(
        eventually(3 * SOON, || version(&sidecar)
            == Some(first.version.clone()))
        .await,
        "the new CA bundle is used"
    );

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_table_is_reported_without_waiting_for_the_interval() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar_reporting(&operator.url(), &files, Duration::from_secs(3600)).await;
    let reported = |version: &str| {
        operator
            .reports()
            .iter()
            .any(|r| r.table_version == version)
    };
    let prompt = Duration::from_secs(5);
    assert!(
        eventually(prompt, || reported(&first.version)).await,
        "the first table is reported at once, not after the hour"
    );
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(
        eventually(prompt, || reported(&second.version)).await,
        "so is the next one"
    );
    sidecar.shutdown().await;
    operator.stop();
}

/// Pod mode holds budgets to the share the operator leases: the sidecar reports what it used of
/// each limit, takes the leases of the answer, and refuses past its allowance although the
/// budget's own limit is far larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_is_held_to_the_leased_share() {
    use switchyard_crds::report::{Amounts, Lease, ReportAnswer};
    use switchyard_crds::window::{Period, Timestamp};

    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let budget = "---
apiVersion: switchyard.dev/v1alpha1
kind: Budget
metadata: {name: team}
spec:
  limits: [{period: Day, requests: 1000}]
";
    let first = table_with(&provider, "chat", budget);
    assert!(first.budgets.contains_key("default/team"));
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    let usage = |r: &Report| {
        r.budgets
            .iter()
            .find(|u| u.budget == "default/team")
            .cloned()
    };
    assert!(
        eventually(SOON, || operator
            .reports()
            .iter()
            .any(|r| usage(r).is_some()))
        .await,
        "reports carry the budget's usage"
    );
    let window = Period::Day.window(Timestamp::now()).expect("a window");
    *operator.shared.leases.lock().unwrap() = Some(ReportAnswer {
        leases: vec![Lease {
            budget: "default/team".into(),
            limit: 0,
            period: "Day".into(),
            window_start: window.start.as_second(),
            window_end: window.end.as_second(),
            allowance: Amounts {
                usd_micros: None,
                requests: Some(2),
                tokens: None,
            },
            expires_at_ms: Timestamp::now().as_millisecond() + 60_000,
        }],
    });
    let holds = |r: &Report| usage(r).and_then(|u| u.holds).and_then(|h| h.requests);
    assert!(
        eventually(SOON, || operator
            .reports()
            .iter()
            .any(|r| holds(r) == Some(2)))
        .await,
        "the next report says the lease is held"
    );

    for _ in 0..2 {
        assert_eq!(chat(&sidecar, "chat").await.0, 200);
    }
    let (status, body) = chat(&sidecar, "chat").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "switchyard_budget_exhausted");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("this sidecar's share"), "{message}");

    let used = |r: &Report| usage(r).and_then(|u| u.used.requests);
    assert!(
        eventually(SOON, || operator.reports().last().and_then(used) == Some(2)).await,
        "the refused request is not counted"
    );
    operator.stop();
}
