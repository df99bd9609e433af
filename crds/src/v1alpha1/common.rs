//! Types shared by both resources: enumerations, durations, prices and status conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The wire protocol a provider speaks.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Api {
    /// OpenAI Chat Completions; also DeepSeek, Qwen, Mistral, Groq, vLLM and other compatible APIs.
    #[serde(rename = "OpenAI", alias = "openai")]
    OpenAI,
    /// Anthropic Messages.
    #[serde(rename = "Anthropic", alias = "anthropic")]
    Anthropic,
    /// Google Gemini `generateContent`.
    #[serde(rename = "Gemini", alias = "gemini")]
    Gemini,
    /// Azure OpenAI: the `/openai/v1` API, or classic deployment URLs when `azure.apiVersion` is
    /// set; authenticated with the `api-key` header.
    #[serde(rename = "AzureOpenAI", alias = "azureopenai")]
    AzureOpenAI,
    /// Amazon Bedrock Converse / ConverseStream, signed with AWS Signature Version 4.
    #[serde(rename = "Bedrock", alias = "bedrock")]
    Bedrock,
    /// Google Vertex AI: Gemini models (`generateContent`) and Anthropic models (`rawPredict`),
    /// authenticated with OAuth2 access tokens from a service account.
    #[serde(rename = "VertexAI", alias = "vertexai")]
    VertexAI,
}

impl Api {
    /// The provider's official base URL, used when `baseUrl` is omitted: `None` for Azure
    /// (every resource has its own host) and for the regional clouds without a region.
    pub fn default_base_url(self, region: Option<&str>) -> Option<String> {
        match self {
            Api::OpenAI => Some("https://api.openai.com/v1".into()),
            Api::Anthropic => Some("https://api.anthropic.com".into()),
            Api::Gemini => Some("https://generativelanguage.googleapis.com/v1beta".into()),
            Api::AzureOpenAI => None,
            Api::Bedrock => region.map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com")),
            // The `global` location has no regional host.
            Api::VertexAI => region.map(|r| match r {
                "global" => "https://aiplatform.googleapis.com/v1".into(),
                r => format!("https://{r}-aiplatform.googleapis.com/v1"),
            }),
        }
    }

    /// The name manifests and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAI => "OpenAI",
            Api::Anthropic => "Anthropic",
            Api::Gemini => "Gemini",
            Api::AzureOpenAI => "AzureOpenAI",
            Api::Bedrock => "Bedrock",
            Api::VertexAI => "VertexAI",
        }
    }
}

/// The one classification of failures (docs/reference/sidecar.md). It decides failover, the status
/// code sent to the client, circuit-breaker accounting and the `outcome`/`reason` metric labels.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum FailureClass {
    /// DNS failure, connection refused or reset, TLS failure.
    ConnectError,
    /// Connect, first-token, idle or total timeout.
    Timeout,
    /// HTTP 429.
    RateLimited,
    /// HTTP 529, or 503 saying "overloaded".
    Overloaded,
    /// Any other 5xx, or an answer that is not what the provider's API promises.
    ServerError,
    /// HTTP 401 or 403: the provider refused the pool's key.
    AuthError,
    /// HTTP 402 or a "credit balance" error.
    OutOfCredits,
    /// The prompt does not fit the model's context window.
    ContextLengthExceeded,
    /// The provider refused the content.
    ContentFiltered,
    /// The caller's own mistake: returned as is, never failed over.
    ClientError,
}

impl FailureClass {
    /// Every class, in declaration order.
    pub const ALL: [FailureClass; 10] = [
        Self::ConnectError,
        Self::Timeout,
        Self::RateLimited,
        Self::Overloaded,
        Self::ServerError,
        Self::AuthError,
        Self::OutOfCredits,
        Self::ContextLengthExceeded,
        Self::ContentFiltered,
        Self::ClientError,
    ];

    /// The classes failed over on when a route does not say: all but `ClientError` and
    /// `ContentFiltered`.
    pub fn default_failover() -> Vec<FailureClass> {
        Self::ALL
            .into_iter()
            .filter(|c| !matches!(c, Self::ClientError | Self::ContentFiltered))
            .collect()
    }

    /// The UpperCamelCase name, as used in manifests and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectError => "ConnectError",
            Self::Timeout => "Timeout",
            Self::RateLimited => "RateLimited",
            Self::Overloaded => "Overloaded",
            Self::ServerError => "ServerError",
            Self::AuthError => "AuthError",
            Self::OutOfCredits => "OutOfCredits",
            Self::ContextLengthExceeded => "ContextLengthExceeded",
            Self::ContentFiltered => "ContentFiltered",
            Self::ClientError => "ClientError",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A duration in the Gateway API format, e.g. `2s`, `250ms`, `1m30s`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct Duration(#[schemars(regex(pattern = "^([0-9]{1,5}(h|m|s|ms)){1,4}$"))] pub String);

impl Duration {
    /// The parsed value, or `None` when the text does not match the pattern.
    pub fn parse(&self) -> Option<std::time::Duration> {
        crate::duration::parse(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(text: &str) -> Self {
        Self(text.to_string())
    }
}

/// A price in USD per million tokens, as a decimal string such as `"2.50"` (quote it in YAML).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct Price(#[schemars(regex(pattern = r"^[0-9]+(\.[0-9]{1,6})?$"))] pub String);

impl Price {
    /// The price as a number, or `None` when it is not a non-negative decimal with at most six
    /// fractional digits.
    pub fn parse(&self) -> Option<f64> {
        decimal_parts(&self.0).and_then(|_| self.0.parse().ok())
    }
}

impl From<&str> for Price {
    fn from(text: &str) -> Self {
        Self(text.to_string())
    }
}

/// An amount of US dollars as a decimal string such as `"500.00"` (quote it in YAML).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct Usd(#[schemars(regex(pattern = r"^[0-9]+(\.[0-9]{1,6})?$"))] pub String);

impl Usd {
    /// Millionths of a dollar, exactly: `"500.00"` is 500,000,000. Counting in whole micro-dollars
    /// keeps sums exact where floating point would drift. `None` when the text is not a
    /// non-negative decimal with at most six fractional digits, or does not fit a `u64`.
    pub fn micros(&self) -> Option<u64> {
        let (whole, fraction) = decimal_parts(&self.0)?;
        let scale = 10u64.pow(6 - fraction.len() as u32);
        let fraction: u64 = fraction.parse().ok()?;
        whole
            .parse::<u64>()
            .ok()?
            .checked_mul(1_000_000)?
            .checked_add(fraction * scale)
    }

    /// The amount written with cents and as many further digits as it needs: `412.1` dollars is
    /// `"412.10"`, one micro-dollar is `"0.000001"`.
    pub fn from_micros(micros: u64) -> Self {
        let fraction = format!("{:06}", micros % 1_000_000);
        let fraction = fraction.trim_end_matches('0');
        Self(format!("{}.{fraction:0<2}", micros / 1_000_000,))
    }
}

impl From<&str> for Usd {
    fn from(text: &str) -> Self {
        Self(text.to_string())
    }
}

/// The whole and fractional digits of a non-negative decimal with at most six fractional digits
/// (the prices and amounts pattern); the fraction is `"0"` when none is written.
pub(crate) fn decimal_parts(text: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction) && fraction.len() <= 6).then_some((whole, fraction))
}

/// Conditions as a list keyed by `type`, the shape `kubectl` and server-side apply expect.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_base_urls_follow_the_region() {
        let url = |api: Api, region| api.default_base_url(region);
        assert_eq!(
            url(Api::Bedrock, Some("eu-west-1")).as_deref(),
            Some("https://bedrock-runtime.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            url(Api::VertexAI, Some("us-east5")).as_deref(),
            Some("https://us-east5-aiplatform.googleapis.com/v1")
        );
        assert_eq!(
            url(Api::VertexAI, Some("global")).as_deref(),
            Some("https://aiplatform.googleapis.com/v1")
        );
        assert_eq!(url(Api::Bedrock, None), None);
        assert_eq!(url(Api::AzureOpenAI, Some("eastus")), None);
    }

    #[test]
    fn prices_parse_like_the_schema_pattern() {
        assert_eq!(Price::from("2.50").parse(), Some(2.5));
        assert_eq!(Price::from("0").parse(), Some(0.0));
        assert_eq!(Price::from("0.000001").parse(), Some(0.000001));
        for bad in ["-1", "1.", ".5", "1.1234567", "1e3", "", "abc"] {
            assert_eq!(Price::from(bad).parse(), None, "{bad:?}");
        }
    }

    #[test]
    fn usd_amounts_count_exact_micro_dollars() {
        assert_eq!(Usd::from("500.00").micros(), Some(500_000_000));
        assert_eq!(Usd::from("0.000001").micros(), Some(1));
        assert_eq!(Usd::from("7").micros(), Some(7_000_000));
        assert_eq!(Usd::from("18446744073709.551615").micros(), Some(u64::MAX));
        for bad in [
            "-1",
            "1.",
            ".5",
            "1.1234567",
            "1e3",
            "",
            "abc",
            "18446744073710",
        ] {
            assert_eq!(Usd::from(bad).micros(), None, "{bad:?}");
        }
    }

    #[test]
    fn usd_amounts_are_written_with_cents_and_no_needless_digits() {
        assert_eq!(Usd::from_micros(412_100_000).0, "412.10");
        assert_eq!(Usd::from_micros(0).0, "0.00");
        assert_eq!(Usd::from_micros(1).0, "0.000001");
        assert_eq!(Usd::from_micros(1_234_567).0, "1.234567");
        for micros in [0, 1, 999_999, 1_000_000, 412_100_000, u64::MAX] {
            assert_eq!(Usd::from_micros(micros).micros(), Some(micros));
        }
    }

    #[test]
    fn api_accepts_lowercase_aliases_but_writes_canonical_names() {
        let api: Api = serde_json::from_str("\"anthropic\"").unwrap();
        assert_eq!(api, Api::Anthropic);
        assert_eq!(serde_json::to_string(&Api::OpenAI).unwrap(), "\"OpenAI\"");
    }
}
