//! Credentials that are not a static key: AWS keys to sign each request with, and OAuth2 access
//! tokens that expire. An upstream whose API needs them holds a [`CredentialSource`]; the attempt
//! asks it for the current [`Credential`] (bounded by the connect timeout) before building the
//! request, so fetching or refreshing a token is part of reaching the provider.

use std::fmt;
use std::sync::Arc;

use switchyard_crds::secret::SecretString;
use switchyard_crds::table::Upstream;
use switchyard_crds::v1alpha1::Api;

use super::HttpClient;
use crate::failure::AttemptError;

/// What a provider module authenticates a request with, beside the table's static `apiKey`.
#[derive(Clone, Debug, Default)]
pub enum Credential {
    /// Nothing beyond the upstream's `apiKey`, if any.
    #[default]
    None,
    /// Keys to sign the request with (SigV4).
    Aws(AwsCredentials),
    /// An OAuth2 access token, sent as `Authorization: Bearer`.
    Bearer(SecretString),
}

impl Credential {
    /// `error` without these credentials in its message or upstream body: tokens fetched at run
    /// time are not among the table's secrets that [`super::TargetRt::fail`] scrubs.
    pub fn scrub(&self, error: AttemptError) -> AttemptError {
        match self {
            Credential::None => error,
            Credential::Bearer(token) => error.redact(token.expose()),
            Credential::Aws(keys) => {
                let error = error.redact(keys.secret_access_key.expose());
                match &keys.session_token {
                    Some(token) => error.redact(token.expose()),
                    None => error,
                }
            }
        }
    }
}

/// AWS keys; `Debug` shows none of them.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwsCredentials(***)")
    }
}

/// Where an upstream's current credentials come from.
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync {
    /// The current credentials, fetched or refreshed as needed. The caller bounds the wait.
    async fn credential(&self, client: &HttpClient) -> Result<Credential, AttemptError>;
}

/// Keys that never change (a Secret's; a new Secret makes a new table and a new upstream).
struct Fixed(Credential);

#[async_trait::async_trait]
impl CredentialSource for Fixed {
    async fn credential(&self, _client: &HttpClient) -> Result<Credential, AttemptError> {
        Ok(self.0.clone())
    }
}

/// The source `def` needs, if its API authenticates with more than a static key.
pub fn for_upstream(def: &Upstream) -> Option<Arc<dyn CredentialSource>> {
    match def.api {
        Api::Bedrock => {
            let aws = def.aws.as_ref()?;
            if let Some(keys) = &aws.keys {
                return Some(Arc::new(Fixed(Credential::Aws(AwsCredentials {
                    access_key_id: keys.access_key_id.clone(),
                    secret_access_key: keys.secret_access_key.clone(),
                    session_token: keys.session_token.clone(),
                }))));
            }
            let web_identity = aws.web_identity.as_ref()?;
            Some(Arc::new(super::aws_sts::WebIdentitySource::new(
                web_identity,
            )))
        }
        Api::VertexAI => {
            let gcp = def.gcp.as_ref()?;
            Some(Arc::new(super::gcp_oauth::ServiceAccount::new(gcp)))
        }
        Api::OpenAI | Api::Anthropic | Api::Gemini | Api::AzureOpenAI => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::v1alpha1::FailureClass;

    #[test]
    fn runtime_tokens_are_scrubbed_from_errors() {
        let echoed = AttemptError::new(
            FailureClass::AuthError,
            "token ya29.abcdef rejected; session FwoGZXIvYXdz expired",
        );
        let bearer = Credential::Bearer(SecretString::new("ya29.abcdef"));
        let aws = Credential::Aws(AwsCredentials {
            access_key_id: SecretString::new("ASIAEXAMPLE"),
            secret_access_key: SecretString::new("wJalrXUtnFEMI"),
            session_token: Some(SecretString::new("FwoGZXIvYXdz")),
        });
        let scrubbed = aws.scrub(bearer.scrub(echoed));
        assert_eq!(scrubbed.message, "token *** rejected; session *** expired");
    }

    #[test]
    fn aws_credentials_never_show_in_debug() {
        let credential = Credential::Aws(AwsCredentials {
            access_key_id: SecretString::new("AKIDEXAMPLE"),
            secret_access_key: SecretString::new("wJalrXUtnFEMI"),
            session_token: Some(SecretString::new("token-123")),
        });
        let shown = format!("{credential:?}");
        assert!(
            !shown.contains("AKIDEXAMPLE")
                && !shown.contains("wJalr")
                && !shown.contains("token-123")
        );
        let bearer = format!("{:?}", Credential::Bearer(SecretString::new("ya29.secret")));
        assert!(!bearer.contains("ya29"), "{bearer}");
    }
}
