use super::*;

fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

#[test]
fn versions_come_from_if_none_match_or_the_query() {
    let q = parse_config_query(&request("/v1/config", &[])).unwrap();
    assert_eq!(
        q,
        ConfigQuery {
            known_version: None,
            wait: DEFAULT_WAIT,
            schema: SCHEMA_VERSION
        }
    );
    let q = parse_config_query(&request("/v1/config?version=abc&wait=250ms", &[])).unwrap();
    assert_eq!(q.known_version.as_deref(), Some("abc"));
    assert_eq!(q.wait, Duration::from_millis(250));
    let q = parse_config_query(&request(
        "/v1/config?version=old",
        &[("if-none-match", "\"new\"")],
    ))
    .unwrap();
    assert_eq!(q.known_version.as_deref(), Some("new"), "the header wins");
    let q = parse_config_query(&request("/v1/config?wait=10m", &[])).unwrap();
    assert_eq!(q.wait, MAX_WAIT, "capped");
}

#[test]
fn bad_queries_and_old_schemas_are_refused() {
    let bad_wait = parse_config_query(&request("/v1/config?wait=soon", &[])).unwrap_err();
    assert_eq!(bad_wait.status(), StatusCode::BAD_REQUEST);
    let bad_schema =
        parse_config_query(&request("/v1/config", &[(TABLE_SCHEMA_HEADER, "x")])).unwrap_err();
    assert_eq!(bad_schema.status(), StatusCode::BAD_REQUEST);
    let old =
        parse_config_query(&request("/v1/config", &[(TABLE_SCHEMA_HEADER, "0")])).unwrap_err();
    assert_eq!(old.status(), StatusCode::CONFLICT);
}

#[test]
fn schemas_are_negotiated_down_to_the_oldest_served() {
    assert_eq!(negotiate_schema(SCHEMA_VERSION), Ok(SCHEMA_VERSION));
    assert_eq!(negotiate_schema(SCHEMA_VERSION + 5), Ok(SCHEMA_VERSION));
    assert!(
        negotiate_schema(OLDEST_SERVED_SCHEMA - 1)
            .unwrap_err()
            .contains("upgrade the sidecar")
    );
}

#[test]
fn etags_are_unquoted_and_weak_prefixes_ignored() {
    let tag = |s: &str| parse_etag(&HeaderValue::from_str(s).unwrap());
    assert_eq!(tag("\"abc\""), Some("abc".into()));
    assert_eq!(tag("W/\"abc\""), Some("abc".into()));
    assert_eq!(tag("\"a\", \"b\""), Some("a".into()));
    assert_eq!(tag("abc"), Some("abc".into()));
    assert_eq!(tag("*"), None);
    assert_eq!(tag("\"\""), None);
}

#[test]
fn jitter_adds_at_most_ten_percent() {
    let wait = Duration::from_secs(30);
    assert_eq!(with_jitter(wait, 0.0), wait);
    assert_eq!(with_jitter(wait, 1.0), Duration::from_secs(33));
    assert_eq!(with_jitter(wait, 7.0), Duration::from_secs(33));
}

/// A server whose apiserver is a `tower_test` mock answering every TokenReview for `pod`.
fn server_with_mock_apiserver(pod: tables::PodInfo) -> Arc<ConfigServer> {
    use std::collections::{BTreeMap, HashMap};

    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(
                request.uri().path(),
                "/apis/authentication.k8s.io/v1/tokenreviews"
            );
            let review = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "metadata": {},
                "spec": {},
                "status": {
                    "authenticated": true,
                    "audiences": ["switchyard"],
                    "user": {
                        "username": "system:serviceaccount:team-a:default",
                        "extra": {
                            "authentication.kubernetes.io/pod-name": ["chat-0"],
                            "authentication.kubernetes.io/pod-uid": ["uid-a"],
                        },
                    },
                },
            });
            let body = kube::client::Body::from(review.to_string().into_bytes());
            send.send_response(http::Response::builder().status(201).body(body).unwrap());
        }
    });
    let tables = Tables::new(tables::Snapshot {
        tables: BTreeMap::new(),
        pods: HashMap::from([("uid-a".to_string(), pod)]),
        durable: Default::default(),
    });
    let metrics = crate::metrics::Metrics::new().unwrap();
    ConfigServer::new(
        tables,
        Some(kube::Client::new(service, "default")),
        metrics.config,
    )
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_default_long_poll_lasts_thirty_seconds_plus_jitter() {
    let pod = tables::PodInfo::bare("team-a", "chat-0", Default::default());
    let server = server_with_mock_apiserver(pod);
    let current = format!("\"{}\"", tables::empty_table().version);
    let request = |etag: &str| {
        Request::get("/v1/config")
            .header("authorization", "Bearer t")
            .header("if-none-match", etag)
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    let started = Instant::now();
    let response = server.clone().handle(request(&current)).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(waited >= DEFAULT_WAIT, "{waited:?}");
    assert!(waited <= with_jitter(DEFAULT_WAIT, 1.0), "{waited:?}");

    let started = Instant::now();
    let response = server.handle(request("\"stale\"")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a stale version answers at once"
    );
}

#[tokio::test]
async fn without_an_apiserver_requests_are_503_not_401() {
    let metrics = crate::metrics::Metrics::new().unwrap();
    let server = ConfigServer::new(Tables::default(), None, metrics.config);
    let request = Request::get("/v1/config")
        .header("authorization", "Bearer t")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = server.clone().handle(request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let unknown = Request::get("/v2/other")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(server.handle(unknown).await.status(), StatusCode::NOT_FOUND);
}

/// A request body that notes when it is dropped.
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl hyper::body::Body for DropFlag {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Every sidecar of the fleet holds a long-poll at all times, so what one keeps while it waits
/// is kept ten thousand times: not the request (its headers are slices of the connection's read
/// buffer), nor the snapshot it was authenticated against (after a publish that leaves its table
/// as it was, that would keep an old snapshot's every pod and table alive).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiting_long_poll_keeps_neither_its_request_nor_an_old_snapshot() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let pod = tables::PodInfo::bare("team-a", "chat-0", Default::default());
    let server = server_with_mock_apiserver(pod);
    let first = Arc::downgrade(&server.tables.current());
    let dropped = Arc::new(AtomicBool::new(false));
    let request = Request::get("/v1/config")
        .header("authorization", "Bearer t")
        .header(
            "if-none-match",
            format!("\"{}\"", tables::empty_table().version),
        )
        .body(DropFlag(dropped.clone()))
        .unwrap();
    let poll = tokio::spawn(server.clone().handle(request));
    while server.metrics.long_polls.get() < 1 {
        tokio::task::yield_now().await;
    }
    assert!(dropped.load(Ordering::SeqCst), "the request is kept");

    // A publish that leaves the pod's table as it was: the poll goes on waiting.
    let same = (*server.tables.current()).clone();
    server.tables.publish(same);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !poll.is_finished(),
        "the poll ended on a publish that changed nothing"
    );
    assert!(first.upgrade().is_none(), "the old snapshot is kept alive");

    let response = poll.await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}
