//! What is wrong with a Budget's spec on its own, field by field.
//!
//! In a cluster the schema and its CEL rules refuse most of this at `kubectl apply`; the
//! standalone loader has no apiserver, and an amount too large to count is something no schema
//! can say. So every rule is checked here once more, with messages that name the field the way
//! compile problems do (`spec.limits[1].period: ...`).
//!
//! Whether `selector.routes` and `selector.providers` name objects that exist cannot be told from
//! the spec alone: that is decided when budgets are compiled together with the routes and pools
//! they select (`Accepted=False` naming the field, as for a route's targets).

use std::collections::BTreeSet;

use kube::core::Selector;

use super::{BudgetLimit, BudgetSelector, BudgetSpec};
use crate::v1alpha1::common::decimal_parts;
use crate::window::{MIN_FIXED, Period};

/// Most limits one budget may set, as the schema's `maxItems` says.
const MAX_LIMITS: usize = 8;

/// One thing wrong with a Budget, precise enough for a person to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the field at fault, e.g. `spec.limits[1].usd`.
    pub field: String,
    /// What is wrong and what would be right, lowercase, without a trailing period.
    pub message: String,
}

impl BudgetSpec {
    /// Everything wrong with the spec, in field order; empty when it is valid.
    pub fn validate(&self) -> Vec<ValidationError> {
        let mut errors = Vec::new();
        let mut invalid =
            |field: String, message: String| errors.push(ValidationError { field, message });
        check_selector(&self.selector, &mut invalid);
        if self.limits.is_empty() {
            invalid(
                "spec.limits".into(),
                "a budget needs at least one limit".into(),
            );
        }
        if self.limits.len() > MAX_LIMITS {
            invalid(
                "spec.limits".into(),
                format!("at most {MAX_LIMITS} limits, not {}", self.limits.len()),
            );
        }
        for (index, limit) in self.limits.iter().enumerate() {
            check_limit(limit, &format!("spec.limits[{index}]"), &mut invalid);
        }
        errors
    }
}

fn check_selector(selector: &BudgetSelector, invalid: &mut impl FnMut(String, String)) {
    let mut routes = BTreeSet::new();
    for (index, route) in selector.routes.iter().enumerate() {
        let field = format!("spec.selector.routes[{index}]");
        if route.is_empty() {
            invalid(field, "a route name must not be empty".into());
        } else if !routes.insert(route) {
            invalid(field, format!("route {route:?} is listed twice"));
        }
    }
    if let Some(pods) = &selector.pod_selector
        && let Err(e) = Selector::try_from(pods.clone())
    {
        invalid("spec.selector.podSelector".into(), e.to_string());
    }
    let mut providers = BTreeSet::new();
    for (index, provider) in selector.providers.iter().enumerate() {
        let field = format!("spec.selector.providers[{index}]");
        if provider.pool.is_empty() || provider.provider.is_empty() {
            invalid(field, "a provider needs both pool and provider".into());
        } else if !providers.insert(provider) {
            invalid(
                field,
                format!(
                    "provider {}/{} is listed twice",
                    provider.pool, provider.provider
                ),
            );
        }
    }
}

fn check_limit(limit: &BudgetLimit, at: &str, invalid: &mut impl FnMut(String, String)) {
    if Period::parse(&limit.period).is_none() {
        invalid(
            format!("{at}.period"),
            format!(
                "{:?} is not Day, Week, Month or a duration of at least {} such as 1m or 7h",
                limit.period,
                crate::duration::format(MIN_FIXED)
            ),
        );
    }
    if limit.usd.is_none() && limit.requests.is_none() && limit.tokens.is_none() {
        invalid(
            at.to_string(),
            "a limit needs at least one of usd, requests or tokens".into(),
        );
    }
    if let Some(usd) = &limit.usd
        && usd.micros().is_none()
    {
        let message = if decimal_parts(&usd.0).is_some() {
            format!("{:?} is more dollars than a budget can count", usd.0)
        } else {
            format!(
                "{:?} is not an amount of dollars such as \"500.00\": digits, with at most 6 after the point",
                usd.0
            )
        };
        invalid(format!("{at}.usd"), message);
    }
    for (unit, amount) in [("requests", limit.requests), ("tokens", limit.tokens)] {
        if amount == Some(0) {
            invalid(format!("{at}.{unit}"), format!("{unit} must be at least 1"));
        }
    }
}
