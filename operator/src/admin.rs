//! The admin server, plain HTTP on `--admin-listen` (DESIGN §4, STYLE 15):
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 once every server is listening, 503 before.
//! - `GET /metrics`: every [`Metrics`] series in the Prometheus text format.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

use crate::listener::{self, Limits};
use crate::metrics::Metrics;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Metrics,
    /// Set by `main` once every listener is bound.
    pub ready: Arc<AtomicBool>,
}

/// Answers one admin request.
pub fn handle<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::from(body))
            .expect("a valid response")
    };
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        "/metrics" => {
            let mut response = text(StatusCode::OK, state.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Serves the admin endpoints on `listener` within [`Limits::ADMIN`] until the task is dropped.
pub async fn serve(listener: TcpListener, state: AdminState) -> crate::Result<()> {
    serve_within(listener, state, Limits::ADMIN).await
}

/// [`serve`] within other `limits`.
pub async fn serve_within(
    listener: TcpListener,
    state: AdminState,
    limits: Limits,
) -> crate::Result<()> {
    listener::serve(listener, None, "admin", limits, move |req| {
        let response = handle(&state, &req);
        async move { response }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_answer() {
        let state = AdminState {
            metrics: Metrics::new().unwrap(),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let get = |path: &str| handle(&state, &Request::get(path).body(()).unwrap()).status();
        assert_eq!(get("/healthz"), StatusCode::OK);
        assert_eq!(get("/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        state.ready.store(true, Ordering::Release);
        assert_eq!(get("/readyz"), StatusCode::OK);
        assert_eq!(get("/metrics"), StatusCode::OK);
        assert_eq!(get("/nope"), StatusCode::NOT_FOUND);
    }
}
