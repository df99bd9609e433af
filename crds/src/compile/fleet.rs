//! Fleet-wide provider limits (`limits.scope: Fleet`, docs/reference/crds.md#providerpool): a
//! provider's `requestsPerMinute` and `tokensPerMinute` that hold for every sidecar together.
//!
//! They reuse the budget machinery rather than a mechanism of their own: each becomes a table
//! [`Budget`](table::Budget) entry of kind `FleetLimit` over a fixed one-minute window, counting
//! only that provider's answers, which the sidecar enforces with its lock-free counters and the
//! operator divides among the sidecars that hold it with the same lease book (by demand, with a
//! floor). The upstream's own per-sidecar token buckets lose those two rates: the leased share
//! replaces them (`maxConcurrent` stays per sidecar). A table with no Fleet-scoped provider is
//! left exactly as it was, version included.

use kube::ResourceExt;

use crate::table::{self, BudgetKind, RouteTable};
use crate::v1alpha1::{BudgetMode, LimitScope, ProviderPool, WhenUnreachable};

/// The window of a fleet limit: the provider counts per minute, and a fixed one-minute window
/// aligned to the epoch is the same minute on every sidecar and on the operator.
pub const FLEET_PERIOD: &str = "1m";

/// Takes the rates of every Fleet-scoped provider `table` uses out of its upstream's per-sidecar
/// limits, and returns the fleet limit entries that replace them, for `table.budgets`. `namespace`
/// is the table's (a route uses only its own namespace's pools). The caller stamps the version
/// afresh.
pub(super) fn fleet_limits(
    table: &mut RouteTable,
    namespace: &str,
    pools: &[ProviderPool],
) -> Vec<table::Budget> {
    let mut out = Vec::new();
    for upstream in table.upstreams.values_mut() {
        let Some(limits) = declared_limits(pools, namespace, &upstream.pool, &upstream.provider)
        else {
            continue;
        };
        if limits.scope != Some(LimitScope::Fleet)
            || (limits.requests_per_minute.is_none() && limits.tokens_per_minute.is_none())
        {
            continue;
        }
        upstream.limits.requests_per_minute = None;
        upstream.limits.tokens_per_minute = None;
        out.push(table::Budget {
            namespace: namespace.to_string(),
            name: upstream.id(),
            routes: vec![],
            providers: vec![upstream.id()],
            limits: vec![table::BudgetLimit {
                period: FLEET_PERIOD.into(),
                usd_micros: None,
                requests: limits.requests_per_minute.map(u64::from),
                tokens: limits.tokens_per_minute,
            }],
            mode: BudgetMode::Enforce,
            // A sidecar cut off from the operator keeps to its last share: the provider's limit
            // does not go away with the operator, and failing closed would stop a healthy pod.
            when_unreachable: WhenUnreachable::LastShare,
            kind: BudgetKind::FleetLimit,
        });
    }
    out
}

/// The `limits` a provider of pool `pool` in `namespace` declares, if any.
fn declared_limits<'p>(
    pools: &'p [ProviderPool],
    namespace: &str,
    pool: &str,
    provider: &str,
) -> Option<&'p crate::v1alpha1::Limits> {
    pools
        .iter()
        .filter(|p| p.namespace().as_deref().unwrap_or("default") == namespace)
        .filter(|p| p.name_any() == pool)
        .flat_map(|p| &p.spec.providers)
        .find(|p| p.name == provider)?
        .limits
        .as_ref()
}
