//! Prompt token estimates: one tokenizer (`o200k_base`) for every provider, as
//! docs/reference/sidecar.md says, so that `minPromptTokens` and `LowestCost` compare like with
//! like.
//!
//! The tokenizer's tables take a few megabytes and some milliseconds to build, so they are built
//! on first use: routes that use neither feature never pay for them.

use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Tokens a chat format adds per message (role markers), as OpenAI documents for its models.
const PER_MESSAGE_OVERHEAD: usize = 4;

fn bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().expect("the bundled o200k_base tables load"))
}

/// Builds the tokenizer now, so that the first request that needs it does not wait.
pub fn warm() {
    bpe();
}

/// Estimated prompt tokens of an OpenAI-format request body.
pub fn estimate_prompt_tokens(request: &serde_json::Map<String, Value>) -> u32 {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut text = String::new();
    prompt_text(request, &mut text);
    let tools = request
        .get("tools")
        .map_or(0, |t| bpe().encode_ordinary(&t.to_string()).len());
    let total = bpe().encode_ordinary(&text).len() + tools + messages.len() * PER_MESSAGE_OVERHEAD;
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Tokens of one text, without any message overhead: the usage of embeddings whose provider
/// reports none.
pub fn count_text(text: &str) -> u64 {
    bpe().encode_ordinary(text).len() as u64
}

/// Appends the text of every message (string content and text parts) to `out`.
pub fn prompt_text(request: &serde_json::Map<String, Value>, out: &mut String) {
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return;
    };
    for message in messages {
        message_text(message, out);
    }
}

/// The text of one message's content, appended to `out` as [`prompt_text`] does.
pub fn message_text(message: &Value, out: &mut String) {
    match message.get("content") {
        Some(Value::String(s)) => push(out, s),
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(s) = part.get("text").and_then(Value::as_str) {
                    push(out, s);
                }
            }
        }
        _ => {}
    }
}

fn push(out: &mut String, s: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn counts_real_tokens_plus_message_overhead() {
        let r = req(serde_json::json!({"messages": [{"role": "user", "content": "hello world"}]}));
        assert_eq!(estimate_prompt_tokens(&r), 2 + 4);
        let parts = req(serde_json::json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": "x"}}]}
        ]}));
        assert_eq!(estimate_prompt_tokens(&parts), 1 + 4);
    }

    #[test]
    fn long_prompts_count_more() {
        let long = "the quick brown fox ".repeat(500);
        let r = req(serde_json::json!({"messages": [{"role": "user", "content": long}]}));
        let n = estimate_prompt_tokens(&r);
        assert!((1900..2200).contains(&n), "{n}");
    }
}
