//! The serving state: the current route table, resolved for the request path, and everything
//! that must outlive a table swap (circuit breakers, limits, pooled connections, metrics).
//!
//! Tables arrive whole and are swapped atomically ([`Runtime::swap`]); in-flight requests finish
//! on the snapshot they started with. Standalone files and (later) the operator feed the same
//! swap, so the data plane cannot tell where a table came from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use switchyard_crds::table::{Route, RouteTable, Rule, Target, Upstream};
use tokio::time::Instant;

use crate::cache::ResponseCache;
use crate::health::TargetHealth;
use crate::limits::UpstreamLimits;
use crate::metrics::Metrics;

/// The client used for one upstream.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Everything the sidecar serves from, shared by every connection.
pub struct Runtime {
    snapshot: ArcSwapOption<Snapshot>,
    /// Health by (`pool/provider`, model), kept across swaps.
    health: Mutex<HashMap<(String, String), Arc<TargetHealth>>>,
    ready: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Signalled after every swap (a stored permit when nobody waits), so that pod mode reports
    /// the new version at once and route status shows the sidecar in sync.
    swapped: tokio::sync::Notify,
    pub metrics: Metrics,
}

/// One table, resolved for fast lookups.
pub struct Snapshot {
    pub table: RouteTable,
    pub routes: HashMap<String, Arc<RouteRt>>,
}

/// A route with its targets resolved to live upstreams and health.
pub struct RouteRt {
    pub route: Route,
    /// The route's response cache, kept across swaps while the route is unchanged.
    pub cache: Option<Arc<ResponseCache>>,
    pub targets: Vec<TargetRt>,
    pub rules: Vec<(Rule, Vec<TargetRt>)>,
}

/// A target with its upstream and health.
#[derive(Clone)]
pub struct TargetRt {
    pub target: Target,
    pub upstream: Arc<UpstreamRt>,
    pub health: Arc<TargetHealth>,
}

/// An upstream's definition, client and limits. Reused across swaps while its definition is
/// unchanged, so pooled connections and limit state survive reloads.
pub struct UpstreamRt {
    pub def: Upstream,
    /// `pool/provider`.
    pub id: String,
    pub client: HttpClient,
    pub limits: UpstreamLimits,
}

impl Runtime {
    /// An empty runtime: no table yet, so the data plane answers 503.
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwapOption::empty(),
            health: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            last_error: Mutex::new(None),
            swapped: tokio::sync::Notify::new(),
            metrics,
        })
    }

    /// The snapshot to serve a request from, if a table has been loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// True once a table has been loaded; never goes back (a later bad table keeps the old one).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Why the last table load failed, when it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets a failed load, once the files are good again.
    pub fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records a refused table: the previous one keeps serving.
    pub fn reject(&self, why: String) {
        self.metrics.config_reload_failures.inc();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Serves `table` from now on.
    pub fn swap(&self, table: RouteTable) {
        let previous = self.snapshot();
        let mut upstreams: HashMap<&str, Arc<UpstreamRt>> = HashMap::new();
        for (id, def) in &table.upstreams {
            let reused = previous
                .as_ref()
                .and_then(|s| {
                    s.routes
                        .values()
                        .flat_map(|r| all_targets(r))
                        .find(|t| t.upstream.id == *id)
                })
                .map(|t| t.upstream.clone())
                .filter(|u| u.def == *def);
            let upstream = reused.unwrap_or_else(|| Arc::new(UpstreamRt::new(def.clone())));
            upstreams.insert(id, upstream);
        }

        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut used = std::collections::HashSet::new();
        let mut resolve = |targets: &[Target]| -> Vec<TargetRt> {
            targets
                .iter()
                .filter_map(|t| {
                    let upstream = upstreams.get(t.upstream.as_str())?.clone();
                    let key = (t.upstream.clone(), t.model.clone());
                    used.insert(key.clone());
                    let health = health
                        .entry(key)
                        .or_insert_with(|| {
                            TargetHealth::new(
                                self.metrics
                                    .circuit_open
                                    .with_label_values(&[&t.upstream, &t.model]),
                            )
                        })
                        .clone();
                    Some(TargetRt {
                        target: t.clone(),
                        upstream,
                        health,
                    })
                })
                .collect()
        };
        let routes = table
            .routes
            .iter()
            .map(|(model, route)| {
                let targets = resolve(&route.targets);
                let rules = route
                    .rules
                    .iter()
                    .map(|r| (r.clone(), resolve(&r.targets)))
                    .collect();
                let kept = previous
                    .as_ref()
                    .and_then(|s| s.routes.get(model))
                    .filter(|r| r.route == *route)
                    .and_then(|r| r.cache.clone());
                let cache = kept.or_else(|| {
                    route
                        .cache
                        .as_ref()
                        .map(|p| Arc::new(ResponseCache::new(p)))
                });
                (
                    model.clone(),
                    Arc::new(RouteRt {
                        route: route.clone(),
                        cache,
                        targets,
                        rules,
                    }),
                )
            })
            .collect();
        // Forget targets that left the table, and their gauge series.
        health.retain(|key, _| {
            let keep = used.contains(key);
            if !keep {
                let _ = self
                    .metrics
                    .circuit_open
                    .remove_label_values(&[&key.0, &key.1]);
            }
            keep
        });
        drop(health);

        // Build the tokenizer off the request path before the first request that needs it.
        let needs_tokens = table.routes.values().any(|r| {
            r.strategy == switchyard_crds::v1alpha1::Strategy::LowestCost
                || r.rules.iter().any(|rule| rule.min_prompt_tokens.is_some())
        });
        if needs_tokens && let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(crate::tokens::warm);
        }
        self.metrics.set_config_version(&table.version);
        self.snapshot
            .store(Some(Arc::new(Snapshot { table, routes })));
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.ready.store(true, Ordering::Release);
        self.swapped.notify_one();
    }

    /// Completes after the next [`Runtime::swap`] (at once if one happened since the last wait).
    pub async fn swapped(&self) {
        self.swapped.notified().await;
    }
}

impl TargetRt {
    /// Accounts a failed attempt: the key is scrubbed from what the error could show (a provider
    /// may echo it back) and the breaker counts the failure. Returns the scrubbed error.
    pub fn fail(&self, error: crate::failure::AttemptError) -> crate::failure::AttemptError {
        let error = match &self.upstream.def.api_key {
            Some(key) => error.redact(key.expose()),
            None => error,
        };
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
            def,
        }
    }
}

fn all_targets(route: &RouteRt) -> impl Iterator<Item = &TargetRt> {
    route
        .targets
        .iter()
        .chain(route.rules.iter().flat_map(|(_, t)| t))
}

/// Idle connections kept per upstream after a burst. Enough to serve the next burst of ordinary
/// traffic without new TLS handshakes; without a bound, a burst of N streams would keep N idle
/// TLS connections (tens of KiB each) for the whole idle timeout.
const MAX_IDLE_PER_UPSTREAM: usize = 128;

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
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(MAX_IDLE_PER_UPSTREAM)
        .build(https)
}
