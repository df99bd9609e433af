use std::time::Duration;

use http::header::{ETAG, IF_NONE_MATCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream, duplex};

use super::*;

const LIMITS: Limits = Limits {
    max_connections: 1,
    handshake: Duration::from_secs(1),
    header_read: Duration::from_secs(5),
};

/// Answers `/missing` 404 (`/slow` after 100 ms), a `POST` with its body, a known `If-None-Match` 304, and anything else 200 with the path and
/// the `x-echo` header in the body.
async fn handler(req: Request<RequestBody>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if req.uri().path() == "/missing" {
        *response.status_mut() = StatusCode::NOT_FOUND;
        *response.body_mut() = Full::from("{\"error\":\"not found\"}");
    } else if req.method() == Method::POST {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        *response.body_mut() = Full::new(body);
    } else if req.headers().contains_key(IF_NONE_MATCH) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
            .headers_mut()
            .insert(ETAG, HeaderValue::from_static("\"v1\""));
    } else {
        let echo = req
            .headers()
            .get("x-echo")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        *response.body_mut() = Full::from(format!("{} {echo}", req.uri()));
    }
    response
}

/// Serves one end of a pipe in the background; the other end and the outcome.
fn start() -> (
    DuplexStream,
    tokio::task::JoinHandle<io::Result<Next<DuplexStream>>>,
) {
    let (client, server) = duplex(256 * 1024);
    let served = tokio::spawn(async move { serve(server, LIMITS, &handler).await });
    (client, served)
}

/// Reads one response: its head, and as many body bytes as its `content-length` says. Bytes
/// past it are kept in `rest` for the next call.
async fn next_response(client: &mut DuplexStream, rest: &mut Vec<u8>) -> (String, String) {
    let mut bytes = std::mem::take(rest);
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0; 1024];
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection ended inside a head: {bytes:?}");
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |n| n.parse::<usize>().unwrap());
    while bytes.len() < head_end + length {
        let mut chunk = [0; 1024];
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection ended inside a body");
        bytes.extend_from_slice(&chunk[..n]);
    }
    *rest = bytes.split_off(head_end + length);
    let body = String::from_utf8(bytes[head_end..].to_vec()).unwrap();
    (head, body)
}

/// The one response expected: nothing may follow it.
async fn response(client: &mut DuplexStream) -> (String, String) {
    let mut rest = Vec::new();
    let response = next_response(client, &mut rest).await;
    assert!(rest.is_empty(), "nothing past the body: {rest:?}");
    response
}

#[tokio::test]
async fn gets_on_one_connection_are_answered_in_turn() {
    let (mut client, served) = start();
    client
        .write_all(b"GET /v1/config?wait=30s HTTP/1.1\r\nHost: op\r\nX-Echo: first\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-length: 25\r\n"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(!head.contains("connection"), "kept alive: {head}");
    assert_eq!(body, "/v1/config?wait=30s first");

    // The second request arrives in two pieces, split inside a header.
    client
        .write_all(b"GET /missing HTTP/1.1\r\nHo")
        .await
        .unwrap();
    tokio::task::yield_now().await;
    client.write_all(b"st: op\r\n\r\n").await.unwrap();
    let (head, body) = response(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert_eq!(body, "{\"error\":\"not found\"}");

    drop(client);
    let next = served.await.unwrap().unwrap();
    assert!(matches!(next, Next::Closed), "served here to the end");
}

#[tokio::test]
async fn not_modified_has_neither_body_nor_length() {
    let (mut client, served) = start();
    client
        .write_all(b"GET /v1/config HTTP/1.1\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{head}");
    assert!(head.contains("\r\netag: \"v1\"\r\n"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(body, "");
    drop(client);
    assert!(matches!(served.await.unwrap().unwrap(), Next::Closed));
}

#[tokio::test]
async fn connection_close_is_answered_and_then_closed() {
    let (mut client, served) = start();
    client
        .write_all(b"GET /a HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut client).await;
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert_eq!(body, "/a ");
    assert!(matches!(served.await.unwrap().unwrap(), Next::Closed));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing after the answer: {rest:?}");
}

/// What is not a plain HTTP/1.1 `GET` or `POST` goes to hyper with every byte read so far, the later
/// ones behind them.
#[tokio::test]
async fn anything_else_goes_to_hyper_with_the_bytes_read() {
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    let large = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{}",
        MAX_BODY + 1,
        "a".repeat(MAX_BODY + 1)
    );
    let cases: [&[u8]; 12] = [
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
        b"PUT / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        b"HEAD / HTTP/1.1\r\n\r\n",
        large.as_bytes(),
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        huge.as_bytes(),
        many.as_bytes(),
    ];
    for sent in cases {
        let (mut client, served) = start();
        client.write_all(sent).await.unwrap();
        let Next::Hyper(mut rewound) = served.await.unwrap().unwrap() else {
            panic!("served here: {:?}", String::from_utf8_lossy(sent));
        };
        client.write_all(b"later").await.unwrap();
        drop(client);
        let mut read = Vec::new();
        rewound.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, [sent, b"later"].concat());
    }
}

#[tokio::test]
async fn pipelined_requests_go_to_hyper_whole() {
    let (mut client, served) = start();
    let sent = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    client.write_all(sent).await.unwrap();
    let Next::Hyper(mut rewound) = served.await.unwrap().unwrap() else {
        panic!("the first was answered here, out of hyper's order");
    };
    drop(client);
    let mut read = Vec::new();
    rewound.read_to_end(&mut read).await.unwrap();
    assert_eq!(read, sent);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_inside_a_head_is_closed_after_the_header_read_limit() {
    let (mut client, served) = start();
    client.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
    let error = served.await.unwrap().err().expect("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_header_read_limit() {
    let (mut client, served) = start();
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    response(&mut client).await;
    let started = tokio::time::Instant::now();
    let error = served.await.unwrap().err().expect("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), LIMITS.header_read);
}

#[tokio::test]
async fn a_head_cut_by_the_end_of_the_connection_is_an_error() {
    let (mut client, served) = start();
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    drop(client);
    let error = served.await.unwrap().err().expect("an error");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn a_client_that_leaves_ends_the_wait_of_its_request() {
    let (mut client, server) = duplex(1024);
    let (waiting, mut dropped) = tokio::sync::mpsc::channel::<()>(1);
    // A request that waits until its future is dropped, holding the sender till then.
    let handler = move |_req: Request<RequestBody>| {
        let waiting = waiting.clone();
        async move {
            let _held = waiting;
            std::future::pending::<Response<Full<Bytes>>>().await
        }
    };
    let served = tokio::spawn(async move { serve(server, LIMITS, &handler).await });
    client
        .write_all(b"GET /v1/config HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(client);
    let next = tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the connection ends when its client leaves")
        .unwrap()
        .unwrap();
    assert!(matches!(next, Next::Closed));
    assert_eq!(
        dropped.recv().await,
        None,
        "the waiting request was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_while_the_last_waits_is_answered_after_it() {
    let (mut client, served) = start();
    client
        .write_all(b"GET /slow HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    client
        .write_all(b"GET /next HTTP/1.1\r\nX-Echo: 2\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let (head, body) = next_response(&mut client, &mut rest).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "/slow ");
    let (_, body) = next_response(&mut client, &mut rest).await;
    assert_eq!(body, "/next 2");
    drop(client);
    assert!(matches!(served.await.unwrap().unwrap(), Next::Closed));
}

#[tokio::test]
async fn a_post_with_a_small_body_is_answered_here_even_when_its_body_comes_late() {
    let (mut client, served) = start();
    client
        .write_all(b"POST /v1/report HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"a\":")
        .await
        .unwrap();
    tokio::task::yield_now().await;
    client.write_all(b"\"bcd\"}").await.unwrap();
    let (head, body) = response(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "{\"a\":\"bcd\"}");

    // The connection stays here for the long-poll that follows, as a sidecar's does.
    client
        .write_all(b"GET /v1/config HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (_, body) = response(&mut client).await;
    assert_eq!(body, "/v1/config ");
    drop(client);
    assert!(matches!(served.await.unwrap().unwrap(), Next::Closed));
}

/// A stream that notes the room each read offers.
struct Reads<I> {
    io: I,
    room: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Reads<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.room.lock().unwrap().push(buf.remaining());
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

write_through!(Reads);

/// Between two requests, and while a request waits, a connection holds no read buffer: its
/// pending read has room for one byte.
#[tokio::test(start_paused = true)]
async fn a_connection_waits_with_no_read_buffer() {
    let (mut client, server) = duplex(64 * 1024);
    let room = std::sync::Arc::default();
    let server = Reads {
        io: server,
        room: std::sync::Arc::clone(&room),
    };
    let served = tokio::spawn(async move { serve(server, LIMITS, &handler).await });
    let last_read = || *room.lock().unwrap().last().expect("a read");

    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(last_read(), 1, "before the first request");
    client
        .write_all(b"GET /slow HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(last_read(), 1, "while the request waits");
    response(&mut client).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(last_read(), 1, "after the answer");
    drop(client);
    assert!(matches!(served.await.unwrap().unwrap(), Next::Closed));
}
