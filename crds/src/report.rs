//! What a sidecar reports to the operator (`POST /v1/report`): cumulative counters since the
//! sidecar started, so that a lost report loses nothing. The operator derives deltas per
//! instance (a counter that goes down means the sidecar restarted) and aggregates them into the
//! 5-minute windows of the pools' status.

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
