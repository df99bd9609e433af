//! The prompt complexity score that `minComplexity` rules compare against.
//!
//! The score is a cheap, documented heuristic in 0–100, computed from the prompt text alone (no
//! model: a few scans of the text and one lower-cased copy). It adds up signals that correlate
//! with prompts that need a stronger model:
//!
//! | signal | points |
//! | --- | --- |
//! | length: `12 × log2(words / 16)` for prompts over 16 words | up to 40 |
//! | fenced code (```` ``` ````) or several lines that look like code | 15 |
//! | reasoning words: prove, derive, analyze/analyse, explain why, step by step, trade-off/tradeoff, optimiz(e, ation), design, refactor, debug | 5 each, up to 25 |
//! | math: ` = `, `^`, `∑`, `∫`, "equation", "integral", "theorem", "lemma" | 10 |
//! | several questions (two or more `?`) | 10 |
//!
//! The sum is capped at 100. It is the same in every sidecar and the operator, which is why it
//! lives in this crate.

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

/// The highest score: scores read as a percentage of "as complex as it gets", which is what a
/// rule's `minComplexity` is written against.
pub const MAX_SCORE: u8 = 100;

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
    fn longer_prompts_score_higher() {
        let short = "please summarize this text ".repeat(5);
        let long = "please summarize this text ".repeat(200);
        assert!(score(&long) > score(&short));
    }
}
