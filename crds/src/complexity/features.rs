//! The `Model` scorer's features, computed in one pass over the text with no allocation.
//!
//! Tokens are maximal runs of alphanumeric characters, lower-cased, plus every other
//! non-whitespace character as a token of its own (so `=`, `^`, `$` and `?` count). A token's key
//! is FNV-1a (64 bit) over its lower-cased UTF-8 bytes; a bigram's key is FNV-1a over both tokens
//! joined by one space (`"step by"`), computed alongside the second token's own key. A key lands in
//! bucket `key & (buckets - 1)` (buckets are a power of two).

/// FNV-1a's 64-bit offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a (64 bit) of `bytes`, continuing from `state` (start from [`FNV_OFFSET`]).
pub fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state = (state ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    state
}

/// Feeds one character, lower-cased, into a key.
fn feed(state: u64, c: char) -> u64 {
    if c.is_ascii() {
        return (state ^ u64::from(c.to_ascii_lowercase() as u8)).wrapping_mul(FNV_PRIME);
    }
    let mut utf8 = [0u8; 4];
    c.to_lowercase().fold(state, |s, lower| {
        fnv1a(s, lower.encode_utf8(&mut utf8).as_bytes())
    })
}

/// How much of a prompt the scan reads: its last 4 KiB (every prompt of the shipped training data
/// is shorter). The `heuristic` feature still sees the whole prompt, and with it its length.
pub const WINDOW_BYTES: usize = 4096;

/// The part of `prompt` the scan reads: its last [`WINDOW_BYTES`], from a character boundary.
/// Like a classifier's context window, this keeps a long prompt's features in the range the
/// model was fitted on (its counts would otherwise grow past anything in training) and bounds
/// the cost: the scan is per token, about 14 µs per 4 KiB of English.
pub fn window(prompt: &str) -> &str {
    let mut start = prompt.len().saturating_sub(WINDOW_BYTES);
    while !prompt.is_char_boundary(start) {
        start += 1;
    }
    &prompt[start..]
}

/// The numeric features one pass yields, in the order [`Counts::numeric`] holds them.
pub const SCANNED_FEATURES: [&str; 10] = [
    "log_words",
    "digit_share",
    "symbol_share",
    "log_lines",
    "log_questions",
    "code_fence",
    "log_math_ops",
    "log_numbers",
    "log_sentences",
    "choices",
];

/// The characters `log_math_ops` counts (a `match`, not a search of a list, on the scan's path).
fn is_math_op(c: char) -> bool {
    matches!(
        c,
        '=' | '^' | '+' | '*' | '/' | '<' | '>' | '∑' | '∫' | '√' | '≤'
    )
}

/// The numeric features a model file lists, in order: the scanned ones, the Heuristic's score
/// (÷ 100), then each of those but `choices` again under `:open`, zero on multiple-choice prompts.
/// The `:open` copies give open questions (a GSM8K word problem) slopes of their own: what makes
/// a multiple-choice question hard is not what makes a word problem hard.
pub const NUMERIC_FEATURES: [&str; 21] = [
    "log_words",
    "digit_share",
    "symbol_share",
    "log_lines",
    "log_questions",
    "code_fence",
    "log_math_ops",
    "log_numbers",
    "log_sentences",
    "choices",
    "heuristic",
    "log_words:open",
    "digit_share:open",
    "symbol_share:open",
    "log_lines:open",
    "log_questions:open",
    "code_fence:open",
    "log_math_ops:open",
    "log_numbers:open",
    "log_sentences:open",
    "heuristic:open",
];

/// Index of `choices` in both lists.
pub(super) const CHOICES: usize = 9;
/// Index of `heuristic` in [`NUMERIC_FEATURES`].
pub(super) const HEURISTIC: usize = SCANNED_FEATURES.len();

/// The [`NUMERIC_FEATURES`] of a prompt, from its scan and its Heuristic score.
pub fn numeric(counts: &Counts, heuristic: u8) -> [f64; NUMERIC_FEATURES.len()] {
    let mut base = [0f64; SCANNED_FEATURES.len() + 1];
    base[..SCANNED_FEATURES.len()].copy_from_slice(&counts.numeric);
    base[SCANNED_FEATURES.len()] = f64::from(heuristic) / 100.0;
    let open = 1.0 - counts.numeric[CHOICES];
    let mut all = [0f64; NUMERIC_FEATURES.len()];
    all[..base.len()].copy_from_slice(&base);
    let rest = base.iter().enumerate().filter(|&(i, _)| i != CHOICES);
    for (slot, (_, x)) in all[base.len()..].iter_mut().zip(rest) {
        *slot = x * open;
    }
    all
}

/// What one pass over a prompt yields: the n-gram keys went to the visitor, these are the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    /// Unigrams plus bigrams visited.
    pub ngrams: u32,
    /// Raw numeric features, in [`SCANNED_FEATURES`] order.
    pub numeric: [f64; SCANNED_FEATURES.len()],
}

/// Walks the prompt once, calling `visit` with the key of every unigram and (if `bigrams`) every
/// bigram, and returns the counts and numeric features.
pub fn scan(prompt: &str, bigrams: bool, mut visit: impl FnMut(u64)) -> Counts {
    let (mut ngrams, mut words) = (0u32, 0u32);
    let (mut digits, mut symbols, mut visible) = (0u32, 0u32, 0u32);
    let (mut lines, mut questions, mut math) = (0u32, 0u32, 0u32);
    let (mut backticks, mut fence) = (0u32, false);
    // Numbers: alphanumeric tokens that start with a digit. Sentences: `.`, `!` or `?` followed by
    // whitespace or the end. Choice lines: a line that starts with `A.`…`D.` or `A)`…`D)`.
    let (mut numbers, mut sentences, mut choice_lines) = (0u32, 0u32, 0u32);
    let mut line_start = true;
    // The token being read: its key and the key of the bigram it ends, fed the same bytes (plain
    // locals rather than an Option: this loop is the scorer's whole cost).
    let (mut in_word, mut key, mut bigram) = (false, FNV_OFFSET, FNV_OFFSET);
    let mut previous: Option<u64> = None;
    let mut emit = |key: u64, bigram: u64, previous: &mut Option<u64>| {
        visit(key);
        ngrams += 1;
        if bigrams && previous.is_some() {
            visit(bigram);
            ngrams += 1;
        }
        *previous = Some(key);
    };
    let start = |previous: Option<u64>| previous.map_or(FNV_OFFSET, |p| fnv1a(p, b" "));
    let bytes = prompt.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            // The common case, kept tight: a run of ASCII letters and digits.
            if !in_word {
                (in_word, key, bigram) = (true, FNV_OFFSET, start(previous));
                numbers += u32::from(b.is_ascii_digit());
                if line_start
                    && (b'A'..=b'D').contains(&b)
                    && matches!(bytes.get(i + 1), Some(b'.' | b')'))
                {
                    choice_lines += 1;
                }
            }
            line_start = false;
            backticks = 0;
            // The rest of the run in a loop of its own, per byte only the two keys and the digit
            // count: 12.6 -> 11.7 µs for the 4 KiB window of MMLU text (the weight look-ups
            // cost next to nothing: the time is FNV-1a's multiply chain and the branch at each
            // token's end).
            let run = i;
            while let Some(&b) = bytes.get(i).filter(|b| b.is_ascii_alphanumeric()) {
                let lower = u64::from(b.to_ascii_lowercase());
                key = (key ^ lower).wrapping_mul(FNV_PRIME);
                bigram = (bigram ^ lower).wrapping_mul(FNV_PRIME);
                digits += u32::from(b.is_ascii_digit());
                i += 1;
            }
            visible += (i - run) as u32;
            continue;
        }
        let c = if b.is_ascii() {
            i += 1;
            char::from(b)
        } else {
            let c = prompt[i..].chars().next().expect("i is at a char boundary");
            i += c.len_utf8();
            c
        };
        backticks = if c == '`' { backticks + 1 } else { 0 };
        line_start = c == '\n' || (line_start && c.is_whitespace());
        fence |= backticks >= 3;
        if !c.is_ascii() && c.is_alphanumeric() {
            visible += 1;
            digits += u32::from(c.is_numeric());
            if !in_word {
                (in_word, key, bigram) = (true, FNV_OFFSET, start(previous));
            }
            key = feed(key, c);
            bigram = feed(bigram, c);
            continue;
        }
        if in_word {
            in_word = false;
            words += 1;
            emit(key, bigram, &mut previous);
        }
        if c.is_whitespace() {
            lines += u32::from(c == '\n');
            continue;
        }
        visible += 1;
        symbols += 1;
        questions += u32::from(c == '?');
        if matches!(c, '.' | '!' | '?') && bytes.get(i).is_none_or(u8::is_ascii_whitespace) {
            sentences += 1;
        }
        math += u32::from(is_math_op(c));
        emit(feed(FNV_OFFSET, c), feed(start(previous), c), &mut previous);
    }
    if in_word {
        words += 1;
        emit(key, bigram, &mut previous);
    }
    let share = |n: u32| f64::from(n) / f64::from(visible.max(1));
    let log = |n: u32| f64::from(n).ln_1p();
    Counts {
        ngrams,
        numeric: [
            log(words),
            share(digits),
            share(symbols),
            log(lines),
            log(questions),
            if fence { 1.0 } else { 0.0 },
            log(math),
            log(numbers),
            log(sentences),
            if choice_lines >= 2 { 1.0 } else { 0.0 },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(prompt: &str) -> (Vec<u64>, Counts) {
        let mut keys = Vec::new();
        let counts = scan(prompt, true, |k| keys.push(k));
        (keys, counts)
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn tokens_are_lower_cased_words_and_single_symbols() {
        let (k, counts) = keys("Foo  bar=");
        let key = |text: &str| fnv1a(FNV_OFFSET, text.as_bytes());
        assert_eq!(
            k,
            vec![
                key("foo"),
                key("bar"),
                key("foo bar"),
                key("="),
                key("bar =")
            ]
        );
        assert_eq!(counts.ngrams, 5);
        assert_eq!(keys("FOO bar").0, keys("foo BAR").0);
        assert_eq!(keys("ÄRGER").0, keys("ärger").0);
    }

    #[test]
    fn the_window_is_the_last_4_kib_from_a_character_boundary() {
        assert_eq!(window("short"), "short");
        // The window would start inside an `é` (odd offset), so it starts one byte later.
        let long = format!("{}{}", "é".repeat(WINDOW_BYTES), "end");
        let w = window(&long);
        assert!(w.ends_with("end") && w.starts_with('é'));
        assert_eq!(w.len(), WINDOW_BYTES - 1);
    }

    /// The definition: runs of alphanumeric characters and single other non-space characters,
    /// lower-cased; a bigram is two adjacent tokens joined by a space.
    fn reference_keys(prompt: &str) -> Vec<u64> {
        let mut tokens: Vec<String> = Vec::new();
        let mut word = String::new();
        for c in prompt.chars() {
            if c.is_alphanumeric() {
                word.extend(c.to_lowercase());
                continue;
            }
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_lowercase().collect());
            }
        }
        if !word.is_empty() {
            tokens.push(word);
        }
        let key = |text: &str| fnv1a(FNV_OFFSET, text.as_bytes());
        let mut keys = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            keys.push(key(token));
            if i > 0 {
                keys.push(key(&format!("{} {token}", tokens[i - 1])));
            }
        }
        keys
    }

    proptest::proptest! {
        #[test]
        fn keys_are_those_of_the_plain_tokenisation(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just("Word"), proptest::strategy::Just("x9"),
                proptest::strategy::Just("42"), proptest::strategy::Just(" "),
                proptest::strategy::Just("\n"), proptest::strategy::Just("="),
                proptest::strategy::Just("ÄRGER"), proptest::strategy::Just("İ"),
                proptest::strategy::Just("\u{212a}"), proptest::strategy::Just("数"),
                proptest::strategy::Just("\u{a0}"), proptest::strategy::Just("?"),
                proptest::strategy::Just("`"), proptest::strategy::Just("é"),
            ], 0..40)
        ) {
            let text = parts.concat();
            let (keys, counts) = keys(&text);
            let reference = reference_keys(&text);
            proptest::prop_assert_eq!(counts.ngrams as usize, reference.len());
            proptest::prop_assert_eq!(keys, reference, "{:?}", text);
        }
    }

    #[test]
    fn numeric_features_count_what_they_say() {
        let (_, c) = keys("x = 2^3?\n```\ncode\n```");
        let [words, digits, symbols, lines, questions, fence, math, ..] = c.numeric;
        assert_eq!(words, 4f64.ln_1p());
        assert_eq!(digits, 2.0 / 16.0);
        assert_eq!(symbols, 9.0 / 16.0);
        assert_eq!(lines, 3f64.ln_1p());
        assert_eq!(questions, 1f64.ln_1p());
        assert_eq!(fence, 1.0);
        assert_eq!(math, 2f64.ln_1p());
        assert_eq!(keys("").1, Counts::default());
    }
}
