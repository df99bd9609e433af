use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::authentication::v1::UserInfo;

use super::*;

fn status(audiences: &[&str], extra: &[(&str, &str)]) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(true),
        audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
        user: Some(UserInfo {
            username: Some("system:serviceaccount:team-a:default".into()),
            extra: Some(
                extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                    .collect(),
            ),
            ..UserInfo::default()
        }),
        error: None,
    }
}

fn bound_claims() -> [(&'static str, &'static str); 2] {
    [(POD_NAME_CLAIM, "chat-0"), (POD_UID_CLAIM, "uid-1")]
}

#[test]
fn bearer_tokens_are_parsed_strictly() {
    let header = |s: &str| HeaderValue::from_str(s).unwrap();
    assert_eq!(
        bearer_token(Some(&header("Bearer abc.def"))),
        Some("abc.def")
    );
    assert_eq!(bearer_token(Some(&header("bearer abc"))), Some("abc"));
    assert_eq!(bearer_token(Some(&header("Basic abc"))), None);
    assert_eq!(bearer_token(Some(&header("Bearer "))), None);
    assert_eq!(bearer_token(Some(&header("Bearer a b"))), None);
    assert_eq!(bearer_token(None), None);
}

#[test]
fn reviews_must_be_authenticated_for_our_audience_and_bound() {
    let ok = verify_review(&status(&[TOKEN_AUDIENCE], &bound_claims())).unwrap();
    assert_eq!(
        ok,
        BoundPod {
            namespace: "team-a".into(),
            name: "chat-0".into(),
            uid: "uid-1".into()
        }
    );
    let mut denied = status(&[TOKEN_AUDIENCE], &bound_claims());
    denied.authenticated = Some(false);
    assert_eq!(verify_review(&denied), Err(Rejection::NotAuthenticated));
    assert_eq!(
        verify_review(&status(
            &["https://kubernetes.default.svc"],
            &bound_claims()
        )),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        verify_review(&status(&[TOKEN_AUDIENCE], &[(POD_NAME_CLAIM, "chat-0")])),
        Err(Rejection::Unbound)
    );
    let mut user_token = status(&[TOKEN_AUDIENCE], &bound_claims());
    user_token.user.as_mut().unwrap().username = Some("alice".into());
    assert_eq!(verify_review(&user_token), Err(Rejection::Unbound));
}

#[test]
fn the_pod_must_be_indexed_with_the_same_identity_and_injected() {
    let pod = PodInfo::bare("team-a", "chat-0", BTreeMap::new());
    let mut snapshot = Snapshot {
        tables: BTreeMap::new(),
        pods: HashMap::from([("uid-1".to_string(), pod.clone())]),
        durable: Default::default(),
    };
    let bound = verify_review(&status(&[TOKEN_AUDIENCE], &bound_claims())).unwrap();
    assert_eq!(check_pod(&bound, &snapshot), Ok(&pod));
    let other_uid = BoundPod {
        uid: "uid-2".into(),
        ..bound.clone()
    };
    assert_eq!(check_pod(&other_uid, &snapshot), Err(Rejection::UnknownPod));
    let other_ns = BoundPod {
        namespace: "team-b".into(),
        ..bound.clone()
    };
    assert_eq!(check_pod(&other_ns, &snapshot), Err(Rejection::UnknownPod));
    snapshot.pods.get_mut("uid-1").unwrap().injected = false;
    assert_eq!(check_pod(&bound, &snapshot), Err(Rejection::NotInjected));
}

#[test]
fn cache_lifetime_follows_the_token_expiry() {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"exp":1000,"aud":["switchyard"]}"#);
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.signature");
    let exp = jwt_expiry(&token).unwrap();
    assert_eq!(exp, UNIX_EPOCH + Duration::from_secs(1000));
    assert_eq!(jwt_expiry("not-a-jwt"), None);
    assert_eq!(jwt_expiry("a.!!!.c"), None);

    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(cache_ttl(Some(exp), at(940)), Duration::from_secs(60));
    assert_eq!(cache_ttl(Some(exp), at(0)), MAX_CACHE_TTL);
    assert_eq!(cache_ttl(Some(exp), at(2000)), Duration::ZERO);
    assert_eq!(cache_ttl(None, at(0)), MAX_CACHE_TTL);
}

#[test]
fn rejections_map_to_statuses() {
    assert_eq!(Rejection::Unbound.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        Rejection::ReviewFailed.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn a_fleet_above_ten_thousand_pods_keeps_its_reviews_cached() {
    let metrics = crate::metrics::Metrics::new().expect("metrics register");
    let auth = Authenticator::new(None, metrics.config);
    let bound = |i: usize| BoundPod {
        namespace: "team-a".into(),
        name: format!("chat-{i}"),
        uid: format!("uid-{i}"),
    };
    let key = |i: usize| -> [u8; 32] { Sha256::digest(i.to_le_bytes()).into() };
    let pods = 20_000;
    for i in 0..pods {
        auth.remember(key(i), bound(i), MAX_CACHE_TTL);
    }
    let cached = (0..pods)
        .filter(|i| auth.cached(&key(*i)).is_some())
        .count();
    assert_eq!(cached, pods, "every pod's review is still cached");
}
