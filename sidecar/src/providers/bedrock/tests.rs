use std::time::{Duration, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::{Map, json};
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::{AwsAuth, AwsKeys, Breaker, Limits, TimeoutsMs, Upstream};
use switchyard_crds::v1alpha1::Publisher;

use super::*;
use crate::convert::Usage;
use crate::convert::eventstream::{EventStreamParser, frame};
use crate::upstream::UpstreamRt;

fn keys(token: Option<&str>) -> AwsCredentials {
    AwsCredentials {
        access_key_id: SecretString::new("AKIDEXAMPLE"),
        secret_access_key: SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token: token.map(SecretString::new),
    }
}

fn upstream() -> UpstreamRt {
    UpstreamRt::new(Upstream {
        pool: "p".into(),
        provider: "bedrock".into(),
        api: Api::Bedrock,
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
        region: Some("us-east-1".into()),
        api_key: None,
        forward_headers: vec!["authorization".into(), "x-tenant".into()],
        responses_api: false,
        azure_api_version: None,
        aws: Some(AwsAuth {
            keys: Some(AwsKeys {
                access_key_id: SecretString::new("AKIDEXAMPLE"),
                secret_access_key: SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: None,
            }),
            web_identity: None,
        }),
        gcp: None,
        timeouts: TimeoutsMs::default(),
        limits: Limits::default(),
        breaker: Breaker::default(),
    })
}

fn hub() -> Map<String, Value> {
    json!({"model": "chat", "max_tokens": 50, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]})
    .as_object()
    .unwrap()
    .clone()
}

fn build(
    model: &str,
    stream: bool,
    credential: &Credential,
) -> Result<http::Request<Full<Bytes>>, AttemptError> {
    let up = upstream();
    let hub = hub();
    let mut client_headers = HeaderMap::new();
    client_headers.insert("authorization", "Bearer client-key".parse().unwrap());
    client_headers.insert("x-tenant", "t1".parse().unwrap());
    let call = Call {
        upstream: &up,
        model,
        request: &hub,
        original: None,
        client: ClientApi::OpenAI,
        stream,
        client_headers: &client_headers,
        credential,
        publisher: Publisher::Google,
    };
    Bedrock.build_request(&call)
}

#[test]
fn requests_are_signed_for_bedrock_and_go_to_the_escaped_model_url() {
    let credential = Credential::Aws(keys(Some("session-token-123")));
    let profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
    let request = build(profile, true, &credential).unwrap();
    assert_eq!(
        request.uri(),
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );
    let auth = request.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(
        !auth.contains("client-key"),
        "the client's key is never forwarded"
    );
    assert!(request.headers()["authorization"].is_sensitive());
    assert_eq!(
        request.headers()["x-amz-security-token"],
        "session-token-123"
    );
    assert!(request.headers()["x-amz-security-token"].is_sensitive());
    assert_eq!(
        request.headers()["accept"],
        "application/vnd.amazon.eventstream"
    );
    assert_eq!(request.headers()["x-tenant"], "t1");
    let sent = crate::providers::sent_json(request);
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(sent["inferenceConfig"]["maxTokens"], 50);
    assert!(sent.get("model").is_none(), "the model is in the URL");

    let plain = build("anthropic.claude-3-haiku-20240307-v1:0", false, &credential).unwrap();
    assert_eq!(
        plain.uri().path(),
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
}

#[test]
fn without_aws_credentials_a_request_is_an_auth_error() {
    let error = build("m", false, &Credential::None).unwrap_err();
    assert_eq!(error.class, FailureClass::AuthError);
}

/// Cases of AWS's SigV4 test suite (shipped in the `aws-sigv4` crate's sources as
/// `aws-signing-test-suite/v4/<case>/{request.txt,context.json,header-signature.txt}`): service
/// `service`, region `us-east-1`, 2015-08-30T12:36:00Z, the documented example keys.
#[test]
fn sigv4_matches_aws_published_test_vectors() {
    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let cases = [
        (
            "GET",
            None,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "POST",
            None,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "GET",
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        ),
    ];
    for (method, token, signature) in cases {
        let mut request = http::Request::builder()
            .method(method)
            .uri("https://example.amazonaws.com/")
            .body(())
            .unwrap();
        sign_request(
            &mut request,
            b"",
            &keys(token),
            ("us-east-1", "service"),
            time,
        )
        .unwrap();
        let auth = request.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.ends_with(&format!("Signature={signature}")),
            "{method} {token:?}: {auth}"
        );
        assert_eq!(request.headers()["x-amz-date"], "20150830T123600Z");
    }
}

#[test]
fn a_changed_body_changes_the_signature() {
    let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let sign = |body: &[u8]| {
        let mut request =
            http::Request::post("https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse")
                .body(())
                .unwrap();
        sign_request(
            &mut request,
            body,
            &keys(None),
            ("us-east-1", "bedrock"),
            time,
        )
        .unwrap();
        request.headers()["authorization"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(sign(b"{}"), sign(b"{ }"), "the payload hash is signed");
}

fn classify(status: u16, error_type: Option<&str>, message: &str) -> AttemptError {
    let mut headers = HeaderMap::new();
    if let Some(t) = error_type {
        headers.insert(
            "x-amzn-errortype",
            format!("{t}:http://internal.amazon.com/coral/com.amazon.bedrock/")
                .parse()
                .unwrap(),
        );
    }
    let body = json!({"message": message}).to_string();
    Bedrock.classify_error(
        StatusCode::from_u16(status).unwrap(),
        &headers,
        body.as_bytes(),
    )
}

#[test]
fn bedrock_error_shapes_are_classified() {
    use FailureClass::*;
    let cases = [
        (
            429,
            Some("ThrottlingException"),
            "Too many requests, please wait before trying again.",
            RateLimited,
        ),
        (
            400,
            Some("ServiceQuotaExceededException"),
            "quota exceeded",
            RateLimited,
        ),
        (
            429,
            Some("ModelNotReadyException"),
            "Model is not ready",
            ServerError,
        ),
        (
            503,
            Some("ServiceUnavailableException"),
            "Service Unavailable",
            Overloaded,
        ),
        (
            408,
            Some("ModelTimeoutException"),
            "Model timed out",
            Timeout,
        ),
        (
            400,
            Some("ValidationException"),
            "Input is too long for requested model.",
            ContextLengthExceeded,
        ),
        (
            400,
            Some("ValidationException"),
            "messages: final message must be from user",
            ClientError,
        ),
        (
            403,
            Some("AccessDeniedException"),
            "You don't have access to the model",
            AuthError,
        ),
        (
            403,
            Some("UnrecognizedClientException"),
            "The security token included in the request is invalid.",
            AuthError,
        ),
        (
            403,
            Some("InvalidSignatureException"),
            "The request signature we calculated does not match",
            AuthError,
        ),
        (
            404,
            Some("ResourceNotFoundException"),
            "Model not found",
            ServerError,
        ),
        (
            500,
            Some("InternalServerException"),
            "internal",
            ServerError,
        ),
        (429, None, "slow down", RateLimited),
    ];
    for (status, kind, message, class) in cases {
        let error = classify(status, kind, message);
        assert_eq!(error.class, class, "{status} {kind:?} {message}");
        assert!(error.message.contains(message), "{}", error.message);
    }
}

fn stream(frames: &[Vec<u8>]) -> Vec<Chunk> {
    let mut decoder = Bedrock.stream_decoder(ClientApi::OpenAI, "m");
    assert_eq!(decoder.framing(), Framing::AwsEventStream);
    let mut parser = EventStreamParser::default();
    let mut events = Vec::new();
    for f in frames {
        parser.push(f, &mut events).unwrap();
    }
    let mut out = Vec::new();
    for e in events {
        decoder.decode(e, &mut out);
    }
    decoder.end(&mut out);
    out
}

fn event(kind: &str, payload: Value) -> Vec<u8> {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        payload.to_string().as_bytes(),
    )
}

#[test]
fn a_stream_ends_after_message_stop_and_metadata_with_usage() {
    let chunks = stream(&[
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("messageStop", json!({"stopReason": "end_turn"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 10, "outputTokens": 2, "totalTokens": 17, "cacheReadInputTokens": 5}, "metrics": {"latencyMs": 100}}),
        ),
    ]);
    assert!(matches!(chunks.last(), Some(Chunk::Done)));
    let usage = chunks.iter().find_map(|c| match c {
        Chunk::Data {
            usage: Some(u),
            usage_only: true,
            ..
        } => Some(*u),
        _ => None,
    });
    assert_eq!(
        usage,
        Some(Usage {
            input: 15,
            cached_input: 5,
            output: 2
        })
    );
}

#[test]
fn a_stream_cut_before_metadata_never_ends_cleanly() {
    let chunks = stream(&[
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ),
    ]);
    assert!(!chunks.iter().any(|c| matches!(c, Chunk::Done)));
}

#[test]
fn exceptions_in_a_stream_are_classified_errors() {
    for (kind, class) in [
        ("throttlingException", FailureClass::RateLimited),
        ("modelStreamErrorException", FailureClass::ServerError),
        ("serviceUnavailableException", FailureClass::Overloaded),
        ("validationException", FailureClass::ClientError),
    ] {
        let chunks = stream(&[
            event("messageStart", json!({"role": "assistant"})),
            frame(
                &[(":message-type", "exception"), (":exception-type", kind)],
                br#"{"message":"it broke"}"#,
            ),
        ]);
        match chunks.last() {
            Some(Chunk::Error(e)) => {
                assert_eq!(e.class, class, "{kind}");
                assert!(e.message.contains("it broke"), "{}", e.message);
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[test]
fn a_whole_converse_answer_reads_as_a_completion() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
        "metrics": {"latencyMs": 10},
    });
    let completion = Bedrock
        .parse_response(Bytes::from(body.to_string()), ClientApi::OpenAI, "m")
        .unwrap();
    let answer: Value = serde_json::from_slice(&completion.body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
    assert_eq!(
        answer["model"], "m",
        "Converse answers name no model: the target's is used"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(
        completion.usage,
        Some(Usage {
            input: 3,
            cached_input: 0,
            output: 4
        })
    );
    assert_eq!(
        Bedrock
            .parse_response(
                Bytes::from_static(b"{\"message\":\"x\"}"),
                ClientApi::OpenAI,
                "m"
            )
            .err()
            .expect("a body without output is refused")
            .class,
        FailureClass::ServerError
    );
}
