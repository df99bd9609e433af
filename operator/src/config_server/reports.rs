//! Aggregation of sidecar reports (`POST /v1/report`) into the 5-minute windows pool status
//! shows (docs/reference/crds.md "Status").
//!
//! Sidecars send cumulative counters per target, so a lost report loses nothing. For each
//! (pod UID, instance) the aggregator keeps the last counters and adds the difference to the
//! current 30-second bucket of each (namespace, `pool/provider`, model). A target whose counters
//! went down restarted: its new values are the delta. The first report of an instance is a
//! baseline (counts nothing) unless its sidecar started after the aggregator began: an older
//! sidecar's counters hold what it did before, which is not "the last 5 minutes" (and may have
//! been counted by another leader). Ten buckets make the window; circuit state
//! is a level, so each instance's latest value counts for as long as it reported in the window.
//! Route counters (`Report.routes`) are kept the same way, per (namespace, route), for ModelRoute
//! status, and their deltas handed back for the per-workload metrics
//! (docs/reference/operator.md#spend-per-workload). Pure state with an explicit `now`, so tests
//! need no clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use switchyard_crds::report::{LATENCY_BUCKETS_MS, Report, RouteReport, TargetReport};
use switchyard_crds::window::Timestamp;
use tokio::time::Instant;

/// The width of one bucket.
pub const BUCKET: Duration = Duration::from_secs(30);
/// Buckets in a window.
pub const BUCKETS: u64 = 10;
/// The outcome that is not an error.
pub const SUCCESS: &str = "Success";
/// How long the last counters of a silent instance are kept. Longer than the window, so that a
/// sidecar reporting rarely is not counted twice; an instance forgotten and heard again is new
/// again (a baseline, or counted from zero if it started after the aggregator began).
const INSTANCE_RETENTION: Duration = Duration::from_secs(900);
/// A start time further than this past the aggregator's clock is not a start time: the id is
/// not `<identity>-<start unix seconds>`, and the instance's first report is a baseline.
const START_SLACK_SECS: i64 = 300;

/// What a window is aggregated by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowKey {
    pub namespace: String,
    /// `pool/provider`.
    pub provider: String,
    pub model: String,
}

/// Totals over the window for one [`WindowKey`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Attempts, by every outcome.
    pub requests: u64,
    /// Attempts whose outcome was not `Success`.
    pub errors: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Attempts per bucket of [`LATENCY_BUCKETS_MS`], plus one for slower ones.
    pub latency_buckets: Vec<u64>,
    /// Instances that reported this target in the window.
    pub sidecars: u32,
    /// Of those, how many have its circuit open in their latest report.
    pub circuit_open_sidecars: u32,
}

/// What route status is aggregated by: the route's namespace (the reporting pod's) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    pub namespace: String,
    pub route: String,
}

/// Totals over the window for one route.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteStats {
    /// Client requests, by every outcome.
    pub requests: u64,
    pub cost_usd: f64,
}

// === impl RouteStats ===

impl RouteStats {
    fn add(&mut self, delta: &RouteReport) {
        self.requests = self.requests.saturating_add(delta.requests);
        self.cost_usd += delta.cost_usd;
    }

    fn merge(&mut self, other: &RouteStats) {
        self.requests = self.requests.saturating_add(other.requests);
        self.cost_usd += other.cost_usd;
    }
}

/// What [`ReportAggregator::ingest_routes`] did with a report's routes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutesOutcome {
    /// What each route of the pod's table did since the instance's previous report (the whole
    /// counters after a restart), for routes with anything new.
    pub deltas: Vec<RouteReport>,
    /// Routes not in the pod's own table: dropped, so no report can invent label values.
    pub dropped: usize,
}

/// What [`ReportAggregator::ingest`] did with a report's targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: usize,
    /// Targets not in the pod's own table.
    pub dropped: usize,
    /// The report names another table version than this instance's previous one (or is its
    /// first): route status should count the pod again.
    pub version_changed: bool,
}

/// Last counters per instance and the bucketed window.
#[derive(Debug)]
pub struct ReportAggregator {
    origin: Instant,
    /// Wall-clock time at `origin`: instances whose sidecar started before it hold counters of
    /// before, so their first report is a baseline.
    began: Timestamp,
    instances: HashMap<InstanceKey, InstanceState>,
    buckets: VecDeque<(u64, HashMap<WindowKey, WindowStats>)>,
    /// The same buckets for routes.
    route_buckets: VecDeque<(u64, HashMap<RouteKey, RouteStats>)>,
}

/// (pod UID, instance): keyed by the authenticated UID too, so that no pod can overwrite another
/// pod's counters by sending its instance id.
type InstanceKey = (String, String);

#[derive(Debug)]
struct InstanceState {
    namespace: String,
    last_seen: Instant,
    /// The table version the instance's latest report said it applied.
    table_version: String,
    targets: HashMap<(String, String), TargetReport>,
    /// The last route counters, by route name.
    routes: HashMap<String, RouteReport>,
    /// The instance's first targets, and its first routes, are a baseline: its sidecar started
    /// before the aggregator began. Each is cleared once that part of a report was taken.
    targets_baseline: bool,
    routes_baseline: bool,
}

// === impl WindowStats ===

impl WindowStats {
    /// Errors over requests, when there were requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The upper bound of the bucket holding the median attempt. For the overflow bucket, the
    /// largest bound (the median is at least that).
    pub fn p50_latency_ms(&self) -> Option<u64> {
        let total = saturating_sum(self.latency_buckets.iter().copied());
        if total == 0 {
            return None;
        }
        let mut seen: u64 = 0;
        for (i, count) in self.latency_buckets.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if seen >= total.div_ceil(2) {
                let last = LATENCY_BUCKETS_MS.len() - 1;
                return Some(LATENCY_BUCKETS_MS[i.min(last)]);
            }
        }
        None
    }

    // NB: every count below comes from a sidecar's report, so it is added saturating: a report
    // near u64::MAX must neither panic a debug build nor wrap a window to a small number.
    fn add(&mut self, delta: &TargetReport) {
        let errors = saturating_sum(
            delta
                .outcomes
                .iter()
                .filter(|(outcome, _)| *outcome != SUCCESS)
                .map(|(_, count)| *count),
        );
        let successes = delta.outcomes.get(SUCCESS).copied().unwrap_or(0);
        self.requests = self
            .requests
            .saturating_add(successes)
            .saturating_add(errors);
        self.errors = self.errors.saturating_add(errors);
        self.input_tokens = self.input_tokens.saturating_add(delta.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(delta.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(delta.output_tokens);
        self.cost_usd += delta.cost_usd;
        add_buckets(&mut self.latency_buckets, &delta.latency_buckets);
    }

    fn merge(&mut self, other: &WindowStats) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_usd += other.cost_usd;
        add_buckets(&mut self.latency_buckets, &other.latency_buckets);
    }
}

// === impl ReportAggregator ===

impl ReportAggregator {
    /// An empty aggregator whose buckets are aligned to `now`, which is `began` by the wall
    /// clock.
    pub fn new(now: Instant, began: Timestamp) -> Self {
        Self {
            origin: now,
            began,
            instances: HashMap::new(),
            buckets: VecDeque::new(),
            route_buckets: VecDeque::new(),
        }
    }

    /// Adds one report from the pod `pod_uid` in `namespace`. Only targets in `allowed`
    /// (`(pool/provider, model)` pairs of the pod's own table) count.
    pub fn ingest(
        &mut self,
        pod_uid: &str,
        namespace: &str,
        allowed: &BTreeSet<(String, String)>,
        report: &Report,
        now: Instant,
    ) -> IngestOutcome {
        self.expire(now);
        let baseline = !self.started_since_began(&report.instance, now);
        let index = self.bucket_index(now);
        if self.buckets.back().is_none_or(|(i, _)| *i != index) {
            self.buckets.push_back((index, HashMap::new()));
        }
        let bucket = &mut self.buckets.back_mut().expect("pushed above").1;
        let state = self
            .instances
            .entry((pod_uid.to_string(), report.instance.clone()))
            .or_insert_with(|| InstanceState::new(namespace, now, baseline));
        state.last_seen = now;
        let mut outcome = IngestOutcome {
            version_changed: state.table_version != report.table_version,
            ..IngestOutcome::default()
        };
        state.table_version.clone_from(&report.table_version);
        for target in &report.targets {
            let id = (target.provider.clone(), target.model.clone());
            if !allowed.contains(&id) {
                outcome.dropped += 1;
                continue;
            }
            outcome.accepted += 1;
            let prev = state.targets.get(&id);
            if prev.is_none() && state.targets_baseline {
                state.targets.insert(id, target.clone());
                continue;
            }
            let delta = delta(prev, target);
            let key = WindowKey {
                namespace: namespace.to_string(),
                provider: target.provider.clone(),
                model: target.model.clone(),
            };
            bucket.entry(key).or_default().add(&delta);
            state.targets.insert(id, target.clone());
        }
        state.targets_baseline = false;
        outcome
    }

    /// Adds the route counters of one report from the pod `pod_uid` in `namespace` (call it after
    /// [`Self::ingest`], which expires old state). Only routes named in `allowed` (the route
    /// names of the pod's own table) count.
    pub fn ingest_routes(
        &mut self,
        pod_uid: &str,
        namespace: &str,
        allowed: &BTreeSet<String>,
        report: &Report,
        now: Instant,
    ) -> RoutesOutcome {
        let baseline = !self.started_since_began(&report.instance, now);
        let index = self.bucket_index(now);
        if self.route_buckets.back().is_none_or(|(i, _)| *i != index) {
            self.route_buckets.push_back((index, HashMap::new()));
        }
        let bucket = &mut self.route_buckets.back_mut().expect("pushed above").1;
        let state = self
            .instances
            .entry((pod_uid.to_string(), report.instance.clone()))
            .or_insert_with(|| InstanceState::new(namespace, now, baseline));
        let mut outcome = RoutesOutcome::default();
        for route in &report.routes {
            if !allowed.contains(&route.route) {
                outcome.dropped += 1;
                continue;
            }
            let prev = state.routes.get(&route.route);
            let first_of_old_instance = prev.is_none() && state.routes_baseline;
            let delta = route_delta(prev, route);
            state.routes.insert(route.route.clone(), route.clone());
            if first_of_old_instance {
                continue;
            }
            if nothing_new(&delta) {
                continue;
            }
            let key = RouteKey {
                namespace: namespace.to_string(),
                route: route.route.clone(),
            };
            bucket.entry(key).or_default().add(&delta);
            outcome.deltas.push(delta);
        }
        state.routes_baseline = false;
        outcome
    }

    /// The route window ending at `now`, per route.
    pub fn route_summary(&self, now: Instant) -> BTreeMap<RouteKey, RouteStats> {
        let current = self.bucket_index(now);
        let mut out: BTreeMap<RouteKey, RouteStats> = BTreeMap::new();
        for (index, bucket) in &self.route_buckets {
            if index + BUCKETS > current {
                for (key, stats) in bucket {
                    out.entry(key.clone()).or_default().merge(stats);
                }
            }
        }
        out
    }

    /// The table version of each pod's latest report, by pod UID; route status counts the pods
    /// whose version is their table's as `inSync`. Instances forgotten by expiry are not listed.
    pub fn report_versions(&self) -> HashMap<String, String> {
        let mut latest: HashMap<&str, (Instant, &str)> = HashMap::new();
        for ((uid, _), state) in &self.instances {
            let entry = latest
                .entry(uid)
                .or_insert((state.last_seen, &state.table_version));
            if state.last_seen > entry.0 {
                *entry = (state.last_seen, &state.table_version);
            }
        }
        latest
            .into_iter()
            .map(|(uid, (_, version))| (uid.to_string(), version.to_string()))
            .collect()
    }

    /// The window ending at `now`, per key.
    pub fn summary(&self, now: Instant) -> BTreeMap<WindowKey, WindowStats> {
        let current = self.bucket_index(now);
        let mut out: BTreeMap<WindowKey, WindowStats> = BTreeMap::new();
        for (index, bucket) in &self.buckets {
            if index + BUCKETS > current {
                for (key, stats) in bucket {
                    out.entry(key.clone()).or_default().merge(stats);
                }
            }
        }
        let window = BUCKET * u32::try_from(BUCKETS).unwrap_or(u32::MAX);
        for state in self.instances.values() {
            if now.saturating_duration_since(state.last_seen) >= window {
                continue;
            }
            for ((provider, model), target) in &state.targets {
                let key = WindowKey {
                    namespace: state.namespace.clone(),
                    provider: provider.clone(),
                    model: model.clone(),
                };
                let stats = out.entry(key).or_default();
                stats.sidecars += 1;
                stats.circuit_open_sidecars += u32::from(target.circuit_open);
            }
        }
        out
    }

    /// Whether the sidecar of `instance` started since this aggregator began, so that its
    /// counters hold nothing from before: by the start time at the end of its id
    /// (`<pod UID or hostname>-<start unix seconds>`, as the sidecar builds it). An id without
    /// one, or with one later than the aggregator's clock allows, is taken as older. Clocks of
    /// other nodes may be off by a few seconds: a sidecar started within that of the operator
    /// may be counted from zero or taken as a baseline, which moves a few seconds of requests.
    fn started_since_began(&self, instance: &str, now: Instant) -> bool {
        let Some(started) = start_of(instance) else {
            return false;
        };
        let elapsed = now.saturating_duration_since(self.origin).as_secs();
        let clock = self
            .began
            .as_second()
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX));
        started >= self.began.as_second() && started <= clock.saturating_add(START_SLACK_SECS)
    }

    fn bucket_index(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / BUCKET.as_secs()
    }

    fn expire(&mut self, now: Instant) {
        let current = self.bucket_index(now);
        while self
            .buckets
            .front()
            .is_some_and(|(index, _)| index + BUCKETS <= current)
        {
            self.buckets.pop_front();
        }
        while self
            .route_buckets
            .front()
            .is_some_and(|(index, _)| index + BUCKETS <= current)
        {
            self.route_buckets.pop_front();
        }
        self.instances
            .retain(|_, state| now.saturating_duration_since(state.last_seen) < INSTANCE_RETENTION);
    }
}

// === impl InstanceState ===

impl InstanceState {
    fn new(namespace: &str, now: Instant, baseline: bool) -> Self {
        Self {
            namespace: namespace.to_string(),
            last_seen: now,
            table_version: String::new(),
            targets: HashMap::new(),
            routes: HashMap::new(),
            targets_baseline: baseline,
            routes_baseline: baseline,
        }
    }
}

/// The start time (unix seconds) at the end of an instance id, `<identity>-<digits>`.
pub fn start_of(instance: &str) -> Option<i64> {
    let (identity, secs) = instance.rsplit_once('-')?;
    if identity.is_empty() || secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    secs.parse().ok()
}

/// What happened since `prev`. A counter that went down means the sidecar restarted (or the
/// target was reset), so the whole target counts from zero.
pub fn delta(prev: Option<&TargetReport>, cur: &TargetReport) -> TargetReport {
    let Some(prev) = prev.filter(|prev| !went_down(prev, cur)) else {
        return TargetReport {
            circuit_open: cur.circuit_open,
            ..cur.clone()
        };
    };
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    TargetReport {
        provider: cur.provider.clone(),
        model: cur.model.clone(),
        outcomes: cur
            .outcomes
            .iter()
            .map(|(k, v)| (k.clone(), v - prev.outcomes.get(k).copied().unwrap_or(0)))
            .collect(),
        input_tokens: cur.input_tokens - prev.input_tokens,
        cached_input_tokens: cur.cached_input_tokens - prev.cached_input_tokens,
        output_tokens: cur.output_tokens - prev.output_tokens,
        cost_usd: (cur.cost_usd - prev.cost_usd).max(0.0),
        circuit_open: cur.circuit_open,
        latency_buckets: (0..cur.latency_buckets.len())
            .map(|i| at(&cur.latency_buckets, i) - at(&prev.latency_buckets, i))
            .collect(),
    }
}

/// What a route did since `prev`; like [`delta`], a counter that went down means a restart and
/// the current counters are the delta.
pub fn route_delta(prev: Option<&RouteReport>, cur: &RouteReport) -> RouteReport {
    let restarted = |prev: &&RouteReport| {
        cur.requests < prev.requests
            || cur.input_tokens < prev.input_tokens
            || cur.cached_input_tokens < prev.cached_input_tokens
            || cur.output_tokens < prev.output_tokens
            || cur.cost_usd + 1e-9 < prev.cost_usd
    };
    let Some(prev) = prev.filter(|p| !restarted(p)) else {
        return cur.clone();
    };
    RouteReport {
        route: cur.route.clone(),
        requests: cur.requests - prev.requests,
        input_tokens: cur.input_tokens - prev.input_tokens,
        cached_input_tokens: cur.cached_input_tokens - prev.cached_input_tokens,
        output_tokens: cur.output_tokens - prev.output_tokens,
        cost_usd: (cur.cost_usd - prev.cost_usd).max(0.0),
    }
}

/// A delta of zero: no request, no token, no cost (an idle route is not news).
fn nothing_new(delta: &RouteReport) -> bool {
    delta.requests == 0
        && delta.input_tokens == 0
        && delta.cached_input_tokens == 0
        && delta.output_tokens == 0
        && delta.cost_usd <= 0.0
}

fn went_down(prev: &TargetReport, cur: &TargetReport) -> bool {
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    prev.outcomes
        .iter()
        .any(|(k, v)| cur.outcomes.get(k).copied().unwrap_or(0) < *v)
        || cur.input_tokens < prev.input_tokens
        || cur.cached_input_tokens < prev.cached_input_tokens
        || cur.output_tokens < prev.output_tokens
        // Float sums may wobble in the last bits; only a real drop is a restart.
        || cur.cost_usd + 1e-9 < prev.cost_usd
        || (0..prev.latency_buckets.len().max(cur.latency_buckets.len()))
            .any(|i| at(&cur.latency_buckets, i) < at(&prev.latency_buckets, i))
}

/// Adds `more` into `into` bucket by bucket, ignoring buckets beyond [`LATENCY_BUCKETS_MS`] and
/// its overflow bucket (a malformed report cannot grow the vector).
fn add_buckets(into: &mut Vec<u64>, more: &[u64]) {
    let len = LATENCY_BUCKETS_MS.len() + 1;
    if into.len() < len {
        into.resize(len, 0);
    }
    for (slot, value) in into.iter_mut().zip(more) {
        *slot = slot.saturating_add(*value);
    }
}

/// The sum of reported counts, stopping at `u64::MAX` instead of overflowing.
fn saturating_sum(counts: impl IntoIterator<Item = u64>) -> u64 {
    counts.into_iter().fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests;
