//! Pod mode: the subscription to the operator's config server (docs/reference/sidecar.md#pod-mode).
//!
//! One long-poll at a time, `GET /v1/config?wait=30s` with `If-None-Match: "<version>"` once a
//! table is served: `200` brings a table, which is checked (known schema, version = content hash)
//! before [`Runtime::swap`] and [`persist::save`]; `304` polls again at once. Anything else backs
//! off exponentially from 1 s to 30 s with full jitter, and the current table keeps serving.
//!
//! Rotation is why the files are read for every request: the token (the kubelet rotates it) and
//! the CA bundle. The HTTPS client, whose pooled connection is kept between polls, is rebuilt
//! only when the bundle's bytes change: a fresh TLS handshake per poll would make a table change
//! cost the operator a thousand handshakes at once (bench/RESULTS.md, config propagation).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use switchyard_crds::table::{RouteTable, SCHEMA_VERSION};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::PodConfig;
use super::persist;
use crate::Error;
use crate::table::Runtime;

/// How long the operator may hold a long-poll.
pub const LONG_POLL_WAIT: Duration = Duration::from_secs(30);
/// Slack on top of the wait for the operator's jitter (up to 10%) and the network.
const REQUEST_SLACK: Duration = Duration::from_secs(15);
/// First and largest backoff.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The largest answer read; a table is far smaller.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The sidecar's version, sent so the operator can tell old sidecars apart.
pub const SIDECAR_VERSION_HEADER: &str = "x-switchyard-sidecar-version";
/// The highest table schema this sidecar reads.
pub const TABLE_SCHEMA_HEADER: &str = "x-switchyard-table-schema";

/// Talks to the config server: TLS trusting only the CA bundle, and the pod's token.
#[derive(Clone)]
pub struct ConfigClient {
    url: String,
    token_file: std::path::PathBuf,
    ca_file: std::path::PathBuf,
    /// The client built for the bundle bytes it trusts, shared by clones (polls and reports).
    cached: Arc<Mutex<Option<TrustedClient>>>,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
/// A client and the CA bundle bytes it trusts.
type TrustedClient = (Vec<u8>, HttpsClient);

/// A config server answer.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// The operator's clock, from its `Date` header (whole seconds), when it sent one.
    pub date: Option<std::time::SystemTime>,
}

// === impl ConfigClient ===

impl ConfigClient {
    /// A client for `pod`'s config server.
    pub fn new(pod: &PodConfig) -> Self {
        Self {
            url: pod.url.clone(),
            token_file: pod.token_file.clone(),
            ca_file: pod.ca_file.clone(),
            cached: Arc::default(),
        }
    }

    /// The client for the CA bundle as it is on disk now: the cached one while the bytes are
    /// unchanged, a new one (new connections, new trust) once they change.
    fn client(&self) -> crate::Result<HttpsClient> {
        let pem = std::fs::read(&self.ca_file).map_err(|source| Error::CaBundle {
            path: self.ca_file.clone(),
            source,
        })?;
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((trusted, client)) = cached.as_ref()
            && *trusted == pem
        {
            return Ok(client.clone());
        }
        let client = https_client(&pem, &self.ca_file)?;
        *cached = Some((pem, client.clone()));
        Ok(client)
    }

    /// Sends one request to `path_and_query` and reads the whole answer within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        extra: &[(header::HeaderName, String)],
        body: Bytes,
        timeout: Duration,
    ) -> crate::Result<Answer> {
        let client = self.client()?;
        let token = read_token(&self.token_file)?;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.url))
            .header(SIDECAR_VERSION_HEADER, env!("CARGO_PKG_VERSION"))
            .header(TABLE_SCHEMA_HEADER, SCHEMA_VERSION.to_string());
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            // NB: never the token itself in the message.
            Error::TokenFile {
                path: self.token_file.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the token is not a valid header value",
                ),
            }
        })?;
        auth.set_sensitive(true);
        request = request.header(header::AUTHORIZATION, auth);
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in extra {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| Error::ConfigServerUnreachable(Box::new(e)))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| Error::ConfigServerUnreachable(Box::new(e)))?;
            let status = response.status();
            let date = response
                .headers()
                .get(http::header::DATE)
                .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(Error::ConfigServerUnreachable)?
                .to_bytes();
            Ok(Answer { status, body, date })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::ConfigServerTimeout(timeout))?
    }
}

/// The projected token, trimmed (kubelet writes it without a newline, people with one).
fn read_token(path: &Path) -> crate::Result<String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|source| Error::TokenFile {
            path: path.to_path_buf(),
            source,
        })
}

/// A client that trusts only the certificates in `pem`, the contents of `ca_file`.
fn https_client(pem: &[u8], ca_file: &Path) -> crate::Result<HttpsClient> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::CaBundle {
            path: ca_file.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        // A bundle may carry certificates rustls cannot use as anchors; the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(Error::NoCaCertificates {
            path: ca_file.to_path_buf(),
        });
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    // One connection is kept between polls; it lives longer than the operator's longest wait.
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(LONG_POLL_WAIT * 3)
        .build(https))
}

/// Exponential backoff with full jitter: the n-th delay is uniform in [0, min(max, min·2ⁿ)].
/// `backon` yields the caps (jitter off: its jitter adds to a delay instead of spreading it
/// over [0, cap]); full jitter is applied on top, so that sidecars restarted together spread out.
#[derive(Debug)]
pub struct Backoff {
    caps: ExponentialBackoff,
    builder: ExponentialBuilder,
    next_cap: Duration,
}

// === impl Backoff ===

impl Backoff {
    /// From 1 s to 30 s.
    pub fn new() -> Self {
        Self::with_bounds(BACKOFF_MIN, BACKOFF_MAX)
    }

    /// Custom bounds.
    pub fn with_bounds(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        let mut caps = builder.build();
        let next_cap = caps.next().unwrap_or(max);
        Self {
            caps,
            builder,
            next_cap,
        }
    }

    /// The cap of the next delay.
    pub fn cap(&self) -> Duration {
        self.next_cap
    }

    /// The next delay, and one step further out.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.next_cap;
        self.next_cap = self.caps.next().unwrap_or(cap);
        cap.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.caps = self.builder.build();
        self.next_cap = self.caps.next().unwrap_or_default();
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// What one poll brought: a table already checked, or nothing new.
enum Polled {
    Table(Box<RouteTable>),
    Unchanged,
}

/// Subscribes until `shutdown`, swapping in every good table.
pub fn spawn(
    pod: PodConfig,
    runtime: Arc<Runtime>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = ConfigClient::new(&pod);
        let mut backoff = Backoff::new();
        loop {
            let current = runtime.snapshot().map(|s| s.table.version.clone());
            let outcome = tokio::select! {
                outcome = poll(&client, current.as_deref()) => outcome,
                _ = shutdown.changed() => break,
            };
            let failed = match outcome {
                Ok(Polled::Unchanged) => false,
                // The same version again (a replica that answered at once): nothing to swap,
                // but the channel is healthy again.
                Ok(Polled::Table(table)) if current.as_deref() == Some(table.version.as_str()) => {
                    runtime.clear_error();
                    false
                }
                Ok(Polled::Table(table)) => {
                    apply(*table, &pod, &runtime);
                    false
                }
                Err(
                    e @ (Error::TableRefused(_) | Error::ConfigServerStatus { status: 409, .. }),
                ) => {
                    // A table we cannot use (or, with 409, none in a schema we read): say so
                    // where people look (log, metric, /readyz), as a bad standalone reload does.
                    tracing::error!(error = %e, "refused a route table; still serving the previous one");
                    runtime.reject(e.to_string());
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "config poll failed; still serving the current table");
                    true
                }
            };
            if failed {
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => break,
                }
            } else {
                backoff.reset();
            }
        }
    })
}

/// One long-poll.
async fn poll(client: &ConfigClient, current: Option<&str>) -> crate::Result<Polled> {
    let wait = switchyard_crds::duration::format(LONG_POLL_WAIT);
    let extra: Vec<_> = current
        .map(|v| (header::IF_NONE_MATCH, format!("\"{v}\"")))
        .into_iter()
        .collect();
    let answer = client
        .send(
            Method::GET,
            &format!("/v1/config?wait={wait}"),
            &extra,
            Bytes::new(),
            LONG_POLL_WAIT + REQUEST_SLACK,
        )
        .await?;
    match answer.status {
        StatusCode::OK => {
            // NB: serde's message may quote the body, which holds keys: position only.
            let table: RouteTable = serde_json::from_slice(&answer.body).map_err(|e| {
                Error::TableRefused(format!(
                    "not a route table (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            check(&table)?;
            Ok(Polled::Table(Box::new(table)))
        }
        StatusCode::NOT_MODIFIED => Ok(Polled::Unchanged),
        status => Err(Error::ConfigServerStatus {
            status: status.as_u16(),
            message: status_message(&answer.body),
        }),
    }
}

/// The first line of an error answer, short: enough to say why, never a whole page.
pub fn status_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or_default().trim();
    line.chars().take(200).collect()
}

/// Whether this sidecar may serve `table`.
fn check(table: &RouteTable) -> crate::Result<()> {
    if table.schema_version != SCHEMA_VERSION {
        return Err(Error::TableRefused(format!(
            "schema version {} is not {SCHEMA_VERSION}, the one this sidecar reads",
            table.schema_version
        )));
    }
    let hash = table.content_hash();
    if hash != table.version {
        return Err(Error::TableRefused(format!(
            "version {:?} is not the content hash {hash}",
            table.version
        )));
    }
    Ok(())
}

/// Serves `table` and keeps it as the last known good one.
fn apply(table: RouteTable, pod: &PodConfig, runtime: &Runtime) {
    tracing::info!(version = %table.version, routes = table.routes.len(), generated_by = %table.generated_by, "route table from the operator");
    // Persist before serving so that a restart never finds an older table than the one served;
    // the state dir is a small in-memory emptyDir, so this costs next to nothing.
    if let Err(e) = persist::save(&pod.state_dir, &table) {
        tracing::warn!(error = %e, "cannot persist the route table; serving it anyway");
    }
    runtime.swap(table);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_caps_double_from_one_to_thirty_seconds() {
        let mut b = Backoff::new();
        let caps: Vec<u64> = (0..8)
            .map(|_| {
                let cap = b.cap();
                let delay = b.next_delay();
                assert!(delay <= cap, "{delay:?} > {cap:?}");
                cap.as_secs()
            })
            .collect();
        assert_eq!(caps, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.cap(), Duration::from_secs(1));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.cap(), Duration::from_secs(30), "no overflow");
    }

    #[test]
    fn backoff_jitter_is_full() {
        // Full jitter spreads delays over the whole [0, cap]: some land in each half.
        let delays: Vec<Duration> = (0..200)
            .map(|_| {
                Backoff::with_bounds(Duration::from_secs(30), Duration::from_secs(30)).next_delay()
            })
            .collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(15)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(15)));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn backoff_sleeps_stay_within_bounds() {
        let mut b = Backoff::new();
        let start = tokio::time::Instant::now();
        let mut total_cap = Duration::ZERO;
        for _ in 0..10 {
            total_cap += b.cap();
            tokio::time::sleep(b.next_delay()).await;
        }
        let slept = start.elapsed();
        assert!(slept <= total_cap, "{slept:?} > {total_cap:?}");
        assert_eq!(total_cap, Duration::from_secs(1 + 2 + 4 + 8 + 16 + 30 * 5));
    }

    #[test]
    fn tables_of_unknown_schema_or_wrong_version_are_refused() {
        let good = RouteTable::new(Default::default(), Default::default(), "test");
        assert!(check(&good).is_ok());
        let mut other_schema = good.clone();
        other_schema.schema_version = SCHEMA_VERSION + 1;
        other_schema.version = other_schema.content_hash();
        assert!(
            check(&other_schema)
                .unwrap_err()
                .to_string()
                .contains("schema")
        );
        let mut wrong_version = good;
        wrong_version.version = "0000000000000000".into();
        assert!(
            check(&wrong_version)
                .unwrap_err()
                .to_string()
                .contains("content hash")
        );
    }
}
