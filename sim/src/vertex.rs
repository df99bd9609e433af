//! A simulated Vertex AI (`{region}-aiplatform.googleapis.com/v1`) on 127.0.0.1, with its OAuth2
//! token endpoint ([`TokenServer`]), serving Gemini and Anthropic models.
//!
//! [`MockProvider`] serves
//! `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{m}:generateContent`
//! and `:streamGenerateContent`, answered exactly as the simulated Gemini API answers
//! ([`super::gemini`]), and `…/publishers/anthropic/models/{m}:rawPredict` and
//! `:streamRawPredict`, answered exactly as the simulated Anthropic API answers
//! ([`super::anthropic`]). Before that it checks what Vertex checks: a current bearer token issued
//! by a [`TokenServer`] (401 `UNAUTHENTICATED` otherwise), the project ([`PROJECT`]; 403
//! `PERMISSION_DENIED` for any other), a well-formed location, the publisher and the method that
//! fits it (404 `NOT_FOUND`), and for Anthropic models a body with
//! `anthropic_version: "vertex-2023-10-16"`, no `model` and a `stream` flag that agrees with the
//! method (400). Then the publisher's own simulator validates the body as its API would.
//!
//! Every request is recorded and consumes the next queued [`Fault`] first, as in the other
//! simulators: faults skip the checks above.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use super::anthropic::{self, Anthropic};
use super::gemini::{self, Gemini};
use super::server::{self, Api, Ending, Mock, Plan, SimBody};
pub use super::server::{Behavior, Recorded};
pub use token::{TokenFault, TokenServer};

pub mod token;

/// The one project the simulated Vertex serves.
pub const PROJECT: &str = "switchyard-sim";
/// The `anthropic_version` Vertex requires in Anthropic request bodies.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// The OAuth2 scope a token must carry.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const PROJECTS: &str = "/v1/projects/";
/// Google's JSON content type, charset included.
const JSON: &str = "application/json; charset=UTF-8";

// Google's error messages, verbatim where the text is known.
const MISSING_CREDENTIAL: &str = "Request is missing required authentication credential. \
    Expected OAuth 2 access token, login cookie or other valid authentication credential. See \
    https://developers.google.com/identity/sign-in/web/devconsole-project.";
const INVALID_CREDENTIAL: &str = "Request had invalid authentication credentials. Expected \
    OAuth 2 access token, login cookie or other valid authentication credential. See \
    https://developers.google.com/identity/sign-in/web/devconsole-project.";
const QUOTA: &str = "Quota exceeded for aiplatform.googleapis.com/\
    generate_content_requests_per_minute_per_project_per_base_model with base model: \
    simulated. Please submit a quota increase request. \
    https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.";

/// A simulated Vertex AI upstream bound to a loopback port.
///
/// Point a provider's base URL at [`Mock::base_url`], `http://127.0.0.1:PORT/v1`, and its
/// service account key at [`TokenServer::key_file`].
pub type MockProvider = Mock<Vertex>;

/// A scripted misbehaviour applied to exactly one model request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// A fault of the simulated Gemini API, in Google's error shapes; its stream faults fit
    /// either publisher (they count the publisher's own content chunks).
    Gemini(gemini::Fault),
    /// A fault of the simulated Anthropic API, in Anthropic's error shapes, as Anthropic models
    /// on Vertex answer them.
    Anthropic(anthropic::Fault),
    /// 429 `RESOURCE_EXHAUSTED` with Vertex's per-minute quota message.
    ResourceExhausted,
    /// 401 `UNAUTHENTICATED`, as for an expired or revoked token.
    Unauthenticated,
    /// 403 `PERMISSION_DENIED`, as for a service account without `aiplatform.endpoints.predict`.
    PermissionDenied,
}

/// The Vertex AI wire format.
#[derive(Debug, Default)]
pub struct Vertex;

/// Which publisher's model a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publisher {
    Google,
    Anthropic,
}

/// A parsed model path.
struct ModelPath<'a> {
    project: &'a str,
    location: &'a str,
    publisher: &'a str,
    model: &'a str,
    method: &'a str,
}

impl Api for Vertex {
    type Fault = Fault;
    const LABEL: &'static str = "VertexAI";
    const BASE_PATH: &'static str = "/v1";
    const REQUEST_ID: Option<&'static str> = None;

    fn is_generation(method: &Method, path: &str) -> bool {
        // Every model call is recorded, also those the checks then refuse.
        method == Method::POST && path.starts_with(PROJECTS) && path.contains(':')
    }

    fn other(&self, method: &Method, path: &str) -> Response<SimBody> {
        let message = format!("Method not found: {method} {path}");
        error_response(404, "NOT_FOUND", &message)
    }

    fn plan(fault: Fault, request: &Recorded) -> Plan {
        match fault {
            Fault::Gemini(fault) => Gemini::plan(fault, request),
            Fault::Anthropic(fault) => Anthropic::plan(fault, &as_anthropic(request)),
            Fault::ResourceExhausted => {
                Plan::Respond(error_response(429, "RESOURCE_EXHAUSTED", QUOTA))
            }
            Fault::Unauthenticated => {
                Plan::Respond(error_response(401, "UNAUTHENTICATED", INVALID_CREDENTIAL))
            }
            Fault::PermissionDenied => Plan::Respond(permission_denied(&request.path)),
        }
    }

    fn reject(request: &Recorded) -> Option<Response<SimBody>> {
        if let Err(why) = check_token(request) {
            return Some(error_response(401, "UNAUTHENTICATED", why));
        }
        let path = match parse_path(&request.path) {
            Some(path) => path,
            None => {
                let message = format!("Method not found: POST {}", request.path);
                return Some(error_response(404, "NOT_FOUND", &message));
            }
        };
        if path.project != PROJECT {
            return Some(permission_denied(&request.path));
        }
        if !valid_location(path.location) {
            let message = format!("Location {} is not supported.", path.location);
            return Some(error_response(400, "INVALID_ARGUMENT", &message));
        }
        let publisher = match (path.publisher, path.method) {
            ("google", "generateContent" | "streamGenerateContent") => Publisher::Google,
            ("anthropic", "rawPredict" | "streamRawPredict") => Publisher::Anthropic,
            _ => {
                let message = format!(
                    "Publisher Model `projects/{}/locations/{}/publishers/{}/models/{}` \
                     does not support {}.",
                    path.project, path.location, path.publisher, path.model, path.method
                );
                return Some(error_response(404, "NOT_FOUND", &message));
            }
        };
        match publisher {
            Publisher::Google => Gemini::reject(request),
            Publisher::Anthropic => {
                if let Err(why) = check_anthropic_body(&request.body, path.method) {
                    return Some(error_response(400, "INVALID_ARGUMENT", &why));
                }
                Anthropic::reject(&as_anthropic(request))
            }
        }
    }

    fn answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody> {
        match publisher_of(&request.path) {
            Publisher::Google => Gemini::answer(request, behavior, ending),
            Publisher::Anthropic => Anthropic::answer(&as_anthropic(request), behavior, ending),
        }
    }
}

// === checks ===

/// The path's parts, if it has the shape of a Vertex model call.
fn parse_path(path: &str) -> Option<ModelPath<'_>> {
    let rest = path.strip_prefix(PROJECTS)?;
    let (project, rest) = rest.split_once("/locations/")?;
    let (location, rest) = rest.split_once("/publishers/")?;
    let (publisher, rest) = rest.split_once("/models/")?;
    let (model, method) = rest.split_once(':')?;
    let segments = [project, location, publisher, model, method];
    if segments.iter().any(|s| s.is_empty() || s.contains('/')) {
        return None;
    }
    Some(ModelPath {
        project,
        location,
        publisher,
        model,
        method,
    })
}

fn publisher_of(path: &str) -> Publisher {
    match parse_path(path) {
        Some(p) if p.publisher == "anthropic" => Publisher::Anthropic,
        _ => Publisher::Google,
    }
}

/// `global` or a region name such as `europe-west4` or `us-east5`.
fn valid_location(location: &str) -> bool {
    if location == "global" {
        return true;
    }
    let mut parts = location.split('-');
    let (Some(area), Some(zone), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let letters = zone.trim_end_matches(|c: char| c.is_ascii_digit());
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && !letters.is_empty()
        && letters.len() < zone.len()
        && letters.bytes().all(|b| b.is_ascii_lowercase())
}

/// Vertex's own rules for an Anthropic body, before Anthropic's.
fn check_anthropic_body(body: &Value, method: &str) -> Result<(), String> {
    let Some(body) = body.as_object() else {
        return Err("Invalid JSON payload received.".to_owned());
    };
    match body.get("anthropic_version").and_then(Value::as_str) {
        Some(ANTHROPIC_VERSION) => {}
        Some(other) => return Err(format!("anthropic_version: unsupported version {other:?}")),
        None => return Err("anthropic_version: Field required".to_owned()),
    }
    if body.contains_key("model") {
        // The model is the one in the URL.
        return Err("model: Extra inputs are not permitted".to_owned());
    }
    let streams = body.get("stream") == Some(&Value::Bool(true));
    if streams != (method == "streamRawPredict") {
        return Err(format!("stream must be {} for {method}", !streams));
    }
    Ok(())
}

/// The request as the Anthropic simulator expects it: the model from the path in the body,
/// `anthropic_version` as the header Anthropic's own API requires.
fn as_anthropic(request: &Recorded) -> Recorded {
    let mut anthropic = request.clone();
    if let Some(body) = anthropic.body.as_object_mut()
        && body.remove("anthropic_version").is_some()
        && let Some(model) = parse_path(&request.path).map(|p| p.model)
    {
        body.insert("model".to_owned(), json!(model));
        anthropic.headers.insert(
            "anthropic-version",
            http::HeaderValue::from_static("2023-06-01"),
        );
    }
    anthropic
}

/// Whether the request carries a current token issued by a [`TokenServer`] of this process.
fn check_token(request: &Recorded) -> Result<(), &'static str> {
    let Some(authorization) = request.header("authorization") else {
        return Err(MISSING_CREDENTIAL);
    };
    let token = authorization
        .strip_prefix("Bearer ")
        .and_then(|t| t.strip_prefix(TOKEN_PREFIX))
        .ok_or(INVALID_CREDENTIAL)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let key = DecodingKey::from_secret(token_secret());
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|_| INVALID_CREDENTIAL)?
        .claims;
    if claims["scope"] != SCOPE {
        return Err(INVALID_CREDENTIAL);
    }
    Ok(())
}

// === tokens ===

/// Google's access tokens start with `ya29.`; the rest of ours is a JWT only this process can
/// sign, so the model server checks tokens without sharing state with the token server.
const TOKEN_PREFIX: &str = "ya29.";

/// The key this process signs access tokens with.
fn token_secret() -> &'static [u8] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(rand::random)
}

/// An access token for `subject` valid until `expires` (seconds since the epoch).
fn issue_token(subject: &str, expires: u64) -> String {
    let claims =
        json!({"sub": subject, "scope": SCOPE, "exp": expires, "jti": rand::random::<u64>()});
    let key = EncodingKey::from_secret(token_secret());
    let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .expect("HS256 signing cannot fail");
    format!("{TOKEN_PREFIX}{jwt}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// === errors ===

fn permission_denied(path: &str) -> Response<SimBody> {
    let resource = path.strip_prefix("/v1/").unwrap_or(path);
    let resource = resource.split_once(':').map_or(resource, |(r, _)| r);
    let message = format!(
        "Permission 'aiplatform.endpoints.predict' denied on resource \
         '//aiplatform.googleapis.com/{resource}' (or it may not exist)."
    );
    error_response(403, "PERMISSION_DENIED", &message)
}

/// Google's error document.
fn error_response(code: u16, status: &str, message: &str) -> Response<SimBody> {
    let body = json!({"error": {"code": code, "message": message, "status": status}});
    let bytes = bytes::Bytes::from(body.to_string());
    server::full_response(server::status_code(code), JSON, bytes)
}

#[cfg(test)]
mod tests;
