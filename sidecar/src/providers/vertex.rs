//! `api: VertexAI`: a placeholder until its module lands (issue 14); every call is refused with an
//! error saying so, which fails over like any provider error.

use bytes::Bytes;
use http_body_util::Full;
use switchyard_crds::v1alpha1::{Api, FailureClass};

use super::{Call, Completion, Provider, StreamDecoder};
use crate::convert::ClientApi;
use crate::failure::AttemptError;

pub struct Vertex;

fn unsupported() -> AttemptError {
    AttemptError::new(
        FailureClass::ServerError,
        "api VertexAI is not implemented yet",
    )
}

impl Provider for Vertex {
    fn api(&self) -> Api {
        Api::VertexAI
    }

    fn build_request(&self, _call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, AttemptError> {
        Err(unsupported())
    }

    fn parse_response(&self, _body: Bytes, _client: ClientApi) -> Result<Completion, AttemptError> {
        Err(unsupported())
    }

    fn stream_decoder(&self, client: ClientApi) -> Box<dyn StreamDecoder> {
        super::openai::OpenAi.stream_decoder(client)
    }
}
