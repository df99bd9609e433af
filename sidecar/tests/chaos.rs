//! Pod mode under faults, each one real: a config server that dies mid-answer or is replaced, a
//! leader that stops serving mid-poll, a sidecar process killed mid-stream and restarted without
//! its operator, a state dir that cannot be written and a state file that is corrupt. The
//! promise in every case: the last good table keeps serving (docs/reference/sidecar.md#failure-modes).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use switchyard_sim::openai::{Fault, MockProvider};
use tokio::time::Instant;

use support::*;

/// The stored table's version, if there is an intact file.
fn stored_version(files: &PodFiles) -> Option<String> {
    let text = std::fs::read_to_string(files.state.join("route-table.json")).ok()?;
    let stored: serde_json::Value = serde_json::from_str(&text).ok()?;
    stored["table"]["version"].as_str().map(str::to_string)
}

fn polls(operator: &FakeOperator) -> usize {
    operator.shared.polls.load(Ordering::SeqCst)
}

// === A sidecar process ===

const BIN: &str = env!("CARGO_BIN_EXE_switchyard-sidecar");

/// A pod-mode `switchyard-sidecar` process and its stderr lines.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    data: u16,
    admin: u16,
}

impl Process {
    /// Runs the binary against `url`, behind `prefix` (e.g. `unshare`) when one is given.
    fn spawn(url: &str, files: &PodFiles, prefix: &[&str]) -> Self {
        let ports: Vec<std::net::TcpListener> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let [data, admin] = [0, 1].map(|i| ports[i].local_addr().expect("addr").port());
        drop(ports);
        let (program, before) = match prefix.split_first() {
            Some((program, rest)) => (*program, rest.iter().copied().chain([BIN]).collect()),
            None => (BIN, Vec::new()),
        };
        let mut command = Command::new(program);
        command.args(before).args([
            "--config-server",
            url,
            "--token-file",
            files.token.to_str().expect("utf-8"),
            "--ca-file",
            files.ca.to_str().expect("utf-8"),
            "--state-dir",
            files.state.to_str().expect("utf-8"),
            "--report-interval",
            "1h",
            "--listen",
            &format!("127.0.0.1:{data}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            // Off: its fixed default port would clash between tests.
            "--debug-listen",
            "",
        ]);
        command.env_remove("RUST_LOG");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().expect("piped"), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            data,
            admin,
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Log lines whose message contains `what`.
    fn logged(&self, what: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|v| v["message"].as_str().is_some_and(|m| m.contains(what)))
            })
            .cloned()
            .collect()
    }

    /// `/readyz`'s status, `None` while nothing answers.
    async fn readyz(&self) -> Option<u16> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let uri = format!("http://127.0.0.1:{}/readyz", self.admin);
        let get = client.get(uri.parse().expect("uri"));
        let response = tokio::time::timeout(Duration::from_secs(2), get)
            .await
            .ok()?
            .ok()?;
        Some(response.status().as_u16())
    }

    /// Waits until `/readyz` answers `status`.
    async fn until_readyz(&mut self, status: u16, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.readyz().await == Some(status) {
                return true;
            }
            if let Some(exit) = self.child.try_wait().expect("wait") {
                panic!("exited with {exit}: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    async fn chat(&self, model: &str) -> u16 {
        let url = format!("http://127.0.0.1:{}/v1/chat/completions", self.data);
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        http("POST", url, Some(body)).await.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this machine lets a test mount a tmpfs in a user and mount namespace of its own.
fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs tmpfs \"$0\""])
        .arg(std::env::temp_dir())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_server_dying_mid_table_leaves_the_last_good_table_serving_until_it_is_back() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    // The head and half of the next table's body, then the connection drops; the sidecar backs
    // off and asks again, and gets the same broken answer.
    let second = table(&provider, "chat-2");
    let half = serde_json::to_string(&second).expect("serializes").len() / 2;
    let before = polls(&operator);
    operator.set(Answer::cut(&second, half));
    assert!(
        eventually(SOON, || polls(&operator) >= before + 2).await,
        "asked again after the cut"
    );
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    assert_eq!(stored_version(&files), Some(first.version.clone()));
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(chat(&sidecar, "chat-2").await.0, 404);
    assert_eq!(readyz(&sidecar).await.0, 200);

    // The server dies outright, then a new one comes up on the same address with the table.
    let addr = operator.addr;
    operator.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    let back = FakeOperator::start_at(&pki, "token", Answer::table(&second), addr).await;
    assert!(
        eventually(2 * SOON, || version(&sidecar)
            == Some(second.version.clone()))
        .await,
        "the new table once the server is back"
    );
    assert_eq!(chat(&sidecar, "chat-2").await.0, 200);
    assert_eq!(stored_version(&files), Some(second.version.clone()));

    sidecar.shutdown().await;
    back.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_a_mismatched_table_is_neither_served_nor_persisted() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let second = table(&provider, "chat-2");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    // A server answering garbage, or a table that is not what its version says.
    let mut mismatched = second.clone();
    mismatched.version = "0123456789abcdef".into();
    let bad = [
        (
            Answer::other(200, Some("\"garbage\""), "\u{0}\u{1}sk-pod-secret"),
            "not a route table",
        ),
        (
            Answer::other(
                200,
                Some("\"0123456789abcdef\""),
                &serde_json::to_string(&mismatched).expect("serializes"),
            ),
            "content hash",
        ),
    ];
    for (answer, why) in bad {
        operator.set(answer);
        assert!(
            eventually(SOON, || sidecar
                .runtime
                .last_error()
                .is_some_and(|e| e.contains(why)))
            .await,
            "{why}"
        );
        assert_eq!(version(&sidecar), Some(first.version.clone()));
        assert_eq!(stored_version(&files), Some(first.version.clone()));
        assert_eq!(chat(&sidecar, "chat").await.0, 200);
    }
    assert!(
        !sidecar
            .runtime
            .last_error()
            .unwrap_or_default()
            .contains("sk-pod-secret"),
        "no key in the reason"
    );

    assert_eq!(readyz(&sidecar).await.0, 200);

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_mid_poll_leaves_the_table_serving_and_the_sidecar_moves_to_the_new_one() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);
    assert!(eventually(SOON, || polls(&operator) >= 2).await, "waiting");

    // The waiting poll is answered 503, as a replica that lost its Lease does, and so is every
    // poll after it: the sidecar backs off instead of spinning, and serves on.
    let before = polls(&operator);
    operator.set(Answer::other(
        503,
        None,
        r#"{"error":"this operator replica is not serving (not the leader, or shutting down)"}"#,
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = polls(&operator) - before;
    assert!((1..=5).contains(&during), "{during} polls in 1.5 s");
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(readyz(&sidecar).await.0, 200);

    // The new leader takes over the Service's address with a newer table.
    let addr = operator.addr;
    operator.stop();
    let second = table(&provider, "chat-2");
    let leader = FakeOperator::start_at(&pki, "token", Answer::table(&second), addr).await;
    assert!(
        eventually(2 * SOON, || version(&sidecar)
            == Some(second.version.clone()))
        .await,
        "resumed with the new leader"
    );
    assert_eq!(chat(&sidecar, "chat-2").await.0, 200);

    sidecar.shutdown().await;
    leader.stop();
}

/// The config server keeps answering `status` with `body`: the table stays, serving and ready.
async fn answers_that_keep_the_table(status: u16, body: &str) {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    let before = polls(&operator);
    operator.set(Answer::other(status, None, body));
    assert!(
        eventually(SOON, || polls(&operator) >= before + 2).await,
        "asked again"
    );
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(readyz(&sidecar).await.0, 200);
    assert_eq!(stored_version(&files), Some(first.version.clone()));

    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(eventually(SOON, || version(&sidecar) == Some(second.version.clone())).await);

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_that_cannot_review_the_token_leaves_the_table_serving() {
    // What the operator answers while the apiserver is down.
    answers_that_keep_the_table(503, r#"{"error":"cannot review the token now"}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_leaves_the_table_serving() {
    // Never an apiserver outage (that is 503), but neither drops nor replaces the table.
    answers_that_keep_the_table(401, r#"{"error":"token not authenticated"}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_killed_mid_stream_ends_the_stream_and_restarts_from_its_state_dir() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let mut sidecar = Process::spawn(&operator.url(), &files, &[]);
    assert!(sidecar.until_readyz(200, SOON).await, "{}", sidecar.log());

    // A stream that has begun and then waits on its provider.
    provider.push_faults([Fault::StallMidStream { after_chunks: 2 }]);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!(
        "http://127.0.0.1:{}/v1/chat/completions",
        sidecar.data
    ))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(
        json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    )))
    .expect("request");
    let response = tokio::time::timeout(SOON, client.request(request))
        .await
        .expect("a head in time")
        .expect("a head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first_chunk = tokio::time::timeout(SOON, body.frame())
        .await
        .expect("a first chunk in time");
    assert!(first_chunk.is_some_and(|f| f.is_ok()), "the stream began");

    // SIGKILL: no drain, no error event. The client must see the end, and an unclean one.
    sidecar.child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("the stream ends instead of hanging");
    assert!(rest.is_err(), "a cut stream is an error, not a clean end");
    assert!(killed.elapsed() < Duration::from_secs(5));

    // The container restarts while the operator is unreachable: ready at once, from disk.
    operator.stop();
    let mut restarted = Process::spawn(&operator.url(), &files, &[]);
    assert!(
        restarted.until_readyz(200, Duration::from_secs(5)).await,
        "{}",
        restarted.log()
    );
    assert_eq!(restarted.chat("chat").await, 200);
    assert!(
        eventually(SOON, || restarted
            .logged("serving the persisted route table")
            .len()
            == 1)
        .await,
        "{}",
        restarted.log()
    );
}

/// The state-dir faults: a full file system (a real ENOSPC) and a read-only one.
const FULL: &str = "mount -t tmpfs -o size=16k tmpfs \"$0\" && \
    (dd if=/dev/zero of=\"$0/filler\" bs=4k 2>/dev/null; true) && exec \"$@\"";
const READ_ONLY: &str = "mount -t tmpfs -o ro tmpfs \"$0\" && exec \"$@\"";

async fn a_state_dir_that_cannot_be_written(setup: &str, error: &str) {
    if !can_unshare() {
        eprintln!("skipped: this machine does not allow `unshare -rm` with a tmpfs mount");
        return;
    }
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    operator.hold_polls_for(Duration::from_millis(100));
    let files = PodFiles::new(&pki.ca_pem, "token");
    std::fs::create_dir_all(&files.state).expect("state dir");
    let state = files.state.to_str().expect("utf-8").to_string();
    let mut sidecar = Process::spawn(
        &operator.url(),
        &files,
        &["unshare", "-rm", "sh", "-c", setup, &state],
    );
    assert!(sidecar.until_readyz(200, SOON).await, "{}", sidecar.log());
    assert_eq!(sidecar.chat("chat").await, 200);

    // Many polls later (each answered 304 after 100 ms), still one line for the one table.
    let before = polls(&operator);
    assert!(eventually(SOON, || polls(&operator) >= before + 5).await);
    let failures = sidecar.logged("cannot persist");
    assert_eq!(failures.len(), 1, "{}", sidecar.log());
    assert!(failures[0].contains(error), "{}", failures[0]);

    // The next table: served from memory, one more line, still ready.
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(
        eventually(SOON, || sidecar
            .logged("route table from the operator")
            .len()
            == 2)
        .await,
        "{}",
        sidecar.log()
    );
    assert_eq!(sidecar.chat("chat-2").await, 200);
    assert_eq!(sidecar.readyz().await, Some(200));
    let before = polls(&operator);
    assert!(eventually(SOON, || polls(&operator) >= before + 5).await);
    assert_eq!(
        sidecar.logged("cannot persist").len(),
        2,
        "{}",
        sidecar.log()
    );
    assert!(
        !sidecar.log().contains("sk-pod-secret"),
        "no key in the log"
    );
    assert!(
        !sidecar.log().contains(provider.base_url().as_str()),
        "no table contents in the log"
    );
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_dir_keeps_the_table_in_memory_logs_once_per_table_and_stays_ready() {
    a_state_dir_that_cannot_be_written(FULL, "No space left on device").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_dir_keeps_the_table_in_memory_logs_once_per_table_and_stays_ready() {
    a_state_dir_that_cannot_be_written(READ_ONLY, "Read-only file system").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_ignored_with_a_reason_and_the_operator_s_table_is_served() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(
        &pki,
        "token",
        Answer::other(503, None, r#"{"error":"cannot review the token now"}"#),
    )
    .await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    std::fs::create_dir_all(&files.state).expect("state dir");
    std::fs::write(
        files.state.join("route-table.json"),
        "{\"schemaVersion\":1,\"checksum\":\"00\",\"table\":{\"apiKey\":\"sk-pod-secret\"",
    )
    .expect("corrupt");
    let mut sidecar = Process::spawn(&operator.url(), &files, &[]);
    // Up, but with nothing to serve until the operator answers.
    assert!(sidecar.until_readyz(503, SOON).await, "{}", sidecar.log());
    // NB: stderr is read on a thread; the line may trail /readyz a little.
    let said = || !sidecar.logged("persisted route table ignored").is_empty();
    assert!(eventually(SOON, said).await, "{}", sidecar.log());
    let ignored = sidecar.logged("persisted route table ignored");
    assert_eq!(ignored.len(), 1, "{}", sidecar.log());
    assert!(
        ignored[0].contains("not a stored route table"),
        "{}",
        ignored[0]
    );
    assert!(
        !sidecar.log().contains("sk-pod-secret"),
        "no file contents in the log"
    );

    operator.set(Answer::table(&first));
    assert!(
        sidecar.until_readyz(200, 2 * SOON).await,
        "{}",
        sidecar.log()
    );
    assert_eq!(sidecar.chat("chat").await, 200);
    assert_eq!(stored_version(&files), Some(first.version.clone()));
    operator.stop();
}
