//! `POST /v1/embeddings` end to end (docs/reference/api.md#embeddings): the real sidecar in front
//! of simulated OpenAI and Gemini providers, which check the requests they get as the real APIs
//! do. OpenAI passthrough, Gemini translation (order, dimensions, base64), failover, cost and
//! metrics, and every refusal in OpenAI's error format.

use base64::Engine;
use serde_json::{Value, json};
use switchyard_sim::embeddings::vector;
use switchyard_sim::gemini;
use switchyard_tests::{Fault, Harness, MockProvider, route};

/// One embedding model per provider (`Embedding`, input 0.02 and output 0 USD per million) and a
/// chat model on `o`, plus the keys Secret.
fn pool(providers: &[(&str, &str, &str, &str)]) -> String {
    let mut yaml = String::from(
        "apiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {name: pool}\nspec:\n  providers:\n",
    );
    for (name, api, url, model) in providers {
        yaml.push_str(&format!(
            "    - name: {name}\n      api: {api}\n      baseUrl: {url}\n      apiKey: {{secretKeyRef: {{name: keys, key: {name}}}}}\n      models:\n        - {{name: {model}, type: Embedding, inputPerMillion: \"0.02\", outputPerMillion: \"0\"}}\n        - {{name: chat-model, inputPerMillion: \"1\", outputPerMillion: \"2\"}}\n"
        ));
    }
    yaml.push_str("---\napiVersion: v1\nkind: Secret\nmetadata: {name: keys}\nstringData:\n");
    for (name, ..) in providers {
        yaml.push_str(&format!("  {name}: sk-{name}-secret\n"));
    }
    yaml
}

/// An OpenAI and a Gemini provider; route `embed` (model `embed`) tries OpenAI then Gemini,
/// `gembed` only Gemini, `chat` is a chat route.
async fn setup() -> (Harness, MockProvider, gemini::MockProvider) {
    let o = MockProvider::start("o").await.expect("openai mock");
    let g = gemini::MockProvider::start("g").await.expect("gemini mock");
    let yaml = pool(&[
        ("o", "OpenAI", &o.base_url(), "text-embedding-3-small"),
        ("g", "Gemini", &g.base_url(), "text-embedding-004"),
    ]) + &route(
        "embed",
        "embed",
        &[("o", "text-embedding-3-small"), ("g", "text-embedding-004")],
        "",
    ) + &route("gembed", "gembed", &[("g", "text-embedding-004")], "")
        + &route("chat", "chat", &[("o", "chat-model")], "");
    (Harness::start(&yaml).await, o, g)
}

/// The vector of an answer's `data[i]`, floats or base64 alike.
fn embedding(answer: &Value, i: usize) -> Vec<f32> {
    match &answer["data"][i]["embedding"] {
        Value::String(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            bytes
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        }
        v => v
            .as_array()
            .expect("an array")
            .iter()
            .map(|x| x.as_f64().expect("a number") as f32)
            .collect(),
    }
}

fn assert_openai_error(reply: &switchyard_tests::Reply, status: u16, needle: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let error = &reply.json()["error"];
    let message = error["message"].as_str().expect("an OpenAI error body");
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert!(
        error["type"].is_string() && error.get("code").is_some(),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_targets_get_the_body_with_only_the_model_replaced() {
    let (h, o, g) = setup().await;
    let body = json!({"model": "embed", "input": ["one", "two"], "dimensions": 4, "encoding_format": "float", "user": "u-1"});

    let reply = h.post("/v1/embeddings", &body).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-route"), "embed");
    assert_eq!(reply.header("x-switchyard-provider"), "pool/o");
    assert_eq!(reply.header("x-switchyard-model"), "text-embedding-3-small");
    let sent = o.last_request().expect("the OpenAI mock was called");
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-o-secret"));
    let mut expected = body.clone();
    expected["model"] = json!("text-embedding-3-small");
    assert_eq!(sent.body, expected);
    let answer = reply.json();
    assert_eq!(answer["object"], "list");
    assert_eq!(embedding(&answer, 0), vector("one", 4));
    assert_eq!(embedding(&answer, 1), vector("two", 4));
    assert_eq!(g.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_targets_get_a_batch_in_input_order_and_answer_in_openai_format() {
    let (h, _o, g) = setup().await;
    let texts = ["first text", "second", "the third and last"];
    let body = json!({"model": "gembed", "input": texts, "dimensions": 6});

    let reply = h.post("/v1/embeddings", &body).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let sent = g.last_request().expect("the Gemini mock was called");
    assert_eq!(
        sent.path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(sent.header("x-goog-api-key"), Some("sk-g-secret"));
    let requests = sent.body["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3);
    for (request, text) in requests.iter().zip(texts) {
        assert_eq!(request["model"], "models/text-embedding-004");
        assert_eq!(request["content"]["parts"][0]["text"], text);
        assert_eq!(request["outputDimensionality"], 6);
    }
    let answer = reply.json();
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], "text-embedding-004");
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(answer["data"][i]["object"], "embedding");
        assert_eq!(answer["data"][i]["index"], i);
        assert_eq!(embedding(&answer, i), vector(text, 6), "data[{i}]");
    }
    // Gemini reports no usage: the sidecar counts the text with its tokenizer.
    let usage = &answer["usage"];
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    assert!(prompt >= 7, "{usage}");
    assert_eq!(usage["total_tokens"], prompt);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_from_gemini_is_little_endian_f32_as_openai_sends_it() {
    let (h, _o, _g) = setup().await;
    let body = json!({"model": "gembed", "input": "encode me", "encoding_format": "base64"});

    let reply = h.post("/v1/embeddings", &body).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer = reply.json();
    assert!(answer["data"][0]["embedding"].is_string(), "{answer}");
    assert_eq!(embedding(&answer, 0), vector("encode me", 8));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_embedding_provider_fails_over_to_the_next() {
    let (h, o, g) = setup().await;
    o.push_faults([Fault::ServerError]);

    let reply = h
        .post("/v1/embeddings", &json!({"model": "embed", "input": "x"}))
        .await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/g");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!((o.request_count(), g.request_count()), (1, 1));
    let failovers = [
        ("route", "embed"),
        ("provider", "pool/o"),
        ("reason", "ServerError"),
    ];
    assert_eq!(h.count("switchyard_failovers_total", &failovers).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_errors_are_classified_and_answered_in_openai_format() {
    let (h, _o, g) = setup().await;
    g.push_faults([gemini::Fault::RateLimited { retry_delay: None }]);

    let reply = h
        .post("/v1/embeddings", &json!({"model": "gembed", "input": "x"}))
        .await;

    assert_openai_error(&reply, 429, "RateLimited");
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_cost_and_requests_are_counted_at_the_input_price() {
    let (h, _o, _g) = setup().await;

    let reply = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": "count these words please"}),
        )
        .await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let prompt = reply.json()["usage"]["prompt_tokens"]
        .as_f64()
        .expect("usage");
    let labels = [
        ("route", "embed"),
        ("provider", "pool/o"),
        ("model", "text-embedding-3-small"),
    ];
    let input = [labels.as_slice(), &[("direction", "input")]].concat();
    assert_eq!(h.count("switchyard_tokens_total", &input).await, prompt);
    let cost = h.count("switchyard_cost_usd_total", &labels).await;
    let expected = prompt * 0.02 / 1e6;
    assert!((cost - expected).abs() < 1e-15, "cost {cost} vs {expected}");
    let success = [labels.as_slice(), &[("outcome", "Success")]].concat();
    assert_eq!(h.count("switchyard_requests_total", &success).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_a_404_in_openai_format() {
    let (h, o, _g) = setup().await;
    let reply = h
        .post("/v1/embeddings", &json!({"model": "nope", "input": "x"}))
        .await;
    assert_openai_error(&reply, 404, "no route for model \"nope\"");
    assert_eq!(reply.json()["error"]["code"], "model_not_found");
    assert_eq!(o.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_the_other_kind_is_a_400_naming_it() {
    let (h, o, _g) = setup().await;

    let embed_on_chat = h
        .post("/v1/embeddings", &json!({"model": "chat", "input": "x"}))
        .await;
    assert_openai_error(&embed_on_chat, 400, "route chat which serves chat");

    let chat_on_embed = h.chat("embed", "hello").await;
    assert_openai_error(&chat_on_embed, 400, "route embed which serves embeddings");

    let anthropic = json!({"model": "embed", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let messages = h
        .post_with(
            "/v1/messages",
            &anthropic,
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(messages.status, 400);
    assert_eq!(messages.json()["type"], "error", "Anthropic's format");
    assert_eq!(o.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400s_naming_the_field() {
    let (h, o, _g) = setup().await;
    for (body, needle) in [
        (json!({"model": "embed"}), "`input` is required"),
        (json!({"model": "embed", "input": []}), "empty array"),
        (
            json!({"model": "embed", "input": {"text": "x"}}),
            "`input` must be",
        ),
        (
            json!({"model": "embed", "input": "x", "dimensions": -1}),
            "`dimensions`",
        ),
        (
            json!({"model": "embed", "input": "x", "encoding_format": "int8"}),
            "`encoding_format`",
        ),
        (json!({"input": "x"}), "`model` is required"),
    ] {
        let reply = h.post("/v1/embeddings", &body).await;
        assert_openai_error(&reply, 400, needle);
    }
    let tokens = json!({"model": "gembed", "input": [[1, 2, 3]]});
    let reply = h.post("/v1/embeddings", &tokens).await;
    assert_openai_error(&reply, 400, "embed text only");
    assert_eq!(o.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_arrays_skip_gemini_targets_and_models_lists_embedding_routes() {
    let (h, o, g) = setup().await;
    o.push_faults([Fault::ServerError]);

    let reply = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": [5, 6, 7]}),
        )
        .await;

    // The only target that takes tokens failed; Gemini is never sent them.
    assert_eq!(reply.status, 502, "{:?}", reply.body);
    assert_eq!(g.request_count(), 0);
    assert_eq!(
        o.last_request().expect("sent").body["input"],
        json!([5, 6, 7])
    );

    let models = h.get(&format!("{}/v1/models", h.base())).await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["chat", "embed", "gembed"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_geminis_limit_skip_gemini_targets() {
    let (h, o, g) = setup().await;
    let inputs: Vec<String> = (0..101).map(|i| format!("text {i}")).collect();

    // Route `embed` tries OpenAI first; with it failing, Gemini would be next, but 101 inputs
    // are more than Gemini takes in one request: the failure is the answer, Gemini is not paid
    // a round trip for its 400.
    o.push_faults([Fault::ServerError]);
    let reply = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": inputs}),
        )
        .await;
    assert_eq!(reply.status, 502, "{:?}", reply.body);
    assert_eq!(g.request_count(), 0);

    // A route of Gemini targets only refuses the batch, saying why and what to do.
    let reply = h
        .post(
            "/v1/embeddings",
            &json!({"model": "gembed", "input": inputs}),
        )
        .await;
    assert_openai_error(&reply, 400, "at most 100 inputs");
    assert_eq!(g.request_count(), 0);

    // 100 inputs are Gemini's to embed, in order.
    let reply = h
        .post(
            "/v1/embeddings",
            &json!({"model": "gembed", "input": &inputs[..100]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["data"].as_array().expect("a list").len(), 100);
    assert_eq!(answer["data"][99]["index"], 99);
    assert_eq!(g.request_count(), 1);
    h.stop().await;
}

// === upstream requests against the official schemas (tests/specs) ===

fn openai_schema() -> jsonschema::Validator {
    super::translation_schema::validator(
        "openai-embeddings.schemas.json",
        "CreateEmbeddingRequest",
        false,
    )
}

fn gemini_schema() -> jsonschema::Validator {
    // Gemini's converted schemas never close their objects: closed here, so that a stray
    // OpenAI field would be an error.
    super::translation_schema::validator(
        "gemini-embeddings.schemas.json",
        "BatchEmbedContentsRequest",
        true,
    )
}

#[test]
fn the_embedding_schemas_reject_bad_requests() {
    use super::translation_schema::errors;
    let openai = openai_schema();
    assert!(errors(&openai, &json!({"model": "m", "input": "x"})).is_empty());
    assert!(
        !errors(
            &openai,
            &json!({"model": "m", "input": "x", "stream": true})
        )
        .is_empty()
    );
    assert!(!errors(&openai, &json!({"model": "m", "input": []})).is_empty());
    assert!(!errors(&openai, &json!({"input": "x"})).is_empty());
    let gemini = gemini_schema();
    let good = json!({"requests": [{"model": "models/m", "content": {"parts": [{"text": "x"}]}}]});
    assert!(
        errors(&gemini, &good).is_empty(),
        "{:?}",
        errors(&gemini, &good)
    );
    let stray = json!({"requests": [{"model": "models/m", "input": "x"}]});
    assert!(!errors(&gemini, &stray).is_empty());
    let bad_part =
        json!({"requests": [{"model": "models/m", "content": {"parts": [{"txt": "x"}]}}]});
    assert!(!errors(&gemini, &bad_part).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_embedding_requests_are_valid_by_the_official_schemas() {
    use super::translation_schema::errors;
    let (h, o, g) = setup().await;
    let bodies = [
        json!({"model": "embed", "input": "one"}),
        json!({"model": "embed", "input": ["a", "b"], "dimensions": 3, "encoding_format": "base64", "user": "u"}),
        json!({"model": "embed", "input": [[1, 2], [3]]}),
        json!({"model": "gembed", "input": ["a", "b"], "dimensions": 3, "encoding_format": "float"}),
    ];
    for body in &bodies {
        let reply = h.post("/v1/embeddings", body).await;
        assert_eq!(reply.status, 200, "{body}: {:?}", reply.body);
    }
    let (openai, gemini) = (openai_schema(), gemini_schema());
    assert_eq!(o.request_count(), 3);
    for sent in o.requests() {
        assert_eq!(
            errors(&openai, &sent.body),
            Vec::<String>::new(),
            "{}",
            sent.body
        );
    }
    assert_eq!(g.request_count(), 1);
    for sent in g.requests() {
        assert_eq!(
            errors(&gemini, &sent.body),
            Vec::<String>::new(),
            "{}",
            sent.body
        );
    }
    h.stop().await;
}

/// `LowestCost` ranks embedding targets by what the input costs on each: the cheaper model
/// wins whichever order the route lists them in (there is no output to price).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_cost_ranks_embedding_targets_by_their_input_price() {
    let dear = MockProvider::start("dear").await.expect("openai mock");
    let cheap = MockProvider::start("cheap").await.expect("openai mock");
    let model = |name: &str, price: &str| {
        format!(
            "      models:\n        - {{name: {name}, type: Embedding, inputPerMillion: \"{price}\", outputPerMillion: \"0\"}}\n"
        )
    };
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {{name: pool}}\nspec:\n  providers:\n    - name: dear\n      api: OpenAI\n      baseUrl: {}\n      apiKey: {{secretKeyRef: {{name: keys, key: dear}}}}\n{}    - name: cheap\n      api: OpenAI\n      baseUrl: {}\n      apiKey: {{secretKeyRef: {{name: keys, key: cheap}}}}\n{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: keys}}\nstringData: {{dear: sk-dear-secret, cheap: sk-cheap-secret}}\n",
        dear.base_url(),
        model("text-embedding-3-large", "0.13"),
        cheap.base_url(),
        model("text-embedding-3-small", "0.02"),
    ) + &route(
        "embed",
        "embed",
        &[
            ("dear", "text-embedding-3-large"),
            ("cheap", "text-embedding-3-small"),
        ],
        "strategy: LowestCost",
    );
    let h = Harness::start(&yaml).await;

    for _ in 0..3 {
        let reply = h
            .post(
                "/v1/embeddings",
                &json!({"model": "embed", "input": "a few words to embed"}),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.header("x-switchyard-provider"), "pool/cheap");
    }
    assert_eq!(dear.request_count(), 0, "the dearer model is never asked");
    assert_eq!(cheap.request_count(), 3);
    h.stop().await;
}
