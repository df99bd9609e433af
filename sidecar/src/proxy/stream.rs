//! Streamed answers: the commit point and what happens after it (DESIGN.md §3, Streaming).
//!
//! Upstream events are buffered (at most [`COMMIT_BUFFER_BYTES`]) until the first one that
//! carries content, a tool call, a role or a finish reason. Until then any failure is an ordinary
//! attempt failure and the request can fail over. At that point the status line and headers go
//! to the client and a task forwards the rest; a failure after the commit ends the stream with
//! one error event in the client's format and closes it.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use switchyard_crds::v1alpha1::FailureClass;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use super::attempt::{served, timeout};
use super::ctx::{Outcome, RequestCtx, Spend};
use super::respond::{self, ClientApi, ClientError};
use crate::body::{self, ResponseBody};
use crate::failure::AttemptError;
use crate::health::ProbeGuard;
use crate::limits::LimitPermit;
use crate::providers::{Chunk, StreamDecoder, Usage};
use crate::sse::{SseEvent, SseParser};
use crate::state::TargetRt;

/// Most bytes of events held back before the commit point.
pub const COMMIT_BUFFER_BYTES: usize = 64 * 1024;

/// The time limits of one streamed attempt.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub first_token: Instant,
    pub total: Instant,
    pub idle: Duration,
}

/// Reads upstream frames into decoded chunks, enforcing the timeouts.
struct EventReader {
    body: Incoming,
    parser: SseParser,
    decoder: Box<dyn StreamDecoder>,
    events: Vec<SseEvent>,
    chunks: Vec<Chunk>,
    queue: VecDeque<Chunk>,
    deadlines: Deadlines,
    last_event: Option<Instant>,
}

impl EventReader {
    /// The next chunk, `None` when the upstream ended the body.
    async fn next(&mut self) -> Result<Option<Chunk>, AttemptError> {
        loop {
            if let Some(chunk) = self.queue.pop_front() {
                return Ok(Some(chunk));
            }
            let (deadline, what) = match self.last_event {
                None => (self.deadlines.first_token, "no first token"),
                Some(last) => (last + self.deadlines.idle, "no stream event"),
            };
            let (deadline, what) = if self.deadlines.total < deadline {
                (self.deadlines.total, "stream not finished")
            } else {
                (deadline, what)
            };
            let frame = match timeout_at(deadline, self.body.frame()).await {
                Err(_) => {
                    let window = match what {
                        "no stream event" => self.deadlines.idle,
                        _ => {
                            deadline.saturating_duration_since(self.last_event.unwrap_or(deadline))
                        }
                    };
                    return Err(timeout(what, window));
                }
                Ok(None) if self.parser.has_partial() => {
                    return Err(AttemptError::new(
                        FailureClass::ServerError,
                        "provider stream cut off inside an event",
                    ));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(AttemptError::new(
                        FailureClass::ConnectError,
                        format!("provider stream broke: {e}"),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.parser
                .push(&data, &mut self.events)
                .map_err(|e| AttemptError::new(FailureClass::ServerError, e.to_string()))?;
            if !self.events.is_empty() {
                self.last_event = Some(Instant::now());
            }
            for event in self.events.drain(..) {
                self.decoder.decode(event, &mut self.chunks);
            }
            self.queue.extend(self.chunks.drain(..));
        }
    }
}

/// The wire form of one chunk for the client.
fn encode(api: ClientApi, json: &[u8]) -> Bytes {
    // TODO(translation): Anthropic clients get Anthropic events once `/v1/messages` is served.
    debug_assert_eq!(api, ClientApi::OpenAI);
    let mut frame = Vec::with_capacity(json.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(json);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

fn done_frame(api: ClientApi) -> Option<Bytes> {
    (api == ClientApi::OpenAI).then(|| Bytes::from_static(b"data: [DONE]\n\n"))
}

/// Reads up to the commit point, then hands the rest to a forwarding task. An error before the
/// commit is returned so that the request can fail over.
pub async fn start(
    ctx: &RequestCtx,
    target: &TargetRt,
    decoder: Box<dyn StreamDecoder>,
    body: Incoming,
    deadlines: Deadlines,
    permit: LimitPermit,
    probe: ProbeGuard,
) -> Result<Response<ResponseBody>, AttemptError> {
    let started = Instant::now();
    let mut reader = EventReader {
        body,
        parser: SseParser::default(),
        decoder,
        events: Vec::new(),
        chunks: Vec::new(),
        queue: VecDeque::new(),
        deadlines,
        last_event: None,
    };
    let mut held = Vec::new();
    let mut held_bytes = 0;
    let mut usage = None;
    let mut done = false;
    loop {
        match reader.next().await? {
            None => {
                return Err(AttemptError::new(
                    FailureClass::ServerError,
                    "provider stream ended before any content",
                ));
            }
            Some(Chunk::Error(e)) => return Err(e),
            Some(Chunk::Done) => {
                done = true;
                break;
            }
            Some(Chunk::Data {
                json,
                commits,
                usage: u,
                usage_only,
            }) => {
                usage = u.or(usage);
                if !usage_only || ctx.wants_usage {
                    let frame = encode(ctx.client_api, &json);
                    held_bytes += frame.len();
                    held.push(frame);
                }
                if commits || held_bytes > COMMIT_BUFFER_BYTES {
                    break;
                }
            }
        }
    }

    // Committed: from here on the client has an answer and failover is no longer possible.
    let now = Instant::now();
    target.health.record_success(now - started, now);
    drop(probe);
    ctx.record_first_token(target);
    let (tx, body) = body::channel(32);
    let mut response = respond::stream_response(body);
    respond::add_served_headers(&mut response, &served(ctx, Some(target)));
    let task = Forward {
        ctx: ctx.clone(),
        target: target.clone(),
        reader,
        tx,
        usage,
        done,
        _permit: permit,
    };
    tokio::spawn(task.run(held));
    Ok(response)
}

/// The part of a stream after the commit point.
struct Forward {
    ctx: RequestCtx,
    target: TargetRt,
    reader: EventReader,
    tx: mpsc::Sender<Bytes>,
    usage: Option<Usage>,
    done: bool,
    /// Holds the concurrency slot until the stream ends.
    _permit: LimitPermit,
}

/// How a committed stream ended.
enum End {
    Complete,
    Failed(AttemptError),
    ClientGone,
}

impl Forward {
    async fn run(mut self, held: Vec<Bytes>) {
        let end = self.pump(held).await;
        let api = self.ctx.client_api;
        let target = &self.target;
        let spend = self
            .usage
            .map(|u| Spend::price(u, target))
            .unwrap_or_default();
        target
            .upstream
            .limits
            .charge_tokens(spend.usage.input + spend.usage.output, Instant::now());
        self.ctx.record_spend(target, &spend);
        match end {
            End::Complete => {
                if let Some(frame) = done_frame(api) {
                    let _ = self.tx.send(frame).await;
                }
                self.ctx.record_attempt(target, "Success");
                self.ctx
                    .finish(Outcome::Success, 200, Some(target), spend, None);
            }
            End::Failed(error) => {
                let error = match &target.upstream.def.api_key {
                    Some(key) => error.redact(key.expose()),
                    None => error,
                };
                target
                    .health
                    .record_failure(&error, &target.upstream.def.breaker, Instant::now());
                let shown = ClientError::new(
                    error.status(),
                    error.code(),
                    format!(
                        "{} ({}): {}: {}",
                        target.upstream.id, target.target.model, error.class, error.message
                    ),
                );
                let _ = self.tx.send(respond::stream_error_event(api, &shown)).await;
                self.ctx.record_attempt(target, "StreamError");
                self.ctx.finish(
                    Outcome::StreamError,
                    200,
                    Some(target),
                    spend,
                    Some(&error.message),
                );
            }
            End::ClientGone => {
                self.ctx.record_attempt(target, "StreamError");
                self.ctx.finish(
                    Outcome::StreamError,
                    200,
                    Some(target),
                    spend,
                    Some("client went away"),
                );
            }
        }
        // Dropping `tx` closes the client's stream; dropping the reader closes the upstream one.
    }

    async fn pump(&mut self, held: Vec<Bytes>) -> End {
        for frame in held {
            if self.tx.send(frame).await.is_err() {
                return End::ClientGone;
            }
        }
        while !self.done {
            // Watch the client too: a client that left must not keep an upstream stream open.
            let next = tokio::select! {
                next = self.reader.next() => next,
                () = self.tx.closed() => return End::ClientGone,
            };
            match next {
                Err(e) => return End::Failed(e),
                Ok(None) => {
                    return End::Failed(AttemptError::new(
                        FailureClass::ServerError,
                        "provider closed the stream before it finished",
                    ));
                }
                Ok(Some(Chunk::Done)) => self.done = true,
                Ok(Some(Chunk::Error(e))) => return End::Failed(e),
                Ok(Some(Chunk::Data {
                    json,
                    usage,
                    usage_only,
                    ..
                })) => {
                    self.usage = usage.or(self.usage);
                    if usage_only && !self.ctx.wants_usage {
                        continue;
                    }
                    if self
                        .tx
                        .send(encode(self.ctx.client_api, &json))
                        .await
                        .is_err()
                    {
                        return End::ClientGone;
                    }
                }
            }
        }
        End::Complete
    }
}
