//! `PromptTemplate`: system-prompt text a route adds to each request, shaped per provider.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Api, conditions_schema};

/// Text added to the system prompt of every request of the routes that name this template,
/// rendered for the target each attempt goes to (a failover renders again for the next target).
/// Templates are Jinja text (`{{ product }}`); they cannot read files or include other templates.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "PromptTemplate",
    namespaced,
    derive = "PartialEq",
    status = "PromptTemplateStatus",
    shortname = "pt",
    printcolumn = r#"{"name":"USED BY","type":"string","jsonPath":".status.usedBy[*]"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplateSpec {
    /// The variables the template text may use, with their defaults. A request overrides them
    /// with the header `x-switchyard-template-vars` (a JSON object of strings); a variable
    /// without a default must be given there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub variables: Vec<TemplateVariable>,

    /// The shapes of the prompt, tried in order against the target an attempt goes to; the
    /// first whose `match` holds is used. A target no variant matches gets no template text.
    #[schemars(length(min = 1, max = 16))]
    pub variants: Vec<TemplateVariant>,
}

/// A variable of a template.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateVariable {
    /// The name the text uses, e.g. `product` for `{{ product }}`.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// The value used when a request does not give one. Without it, every request must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub default: Option<String>,
}

/// One shape of the prompt and the targets it is for.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateVariant {
    /// Which targets this variant is for. An empty match holds for every target.
    #[serde(default, rename = "match")]
    pub match_: VariantMatch,
    /// Text added to the request's system prompt (a system message is created if there is
    /// none).
    pub system: SystemText,
}

/// What a target must be for a variant to apply. At most one key; none matches every target.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.api) ? 1 : 0) + (has(self.provider) ? 1 : 0) + (has(self.model) ? 1 : 0) <= 1").message("a variant matches on at most one of api, provider and model"))]
#[serde(rename_all = "camelCase")]
pub struct VariantMatch {
    /// The wire protocol of the target's provider (`OpenAI`, `Anthropic`, `Gemini`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// One provider of a ProviderPool in the template's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<VariantProvider>,
    /// The target's model name, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub model: Option<String>,
}

/// A provider of a pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VariantProvider {
    /// Name of the ProviderPool.
    #[schemars(length(min = 1, max = 253))]
    pub pool: String,
    /// Name of the provider in that pool.
    #[schemars(length(min = 1, max = 63))]
    pub provider: String,
}

/// Text put before and after the request's own system prompt, each a Jinja template.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.prepend) || has(self.append)").message("system needs prepend, append or both"))]
#[serde(rename_all = "camelCase")]
pub struct SystemText {
    /// Put before the system prompt, separated from it by a blank line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub prepend: Option<String>,
    /// Put after the system prompt, separated from it by a blank line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub append: Option<String>,
}

/// A reference from a ModelRoute, one of its rules or one of its targets to a template in the
/// route's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplateRef {
    /// Name of the PromptTemplate.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What the operator observed about a template.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplateStatus {
    /// `Accepted` (the text parses and uses only declared variables) and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The ModelRoutes (names, in the template's namespace) that reference this template, from
    /// their spec, a rule or a target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    /// `<name>@<first 8 hex digits of the SHA-256 of the spec>`, as the header
    /// `x-switchyard-template` and the request log show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[cfg(test)]
mod tests;
