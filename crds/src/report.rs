//! What a sidecar reports to the operator (`POST /v1/report`): cumulative counters since the
//! sidecar started, so that a lost report loses nothing. The operator derives deltas per
//! instance (a counter that goes down means the sidecar restarted) and aggregates them into the
//! 5-minute windows of the pools' status.
//!
//! A sidecar whose table holds budgets also reports what it used of each budget limit in the
//! current window ([`BudgetUsage`]); the operator's answer ([`ReportAnswer`]) carries its
//! [`Lease`]s: how much of each limit this sidecar may use in the window, and until when the
//! grant holds (docs/reference/operator.md#leases).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds, in milliseconds, of the latency buckets sidecars report, chosen so that a
/// median between 50 ms and 2 minutes is known within about one bucket.
pub const LATENCY_BUCKETS_MS: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 30_000, 60_000, 120_000, 300_000,
    600_000,
];

/// One report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Identifies one run of one sidecar: the pod UID and the sidecar's start time.
    pub instance: String,
    /// The version of the route table the sidecar is serving.
    pub table_version: String,
    /// Counters per target since the sidecar started.
    pub targets: Vec<TargetReport>,
    /// Per limit of each budget in the sidecar's table: what this instance used in the current
    /// window. Absent when the table has no budgets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetUsage>,
    /// Counters per route since the sidecar started: what the operator attributes to the pod's
    /// workload (docs/reference/operator.md#spend-per-workload). Absent from reports of sidecars
    /// that predate it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteReport>,
}

/// Cumulative counters for one route: the client requests it sent to a provider or answered
/// from its cache, whether they then succeeded or not (requests refused before any attempt cost
/// nothing and are not counted), and their tokens and cost summed over every attempt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteReport {
    /// The route's `metadata.name` (its namespace is the pod's).
    pub route: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// Dollars (in millionths), requests and tokens. In a lease, only the units the limit caps are
/// present; in usage, every unit is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_micros: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// What one sidecar instance used of one budget limit in one window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetUsage {
    /// `namespace/name` of the budget.
    pub budget: String,
    /// The limit's index in the budget's `limits`.
    pub limit: u32,
    /// The limit's period as written, so that an edit that reorders limits is noticed.
    pub period: String,
    /// The window the counts belong to, by this sidecar's clock: its start in Unix seconds.
    pub window_start: i64,
    /// What this instance used in that window (every unit).
    pub used: Amounts,
    /// The allowance this instance holds for that window (from its last lease), if any: a new
    /// operator leader echoes it back while it learns (docs/reference/operator.md#leases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<Amounts>,
    /// Requests this instance refused (in `Shadow` mode: would have refused) for this budget in
    /// that window. Every refusal counts in the window of each of the budget's limits.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The operator's answer to a report: `200` with this body when the pod's table holds budgets,
/// else `204` and no body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReportAnswer {
    pub leases: Vec<Lease>,
}

/// How much of one budget limit one sidecar instance may use in one window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// `namespace/name` of the budget.
    pub budget: String,
    /// The limit's index in the budget's `limits`.
    pub limit: u32,
    /// The limit's period as written.
    pub period: String,
    /// The window the lease is for, by the operator's clock: start and end in Unix seconds.
    pub window_start: i64,
    pub window_end: i64,
    /// The most this instance may have used in the window, its own use so far included: the
    /// sidecar admits while its count is below this. Only the units the limit caps.
    pub allowance: Amounts,
    /// When the grant lapses unless renewed, Unix milliseconds (an absolute time, so that the
    /// sidecar needs no agreement on durations; at most three report intervals ahead). After
    /// it, the budget's `whenUnreachable` decides.
    pub expires_at_ms: i64,
}

/// Cumulative counters for one (pool/provider, model).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    /// `pool/provider`.
    pub provider: String,
    pub model: String,
    /// Attempts by outcome (`Success`, `StreamError` or a failure class).
    pub outcomes: BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Whether the circuit is open now (a state, not a counter).
    pub circuit_open: bool,
    /// Attempts per latency bucket of [`LATENCY_BUCKETS_MS`], plus one for slower ones.
    pub latency_buckets: Vec<u64>,
}
