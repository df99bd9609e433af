//! Temporary AWS keys for a web identity (`api: Bedrock` with `aws.roleArn` and
//! `aws.webIdentityTokenFile`, as EKS's IAM roles for service accounts set them up): STS's
//! `AssumeRoleWithWebIdentity`, as AWS's SDKs call it.
//!
//! The token file is read on every fetch (the kubelet rotates projected tokens), and POSTed
//! form-encoded to `aws.stsUrl` (STS's query API: `Action`, `Version=2011-06-15`, `RoleArn`,
//! `RoleSessionName`, `WebIdentityToken`; the call itself is unsigned). The XML answer holds
//! the key id, secret, session token and `Expiration`. Keys are cached and replaced five minutes
//! before they expire (half their lifetime, for keys that live under ten minutes); one caller
//! fetches at a time and the others wait for it, or keep using the old keys while those are
//! still valid. Failures are `AuthError`s (STS refused the token or the role), `RateLimited`
//! for STS's `Throttling`, or connection and server errors for an STS that is down; no message
//! holds the token or a key.

use std::fmt;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::date_time::{DateTime, Format};
use serde::Deserialize;
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::WebIdentity;
use switchyard_crds::v1alpha1::FailureClass;
use tokio::time::Instant;

use super::HttpClient;
use super::credentials::{AwsCredentials, Credential, CredentialSource};
use super::token_exchange::{Lease, Refreshing, post_form};
use crate::failure::AttemptError;

/// How long before `Expiration` keys are replaced (what AWS's SDKs use).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// A projected service account token is about a kilobyte; a file far larger is not one.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// A role assumed with a web identity token.
pub struct WebIdentitySource {
    def: WebIdentity,
    keys: Refreshing<AwsCredentials>,
}

impl fmt::Debug for WebIdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebIdentitySource({}, keys: ***)", self.def.role_arn)
    }
}

/// `<AssumeRoleWithWebIdentityResponse>`'s parts we read (STS's names).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    assume_role_with_web_identity_result: AnswerResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerResult {
    credentials: AnswerKeys,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerKeys {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// `<ErrorResponse><Error><Code/><Message/></Error></ErrorResponse>`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

impl WebIdentitySource {
    /// The source for `def`.
    pub fn new(def: &WebIdentity) -> Self {
        Self {
            def: def.clone(),
            keys: Refreshing::default(),
        }
    }

    fn read_token(&self) -> Result<SecretString, AttemptError> {
        let path = &self.def.token_file;
        let unreadable = |why: String| {
            auth_error(format!(
                "cannot read the web identity token file {path:?}: {why}"
            ))
        };
        // A small local file (the kubelet's projected token): read in place, bounded.
        let mut token = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TOKEN_BYTES + 1).read_to_string(&mut token))
            .map_err(|e| unreadable(e.kind().to_string()))?;
        if token.len() as u64 > MAX_TOKEN_BYTES {
            return Err(unreadable(format!("larger than {MAX_TOKEN_BYTES} bytes")));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(unreadable("the file is empty".into()));
        }
        Ok(SecretString::new(token))
    }

    async fn fetch(&self, client: &HttpClient) -> Result<Lease<AwsCredentials>, AttemptError> {
        let token = self.read_token()?;
        let session = format!("switchyard-{}", unix_now());
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &self.def.role_arn)
            .append_pair("RoleSessionName", &session)
            .append_pair("WebIdentityToken", token.expose())
            .finish();
        let sent = Instant::now();
        let (status, body) = post_form(client, &self.def.sts_url, form, "STS").await?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(refusal(status, &text, token.expose()));
        }
        let answer: Answer = quick_xml::de::from_str(&text).map_err(|_| {
            AttemptError::new(
                FailureClass::ServerError,
                "STS's answer holds no AssumeRoleWithWebIdentityResult credentials",
            )
        })?;
        let keys = answer.assume_role_with_web_identity_result.credentials;
        let expires = DateTime::from_str(keys.expiration.trim(), Format::DateTime)
            .ok()
            .and_then(|t| SystemTime::try_from(t).ok())
            .ok_or_else(|| {
                AttemptError::new(
                    FailureClass::ServerError,
                    "STS's answer has no valid Expiration",
                )
            })?;
        let lifetime = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let early = REFRESH_BEFORE.min(lifetime / 2);
        Ok(Lease {
            value: AwsCredentials {
                access_key_id: SecretString::new(keys.access_key_id),
                secret_access_key: SecretString::new(keys.secret_access_key),
                session_token: Some(SecretString::new(keys.session_token)),
            },
            refresh_at: sent + (lifetime - early),
            expires_at: sent + lifetime,
        })
    }
}

#[async_trait::async_trait]
impl CredentialSource for WebIdentitySource {
    async fn credential(&self, client: &HttpClient) -> Result<Credential, AttemptError> {
        let keys = self.keys.get(|| self.fetch(client)).await?;
        Ok(Credential::Aws(keys))
    }
}

/// STS's refusal, from its XML error document. `Throttling` is a rate limit; other 4xx answers
/// (`InvalidIdentityToken`, `AccessDenied`, `ExpiredTokenException`, ...) mean this target
/// cannot authenticate. STS's messages do not echo the token; it is scrubbed all the same.
fn refusal(status: http::StatusCode, text: &str, token: &str) -> AttemptError {
    let detail = quick_xml::de::from_str::<ErrorAnswer>(text)
        .ok()
        .map(|e| e.error);
    let code = detail
        .as_ref()
        .and_then(|d| d.code.clone())
        .unwrap_or_default();
    let message = detail.and_then(|d| d.message).unwrap_or_default();
    let mut said: String = format!("{code}: {message}").chars().take(300).collect();
    if !token.is_empty() {
        said = said.replace(token, "***");
    }
    let class = match (status.as_u16(), code.as_str()) {
        (_, "Throttling") | (429, _) => FailureClass::RateLimited,
        (400..=499, _) => FailureClass::AuthError,
        _ => FailureClass::ServerError,
    };
    AttemptError::new(
        class,
        format!("STS refused AssumeRoleWithWebIdentity ({status}): {said}"),
    )
}

fn auth_error(message: String) -> AttemptError {
    AttemptError::new(FailureClass::AuthError, message)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
