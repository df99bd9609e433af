//! The standalone table's life cycle and what the admin and debug listeners show: `/healthz`,
//! `/readyz`, reloads on file change, bad reloads that keep the old table (with the reason in
//! `/readyz` and a failure counter), `/debug/config` with keys as `***`,
//! `switchyard_config_version_info`, keys kept out of every answer, and the 503
//! `switchyard_no_config` before any table.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use switchyard_sidecar::listen::{admin, server};
use switchyard_sidecar::proxy::Proxy;
use switchyard_sidecar::table::Runtime;
use switchyard_sidecar::table::standalone::{self, Selection};
use switchyard_sidecar::telemetry::metrics::Metrics;
use switchyard_tests::{
    Fault, Harness, MockProvider, client, eventually, pool, route, write_manifests,
};

/// Enough for a file event, the 200 ms debounce and a reload on a loaded machine.
const RELOAD: Duration = Duration::from_secs(5);

fn manifests(a: &MockProvider, b: &MockProvider) -> String {
    pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "",
    ) + &route("r", "chat", &[("a", "m-a"), ("b", "m-b")], "")
}

async fn started() -> (Harness, MockProvider, MockProvider, String) {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = manifests(&a, &b);
    (Harness::start(&yaml).await, a, b, yaml)
}

async fn text(h: &Harness, url: &str) -> (u16, String) {
    let reply = h.get(url).await;
    (
        reply.status.as_u16(),
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

/// The `version` label of every `switchyard_config_version_info` series with value 1.
async fn served_versions(h: &Harness) -> Vec<String> {
    h.metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("switchyard_config_version_info{version=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .filter(|(_, value)| value.trim() == "1")
        .map(|(version, _)| version.to_string())
        .collect()
}

async fn debug_config(h: &Harness) -> Value {
    let reply = h.get(&h.debug_url("/debug/config")).await;
    assert_eq!(reply.status, 200);
    reply.json()
}

async fn reload_failures(h: &Harness) -> f64 {
    h.count("switchyard_config_reload_failures_total", &[])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_are_200_once_a_table_is_loaded() {
    let (h, _a, _b, _) = started().await;

    let (status, body) = text(&h, &h.admin_url("/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = text(&h, &h.admin_url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("failed"), "{body}");
    let (status, _) = text(&h, &h.admin_url("/nope")).await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_and_serves_a_new_route() {
    let (h, a, b, yaml) = started().await;
    let before = served_versions(&h).await;
    assert_eq!(h.chat("fresh", "hi").await.status, 404);

    h.rewrite(&(yaml + &route("fresh", "fresh", &[("b", "m-b")], "")));

    let reloaded = eventually(RELOAD, || async {
        h.chat("fresh", "hi").await.status == 200
    })
    .await;
    assert!(reloaded, "the new route was not served within {RELOAD:?}");
    let reply = h.chat("fresh", "hi").await;
    assert_eq!(reply.header("x-switchyard-route"), "fresh");
    assert_eq!(reply.header("x-switchyard-provider"), "pool/b");
    assert_eq!(
        h.chat("chat", "hi").await.status,
        200,
        "the old route stays"
    );
    let after = served_versions(&h).await;
    assert_eq!(after.len(), 1, "one version series: {after:?}");
    assert_ne!(after, before, "the version follows the table");
    assert_eq!(debug_config(&h).await["version"], after[0].as_str());
    assert_eq!(reload_failures(&h).await, 0.0);
    assert!(a.request_count() >= 1 && b.request_count() >= 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_can_change_where_a_route_goes() {
    let (h, a, b, _) = started().await;
    assert_eq!(
        h.chat("chat", "hi").await.header("x-switchyard-provider"),
        "pool/a"
    );

    h.rewrite(
        &(pool(
            &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
            "",
            "",
        ) + &route("r", "chat", &[("b", "m-b")], "")),
    );

    let moved = eventually(RELOAD, || async {
        h.chat("chat", "hi").await.header("x-switchyard-provider") == "pool/b"
    })
    .await;
    assert!(moved, "the route still goes to a");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_in_the_directory_is_loaded() {
    let (h, _a, _b, _) = started().await;

    std::fs::write(
        h.dir.join("more.yml"),
        route("extra", "extra", &[("a", "m-a")], ""),
    )
    .expect("write a second file");

    let loaded = eventually(RELOAD, || async {
        h.chat("extra", "hi").await.status == 200
    })
    .await;
    assert!(loaded, "a .yml file added to the directory was not loaded");
    h.stop().await;
}

/// Rewrites the files with `bad` and waits until the reload has been refused.
async fn refuse(h: &Harness, bad: &str) {
    let failures = reload_failures(h).await;
    h.rewrite(bad);
    let refused = eventually(RELOAD, || async { reload_failures(h).await > failures }).await;
    assert!(
        refused,
        "switchyard_config_reload_failures_total did not increase"
    );
}

/// The previous table still serves, `/readyz` is 200 and names `why`.
async fn assert_old_table_serves(h: &Harness, version: &[String], why: &str) {
    let reply = h.chat("chat", "hi").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    assert_eq!(
        served_versions(h).await,
        version,
        "the served version is unchanged"
    );
    let (status, body) = text(h, &h.admin_url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(why), "/readyz does not say why: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_yaml_on_reload_keeps_the_previous_table_serving() {
    let (h, _a, _b, _) = started().await;
    let version = served_versions(&h).await;

    refuse(&h, "apiVersion: switchyard.dev/v1alpha1\nkind: [unclosed\n").await;

    assert_old_table_serves(&h, &version, "manifests.yaml").await;
    assert_eq!(reload_failures(&h).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reference_on_reload_keeps_the_previous_table_serving() {
    let (h, a, _b, _) = started().await;
    let version = served_versions(&h).await;

    let broken =
        pool(&[("a", &a.base_url(), "m-a")], "", "") + &route("r", "chat", &[("ghost", "m-a")], "");
    refuse(&h, &broken).await;

    assert_old_table_serves(&h, &version, "ghost").await;
    let (_, body) = text(&h, &h.admin_url("/readyz")).await;
    assert!(
        body.contains("spec.targets[0].provider"),
        "names the field: {body}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_reload_after_a_bad_one_clears_the_error() {
    let (h, a, b, yaml) = started().await;
    refuse(&h, "kind: [unclosed\n").await;

    h.rewrite(&(yaml + &route("fresh", "fresh", &[("b", "m-b")], "")));

    let served = eventually(RELOAD, || async {
        h.chat("fresh", "hi").await.status == 200
    })
    .await;
    assert!(served, "the fixed files were not loaded");
    let (status, body) = text(&h, &h.admin_url("/readyz")).await;
    assert_eq!(status, 200);
    assert!(!body.contains("failed"), "{body}");
    drop((a, b));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_the_served_files_after_a_bad_reload_clears_the_error() {
    let (h, _a, _b, yaml) = started().await;
    refuse(&h, "kind: [unclosed\n").await;

    // The usual fix: put back what was there before.
    h.rewrite(&yaml);

    let cleared = eventually(RELOAD, || async {
        let (_, body) = text(&h, &h.admin_url("/readyz")).await;
        !body.contains("failed")
    })
    .await;
    let (_, body) = text(&h, &h.admin_url("/readyz")).await;
    assert!(
        cleared,
        "/readyz still reports a failure the files no longer have: {body}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_config_shows_the_table_with_keys_hidden() {
    let (h, _a, _b, _) = started().await;

    let reply = h.get(&h.debug_url("/debug/config")).await;

    assert_eq!(reply.status, 200);
    let raw = String::from_utf8_lossy(&reply.body);
    assert!(
        !raw.contains("sk-a-secret") && !raw.contains("sk-b-secret"),
        "{raw}"
    );
    let table = reply.json();
    assert_eq!(table["upstreams"]["pool/a"]["apiKey"], "***");
    assert_eq!(table["upstreams"]["pool/b"]["apiKey"], "***");
    assert_eq!(table["routes"]["chat"]["name"], "r");
    let targets = table["routes"]["chat"]["targets"]
        .as_array()
        .expect("targets");
    assert_eq!(targets.len(), 2);
    let version = table["version"].as_str().expect("a version");
    assert_eq!(served_versions(&h).await, [version.to_string()]);
    let (status, _) = text(&h, &h.debug_url("/debug/nope")).await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_appear_in_metrics_or_error_bodies() {
    let (h, a, b, _) = started().await;
    // Providers that echo the key they were sent, as some do in auth errors.
    let echo = |status: u16, key: &str| Fault::Status {
        status,
        body: format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {key}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
        ),
        headers: vec![],
    };
    a.push_faults([echo(401, "sk-a-secret")]);
    b.push_faults([echo(401, "sk-b-secret")]);

    let all_failed = h.chat("chat", "hi").await;
    assert_eq!(all_failed.status, 502);
    let body = String::from_utf8_lossy(&all_failed.body).into_owned();
    assert!(
        body.contains("Incorrect API key"),
        "the provider's reason is kept: {body}"
    );

    // A client error goes back as the provider wrote it, but not with the key.
    let c = MockProvider::start("c").await.expect("mock c");
    let yaml =
        pool(&[("c", &c.base_url(), "m-c")], "", "") + &route("rc", "chat", &[("c", "m-c")], "");
    let hc = Harness::start(&yaml).await;
    c.push_faults([echo(400, "sk-c-secret")]);
    let client_error = hc.chat("chat", "hi").await;
    assert_eq!(client_error.status, 400);
    let client_body = String::from_utf8_lossy(&client_error.body).into_owned();

    let metrics = h.metrics().await + &hc.metrics().await;
    for key in ["sk-a-secret", "sk-b-secret", "sk-c-secret"] {
        assert!(!body.contains(key), "{key} in an error body: {body}");
        assert!(
            !client_body.contains(key),
            "{key} in an error body: {client_body}"
        );
        assert!(!metrics.contains(key), "{key} in /metrics");
    }
    hc.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_json_escaped_is_hidden_after_the_client_decodes_it() {
    let c = MockProvider::start("c").await.expect("mock c");
    let yaml =
        pool(&[("c", &c.base_url(), "m-c")], "", "") + &route("rc", "chat", &[("c", "m-c")], "");
    let h = Harness::start(&yaml).await;
    // `sk-c-secret` with its dashes escaped: valid JSON that decodes to the key.
    c.push_faults([Fault::Status {
        status: 400,
        body: r#"{"error":{"message":"Incorrect API key provided: sk\u002dc\u002dsecret","type":"invalid_request_error"}}"#.into(),
        headers: vec![],
    }]);

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.status, 400);
    let decoded = reply.json().to_string();
    assert!(decoded.contains("Incorrect API key"), "{decoded}");
    assert!(
        !decoded.contains("sk-c-secret"),
        "the key, decoded: {decoded}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_in_a_stream_error_is_hidden() {
    let (h, a, _b, _) = started().await;
    let events = concat!(
        "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"}}]}\n\n",
        "data: {\"error\":{\"message\":\"key sk-a-secret was revoked\",\"type\":\"server_error\"}}\n\n",
    );
    a.push_faults([Fault::Status {
        status: 200,
        body: events.into(),
        headers: vec![("content-type".into(), "text/event-stream".into())],
    }]);
    let body = serde_json::json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});

    let reply = h.post("/v1/chat/completions", &body).await;

    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body);
    assert!(text.contains("revoked"), "the error event is there: {text}");
    assert!(!text.contains("sk-a-secret"), "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_refuse_to_start_naming_file_object_and_field() {
    let a = MockProvider::start("a").await.expect("mock a");
    let dir = write_manifests(
        &(pool(&[("a", &a.base_url(), "m-a")], "", "")
            + &route("broken-route", "chat", &[("a", "no-such-model")], "")),
    );
    let loopback = "127.0.0.1:0".parse().expect("an address");
    let config = switchyard_sidecar::app::Config {
        listen: loopback,
        admin_listen: loopback,
        debug_listen: None,
        max_body_bytes: 1 << 20,
        drain: switchyard_sidecar::app::DEFAULT_DRAIN,
        accept_while_draining: false,
        source: switchyard_sidecar::app::Source::Manifests {
            paths: vec![dir.clone()],
            selection: Selection::default(),
        },
    };

    let error = switchyard_sidecar::app::Sidecar::start(config)
        .await
        .err()
        .expect("the sidecar refuses to start")
        .to_string();

    let _ = std::fs::remove_dir_all(&dir);
    assert!(error.contains("manifests.yaml"), "{error}");
    assert!(error.contains("broken-route"), "{error}");
    assert!(error.contains("spec.targets[0].model"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");
}

async fn send(url: &str, method: Method, body: &str) -> (u16, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), client().request(request))
        .await
        .expect("bounded")
        .expect("answered");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry_after, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_any_table_the_data_plane_answers_503_no_config() {
    let runtime = Runtime::new(Metrics::new());
    let proxy = Proxy::new(runtime.clone(), 1 << 20);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let data = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (data_addr, admin_addr) = (
        data.local_addr().unwrap(),
        admin_listener.local_addr().unwrap(),
    );
    let data_task = tokio::spawn(server::serve(
        data,
        server::Limits::DATA_PLANE,
        move |r| proxy.clone().handle(r),
        stopped.clone(),
    ));
    let rt = runtime.clone();
    let admin_task = tokio::spawn(server::serve(
        admin_listener,
        server::Limits::ADMIN,
        move |r| admin::admin(rt.clone(), r),
        stopped,
    ));
    let chat = format!("http://{data_addr}/v1/chat/completions");
    let body = switchyard_tests::chat("chat", "hi").to_string();

    for (method, url, body) in [
        (Method::POST, chat.clone(), body.as_str()),
        (Method::GET, format!("http://{data_addr}/v1/models"), ""),
    ] {
        let (status, retry_after, json) = send(&url, method, body).await;
        assert_eq!(status, 503, "{url}: {json}");
        assert_eq!(retry_after.as_deref(), Some("5"), "{url}");
        assert_eq!(
            json["error"]["code"], "switchyard_no_config",
            "{url}: {json}"
        );
    }
    let (status, ..) = send(&format!("http://{admin_addr}/readyz"), Method::GET, "").await;
    assert_eq!(status, 503, "not ready without a table");

    // The first table makes it serve.
    let a = MockProvider::start("a").await.expect("mock a");
    let dir = write_manifests(
        &(pool(&[("a", &a.base_url(), "m-a")], "", "") + &route("r", "chat", &[("a", "m-a")], "")),
    );
    let loaded = standalone::load(std::slice::from_ref(&dir), &Selection::default())
        .expect("valid manifests");
    runtime.swap(loaded.table);
    let (status, _, json) = send(&chat, Method::POST, &body).await;
    assert_eq!(status, 200, "{json}");
    let (status, ..) = send(&format!("http://{admin_addr}/readyz"), Method::GET, "").await;
    assert_eq!(status, 200);

    stop.send(true).expect("servers listen");
    for task in [data_task, admin_task] {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the servers stop")
            .expect("task");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_removed_from_the_files_stops_being_served() {
    let (h, a, b, yaml) = started().await;
    let with_extra = yaml.clone() + &route("extra", "extra", &[("b", "m-b")], "");
    h.rewrite(&with_extra);
    assert!(
        eventually(RELOAD, || async {
            h.chat("extra", "hi").await.status == 200
        })
        .await
    );

    h.rewrite(&yaml);

    let gone = eventually(RELOAD, || async {
        h.chat("extra", "hi").await.status == 404
    })
    .await;
    assert!(gone, "a deleted route is still served");
    assert_eq!(h.chat("chat", "hi").await.status, 200);
    drop((a, b));
    h.stop().await;
}

/// Two routes for `chat`: `everyone` (no selector, provider a) and `bots` (selects `app=bot`,
/// provider b).
fn selector_manifests(a: &MockProvider, b: &MockProvider) -> String {
    pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "",
    ) + &route("everyone", "chat", &[("a", "m-a")], "")
        + &route(
            "bots",
            "chat",
            &[("b", "m-b")],
            "podSelector: {matchLabels: {app: bot}}",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_a_matching_pod_selector_beats_one_without() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    let yaml = selector_manifests(&a, &b);

    let bot = Harness::start_with(&yaml, |c| {
        c.selection_mut()
            .expect("standalone")
            .labels
            .insert("app".into(), "bot".into());
    })
    .await;
    let other = Harness::start_with(&yaml, |c| {
        c.selection_mut()
            .expect("standalone")
            .labels
            .insert("app".into(), "web".into());
    })
    .await;

    assert_eq!(
        bot.chat("chat", "hi").await.header("x-switchyard-route"),
        "bots"
    );
    assert_eq!(
        other.chat("chat", "hi").await.header("x-switchyard-route"),
        "everyone"
    );
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    bot.stop().await;
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn between_equal_routes_the_name_decides() {
    let a = MockProvider::start("a").await.expect("mock a");
    let b = MockProvider::start("b").await.expect("mock b");
    // `beta` comes first in the file; without creation timestamps `alpha` wins by name.
    let yaml = pool(
        &[("a", &a.base_url(), "m-a"), ("b", &b.base_url(), "m-b")],
        "",
        "",
    ) + &route("beta", "chat", &[("b", "m-b")], "")
        + &route("alpha", "chat", &[("a", "m-a")], "");
    let h = Harness::start(&yaml).await;

    let reply = h.chat("chat", "hi").await;

    assert_eq!(reply.header("x-switchyard-route"), "alpha");
    assert_eq!(reply.header("x-switchyard-provider"), "pool/a");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_in_a_shared_namespace_are_served_without_naming_it() {
    let a = MockProvider::start("a").await.expect("mock a");
    let in_ns =
        |yaml: String| yaml.replace("metadata: {name: ", "metadata: {namespace: support, name: ");
    let yaml = in_ns(
        pool(&[("a", &a.base_url(), "m-a")], "", "") + &route("r", "chat", &[("a", "m-a")], ""),
    );
    assert!(yaml.matches("namespace: support").count() == 3, "{yaml}");

    let h = Harness::start(&yaml).await;
    assert_eq!(h.chat("chat", "hi").await.status, 200);
    assert_eq!(
        debug_config(&h).await["routes"]["chat"]["namespace"],
        "support"
    );
    h.stop().await;

    // Played as a pod of another namespace, the sidecar gets none of those routes.
    let elsewhere = Harness::start_with(&yaml, |c| {
        c.selection_mut().expect("standalone").namespace = Some("other".into())
    })
    .await;
    assert_eq!(elsewhere.chat("chat", "hi").await.status, 404);
    elsewhere.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_of_other_kinds_are_skipped() {
    let a = MockProvider::start("a").await.expect("mock a");
    let yaml =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec: {replicas: 1}\n---\n"
            .to_string()
            + &pool(&[("a", &a.base_url(), "m-a")], "", "")
            + &route("r", "chat", &[("a", "m-a")], "");

    let h = Harness::start(&yaml).await;

    assert_eq!(h.chat("chat", "hi").await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let (h, a, _b, _) = started().await;
    a.set_behavior(switchyard_tests::Behavior {
        latency: Duration::from_millis(400),
        ..switchyard_tests::Behavior::default()
    });
    let url = format!("{}/v1/chat/completions", h.base());
    let body = switchyard_tests::chat("chat", "slow").to_string();
    let in_flight = tokio::spawn(async move { send(&url, Method::POST, &body).await });
    assert!(eventually(Duration::from_secs(2), || async { a.request_count() == 1 }).await);

    tokio::time::timeout(Duration::from_secs(5), h.stop())
        .await
        .expect("shutdown finishes once the request is done");

    let (status, _, json) = in_flight.await.expect("task");
    assert_eq!(status, 200, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_any_table_anthropic_clients_get_503_no_config_in_their_format() {
    let runtime = Runtime::new(Metrics::new());
    let proxy = Proxy::new(runtime.clone(), 1 << 20);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let data = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = data.local_addr().unwrap();
    let task = tokio::spawn(server::serve(
        data,
        server::Limits::DATA_PLANE,
        move |r| proxy.clone().handle(r),
        stopped,
    ));
    let body = serde_json::json!({"model": "chat", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();

    let (status, retry_after, json) =
        send(&format!("http://{addr}/v1/messages"), Method::POST, &body).await;

    assert_eq!(status, 503, "{json}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(json["type"], "error", "Anthropic's error shape: {json}");
    assert!(json["error"]["type"].is_string(), "{json}");
    assert!(
        json.to_string().contains("switchyard_no_config"),
        "the code is missing: {json}"
    );
    stop.send(true).expect("the server listens");
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_never_come_from_request_bodies() {
    let (h, _a, _b, _) = started().await;
    let body = serde_json::json!({"model": "chat", "user": "label-from-body-user",
        "messages": [{"role": "user", "content": "label-from-body-prompt"}]});

    assert_eq!(h.chat("label-from-body-model", "hi").await.status, 404);
    assert_eq!(h.post("/v1/chat/completions", &body).await.status, 200);

    let metrics = h.metrics().await;
    assert!(!metrics.contains("label-from-body"), "{metrics}");
    // The served request is labelled with the route's own names.
    let labels = [("route", "r"), ("provider", "pool/a"), ("model", "m-a")];
    assert_eq!(h.count("switchyard_requests_total", &labels).await, 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_on_reload_keeps_the_previous_table_serving() {
    let (h, _a, _b, yaml) = started().await;
    let version = served_versions(&h).await;

    // `cmd > manifests.yaml` truncates the file before it writes.
    refuse(&h, "").await;
    assert_old_table_serves(&h, &version, "manifests.yaml is empty").await;

    // A file of comments and separators holds no document either.
    refuse(&h, "# nothing yet\n---\n").await;
    assert_old_table_serves(&h, &version, "is empty").await;

    // Once the write completes, the new content loads.
    h.rewrite(&(yaml + &route("fresh", "fresh", &[("b", "m-b")], "")));
    let served = eventually(RELOAD, || async {
        h.chat("fresh", "hi").await.status == 200
    })
    .await;
    assert!(served, "the completed file was not loaded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_read_once_per_change_not_in_a_loop() {
    let (h, _a, _b, _) = started().await;
    refuse(&h, "kind: [unclosed\n").await;

    // Reading the files must not trigger the next reload: the count stays at one bad edit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reload_failures(&h).await, 1.0, "the bad file was re-read");

    // Nor does a file that is not a manifest, in the same directory.
    std::fs::write(h.dir.join("notes.txt"), "not yaml").expect("write an unrelated file");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        reload_failures(&h).await,
        1.0,
        "an unrelated file triggered a reload"
    );
    h.stop().await;
}
