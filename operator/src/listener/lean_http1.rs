//! HTTP/1.1 requests answered without holding buffers while their handler waits.
//!
//! Every sidecar of the fleet keeps a `GET /v1/config` long-poll waiting on the leader, so what
//! a connection holds while its request waits is held ten thousand times. hyper's HTTP/1
//! connection keeps a read buffer and a write buffer of 8 KiB each for its whole life, with no
//! way to release them between requests; with rustls's and the task's own, a parked sidecar
//! cost 29 KiB (bench/RESULTS.md, "Operator memory at 10,000 sidecars"). Here a connection
//! reads each request into a buffer that is handed over or dropped before the handler runs, and
//! writes the answer's head and body in one vectored write: while a long-poll waits, its
//! connection holds only the TLS session, the socket and the handler's own future.
//!
//! Only what needs no HTTP machinery is served here: an HTTP/1.1 `GET`, or a `POST` whose body
//! has a `Content-Length` of at most [`MAX_BODY`], with a head `httparse` reads whole. Sidecars
//! send their reports (small `POST`s) over the same pool of connections as their long-polls, so
//! a connection that carried a report carries a long-poll next. The first request that is
//! anything else (chunked, an upgrade, `Expect`, HTTP/1.0, another method, a head too large or
//! malformed, a larger body) and everything after it on that connection go to hyper, which gets
//! the bytes read so far first: errors, streaming bodies and limits stay hyper's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf as _, Bytes};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Either, Full};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use super::Limits;

/// The largest head read here; a longer one is handed to hyper, whose limits answer it.
const MAX_HEAD: usize = 16 * 1024;
/// Headers a request may have to be read here (hyper takes those with more).
const MAX_HEADERS: usize = 32;
/// The largest body read here; a larger one is streamed to the handler by hyper. A body is read
/// before the handler can authenticate its sender, so this bounds what an unknown client makes a
/// connection hold: no more than hyper's two buffers, which it held for every connection.
const MAX_BODY: usize = 16 * 1024;
/// How much room each read adds: a sidecar's head, with its service-account token, fits.
const READ_CHUNK: usize = 4 * 1024;

/// The request body handlers get from every listener: hyper's for what hyper read, the whole
/// body for what was read here.
pub type RequestBody = Either<hyper::body::Incoming, Full<Bytes>>;

/// What a connection does next.
pub(super) enum Next<I> {
    /// The peer closed it, or asked for it to be closed after an answer.
    Closed,
    /// hyper serves the rest: the connection, with the bytes read from it so far in front.
    Hyper(Rewind<I>),
}

/// Answers the requests of `io` with `handler` for as long as they are plain ones (the module's
/// documentation), each read whole within `limits.header_read` (which also bounds how long the
/// connection may sit idle).
pub(super) async fn serve<I, H, F>(mut io: I, limits: Limits, handler: &H) -> io::Result<Next<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Response<Full<Bytes>>>,
{
    // Bytes read past the request being answered; empty (no allocation) while a request waits,
    // unless the client sent more meanwhile.
    let mut read = Vec::new();
    loop {
        let next = tokio::time::timeout(limits.header_read, read_request(&mut io, &mut read))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))??;
        let (request, length) = match next {
            Head::Closed => return Ok(Next::Closed),
            Head::Other => return Ok(Next::Hyper(Rewind::new(read, io))),
            Head::Plain(request, length) => (request, length),
        };
        if read.len() > length {
            // Pipelined bytes: whatever they are, hyper answers them in order after this one.
            // Sidecars never pipeline, so serving this one alone is not worth a second path.
            return Ok(Next::Hyper(Rewind::new(read, io)));
        }
        // A body keeps the buffer it was read into for as long as the handler holds it; a
        // bodiless request's buffer is dropped here, so that a long-poll waits with none.
        let body = Bytes::from(std::mem::take(&mut read)).slice(request.body().clone());
        let close = wants_close(request.headers());
        let answer = handler(request.map(|_| Either::Right(Full::new(body))));
        let response = tokio::select! {
            biased;
            response = answer => response,
            // As hyper does: a client that leaves ends its request's wait at once.
            gone = closed_while_waiting(&mut io, &mut read) => {
                gone?;
                return Ok(Next::Closed);
            }
        };
        let (head, body) = encode(response, close).await;
        // One vectored write: rustls seals head and body in one record, and the body (a table
        // encoded once for all the pods that share it) is not copied.
        io.write_all_buf(&mut head.chain(body)).await?;
        io.flush().await?;
        if close {
            io.shutdown().await?;
            return Ok(Next::Closed);
        }
    }
}

/// Resolves when the peer closes the connection while its request waits, or the connection
/// fails. A client that sends early instead has the first byte kept in `read`, as the start of
/// its next request, and is not watched any more.
async fn closed_while_waiting<I: AsyncRead + Unpin>(
    io: &mut I,
    read: &mut Vec<u8>,
) -> io::Result<()> {
    let mut byte = [0; 1];
    if io.read(&mut byte).await? == 0 {
        return Ok(());
    }
    read.push(byte[0]);
    std::future::pending().await
}

/// A request as read.
// NB: returned once per request and taken apart at once, never kept: boxing the request would
// cost an allocation per request to save stack space.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// The connection ended before a request began.
    Closed,
    /// A request for here, with where its body is in the bytes read, and its whole length.
    Plain(Request<std::ops::Range<usize>>, usize),
    /// Anything else: for hyper.
    Other,
}

/// Reads until `read` holds a whole request (or shows that it is not one for here).
async fn read_request<I: AsyncRead + Unpin>(io: &mut I, read: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        if !read.is_empty() {
            match parse(read) {
                Parsed::Partial if read.len() < MAX_HEAD => {}
                Parsed::Plain(request, head) if head <= MAX_HEAD => {
                    let end = head + request.body();
                    if read.len() >= end {
                        return Ok(Head::Plain(request.map(|_| head..end), end));
                    }
                    // The body is still coming: room for all of it at once.
                    read.reserve(end - read.len());
                    if io.read_buf(read).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    continue;
                }
                Parsed::Partial | Parsed::Plain(..) | Parsed::Other => return Ok(Head::Other),
            }
        }
        if read.is_empty() {
            // The first byte before any room for the rest: between two long-polls a connection
            // waits here while its sidecar reads the answer, and after a publish thousands do
            // at once, each of which would otherwise hold an empty buffer.
            let mut first = [0; 1];
            if io.read(&mut first).await? == 0 {
                return Ok(Head::Closed);
            }
            read.reserve(READ_CHUNK);
            read.push(first[0]);
            continue;
        }
        read.reserve(READ_CHUNK);
        if io.read_buf(read).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

#[allow(clippy::large_enum_variant)] // As `Head`.
enum Parsed {
    Partial,
    /// A request for here, its body's length as its body, and the head's length.
    Plain(Request<usize>, usize),
    Other,
}

/// Parses a head with `httparse`; one that hyper would read the same way, and whose body is
/// small and of a known length, becomes a request.
fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let length = match head.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let method = match head.method {
        Some("GET") => Method::GET,
        Some("POST") => Method::POST,
        _ => return Parsed::Other,
    };
    if head.version != Some(1) {
        return Parsed::Other;
    }
    let Some(uri) = head.path.and_then(|path| path.parse::<http::Uri>().ok()) else {
        return Parsed::Other;
    };
    let mut request = Request::new(0);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    for header in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Parsed::Other;
        };
        request.headers_mut().append(name, value);
    }
    match plain_body(request.headers()) {
        Some(body) if body <= MAX_BODY => *request.body_mut() = body,
        _ => return Parsed::Other,
    }
    Parsed::Plain(request, length)
}

/// The body's length, when nothing about the request needs hyper: no `Transfer-Encoding`, at
/// most one `Content-Length` (none is an empty body), no `Expect`, no upgrade.
fn plain_body(headers: &http::HeaderMap) -> Option<usize> {
    if headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers.contains_key(http::header::EXPECT)
        || headers.contains_key(http::header::UPGRADE)
    {
        return None;
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let length = match lengths.next() {
        None => 0,
        Some(value) => std::str::from_utf8(value.as_bytes())
            .ok()
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()?,
    };
    lengths.next().is_none().then_some(length)
}

/// HTTP/1.1 keeps a connection open unless a `Connection` header says `close`.
fn wants_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("close"))
}

/// The response as HTTP/1.1: its head (status line, the handler's headers, `Content-Length`
/// but for the statuses that have no body, `Date`, and `Connection: close` when closing) and
/// its body.
async fn encode(response: Response<Full<Bytes>>, close: bool) -> (Bytes, Bytes) {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut header = |name: &[u8], value: &[u8]| {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    for (name, value) in &parts.headers {
        if name != CONTENT_LENGTH && name != CONNECTION && name != DATE {
            header(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !bodiless {
        header(b"content-length", body.len().to_string().as_bytes());
    }
    header(
        b"date",
        httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
    );
    if close {
        header(b"connection", b"close");
    }
    head.extend_from_slice(b"\r\n");
    let body = if bodiless { Bytes::new() } else { body };
    (Bytes::from(head), body)
}

/// A connection with bytes already read from it in front, for hyper to read first.
pub(super) struct Rewind<I> {
    read: Bytes,
    io: I,
}

impl<I> Rewind<I> {
    fn new(read: Vec<u8>, io: I) -> Self {
        Self {
            read: Bytes::from(read),
            io,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        if this.read.is_empty() {
            this.read = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

write_through!(Rewind);

#[cfg(test)]
mod tests;
