//! Client-side helpers the simulators' tests share: one request per fresh HTTP/1.1 connection,
//! as the sidecar's client sends them, and readers for whole, streamed and stalled bodies.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long a silent body must stay silent to count as stalled.
pub(super) const IDLE: Duration = Duration::from_millis(200);
/// A generous bound for things that should happen at once, even on a loaded machine.
pub(super) const SOON: Duration = Duration::from_secs(2);

/// A response head, or the connection error a reset or shutdown causes.
pub(super) type Reply = hyper::Result<Response<Incoming>>;

/// Sends one request with `headers` on a fresh HTTP/1.1 connection.
pub(super) async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&'static str, &'static str)],
    body: Option<Value>,
) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = path.parse().expect("path");
    let map = request.headers_mut();
    map.insert("host", HeaderValue::from_static("127.0.0.1"));
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_static(value));
    }
    sender.send_request(request).await
}

/// Status, one header and the whole body, as text.
pub(super) async fn read(
    response: Response<Incoming>,
    header: HeaderName,
) -> (u16, String, String) {
    let status = response.status().as_u16();
    let value = response
        .headers()
        .get(header)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        value.unwrap_or_default(),
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The whole body as text.
pub(super) async fn body_of(response: Response<Incoming>) -> String {
    read(response, http::header::CONTENT_TYPE).await.2
}

/// Parses JSON text, failing the test if it is not JSON.
pub(super) fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("json")
}

/// Reads frames until the body ends (`true`) or stays silent for `IDLE` (`false`).
pub(super) async fn read_until_idle(response: Response<Incoming>) -> (String, bool) {
    let (mut body, mut out) = (response.into_body(), String::new());
    loop {
        match timeout(IDLE, body.frame()).await {
            Err(_) => return (out, false),
            Ok(None) => return (out, true),
            Ok(Some(frame)) => {
                let data = frame.expect("frame").into_data().expect("data frame");
                out.push_str(std::str::from_utf8(&data).expect("utf-8"));
            }
        }
    }
}
