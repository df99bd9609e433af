//! `ProviderPool`: where models live, what they cost and how to reach them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Api, Duration, Price, conditions_schema};

/// A set of LLM providers with their models, prices, keys, timeouts and limits.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "ProviderPool",
    namespaced,
    derive = "PartialEq",
    status = "ProviderPoolStatus",
    shortname = "pp",
    printcolumn = r#"{"name":"PROVIDERS","type":"string","jsonPath":".status.summary"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderPoolSpec {
    /// The providers of this pool. Names are unique within the pool.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub providers: Vec<Provider>,

    /// Circuit-breaker settings for every (provider, model) of the pool. Each sidecar keeps its
    /// own breakers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// One provider endpoint and the models it serves.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// Name of the provider, unique in the pool; targets refer to it as `provider`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// Wire protocol: `OpenAI`, `Anthropic`, `Gemini`, `AzureOpenAI`, `Bedrock` or `VertexAI`.
    /// DeepSeek, Qwen, Mistral, Groq, vLLM and other OpenAI-compatible APIs use `OpenAI` with
    /// their own `baseUrl`.
    pub api: Api,

    /// Everything before the operation path, as the official SDKs take it, e.g.
    /// `https://api.openai.com/v1`, `https://api.anthropic.com`,
    /// `https://generativelanguage.googleapis.com/v1beta`. Defaults to the official URL of `api`
    /// (Bedrock `https://bedrock-runtime.{region}.amazonaws.com`, Vertex AI
    /// `https://{region}-aiplatform.googleapis.com/v1`); required for `AzureOpenAI`.
    /// A provider with an `apiKey` must use `https://` unless its host is loopback or
    /// cluster-local (`*.svc`, `*.svc.cluster.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub base_url: Option<String>,

    /// Region the provider serves from (for example `eu`), matched by a route's
    /// `residency.allowedRegions`. A provider without a region never satisfies a residency rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// Where the provider's API key is. In a cluster the Secret must be in the pool's namespace
    /// and carry the label `switchyard.dev/provider-key: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeySource>,

    /// Client request headers passed upstream (case-insensitive names). Default: none.
    /// Credentials (`Authorization`, `x-api-key`, `api-key`, `x-goog-api-key`, `Cookie`) are never
    /// forwarded, listed or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub forward_headers: Vec<String>,

    /// Whether this `api: OpenAI` provider also serves OpenAI's Responses API
    /// (`POST {baseUrl}/responses`). When every target of a route declares it, the sidecar passes
    /// `POST /v1/responses` requests through to it unchanged but for `model`, built-in tools
    /// included, and stored state (`previous_response_id`, `store: true`, `conversation`) when
    /// the route's targets are this one provider; otherwise it translates them to Chat
    /// Completions and refuses stored state. `background: true` is refused either way (the
    /// sidecar does not proxy retrieving or cancelling a response). Allowed only with
    /// `api: OpenAI`. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_api: Option<bool>,

    /// Azure OpenAI settings (`api: AzureOpenAI` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSettings>,

    /// AWS credentials for `api: Bedrock` (and only for it): keys from a Secret, or a web identity
    /// (IRSA) exchanged for short-lived keys at STS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsSettings>,

    /// Google Cloud project and service account for `api: VertexAI` (and only for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpSettings>,

    /// Time limits for requests to this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,

    /// Rate and concurrency limits. By default each sidecar enforces them on its own (fleet
    /// throughput can reach limits × sidecars); `scope: Fleet` makes the rates hold for the whole
    /// cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,

    /// The models this provider serves, with prices. Names are unique within the provider.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub models: Vec<Model>,
}

/// A reference to a provider key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySource {
    /// The Secret and key holding the API key.
    pub secret_key_ref: SecretKeyRef,
}

/// Azure OpenAI settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureSettings {
    /// The `api-version` of classic deployment URLs
    /// (`{baseUrl}/openai/deployments/{model}/chat/completions?api-version=…`, `baseUrl` being the
    /// resource's root). Unset: the `/openai/v1` API, `baseUrl` ending in `/openai/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub api_version: Option<String>,
}

/// Where a Bedrock provider's AWS credentials come from: `credentialsSecretRef`, or `roleArn`
/// with `webIdentityTokenFile` (EKS IAM roles for service accounts).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AwsSettings {
    /// A Secret in the pool's namespace with the keys `accessKeyId`, `secretAccessKey` and,
    /// optionally, `sessionToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// The IAM role to assume with the pod's web identity token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 20, max = 2048))]
    pub role_arn: Option<String>,
    /// The web identity token file in the sidecar's container, e.g.
    /// `/var/run/secrets/eks.amazonaws.com/serviceaccount/token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub web_identity_token_file: Option<String>,
    /// The STS endpoint for `AssumeRoleWithWebIdentity`. Default
    /// `https://sts.{region}.amazonaws.com`. Same URL rules as `baseUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub sts_url: Option<String>,
}

/// A Google Cloud project and the service account a Vertex AI provider authenticates as.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcpSettings {
    /// The project id the models are served in.
    #[schemars(length(min = 1, max = 63))]
    pub project: String,
    /// The Secret key holding the service account's JSON key file.
    pub service_account_key_secret_ref: SecretKeyRef,
    /// The OAuth2 token endpoint. Default: the key file's `token_uri`. Same URL rules as
    /// `baseUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub token_url: Option<String>,
}

/// A Secret in the pool's namespace, by name.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the pool's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's `data` (or `stringData`).
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Time limits for one provider. Each is a Gateway API duration such as `2s` or `1m30s`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Time to establish the connection (TCP and TLS). Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
    /// Time from sending a streamed request to the first event. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token: Option<Duration>,
    /// Longest gap between two events of a stream. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
    /// Time for the whole request, streamed or not. Default `600s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Duration>,
}

/// Limits for one provider. A provider at its limit is skipped in favour of other targets.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Who `requestsPerMinute` and `tokensPerMinute` hold for: `Sidecar` (each sidecar on its
    /// own) or `Fleet` (all sidecars together, divided among them by recent demand).
    /// `maxConcurrent` is always per sidecar. Default `Sidecar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<LimitScope>,
    /// Requests per minute. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens per minute, as the provider reports them. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent: Option<u32>,
}

/// Who a provider's rate limits hold for.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitScope {
    /// Each sidecar enforces the rates on its own traffic.
    #[default]
    Sidecar,
    /// The rates hold for every sidecar that uses the provider together: the operator divides
    /// them among those sidecars in proportion to their recent demand, each getting at least a
    /// small floor.
    Fleet,
}

/// A model a provider serves and its price.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// The provider's model name, sent upstream as is (e.g. `gpt-4o`, `claude-sonnet-4`).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// USD per million uncached input tokens, as a quoted decimal (`"2.50"`).
    pub input_per_million: Price,
    /// USD per million cached input tokens. Default: the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_million: Option<Price>,
    /// USD per million output tokens, as a quoted decimal (`"10.00"`).
    pub output_per_million: Price,
    /// Context window in tokens. `ContextLengthExceeded` fails over only to targets with a larger
    /// window. Default: unknown (never chosen for such a failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<u32>,
    /// What the model does: `Chat` (chat completions, `/v1/chat/completions` and
    /// `/v1/messages`) or `Embedding` (`/v1/embeddings`). A route serves one kind only. Providers
    /// with APIs other than `OpenAI` and `Gemini` cannot declare `Embedding`. Default
    /// `Chat`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelType>,
    /// Who publishes the model, for `api: VertexAI`: `Google` (Gemini, `generateContent`) or
    /// `Anthropic` (Claude, `rawPredict`). Default `Google`; other APIs ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<Publisher>,
}

/// The publisher of a Vertex AI model, which decides its API.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Publisher {
    /// Gemini models: `publishers/google/models/{m}:generateContent`.
    #[default]
    Google,
    /// Claude models: `publishers/anthropic/models/{m}:rawPredict`.
    Anthropic,
}

impl Publisher {
    /// Whether this is the default, which tables leave out so that their versions do not change.
    pub fn is_google(&self) -> bool {
        *self == Publisher::Google
    }
}

/// What a model does, and so which endpoint reaches it.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
)]
pub enum ModelType {
    /// Chat completions: `POST /v1/chat/completions` and `POST /v1/messages`.
    #[default]
    Chat,
    /// Embeddings: `POST /v1/embeddings`. Priced at `inputPerMillion`; there is no output.
    Embedding,
}

impl ModelType {
    /// `Chat` or `Embedding`, as manifests and messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Chat => "Chat",
            ModelType::Embedding => "Embedding",
        }
    }

    /// Whether this is the default, which tables leave out so that their versions do not change.
    pub fn is_chat(&self) -> bool {
        *self == ModelType::Chat
    }
}

/// When a sidecar stops sending to a failing (provider, model) and for how long.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: Option<u32>,
    /// How long an open circuit stays open before one probe request is let through. Default
    /// `30s`. Authentication and credit failures open it for 10 × cooldown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// The longest `Retry-After` honoured from a provider. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_after: Option<Duration>,
}

/// What the operator observed about a pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProviderPoolStatus {
    /// `Accepted`, `ResolvedRefs` and `Ready` (both of the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-line summary for `kubectl get`, e.g. `3 (1 degraded)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Health and spend per provider over the last 5 minutes, from sidecar reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub providers: Vec<ProviderStatus>,
}

/// Health and spend of one provider over the last 5 minutes. Windows, never running totals.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// The provider's name in the pool.
    pub name: String,
    /// `Healthy`, `Degraded` or `CircuitOpen`.
    pub state: String,
    /// Sidecars with the circuit open over sidecars that used the provider, e.g. `3/120`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_open_sidecars: Option<String>,
    /// Share of failed requests, e.g. `0.4%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<String>,
    /// Median latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_latency_ms: Option<String>,
    /// Tokens used, e.g. `1.2M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
    /// USD spent, e.g. `12.40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn limits_written_before_scope_existed_still_load_and_are_written_back_unchanged() {
        let old = json!({"requestsPerMinute": 500, "tokensPerMinute": 400000, "maxConcurrent": 64});
        let limits: Limits = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(limits.scope, None, "unset means Sidecar");
        assert_eq!(serde_json::to_value(&limits).unwrap(), old);
    }

    #[test]
    fn the_scope_is_sidecar_or_fleet() {
        let fleet: Limits =
            serde_json::from_value(json!({"scope": "Fleet", "requestsPerMinute": 500})).unwrap();
        assert_eq!(fleet.scope, Some(LimitScope::Fleet));
        assert_eq!(LimitScope::default(), LimitScope::Sidecar);
        assert!(serde_json::from_value::<Limits>(json!({"scope": "fleet"})).is_err());

        let crd = serde_json::to_value(ProviderPool::crd()).unwrap();
        let limits = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["providers"]["items"]["properties"]["limits"];
        assert_eq!(
            limits["properties"]["scope"]["enum"],
            json!(["Sidecar", "Fleet"])
        );
        assert!(
            !limits["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("scope"))),
            "optional, so older manifests stay valid"
        );
    }

    #[test]
    fn a_model_is_chat_unless_it_says_embedding_and_chat_is_not_written_back() {
        let old = json!({"name": "m", "inputPerMillion": "1", "outputPerMillion": "2"});
        let model: Model = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(model.kind, None, "unset means Chat");
        assert_eq!(serde_json::to_value(&model).unwrap(), old);
        let mut embedding = old.clone();
        embedding["type"] = json!("Embedding");
        let model: Model = serde_json::from_value(embedding.clone()).unwrap();
        assert_eq!(model.kind, Some(ModelType::Embedding));
        assert_eq!(serde_json::to_value(&model).unwrap(), embedding);
        let mut wrong = old;
        wrong["type"] = json!("embedding");
        assert!(serde_json::from_value::<Model>(wrong).is_err());

        let crd = serde_json::to_value(ProviderPool::crd()).unwrap();
        let model = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["providers"]["items"]["properties"]["models"]["items"];
        assert_eq!(
            model["properties"]["type"]["enum"],
            json!(["Chat", "Embedding"])
        );
    }
}
