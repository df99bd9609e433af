//! Compiling one ProviderPool: defaults, prices, durations, the URL security rules and the
//! Secret lookups. Each provider is judged on its own, so one bad key leaves the others usable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube::ResourceExt;

use super::{
    CompiledProvider, Findings, Inputs, Kind, ObjectKey, PoolOutcome, ProviderIndex,
    SECRET_OPT_IN_LABEL, reasons,
};
use crate::secret::SecretString;
use crate::table::{self, AwsAuth, AwsKeys, GcpAuth, Pricing, TimeoutsMs, Upstream, WebIdentity};
use crate::v1alpha1::{self, Api, CircuitBreaker, ModelType, Provider, ProviderPool, Publisher};

/// The models of a provider by name.
pub(super) type Models = BTreeMap<String, CompiledModel>;

/// What a target needs to know about a model of its provider.
#[derive(Clone, Copy, Debug)]
pub(super) struct CompiledModel {
    pub pricing: Pricing,
    pub context_window: Option<u32>,
    pub kind: ModelType,
    pub publisher: Publisher,
}

pub(super) fn compile_pool(
    pool: &ProviderPool,
    inputs: &Inputs<'_>,
    index: &mut ProviderIndex,
) -> PoolOutcome {
    let key = ObjectKey::of(Kind::ProviderPool, pool);
    let mut pool_findings = Findings::new(&key);
    let cb = pool.spec.circuit_breaker.clone().unwrap_or_default();
    let breaker = breaker(&cb, &mut pool_findings);
    let pool_level_ok = pool_findings.is_empty();
    let mut outcome = PoolOutcome {
        accepted: pool_findings.accepted,
        resolved_refs: pool_findings.resolved_refs,
    };

    let mut seen = BTreeSet::new();
    for (i, provider) in pool.spec.providers.iter().enumerate() {
        let at = format!("spec.providers[{i}]");
        let mut findings = Findings::new(&key);
        if !seen.insert(provider.name.as_str()) {
            findings.invalid(
                format!("{at}.name"),
                format!("duplicate provider name {:?}", provider.name),
            );
        }
        let compiled = compile_provider(provider, &at, breaker, inputs, &mut findings);
        let usable = if findings.is_empty() && pool_level_ok {
            Ok(compiled)
        } else {
            let first = findings
                .accepted
                .iter()
                .chain(&findings.resolved_refs)
                .next()
                .map_or_else(
                    || format!("pool {} is invalid", key.name),
                    |p| p.message.clone(),
                );
            Err(first)
        };
        // The first provider of a name wins the index slot, so a duplicate cannot shadow it.
        index
            .entry((
                key.namespace.clone(),
                key.name.clone(),
                provider.name.clone(),
            ))
            .or_insert(usable);
        outcome.accepted.extend(findings.accepted);
        outcome.resolved_refs.extend(findings.resolved_refs);
    }
    outcome
}

/// The pool's circuit breaker, defaults applied; an unreadable duration keeps its default.
fn breaker(cb: &CircuitBreaker, findings: &mut Findings<'_>) -> table::Breaker {
    let defaults = table::Breaker::default();
    let mut ms = |d: &Option<v1alpha1::Duration>, field: &str, default: u64| match d
        .as_ref()
        .map(|d| (d, d.parse()))
    {
        None => default,
        Some((_, Some(v))) => v.as_millis() as u64,
        Some((d, None)) => {
            findings.invalid(
                format!("spec.circuitBreaker.{field}"),
                format!("{:?} is not a duration like 30s or 1m30s", d.0),
            );
            default
        }
    };
    table::Breaker {
        consecutive_failures: cb
            .consecutive_failures
            .unwrap_or(defaults.consecutive_failures)
            .max(1),
        cooldown_ms: ms(&cb.cooldown, "cooldown", defaults.cooldown_ms),
        max_retry_after_ms: ms(
            &cb.max_retry_after,
            "maxRetryAfter",
            defaults.max_retry_after_ms,
        ),
    }
}

/// One provider at `at`, judged on its own: what it would be if usable, with its problems in
/// `findings`.
fn compile_provider(
    provider: &Provider,
    at: &str,
    breaker: table::Breaker,
    inputs: &Inputs<'_>,
    findings: &mut Findings<'_>,
) -> CompiledProvider {
    if provider.name.is_empty() || provider.name.contains('/') {
        findings.invalid(
            format!("{at}.name"),
            "provider names must be non-empty and contain no '/'".into(),
        );
    }
    let base_url = provider
        .base_url
        .clone()
        .or_else(|| provider.api.default_base_url(provider.region.as_deref()))
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let has_credentials =
        provider.api_key.is_some() || provider.aws.is_some() || provider.gcp.is_some();
    if base_url.is_empty() {
        let why = match provider.api {
            Api::AzureOpenAI => "api AzureOpenAI needs a baseUrl (the resource's endpoint)",
            _ => "api Bedrock and VertexAI need a region (or a baseUrl)",
        };
        findings.invalid(
            format!("{at}.baseUrl"),
            format!("provider {:?}: {why}", provider.name),
        );
    } else if let Err(why) = check_url(&base_url, has_credentials) {
        findings.reject(
            format!("{at}.baseUrl"),
            reasons::INVALID_PROVIDER,
            format!("provider {:?}: {why}", provider.name),
        );
    }
    cloud_settings_fit_api(provider, at, findings);
    // Only OpenAI's own protocol has a Responses API to pass requests through to.
    if provider.responses_api == Some(true) && provider.api != Api::OpenAI {
        findings.invalid(
            format!("{at}.responsesApi"),
            format!(
                "provider {:?}: responsesApi is for api OpenAI only, not {:?}",
                provider.name, provider.api
            ),
        );
    }
    let timeouts = timeouts(provider, at, findings);
    let models = models(provider, at, findings);
    let api_key = api_key(provider, at, inputs, findings);
    let aws = aws(provider, at, inputs, findings);
    let gcp = gcp(provider, at, inputs, findings);
    let limits = provider.limits.clone().unwrap_or_default();
    CompiledProvider {
        upstream: Upstream {
            pool: findings.object.name.clone(),
            provider: provider.name.clone(),
            api: provider.api,
            base_url,
            region: provider.region.clone(),
            api_key,
            forward_headers: provider
                .forward_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            responses_api: provider.responses_api.unwrap_or(false),
            azure_api_version: provider.azure.as_ref().and_then(|a| a.api_version.clone()),
            aws,
            gcp,
            timeouts,
            limits: table::Limits {
                requests_per_minute: limits.requests_per_minute,
                tokens_per_minute: limits.tokens_per_minute,
                max_concurrent: limits.max_concurrent,
            },
            breaker,
        },
        models,
    }
}

/// The provider's time limits, defaults applied; a duration that is not positive keeps its
/// default.
fn timeouts(provider: &Provider, at: &str, findings: &mut Findings<'_>) -> TimeoutsMs {
    let t = provider.timeouts.clone().unwrap_or_default();
    let d = TimeoutsMs::default();
    let mut ms = |v: &Option<v1alpha1::Duration>, field: &str, default: u64| match v {
        None => default,
        Some(v) => match v.parse() {
            Some(v) if !v.is_zero() => v.as_millis() as u64,
            _ => {
                findings.invalid(
                    format!("{at}.timeouts.{field}"),
                    format!("{:?} is not a positive duration like 2s or 1m30s", v.0),
                );
                default
            }
        },
    };
    TimeoutsMs {
        connect: ms(&t.connect, "connect", d.connect),
        first_token: ms(&t.first_token, "firstToken", d.first_token),
        idle: ms(&t.idle, "idle", d.idle),
        total: ms(&t.total, "total", d.total),
    }
}

/// The provider's models by name; an unreadable price counts as 0.
fn models(provider: &Provider, at: &str, findings: &mut Findings<'_>) -> Models {
    let mut models = BTreeMap::new();
    for (j, model) in provider.models.iter().enumerate() {
        let at = format!("{at}.models[{j}]");
        let mut price = |p: &v1alpha1::Price, field: &str| {
            p.parse().unwrap_or_else(|| {
                findings.invalid(
                    format!("{at}.{field}"),
                    format!(
                        "{:?} is not a non-negative decimal price such as \"2.50\"",
                        p.0
                    ),
                );
                0.0
            })
        };
        let input = price(&model.input_per_million, "inputPerMillion");
        let output = price(&model.output_per_million, "outputPerMillion");
        let cached = model
            .cached_input_per_million
            .as_ref()
            .map_or(input, |p| price(p, "cachedInputPerMillion"));
        let pricing = Pricing {
            input_per_million: input,
            cached_input_per_million: cached,
            output_per_million: output,
        };
        let kind = model.kind.unwrap_or_default();
        // Embeddings are served from OpenAI's, Azure OpenAI's and Gemini's APIs only: another
        // model of type Embedding could never be served.
        if kind == ModelType::Embedding
            && !matches!(provider.api, Api::OpenAI | Api::AzureOpenAI | Api::Gemini)
        {
            findings.invalid(
                format!("{at}.type"),
                format!(
                    "model {:?}: the sidecar serves embeddings for api OpenAI, AzureOpenAI and Gemini only, so type Embedding cannot be served by api {}",
                    model.name,
                    provider.api.as_str()
                ),
            );
        }
        let compiled = CompiledModel {
            pricing,
            context_window: model.context_window,
            kind,
            publisher: model.publisher.unwrap_or_default(),
        };
        if model.name.is_empty() || models.insert(model.name.clone(), compiled).is_some() {
            findings.invalid(
                format!("{at}.name"),
                format!("duplicate or empty model name {:?}", model.name),
            );
        }
    }
    if provider.models.is_empty() {
        findings.invalid(
            format!("{at}.models"),
            "a provider needs at least one model".into(),
        );
    }
    models
}

/// The provider's key from its Secret, if it names one that resolves.
fn api_key(
    provider: &Provider,
    at: &str,
    inputs: &Inputs<'_>,
    findings: &mut Findings<'_>,
) -> Option<SecretString> {
    let r = &provider.api_key.as_ref()?.secret_key_ref;
    match resolve_secret(&findings.object.namespace, &r.name, &r.key, inputs) {
        Ok(value) => Some(value),
        Err((reason, message)) => {
            findings.unresolved(format!("{at}.apiKey.secretKeyRef"), reason, message);
            None
        }
    }
}

/// Each cloud's settings belong to its own API, and the clouds need theirs.
fn cloud_settings_fit_api(provider: &Provider, at: &str, findings: &mut Findings<'_>) {
    let name = &provider.name;
    let stray = [
        ("azure", provider.azure.is_some(), Api::AzureOpenAI),
        ("aws", provider.aws.is_some(), Api::Bedrock),
        ("gcp", provider.gcp.is_some(), Api::VertexAI),
    ];
    for (field, set, api) in stray {
        if set && provider.api != api {
            findings.invalid(
                format!("{at}.{field}"),
                format!(
                    "provider {name:?}: {field} is for api {}, not {}",
                    api.as_str(),
                    provider.api.as_str()
                ),
            );
        }
    }
    let missing = match provider.api {
        Api::Bedrock if provider.aws.is_none() => {
            Some(("aws", "api Bedrock needs aws credentials"))
        }
        Api::VertexAI if provider.gcp.is_none() => Some(("gcp", "api VertexAI needs gcp settings")),
        Api::Bedrock | Api::VertexAI if provider.region.is_none() => Some((
            "region",
            "the cloud's region is part of its API (request signing, model paths)",
        )),
        Api::Bedrock | Api::VertexAI if provider.api_key.is_some() => Some((
            "apiKey",
            "this api authenticates with its own credentials (aws, gcp), not an apiKey",
        )),
        _ => None,
    };
    if let Some((field, why)) = missing {
        findings.invalid(format!("{at}.{field}"), format!("provider {name:?}: {why}"));
    }
}

/// The provider's AWS credentials: keys from its Secret, or a web identity.
fn aws(
    provider: &Provider,
    at: &str,
    inputs: &Inputs<'_>,
    findings: &mut Findings<'_>,
) -> Option<AwsAuth> {
    let settings = provider.aws.as_ref()?;
    let at = format!("{at}.aws");
    let keys = settings.credentials_secret_ref.as_ref().and_then(|r| {
        let namespace = findings.object.namespace.clone();
        let key = |name: &str| resolve_secret(&namespace, &r.name, name, inputs);
        let keys = (|| {
            Ok(AwsKeys {
                access_key_id: key("accessKeyId")?,
                secret_access_key: key("secretAccessKey")?,
                session_token: match key("sessionToken") {
                    Ok(token) => Some(token),
                    Err((reasons::SECRET_KEY_NOT_FOUND, _)) => None,
                    Err(other) => return Err(other),
                },
            })
        })();
        keys.map_err(|(reason, message)| {
            findings.unresolved(format!("{at}.credentialsSecretRef"), reason, message)
        })
        .ok()
    });
    let web_identity = match (&settings.role_arn, &settings.web_identity_token_file) {
        (Some(role_arn), Some(token_file)) => {
            let region = provider.region.as_deref().unwrap_or("us-east-1");
            let sts_url = settings
                .sts_url
                .clone()
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
                .trim_end_matches('/')
                .to_string();
            if let Err(why) = check_url(&sts_url, true) {
                findings.reject(
                    format!("{at}.stsUrl"),
                    reasons::INVALID_PROVIDER,
                    format!("provider {:?}: stsUrl: {why}", provider.name),
                );
            }
            Some(WebIdentity {
                role_arn: role_arn.clone(),
                token_file: token_file.clone(),
                sts_url,
            })
        }
        (None, None) => None,
        _ => {
            findings.invalid(
                at.clone(),
                format!(
                    "provider {:?}: roleArn and webIdentityTokenFile go together",
                    provider.name
                ),
            );
            None
        }
    };
    let either =
        settings.credentials_secret_ref.is_some() as u8 + settings.role_arn.is_some() as u8;
    if either != 1 {
        findings.invalid(
            at,
            format!(
                "provider {:?}: give exactly one of credentialsSecretRef and roleArn (with webIdentityTokenFile)",
                provider.name
            ),
        );
    }
    Some(AwsAuth { keys, web_identity })
}

/// The provider's Google Cloud project and service account key.
fn gcp(
    provider: &Provider,
    at: &str,
    inputs: &Inputs<'_>,
    findings: &mut Findings<'_>,
) -> Option<GcpAuth> {
    let settings = provider.gcp.as_ref()?;
    let at = format!("{at}.gcp");
    if let Some(url) = &settings.token_url
        && let Err(why) = check_url(url, true)
    {
        findings.reject(
            format!("{at}.tokenUrl"),
            reasons::INVALID_PROVIDER,
            format!("provider {:?}: tokenUrl: {why}", provider.name),
        );
    }
    let r = &settings.service_account_key_secret_ref;
    let key = match resolve_secret(&findings.object.namespace, &r.name, &r.key, inputs) {
        Ok(key) => key,
        Err((reason, message)) => {
            findings.unresolved(format!("{at}.serviceAccountKeySecretRef"), reason, message);
            return None;
        }
    };
    // Without `tokenUrl` the key file's `token_uri` is where the signed assertion goes: the same
    // URL rules hold for it (a key file must not send it to a metadata address).
    if settings.token_url.is_none() {
        let token_uri = serde_json::from_str::<serde_json::Value>(key.expose())
            .ok()
            .and_then(|file| file.get("token_uri")?.as_str().map(str::to_string));
        let why = match token_uri {
            Some(uri) => check_url(&uri, true).err(),
            None => {
                Some("the key file names no token_uri and the provider sets no tokenUrl".into())
            }
        };
        if let Some(why) = why {
            findings.reject(
                format!("{at}.serviceAccountKeySecretRef"),
                reasons::INVALID_PROVIDER,
                format!("provider {:?}: service account key: {why}", provider.name),
            );
        }
    }
    Some(GcpAuth {
        project: settings.project.clone(),
        service_account_key: key,
        token_url: settings
            .token_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
    })
}

/// The security rules for provider URLs (docs/reference/crds.md, "Security model").
fn check_url(base_url: &str, has_key: bool) -> Result<(), String> {
    let uri: http::Uri = base_url
        .parse()
        .map_err(|_| format!("baseUrl {base_url:?} is not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    let host = uri
        .host()
        .ok_or_else(|| format!("baseUrl {base_url:?} has no host"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("baseUrl {base_url:?} must use http:// or https://"));
    }
    let ip: Option<IpAddr> = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    let metadata = match ip {
        Some(IpAddr::V4(v4)) => v4.is_link_local(),
        Some(IpAddr::V6(v6)) => {
            v6 == "fd00:ec2::254"
                .parse::<std::net::Ipv6Addr>()
                .expect("valid literal")
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
        None => false,
    };
    if metadata {
        return Err(format!(
            "link-local and cloud metadata addresses ({host}) are always refused"
        ));
    }
    let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host.eq_ignore_ascii_case("localhost");
    let cluster_local = host.ends_with(".svc") || host.ends_with(".svc.cluster.local");
    if has_key && scheme == "http" && !loopback && !cluster_local {
        return Err(format!(
            "a provider with an apiKey must use https:// unless its host is loopback or cluster-local (*.svc), not {host}"
        ));
    }
    Ok(())
}

fn resolve_secret(
    namespace: &str,
    name: &str,
    key: &str,
    inputs: &Inputs<'_>,
) -> Result<SecretString, (&'static str, String)> {
    let secret = inputs
        .secrets
        .iter()
        .find(|s| {
            s.name_any() == name && s.namespace().as_deref().unwrap_or("default") == namespace
        })
        .ok_or((
            reasons::SECRET_NOT_FOUND,
            format!("Secret {namespace}/{name} not found"),
        ))?;
    if inputs.require_secret_opt_in
        && secret.labels().get(SECRET_OPT_IN_LABEL).map(String::as_str) != Some("true")
    {
        return Err((
            reasons::SECRET_NOT_OPTED_IN,
            format!("Secret {namespace}/{name} lacks the label {SECRET_OPT_IN_LABEL}: \"true\""),
        ));
    }
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8(v.0.clone()));
    let value = match from_data {
        Some(Ok(v)) => v,
        Some(Err(_)) => {
            return Err((
                reasons::SECRET_KEY_NOT_FOUND,
                format!("Secret {namespace}/{name} key {key:?} is not UTF-8"),
            ));
        }
        None => secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .ok_or((
                reasons::SECRET_KEY_NOT_FOUND,
                format!("Secret {namespace}/{name} has no key {key:?}"),
            ))?,
    };
    // Keys made with `--from-file` often end in a newline, which no provider accepts in a header.
    Ok(SecretString::new(value.trim()))
}
