//! Complexity scorer speed: `Heuristic` and the shipped `Model` on 1 KB, 8 KB and 32 KB prompts
//! (MMLU questions from data/routellm/mmlu.csv, concatenated in file order and cut at a character
//! boundary), many timed calls each, p50 / p99 / max, plus the bytes a call allocates (jemalloc's
//! per-thread counter). Run: `cargo bench -p switchyard-crds --bench complexity` (release profile).
//! `COMPLEXITY_BENCH_ITERS` sets the calls per case (default 5000).

// No async runtime here (switchyard-crds has none): the wall clock is what this measures.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use switchyard_crds::complexity::dataset;
use switchyard_crds::complexity::{Heuristic, Model, Scorer};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes this thread has allocated so far (jemalloc's `thread.allocatedp`).
fn allocated() -> u64 {
    tikv_jemalloc_ctl::thread::allocatedp::read()
        .expect("jemalloc is the allocator")
        .get()
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// MMLU prompts joined by blank lines up to `bytes`, cut back to a character boundary.
fn prompt(questions: &[String], bytes: usize) -> String {
    let mut text = String::new();
    for q in questions.iter().cycle() {
        if text.len() >= bytes {
            break;
        }
        text.push_str(q);
        text.push_str("\n\n");
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let iterations: usize = std::env::var("COMPLEXITY_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rows = dataset::read(&repo("data/routellm/mmlu.csv")).expect("data reads");
    let questions: Vec<String> = rows.into_iter().map(|r| r.prompt).collect();
    let text = std::fs::read(repo("data/complexity/model.json")).expect("model file");
    let model = Model::load(&text).expect("the shipped model loads");
    let scorers: [(&str, &dyn Scorer); 2] = [("Heuristic", &Heuristic), ("Model", &model)];
    println!("| scorer | prompt | calls | p50 µs | p99 µs | max µs | bytes allocated/call |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for bytes in [1024, 8 * 1024, 32 * 1024] {
        let prompt = prompt(&questions, bytes);
        for (name, scorer) in scorers {
            for _ in 0..iterations / 10 {
                black_box(scorer.score(black_box(&prompt)));
            }
            let before = allocated();
            black_box(scorer.score(black_box(&prompt)));
            let bytes = allocated() - before;
            let mut micros: Vec<f64> = (0..iterations)
                .map(|_| {
                    let start = Instant::now();
                    black_box(scorer.score(black_box(&prompt)));
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            micros.sort_by(f64::total_cmp);
            println!(
                "| {name} | {} B | {iterations} | {:.1} | {:.1} | {:.1} | {bytes} |",
                prompt.len(),
                percentile(&micros, 0.5),
                percentile(&micros, 0.99),
                micros[micros.len() - 1],
            );
        }
    }
}
