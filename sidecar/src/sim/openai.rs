//! A simulated OpenAI Chat Completions provider on 127.0.0.1 with scripted fault injection.
//!
//! [`MockProvider`] serves `POST /v1/chat/completions` (JSON and SSE) and `GET /v1/models` in
//! OpenAI's real wire format, error bodies included, and answers anything else with OpenAI's 404
//! "Invalid URL" error. Every chat request is recorded, then consumes the next queued [`Fault`];
//! without one it gets the default fault, if set, or else a normal answer shaped by the current
//! [`Behavior`]. Streamed events leave as separate body frames on their own schedule, so chunk
//! delays, stalls and truncations are real on the wire. A hung request or stalled stream parks
//! only its own connection, and shutdown (explicit or on drop) closes every connection.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep;

const DEFAULT_REPLY: &str = "Hello from the simulated provider.";
const DEFAULT_MODELS: [&str; 2] = ["gpt-4o", "gpt-4o-mini"];
const FINGERPRINT: &str = "fp_sim";
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
const INVALID: &str = "invalid_request_error";
/// How long a producer waits before aborting a body, so hyper has flushed the events before it.
const ABORT_GRACE: Duration = Duration::from_millis(20);
/// Valid-looking JSON cut short, as a misbehaving proxy in front of a provider might send it.
const GARBAGE: &[u8] = br#"{"id":"chatcmpl-sim","object":"chat.completion","choices":[{"ind"#;

// OpenAI's error messages, verbatim where the text is known.
const SERVER_ERROR: &str =
    "The server had an error while processing your request. Sorry about that!";
const OVERLOADED: &str = "The engine is currently overloaded, please try again later";
const OVERLOADED_529: &str = "The server is overloaded, please try again later";
const QUOTA: &str = "You exceeded your current quota, please check your plan and billing details.";
const BAD_KEY: &str = "Incorrect API key provided: sk-***. You can find your API key at \
                       https://platform.openai.com/account/api-keys.";
const CONTEXT: &str = "This model's maximum context length is 128000 tokens. However, your \
                       messages resulted in 130000 tokens. Please reduce the length of the \
                       messages.";
const TEMPERATURE: &str = "Invalid 'temperature': decimal above maximum value. Expected a value \
                           <= 2, but got 3 instead.";
/// Follows "Rate limit reached for {model}".
const RATE_LIMIT: &str = "in organization org-simulated on requests per min (RPM): Limit 3, \
                          Used 3, Requested 1. Please try again in 20s. Visit \
                          https://platform.openai.com/account/rate-limits to learn more.";
const NOT_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely \
                        means you aren't using your HTTP library correctly. The OpenAI API \
                        expects a JSON payload, but what was sent was not valid JSON. If you have \
                        trouble figuring out how to fix this, please contact us through our help \
                        center at help.openai.com.)";

/// A simulated OpenAI-compatible upstream bound to a loopback port.
///
/// The server runs on the current tokio runtime until [`MockProvider::shutdown`] is called or the
/// value is dropped. Point a provider's base URL at [`MockProvider::base_url`].
#[derive(Debug)]
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

/// How the provider answers requests that no fault applies to.
#[derive(Clone, Debug)]
pub struct Behavior {
    /// Delay before the response head of every answer with a 200 status, streamed or not (except
    /// [`Fault::Garbage`]; [`Fault::SlowFirstToken`] replaces it). Error faults answer at once.
    pub latency: Duration,
    /// Delay before each SSE event after the first, `[DONE]` and mid-stream errors included.
    pub chunk_delay: Duration,
    /// The assistant's reply. Streams send one chunk per word, keeping the whitespace.
    pub reply: String,
    /// Reported as `usage.prompt_tokens_details.cached_tokens`; `prompt_tokens` never falls below
    /// it.
    pub cached_tokens: u32,
}

/// A scripted misbehaviour applied to exactly one chat request.
///
/// Faults that break a stream (`StallMidStream`, `ErrorMidStream`, `TruncateStream`,
/// `AbortMidStream`) count "content chunks": the role chunk plus one per word, capped at their
/// number. On a non-streamed request a stall leaves the body hanging after the head, a mid-stream
/// error becomes a 500, and truncation or abort cuts the body off at the transport.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Any raw answer. `content-type: application/json` is added unless `headers` set one.
    Status {
        /// The HTTP status; an invalid code becomes 500.
        status: u16,
        /// The body, sent as-is.
        body: String,
        /// Extra response headers; invalid names or values are skipped.
        headers: Vec<(String, String)>,
    },
    /// 429 with OpenAI's `rate_limit_exceeded` body.
    RateLimited {
        /// The `Retry-After` header value, if any (seconds or an HTTP date).
        retry_after: Option<String>,
    },
    /// 429 with code `insufficient_quota`: the account is out of credits, so retrying won't help.
    InsufficientQuota,
    /// 500 with OpenAI's `server_error` body.
    ServerError,
    /// 503 "The engine is currently overloaded, please try again later".
    Overloaded,
    /// 529 with an overloaded body in OpenAI's error shape.
    Status529,
    /// 401 with OpenAI's `invalid_api_key` body.
    Unauthorized,
    /// 400 with OpenAI's `context_length_exceeded` body and message text.
    ContextLength,
    /// 400 `invalid_request_error` for a bad parameter: a plain client error.
    BadRequest,
    /// 200 with `content-type: application/json` and a body that is not JSON.
    Garbage,
    /// Read the request and never answer, until the client or shutdown closes the connection.
    Hang,
    /// Close the connection without any response.
    Reset,
    /// Answer normally but wait this long (instead of [`Behavior::latency`]) before the head.
    SlowFirstToken(Duration),
    /// Send `after_chunks` content chunks, then go silent until the client or shutdown hangs up.
    StallMidStream {
        /// Content chunks sent before the stall.
        after_chunks: usize,
    },
    /// Send `after_chunks` content chunks, then a `data: {"error":{...}}` event, and end the body.
    ErrorMidStream {
        /// Content chunks sent before the error event.
        after_chunks: usize,
    },
    /// Send `after_chunks` content chunks, then end the body cleanly without `[DONE]`.
    TruncateStream {
        /// Content chunks sent before the body ends.
        after_chunks: usize,
    },
    /// Send `after_chunks` content chunks, then abort the connection mid-body, so the client sees
    /// a transport error rather than a clean end.
    AbortMidStream {
        /// Content chunks sent before the abort.
        after_chunks: usize,
    },
}

/// One chat request as the provider received it, for tests to assert on.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The request path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// All request headers, `authorization` included.
    pub headers: HeaderMap,
    /// The parsed JSON body, or `Null` if it was not JSON.
    pub body: Value,
}

/// State shared between the handle and the connection tasks.
#[derive(Debug)]
struct Shared {
    name: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    behavior: Behavior,
    faults: VecDeque<Fault>,
    default_fault: Option<Fault>,
    models: Vec<String>,
    requests: Vec<Recorded>,
}

/// How a 200 answer ends; the counts are content chunks.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Complete,
    Stall(usize),
    Error(usize),
    Truncate(usize),
    Abort(usize),
}

/// A response body: whole, fed frame by frame by a producer task, or never finishing.
enum SimBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<io::Result<Frame<Bytes>>>),
    Stalled,
}

/// The id, timestamp, model and usage shared by every document of one answer.
struct Completion<'a> {
    id: String,
    created: u64,
    model: &'a str,
    usage: Value,
}

// === impl MockProvider ===

impl MockProvider {
    /// Binds 127.0.0.1 on a free port and starts serving on the current tokio runtime.
    pub async fn start(name: &str) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = State {
            behavior: Behavior::default(),
            faults: VecDeque::new(),
            default_fault: None,
            models: DEFAULT_MODELS.map(str::to_owned).to_vec(),
            requests: Vec::new(),
        };
        let name = name.to_owned();
        tracing::debug!(provider = %name, %addr, "simulated OpenAI provider listening");
        let shared = Arc::new(Shared {
            name,
            state: Mutex::new(state),
        });
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(accept_loop(listener, shared.clone(), stop));
        Ok(Self {
            addr,
            shared,
            shutdown,
        })
    }

    /// The name given at start, for logs and demo output.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Replaces the behaviour for every later request that no fault applies to.
    pub fn set_behavior(&self, b: Behavior) {
        self.shared.lock().behavior = b;
    }

    /// Queues faults; each chat request consumes the oldest one.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    /// Sets a fault for every chat request that finds the queue empty, e.g. to keep a provider
    /// down for a whole demo; `None` restores normal answers.
    pub fn set_default_fault(&self, fault: Option<Fault>) {
        self.shared.lock().default_fault = fault;
    }

    /// Replaces the model ids listed by `GET /v1/models` (default `gpt-4o`, `gpt-4o-mini`).
    pub fn set_models(&self, models: impl IntoIterator<Item = impl Into<String>>) {
        self.shared.lock().models = models.into_iter().map(Into::into).collect();
    }

    /// Every chat request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The most recent chat request, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.lock().requests.last().cloned()
    }

    /// How many chat requests have been received.
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Stops accepting and closes every open connection, hung ones included. Idempotent.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            reply: DEFAULT_REPLY.to_owned(),
            cached_tokens: 0,
        }
    }
}

impl Recorded {
    /// The request's `model` field, if it sent one.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the request asked for an SSE stream.
    pub fn is_stream(&self) -> bool {
        flag(&self.body, "/stream")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // NB: a test that panicked while holding the lock must not fail every later request.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request and takes its fault under one lock, so that arrival order and fault
    /// order agree when requests race.
    fn record(&self, request: Recorded) -> (Option<Fault>, Behavior) {
        let mut state = self.lock();
        state.requests.push(request);
        let queued = state.faults.pop_front();
        let fault = queued.or_else(|| state.default_fault.clone());
        (fault, state.behavior.clone())
    }
}

// === server ===

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            // Also fires, with an error, once the handle is gone: just as final.
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, shared.clone(), stop.clone()));
                }
                Err(error) => {
                    // Errors such as EMFILE are transient; back off instead of spinning.
                    tracing::warn!(provider = %shared.name, %error, "accept failed");
                    sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // SSE events are small writes; Nagle's algorithm would hold them back and blur chunk timing.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let service = service_fn(move |req| handle(shared.clone(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    // Dropping the connection drops hung handlers and stalled bodies with it; producer tasks
    // then see their channel closed.
    tokio::select! {
        result = conn => {
            if let Err(error) = result {
                tracing::debug!(%error, "simulated provider connection ended with an error");
            }
        }
        _ = stop.changed() => {}
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> io::Result<Response<SimBody>> {
    let (parts, body) = req.into_parts();
    let (method, path) = (parts.method.to_string(), parts.uri.path().to_owned());
    if parts.method == Method::POST && path == "/v1/chat/completions" {
        let raw = body.collect().await.map_err(io::Error::other)?.to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let request = Recorded {
            method,
            path,
            headers: parts.headers,
            body,
        };
        return chat(&shared, request).await;
    }
    if parts.method == Method::GET && path == "/v1/models" {
        return Ok(models(&shared));
    }
    let message = format!("Invalid URL ({method} {path})");
    Ok(error_response(404, &message, INVALID, None, None))
}

async fn chat(shared: &Shared, request: Recorded) -> io::Result<Response<SimBody>> {
    let body = request.body.clone();
    let (fault, behavior) = shared.record(request);
    let model = body["model"].as_str().unwrap_or("unknown");
    let stream = flag(&body, "/stream");
    let include_usage = stream && flag(&body, "/stream_options/include_usage");
    tracing::debug!(provider = %shared.name, model, stream, ?fault, "simulated chat request");

    let mut latency = behavior.latency;
    let ending = match fault {
        None if !body.is_object() => {
            return Ok(error_response(400, NOT_JSON, INVALID, None, None));
        }
        None => Ending::Complete,
        Some(Fault::Hang) => {
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Some(Fault::Reset) => {
            return Err(io::Error::new(
                ErrorKind::ConnectionReset,
                "simulated reset",
            ));
        }
        Some(Fault::SlowFirstToken(delay)) => {
            latency = delay;
            Ending::Complete
        }
        Some(Fault::StallMidStream { after_chunks }) => Ending::Stall(after_chunks),
        Some(Fault::ErrorMidStream { after_chunks }) => Ending::Error(after_chunks),
        Some(Fault::TruncateStream { after_chunks }) => Ending::Truncate(after_chunks),
        Some(Fault::AbortMidStream { after_chunks }) => Ending::Abort(after_chunks),
        Some(fault) => return Ok(fault_response(fault, model)),
    };
    if !latency.is_zero() {
        sleep(latency).await;
    }
    let completion = Completion::new(&body, model, &behavior);
    Ok(if stream {
        stream_answer(&completion, &behavior, include_usage, ending)
    } else {
        json_answer(&completion, &behavior.reply, ending)
    })
}

/// Answers for the faults that are a single immediate response.
fn fault_response(fault: Fault, model: &str) -> Response<SimBody> {
    let (status, message, kind, param, code) = match fault {
        Fault::Status {
            status,
            body,
            headers,
        } => return raw_response(status, body, headers),
        Fault::Garbage => return full_response(StatusCode::OK, JSON, Bytes::from_static(GARBAGE)),
        Fault::RateLimited { retry_after } => {
            let message = format!("Rate limit reached for {model} {RATE_LIMIT}");
            let code = Some("rate_limit_exceeded");
            let mut response = error_response(429, &message, "requests", None, code);
            if let Some(value) = retry_after.and_then(|v| HeaderValue::try_from(v).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            return response;
        }
        other => openai_error(&other),
    };
    error_response(status, message, kind, param, code)
}

/// Status, `message`, `type`, `param` and `code` of OpenAI's answer for each plain error fault.
// Intentionally a table, one fault per line, so the bodies can be compared with OpenAI's at a
// glance; rustfmt would spread each row over seven lines.
#[rustfmt::skip]
fn openai_error(fault: &Fault) -> (u16, &'static str, &'static str, Option<&'static str>, Option<&'static str>) {
    match fault {
        Fault::InsufficientQuota => (429, QUOTA, "insufficient_quota", None, Some("insufficient_quota")),
        Fault::Overloaded => (503, OVERLOADED, "server_error", None, None),
        Fault::Status529 => (529, OVERLOADED_529, "server_error", None, Some("overloaded")),
        Fault::Unauthorized => (401, BAD_KEY, INVALID, None, Some("invalid_api_key")),
        Fault::ContextLength => (400, CONTEXT, INVALID, Some("messages"), Some("context_length_exceeded")),
        Fault::BadRequest => (400, TEMPERATURE, INVALID, Some("temperature"), Some("decimal_above_max_value")),
        // `chat` handles every other fault itself; a server error is the honest fallback.
        _ => (500, SERVER_ERROR, "server_error", None, None),
    }
}

fn models(shared: &Shared) -> Response<SimBody> {
    let model =
        |id| json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"});
    let data: Vec<Value> = shared.lock().models.iter().map(model).collect();
    let body = json!({"object": "list", "data": data}).to_string();
    full_response(StatusCode::OK, JSON, Bytes::from(body))
}

fn json_answer(completion: &Completion<'_>, reply: &str, ending: Ending) -> Response<SimBody> {
    let document = json!({
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": completion.usage,
    });
    let bytes = Bytes::from(document.to_string());
    match ending {
        Ending::Complete => full_response(StatusCode::OK, JSON, bytes),
        Ending::Stall(_) => respond(StatusCode::OK, JSON, SimBody::Stalled),
        Ending::Error(_) => error_response(500, SERVER_ERROR, "server_error", None, None),
        // A whole document has no end marker to leave out, so cut it off at the transport.
        Ending::Truncate(_) | Ending::Abort(_) => {
            let half = vec![bytes.slice(..bytes.len() / 2)];
            produced(JSON, half, Ending::Abort(1), Duration::ZERO)
        }
    }
}

fn stream_answer(
    completion: &Completion<'_>,
    behavior: &Behavior,
    include_usage: bool,
    ending: Ending,
) -> Response<SimBody> {
    let role = json!({"role": "assistant", "content": "", "refusal": null});
    let mut events = vec![completion.chunk(role, None, include_usage)];
    for piece in word_pieces(&behavior.reply) {
        events.push(completion.chunk(json!({"content": piece}), None, include_usage));
    }
    let content_chunks = events.len();
    events.push(completion.chunk(json!({}), Some("stop"), include_usage));
    if include_usage {
        events.push(completion.usage_chunk());
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    match ending {
        Ending::Complete => {}
        Ending::Stall(n) | Ending::Truncate(n) | Ending::Abort(n) => {
            events.truncate(n.min(content_chunks));
        }
        Ending::Error(n) => {
            events.truncate(n.min(content_chunks));
            events.push(sse(&error_json(SERVER_ERROR, "server_error", None, None)));
        }
    }
    produced(EVENT_STREAM, events, ending, behavior.chunk_delay)
}

/// A 200 whose body a spawned task writes event by event, then ends as `ending` says.
fn produced(
    content_type: &'static str,
    events: Vec<Bytes>,
    ending: Ending,
    delay: Duration,
) -> Response<SimBody> {
    // Capacity 1 keeps the producer in step with the client, so no buffer absorbs the delays.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                sleep(delay).await;
            }
            if tx.send(Ok(Frame::data(event))).await.is_err() {
                return; // The client or shutdown closed the connection.
            }
        }
        match ending {
            Ending::Stall(_) => tx.closed().await,
            Ending::Abort(_) => {
                // NB: hyper drops bytes it has not flushed when a body fails, so give it a
                // moment to write the last event before aborting.
                sleep(ABORT_GRACE).await;
                let abort = io::Error::new(ErrorKind::ConnectionAborted, "simulated abort");
                // Intentionally ignored: a client that already left needs no abort.
                let _ = tx.send(Err(abort)).await;
            }
            Ending::Complete | Ending::Error(_) | Ending::Truncate(_) => {}
        }
    });
    respond(StatusCode::OK, content_type, SimBody::Channel(rx))
}

// === impl Completion ===

impl<'a> Completion<'a> {
    fn new(body: &Value, model: &'a str, behavior: &Behavior) -> Self {
        let prompt = estimate_prompt_tokens(body).max(behavior.cached_tokens);
        let words = behavior.reply.split_whitespace().count().max(1);
        let completion = u32::try_from(words).unwrap_or(u32::MAX);
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
        let created = since_epoch.map_or(0, |d| d.as_secs());
        let usage = json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt.saturating_add(completion),
            "prompt_tokens_details": {"cached_tokens": behavior.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": 0},
        });
        let id = format!("chatcmpl-{}", random_alphanumeric(29));
        Self {
            id,
            created,
            model,
            usage,
        }
    }

    fn envelope(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Bytes {
        let choice =
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason});
        let mut chunk = self.envelope(json!([choice]));
        // OpenAI adds `"usage": null` to every chunk once usage is requested, and omits it
        // otherwise.
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse(&chunk)
    }

    fn usage_chunk(&self) -> Bytes {
        let mut chunk = self.envelope(json!([]));
        chunk["usage"] = self.usage.clone();
        sse(&chunk)
    }
}

// === impl SimBody ===

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Channel(rx) => rx.poll_recv(cx),
            // Nothing ever wakes this; closing the connection drops it.
            SimBody::Stalled => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len()) as u64)
            }
            SimBody::Channel(_) | SimBody::Stalled => SizeHint::default(),
        }
    }
}

// === helpers ===

fn respond(status: StatusCode, content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(id) = HeaderValue::try_from(format!("req_{}", random_alphanumeric(32))) {
        headers.insert("x-request-id", id);
    }
    response
}

fn full_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<SimBody> {
    respond(status, content_type, SimBody::Full(Some(body)))
}

fn raw_response(status: u16, body: String, headers: Vec<(String, String)>) -> Response<SimBody> {
    let mut response = full_response(status_code(status), JSON, Bytes::from(body));
    let mut custom_content_type = false;
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
        else {
            tracing::warn!("simulated provider skipped an invalid fault header");
            continue;
        };
        if name == CONTENT_TYPE && !custom_content_type {
            response.headers_mut().remove(CONTENT_TYPE);
            custom_content_type = true;
        }
        response.headers_mut().append(name, value);
    }
    response
}

fn error_response(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response<SimBody> {
    let body = error_json(message, kind, param, code).to_string();
    full_response(status_code(status), JSON, Bytes::from(body))
}

fn error_json(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|_| {
        tracing::warn!(status, "invalid simulated status, answering 500");
        StatusCode::INTERNAL_SERVER_ERROR
    })
}

/// Whether the boolean at `pointer` is present and true.
fn flag(body: &Value, pointer: &str) -> bool {
    body.pointer(pointer) == Some(&Value::Bool(true))
}

fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn random_alphanumeric(len: usize) -> String {
    let chars = rand::rng().sample_iter(Alphanumeric).take(len);
    chars.map(char::from).collect()
}

/// A deterministic stand-in for a tokenizer: a quarter token per character of message text plus
/// four per message, at least one.
fn estimate_prompt_tokens(body: &Value) -> u32 {
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let chars: usize = messages.iter().map(|m| text_chars(&m["content"])).sum();
    let tokens = (chars / 4 + messages.len() * 4).max(1);
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// Characters of text in a message's content, whether a string or an array of content parts.
fn text_chars(content: &Value) -> usize {
    match content {
        Value::String(text) => text.chars().count(),
        Value::Array(parts) => {
            let texts = parts.iter().filter_map(|part| part["text"].as_str());
            texts.map(|text| text.chars().count()).sum()
        }
        _ => 0,
    }
}

/// Splits a reply into stream deltas the way tokenizers do: each word carries the whitespace
/// before it, so the pieces concatenate back to the reply exactly.
fn word_pieces(reply: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    let mut in_word = false;
    for (i, ch) in reply.char_indices() {
        if ch.is_whitespace() && in_word {
            cuts.push(i);
        }
        in_word = !ch.is_whitespace();
    }
    // Trailing whitespace has no word of its own, so it joins the last piece.
    if !in_word && cuts.len() > 1 {
        cuts.pop();
    }
    cuts.push(reply.len());
    let pieces = cuts.windows(2).map(|w| &reply[w[0]..w[1]]);
    pieces.filter(|piece| !piece.is_empty()).collect()
}

#[cfg(test)]
mod tests;
