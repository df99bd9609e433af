//! OpenAI's Responses API upstream (`POST {baseUrl}/responses`), for routes whose targets all
//! declare `responsesApi: true` (docs/reference/api.md#responses): the client's body goes as it
//! is but for `model` (and `stream`, set as the client asked), and the provider's answer or
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
/// final event) and errors (an `error` event, or `response.failed`), forwarding every event as it
/// came. Before the commit an error fails over; after it the provider's own failure event goes
/// to the client as it is (its Response holds the output so far, its `sequence_number` continues
/// the stream's), then the attempt fails.
#[derive(Default)]
pub struct Decoder {
    /// A committing event was forwarded.
    committed: bool,
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        let data: Value = match crate::convert::parse_json(&event.data) {
            Ok(data) => data,
            Err(e) => return out.push(Chunk::Error(malformed(&e))),
        };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        let failed = match kind {
            "error" => Some(failure::classify_stream_error(&data)),
            // Only the error object is classified: the Response around it holds model output,
            // whose words must not pick the failure class.
            "response.failed" => Some(failure::classify_stream_error(
                data.pointer("/response/error").unwrap_or(&Value::Null),
            )),
            _ => None,
        };
        if let Some(error) = &failed
            && !self.committed
        {
            return out.push(Chunk::Error(error.clone()));
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
        self.committed |= commits;
        out.push(Chunk::Raw {
            frame: Bytes::from(frame),
            commits,
            usage,
        });
        if let Some(error) = failed {
            out.push(Chunk::Error(error));
        } else if ends {
            out.push(Chunk::Done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(lines: &[(&str, Value)]) -> Vec<Chunk> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for (name, data) in lines {
            let event = SseEvent {
                event: Some((*name).to_string()),
                data: Bytes::from(data.to_string()),
            };
            decoder.decode(event, &mut out);
        }
        out
    }

    #[test]
    fn events_pass_as_they_are_committing_on_the_first_item_with_usage_at_the_end() {
        let usage = serde_json::json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 3});
        let chunks = decode(&[
            (
                "response.created",
                serde_json::json!({"type": "response.created", "sequence_number": 0}),
            ),
            (
                "response.output_item.added",
                serde_json::json!({"type": "response.output_item.added", "sequence_number": 1}),
            ),
            (
                "response.completed",
                serde_json::json!({"type": "response.completed", "sequence_number": 2, "response": {"usage": usage}}),
            ),
        ]);
        let commits: Vec<Option<bool>> = chunks
            .iter()
            .map(|c| match c {
                Chunk::Raw { commits, .. } => Some(*commits),
                _ => None,
            })
            .collect();
        assert_eq!(commits, [Some(false), Some(true), Some(true), None]);
        let Chunk::Raw { frame, usage, .. } = &chunks[2] else {
            panic!("raw")
        };
        assert!(frame.starts_with(b"event: response.completed\ndata: {"));
        assert_eq!(
            *usage,
            Some(Usage {
                input: 10,
                cached_input: 4,
                output: 3
            })
        );
        assert!(matches!(chunks[3], Chunk::Done));
    }

    #[test]
    fn error_events_and_failed_responses_are_attempt_failures() {
        let error = decode(&[(
            "error",
            serde_json::json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}),
        )]);
        assert!(
            matches!(&error[..], [Chunk::Error(e)] if e.class == FailureClass::RateLimited),
            "{error:?}"
        );
        let failed = decode(&[(
            "response.failed",
            serde_json::json!({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}}}),
        )]);
        assert!(
            matches!(&failed[..], [Chunk::Error(e)] if e.class == FailureClass::ServerError),
            "{failed:?}"
        );
    }

    #[test]
    fn a_whole_answer_must_be_a_response_object() {
        let body = Bytes::from_static(
            br#"{"object":"response","usage":{"input_tokens":2,"output_tokens":1}}"#,
        );
        let completion = parse_response(body).expect("a Response");
        assert_eq!(completion.usage.map(|u| u.output), Some(1));
        assert!(parse_response(Bytes::from_static(br#"{"object":"chat.completion"}"#)).is_err());
    }

    #[test]
    fn a_failure_after_the_commit_is_forwarded_as_the_provider_sent_it() {
        let failed = serde_json::json!({"type": "response.failed", "sequence_number": 3,
            "response": {"status": "failed", "output": [{"type": "message", "content": [
                {"type": "output_text", "text": "rate limit exceeded, please retry"}]}],
            "error": {"code": "server_error", "message": "boom"}}});
        let chunks = decode(&[
            (
                "response.created",
                serde_json::json!({"type": "response.created", "sequence_number": 0}),
            ),
            (
                "response.output_item.added",
                serde_json::json!({"type": "response.output_item.added", "sequence_number": 1}),
            ),
            ("response.failed", failed.clone()),
        ]);
        assert_eq!(chunks.len(), 4, "{chunks:?}");
        let Chunk::Raw { frame, .. } = &chunks[2] else {
            panic!("the provider's event, forwarded: {chunks:?}")
        };
        let expected = format!("event: response.failed\ndata: {failed}\n\n");
        assert_eq!(frame.as_ref(), expected.as_bytes());
        // Classified by the error object, not by the output's words ("rate limit").
        assert!(
            matches!(&chunks[3], Chunk::Error(e) if e.class == FailureClass::ServerError),
            "{chunks:?}"
        );
        let unclassified = decode(&[(
            "response.failed",
            serde_json::json!({"type": "response.failed", "response": {"output": [
                {"type": "message", "content": [{"type": "output_text", "text": "rate limit"}]}]}}),
        )]);
        assert!(
            matches!(&unclassified[..], [Chunk::Error(e)] if e.class != FailureClass::RateLimited),
            "{unclassified:?}"
        );
    }
}
