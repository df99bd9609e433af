//! Amazon Bedrock Converse / ConverseStream (`api: Bedrock`).
//!
//! Every request goes through the hub format ([`crate::convert::openai_bedrock`]), is POSTed to
//! `{baseUrl}/model/{modelId}/converse` (or `/converse-stream`) with the model id path-escaped
//! (inference profile ids and ARNs hold `:` and `/`), and is signed with SigV4 (service
//! `bedrock`, the provider's region) by the maintained `aws-sigv4` crate with the keys the
//! upstream's credential source gave ([`Credential::Aws`]). Streams use AWS's binary
//! event-stream framing, which the stream reader turns into named events
//! ([`crate::convert::eventstream`]); exceptions inside a stream become classified errors. A
//! guardrail or content filter stopping the answer before any content is a `ContentFiltered`
//! failure, whole or streamed (the role is held until content shows, as Azure's is).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use switchyard_crds::v1alpha1::{Api, FailureClass};

use super::{
    Call, Chunk, Completion, Framing, Provider, StreamDecoder, completion_for, hub_chunk,
    malformed, post_json, unix_now,
};
use crate::convert::sse::SseEvent;
use crate::convert::{ClientApi, openai_bedrock};
use crate::failure::{self, AttemptError};
use crate::upstream::credentials::{AwsCredentials, Credential};

/// The SigV4 service name of Bedrock's runtime API.
pub const SIGNING_SERVICE: &str = "bedrock";

/// Everything but RFC 3986's unreserved characters is escaped in the model id's path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The Bedrock protocol.
pub struct Bedrock;

/// The URL of one Converse call.
pub fn url(base_url: &str, model: &str, stream: bool) -> String {
    let operation = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    let model = utf8_percent_encode(model, PATH_SEGMENT);
    format!(
        "{}/model/{model}/{operation}",
        base_url.trim_end_matches('/')
    )
}

/// Signs `request` (whose body is `body`) in place for `service` in `region` at `time`.
pub fn sign_request<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    keys: &AwsCredentials,
    (region, service): (&str, &str),
    time: SystemTime,
) -> Result<(), AttemptError> {
    let failed = |what: &str| {
        AttemptError::new(
            FailureClass::AuthError,
            format!("cannot sign the Bedrock request: {what}"),
        )
    };
    let identity = Credentials::new(
        keys.access_key_id.expose(),
        keys.secret_access_key.expose(),
        keys.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "switchyard",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| failed("incomplete signing parameters"))?
        .into();
    let uri = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers,
        SignableBody::Bytes(body),
    )
    .map_err(|_| failed("the request cannot be signed"))?;
    // Errors here name no key: the crate's messages are about the request's shape.
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed(&e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    for name in [header::AUTHORIZATION.as_str(), "x-amz-security-token"] {
        if let Some(value) = request.headers_mut().get_mut(name) {
            value.set_sensitive(true);
        }
    }
    Ok(())
}

impl Provider for Bedrock {
    fn api(&self) -> Api {
        Api::Bedrock
    }

    fn build_request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
        let body = serde_json::to_vec(&openai_bedrock::request(call.request))
            .map_err(|e| malformed(&e))?;
        let uri = url(&call.upstream.def.base_url, call.model, call.stream);
        let mut request = post_json(uri, body.clone(), call)?;
        if call.stream {
            request.headers_mut().insert(
                header::ACCEPT,
                HeaderValue::from_static("application/vnd.amazon.eventstream"),
            );
        }
        let Credential::Aws(keys) = call.credential else {
            return Err(AttemptError::new(
                FailureClass::AuthError,
                "no AWS credentials for this Bedrock provider",
            ));
        };
        let region = call.upstream.def.region.as_deref().ok_or_else(|| {
            AttemptError::new(FailureClass::AuthError, "a Bedrock provider needs a region")
        })?;
        sign_request(
            &mut request,
            &body,
            keys,
            (region, SIGNING_SERVICE),
            SystemTime::now(),
        )?;
        Ok(request)
    }

    fn parse_response(
        &self,
        body: Bytes,
        client: ClientApi,
        model: &str,
    ) -> Result<Completion, AttemptError> {
        let resp: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e))?;
        if let Some(reason) = openai_bedrock::filtered(&resp) {
            return Err(AttemptError::new(FailureClass::ContentFiltered, reason));
        }
        let (hub, usage) = openai_bedrock::response(&resp, &completion_id(), model, unix_now())
            .ok_or_else(|| malformed(&"not a Converse answer"))?;
        Ok(completion_for(client, &hub, Some(usage)))
    }

    fn stream_decoder(&self, _client: ClientApi, model: &str) -> Box<dyn StreamDecoder> {
        // Hub chunks either way: the stream encoder puts them into the client's format.
        Box::new(Decoder {
            inner: openai_bedrock::StreamDecoder::new(
                completion_id(),
                model.to_string(),
                unix_now(),
            ),
            done: false,
        })
    }

    fn classify_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
        let mut error = failure::classify_http(status, headers, body);
        // `x-amzn-ErrorType: ThrottlingException:http://internal.amazon.com/...`; older answers
        // name the type in the body's `__type` instead.
        let kind = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_string())
            .or_else(|| {
                let value: Value = serde_json::from_slice(body).ok()?;
                let t = value.get("__type")?.as_str()?;
                Some(t.rsplit('#').next().unwrap_or(t).to_string())
            });
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| Some(v.get("message").or(v.get("Message"))?.as_str()?.to_string()));
        if let Some(class) = kind
            .as_deref()
            .and_then(|k| class_of(k, message.as_deref()))
        {
            error.class = class;
        }
        error
    }
}

/// The failure class of a Bedrock error type (`ThrottlingException`, or the stream's
/// `throttlingException`), given its message; `None` leaves the status-based class.
pub fn class_of(kind: &str, message: Option<&str>) -> Option<FailureClass> {
    let message = message.unwrap_or_default().to_ascii_lowercase();
    let kind = kind.to_ascii_lowercase();
    Some(match kind.as_str() {
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => {
            FailureClass::RateLimited
        }
        "modeltimeoutexception" => FailureClass::Timeout,
        "serviceunavailableexception" => FailureClass::Overloaded,
        "modelnotreadyexception"
        | "internalserverexception"
        | "modelstreamerrorexception"
        | "modelerrorexception"
        | "internalfailure" => FailureClass::ServerError,
        "accessdeniedexception"
        | "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "expiredtokenexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception" => FailureClass::AuthError,
        // The model id is this target's configuration, not the caller's mistake: fail over.
        "resourcenotfoundexception" => FailureClass::ServerError,
        "validationexception"
            if [
                "too long",
                "too many tokens",
                "context",
                "input is too long",
                "max_tokens",
            ]
            .iter()
            .any(|n| message.contains(n)) =>
        {
            FailureClass::ContextLengthExceeded
        }
        "validationexception" => FailureClass::ClientError,
        _ => return None,
    })
}

/// A chunk or completion id: Converse names none.
fn completion_id() -> String {
    format!("chatcmpl-bedrock-{:016x}", rand::random::<u64>())
}

struct Decoder {
    inner: openai_bedrock::StreamDecoder,
    done: bool,
}

impl StreamDecoder for Decoder {
    fn framing(&self) -> Framing {
        Framing::AwsEventStream
    }

    fn decode(&mut self, event: SseEvent, out: &mut Vec<Chunk>) {
        let kind = event.event.as_deref().unwrap_or_default();
        let data: Value = match crate::convert::parse_json(&event.data) {
            Ok(data) => data,
            Err(e) => return out.push(Chunk::Error(malformed(&e))),
        };
        if kind == "error" || kind.ends_with("Exception") {
            let message = data.get("message").and_then(Value::as_str);
            let class = class_of(kind, message).unwrap_or(FailureClass::ServerError);
            let code = data.get("code").and_then(Value::as_str).unwrap_or(kind);
            return out.push(Chunk::Error(AttemptError::new(
                class,
                format!("{code} in stream: {}", message.unwrap_or("no message")),
            )));
        }
        if self.done {
            return; // nothing follows messageStop and metadata
        }
        match self.inner.event(kind, &data) {
            openai_bedrock::Decoded::Chunk(chunk) => out.push(hub_chunk(&chunk, None)),
            openai_bedrock::Decoded::Usage(chunk, usage) => {
                out.push(hub_chunk(&chunk, Some(usage)));
            }
            openai_bedrock::Decoded::Nothing => {}
            // Nothing has committed yet: the attempt fails and may fail over.
            openai_bedrock::Decoded::Filtered(reason) => {
                self.done = true;
                return out.push(Chunk::Error(AttemptError::new(
                    FailureClass::ContentFiltered,
                    reason,
                )));
            }
        }
        if self.inner.complete() {
            self.done = true;
            out.push(Chunk::Done);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sigv4_tests;
