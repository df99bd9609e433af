//! Anthropic Messages (`api: Anthropic`).
//!
//! Anthropic-format clients pass straight through (only `model` is replaced, events are forwarded
//! as they come); OpenAI-format clients go through [`crate::convert::openai_anthropic`].

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::Full;
use serde_json::Value;
use switchyard_crds::table::Upstream;
use switchyard_crds::v1alpha1::Api;

use super::{
    Call, Chunk, Completion, Decoded, Provider, StreamDecoder, WithModel, completion_for,
    malformed, post_json, secret_header, unix_now,
};
use crate::convert::assemble::{Assembler, Json};
use crate::convert::sse::SseEvent;
use crate::convert::{ClientApi, openai_anthropic};
use crate::failure::{self, AttemptError};
use crate::upstream::Prepared;

// Header names made at compile time: a `&str` name is parsed and checked at every use.
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The `anthropic-version` sent when the client did not choose one.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The Anthropic protocol.
pub struct Anthropic;

impl Provider for Anthropic {
    fn api(&self) -> Api {
        Api::Anthropic
    }

    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
        let body = match call
            .original
            .filter(|_| call.client == ClientApi::Anthropic)
        {
            Some(original) => serde_json::to_vec(&WithModel {
                body: original,
                model: call.model,
                stream: call.stream,
            }),
            None => serde_json::to_vec(&openai_anthropic::request(
                call.request,
                call.model,
                call.stream,
            )),
        }
        .map_err(|e| malformed(&e))?;
        let prepared = &call.upstream.prepared;
        let mut request = match &prepared.chat_uri {
            Some(uri) => post_json(uri.clone(), body, call)?,
            None => post_json(messages_url(&call.upstream.def), body, call)?,
        };
        let headers = request.headers_mut();
        // docs/reference/crds.md (security model): these two client headers always reach
        // Anthropic, listed or not.
        for name in [ANTHROPIC_VERSION, ANTHROPIC_BETA] {
            if let Some(value) = call.client_headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        headers
            .entry(ANTHROPIC_VERSION)
            .or_insert(HeaderValue::from_static(DEFAULT_VERSION));
        if let Some(key) = &call.upstream.def.api_key {
            let value = match &prepared.authorization {
                Some(value) => value.clone(),
                None => secret_header(key.expose())?,
            };
            headers.insert(X_API_KEY, value);
        }
        Ok(request)
    }

    fn prepare(&self, def: &Upstream) -> Prepared {
        Prepared {
            chat_uri: messages_url(def).parse().ok(),
            authorization: def
                .api_key
                .as_ref()
                .and_then(|key| secret_header(key.expose()).ok()),
            ..Prepared::default()
        }
    }

    fn parse_response(
        &self,
        body: Bytes,
        client: ClientApi,
        _model: &str,
    ) -> Result<Completion, AttemptError> {
        let message: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e))?;
        let (hub, usage) = openai_anthropic::response(&message, unix_now())
            .ok_or_else(|| malformed(&"not a message"))?;
        Ok(match client {
            ClientApi::Anthropic => Completion {
                body,
                usage: Some(usage),
            },
            ClientApi::OpenAI | ClientApi::Responses => completion_for(client, &hub, Some(usage)),
        })
    }

    fn stream_decoder(&self, client: ClientApi, _model: &str) -> Box<dyn StreamDecoder> {
        Box::new(Decoder {
            inner: openai_anthropic::StreamDecoder::new(unix_now()),
            passthrough: client == ClientApi::Anthropic,
        })
    }
}

fn messages_url(def: &Upstream) -> String {
    format!("{}/v1/messages", def.base_url)
}

struct Decoder {
    inner: openai_anthropic::StreamDecoder,
    /// The client speaks Anthropic: forward events as they are, only reading them for the commit
    /// point, usage and errors.
    passthrough: bool,
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        let (kind, decoded) = match self.read(&event) {
            Ok(read) => read,
            Err(error) => return out.push(Chunk::Error(error)),
        };
        if self.passthrough {
            let kind = kind.as_ref();
            let usage =
                matches!(kind, "message_delta" | "message_stop").then(|| self.inner.usage());
            let name = event.event.as_deref().unwrap_or(kind);
            let mut frame = Vec::with_capacity(event.data.len() + name.len() + 16);
            frame.extend_from_slice(b"event: ");
            frame.extend_from_slice(name.as_bytes());
            frame.extend_from_slice(b"\ndata: ");
            frame.extend_from_slice(&event.data);
            frame.extend_from_slice(b"\n\n");
            // `message_start` carries the role: the commit point, as for every protocol.
            let commits = kind != "ping";
            out.push(Chunk::Raw {
                frame: Bytes::from(frame),
                commits,
                usage,
            });
            if kind == "message_stop" {
                out.push(Chunk::Done);
            }
            return;
        }
        let (commits, usage) = (decoded.commits(), decoded.usage());
        if let Some(chunk) = self.inner.chunk(decoded) {
            out.push(Chunk::Data {
                json: crate::convert::json_bytes(&chunk),
                commits,
                usage,
                usage_only: usage.is_some(),
            });
        }
        if usage.is_some() {
            out.push(Chunk::Done);
        }
    }

    /// What [`Self::decode`] does, with each hub chunk handed to the answer as the tree it was
    /// built as, rather than written out for the assembler to read back (the unit tests hold
    /// the two together).
    fn decode_whole(
        &mut self,
        event: &SseEvent,
        answer: &mut Assembler,
    ) -> Option<Result<Decoded, AttemptError>> {
        // An Anthropic client's answer is not assembled from hub chunks.
        if self.passthrough {
            return None;
        }
        Some(self.decode_into(event, answer))
    }
}

impl Decoder {
    /// One event's `type` and meaning: read fast where it can be, else through a tree; a stream
    /// error event as the attempt's error.
    fn read<'e>(
        &mut self,
        event: &'e SseEvent,
    ) -> Result<(Cow<'e, str>, openai_anthropic::Decoded<'e>), AttemptError> {
        let fast = std::str::from_utf8(&event.data)
            .ok()
            .and_then(|data| self.inner.read_fast(data));
        let (kind, decoded) = match fast {
            Some(read) => read,
            None => {
                let data: Value =
                    crate::convert::parse_json(&event.data).map_err(|e| malformed(&e))?;
                let decoded = self.inner.event(&data);
                let kind = data["type"].as_str().unwrap_or_default().to_string();
                (Cow::Owned(kind), decoded)
            }
        };
        match decoded {
            openai_anthropic::Decoded::Error(error) => Err(failure::classify_stream_error(&error)),
            decoded => Ok((kind, decoded)),
        }
    }

    fn decode_into(
        &mut self,
        event: &SseEvent,
        answer: &mut Assembler,
    ) -> Result<Decoded, AttemptError> {
        let (_, decoded) = self.read(event)?;
        let (commits, usage) = (decoded.commits(), decoded.usage());
        match self.inner.chunk(decoded) {
            Some(Json::Object(members)) => answer.object(members).map_err(|e| malformed(&e))?,
            Some(_) => return Err(malformed(&"a hub chunk that is not an object")),
            None => {}
        }
        Ok(Decoded {
            done: usage.is_some(),
            commits,
            usage,
        })
    }
}

#[cfg(test)]
mod tests;
