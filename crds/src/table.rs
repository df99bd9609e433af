//! The compiled route table: the wire format the operator serves and sidecars consume.
//!
//! Everything a sidecar needs to serve is resolved here: keys read from Secrets, defaults filled
//! in, durations in milliseconds and prices as numbers, so the data plane does no parsing or
//! lookups of its own. Maps are `BTreeMap`s so that serialization is canonical and the content
//! hash ([`RouteTable::version`]) is the same on every replica.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::SecretString;
use crate::v1alpha1::{
    Api, BudgetMode, FailureClass, ModelType, OnError, Publisher, ScorerKind, Strategy,
    WhenUnreachable,
};

/// Bumped only on an incompatible change of this format.
pub const SCHEMA_VERSION: u32 = 1;

/// Every route one sidecar serves, and the upstreams they use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    /// The format's schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// First 16 hex digits of the SHA-256 of the canonical table; also the config ETag.
    pub version: String,
    /// Who compiled it, e.g. `switchyard-sidecar --manifests`. Not part of the version.
    pub generated_by: String,
    /// Routes by the `model` name clients send.
    pub routes: BTreeMap<String, Route>,
    /// Upstreams by `pool/provider`.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Budgets that count this table's requests, by `namespace/name`. Absent when there are
    /// none, so tables without budgets keep the versions they had before budgets existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, Budget>,
    /// The workload the pods of this table belong to, which their requests are attributed to
    /// (request log, reports). Absent in standalone mode and for tables compiled for no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Complexity model files by their checksum (`sha256:<hex>`), as read from the ConfigMap or
    /// file, for the routes with scorer `Model` ([`Complexity::model`]): each once, however many
    /// routes use it. Absent when none, so tables without models keep their versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub complexity_models: BTreeMap<String, String>,
    /// Prompt templates the routes' targets name, by name (the table's namespace). Absent when
    /// there are none, so tables without templates keep their versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, crate::template::Template>,
}

/// Who a pod's requests are attributed to: its namespace, its top controlling owner and its
/// ServiceAccount (docs/reference/operator.md#spend-per-workload).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub namespace: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`, `Pod` for a pod no controller
    /// owns, or the kind of another controller (an operator's custom resource).
    pub kind: String,
    pub name: String,
    pub service_account: String,
}

impl Workload {
    /// `<namespace>/<kind>/<name>`, as Budget status `topWorkloads` names it.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }

    /// `<kind>/<name>`, the `workload` label of the operator's metrics (beside `namespace`).
    pub fn kind_name(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// A compiled `ModelRoute`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The route's `metadata.name`.
    pub name: String,
    /// The route's namespace.
    pub namespace: String,
    /// The client-facing model name.
    pub model: String,
    /// How targets are ordered.
    pub strategy: Strategy,
    /// Targets when no rule matches; never empty.
    pub targets: Vec<Target>,
    /// Rules in order; the first match replaces `targets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Failure classes that move on to the next target.
    pub failover_on: Vec<FailureClass>,
    /// Most targets tried for one request.
    pub max_attempts: u32,
    /// Response cache, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CachePolicy>,
    /// The complexity scorer, when the route sets `complexity` (absent: the heuristic, and
    /// tables of routes without it keep their versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<Complexity>,
}

/// A route's compiled `complexity`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Complexity {
    /// Which scorer scores the route's prompts.
    pub scorer: ScorerKind,
    /// Scorer `Model`: the checksum of its file, a key of [`RouteTable::complexity_models`].
    /// Absent when the file did not resolve: then `on_error` scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Scorer `Route`: the classifier route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<ClassifierRoute>,
    /// What scores when the scorer fails.
    pub on_error: OnError,
}

/// The classifier route of scorer `Route`, durations in milliseconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClassifierRoute {
    /// The classifier route's client-facing `model`, a key of [`RouteTable::routes`].
    pub model: String,
    /// The longest wait for its answer.
    pub timeout_ms: u64,
    /// How long a score is reused for the same prompt text; 0: not at all.
    pub cache_ttl_ms: u64,
}

/// A compiled rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The rule's name.
    pub name: String,
    /// Minimum estimated prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_prompt_tokens: Option<u32>,
    /// Whether the request must (or must not) offer tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_tools: Option<bool>,
    /// Header name (lowercase) and exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<(String, String)>,
    /// Minimum complexity score, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_complexity: Option<u8>,
    /// Targets when the rule matches; never empty.
    pub targets: Vec<Target>,
}

/// One (pool, provider, model) with what the data plane needs to price and pick it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Key into [`RouteTable::upstreams`]: `pool/provider`.
    pub upstream: String,
    /// The upstream model name.
    pub model: String,
    /// Relative share for `Weighted`; at least 1.
    pub weight: u32,
    /// USD per million tokens.
    pub pricing: Pricing,
    /// Context window in tokens, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// What the model does: `Chat` (left out, so tables without embeddings keep their versions)
    /// or `Embedding`. Every target of a route has the same type.
    #[serde(rename = "type", default, skip_serializing_if = "ModelType::is_chat")]
    pub kind: ModelType,
    /// The model's publisher on Vertex AI: `Google` (left out) or `Anthropic`.
    #[serde(default, skip_serializing_if = "Publisher::is_google")]
    pub publisher: Publisher,
    /// The prompt template requests to this target get (a key of [`RouteTable::templates`]):
    /// the target's own, else its rule's, else its route's. Absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<String>,
}

/// USD per million tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// Uncached input tokens.
    pub input_per_million: f64,
    /// Cached input tokens.
    pub cached_input_per_million: f64,
    /// Output tokens.
    pub output_per_million: f64,
}

/// A provider endpoint, fully resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    /// The pool's name.
    pub pool: String,
    /// The provider's name in the pool.
    pub provider: String,
    /// Wire protocol.
    pub api: Api,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Region, when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The provider key, resolved from its Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretString>,
    /// Client headers passed upstream, lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_headers: Vec<String>,
    /// The provider serves OpenAI's Responses API too (`responsesApi`): a route whose targets all
    /// do passes `POST /v1/responses` through.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub responses_api: bool,
    /// Azure classic deployment URLs' `api-version`; absent for the `/openai/v1` API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_api_version: Option<String>,
    /// AWS credentials (`api: Bedrock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsAuth>,
    /// Google Cloud project and service account (`api: VertexAI`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpAuth>,
    /// Time limits in milliseconds.
    pub timeouts: TimeoutsMs,
    /// Per-sidecar limits.
    #[serde(default)]
    pub limits: Limits,
    /// Circuit-breaker settings.
    pub breaker: Breaker,
}

impl Upstream {
    /// `pool/provider`, as used in headers, metric labels and [`RouteTable::upstreams`].
    pub fn id(&self) -> String {
        format!("{}/{}", self.pool, self.provider)
    }

    /// Every secret this upstream holds, for scrubbing them from anything shown.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretString> {
        let aws = self.aws.as_ref().and_then(|a| a.keys.as_ref());
        self.api_key
            .iter()
            .chain(aws.map(|k| &k.secret_access_key))
            .chain(aws.and_then(|k| k.session_token.as_ref()))
            .chain(self.gcp.as_ref().map(|g| &g.service_account_key))
    }

    /// Every secret replaced by `***`.
    fn redact(&mut self) {
        if self.api_key.is_some() {
            self.api_key = Some(SecretString::redacted());
        }
        if let Some(keys) = self.aws.as_mut().and_then(|a| a.keys.as_mut()) {
            keys.access_key_id = SecretString::redacted();
            keys.secret_access_key = SecretString::redacted();
            if keys.session_token.is_some() {
                keys.session_token = Some(SecretString::redacted());
            }
        }
        if let Some(gcp) = self.gcp.as_mut() {
            gcp.service_account_key = SecretString::redacted();
        }
    }
}

/// How a Bedrock upstream gets AWS credentials: static keys, or a web identity exchanged at STS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsAuth {
    /// Keys resolved from the provider's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<AwsKeys>,
    /// A role to assume with the pod's web identity token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_identity: Option<WebIdentity>,
}

/// Static AWS keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsKeys {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretString>,
}

/// `AssumeRoleWithWebIdentity` settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebIdentity {
    pub role_arn: String,
    /// Path of the token file in the sidecar's container.
    pub token_file: String,
    /// STS endpoint, without a trailing slash.
    pub sts_url: String,
}

/// A Vertex AI upstream's project and service account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcpAuth {
    pub project: String,
    /// The service account's whole JSON key file.
    pub service_account_key: SecretString,
    /// The OAuth2 token endpoint, when the provider overrides the key file's `token_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
}

/// Time limits in milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutsMs {
    /// TCP and TLS connect.
    pub connect: u64,
    /// Request sent to first streamed event.
    pub first_token: u64,
    /// Longest gap between stream events.
    pub idle: u64,
    /// Whole request.
    pub total: u64,
}

impl Default for TimeoutsMs {
    fn default() -> Self {
        Self {
            // A provider that cannot complete TCP and TLS in 5 s is down; fail over early.
            connect: 5_000,
            // Long prompts on large models take seconds to start; 30 s only catches stalls.
            first_token: 30_000,
            // Even slow models stream far more often; 30 s without an event is a stalled stream.
            idle: 30_000,
            // Long generations run minutes; 10 min bounds a request that never ends.
            total: 600_000,
        }
    }
}

/// Per-sidecar limits; `None` is unlimited.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// Circuit-breaker settings, in milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Breaker {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u32,
    /// How long it stays open before a probe.
    pub cooldown_ms: u64,
    /// Cap on honoured `Retry-After`.
    pub max_retry_after_ms: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            // Enough that a few unlucky requests do not take a provider out.
            consecutive_failures: 5,
            // Long enough for a provider blip to pass, short enough to come back soon.
            cooldown_ms: 30_000,
            // A Retry-After blocks the provider at most this long: a hint of hours must not take
            // it out for hours.
            max_retry_after_ms: 60_000,
        }
    }
}

/// A compiled `Budget`: which of the table's requests it counts, and its caps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// The budget's namespace.
    pub namespace: String,
    /// The budget's `metadata.name`.
    pub name: String,
    /// Route names (`metadata.name`) whose requests count; empty: every route of the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Upstreams (`pool/provider`) whose answers count; empty: every upstream. When set, an
    /// exhausted budget makes these targets ineligible instead of refusing the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// The caps, in the order of `spec.limits`; never empty.
    pub limits: Vec<BudgetLimit>,
    /// Refuse, or only count.
    pub mode: BudgetMode,
    /// What a sidecar does when its lease expires unrenewed (pod mode).
    pub when_unreachable: WhenUnreachable,
    /// A `Budget` object, or a provider's fleet-wide rate limit (`limits.scope: Fleet`).
    /// Written only for a fleet limit, so tables with budgets keep their versions.
    #[serde(default, skip_serializing_if = "BudgetKind::is_budget")]
    pub kind: BudgetKind,
}

/// What a [`Budget`] entry of a table stands for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BudgetKind {
    /// A `Budget` object, named `namespace/name`.
    #[default]
    Budget,
    /// The `requestsPerMinute`/`tokensPerMinute` of a provider with `limits.scope: Fleet`, named
    /// `namespace/pool/provider` (a Budget's name has no '/', so the two never collide). It has
    /// no Budget object: no status, no Events, no `switchyard_budget_*` series.
    FleetLimit,
}

impl BudgetKind {
    /// Whether this is the default kind, a `Budget` object.
    pub fn is_budget(&self) -> bool {
        *self == Self::Budget
    }
}

impl Budget {
    /// `namespace/name`, as used in metric labels, messages and [`RouteTable::budgets`].
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the budget counts requests of route `route` (a `metadata.name` in the budget's
    /// namespace) at all, whatever serves them.
    pub fn selects_route(&self, namespace: &str, route: &str) -> bool {
        self.namespace == namespace
            && (self.routes.is_empty() || self.routes.iter().any(|r| r == route))
    }

    /// Whether this entry is a provider's fleet-wide rate limit rather than a `Budget`.
    pub fn is_fleet_limit(&self) -> bool {
        self.kind == BudgetKind::FleetLimit
    }
}

/// One cap over one window, amounts as exact integers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetLimit {
    /// The period as written (`Month`, `1m`); parsed by `window::Period::parse`.
    pub period: String,
    /// Most millionths of a US dollar per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_micros: Option<u64>,
    /// Most requests per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Most tokens (prompt plus completion) per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// Response cache settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CachePolicy {
    /// Time to live in milliseconds.
    pub ttl_ms: u64,
    /// Most entries per sidecar.
    pub max_entries: u32,
}

// === impl RouteTable ===

impl RouteTable {
    /// Builds a table and stamps its content version.
    pub fn new(
        routes: BTreeMap<String, Route>,
        upstreams: BTreeMap<String, Upstream>,
        generated_by: impl Into<String>,
    ) -> Self {
        let mut table = Self {
            schema_version: SCHEMA_VERSION,
            version: String::new(),
            generated_by: String::new(),
            routes,
            upstreams,
            budgets: BTreeMap::new(),
            workload: None,
            complexity_models: BTreeMap::new(),
            templates: BTreeMap::new(),
        };
        table.version = table.content_hash();
        table.generated_by = generated_by.into();
        table
    }

    /// The table with `budgets` added, its version stamped anew.
    pub fn with_budgets(mut self, budgets: BTreeMap<String, Budget>) -> Self {
        self.budgets = budgets;
        self.version = self.content_hash();
        self
    }

    /// The table attributed to `workload`, its version stamped anew.
    pub fn with_workload(mut self, workload: Option<Workload>) -> Self {
        self.workload = workload;
        self.version = self.content_hash();
        self
    }

    /// The hash of everything but `version` and `generatedBy`, so that every replica (and the
    /// standalone loader) computes the same version for the same content.
    pub fn content_hash(&self) -> String {
        let canonical = Self {
            version: String::new(),
            generated_by: String::new(),
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&canonical).expect("a route table always serializes");
        let digest = Sha256::digest(&bytes);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A copy fit to show: every key replaced by `***`.
    pub fn redacted(&self) -> Self {
        let mut table = self.clone();
        for upstream in table.upstreams.values_mut() {
            upstream.redact();
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(key: &str) -> Upstream {
        Upstream {
            pool: "p".into(),
            provider: "openai".into(),
            api: Api::OpenAI,
            base_url: "https://api.openai.com/v1".into(),
            region: None,
            api_key: Some(SecretString::new(key)),
            forward_headers: vec![],
            responses_api: false,
            azure_api_version: None,
            aws: None,
            gcp: None,
            timeouts: TimeoutsMs::default(),
            limits: Limits::default(),
            breaker: Breaker::default(),
        }
    }

    #[test]
    fn version_is_a_content_hash_independent_of_the_generator() {
        let ups = BTreeMap::from([("p/openai".to_string(), upstream("k1"))]);
        let a = RouteTable::new(BTreeMap::new(), ups.clone(), "replica-a");
        let b = RouteTable::new(BTreeMap::new(), ups, "replica-b");
        assert_eq!(a.version, b.version);
        assert_eq!(a.version.len(), 16);

        let other = BTreeMap::from([("p/openai".to_string(), upstream("k2"))]);
        let c = RouteTable::new(BTreeMap::new(), other, "replica-a");
        assert_ne!(
            a.version, c.version,
            "a key rotation must change the version"
        );
    }

    #[test]
    fn redacted_tables_show_no_keys() {
        let ups = BTreeMap::from([("p/openai".to_string(), upstream("sk-secret"))]);
        let table = RouteTable::new(BTreeMap::new(), ups, "t");
        let shown = serde_json::to_string(&table.redacted()).unwrap();
        assert!(!shown.contains("sk-secret"));
        assert!(shown.contains("\"apiKey\":\"***\""));
        // The wire format itself carries the key: that is how sidecars receive it.
        assert!(serde_json::to_string(&table).unwrap().contains("sk-secret"));
    }
}
