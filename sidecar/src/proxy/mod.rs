//! The request path, in the phases docs/architecture.md orders them:
//! [`route`] (check the request, find its route) → [`rules`] → [`strategy`] (order targets) →
//! [`template`] (render the targets' prompt templates) →
//! [`attempt`] (breakers, limits, send, failover; [`stream`] for streamed answers) →
//! [`respond`] (everything the client sees). Per-request state is one [`ctx::RequestCtx`].

pub mod attempt;
pub mod body;
pub mod ctx;
pub mod embeddings;
pub mod respond;
pub mod route;
pub mod rules;
pub mod score;
pub mod strategy;
pub mod stream;
pub mod template;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use switchyard_crds::v1alpha1::ModelType;
use switchyard_crds::window::Timestamp;
use tokio::time::Instant;

use self::attempt::{Answer, Attempts};
use self::ctx::{Outcome, RequestCtx, Spend};
use self::respond::{ClientApi, ClientError};
use crate::budget;
use crate::proxy::body::ResponseBody;
use crate::table::cache::ResponseCache;
use crate::table::{Runtime, Snapshot};

/// How long a client may take to send its request body once the headers are in. A body that
/// never ends (chunked without the last chunk, or shorter than its `Content-Length`) would
/// otherwise hold its connection for good.
pub const BODY_READ: Duration = Duration::from_secs(30);
/// `Retry-After` (seconds) while no table is loaded: a first table usually arrives within a few
/// seconds of start (files at once, the operator within one poll).
const NO_CONFIG_RETRY_AFTER_SECS: u64 = 5;

/// The data-plane service.
pub struct Proxy {
    runtime: Arc<Runtime>,
    max_body_bytes: usize,
    body_read: Duration,
}

impl Proxy {
    pub fn new(runtime: Arc<Runtime>, max_body_bytes: usize) -> Arc<Self> {
        Self::with_body_read(runtime, max_body_bytes, BODY_READ)
    }

    /// A proxy that gives clients `body_read` to send a request body.
    pub fn with_body_read(
        runtime: Arc<Runtime>,
        max_body_bytes: usize,
        body_read: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            max_body_bytes,
            body_read,
        })
    }

    /// Answers one data-plane request.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<ResponseBody> {
        let path = request.uri().path();
        match (request.method(), path) {
            (&Method::POST, "/v1/chat/completions") => self.chat(ClientApi::OpenAI, request).await,
            (&Method::GET, "/v1/models") => self.models(&request),
            (&Method::POST, "/v1/messages") => self.chat(ClientApi::Anthropic, request).await,
            (&Method::POST, "/v1/embeddings") => self.embeddings(request).await,
            (&Method::POST, "/v1/responses") => self.chat(ClientApi::Responses, request).await,
            (
                _,
                "/v1/chat/completions"
                | "/v1/models"
                | "/v1/messages"
                | "/v1/embeddings"
                | "/v1/responses",
            ) => respond::error_response(
                ClientApi::OpenAI,
                &ClientError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{} is not allowed on {path}", request.method()),
                ),
            ),
            _ => respond::error_response(
                ClientApi::OpenAI,
                &ClientError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no endpoint {path}; try POST /v1/chat/completions"),
                ),
            ),
        }
    }

    async fn chat(&self, api: ClientApi, request: Request<Incoming>) -> Response<ResponseBody> {
        let mut ctx = RequestCtx::new(self.runtime.clone(), api);
        match self.route_and_attempt(&mut ctx, request).await {
            Ok(response) => response,
            Err(error) => {
                let mut response = respond::error_response(api, &error);
                respond::add_served_headers(&mut response, &ctx.served(None));
                ctx.finish(
                    Outcome::Rejected,
                    error.status.as_u16(),
                    None,
                    Spend::default(),
                    Some(&error.message),
                );
                response
            }
        }
    }

    async fn route_and_attempt(
        &self,
        ctx: &mut RequestCtx,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let (snapshot, parts, bytes) = self.receive(ctx, request).await?;
        let checked = route::check(ctx.client_api, &bytes)?;
        let path = route::responses_path(ctx.client_api, snapshot.routes.get(&checked.model));
        let parsed = route::to_hub(ctx.client_api, checked, path)?;
        ctx.client_model = route::shown_model(&parsed.model);
        ctx.stream = parsed.stream;
        ctx.wants_usage = parsed.wants_usage;
        let route = route::find(&snapshot, &parsed.model)?;
        route::check_kind(&route, ModelType::Chat)?;
        ctx.route = Some(route.route.name.clone());
        let mut facts = rules::RequestFacts::new(&parsed.hub, &parts.headers);
        if let Some(score) = score::score(&self.runtime, &snapshot, &route, &parsed.hub).await {
            facts.set_complexity(score);
            ctx.complexity = Some(score);
        }
        let (targets, rule) = rules::select(&route, &mut facts);
        ctx.rule = rule.map(str::to_string);
        let vars = template::vars(&parts.headers)?;
        // After the rules: a rule (a header, say) can send the same body to other targets, and a
        // cached answer must come from the targets this request would have used.
        if let Some(cache) = &route.cache
            && let Some(key) = ResponseCache::key(
                &route.route.name,
                rule,
                ctx.client_api,
                &template::cache_view(&parsed.hub, &vars, &snapshot.templates, targets),
                parsed.original.as_ref(),
            )
        {
            if let Some(hit) = cache.get(&key, Instant::now()) {
                return Ok(self.cached(ctx, hit));
            }
            ctx.cache_slot = Some((cache.clone(), key));
        }
        // After the cache: a cached answer costs nothing and counts against no budget. A route
        // without budgets does not even read the clock.
        if !route.budgets.is_empty() {
            budget::admit(&route.budgets, Timestamp::now())
                .map_err(|exhausted| ClientError::budget_exhausted(&exhausted))?;
            ctx.budgets = route.budgets.clone();
        }
        let ordered = strategy::order(
            route.route.strategy,
            targets,
            &mut facts,
            &mut rand::rng(),
            Instant::now(),
        );
        ctx.prompts = template::prepare(&snapshot.templates, &ordered, &vars)?;
        let work = attempt::Work::Chat(&parsed);
        let attempts = attempt::run(ctx, &route.route, ordered, work, &parts.headers).await;
        Ok(answer(ctx, attempts))
    }

    /// What every endpoint starts with: the table to serve from (its workload noted, so that
    /// every request line names it, refused ones included), the request head and its body.
    async fn receive(
        &self,
        ctx: &mut RequestCtx,
        request: Request<Incoming>,
    ) -> Result<(Arc<Snapshot>, http::request::Parts, bytes::Bytes), ClientError> {
        // The trace first: a request refused for want of a table still joins the client's.
        let (parts, body) = request.into_parts();
        ctx.received(&parts);
        let Some(snapshot) = self.runtime.snapshot() else {
            return Err(no_config());
        };
        ctx.workload = snapshot.workload.clone();
        let bytes = self.read_body(&parts.headers, body).await?;
        ctx.request_bytes = bytes.len();
        Ok((snapshot, parts, bytes))
    }

    /// Reads the request body, bounded in size and time.
    async fn read_body(
        &self,
        headers: &http::HeaderMap,
        body: Incoming,
    ) -> Result<bytes::Bytes, ClientError> {
        let too_large = || {
            ClientError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("request body exceeds {} bytes", self.max_body_bytes),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(too_large());
        }
        let read = tokio::time::timeout(
            self.body_read,
            Limited::new(body, self.max_body_bytes).collect(),
        );
        let Ok(collected) = read.await else {
            return Err(ClientError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    self.body_read.as_secs()
                ),
            ));
        };
        let bytes = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(e) => {
                return Err(ClientError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    format!("cannot read request body: {e}"),
                ));
            }
        };
        Ok(bytes)
    }

    /// Answers from the cache: no provider is contacted, so no tokens or cost are counted.
    fn cached(
        &self,
        ctx: &mut RequestCtx,
        hit: crate::table::cache::Entry,
    ) -> Response<ResponseBody> {
        let mut response = respond::json_response(StatusCode::OK, hit.body);
        let served = respond::Served {
            route: ctx.route.as_deref(),
            provider: Some(&hit.provider),
            model: Some(&hit.model),
            attempts: 0,
            complexity: ctx.complexity,
            template: None,
        };
        respond::add_served_headers(&mut response, &served);
        response
            .headers_mut()
            .insert("x-switchyard-cache", http::HeaderValue::from_static("hit"));
        let route = ctx.route.as_deref().unwrap_or_default();
        self.runtime
            .metrics
            .cache_hits
            .with_label_values(&[route])
            .inc();
        ctx.finish(
            Outcome::Success,
            200,
            None,
            Spend::default(),
            Some("cache hit"),
        );
        response
    }

    /// `GET /v1/models`: the route names, in OpenAI's list format, or Anthropic's when the client
    /// sends `anthropic-version`.
    fn models(&self, request: &Request<Incoming>) -> Response<ResponseBody> {
        let anthropic = request.headers().contains_key("anthropic-version");
        let api = if anthropic {
            ClientApi::Anthropic
        } else {
            ClientApi::OpenAI
        };
        let Some(snapshot) = self.runtime.snapshot() else {
            return respond::error_response(api, &no_config());
        };
        let mut models: Vec<&str> = snapshot.routes.keys().map(String::as_str).collect();
        models.sort_unstable();
        let body = if anthropic {
            let data: Vec<_> = models
                .iter()
                .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"}))
                .collect();
            json!({"data": data, "has_more": false, "first_id": models.first(), "last_id": models.last()})
        } else {
            let data: Vec<_> = models
                .iter()
                .map(
                    |m| json!({"id": m, "object": "model", "created": 0, "owned_by": "switchyard"}),
                )
                .collect();
            json!({"object": "list", "data": data})
        };
        respond::json_response(StatusCode::OK, body.to_string())
    }
}

/// The client's response for how the attempts went; a whole answer is also cached if the route
/// caches. (A stream records itself; everything else is recorded here.)
fn answer(ctx: &mut RequestCtx, attempts: Attempts) -> Response<ResponseBody> {
    if !ctx.budgets.is_empty() && !matches!(attempts, Attempts::Answered(..)) {
        // No target served it: the route's budgets give back the request they counted.
        let now = Timestamp::now();
        for budget in ctx.budgets.iter() {
            budget.give_back_request(now);
        }
    }
    let (target, answer) = match attempts {
        Attempts::Answered(target, answer) => (target, *answer),
        Attempts::OverBudget(exhausted) => {
            let error = ClientError::budget_exhausted(&exhausted);
            let mut response = respond::error_response(ctx.client_api, &error);
            respond::add_served_headers(&mut response, &ctx.served(None));
            let status = error.status.as_u16();
            ctx.finish(
                Outcome::Rejected,
                status,
                None,
                Spend::default(),
                Some(&error.message),
            );
            return response;
        }
        Attempts::Failed(failures) => {
            let (mut response, detail) = respond::all_failed(ctx.client_api, &failures);
            let last = failures.last();
            respond::add_served_headers(&mut response, &ctx.served(last.map(|(t, _)| t)));
            let label = last.map_or("Unavailable", |(_, e)| e.metric_label());
            let status = response.status().as_u16();
            let target = last.map(|(t, _)| t);
            ctx.finish(
                Outcome::Failed(label),
                status,
                target,
                Spend::default(),
                Some(&detail),
            );
            return response;
        }
    };
    match answer {
        Answer::Stream(response) => response,
        Answer::Whole { body, spend } => {
            if let Some((cache, key)) = &ctx.cache_slot {
                let (provider, model) = (&target.upstream.id, &target.target.model);
                cache.put(*key, body.clone(), provider, model, Instant::now());
            }
            let mut response = respond::json_response(StatusCode::OK, body);
            respond::add_served_headers(&mut response, &ctx.served(Some(&target)));
            ctx.finish(Outcome::Success, 200, Some(&target), spend, None);
            response
        }
    }
}

/// Until the first table arrives: 503 with `Retry-After: 5` (docs/reference/api.md).
fn no_config() -> ClientError {
    let mut error = ClientError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "switchyard_no_config",
        "no route table loaded yet",
    );
    error.retry_after = Some(NO_CONFIG_RETRY_AFTER_SECS);
    error
}
