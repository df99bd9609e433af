//! Prompt template cost (issue 12): parsing a table's templates (once per table swap) and
//! rendering the DESIGN §7 template for one target (once per target a request may go to, before
//! its first attempt), each timed over many calls: p50 / p99 / max. Run:
//! `cargo bench -p switchyard-crds --bench templates` (release profile). `TEMPLATE_BENCH_ITERS`
//! sets the calls per case (default 20000).

// No async runtime here (switchyard-crds has none): the wall clock is what this measures.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use switchyard_crds::template::{Renderer, compile};
use switchyard_crds::v1alpha1::{Api, PromptTemplate};

const TEMPLATE: &str = r#"apiVersion: switchyard.dev/v1alpha1
kind: PromptTemplate
metadata: {name: support}
spec:
  variables: [{name: product, default: Acme}, {name: tier, default: standard}]
  variants:
    - match: {api: Anthropic}
      system: {prepend: "<role>You support {{ product }} customers ({{ tier }} tier).</role>"}
    - match: {}
      system:
        prepend: "You support {{ product }} customers.{% if tier == 'gold' %} Be extra careful.{% endif %}"
        append: "Answer in under 200 words."
"#;

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:>7.2} µs  p99 {:>7.2} µs  max {:>8.2} µs",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6
    )
}

fn time(iters: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..iters / 10 {
        f();
    }
    (0..iters)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

fn main() {
    let iters: usize = std::env::var("TEMPLATE_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let template: PromptTemplate = serde_yaml::from_str(TEMPLATE).expect("the template parses");
    let templates = BTreeMap::from([("support".to_string(), compile("support", &template.spec))]);

    let parse = time(iters / 10, || {
        black_box(Renderer::new(black_box(&templates)));
    });
    println!("parse (per table swap)       {}", percentiles(parse));

    let (renderer, errors) = Renderer::new(&templates);
    assert!(errors.is_empty());
    let defaults = BTreeMap::new();
    let given = BTreeMap::from([
        ("product".to_string(), "Widgets".to_string()),
        ("tier".to_string(), "gold".to_string()),
    ]);
    for (name, api, upstream, vars) in [
        (
            "render OpenAI, defaults    ",
            Api::OpenAI,
            "p/openai",
            &defaults,
        ),
        (
            "render OpenAI, vars header ",
            Api::OpenAI,
            "p/openai",
            &given,
        ),
        (
            "render Anthropic, defaults ",
            Api::Anthropic,
            "p/anthropic",
            &defaults,
        ),
    ] {
        let samples = time(iters, || {
            let out = renderer.render("support", api, upstream, "m", vars);
            black_box(out.expect("renders").expect("a variant"));
        });
        println!("{name}  {}", percentiles(samples));
    }
}
