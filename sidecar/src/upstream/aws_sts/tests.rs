//! The web identity source against the simulated STS, which checks the query API's parameters
//! and the token as STS does and answers in its XML.

use std::path::PathBuf;
use std::sync::Arc;

use switchyard_crds::table::{AwsAuth, Breaker, Limits, TimeoutsMs, Upstream};
use switchyard_crds::v1alpha1::Api;
use switchyard_sim::bedrock::sts::{Fault, MockSts, WEB_IDENTITY_TOKEN};

use super::*;
use crate::upstream::UpstreamRt;

const ROLE: &str = "arn:aws:iam::123456789012:role/switchyard";

fn token_file(name: &str, token: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-sts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, token).unwrap();
    path
}

fn upstream(sts: &MockSts, token_file: &std::path::Path) -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "bedrock".into(),
        api: Api::Bedrock,
        base_url: "http://127.0.0.1:9".into(),
        region: Some("us-east-1".into()),
        api_key: None,
        forward_headers: vec![],
        responses_api: false,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
        azure_api_version: None,
        aws: Some(AwsAuth {
            keys: None,
            web_identity: Some(WebIdentity {
                role_arn: ROLE.into(),
                token_file: token_file.to_string_lossy().into_owned(),
                sts_url: sts.base_url(),
            }),
        }),
        gcp: None,
    })
}

async fn keys_of(up: &UpstreamRt) -> Result<AwsCredentials, AttemptError> {
    let source = up
        .credentials
        .as_ref()
        .expect("web identity upstreams have a source");
    match source.credential(&up.client).await? {
        Credential::Aws(keys) => Ok(keys),
        other => panic!("AWS keys, not {other:?}"),
    }
}

#[tokio::test]
async fn keys_are_fetched_once_with_the_query_api_and_reused() {
    let sts = MockSts::start("sts").await.unwrap();
    let up = upstream(
        &sts,
        &token_file("reuse", &format!("{WEB_IDENTITY_TOKEN}\n")),
    );
    let first = keys_of(&up).await.unwrap();
    assert!(first.access_key_id.expose().starts_with("ASIA"));
    assert!(first.session_token.is_some());
    let second = keys_of(&up).await.unwrap();
    assert_eq!(first.access_key_id.expose(), second.access_key_id.expose());
    assert_eq!(
        sts.request_count(),
        1,
        "the second call used the cached keys"
    );
    let sent = sts.last_request().unwrap();
    let form: Vec<(String, String)> = form_urlencoded::parse(&sent.raw).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("Action"), Some("AssumeRoleWithWebIdentity"));
    assert_eq!(get("Version"), Some("2011-06-15"));
    assert_eq!(get("RoleArn"), Some(ROLE));
    assert_eq!(get("WebIdentityToken"), Some(WEB_IDENTITY_TOKEN), "trimmed");
    assert!(get("RoleSessionName").unwrap().starts_with("switchyard-"));
}

#[tokio::test]
async fn short_lived_keys_are_replaced_before_they_expire() {
    let sts = MockSts::start("sts").await.unwrap();
    // Two seconds' keys are replaced after half their lifetime.
    sts.push_faults([
        Fault::ShortLived { seconds: 2 },
        Fault::ShortLived { seconds: 2 },
    ]);
    let up = upstream(&sts, &token_file("short", WEB_IDENTITY_TOKEN));
    let first = keys_of(&up).await.unwrap();
    assert_eq!(
        keys_of(&up).await.unwrap().access_key_id.expose(),
        first.access_key_id.expose()
    );
    assert_eq!(sts.request_count(), 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let refreshed = keys_of(&up).await.unwrap();
    assert_ne!(
        refreshed.access_key_id.expose(),
        first.access_key_id.expose()
    );
    assert_eq!(sts.request_count(), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let sts = MockSts::start("sts").await.unwrap();
    let up = Arc::new(upstream(&sts, &token_file("flight", WEB_IDENTITY_TOKEN)));
    let calls = (0..8).map(|_| {
        let up = up.clone();
        tokio::spawn(async move {
            keys_of(&up)
                .await
                .map(|k| k.access_key_id.expose().to_string())
        })
    });
    let ids: Vec<String> = futures_ids(calls).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(sts.request_count(), 1);
}

async fn futures_ids(
    calls: impl Iterator<Item = tokio::task::JoinHandle<Result<String, AttemptError>>>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap());
    }
    ids
}

#[tokio::test]
async fn a_refused_token_is_an_auth_error_that_never_shows_the_token() {
    let sts = MockSts::start("sts").await.unwrap();
    let up = upstream(&sts, &token_file("refused", "eyJ.not-the-token.sig"));
    let error = keys_of(&up).await.unwrap_err();
    assert_eq!(error.class, FailureClass::AuthError);
    let shown = format!("{error:?}");
    assert!(shown.contains("InvalidIdentityToken"), "{shown}");
    assert!(!shown.contains("not-the-token"), "{shown}");
}

#[tokio::test]
async fn sts_throttling_is_a_rate_limit_and_a_missing_file_an_auth_error() {
    let sts = MockSts::start("sts").await.unwrap();
    sts.push_faults([Fault::Throttling]);
    let up = upstream(&sts, &token_file("throttled", WEB_IDENTITY_TOKEN));
    assert_eq!(
        keys_of(&up).await.unwrap_err().class,
        FailureClass::RateLimited
    );
    assert!(keys_of(&up).await.is_ok(), "the next call fetches again");

    let missing = std::env::temp_dir().join("switchyard-sts-no-such-file");
    let up = upstream(&sts, &missing);
    let error = keys_of(&up).await.unwrap_err();
    assert_eq!(error.class, FailureClass::AuthError);
    assert!(
        error.message.contains("web identity token file"),
        "{error:?}"
    );
}

#[tokio::test]
async fn keys_never_show_in_debug_output() {
    let sts = MockSts::start("sts").await.unwrap();
    let up = upstream(&sts, &token_file("debug", WEB_IDENTITY_TOKEN));
    let keys = keys_of(&up).await.unwrap();
    let source =
        WebIdentitySource::new(up.def.aws.as_ref().unwrap().web_identity.as_ref().unwrap());
    let shown = format!("{keys:?} {source:?}");
    assert!(!shown.contains(keys.access_key_id.expose()), "{shown}");
    assert!(!shown.contains(WEB_IDENTITY_TOKEN), "{shown}");
}
