//! Budgets this sidecar enforces: per limit, what the current window has used, counted in
//! atomics so that the request path takes no lock and makes no network call
//! (docs/reference/sidecar.md#budgets).
//!
//! A budget with no `providers` is checked when a request is admitted: an exhausted one refuses
//! it (429 `switchyard_budget_exhausted`). A budget with `providers` is checked for each target:
//! an exhausted one makes its targets ineligible, and the request fails over to the others.
//! In `Shadow` mode nothing is refused; the would-be refusals are counted.
//!
//! What a request costs is known only at its end, so admission asks only whether a window still
//! has room; the request is charged when it ends. Concurrent requests can therefore overshoot a
//! dollar or token limit by what the requests in flight cost. A request limit is exact: a budget
//! without `providers` takes its request slot when it admits, with a compare-and-swap.
//!
//! In standalone mode the sidecar is the whole fleet and holds each whole limit. In pod mode it
//! holds the share the operator leased it ([`lease`]): it reports what it used and receives a
//! new lease with each report.
//!
//! A provider's fleet-wide rate limit (`limits.scope: Fleet`) is compiled into the same kind of
//! entry ([`table::BudgetKind::FleetLimit`]) and enforced here too, with three differences: it
//! takes its request slot when its target's turn comes ([`claim_target`]), since the provider
//! counts every request it receives, answered or not; its refusal reads like a provider's rate
//! limit, not like a budget ([`Exhausted::code`]); and its series are
//! `switchyard_fleet_limit_*`, not `switchyard_budget_*`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus::{Gauge, IntCounter};
use switchyard_crds::report::{self, BudgetUsage};
use switchyard_crds::table::{self, BudgetLimit};
use switchyard_crds::v1alpha1::{BudgetMode, Usd};
use switchyard_crds::window::{self, Period, Timestamp, Window};

use self::lease::{Caps, Held, NANOS_PER_MICRO};
use crate::telemetry::metrics::Metrics;

pub mod lease;

/// How soon a leased sidecar may have room again although its window goes on: its next report
/// brings a new lease, within the 5 s ± 20 % that sidecars with budgets report at.
const LEASE_RENEWAL: Duration = Duration::from_secs(6);

/// One budget's live counters.
pub struct BudgetRt {
    pub def: table::Budget,
    /// `namespace/name`.
    pub id: String,
    /// Pod mode: each limit holds the share the operator leased, not the whole limit.
    leased: bool,
    /// When this budget started counting here: a leased budget that has had no lease for
    /// [`lease::FIRST_LEASE_GRACE`] since then is treated as one whose lease lapsed.
    since: Timestamp,
    limits: Box<[LimitRt]>,
    refusals: IntCounter,
}

/// One limit: its caps and the window being counted.
struct LimitRt {
    def: BudgetLimit,
    period: Period,
    /// Swapped whole when a new window begins. A request is charged in the window current when
    /// it ends: a long one admitted just before a boundary counts in the next window.
    window: ArcSwap<WindowCount>,
    /// The operator's latest lease (pod mode).
    held: ArcSwapOption<Held>,
    remaining: Remaining,
}

/// What one window has used.
struct WindowCount {
    window: Window,
    usd_nanos: AtomicU64,
    requests: AtomicU64,
    tokens: AtomicU64,
    /// Requests the budget refused (would have, in `Shadow`) in the window, for reports.
    refused: AtomicU64,
}

/// `switchyard_budget_remaining` series of one limit, one per unit it caps.
struct Remaining {
    usd: Option<Gauge>,
    requests: Option<Gauge>,
    tokens: Option<Gauge>,
}

/// Why a request or target was refused: the first limit without room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// `namespace/name` of the budget (`namespace/pool/provider` for a fleet limit).
    pub budget: String,
    /// The limit's period as written.
    pub period: String,
    /// What was used of what, e.g. `3 of 3 requests`.
    pub used: String,
    /// Until the window ends and the limit has room again.
    pub wait: Duration,
    /// Set when the limit is a provider's fleet-wide rate limit rather than a Budget (boxed:
    /// refusals are rare, and the `Result`s that carry them stay small).
    pub fleet: Option<Box<FleetRefusal>>,
}

/// The provider whose fleet-wide rate limit refused, and that limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetRefusal {
    /// `pool/provider`.
    pub provider: String,
    /// The whole fleet's limit of the unit that ran out, e.g. `60 requests per minute`.
    pub limit: String,
}

impl Exhausted {
    /// The message a refused client reads.
    pub fn message(&self) -> String {
        match &self.fleet {
            Some(fleet) => format!(
                "provider {} is at its fleet-wide rate limit of {}: {} used in the current \
                 minute; it has room again in {} s",
                fleet.provider,
                fleet.limit,
                self.used,
                self.retry_after()
            ),
            None => format!(
                "budget {} is exhausted: {} used in its {} window; it has room again in {} s",
                self.budget,
                self.used,
                self.period,
                self.retry_after()
            ),
        }
    }

    /// The error code a refused client reads: a fleet limit is the provider's rate limit kept
    /// by the fleet, so it answers as a provider at its rate limit does (`rate_limit_exceeded`,
    /// docs/reference/api.md#errors); a budget is `switchyard_budget_exhausted`.
    pub fn code(&self) -> &'static str {
        if self.fleet.is_some() {
            "rate_limit_exceeded"
        } else {
            "switchyard_budget_exhausted"
        }
    }

    /// `Retry-After` in whole seconds, rounded up.
    pub fn retry_after(&self) -> u64 {
        window::retry_after_seconds(self.wait)
    }
}

impl BudgetRt {
    /// Live counters for `def` as of `now`, holding the whole limit or (`leased`) the operator's
    /// share.
    /// Windows (and leases) of `previous` whose limit is unchanged carry over, so a reload (or an
    /// edited amount) does not forget what was spent.
    pub fn new(
        def: table::Budget,
        previous: Option<&BudgetRt>,
        metrics: &Metrics,
        leased: bool,
        now: Timestamp,
    ) -> Self {
        let id = def.id();
        let limits = def
            .limits
            .iter()
            .enumerate()
            .filter_map(|(i, limit)| {
                // The compiler passes only valid periods; a table from elsewhere that carries a
                // bad one loses that limit rather than the whole table.
                let period = Period::parse(&limit.period)?;
                // The same place and period: two limits may share a period, and each keeps its
                // own count.
                let kept = previous
                    .and_then(|p| p.limits.get(i))
                    .filter(|l| l.def.period == limit.period);
                let window = kept.map_or_else(
                    || Arc::new(WindowCount::new(period, now)),
                    |l| l.window.load_full(),
                );
                Some(LimitRt {
                    remaining: Remaining::new(metrics, &def, limit),
                    def: limit.clone(),
                    period,
                    window: ArcSwap::new(window),
                    held: ArcSwapOption::new(kept.and_then(|l| l.held.load_full())),
                })
            })
            .collect();
        let refusals = match fleet_provider(&def) {
            Some(provider) => metrics.fleet_limit_refusals.with_label_values(&[provider]),
            None => metrics.budget_refusals.with_label_values(&[&id]),
        };
        Self {
            refusals,
            id,
            def,
            leased,
            since: previous.map_or(now, |p| p.since),
            limits,
        }
    }

    /// Whether every limit has room now. Counts a refusal when one has not (in `Shadow` mode a
    /// would-be refusal, and the answer is then `Ok`).
    pub fn check(&self, now: Timestamp) -> Result<(), Exhausted> {
        match self.first_exhausted(now) {
            None => Ok(()),
            Some(exhausted) => self.refuse(exhausted, now),
        }
    }

    /// Admits one request: checks every limit and takes a request slot in each window, exactly,
    /// so that concurrent requests cannot pass a request limit. On refusal nothing is taken.
    pub fn admit(&self, now: Timestamp) -> Result<(), Exhausted> {
        if let Some(exhausted) = self.first_exhausted(now) {
            // `Shadow` goes on: the request is served and counted like any other.
            self.refuse(exhausted, now)?;
            self.count_request(now);
            return Ok(());
        }
        for (i, limit) in self.limits.iter().enumerate() {
            let count = limit.current(now);
            let caps = self.caps(limit, &count, now);
            if !count.take_request(caps.requests) {
                // Lost a race for the last slot: give back the slots taken so far.
                for taken in &self.limits[..i] {
                    taken.current(now).give_back_request();
                }
                self.refuse(self.exhausted(limit, &count, &caps, now), now)?;
                self.count_request(now);
                return Ok(());
            }
        }
        Ok(())
    }

    /// Counts one served request (for budgets that did not count it at admission).
    pub fn count_request(&self, now: Timestamp) {
        for limit in self.limits.iter() {
            limit.current(now).requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Charges what a request used.
    pub fn charge(&self, tokens: u64, cost_usd: f64, now: Timestamp) {
        // `as` saturates: a negative or NaN cost (never produced by pricing) charges nothing.
        let nanos = (cost_usd * 1e9).round() as u64;
        for limit in self.limits.iter() {
            let count = limit.current(now);
            count.usd_nanos.fetch_add(nanos, Ordering::Relaxed);
            count.tokens.fetch_add(tokens, Ordering::Relaxed);
        }
    }

    /// Sets the `switchyard_budget_remaining` series to what each current window has left.
    pub fn refresh_remaining(&self, now: Timestamp) {
        for limit in self.limits.iter() {
            let count = limit.current(now);
            limit.remaining.set(&self.caps(limit, &count, now), &count);
        }
    }

    /// What this instance used of each limit in its current window, for a report.
    pub fn usage(&self, now: Timestamp) -> Vec<BudgetUsage> {
        self.limits
            .iter()
            .enumerate()
            .map(|(i, limit)| {
                let count = limit.current(now);
                let held = limit.held.load();
                let window_start = count.window.start.as_second();
                BudgetUsage {
                    budget: self.id.clone(),
                    limit: u32::try_from(i).unwrap_or(u32::MAX),
                    period: limit.def.period.clone(),
                    window_start,
                    used: count.used().to_amounts(),
                    holds: held
                        .as_ref()
                        .filter(|h| h.window_start == window_start)
                        .map(|h| h.allowance.to_amounts()),
                    refused: count.refused.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Takes a lease from the operator. One for another limit (the table changed since the
    /// report) is ignored.
    pub fn apply(&self, lease: &report::Lease, now: Timestamp) {
        let Some(limit) = usize::try_from(lease.limit)
            .ok()
            .and_then(|i| self.limits.get(i))
            .filter(|l| l.def.period == lease.period)
        else {
            return;
        };
        let used = limit.current(now).used();
        limit.held.store(Some(Arc::new(Held::new(lease, used))));
    }

    fn first_exhausted(&self, now: Timestamp) -> Option<Exhausted> {
        self.limits.iter().find_map(|limit| {
            let count = limit.current(now);
            let caps = self.caps(limit, &count, now);
            (!count.has_room(&caps)).then(|| self.exhausted(limit, &count, &caps, now))
        })
    }

    /// What `limit` lets this sidecar count in `count`'s window now.
    fn caps(&self, limit: &LimitRt, count: &WindowCount, now: Timestamp) -> Caps {
        if !self.leased {
            return Caps::whole(&limit.def);
        }
        lease::caps(
            &limit.def,
            limit.held.load().as_deref(),
            self.def.when_unreachable,
            count.window.start.as_second(),
            self.since,
            now,
        )
    }

    fn exhausted(
        &self,
        limit: &LimitRt,
        count: &WindowCount,
        caps: &Caps,
        now: Timestamp,
    ) -> Exhausted {
        let (used, cap, unit) = count.first_full(caps);
        let mut wait = count.window.until_end(now);
        let mut used = format!("{used} of {cap} {unit}");
        if self.leased {
            // The fleet may still have room: the next lease can bring this sidecar more.
            wait = wait.min(LEASE_RENEWAL);
            used.push_str(" (this sidecar's share)");
        }
        let fleet = fleet_provider(&self.def).map(|provider| {
            let whole = match unit {
                "tokens" => limit.def.tokens,
                _ => limit.def.requests,
            };
            Box::new(FleetRefusal {
                provider: provider.to_string(),
                limit: format!("{} {unit} per minute", whole.unwrap_or_default()),
            })
        });
        Exhausted {
            budget: self.id.clone(),
            period: limit.def.period.clone(),
            used,
            wait,
            fleet,
        }
    }

    fn refuse(&self, exhausted: Exhausted, now: Timestamp) -> Result<(), Exhausted> {
        self.refusals.inc();
        for limit in self.limits.iter() {
            limit.current(now).refused.fetch_add(1, Ordering::Relaxed);
        }
        match self.def.mode {
            BudgetMode::Enforce => Err(exhausted),
            BudgetMode::Shadow => Ok(()),
        }
    }

    /// Removes this budget's `switchyard_budget_remaining` series, and its refusal count unless
    /// the budget stays (changed) in the table.
    pub fn forget_metrics(&self, metrics: &Metrics, stays: bool) {
        let fleet = fleet_provider(&self.def);
        for limit in self.limits.iter() {
            for (unit, set) in [
                ("usd", limit.def.usd_micros.is_some()),
                ("requests", limit.def.requests.is_some()),
                ("tokens", limit.def.tokens.is_some()),
            ] {
                if !set {
                    continue;
                }
                let _ = match fleet {
                    Some(provider) => metrics
                        .fleet_limit_remaining
                        .remove_label_values(&[provider, unit]),
                    None => {
                        let labels = [self.id.as_str(), limit.def.period.as_str(), unit];
                        metrics.budget_remaining.remove_label_values(&labels)
                    }
                };
            }
        }
        if !stays {
            let _ = match fleet {
                Some(provider) => metrics
                    .fleet_limit_refusals
                    .remove_label_values(&[provider]),
                None => metrics.budget_refusals.remove_label_values(&[&self.id]),
            };
        }
    }

    /// Undoes the request slot [`BudgetRt::admit`] took: for a request no target served.
    pub fn give_back_request(&self, now: Timestamp) {
        for limit in self.limits.iter() {
            limit.current(now).give_back_request();
        }
    }
}

impl LimitRt {
    /// The window holding `now`, begun afresh when the last one has ended. A `now` from before
    /// the current window (read by a thread that was then preempted while another began the
    /// window, or a clock that stepped back) counts in the current window: windows only move
    /// forward, so none is ever begun again and its counts lost.
    fn current(&self, now: Timestamp) -> Arc<WindowCount> {
        let count = self.window.load();
        if now < count.window.end {
            return arc_swap::Guard::into_inner(count);
        }
        let fresh = Arc::new(WindowCount::new(self.period, now));
        // Only one of the racing requests installs its fresh window; the others use the winner's.
        // (The `remaining` gauge catches up at the next scrape, which refreshes every limit.)
        let previous = self.window.compare_and_swap(&count, fresh.clone());
        if Arc::ptr_eq(&previous, &count) {
            fresh
        } else {
            arc_swap::Guard::into_inner(previous)
        }
    }
}

impl WindowCount {
    fn new(period: Period, now: Timestamp) -> Self {
        // A window past the year 9999 cannot be represented; such a clock counts forever in one.
        let window = period.window(now).unwrap_or(Window {
            start: now,
            end: Timestamp::MAX,
        });
        Self {
            window,
            usd_nanos: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn has_room(&self, caps: &Caps) -> bool {
        let below = |used: &AtomicU64, cap: Option<u64>| {
            cap.is_none_or(|cap| used.load(Ordering::Relaxed) < cap)
        };
        below(&self.usd_nanos, caps.usd_nanos)
            && below(&self.requests, caps.requests)
            && below(&self.tokens, caps.tokens)
    }

    /// What the window has counted, every unit.
    fn used(&self) -> Caps {
        let used = |n: &AtomicU64| Some(n.load(Ordering::Relaxed));
        Caps {
            usd_nanos: used(&self.usd_nanos),
            requests: used(&self.requests),
            tokens: used(&self.tokens),
        }
    }

    /// Takes a request slot if the cap (if any) leaves one.
    fn take_request(&self, cap: Option<u64>) -> bool {
        match cap {
            None => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(cap) => self
                .requests
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_ok(),
        }
    }

    /// Undoes [`WindowCount::take_request`]. Saturating: the slot may have been taken in a
    /// window that has since been replaced, whose count starts at zero.
    fn give_back_request(&self) {
        let _ = self
            .requests
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Used, limit and unit of the first full cap, as text.
    fn first_full(&self, caps: &Caps) -> (String, String, &'static str) {
        let used = |n: &AtomicU64| n.load(Ordering::Relaxed);
        if let Some(cap) = caps.usd_nanos
            && used(&self.usd_nanos) >= cap
        {
            let micros = |nanos: u64| Usd::from_micros(nanos / NANOS_PER_MICRO).0;
            return (micros(used(&self.usd_nanos)), micros(cap), "USD");
        }
        if let Some(cap) = caps.tokens
            && used(&self.tokens) >= cap
        {
            return (used(&self.tokens).to_string(), cap.to_string(), "tokens");
        }
        let cap = caps.requests.unwrap_or_default();
        (
            used(&self.requests).to_string(),
            cap.to_string(),
            "requests",
        )
    }
}

impl Remaining {
    fn new(metrics: &Metrics, budget: &table::Budget, def: &BudgetLimit) -> Self {
        let id = budget.id();
        let fleet = fleet_provider(budget);
        let gauge = |set: bool, unit: &str| {
            set.then(|| match fleet {
                // A fleet limit has one limit, per minute: the period says nothing more.
                Some(provider) => metrics
                    .fleet_limit_remaining
                    .with_label_values(&[provider, unit]),
                None => metrics
                    .budget_remaining
                    .with_label_values(&[&id, &def.period, unit]),
            })
        };
        Self {
            usd: gauge(def.usd_micros.is_some(), "usd"),
            requests: gauge(def.requests.is_some(), "requests"),
            tokens: gauge(def.tokens.is_some(), "tokens"),
        }
    }

    /// What is left of `caps`; an uncapped unit (pod mode before its first lease, or
    /// `FailOpen` after one lapsed) shows as infinite.
    fn set(&self, caps: &Caps, count: &WindowCount) {
        let left = |cap: Option<u64>, used: &AtomicU64| {
            cap.map_or(f64::INFINITY, |cap| {
                cap.saturating_sub(used.load(Ordering::Relaxed)) as f64
            })
        };
        if let Some(g) = &self.usd {
            g.set(left(caps.usd_nanos, &count.usd_nanos) / 1e9);
        }
        if let Some(g) = &self.requests {
            g.set(left(caps.requests, &count.requests));
        }
        if let Some(g) = &self.tokens {
            g.set(left(caps.tokens, &count.tokens));
        }
    }
}

/// Admits a request against every budget that counts it at admission; the first refusal wins
/// and gives back the slots the others took.
pub fn admit(budgets: &[Arc<BudgetRt>], now: Timestamp) -> Result<(), Exhausted> {
    for (i, budget) in budgets.iter().enumerate() {
        if let Err(exhausted) = budget.admit(now) {
            for admitted in &budgets[..i] {
                admitted.give_back_request(now);
            }
            return Err(exhausted);
        }
    }
    Ok(())
}

/// Claims a target's turn against its budgets when the turn comes: a provider budget only needs
/// room (it counts what the target served, when the request ends); a fleet limit takes its
/// request slot now, exactly, since the provider counts every request it receives, answered or
/// not. The first refusal wins (counted) and gives back the slots taken so far.
pub fn claim_target(budgets: &[Arc<BudgetRt>], now: Timestamp) -> Result<(), Exhausted> {
    for (i, budget) in budgets.iter().enumerate() {
        let claimed = if budget.def.is_fleet_limit() {
            budget.admit(now)
        } else {
            budget.check(now)
        };
        if let Err(exhausted) = claimed {
            release_target(&budgets[..i], now);
            return Err(exhausted);
        }
    }
    Ok(())
}

/// Gives back the fleet-limit slots [`claim_target`] took, for a target that was then not sent
/// the request after all (its circuit or a local limit held it back).
pub fn release_target(budgets: &[Arc<BudgetRt>], now: Timestamp) {
    for budget in budgets.iter().filter(|b| b.def.is_fleet_limit()) {
        budget.give_back_request(now);
    }
}

/// The `pool/provider` a fleet limit holds for (its name); `None` for a Budget.
fn fleet_provider(def: &table::Budget) -> Option<&str> {
    def.is_fleet_limit().then_some(def.name.as_str())
}

#[cfg(test)]
mod tests;
