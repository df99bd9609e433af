//! `Budget`: a cap on spend, requests or tokens per window for the requests it selects.
//!
//! This module is the API only. Windows are computed by [`crate::window`]; enforcement (sidecar
//! counters, operator leases) is described in docs/reference/crds.md and is not built yet.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Usd, conditions_schema};
use crate::window::Period;

mod validate;

pub use validate::ValidationError;

/// Caps what the selected requests may spend or send per window. Every limit must have room for
/// a request to be admitted.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "Budget",
    namespaced,
    derive = "PartialEq",
    status = "BudgetStatus",
    shortname = "bgt",
    printcolumn = r#"{"name":"MODE","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"PERIOD","type":"string","jsonPath":".status.summary.period"}"#,
    printcolumn = r#"{"name":"USED","type":"string","jsonPath":".status.summary.used"}"#,
    printcolumn = r#"{"name":"LIMIT","type":"string","jsonPath":".status.summary.limit"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// Which requests count against this budget. Every given condition must hold; an empty
    /// selector (the default) selects every request in the namespace.
    #[serde(default, skip_serializing_if = "BudgetSelector::is_empty")]
    pub selector: BudgetSelector,

    /// The caps, each over its own window. A request is admitted only when every limit has
    /// room. At least one.
    #[schemars(length(min = 1, max = 8))]
    pub limits: Vec<BudgetLimit>,

    /// `Enforce` refuses requests once a limit is reached; `Shadow` only counts and reports the
    /// requests it would have refused. Default `Enforce`.
    #[serde(default)]
    pub mode: BudgetMode,

    /// What a sidecar does when its share of the budget (its lease from the operator) expires
    /// unrenewed: `LastShare` keeps enforcing the last share it had, `FailOpen` stops enforcing,
    /// `FailClosed` refuses the selected requests. Default `LastShare`.
    #[serde(default)]
    pub when_unreachable: WhenUnreachable,
}

/// Which requests a budget counts. All given conditions must hold.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSelector {
    /// Names of ModelRoutes in the budget's namespace whose requests count. Default: every route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub routes: Vec<String>,

    /// Pods whose requests count, by label. Default: every pod of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// Count only what these providers serve. When such a budget runs out, these targets are
    /// skipped and requests fail over to the route's other targets instead of being refused.
    /// Default: every provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pool", "provider"]))]
    pub providers: Vec<ProviderRef>,
}

impl BudgetSelector {
    /// Whether the selector selects every request of the namespace.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.pod_selector.is_none() && self.providers.is_empty()
    }
}

/// A provider of a ProviderPool in the budget's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// Name of the ProviderPool.
    #[schemars(length(min = 1, max = 253))]
    pub pool: String,
    /// Name of the provider in that pool.
    #[schemars(length(min = 1, max = 63))]
    pub provider: String,
}

/// One cap over one window. Set at least one of `usd`, `requests` and `tokens`; each set
/// amount must have room.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.usd) || has(self.requests) || has(self.tokens)").message("a limit needs at least one of usd, requests or tokens"))]
#[serde(rename_all = "camelCase")]
pub struct BudgetLimit {
    /// The window the limit counts over: `Day`, `Week` (from Monday) or `Month`, UTC calendar
    /// windows; or a duration of at least `1s` such as `1m` or `7h`, a fixed window aligned to
    /// the Unix epoch. Counting starts from zero in each new window.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(regex(pattern = r"^(Day|Week|Month|([0-9]{1,5}(h|m|s|ms)){1,4})$"))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]{1,5}(h|m|s|ms)){1,4}$') || duration(self) >= duration('1s')").message("a fixed period must be at least 1s"))]
    pub period: String,

    /// Most US dollars spent in a window, as a quoted decimal (`"500.00"`). Cost is each
    /// request's cost as logged: the model's prices times the tokens used, cached input
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<Usd>,

    /// Most requests in a window. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests: Option<u64>,

    /// Most tokens (prompt plus completion, as the provider reports them) in a window. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens: Option<u64>,
}

impl BudgetLimit {
    /// The parsed `period`, or `None` when it is invalid (see [`BudgetSpec::validate`]).
    pub fn period(&self) -> Option<Period> {
        Period::parse(&self.period)
    }
}

/// Whether a budget refuses requests or only counts them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BudgetMode {
    /// Refuse (or fail over from) requests once a limit is reached.
    #[default]
    Enforce,
    /// Never refuse; count the requests that would have been refused.
    Shadow,
}

/// What a sidecar does when its lease on a budget expires unrenewed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhenUnreachable {
    /// Keep enforcing the last share the operator granted.
    #[default]
    LastShare,
    /// Stop enforcing until a lease arrives again.
    FailOpen,
    /// Refuse the selected requests until a lease arrives again.
    FailClosed,
}

/// What the operator observed about a budget and its spend.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// `Accepted` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The limit nearest to running out, in short strings for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<BudgetSummary>,
    /// The current window of each limit, in the order of `spec.limits`. These totals are
    /// durable: a new operator leader resumes counting from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub windows: Vec<WindowStatus>,
    /// The biggest spenders since the earliest `start` of `windows`, at most 5, biggest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub top_workloads: Vec<WorkloadSpend>,
    /// Sidecars that count against this budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<BudgetSidecars>,
    /// Requests refused because a limit had no room (in `Shadow` mode: that would have been
    /// refused), since the earliest `start` of `windows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_requests: Option<u64>,
}

/// The limit nearest to running out, for `kubectl get`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSummary {
    /// Its period as written, e.g. `Month`.
    pub period: String,
    /// What its window has used, with the unit, e.g. `412.10 USD` or `512 requests`.
    pub used: String,
    /// Its limit, with the unit, e.g. `500.00 USD`.
    pub limit: String,
}

/// The current window of one limit.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowStatus {
    /// The limit's period as written in `spec.limits`.
    pub period: String,
    /// When the window began.
    pub start: Time,
    /// When the next window begins and counting starts from zero.
    pub end: Time,
    /// What the selected requests used in the window so far.
    pub used: BudgetAmounts,
    /// The limit, in the units it sets.
    pub limit: BudgetAmounts,
    /// What is left in the window: the limit minus what was used, never below zero.
    pub remaining: BudgetAmounts,
}

/// Dollars, requests and tokens; only the units the limit sets are present.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetAmounts {
    /// US dollars, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<Usd>,
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Prompt plus completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// What one workload spent.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpend {
    /// `<namespace>/<kind>/<name>` of the pod's top controller (a Deployment, StatefulSet,
    /// DaemonSet, Job or CronJob), or of the pod itself when it has none.
    pub workload: String,
    /// US dollars spent, as a decimal string.
    pub usd: Usd,
    /// Requests sent.
    pub requests: u64,
}

/// How many sidecars take part in a budget.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSidecars {
    /// Sidecars whose table holds this budget and that reported recently.
    pub reporting: u32,
    /// Those of them holding an unexpired lease on it.
    pub leased: u32,
}

#[cfg(test)]
mod tests;
