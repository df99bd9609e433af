//! Compiling one ProviderPool: defaults, prices, durations, the URL security rules and the
//! Secret lookups. Each provider is judged on its own, so one bad key leaves the others usable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube::ResourceExt;

use super::{
    CompiledProvider, Inputs, Kind, ObjectKey, PoolOutcome, Problem, ProviderIndex,
    SECRET_OPT_IN_LABEL, reasons,
};
use crate::secret::SecretString;
use crate::table::{self, Pricing, TimeoutsMs, Upstream};
use crate::v1alpha1::ProviderPool;
pub(super) fn compile_pool(
    pool: &ProviderPool,
    inputs: &Inputs<'_>,
    index: &mut ProviderIndex,
) -> PoolOutcome {
    let key = ObjectKey::of(Kind::ProviderPool, pool);
    let mut outcome = PoolOutcome::default();
    let problem = |field: String, reason: &'static str, message: String| Problem {
        object: key.clone(),
        field,
        reason,
        message,
    };

    let breaker = {
        let cb = pool.spec.circuit_breaker.clone().unwrap_or_default();
        let defaults = table::Breaker::default();
        let mut ms = |d: &Option<crate::v1alpha1::Duration>, field: &str, default: u64| match d
            .as_ref()
            .map(|d| (d, d.parse()))
        {
            None => default,
            Some((_, Some(v))) => v.as_millis() as u64,
            Some((d, None)) => {
                outcome.accepted.push(problem(
                    format!("spec.circuitBreaker.{field}"),
                    reasons::INVALID,
                    format!("{:?} is not a duration like 30s or 1m30s", d.0),
                ));
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
    };
    let pool_level_ok = outcome.accepted.is_empty();

    let mut seen = BTreeSet::new();
    for (i, provider) in pool.spec.providers.iter().enumerate() {
        let at = format!("spec.providers[{i}]");
        let mut accepted = Vec::new();
        let mut refs = Vec::new();
        if !seen.insert(provider.name.as_str()) {
            accepted.push(problem(
                format!("{at}.name"),
                reasons::INVALID,
                format!("duplicate provider name {:?}", provider.name),
            ));
        }
        if provider.name.is_empty() || provider.name.contains('/') {
            accepted.push(problem(
                format!("{at}.name"),
                reasons::INVALID,
                "provider names must be non-empty and contain no '/'".into(),
            ));
        }
        let base_url = provider
            .base_url
            .clone()
            .unwrap_or_else(|| provider.api.default_base_url().to_string())
            .trim_end_matches('/')
            .to_string();
        if let Err(why) = check_url(&base_url, provider.api_key.is_some()) {
            accepted.push(problem(
                format!("{at}.baseUrl"),
                reasons::INVALID_PROVIDER,
                format!("provider {:?}: {why}", provider.name),
            ));
        }
        let timeouts = {
            let t = provider.timeouts.clone().unwrap_or_default();
            let d = TimeoutsMs::default();
            let mut ms = |v: &Option<crate::v1alpha1::Duration>, field: &str, default: u64| match v
            {
                None => default,
                Some(v) => match v.parse() {
                    Some(v) if !v.is_zero() => v.as_millis() as u64,
                    _ => {
                        accepted.push(problem(
                            format!("{at}.timeouts.{field}"),
                            reasons::INVALID,
                            format!("{:?} is not a positive duration like 2s or 1m30s", v.0),
                        ));
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
        };
        let mut models = BTreeMap::new();
        for (j, model) in provider.models.iter().enumerate() {
            let at = format!("{at}.models[{j}]");
            let mut price = |p: &crate::v1alpha1::Price, field: &str| {
                p.parse().unwrap_or_else(|| {
                    accepted.push(problem(
                        format!("{at}.{field}"),
                        reasons::INVALID,
                        format!(
                            "{:?} is not a non-negative decimal price such as \"2.50\"",
                            p.0
                        ),
                    ));
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
            if model.name.is_empty()
                || models
                    .insert(model.name.clone(), (pricing, model.context_window))
                    .is_some()
            {
                accepted.push(problem(
                    format!("{at}.name"),
                    reasons::INVALID,
                    format!("duplicate or empty model name {:?}", model.name),
                ));
            }
        }
        if provider.models.is_empty() {
            accepted.push(problem(
                format!("{at}.models"),
                reasons::INVALID,
                "a provider needs at least one model".into(),
            ));
        }

        let api_key = provider.api_key.as_ref().and_then(|source| {
            let r = &source.secret_key_ref;
            match resolve_secret(&key.namespace, &r.name, &r.key, inputs) {
                Ok(value) => Some(value),
                Err((reason, message)) => {
                    refs.push(problem(
                        format!("{at}.apiKey.secretKeyRef"),
                        reason,
                        message,
                    ));
                    None
                }
            }
        });

        let usable = if accepted.is_empty() && refs.is_empty() && pool_level_ok {
            let limits = provider.limits.clone().unwrap_or_default();
            Ok(CompiledProvider {
                upstream: Upstream {
                    pool: key.name.clone(),
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
                    timeouts,
                    limits: table::Limits {
                        requests_per_minute: limits.requests_per_minute,
                        tokens_per_minute: limits.tokens_per_minute,
                        max_concurrent: limits.max_concurrent,
                    },
                    breaker,
                },
                models,
            })
        } else {
            let first = accepted.iter().chain(&refs).next().map_or_else(
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
        outcome.accepted.extend(accepted);
        outcome.resolved_refs.extend(refs);
    }
    outcome
}

/// The security rules for provider URLs (DESIGN.md §2, Security model).
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
