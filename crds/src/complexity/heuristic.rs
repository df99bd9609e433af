//! `Heuristic`: the documented hand-written score (docs/reference/complexity.md): one
//! multi-pattern search, a word count and a line scan over the text, and no allocation.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, Input, MatchKind};

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
/// Every literal the score looks for: [`REASONING`], then [`MATH`], then a code fence and a
/// spaced equals sign. Bit `i` of [`marks_present`]'s answer is `MARKS[i]`.
const MARKS: [&str; 20] = {
    let mut marks = ["```"; 20];
    let mut i = 0;
    while i < REASONING.len() + MATH.len() {
        marks[i] = if i < REASONING.len() {
            REASONING[i]
        } else {
            MATH[i - REASONING.len()]
        };
        i += 1;
    }
    marks[19] = " = ";
    marks
};
const REASONING_BITS: u32 = (1 << REASONING.len()) - 1;
const MATH_BITS: u32 = ((1 << MATH.len()) - 1) << REASONING.len();
const FENCE_BIT: u32 = 1 << 18;
const EQUALS_BIT: u32 = 1 << 19;
const ALL_BITS: u32 = (1 << MARKS.len()) - 1;
/// The longest mark's length in bytes (`"step by step"`).
const LONGEST: usize = 12;

/// The marks with letters in them, by bit: the only ones lower-casing concerns.
const WORD_BITS: u32 = ALL_BITS & !(FENCE_BIT | EQUALS_BIT | SYMBOL_BITS);
/// `∑` and `∫`, the first two [`MATH`] marks.
const SUM_BIT: u32 = 1 << REASONING.len();
const INTEGRAL_BIT: u32 = SUM_BIT << 1;
const SYMBOL_BITS: u32 = SUM_BIT | INTEGRAL_BIT;

/// One searcher for the 16 marks made of letters ([`WORD_BITS`]), and each pattern's bit.
/// Leftmost-first lets aho-corasick use its SIMD (Teddy) prefilter; no mark is a prefix of
/// another, so restarting one byte after each match start still finds every mark that occurs.
/// The text is lower-cased for it ([`marks_present`]) rather than the searcher built
/// `ascii_case_insensitive`, which measured three times slower. The four marks without letters
/// (`∑`, `∫`, a fence, ` = `) are found by [`symbols_present`] instead: with them in the searcher,
/// its three-byte prefilter (` = ` starts with a space, the commonest byte) flagged so many
/// candidates that the search took 11 µs for 32 KB of MMLU text; without them 2.8 µs, and the
/// one memchr pass they need about 1 µs.
static WORD_SEARCHER: LazyLock<(AhoCorasick, Vec<u32>)> = LazyLock::new(|| {
    let (bits, words): (Vec<u32>, Vec<&str>) = (0..MARKS.len())
        .filter(|i| WORD_BITS & 1 << i != 0)
        .map(|i| (1u32 << i, MARKS[i]))
        .unzip();
    let searcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(words)
        .expect("the marks build a searcher");
    (searcher, bits)
});

/// The text is lower-cased into a stack buffer this long at a time.
const CHUNK: usize = 4096;

/// Which [`MARKS`] occur in the text, its ASCII letters lower-cased, as a bit set.
///
/// Lower-casing only ASCII letters finds exactly what `to_lowercase()` then `contains` would:
/// only ASCII letters lower-case to ASCII, apart from the Kelvin sign (to `k`, in none of the
/// words) and `İ` (to `i` and a combining dot, which no word has after an `i`). A test checks
/// this against that definition.
fn marks_present(text: &[u8]) -> u32 {
    symbols_present(text) | words_present(text)
}

/// Which of the marks made of letters occur, searched in the text lower-cased a chunk at a time.
fn words_present(text: &[u8]) -> u32 {
    let (searcher, bits) = &*WORD_SEARCHER;
    let mut found = 0u32;
    let mut lower = [0u8; CHUNK];
    let mut start = 0;
    loop {
        let end = (start + CHUNK).min(text.len());
        let chunk = &mut lower[..end - start];
        for (l, b) in chunk.iter_mut().zip(&text[start..end]) {
            *l = b.to_ascii_lowercase();
        }
        let mut at = 0;
        while let Some(m) = searcher.find(Input::new(&*chunk).range(at..)) {
            found |= bits[m.pattern().as_usize()];
            at = m.start() + 1;
        }
        if end == text.len() || found == WORD_BITS {
            return found;
        }
        // The next chunk starts early enough to hold whole any mark that crosses this boundary.
        start = end - (LONGEST - 1);
    }
}

/// Which of `∑`, `∫`, a fence and ` = ` occur: one memchr pass for their bytes `=`, `` ` `` and
/// 0xE2 (the first byte of `∑` and `∫`), each hit checked in place. None has a letter, so the
/// text needs no lower-casing.
fn symbols_present(text: &[u8]) -> u32 {
    const SUM: &[u8] = "∑".as_bytes();
    const INTEGRAL: &[u8] = "∫".as_bytes();
    let all = SYMBOL_BITS | FENCE_BIT | EQUALS_BIT;
    let mut found = 0u32;
    for at in memchr::memchr3_iter(b'=', b'`', SUM[0], text) {
        let rest = &text[at..];
        found |= match text[at] {
            b'=' if at > 0 && text[at - 1] == b' ' && text.get(at + 1) == Some(&b' ') => EQUALS_BIT,
            b'`' if rest.starts_with(b"```") => FENCE_BIT,
            _ if rest.starts_with(SUM) => SUM_BIT,
            _ if rest.starts_with(INTEGRAL) => INTEGRAL_BIT,
            _ => 0,
        };
        if found == all {
            break;
        }
    }
    found
}

/// What `char::is_whitespace` says of an ASCII byte (vertical tab included, which
/// `u8::is_ascii_whitespace` leaves out), as 1 or 0: a space or `\t` … `\r`. Bitwise `|`, not
/// `||`: no branch, so that a loop of it vectorises.
fn space(b: u8) -> u8 {
    u8::from(b == b' ') | u8::from(b.wrapping_sub(b'\t') < 5)
}

/// `text.split_whitespace().count()`, counting the starts of words: 64 bytes at a time where
/// they and the byte before are ASCII, a character at a time elsewhere.
fn count_words(text: &str) -> usize {
    const BLOCK: usize = 64;
    let bytes = text.as_bytes();
    let (mut words, mut after_space, mut i) = (0usize, true, 0usize);
    while i < bytes.len() {
        // Each of 64 bytes compared with the byte before it, both as whole arrays: the compiler
        // compares 16 pairs per instruction (4 µs for 32 KB; comparing `block[1..]` with
        // `block[..63]`, 63 pairs, it vectorised poorly: 8 µs). Counting in a u8 (at most 64).
        let window = i
            .checked_sub(1)
            .and_then(|before| bytes.get(before..i + BLOCK))
            .filter(|w| w.is_ascii());
        if let Some(window) = window {
            let before: &[u8; BLOCK] = window[..BLOCK].try_into().expect("65 bytes");
            let block: &[u8; BLOCK] = window[1..].try_into().expect("65 bytes");
            let starts = block
                .iter()
                .zip(before)
                .fold(0u8, |n, (&b, &before)| n + ((space(b) ^ 1) & space(before)));
            // The byte before the block is ASCII, so comparing with it is what `after_space`
            // would say of it.
            words += usize::from(starts);
            after_space = space(block[BLOCK - 1]) == 1;
            i += BLOCK;
            continue;
        }
        let c = text[i..].chars().next().expect("i is at a char boundary");
        i += c.len_utf8();
        let is_space = c.is_whitespace();
        words += usize::from(!is_space & after_space);
        after_space = is_space;
    }
    words
}

/// Whether a line looks like code: it ends in `;`, `{` or `}` (trailing whitespace aside) or,
/// trimmed so, starts with four spaces.
fn is_code_line(line: &str) -> bool {
    let t = line.trim_end();
    t.ends_with(';') || t.ends_with('{') || t.ends_with('}') || t.starts_with("    ")
}

/// Whether at least three lines look like code ([`is_code_line`]). Rather than visiting every
/// line, it visits only those holding a `;`, `{` or `}`, then those starting with four spaces,
/// both rare in prose and found by memchr/memmem; a line counts once.
fn three_code_lines(text: &str) -> bool {
    let bytes = text.as_bytes();
    let line_start = |at: usize| memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |n| n + 1);
    let line_end = |at: usize| memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |n| at + n);
    let mut found = [usize::MAX; 3];
    let mut count = 0;
    let mut add = |start: usize| {
        if !found[..count].contains(&start) {
            found[count] = start;
            count += 1;
        }
        count == found.len()
    };
    let mut at = 0;
    while let Some(hit) = memchr::memchr3(b';', b'{', b'}', &bytes[at..]) {
        let start = line_start(at + hit);
        let end = line_end(at + hit);
        if is_code_line(&text[start..end]) && add(start) {
            return true;
        }
        at = (end + 1).min(bytes.len());
    }
    let indented = std::iter::once(0)
        .filter(|_| bytes.starts_with(b"    "))
        .chain(memchr::memmem::find_iter(bytes, b"\n    ").map(|n| n + 1));
    for start in indented {
        if is_code_line(&text[start..line_end(start)]) && add(start) {
            return true;
        }
    }
    false
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
    let bytes = prompt.as_bytes();
    let present = marks_present(bytes);
    let words = count_words(prompt);

    let length = if words > 16 {
        (12.0 * (words as f64 / 16.0).log2()).min(40.0)
    } else {
        0.0
    };
    let code = if present & FENCE_BIT != 0 || three_code_lines(prompt) {
        15.0
    } else {
        0.0
    };
    let reasoning = (f64::from((present & REASONING_BITS).count_ones()) * 5.0).min(25.0);
    let math_symbols = present & EQUALS_BIT != 0 || memchr::memchr(b'^', bytes).is_some();
    let math = if math_symbols || present & MATH_BITS != 0 {
        10.0
    } else {
        0.0
    };
    let questions = if memchr::memchr_iter(b'?', bytes).nth(1).is_some() {
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
    fn reference_marks(prompt: &str) -> u32 {
        let lower = prompt.to_lowercase();
        MARKS
            .iter()
            .enumerate()
            .filter(|(_, mark)| lower.contains(*mark))
            .fold(0, |set, (i, _)| set | 1 << i)
    }

    #[test]
    fn the_marks_are_the_reasoning_and_math_words_then_fence_and_equals() {
        let listed: Vec<&str> = REASONING.iter().chain(&MATH).copied().collect();
        assert_eq!(listed, MARKS[..18]);
        assert_eq!(MARKS[FENCE_BIT.trailing_zeros() as usize], "```");
        assert_eq!(MARKS[EQUALS_BIT.trailing_zeros() as usize], " = ");
        assert_eq!(MARKS.iter().map(|m| m.len()).max(), Some(LONGEST));
        for (a, b) in MARKS.iter().flat_map(|a| MARKS.iter().map(move |b| (a, b))) {
            assert!(a == b || !b.starts_with(a), "{a:?} is a prefix of {b:?}");
        }
    }

    #[test]
    fn the_searcher_has_the_marks_with_letters_and_symbols_present_the_others() {
        for (i, mark) in MARKS.iter().enumerate() {
            let letters = mark.bytes().any(|b| b.is_ascii_alphabetic());
            assert_eq!(WORD_BITS & 1 << i != 0, letters, "{mark:?}");
            // Every mark is found by the one that looks for it, and only by it.
            let text = format!("x{mark}x");
            let (words, symbols) = (
                words_present(text.as_bytes()),
                symbols_present(text.as_bytes()),
            );
            assert_eq!(if letters { words } else { symbols }, 1 << i, "{mark:?}");
            assert_eq!(if letters { symbols } else { words }, 0, "{mark:?}");
        }
    }

    #[test]
    fn a_mark_across_a_chunk_boundary_is_found() {
        for mark in MARKS {
            for before in CHUNK - mark.len()..=CHUNK {
                let text = format!(
                    "{}{}{}",
                    "x".repeat(before),
                    mark.to_uppercase(),
                    "y".repeat(50)
                );
                let bit = 1 << MARKS.iter().position(|m| *m == mark).unwrap();
                assert_eq!(marks_present(text.as_bytes()), bit, "{mark:?} at {before}");
            }
        }
    }

    proptest! {
        #[test]
        fn marks_match_as_in_the_lower_cased_text(
            parts in proptest::collection::vec(prop_oneof![
                Just("PROVE"), Just("Design"), Just("step BY step"), Just("LeMmA"), Just("İ"),
                Just("\u{212a}"), Just("trade-"), Just("off"), Just("DESİGN"), Just("ß"),
                Just("optimiZ"), Just("∑"), Just(" "), Just("é"), Just("x"), Just("ANALYSE"),
                Just("``"), Just("`"), Just("="), Just("derivEXPLAIN WHY"), Just("∫"),
            ], 0..12),
            padding in 0usize..2 * CHUNK,
        ) {
            let text = format!("{}{}", "z".repeat(padding), parts.concat());
            prop_assert_eq!(marks_present(text.as_bytes()), reference_marks(&text), "{:?}", text);
        }

        #[test]
        fn three_code_lines_counts_as_the_lines_definition(
            parts in proptest::collection::vec(prop_oneof![
                Just("\n"), Just("    "), Just(" "), Just(";"), Just("{"), Just("}"), Just("x"),
                Just("\r"), Just("\u{a0}"), Just("é"), Just("\t"),
            ], 0..40)
        ) {
            let text = parts.concat();
            let reference = text.lines().filter(|l| is_code_line(l)).count() >= 3;
            prop_assert_eq!(three_code_lines(&text), reference, "{:?}", text);
        }

        #[test]
        fn words_are_counted_as_split_whitespace_counts_them(
            text in "[a \t\n\u{b}\u{c}\r\u{85}\u{a0}\u{3000}é数]{0,40}([ab \n]{0,200})[a \u{a0}]{0,8}"
        ) {
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
