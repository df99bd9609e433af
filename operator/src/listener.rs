//! The accept loop every operator listener shares (the config server and the injection webhook
//! over TLS, the admin server in plain HTTP): accept, handshake, then HTTP/1.1 or HTTP/2 on the
//! connection, each request answered by a handler that cannot fail (errors are responses). A
//! connection that did not choose HTTP/2 by ALPN has its plain HTTP/1.1 requests (`GET`s, small
//! `POST`s) answered by [`lean_http1`], which holds no buffers while a request waits, and the
//! rest by hyper.
//!
//! Every listener is bounded, so that no client can hold the process's resources: a TLS client
//! must finish its handshake within [`Limits::handshake`], a connection must send its first bytes
//! and then each request's headers within [`Limits::header_read`] (which also closes keep-alive
//! connections idle that long), and a listener holds at most [`Limits::max_connections`] at once;
//! past that it stops accepting and the kernel's backlog queues new ones. The bounds are per
//! listener, so a flood on the admin port cannot starve the config server, and the other way
//! round. See docs/reference/operator.md.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// `AsyncWrite` for a wrapper of a stream in its field `io` that only changes how it is read:
/// every write goes straight through.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<I: AsyncWrite + Unpin> AsyncWrite for $wrapper<I> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }
        }
    };
}

mod lean_http1;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

pub use self::lean_http1::RequestBody;

/// The pause after a failed accept (usually EMFILE): long enough not to spin, short enough that
/// the listener is back as soon as descriptors free up.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How much of the process one listener may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once; the next waits in the kernel's backlog.
    pub max_connections: usize,
    /// Time to finish the TLS handshake (TLS listeners only).
    pub handshake: Duration,
    /// Time to send the first bytes and each request's headers, and the longest a kept-alive
    /// connection may sit idle.
    pub header_read: Duration,
}

impl Limits {
    /// The config server. Every injected sidecar in the cluster keeps a long-poll open here, and
    /// opens a second connection for its reports, so the cap is sized for a fleet of 10,000+
    /// pods per leader (`--config-max-connections` changes it) rather than for a handful of
    /// clients. The idle bound outlasts the sidecars' 30 s ±20% report interval, so that the
    /// connection a report uses is still open for the next one.
    pub const CONFIG: Self = Self {
        max_connections: crate::args::DEFAULT_CONFIG_MAX_CONNECTIONS as usize,
        handshake: Duration::from_secs(10),
        header_read: Duration::from_secs(60),
    };
    /// The injection webhook: only apiservers call it, a few connections each.
    pub const WEBHOOK: Self = Self {
        max_connections: 256,
        handshake: Duration::from_secs(10),
        header_read: Duration::from_secs(10),
    };
    /// Probes and scrapes: a handful of clients, answered at once.
    pub const ADMIN: Self = Self {
        max_connections: 64,
        handshake: Duration::from_secs(10),
        header_read: Duration::from_secs(10),
    };
}

/// Accepts connections on `listener` (TLS ones when `tls` is given) and answers each request
/// with `handler`, within `limits`, until the task is dropped. `name` labels connection errors
/// in the logs.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    name: &'static str,
    limits: Limits,
    handler: H,
) -> crate::Result<()>
where
    H: Fn(Request<RequestBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let acceptor = tls.map(TlsAcceptor::from);
    // Shared: a clone per connection would put hyper's whole configuration in every task.
    let builders = Arc::new(Builders::new(limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(server = name, %error, "accept failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let builders = builders.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let served = match acceptor {
                None => serve_connection(&builders, tcp, limits, handler, false).await,
                // The handshake's future and the TLS stream are boxed: they are large (rustls's
                // connection state is over 1 KiB), and each `async fn` the stream passes through
                // would keep room for another copy of it in the task's future, which every
                // connection holds as long as it is open.
                Some(acceptor) => match Box::pin(handshake(&acceptor, tcp, limits)).await {
                    Ok(tls) => {
                        let tls = Box::new(tls);
                        let alpn = tls.get_ref().1.alpn_protocol();
                        let (h2, http1) = (alpn == Some(b"h2"), alpn == Some(b"http/1.1"));
                        if h2 {
                            Box::pin(serve_io(&builders, tls, limits, service(handler), false))
                                .await
                        } else {
                            serve_connection(&builders, tls, limits, handler, http1).await
                        }
                    }
                    Err(error) => {
                        tracing::debug!(server = name, %peer, %error, "TLS handshake failed");
                        Ok(())
                    }
                },
            };
            if let Err(error) = served {
                tracing::debug!(server = name, %peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// `handler` as a hyper service.
fn service<H, F>(
    handler: H,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Send
+ 'static
where
    H: Fn(Request<RequestBody>) -> F + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = handler(req.map(Either::Left));
        async move { Ok::<_, Infallible>(response.await) }
    })
}

/// Serves a connection that did not choose HTTP/2 by ALPN: [`lean_http1`] while its requests
/// are plain HTTP/1.1 ones, hyper from the first that is not (HTTP/1.1 alone when `http1`,
/// ALPN having said so; otherwise whichever protocol the client speaks). Sidecars offer no ALPN
/// (hyper-rustls offers none for an HTTP/1-only client). hyper's connection is boxed: inline, its
/// size would be that of every task, the long-polls [`lean_http1`] keeps lean among them.
async fn serve_connection<I, H, F>(
    builders: &Builders,
    io: I,
    limits: Limits,
    handler: H,
    http1: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<RequestBody>) -> F + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    match lean_http1::serve(io, limits, &handler).await? {
        lean_http1::Next::Closed => Ok(()),
        lean_http1::Next::Hyper(io) => {
            Box::pin(serve_io(builders, io, limits, service(handler), http1)).await
        }
    }
}

/// How connections are served: HTTP/1.1 with the header-read bound, and HTTP/2 whose idle
/// connections are pinged and closed when the peer does not answer.
struct Builders {
    /// For TLS connections whose client chose HTTP/1.1 by ALPN.
    http1: hyper::server::conn::http1::Builder,
    /// For the others: the protocol is learnt from the client's first bytes.
    auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: Limits) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read);
        auto.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.header_read)
            .keep_alive_timeout(limits.header_read);
        Self { http1, auto }
    }
}

/// The TLS handshake, bounded so that a silent client cannot hold a connection slot.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limits: Limits,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(limits.handshake, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Serves one connection with hyper: HTTP/1.1 alone when `http1` (TLS agreed on it), otherwise
/// whichever protocol the client's first bytes show. The protocol-detecting connection keeps
/// room for an HTTP/2 connection inline (16 KiB, where the HTTP/1 one alone needs a few), so it
/// is boxed and costs its size only to the connections that take it.
async fn serve_io<I, S>(
    builders: &Builders,
    io: I,
    limits: Limits,
    service: S,
    http1: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Full<Bytes>>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(FirstBytes::new(io, limits.header_read));
    if http1 {
        Ok(builders.http1.serve_connection(io, service).await?)
    } else {
        Box::pin(builders.auto.serve_connection(io, service)).await
    }
}

/// A stream whose reads fail when nothing at all arrives within a deadline. hyper's header-read
/// bound only starts once it knows the protocol, and learning it waits for the client's first
/// bytes; without this a client that connects and stays silent would hold its slot forever.
struct FirstBytes<I> {
    io: I,
    /// Until the first byte arrives.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<I> FirstBytes<I> {
    fn new(io: I, within: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytes<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    let error = io::Error::new(io::ErrorKind::TimedOut, "no request in time");
                    return Poll::Ready(Err(error));
                }
                Poll::Pending
            }
        }
    }
}

write_through!(FirstBytes);
