//! The config server under faults: an apiserver that is down for a long time (TokenReviews
//! refused or answered 503), and a leader cut off while sidecars wait on it. The promise: a
//! sidecar is never told its token is bad because the apiserver is down, and never left waiting
//! on a replica that no longer serves (docs/reference/operator.md).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
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
