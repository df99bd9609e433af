use super::*;
use crate::testing::{self, body_of, parse, read};
use http::header::CONTENT_TYPE;
use hyper::body::Incoming;

const KEY: &[(&str, &str)] = &[("api-key", "azure-key")];
const DEPLOYMENT_CHAT: &str = "/openai/deployments/gpt-4o-prod/chat/completions";

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "Say hello"}]})
}

async fn post_with(
    p: &MockProvider,
    path: &str,
    headers: &[(&'static str, &'static str)],
    body: Value,
) -> Response<Incoming> {
    let reply = testing::send(p.addr(), Method::POST, path, headers, Some(body)).await;
    reply.expect("response")
}

async fn post(p: &MockProvider, path: &str, body: Value) -> Response<Incoming> {
    post_with(p, path, KEY, body).await
}

/// The JSON `data:` payloads of an SSE body, `[DONE]` left out (and checked to end it).
fn events(body: &str) -> Vec<Value> {
    let mut datas: Vec<&str> = body
        .split_terminator("\n\n")
        .map(|e| e.strip_prefix("data: ").expect("data event"))
        .collect();
    assert_eq!(datas.pop(), Some("[DONE]"), "{body}");
    datas.into_iter().map(parse).collect()
}

fn text_of(chunks: &[Value]) -> String {
    let deltas = chunks.iter().map(|c| &c["choices"][0]["delta"]["content"]);
    deltas.filter_map(Value::as_str).collect()
}

#[tokio::test]
async fn v1_api_answers_openai_shape_with_filter_annotations() {
    let p = MockProvider::start("azure").await.unwrap();
    assert_eq!(p.base_url(), format!("http://{}/openai/v1", p.addr()));
    assert_eq!(p.resource_url(), format!("http://{}", p.addr()));
    let response = post(&p, V1_CHAT, chat(false)).await;
    assert!(response.headers().contains_key("apim-request-id"));
    let (status, content_type, body) = read(response, CONTENT_TYPE).await;
    assert_eq!((status, content_type.as_str()), (200, JSON));
    let body = parse(&body);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0]["message"]["content"].is_string());
    assert_eq!(
        body["choices"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    assert!(body["prompt_filter_results"][0]["content_filter_results"].is_object());
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn streams_start_with_the_prompt_filter_chunk_and_end_with_an_annotation() {
    let p = MockProvider::start("azure").await.unwrap();
    p.set_behavior(Behavior {
        reply: "Hello there friend".into(),
        ..Default::default()
    });
    let (status, content_type, body) =
        read(post(&p, V1_CHAT, chat(true)).await, CONTENT_TYPE).await;
    assert_eq!((status, content_type.as_str()), (200, EVENT_STREAM));
    let chunks = events(&body);
    // Prompt filter, role, three words, finish, trailing annotation, usage.
    assert_eq!(chunks.len(), 8, "{body}");
    let first = &chunks[0];
    assert_eq!((&first["choices"], &first["id"]), (&json!([]), &json!("")));
    assert!(first["prompt_filter_results"].is_array());
    assert_eq!(chunks[1]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(text_of(&chunks), "Hello there friend");
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    let trailing = &chunks[6]["choices"][0];
    assert_eq!(trailing["delta"], json!({}));
    assert!(trailing["content_filter_offsets"].is_object());
    assert_eq!(chunks[7]["choices"], json!([]));
    assert!(chunks[7]["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn classic_deployments_need_a_dated_api_version() {
    let p = MockProvider::start("azure").await.unwrap();
    let mut body = chat(false);
    body.as_object_mut().unwrap().remove("model");
    let path = format!("{DEPLOYMENT_CHAT}?api-version=2024-10-21");
    let answer = parse(&body_of(post(&p, &path, body.clone()).await).await);
    assert_eq!(
        answer["model"], "gpt-4o-prod",
        "the deployment names the model"
    );
    let seen = p.last_request().unwrap();
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));

    let preview = format!("{DEPLOYMENT_CHAT}?api-version=2025-01-01-preview");
    assert_eq!(post(&p, &preview, body.clone()).await.status(), 200);
    for bad in [
        DEPLOYMENT_CHAT.to_string(),
        format!("{DEPLOYMENT_CHAT}?api-version=latest"),
    ] {
        let (status, _, answer) = read(post(&p, &bad, body.clone()).await, CONTENT_TYPE).await;
        assert_eq!(status, 404, "{bad}");
        assert_eq!(parse(&answer)["error"]["message"], NOT_FOUND);
    }
    // The v1 API needs a model in the body instead.
    let (status, _, answer) = read(post(&p, V1_CHAT, body).await, CONTENT_TYPE).await;
    assert_eq!(status, 400);
    assert_eq!(parse(&answer)["error"]["param"], "model");
}

#[tokio::test]
async fn keys_go_in_api_key_only() {
    let p = MockProvider::start("azure").await.unwrap();
    let (status, _, body) =
        read(post_with(&p, V1_CHAT, &[], chat(false)).await, CONTENT_TYPE).await;
    assert_eq!(
        (status, parse(&body)["error"]["message"].as_str()),
        (401, Some(BAD_KEY))
    );
    let bearer = [("authorization", "Bearer azure-key")];
    let (status, _, body) = read(
        post_with(&p, V1_CHAT, &bearer, chat(false)).await,
        CONTENT_TYPE,
    )
    .await;
    assert_eq!(
        (status, parse(&body)["error"]["message"].as_str()),
        (401, Some(BAD_TOKEN))
    );
    let both = [("api-key", "azure-key"), ("authorization", "Bearer x")];
    assert_eq!(
        post_with(&p, V1_CHAT, &both, chat(false)).await.status(),
        401
    );
}

#[tokio::test]
async fn faults_answer_with_azures_errors() {
    let p = MockProvider::start("azure").await.unwrap();
    p.push_faults([
        Fault::PromptFiltered,
        Fault::RateLimited {
            retry_after_ms: 1500,
        },
        Fault::ContextLength,
        Fault::Unauthorized,
    ]);
    let (status, _, body) = read(post(&p, V1_CHAT, chat(true)).await, CONTENT_TYPE).await;
    let error = &parse(&body)["error"];
    assert_eq!((status, &error["code"]), (400, &json!("content_filter")));
    assert_eq!(error["innererror"]["code"], "ResponsibleAIPolicyViolation");
    assert_eq!(
        error["innererror"]["content_filter_result"]["sexual"]["filtered"],
        true
    );

    let response = post(&p, V1_CHAT, chat(true)).await;
    let headers = response.headers().clone();
    let (status, _, body) = read(response, CONTENT_TYPE).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after-ms"], "1500");
    assert_eq!(headers["retry-after"], "2", "whole seconds, rounded up");
    let message = parse(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("exceeded token rate limit"), "{message}");

    let (status, _, body) = read(post(&p, V1_CHAT, chat(false)).await, CONTENT_TYPE).await;
    assert_eq!(
        (status, &parse(&body)["error"]["code"]),
        (400, &json!("context_length_exceeded"))
    );
    assert_eq!(post(&p, V1_CHAT, chat(false)).await.status(), 401);
    assert_eq!(
        post(&p, V1_CHAT, chat(false)).await.status(),
        200,
        "faults are used up"
    );
}

#[tokio::test]
async fn the_output_filter_stops_streams_and_whole_answers() {
    let p = MockProvider::start("azure").await.unwrap();
    p.set_behavior(Behavior {
        reply: "one two three four".into(),
        ..Default::default()
    });
    p.push_faults([
        Fault::OutputFiltered { after_words: 0 },
        Fault::OutputFiltered { after_words: 1 },
    ]);
    let chunks = events(&body_of(post(&p, V1_CHAT, chat(true)).await).await);
    assert_eq!(text_of(&chunks), "");
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .expect("a finish");
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        finish["choices"][0]["content_filter_results"]["violence"],
        json!({"filtered": true, "severity": "high"})
    );

    let whole = parse(&body_of(post(&p, V1_CHAT, chat(false)).await).await);
    assert_eq!(whole["choices"][0]["finish_reason"], "content_filter");
    assert!(
        !whole["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn tool_calls_stream_as_openai_does() {
    let p = MockProvider::start("azure").await.unwrap();
    let mut body = chat(true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let chunks = events(&body_of(post(&p, V1_CHAT, body).await).await);
    let head = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(head["function"]["name"], "get_weather");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(parse(&arguments).is_object(), "{arguments}");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| f.is_string())
        .collect();
    assert_eq!(finishes, [&json!("tool_calls")]);
}

#[tokio::test]
async fn embeddings_in_both_shapes() {
    let p = MockProvider::start("azure").await.unwrap();
    let body = json!({"model": "text-embedding-3-small", "input": ["a", "b"]});
    let answer = parse(&body_of(post(&p, V1_EMBEDDINGS, body.clone()).await).await);
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["model"], "text-embedding-3-small");
    let path = "/openai/deployments/emb/embeddings?api-version=2024-10-21";
    let answer = parse(&body_of(post(&p, path, json!({"input": "a"})).await).await);
    assert_eq!(answer["data"].as_array().unwrap().len(), 1);
    assert_eq!(answer["model"], "emb");
}
