//! Pure status builders: compile verdicts, sidecar counts, report windows and the lease book's
//! totals in, the `ModelRoute`/`ProviderPool`/`Budget` status out. No I/O and no clock (the
//! caller passes `now`), so that every rule of docs/reference/crds.md "Status" is unit-tested here
//! and the controller only decides *whether* to write.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use switchyard_crds::compile::{
    BudgetOutcome, PoolOutcome, Problem, RouteOutcome, TemplateOutcome, reasons,
};
use switchyard_crds::v1alpha1::{
    Budget, BudgetAmounts, BudgetSidecars, BudgetStatus, BudgetSummary, ModelRouteStatus,
    PromptTemplateStatus, ProviderPoolStatus, ProviderStatus, SidecarSummary, Usd, WindowStatus,
};
use switchyard_crds::window::{Period, Timestamp};

use crate::config_server::leases::{Durable, DurableTotals, LimitTotals};
use crate::config_server::reports::WindowStats;

/// The condition types.
pub mod types {
    pub const ACCEPTED: &str = "Accepted";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const PROGRAMMED: &str = "Programmed";
    pub const READY: &str = "Ready";
}

/// Reasons of our own; problem reasons come from [`reasons`].
pub mod reason {
    /// The spec is valid (`Accepted=True`).
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference resolved (`ResolvedRefs=True`).
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The tables holding this generation are being served (`Programmed=True`).
    pub const PROGRAMMED: &str = "Programmed";
    /// Not (yet) in the served tables.
    pub const PENDING: &str = "Pending";
    /// Every other condition is true.
    pub const READY: &str = "Ready";
    /// Some other condition is false.
    pub const NOT_READY: &str = "NotReady";
    /// A budget whose spec has problems: no sidecar enforces it (`Ready=False`).
    pub const NOT_ACCEPTED: &str = "NotAccepted";
    /// A valid budget that no running injected pod's table holds: nothing counts against it
    /// (`Ready=False`).
    pub const NO_SIDECARS: &str = "NoSidecars";
}

/// Provider health states (docs/reference/crds.md).
pub mod state {
    pub const HEALTHY: &str = "Healthy";
    pub const DEGRADED: &str = "Degraded";
    pub const CIRCUIT_OPEN: &str = "CircuitOpen";
}

/// Error rate at or above which a provider is `Degraded`.
pub const DEGRADED_ERROR_RATE: f64 = 0.05;

/// The status of a route.
pub fn route_status(
    outcome: &RouteOutcome,
    sidecars: SidecarSummary,
    programmed: bool,
    previous: Option<&ModelRouteStatus>,
    now: Time,
) -> ModelRouteStatus {
    let generation = outcome.generation;
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let accepted = from_problems(reason::ACCEPTED, &outcome.accepted, "the route is valid");
    let resolved = from_problems(
        reason::RESOLVED_REFS,
        &outcome.resolved_refs,
        "every pool, provider and model resolved",
    );
    let programmed = if programmed {
        (
            true,
            reason::PROGRAMMED,
            "the tables holding this generation are being served".to_string(),
        )
    } else {
        (
            false,
            reason::PENDING,
            "not in the served tables yet".to_string(),
        )
    };
    let mut conditions = vec![accepted, resolved, programmed];
    conditions.push(ready(&conditions));
    let names = [
        types::ACCEPTED,
        types::RESOLVED_REFS,
        types::PROGRAMMED,
        types::READY,
    ];
    ModelRouteStatus {
        conditions: build(&names, conditions, generation, prev, &now),
        observed_generation: generation,
        target_count: Some(outcome.target_count),
        excluded_providers: outcome.excluded_providers.clone(),
        sidecars: Some(sidecars),
        // Set by the step from the report window (`spend::set_route_window`).
        cost_usd: None,
        requests: None,
    }
}

/// The status of a pool. `generation` is the pool's `metadata.generation`.
pub fn pool_status(
    outcome: &PoolOutcome,
    providers: Vec<ProviderStatus>,
    generation: Option<i64>,
    previous: Option<&ProviderPoolStatus>,
    now: Time,
) -> ProviderPoolStatus {
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let accepted = from_problems(
        reason::ACCEPTED,
        &outcome.accepted,
        "every provider is valid",
    );
    let resolved = from_problems(
        reason::RESOLVED_REFS,
        &outcome.resolved_refs,
        "every Secret key resolved",
    );
    let mut conditions = vec![accepted, resolved];
    conditions.push(ready(&conditions));
    let names = [types::ACCEPTED, types::RESOLVED_REFS, types::READY];
    let healthy = providers
        .iter()
        .filter(|p| p.state == state::HEALTHY)
        .count();
    ProviderPoolStatus {
        conditions: build(&names, conditions, generation, prev, &now),
        observed_generation: generation,
        summary: (!providers.is_empty()).then(|| format!("{healthy}/{} healthy", providers.len())),
        providers,
    }
}

/// A provider's health from its report windows (one per model; empty when nobody used it).
pub fn provider_status(name: &str, windows: &[&WindowStats]) -> ProviderStatus {
    let mut total = WindowStats::default();
    for w in windows {
        total.requests += w.requests;
        total.errors += w.errors;
        total.input_tokens += w.input_tokens;
        total.cached_input_tokens += w.cached_input_tokens;
        total.output_tokens += w.output_tokens;
        total.cost_usd += w.cost_usd;
        if total.latency_buckets.len() < w.latency_buckets.len() {
            total.latency_buckets.resize(w.latency_buckets.len(), 0);
        }
        for (t, c) in total.latency_buckets.iter_mut().zip(&w.latency_buckets) {
            *t += c;
        }
        // The circuit is per provider, not per model: a sidecar reporting two models of one
        // provider is one sidecar, so take the largest count rather than the sum.
        total.sidecars = total.sidecars.max(w.sidecars);
        total.circuit_open_sidecars = total.circuit_open_sidecars.max(w.circuit_open_sidecars);
    }
    let error_rate = total.error_rate();
    let open = total.circuit_open_sidecars;
    let state = if open > 0 && open * 2 >= total.sidecars {
        state::CIRCUIT_OPEN
    } else if open > 0 || error_rate.is_some_and(|r| r >= DEGRADED_ERROR_RATE) {
        state::DEGRADED
    } else {
        state::HEALTHY
    };
    let used = total.sidecars > 0 || total.requests > 0;
    ProviderStatus {
        name: name.to_string(),
        state: state.to_string(),
        circuit_open_sidecars: used.then(|| format!("{open}/{}", total.sidecars)),
        error_rate: error_rate.map(|r| format!("{:.1}%", r * 100.0)),
        p50_latency_ms: total.p50_latency_ms().map(|ms| ms.to_string()),
        tokens: used.then(|| short_count(total.input_tokens + total.output_tokens)),
        cost_usd: used.then(|| format!("{:.2}", total.cost_usd)),
    }
}

/// The status of a prompt template: `Accepted` (every text parses and uses only declared
/// variables) and `Ready` (accepted, so every route that names it renders it), the routes that
/// name it and its `name@hash8` version, as headers and logs show it. A template that is not
/// accepted is served to no route; the routes naming it say so in `ResolvedRefs`.
pub fn template_status(
    outcome: &TemplateOutcome,
    previous: Option<&PromptTemplateStatus>,
    now: Time,
) -> PromptTemplateStatus {
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let accepted = from_problems(
        reason::ACCEPTED,
        &outcome.accepted,
        "every text parses and uses only declared variables",
    );
    let mut conditions = vec![accepted];
    conditions.push(ready(&conditions));
    let names = [types::ACCEPTED, types::READY];
    PromptTemplateStatus {
        conditions: build(&names, conditions, outcome.generation, prev, &now),
        observed_generation: outcome.generation,
        used_by: outcome.used_by.clone(),
        version: Some(outcome.label.clone()),
    }
}

/// Whether two statuses differ only in condition transition times (which `route_status` and
/// `pool_status` take from `now` for new transitions): if so, there is nothing to write.
pub fn same_ignoring_time<T: serde::Serialize>(a: &T, b: &T) -> bool {
    fn strip(v: &mut serde_json::Value) {
        if let Some(conditions) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conditions {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastTransitionTime");
                }
            }
        }
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(mut a), Ok(mut b)) => {
            strip(&mut a);
            strip(&mut b);
            a == b
        }
        _ => false,
    }
}

/// `1234` → `1.2k`, `5600000` → `5.6M`: status strings stay short.
fn short_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// (status, reason, message) of one condition.
type Verdict = (bool, &'static str, String);

/// True with `ok_reason` when there are no problems; otherwise false with the first problem's
/// reason ([`reasons::CONFLICTED`] first, as it explains the rest) and every message.
fn from_problems(ok_reason: &'static str, problems: &[Problem], ok: &str) -> Verdict {
    if problems.is_empty() {
        return (true, ok_reason, ok.to_string());
    }
    let first = problems
        .iter()
        .find(|p| p.reason == reasons::CONFLICTED)
        .unwrap_or(&problems[0]);
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    (false, first.reason, message)
}

fn ready(others: &[Verdict]) -> Verdict {
    let failing: Vec<&str> = others.iter().filter(|v| !v.0).map(|v| v.1).collect();
    if failing.is_empty() {
        (true, reason::READY, "ready".to_string())
    } else {
        (
            false,
            reason::NOT_READY,
            format!("not ready: {}", failing.join(", ")),
        )
    }
}

/// Conditions with `lastTransitionTime` kept from `previous` when the status did not change.
fn build(
    names: &[&str],
    verdicts: Vec<Verdict>,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let prev: BTreeMap<&str, &Condition> = previous.iter().map(|c| (c.type_.as_str(), c)).collect();
    names
        .iter()
        .zip(verdicts)
        .map(|(name, (ok, reason, message))| {
            let status = if ok { "True" } else { "False" };
            let last_transition_time = match prev.get(name) {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: (*name).to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

// === Budget ===

/// The units of a limit, in the order the lease book counts them: micro-dollars, requests,
/// tokens.
type Units<T> = [T; 3];

/// The status of a budget. `totals` is the lease book's (by budget `namespace/name` and limit
/// index); `selected` counts the running injected pods whose table holds the budget.
///
/// Each window's `used` is the lease book's total for the limit's current window by `now`, but
/// never less than what the previous status said of the same window (same period as written,
/// same start): a new leader whose book has not heard from every sidecar yet must not write a
/// smaller total over the durable one (docs/reference/operator.md, "Durable spend").
pub fn budget_status(
    budget: &Budget,
    outcome: &BudgetOutcome,
    totals: &HashMap<(String, u32), LimitTotals>,
    selected: u32,
    now: Time,
) -> BudgetStatus {
    let namespace = budget.metadata.namespace.as_deref().unwrap_or("default");
    let name = budget.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let previous = budget.status.as_ref();
    let prev_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();

    let mut windows = Vec::new();
    let mut nearest: Option<(f64, BudgetSummary)> = None;
    // Refusals since the earliest window start: those counted in the longest-running window.
    let mut refused: Option<(Timestamp, u64)> = None;
    for (index, limit) in budget.spec.limits.iter().enumerate() {
        // An unparsable period or amount is an `Accepted` problem; such a limit has no window.
        let Some(window) = limit.period().and_then(|p| p.window(now.0)) else {
            continue;
        };
        let caps: Units<Option<u64>> = [
            limit.usd.as_ref().and_then(Usd::micros),
            limit.requests,
            limit.tokens,
        ];
        if limit.usd.is_some() && caps[0].is_none() {
            continue;
        }
        let book = u32::try_from(index)
            .ok()
            .and_then(|i| totals.get(&(id.clone(), i)))
            .filter(|t| t.window == window);
        let counted = book.map_or([0; 3], |t| t.used);
        if let Some(t) = book
            && refused.is_none_or(|(start, _)| window.start < start)
        {
            refused = Some((window.start, t.refused));
        }
        let written = previous
            .and_then(|p| p.windows.get(index))
            .and_then(durable_of)
            .filter(|d| d.period == limit.period && d.window_start == window.start)
            .map_or([0; 3], |d| d.used);
        let used: Units<u64> = std::array::from_fn(|u| counted[u].max(written[u]));
        let remaining: Units<u64> =
            std::array::from_fn(|u| caps[u].map_or(0, |cap| cap.saturating_sub(used[u])));
        for unit in 0..3 {
            let Some(cap) = caps[unit] else { continue };
            let share = fraction(used[unit], cap);
            if nearest.as_ref().is_none_or(|(best, _)| share > *best) {
                nearest = Some((
                    share,
                    BudgetSummary {
                        period: limit.period.clone(),
                        used: with_unit(unit, used[unit]),
                        limit: with_unit(unit, cap),
                    },
                ));
            }
        }
        windows.push(WindowStatus {
            period: limit.period.clone(),
            start: Time(window.start),
            end: Time(window.end),
            used: amounts(&caps, &used),
            limit: amounts(&caps, &caps.map(|c| c.unwrap_or(0))),
            remaining: amounts(&caps, &remaining),
        });
    }

    let (reporting, leased) = totals
        .iter()
        .filter(|((budget, _), _)| *budget == id)
        .fold((0, 0), |(r, l), (_, t)| {
            (t.reporting.max(r), t.leased.max(l))
        });
    let accepted = from_problems(reason::ACCEPTED, &outcome.accepted, "the budget is valid");
    let ready = if !accepted.0 {
        (
            false,
            reason::NOT_ACCEPTED,
            "not enforced: Accepted is False".to_string(),
        )
    } else if selected == 0 {
        (
            false,
            reason::NO_SIDECARS,
            "no running injected pod's table holds this budget: nothing counts against it"
                .to_string(),
        )
    } else {
        (
            true,
            reason::READY,
            "enforced by the sidecars of the pods it selects".to_string(),
        )
    };
    let generation = outcome.generation;
    BudgetStatus {
        conditions: build(
            &[types::ACCEPTED, types::READY],
            vec![accepted, ready],
            generation,
            prev_conditions,
            &now,
        ),
        observed_generation: generation,
        summary: nearest.map(|(_, summary)| summary),
        windows,
        // Filled by the step from the lease book's holders (`spend::budget_top_workloads`).
        top_workloads: Vec::new(),
        sidecars: Some(BudgetSidecars { reporting, leased }),
        refused_requests: refused.map(|(_, n)| n),
    }
}

/// Whether two budget statuses differ at most in what spend moves (what was used and is left,
/// the summary, the sidecar counts) and in transition times: such a change may wait a little, a
/// change of conditions, generation or windows may not.
pub fn same_but_spend(a: &BudgetStatus, b: &BudgetStatus) -> bool {
    fn strip(status: &BudgetStatus) -> BudgetStatus {
        let mut status = status.clone();
        status.summary = None;
        status.sidecars = None;
        status.refused_requests = None;
        status.top_workloads = Vec::new();
        for window in &mut status.windows {
            window.used = BudgetAmounts::default();
            window.remaining = BudgetAmounts::default();
        }
        status
    }
    same_ignoring_time(&strip(a), &strip(b))
}

/// What the status of every budget says its windows used, for the lease book to resume from.
pub fn durable_totals(budgets: &[Budget]) -> DurableTotals {
    let mut out = DurableTotals::new();
    for budget in budgets {
        let Some(status) = &budget.status else {
            continue;
        };
        let namespace = budget.metadata.namespace.as_deref().unwrap_or("default");
        let name = budget.metadata.name.as_deref().unwrap_or_default();
        for (index, window) in status.windows.iter().enumerate() {
            let (Ok(index), Some(durable)) = (u32::try_from(index), durable_of(window)) else {
                continue;
            };
            out.insert((format!("{namespace}/{name}"), index), durable);
        }
    }
    out
}

/// The floor a status window sets; `None` when its dollars do not parse (not ours).
fn durable_of(window: &WindowStatus) -> Option<Durable> {
    let usd = match &window.used.usd {
        Some(usd) => usd.micros()?,
        None => 0,
    };
    // A period that no longer parses cannot match a limit's window anyway.
    Period::parse(&window.period)?;
    Some(Durable {
        period: window.period.clone(),
        window_start: window.start.0,
        used: [
            usd,
            window.used.requests.unwrap_or(0),
            window.used.tokens.unwrap_or(0),
        ],
    })
}

/// The share of `cap` that `used` is; a cap of zero ("no spend at all") is always full.
pub fn fraction(used: u64, cap: u64) -> f64 {
    if cap == 0 {
        return 1.0_f64.max(used as f64);
    }
    used as f64 / cap as f64
}

/// The largest share of its limit any unit of `window` has used.
pub fn window_fraction(window: &WindowStatus) -> f64 {
    let pairs = [
        (
            window.used.usd.as_ref().and_then(Usd::micros),
            window.limit.usd.as_ref().and_then(Usd::micros),
        ),
        (window.used.requests, window.limit.requests),
        (window.used.tokens, window.limit.tokens),
    ];
    pairs
        .into_iter()
        .filter_map(|(used, cap)| Some(fraction(used.unwrap_or(0), cap?)))
        .fold(0.0, f64::max)
}

/// `412.10 USD`, `512 requests`, `1200 tokens`: what `kubectl get budgets` shows.
fn with_unit(unit: usize, amount: u64) -> String {
    match unit {
        0 => format!("{} USD", Usd::from_micros(amount).0),
        1 => format!("{amount} requests"),
        _ => format!("{amount} tokens"),
    }
}

/// `values` in the units `caps` sets, dollars as decimal strings.
fn amounts(caps: &Units<Option<u64>>, values: &Units<u64>) -> BudgetAmounts {
    BudgetAmounts {
        usd: caps[0].map(|_| Usd::from_micros(values[0])),
        requests: caps[1].map(|_| values[1]),
        tokens: caps[2].map(|_| values[2]),
    }
}

#[cfg(test)]
mod tests;
