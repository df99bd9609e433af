//! `api: Bedrock` end to end (docs/reference/providers.md): the real sidecar in front of the
//! simulated Bedrock runtime, which checks every request's SigV4 signature with `aws-sigv4` and
//! validates its Converse body, and answers in Converse's wire format (ConverseStream as binary
//! event-stream frames). Static keys come from a Secret; web identity keys from the simulated
//! STS with a token file. OpenAI and Anthropic clients, streamed and not, tool use, and
//! failover on Bedrock's real error shapes (a wrong key's 403 `InvalidSignatureException`,
//! throttling as a 429 and as an exception frame inside the stream), `ValidationException`s told
//! to the client in its format, a guardrail stopping the answer before any content as
//! `ContentFiltered` (after some content: `content_filter`), and a Responses API client on the
//! chat hub.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::bedrock::{self, ACCESS_KEY_ID, Fault, REGION, SECRET_ACCESS_KEY, sts};
use switchyard_tests::{Behavior, Harness, MockProvider, Reply, route};

const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const REPLY: &str = "Bonjour from Bedrock";

/// How provider `a` authenticates.
enum Auth<'a> {
    /// Static keys in Secret `aws-a`, with this secret access key.
    Keys(&'a str),
    /// Web identity: the role, this token file, this STS.
    WebIdentity {
        token_file: &'a str,
        sts_url: &'a str,
    },
}

/// Pool `pool`: Bedrock provider `a` at `url` serving [`MODEL`], and OpenAI provider `b` at
/// `b_url` serving `m-b`; route `r` for model `chat` tries `a` first.
fn manifests(url: &str, auth: Auth<'_>, b_url: &str) -> String {
    let (aws, secret) = match auth {
        Auth::Keys(secret) => (
            "{credentialsSecretRef: {name: aws-a}}".to_string(),
            format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: aws-a}}\nstringData:\n  accessKeyId: {ACCESS_KEY_ID}\n  secretAccessKey: \"{secret}\"\n"
            ),
        ),
        Auth::WebIdentity {
            token_file,
            sts_url,
        } => (
            format!(
                "{{roleArn: \"arn:aws:iam::123456789012:role/switchyard\", webIdentityTokenFile: \"{token_file}\", stsUrl: \"{sts_url}\"}}"
            ),
            String::new(),
        ),
    };
    format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: pool}}
spec:
  providers:
    - name: a
      api: Bedrock
      baseUrl: {url}
      region: {REGION}
      aws: {aws}
      models:
        - {{name: \"{MODEL}\", inputPerMillion: \"1\", outputPerMillion: \"5\"}}
    - name: b
      api: OpenAI
      baseUrl: {b_url}
      apiKey: {{secretKeyRef: {{name: keys, key: b}}}}
      models:
        - {{name: m-b, inputPerMillion: \"1\", outputPerMillion: \"1\"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{b: sk-b-secret}}
{secret}"
    ) + &route(
        "r",
        "chat",
        &[("a", &format!("\"{MODEL}\"")), ("b", "m-b")],
        "",
    )
}

struct Setup {
    h: Harness,
    a: bedrock::MockProvider,
    b: MockProvider,
}

async fn start(secret: &str) -> Setup {
    let a = bedrock::MockProvider::start("a")
        .await
        .expect("bedrock sim");
    let b = MockProvider::start("b").await.expect("mock b");
    for behavior in [&a as &dyn SetBehavior, &b] {
        behavior.reply(REPLY);
    }
    let h = Harness::start(&manifests(&a.base_url(), Auth::Keys(secret), &b.base_url())).await;
    Setup { h, a, b }
}

trait SetBehavior {
    fn reply(&self, reply: &str);
}

impl SetBehavior for bedrock::MockProvider {
    fn reply(&self, reply: &str) {
        self.set_behavior(Behavior {
            reply: reply.into(),
            cached_tokens: 3,
            ..Behavior::default()
        });
    }
}

impl SetBehavior for MockProvider {
    fn reply(&self, reply: &str) {
        self.set_behavior(Behavior {
            reply: reply.into(),
            ..Behavior::default()
        });
    }
}

async fn post(h: &Harness, path: &str, body: &Value) -> Reply {
    let headers = [
        ("anthropic-version", "2023-06-01"),
        ("authorization", "Bearer client-key"),
    ];
    tokio::time::timeout(Duration::from_secs(20), h.post_with(path, body, &headers))
        .await
        .expect("bounded")
}

fn ok(reply: &Reply) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

fn openai(stream: bool) -> Value {
    json!({"model": "chat", "stream": stream, "max_tokens": 100, "temperature": 0.5,
           "stream_options": {"include_usage": true},
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Say hello"}]})
}

/// The text of a streamed OpenAI answer, and its usage chunk.
fn streamed_text(reply: &Reply) -> (String, Value) {
    let mut text = String::new();
    let mut usage = Value::Null;
    for data in reply.events() {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).expect("JSON chunk");
        if let Some(t) = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            text.push_str(t);
        }
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
    }
    (text, usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_get_signed_converse_stream_answers_streamed_and_not() {
    let s = start(SECRET_ACCESS_KEY).await;

    let reply = post(&s.h, "/v1/chat/completions", &openai(false)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // Converse answers name no model: the target's model id is the answer's.
    assert_eq!(body["model"], "anthropic.claude-3-5-haiku-20241022-v1:0");
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{body}"
    );

    let seen = s.a.last_request().expect("called");
    // Every request streams upstream; the model id is one escaped path segment.
    assert_eq!(
        seen.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );
    let auth = seen.header("authorization").expect("signed");
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")),
        "{auth}"
    );
    assert!(
        auth.contains(&format!("/{REGION}/bedrock/aws4_request")),
        "{auth}"
    );
    assert!(!auth.contains("client-key"));
    assert_eq!(
        seen.header("accept"),
        Some("application/vnd.amazon.eventstream")
    );
    assert_eq!(seen.body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        seen.body["inferenceConfig"],
        json!({"maxTokens": 100, "temperature": 0.5})
    );

    let reply = post(&s.h, "/v1/chat/completions", &openai(true)).await;
    ok(&reply);
    let (text, usage) = streamed_text(&reply);
    assert_eq!(text, REPLY);
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 3,
        "{usage}"
    );
    assert_eq!(reply.events().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(s.b.request_count(), 0);
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_clients_get_anthropic_answers_streamed_and_not() {
    let s = start(SECRET_ACCESS_KEY).await;
    let request = |stream: bool| {
        json!({"model": "chat", "max_tokens": 64, "stream": stream, "system": "be brief",
               "messages": [{"role": "user", "content": "hello"}]})
    };

    let reply = post(&s.h, "/v1/messages", &request(false)).await;
    ok(&reply);
    let body = reply.json();
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["content"][0]["text"], REPLY);
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["cache_read_input_tokens"], 3, "{body}");

    let reply = post(&s.h, "/v1/messages", &request(true)).await;
    ok(&reply);
    let text: String = reply
        .events()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| {
            e.pointer("/delta/text")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, REPLY);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(body.contains("event: message_stop"), "{body}");
    assert_eq!(s.a.request_count(), 2);
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_round_trip_through_tool_use_and_tool_result_blocks() {
    let s = start(SECRET_ACCESS_KEY).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "required": ["location"]}}}]);
    let first = json!({"model": "chat", "tools": tools, "tool_choice": "required",
                       "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let reply = post(&s.h, "/v1/chat/completions", &first).await;
    ok(&reply);
    let body = reply.json();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{body}");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"location": "Paris"}));
    let sent = s.a.last_request().unwrap().body;
    assert_eq!(sent["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
        json!(["location"])
    );

    // The answer goes back as a toolResult block; the simulator checks it pairs with the use.
    let second = json!({"model": "chat", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
    ]});
    let reply = post(&s.h, "/v1/chat/completions", &second).await;
    ok(&reply);
    assert_eq!(reply.json()["choices"][0]["message"]["content"], REPLY);
    let sent = s.a.last_request().unwrap().body;
    let result = &sent["messages"][2]["content"][0]["toolResult"];
    assert_eq!(result["toolUseId"], call["id"]);
    assert_eq!(result["content"], json!([{"text": "18C and sunny"}]));
    assert_eq!(s.b.request_count(), 0);
    s.h.stop().await;
}

/// `b` answered after `a` failed with `class`.
async fn assert_failed_over(s: &Setup, reply: &Reply, class: &str) {
    ok(reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    let failovers = [("route", "r"), ("provider", "pool/a"), ("reason", class)];
    assert_eq!(
        s.h.count("switchyard_failovers_total", &failovers).await,
        1.0,
        "{class}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_is_refused_by_the_signature_check_and_fails_over() {
    let s = start("wrong/secret/key/0000000000000000000000000").await;
    let reply = post(&s.h, "/v1/chat/completions", &openai(false)).await;
    assert_failed_over(&s, &reply, "AuthError").await;
    assert_eq!(
        s.a.request_count(),
        1,
        "the simulated Bedrock saw the badly signed request"
    );
    let text = String::from_utf8_lossy(&reply.body);
    assert!(!text.contains("wrong/secret"), "no key in answers");
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_fails_over_as_a_429_and_as_an_exception_inside_the_stream() {
    let s = start(SECRET_ACCESS_KEY).await;
    s.a.push_faults([Fault::Throttling]);
    let reply = post(&s.h, "/v1/chat/completions", &openai(false)).await;
    assert_failed_over(&s, &reply, "RateLimited").await;

    s.h.stop().await;

    // A `throttlingException` frame before any content: nothing was committed, so fail over.
    // (A fresh sidecar: the 429 above keeps `a` cooling down.)
    let s = start(SECRET_ACCESS_KEY).await;
    s.a.push_faults([Fault::ThrottledMidStream { after_chunks: 0 }]);
    let reply = post(&s.h, "/v1/chat/completions", &openai(true)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(s.a.request_count(), 1);
    let (text, _) = streamed_text(&reply);
    assert_eq!(text, REPLY, "b's answer, whole");
    let failovers = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("reason", "RateLimited"),
    ];
    assert_eq!(
        s.h.count("switchyard_failovers_total", &failovers).await,
        1.0
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_stream_error_after_content_ends_the_openai_stream_with_an_error() {
    let s = start(SECRET_ACCESS_KEY).await;
    s.a.push_faults([Fault::ErrorMidStream { after_chunks: 3 }]);
    let reply = post(&s.h, "/v1/chat/completions", &openai(true)).await;
    ok(&reply);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(
        body.contains("\"error\""),
        "the stream ends with an error: {body}"
    );
    assert!(!body.contains("[DONE]"), "{body}");
    assert_eq!(
        s.b.request_count(),
        0,
        "committed streams are not failed over"
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_keys_come_from_sts_and_sign_the_requests() {
    let a = bedrock::MockProvider::start("a")
        .await
        .expect("bedrock sim");
    a.reply(REPLY);
    let b = MockProvider::start("b").await.expect("mock b");
    let sts = sts::MockSts::start("sts").await.expect("sts sim");
    let dir = std::env::temp_dir().join(format!("switchyard-bedrock-wi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, sts::WEB_IDENTITY_TOKEN).unwrap();
    let auth = Auth::WebIdentity {
        token_file: token_file.to_str().unwrap(),
        sts_url: &sts.base_url(),
    };
    let h = Harness::start(&manifests(&a.base_url(), auth, &b.base_url())).await;

    for stream in [false, true, false] {
        let reply = post(&h, "/v1/chat/completions", &openai(stream)).await;
        ok(&reply);
        assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    }
    // One STS call: the keys are cached until shortly before they expire.
    assert_eq!(sts.request_count(), 1);
    let form = String::from_utf8_lossy(&sts.last_request().unwrap().raw).into_owned();
    assert!(form.contains("Action=AssumeRoleWithWebIdentity"), "{form}");
    assert!(
        form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fswitchyard"),
        "{form}"
    );
    let seen = a.last_request().unwrap();
    let auth = seen.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=ASIA"),
        "{auth}"
    );
    assert!(seen.header("x-amz-security-token").is_some());
    h.stop().await;

    // A token STS refuses: an AuthError, failed over to `b`, and the token never shows.
    let sts = sts::MockSts::start("sts").await.expect("sts sim");
    std::fs::write(&token_file, "not-the-token").unwrap();
    let auth = Auth::WebIdentity {
        token_file: token_file.to_str().unwrap(),
        sts_url: &sts.base_url(),
    };
    let h = Harness::start(&manifests(&a.base_url(), auth, &b.base_url())).await;
    let reply = post(&h, "/v1/chat/completions", &openai(false)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    let failovers = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("reason", "AuthError"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_reach_the_client_in_its_own_format_without_failover() {
    let s = start(SECRET_ACCESS_KEY).await;
    s.a.push_faults([Fault::BadRequest]);
    let reply = post(&s.h, "/v1/chat/completions", &openai(false)).await;
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(s.b.request_count(), 0, "a ClientError is not failed over");

    // Too long for this model: the client hears it in Anthropic's shape (`b` has no larger
    // context window to move to).
    s.a.push_faults([Fault::ContextLength]);
    let anthropic = json!({"model": "chat", "max_tokens": 64,
                           "messages": [{"role": "user", "content": "hello"}]});
    let reply = post(&s.h, "/v1/messages", &anthropic).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ContextLengthExceeded") && message.contains("Input is too long"),
        "{message}"
    );
    assert_eq!(s.b.request_count(), 0);
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_clients_ride_on_the_chat_hub() {
    let s = start(SECRET_ACCESS_KEY).await;
    let body = json!({"model": "chat", "instructions": "Be brief.", "input": "Say hello"});
    let reply = post(&s.h, "/v1/responses", &body).await;
    ok(&reply);
    let answer = reply.json();
    assert_eq!(answer["object"], "response", "{answer}");
    assert_eq!(answer["status"], "completed", "{answer}");
    assert_eq!(answer["output"][0]["content"][0]["text"], REPLY, "{answer}");
    let sent = s.a.last_request().unwrap().body;
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    s.h.stop().await;
}

/// A guardrail stopping the answer before any content is `ContentFiltered`: with failover on
/// that class the route moves on to `b`, streamed or not, and nothing of `a`'s answer is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_before_any_content_fails_over_when_content_filtered_is_listed() {
    let a = bedrock::MockProvider::start("a")
        .await
        .expect("bedrock sim");
    let b = MockProvider::start("b").await.expect("mock b");
    b.reply(REPLY);
    // The route is the last document: a line here is one more field of its spec.
    let yaml = manifests(&a.base_url(), Auth::Keys(SECRET_ACCESS_KEY), &b.base_url())
        + "  failover: {on: [ContentFiltered]}\n";
    let h = Harness::start(&yaml).await;
    a.push_faults([
        Fault::GuardrailIntervened { after_words: 0 },
        Fault::GuardrailIntervened { after_words: 0 },
    ]);
    let s = Setup { h, a, b };

    let reply = post(&s.h, "/v1/chat/completions", &openai(true)).await;
    assert_failed_over(&s, &reply, "ContentFiltered").await;
    let (text, _) = streamed_text(&reply);
    assert_eq!(text, REPLY, "b's answer, whole");
    assert!(
        !reply.events().iter().any(|e| e.contains("content_filter")),
        "nothing of a's stopped answer is left"
    );

    let reply = post(&s.h, "/v1/chat/completions", &openai(false)).await;
    ok(&reply);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(reply.json()["choices"][0]["message"]["content"], REPLY);
    assert_eq!((s.a.request_count(), s.b.request_count()), (2, 2));
    s.h.stop().await;
}

/// Without failover on `ContentFiltered`, the client gets the class's error in its own format;
/// a guardrail after some content leaves that content and `content_filter` (`refusal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_is_content_filtered_before_content_and_a_finish_reason_after() {
    let s = start(SECRET_ACCESS_KEY).await;
    s.a.push_faults([
        Fault::GuardrailIntervened { after_words: 0 },
        Fault::GuardrailIntervened { after_words: 0 },
        Fault::GuardrailIntervened { after_words: 0 },
    ]);
    for stream in [true, false] {
        let reply = post(&s.h, "/v1/chat/completions", &openai(stream)).await;
        reply.assert_openai_error(400, "content_filter", "Bedrock guardrail intervened");
    }
    let anthropic = json!({"model": "chat", "max_tokens": 100, "stream": true,
                           "messages": [{"role": "user", "content": "Say hello"}]});
    let reply = post(&s.h, "/v1/messages", &anthropic).await;
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(s.b.request_count(), 0, "not failed over by default");
    let filtered = [
        ("route", "r"),
        ("provider", "pool/a"),
        ("outcome", "ContentFiltered"),
    ];
    assert_eq!(s.h.count("switchyard_requests_total", &filtered).await, 3.0);

    s.a.push_faults([
        Fault::GuardrailIntervened { after_words: 2 },
        Fault::GuardrailIntervened { after_words: 2 },
        Fault::GuardrailIntervened { after_words: 2 },
    ]);
    let said = "Hello from";
    let reply = post(&s.h, "/v1/chat/completions", &openai(true)).await;
    ok(&reply);
    let (text, _) = streamed_text(&reply);
    assert_eq!(text, said);
    assert!(
        reply
            .events()
            .iter()
            .any(|e| e.contains(r#""finish_reason":"content_filter""#)),
        "{:?}",
        reply.events()
    );
    let reply = post(&s.h, "/v1/chat/completions", &openai(false)).await;
    ok(&reply);
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], said, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    let anthropic = json!({"model": "chat", "max_tokens": 100,
                           "messages": [{"role": "user", "content": "Say hello"}]});
    let reply = post(&s.h, "/v1/messages", &anthropic).await;
    ok(&reply);
    let body = reply.json();
    assert_eq!(body["content"][0]["text"], said, "{body}");
    assert_eq!(body["stop_reason"], "refusal", "{body}");
    assert_eq!(s.b.request_count(), 0);
    s.h.stop().await;
}
