//! `ModelRoute.spec.complexity`: which scorer computes the complexity score that `minComplexity`
//! rules compare against (docs/reference/complexity.md).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Duration;

/// How a route scores the complexity of a prompt.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.scorer == 'Model' ? has(self.model) : !has(self.model)").message("model is required with scorer Model, and only then"))]
#[x_kube(validation = Rule::new("self.scorer == 'Route' ? has(self.route) : !has(self.route)").message("route is required with scorer Route, and only then"))]
pub struct ComplexitySpec {
    /// `Heuristic` (the documented hand-written score), `Model` (a learned model from a model
    /// file, see `model`) or `Route` (asks another route of the same table, see `route`).
    /// Default `Heuristic`.
    #[serde(default)]
    pub scorer: ScorerKind,
    /// Where the model file of scorer `Model` is. Required with `Model`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSource>,
    /// The classifier route of scorer `Route`. Required with `Route`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteScorer>,
    /// What a failed `Model` or `Route` scorer falls back to (a missing or bad model file, a
    /// classifier that times out, fails or answers something other than a number):
    /// `Heuristic`, `Max` (score 100) or `Min` (score 0). Default `Heuristic`.
    #[serde(default)]
    pub on_error: OnError,
}

/// Which scorer a route uses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScorerKind {
    /// The hand-written score of docs/reference/complexity.md.
    #[default]
    Heuristic,
    /// A learned model read from a model file.
    Model,
    /// Another route of the same table, asked with a fixed classification prompt.
    Route,
}

/// What a failed scorer falls back to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// The hand-written score.
    #[default]
    Heuristic,
    /// 100: every rule with a `minComplexity` matches (the strong targets).
    Max,
    /// 0: no rule with a `minComplexity` above 0 matches (the cheap targets).
    Min,
}

/// Where a model file is: a ConfigMap key, or (standalone manifests only) a file.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapRef) != has(self.file)").message("set exactly one of configMapRef and file"))]
pub struct ModelSource {
    /// A key of a ConfigMap in the route's namespace holding the model file (JSON, at most
    /// 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// A path to the model file, relative to the manifest file that names it. Only for the
    /// standalone sidecar's manifests; a cluster refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub file: Option<String>,
}

/// A key of a ConfigMap in the route's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the ConfigMap's `data` (or `binaryData`).
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The classifier route of scorer `Route`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteScorer {
    /// The `model` of another ModelRoute of the same namespace, e.g. a cheap model; it must not
    /// use scorer `Route` itself.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// The longest wait for the classifier's answer before `onError` applies. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How long a score is reused for the same prompt text. Default `1h`; `0s` turns the cache
    /// off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<Duration>,
}
