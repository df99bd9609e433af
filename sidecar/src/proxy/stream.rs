//! Streamed answers: the commit point and what happens after it
//! (docs/reference/sidecar.md#streaming).
//!
//! Upstream events are buffered (at most [`COMMIT_BUFFER_BYTES`]) until the first one that
//! carries content, a tool call, a role or a finish reason. Until then any failure is an ordinary
//! attempt failure and the request can fail over. At that point the status line and headers go
//! to the client and a task forwards the rest, event by event, in the client's format; a failure
//! after the commit ends the stream with one error event in the client's format and closes it.
//! The circuit breaker hears a stream's verdict when it ends: a clean end is a success, a failure
//! after the commit a failure, so a provider that breaks every stream mid-way is avoided.
//!
//! A client that asked for no stream gets [`assemble`]: the same reader and decoder, read to the
//! clean end with nothing sent before it, then one whole answer; the events go into the answer
//! as the client's events would, or straight in where the decoder can
//! ([`StreamDecoder::decode_whole`]).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use switchyard_crds::v1alpha1::FailureClass;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use super::ctx::{Outcome, RequestCtx, Spend};
use super::respond::{self, ClientError};
use crate::convert::assemble::Assembler;
use crate::convert::eventstream::EventStreamParser;
use crate::convert::responses::Echo;
use crate::convert::sse::{SseEvent, SseParser};
use crate::convert::to_client::{self, ClientEncoder};
use crate::convert::{ClientApi, Usage};
use crate::failure::AttemptError;
use crate::providers::{Chunk, Framing, StreamDecoder};
use crate::proxy::body::{self, ResponseBody};
use crate::upstream::TargetRt;
use crate::upstream::health::ProbeGuard;
use crate::upstream::limits::LimitPermit;

/// Most bytes of events held back before the commit point.
pub const COMMIT_BUFFER_BYTES: usize = 64 * 1024;
/// Frames queued between the forwarding task and the client's connection: enough to ride out a
/// slow write without the task waiting on each, few enough that a stalled client holds little.
const FORWARD_QUEUE_FRAMES: usize = 32;

/// The time limits of one streamed attempt.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// When the request was sent: timeouts and latency count from here.
    pub sent: Instant,
    pub first_token: Instant,
    pub total: Instant,
    pub idle: Duration,
}

/// Cuts upstream bytes into events, by the provider's framing.
enum Parser {
    Sse(SseParser),
    AwsEventStream(EventStreamParser),
}

impl Parser {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Sse => Self::Sse(SseParser::default()),
            Framing::AwsEventStream => Self::AwsEventStream(EventStreamParser::default()),
        }
    }

    fn push(&mut self, data: &[u8], out: &mut Vec<SseEvent>) -> Result<(), AttemptError> {
        let error =
            |e: &dyn std::fmt::Display| AttemptError::new(FailureClass::ServerError, e.to_string());
        match self {
            Self::Sse(p) => p.push(data, out).map_err(|e| error(&e)),
            Self::AwsEventStream(p) => p.push(data, out).map_err(|e| error(&e)),
        }
    }

    fn has_partial(&self) -> bool {
        match self {
            Self::Sse(p) => p.has_partial(),
            Self::AwsEventStream(p) => p.has_partial(),
        }
    }
}

/// Reads upstream frames into decoded chunks, enforcing the timeouts.
struct EventReader {
    body: Incoming,
    parser: Parser,
    decoder: Box<dyn StreamDecoder>,
    /// What the parser made of the last frame read.
    parsed: Vec<SseEvent>,
    /// Events read and not yet decoded (or taken with [`Self::next_event`]).
    events: VecDeque<SseEvent>,
    chunks: Vec<Chunk>,
    queue: VecDeque<Chunk>,
    deadlines: Deadlines,
    last_event: Option<Instant>,
    /// The upstream ended the body.
    body_ended: bool,
    /// The decoder has been told so.
    ended: bool,
}

impl EventReader {
    fn new(body: Incoming, decoder: Box<dyn StreamDecoder>, deadlines: Deadlines) -> Self {
        Self {
            body,
            parser: Parser::new(decoder.framing()),
            decoder,
            parsed: Vec::new(),
            events: VecDeque::new(),
            chunks: Vec::new(),
            queue: VecDeque::new(),
            deadlines,
            last_event: None,
            body_ended: false,
            ended: false,
        }
    }

    /// The deadline for the next event, and what its timeout would say (the error itself is
    /// built only when it expires: formatting one per event cost more than reading the event).
    fn deadline(&self) -> (Instant, &'static str, Duration) {
        let d = &self.deadlines;
        let (at, what, after) = match self.last_event {
            None => (d.first_token, "no first token", d.first_token - d.sent),
            Some(last) => (last + d.idle, "no stream event", d.idle),
        };
        if d.total < at {
            (d.total, "stream not finished", d.total - d.sent)
        } else {
            (at, what, after)
        }
    }

    /// A chunk already decoded, taken without reading more; none when the next one is an error
    /// (which, after the commit point, only the forwarding task may act on).
    fn ready(&mut self) -> Option<Chunk> {
        match self.queue.front() {
            None | Some(Chunk::Error(_)) => None,
            Some(_) => self.queue.pop_front(),
        }
    }

    /// The next chunk, `None` when the upstream ended the body. The events of one read are
    /// decoded together, so that [`Self::ready`] finds those that came with the one returned.
    async fn next(&mut self) -> Result<Option<Chunk>, AttemptError> {
        loop {
            if let Some(chunk) = self.queue.pop_front() {
                return Ok(Some(chunk));
            }
            if !self.events.is_empty() {
                for event in self.events.drain(..) {
                    self.decoder.decode(event, &mut self.chunks);
                }
            } else if self.body_ended {
                if self.ended {
                    return Ok(None);
                }
                self.ended = true;
                self.decoder.end(&mut self.chunks);
            } else {
                self.read().await?;
            }
            self.queue.extend(self.chunks.drain(..));
        }
    }

    /// The next event as the provider framed it, not decoded (for
    /// [`StreamDecoder::decode_whole`]); `None` when the upstream ended the body.
    async fn next_event(&mut self) -> Result<Option<SseEvent>, AttemptError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if self.body_ended {
                return Ok(None);
            }
            self.read().await?;
        }
    }

    /// Puts back an event taken with [`Self::next_event`], to be read first.
    fn unread(&mut self, event: SseEvent) {
        self.events.push_front(event);
    }

    /// Reads one frame of the body into events, within the next deadline.
    async fn read(&mut self) -> Result<(), AttemptError> {
        let (deadline, what, after) = self.deadline();
        let frame = match timeout_at(deadline, self.body.frame()).await {
            Err(_) => return Err(AttemptError::timeout(what, after)),
            Ok(None) if self.parser.has_partial() => {
                return Err(AttemptError::new(
                    FailureClass::ServerError,
                    "provider stream cut off inside an event",
                ));
            }
            Ok(None) => {
                self.body_ended = true;
                return Ok(());
            }
            Ok(Some(Err(e))) => {
                return Err(AttemptError::new(
                    FailureClass::ConnectError,
                    format!("provider stream broke: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            return Ok(());
        };
        self.parser.push(&data, &mut self.parsed)?;
        if !self.parsed.is_empty() {
            self.last_event = Some(Instant::now());
        }
        self.events.extend(self.parsed.drain(..));
        Ok(())
    }
}

/// What one chunk did.
enum Step {
    /// Bytes for the client (possibly none), and whether the chunk commits the stream.
    Frame(Vec<u8>, bool),
    Done,
}

/// Applies one chunk: usage is remembered, the client's bytes are returned.
fn step(
    chunk: Chunk,
    encoder: &mut ClientEncoder,
    usage: &mut Option<Usage>,
) -> Result<Step, AttemptError> {
    match chunk {
        Chunk::Error(e) => Err(e),
        Chunk::Done => Ok(Step::Done),
        Chunk::Data {
            json,
            commits,
            usage: u,
            usage_only,
        } => {
            *usage = u.or(*usage);
            Ok(Step::Frame(encoder.chunk(&json, usage_only), commits))
        }
        Chunk::Raw {
            frame,
            commits,
            usage: u,
        } => {
            *usage = u.or(*usage);
            Ok(Step::Frame(encoder.raw(&frame), commits))
        }
    }
}

/// Usage for a stream whose provider reported none: the request body at four bytes a token
/// (JSON included, so rather more than the prompt) and one token per content frame forwarded
/// (streams carry about one token per event). Logged as estimated.
fn estimate(ctx: &RequestCtx, forwarded: u64) -> Usage {
    Usage {
        input: u64::try_from(ctx.request_bytes / 4).unwrap_or(u64::MAX),
        cached_input: 0,
        output: forwarded,
    }
}

/// A stream read to its clean end and assembled into one whole answer.
pub struct Assembled {
    /// The answer in the client's format.
    pub body: Bytes,
    pub usage: Option<Usage>,
    /// How long after the request was sent the first content came, as a stream's latency.
    pub first_token: Duration,
}

/// Reads a whole stream for a client that asked for no stream, through the same decoder a
/// streaming client's answer takes, and assembles the events into one answer of at most `limit`
/// bytes: each event straight into the answer where the decoder reads it so
/// ([`StreamDecoder::decode_whole`]), else through the client encoder as a streaming client
/// would get it (an OpenAI-format answer skips the SSE framing of its hub chunks). Nothing
/// reaches the client before the clean end, so any failure on the way (an error event, a break,
/// a cut event, a timeout) is an ordinary attempt failure.
pub async fn assemble(
    api: ClientApi,
    decoder: Box<dyn StreamDecoder>,
    body: Incoming,
    deadlines: Deadlines,
    limit: usize,
    echo: &Echo,
) -> Result<Assembled, AttemptError> {
    let mut reader = EventReader::new(body, decoder, deadlines);
    // A Responses client's answer is assembled in the hub format and converted whole at the end
    // (its stream events would only be parsed back into the same Response).
    let hub_api = match api {
        ClientApi::Responses => ClientApi::OpenAI,
        other => other,
    };
    // A whole answer always carries its usage, whether or not the client asked for it.
    let mut encoder = ClientEncoder::new(hub_api, true);
    let mut assembler = Assembler::new(api);
    let mut usage = None;
    let mut first_token = None;
    // Whether the decoder reads each event straight into the answer (`decode_whole`, for an
    // OpenAI-format answer): asked with the first event, and a decoder that can answers for
    // every event.
    let mut whole = hub_api == ClientApi::OpenAI;
    loop {
        let commits = if whole {
            match reader.next_event().await? {
                Some(event) => match reader.decoder.decode_whole(&event, &mut assembler) {
                    Some(decoded) => {
                        let decoded = decoded?;
                        usage = decoded.usage.or(usage);
                        if decoded.done {
                            break;
                        }
                        decoded.commits
                    }
                    None => {
                        whole = false;
                        reader.unread(event);
                        continue;
                    }
                },
                // The body ended (with no end event, or before any event): what that means is the
                // decoder's `end` to say, through the path below.
                None => {
                    whole = false;
                    continue;
                }
            }
        } else {
            let Some(chunk) = reader.next().await? else {
                return Err(AttemptError::new(
                    FailureClass::ServerError,
                    "provider closed the stream before it finished",
                ));
            };
            match chunk {
                // A hub chunk for an OpenAI-format answer goes to the assembler as it is: the
                // encoder would only frame it as an event for the assembler to read back.
                Chunk::Data {
                    json,
                    commits,
                    usage: u,
                    ..
                } if matches!(encoder, ClientEncoder::OpenAI { .. }) => {
                    usage = u.or(usage);
                    assembler.event(&json).map_err(malformed)?;
                    commits
                }
                chunk => match step(chunk, &mut encoder, &mut usage)? {
                    Step::Done => {
                        assembler.push(&encoder.done()).map_err(malformed)?;
                        break;
                    }
                    Step::Frame(frame, commits) => {
                        assembler.push(&frame).map_err(malformed)?;
                        commits
                    }
                },
            }
        };
        if commits && first_token.is_none() {
            first_token = Some(deadlines.sent.elapsed());
        }
        if assembler.size() > limit {
            return Err(too_large(limit));
        }
    }
    let mut body = assembler.finish().map_err(malformed)?;
    if api != hub_api {
        body = to_client::whole(api, &body, echo).map_err(malformed)?;
    }
    if body.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Assembled {
        body,
        usage,
        first_token: first_token.unwrap_or_else(|| deadlines.sent.elapsed()),
    })
}

fn malformed(e: String) -> AttemptError {
    AttemptError::new(
        FailureClass::ServerError,
        format!("malformed provider stream: {e}"),
    )
}

fn too_large(limit: usize) -> AttemptError {
    AttemptError::new(
        FailureClass::ServerError,
        format!("answer larger than {limit} bytes"),
    )
}

/// Reads up to the commit point, then hands the rest to a forwarding task. An error before the
/// commit is returned so that the request can fail over. The codec is the provider's decoder and
/// what a Responses client's Response echoes of its request.
pub async fn start(
    ctx: &mut RequestCtx,
    target: &TargetRt,
    (decoder, echo): (Box<dyn StreamDecoder>, &Echo),
    body: Incoming,
    deadlines: Deadlines,
    permit: LimitPermit,
    probe: ProbeGuard,
) -> Result<Response<ResponseBody>, AttemptError> {
    let mut reader = EventReader::new(body, decoder, deadlines);
    let mut encoder = ClientEncoder::new(ctx.client_api, ctx.wants_usage).echoing(echo);
    let mut held: Vec<u8> = Vec::new();
    let mut usage = None;
    let mut done = false;
    loop {
        let Some(chunk) = reader.next().await? else {
            return Err(AttemptError::new(
                FailureClass::ServerError,
                "provider stream ended before any content",
            ));
        };
        match step(chunk, &mut encoder, &mut usage)? {
            Step::Done => {
                done = true;
                break;
            }
            Step::Frame(frame, commits) => {
                held.extend_from_slice(&frame);
                if commits || held.len() > COMMIT_BUFFER_BYTES {
                    break;
                }
            }
        }
    }

    // Committed: from here on the client has an answer and failover is no longer possible. The
    // breaker hears the verdict (and a half-open probe ends) only when the stream does.
    //
    // Events that came in the same read as the committing one go out with it, in one write: a
    // short answer, or a burst, then costs the client's connection one write rather than one
    // per event (bench/RESULTS.md, issue 15). Nothing here waits for more.
    let mut forwarded = u64::from(!held.is_empty());
    while !done && held.len() <= COMMIT_BUFFER_BYTES {
        let Some(chunk) = reader.ready() else { break };
        match step(chunk, &mut encoder, &mut usage)? {
            Step::Done => done = true,
            Step::Frame(frame, _) if frame.is_empty() => {}
            Step::Frame(frame, _) => {
                forwarded += 1;
                held.extend_from_slice(&frame);
            }
        }
    }
    if done {
        held.extend_from_slice(&encoder.done());
    }
    let now = Instant::now();
    target.health.record_latency(now - deadlines.sent, now);
    ctx.record_first_token(target);
    let (tx, body) = body::channel(FORWARD_QUEUE_FRAMES);
    // In the body before the head is handed over, so that the head and the first events leave
    // in one write: sent by the forwarding task, they followed the head in a write of their own.
    // A new channel has room for it.
    if !held.is_empty() {
        let _ = tx.try_send(Bytes::from(held));
    }
    // When that was the whole answer, the body ends with it: dropping the sender lets the end
    // of the body go out in the same write too.
    let tx = (!done).then_some(tx);
    let mut response = respond::stream_response(body);
    respond::add_served_headers(&mut response, &ctx.served(Some(target)));
    let task = Forward {
        ctx: ctx.hand_over(),
        target: target.clone(),
        reader,
        encoder,
        tx,
        usage,
        done,
        forwarded,
        _permit: permit,
        _probe: probe,
    };
    tokio::spawn(task.run());
    Ok(response)
}

/// The part of a stream after the commit point.
struct Forward {
    ctx: RequestCtx,
    target: TargetRt,
    reader: EventReader,
    encoder: ClientEncoder,
    /// The client's body; `None` when the whole answer, its end included, went into it at the
    /// commit point.
    tx: Option<mpsc::Sender<Bytes>>,
    usage: Option<Usage>,
    done: bool,
    /// Content frames sent to the client: the output estimate when the provider never said.
    forwarded: u64,
    /// Holds the concurrency slot until the stream ends.
    _permit: LimitPermit,
    /// Holds a half-open circuit's probe slot until the stream's end decides it.
    _probe: ProbeGuard,
}

/// How a committed stream ended.
enum End {
    Complete,
    Failed(AttemptError),
    ClientGone,
    /// The sidecar's drain time ran out.
    Cut,
}

impl Forward {
    async fn run(mut self) {
        let end = self.pump().await;
        let api = self.ctx.client_api;
        let target = &self.target;
        // A stream that ends (or is cut, or left by its client) before the provider reported
        // usage was still generated and billed: charge an estimate rather than nothing, or a
        // client could dodge its budget by closing streams early.
        let usage = self
            .usage
            .or_else(|| Some(estimate(&self.ctx, self.forwarded)));
        let spend = self.ctx.charge_with(target, usage, self.usage.is_none());
        match end {
            End::Complete => {
                if let Some(tx) = &self.tx {
                    let last = self.encoder.done();
                    if !last.is_empty() {
                        let _ = tx.send(Bytes::from(last)).await;
                    }
                }
                target.health.record_recovery();
                self.ctx.record_attempt(target, "Success");
                self.ctx
                    .finish(Outcome::Success, 200, Some(target), spend, None);
            }
            End::Failed(error) => {
                let error = target.fail(error);
                let shown = ClientError::new(
                    error.status(),
                    error.code(),
                    format!(
                        "{} ({}): {}: {}",
                        target.upstream.id, target.target.model, error.class, error.message
                    ),
                );
                let event = respond::stream_failure(&mut self.encoder, api, &shown);
                if let Some(tx) = &self.tx {
                    let _ = tx.send(event).await;
                }
                self.stream_error(spend, &error.message);
            }
            End::Cut => {
                // Not the provider's doing: nothing is recorded against its health.
                let shown = ClientError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "switchyard_shutdown",
                    "the sidecar is shutting down and its drain time ran out".to_string(),
                );
                let event = respond::stream_failure(&mut self.encoder, api, &shown);
                if let Some(tx) = &self.tx {
                    let _ = tx.send(event).await;
                }
                self.stream_error(spend, "cut at shutdown");
            }
            End::ClientGone => self.stream_error(spend, "client went away"),
        }
        // Dropping `tx` closes the client's stream; dropping the reader closes the upstream one.
    }

    /// Records a committed stream that did not end cleanly.
    fn stream_error(&mut self, spend: Spend, why: &str) {
        self.ctx.record_attempt(&self.target, "StreamError");
        self.ctx.finish(
            Outcome::StreamError,
            200,
            Some(&self.target),
            spend,
            Some(why),
        );
    }

    async fn pump(&mut self) -> End {
        let Some(tx) = self.tx.clone() else {
            return End::Complete; // the whole answer went out with the head
        };
        let runtime = self.ctx.runtime.clone();
        let cut = runtime.streams_cut();
        tokio::pin!(cut);
        while !self.done {
            // Watch the client too: a client that left must not keep an upstream stream open.
            let next = tokio::select! {
                next = self.reader.next() => next,
                () = tx.closed() => return End::ClientGone,
                () = &mut cut => return End::Cut,
            };
            let chunk = match next {
                Err(e) => return End::Failed(e),
                Ok(None) => {
                    return End::Failed(AttemptError::new(
                        FailureClass::ServerError,
                        "provider closed the stream before it finished",
                    ));
                }
                Ok(Some(chunk)) => chunk,
            };
            match step(chunk, &mut self.encoder, &mut self.usage) {
                Err(e) => return End::Failed(e),
                Ok(Step::Done) => self.done = true,
                Ok(Step::Frame(frame, _)) if frame.is_empty() => {}
                Ok(Step::Frame(frame, _)) => {
                    self.forwarded += 1;
                    if tx.send(Bytes::from(frame)).await.is_err() {
                        return End::ClientGone;
                    }
                }
            }
        }
        End::Complete
    }
}
