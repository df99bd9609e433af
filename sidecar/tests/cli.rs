//! The real `switchyard-sidecar` binary: invalid manifests and flags exit with code 64 (EX_USAGE)
//! and one line on stderr that says what is wrong and where; a standalone run serves a chat
//! request against a simulated provider, logs it as one JSON line without prompt text or keys,
//! and exits 0 on SIGTERM. A bad OpenTelemetry setting only turns export off; a request refused
//! before the first table still joins the client's trace.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchyard_sim::openai::MockProvider;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard-sidecar");
/// `EX_USAGE`.
const EX_USAGE: i32 = 64;
const KEY: &str = "sk-cli-secret-0123456789";

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A fresh directory holding `name` with `yaml`.
fn manifests(name: &str, yaml: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join(name), yaml).expect("write manifests");
    dir
}

fn pool(base_url: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {{name: main}}
spec:
  providers:
    - name: sim
      api: OpenAI
      baseUrl: {base_url}
      apiKey: {{secretKeyRef: {{name: keys, key: sim}}}}
      models:
        - {{name: gpt-4o-mini, inputPerMillion: \"0.15\", outputPerMillion: \"0.60\"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{sim: {KEY}}}
"
    )
}

fn route(name: &str, provider: &str, model: &str) -> String {
    format!(
        "---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {name}}}
spec:
  model: chat
  targets:
    - {{pool: main, provider: {provider}, model: {model}}}
"
    )
}

/// A command with no inherited `RUST_LOG`, `SWITCHYARD_*` or `OTEL_*` settings.
fn sidecar(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    command.env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("SWITCHYARD_") || name_str.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs to completion (killed after 10 s), returning the exit status and stderr.
fn run(mut command: Command) -> (ExitStatus, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (
        status.expect("the process should have exited by itself"),
        stderr,
    )
}

/// Waits for `child` up to `limit`; kills it and returns `None` when it is still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Exit 64 with one stderr line containing every one of `needles`.
fn assert_usage_error(status: ExitStatus, stderr: &str, needles: &[&str]) {
    assert_eq!(status.code(), Some(EX_USAGE), "stderr: {stderr}");
    let line = stderr.trim_end();
    assert!(!line.is_empty(), "says why");
    assert!(!line.contains('\n'), "one line, got: {stderr}");
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
}

/// Starts the binary on `yaml` in file `file`; it must exit 64 with one line naming the file and
/// every one of `needles`.
fn check_manifests(file: &str, yaml: &str, needles: &[&str]) {
    let dir = manifests(file, yaml);
    let path = dir.join(file);
    // Free ports and no debug listener: should the manifests wrongly pass, the process must not
    // collide with parallel tests on the default ports.
    let (status, stderr) = run(sidecar(&[
        "--manifests",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--debug-listen",
        "",
    ]));
    let mut all = vec![file];
    all.extend_from_slice(needles);
    assert_usage_error(status, &stderr, &all);
    let _ = std::fs::remove_dir_all(dir);
}

/// A valid provider URL; nothing is ever sent to it.
const GOOD_URL: &str = "http://127.0.0.1:1/v1";

#[test]
fn a_broken_target_reference_exits_64_naming_file_object_and_field() {
    check_manifests(
        "routes.yaml",
        &(pool(GOOD_URL) + &route("support-chat", "ghost", "gpt-4o-mini")),
        &["support-chat", "spec.targets[0].provider", "ghost"],
    );
}

#[test]
fn an_unknown_model_reference_exits_64_naming_file_object_and_field() {
    check_manifests(
        "all.yml",
        &(pool(GOOD_URL) + &route("support-chat", "sim", "gpt-5-imaginary")),
        &["support-chat", "spec.targets[0].model"],
    );
}

#[test]
fn a_missing_secret_exits_64_naming_file_object_and_field() {
    let without_secret = pool(GOOD_URL).split("---").next().unwrap().to_string();
    check_manifests(
        "pool.yaml",
        &without_secret,
        &["main", "spec.providers[0].apiKey.secretKeyRef", "keys"],
    );
}

#[test]
fn an_invalid_price_exits_64_naming_file_object_and_field() {
    check_manifests(
        "pool.yaml",
        &pool(GOOD_URL).replace("\"0.15\"", "\"0.1.5\""),
        &["main", "spec.providers[0].models[0].inputPerMillion"],
    );
}

#[test]
fn an_invalid_duration_exits_64_naming_file_object_and_field() {
    let yaml = pool(GOOD_URL).replace(
        "      models:",
        "      timeouts: {total: 5 seconds}\n      models:",
    );
    check_manifests(
        "pool.yaml",
        &yaml,
        &["main", "spec.providers[0].timeouts.total"],
    );
}

#[test]
fn a_key_over_plain_http_to_a_remote_host_exits_64() {
    check_manifests(
        "pool.yaml",
        &pool("http://api.example.com/v1"),
        &["main", "spec.providers[0].baseUrl", "https"],
    );
}

#[test]
fn invalid_yaml_exits_64_naming_the_file() {
    check_manifests(
        "broken.yaml",
        "apiVersion: switchyard.dev/v1alpha1\nkind: [ProviderPool\n",
        &[],
    );
}

#[test]
fn a_wrongly_typed_field_exits_64_naming_the_field() {
    let yaml = pool(GOOD_URL)
        + &route("support-chat", "sim", "gpt-4o-mini")
            .replace("model: gpt-4o-mini}", "model: gpt-4o-mini, weight: heavy}");
    check_manifests("routes.yaml", &yaml, &["spec.targets[0].weight"]);
}

#[test]
fn an_unknown_field_exits_64_naming_file_object_and_field() {
    let yaml = pool(GOOD_URL).replace("baseUrl:", "baseURL:");
    check_manifests(
        "pool.yaml",
        &yaml,
        &["spec.providers[0].baseURL", "ProviderPool", "main"],
    );
}

#[test]
fn a_missing_manifests_path_exits_64() {
    let (status, stderr) = run(sidecar(&[
        "--manifests",
        "/nonexistent/switchyard/manifests.yaml",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--debug-listen",
        "",
    ]));
    assert_usage_error(status, &stderr, &["/nonexistent/switchyard/manifests.yaml"]);
}

#[test]
fn unsafe_or_invalid_flag_values_exit_64() {
    let dir = manifests(
        "m.yaml",
        &(pool(GOOD_URL) + &route("r", "sim", "gpt-4o-mini")),
    );
    let m = dir.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--manifests", m, "--listen", "0.0.0.0:9400"], "--listen"),
        (
            &[
                "--manifests",
                m,
                "--listen",
                "127.0.0.1:0",
                "--debug-listen",
                "0.0.0.0:9402",
            ],
            "--debug-listen",
        ),
        (&["--listen", "127.0.0.1:0"], "--manifests"),
        (&["--manifests", m, "--pod-labels", "app"], "--pod-labels"),
        (
            &["--manifests", m, "--max-body-bytes", "0"],
            "--max-body-bytes",
        ),
    ];
    for (args, needle) in cases {
        let (status, stderr) = run(sidecar(args));
        assert_usage_error(status, &stderr, &[needle]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn flags_have_environment_twins() {
    let dir = manifests(
        "m.yaml",
        &(pool(GOOD_URL) + &route("r", "sim", "gpt-4o-mini")),
    );
    let mut command = sidecar(&[]);
    command
        .env("SWITCHYARD_MANIFESTS", &dir)
        .env("SWITCHYARD_LISTEN", "0.0.0.0:9400");

    let (status, stderr) = run(command);

    // The manifests came from the environment (no "--manifests is required"), and so did the
    // refused address.
    assert_usage_error(status, &stderr, &["--listen", "0.0.0.0:9400"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unparsable_flags_exit_64() {
    for args in [
        &["--manifests", "x.yaml", "--listen", "not-an-address"][..],
        &["--manifests", "x.yaml", "--max-body-bytes", "lots"][..],
        &["--manifests", "x.yaml", "--frobnicate"][..],
    ] {
        let (status, stderr) = run(sidecar(args));
        assert_eq!(status.code(), Some(EX_USAGE), "{args:?}: {stderr}");
    }
}

/// Three distinct free loopback ports.
fn free_ports() -> [u16; 3] {
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    [ports[0], ports[1], ports[2]]
}

async fn http(method: &str, url: &str, body: &str) -> Option<(u16, http::HeaderMap, Bytes)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .ok()?
        .ok()?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.ok()?.to_bytes();
    Some((parts.status.as_u16(), parts.headers, bytes))
}

/// Collects the child's stderr lines on a thread.
fn capture(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn the_request_lines(lines: &Mutex<Vec<String>>) -> Vec<Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect()
}

/// Sends `signal` (`TERM`, `INT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// A sidecar process serving `dir`, ready (its `/readyz` said 200).
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    data: u16,
    admin: u16,
    dir: PathBuf,
}

impl Running {
    async fn start(dir: PathBuf) -> Self {
        Self::start_with_env(dir, &[]).await
    }

    /// As [`Running::start`], with `env` set for the process.
    async fn start_with_env(dir: PathBuf, env: &[(&str, &str)]) -> Self {
        let [data, admin, debug] = free_ports();
        let mut command = sidecar(&[
            "--manifests",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{data}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--debug-listen",
            &format!("127.0.0.1:{debug}"),
        ]);
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let lines = capture(&mut child);
        let mut running = Self {
            child,
            lines,
            data,
            admin,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let readyz = format!("http://127.0.0.1:{admin}/readyz");
            if let Some((200, ..)) = http("GET", &readyz, "").await {
                return running;
            }
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!("exited early with {status}: {}", running.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "never ready: {}",
                running.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Sends `sig` and returns the exit status, or `None` if it is still running after 10 s.
    fn stop_with(&mut self, sig: &str) -> Option<ExitStatus> {
        signal(self.child.id(), sig);
        wait_bounded(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_run_serves_logs_one_json_line_and_exits_0_on_sigterm() {
    const PROMPT: &str = "purple elephants juggle quietly";
    let provider = MockProvider::start("sim").await.expect("mock");
    let dir = manifests(
        "manifests.yaml",
        &(pool(&provider.base_url()) + &route("cli-route", "sim", "gpt-4o-mini")),
    );
    let mut sidecar = Running::start(dir).await;

    let body = serde_json::json!({"model": "chat",
        "messages": [{"role": "user", "content": PROMPT}]})
    .to_string();
    let chat = format!("http://127.0.0.1:{}/v1/chat/completions", sidecar.data);
    let (status, headers, answer) = http("POST", &chat, &body)
        .await
        .expect("the data plane answers");
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(headers["x-switchyard-route"], "cli-route");
    assert_eq!(headers["x-switchyard-provider"], "main/sim");
    assert_eq!(provider.request_count(), 1);
    let seen = provider.last_request().unwrap();
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Bearer {KEY}")
    );

    // One JSON line for the request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while the_request_lines(&sidecar.lines).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no request log line: {}",
            sidecar.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged = the_request_lines(&sidecar.lines);
    assert_eq!(logged.len(), 1, "{logged:?}");
    let line = logged[0].as_object().expect("a JSON object");
    let field = |name: &str| {
        line.get(name)
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    assert_eq!(field("route"), "cli-route");
    assert_eq!(field("provider"), "main/sim");
    assert_eq!(field("model"), "chat");
    assert_eq!(field("attempts"), 1);
    assert_eq!(field("status"), 200);
    assert!(
        line.iter()
            .any(|(k, v)| k.contains("output") && k.contains("tokens") && v.as_u64() > Some(0)),
        "output tokens: {line:?}"
    );
    assert!(
        line.iter()
            .any(|(k, v)| k.contains("input") && k.contains("tokens") && v.is_u64()),
        "input tokens: {line:?}"
    );
    assert!(
        line.iter()
            .any(|(k, v)| k.contains("cost") && v.as_f64().is_some_and(|c| c > 0.0)),
        "cost: {line:?}"
    );
    assert!(
        line.iter()
            .any(|(k, v)| k.contains("latency") && v.as_f64().is_some()),
        "latency: {line:?}"
    );

    // Health and metrics are served on the admin port too.
    let admin = format!("http://127.0.0.1:{}", sidecar.admin);
    let (status, ..) = http("GET", &format!("{admin}/healthz"), "")
        .await
        .expect("healthz");
    assert_eq!(status, 200);
    let (status, _, metrics) = http("GET", &format!("{admin}/metrics"), "")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&metrics).contains("switchyard_requests_total"));

    let exit = sidecar.stop_with("TERM");
    let all = sidecar.stderr();
    assert!(!all.contains(PROMPT), "the prompt reached the log: {all}");
    assert!(
        !all.contains("purple"),
        "prompt text reached the log: {all}"
    );
    assert!(!all.contains(KEY), "the key reached the log: {all}");
    let exit = exit.unwrap_or_else(|| panic!("still running 10 s after SIGTERM: {all}"));
    assert_eq!(exit.code(), Some(0), "{all}");
}

/// A prompt template (docs/reference/templates.md): the answer's `x-switchyard-template` is in the
/// request line as `template`, and a route naming a missing template is served with a warning
/// at start naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_is_named_in_the_request_line_and_a_missing_one_is_warned() {
    let provider = MockProvider::start("sim").await.expect("mock");
    let template = "---
apiVersion: switchyard.dev/v1alpha1
kind: PromptTemplate
metadata: {name: support}
spec:
  variants: [{system: {prepend: 'You support Acme customers.'}}]
";
    let templated = route("cli-route", "sim", "gpt-4o-mini").replace(
        "  model: chat\n",
        "  model: chat\n  promptTemplate: {name: support}\n",
    );
    let dangling = route("dangling", "sim", "gpt-4o-mini").replace(
        "  model: chat\n",
        "  model: other\n  promptTemplate: {name: absent}\n",
    );
    let yaml = pool(&provider.base_url()) + &templated + &dangling + template;
    let mut sidecar = Running::start(manifests("m.yaml", &yaml)).await;

    let body = serde_json::json!({"model": "chat",
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let chat = format!("http://127.0.0.1:{}/v1/chat/completions", sidecar.data);
    let (status, headers, answer) = http("POST", &chat, &body).await.expect("answered");
    assert_eq!(status, 200, "{answer:?}");
    let label = headers["x-switchyard-template"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(label.starts_with("support@"), "{label}");
    let sent = provider.last_request().unwrap().body;
    assert_eq!(
        sent["messages"][0]["content"],
        "You support Acme customers."
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    while the_request_lines(&sidecar.lines).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no request line: {}",
            sidecar.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged = the_request_lines(&sidecar.lines);
    assert_eq!(logged[0]["template"], label.as_str(), "{logged:?}");
    let all = sidecar.stderr();
    assert!(all.contains("route served with a problem"), "{all}");
    assert!(
        all.contains("PromptTemplate default/absent not found"),
        "{all}"
    );
    assert!(
        !all.contains("Acme customers"),
        "template text reached the log: {all}"
    );
    let exit = sidecar.stop_with("TERM");
    assert_eq!(exit.and_then(|e| e.code()), Some(0), "{}", sidecar.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_also_exits_0() {
    let dir = manifests(
        "m.yaml",
        &(pool(GOOD_URL) + &route("r", "sim", "gpt-4o-mini")),
    );
    let mut sidecar = Running::start(dir).await;

    let exit = sidecar.stop_with("INT");

    let exit = exit.unwrap_or_else(|| panic!("still running after SIGINT: {}", sidecar.stderr()));
    assert_eq!(exit.code(), Some(0), "{}", sidecar.stderr());
}

/// An OpenTelemetry setting the sidecar cannot use turns export off with one warning naming the
/// variable (never a value): the data plane still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_otel_setting_warns_and_the_data_plane_still_serves() {
    let provider = MockProvider::start("sim").await.expect("mock");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://otel-secret-user@c:4317",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
        (
            &[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://otel-secret-user@bad host:4318",
            )],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ];
    for (env, variable) in cases {
        let dir = manifests(
            "m.yaml",
            &(pool(&provider.base_url()) + &route("r", "sim", "gpt-4o-mini")),
        );
        let sidecar = Running::start_with_env(dir, env).await;
        let chat = format!("http://127.0.0.1:{}/v1/chat/completions", sidecar.data);
        let body = serde_json::json!({"model": "chat",
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
        let (status, _, answer) = http("POST", &chat, &body).await.expect("answers");
        assert_eq!(status, 200, "{env:?}: {answer:?}");
        let warnings: Vec<String> = sidecar
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("OpenTelemetry export is off"))
            .cloned()
            .collect();
        assert_eq!(warnings.len(), 1, "{env:?}: {}", sidecar.stderr());
        let warning: Value = serde_json::from_str(&warnings[0]).expect("a JSON line");
        assert_eq!(warning["level"], "WARN", "{warning}");
        assert!(warnings[0].contains(variable), "{env:?}: {warning}");
        assert!(
            !sidecar.stderr().contains("otel-secret"),
            "{}",
            sidecar.stderr()
        );
    }
}

/// A request refused before the sidecar has a table (pod mode, no operator yet: 503) still joins
/// the client's trace: its span carries the client's trace id and parent span id (review
/// finding 20). The OTLP/HTTP receiver here only looks for those bytes in what it gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_for_want_of_a_table_joins_the_clients_trace() {
    use hyper::body::Incoming;
    const TRACE: [u8; 16] = *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36";
    const PARENT: [u8; 8] = *b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7";
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let traces: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let store = traces.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r: http::Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = r.uri().path().to_string();
                        let body = r.into_body().collect().await?.to_bytes();
                        if path == "/v1/traces" {
                            store.lock().unwrap().push(body);
                        }
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    // Pod mode against a config server that is not there: the sidecar never gets a table.
    let dir = manifests("token", "a-token");
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    let [data, admin, closed] = free_ports();
    let mut child = sidecar(&[
        "--config-server",
        &format!("https://127.0.0.1:{closed}"),
        "--token-file",
        dir.join("token").to_str().unwrap(),
        "--ca-file",
        dir.join("ca.pem").to_str().unwrap(),
        "--state-dir",
        dir.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{data}"),
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        "--debug-listen",
        "",
    ])
    .env(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        format!("http://{otlp}/v1/traces"),
    )
    .env("OTEL_BSP_SCHEDULE_DELAY", "100")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("the binary starts");
    let lines = capture(&mut child);
    let guard = scopeguard(child, dir);

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let request = http::Request::post(format!("http://127.0.0.1:{data}/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("traceparent", traceparent)
            .body(Full::new(Bytes::from_static(
                br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        if let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(5), client.request(request)).await
        {
            break response.status().as_u16();
        }
        assert!(
            Instant::now() < deadline,
            "the data plane never answered: {}",
            lines.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503);

    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let joined = traces
            .lock()
            .unwrap()
            .iter()
            .any(|body| contains(body, &TRACE) && contains(body, &PARENT));
        if joined {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span in the client's trace within 10 s ({} exports): {}",
            traces.lock().unwrap().len(),
            lines.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(guard);
}

/// Kills the child and removes the directory when dropped.
fn scopeguard(child: Child, dir: PathBuf) -> impl Drop {
    struct Guard(Child, PathBuf);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    Guard(child, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_reloads_edited_manifests() {
    let provider = MockProvider::start("sim").await.expect("mock");
    let base = pool(&provider.base_url()) + &route("r", "sim", "gpt-4o-mini");
    let dir = manifests("m.yaml", &base);
    let file = dir.join("m.yaml");
    let sidecar = Running::start(dir).await;
    let chat = format!("http://127.0.0.1:{}/v1/chat/completions", sidecar.data);
    let body = |model: &str| {
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
    };
    assert_eq!(http("POST", &chat, &body("late")).await.unwrap().0, 404);

    let late = route("late-route", "sim", "gpt-4o-mini").replace("model: chat", "model: late");
    std::fs::write(&file, base + &late).expect("edit the manifests");

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, headers, _) = http("POST", &chat, &body("late")).await.unwrap();
        if status == 200 {
            assert_eq!(headers["x-switchyard-route"], "late-route");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reloaded: {}",
            sidecar.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The README's first command: the demo runs the real sidecar against simulated providers and
/// shows failover, the circuit opening and closing again, streaming and a budget running out,
/// then exits 0.
#[cfg(feature = "demo")]
#[test]
fn the_demo_shows_failover_and_the_circuit_opening_and_closing() {
    for dir in [
        concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
        env!("CARGO_MANIFEST_DIR"),
    ] {
        // From the repository root it reads examples/demo; elsewhere its built-in copy.
        let mut child = sidecar(&["demo"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let status =
            wait_bounded(&mut child, Duration::from_secs(60)).expect("the demo ends by itself");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        assert!(status.success(), "{dir}: {status:?}\n{out}");
        let failed_over = out
            .lines()
            .filter(|l| l.contains("demo/steady deepseek-chat") && l.contains("  2  "))
            .count();
        assert!(
            failed_over >= 3,
            "{dir}: three requests fail over with 2 attempts:\n{out}"
        );
        assert!(
            out.contains("switchyard_circuit_open{demo/flaky, gpt-4o-mini} = 1"),
            "{dir}: the circuit opens:\n{out}"
        );
        assert!(
            out.contains("switchyard_circuit_open{demo/flaky, gpt-4o-mini} = 0"),
            "{dir}: and closes again:\n{out}"
        );
        assert!(
            out.contains("events in"),
            "{dir}: a streamed request:\n{out}"
        );
        assert!(
            out.contains("switchyard_cost_usd_total"),
            "{dir}: the totals:\n{out}"
        );
        assert!(
            out.contains("error switchyard_budget_exhausted: budget default/cheap-daily"),
            "{dir}: the budget runs out:\n{out}"
        );
        assert!(
            out.contains("switchyard_budget_refusals_total{budget=\"default/cheap-daily\"} 1"),
            "{dir}: and counts its refusal:\n{out}"
        );
        assert!(
            out.contains("x-switchyard-template: support@"),
            "{dir}: route `chat`'s prompt template:\n{out}"
        );
        // The Model scorer sends the easy prompt to steady and the proof to gpt-4o.
        let smart: Vec<&str> = out.lines().filter(|l| l.contains(" smart ")).collect();
        assert!(
            smart.len() == 3
                && smart[0].contains("demo/steady deepseek-chat")
                && smart[2].contains("demo/flaky gpt-4o "),
            "{dir}: route `smart` routes by the Model's score:\n{out}"
        );
        let scores = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("x-switchyard-complexity:"))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u8>().ok())
            .count();
        assert_eq!(scores, 3, "{dir}: each answer shows its score:\n{out}");
    }
}

/// A build without the `demo` feature (the release images) has no simulator: `demo` is refused
/// as an unexpected argument, like any other.
#[cfg(not(feature = "demo"))]
#[test]
fn without_the_demo_feature_demo_is_not_a_subcommand() {
    let (status, stderr) = run(sidecar(&["demo"]));
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("demo"), "{stderr}");
    assert!(
        !stderr.contains("try `switchyard-sidecar demo`"),
        "{stderr}"
    );
}
