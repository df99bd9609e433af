//! Gemini `GenerateContentResponse`s, whole or streamed, as far as the converters read them.
//! (Requests to Gemini are only written, never read, so they have no type here.)

use serde::Deserialize;
use serde_json::Value;

use super::{if_object, lenient, obj, objects, present_value};

/// A `GenerateContentResponse` (a whole answer, or one event of a stream).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// `candidates`; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub candidates: Option<Vec<Candidate>>,
    /// `promptFeedback`, when an object: present when the prompt itself was judged.
    #[serde(default, deserialize_with = "if_object")]
    pub prompt_feedback: Option<PromptFeedback>,
    /// `usageMetadata`, when an object.
    #[serde(default, deserialize_with = "if_object")]
    pub usage_metadata: Option<UsageMetadata>,
    /// `responseId`.
    #[serde(default, deserialize_with = "lenient")]
    pub response_id: Option<String>,
    /// `modelVersion`: the model that answered.
    #[serde(default, deserialize_with = "lenient")]
    pub model_version: Option<String>,
}

/// `promptFeedback`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// `blockReason`, as given; `Some` whenever present: the prompt was blocked.
    #[serde(default, deserialize_with = "present_value")]
    pub block_reason: Option<Value>,
}

/// One of `candidates`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// `index`: which candidate this is.
    #[serde(default, deserialize_with = "lenient")]
    pub index: Option<u64>,
    /// `finishReason`: `STOP`, `MAX_TOKENS`, `SAFETY`...; set once the candidate is complete.
    #[serde(default, deserialize_with = "lenient")]
    pub finish_reason: Option<String>,
    /// `content`.
    #[serde(default, deserialize_with = "obj")]
    pub content: Content,
}

/// A candidate's `content`.
#[derive(Debug, Default, Deserialize)]
pub struct Content {
    /// `parts`; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub parts: Option<Vec<Part>>,
}

/// One of `content.parts` (Gemini's parts are told apart by which field they carry).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// `text`.
    #[serde(default, deserialize_with = "lenient")]
    pub text: Option<String>,
    /// `thought`: whether `text` is a thought summary.
    #[serde(default, deserialize_with = "lenient")]
    pub thought: Option<bool>,
    /// `functionCall`, when an object.
    #[serde(default, deserialize_with = "if_object")]
    pub function_call: Option<FunctionCall>,
    /// `thoughtSignature`: Gemini 3 wants it back with the call.
    #[serde(default, deserialize_with = "lenient")]
    pub thought_signature: Option<String>,
}

/// A part's `functionCall`.
#[derive(Debug, Default, Deserialize)]
pub struct FunctionCall {
    /// `id` (Gemini usually gives none).
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`, as given.
    #[serde(default)]
    pub name: Value,
    /// `args`, as given (`None` when absent or `null`).
    #[serde(default)]
    pub args: Option<Value>,
}

/// `usageMetadata`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// `promptTokenCount`, cached tokens included.
    #[serde(default, deserialize_with = "lenient")]
    pub prompt_token_count: Option<u64>,
    /// `toolUsePromptTokenCount`: prompt tokens of built-in tools' results.
    #[serde(default, deserialize_with = "lenient")]
    pub tool_use_prompt_token_count: Option<u64>,
    /// `cachedContentTokenCount`.
    #[serde(default, deserialize_with = "lenient")]
    pub cached_content_token_count: Option<u64>,
    /// `candidatesTokenCount`.
    #[serde(default, deserialize_with = "lenient")]
    pub candidates_token_count: Option<u64>,
    /// `thoughtsTokenCount`.
    #[serde(default, deserialize_with = "lenient")]
    pub thoughts_token_count: Option<u64>,
}
