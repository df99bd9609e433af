//! Requests the sidecar refuses itself (docs/architecture.md): malformed or misshapen
//! bodies (400), unknown models (404), oversized bodies (413), unknown paths (404) and wrong
//! methods (405). Each answer is an OpenAI-format error, no provider is contacted, and the
//! sidecar keeps serving afterwards.

use std::time::Duration;

use serde_json::Value;
use switchyard_tests::{Harness, MockProvider, Reply, pool, route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn served(max_body_bytes: Option<usize>) -> (Harness, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "m")], "", "") + &route("r", "chat", &[("a", "m")], "");
    let h = match max_body_bytes {
        Some(n) => Harness::start_with(&yaml, |c| c.max_body_bytes = n).await,
        None => Harness::start(&yaml).await,
    };
    (h, a)
}

/// An OpenAI-format error with `status`; returns its `error` object.
fn assert_openai_error(reply: &Reply, status: u16, what: &str) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        reply.header("content-type").starts_with("application/json"),
        "{what}"
    );
    let error = reply.json()["error"].clone();
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {error}"
    );
    assert!(error["type"].is_string(), "{what}: {error}");
    assert!(error.get("code").is_some(), "{what}: {error}");
    error
}

async fn assert_still_serves(h: &Harness, after: &str) {
    let reply = h.chat("chat", "still there?").await;
    assert_eq!(reply.status, 200, "after {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misshapen_bodies_get_400_naming_the_problem() {
    let (h, a) = served(None).await;
    let cases: [(&str, &str, &str); 14] = [
        ("malformed JSON", "{\"model\": \"chat\", ", "not valid JSON"),
        ("empty body", "", "not valid JSON"),
        ("an array", "[]", "JSON object"),
        ("a string", "\"chat\"", "JSON object"),
        (
            "missing model",
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            "model",
        ),
        (
            "model not a string",
            r#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#,
            "model",
        ),
        ("missing messages", r#"{"model":"chat"}"#, "messages"),
        (
            "empty messages",
            r#"{"model":"chat","messages":[]}"#,
            "messages",
        ),
        (
            "messages not an array",
            r#"{"model":"chat","messages":{}}"#,
            "messages",
        ),
        (
            "unknown role",
            r#"{"model":"chat","messages":[{"role":"wizard","content":"x"}]}"#,
            "wizard",
        ),
        (
            "message without a role",
            r#"{"model":"chat","messages":[{"content":"x"}]}"#,
            "role",
        ),
        (
            "stream not a boolean",
            r#"{"model":"chat","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            "stream",
        ),
        (
            "stream a number",
            r#"{"model":"chat","messages":[{"role":"user","content":"x"}],"stream":1}"#,
            "stream",
        ),
        (
            "a second bad role",
            r#"{"model":"chat","messages":[{"role":"user","content":"x"},{"role":"robot"}]}"#,
            "messages[1]",
        ),
    ];
    for (what, body, mentions) in cases {
        let reply = h.post_raw("/v1/chat/completions", body.to_string()).await;
        let error = assert_openai_error(&reply, 400, what);
        assert_eq!(error["type"], "invalid_request_error", "{what}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(mentions),
            "{what}: {message:?} lacks {mentions:?}"
        );
        assert_still_serves(&h, what).await;
    }
    let cases = cases.len();
    assert_eq!(
        a.request_count(),
        cases,
        "only the good requests reached the provider"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_gets_404_model_not_found() {
    let (h, a) = served(None).await;

    let reply = h.chat("no-such-model", "hi").await;

    let error = assert_openai_error(&reply, 404, "unknown model");
    assert_eq!(error["code"], "model_not_found");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("no-such-model"), "{message}");
    assert!(message.contains("chat"), "names what is served: {message}");
    assert_eq!(a.request_count(), 0);
    assert_still_serves(&h, "an unknown model").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_unknown_model_name_is_not_echoed_whole() {
    let (h, a) = served(None).await;

    let huge = "m".repeat(1024 * 1024);
    let reply = h.chat(&huge, "hi").await;

    let error = assert_openai_error(&reply, 404, "unknown model");
    let message = error["message"].as_str().unwrap();
    assert!(message.len() < 1024, "{} bytes echoed", message.len());
    assert!(message.contains("(1048576 bytes)"), "says how long it was");
    assert_eq!(a.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_bytes_gets_413() {
    let (h, a) = served(Some(1024)).await;
    let big = switchyard_tests::chat("chat", &"x".repeat(2000));

    let reply = h.post("/v1/chat/completions", &big).await;

    let error = assert_openai_error(&reply, 413, "oversized body");
    assert!(
        error["message"].as_str().unwrap().contains("1024"),
        "{error}"
    );
    assert_eq!(a.request_count(), 0);
    assert_still_serves(&h, "an oversized body").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_exactly_max_body_bytes_is_accepted() {
    let (h, _a) = served(Some(1024)).await;
    let empty = switchyard_tests::chat("chat", "").to_string();
    let body = switchyard_tests::chat("chat", &"y".repeat(1024 - empty.len())).to_string();
    assert_eq!(body.len(), 1024);

    let reply = h.post_raw("/v1/chat/completions", body).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_max_body_bytes_gets_413() {
    let (h, a) = served(Some(1024)).await;
    let body = switchyard_tests::chat("chat", &"z".repeat(3000)).to_string();

    // No Content-Length: the limit must hold while reading, not only on the declared size.
    let mut request = String::from(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for piece in body.as_bytes().chunks(500) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            String::from_utf8_lossy(piece)
        ));
    }
    request.push_str("0\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(h.sidecar.data_addr)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("bounded")
        .expect("read");

    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(a.request_count(), 0);
    assert_still_serves(&h, "an oversized chunked body").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_404() {
    let (h, a) = served(None).await;

    for path in [
        "/v1/completions",
        "/v2/chat/completions",
        "/",
        "/v1/chat/completions/x",
    ] {
        let reply = h.post(path, &switchyard_tests::chat("chat", "hi")).await;
        assert_openai_error(&reply, 404, path);
    }
    let reply = h.get(&format!("{}/nope", h.base())).await;
    assert_openai_error(&reply, 404, "GET /nope");
    assert_eq!(a.request_count(), 0);
    assert_still_serves(&h, "unknown paths").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405() {
    let (h, a) = served(None).await;

    let get = h.get(&format!("{}/v1/chat/completions", h.base())).await;
    assert_openai_error(&get, 405, "GET /v1/chat/completions");
    let post = h.post("/v1/models", &serde_json::json!({})).await;
    assert_openai_error(&post, 405, "POST /v1/models");

    assert_eq!(a.request_count(), 0);
    assert_still_serves(&h, "wrong methods").await;
    h.stop().await;
}
