use super::token::{CLIENT_EMAIL, PRIVATE_KEY_ID, THROWAWAY_OTHER_PRIVATE_KEY};
use super::*;
use crate::testing::{self, body_of, parse};
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

const GEMINI: &str =
    "/v1/projects/switchyard-sim/locations/europe-west4/publishers/google/models/gemini-2.5-flash";
const CLAUDE: &str =
    "/v1/projects/switchyard-sim/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5";

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
}

fn claude_body(stream: bool) -> Value {
    json!({
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
    })
}

/// A signed JWT bearer assertion, as a client of the token endpoint makes it.
fn assertion(key: &str, aud: &str, scope: &str, lifetime: u64) -> String {
    let now = unix_now();
    let claims =
        json!({"iss": CLIENT_EMAIL, "scope": scope, "aud": aud, "iat": now, "exp": now + lifetime});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(PRIVATE_KEY_ID.to_owned());
    let key = EncodingKey::from_rsa_pem(key.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// POSTs a form to the token endpoint; status and JSON body.
async fn token_request(server: &TokenServer, form: &str) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::post("/token")
        .header("host", "127.0.0.1")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from(form.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn form(assertion: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
        .append_pair("assertion", assertion)
        .finish()
}

async fn token(server: &TokenServer) -> &'static str {
    let jwt = assertion(
        THROWAWAY_TEST_PRIVATE_KEY_PEM,
        &server.token_url(),
        SCOPE,
        3600,
    );
    let (status, body) = token_request(server, &form(&jwt)).await;
    assert_eq!(status, 200, "{body}");
    let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
    Box::leak(bearer.into_boxed_str())
}

use super::token::THROWAWAY_TEST_PRIVATE_KEY as THROWAWAY_TEST_PRIVATE_KEY_PEM;

async fn post(
    p: &MockProvider,
    path: &str,
    auth: Option<&'static str>,
    body: Value,
) -> Response<Incoming> {
    let headers: Vec<(&'static str, &'static str)> =
        auth.map(|a| ("authorization", a)).into_iter().collect();
    let reply = testing::send(p.addr(), Method::POST, path, &headers, Some(body)).await;
    reply.expect("response")
}

async fn google_error(response: Response<Incoming>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = parse(&body_of(response).await);
    assert_eq!(body["error"]["code"], status, "{body}");
    (status, body["error"]["status"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn token_endpoint_grants_a_valid_assertion_and_refuses_bad_ones() {
    let server = TokenServer::start().await.unwrap();
    let url = server.token_url();
    let jwt = assertion(THROWAWAY_TEST_PRIVATE_KEY_PEM, &url, SCOPE, 3600);
    let (status, body) = token_request(&server, &form(&jwt)).await;
    assert_eq!(
        (status, &body["token_type"], &body["expires_in"]),
        (200, &json!("Bearer"), &json!(3599))
    );
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));

    let refused = [
        // Signed with a key the endpoint does not know.
        (
            assertion(THROWAWAY_OTHER_PRIVATE_KEY, &url, SCOPE, 3600),
            "invalid_grant",
        ),
        // For another audience.
        (
            assertion(
                THROWAWAY_TEST_PRIVATE_KEY_PEM,
                "https://oauth2.googleapis.com/token",
                SCOPE,
                3600,
            ),
            "invalid_grant",
        ),
        // Without the cloud-platform scope.
        (
            assertion(
                THROWAWAY_TEST_PRIVATE_KEY_PEM,
                &url,
                "https://www.googleapis.com/auth/drive",
                3600,
            ),
            "invalid_scope",
        ),
        // Living longer than an hour.
        (
            assertion(THROWAWAY_TEST_PRIVATE_KEY_PEM, &url, SCOPE, 7200),
            "invalid_grant",
        ),
    ];
    for (jwt, error) in refused {
        let (status, body) = token_request(&server, &form(&jwt)).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (400, error),
            "{body}"
        );
    }
    let (status, body) = token_request(&server, "grant_type=client_credentials").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("unsupported_grant_type"))
    );
    assert_eq!((server.grants(), server.requests()), (1, 6));
}

#[tokio::test]
async fn model_calls_need_a_current_token() {
    let server = TokenServer::start().await.unwrap();
    let p = MockProvider::start("vertex").await.unwrap();
    assert_eq!(p.base_url(), format!("http://{}/v1", p.addr()));
    let generate = format!("{GEMINI}:generateContent");
    let missing = post(&p, &generate, None, gemini_body()).await;
    assert_eq!(google_error(missing).await, (401, "UNAUTHENTICATED".into()));
    let forged = post(&p, &generate, Some("Bearer ya29.forged"), gemini_body()).await;
    assert_eq!(google_error(forged).await, (401, "UNAUTHENTICATED".into()));

    let bearer = token(&server).await;
    let ok = post(&p, &generate, Some(bearer), gemini_body()).await;
    assert_eq!(ok.status(), 200);
    let body = parse(&body_of(ok).await);
    assert_eq!(body["candidates"][0]["finishReason"], "STOP", "{body}");

    // A token past its real expiry, whatever the endpoint said about its lifetime.
    server.set_lifetime(3599, 0);
    let expired = token(&server).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let refused = post(&p, &generate, Some(expired), gemini_body()).await;
    assert_eq!(google_error(refused).await, (401, "UNAUTHENTICATED".into()));
}

#[tokio::test]
async fn paths_are_checked_for_project_location_publisher_and_method() {
    let server = TokenServer::start().await.unwrap();
    let p = MockProvider::start("vertex").await.unwrap();
    let bearer = token(&server).await;
    let cases = [
        (
            GEMINI.replace("switchyard-sim", "someone-else") + ":generateContent",
            403,
            "PERMISSION_DENIED",
        ),
        (
            GEMINI.replace("europe-west4", "Europe_West") + ":generateContent",
            400,
            "INVALID_ARGUMENT",
        ),
        (format!("{GEMINI}:rawPredict"), 404, "NOT_FOUND"),
        (format!("{CLAUDE}:generateContent"), 404, "NOT_FOUND"),
        (
            CLAUDE.replace("anthropic", "meta") + ":rawPredict",
            404,
            "NOT_FOUND",
        ),
    ];
    for (path, status, kind) in cases {
        let body = if path.contains("anthropic") {
            claude_body(false)
        } else {
            gemini_body()
        };
        let response = post(&p, &path, Some(bearer), body).await;
        assert_eq!(
            google_error(response).await,
            (status, kind.into()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn anthropic_models_take_the_vertex_body_and_answer_as_anthropic() {
    let server = TokenServer::start().await.unwrap();
    let p = MockProvider::start("vertex").await.unwrap();
    let bearer = token(&server).await;
    let raw = format!("{CLAUDE}:rawPredict");
    let stream = format!("{CLAUDE}:streamRawPredict");

    let mut with_model = claude_body(false);
    with_model["model"] = json!("claude-sonnet-4-5");
    let mut without_version = claude_body(false);
    without_version
        .as_object_mut()
        .unwrap()
        .remove("anthropic_version");
    for (path, body) in [
        (&raw, with_model),
        (&raw, without_version),
        (&stream, claude_body(false)),
    ] {
        let response = post(&p, path, Some(bearer), body).await;
        assert_eq!(
            google_error(response).await,
            (400, "INVALID_ARGUMENT".into())
        );
    }
    // Anthropic's own checks follow Vertex's.
    let mut no_max_tokens = claude_body(false);
    no_max_tokens.as_object_mut().unwrap().remove("max_tokens");
    let response = post(&p, &raw, Some(bearer), no_max_tokens).await;
    assert_eq!(response.status(), 400);
    let body = parse(&body_of(response).await);
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");

    let response = post(&p, &raw, Some(bearer), claude_body(false)).await;
    assert_eq!(response.status(), 200);
    let message = parse(&body_of(response).await);
    assert_eq!(
        (&message["type"], &message["model"]),
        (&json!("message"), &json!("claude-sonnet-4-5"))
    );

    let response = post(&p, &stream, Some(bearer), claude_body(true)).await;
    assert_eq!(response.status(), 200);
    let events = body_of(response).await;
    assert!(events.starts_with("event: message_start\n"), "{events}");
    assert!(
        events.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{events}"
    );
}

#[tokio::test]
async fn faults_answer_in_the_publishers_shapes() {
    let p = MockProvider::start("vertex").await.unwrap();
    p.push_faults([
        Fault::ResourceExhausted,
        Fault::Anthropic(anthropic::Fault::Overloaded),
        Fault::PermissionDenied,
    ]);
    let quota = post(
        &p,
        &format!("{CLAUDE}:rawPredict"),
        None,
        claude_body(false),
    )
    .await;
    assert_eq!(
        google_error(quota).await,
        (429, "RESOURCE_EXHAUSTED".into())
    );
    let overloaded = post(
        &p,
        &format!("{CLAUDE}:rawPredict"),
        None,
        claude_body(false),
    )
    .await;
    assert_eq!(overloaded.status(), 529);
    let body = parse(&body_of(overloaded).await);
    assert_eq!(body["error"]["type"], "overloaded_error");
    let denied = post(
        &p,
        &format!("{GEMINI}:generateContent"),
        None,
        gemini_body(),
    )
    .await;
    assert_eq!(
        google_error(denied).await,
        (403, "PERMISSION_DENIED".into())
    );
    assert_eq!(p.request_count(), 3);
}
