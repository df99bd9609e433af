//! The machinery every simulated provider shares: a hyper server on a loopback port, the fault
//! queue, request recording, response bodies that a task feeds event by event, and the helpers
//! that end them as a fault scripts. What the answers say and count is in `content`.
//!
//! A provider module implements [`Api`] for its wire format and exposes `Mock<Itself>` as its
//! `MockProvider`. Each generation request is recorded, then consumes the next queued fault;
//! without one it gets the default fault, if set, or else is checked by [`Api::reject`] and
//! answered by [`Api::answer`] as the current [`Behavior`] says. A hung request or stalled stream
//! parks only its own connection, and shutdown (explicit or on drop) closes every connection.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep;

use super::content::random_alphanumeric;

const DEFAULT_REPLY: &str = "Hello from the simulated provider.";
/// How long a producer waits before aborting a body, so hyper has flushed the events before it.
const ABORT_GRACE: Duration = Duration::from_millis(20);

/// A simulated provider bound to a loopback port, serving the wire format of `A`.
///
/// The server runs on the current tokio runtime until [`Mock::shutdown`] is called or the value
/// is dropped. Point a provider's base URL at [`Mock::base_url`].
#[derive(Debug)]
pub struct Mock<A: Api> {
    addr: SocketAddr,
    shared: Arc<Shared<A>>,
    shutdown: watch::Sender<bool>,
}

/// One provider's wire format: which requests generate, how its faults play out, what it
/// rejects and how it answers. Implemented by the simulators beside this module.
pub trait Api: Default + fmt::Debug + Send + Sync + 'static {
    /// The provider's scripted misbehaviours.
    type Fault: Clone + fmt::Debug + Send + 'static;
    /// The provider's name in logs, e.g. `OpenAI`.
    const LABEL: &'static str;
    /// The path [`Mock::base_url`] ends in, e.g. `/v1`.
    const BASE_PATH: &'static str;
    /// The response header that carries a request id on every answer, if the provider sends one.
    const REQUEST_ID: Option<&'static str>;

    /// Whether a request is a generation call, which is recorded and consumes a fault.
    fn is_generation(method: &Method, path: &str) -> bool;
    /// Answers every other request: listings, or the provider's 404.
    fn other(&self, method: &Method, path: &str) -> Response<SimBody>;
    /// How a fault plays out for a request.
    fn plan(fault: Self::Fault, request: &Recorded) -> Plan;
    /// The provider's 4xx answer when a request without a fault is invalid, as the real API
    /// would reject it.
    fn reject(request: &Recorded) -> Option<Response<SimBody>>;
    /// The 200 answer, whole or streamed, ending as `ending` says.
    fn answer(request: &Recorded, behavior: &Behavior, ending: Ending) -> Response<SimBody>;
}

/// How the provider answers requests that no fault applies to.
#[derive(Clone, Debug)]
pub struct Behavior {
    /// Delay before the response head of every answer with a 200 status, streamed or not (except
    /// a `Garbage` fault; `SlowFirstToken` replaces it). Error faults answer at once.
    pub latency: Duration,
    /// Delay before each streamed event after the first, end markers and mid-stream errors
    /// included.
    pub chunk_delay: Duration,
    /// The assistant's reply. Streams send one chunk per word, keeping the whitespace.
    pub reply: String,
    /// Prompt tokens reported as read from the provider's cache; the prompt never counts fewer
    /// tokens than this.
    pub cached_tokens: u32,
}

/// One generation request as the provider received it, for tests to assert on.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The request path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The query string, e.g. `alt=sse`, if the request had one.
    pub query: Option<String>,
    /// All request headers, credentials included.
    pub headers: HeaderMap,
    /// The parsed JSON body, or `Null` if it was not JSON.
    pub body: Value,
    /// The body's bytes as sent (what a signature covers, or a form body).
    pub raw: Bytes,
}

/// What a fault does to one request.
#[derive(Debug)]
pub enum Plan {
    /// Answer with a 200, after `latency` instead of [`Behavior::latency`] if set.
    Answer {
        /// Replaces [`Behavior::latency`] for this request.
        latency: Option<Duration>,
        /// How the body ends.
        ending: Ending,
    },
    /// Read the request and never answer, until the client or shutdown closes the connection.
    Hang,
    /// Close the connection without any response.
    Reset,
    /// Send this response at once.
    Respond(Response<SimBody>),
}

/// How a 200 answer ends; the counts are the provider's content chunks, capped at their number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every event, end markers included.
    Complete,
    /// Go silent after this many chunks until the client or shutdown hangs up.
    Stall(usize),
    /// Send the provider's mid-stream error event after this many chunks, then end the body.
    Error(usize),
    /// End the body cleanly after this many chunks.
    Truncate(usize),
    /// Abort the connection mid-body after this many chunks.
    Abort(usize),
}

/// A response body: whole, fed frame by frame by a producer task, or never finishing.
pub struct SimBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<io::Result<Frame<Bytes>>>),
    Stalled,
}

/// State shared between the handle and the connection tasks.
#[derive(Debug)]
struct Shared<A: Api> {
    name: String,
    api: A,
    state: Mutex<State<A::Fault>>,
}

#[derive(Debug)]
struct State<F> {
    behavior: Behavior,
    faults: VecDeque<F>,
    default_fault: Option<F>,
    requests: Vec<Recorded>,
    /// Whether generation requests are kept in `requests`.
    recording: bool,
}

// === impl Mock ===

impl<A: Api> Mock<A> {
    /// Binds 127.0.0.1 on a free port and starts serving on the current tokio runtime.
    pub async fn start(name: &str) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = State {
            behavior: Behavior::default(),
            faults: VecDeque::new(),
            default_fault: None,
            requests: Vec::new(),
            recording: true,
        };
        let name = name.to_owned();
        tracing::debug!(provider = %name, api = A::LABEL, %addr, "simulated provider listening");
        let shared = Arc::new(Shared {
            name,
            api: A::default(),
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

    /// The base URL a client of this provider is configured with, `http://127.0.0.1:PORT` plus
    /// the provider's path (`/v1` for OpenAI, none for Anthropic, `/v1beta` for Gemini).
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, A::BASE_PATH)
    }

    /// Replaces the behaviour for every later request that no fault applies to.
    pub fn set_behavior(&self, b: Behavior) {
        self.shared.lock().behavior = b;
    }

    /// Queues faults; each generation request consumes the oldest one.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = A::Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    /// Sets a fault for every generation request that finds the queue empty, e.g. to keep a
    /// provider down for a whole demo; `None` restores normal answers.
    pub fn set_default_fault(&self, fault: Option<A::Fault>) {
        self.shared.lock().default_fault = fault;
    }

    /// Stops keeping generation requests (and forgets those kept): a soak sends millions, and
    /// keeping each would grow without bound. Faults are still consumed per request.
    pub fn stop_recording(&self) {
        let mut state = self.shared.lock();
        state.recording = false;
        state.requests = Vec::new();
    }

    /// Every generation request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The most recent generation request, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.lock().requests.last().cloned()
    }

    /// How many generation requests have been received.
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Stops accepting and closes every open connection, hung ones included. Idempotent.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The provider-specific state, for the provider's own methods.
    pub(super) fn api(&self) -> &A {
        &self.shared.api
    }
}

impl<A: Api> Drop for Mock<A> {
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
    /// The requested model: the body's `model` field, or else the `models/{model}:` path
    /// segment Gemini uses.
    pub fn model(&self) -> Option<&str> {
        let from_path = || {
            let (_, rest) = self.path.split_once("/models/")?;
            rest.split_once(':').map(|(model, _)| model)
        };
        self.body
            .get("model")
            .and_then(Value::as_str)
            .or_else(from_path)
    }

    /// Whether the request asked for a stream: `"stream": true`, or Gemini's
    /// `:streamGenerateContent` method.
    pub fn is_stream(&self) -> bool {
        flag(&self.body, "/stream") || self.path.ends_with(":streamGenerateContent")
    }

    /// A request header as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Plan {
    /// A normal, complete answer after the usual latency.
    pub fn answer() -> Self {
        Self::ending(Ending::Complete)
    }

    /// An answer after the usual latency whose body ends as `ending` says.
    pub fn ending(ending: Ending) -> Self {
        Self::Answer {
            latency: None,
            ending,
        }
    }

    /// A complete answer whose head waits `latency` instead of the usual latency.
    pub fn slow(latency: Duration) -> Self {
        Self::Answer {
            latency: Some(latency),
            ending: Ending::Complete,
        }
    }
}

impl<A: Api> Shared<A> {
    fn lock(&self) -> MutexGuard<'_, State<A::Fault>> {
        lock(&self.state)
    }

    /// Records a request and takes its fault under one lock, so that arrival order and fault
    /// order agree when requests race.
    fn record(&self, request: Recorded) -> (Option<A::Fault>, Behavior) {
        let mut state = self.lock();
        if state.recording {
            state.requests.push(request);
        }
        let queued = state.faults.pop_front();
        let fault = queued.or_else(|| state.default_fault.clone());
        (fault, state.behavior.clone())
    }
}

// === server ===

async fn accept_loop<A: Api>(
    listener: TcpListener,
    shared: Arc<Shared<A>>,
    mut stop: watch::Receiver<bool>,
) {
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

async fn serve_connection<A: Api>(
    stream: TcpStream,
    shared: Arc<Shared<A>>,
    mut stop: watch::Receiver<bool>,
) {
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

async fn handle<A: Api>(
    shared: Arc<Shared<A>>,
    req: Request<Incoming>,
) -> io::Result<Response<SimBody>> {
    let mut response = route(&shared, req).await?;
    if let Some(name) = A::REQUEST_ID {
        let headers = response.headers_mut();
        // A fault's own headers win.
        if !headers.contains_key(name)
            && let Ok(id) = HeaderValue::try_from(request_id())
        {
            headers.insert(name, id);
        }
    }
    Ok(response)
}

async fn route<A: Api>(
    shared: &Shared<A>,
    req: Request<Incoming>,
) -> io::Result<Response<SimBody>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if !A::is_generation(&parts.method, path) {
        return Ok(shared.api.other(&parts.method, path));
    }
    let raw = body.collect().await.map_err(io::Error::other)?.to_bytes();
    let request = Recorded {
        method: parts.method.to_string(),
        path: path.to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    };
    let (fault, behavior) = shared.record(request.clone());
    let (model, stream) = (request.model().unwrap_or("unknown"), request.is_stream());
    tracing::debug!(provider = %shared.name, api = A::LABEL, model, stream, ?fault, "simulated request");

    let plan = match fault {
        Some(fault) => A::plan(fault, &request),
        None => match A::reject(&request) {
            Some(rejection) => return Ok(rejection),
            None => Plan::answer(),
        },
    };
    let (latency, ending) = match plan {
        Plan::Answer { latency, ending } => (latency.unwrap_or(behavior.latency), ending),
        Plan::Respond(response) => return Ok(response),
        Plan::Hang => {
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Plan::Reset => {
            let reset = io::Error::new(ErrorKind::ConnectionReset, "simulated reset");
            return Err(reset);
        }
    };
    if !latency.is_zero() {
        sleep(latency).await;
    }
    Ok(A::answer(&request, &behavior, ending))
}

// === answers ===

/// A whole document, or what `ending` makes of it: a stalled body, the `error` answer, or half
/// the document cut off at the transport (a document has no end marker to leave out).
pub(super) fn document(
    content_type: &'static str,
    bytes: Bytes,
    ending: Ending,
    error: impl FnOnce() -> Response<SimBody>,
) -> Response<SimBody> {
    match ending {
        Ending::Complete => full_response(StatusCode::OK, content_type, bytes),
        Ending::Stall(_) => respond(StatusCode::OK, content_type, SimBody(Kind::Stalled)),
        Ending::Error(_) => error(),
        Ending::Truncate(_) | Ending::Abort(_) => {
            let half = vec![bytes.slice(..bytes.len() / 2)];
            produced(content_type, half, Ending::Abort(1), Duration::ZERO)
        }
    }
}

/// A 200 event stream whose first `content_chunks` events are the ones stream faults count:
/// `ending` cuts the stream after some of them, adding `error_event` for [`Ending::Error`].
pub(super) fn event_stream(
    content_type: &'static str,
    mut events: Vec<Bytes>,
    content_chunks: usize,
    ending: Ending,
    error_event: impl FnOnce() -> Bytes,
    delay: Duration,
) -> Response<SimBody> {
    match ending {
        Ending::Complete => {}
        Ending::Stall(n) | Ending::Truncate(n) | Ending::Abort(n) => {
            events.truncate(n.min(content_chunks));
        }
        Ending::Error(n) => {
            events.truncate(n.min(content_chunks));
            events.push(error_event());
        }
    }
    produced(content_type, events, ending, delay)
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
    respond(StatusCode::OK, content_type, SimBody(Kind::Channel(rx)))
}

fn respond(status: StatusCode, content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let content_type = HeaderValue::from_static(content_type);
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

/// A whole body with a status, e.g. an error document.
pub(super) fn full_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<SimBody> {
    respond(status, content_type, SimBody(Kind::Full(Some(body))))
}

/// A JSON body with a status given as a number.
pub(super) fn json_response(status: u16, body: &Value) -> Response<SimBody> {
    full_response(status_code(status), JSON, Bytes::from(body.to_string()))
}

/// A `Status` fault's answer: `content-type: application/json` unless `headers` set one;
/// invalid header names or values are skipped.
pub(super) fn raw_response(
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
) -> Response<SimBody> {
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

/// Adds a header if `value` is a valid header value, e.g. a fault's `retry-after`.
pub(super) fn with_header(
    mut response: Response<SimBody>,
    name: &'static str,
    value: Option<String>,
) -> Response<SimBody> {
    if let Some(value) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// A status from its number; an invalid one becomes 500.
pub(super) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|_| {
        tracing::warn!(status, "invalid simulated status, answering 500");
        StatusCode::INTERNAL_SERVER_ERROR
    })
}

// === impl SimBody ===

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Channel(rx) => rx.poll_recv(cx),
            // Nothing ever wakes this; closing the connection drops it.
            Kind::Stalled => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len()) as u64),
            Kind::Channel(_) | Kind::Stalled => SizeHint::default(),
        }
    }
}

impl fmt::Debug for SimBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Kind::Full(_) => "Full",
            Kind::Channel(_) => "Channel",
            Kind::Stalled => "Stalled",
        };
        f.debug_tuple("SimBody").field(&kind).finish()
    }
}

// === helpers ===

/// The JSON content type.
pub(super) const JSON: &str = "application/json";
/// The SSE content type.
pub(super) const EVENT_STREAM: &str = "text/event-stream";

/// Locks state shared with connection tasks.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // NB: a test that panicked while holding the lock must not fail every later request.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the boolean at `pointer` is present and true.
pub(super) fn flag(body: &Value, pointer: &str) -> bool {
    body.pointer(pointer) == Some(&Value::Bool(true))
}

fn request_id() -> String {
    format!("req_{}", random_alphanumeric(32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recorded_finds_model_and_stream_in_body_or_gemini_path() {
        let recorded = |path: &str, body: Value| Recorded {
            method: "POST".into(),
            path: path.into(),
            query: None,
            headers: HeaderMap::new(),
            body,
            raw: Bytes::new(),
        };
        let openai = recorded(
            "/v1/chat/completions",
            json!({"model": "m", "stream": true}),
        );
        assert_eq!((openai.model(), openai.is_stream()), (Some("m"), true));
        let gemini = recorded(
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            json!({}),
        );
        assert_eq!(gemini.model(), Some("gemini-2.0-flash"));
        assert!(gemini.is_stream());
        let plain = recorded("/v1beta/models/g:generateContent", Value::Null);
        assert_eq!((plain.model(), plain.is_stream()), (Some("g"), false));
    }
}
