//! Routing basics against one healthy simulated provider: the `x-switchyard-*` headers, the
//! request the provider receives (target model, the pool's key, which client headers pass), the
//! accounting of tokens and cost, and `GET /v1/models` in OpenAI and Anthropic formats.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::{Behavior, Harness, MockProvider, pool, route};

/// A pool with provider `a` serving `gpt-4o-mini` and route `support-chat` for model `chat`.
async fn one_provider(extra: &str) -> (Harness, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "gpt-4o-mini")], extra, "")
        + &route("support-chat", "chat", &[("a", "gpt-4o-mini")], "");
    (Harness::start(&yaml).await, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_success_returns_the_answer_with_served_headers() {
    let (h, a) = one_provider("").await;
    a.set_behavior(Behavior {
        reply: "routed through the yard".into(),
        ..Behavior::default()
    });

    let reply = h.chat("chat", "hello").await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-route"), "support-chat");
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    assert_eq!(reply.header("x-switchyard-model"), "gpt-4o-mini");
    assert_eq!(reply.header("x-switchyard-attempts"), "1");
    assert!(reply.header("content-type").starts_with("application/json"));
    let body = reply.json();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "routed through the yard"
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(a.request_count(), 1);
    let success = [
        ("route", "support-chat"),
        ("provider", "pool/a"),
        ("model", "gpt-4o-mini"),
        ("outcome", "Success"),
    ];
    assert_eq!(h.count("switchyard_requests_total", &success).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_cost_follow_the_reported_usage_and_the_pool_prices() {
    let (h, a) = one_provider("").await;
    a.set_behavior(Behavior {
        reply: "one two three four five".into(),
        cached_tokens: 3,
        ..Behavior::default()
    });

    let reply = h.chat("chat", &"many words of prompt ".repeat(20)).await;
    assert_eq!(reply.status, 200);
    let usage = &reply.json()["usage"];
    let prompt = usage["prompt_tokens"].as_f64().expect("prompt tokens");
    let output = usage["completion_tokens"]
        .as_f64()
        .expect("completion tokens");
    assert!(prompt > 3.0 && output == 5.0, "{usage}");

    let labels = |direction| {
        [
            ("route", "support-chat"),
            ("provider", "pool/a"),
            ("model", "gpt-4o-mini"),
            ("direction", direction),
        ]
    };
    let tokens = "switchyard_tokens_total";
    assert_eq!(h.count(tokens, &labels("input")).await, prompt - 3.0);
    assert_eq!(h.count(tokens, &labels("cached_input")).await, 3.0);
    assert_eq!(h.count(tokens, &labels("output")).await, output);
    // harness::pool prices: input 1.00, cached input 0.50, output 2.00 USD per million.
    let expected = ((prompt - 3.0) * 1.0 + 3.0 * 0.5 + output * 2.0) / 1e6;
    let cost = h
        .count(
            "switchyard_cost_usd_total",
            &[
                ("route", "support-chat"),
                ("provider", "pool/a"),
                ("model", "gpt-4o-mini"),
            ],
        )
        .await;
    assert!((cost - expected).abs() < 1e-12, "cost {cost} vs {expected}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_gets_the_target_model_and_the_body_as_sent() {
    let (h, a) = one_provider("").await;
    let body = json!({
        "model": "chat",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "temperature": 0.25,
        "max_tokens": 17,
        "vendor_extension": {"keep": ["me", 1]},
    });

    let reply = h.post("/v1/chat/completions", &body).await;

    assert_eq!(reply.status, 200);
    let seen = a.last_request().expect("the provider was called");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.model(), Some("gpt-4o-mini"), "the target's model");
    assert_eq!(seen.body["messages"], body["messages"]);
    assert_eq!(seen.body["temperature"], 0.25);
    assert_eq!(seen.body["max_tokens"], 17);
    assert_eq!(
        seen.body["vendor_extension"], body["vendor_extension"],
        "unknown fields pass through"
    );
    // Every request streams upstream (docs/reference/sidecar.md#streaming), counting its usage.
    assert!(seen.is_stream());
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_never_reach_the_provider_even_when_listed() {
    // Every credential header is listed in forwardHeaders: the sidecar must still drop them.
    let (h, a) = one_provider(
        "forwardHeaders: [X-Trace-Id, Authorization, x-api-key, api-key, x-goog-api-key, cookie]",
    )
    .await;
    let headers = [
        ("authorization", "Bearer client-authorization"),
        ("x-api-key", "client-x-api-key"),
        ("api-key", "client-api-key"),
        ("x-goog-api-key", "client-goog"),
        ("cookie", "session=client-cookie"),
        ("x-trace-id", "trace-123"),
        ("x-unlisted", "client-unlisted"),
    ];

    let reply = h
        .post_with(
            "/v1/chat/completions",
            &switchyard_tests::chat("chat", "hi"),
            &headers,
        )
        .await;

    assert_eq!(reply.status, 200);
    let seen = a.last_request().expect("the provider was called").headers;
    let auth: Vec<_> = seen.get_all("authorization").iter().collect();
    assert_eq!(auth, ["Bearer sk-a-secret"], "only the pool's key");
    for name in [
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "x-unlisted",
    ] {
        assert!(!seen.contains_key(name), "{name} reached the provider");
    }
    assert_eq!(
        seen.get("x-trace-id").map(|v| v.as_bytes()),
        Some(&b"trace-123"[..])
    );
    let host = seen.get("host").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(host, Some(a.addr().to_string()), "the provider's own host");
    for (name, value) in &seen {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains("client-"),
            "{name}: {value} came from the client"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_are_not_forwarded_by_default() {
    let (h, a) = one_provider("").await;

    let reply = h
        .post_with(
            "/v1/chat/completions",
            &switchyard_tests::chat("chat", "hi"),
            &[
                ("x-trace-id", "trace-123"),
                ("authorization", "Bearer client"),
            ],
        )
        .await;

    assert_eq!(reply.status, 200);
    let seen = a.last_request().expect("the provider was called").headers;
    assert!(
        !seen.contains_key("x-trace-id"),
        "forwardHeaders defaults to none"
    );
    assert_eq!(
        seen.get("authorization").map(|v| v.as_bytes()),
        Some(&b"Bearer sk-a-secret"[..])
    );
    h.stop().await;
}

/// Two routes, so that list order and completeness are visible.
async fn two_routes() -> (Harness, MockProvider) {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml = pool(&[("a", &a.base_url(), "gpt-4o-mini")], "", "")
        + &route("zeta-route", "fast", &[("a", "gpt-4o-mini")], "")
        + &route("alpha-route", "chat", &[("a", "gpt-4o-mini")], "");
    (Harness::start(&yaml).await, a)
}

fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .expect("a data array")
        .iter()
        .map(|m| m["id"].as_str().expect("an id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_in_openai_format() {
    let (h, a) = two_routes().await;

    let reply = h.get(&format!("{}/v1/models", h.base())).await;

    assert_eq!(reply.status, 200);
    let list = reply.json();
    assert_eq!(list["object"], "list");
    assert_eq!(ids(&list), ["chat", "fast"], "client model names, sorted");
    for model in list["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
    }
    assert_eq!(a.request_count(), 0, "listing models asks no provider");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_in_anthropic_format_for_anthropic_clients() {
    let (h, _a) = two_routes().await;

    let reply = h
        .get_with(
            &format!("{}/v1/models", h.base()),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;

    assert_eq!(reply.status, 200);
    let list = reply.json();
    assert_eq!(ids(&list), ["chat", "fast"]);
    assert!(list.get("object").is_none(), "not the OpenAI shape: {list}");
    for model in list["data"].as_array().unwrap() {
        assert_eq!(model["type"], "model");
    }
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], "chat");
    assert_eq!(list["last_id"], "fast");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_name_goes_to_its_own_route() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = pool(
        &[
            ("a", &a.base_url(), "gpt-4o"),
            ("b", &b.base_url(), "deepseek-chat"),
        ],
        "",
        "",
    ) + &route("premium", "smart", &[("a", "gpt-4o")], "")
        + &route("budget", "cheap", &[("b", "deepseek-chat")], "");
    let h = Harness::start(&yaml).await;

    let smart = h.chat("smart", "hi").await;
    let cheap = h.chat("cheap", "hi").await;

    assert_eq!(smart.header("x-switchyard-route"), "premium");
    assert_eq!(smart.header("x-switchyard-provider"), "pool/a");
    assert_eq!(cheap.header("x-switchyard-route"), "budget");
    assert_eq!(cheap.header("x-switchyard-model"), "deepseek-chat");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    assert_eq!(b.last_request().unwrap().model(), Some("deepseek-chat"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_all_served() {
    let (h, a) = one_provider("").await;
    a.set_behavior(Behavior {
        latency: Duration::from_millis(50),
        ..Behavior::default()
    });
    let h = std::sync::Arc::new(h);

    let mut tasks = Vec::new();
    for i in 0..16 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.chat("chat", &format!("request {i}")).await.status
        }));
    }
    let statuses = tokio::time::timeout(Duration::from_secs(10), async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    })
    .await
    .expect("bounded");

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(a.request_count(), 16);
    Harness::stop_shared(h).await;
}
