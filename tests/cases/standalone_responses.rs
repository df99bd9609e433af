//! `POST /v1/responses` end to end (docs/reference/api.md#responses): the real sidecar in front of
//! simulated OpenAI, Anthropic and Gemini providers. Plain and streamed answers through each
//! upstream API, a tool round trip, JSON schema output, failover from one API to another, the
//! refusals in OpenAI's error format, and the passthrough to a provider that declares
//! `responsesApi: true`.

use serde_json::{Value, json};
use switchyard_sim::{anthropic, gemini};
use switchyard_tests::{Behavior, Fault, Harness, MockProvider, Reply, route};

const REPLY: &str = "one two three";
const PATH: &str = "/v1/responses";
const ROUTES: [&str; 3] = ["via-openai", "via-anthropic", "via-gemini"];

struct Setup {
    h: Harness,
    /// Chat Completions only.
    o: MockProvider,
    a: anthropic::MockProvider,
    g: gemini::MockProvider,
    /// Declares `responsesApi: true`.
    p: MockProvider,
    /// Declares `responsesApi: true` too (another account).
    q: MockProvider,
}

/// A pool of one provider per API (and `p`, an OpenAI one serving the Responses API), one route
/// per provider, `failover` (OpenAI, then Anthropic), `pass` (only `p`) and `pass-both` (`p`
/// and `q`, two Responses API accounts).
async fn setup() -> Setup {
    let o = MockProvider::start("o").await.expect("openai mock");
    let a = anthropic::MockProvider::start("a")
        .await
        .expect("anthropic mock");
    let g = gemini::MockProvider::start("g").await.expect("gemini mock");
    let p = MockProvider::start("p").await.expect("responses mock");
    let q = MockProvider::start("q").await.expect("responses mock");
    let behavior = || Behavior {
        reply: REPLY.into(),
        ..Behavior::default()
    };
    o.set_behavior(behavior());
    a.set_behavior(behavior());
    g.set_behavior(behavior());
    p.set_behavior(behavior());
    q.set_behavior(behavior());
    let mut yaml = String::from(
        "apiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {name: pool}\nspec:\n  providers:\n",
    );
    for (name, api, url, model, extra) in [
        ("o", "OpenAI", o.base_url(), "gpt-4o-mini", ""),
        ("a", "Anthropic", a.base_url(), "claude-sonnet-4", ""),
        ("g", "Gemini", g.base_url(), "gemini-2.5-flash", ""),
        (
            "p",
            "OpenAI",
            p.base_url(),
            "gpt-4.1",
            "      responsesApi: true\n",
        ),
        (
            "q",
            "OpenAI",
            q.base_url(),
            "gpt-4.1",
            "      responsesApi: true\n",
        ),
    ] {
        yaml.push_str(&format!(
            "    - name: {name}\n      api: {api}\n      baseUrl: {url}\n      apiKey: {{secretKeyRef: {{name: keys, key: {name}}}}}\n{extra}      models:\n        - {{name: {model}, inputPerMillion: \"1.00\", outputPerMillion: \"2.00\"}}\n"
        ));
    }
    yaml.push_str("---\napiVersion: v1\nkind: Secret\nmetadata: {name: keys}\nstringData:\n");
    for name in ["o", "a", "g", "p", "q"] {
        yaml.push_str(&format!("  {name}: sk-{name}-secret\n"));
    }
    yaml += &route("via-openai", "via-openai", &[("o", "gpt-4o-mini")], "");
    yaml += &route(
        "via-anthropic",
        "via-anthropic",
        &[("a", "claude-sonnet-4")],
        "",
    );
    yaml += &route("via-gemini", "via-gemini", &[("g", "gemini-2.5-flash")], "");
    yaml += &route(
        "failover",
        "failover",
        &[("o", "gpt-4o-mini"), ("a", "claude-sonnet-4")],
        "strategy: Failover",
    );
    yaml += &route("pass", "pass", &[("p", "gpt-4.1")], "");
    yaml += &route(
        "pass-both",
        "pass-both",
        &[("p", "gpt-4.1"), ("q", "gpt-4.1")],
        "strategy: Failover",
    );
    let h = Harness::start(&yaml).await;
    Setup { h, o, a, g, p, q }
}

/// The `output_text` of a Response.
fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .expect("output items")
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter(|part| part["type"] == "output_text")
        .filter_map(|part| part["text"].as_str().map(str::to_string))
        .collect()
}

/// A streamed answer's events as (`event:` name, data), checking that each names its `type`.
fn typed_events(reply: &Reply) -> Vec<(String, Value)> {
    String::from_utf8_lossy(&reply.body)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event line in {e:?}"));
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data");
            let data: Value = serde_json::from_str(data).expect("JSON data");
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect()
}

/// What the SDKs' stream accumulators rely on: `sequence_number`s from 0 without a gap, each item
/// added once at the next `output_index` with an id of its own, every delta and `.done` naming an
/// added, not yet done item by its `item_id` and `output_index`, each item done once with the id
/// (and `call_id`) it was added with, and the final Response's `output` being the items as done.
/// Returns the final Response.
fn check_stream(events: &[(String, Value)]) -> Value {
    let mut added: Vec<Value> = Vec::new();
    let mut done: Vec<Option<Value>> = Vec::new();
    let mut last = None;
    for (n, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64, "{name}");
        assert!(last.is_none(), "{name} after the end");
        match name.as_str() {
            "response.output_item.added" => {
                assert_eq!(data["output_index"], added.len() as u64, "{data}");
                let id = &data["item"]["id"];
                assert!(added.iter().all(|a| &a["id"] != id), "id {id} reused");
                added.push(data["item"].clone());
                done.push(None);
            }
            "response.output_item.done" => {
                let at = data["output_index"].as_u64().expect("output_index") as usize;
                assert_eq!(added[at]["id"], data["item"]["id"], "{data}");
                assert_eq!(added[at]["call_id"], data["item"]["call_id"], "{data}");
                assert!(done[at].is_none(), "item {at} done twice");
                done[at] = Some(data["item"].clone());
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                last = Some(data["response"].clone());
            }
            kind if kind.ends_with(".delta") || kind.ends_with(".done") => {
                let at = data["output_index"].as_u64().expect("output_index") as usize;
                assert_eq!(added[at]["id"], data["item_id"], "{name}: {data}");
                assert!(done[at].is_none(), "{name} after its item's done");
            }
            _ => {}
        }
    }
    let last = last.expect("an end event");
    if last["status"] != "failed" {
        let done: Vec<Value> = done
            .into_iter()
            .map(|d| d.expect("every item done"))
            .collect();
        assert_eq!(
            last["output"],
            Value::Array(done),
            "final output = the items done"
        );
    }
    last
}

fn assert_openai_error(reply: &Reply, status: u16, needle: &str) {
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
async fn plain_answers_come_back_as_response_objects_through_every_upstream_api() {
    let s = setup().await;
    for model in ROUTES {
        let body = json!({"model": model, "input": "Say hi", "instructions": "Be brief.", "max_output_tokens": 50});
        let reply = s.h.post(PATH, &body).await;
        assert_eq!(reply.status, 200, "{model}: {:?}", reply.body);
        let answer = reply.json();
        assert_eq!(answer["object"], "response", "{model}");
        assert_eq!(answer["status"], "completed", "{model}");
        assert!(
            answer["id"].as_str().unwrap().starts_with("resp_"),
            "{answer}"
        );
        assert_eq!(output_text(&answer), REPLY, "{model}");
        let usage = &answer["usage"];
        assert!(
            usage["input_tokens"].as_u64().unwrap() > 0,
            "{model}: {usage}"
        );
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
            ),
        );
    }
    // Each upstream got the instructions as its own system prompt and the limit as its own.
    let chat = s.o.last_request().expect("openai called");
    assert_eq!(chat.path, "/v1/chat/completions");
    assert_eq!(
        chat.body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(chat.body["max_completion_tokens"], 50);
    let messages = s.a.last_request().expect("anthropic called");
    assert_eq!(messages.path, "/v1/messages");
    assert_eq!(messages.body["system"], "Be brief.");
    assert_eq!(messages.body["max_tokens"], 50);
    let gemini = s.g.last_request().expect("gemini called");
    assert_eq!(
        gemini.body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
    assert_eq!(gemini.body["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(s.p.request_count(), 0);
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_the_typed_events_in_order_through_every_upstream_api() {
    let s = setup().await;
    for model in ROUTES {
        let body = json!({"model": model, "input": [{"role": "user", "content": "Say hi"}], "stream": true});
        let reply = s.h.post(PATH, &body).await;
        assert_eq!(reply.status, 200, "{model}: {:?}", reply.body);
        assert_eq!(reply.header("content-type"), "text/event-stream");
        let events = typed_events(&reply);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..5],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta"
            ],
            "{model}"
        );
        assert_eq!(
            names[names.len() - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ],
            "{model}"
        );
        check_stream(&events);
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deltas, REPLY, "{model}");
        let completed = &events.last().unwrap().1["response"];
        assert_eq!(output_text(completed), REPLY, "{model}");
        assert!(
            completed["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}"
        );
    }
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_round_trip_works_through_every_upstream_api() {
    let s = setup().await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]);
    for model in ROUTES {
        let ask = json!({"role": "user", "content": "Weather in Paris?"});
        let first =
            s.h.post(
                PATH,
                &json!({"model": model, "input": [ask], "tools": tools}),
            )
            .await;
        assert_eq!(first.status, 200, "{model}: {:?}", first.body);
        let call = first.json()["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .cloned()
            .unwrap_or_else(|| panic!("{model}: no function call in {}", first.json()));
        assert_eq!(call["name"], "get_weather");
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"location": "Paris"}), "{model}");
        let call_id = call["call_id"].as_str().unwrap().to_string();

        let input = json!([ask, call, {"type": "function_call_output", "call_id": call_id, "output": "sunny, 21C"}]);
        let second =
            s.h.post(
                PATH,
                &json!({"model": model, "input": input, "tools": tools}),
            )
            .await;
        assert_eq!(second.status, 200, "{model}: {:?}", second.body);
        assert_eq!(output_text(&second.json()), REPLY, "{model}");
    }
    // The result went back as each API's own tool result, tied to the call.
    let chat = s.o.last_request().unwrap();
    let tool = &chat.body["messages"][2];
    assert_eq!(tool["role"], "tool");
    assert_eq!(tool["content"], "sunny, 21C");
    assert_eq!(
        chat.body["messages"][1]["tool_calls"][0]["id"],
        tool["tool_call_id"]
    );
    let messages = s.a.last_request().unwrap();
    let result = &messages.body["messages"][2]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(
        messages.body["messages"][1]["content"][0]["id"],
        result["tool_use_id"]
    );
    let gemini = s.g.last_request().unwrap();
    let response = &gemini.body["contents"][2]["parts"][0]["functionResponse"];
    assert_eq!(response["name"], "get_weather");
    for model in ROUTES {
        let ask = json!({"role": "user", "content": "Weather in Paris?"});
        // The same call streamed: one item, its arguments whole, the same as unstreamed.
        let streamed =
            s.h.post(
                PATH,
                &json!({"model": model, "input": [ask], "tools": tools, "stream": true}),
            )
            .await;
        assert_eq!(streamed.status, 200, "{model}: {:?}", streamed.body);
        let events = typed_events(&streamed);
        let response = check_stream(&events);
        let calls: Vec<&Value> = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "function_call")
            .collect();
        assert_eq!(calls.len(), 1, "{model}: {response}");
        assert_eq!(calls[0]["name"], "get_weather", "{model}");
        assert_eq!(calls[0]["status"], "completed", "{model}");
        let arguments: Value =
            serde_json::from_str(calls[0]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"location": "Paris"}), "{model}");
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deltas, calls[0]["arguments"].as_str().unwrap(), "{model}");
    }
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_format_json_schema_reaches_each_upstream_as_its_structured_output() {
    let s = setup().await;
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": false});
    for model in ROUTES {
        let body = json!({"model": model, "input": "Answer as JSON",
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": true}}});
        let reply = s.h.post(PATH, &body).await;
        assert_eq!(reply.status, 200, "{model}: {:?}", reply.body);
    }
    let chat = s.o.last_request().unwrap();
    assert_eq!(
        chat.body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}})
    );
    let gemini = s.g.last_request().unwrap();
    assert_eq!(
        gemini.body["generationConfig"]["responseMimeType"],
        "application/json"
    );
    let messages = s.a.last_request().unwrap();
    // Messages has no JSON mode: the schema goes into the system prompt.
    let system = messages.body["system"].to_string();
    assert!(
        system.contains("JSON Schema") && system.contains("answer"),
        "{system}"
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_openai_target_fails_over_to_anthropic_mid_route() {
    let s = setup().await;
    s.o.push_faults([Fault::ServerError]);
    let reply =
        s.h.post(PATH, &json!({"model": "failover", "input": "Say hi"}))
            .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    assert_eq!(reply.header("x-switchyard-attempts"), "2");
    assert_eq!(output_text(&reply.json()), REPLY);
    assert_eq!(s.o.request_count(), 1);
    assert_eq!(s.a.request_count(), 1);
    let cost =
        s.h.count("switchyard_cost_usd_total", &[("route", "failover")])
            .await;
    assert!(cost > 0.0, "the answer is priced: {cost}");
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_after_the_commit_ends_with_response_failed() {
    let s = setup().await;
    s.o.push_faults([Fault::ErrorMidStream { after_chunks: 2 }]);
    let body = json!({"model": "via-openai", "input": "Say hi", "stream": true});
    let reply = s.h.post(PATH, &body).await;
    assert_eq!(reply.status, 200);
    let events = typed_events(&reply);
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert!(last["response"]["error"]["message"].is_string(), "{last}");
    assert_eq!(last["sequence_number"], events.len() as u64 - 1);
    assert!(!events.iter().any(|(n, _)| n == "response.completed"));
    check_stream(&events);
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_through_stream_failing_after_the_commit_ends_as_the_provider_or_sidecar_says() {
    let s = setup().await;
    // The provider's own response.failed reaches the client as it sent it, and nothing after.
    s.p.push_faults([Fault::ErrorMidStream { after_chunks: 4 }]);
    let body = json!({"model": "pass", "input": "Say hi", "stream": true});
    let reply = s.h.post(PATH, &body).await;
    assert_eq!(reply.status, 200);
    let events = typed_events(&reply);
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed", "{events:?}");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(last["response"]["id"], events[0].1["response"]["id"]);
    assert_eq!(
        events
            .iter()
            .filter(|(n, _)| n == "error" || n == "response.failed")
            .count(),
        1,
        "{events:?}"
    );
    check_stream(&events);
    // A stream the provider cuts short gets the sidecar's error event, numbered after its own.
    s.p.push_faults([Fault::TruncateStream { after_chunks: 4 }]);
    let reply = s.h.post(PATH, &body).await;
    assert_eq!(reply.status, 200);
    let events = typed_events(&reply);
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(
        last["sequence_number"],
        events.len() as u64 - 1,
        "{events:?}"
    );
    assert_eq!(events.len(), 5, "{events:?}");
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_and_malformed_requests_are_refused_in_openai_format() {
    let s = setup().await;
    for (field, value) in [
        ("previous_response_id", json!("resp_123")),
        ("store", json!(true)),
        ("conversation", json!("conv_1")),
    ] {
        let mut body = json!({"model": "via-openai", "input": "hi"});
        body[field] = value;
        let reply = s.h.post(PATH, &body).await;
        assert_openai_error(&reply, 400, field);
        assert_openai_error(&reply, 400, "statelessly");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
    // A background response is read with GET /v1/responses/{id}, which the sidecar does not
    // proxy: refused on every route, passed through or not.
    for model in ["via-openai", "pass"] {
        let body = json!({"model": model, "input": "hi", "background": true});
        let reply = s.h.post(PATH, &body).await;
        assert_openai_error(&reply, 400, "`background: true`");
        assert_openai_error(&reply, 400, "does not proxy");
    }
    assert_eq!(s.p.request_count(), 0);
    let tool = json!({"model": "via-anthropic", "input": "hi", "tools": [{"type": "web_search"}]});
    assert_openai_error(&s.h.post(PATH, &tool).await, 400, "web_search");
    assert_openai_error(
        &s.h.post_raw(PATH, "{not json").await,
        400,
        "not valid JSON",
    );
    let no_input = json!({"model": "via-openai"});
    assert_openai_error(&s.h.post(PATH, &no_input).await, 400, "`input` is required");
    let unknown = json!({"model": "nope", "input": "hi"});
    let reply = s.h.post(PATH, &unknown).await;
    assert_openai_error(&reply, 404, "no route for model");
    assert_eq!(reply.json()["error"]["code"], "model_not_found");
    assert_eq!(
        s.o.request_count() + s.a.request_count() + s.g.request_count(),
        0
    );
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_responses_api_providers_passes_requests_through() {
    let s = setup().await;
    let body = json!({"model": "pass", "input": "Continue.", "previous_response_id": "resp_abc",
        "store": true, "tools": [{"type": "web_search"}], "metadata": {"k": "v"}});
    let reply = s.h.post(PATH, &body).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["object"], "response");
    assert_eq!(
        answer["previous_response_id"], "resp_abc",
        "the provider's own Response"
    );
    assert_eq!(output_text(&answer), REPLY);
    let sent = s.p.last_request().expect("passed through");
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-p-secret"));
    let mut expected = body.clone();
    expected["model"] = json!("gpt-4.1");
    assert_eq!(sent.body, expected, "unchanged but for the model");

    let streamed = json!({"model": "pass", "input": "Continue.", "previous_response_id": "resp_abc", "stream": true});
    let reply = s.h.post(PATH, &streamed).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let events = typed_events(&reply);
    assert_eq!(events.first().unwrap().0, "response.created");
    assert_eq!(events.last().unwrap().0, "response.completed");
    let sent = s.p.last_request().unwrap();
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["previous_response_id"], "resp_abc");
    let input =
        s.h.count(
            "switchyard_tokens_total",
            &[("route", "pass"), ("direction", "input")],
        )
        .await;
    assert!(
        input > 0.0,
        "usage is read from the passed-through answers: {input}"
    );
    assert_eq!(s.o.request_count(), 0);
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_state_passes_through_only_to_a_route_of_one_upstream() {
    let s = setup().await;
    for (field, value) in [
        ("previous_response_id", json!("resp_abc")),
        ("store", json!(true)),
        ("conversation", json!("conv_1")),
    ] {
        let mut body = json!({"model": "pass-both", "input": "Continue."});
        body[field] = value;
        let reply = s.h.post(PATH, &body).await;
        assert_openai_error(&reply, 400, field);
        assert_openai_error(&reply, 400, "several upstreams (pool/p, pool/q)");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
    let referenced =
        json!({"model": "pass-both", "input": [{"type": "item_reference", "id": "msg_1"}]});
    assert_openai_error(&s.h.post(PATH, &referenced).await, 400, "item_reference");
    assert_eq!(s.p.request_count() + s.q.request_count(), 0);
    // Stateless requests still pass through, built-in tools and all.
    let stateless = json!({"model": "pass-both", "input": "Hi.", "store": false,
        "tools": [{"type": "web_search"}]});
    let reply = s.h.post(PATH, &stateless).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(output_text(&reply.json()), REPLY);
    assert_eq!(s.p.request_count() + s.q.request_count(), 1);
    s.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_echo_the_requests_fields() {
    let s = setup().await;
    let echoed = json!({"instructions": "Be brief.", "temperature": 0.5, "top_p": 0.8,
        "max_output_tokens": 50, "parallel_tool_calls": false, "metadata": {"team": "search"},
        "tool_choice": "none", "tools": [{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {}}}]});
    for model in ROUTES {
        for stream in [false, true] {
            let mut body = echoed.clone();
            body["model"] = json!(model);
            body["input"] = json!("Say hi");
            body["stream"] = json!(stream);
            let reply = s.h.post(PATH, &body).await;
            assert_eq!(reply.status, 200, "{model}: {:?}", reply.body);
            let response = if stream {
                check_stream(&typed_events(&reply))
            } else {
                reply.json()
            };
            for (key, value) in echoed.as_object().unwrap() {
                assert_eq!(&response[key], value, "{model}, stream {stream}: {key}");
            }
        }
    }
    s.h.stop().await;
}
