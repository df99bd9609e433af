//! `api: VertexAI`: Google's and Anthropic's models on Vertex AI
//! (docs/reference/crds.md#vertex-ai).
//!
//! A target's `publisher` picks the protocol; both share Vertex's model URL,
//! `{baseUrl}/projects/{project}/locations/{region}/publishers/{publisher}/models/{model}:{method}`,
//! and its auth, `Authorization: Bearer` with an access token of the provider's service account
//! ([`crate::upstream::gcp_oauth`]), which the attempt fetches before building the request.
//! - `Google`: Gemini's `generateContent` body and answers, exactly as [`Gemini`] builds and reads
//!   them; methods `streamGenerateContent?alt=sse` and `generateContent`.
//! - `Anthropic`: Anthropic's Messages body and answers, exactly as [`Anthropic`] builds and reads
//!   them (Anthropic-format clients pass through), except that the body has no `model` (the URL
//!   names it) and carries `anthropic_version: "vertex-2023-10-16"` instead of the header;
//!   methods `streamRawPredict` and `rawPredict`.
//!
//! The answer side ([`Provider::stream_decoder`], [`Provider::parse_response`],
//! [`Provider::classify_error`]) is not told the publisher, so it tells the two protocols apart by
//! what they send, which never overlaps: every Anthropic stream event is named and has a string
//! `type` (Gemini's have neither), an Anthropic message has `"type": "message"`, and an Anthropic
//! error body `"type": "error"` (Google's errors are `{"error": {"code", "message", "status"}}`).
//! Google's errors are read as [`Gemini`] reads them (429 `RESOURCE_EXHAUSTED` is a rate limit,
//! the token-count 400 a context-length error); 401 `UNAUTHENTICATED` and 403
//! `PERMISSION_DENIED` are `AuthError`s, as they are for every provider.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};
use switchyard_crds::v1alpha1::{Api, FailureClass, Publisher};

use super::anthropic::Anthropic;
use super::gemini::Gemini;
use super::{
    Call, Chunk, Completion, Provider, StreamDecoder, malformed, post_json, secret_header,
};
use crate::convert::sse::SseEvent;
use crate::convert::{ClientApi, openai_anthropic};
use crate::failure::AttemptError;
use crate::upstream::credentials::Credential;

/// The `anthropic_version` Vertex requires in Anthropic request bodies.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The Vertex AI protocol.
pub struct Vertex;

/// What is escaped in a path segment (project, region, model): everything but RFC 3986's
/// unreserved characters and `@`, which Vertex's model versions use (`claude-sonnet-4@20250514`)
/// and which a path segment may hold as it is.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

impl Provider for Vertex {
    fn api(&self) -> Api {
        Api::VertexAI
    }

    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
        let def = &call.upstream.def;
        let (Some(gcp), Some(region)) = (&def.gcp, &def.region) else {
            // The compiler refuses such a provider; a hand-written table could still hold one.
            return Err(AttemptError::new(
                FailureClass::AuthError,
                "api VertexAI needs gcp settings and a region",
            ));
        };
        let Credential::Bearer(token) = call.credential else {
            return Err(AttemptError::new(
                FailureClass::AuthError,
                "no access token for the service account",
            ));
        };
        let url = model_url(
            &def.base_url,
            &gcp.project,
            region,
            call.publisher,
            call.model,
            call.stream,
        );
        let mut request = match call.publisher {
            Publisher::Google => {
                // Gemini's body and headers; only the URL and the auth differ.
                let mut request = Gemini.build_request(call)?;
                *request.uri_mut() = url.parse().map_err(|e| {
                    AttemptError::new(FailureClass::ServerError, format!("bad upstream URL: {e}"))
                })?;
                request.headers_mut().remove("x-goog-api-key");
                request
            }
            Publisher::Anthropic => {
                let mut request = post_json(url, anthropic_body(call)?, call)?;
                // As for Anthropic's own API, the client's beta flags always reach the model.
                if let Some(beta) = call.client_headers.get("anthropic-beta") {
                    request.headers_mut().insert("anthropic-beta", beta.clone());
                }
                request
            }
        };
        let bearer = secret_header(&format!("Bearer {}", token.expose()))?;
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
        Ok(request)
    }

    fn parse_response(
        &self,
        body: Bytes,
        client: ClientApi,
        model: &str,
    ) -> Result<Completion, AttemptError> {
        let is_message = serde_json::from_slice::<TypeTag>(&body)
            .is_ok_and(|t| t.kind.as_deref() == Some("message"));
        if is_message {
            Anthropic.parse_response(body, client, model)
        } else {
            Gemini.parse_response(body, client, model)
        }
    }

    fn stream_decoder(&self, client: ClientApi, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(Decoder {
            client,
            model: model.to_string(),
            inner: None,
        })
    }

    fn classify_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
        let anthropic = serde_json::from_slice::<TypeTag>(body)
            .is_ok_and(|t| t.kind.as_deref() == Some("error"));
        if anthropic {
            // Anthropic's error shapes, read as for Anthropic's own API.
            Anthropic.classify_error(status, headers, body)
        } else {
            Gemini.classify_error(status, headers, body)
        }
    }
}

/// The model URL for `publisher`'s `model`, the streamed or the whole answer's method.
pub fn model_url(
    base_url: &str,
    project: &str,
    region: &str,
    publisher: Publisher,
    model: &str,
    stream: bool,
) -> String {
    let (name, method) = match (publisher, stream) {
        (Publisher::Google, true) => ("google", "streamGenerateContent?alt=sse"),
        (Publisher::Google, false) => ("google", "generateContent"),
        (Publisher::Anthropic, true) => ("anthropic", "streamRawPredict"),
        (Publisher::Anthropic, false) => ("anthropic", "rawPredict"),
    };
    format!(
        "{base_url}/projects/{}/locations/{}/publishers/{name}/models/{}:{method}",
        utf8_percent_encode(project, SEGMENT),
        utf8_percent_encode(region, SEGMENT),
        utf8_percent_encode(model, SEGMENT),
    )
}

/// The Messages body for an Anthropic model on Vertex: the client's own body for Anthropic
/// clients (as the Anthropic provider forwards it), else the hub request converted.
fn anthropic_body(call: &Call<'_>) -> Result<Vec<u8>, AttemptError> {
    let converted;
    let body = match call
        .original
        .filter(|_| call.client == ClientApi::Anthropic)
    {
        Some(original) => original,
        None => {
            converted = openai_anthropic::request(call.request, call.model, call.stream);
            &converted
        }
    };
    serde_json::to_vec(&VertexBody {
        body,
        stream: call.stream,
    })
    .map_err(|e| malformed(&e))
}

/// A Messages body as Vertex takes it: no `model`, `anthropic_version` first, `stream` as the
/// call wants; serialized without cloning the (possibly large) message list.
struct VertexBody<'a> {
    body: &'a Map<String, Value>,
    stream: bool,
}

impl serde::Serialize for VertexBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("anthropic_version", ANTHROPIC_VERSION)?;
        for (key, value) in self.body {
            if !matches!(key.as_str(), "model" | "stream" | "anthropic_version") {
                map.serialize_entry(key, value)?;
            }
        }
        if self.stream {
            map.serialize_entry("stream", &true)?;
        } else if self.body.contains_key("stream") {
            map.serialize_entry("stream", &false)?;
        }
        map.end()
    }
}

/// The `type` of a JSON object, if it has a string one.
#[derive(serde::Deserialize)]
struct TypeTag {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The Gemini or Anthropic decoder, chosen by the first event.
struct Decoder {
    client: ClientApi,
    model: String,
    inner: Option<Box<dyn StreamDecoder>>,
}

impl Decoder {
    fn inner(&mut self, first: Option<&SseEvent>) -> &mut Box<dyn StreamDecoder> {
        let (client, model) = (self.client, self.model.as_str());
        self.inner.get_or_insert_with(|| {
            let anthropic = first.is_some_and(|e| {
                e.event.is_some()
                    || serde_json::from_slice::<TypeTag>(&e.data).is_ok_and(|t| t.kind.is_some())
            });
            if anthropic {
                Anthropic.stream_decoder(client, model)
            } else {
                Gemini.stream_decoder(client, model)
            }
        })
    }
}

impl StreamDecoder for Decoder {
    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        self.inner(Some(&event)).decode(event, out);
    }

    fn end(&mut self, out: &mut Vec<Chunk>) {
        // An empty stream ends as Gemini's does: incomplete, so an error.
        self.inner(None).end(out);
    }
}

#[cfg(test)]
mod tests;
