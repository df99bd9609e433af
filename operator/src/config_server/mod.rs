//! The config server sidecars talk to (docs/reference/operator.md), HTTPS on `--config-listen`:
//!
//! - `GET /v1/config`: the calling pod's route table. With a known version (`If-None-Match:
//!   "<version>"`, or `?version=`) it long-polls up to `?wait=` (Gateway API duration, default
//!   30s, capped at 60s, plus up to 10% jitter) and answers 304 if nothing changed, or 200 the
//!   moment the pod's table differs. Without a version it answers 200 at once.
//! - `POST /v1/report`: cumulative counters, aggregated by [`reports::ReportAggregator`], and
//!   route counters attributed to the pod's workload ([`spend`]). When
//!   the pod's table holds budgets, the answer is 200 with the sidecar's leases
//!   ([`leases::LeaseBook`], docs/reference/operator.md#leases); otherwise 204.
//!
//! Decisions the design leaves open:
//! - A pod no route selects gets 200 with an empty table, so its sidecar becomes ready.
//! - A missing `X-Switchyard-Table-Schema` means "the current schema"; an unparsable one is 400.
//! - A `wait` above 60s is capped, not refused; an unparsable one is 400.
//! - A failed TokenReview (apiserver unreachable) is 503, so sidecars back off and retry.
//! - A replica that loses leadership answers its waiting long-polls 503 at once.
//! - Reports answer 204 (200 with leases for a table with budgets); bodies over 1 MiB are 413.
//!
//! Every error is JSON: `{"error": "<message>"}`.

pub mod auth;
pub mod leases;
pub mod reports;
pub mod spend;
pub mod tables;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use switchyard_crds::report::{Report, ReportAnswer};
use switchyard_crds::table::{RouteTable, SCHEMA_VERSION, Workload};
use switchyard_crds::v1alpha1::WorkloadSpend;
use switchyard_crds::window::{Timestamp, Window};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use self::auth::{Authenticator, Rejection};
use self::leases::{HolderKey, LeaseBook, LimitTotals};
use self::reports::{ReportAggregator, RouteKey, RouteStats, WindowKey, WindowStats};
use self::spend::WorkloadSeries;
use self::tables::Tables;
use crate::leader::Leadership;
use crate::listener::{self, Limits};
use crate::metrics::{ConfigMetrics, LongPollGuard};

/// The header in which sidecars name the highest table schema they support.
pub const TABLE_SCHEMA_HEADER: &str = "x-switchyard-table-schema";
/// The oldest table schema this operator can serve. Sidecars are promised the current and the
/// previous one, but schema 1 is the first: there is no previous yet.
/// TODO(operator): when `SCHEMA_VERSION` becomes 2, set this to 1 and downgrade tables for
/// sidecars that only know 1.
pub const OLDEST_SERVED_SCHEMA: u32 = SCHEMA_VERSION;
/// Long-poll length when the sidecar does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest long-poll, before jitter.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Bound on cached serialized tables.
const MAX_ENCODED_TABLES: usize = 4096;
/// The largest report body accepted.
const MAX_REPORT_BYTES: usize = 1 << 20;

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// Everything the handlers share.
pub struct ConfigServer {
    tables: Tables,
    auth: Authenticator,
    reports: Mutex<Reports>,
    leases: Mutex<Leases>,
    metrics: ConfigMetrics,
    /// Serialized tables by (version, generatedBy), so that a publish waking a thousand pods of
    /// one audience encodes their table once.
    encoded: Mutex<HashMap<(String, String), Bytes>>,
    /// In a cluster only the leader serves (the config Service selects it); a request that
    /// reaches a follower during a failover gets 503 and the sidecar backs off.
    leadership: Leadership,
    /// Set on shutdown: waiting long-polls answer at once and new requests get 503, so sidecars
    /// move to the next leader instead of waiting out their poll.
    draining: watch::Sender<bool>,
    /// Signalled when a report carries a new table version, so the controller recounts
    /// `sidecars.inSync` at once instead of at its next resync.
    versions_reported: Arc<Notify>,
}

/// What reports taught this replica in the current term.
struct Reports {
    aggregator: ReportAggregator,
    /// The `switchyard_workload_*` counters.
    spend: WorkloadSeries,
    /// A handle of its own on leadership, to notice a new term: a replica that leads again
    /// would otherwise take a sidecar's first report of the term as a delta from its report of
    /// the last term, counting again what it reported to another leader meanwhile; so both
    /// start afresh, and every instance's first report is a baseline.
    leadership: Leadership,
}

/// The lease book of the current term.
struct Leases {
    book: LeaseBook,
    /// A handle of its own on leadership, to notice a new term: a replica that leads again
    /// cannot know what another leader granted meanwhile, so its book starts afresh (learning).
    leadership: Leadership,
    /// The workload of each holder as of its latest report: kept here, not looked up in the
    /// snapshot, because a holder's use stays in its window after its pod is gone.
    workloads: HashMap<HolderKey, Workload>,
}

/// The biggest spenders of one budget limit's window, by (budget `namespace/name`, limit index).
pub type TopWorkloads = HashMap<(String, u32), (Window, Vec<WorkloadSpend>)>;

/// What `GET /v1/config` was asked, parsed from headers and query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigQuery {
    /// The version the sidecar has, if any.
    pub known_version: Option<String>,
    /// How long to wait for a change, capped and before jitter.
    pub wait: Duration,
    /// The schema to serve.
    pub schema: u32,
}

/// What a `GET /v1/config` brings, taken from its request before the request is dropped.
struct ConfigRequest {
    authorization: Option<HeaderValue>,
    /// Parsed at once; an error is answered only after the caller is authenticated.
    query: Result<ConfigQuery, Box<Response<Body>>>,
}

/// Where [`ConfigServer::handle`] sends a request.
enum Route<B> {
    /// Answered without waiting (boxed: rare, and the route's size is kept by every poll).
    Answer(Box<Response<Body>>),
    Config(ConfigRequest),
    Report(Box<Request<B>>),
}

// === impl ConfigServer ===

impl ConfigServer {
    /// A server answering from `tables`, reviewing tokens with `client` (without one, every
    /// request is answered 503).
    pub fn new(tables: Tables, client: Option<kube::Client>, metrics: ConfigMetrics) -> Arc<Self> {
        Self::with_leadership(tables, client, metrics, Leadership::always())
    }

    /// A server that answers only while `leadership` says this replica leads.
    pub fn with_leadership(
        tables: Tables,
        client: Option<kube::Client>,
        metrics: ConfigMetrics,
        leadership: Leadership,
    ) -> Arc<Self> {
        Arc::new(Self {
            tables,
            auth: Authenticator::new(client, metrics.clone()),
            reports: Mutex::new(Reports {
                aggregator: ReportAggregator::new(Instant::now(), Timestamp::now()),
                spend: WorkloadSeries::new(metrics.workload.clone(), Instant::now()),
                leadership: leadership.clone(),
            }),
            leases: Mutex::new(Leases {
                book: LeaseBook::new(Timestamp::now()),
                leadership: leadership.clone(),
                workloads: HashMap::new(),
            }),
            metrics,
            encoded: Mutex::new(HashMap::new()),
            leadership,
            draining: watch::channel(false).0,
            versions_reported: Arc::default(),
        })
    }

    /// Answers every waiting long-poll now (304: nothing changed) and refuses new requests, for
    /// a shutdown that does not leave sidecars hanging on a dead connection.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// The 5-minute report windows as of now; pool status will show them.
    pub fn report_windows(&self) -> std::collections::BTreeMap<WindowKey, WindowStats> {
        self.lock_reports().aggregator.summary(Instant::now())
    }

    /// The 5-minute route windows as of now, for ModelRoute status.
    pub fn route_windows(&self) -> std::collections::BTreeMap<RouteKey, RouteStats> {
        self.lock_reports().aggregator.route_summary(Instant::now())
    }

    /// The biggest spenders of every budget limit the lease book knows, for Budget status
    /// `topWorkloads`. Forgets the workloads of holders the book no longer has.
    pub fn top_workloads(&self) -> TopWorkloads {
        let mut leases = self.lock_leases();
        let holders = leases.book.holder_use();
        let live: std::collections::HashSet<&HolderKey> = holders
            .values()
            .flat_map(|(_, h)| h.iter().map(|(key, _)| key))
            .collect();
        leases.workloads.retain(|key, _| live.contains(key));
        holders
            .iter()
            .map(|(limit, (window, used))| {
                let top = spend::top_workloads(used, &leases.workloads);
                (limit.clone(), (*window, top))
            })
            .collect()
    }

    /// The fleet's use of every budget limit the lease book knows, for Budget status.
    pub fn budget_totals(&self) -> HashMap<(String, u32), LimitTotals> {
        self.lock_leases().book.totals(Timestamp::now())
    }

    /// Ends the lease book's learning now, for whoever knows that no lease of another leader can
    /// still be live (tests; a leader whose sidecars all restarted).
    pub fn end_lease_learning(&self) {
        self.lock_leases().book.end_learning();
    }

    /// Notified whenever a sidecar reports a table version it had not reported before.
    pub fn versions_reported(&self) -> Arc<Notify> {
        self.versions_reported.clone()
    }

    /// The table version of each pod's latest report, by pod UID.
    pub fn report_versions(&self) -> HashMap<String, String> {
        self.lock_reports().aggregator.report_versions()
    }

    /// Routes one request. Not an `async fn`, whose future would keep room for the request
    /// for its whole life: the request is taken apart first, so that a waiting long-poll, which
    /// every sidecar of the fleet holds on the leader, keeps none of it.
    pub fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let route = if !self.leadership.is_leader() || *self.draining.borrow() {
            Route::Answer(Box::new(not_serving()))
        } else {
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/v1/config") => Route::Config(ConfigRequest {
                    authorization: req.headers().get(http::header::AUTHORIZATION).cloned(),
                    query: parse_config_query(&req),
                }),
                (&Method::POST, "/v1/report") => Route::Report(Box::new(req)),
                (_, "/v1/config" | "/v1/report") => Route::Answer(Box::new(error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed",
                ))),
                _ => Route::Answer(Box::new(error(StatusCode::NOT_FOUND, "not found"))),
            }
        };
        async move {
            match route {
                Route::Answer(response) => *response,
                Route::Config(request) => {
                    let response = self.get_config(request).await;
                    let code = response.status().as_u16().to_string();
                    self.metrics.responses.with_label_values(&[&code]).inc();
                    response
                }
                // Boxed: the report's future is large (a TokenReview, the body) and
                // short-lived, while this one's size is also that of every waiting long-poll.
                Route::Report(req) => Box::pin(self.post_report(*req)).await,
            }
        }
    }

    /// `GET /v1/config`. A waiting long-poll is what every sidecar of the fleet holds on the
    /// leader at all times, so what it keeps while it waits is kept ten thousand times: only
    /// the version it knows, its deadline, the pod and the receivers. Its authorization is
    /// dropped once reviewed (with hyper, a header is a slice of the connection's read buffer),
    /// and so is the snapshot it was authenticated against, which a wait that outlives a
    /// publish would otherwise keep alive, every pod and table of it.
    async fn get_config(&self, request: ConfigRequest) -> Response<Body> {
        let ConfigRequest {
            authorization,
            query,
        } = request;
        let (uid, pod, known, wait) = {
            let snapshot = self.tables.current();
            // Authenticate first, so that nothing (not even a 409) answers an unknown caller.
            // Boxed: the TokenReview's future is large and only lives until the review is
            // back, while the long-poll's own future lives for the whole wait.
            let reviewed = Box::pin(self.auth.authenticate(authorization.as_ref(), &snapshot));
            let (bound, pod) = match reviewed.await {
                Ok(found) => found,
                Err(rejection) => return reject(rejection),
            };
            drop(authorization);
            let query = match query {
                Ok(query) => query,
                Err(response) => return *response,
            };
            let Some(known) = query.known_version else {
                return self.table_response(&snapshot.table_for(&pod));
            };
            (bound.uid, pod, known, query.wait)
        };
        let _guard = LongPollGuard::new(&self.metrics.long_polls);
        // Subscribe before looking, so a publish between the look and the wait still wakes us.
        let mut rx = self.tables.subscribe();
        let mut draining = self.draining.subscribe();
        let mut leadership = self.leadership.clone();
        let deadline = Instant::now() + with_jitter(wait, rand::random::<f64>());
        loop {
            let table = {
                let snapshot = rx.borrow_and_update();
                // A pod that left the index mid-wait keeps the audience it was authenticated
                // with.
                let current = snapshot.pod(&uid).unwrap_or(&pod);
                snapshot.table_for(current)
            };
            if table.version != known {
                return self.table_response(&table);
            }
            drop(table);
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return not_modified(&known);
                },
                () = tokio::time::sleep_until(deadline) => return not_modified(&known),
                _ = draining.wait_for(|d| *d) => return not_modified(&known),
                // Cut off from the Lease: a replica that no longer serves must not hold a poll
                // until its wait ends, or the sidecar would miss the new leader's tables.
                leading = leadership.changed() => if !leading {
                    return not_serving();
                },
            }
        }
    }

    async fn post_report<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let count = |outcome: &str| self.metrics.reports.with_label_values(&[outcome]).inc();
        let snapshot = self.tables.current();
        let (bound, pod) = match self
            .auth
            .authenticate(req.headers().get(http::header::AUTHORIZATION), &snapshot)
            .await
        {
            Ok(found) => found,
            Err(rejection) => {
                count("unauthenticated");
                return reject(rejection);
            }
        };
        let body = match Limited::new(req.into_body(), MAX_REPORT_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                count("invalid");
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "report too large or unreadable",
                );
            }
        };
        let report: Report = match serde_json::from_slice(&body) {
            Ok(report) => report,
            Err(e) => {
                count("invalid");
                return error(StatusCode::BAD_REQUEST, &format!("invalid report: {e}"));
            }
        };
        let table = snapshot.table_for(&pod);
        let allowed = table_targets(&table);
        let routes: BTreeSet<String> = table.routes.values().map(|r| r.name.clone()).collect();
        let now = Instant::now();
        let (outcome, spent) = {
            let mut reports = self.lock_reports();
            let aggregator = &mut reports.aggregator;
            let outcome = aggregator.ingest(&bound.uid, &pod.namespace, &allowed, &report, now);
            let spent = aggregator.ingest_routes(&bound.uid, &pod.namespace, &routes, &report, now);
            // Attributed to the workload the operator resolved for the authenticated pod;
            // nothing in the report names one.
            reports.spend.record(&pod.workload, &spent.deltas, now);
            (outcome, spent)
        };
        if outcome.version_changed {
            self.versions_reported.notify_one();
        }
        if outcome.dropped + spent.dropped > 0 {
            tracing::debug!(pod = %pod.name, namespace = %pod.namespace, targets = outcome.dropped, routes = spent.dropped, "report targets or routes outside the pod's table dropped");
        }
        count("accepted");
        if table.budgets.is_empty() {
            return Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::default())
                .expect("a valid response");
        }
        let holder = (bound.uid.clone(), report.instance.clone());
        let leases = {
            let mut leases = self.lock_leases();
            // What status last said, so that a new term resumes counting from it.
            leases.book.resume_from(snapshot.durable.clone());
            leases
                .workloads
                .insert(holder.clone(), pod.workload.clone());
            leases
                .book
                .report(&holder, &table.budgets, &report.budgets, Timestamp::now())
        };
        match serde_json::to_vec(&ReportAnswer { leases }) {
            Ok(body) => Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "application/json")
                .header(CACHE_CONTROL, "no-store")
                .body(Body::from(body))
                .expect("a valid response"),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode leases: {e}"),
            ),
        }
    }

    fn table_response(&self, table: &RouteTable) -> Response<Body> {
        let key = (table.version.clone(), table.generated_by.clone());
        let mut encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(body) = encoded.get(&key) {
            return table_response(table, body.clone());
        }
        let body = match serde_json::to_vec(table) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                let message = format!("cannot encode table: {e}");
                return error(StatusCode::INTERNAL_SERVER_ERROR, &message);
            }
        };
        // Old versions are never asked for again; dropping everything now and then is simpler
        // than tracking which versions are still published.
        if encoded.len() >= MAX_ENCODED_TABLES {
            encoded.clear();
        }
        encoded.insert(key, body.clone());
        table_response(table, body)
    }

    /// The lease book, started afresh first if leadership changed since it was last used.
    fn lock_leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        // NB: like the aggregator, the book is consistent between calls whatever panicked.
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if leases.leadership.take_change() {
            leases.book = LeaseBook::new(Timestamp::now());
            leases.workloads.clear();
        }
        leases
    }

    /// The report state, started afresh first if leadership changed since it was last used.
    fn lock_reports(&self) -> std::sync::MutexGuard<'_, Reports> {
        // NB: the aggregator holds no invariant a panic could break halfway, so a poisoned lock
        // is still usable.
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if reports.leadership.take_change() {
            let now = Instant::now();
            reports.aggregator = ReportAggregator::new(now, Timestamp::now());
            reports.spend.reset(now);
        }
        reports
    }
}

/// Accepts TLS connections on `listener` and serves them (HTTP/1.1 and HTTP/2) within
/// [`Limits::CONFIG`] until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ConfigServer>,
) -> crate::Result<()> {
    serve_within(listener, tls, server, Limits::CONFIG).await
}

/// [`serve`] within other `limits`.
pub async fn serve_within(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ConfigServer>,
    limits: Limits,
) -> crate::Result<()> {
    listener::serve(listener, Some(tls), "config", limits, move |req| {
        server.clone().handle(req)
    })
    .await
}

/// Reads version, wait and schema from a config request; a ready error response otherwise.
pub fn parse_config_query<B>(req: &Request<B>) -> Result<ConfigQuery, Box<Response<Body>>> {
    let bad = |message: String| Box::new(error(StatusCode::BAD_REQUEST, &message));
    let mut query_version = None;
    let mut wait = DEFAULT_WAIT;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "version" if !value.is_empty() => query_version = Some(value.to_string()),
            "wait" => {
                wait = switchyard_crds::duration::parse(value)
                    .ok_or_else(|| {
                        bad(format!(
                            "invalid wait {value:?}: expected a duration like 30s"
                        ))
                    })?
                    .min(MAX_WAIT);
            }
            _ => {}
        }
    }
    let header_version = req.headers().get(IF_NONE_MATCH).and_then(parse_etag);
    let schema = match req.headers().get(TABLE_SCHEMA_HEADER) {
        None => SCHEMA_VERSION,
        Some(value) => {
            let max = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .ok_or_else(|| bad(format!("invalid {TABLE_SCHEMA_HEADER}")))?;
            negotiate_schema(max)
                .map_err(|message| Box::new(error(StatusCode::CONFLICT, &message)))?
        }
    };
    Ok(ConfigQuery {
        known_version: header_version.or(query_version),
        wait,
        schema,
    })
}

/// The schema to serve a sidecar supporting up to `sidecar_max`, or why none fits.
pub fn negotiate_schema(sidecar_max: u32) -> Result<u32, String> {
    if sidecar_max >= SCHEMA_VERSION {
        Ok(SCHEMA_VERSION)
    } else if sidecar_max >= OLDEST_SERVED_SCHEMA {
        Ok(sidecar_max)
    } else {
        Err(format!(
            "sidecar supports table schema up to {sidecar_max}, this operator serves {OLDEST_SERVED_SCHEMA} to {SCHEMA_VERSION}: upgrade the sidecar"
        ))
    }
}

/// The first entity tag of an `If-None-Match` header, without quotes or weak prefix.
pub fn parse_etag(value: &HeaderValue) -> Option<String> {
    let first = value.to_str().ok()?.split(',').next()?.trim();
    let first = first.strip_prefix("W/").unwrap_or(first);
    let tag = first
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(first);
    (!tag.is_empty() && tag != "*").then(|| tag.to_string())
}

/// `wait` stretched by `unit` (in `[0, 1)`) times 10%, so that sidecars started together do not
/// poll in lockstep.
pub fn with_jitter(wait: Duration, unit: f64) -> Duration {
    wait + wait.mul_f64(unit.clamp(0.0, 1.0) * 0.1)
}

/// Every `(pool/provider, model)` a table may send traffic to.
pub fn table_targets(table: &RouteTable) -> BTreeSet<(String, String)> {
    table
        .routes
        .values()
        .flat_map(|route| {
            route
                .targets
                .iter()
                .chain(route.rules.iter().flat_map(|r| &r.targets))
        })
        .map(|t| (t.upstream.clone(), t.model.clone()))
        .collect()
}

fn etag(version: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn table_response(table: &RouteTable, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(ETAG, etag(&table.version))
        .header(CACHE_CONTROL, "no-store")
        .header(CONTENT_TYPE, "application/json")
        .header(TABLE_SCHEMA_HEADER, table.schema_version)
        .body(Body::new(body))
        .expect("a valid response")
}

fn not_modified(version: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .header(ETAG, etag(version))
        .header(CACHE_CONTROL, "no-store")
        .body(Body::default())
        .expect("a valid response")
}

/// 503 from a follower or a replica shutting down: the sidecar backs off and finds the leader.
fn not_serving() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "this operator replica is not serving (not the leader, or shutting down)",
    )
}

fn reject(rejection: Rejection) -> Response<Body> {
    tracing::debug!(reason = rejection.message(), "config request refused");
    error(rejection.status(), rejection.message())
}

/// A JSON error response.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .expect("a valid response")
}

#[cfg(test)]
mod tests;
