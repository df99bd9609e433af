//! `ModelRoute`: what a client's `model` name means.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Duration, FailureClass, Usd, conditions_schema};
use super::scoring::ComplexitySpec;
use super::template::PromptTemplateRef;

/// Maps the `model` name clients send to an ordered set of provider targets.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "ModelRoute",
    namespaced,
    derive = "PartialEq",
    status = "ModelRouteStatus",
    shortname = "mr",
    printcolumn = r#"{"name":"MODEL","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"STRATEGY","type":"string","jsonPath":".spec.strategy"}"#,
    printcolumn = r#"{"name":"TARGETS","type":"integer","jsonPath":".status.targetCount"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"SIDECARS","type":"string","jsonPath":".status.sidecars.summary"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.strategy != 'Weighted' || self.targets.all(t, !has(t.weight) || t.weight > 0)").message("with strategy Weighted every target needs a weight above 0"))]
#[serde(rename_all = "camelCase")]
pub struct ModelRouteSpec {
    /// The name clients send as `model`.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,

    /// Which pods of the namespace get this route. Default: all. A route with a selector beats
    /// one without for the pods it selects. This chooses routes; it is not an access control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// How targets are ordered for each request: `Failover` (in order), `Weighted` (random by
    /// weight), `LeastLatency` (lowest observed latency, with some exploration) or `LowestCost`
    /// (lowest estimated price for the request). Default `Failover`.
    #[serde(default)]
    pub strategy: Strategy,

    /// The providers and models that can serve the route, in order of preference.
    #[schemars(length(min = 1, max = 16))]
    pub targets: Vec<Target>,

    /// Rules evaluated in order; the first that matches replaces `targets` for the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<RouteRule>,

    /// Which failures move a request on to the next target, and how many targets it may try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,

    /// Exact-match response cache for deterministic requests (`temperature` 0 or a `seed`, `n` 1,
    /// not streamed). Each sidecar keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,

    /// Keep requests in these regions: providers elsewhere or without a region are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<Residency>,

    /// A PromptTemplate in the route's namespace applied to every request of the route; a rule's
    /// or a target's own `promptTemplate` takes precedence (target, then rule, then route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<PromptTemplateRef>,

    /// Which scorer computes the complexity score that `minComplexity` rules compare against,
    /// also shown in the `x-switchyard-complexity` header. Default: the `Heuristic` scorer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<ComplexitySpec>,
}

/// How targets are ordered for a request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Try targets in the order written.
    #[default]
    Failover,
    /// Pick targets at random in proportion to `weight`.
    Weighted,
    /// Prefer the target with the lowest recently observed latency.
    LeastLatency,
    /// Prefer the target with the lowest estimated cost for this request.
    LowestCost,
}

/// One (pool, provider, model) a route can send to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// A `ProviderPool` in the route's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub pool: String,
    /// A provider of that pool.
    #[schemars(length(min = 1, max = 63))]
    pub provider: String,
    /// A model of that provider.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// Relative share of traffic with strategy `Weighted`. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000000))]
    pub weight: Option<u32>,
    /// A PromptTemplate for requests sent to this target, instead of the rule's or the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<PromptTemplateRef>,
}

/// A conditional set of targets.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// Name of the rule, unique in the route; shown in logs.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Conditions that must all hold. An empty match always holds.
    #[serde(default, rename = "match")]
    pub match_: RuleMatch,
    /// Targets used when the rule matches.
    #[schemars(length(min = 1, max = 16))]
    pub targets: Vec<Target>,
    /// A PromptTemplate for requests this rule routes, instead of the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<PromptTemplateRef>,
}

/// Conditions on a request. All given conditions must hold.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// The prompt has at least this many tokens (estimated with one tokenizer for all providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_prompt_tokens: Option<u32>,
    /// The request offers tools (`true`) or offers none (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_tools: Option<bool>,
    /// A request header has exactly this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// The prompt's complexity score (0–100, from the route's `complexity` scorer) is at least
    /// this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_complexity: Option<u8>,
}

/// A header name and its exact value.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct HeaderMatch {
    /// Header name, case-insensitive.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Exact value.
    pub value: String,
}

/// Failover policy.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// Failure classes that move on to the next target. Default: every class except
    /// `ClientError` and `ContentFiltered`. `ClientError` is never failed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.exists(c, c == 'ClientError')").message("ClientError is never failed over"))]
    #[schemars(length(max = 10))]
    pub on: Option<Vec<FailureClass>>,
    /// Most targets tried for one request. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub max_attempts: Option<u32>,
}

/// Response cache settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cache {
    /// How long an answer is reused, e.g. `10m`.
    pub ttl: Duration,
    /// Most answers kept per sidecar. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_entries: Option<u32>,
}

/// Data residency.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Residency {
    /// Regions providers must declare to be used.
    #[schemars(length(min = 1, max = 16))]
    pub allowed_regions: Vec<String>,
}

/// What the operator observed about a route.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelRouteStatus {
    /// `Accepted`, `ResolvedRefs`, `Programmed` and `Ready` (all three).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Targets left after residency rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_count: Option<u32>,
    /// Providers excluded by `residency`, as `pool/provider`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_providers: Vec<String>,
    /// Sidecars serving this route and how many run the current table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<SidecarSummary>,
    /// US dollars spent on the requests this route answered over the last 5 minutes, as its
    /// sidecars reported them (every attempt's tokens at the target's prices), as a decimal
    /// string. Absent while no sidecar has reported the route in that window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<Usd>,
    /// Client requests this route sent to a provider, or answered from its cache, over the last
    /// 5 minutes, whether they then succeeded or not (requests refused before any attempt, by
    /// a budget or for bad input, cost nothing and are not counted). Absent while no sidecar
    /// has reported the route in that window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
}

/// Sidecar sync state of a route.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSummary {
    /// Running injected pods for which this route wins.
    pub selected: u32,
    /// Those whose last report carries the current version of their own table.
    pub in_sync: u32,
    /// `<inSync>/<selected>`.
    pub summary: String,
}
