//! The simulated Bedrock's checks: signatures made with `aws-sigv4` as a client makes them pass,
//! and every way of getting one wrong gets AWS's answer; Converse bodies are refused as Bedrock
//! refuses them.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

use super::*;

const BODY: &str = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;

/// A Converse request signed as the sidecar signs it, then recorded as the sim records it.
fn signed(
    key_id: &str,
    secret: &str,
    token: Option<&str>,
    region: &str,
    time: SystemTime,
) -> Recorded {
    let uri = "http://127.0.0.1:4000/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    let mut request = http::Request::post(uri)
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let identity = Credentials::new(key_id, secret, token.map(str::to_owned), None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [("content-type", "application/json")];
    let signable = SignableRequest::new(
        "POST",
        uri,
        headers.into_iter(),
        SignableBody::Bytes(BODY.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut request);
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers() {
        headers.insert(name, value.clone());
    }
    headers.insert("host", "127.0.0.1:4000".parse().unwrap());
    Recorded {
        method: "POST".into(),
        path: request.uri().path().into(),
        query: None,
        headers,
        body: serde_json::from_str(BODY).unwrap(),
        raw: Bytes::from_static(BODY.as_bytes()),
    }
}

fn kind(request: &Recorded) -> Option<&'static str> {
    auth::check(request).err().map(|denied| denied.kind)
}

#[test]
fn a_request_signed_with_the_static_keys_passes() {
    let request = signed(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
        REGION,
        SystemTime::now(),
    );
    assert!(
        auth::check(&request).is_ok(),
        "{:?}",
        auth::check(&request).err()
    );
}

#[test]
fn a_wrong_secret_or_a_changed_body_does_not_match() {
    let wrong = signed(
        ACCESS_KEY_ID,
        "not-the-secret",
        None,
        REGION,
        SystemTime::now(),
    );
    assert_eq!(kind(&wrong), Some("InvalidSignatureException"));
    let mut changed = signed(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
        REGION,
        SystemTime::now(),
    );
    changed.raw = Bytes::from(BODY.replace("hi", "ho"));
    assert_eq!(kind(&changed), Some("InvalidSignatureException"));
    let mut moved = signed(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
        REGION,
        SystemTime::now(),
    );
    moved.path = "/model/other/converse".into();
    assert_eq!(kind(&moved), Some("InvalidSignatureException"));
}

#[test]
fn unknown_keys_other_regions_old_signatures_and_no_signature_are_refused() {
    let now = SystemTime::now();
    assert_eq!(
        kind(&signed(
            "AKIAUNKNOWN000000000",
            SECRET_ACCESS_KEY,
            None,
            REGION,
            now
        )),
        Some("UnrecognizedClientException")
    );
    let elsewhere = signed(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, "eu-west-1", now);
    assert_eq!(kind(&elsewhere), Some("InvalidSignatureException"));
    let old = now - std::time::Duration::from_secs(600);
    assert_eq!(
        kind(&signed(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, REGION, old)),
        Some("InvalidSignatureException")
    );
    let mut unsigned = signed(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, REGION, now);
    unsigned.headers.remove("authorization");
    assert_eq!(kind(&unsigned), Some("MissingAuthenticationTokenException"));
}

#[test]
fn sts_keys_pass_with_their_session_token_only() {
    let now = SystemTime::now();
    let expires = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 900;
    let (key_id, secret, token) = auth::issue(expires);
    assert!(auth::check(&signed(&key_id, &secret, Some(&token), REGION, now)).is_ok());
    assert_eq!(
        kind(&signed(&key_id, &secret, None, REGION, now)),
        Some("UnrecognizedClientException")
    );
    let (_, _, other_token) = auth::issue(expires);
    assert_eq!(
        kind(&signed(&key_id, &secret, Some(&other_token), REGION, now)),
        Some("UnrecognizedClientException"),
        "a token issued for another key"
    );
    let (key_id, secret, token) = auth::issue(expires - 1_000);
    assert_eq!(
        kind(&signed(&key_id, &secret, Some(&token), REGION, now)),
        Some("ExpiredTokenException")
    );
}

#[test]
fn paths_name_the_decoded_model_and_the_operation() {
    let path = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.m-v1%3A0/converse-stream";
    assert_eq!(
        parse_path(path),
        Some(ConversePath {
            model: "arn:aws:bedrock:us-east-1:1:inference-profile/us.m-v1:0".into(),
            stream: true
        })
    );
    assert_eq!(parse_path("/model/m/invoke"), None);
    assert_eq!(
        parse_path("/model/a/b/converse"),
        None,
        "an unescaped / is another segment"
    );
    assert_eq!(parse_path("/model/%zz/converse"), None);
}

fn refusal(body: Value) -> String {
    validate::check(&body).expect_err("refused")
}

#[test]
fn converse_bodies_are_checked_as_bedrock_checks_them() {
    let user = |text: &str| json!({"role": "user", "content": [{"text": text}]});
    let assistant = |text: &str| json!({"role": "assistant", "content": [{"text": text}]});
    assert!(validate::check(&json!({"messages": [user("hi")]})).is_ok());
    assert!(refusal(json!({"messages": [assistant("hi")]})).contains("must start with a user"));
    assert!(refusal(json!({"messages": [user("a"), user("b")]})).contains("alternate"));
    assert!(refusal(json!({"messages": [user(" ")]})).contains("is blank"));
    assert!(
        refusal(json!({"messages": [user("a")], "model": "m"})).contains("extraneous key [model]")
    );
    assert!(
        refusal(json!({"messages": [user("a")], "inferenceConfig": {"maxTokens": 0}}))
            .contains("maxTokens")
    );
    assert!(
        refusal(json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.5}}))
            .contains("temperature")
    );
    let image = json!({"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AA=="}}}]});
    assert!(refusal(json!({"messages": [image]})).contains("image.format"));

    let tools = json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]});
    let call = json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]});
    let result = |id: &str| json!({"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"text": "ok"}]}}]});
    let good = json!({"messages": [user("a"), call, result("t1")], "toolConfig": tools});
    assert!(
        validate::check(&good).is_ok(),
        "{:?}",
        validate::check(&good)
    );
    let mut no_config = good.clone();
    no_config.as_object_mut().unwrap().remove("toolConfig");
    assert!(refusal(no_config).contains("toolConfig field must be defined"));
    let mut unanswered = good.clone();
    unanswered["messages"][2] = user("next");
    assert!(refusal(unanswered).contains("Expected toolResult blocks"));
    let mut stray = good;
    stray["messages"][2] = result("t9");
    assert!(refusal(stray).contains("does not match a toolUse"));
    let bad_choice = json!({"messages": [user("a")], "toolConfig": {"tools": tools["tools"], "toolChoice": {"tool": {"name": "g"}}}});
    assert!(refusal(bad_choice).contains("toolChoice"));
}
