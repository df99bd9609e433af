//! Upstreams: one provider endpoint's definition, HTTP client and local limits
//! ([`UpstreamRt`]), and each (pool, provider, model) target's health ([`TargetRt`]). This state
//! outlives table swaps, so that a reload forgets neither an open circuit nor pooled connections.
//!
//! [`health`] is the circuit breaker and latency average, [`limits`] the per-sidecar concurrency,
//! request and token limits, [`tokens`] the prompt token estimate rules and limits use.

pub mod aws_sts;
pub mod credentials;
pub mod gcp_oauth;
pub mod health;
pub mod limits;
pub mod token_exchange;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use switchyard_crds::table::{Target, Upstream};
use tokio::time::Instant;

use self::credentials::CredentialSource;
use self::health::TargetHealth;
use self::limits::UpstreamLimits;

/// How long an idle pooled connection to a provider is kept (hyper-util's default, stated here):
/// long enough that a steady client's requests reuse connections and skip the TLS handshake, not
/// so long that connections nobody uses pile up.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Idle connections kept per upstream after a burst. Enough to serve the next burst of ordinary
/// traffic without new TLS handshakes; without a bound, a burst of N streams would keep N idle
/// TLS connections (tens of KiB each) for the whole idle timeout.
const MAX_IDLE_PER_UPSTREAM: usize = 128;

/// The client used for one upstream.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A target with its upstream and health.
#[derive(Clone)]
pub struct TargetRt {
    pub target: Target,
    pub upstream: Arc<UpstreamRt>,
    pub health: Arc<TargetHealth>,
    /// Budgets whose `providers` name this target's upstream, for this route: an exhausted one
    /// makes the target ineligible.
    pub budgets: Arc<[Arc<crate::budget::BudgetRt>]>,
}

/// An upstream's definition, client and limits. Reused across swaps while its definition is
/// unchanged, so pooled connections and limit state survive reloads.
pub struct UpstreamRt {
    pub def: Upstream,
    /// `pool/provider`.
    pub id: String,
    pub client: HttpClient,
    pub limits: UpstreamLimits,
    /// Signing keys or access tokens, for APIs that need more than a static key.
    pub credentials: Option<Arc<dyn CredentialSource>>,
    /// What every request to this upstream carries, made once (see [`Prepared`]).
    pub prepared: Prepared,
}

/// Parts of a request to one upstream that are the same for every request, made when the
/// upstream is: formatting and parsing them for each request was about 4 % of a chat request's
/// instructions (bench/RESULTS.md, issue 15). Each is `None` when it cannot be made, and the
/// request then makes it itself, with the error it gives.
#[derive(Default)]
pub struct Prepared {
    /// `base_url`'s authority and the `Host` header for it, as hyper-util would write it (the
    /// port only when it is not the scheme's default).
    pub host: Option<(http::uri::Authority, http::HeaderValue)>,
    /// The protocol's chat endpoint (OpenAI's `{baseUrl}/chat/completions`, Anthropic's
    /// `{baseUrl}/v1/messages`).
    pub chat_uri: Option<http::Uri>,
    /// The protocol's header value for the API key (OpenAI's `Authorization: Bearer` value,
    /// Anthropic's `x-api-key`), marked sensitive.
    pub authorization: Option<http::HeaderValue>,
}

impl Prepared {
    fn new(def: &Upstream) -> Self {
        let mut prepared = crate::providers::for_api(def.api)
            .map(|provider| provider.prepare(def))
            .unwrap_or_default();
        prepared.host = host_header(&def.base_url);
        prepared
    }
}

/// The `Host` header hyper-util sets for a request to `base_url`: the host, and the port when
/// it is not the scheme's default.
fn host_header(base_url: &str) -> Option<(http::uri::Authority, http::HeaderValue)> {
    let uri: http::Uri = base_url.parse().ok()?;
    let authority = uri.authority()?.clone();
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return None,
    };
    let host = match authority.port_u16() {
        Some(port) if port != default_port => {
            http::HeaderValue::from_str(&format!("{}:{port}", authority.host()))
        }
        _ => http::HeaderValue::from_str(authority.host()),
    };
    Some((authority, host.ok()?))
}

impl TargetRt {
    /// Accounts a failed attempt: the keys are scrubbed from what the error could show (a
    /// provider may echo them back) and the breaker counts the failure. Returns the scrubbed error.
    pub fn fail(&self, error: crate::failure::AttemptError) -> crate::failure::AttemptError {
        let error = self
            .upstream
            .def
            .secrets()
            .fold(error, |error, secret| error.redact(secret.expose()));
        self.health
            .record_failure(&error, &self.upstream.def.breaker, Instant::now());
        error
    }
}

impl UpstreamRt {
    /// A fresh client and limits for `def`.
    pub fn new(def: Upstream) -> Self {
        Self {
            id: def.id(),
            client: build_client(&def),
            limits: UpstreamLimits::new(&def.limits, Instant::now()),
            credentials: credentials::for_upstream(&def),
            prepared: Prepared::new(&def),
            def,
        }
    }
}

/// A pooled HTTP/1.1 and HTTP/2 (by ALPN) client for one upstream, with its connect timeout.
fn build_client(def: &Upstream) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(def.timeouts.connect)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(MAX_IDLE_PER_UPSTREAM)
        .build(https)
}

#[cfg(test)]
mod tests {
    use super::host_header;

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_schemes_default() {
        let host = |url: &str| host_header(url).map(|(_, value)| value);
        assert_eq!(host("http://127.0.0.1:8080/v1").unwrap(), "127.0.0.1:8080");
        assert_eq!(host("https://api.openai.com/v1").unwrap(), "api.openai.com");
        assert_eq!(
            host("https://api.example.com:443").unwrap(),
            "api.example.com"
        );
        assert_eq!(host("http://example.com:80/x").unwrap(), "example.com");
        assert_eq!(
            host("https://example.com:8443").unwrap(),
            "example.com:8443"
        );
        assert_eq!(host("http://[::1]:9000/v1").unwrap(), "[::1]:9000");
        assert!(host("not a url").is_none());
        let (authority, _) = host_header("http://127.0.0.1:8080/v1").unwrap();
        assert_eq!(authority, "127.0.0.1:8080");
    }
}
