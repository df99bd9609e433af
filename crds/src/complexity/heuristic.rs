//! `Heuristic`: the documented hand-written score (docs/reference/complexity.md), a few scans of
//! the text and no allocation.

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
/// The ASCII words of [`REASONING`] and [`MATH`], in that order: bit `i` of [`words_present`]'s
/// answer is `WORDS[i]`.
const WORDS: [&[u8]; 16] = [
    b"prove",
    b"derive",
    b"analyze",
    b"analyse",
    b"explain why",
    b"step by step",
    b"trade-off",
    b"tradeoff",
    b"optimiz",
    b"design",
    b"refactor",
    b"debug",
    b"equation",
    b"integral",
    b"theorem",
    b"lemma",
];
const REASONING_BITS: u32 = (1 << REASONING.len()) - 1;

/// For each byte, the words of [`WORDS`] whose byte `at` it is, in either case.
const fn table(at: usize) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < WORDS.len() {
        let b = WORDS[i][at];
        table[b as usize] |= 1 << i;
        table[b.to_ascii_uppercase() as usize] |= 1 << i;
        i += 1;
    }
    table
}
const FIRST: [u32; 256] = table(0);
const SECOND: [u32; 256] = table(1);

/// `text.split_whitespace().count()`, a byte at a time where the text is ASCII (about three
/// times faster than decoding every character).
fn count_words(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut words, mut in_word, mut i) = (0usize, false, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        let space = if b.is_ascii() {
            i += 1;
            // char::is_whitespace on ASCII, vertical tab included (u8::is_ascii_whitespace
            // leaves it out).
            matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
        } else {
            let c = text[i..].chars().next().expect("i is at a char boundary");
            i += c.len_utf8();
            c.is_whitespace()
        };
        words += usize::from(!space & !in_word);
        in_word = !space;
    }
    words
}

/// Which [`WORDS`] occur in the text, case-insensitively, as a bit set: one pass over the bytes
/// and no lower-cased copy. Matching ASCII words ASCII-case-insensitively on the original bytes
/// finds exactly what `to_lowercase()` then `contains` would: only ASCII letters lower-case to
/// ASCII, apart from the Kelvin sign (to `k`, in none of the words) and `İ` (to `i` and a
/// combining dot, which no word has after an `i`). A test checks this against that definition.
fn words_present(text: &[u8]) -> u32 {
    let mut found = 0u32;
    // Two table lookups per byte rule out all but a few positions (the words' first two letters
    // together are rare) before any comparison.
    for (i, pair) in text.windows(2).enumerate() {
        let mut candidates = FIRST[usize::from(pair[0])] & SECOND[usize::from(pair[1])] & !found;
        while candidates != 0 {
            let w = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let word = WORDS[w];
            if text
                .get(i..i + word.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(word))
            {
                found |= 1 << w;
            }
        }
    }
    found
}

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
    let present = words_present(prompt.as_bytes());
    let words = count_words(prompt);

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
    let reasoning = (f64::from((present & REASONING_BITS).count_ones()) * 5.0).min(25.0);
    let math_symbols = prompt.contains(" = ") || prompt.contains('^');
    // ∑ and ∫ have no case; the MATH words are the bits above REASONING's.
    let math_words = prompt.contains(MATH[0]) || prompt.contains(MATH[1]);
    let math = if math_symbols || math_words || present > REASONING_BITS {
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
    use proptest::prelude::*;

    /// The definition: substrings of the lower-cased text.
    fn reference_words(prompt: &str) -> u32 {
        let lower = prompt.to_lowercase();
        let all = REASONING.iter().chain(&MATH[2..]);
        all.enumerate()
            .filter(|(_, w)| lower.contains(*w))
            .fold(0, |set, (i, _)| set | 1 << i)
    }

    #[test]
    fn the_word_list_is_reasoning_then_math_words() {
        let listed: Vec<&[u8]> = REASONING
            .iter()
            .chain(&MATH[2..])
            .map(|w| w.as_bytes())
            .collect();
        assert_eq!(listed, WORDS);
    }

    proptest! {
        #[test]
        fn words_match_as_in_the_lower_cased_text(
            parts in proptest::collection::vec(prop_oneof![
                Just("PROVE"), Just("Design"), Just("step BY step"), Just("LeMmA"), Just("İ"),
                Just("\u{212a}"), Just("trade-"), Just("off"), Just("DESİGN"), Just("ß"),
                Just("optimiZ"), Just("∑"), Just(" "), Just("é"), Just("x"), Just("ANALYSE"),
            ], 0..12)
        ) {
            let text: String = parts.concat();
            prop_assert_eq!(words_present(text.as_bytes()), reference_words(&text), "{:?}", text);
        }

        #[test]
        fn words_are_counted_as_split_whitespace_counts_them(text in "[a \t\n\u{b}\u{c}\r\u{85}\u{a0}\u{3000}é数]{0,40}") {
            prop_assert_eq!(count_words(&text), text.split_whitespace().count());
        }
    }

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
