//! A simulated Google OAuth2 token endpoint (`oauth2.googleapis.com/token`) for service accounts:
//! the JWT bearer grant only, checked as Google checks it.
//!
//! `POST /token` with a form body `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
//! `assertion=<JWT>`. The assertion must be RS256, signed with the throwaway test key whose key
//! file [`TokenServer::key_file`] hands out (its `kid` the key's id), issued by that key's
//! `client_email`, for this endpoint's URL (`aud`), with the `cloud-platform` scope and a
//! lifetime of at most an hour around now. Failures are Google's 400 `invalid_grant` /
//! `invalid_scope` / `unsupported_grant_type` documents; success is
//! `{"access_token", "expires_in", "token_type": "Bearer"}`.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{SCOPE, issue_token, unix_now};
use crate::server::lock;

/// A throwaway RSA key made for these tests only (PKCS#8 PEM, as Google's key files hold it):
/// it signs nothing anywhere else.
pub const THROWAWAY_TEST_PRIVATE_KEY: &str = include_str!("throwaway_test_key.pem");
const THROWAWAY_TEST_PUBLIC_KEY: &str = include_str!("throwaway_test_key.pub.pem");
/// A second throwaway key, which the token endpoint does not know: assertions signed with it
/// fail as a revoked or foreign key's do.
pub const THROWAWAY_OTHER_PRIVATE_KEY: &str = include_str!("throwaway_other_key.pem");
/// The service account the simulated key belongs to.
pub const CLIENT_EMAIL: &str = "switchyard-sim@switchyard-sim.iam.gserviceaccount.com";
/// The key's id, sent as the assertion's `kid`.
pub const PRIVATE_KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const BAD_SIGNATURE: &str = "Invalid JWT Signature.";
const BAD_TIME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                        reasonable timeframe. Check your iat and exp values in the JWT claim.";

/// A scripted answer for one token request, instead of checking it.
#[derive(Clone, Debug)]
pub enum TokenFault {
    /// Any status and body (`application/json`).
    Status { status: u16, body: String },
    /// Close the connection without an answer.
    Reset,
}

/// The simulated token endpoint, on a loopback port until dropped.
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug)]
struct TokenState {
    url: String,
    /// Token requests answered with a token.
    grants: AtomicUsize,
    /// Every token request received.
    requests: AtomicUsize,
    lifetime: Mutex<Lifetime>,
    faults: Mutex<VecDeque<TokenFault>>,
}

/// How long issued tokens live, and how long the answer says they do.
#[derive(Clone, Copy, Debug)]
struct Lifetime {
    advertised: u64,
    actual: u64,
}

impl TokenServer {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime. Tokens live an
    /// hour (`expires_in: 3599`, as Google says) until [`TokenServer::set_lifetime`].
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(TokenState {
            url: format!("http://{addr}/token"),
            grants: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            lifetime: Mutex::new(Lifetime {
                advertised: 3599,
                actual: 3600,
            }),
            faults: Mutex::new(VecDeque::new()),
        });
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(accept_loop(listener, state.clone(), stop));
        Ok(Self {
            addr,
            state,
            shutdown,
        })
    }

    /// The token endpoint's URL, `http://127.0.0.1:PORT/token`.
    pub fn token_url(&self) -> String {
        self.state.url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A service account key file (JSON) whose `token_uri` is this endpoint.
    pub fn key_file(&self) -> String {
        key_file(THROWAWAY_TEST_PRIVATE_KEY, &self.state.url)
    }

    /// Tokens issued from now on say they live `advertised` seconds and expire after `actual`:
    /// a shorter `actual` makes a client use a token the model server already refuses.
    pub fn set_lifetime(&self, advertised: u64, actual: u64) {
        *lock(&self.state.lifetime) = Lifetime { advertised, actual };
    }

    /// Queues faults; each token request consumes the oldest one.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = TokenFault>) {
        lock(&self.state.faults).extend(faults);
    }

    /// Tokens issued so far.
    pub fn grants(&self) -> usize {
        self.state.grants.load(Ordering::SeqCst)
    }

    /// Token requests received so far, refused ones included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// A service account key file in Google's format with `private_key` and `token_uri`.
pub fn key_file(private_key: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": super::PROJECT,
        "private_key_id": PRIVATE_KEY_ID,
        "private_key": private_key,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/switchyard-sim%40switchyard-sim.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<TokenState>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let state = state.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        }
    }
}

async fn handle(
    state: Arc<TokenState>,
    req: Request<Incoming>,
) -> io::Result<Response<Full<Bytes>>> {
    if req.method() != Method::POST || req.uri().path() != "/token" {
        return Ok(respond(404, json!({"error": "not_found"})));
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let fault = lock(&state.faults).pop_front();
    match fault {
        Some(TokenFault::Status { status, body }) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let json = http::HeaderValue::from_static("application/json");
            response.headers_mut().insert(header::CONTENT_TYPE, json);
            return Ok(response);
        }
        Some(TokenFault::Reset) => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "simulated reset",
            ));
        }
        None => {}
    }
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if form != Some("application/x-www-form-urlencoded") {
        let error = "invalid_request";
        let description = "Content-Type must be application/x-www-form-urlencoded";
        return Ok(respond(
            400,
            json!({"error": error, "error_description": description}),
        ));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    let lifetime = *lock(&state.lifetime);
    Ok(match grant(&body, &state.url) {
        Ok(subject) => {
            state.grants.fetch_add(1, Ordering::SeqCst);
            let token = issue_token(&subject, unix_now() + lifetime.actual);
            respond(
                200,
                json!({"access_token": token, "expires_in": lifetime.advertised, "token_type": "Bearer"}),
            )
        }
        Err((error, description)) => respond(
            400,
            json!({"error": error, "error_description": description}),
        ),
    })
}

/// The assertion's subject when the grant is valid, else Google's `error` and description.
fn grant(body: &[u8], audience: &str) -> Result<String, (&'static str, String)> {
    let mut grant_type = None;
    let mut assertion = None;
    for (name, value) in form_urlencoded::parse(body) {
        match &*name {
            "grant_type" => grant_type = Some(value.into_owned()),
            "assertion" => assertion = Some(value.into_owned()),
            _ => {}
        }
    }
    let grant_type = grant_type.unwrap_or_default();
    if grant_type != GRANT_TYPE {
        let why = format!("Invalid grant_type: {grant_type}");
        return Err(("unsupported_grant_type", why));
    }
    let invalid = |why: &str| ("invalid_grant", why.to_owned());
    let assertion = assertion.ok_or_else(|| invalid("Missing required parameter: assertion"))?;
    let header = jsonwebtoken::decode_header(&assertion).map_err(|_| invalid("Invalid JWT."))?;
    if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some(PRIVATE_KEY_ID) {
        return Err(invalid(BAD_SIGNATURE));
    }
    let key = DecodingKey::from_rsa_pem(THROWAWAY_TEST_PUBLIC_KEY.as_bytes())
        .expect("the test public key is valid PEM");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    validation.set_audience(&[audience]);
    let claims = match jsonwebtoken::decode::<Value>(&assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind;
            return Err(match e.kind() {
                ErrorKind::ExpiredSignature => invalid(BAD_TIME),
                ErrorKind::InvalidAudience => invalid(&format!(
                    "Invalid JWT: Failed audience check. The right audience is {audience}."
                )),
                _ => invalid(BAD_SIGNATURE),
            });
        }
    };
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    let now = unix_now();
    match (iat, exp) {
        (Some(iat), Some(exp)) if exp > iat && exp - iat <= 3600 && iat <= now + 60 => {}
        _ => return Err(invalid(BAD_TIME)),
    }
    if claims["iss"] != CLIENT_EMAIL {
        return Err(invalid("Invalid grant: account not found"));
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split(' ').any(|s| s == SCOPE) {
        let why = "Invalid OAuth scope or ID token audience provided.".to_owned();
        return Err(("invalid_scope", why));
    }
    Ok(CLIENT_EMAIL.to_owned())
}

fn respond(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let json = http::HeaderValue::from_static("application/json; charset=utf-8");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    response
}
