//! The token source against the simulated Google token endpoint, which verifies each assertion's
//! RS256 signature and claims as Google does.

use std::sync::Arc;

use switchyard_crds::table::{Breaker, Limits, TimeoutsMs, Upstream};
use switchyard_crds::v1alpha1::Api;
use switchyard_sim::vertex::token::{self, TokenFault, TokenServer};

use super::*;
use crate::upstream::UpstreamRt;

fn upstream(key_file: String, token_url: Option<String>) -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "vertex".into(),
        api: Api::VertexAI,
        base_url: "http://127.0.0.1:9/v1".into(),
        region: Some("us-central1".into()),
        api_key: None,
        forward_headers: vec![],
        responses_api: false,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
        azure_api_version: None,
        aws: None,
        gcp: Some(GcpAuth {
            project: "switchyard-sim".into(),
            service_account_key: SecretString::new(key_file),
            token_url,
        }),
    })
}

async fn token_of(up: &UpstreamRt) -> Result<String, AttemptError> {
    let source = up
        .credentials
        .as_ref()
        .expect("VertexAI upstreams have a source");
    match source.credential(&up.client).await? {
        Credential::Bearer(token) => Ok(token.expose().to_string()),
        other => panic!("a bearer token, not {other:?}"),
    }
}

#[tokio::test]
async fn a_token_is_fetched_once_and_reused() {
    let server = TokenServer::start().await.unwrap();
    let up = upstream(server.key_file(), None);
    let first = token_of(&up).await.unwrap();
    assert!(first.starts_with("ya29."), "a token the sim issued");
    let second = token_of(&up).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        server.requests(),
        1,
        "the second call used the cached token"
    );
    assert_eq!(server.grants(), 1);
}

#[tokio::test]
async fn a_token_is_replaced_after_80_percent_of_its_lifetime() {
    let server = TokenServer::start().await.unwrap();
    server.set_lifetime(2, 3);
    let up = upstream(server.key_file(), None);
    let first = token_of(&up).await.unwrap();
    // 1.6 s is 80 % of 2 s: before it the token is kept, after it a new one is fetched.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(token_of(&up).await.unwrap(), first);
    assert_eq!(server.grants(), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let refreshed = token_of(&up).await.unwrap();
    assert_ne!(refreshed, first);
    assert_eq!(server.grants(), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let server = TokenServer::start().await.unwrap();
    let up = Arc::new(upstream(server.key_file(), None));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let up = up.clone();
            tokio::spawn(async move { token_of(&up).await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.unwrap());
    }
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one token for all");
    assert_eq!(server.requests(), 1, "single flight");
}

#[tokio::test]
async fn gcp_token_url_overrides_the_key_files_token_uri() {
    let server = TokenServer::start().await.unwrap();
    // The key file points nowhere useful; the provider's tokenUrl wins. The sim checks that the
    // assertion's `aud` is its own URL, so this also proves `aud` follows the URL used.
    let key = token::key_file(
        token::THROWAWAY_TEST_PRIVATE_KEY,
        "https://oauth2.invalid/token",
    );
    let up = upstream(key, Some(server.token_url()));
    token_of(&up).await.unwrap();
    assert_eq!(server.grants(), 1);
}

#[tokio::test]
async fn a_key_the_endpoint_does_not_know_is_an_auth_error_without_secrets() {
    let server = TokenServer::start().await.unwrap();
    let key = token::key_file(token::THROWAWAY_OTHER_PRIVATE_KEY, &server.token_url());
    let up = upstream(key, None);
    let error = token_of(&up).await.unwrap_err();
    assert_eq!(error.class, FailureClass::AuthError, "{error:?}");
    assert!(error.message.contains("invalid_grant"), "{}", error.message);
    assert!(!error.message.contains("PRIVATE KEY") && !error.message.contains("eyJ"));
    assert_eq!(server.grants(), 0);
}

#[tokio::test]
async fn token_endpoint_failures_are_classified_and_not_cached() {
    let server = TokenServer::start().await.unwrap();
    server.push_faults([TokenFault::Status {
        status: 503,
        body: r#"{"error":"internal_failure"}"#.into(),
    }]);
    let up = upstream(server.key_file(), None);
    let error = token_of(&up).await.unwrap_err();
    assert_eq!(error.class, FailureClass::ServerError, "{error:?}");
    // The next call tries again and succeeds.
    token_of(&up).await.unwrap();
    assert_eq!(server.grants(), 1);
}

#[tokio::test]
async fn bad_key_files_are_clean_auth_errors() {
    let pem = token::THROWAWAY_TEST_PRIVATE_KEY;
    let cases = [
        ("not json {".to_string(), "not a JSON key file"),
        (
            r#"{"private_key": "x", "token_uri": "https://oauth2.googleapis.com/token"}"#.into(),
            "no client_email",
        ),
        (
            token::key_file(
                "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
                "https://oauth2.googleapis.com/token",
            ),
            "not a PEM RSA key",
        ),
        (
            token::key_file(pem, "http://169.254.169.254/token"),
            "metadata",
        ),
        (
            token::key_file(pem, "http://[fd00:ec2::254]/token"),
            "metadata",
        ),
        (
            token::key_file(pem, "http://metadata.google.internal/token"),
            "metadata",
        ),
        (
            token::key_file(pem, "http://oauth2.example.com/token"),
            "https://",
        ),
    ];
    for (key, why) in cases {
        let up = upstream(key, None);
        let error = token_of(&up).await.unwrap_err();
        assert_eq!(error.class, FailureClass::AuthError, "{error:?}");
        assert!(error.message.contains(why), "{why}: {}", error.message);
        assert!(!error.message.contains("BEGIN"), "{}", error.message);
    }
}

#[test]
fn token_url_rules() {
    for ok in [
        "https://oauth2.googleapis.com/token",
        "http://127.0.0.1:8080/token",
        "http://localhost/token",
        "http://sts.auth.svc/token",
    ] {
        assert_eq!(check_token_url(ok), Ok(()), "{ok}");
    }
    for bad in [
        "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
        "https://169.254.169.254/token",
        "http://[fe80::1]/token",
        "ftp://oauth2.googleapis.com/token",
        "not a url",
    ] {
        assert!(check_token_url(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn debug_never_shows_the_key_or_the_token() {
    let server = TokenServer::start().await.unwrap();
    let source = ServiceAccount::new(&GcpAuth {
        project: "switchyard-sim".into(),
        service_account_key: SecretString::new(server.key_file()),
        token_url: None,
    });
    let up = upstream(server.key_file(), None);
    let credential = source.credential(&up.client).await.unwrap();
    let shown = format!("{source:?} {credential:?}");
    assert!(shown.contains("***"), "{shown}");
    assert!(
        !shown.contains("PRIVATE") && !shown.contains("ya29"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_failed_early_refresh_keeps_the_still_valid_token() {
    let server = TokenServer::start().await.unwrap();
    server.set_lifetime(2, 3);
    let up = upstream(server.key_file(), None);
    let first = token_of(&up).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    server.push_faults([TokenFault::Reset]);
    assert_eq!(token_of(&up).await.unwrap(), first, "still valid: kept");
    assert_eq!(server.requests(), 2, "a refresh was tried");
    let refreshed = token_of(&up).await.unwrap();
    assert_ne!(refreshed, first, "the next call refreshes");
    assert_eq!(server.grants(), 2);
}

#[tokio::test]
async fn odd_token_answers_are_clean_errors_or_bounded() {
    let server = TokenServer::start().await.unwrap();
    let up = upstream(server.key_file(), None);
    server.push_faults([
        TokenFault::Status {
            status: 200,
            body: r#"{"token_type": "Bearer"}"#.into(),
        },
        TokenFault::Status {
            status: 200,
            body: r#"{"access_token": "ya29.forever", "expires_in": 18446744073709551615}"#.into(),
        },
    ]);
    let error = token_of(&up).await.unwrap_err();
    assert_eq!(error.class, FailureClass::ServerError, "{error:?}");
    assert_eq!(
        token_of(&up).await.unwrap(),
        "ya29.forever",
        "a huge expires_in is capped"
    );
    assert_eq!(token_of(&up).await.unwrap(), "ya29.forever");
}
