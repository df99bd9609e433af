//! Google Gemini `generateContent` (`api: Gemini`).
//!
//! No client speaks Gemini's protocol, so every request goes through the hub format: the hub
//! request is converted with [`crate::convert::openai_gemini`] (for Anthropic-format clients too,
//! whose request already is in the hub format), and answers come back as hub completions and
//! chunks that the respond and stream layers put into the client's format. Gemini streams have no
//! end event: the decoder declares the answer complete in [`StreamDecoder::end`], only when a
//! candidate reported a `finishReason`, so a stream cut short is an error rather than a clean end.
//! An answer Gemini filters before any content (`promptFeedback.blockReason` with no candidates,
//! or a `SAFETY`, `RECITATION`, ... finish with no text or function call) is a `ContentFiltered`
//! failure, whole or streamed, as Azure's is; filtered after some content, the client gets what
//! came and `finish_reason: "content_filter"`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use switchyard_crds::v1alpha1::{Api, FailureClass};

use super::{
    Call, Chunk, Completion, Provider, StreamDecoder, completion_for, hub_chunk, malformed,
    post_json, secret_header, unix_now,
};
use crate::convert::sse::SseEvent;
use crate::convert::{ClientApi, openai_gemini};
use crate::failure::{self, AttemptError};

/// The Gemini protocol.
pub struct Gemini;

impl Provider for Gemini {
    fn api(&self) -> Api {
        Api::Gemini
    }

    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
        let body =
            serde_json::to_vec(&openai_gemini::request(call.request)).map_err(|e| malformed(&e))?;
        // Gemini names models `models/{model}`; a target configured that way must not get it twice.
        let model = call.model.strip_prefix("models/").unwrap_or(call.model);
        let operation = if call.stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let uri = format!("{}/models/{model}:{operation}", call.upstream.def.base_url);
        let mut request = post_json(uri, body, call)?;
        if let Some(key) = &call.upstream.def.api_key {
            request
                .headers_mut()
                .insert("x-goog-api-key", secret_header(key.expose())?);
        }
        Ok(request)
    }

    fn parse_response(
        &self,
        body: Bytes,
        client: ClientApi,
        _model: &str,
    ) -> Result<Completion, AttemptError> {
        let resp: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e))?;
        if let Some(reason) = openai_gemini::filtered(&resp) {
            return Err(AttemptError::new(FailureClass::ContentFiltered, reason));
        }
        let model = resp["modelVersion"].as_str().unwrap_or_default();
        let (hub, usage) = openai_gemini::response(&resp, model, unix_now())
            .ok_or_else(|| malformed(&"not a GenerateContentResponse"))?;
        Ok(completion_for(client, &hub, Some(usage)))
    }

    fn stream_decoder(&self, _client: ClientApi, _model: &str) -> Box<dyn StreamDecoder> {
        // Hub chunks either way: the stream encoder puts them into the client's format.
        Box::new(Decoder(openai_gemini::StreamDecoder::new(unix_now())))
    }

    fn classify_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
        let mut error = failure::classify_http(status, headers, body);
        if let Some(class) = quirk(status, body) {
            error.class = class;
        }
        // Gemini puts its back-off hint in the body (`google.rpc.RetryInfo`), not in a header.
        if error.retry_after.is_none() {
            error.retry_after = retry_delay(body);
        }
        error
    }
}

/// Where Gemini's answers mean something else than the shared classification reads in them.
fn quirk(status: StatusCode, body: &[u8]) -> Option<FailureClass> {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    let says = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    Some(match status.as_u16() {
        // A bad or expired key is a 400 INVALID_ARGUMENT, not a 401.
        400 if says(&["api key not valid", "api_key_invalid", "api key expired"]) => {
            FailureClass::AuthError
        }
        // The key cannot be used from here ("user location is not supported", free tier not
        // available in the region): a property of the target, not the caller's mistake.
        400 if says(&["failed_precondition"]) => FailureClass::AuthError,
        400 if says(&["exceeds the maximum number of tokens", "input token count"]) => {
            FailureClass::ContextLengthExceeded
        }
        // A request that names invalid `safetySettings` is the caller's mistake, not a filter.
        400 if says(&["safety_setting", "safetysetting"]) => FailureClass::ClientError,
        400 if says(&["safety", "prohibited_content", "blocklist"]) => {
            FailureClass::ContentFiltered
        }
        // Gemini's quota messages mention "billing", which the shared rules read as an empty
        // balance; RESOURCE_EXHAUSTED is a rate or quota limit that passes with time.
        429 => FailureClass::RateLimited,
        // UNAVAILABLE is how Gemini says it is overloaded, with or without the word.
        503 if says(&["unavailable", "overload"]) => FailureClass::Overloaded,
        _ => return None,
    })
}

/// The `retryDelay` of a `google.rpc.RetryInfo` detail (`"27s"`, `"0.5s"`).
fn retry_delay(body: &[u8]) -> Option<Duration> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value
        .pointer("/error/details")?
        .as_array()?
        .iter()
        .find_map(|d| {
            d.get("retryDelay")?
                .as_str()?
                .strip_suffix('s')?
                .parse::<f64>()
                .ok()
        })
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(1e9)))
}

struct Decoder(openai_gemini::StreamDecoder);

impl StreamDecoder for Decoder {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        let data: Value = match crate::convert::parse_json(&event.data) {
            Ok(data) => data,
            Err(e) => return out.push(Chunk::Error(malformed(&e))),
        };
        if let Some(error) = data.get("error").filter(|e| e.is_object()) {
            let mut attempt = failure::classify_stream_error(error);
            // Gemini's stream errors carry the HTTP status they would have had: classify them
            // as such.
            if let Some(status) = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| StatusCode::from_u16(u16::try_from(c).ok()?).ok())
            {
                let body = serde_json::to_vec(&data).unwrap_or_default();
                attempt.class = Gemini
                    .classify_error(status, &HeaderMap::new(), &body)
                    .class;
            }
            return out.push(Chunk::Error(attempt));
        }
        match self.0.event(&data) {
            Ok(chunks) => out.extend(chunks.iter().map(|chunk| hub_chunk(chunk, None))),
            // Nothing has committed yet: the attempt fails and may fail over.
            Err(reason) => out.push(Chunk::Error(AttemptError::new(
                FailureClass::ContentFiltered,
                reason,
            ))),
        }
    }

    fn end(&mut self, out: &mut Vec<Chunk>) {
        if !self.0.complete() {
            return;
        }
        if let Some((chunk, usage)) = self.0.usage_chunk() {
            out.push(hub_chunk(&chunk, Some(usage)));
        }
        out.push(Chunk::Done);
    }
}

#[cfg(test)]
mod tests;
