//! Who is asking: a sidecar's projected ServiceAccount token, checked with a `TokenReview`
//! (audience `switchyard`) and bound to one injected pod the controller knows
//! (docs/reference/operator.md).
//!
//! Reviews are cached per token, keyed by the token's SHA-256 so the token itself is never kept,
//! until the token expires or for 5 minutes, whichever is sooner. Only the review is cached: the
//! pod check runs on every request against the current [`Snapshot`], so a deleted or relabelled
//! pod loses access at once. Tokens are never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderValue, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::tables::{PodInfo, Snapshot};
use crate::metrics::ConfigMetrics;
use crate::names::TOKEN_AUDIENCE;

/// The `status.user.extra` key naming the pod a token is bound to.
pub const POD_NAME_CLAIM: &str = "authentication.kubernetes.io/pod-name";
/// The `status.user.extra` key carrying the UID of the pod a token is bound to.
pub const POD_UID_CLAIM: &str = "authentication.kubernetes.io/pod-uid";
/// The longest a review is trusted without asking the apiserver again.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(300);
/// Bound on cached reviews; past it, expired entries go first, then everything. Only tokens the
/// apiserver vouched for are cached, one per injected pod, so the bound is there against memory
/// growth, not to be reached: it is four times the config server's default connection cap, as
/// a fleet larger than the bound would clear the cache again and again and send a TokenReview
/// for every poll (about 200 bytes an entry: 26 MiB when full).
const MAX_CACHE_ENTRIES: usize = 4 * crate::args::DEFAULT_CONFIG_MAX_CONNECTIONS as usize;
/// How long a TokenReview may take before the request is answered 503.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod a token is bound to, as the apiserver vouches for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Why a request was refused. Every case but [`Rejection::ReviewFailed`] is a 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    MissingToken,
    NotAuthenticated,
    WrongAudience,
    Unbound,
    UnknownPod,
    NotInjected,
    /// The apiserver could not be asked: 503, the sidecar retries with backoff.
    ReviewFailed,
}

/// Checks bearer tokens and caches the apiserver's verdicts.
pub struct Authenticator {
    /// `None` out of a cluster without a kubeconfig: every review then fails (503).
    client: Option<kube::Client>,
    metrics: ConfigMetrics,
    cache: Mutex<HashMap<[u8; 32], (BoundPod, Instant)>>,
}

// === impl Rejection ===

impl Rejection {
    /// The HTTP status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::ReviewFailed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A message safe to return and log (it never contains the token).
    pub fn message(self) -> &'static str {
        match self {
            Self::MissingToken => "missing or malformed bearer token",
            Self::NotAuthenticated => "token not authenticated",
            Self::WrongAudience => "token not valid for audience switchyard",
            Self::Unbound => "token is not bound to a pod",
            Self::UnknownPod => "the token's pod is not known to the operator",
            Self::NotInjected => "the token's pod is not injected",
            Self::ReviewFailed => "cannot review the token now",
        }
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// An authenticator reviewing tokens through `client`.
    pub fn new(client: Option<kube::Client>, metrics: ConfigMetrics) -> Self {
        Self {
            client,
            metrics,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The injected pod that sent `authorization`, from the current `snapshot`.
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        snapshot: &Snapshot,
    ) -> Result<(BoundPod, PodInfo), Rejection> {
        let token = bearer_token(authorization).ok_or(Rejection::MissingToken)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cached(&key);
        let bound = match cached {
            Some(bound) => bound,
            None => {
                let bound = self.review(token).await?;
                let ttl = cache_ttl(jwt_expiry(token), SystemTime::now());
                self.remember(key, bound.clone(), ttl);
                bound
            }
        };
        let pod = check_pod(&bound, snapshot)?.clone();
        Ok((bound, pod))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<BoundPod> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(bound, _)| bound.clone())
    }

    fn remember(&self, key: [u8; 32], bound: BoundPod, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.retain(|_, (_, until)| now < *until);
            if cache.len() >= MAX_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (bound, now + ttl));
    }

    async fn review(&self, token: &str) -> Result<BoundPod, Rejection> {
        let Some(client) = self.client.clone() else {
            tracing::debug!("no Kubernetes client: cannot review tokens");
            return Err(Rejection::ReviewFailed);
        };
        let api: Api<TokenReview> = Api::all(client);
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
                token: Some(token.to_string()),
            },
            ..TokenReview::default()
        };
        let count = |result: &str| {
            self.metrics
                .token_reviews
                .with_label_values(&[result])
                .inc()
        };
        let created =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review)).await;
        let status = match created {
            Ok(Ok(review)) => review.status.unwrap_or_default(),
            Ok(Err(error)) => {
                count("error");
                tracing::warn!(%error, "TokenReview failed");
                return Err(Rejection::ReviewFailed);
            }
            Err(_) => {
                count("error");
                tracing::warn!("TokenReview timed out");
                return Err(Rejection::ReviewFailed);
            }
        };
        let verdict = verify_review(&status);
        count(if verdict.is_ok() {
            "authenticated"
        } else {
            "rejected"
        });
        verdict
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(header: Option<&HeaderValue>) -> Option<&str> {
    let value = header?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// What a successful review must say: authenticated, for our audience, a ServiceAccount token
/// bound to a pod.
pub fn verify_review(status: &TokenReviewStatus) -> Result<BoundPod, Rejection> {
    if status.authenticated != Some(true) {
        return Err(Rejection::NotAuthenticated);
    }
    if !status
        .audiences
        .iter()
        .flatten()
        .any(|a| a == TOKEN_AUDIENCE)
    {
        return Err(Rejection::WrongAudience);
    }
    let user = status.user.as_ref().ok_or(Rejection::Unbound)?;
    let namespace = user
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix("system:serviceaccount:"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, _)| ns.to_string())
        .ok_or(Rejection::Unbound)?;
    let claim = |key: &str| match user.extra.as_ref().and_then(|extra| extra.get(key)) {
        Some(values) if values.len() == 1 && !values[0].is_empty() => Ok(values[0].clone()),
        _ => Err(Rejection::Unbound),
    };
    Ok(BoundPod {
        namespace,
        name: claim(POD_NAME_CLAIM)?,
        uid: claim(POD_UID_CLAIM)?,
    })
}

/// The indexed pod a bound token names: same UID, name and namespace, and injected.
pub fn check_pod<'a>(bound: &BoundPod, snapshot: &'a Snapshot) -> Result<&'a PodInfo, Rejection> {
    let pod = snapshot
        .pod(&bound.uid)
        .filter(|pod| pod.name == bound.name && pod.namespace == bound.namespace)
        .ok_or(Rejection::UnknownPod)?;
    if pod.injected {
        Ok(pod)
    } else {
        Err(Rejection::NotInjected)
    }
}

/// The `exp` claim of a JWT, read without verifying: the apiserver has verified the token.
pub fn jwt_expiry(token: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims.exp))
}

/// How long a review may be reused: until the token expires, at most [`MAX_CACHE_TTL`].
pub fn cache_ttl(expiry: Option<SystemTime>, now: SystemTime) -> Duration {
    match expiry {
        Some(exp) => exp
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_CACHE_TTL),
        None => MAX_CACHE_TTL,
    }
}

#[cfg(test)]
mod tests;
