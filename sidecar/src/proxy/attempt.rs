//! Phase 4: try the ordered targets, each at most once, until one answers or the route's
//! failover policy says stop (docs/architecture.md).
//!
//! A target is passed over while its circuit is open, a `Retry-After` is pending, it is silent
//! or a local limit is exhausted: the eligible targets go first, in the strategy's order, and
//! those blocked by their health follow as last resorts, soonest to recover first (a circuit may
//! still be open for a provider that has recovered while the others broke). Local limits are
//! never overdrawn for that; only when no target may be tried at all is the one whose block ends
//! first sent anyway. A target whose budget or provider fleet limit is exhausted is never tried,
//! and when that leaves nothing to try the request is refused with the budget (or the provider
//! and its fleet limit) named. `ContextLengthExceeded` fails over only to targets with a larger
//! context window.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use switchyard_crds::table::Route;
use switchyard_crds::v1alpha1::FailureClass;
use switchyard_crds::window::Timestamp;
use tokio::time::{Instant, timeout_at};

use super::ctx::{RequestCtx, Spend};
use super::route::ParsedRequest;
use super::stream;
use crate::budget::{self, Exhausted};
use crate::convert::embeddings::EmbeddingRequest;
use crate::failure::AttemptError;
use crate::providers::{self, Call};
use crate::proxy::body::ResponseBody;
use crate::upstream::TargetRt;
use crate::upstream::credentials::Credential;
use crate::upstream::health::{Admission, ProbeGuard};
use crate::upstream::limits::LimitPermit;

/// Largest whole answer assembled for a client that asked for no stream.
pub(super) const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Largest error body read from a provider; the rest is not needed to classify it.
pub(super) const MAX_ERROR_BYTES: usize = 1024 * 1024;

/// What a successful attempt produced.
pub enum Answer {
    /// A whole answer in the client's format, and what it cost.
    Whole { body: Bytes, spend: Spend },
    /// A committed stream, which records the request itself when it ends.
    Stream(Response<ResponseBody>),
}

/// What the attempts send: a chat request, or an embeddings request
/// ([`super::embeddings`]). Both take the same path through targets, breakers, limits and
/// budgets; only the exchange with one target differs.
#[derive(Clone, Copy)]
pub enum Work<'a> {
    Chat(&'a ParsedRequest),
    Embeddings(&'a EmbeddingRequest),
}

/// How the attempts went.
pub enum Attempts {
    Answered(TargetRt, Box<Answer>),
    /// No target answered: each attempt's failure, in order (none when no target could be tried).
    Failed(Vec<(TargetRt, AttemptError)>),
    /// Nothing was tried, and a target was passed over for its exhausted budget or fleet limit.
    OverBudget(Exhausted),
}

/// Tries `ordered` for the request until one target answers or the failover policy says stop.
pub async fn run(
    ctx: &mut RequestCtx,
    route: &Route,
    ordered: Vec<TargetRt>,
    work: Work<'_>,
    headers: &HeaderMap,
) -> Attempts {
    let metrics = ctx.runtime.metrics.clone();
    let mut failures: Vec<(TargetRt, AttemptError)> = Vec::new();
    let mut context_floor: Option<u32> = None;
    let mut over_budget = None;
    for (target, forced) in candidates(ordered, Instant::now()) {
        if ctx.attempts >= route.max_attempts {
            break;
        }
        if let Some(floor) = context_floor
            && target.target.context_window.is_none_or(|w| w <= floor)
        {
            continue;
        }
        let Some((permit, probe)) = admit(&target, forced).await else {
            continue;
        };
        // Claimed when the target's turn comes and it may be sent, so that a target never
        // reached is not counted as refused, and after `admit` (which may wait for a
        // concurrency slot) so that a fleet limit's slot is taken in the minute the request
        // goes, and never held by a request whose client left while waiting. Refused, the
        // permit and the probe slot drop here. A target without budgets does not read the clock.
        if !target.budgets.is_empty()
            && let Err(exhausted) = budget::claim_target(&target.budgets, Timestamp::now())
        {
            over_budget.get_or_insert(exhausted);
            drop((permit, probe));
            continue;
        }
        if let Some((previous, error)) = failures.last() {
            metrics
                .failovers
                .with_label_values(&[&route.name, &previous.upstream.id, error.metric_label()])
                .inc();
        }
        ctx.attempts += 1;
        ctx.begin_attempt(&target);
        let answer = match work {
            Work::Chat(request) => attempt(ctx, &target, request, headers, permit, probe).await,
            Work::Embeddings(request) => {
                super::embeddings::attempt(ctx, &target, request, headers, permit, probe).await
            }
        };
        match answer {
            Ok(answer) => return Attempts::Answered(target, Box::new(answer)),
            Err(error) => {
                ctx.in_flight = None;
                let error = target.fail(error);
                ctx.record_attempt(&target, error.metric_label());
                tracing::debug!(route = %route.name, provider = %target.upstream.id, class = %error.class, error = %error.message, "attempt failed");
                if error.class == FailureClass::ContextLengthExceeded {
                    context_floor = Some(target.target.context_window.unwrap_or(0));
                }
                let fails_over = error.fails_over(&route.failover_on);
                failures.push((target, error));
                if !fails_over {
                    break;
                }
            }
        }
    }
    match over_budget {
        Some(exhausted) if failures.is_empty() => Attempts::OverBudget(exhausted),
        _ => Attempts::Failed(failures),
    }
}

/// Targets to try: the eligible ones in order, then those blocked by their health (an open
/// circuit, a `Retry-After`, silence), soonest to recover first. A target over a local limit is
/// never a last resort: the limits are the operator's to keep. Only when nothing else may be
/// tried is the one whose block ends first sent anyway. Blocked targets are flagged.
fn candidates(ordered: Vec<TargetRt>, now: Instant) -> Vec<(TargetRt, bool)> {
    let mut go = Vec::with_capacity(ordered.len());
    let mut unhealthy: Vec<(Instant, TargetRt)> = Vec::new();
    let mut limited: Vec<(Instant, TargetRt)> = Vec::new();
    for target in ordered {
        let health = match target.health.peek(now) {
            Admission::Go { .. } => None,
            Admission::Blocked { until } => Some(until),
        };
        match (health, target.upstream.limits.blocked_until(now)) {
            (None, None) => go.push((target, false)),
            (Some(until), None) => unhealthy.push((until, target)),
            (health, Some(until)) => {
                limited.push((health.max(Some(until)).unwrap_or(until), target))
            }
        }
    }
    unhealthy.sort_by_key(|(until, _)| *until);
    if go.is_empty() && unhealthy.is_empty() {
        // Nothing else may be tried: the soonest to recover rather than refusing outright.
        unhealthy.extend(limited.into_iter().min_by_key(|(until, _)| *until));
    }
    go.extend(unhealthy.into_iter().map(|(_, target)| (target, true)));
    go
}

/// Claims the target's probe slot (if half-open) and a limit permit.
async fn admit(target: &TargetRt, forced: bool) -> Option<(LimitPermit, ProbeGuard)> {
    if forced {
        let probe = target.health.force();
        let permit = target.upstream.limits.acquire_anyway().await;
        return Some((permit, ProbeGuard(probe.then(|| target.health.clone()))));
    }
    let now = Instant::now();
    let probe = match target.health.admit(now) {
        Admission::Go { probe } => probe,
        Admission::Blocked { .. } => return None,
    };
    let guard = ProbeGuard(probe.then(|| target.health.clone()));
    // On a limit refusal the guard drops here and frees the probe slot.
    let permit = target.upstream.limits.try_acquire(now).ok()?;
    Some((permit, guard))
}

/// The upstream's current signing keys or access token, fetching them if need be: within the
/// connect timeout, since reaching the provider is what they are for.
async fn credential(target: &TargetRt) -> Result<Credential, AttemptError> {
    let Some(source) = &target.upstream.credentials else {
        return Ok(Credential::None);
    };
    let limit = Duration::from_millis(target.upstream.def.timeouts.connect);
    match tokio::time::timeout(limit, source.credential(&target.upstream.client)).await {
        Ok(credential) => credential,
        Err(_) => Err(AttemptError::timeout(
            "no credentials from the token endpoint",
            limit,
        )),
    }
}

/// One attempt at one target.
async fn attempt(
    ctx: &mut RequestCtx,
    target: &TargetRt,
    request: &ParsedRequest,
    headers: &HeaderMap,
    permit: LimitPermit,
    probe: ProbeGuard,
) -> Result<Answer, AttemptError> {
    let credential = credential(target).await?;
    attempt_with(ctx, target, request, headers, permit, probe, &credential)
        .await
        .map_err(|error| credential.scrub(error))
}

/// [`attempt`], authenticated with `credential`.
async fn attempt_with(
    ctx: &mut RequestCtx,
    target: &TargetRt,
    request: &ParsedRequest,
    headers: &HeaderMap,
    permit: LimitPermit,
    probe: ProbeGuard,
    credential: &Credential,
) -> Result<Answer, AttemptError> {
    let provider = providers::for_api(target.upstream.def.api)?;
    // The prompt template's text for this target, rendered before the first attempt.
    let shaped = super::template::shape(ctx, target, request);
    let (hub, original) = match &shaped {
        Some(s) => (&s.hub, s.original.as_ref()),
        None => (&request.hub, request.original.as_ref()),
    };
    // Every request streams upstream (but see `streams_upstream`), whatever the client asked
    // for: the response head comes at once, so `firstToken` and `idle` bound every request (a provider that accepts and never
    // answers is left after `firstToken`, not `total`), silence is measured on heads that do not
    // wait for a whole generation, and a break before the end fails over. A client that asked
    // for no stream gets the events assembled into one answer (docs/reference/sidecar.md#streaming).
    let call = Call {
        upstream: &target.upstream,
        model: &target.target.model,
        request: hub,
        original,
        client: ctx.client_api,
        stream: streams_upstream(request),
        client_headers: headers,
        credential,
        publisher: target.target.publisher,
    };
    let call_streams = call.stream;
    let mut upstream_request = if request.passthrough {
        providers::responses::build_request(&call)?
    } else {
        provider.build_request(&call)?
    };
    ctx.propagate(upstream_request.headers_mut());

    let timeouts = target.upstream.def.timeouts;
    let started = Instant::now();
    let total_deadline = started + Duration::from_millis(timeouts.total);
    let first_token_deadline =
        (started + Duration::from_millis(timeouts.first_token)).min(total_deadline);

    let waiting = target
        .health
        .waiting(Duration::from_millis(timeouts.first_token), started);
    // A whole answer's head comes only with the whole generation: `total` bounds it.
    let head_deadline = if call_streams {
        first_token_deadline
    } else {
        total_deadline
    };
    let answer = match timeout_at(
        head_deadline,
        target.upstream.client.request(upstream_request),
    )
    .await
    {
        Err(_) if call_streams => {
            return Err(AttemptError::timeout(
                "no first token",
                first_token_deadline - started,
            ));
        }
        Err(_) => return Err(AttemptError::timeout("no answer", total_deadline - started)),
        Ok(Err(e)) => return Err(connect_error(&e)),
        Ok(Ok(answer)) => answer,
    };
    waiting.answered(Instant::now());
    let (parts, body) = answer.into_parts();
    if !parts.status.is_success() {
        let bytes = read_limited(
            body,
            MAX_ERROR_BYTES,
            total_deadline,
            FailureClass::ServerError,
        )
        .await
        .unwrap_or_default();
        return Err(provider.classify_error(parts.status, &parts.headers, &bytes));
    }
    let deadlines = stream::Deadlines {
        sent: started,
        first_token: first_token_deadline,
        total: total_deadline,
        idle: Duration::from_millis(timeouts.idle),
    };
    let decoder: Box<dyn providers::StreamDecoder> = if request.passthrough {
        Box::new(providers::responses::Decoder::default())
    } else {
        provider.stream_decoder(ctx.client_api, &target.target.model)
    };
    if ctx.stream {
        let codec = (decoder, &request.echo);
        let response = stream::start(ctx, target, codec, body, deadlines, permit, probe).await?;
        return Ok(Answer::Stream(response));
    }

    let whole = if call_streams {
        let (api, limit) = (ctx.client_api, MAX_ANSWER_BYTES);
        stream::assemble(api, decoder, body, deadlines, limit, &request.echo).await?
    } else {
        let bytes = read_limited(
            body,
            MAX_ANSWER_BYTES,
            total_deadline,
            FailureClass::ServerError,
        )
        .await?;
        let completion = if request.passthrough {
            providers::responses::parse_response(bytes)?
        } else {
            provider.parse_response(bytes, ctx.client_api, &target.target.model)?
        };
        stream::Assembled {
            body: completion.body,
            usage: completion.usage,
            first_token: started.elapsed(),
        }
    };
    // Recorded once, at the clean end. The latency is the first content's, as for streams: a
    // whole generation's length says nothing about how fast a target answers.
    target
        .health
        .record_success(whole.first_token, Instant::now());
    drop(probe);
    let spend = ctx.charge(target, whole.usage);
    ctx.record_attempt(target, "Success");
    drop(permit);
    Ok(Answer::Whole {
        body: whole.body,
        spend,
    })
}

/// Whether the provider is asked for a stream. Every chat request is (see [`attempt`]), except a
/// non-streamed one asking for audio output: OpenAI streams audio only as pcm16, in base64 pieces
/// that do not join into one valid base64 string, so that request keeps the provider's whole
/// answer (bounded by `total` alone, as before). A non-streamed Responses API request passed
/// through asks for the provider's whole Response too: no assembler reads Responses events.
fn streams_upstream(request: &ParsedRequest) -> bool {
    if request.passthrough {
        return request.stream;
    }
    let audio = request
        .hub
        .get("modalities")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|modalities| modalities.iter().any(|m| m == "audio"));
    request.stream || !audio
}

/// A failed exchange with no HTTP answer: a connect timeout is a `Timeout`, the rest (refused,
/// reset, DNS, TLS, a connection closed before the answer) a `ConnectError`.
pub(super) fn connect_error(error: &hyper_util::client::legacy::Error) -> AttemptError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    let mut detail = error.to_string();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return AttemptError::new(FailureClass::Timeout, "connect timed out");
        }
        detail = format!("{detail}: {e}");
        source = e.source();
    }
    AttemptError::new(FailureClass::ConnectError, detail)
}

/// Reads a whole body, bounded in size and time; a body over `limit` is a failure of class
/// `too_large`.
pub(super) async fn read_limited(
    mut body: hyper::body::Incoming,
    limit: usize,
    deadline: Instant,
    too_large: FailureClass,
) -> Result<Bytes, AttemptError> {
    let mut out = Vec::new();
    loop {
        match timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(AttemptError::new(
                    FailureClass::Timeout,
                    "answer not complete within the total timeout",
                ));
            }
            Ok(None) => return Ok(Bytes::from(out)),
            Ok(Some(Err(e))) => {
                return Err(AttemptError::new(
                    FailureClass::ConnectError,
                    format!("answer broke off: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > limit {
                        return Err(AttemptError::new(
                            too_large,
                            format!("answer larger than {limit} bytes"),
                        ));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn request(stream: bool, body: Value) -> ParsedRequest {
        let Value::Object(hub) = body else {
            unreachable!("an object")
        };
        ParsedRequest {
            hub,
            original: None,
            model: "m".into(),
            stream,
            wants_usage: false,
            passthrough: false,
            echo: Default::default(),
        }
    }

    #[test]
    fn every_request_streams_upstream_but_a_whole_answer_with_audio() {
        let text = json!({"model": "m", "messages": []});
        let audio = json!({"model": "m", "messages": [], "modalities": ["text", "audio"]});
        assert!(streams_upstream(&request(false, text.clone())));
        assert!(streams_upstream(&request(true, text)));
        assert!(!streams_upstream(&request(false, audio.clone())));
        assert!(
            streams_upstream(&request(true, audio)),
            "the client asked for the stream"
        );
    }
}
