//! Listeners: accept connections and serve HTTP/1.1 and HTTP/2 (cleartext) with hyper, until
//! shutdown, then drain in-flight requests.
//!
//! Every listener is bounded, so that no client can hold the process's resources: a connection
//! must send its request headers within [`Limits::header_read`] (which also closes keep-alive
//! connections idle that long), and a listener holds at most [`Limits::max_connections`] at
//! once; past that it stops accepting and the kernel's backlog queues new ones. The bounds are
//! per listener, so a flood on the admin port cannot starve the data plane, and their sum stays
//! well below the open-files limit that `main` raises at start.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::proxy::body::ResponseBody;

/// Pause after a failed accept (typically out of file descriptors): retrying at once would spin
/// while nothing can change, and a short pause lets connections close.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// How much of the process one listener may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once; the next waits in the kernel's backlog.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a kept-alive connection may sit idle.
    pub header_read: Duration,
}

impl Limits {
    /// The data plane: the application's own connections, many of them long streams.
    pub const DATA_PLANE: Self = Self {
        max_connections: 4096,
        header_read: Duration::from_secs(30),
    };
    /// Probes, scrapes and debugging: a handful of clients, answered at once.
    pub const ADMIN: Self = Self {
        max_connections: 64,
        header_read: Duration::from_secs(10),
    };
}

/// A listener's connection slots, shared with whoever needs to know how many are taken.
#[derive(Clone, Debug)]
pub struct Slots {
    limits: Limits,
    semaphore: Arc<Semaphore>,
    open: Arc<AtomicUsize>,
}

impl Slots {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            semaphore: Arc::new(Semaphore::new(limits.max_connections)),
            open: Arc::default(),
        }
    }

    /// Connections open right now. (Not the semaphore's count: the accept loop holds a permit
    /// while it waits for the next connection.)
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One accepted connection, counted in [`Slots::open`] until dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl From<Limits> for Slots {
    fn from(limits: Limits) -> Self {
        Self::new(limits)
    }
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> crate::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Bind { addr, source })
}

/// Serves `listener` with `handler` until `shutdown` turns true, then waits for the requests in
/// flight (the caller bounds that wait: see `app::Sidecar::shutdown`).
pub async fn serve<H, F>(
    listener: TcpListener,
    slots: impl Into<Slots>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let Slots {
        limits,
        semaphore,
        open,
    } = slots.into();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        // An HTTP/2 connection with no stream open is idle: ping it, and close it if the peer
        // does not answer.
        .keep_alive_interval(limits.header_read)
        .keep_alive_timeout(limits.header_read);
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            permit = semaphore.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break } else { continue },
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            // A dropped sender also means stop.
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break } else { continue },
        };
        let _ = stream.set_nodelay(true);
        let counted = Counted::new(&open);
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let mut stopping = shutdown.clone();
        tokio::spawn(async move {
            // hyper's header-read bound starts once it knows the protocol, which waits for the
            // client's first bytes: a client that connects and says nothing is bounded here.
            // At shutdown such a connection has nothing in flight, so it is closed at once
            // rather than holding the drain for the rest of the header-read bound (a pooled
            // client's spare connection used to keep every shutdown waiting the full drain).
            let mut first = [0u8; 1];
            tokio::select! {
                peeked = tokio::time::timeout(limits.header_read, stream.peek(&mut first)) => {
                    match peeked {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                }
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((permit, counted));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
