//! The config server under faults: an apiserver that is down for a long time (TokenReviews
//! refused or answered 503), and a leader cut off while sidecars wait on it. The promise: a
//! sidecar is never told its token is bad because the apiserver is down, and never left waiting
//! on a replica that no longer serves (docs/reference/operator.md).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use switchyard_operator::leader::Leadership;
use tokio::time::Instant;

use support::*;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn an_apiserver_outage_is_503_never_401_and_reviewed_tokens_keep_being_served() {
    let h = start().await;
    let reviewed = bearer("tok-a");
    let ok = h.get("/v1/config", &[("authorization", &reviewed)]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let version = ok.json()["version"].as_str().unwrap().to_string();

    for outage in [Apiserver::Unreachable, Apiserver::Unavailable] {
        h.apiserver.set(outage);
        // A token reviewed before the outage: served from the cached review, table and all.
        let answer = h.get("/v1/config", &[("authorization", &reviewed)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{outage:?}");
        assert_eq!(answer.json()["version"], version.as_str());
        // A valid token never reviewed: 503, so the sidecar backs off and keeps its table; a
        // 401 would say the token is bad. NB: the kube client retries a 503 from the apiserver
        // with backoff, so that answer takes the whole review timeout (10 s).
        let reviews = h.reviews.load(Ordering::SeqCst);
        let started = Instant::now();
        let answer = h
            .get("/v1/config", &[("authorization", "Bearer tok-b")])
            .await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{outage:?}");
        assert_eq!(answer.json()["error"], "cannot review the token now");
        assert!(h.reviews.load(Ordering::SeqCst) > reviews, "{outage:?}");
        assert!(started.elapsed() < Duration::from_secs(12), "{outage:?}");
        if outage == Apiserver::Unreachable {
            // Reports too.
            let report = h
                .call(
                    http::Method::POST,
                    "/v1/report",
                    &[("authorization", "Bearer tok-b")],
                    "{}",
                )
                .await;
            assert_eq!(report.status, StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    let text = h.metrics.render();
    assert!(
        text.contains("switchyard_config_token_reviews_total{result=\"error\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_config_responses_total{code=\"503\"} 2"),
        "{text}"
    );

    // The failure was not remembered: once the apiserver is back, the token is served.
    h.apiserver.set(Apiserver::Up);
    let answer = h
        .get("/v1/config", &[("authorization", "Bearer tok-b")])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_leader_cut_off_answers_its_waiting_polls_at_once_and_serves_again_when_it_leads() {
    let (leading, rx) = tokio::sync::watch::channel(true);
    let h = Arc::new(start_with(Leadership::from_receiver(rx)).await);
    let etag = format!("\"{}\"", team_a_v1().version);
    let poll = |h: Arc<Harness>, etag: String| async move {
        let headers = [("authorization", "Bearer tok-a"), ("if-none-match", &etag)];
        h.get("/v1/config?wait=30s", &headers).await
    };
    let waiting = tokio::spawn(poll(h.clone(), etag.clone()));
    while h.metrics.config.long_polls.get() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The Lease is lost (cut off from the apiserver, or a standby took over).
    let started = Instant::now();
    leading.send_replace(false);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("not held until the wait ends")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.metrics.config.long_polls.get(), 0);
    let refused = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);

    // Leading again: polls are held and answered as before.
    leading.send_replace(true);
    let answer = h
        .get("/v1/config", &[("authorization", "Bearer tok-a")])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let waiting = tokio::spawn(poll(h.clone(), etag.clone()));
    while h.metrics.config.long_polls.get() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A leadership "change" to the same value (a renewal) does not end the wait.
    leading.send_replace(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "still waiting while leading");
    h.server.drain();
    assert_eq!(waiting.await.unwrap().status, StatusCode::NOT_MODIFIED);
}
