//! The admin and debug listeners.
//!
//! Admin (`--admin-listen`, default `0.0.0.0:9401`, plain HTTP, for the kubelet and Prometheus):
//! - `GET /healthz`: 200 once the listeners are bound (the process is alive and serving).
//! - `GET /readyz`: 200 once a route table is loaded; it never goes back, because a later bad
//!   table keeps the previous one serving. The body says why the last load failed, if it did.
//! - `GET /metrics`: Prometheus text format.
//!
//! Debug (`--debug-listen`, default `127.0.0.1:9402`, loopback only):
//! - `GET /debug/config`: the table being served, with every key shown as `***`.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::proxy::body::{self, ResponseBody};
use crate::table::Runtime;

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Answers one admin request.
pub async fn admin(runtime: Arc<Runtime>, request: Request<Incoming>) -> Response<ResponseBody> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let last_error = runtime.last_error();
            match (runtime.is_ready(), last_error) {
                (true, None) => text(StatusCode::OK, "ready\n"),
                (true, Some(e)) => text(
                    StatusCode::OK,
                    format!("ready (serving the previous table; the last load failed: {e})\n"),
                ),
                (false, Some(e)) => {
                    text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
                }
                (false, None) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: no route table loaded yet\n",
                ),
            }
        }
        "/metrics" => {
            runtime.refresh_budget_gauges();
            let mut response = text(StatusCode::OK, runtime.metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n",
        ),
    }
}

/// Answers one debug request.
pub async fn debug(runtime: Arc<Runtime>, request: Request<Incoming>) -> Response<ResponseBody> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/debug/config") => match runtime.snapshot() {
            Some(snapshot) => {
                let shown = serde_json::to_vec_pretty(&snapshot.table.redacted())
                    .expect("tables serialize");
                let mut response = text(StatusCode::OK, shown);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no route table loaded yet\n",
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found: try GET /debug/config\n"),
    }
}
