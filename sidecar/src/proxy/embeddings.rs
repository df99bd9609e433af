//! `POST /v1/embeddings` (OpenAI's format): the same phases as chat, on embedding routes only
//! (docs/reference/api.md#embeddings).
//!
//! The request is checked ([`crate::convert::embeddings::parse`]), routed by `model` to a route
//! whose models are `type: Embedding` (a chat route is a 400 naming it), then rules, budgets,
//! the strategy and [`super::attempt::run`] with its breakers, limits and failover, as for chat.
//! Only the exchange with one target differs ([`attempt`]): one whole JSON answer, never a
//! stream, in OpenAI's format whatever the provider speaks, priced at `inputPerMillion`.
//! Embeddings are never cached.

use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use switchyard_crds::v1alpha1::{Api, FailureClass, ModelType};
use switchyard_crds::window::Timestamp;
use tokio::time::{Instant, timeout_at};

use super::attempt::{self, Answer, MAX_ANSWER_BYTES, MAX_ERROR_BYTES, Work};
use super::ctx::{Outcome, RequestCtx, Spend};
use super::respond::{self, ClientApi, ClientError};
use super::{Proxy, answer, route, rules, strategy};
use crate::budget;
use crate::convert::embeddings::{self, EmbeddingRequest, Input};
use crate::failure::AttemptError;
use crate::providers::{self, Call};
use crate::proxy::body::ResponseBody;
use crate::table::RouteRt;
use crate::upstream::TargetRt;
use crate::upstream::credentials::Credential;
use crate::upstream::health::ProbeGuard;
use crate::upstream::limits::LimitPermit;

impl Proxy {
    /// Answers one embeddings request, in OpenAI's format.
    pub(super) async fn embeddings(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let mut ctx = RequestCtx::new(self.runtime.clone(), ClientApi::OpenAI);
        match self.embed(&mut ctx, request).await {
            Ok(response) => response,
            Err(error) => {
                let mut response = respond::error_response(ClientApi::OpenAI, &error);
                respond::add_served_headers(&mut response, &ctx.served(None));
                let status = error.status.as_u16();
                let detail = Some(error.message.as_str());
                ctx.finish(Outcome::Rejected, status, None, Spend::default(), detail);
                response
            }
        }
    }

    async fn embed(
        &self,
        ctx: &mut RequestCtx,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let (snapshot, parts, bytes) = self.receive(ctx, request).await?;
        let request = embeddings::parse(&bytes).map_err(bad)?;
        ctx.client_model = route::shown_model(&request.model);
        let route = route::find(&snapshot, &request.model)?;
        route::check_kind(&route, ModelType::Embedding)?;
        ctx.route = Some(route.route.name.clone());
        // Rules see the embeddings body: header matches work as for chat; prompt-based matches
        // (`hasTools`, `minComplexity`) find no `messages` in it. Prompt tokens are the input's,
        // estimated at 4 bytes a token, and no output is expected, so `LowestCost` ranks by
        // `inputPerMillion` and `minPromptTokens` sees the input's size.
        let mut facts = rules::RequestFacts::embeddings(
            &request.body,
            &parts.headers,
            request.input.estimated_tokens(),
        );
        let (targets, rule) = rules::select(&route, &mut facts);
        ctx.rule = rule.map(str::to_string);
        let targets = able(&route, targets, &request.input)?;
        if !route.budgets.is_empty() {
            budget::admit(&route.budgets, Timestamp::now())
                .map_err(|exhausted| ClientError::budget_exhausted(&exhausted))?;
            ctx.budgets = route.budgets.clone();
        }
        let ordered = strategy::order(
            route.route.strategy,
            &targets,
            &mut facts,
            &mut rand::rng(),
            Instant::now(),
        );
        let work = Work::Embeddings(&request);
        let attempts = attempt::run(ctx, &route.route, ordered, work, &parts.headers).await;
        Ok(answer(ctx, attempts))
    }
}

fn bad(message: String) -> ClientError {
    ClientError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// Most inputs Gemini's `batchEmbedContents` takes in one request (Google's documented bound).
const GEMINI_MAX_BATCH: usize = 100;

/// The targets that can embed `input`: Gemini embeds text only, and at most
/// [`GEMINI_MAX_BATCH`] inputs a request, so token arrays and larger batches go to the
/// OpenAI-compatible targets (sending Gemini a batch it must refuse would only cost a round trip
/// and end in its 400); a route with none left is the caller's 400 saying why.
fn able(
    route: &RouteRt,
    targets: &[TargetRt],
    input: &Input,
) -> Result<Vec<TargetRt>, ClientError> {
    let (what, why) = match input {
        Input::Tokens(_) => (
            "token-array input".to_string(),
            "which embed text only; send `input` as strings".to_string(),
        ),
        Input::Texts(texts) if texts.len() > GEMINI_MAX_BATCH => (
            format!("{} inputs", texts.len()),
            format!("which embed at most {GEMINI_MAX_BATCH} inputs a request; split the batch"),
        ),
        Input::Texts(_) => return Ok(targets.to_vec()),
    };
    let able: Vec<TargetRt> = targets
        .iter()
        .filter(|t| matches!(t.upstream.def.api, Api::OpenAI | Api::AzureOpenAI))
        .cloned()
        .collect();
    if able.is_empty() {
        return Err(bad(format!(
            "{what} cannot be embedded by route {}: its targets are Gemini models, {why}",
            route.route.name
        )));
    }
    Ok(able)
}

/// One embeddings exchange with one target. The answer's head comes only when every vector is
/// ready, so `firstToken` bounds the wait for it (a provider that accepts and never answers is
/// left then) and `total` the whole exchange.
pub(super) async fn attempt(
    ctx: &mut RequestCtx,
    target: &TargetRt,
    request: &EmbeddingRequest,
    headers: &HeaderMap,
    permit: LimitPermit,
    probe: ProbeGuard,
) -> Result<Answer, AttemptError> {
    let api = target.upstream.def.api;
    let provider = providers::for_api(api)?;
    let call = Call {
        upstream: &target.upstream,
        model: &target.target.model,
        request: &request.body,
        original: None,
        client: ClientApi::OpenAI,
        stream: false,
        client_headers: headers,
        credential: &Credential::None,
        publisher: target.target.publisher,
    };
    let mut upstream_request = providers::embeddings::build_request(&call, request)?;
    ctx.propagate(upstream_request.headers_mut());

    let timeouts = target.upstream.def.timeouts;
    let started = Instant::now();
    let first_token = Duration::from_millis(timeouts.first_token);
    let total_deadline = started + Duration::from_millis(timeouts.total);
    let head_deadline = (started + first_token).min(total_deadline);
    let waiting = target.health.waiting(first_token, started);
    let sent = target.upstream.client.request(upstream_request);
    let answer = match timeout_at(head_deadline, sent).await {
        Err(_) => return Err(AttemptError::timeout("no answer", head_deadline - started)),
        Ok(Err(e)) => return Err(attempt::connect_error(&e)),
        Ok(Ok(answer)) => answer,
    };
    waiting.answered(Instant::now());
    let (parts, body) = answer.into_parts();
    if !parts.status.is_success() {
        let bytes = attempt::read_limited(
            body,
            MAX_ERROR_BYTES,
            total_deadline,
            FailureClass::ServerError,
        )
        .await
        .unwrap_or_default();
        return Err(provider.classify_error(parts.status, &parts.headers, &bytes));
    }
    // An answer over the bound is the request's doing (too many inputs, or dimensions, for
    // one answer), not the provider's fault: the caller's error, neither failed over (the next
    // target would answer as large, and be paid again) nor counted by the breaker.
    let bytes = attempt::read_limited(
        body,
        MAX_ANSWER_BYTES,
        total_deadline,
        FailureClass::ClientError,
    )
    .await
    .map_err(|mut e| {
        if e.class == FailureClass::ClientError {
            e.message
                .push_str(": ask for fewer inputs, or fewer dimensions, per request");
        }
        e
    })?;
    let embedded =
        providers::embeddings::parse_response(api, bytes, request, &target.target.model)?;
    target
        .health
        .record_success(started.elapsed(), Instant::now());
    drop(probe);
    let spend = ctx.charge_with(target, Some(embedded.usage), embedded.estimated);
    ctx.record_attempt(target, "Success");
    drop(permit);
    Ok(Answer::Whole {
        body: embedded.body,
        spend,
    })
}
