//! OAuth2 access tokens for a Google Cloud service account (`api: VertexAI`): the JWT bearer
//! grant of RFC 7523, as Google's client libraries make it.
//!
//! The key file (the provider's `gcp.serviceAccountKeySecretRef`, Google's JSON) gives the
//! account's `client_email`, its RSA `private_key` (PEM), `private_key_id` and `token_uri`. An
//! assertion signed with the key (RS256, `kid` the key's id; `iss` the account, `scope`
//! `cloud-platform`, `aud` the token URL, an hour's lifetime) is POSTed form-encoded to
//! `gcp.tokenUrl`, or else to the key's `token_uri`, and answered with an access token and its
//! `expires_in`.
//!
//! The token is cached and replaced once 80 % of its lifetime has passed. One caller fetches at
//! a time (single flight): concurrent requests wait for that fetch rather than each making one,
//! and while a token that is due for refresh is still valid, the others keep using it instead of
//! waiting. Failures are `AuthError`s (the key or the grant is refused: a property of the target)
//! or, for a token endpoint that is down, connection and server errors; none of their messages
//! holds the key, an assertion or a token.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::GcpAuth;
use switchyard_crds::v1alpha1::FailureClass;
use tokio::time::Instant;

use super::HttpClient;
use super::credentials::{Credential, CredentialSource};
use super::token_exchange::{Lease, Refreshing, post_form};
use crate::failure::AttemptError;

/// The scope Vertex AI calls need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid: Google accepts at most an hour.
const ASSERTION_LIFETIME: u64 = 3600;
/// The longest `expires_in` believed.
const MAX_LIFETIME: u64 = 24 * 3600;
/// The share of a token's lifetime after which it is replaced.
const REFRESH_AT: f64 = 0.8;

/// A service account's access tokens.
pub struct ServiceAccount {
    /// The parsed key, or why the key file cannot be used (said on every call).
    key: Result<Key, String>,
    token: Refreshing<SecretString>,
}

/// What the grant needs from the key file.
struct Key {
    client_email: String,
    private_key_id: Option<String>,
    signer: EncodingKey,
    token_url: String,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let email = self.key.as_ref().map_or("?", |k| k.client_email.as_str());
        write!(f, "ServiceAccount({email}, key: ***)")
    }
}

/// The key file fields we read (Google's names).
#[derive(Deserialize)]
struct KeyFile {
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl ServiceAccount {
    /// The source for `gcp`. A key file that cannot be used makes a source that refuses every
    /// call with an `AuthError` saying why (the table was already accepted).
    pub fn new(gcp: &GcpAuth) -> Self {
        Self {
            key: parse_key(gcp),
            token: Refreshing::default(),
        }
    }

    async fn fetch(
        &self,
        key: &Key,
        client: &HttpClient,
    ) -> Result<Lease<SecretString>, AttemptError> {
        let now = unix_now();
        let claims = Claims {
            iss: &key.client_email,
            scope: SCOPE,
            aud: &key.token_url,
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        let mut jwt_header = Header::new(Algorithm::RS256);
        jwt_header.kid.clone_from(&key.private_key_id);
        let assertion = jsonwebtoken::encode(&jwt_header, &claims, &key.signer)
            .map_err(|e| auth_error(format!("cannot sign the token request with the key: {e}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let sent = Instant::now();
        let (status, body) = post_form(client, &key.token_url, form, "the token endpoint").await?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            AttemptError::new(
                FailureClass::ServerError,
                "the token endpoint's answer holds no access_token",
            )
        })?;
        // Google says 3599; an endpoint that says nothing gets the assertion's hour, and none is
        // believed for more than a day (nor can push the instants past what the clock holds).
        let lifetime = Duration::from_secs(
            answer
                .expires_in
                .unwrap_or(ASSERTION_LIFETIME)
                .min(MAX_LIFETIME),
        );
        tracing::debug!(account = %key.client_email, lifetime_s = lifetime.as_secs(), "fetched a service account access token");
        Ok(Lease {
            value: SecretString::new(answer.access_token),
            refresh_at: sent + lifetime.mul_f64(REFRESH_AT),
            expires_at: sent + lifetime,
        })
    }
}

#[async_trait::async_trait]
impl CredentialSource for ServiceAccount {
    async fn credential(&self, client: &HttpClient) -> Result<Credential, AttemptError> {
        let key = self.key.as_ref().map_err(|why| auth_error(why.clone()))?;
        let token = self.token.get(|| self.fetch(key, client)).await?;
        Ok(Credential::Bearer(token))
    }
}

fn parse_key(gcp: &GcpAuth) -> Result<Key, String> {
    let file: KeyFile = serde_json::from_str(gcp.service_account_key.expose()).map_err(|e| {
        // serde_json's message names a position, never the text.
        format!("the service account key is not a JSON key file ({e})")
    })?;
    let missing = |field: &str| format!("the service account key has no {field}");
    let client_email = file.client_email.ok_or_else(|| missing("client_email"))?;
    let private_key = file.private_key.ok_or_else(|| missing("private_key"))?;
    let signer = EncodingKey::from_rsa_pem(private_key.as_bytes())
        .map_err(|_| "the service account key's private_key is not a PEM RSA key".to_string())?;
    let token_url = gcp
        .token_url
        .clone()
        .or(file.token_uri)
        .ok_or_else(|| missing("token_uri (and the provider sets no gcp.tokenUrl)"))?;
    check_token_url(&token_url)?;
    Ok(Key {
        client_email,
        private_key_id: file.private_key_id,
        signer,
        token_url,
    })
}

/// The provider URL rules (docs/reference/crds.md, "Security model") for the token URL, which
/// may come from the key file rather than the checked manifest: `https://` unless the host is
/// loopback or cluster-local, and never a link-local or cloud metadata address, where a key file
/// could otherwise send a signed assertion.
pub fn check_token_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("the token URL {url:?} is not a URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("the token URL {url:?} has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<std::net::IpAddr> = bare.parse().ok();
    let metadata = match ip {
        Some(std::net::IpAddr::V4(v4)) => v4.is_link_local(),
        Some(std::net::IpAddr::V6(v6)) => {
            v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
        None => host.eq_ignore_ascii_case("metadata.google.internal"),
    };
    if metadata {
        return Err(format!(
            "the token URL's host {host} is a link-local or cloud metadata address, always refused"
        ));
    }
    let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host.eq_ignore_ascii_case("localhost");
    let cluster_local = host.ends_with(".svc") || host.ends_with(".svc.cluster.local");
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback || cluster_local => Ok(()),
        _ => Err(format!(
            "the token URL {url:?} must use https:// unless its host is loopback or cluster-local"
        )),
    }
}

/// A token endpoint's refusal. Google answers a bad grant with a 400 `invalid_grant` (a revoked
/// or unknown key, a bad signature) and says why in `error_description`, which names no secret.
fn refusal(status: http::StatusCode, body: &[u8]) -> AttemptError {
    #[derive(Deserialize)]
    struct OAuthError {
        error: Option<String>,
        error_description: Option<String>,
    }
    let said = serde_json::from_slice::<OAuthError>(body)
        .ok()
        .map(|e| {
            let mut said = e.error.unwrap_or_default();
            if let Some(d) = e.error_description {
                said = format!("{said}: {d}");
            }
            said.chars().take(300).collect::<String>()
        })
        .unwrap_or_default();
    let class = match status.as_u16() {
        429 => FailureClass::RateLimited,
        400..=499 => FailureClass::AuthError,
        _ => FailureClass::ServerError,
    };
    AttemptError::new(
        class,
        format!("the token endpoint refused the service account ({status}) {said}")
            .trim_end()
            .to_string(),
    )
}

fn auth_error(message: String) -> AttemptError {
    AttemptError::new(FailureClass::AuthError, message)
}

/// A client error's description: its kind, never the request.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
