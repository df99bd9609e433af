//! `Heuristic`: the documented hand-written score (docs/reference/complexity.md), a few scans of
//! the text and one lower-cased copy.

use super::{MAX_SCORE, Scorer};

const REASONING: [&str; 12] = [
    "prove",
    "derive",
    "analyze",
    "analyse",
    "explain why",
    "step by step",
    "trade-off",
    "tradeoff",
    "optimiz",
    "design",
    "refactor",
    "debug",
];
const MATH: [&str; 6] = ["∑", "∫", "equation", "integral", "theorem", "lemma"];

/// The hand-written score: length, code, reasoning words, math and questions, summed and capped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heuristic;

impl Scorer for Heuristic {
    fn score(&self, prompt: &str) -> u8 {
        score(prompt)
    }
}

/// Scores the prompt text from 0 (trivial) to [`MAX_SCORE`] (complex).
pub fn score(prompt: &str) -> u8 {
    let lower = prompt.to_lowercase();
    let words = prompt.split_whitespace().count();

    let length = if words > 16 {
        (12.0 * (words as f64 / 16.0).log2()).min(40.0)
    } else {
        0.0
    };
    let code_lines = prompt
        .lines()
        .filter(|l| {
            let t = l.trim_end();
            t.ends_with(';') || t.ends_with('{') || t.ends_with('}') || t.starts_with("    ")
        })
        .count();
    let code = if prompt.contains("```") || code_lines >= 3 {
        15.0
    } else {
        0.0
    };
    let reasoning =
        (REASONING.iter().filter(|w| lower.contains(*w)).count() as f64 * 5.0).min(25.0);
    let math_symbols = prompt.contains(" = ") || prompt.contains('^');
    let math = if math_symbols || MATH.iter().any(|w| lower.contains(w)) {
        10.0
    } else {
        0.0
    };
    let questions = if prompt.matches('?').count() >= 2 {
        10.0
    } else {
        0.0
    };

    (length + code + reasoning + math + questions)
        .round()
        .min(f64::from(MAX_SCORE)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_talk_scores_low() {
        assert!(score("hi there, how are you?") < 10);
        assert_eq!(score(""), 0);
    }

    #[test]
    fn hard_prompts_score_high() {
        let prompt = "Prove step by step that the integral of x^2 from 0 to 1 equals 1/3, then \
            analyze the trade-off between Simpson's rule and the trapezoid rule. Why does one \
            converge faster? What would you optimize first?\n```python\ndef f(x):\n    return x**2\n```"
            .repeat(3);
        let s = score(&prompt);
        assert!(s >= 60, "score {s}");
        assert!(s <= 100);
    }

    #[test]
    fn golden_scores() {
        let golden = [
            ("hi there, how are you?", 0),
            ("What is the capital of France?", 0),
            ("Prove that there are infinitely many primes.", 5),
            (
                "Explain why the sky is blue. Then analyze the trade-off of x^2 + y^2 = 1? Why?",
                36,
            ),
            ("```rust\nfn main() {}\n```", 15),
        ];
        let actual: Vec<(&str, u8)> = golden.iter().map(|(p, _)| (*p, score(p))).collect();
        assert_eq!(actual, golden);
    }

    #[test]
    fn longer_prompts_score_higher() {
        let short = "please summarize this text ".repeat(5);
        let long = "please summarize this text ".repeat(200);
        assert!(score(&long) > score(&short));
    }
}
