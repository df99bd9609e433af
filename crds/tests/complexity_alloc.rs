//! The complexity scorers allocate nothing while scoring: not per word, not per prompt. jemalloc
//! is this test binary's allocator and counts the bytes each thread allocates
//! (`thread.allocatedp`); a score call must leave the count unchanged, for a 1 KB and a 32 KB
//! prompt, ASCII and not.

use std::path::PathBuf;

use switchyard_crds::complexity::{Heuristic, Model, Scorer};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn allocated() -> u64 {
    tikv_jemalloc_ctl::thread::allocatedp::read()
        .expect("jemalloc is the allocator")
        .get()
}

/// Bytes allocated by one call of `scorer` on `prompt`, and its score.
fn allocated_by(scorer: &dyn Scorer, prompt: &str) -> (u64, u8) {
    let before = allocated();
    let score = scorer.score(prompt);
    (allocated() - before, score)
}

fn prompt(bytes: usize) -> String {
    // Words, numbers, symbols, choice lines, code, and characters that lower-case to other
    // lengths (`İ`, the Kelvin sign, `ẞ`): every path of both scanners.
    let unit = "Prove step by step that x^2 = 4 has 2 roots?\nA. 1\nB. 2\n```rust\nfn f() {}\n```\n\
                DESİGN the \u{212a}elvin ẞtraße ∑ ∫ 3.14 trade-off ÜBER naïve 数学 — done. ";
    let mut text = unit.repeat(bytes / unit.len() + 1);
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[test]
fn scoring_allocates_nothing_whatever_the_prompt_length() {
    let text = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/complexity/model.json"),
    )
    .expect("the shipped model exists");
    let model = Model::load(&text).expect("the shipped model loads");
    // The counter itself works: a one-byte allocation moves it.
    let before = allocated();
    drop(std::hint::black_box(vec![0u8; 1]));
    assert!(allocated() > before, "jemalloc's counter does not move");
    // The first score builds the Heuristic's multi-pattern searcher, once per process.
    Heuristic.score("warm up");
    for bytes in [1024, 32 * 1024] {
        let prompt = prompt(bytes);
        for (name, scorer) in [("Heuristic", &Heuristic as &dyn Scorer), ("Model", &model)] {
            let (allocated, score) = allocated_by(scorer, &prompt);
            assert_eq!(
                allocated, 0,
                "{name} allocated {allocated} bytes scoring {bytes} bytes (score {score})"
            );
        }
    }
}
