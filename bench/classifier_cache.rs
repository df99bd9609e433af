//! What a `Route` scorer's cache hit costs a request (issue 12, "the Route scorer adds nothing on
//! a cache hit"): the hit path of `proxy::score::classify` run as a request runs it: the user text
//! taken from the parsed request (`score::user_text`, at most its last 8 KiB), its key
//! (`Classifier::key`, SHA-256) and the look-up in a cache already holding 10,000 scores
//! (`Classifier::cached`, a Mutex'd LRU). Each part is also timed alone. Prompts of 1 KB and
//! 32 KB of English text in one user message (and a system message the classifier never sees).
//!
//! ```sh
//! cargo bench -p switchyard-sidecar --bench classifier_cache
//! CLASSIFIER_BENCH_ITERS=50000 cargo bench -p switchyard-sidecar --bench classifier_cache
//! ```

// Wall-clock timing of synchronous code: no runtime to pause.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::time::Instant as Clock;

use serde_json::{Map, Value, json};
use switchyard_crds::table::ClassifierRoute;
use switchyard_sidecar::proxy::score::user_text;
use switchyard_sidecar::table::scorer::Classifier;
use tokio::time::Instant;

/// p50 / p99 / max in µs of `iterations` timed calls of `f`, after a tenth as many untimed.
fn time(iterations: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut micros: Vec<f64> = (0..iterations)
        .map(|_| {
            let start = Clock::now();
            f();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), micros[micros.len() - 1])
}

/// English text cut to `bytes` at a character boundary.
fn text(bytes: usize) -> String {
    let unit = "Explain step by step why the integral of x^2 from 0 to 1 is one third, and what \
                the trapezoid rule would give with four intervals. ";
    let mut text = unit.repeat(bytes / unit.len() + 1);
    text.truncate(bytes);
    text
}

fn request(prompt: &str) -> Map<String, Value> {
    let hub = json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt},
        ],
    });
    let Value::Object(hub) = hub else {
        unreachable!("an object literal")
    };
    hub
}

fn main() {
    let iterations: usize = std::env::var("CLASSIFIER_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let classifier = Classifier::new(ClassifierRoute {
        model: "classifier".into(),
        timeout_ms: 2_000,
        cache_ttl_ms: 3_600_000,
    });
    let now = Instant::now();
    // A full cache: the look-up is in a table of CLASSIFIER_CACHE_ENTRIES scores, not of one.
    for i in 0..10_000 {
        classifier.remember(Classifier::key(&format!("prompt {i}")), 50, now);
    }
    println!("| part | prompt | calls | p50 µs | p99 µs | max µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for bytes in [1024, 32 * 1024] {
        let hub = request(&text(bytes));
        let sent = user_text(&hub);
        let key = Classifier::key(&sent);
        classifier.remember(key, 73, now);
        assert_eq!(classifier.cached(&key, Instant::now()), Some(73));
        let row = |part: &str, (p50, p99, max): (f64, f64, f64)| {
            println!("| {part} | {bytes} B | {iterations} | {p50:.2} | {p99:.2} | {max:.2} |");
        };
        row(
            "hit: user_text + key + cached",
            time(iterations, || {
                let text = user_text(black_box(&hub));
                let key = Classifier::key(&text);
                black_box(classifier.cached(&key, Instant::now()));
            }),
        );
        row(
            "user_text",
            time(iterations, || {
                black_box(user_text(black_box(&hub)));
            }),
        );
        row(
            &format!("key (SHA-256 of {} B)", sent.len()),
            time(iterations, || {
                black_box(Classifier::key(black_box(&sent)));
            }),
        );
        row(
            "cached (lock + LRU get)",
            time(iterations, || {
                black_box(classifier.cached(black_box(&key), Instant::now()));
            }),
        );
    }
}
