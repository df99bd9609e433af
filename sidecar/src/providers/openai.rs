//! OpenAI Chat Completions, and every API that copies it (DeepSeek, Qwen, Mistral, Groq, vLLM).
//!
//! Requests pass through untouched but for `model`, `stream` and `stream_options`: streams always
//! ask for `include_usage` so tokens and cost are counted, and the extra usage chunk is dropped
//! later when the client did not ask for it.

use bytes::Bytes;
use http::header;
use http_body_util::Full;
use serde::de::IgnoredAny;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_crds::secret::SecretString;
use switchyard_crds::table::Upstream;
use switchyard_crds::v1alpha1::{Api, FailureClass};

use super::{
    COMMITTING_DELTA_FIELDS, Call, Chunk, Completion, Decoded, Provider, StreamDecoder,
    completion_for, malformed, post_json, secret_header,
};
use crate::convert::assemble::Assembler;
use crate::convert::assemble::json::{Json, Members};
use crate::convert::sse::SseEvent;
use crate::convert::wire::ObjectOnly;
use crate::convert::{ClientApi, Usage};
use crate::failure::{self, AttemptError};
use crate::upstream::Prepared;

/// The OpenAI protocol.
pub struct OpenAi;

impl Provider for OpenAi {
    fn api(&self) -> Api {
        Api::OpenAI
    }

    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
        let body = serde_json::to_vec(&Outgoing { call })
            .map_err(|e| AttemptError::new(FailureClass::ClientError, e.to_string()))?;
        let prepared = &call.upstream.prepared;
        let mut request = match &prepared.chat_uri {
            Some(uri) => post_json(uri.clone(), body, call)?,
            None => post_json(chat_url(&call.upstream.def), body, call)?,
        };
        if let Some(key) = &call.upstream.def.api_key {
            let value = match &prepared.authorization {
                Some(value) => value.clone(),
                None => bearer(key)?,
            };
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        Ok(request)
    }

    fn prepare(&self, def: &Upstream) -> Prepared {
        Prepared {
            chat_uri: chat_url(def).parse().ok(),
            authorization: def.api_key.as_ref().and_then(|key| bearer(key).ok()),
            ..Prepared::default()
        }
    }

    fn parse_response(
        &self,
        body: Bytes,
        client: ClientApi,
        _model: &str,
    ) -> Result<Completion, AttemptError> {
        #[derive(Deserialize)]
        struct Lite {
            #[allow(dead_code)] // present and an array, or the answer is malformed
            choices: Vec<IgnoredAny>,
            usage: Option<WireUsage>,
        }
        if client == ClientApi::OpenAI {
            // An object only: serde's derive would read `[[], null]` as an answer.
            let ObjectOnly(lite) =
                serde_json::from_slice::<ObjectOnly<Lite>>(&body).map_err(|e| malformed(&e))?;
            return Ok(Completion {
                usage: lite.usage.map(Usage::from),
                body,
            });
        }
        let hub: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e))?;
        if !hub.get("choices").is_some_and(Value::is_array) {
            return Err(malformed(&"no choices"));
        }
        let usage = hub
            .get("usage")
            .and_then(|u| WireUsage::deserialize(u).ok())
            .map(Usage::from);
        Ok(completion_for(client, &hub, usage))
    }

    fn stream_decoder(&self, _client: ClientApi, _model: &str) -> Box<dyn StreamDecoder> {
        // The decoder yields hub chunks, which already are OpenAI's: the client's format is the
        // stream encoder's business.
        Box::new(Decoder)
    }
}

fn chat_url(def: &Upstream) -> String {
    format!("{}/chat/completions", def.base_url)
}

fn bearer(key: &SecretString) -> Result<http::HeaderValue, AttemptError> {
    secret_header(&format!("Bearer {}", key.expose()))
}

/// The client's request with this target's `model` and the stream settings we need, serialized
/// without cloning the (possibly large) message list.
struct Outgoing<'a> {
    call: &'a Call<'a>,
}

impl Serialize for Outgoing<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let call = self.call;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", call.model)?;
        for (key, value) in call.request {
            if !matches!(key.as_str(), "model" | "stream" | "stream_options") {
                map.serialize_entry(key, value)?;
            }
        }
        if call.stream {
            let mut options = call
                .request
                .get("stream_options")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            options.insert("include_usage".into(), Value::Bool(true));
            map.serialize_entry("stream", &true)?;
            map.serialize_entry("stream_options", &options)?;
        } else if call.request.contains_key("stream") {
            map.serialize_entry("stream", &false)?;
        }
        map.end()
    }
}

/// OpenAI's `usage`, with DeepSeek's cache field as a fallback.
#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        let cached = u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .or(u.prompt_cache_hit_tokens)
            .unwrap_or(0);
        Usage {
            input: u.prompt_tokens,
            cached_input: cached.min(u.prompt_tokens),
            output: u.completion_tokens,
        }
    }
}

struct Decoder;

/// Whether a choice commits: a `finish_reason`, or a committing field in its `delta` (see
/// [`Committing`]). Read from an object only, and a field given twice refused: serde's derive
/// also reads a struct from a list, field by field, and a choice that is a list is malformed, not
/// an answer (a derived struct behind [`ObjectOnly`] cost 200 instructions more per event).
struct ChoiceCommits(bool);

impl<'de> Deserialize<'de> for ChoiceCommits {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = ChoiceCommits;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a choice object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ChoiceCommits, A::Error> {
                use serde::de::Error;
                let (mut delta, mut finish_reason) = (None, None);
                while let Some(key) = map.next_key::<ChoiceKey>()? {
                    match key {
                        ChoiceKey::Delta if delta.is_some() => {
                            return Err(A::Error::duplicate_field("delta"));
                        }
                        ChoiceKey::Delta => {
                            delta = Some(map.next_value::<Option<Committing>>()?);
                        }
                        ChoiceKey::FinishReason if finish_reason.is_some() => {
                            return Err(A::Error::duplicate_field("finish_reason"));
                        }
                        ChoiceKey::FinishReason => {
                            // `Option` reads a null as `None`.
                            finish_reason = Some(map.next_value::<Option<IgnoredAny>>()?);
                        }
                        ChoiceKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let delta = delta.flatten().is_some_and(|d| d.0);
                Ok(ChoiceCommits(delta || finish_reason.flatten().is_some()))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A choice's key, as far as [`ChoiceCommits`] reads it (compared, not copied).
enum ChoiceKey {
    Delta,
    FinishReason,
    Other,
}

impl<'de> Deserialize<'de> for ChoiceKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = ChoiceKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, key: &str) -> Result<ChoiceKey, E> {
                Ok(match key {
                    "delta" => ChoiceKey::Delta,
                    "finish_reason" => ChoiceKey::FinishReason,
                    _ => ChoiceKey::Other,
                })
            }
        }
        deserializer.deserialize_str(Key)
    }
}

/// Whether a delta sets one of [`COMMITTING_DELTA_FIELDS`] to something other than null, read
/// without building the delta: every event passes through here, and a `Map` of its fields cost
/// more than the rest of the decoding.
struct Committing(bool);

impl<'de> Deserialize<'de> for Committing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Committing;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a delta object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Committing, A::Error> {
                let mut commits = false;
                while let Some(IsCommitting(key)) = map.next_key()? {
                    // `Option` reads a null as `None`.
                    let value: Option<IgnoredAny> = map.next_value()?;
                    commits |= key && value.is_some();
                }
                Ok(Committing(commits))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A delta's key: whether it is one of [`COMMITTING_DELTA_FIELDS`] (compared, not copied).
struct IsCommitting(bool);

impl<'de> Deserialize<'de> for IsCommitting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = IsCommitting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, key: &str) -> Result<IsCommitting, E> {
                Ok(IsCommitting(COMMITTING_DELTA_FIELDS.contains(&key)))
            }
        }
        deserializer.deserialize_str(Key)
    }
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        if event.data.as_ref() == b"[DONE]" {
            out.push(Chunk::Done);
            return;
        }
        #[derive(Deserialize)]
        struct Lite {
            #[serde(default)]
            choices: Option<Vec<ChoiceCommits>>,
            #[serde(default)]
            usage: Option<WireUsage>,
            #[serde(default)]
            error: Option<Value>,
        }
        // serde's derive also reads a struct from a list, field by field; a chunk is an object
        // (as `decode_whole` reads it). One byte looked at, where [`ObjectOnly`] would cost
        // every event of every stream about 200 instructions.
        if event.data.trim_ascii_start().first() != Some(&b'{') {
            return out.push(Chunk::Error(malformed(
                &"a stream chunk that is not an object",
            )));
        }
        let lite: Lite = match crate::convert::parse_json(&event.data) {
            Ok(lite) => lite,
            Err(e) => return out.push(Chunk::Error(malformed(&e))),
        };
        if let Some(error) = lite.error {
            return out.push(Chunk::Error(failure::classify_stream_error(&error)));
        }
        let choices = lite.choices.unwrap_or_default();
        let commits = choices.iter().any(|c| c.0);
        let usage_only = choices.is_empty() && lite.usage.is_some();
        out.push(Chunk::Data {
            json: event.data,
            commits,
            usage: lite.usage.map(Usage::from),
            usage_only,
        });
    }

    /// What [`Self::decode`] reads of an event, from the one reading the answer takes: the
    /// same errors for the same events (the unit tests hold the two together).
    fn decode_whole(
        &mut self,
        event: &SseEvent,
        answer: &mut Assembler,
    ) -> Option<Result<Decoded, AttemptError>> {
        Some(decode_whole(event, answer))
    }
}

fn decode_whole(event: &SseEvent, answer: &mut Assembler) -> Result<Decoded, AttemptError> {
    if event.data.as_ref() == b"[DONE]" {
        return Ok(Decoded {
            done: true,
            ..Decoded::default()
        });
    }
    let Json::Object(chunk) = Json::parse(&event.data).map_err(|e| malformed(&e))? else {
        return Err(malformed(&"a stream chunk that is not an object"));
    };
    // What `decode` reads, refused as it refuses it: a field it knows given twice, a shape it
    // cannot read (checked before an error event is classified, as its one reading does).
    let [choices, usage, error] = fields(&chunk, ["choices", "usage", "error"])?;
    let usage = match usage {
        None | Some(Json::Null) => None,
        Some(usage) => Some(Usage::from(
            WireUsage::deserialize(usage.to_value()).map_err(|e| malformed(&e))?,
        )),
    };
    let choices = match choices {
        None | Some(Json::Null) => &[][..],
        Some(Json::Array(choices)) => choices.as_slice(),
        Some(_) => return Err(malformed(&"`choices` is not a list")),
    };
    let mut commits = false;
    for choice in choices {
        let Json::Object(choice) = choice else {
            return Err(malformed(&"a choice that is not an object"));
        };
        let [delta, finish_reason] = fields(choice, ["delta", "finish_reason"])?;
        let delta = match delta {
            None | Some(Json::Null) => &[][..],
            Some(Json::Object(delta)) => delta.as_slice(),
            Some(_) => return Err(malformed(&"a delta that is not an object")),
        };
        commits |= finish_reason.is_some_and(|f| !f.is_null())
            || delta.iter().any(|(key, value)| {
                COMMITTING_DELTA_FIELDS.contains(&key.as_ref()) && !value.is_null()
            });
    }
    if let Some(error) = error.filter(|e| !e.is_null()) {
        return Err(failure::classify_stream_error(&error.to_value()));
    }
    answer.object(chunk).map_err(|e| malformed(&e))?;
    Ok(Decoded {
        done: false,
        commits,
        usage,
    })
}

/// The members of `object` named `names`, in one pass; a name given twice is refused, as serde's
/// derive refuses a field given twice.
fn fields<'m, 'a, const N: usize>(
    object: &'m Members<'a>,
    names: [&str; N],
) -> Result<[Option<&'m Json<'a>>; N], AttemptError> {
    let mut found = [None; N];
    for (key, value) in object {
        if let Some(i) = names.iter().position(|name| key == name)
            && found[i].replace(value).is_some()
        {
            return Err(malformed(&format_args!("duplicate field `{key}`")));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
