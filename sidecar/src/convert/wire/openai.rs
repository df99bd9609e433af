//! OpenAI Chat Completions, the hub format: requests, answers (`chat.completion`) and stream
//! chunks (`chat.completion.chunk`), as far as the converters read them.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Number, Value};

use super::{if_object, lenient, obj, object, objects, present, present_value, tagged};

/// A Chat Completions request body.
#[derive(Debug, Default, Deserialize)]
pub struct ChatRequest {
    /// `messages`: the conversation; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub messages: Option<Vec<Message>>,
    /// `max_completion_tokens`, which replaces `max_tokens`.
    #[serde(default, deserialize_with = "lenient")]
    pub max_completion_tokens: Option<u64>,
    /// `max_tokens` (deprecated by OpenAI, still sent by most clients).
    #[serde(default, deserialize_with = "lenient")]
    pub max_tokens: Option<u64>,
    /// `temperature`, kept as the number given.
    #[serde(default, deserialize_with = "lenient")]
    pub temperature: Option<Number>,
    /// `top_p`, kept as the number given.
    #[serde(default, deserialize_with = "lenient")]
    pub top_p: Option<Number>,
    /// `stop`: one stop sequence or several.
    #[serde(default, deserialize_with = "lenient")]
    pub stop: Option<Stop>,
    /// `user`: the end user's id.
    #[serde(default, deserialize_with = "lenient")]
    pub user: Option<String>,
    /// `n`: how many choices to generate.
    #[serde(default, deserialize_with = "lenient")]
    pub n: Option<u64>,
    /// `seed`.
    #[serde(default, deserialize_with = "lenient")]
    pub seed: Option<i64>,
    /// `presence_penalty`, kept as the number given.
    #[serde(default, deserialize_with = "lenient")]
    pub presence_penalty: Option<Number>,
    /// `frequency_penalty`, kept as the number given.
    #[serde(default, deserialize_with = "lenient")]
    pub frequency_penalty: Option<Number>,
    /// `parallel_tool_calls`.
    #[serde(default, deserialize_with = "lenient")]
    pub parallel_tool_calls: Option<bool>,
    /// `tools`; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub tools: Option<Vec<Tool>>,
    /// `tool_choice`: a mode string or a named choice.
    #[serde(default, deserialize_with = "lenient")]
    pub tool_choice: Option<ToolChoice>,
    /// `response_format`.
    #[serde(default, deserialize_with = "obj")]
    pub response_format: ResponseFormat,
}

/// `stop`: a string or an array (its elements kept as given).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<Value>),
}

impl Stop {
    /// The stop sequences as a list, which is how every other API takes them.
    pub fn sequences(&self) -> Vec<Value> {
        match self {
            Stop::One(s) => vec![Value::String(s.clone())],
            Stop::Many(a) => a.clone(),
        }
    }
}

/// One entry of `messages` (also a choice's `message` and a chunk's `delta`).
#[derive(Debug, Default, Deserialize)]
pub struct Message {
    /// `role`: `system`, `developer`, `user`, `assistant`, `tool` or `function`.
    #[serde(default, deserialize_with = "lenient")]
    pub role: Option<String>,
    /// `content`: a string or an array of content parts.
    #[serde(default)]
    pub content: Content,
    /// `tool_calls` of an assistant message; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// `tool_call_id` of a tool message, as given (`null` when absent).
    #[serde(default)]
    pub tool_call_id: Value,
    /// `name` of a (legacy) function message.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
}

/// A message's `content`.
#[derive(Debug, Default)]
pub enum Content {
    /// A string.
    Text(String),
    /// An array of content parts.
    Parts(Vec<Part>),
    /// Absent, `null` or anything else.
    #[default]
    None,
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Content::Text(s),
            Value::Array(parts) => Content::Parts(parts.into_iter().map(tagged).collect()),
            _ => Content::None,
        })
    }
}

impl Content {
    /// The text: the string, or the text parts joined by newlines.
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(Part::text).collect();
                texts.join("\n")
            }
            Content::None => String::new(),
        }
    }

    /// The content when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Content::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// One content part (`type` says which).
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// `text`; its `text` kept as given.
    Text {
        #[serde(default)]
        text: Value,
    },
    /// `image_url`.
    ImageUrl {
        #[serde(default, deserialize_with = "obj")]
        image_url: ImageUrl,
    },
    /// `input_audio`.
    InputAudio {
        #[serde(default, deserialize_with = "obj")]
        input_audio: InputAudio,
    },
    /// `file`.
    File {
        #[serde(default, deserialize_with = "obj")]
        file: File,
    },
    /// Any other part type (or none).
    #[default]
    #[serde(other)]
    Other,
}

impl Part {
    /// A text part's text, when it is a string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Part::Text { text } => text.as_str(),
            _ => None,
        }
    }
}

/// An `image_url` part's `image_url`.
#[derive(Debug, Default, Deserialize)]
pub struct ImageUrl {
    /// `url`: a link or a `data:` URL.
    #[serde(default, deserialize_with = "lenient")]
    pub url: Option<String>,
}

/// An `input_audio` part's `input_audio`.
#[derive(Debug, Default, Deserialize)]
pub struct InputAudio {
    /// `format`: `wav`, `mp3`...
    #[serde(default, deserialize_with = "lenient")]
    pub format: Option<String>,
    /// `data`: base64 audio, as given.
    #[serde(default)]
    pub data: Value,
}

/// A `file` part's `file`.
#[derive(Debug, Default, Deserialize)]
pub struct File {
    /// `file_data`: the file as a `data:` URL.
    #[serde(default, deserialize_with = "lenient")]
    pub file_data: Option<String>,
}

/// One of an assistant message's (or a delta's) `tool_calls`.
#[derive(Debug, Default, Deserialize)]
pub struct ToolCall {
    /// `id`, as given.
    #[serde(default)]
    pub id: Value,
    /// `index` (chunks only).
    #[serde(default, deserialize_with = "lenient")]
    pub index: Option<u64>,
    /// `function`.
    #[serde(default, deserialize_with = "obj")]
    pub function: FunctionCall,
    /// `extra_content`: Google's extension carrying Gemini's thought signature.
    #[serde(default, deserialize_with = "obj")]
    pub extra_content: ExtraContent,
}

/// A tool call's `function`.
#[derive(Debug, Default, Deserialize)]
pub struct FunctionCall {
    /// `name`, as given.
    #[serde(default)]
    pub name: Value,
    /// `arguments`: a JSON string.
    #[serde(default, deserialize_with = "lenient")]
    pub arguments: Option<String>,
}

/// A tool call's `extra_content`.
#[derive(Debug, Default, Deserialize)]
pub struct ExtraContent {
    /// `google`.
    #[serde(default, deserialize_with = "obj")]
    pub google: GoogleExtra,
}

/// `extra_content.google`.
#[derive(Debug, Default, Deserialize)]
pub struct GoogleExtra {
    /// `thought_signature`: Gemini's `thoughtSignature` of the call.
    #[serde(default, deserialize_with = "lenient")]
    pub thought_signature: Option<String>,
}

/// One of `tools`.
#[derive(Debug, Default, Deserialize)]
pub struct Tool {
    /// `function`; `Some` whenever present, whatever it holds.
    #[serde(default, deserialize_with = "present")]
    pub function: Option<Function>,
}

/// A tool's `function` (also the `function` of a named `tool_choice`).
#[derive(Debug, Default, Deserialize)]
pub struct Function {
    /// `name`, as given; `Some` whenever present.
    #[serde(default, deserialize_with = "present_value")]
    pub name: Option<Value>,
    /// `description`.
    #[serde(default, deserialize_with = "lenient")]
    pub description: Option<String>,
    /// `parameters`: a JSON Schema, as given; `Some` whenever present.
    #[serde(default, deserialize_with = "present_value")]
    pub parameters: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug)]
pub enum ToolChoice {
    /// `auto`, `none` or `required`.
    Mode(String),
    /// An object: a named function or `allowed_tools`.
    Object(NamedToolChoice),
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(ToolChoice::Mode(s)),
            value @ Value::Object(_) => Ok(ToolChoice::Object(object(value))),
            _ => Err(D::Error::custom("tool_choice is a string or an object")),
        }
    }
}

/// An object `tool_choice`.
#[derive(Debug, Default, Deserialize)]
pub struct NamedToolChoice {
    /// `type`: `function` or `allowed_tools`.
    #[serde(default, rename = "type", deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// `function`: the function to call.
    #[serde(default, deserialize_with = "obj")]
    pub function: Function,
    /// `allowed_tools`.
    #[serde(default, deserialize_with = "obj")]
    pub allowed_tools: AllowedTools,
}

/// `tool_choice.allowed_tools`.
#[derive(Debug, Default, Deserialize)]
pub struct AllowedTools {
    /// `mode`: `auto` or `required`.
    #[serde(default, deserialize_with = "lenient")]
    pub mode: Option<String>,
    /// `tools`: the tools allowed; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub tools: Option<Vec<Tool>>,
}

/// `response_format`.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseFormat {
    /// `type`: `text`, `json_object` or `json_schema`.
    #[serde(default, rename = "type", deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// `json_schema`.
    #[serde(default, deserialize_with = "obj")]
    pub json_schema: JsonSchema,
}

impl ResponseFormat {
    /// For APIs without a JSON mode (Anthropic Messages, Bedrock Converse): the system prompt
    /// instruction that asks for JSON, with the schema when given.
    pub fn as_instruction(&self) -> Option<String> {
        match self.kind.as_deref()? {
            "json_object" => Some("Respond with a single JSON object and nothing else.".into()),
            "json_schema" => {
                let schema = self.json_schema.schema.clone().unwrap_or(Value::Null);
                Some(format!(
                    "Respond with a single JSON object that validates against this JSON Schema, and nothing else:\n{schema}"
                ))
            }
            _ => None,
        }
    }
}

/// `response_format.json_schema`.
#[derive(Debug, Default, Deserialize)]
pub struct JsonSchema {
    /// `schema`, as given; `Some` whenever present.
    #[serde(default, deserialize_with = "present_value")]
    pub schema: Option<Value>,
}

/// A `chat.completion` or a `chat.completion.chunk`.
#[derive(Debug, Default, Deserialize)]
pub struct Completion {
    /// `id`.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `model`, as given.
    #[serde(default)]
    pub model: Value,
    /// `choices`; `None` when not an array.
    #[serde(default, deserialize_with = "objects")]
    pub choices: Option<Vec<Choice>>,
    /// `usage`, when an object.
    #[serde(default, deserialize_with = "if_object")]
    pub usage: Option<CompletionUsage>,
}

/// One of `choices`.
#[derive(Debug, Default, Deserialize)]
pub struct Choice {
    /// `message` (answers).
    #[serde(default, deserialize_with = "obj")]
    pub message: Message,
    /// `delta` (chunks).
    #[serde(default, deserialize_with = "obj")]
    pub delta: Message,
    /// `finish_reason`.
    #[serde(default, deserialize_with = "lenient")]
    pub finish_reason: Option<String>,
}

/// `usage`.
#[derive(Debug, Default, Deserialize)]
pub struct CompletionUsage {
    /// `prompt_tokens`, cached ones included.
    #[serde(default, deserialize_with = "lenient")]
    pub prompt_tokens: Option<u64>,
    /// `completion_tokens`.
    #[serde(default, deserialize_with = "lenient")]
    pub completion_tokens: Option<u64>,
    /// `prompt_tokens_details`.
    #[serde(default, deserialize_with = "obj")]
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Default, Deserialize)]
pub struct PromptTokensDetails {
    /// `cached_tokens`.
    #[serde(default, deserialize_with = "lenient")]
    pub cached_tokens: Option<u64>,
}
