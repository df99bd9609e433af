//! Anthropic Messages: requests (`POST /v1/messages` bodies), answers (`message`) and stream
//! events, as far as the converters read them.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{if_object, lenient, obj, objects, present_value, tag_obj, tag_objects, tagged};

/// A Messages request body.
#[derive(Debug, Default, Deserialize)]
pub struct MessagesRequest {
    /// `model`, as given.
    #[serde(default)]
    pub model: Value,
    /// `system`: the system prompt.
    #[serde(default)]
    pub system: System,
    /// `messages`: the turns; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub messages: Option<Vec<Turn>>,
    /// `max_tokens`, as given (`None` when absent or `null`).
    #[serde(default)]
    pub max_tokens: Option<Value>,
    /// `temperature`, as given.
    #[serde(default)]
    pub temperature: Option<Value>,
    /// `top_p`, as given.
    #[serde(default)]
    pub top_p: Option<Value>,
    /// `stream`, as given.
    #[serde(default)]
    pub stream: Option<Value>,
    /// `stop_sequences`, elements as given.
    #[serde(default, deserialize_with = "lenient")]
    pub stop_sequences: Option<Vec<Value>>,
    /// `metadata`.
    #[serde(default, deserialize_with = "obj")]
    pub metadata: Metadata,
    /// `tools`: client tools (with `input_schema`) and server tools; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub tools: Option<Vec<Tool>>,
    /// `tool_choice`, when an object.
    #[serde(default, deserialize_with = "if_object")]
    pub tool_choice: Option<ToolChoice>,
}

/// `system`.
#[derive(Debug, Default)]
pub enum System {
    /// Absent or `null`.
    #[default]
    None,
    /// A string.
    Text(String),
    /// An array of (text) blocks.
    Blocks(Vec<Block>),
    /// Anything else, which the request converter rejects.
    Invalid,
}

impl<'de> Deserialize<'de> for System {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => System::None,
            Value::String(s) => System::Text(s),
            Value::Array(blocks) => System::Blocks(blocks.into_iter().map(tagged).collect()),
            _ => System::Invalid,
        })
    }
}

/// `metadata`.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    /// `user_id`: the end user's id.
    #[serde(default, deserialize_with = "lenient")]
    pub user_id: Option<String>,
}

/// One of `messages`.
#[derive(Debug, Default, Deserialize)]
pub struct Turn {
    /// `role`: `user` or `assistant`.
    #[serde(default, deserialize_with = "lenient")]
    pub role: Option<String>,
    /// `content`.
    #[serde(default)]
    pub content: TurnContent,
}

/// A turn's `content` (also a `tool_result` block's).
#[derive(Debug, Default)]
pub enum TurnContent {
    /// A string.
    Text(String),
    /// An array of content blocks.
    Blocks(Vec<Block>),
    /// Absent or anything else.
    #[default]
    Invalid,
}

impl<'de> Deserialize<'de> for TurnContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => TurnContent::Text(s),
            Value::Array(blocks) => TurnContent::Blocks(blocks.into_iter().map(tagged).collect()),
            _ => TurnContent::Invalid,
        })
    }
}

/// One content block (`type` says which).
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// `text`; its `text` kept as given.
    Text {
        #[serde(default)]
        text: Value,
    },
    /// `image`.
    Image {
        #[serde(default, deserialize_with = "tag_obj")]
        source: ImageSource,
    },
    /// `tool_use`: `id` and `name` as given; `input` whenever present.
    ToolUse {
        #[serde(default)]
        id: Value,
        #[serde(default)]
        name: Value,
        #[serde(default, deserialize_with = "present_value")]
        input: Option<Value>,
    },
    /// `tool_result`: `tool_use_id` as given.
    ToolResult {
        #[serde(default)]
        tool_use_id: Value,
        #[serde(default)]
        content: TurnContent,
        #[serde(default, deserialize_with = "lenient")]
        is_error: Option<bool>,
    },
    /// Any other block type (documents, thinking, server tool blocks...), or none.
    #[default]
    #[serde(other)]
    Other,
}

/// The text of text blocks, joined by newlines.
pub fn blocks_text(blocks: &[Block]) -> String {
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => text.as_str(),
            _ => None,
        })
        .collect();
    texts.join("\n")
}

/// An image block's `source` (`type` says which).
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// `base64`: `media_type` and `data`.
    Base64 {
        #[serde(default, deserialize_with = "lenient")]
        media_type: Option<String>,
        #[serde(default, deserialize_with = "lenient")]
        data: Option<String>,
    },
    /// `url`.
    Url {
        #[serde(default, deserialize_with = "lenient")]
        url: Option<String>,
    },
    /// Any other source (`file`), or none.
    #[default]
    #[serde(other)]
    Other,
}

/// One of `tools`.
#[derive(Debug, Default, Deserialize)]
pub struct Tool {
    /// `name`, as given.
    #[serde(default)]
    pub name: Value,
    /// `description`.
    #[serde(default, deserialize_with = "lenient")]
    pub description: Option<String>,
    /// `input_schema`, as given; `Some` whenever present (server tools have none).
    #[serde(default, deserialize_with = "present_value")]
    pub input_schema: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug, Default, Deserialize)]
pub struct ToolChoice {
    /// `type`: `auto`, `any`, `tool` or `none`.
    #[serde(default, rename = "type", deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// `name` of the tool to use, as given.
    #[serde(default)]
    pub name: Value,
    /// `disable_parallel_tool_use`.
    #[serde(default, deserialize_with = "lenient")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// A `message`: an answer, or the `message` of a `message_start` event.
#[derive(Debug, Default, Deserialize)]
pub struct Message {
    /// `id`, as given.
    #[serde(default)]
    pub id: Value,
    /// `model`, as given.
    #[serde(default)]
    pub model: Value,
    /// `content`; `None` when not an array.
    #[serde(default, deserialize_with = "tag_objects")]
    pub content: Option<Vec<Block>>,
    /// `stop_reason`.
    #[serde(default, deserialize_with = "lenient")]
    pub stop_reason: Option<String>,
    /// `usage`.
    #[serde(default, deserialize_with = "obj")]
    pub usage: MessageUsage,
}

/// `usage` of a message or a `message_delta` event.
#[derive(Debug, Default, Deserialize)]
pub struct MessageUsage {
    /// `input_tokens`: prompt tokens, cache reads and writes excluded.
    #[serde(default, deserialize_with = "lenient")]
    pub input_tokens: Option<u64>,
    /// `cache_read_input_tokens`.
    #[serde(default, deserialize_with = "lenient")]
    pub cache_read_input_tokens: Option<u64>,
    /// `cache_creation_input_tokens`.
    #[serde(default, deserialize_with = "lenient")]
    pub cache_creation_input_tokens: Option<u64>,
    /// `output_tokens`.
    #[serde(default, deserialize_with = "lenient")]
    pub output_tokens: Option<u64>,
}

/// One stream event's data (`type` says which).
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// `message_start`: the message so far.
    MessageStart {
        #[serde(default, deserialize_with = "obj")]
        message: Message,
    },
    /// `content_block_start`: the block at `index` begins.
    ContentBlockStart {
        #[serde(default, deserialize_with = "lenient")]
        index: Option<u64>,
        #[serde(default, deserialize_with = "tag_obj")]
        content_block: Block,
    },
    /// `content_block_delta`: more of the block at `index`.
    ContentBlockDelta {
        #[serde(default, deserialize_with = "lenient")]
        index: Option<u64>,
        #[serde(default, deserialize_with = "tag_obj")]
        delta: BlockDelta,
    },
    /// `message_delta`: the stop reason and the output tokens.
    MessageDelta {
        #[serde(default, deserialize_with = "obj")]
        delta: MessageDelta,
        #[serde(default, deserialize_with = "obj")]
        usage: MessageUsage,
    },
    /// `message_stop`: the answer is complete.
    MessageStop,
    /// `error`: its `error` object, as given.
    Error {
        #[serde(default)]
        error: Value,
    },
    /// `ping`, `content_block_stop` and anything else, or no `type`.
    #[default]
    #[serde(other)]
    Other,
}

/// A `content_block_delta` event's `delta` (`type` says which).
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// `text_delta`; its `text` as given.
    TextDelta {
        #[serde(default)]
        text: Value,
    },
    /// `input_json_delta`; its `partial_json` as given.
    InputJsonDelta {
        #[serde(default)]
        partial_json: Value,
    },
    /// `thinking_delta`, `signature_delta` and anything else.
    #[default]
    #[serde(other)]
    Other,
}

/// A `message_delta` event's `delta`.
#[derive(Debug, Default, Deserialize)]
pub struct MessageDelta {
    /// `stop_reason`.
    #[serde(default, deserialize_with = "lenient")]
    pub stop_reason: Option<String>,
}
