//! Embeddings upstream, per wire protocol: the request for one target and its answer in OpenAI's
//! format (docs/reference/translation.md#embeddings).
//!
//! - `api: OpenAI` (and every OpenAI-compatible API): `POST {baseUrl}/embeddings` with the
//!   client's body, `model` replaced by the target's; the answer passes through untouched.
//! - `api: AzureOpenAI`: OpenAI's body and answer at Azure's URL (`{baseUrl}/embeddings`, or the
//!   classic deployment's with `azure.apiVersion`), the key in `api-key`.
//! - `api: Gemini`: `POST {baseUrl}/models/{model}:batchEmbedContents`, translated both ways by
//!   [`crate::convert::embeddings`]. Gemini embeds text only; the request path never sends it
//!   token arrays.
//! - `api: Anthropic` has no embeddings API; compile refuses such targets, so a request for one is
//!   a configuration error.
//!
//! Embeddings are never streamed: the answer's head comes when every vector is ready.

use bytes::Bytes;
use http::header;
use http_body_util::Full;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use switchyard_crds::v1alpha1::{Api, FailureClass};

use super::{Call, WithModel, azure, malformed, post_json, secret_header};
use crate::convert::Usage;
use crate::convert::embeddings::{self, EmbeddingRequest, Input};
use crate::convert::wire::ObjectOnly;
use crate::failure::AttemptError;
use crate::upstream::tokens;

/// The upstream request embedding `request` with `call`'s target. `call.request` is the client's
/// body.
pub fn build_request(
    call: &Call<'_>,
    request: &EmbeddingRequest,
) -> Result<http::Request<Full<Bytes>>, AttemptError> {
    let def = &call.upstream.def;
    match def.api {
        Api::OpenAI => {
            let with_model = WithModel {
                body: call.request,
                model: call.model,
                stream: false,
            };
            let body = serde_json::to_vec(&with_model).map_err(|e| malformed(&e))?;
            let mut upstream = post_json(format!("{}/embeddings", def.base_url), body, call)?;
            if let Some(key) = &def.api_key {
                upstream.headers_mut().insert(
                    header::AUTHORIZATION,
                    secret_header(&format!("Bearer {}", key.expose()))?,
                );
            }
            Ok(upstream)
        }
        Api::Gemini => {
            let Input::Texts(texts) = &request.input else {
                return Err(AttemptError::new(
                    FailureClass::ClientError,
                    "Gemini embeds text only, not token arrays",
                ));
            };
            // Gemini names models `models/{model}`; a target configured that way must not get it
            // twice.
            let model = call.model.strip_prefix("models/").unwrap_or(call.model);
            let body = embeddings::gemini_request(model, texts, request.dimensions);
            let body = serde_json::to_vec(&body).map_err(|e| malformed(&e))?;
            let uri = format!("{}/models/{model}:batchEmbedContents", def.base_url);
            let mut upstream = post_json(uri, body, call)?;
            if let Some(key) = &def.api_key {
                upstream
                    .headers_mut()
                    .insert("x-goog-api-key", secret_header(key.expose())?);
            }
            Ok(upstream)
        }
        Api::AzureOpenAI => {
            // OpenAI's body (a classic deployment ignores `model`); Azure's URL and key header.
            let with_model = WithModel {
                body: call.request,
                model: call.model,
                stream: false,
            };
            let body = serde_json::to_vec(&with_model).map_err(|e| malformed(&e))?;
            let uri =
                azure::embeddings_url(&def.base_url, def.azure_api_version.as_deref(), call.model);
            let mut upstream = post_json(uri, body, call)?;
            azure::authorize(&mut upstream, def.api_key.as_ref())?;
            Ok(upstream)
        }
        api @ (Api::Anthropic | Api::Bedrock | Api::VertexAI) => Err(AttemptError::new(
            FailureClass::ClientError,
            format!("the sidecar serves no embeddings for api {}", api.as_str()),
        )),
    }
}

/// A successful answer in OpenAI's format.
pub struct Embedded {
    pub body: Bytes,
    pub usage: Usage,
    /// The provider reported no usage: `usage` is [`estimate`]'s.
    pub estimated: bool,
}

/// A successful answer of `api` in OpenAI's format, and its usage: the provider's when it
/// reports one, else [`estimate`]. A malformed answer is a `ServerError`, which fails over.
pub fn parse_response(
    api: Api,
    body: Bytes,
    request: &EmbeddingRequest,
    model: &str,
) -> Result<Embedded, AttemptError> {
    match api {
        Api::Gemini => {
            let answer: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e))?;
            let usage = estimate(&request.input);
            let model = model.strip_prefix("models/").unwrap_or(model);
            let openai = embeddings::gemini_response(
                &answer,
                request.input.len(),
                model,
                request.base64,
                usage.input,
            )
            .ok_or_else(|| {
                malformed(&format!(
                    "not a BatchEmbedContentsResponse with {} embeddings",
                    request.input.len()
                ))
            })?;
            Ok(Embedded {
                body: crate::convert::json_bytes(&openai),
                usage,
                estimated: true,
            })
        }
        _ => {
            #[derive(Deserialize)]
            struct Lite {
                data: Vec<IgnoredAny>,
                usage: Option<LiteUsage>,
            }
            #[derive(Deserialize)]
            struct LiteUsage {
                prompt_tokens: u64,
            }
            // An object only: serde's derive would read `[[...], null]` as an answer.
            let ObjectOnly(lite) =
                serde_json::from_slice::<ObjectOnly<Lite>>(&body).map_err(|e| malformed(&e))?;
            if lite.data.len() != request.input.len() {
                return Err(malformed(&format!(
                    "{} embeddings for {} inputs",
                    lite.data.len(),
                    request.input.len()
                )));
            }
            let estimated = lite.usage.is_none();
            let usage = lite.usage.map_or_else(
                || estimate(&request.input),
                |u| Usage {
                    input: u.prompt_tokens,
                    ..Usage::default()
                },
            );
            Ok(Embedded {
                body,
                usage,
                estimated,
            })
        }
    }
}

/// The input's tokens when the provider does not say: the o200k tokenizer's count of the text
/// (the one chat uses for estimates), or the tokens themselves for token arrays.
pub fn estimate(input: &Input) -> Usage {
    let tokens = match input {
        Input::Texts(texts) => texts.iter().map(|t| tokens::count_text(t)).sum(),
        Input::Tokens(arrays) => arrays.iter().map(|a| a.len() as u64).sum(),
    };
    Usage {
        input: tokens,
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_format_answers_must_be_objects_with_one_vector_per_input() {
        let request = embeddings::parse(br#"{"model":"e","input":["a","b"]}"#).unwrap();
        let parse = |body: &'static [u8]| {
            parse_response(Api::OpenAI, Bytes::from_static(body), &request, "m")
        };
        let good = parse(
            br#"{"data":[{"embedding":[0.5]},{"embedding":[1]}],"usage":{"prompt_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!((good.usage.input, good.estimated), (3, false));
        // A list would be read field by field by serde's derive: `[data, usage]`.
        for bad in [
            &br#"[[{"embedding":[0.5]},{"embedding":[1]}],{"prompt_tokens":3}]"#[..],
            br#"{"data":[{"embedding":[0.5]}]}"#,
            b"not json",
        ] {
            let error = parse(bad).err().unwrap();
            assert_eq!(error.class, FailureClass::ServerError);
        }
    }
}
