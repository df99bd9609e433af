//! OpenAI's Responses API upstream (`POST {baseUrl}/responses`), for routes whose targets all
//! declare `responsesApi: true` (docs/reference/api.md#responses): the client's body goes as it
//! is but for `model` (and `stream`, which every request sets, as for chat), and the provider's
//! events come back as they are, read only for the commit point, usage and errors.

use bytes::Bytes;
use http::header;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::Value;
use switchyard_crds::v1alpha1::FailureClass;

use super::{
    Call, Chunk, Completion, StreamDecoder, WithModel, malformed, post_json, secret_header,
};
use crate::convert::Usage;
use crate::convert::sse::SseEvent;
use crate::failure::{self, AttemptError};

/// The upstream request: the client's own body with the target's `model`.
pub fn build_request(call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
    let Some(original) = call.original else {
        return Err(AttemptError::new(
            FailureClass::ServerError,
            "a Responses API passthrough needs the client's body",
        ));
    };
    let body = serde_json::to_vec(&WithModel {
        body: original,
        model: call.model,
        stream: call.stream,
    })
    .map_err(|e| malformed(&e))?;
    let def = &call.upstream.def;
    let mut request = post_json(format!("{}/responses", def.base_url), body, call)?;
    if let Some(key) = &def.api_key {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            secret_header(&format!("Bearer {}", key.expose()))?,
        );
    }
    Ok(request)
}

/// A Response's `usage`.
#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

fn usage(response: &Value) -> Option<Usage> {
    let u = WireUsage::deserialize(response.get("usage")?).ok()?;
    let cached = u
        .input_tokens_details
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    Some(Usage {
        input: u.input_tokens,
        cached_input: cached.min(u.input_tokens),
        output: u.output_tokens,
    })
}

/// A whole Response, passed on as it is; malformed answers are `ServerError`s.
pub fn parse_response(body: Bytes) -> Result<Completion, AttemptError> {
    let response: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e))?;
    if response.get("object").and_then(Value::as_str) != Some("response") {
        return Err(malformed(&"not a Response object"));
    }
    Ok(Completion {
        usage: usage(&response),
        body,
    })
}

/// Reads a Responses event stream for the commit point (the first output item), usage (on the
/// final event) and errors (an `error` event, or `response.failed`, which fail over before the
/// commit), forwarding every event as it came.
#[derive(Default)]
pub struct Decoder;

impl StreamDecoder for Decoder {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        let data: Value = match serde_json::from_slice(&event.data) {
            Ok(data) => data,
            Err(e) => return out.push(Chunk::Error(malformed(&e))),
        };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "error" => {
                return out.push(Chunk::Error(failure::classify_stream_error(&data)));
            }
            "response.failed" => {
                let error = data.pointer("/response/error").unwrap_or(&data);
                return out.push(Chunk::Error(failure::classify_stream_error(error)));
            }
            _ => {}
        }
        let ends = matches!(kind, "response.completed" | "response.incomplete");
        let usage = ends.then(|| data.get("response").and_then(usage)).flatten();
        let name = event.event.as_deref().unwrap_or(kind);
        let mut frame = Vec::with_capacity(event.data.len() + name.len() + 16);
        frame.extend_from_slice(b"event: ");
        frame.extend_from_slice(name.as_bytes());
        frame.extend_from_slice(b"\ndata: ");
        frame.extend_from_slice(&event.data);
        frame.extend_from_slice(b"\n\n");
        // The first output item (or an answer that ends without one) is the commit point:
        // `response.created` and `response.in_progress` carry nothing yet.
        let commits = !matches!(
            kind,
            "response.created" | "response.in_progress" | "response.queued"
        );
        out.push(Chunk::Raw {
            frame: Bytes::from(frame),
            commits,
            usage,
        });
        if ends {
            out.push(Chunk::Done);
        }
    }
}
