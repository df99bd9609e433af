//! What the simulated models say and count, shared by every provider: the function call they
//! make when offered tools, token counts from a deterministic stand-in for a tokenizer, and the
//! way replies and JSON are split into stream pieces.

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use super::server::Behavior;

/// The city every simulated tool call asks about.
const TOOL_LOCATION: &str = "Paris";

/// A function call the simulated model makes instead of answering with text.
#[derive(Clone, Debug)]
pub(super) struct ToolCall {
    pub(super) name: String,
    pub(super) arguments: Value,
}

/// Token counts of one answer. `prompt` includes the `cached` tokens.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tokens {
    pub(super) prompt: u32,
    pub(super) cached: u32,
    pub(super) completion: u32,
}

// === impl ToolCall ===

impl ToolCall {
    /// Calls `name` with `{"location":"Paris"}` if its JSON `schema` has a `location` property,
    /// else with `{}`.
    pub(super) fn new(name: &str, schema: &Value) -> Self {
        let arguments = if schema.pointer("/properties/location").is_some() {
            json!({"location": TOOL_LOCATION})
        } else {
            json!({})
        };
        Self {
            name: name.to_owned(),
            arguments,
        }
    }

    /// The arguments serialized, as OpenAI and Anthropic streams carry them.
    pub(super) fn arguments_json(&self) -> String {
        self.arguments.to_string()
    }
}

// === impl Tokens ===

impl Tokens {
    /// Counts for an answer to a prompt of `prompt` estimated tokens: the reply's words, or a
    /// quarter token per character of the tool call.
    pub(super) fn new(prompt: u32, behavior: &Behavior, tool: Option<&ToolCall>) -> Self {
        let completion = match tool {
            Some(call) => (call.name.len() + call.arguments_json().len()) / 4,
            None => behavior.reply.split_whitespace().count(),
        };
        Self {
            prompt: prompt.max(behavior.cached_tokens),
            cached: behavior.cached_tokens,
            completion: u32::try_from(completion.max(1)).unwrap_or(u32::MAX),
        }
    }

    /// Prompt plus completion tokens.
    pub(super) fn total(self) -> u32 {
        self.prompt.saturating_add(self.completion)
    }
}

/// `len` random ASCII letters and digits, for ids.
pub(super) fn random_alphanumeric(len: usize) -> String {
    let chars = rand::rng().sample_iter(Alphanumeric).take(len);
    chars.map(char::from).collect()
}

/// A deterministic stand-in for a tokenizer: a quarter token per character of text plus four
/// per message, at least one.
pub(super) fn estimate_tokens(chars: usize, messages: usize) -> u32 {
    let tokens = (chars / 4 + messages * 4).max(1);
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// Characters of text in a message's content, whether a string or an array of parts with
/// `text` fields (OpenAI content parts, Anthropic blocks and Gemini parts alike).
pub(super) fn text_chars(content: &Value) -> usize {
    match content {
        Value::String(text) => text.chars().count(),
        Value::Array(parts) => {
            let texts = parts.iter().filter_map(|part| part["text"].as_str());
            texts.map(|text| text.chars().count()).sum()
        }
        _ => 0,
    }
}

/// Splits a reply into stream deltas the way tokenizers do: each word carries the whitespace
/// before it, so the pieces concatenate back to the reply exactly.
pub(super) fn word_pieces(reply: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    let mut in_word = false;
    for (i, ch) in reply.char_indices() {
        if ch.is_whitespace() && in_word {
            cuts.push(i);
        }
        in_word = !ch.is_whitespace();
    }
    // Trailing whitespace has no word of its own, so it joins the last piece.
    if !in_word && cuts.len() > 1 {
        cuts.pop();
    }
    cuts.push(reply.len());
    let pieces = cuts.windows(2).map(|w| &reply[w[0]..w[1]]);
    pieces.filter(|piece| !piece.is_empty()).collect()
}

/// Splits serialized JSON into at least two stream pieces (when it has two characters), cutting
/// where letters meet punctuation as tokenizers do: `{"`, `location`, `":"`, `Paris`, `"}`.
pub(super) fn json_pieces(json: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    let mut last_alphanumeric = None;
    for (i, ch) in json.char_indices() {
        let alphanumeric = ch.is_alphanumeric();
        if last_alphanumeric.is_some_and(|last| last != alphanumeric) {
            cuts.push(i);
        }
        last_alphanumeric = Some(alphanumeric);
    }
    if cuts.len() == 1
        && let Some((middle, _)) = json.char_indices().nth(json.chars().count() / 2)
        && middle > 0
    {
        cuts.push(middle);
    }
    cuts.push(json.len());
    let pieces = cuts.windows(2).map(|w| &json[w[0]..w[1]]);
    pieces.filter(|piece| !piece.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_pieces_concatenate_back() {
        for reply in ["", " ", "one", "a b", "  lead and trail  ", "x\n\ty"] {
            assert_eq!(word_pieces(reply).concat(), reply);
        }
        assert_eq!(word_pieces("Hi there, you "), ["Hi", " there,", " you "]);
    }

    #[test]
    fn json_pieces_concatenate_back_in_two_or_more() {
        let paris = r#"{"location":"Paris"}"#;
        assert_eq!(
            json_pieces(paris),
            [r#"{""#, "location", r#"":""#, "Paris", r#""}"#]
        );
        assert_eq!(json_pieces("{}"), ["{", "}"]);
        assert_eq!(json_pieces("{}").len(), 2);
        assert_eq!(json_pieces(""), Vec::<&str>::new());
    }

    #[test]
    fn tool_calls_ask_for_paris_only_when_the_schema_has_a_location() {
        let schema = json!({"type": "object", "properties": {"location": {"type": "string"}}});
        assert_eq!(
            ToolCall::new("w", &schema).arguments,
            json!({"location": "Paris"})
        );
        let other = ToolCall::new("w", &json!({"properties": {"city": {}}}));
        assert_eq!(other.arguments_json(), "{}");
        let behavior = Behavior {
            cached_tokens: 50,
            ..Behavior::default()
        };
        let tokens = Tokens::new(10, &behavior, Some(&other));
        assert_eq!(
            (tokens.prompt, tokens.cached, tokens.completion),
            (50, 50, 1)
        );
        assert_eq!(tokens.total(), 51);
    }
}
