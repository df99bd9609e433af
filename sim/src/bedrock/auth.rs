//! SigV4 as AWS checks it: the `Authorization` header parsed, the key and its scope checked, the
//! signature recomputed with the maintained `aws-sigv4` crate over the same method, path,
//! signed headers, time and body bytes, and compared.
//!
//! Keys are the static pair [`ACCESS_KEY_ID`] / [`SECRET_ACCESS_KEY`], or temporary keys the
//! simulated STS issued ([`issue`]): their session token is a JWT only this process can sign,
//! holding the key id, the secret and the expiry, so the model server checks them without
//! sharing state with the STS server.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_types::date_time::{DateTime, Format};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use super::Recorded;

/// The access key id of the simulated account's static keys.
pub const ACCESS_KEY_ID: &str = "AKIASIMULATED0000001";
/// The secret of the simulated account's static keys.
pub const SECRET_ACCESS_KEY: &str = "sImUlAtEd/SeCrEt/KeY/fOr/SwItChYaRd/0000";
/// The region the simulated Bedrock serves; credentials must be scoped to it.
pub const REGION: &str = "us-east-1";
/// The SigV4 service name.
pub const SERVICE: &str = "bedrock";
/// Temporary key ids start with `ASIA`, as AWS's do.
const TEMPORARY_PREFIX: &str = "ASIA";
/// How far the request time may be from now, as AWS allows.
const SKEW: Duration = Duration::from_secs(5 * 60);

const MISSING: &str = "Missing Authentication Token";
const BAD_TOKEN: &str = "The security token included in the request is invalid.";
const EXPIRED: &str = "The security token included in the request is expired";
const MISMATCH: &str = "The request signature we calculated does not match the signature you \
                        provided. Check your AWS Secret Access Key and signing method. Consult \
                        the service documentation for details.";

/// Why a request's authentication failed, as AWS answers it (always a 403).
#[derive(Debug)]
pub struct Denied {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

fn denied(kind: &'static str, message: impl Into<String>) -> Denied {
    Denied {
        status: 403,
        kind,
        message: message.into(),
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        let (name, value) = part.split_once('=')?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let parsed = Authorization {
        key_id: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(parsed)
}

/// Checks the request's SigV4 signature.
pub fn check(request: &Recorded) -> Result<(), Denied> {
    let Some(header) = request.header("authorization") else {
        return Err(denied("MissingAuthenticationTokenException", MISSING));
    };
    let auth = parse_authorization(header).ok_or_else(|| {
        denied(
            "IncompleteSignatureException",
            format!("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={header}"),
        )
    })?;
    let token = request.header("x-amz-security-token");
    let secret = secret_for(auth.key_id, token)?;
    if auth.region != REGION {
        return Err(denied(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region. Region '{}' is not valid.",
                auth.region
            ),
        ));
    }
    if auth.service != SERVICE {
        return Err(denied(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{SERVICE}'."),
        ));
    }
    let amz_date = request.header("x-amz-date").unwrap_or_default();
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        denied(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(denied(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP",
        ));
    }
    let now = SystemTime::now();
    let skew = now
        .duration_since(time)
        .or_else(|_| time.duration_since(now));
    if skew.map_or(true, |s| s > SKEW) {
        return Err(denied(
            "InvalidSignatureException",
            format!(
                "Signature expired: {amz_date} is now earlier or later than 5 minutes from now."
            ),
        ));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(denied(
            "InvalidSignatureException",
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let expected = signature(request, &auth, &secret, token, time)
        .ok_or_else(|| denied("InvalidSignatureException", MISMATCH))?;
    if expected != auth.signature {
        return Err(denied("InvalidSignatureException", MISMATCH));
    }
    Ok(())
}

/// The signature `aws-sigv4` computes for the request's signed headers and body.
fn signature(
    request: &Recorded,
    auth: &Authorization<'_>,
    secret: &str,
    token: Option<&str>,
    time: SystemTime,
) -> Option<String> {
    // The crate adds `x-amz-date` and `x-amz-security-token` itself.
    let mut headers = Vec::new();
    for name in &auth.signed_headers {
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        for value in request.headers.get_all(*name) {
            headers.push((*name, value.to_str().ok()?));
        }
    }
    let host = request.header("host")?;
    let uri = match &request.query {
        Some(query) => format!("http://{host}{}?{query}", request.path),
        None => format!("http://{host}{}", request.path),
    };
    let identity = Credentials::new(
        auth.key_id,
        secret,
        token.map(str::to_owned),
        None,
        "simulated-bedrock",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let signable = SignableRequest::new(
        &request.method,
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(&request.raw),
    )
    .ok()?;
    let (_, signature) = sign(signable, &params).ok()?.into_parts();
    Some(signature)
}

/// `20150830T123600Z` as a time.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[0..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    );
    let secs = DateTime::from_str(&rfc3339, Format::DateTime).ok()?.secs();
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// The secret of `key_id`: the static key's, or a temporary key's from its session token.
fn secret_for(key_id: &str, token: Option<&str>) -> Result<String, Denied> {
    if key_id == ACCESS_KEY_ID {
        return Ok(SECRET_ACCESS_KEY.to_owned());
    }
    if !key_id.starts_with(TEMPORARY_PREFIX) {
        return Err(denied("UnrecognizedClientException", BAD_TOKEN));
    }
    let token = token.ok_or_else(|| denied("UnrecognizedClientException", BAD_TOKEN))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let key = DecodingKey::from_secret(token_secret());
    let claims = match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
            return Err(denied("ExpiredTokenException", EXPIRED));
        }
        Err(_) => return Err(denied("UnrecognizedClientException", BAD_TOKEN)),
    };
    if claims["sub"] != key_id {
        return Err(denied("UnrecognizedClientException", BAD_TOKEN));
    }
    let secret = claims["secret"].as_str().unwrap_or_default();
    Ok(secret.to_owned())
}

/// Temporary keys valid until `expires` (seconds since the epoch): key id, secret, session
/// token.
pub fn issue(expires: u64) -> (String, String, String) {
    let key_id = format!(
        "{TEMPORARY_PREFIX}{}",
        super::random_alphanumeric(16).to_uppercase()
    );
    let secret = super::random_alphanumeric(40);
    let claims = json!({"sub": key_id, "secret": secret, "exp": expires});
    let key = EncodingKey::from_secret(token_secret());
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .expect("HS256 signing cannot fail");
    (key_id, secret, token)
}

fn token_secret() -> &'static [u8] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(rand::random)
}
