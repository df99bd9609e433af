use super::*;
use crate::testing::{self, body_of, parse, read, read_until_idle};
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use hyper::body::Incoming;

const KEY: &[(&str, &str)] = &[("x-goog-api-key", "AIza-test")];
const GENERATE: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const STREAM: &str = "/v1beta/models/gemini-2.0-flash:streamGenerateContent";
const SSE: &str = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse";

/// 35 characters of user text and 9 of system text: 11 + 4 estimated prompt tokens.
fn base() -> Value {
    json!({
        "contents": [{"role": "user", "parts": [{"text": "Say hello to the simulated provider"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.2},
    })
}

async fn post(p: &MockProvider, path: &str, body: Value) -> Response<Incoming> {
    let reply = testing::send(p.addr(), Method::POST, path, KEY, Some(body)).await;
    reply.expect("response")
}

/// The `GenerateContentResponse` of each SSE event, checking Google's `\r\n\r\n` framing.
fn sse_chunks(body: &str) -> Vec<Value> {
    assert!(body.is_empty() || body.ends_with("\r\n\r\n"), "{body:?}");
    let events = body.split_terminator("\r\n\r\n");
    events
        .map(|e| parse(e.strip_prefix("data: ").expect("data event")))
        .collect()
}

fn text_of(chunks: &[Value]) -> String {
    let parts = chunks
        .iter()
        .map(|c| &c["candidates"][0]["content"]["parts"][0]["text"]);
    parts.filter_map(Value::as_str).collect()
}

#[tokio::test]
async fn json_answer_has_gemini_shape_and_usage() {
    let p = MockProvider::start("gemini").await.unwrap();
    assert_eq!(p.base_url(), format!("http://{}/v1beta", p.addr()));
    p.set_behavior(Behavior {
        reply: "one two  three".into(),
        ..Default::default()
    });
    let (status, content_type, body) = read(post(&p, GENERATE, base()).await, CONTENT_TYPE).await;
    assert_eq!((status, content_type.as_str()), (200, JSON));
    let body = parse(&body);
    let candidate = &body["candidates"][0];
    let content = json!({"role": "model", "parts": [{"text": "one two  three"}]});
    assert_eq!(candidate["content"], content);
    assert_eq!(
        (&candidate["finishReason"], &candidate["index"]),
        (&json!("STOP"), &json!(0))
    );
    let usage = json!({"promptTokenCount": 15, "candidatesTokenCount": 3, "totalTokenCount": 18});
    assert_eq!(
        body["usageMetadata"], usage,
        "no cachedContentTokenCount without a cache hit"
    );
    assert_eq!(body["modelVersion"], "gemini-2.0-flash");
    assert!(body["responseId"].is_string());

    p.set_behavior(Behavior {
        cached_tokens: 5,
        ..Default::default()
    });
    let body = parse(&body_of(post(&p, GENERATE, base()).await).await);
    let usage = &body["usageMetadata"];
    assert_eq!(
        usage["promptTokenCount"], 15,
        "the prompt count includes the cached tokens"
    );
    assert_eq!(usage["cachedContentTokenCount"], 5);

    let recorded = p.last_request().unwrap();
    assert_eq!(recorded.header("x-goog-api-key"), Some("AIza-test"));
    assert_eq!(
        (recorded.model(), recorded.is_stream()),
        (Some("gemini-2.0-flash"), false)
    );
}

#[tokio::test]
async fn streams_frame_chunks_as_google_does_and_finish_in_the_last() {
    let p = MockProvider::start("gemini").await.unwrap();
    let reply = "  Hello,\nstreaming   world ";
    p.set_behavior(Behavior {
        reply: reply.into(),
        ..Default::default()
    });
    let (_, content_type, body) = read(post(&p, SSE, base()).await, CONTENT_TYPE).await;
    assert_eq!(content_type, EVENT_STREAM);
    assert!(!body.contains("[DONE]"));
    let chunks = sse_chunks(&body);
    assert_eq!(chunks.len(), 3);
    assert_eq!(text_of(&chunks), reply);
    for chunk in &chunks[..2] {
        assert!(chunk["candidates"][0].get("finishReason").is_none());
        let usage = json!({"promptTokenCount": 15, "totalTokenCount": 15});
        assert_eq!(
            chunk["usageMetadata"], usage,
            "only the prompt is counted so far"
        );
    }
    assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(chunks[2]["usageMetadata"]["candidatesTokenCount"], 3);
    let recorded = p.last_request().unwrap();
    assert_eq!(
        (recorded.query.as_deref(), recorded.is_stream()),
        (Some("alt=sse"), true)
    );

    // Without `alt=sse`, the same chunks arrive as one JSON array.
    let (_, content_type, body) = read(post(&p, STREAM, base()).await, CONTENT_TYPE).await;
    assert_eq!(content_type, JSON);
    let array = parse(&body);
    assert_eq!(text_of(array.as_array().unwrap()), reply);
}

#[tokio::test]
async fn function_declarations_get_a_function_call_until_a_response_comes_back() {
    let p = MockProvider::start("gemini").await.unwrap();
    let schema = json!({"type": "object", "properties": {"location": {"type": "string"}}});
    let mut request = base();
    request["tools"] = json!([
        {"googleSearch": {}},
        {"functionDeclarations": [{"name": "get_weather", "parameters": schema}]},
    ]);
    let body = parse(&body_of(post(&p, GENERATE, request.clone()).await).await);
    let candidate = &body["candidates"][0];
    let call = json!({"name": "get_weather", "args": {"location": "Paris"}});
    assert_eq!(
        candidate["content"]["parts"],
        json!([{"functionCall": call}])
    );
    assert_eq!(candidate["finishReason"], "STOP");

    // Streamed, the call comes whole in one final chunk.
    let chunks = sse_chunks(&body_of(post(&p, SSE, request.clone()).await).await);
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["functionCall"],
        call
    );

    // snake_case field names work too, and a schema without `location` gets `{}`.
    let declaration = json!({"name": "get_time", "parametersJsonSchema": {"type": "object"}});
    request["tools"] = json!([{"function_declarations": [declaration]}]);
    let body = parse(&body_of(post(&p, GENERATE, request.clone()).await).await);
    let part = &body["candidates"][0]["content"]["parts"][0];
    assert_eq!(
        part["functionCall"],
        json!({"name": "get_time", "args": {}})
    );

    // Once the function's response is back, the model answers in text.
    let response = json!({"functionResponse": {"name": "get_time", "response": {"time": "9"}}});
    let contents = request["contents"].as_array_mut().unwrap();
    contents.push(json!({"role": "model", "parts": [part]}));
    contents.push(json!({"role": "user", "parts": [response]}));
    let body = parse(&body_of(post(&p, GENERATE, request).await).await);
    assert!(body["candidates"][0]["content"]["parts"][0]["text"].is_string());
}

#[tokio::test]
async fn invalid_requests_are_rejected_as_google_would() {
    let p = MockProvider::start("gemini").await.unwrap();
    let contents = |content: Value| json!({"contents": [content]});
    let text = json!([{"text": "hi"}]);
    let cases = [
        (json!({}), "contents is not specified"),
        (json!({"contents": []}), "contents is not specified"),
        (
            contents(json!({"role": "assistant", "parts": text})),
            "Please use a valid role",
        ),
        (
            contents(json!({"role": "system", "parts": text})),
            "Please use a valid role",
        ),
        (
            contents(json!({"role": "user", "parts": []})),
            "contents[0].parts",
        ),
        (
            contents(json!({"role": "user", "content": "hi"})),
            "Unknown name \"content\" at 'contents[0]'",
        ),
        (
            contents(json!({"parts": [{"type": "text", "text": "hi"}]})),
            "Unknown name \"type\" at 'contents[0].parts[0]'",
        ),
        (
            json!({"contents": [{"parts": text}], "messages": []}),
            "Unknown name \"messages\": Cannot find field.",
        ),
        (
            json!({"contents": [{"parts": text}], "generationConfig": {"max_tokens": 5}}),
            "Unknown name \"max_tokens\" at 'generation_config'",
        ),
        (
            json!({"contents": [{"parts": text}], "systemInstruction": "Be brief."}),
            "Invalid value at 'system_instruction'",
        ),
    ];
    for (body, message) in cases {
        let (status, _, text) = read(post(&p, GENERATE, body).await, CONTENT_TYPE).await;
        let error = &parse(&text)["error"];
        assert_eq!((status, &error["code"]), (400, &json!(400)), "{message}");
        assert_eq!(error["status"], INVALID);
        let got = error["message"].as_str().unwrap();
        assert!(got.contains(message), "{got:?} should contain {message:?}");
    }
    let not_json = testing::send(p.addr(), Method::POST, GENERATE, KEY, None).await;
    assert_eq!(not_json.unwrap().status(), 400);

    // Google's parser takes proto snake_case names as well, and a role may be left out.
    let snake = json!({
        "contents": [{"parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "generation_config": {"max_output_tokens": 5},
    });
    assert_eq!(post(&p, GENERATE, snake).await.status(), 200);
}

#[tokio::test]
async fn error_faults_answer_with_google_bodies() {
    let p = MockProvider::start("gemini").await.unwrap();
    let rate_limited = Fault::RateLimited {
        retry_delay: Some(Duration::from_secs(7)),
    };
    let cases = [
        (rate_limited, 429, "RESOURCE_EXHAUSTED"),
        (Fault::Overloaded, 503, "UNAVAILABLE"),
        (Fault::ServerError, 500, "INTERNAL"),
        (Fault::Unauthorized, 400, INVALID),
        (Fault::Forbidden, 403, "PERMISSION_DENIED"),
        (Fault::ContextLength, 400, INVALID),
        (Fault::BadRequest, 400, INVALID),
    ];
    p.push_faults(cases.iter().map(|case| case.0.clone()));
    for (fault, status, google_status) in cases {
        let (got, _, body) = read(post(&p, SSE, base()).await, CONTENT_TYPE).await;
        assert_eq!(got, status, "{fault:?}");
        let error = &parse(&body)["error"];
        assert_eq!(
            (&error["code"], &error["status"]),
            (&json!(status), &json!(google_status))
        );
        let message = error["message"].as_str().unwrap();
        match fault {
            Fault::RateLimited { .. } => {
                assert_eq!(message, "Resource has been exhausted (e.g. check quota).");
                assert_eq!(error["details"][0]["retryDelay"], "7s");
            }
            Fault::Unauthorized => {
                assert_eq!(message, "API key not valid. Please pass a valid API key.");
                assert_eq!(error["details"][0]["reason"], "API_KEY_INVALID");
            }
            Fault::Overloaded => assert_eq!(message, OVERLOADED),
            Fault::ContextLength => assert!(message.starts_with("The input token count")),
            _ => assert!(!message.is_empty()),
        }
    }

    let raw = Fault::Status {
        status: 418,
        body: "teapot".into(),
        headers: Vec::new(),
    };
    p.push_faults([raw, Fault::Garbage]);
    let raw = read(post(&p, GENERATE, base()).await, CONTENT_TYPE).await;
    assert_eq!(raw, (418, "application/json".into(), "teapot".into()));
    let body = body_of(post(&p, GENERATE, base()).await).await;
    assert!(serde_json::from_str::<Value>(&body).is_err(), "garbage");

    let path = "/v1beta/models/gemini-2.0-flash:countTokens";
    let response = testing::send(p.addr(), Method::POST, path, KEY, Some(base())).await;
    let (status, _, body) = read(response.unwrap(), CONTENT_TYPE).await;
    assert_eq!(
        (status, &parse(&body)["error"]["status"]),
        (404, &json!("NOT_FOUND"))
    );
    assert_eq!(
        p.request_count(),
        9,
        "only generation requests are recorded"
    );
}

#[tokio::test]
async fn broken_streams_end_as_scripted() {
    let p = MockProvider::start("gemini").await.unwrap();
    // The default reply has five words; the last chunk finishes, so four are content chunks.
    p.push_faults([
        Fault::StallMidStream { after_chunks: 2 },
        Fault::TruncateStream {
            after_chunks: usize::MAX,
        },
        Fault::AbortMidStream { after_chunks: 1 },
        Fault::StallMidStream { after_chunks: 1 },
        Fault::TruncateStream { after_chunks: 1 },
    ]);
    let (body, ended) = read_until_idle(post(&p, SSE, base()).await).await;
    assert_eq!((sse_chunks(&body).len(), ended), (2, false), "stall");

    let (body, ended) = read_until_idle(post(&p, SSE, base()).await).await;
    let chunks = sse_chunks(&body);
    assert_eq!((chunks.len(), ended), (4, true), "truncate");
    assert!(!body.contains("finishReason"));

    let mut body = post(&p, SSE, base()).await.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    assert!(
        body.frame().await.unwrap().is_err(),
        "abort is a transport error"
    );

    let response = post(&p, GENERATE, base()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(read_until_idle(response).await, (String::new(), false));
    let body = post(&p, GENERATE, base()).await.into_body();
    assert!(body.collect().await.is_err(), "cut off mid-body");
}

#[test]
fn a_batch_of_more_than_a_hundred_embeddings_is_refused() {
    let request = |n: usize| {
        let one = json!({"model": "models/e", "content": {"parts": [{"text": "t"}]}});
        json!({"requests": vec![one; n]})
    };
    assert_eq!(validate::check_batch(&request(100), "e"), Ok(()));
    let refused = validate::check_batch(&request(101), "e").expect_err("over the limit");
    assert!(refused.contains("at most 100 requests"), "{refused}");
}
