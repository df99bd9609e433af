//! A simulated AWS STS (`sts.amazonaws.com`): `AssumeRoleWithWebIdentity` only, in STS's query
//! API (`POST /` with a form body) and XML answers.
//!
//! The request must name the action and version `2011-06-15`, a role ARN
//! (`arn:aws:iam::{12 digits}:role/{name}`), a session name of 2 to 64 characters from
//! `[\w+=,.@-]`, and the web identity token [`WEB_IDENTITY_TOKEN`] (any other is STS's 400
//! `InvalidIdentityToken`); `DurationSeconds`, if present, must be 900 to 43200. The answer
//! holds temporary keys the simulated Bedrock accepts until their `Expiration`: `DurationSeconds`
//! or [`Behavior`]-independent [`DEFAULT_LIFETIME`] after now.

use std::ops::Not;

use http::{Method, Response, StatusCode};

use super::auth;
use crate::server::{self, Api, Ending, Mock, Plan, SimBody};
pub use crate::server::{Behavior, Recorded};

/// The only web identity token the simulated STS accepts (a projected service account token
/// in a real cluster).
pub const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.simulated-service-account-token.c2ln";
/// How long issued keys last when the request names no duration.
pub const DEFAULT_LIFETIME: u64 = 3600;
const XML: &str = "text/xml";
const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// A simulated STS bound to a loopback port; its `base_url` is the provider's `aws.stsUrl`.
pub type MockSts = Mock<Sts>;

/// A scripted answer for one STS request, instead of checking it.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Any status and body (`application/json` unless `headers` say otherwise).
    Status {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// 400 `InvalidIdentityToken`, as for a token the identity provider no longer vouches for.
    InvalidIdentityToken,
    /// 400 `Throttling` ("Rate exceeded").
    Throttling,
    /// Issue keys that expire `seconds` from now (below STS's minimum, to test refreshing).
    ShortLived { seconds: u64 },
    /// Close the connection without an answer.
    Reset,
}

/// The STS query API.
#[derive(Debug, Default)]
pub struct Sts;

impl Api for Sts {
    type Fault = Fault;
    const LABEL: &'static str = "STS";
    const BASE_PATH: &'static str = "";
    const REQUEST_ID: Option<&'static str> = Some("x-amzn-requestid");

    fn is_generation(method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/"
    }

    fn other(&self, _: &Method, _: &str) -> Response<SimBody> {
        error(
            "Sender",
            "InvalidAction",
            "Could not find operation for this request",
            400,
        )
    }

    fn plan(fault: Fault, _: &Recorded) -> Plan {
        Plan::Respond(match fault {
            Fault::Status {
                status,
                body,
                headers,
            } => server::raw_response(status, body, headers),
            Fault::InvalidIdentityToken => error(
                "Sender",
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
                400,
            ),
            Fault::Throttling => error("Sender", "Throttling", "Rate exceeded", 400),
            Fault::ShortLived { seconds } => success(unix_now() + seconds),
            Fault::Reset => return Plan::Reset,
        })
    }

    fn reject(request: &Recorded) -> Option<Response<SimBody>> {
        check(request).err().map(|refusal| *refusal)
    }

    fn answer(request: &Recorded, _: &Behavior, _: Ending) -> Response<SimBody> {
        let duration = param(request, "DurationSeconds")
            .and_then(|d| d.parse().ok())
            .unwrap_or(DEFAULT_LIFETIME);
        success(unix_now() + duration)
    }
}

fn param(request: &Recorded, name: &str) -> Option<String> {
    form_urlencoded::parse(&request.raw)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The request's refusal, if STS would refuse it.
fn check(request: &Recorded) -> Result<(), Box<Response<SimBody>>> {
    let missing = |name: &str| {
        Box::new(error(
            "Sender",
            "MissingParameter",
            &format!("The request must contain the parameter {name}"),
            400,
        ))
    };
    let invalid = |message: String| Box::new(error("Sender", "ValidationError", &message, 400));
    match param(request, "Action").as_deref() {
        Some("AssumeRoleWithWebIdentity") => {}
        Some(other) => {
            let message = format!("Could not find operation {other} for version 2011-06-15");
            return Err(Box::new(error("Sender", "InvalidAction", &message, 400)));
        }
        None => return Err(missing("Action")),
    }
    if param(request, "Version").as_deref() != Some("2011-06-15") {
        return Err(missing("Version"));
    }
    let role = param(request, "RoleArn").ok_or_else(|| missing("RoleArn"))?;
    let valid_role = role
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.split_once(":role/"))
        .is_some_and(|(account, name)| {
            account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        });
    if !valid_role {
        return Err(invalid(format!("{role} is invalid")));
    }
    let session = param(request, "RoleSessionName").ok_or_else(|| missing("RoleSessionName"))?;
    let valid_session = (2..=64).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if !valid_session {
        return Err(invalid(format!(
            "1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    if let Some(duration) = param(request, "DurationSeconds")
        && duration
            .parse::<u64>()
            .is_ok_and(|d| (900..=43200).contains(&d))
            .not()
    {
        return Err(invalid(format!(
            "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200"
        )));
    }
    let token = param(request, "WebIdentityToken").ok_or_else(|| missing("WebIdentityToken"))?;
    if token != WEB_IDENTITY_TOKEN {
        return Err(Box::new(error(
            "Sender",
            "InvalidIdentityToken",
            "The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request.",
            400,
        )));
    }
    Ok(())
}

fn success(expires: u64) -> Response<SimBody> {
    let (key_id, secret, token) = auth::issue(expires);
    let expiration =
        aws_smithy_types::DateTime::from_secs(i64::try_from(expires).unwrap_or(i64::MAX))
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap_or_default();
    let request_id = super::random_alphanumeric(32);
    let body = format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="{NAMESPACE}">
  <AssumeRoleWithWebIdentityResult>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <AssumedRoleId>AROASIMULATED00000001:switchyard</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/switchyard/switchyard</Arn>
    </AssumedRoleUser>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/SIMULATED</Provider>
    <Credentials>
      <AccessKeyId>{key_id}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:switchyard:switchyard</SubjectFromWebIdentityToken>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{request_id}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"#
    );
    server::full_response(StatusCode::OK, XML, bytes::Bytes::from(body))
}

/// STS's XML error document.
fn error(kind: &str, code: &str, message: &str, status: u16) -> Response<SimBody> {
    let request_id = super::random_alphanumeric(32);
    let body = format!(
        r#"<ErrorResponse xmlns="{NAMESPACE}">
  <Error>
    <Type>{kind}</Type>
    <Code>{code}</Code>
    <Message>{}</Message>
  </Error>
  <RequestId>{request_id}</RequestId>
</ErrorResponse>
"#,
        escape(message)
    );
    server::full_response(server::status_code(status), XML, bytes::Bytes::from(body))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
