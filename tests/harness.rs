//! Test and benchmark harness: a real sidecar, started in-process on free loopback ports from
//! YAML written to a fresh directory, and a small HTTP client to talk to it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchyard_sidecar::app::{Config, Sidecar};
use switchyard_sidecar::table::standalone::Selection;

pub use switchyard_sim::openai::{Behavior, Fault, MockProvider};

/// A plain HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new pooled client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A sidecar serving the manifests in its own directory.
pub struct Harness {
    pub sidecar: Sidecar,
    pub dir: PathBuf,
    pub client: HttpClient,
}

/// A complete answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts an OpenAI-format error with `status` and `code` whose message contains `says`;
    /// returns the message.
    #[track_caller]
    pub fn assert_openai_error(&self, status: u16, code: &str, says: &str) -> String {
        let text = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "{text}");
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().expect("an error message");
        assert!(message.contains(says), "{message:?} does not say {says:?}");
        message.to_string()
    }

    /// A header as a string (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The SSE `data:` payloads of a streamed answer, in order.
    pub fn events(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.body)
            .split("\n\n")
            .filter_map(|event| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .map(str::to_string)
            })
            .collect()
    }
}

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A fresh directory holding `manifests.yaml`.
pub fn write_manifests(yaml: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("switchyard-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("manifests.yaml"), yaml).expect("write manifests");
    dir
}

impl Harness {
    /// Starts a sidecar on `yaml` with default flags.
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, |_| {}).await
    }

    /// Starts a sidecar on `yaml`, letting the caller adjust the config.
    pub async fn start_with(yaml: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::try_start_with(yaml, adjust)
            .await
            .expect("the sidecar starts")
    }

    /// Starts a sidecar, returning the start-up error instead of panicking.
    pub async fn try_start_with(
        yaml: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Self, switchyard_sidecar::Error> {
        let dir = write_manifests(yaml);
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin_listen: "127.0.0.1:0".parse().expect("addr"),
            debug_listen: Some("127.0.0.1:0".parse().expect("addr")),
            max_body_bytes: 32 * 1024 * 1024,
            drain: switchyard_sidecar::app::DEFAULT_DRAIN,
            accept_while_draining: false,
            source: switchyard_sidecar::app::Source::Manifests {
                paths: vec![dir.clone()],
                selection: Selection::default(),
            },
        };
        adjust(&mut config);
        let sidecar = match Sidecar::start(config).await {
            Ok(sidecar) => sidecar,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(Self {
            sidecar,
            dir,
            client: client(),
        })
    }

    /// `http://127.0.0.1:PORT` of the data plane.
    pub fn base(&self) -> String {
        format!("http://{}", self.sidecar.data_addr)
    }

    /// Replaces the served manifests (the sidecar reloads them on its own).
    pub fn rewrite(&self, yaml: &str) {
        std::fs::write(self.dir.join("manifests.yaml"), yaml).expect("rewrite manifests");
    }

    /// POSTs a JSON body to the data plane.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_with(path, body, &[]).await
    }

    /// POSTs a JSON body with extra headers.
    pub async fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.send(
            Method::POST,
            &format!("{}{path}", self.base()),
            Bytes::from(body.to_string()),
            headers,
        )
        .await
    }

    /// POSTs raw bytes.
    pub async fn post_raw(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(
            Method::POST,
            &format!("{}{path}", self.base()),
            body.into(),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// GETs from any of the sidecar's listeners (`url` is absolute).
    pub async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, Bytes::new(), &[]).await
    }

    /// GETs with extra headers (`url` is absolute).
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, Bytes::new(), headers).await
    }

    /// `http://127.0.0.1:PORT{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sidecar.admin_addr)
    }

    /// `http://127.0.0.1:PORT{path}` on the debug listener.
    pub fn debug_url(&self, path: &str) -> String {
        let addr = self
            .sidecar
            .debug_addr
            .expect("the debug listener is enabled");
        format!("http://{addr}{path}")
    }

    /// POSTs a chat request for `model` with one user message.
    pub async fn chat(&self, model: &str, text: &str) -> Reply {
        self.post("/v1/chat/completions", &chat(model, text)).await
    }

    /// Like [`Harness::metric`], but 0 for a series that does not exist (yet).
    pub async fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric(name, labels).await.unwrap_or(0.0)
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let reply = self
            .get(&format!("http://{}/metrics", self.sidecar.admin_addr))
            .await;
        String::from_utf8_lossy(&reply.body).into_owned()
    }

    /// One sample's value from `/metrics`: `series` is the exact name and label set as the text
    /// format prints it, e.g. `switchyard_requests_total{model="m",outcome="Success",...}`;
    /// labels are matched as a set, whatever their order.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(url);
        let mut has_type = false;
        for (name, value) in headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            request = request.header(*name, *value);
        }
        if !has_type && !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let response = self
            .client
            .request(request.body(Full::new(body)).expect("request"))
            .await
            .expect("the sidecar answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the body arrives").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Stops a harness shared with tasks that have all finished (panics if one still holds it).
    pub async fn stop_shared(this: std::sync::Arc<Self>) {
        std::sync::Arc::into_inner(this)
            .expect("every task sharing the harness has finished")
            .stop()
            .await;
    }

    /// Stops the sidecar and removes its directory.
    pub async fn stop(self) {
        self.sidecar.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A ProviderPool named `pool` with one OpenAI-API provider per `(name, base_url, model)`, each
/// with a key from Secret `keys`, plus that Secret. `extra` is appended to every provider (YAML
/// keys at provider indentation, e.g. `"timeouts: {total: 1s}"`).
pub fn pool(providers: &[(&str, &str, &str)], extra: &str, breaker: &str) -> String {
    let mut yaml = String::from(
        "apiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {name: pool}\nspec:\n  providers:\n",
    );
    for (name, url, model) in providers {
        yaml.push_str(&format!(
            "    - name: {name}\n      api: OpenAI\n      baseUrl: {url}\n      apiKey: {{secretKeyRef: {{name: keys, key: {name}}}}}\n      models:\n        - {{name: {model}, inputPerMillion: \"1.00\", cachedInputPerMillion: \"0.50\", outputPerMillion: \"2.00\", contextWindow: 1000}}\n"
        ));
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            yaml.push_str(&format!("      {line}\n"));
        }
    }
    if !breaker.is_empty() {
        yaml.push_str(&format!("  circuitBreaker: {breaker}\n"));
    }
    yaml.push_str("---\napiVersion: v1\nkind: Secret\nmetadata: {name: keys}\nstringData:\n");
    for (name, _, _) in providers {
        yaml.push_str(&format!("  {name}: sk-{name}-secret\n"));
    }
    yaml
}

/// A chat request body for `model` with one user message.
pub fn chat(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// A ModelRoute named `name` serving `model` from pool `pool` with one target per
/// `(provider, upstream model)`. `extra` is appended to the spec (YAML keys at spec indentation,
/// e.g. `"strategy: Weighted"` or `"failover: {maxAttempts: 1}"`).
pub fn route(name: &str, model: &str, targets: &[(&str, &str)], extra: &str) -> String {
    let mut yaml = format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}}}\nspec:\n  model: {model}\n  targets:\n"
    );
    for (provider, upstream_model) in targets {
        yaml.push_str(&format!(
            "    - {{pool: pool, provider: {provider}, model: {upstream_model}}}\n"
        ));
    }
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str(&format!("  {line}\n"));
    }
    yaml
}

/// One provider of [`pool_of`], with its own prices and context window.
#[derive(Clone, Debug)]
pub struct ProviderDef<'a> {
    /// The provider's name in the pool; its key is `sk-{name}-secret`.
    pub name: &'a str,
    /// `baseUrl`, e.g. [`MockProvider::base_url`].
    pub url: &'a str,
    /// The one model it serves.
    pub model: &'a str,
    /// USD per million input tokens, e.g. `"1.00"`.
    pub input: &'a str,
    /// USD per million output tokens.
    pub output: &'a str,
    /// `contextWindow` in tokens.
    pub context_window: u32,
    /// YAML keys at provider indentation, as for [`pool`].
    pub extra: &'a str,
}

impl<'a> ProviderDef<'a> {
    /// A provider priced 1.00/2.00 with a 1000-token window, like [`pool`]'s.
    pub fn new(name: &'a str, url: &'a str, model: &'a str) -> Self {
        Self {
            name,
            url,
            model,
            input: "1.00",
            output: "2.00",
            context_window: 1000,
            extra: "",
        }
    }
}

/// A ProviderPool named `name` whose providers each have their own prices and context window,
/// plus Secret `{name}-keys` holding key `sk-{provider}-secret` for each.
pub fn pool_of(name: &str, providers: &[ProviderDef<'_>], breaker: &str) -> String {
    let mut yaml = format!(
        "---\napiVersion: switchyard.dev/v1alpha1\nkind: ProviderPool\nmetadata: {{name: {name}}}\nspec:\n  providers:\n"
    );
    for p in providers {
        yaml.push_str(&format!(
            "    - name: {}\n      api: OpenAI\n      baseUrl: {}\n      apiKey: {{secretKeyRef: {{name: {name}-keys, key: {}}}}}\n      models:\n        - {{name: {}, inputPerMillion: \"{}\", outputPerMillion: \"{}\", contextWindow: {}}}\n",
            p.name, p.url, p.name, p.model, p.input, p.output, p.context_window
        ));
        for line in p.extra.lines().filter(|l| !l.trim().is_empty()) {
            yaml.push_str(&format!("      {line}\n"));
        }
    }
    if !breaker.is_empty() {
        yaml.push_str(&format!("  circuitBreaker: {breaker}\n"));
    }
    yaml.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-keys}}\nstringData:\n"
    ));
    for p in providers {
        yaml.push_str(&format!("  {}: sk-{}-secret\n", p.name, p.name));
    }
    yaml
}

/// A base URL on a loopback port where nothing listens, so connecting is refused.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("bound").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}

/// Polls `check` every 25 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
