//! `switchyard-sidecar demo`: the standalone sidecar on `examples/demo` with simulated providers,
//! driven through a short story that shows what it does: routing, a provider failing and the
//! request failing over, the circuit opening and closing again, latency- and cost-aware
//! strategies, streaming, tokens and cost, and a prompt template in the system prompt.
//!
//! Everything is real but the providers: real files, the real sidecar on loopback, real HTTP and
//! SSE in the providers' wire format.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use switchyard_crds::manifests::{self, Manifests};
use tokio::time::Instant;

use crate::app::args::DemoArgs;
use crate::app::{Config, DEFAULT_DRAIN, Sidecar, Source};
use crate::table::standalone::Selection;
use switchyard_sim::openai::{Behavior, Fault, MockProvider};

/// The demo's manifests, built in so the demo runs from any directory.
/// The complexity model `data/complexity/model.json`, for route `smart`.
const SHIPPED_MODEL: &str = include_str!("../../data/complexity/model.json");
const SHIPPED_MODEL_FILE: &str = "complexity-model.json";

const BUILT_IN: [(&str, &str); 4] = [
    (
        "budget.yaml",
        include_str!("../../examples/demo/budget.yaml"),
    ),
    ("pool.yaml", include_str!("../../examples/demo/pool.yaml")),
    (
        "routes.yaml",
        include_str!("../../examples/demo/routes.yaml"),
    ),
    (
        "secret.yaml",
        include_str!("../../examples/demo/secret.yaml"),
    ),
];

type DemoClient = Client<HttpConnector, Full<Bytes>>;

/// Runs the demo and prints what happened.
pub async fn run(args: DemoArgs) -> ExitCode {
    match story(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Providers {
    flaky: MockProvider,
    steady: MockProvider,
    slow: MockProvider,
}

async fn story(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let providers = Providers {
        flaky: MockProvider::start("flaky").await?,
        steady: MockProvider::start("steady").await?,
        slow: MockProvider::start("slow").await?,
    };
    providers.flaky.set_behavior(Behavior {
        latency: Duration::from_millis(15),
        ..demo_behavior()
    });
    providers.steady.set_behavior(Behavior {
        latency: Duration::from_millis(40),
        cached_tokens: 8,
        ..demo_behavior()
    });
    providers.slow.set_behavior(Behavior {
        latency: Duration::from_millis(350),
        ..demo_behavior()
    });

    let dir = write_manifests(args.manifests.as_deref(), &providers)?;
    let sidecar = Sidecar::start(Config {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        debug_listen: Some("127.0.0.1:0".parse()?),
        max_body_bytes: 32 * 1024 * 1024,
        drain: DEFAULT_DRAIN,
        accept_while_draining: false,
        source: Source::Manifests {
            paths: vec![dir.clone()],
            selection: Selection::default(),
        },
    })
    .await?;
    let base = format!("http://{}", sidecar.data_addr);
    println!(
        "Switchyard demo: the standalone sidecar on {} with three simulated providers",
        dir.display()
    );
    println!("  data plane  {base}/v1   (point OPENAI_BASE_URL here)");
    println!("  admin       http://{}/metrics", sidecar.admin_addr);
    if let Some(debug) = sidecar.debug_addr {
        println!("  debug       http://{debug}/debug/config");
    }
    println!(
        "  providers   flaky {}   steady {}   slow {}",
        providers.flaky.base_url(),
        providers.steady.base_url(),
        providers.slow.base_url()
    );

    let client: DemoClient = Client::builder(TokioExecutor::new()).build_http();
    let mut n = 0;

    breaker_story(&client, &base, &mut n, &providers, &sidecar).await?;
    strategies_story(&client, &base, &mut n).await?;
    template_story(&client, &base, &providers).await?;
    scorer_story(&client, &base, &mut n).await?;

    println!("\nTotals (from the sidecar's Prometheus metrics)");
    println!(
        "   (steady's simulated provider reports 8 prompt tokens of each request as read from its\n    \
         prompt cache, `prompt_tokens_details.cached_tokens`: they count as cached_input, at the\n    \
         cheaper cached price)"
    );
    print_totals(&sidecar.runtime.metrics.render());
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Sections 1-4: failover, the circuit opening, and closing again after the cooldown.
async fn breaker_story(
    client: &DemoClient,
    base: &str,
    n: &mut u32,
    providers: &Providers,
    sidecar: &Sidecar,
) -> Result<(), Box<dyn std::error::Error>> {
    section("1. All healthy: route `chat` uses its first target, flaky/gpt-4o-mini");
    for _ in 0..3 {
        send(client, base, n, "chat", "Say hello.").await?;
    }

    section("2. flaky starts answering 503 overloaded: each request fails over to steady");
    providers
        .flaky
        .push_faults([Fault::Overloaded, Fault::Overloaded, Fault::Overloaded]);
    for _ in 0..3 {
        send(client, base, n, "chat", "Say hello.").await?;
    }
    let circuit = || {
        sidecar
            .runtime
            .metrics
            .circuit_open
            .with_label_values(&["demo/flaky", "gpt-4o-mini"])
            .get()
    };
    println!(
        "   three consecutive failures: switchyard_circuit_open{{demo/flaky, gpt-4o-mini}} = {}",
        circuit()
    );
    section("3. Circuit open: flaky is skipped, one attempt each, no time lost on it");
    for _ in 0..2 {
        send(client, base, n, "chat", "Say hello.").await?;
    }
    println!("   ... waiting out the 2s cooldown; flaky has recovered meanwhile");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    section("4. Half-open: one probe goes to flaky, succeeds, and the circuit closes");
    for _ in 0..2 {
        send(client, base, n, "chat", "Say hello.").await?;
    }

    println!(
        "   switchyard_circuit_open{{demo/flaky, gpt-4o-mini}} = {}",
        circuit()
    );
    Ok(())
}

/// Sections 5-9: rules, the latency- and cost-aware strategies, streaming, a budget running out.
async fn strategies_story(
    client: &DemoClient,
    base: &str,
    n: &mut u32,
) -> Result<(), Box<dyn std::error::Error>> {
    section("5. Rules: a hard prompt (complexity score >= 40) goes to flaky/gpt-4o");
    let hard = "Prove step by step that the integral of x^2 from 0 to 1 equals 1/3, analyze the \
        trade-off between Simpson's rule and the trapezoid rule, and explain why one converges \
        faster. What would you optimize first? Derive the error bound.";
    send(client, base, n, "chat", hard).await?;

    section("6. LeastLatency (`fast`): slow (~350 ms) vs steady (~40 ms)");
    for _ in 0..5 {
        send(client, base, n, "fast", "Quick question.").await?;
    }

    section("7. LowestCost (`cheap`): the cheapest price for this request");
    send(
        client,
        base,
        n,
        "cheap",
        "Summarize: the cat sat on the mat.",
    )
    .await?;

    section(
        "8. Streaming: SSE through the sidecar, usage counted even though the client did not ask",
    );
    stream(client, base, n).await?;

    section(
        "9. Budgets: Budget `cheap-daily` lets route `cheap` send 3 requests a day (7 spent one)",
    );
    for _ in 0..3 {
        send(client, base, n, "cheap", "One more summary, please.").await?;
    }

    section("10. Embeddings: POST /v1/embeddings to route `embed` (two inputs, input tokens only)");
    let body = json!({"model": "embed", "input": ["the cat sat", "on the mat"]});
    post(client, base, n, "/v1/embeddings", "embed", body).await?;

    section("11. The Responses API: POST /v1/responses to route `chat`, translated to chat");
    let body = json!({"model": "chat", "instructions": "Be brief.", "input": "Say hello."});
    post(client, base, n, "/v1/responses", "chat", body).await?;
    Ok(())
}

/// Section 12: route `chat`'s PromptTemplate, a variable given by the request's header, and the
/// system prompt the provider received.
async fn template_story(
    client: &DemoClient,
    base: &str,
    providers: &Providers,
) -> Result<(), Box<dyn std::error::Error>> {
    // Not a table row: what matters here is the header and what the provider was sent.
    println!(
        "\n12. Prompt templates: route `chat` adds PromptTemplate `support` to the system prompt"
    );
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "Say hello."}]});
    let request = http::Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-switchyard-template-vars", r#"{"product": "Widgets"}"#)
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = client.request(request).await?;
    let header = |name: &str| header_text(response.headers(), name);
    println!(
        "   x-switchyard-template-vars: {{\"product\": \"Widgets\"}} -> status {}, x-switchyard-template: {}",
        response.status().as_u16(),
        header("x-switchyard-template")
    );
    let served = header("x-switchyard-provider");
    let provider = match served.as_str() {
        "demo/steady" => &providers.steady,
        _ => &providers.flaky,
    };
    let _ = response.into_body().collect().await?;
    if let Some(sent) = provider.last_request() {
        println!(
            "   {served} received the system prompt {}",
            sent.body["messages"][0]["content"]
        );
    }
    Ok(())
}

/// Section 13: route `smart` scores prompts with the shipped complexity model.
async fn scorer_story(
    client: &DemoClient,
    base: &str,
    n: &mut u32,
) -> Result<(), Box<dyn std::error::Error>> {
    section(
        "13. Complexity scorers: route `smart` scores each prompt with the shipped Model; >= 60 \
         goes to gpt-4o",
    );
    for prompt in [
        "What is the capital of France?",
        "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with \
         four. She sells the rest at $2 per egg. How much does she make every day?",
        "Prove step by step that the integral of x^2 from 0 to 1 equals 1/3, and derive the \
         error bound of Simpson's rule.",
    ] {
        let body = json!({"model": "smart", "messages": [{"role": "user", "content": prompt}], "max_tokens": 64});
        let headers = post(client, base, n, "/v1/chat/completions", "smart", body).await?;
        let score = header_text(&headers, "x-switchyard-complexity");
        println!("       x-switchyard-complexity: {score:>3}   {prompt:.48}...");
    }
    Ok(())
}

fn demo_behavior() -> Behavior {
    Behavior {
        reply: "Hello! This answer comes from a simulated provider.".into(),
        chunk_delay: Duration::from_millis(5),
        ..Behavior::default()
    }
}

fn section(title: &str) {
    println!("\n{title}");
    columns();
}

fn columns() {
    println!(
        "   {:<3} {:<6} {:<28} {:>8} {:>6} {:>13} {:>11} {:>8}",
        "#", "route", "served by", "attempts", "status", "tokens in/out", "cost USD", "ms"
    );
}

/// Loads the demo manifests, points the pool at the simulated providers and writes them to a
/// fresh directory that the sidecar then serves (and watches) like any other.
fn write_manifests(
    source: Option<&Path>,
    providers: &Providers,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut loaded = Manifests::default();
    let default = Path::new("examples/demo");
    match source {
        Some(path) => loaded = manifests::load(&[path.to_path_buf()])?,
        None if default.is_dir() => loaded = manifests::load(&[default.to_path_buf()])?,
        None => {
            for (name, text) in BUILT_IN {
                loaded.add_str(Path::new(name), text)?;
            }
        }
    }
    for pool in &mut loaded.pools {
        for provider in &mut pool.spec.providers {
            let url = match provider.name.as_str() {
                "flaky" => providers.flaky.base_url(),
                "steady" => providers.steady.base_url(),
                "slow" => providers.slow.base_url(),
                _ => continue,
            };
            provider.base_url = Some(url);
        }
    }
    let dir = std::env::temp_dir().join(format!("switchyard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Model scorers' files go beside the rewritten manifests: the shipped model, which the binary
    // carries so the demo runs outside a checkout too.
    for route in &mut loaded.routes {
        if let Some(source) = route
            .spec
            .complexity
            .as_mut()
            .and_then(|c| c.model.as_mut())
            .filter(|m| m.file.is_some())
        {
            std::fs::write(dir.join(SHIPPED_MODEL_FILE), SHIPPED_MODEL)?;
            source.file = Some(SHIPPED_MODEL_FILE.into());
        }
    }
    std::fs::write(dir.join("demo.yaml"), loaded.to_yaml())?;
    Ok(dir)
}

async fn send(
    client: &DemoClient,
    base: &str,
    n: &mut u32,
    model: &str,
    prompt: &str,
) -> Result<http::HeaderMap, Box<dyn std::error::Error>> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64});
    post(client, base, n, "/v1/chat/completions", model, body).await
}

/// Sends `body` to `path`, prints one row of the demo's table and returns the answer's headers.
async fn post(
    client: &DemoClient,
    base: &str,
    n: &mut u32,
    path: &str,
    model: &str,
    body: Value,
) -> Result<http::HeaderMap, Box<dyn std::error::Error>> {
    *n += 1;
    let request = http::Request::post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer app-placeholder-key")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let started = Instant::now();
    let response = client.request(request).await?;
    let header = |name: &str| header_text(response.headers(), name);
    let (served, attempts, status) = (
        format!(
            "{} {}",
            header("x-switchyard-provider"),
            header("x-switchyard-model")
        ),
        header("x-switchyard-attempts"),
        response.status().as_u16(),
    );
    let retry_after = header("retry-after");
    let (head, body) = response.into_parts();
    let body: Value =
        serde_json::from_slice(&body.collect().await?.to_bytes()).unwrap_or(Value::Null);
    let ms = started.elapsed().as_millis();
    // A Responses API answer names its usage fields differently.
    let usage = &responses_usage(&body["usage"]);
    let (input, output) = (
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
    );
    let cost = estimate_cost(&served, usage);
    println!(
        "   {n:<3} {model:<6} {served:<28} {attempts:>8} {status:>6} {:>13} {:>11} {ms:>8}",
        format!("{input}/{output}"),
        format_usd(cost)
    );
    if status != 200 {
        println!(
            "       error {}: {}",
            body["error"]["code"].as_str().unwrap_or("?"),
            body["error"]["message"].as_str().unwrap_or("?")
        );
        if retry_after != "-" {
            println!("       Retry-After: {retry_after} s");
        }
    }
    Ok(head.headers)
}

/// A response header's value, `-` when absent.
fn header_text(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

/// Usage in Chat Completions' names, whichever API answered.
fn responses_usage(usage: &Value) -> Value {
    if usage.get("input_tokens").is_none() {
        return usage.clone();
    }
    json!({
        "prompt_tokens": usage["input_tokens"],
        "completion_tokens": usage["output_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage["input_tokens_details"]["cached_tokens"]},
    })
}

/// The cost the sidecar accounted for this answer, recomputed from the demo's price list so the
/// table can show it per request (the metrics hold the totals).
fn estimate_cost(served: &str, usage: &Value) -> f64 {
    let (input, cached_input, output) = match served.split_whitespace().nth(1) {
        Some("gpt-4o-mini") => (0.15, 0.075, 0.60),
        Some("gpt-4o") => (2.50, 1.25, 10.00),
        Some("deepseek-chat") => (0.27, 0.07, 1.10),
        Some("qwen-plus") => (0.40, 0.40, 1.20),
        Some("text-embedding-3-small") => (0.02, 0.02, 0.0),
        _ => return 0.0,
    };
    let prompt = usage["prompt_tokens"].as_f64().unwrap_or(0.0);
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_f64()
        .unwrap_or(0.0);
    let completion = usage["completion_tokens"].as_f64().unwrap_or(0.0);
    ((prompt - cached) * input + cached * cached_input + completion * output) / 1e6
}

async fn stream(
    client: &DemoClient,
    base: &str,
    n: &mut u32,
) -> Result<(), Box<dyn std::error::Error>> {
    *n += 1;
    let body = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "Stream a greeting."}]});
    let request = http::Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let started = Instant::now();
    let response = client.request(request).await?;
    let header = |name: &str| header_text(response.headers(), name);
    let served = format!(
        "{} {}",
        header("x-switchyard-provider"),
        header("x-switchyard-model")
    );
    let (attempts, status) = (header("x-switchyard-attempts"), response.status().as_u16());
    let mut body = response.into_body();
    let (mut first, mut events, mut text) = (None, 0, String::new());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        first.get_or_insert_with(|| started.elapsed());
        for line in String::from_utf8_lossy(&data).lines() {
            let Some(json) = line.strip_prefix("data: ") else {
                continue;
            };
            events += 1;
            if let Ok(chunk) = serde_json::from_str::<Value>(json) {
                text.push_str(
                    chunk["choices"][0]["delta"]["content"]
                        .as_str()
                        .unwrap_or(""),
                );
            }
        }
    }
    // The same columns as the other rows; tokens and cost are in the totals below.
    println!(
        "   {n:<3} {:<6} {served:<28} {attempts:>8} {status:>6} {:>13} {:>11} {:>8}",
        "chat",
        "-",
        "-",
        started.elapsed().as_millis()
    );
    println!(
        "       first byte after {} ms, {events} events in {} ms: {text:?}",
        first.unwrap_or_default().as_millis(),
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Prints requests by provider and outcome, circuit states, tokens and cost from the metrics text.
fn print_totals(metrics: &[u8]) {
    let text = String::from_utf8_lossy(metrics);
    for line in text.lines() {
        let shown = [
            "switchyard_requests_total",
            "switchyard_failovers_total",
            "switchyard_circuit_open",
            "switchyard_tokens_total",
            "switchyard_cost_usd_total",
            "switchyard_budget_refusals_total",
            "switchyard_budget_remaining",
        ];
        if !shown.iter().any(|m| line.starts_with(m)) {
            continue;
        }
        match line.rsplit_once(' ') {
            Some((series, value)) if series.starts_with("switchyard_cost_usd_total") => {
                let usd = value.parse().map_or_else(|_| value.to_string(), format_usd);
                println!("   {series} {usd}");
            }
            _ => println!("   {line}"),
        }
    }
}

/// Dollars as a short decimal: `$0.0000468`, not `0.00004680000000000001` (float noise).
fn format_usd(usd: f64) -> String {
    let fixed = format!("{usd:.10}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("${trimmed}")
}

#[cfg(test)]
mod tests {
    use super::format_usd;

    #[test]
    fn costs_print_as_short_decimals() {
        assert_eq!(format_usd(0.000_046_800_000_000_000_01), "$0.0000468");
        assert_eq!(format_usd(1.5), "$1.5");
        assert_eq!(format_usd(0.0), "$0");
    }
}
