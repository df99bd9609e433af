//! The lease book: how the leader divides each budget limit among the sidecars that share it
//! (docs/reference/operator.md#leases).
//!
//! Every sidecar whose table holds a budget reports, every few seconds, what it used of each
//! limit in the current window; the answer is its lease, an allowance for the window ("you may
//! have used this much") that lapses unless renewed. For each (budget, limit) the book keeps the
//! operator's current window and, per holder (pod UID, instance), its use, its allowance, its
//! demand and when it was last heard from. A holder's new allowance is its own use plus a grant
//! that never takes what others were granted and have not used yet, so the allowances of all
//! holders never add up to more than the limit while every sidecar keeps within its own.
//!
//! Windows are the operator's: a sidecar whose clock puts its counts in an earlier window counts
//! as having used nothing of this one yet; one whose clock puts them in a later window keeps the
//! use it last reported of this one. The book is pure, with an explicit wall-clock `now`, so tests
//! need no clock.
//!
//! Totals are durable across leader changes through Budget status (docs/reference/operator.md,
//! "Durable spend"): the controller hands the book what status last said each limit's window had
//! used ([`Durable`]); the book counts the fleet's use in a window as at least that, and once
//! every live holder has reported, what that total holds beyond their reports (the use of
//! sidecars that stopped unheard) on top of them, so a new leader resumes from it instead of from
//! zero. [`LeaseBook::totals`] is what status is built from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use switchyard_crds::report::{Amounts, BudgetUsage, Lease};
use switchyard_crds::table;
use switchyard_crds::v1alpha1::WhenUnreachable;
use switchyard_crds::window::{Period, Timestamp, Window};

/// How long a lease holds unrenewed: DESIGN's "at most three report intervals" (5 s, ±20 %).
/// It rides out one lost report, not two: a sidecar abandons a report after one interval, so
/// the renewal after a lost one comes two jittered intervals (8–12 s) plus however long the lost
/// one took (up to 5 s) after the last lease; within 15 s unless the lost report hung until it
/// was abandoned and the intervals ran long (up to about 17 s, and the lease lapses for a
/// moment).
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// A holder not heard from for this long is forgotten: its use stays counted (spent is spent)
/// and its demand no longer weighs; its reservation is released to the others unless the
/// budget's `whenUnreachable` is `LastShare` (a cut-off sidecar keeps enforcing its last lease),
/// in which case it is kept until the window ends. If it reports again in the window it is the
/// same holder again, its use not counted twice.
pub const FORGET_AFTER: Duration = Duration::from_secs(2 * LEASE_TTL.as_secs());
/// The share of a limit divided equally among holders whatever their demand, so that an idle
/// sidecar can still admit its first requests.
pub const FLOOR: f64 = 0.1;
/// Weight of the newest rate in a holder's demand (exponentially weighted moving average per
/// report): about the last four reports matter, so demand follows load within seconds without
/// jumping at one burst.
const DEMAND_WEIGHT: f64 = 0.3;
/// The units a limit may cap, in the order of [`Units`]: micro-dollars, requests, tokens.
const UNITS: usize = 3;

/// One number per unit: micro-dollars, requests, tokens.
type Units<T> = [T; UNITS];

/// Who holds a lease: the authenticated pod UID and the sidecar's instance id, so that no pod
/// can report for another and a restarted sidecar is a new holder.
pub type HolderKey = (String, String);

/// What Budget status last said one limit's window had used: a floor for the fleet's use in
/// that window (docs/reference/operator.md, "Durable spend").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durable {
    /// The limit's period as written when the status was written.
    pub period: String,
    /// The start of the window the status counted.
    pub window_start: Timestamp,
    /// Micro-dollars, requests, tokens (0 for the units the limit does not set).
    pub used: [u64; UNITS],
}

/// [`Durable`] totals by (budget `namespace/name`, limit index).
pub type DurableTotals = HashMap<(String, u32), Durable>;

/// By (budget `namespace/name`, limit index): the book's window and each holder's use in it
/// ([`LeaseBook::holder_use`]).
pub type HolderUse = HashMap<(String, u32), (Window, Vec<(HolderKey, [u64; UNITS])>)>;

/// What the book knows of one limit's current window, for Budget status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitTotals {
    /// The book's window for the limit (the operator's clock at the last report).
    pub window: Window,
    /// The fleet's use in it: every holder's use, forgotten holders' included (plus the
    /// use of sidecars gone unheard, once known), and never less than the [`Durable`] floor.
    /// Micro-dollars, requests, tokens.
    pub used: [u64; UNITS],
    /// Requests the holders refused for the budget in this window (would-be, in `Shadow`).
    pub refused: u64,
    /// Holders heard from within [`LEASE_TTL`].
    pub reporting: u32,
    /// Those of them holding a lease for this window that has not expired.
    pub leased: u32,
}

/// Every lease this leader has handed out.
#[derive(Debug)]
pub struct LeaseBook {
    /// Until then the book only learns: it echoes what holders say they hold (at most their use
    /// plus what is available) and hands new ones the floor, so that a new leader does not hand
    /// out capacity the old one already granted.
    learning_until: Timestamp,
    /// By (budget `namespace/name`, limit index).
    limits: HashMap<(String, u32), LimitBook>,
    /// What Budget status last said, as the controller last published it.
    durable: Arc<DurableTotals>,
}

/// One limit of one budget in the operator's current window.
#[derive(Debug)]
struct LimitBook {
    window: Window,
    /// The budget's `whenUnreachable`, as of the last report: whether a forgotten holder's
    /// reservation is kept.
    when_unreachable: WhenUnreachable,
    /// The most any Budget status said was used in this window: the fleet's use is never counted
    /// below it, so a new leader resumes from what the last one wrote.
    floor: Units<u64>,
    /// What the floor holds beyond what the holders heard from in the book's first
    /// [`LEASE_TTL`] reported: the use of sidecars that stopped before this book heard from
    /// them. `None` until then (the fleet's use is the floor or more); fixed after, and added to
    /// what holders report.
    baseline: Option<Units<u64>>,
    /// When the book was created: every live holder has reported by `since + LEASE_TTL`.
    since: Timestamp,
    /// Every holder heard from in the window, forgotten ones included (their use stays counted,
    /// and one that reports again is not counted twice).
    holders: HashMap<HolderKey, Holder>,
}

#[derive(Debug, Default)]
struct Holder {
    /// Reported use in the book's window.
    used: Units<u64>,
    /// Reported refusals in the book's window.
    refused: u64,
    /// The allowance last granted in the book's window; `None` before the first.
    allowance: Option<Units<u64>>,
    /// Until it is granted in the book's window: the grant of its last lease, for an earlier
    /// window (what that allowance added to its use then), which its sidecar keeps enforcing in
    /// this one (docs/reference/operator.md#leases).
    carried: Option<Units<u64>>,
    /// Usage per second, smoothed; kept across windows.
    demand: Units<f64>,
    /// The last use reported in the book's window and when, to measure the rate.
    sample: Option<(Units<u64>, Timestamp)>,
    last_seen: Option<Timestamp>,
    /// Not heard from for [`FORGET_AFTER`]: its demand does not weigh, and its reservation is
    /// kept only for `LastShare` budgets.
    forgotten: bool,
}

/// What the holder reported of one limit, once checked against the table.
struct Reported {
    /// `None` when the report says nothing usable of the limit (nothing of it, or counts of a
    /// later window by the sidecar's clock): what the holder was known to have used of the
    /// operator's window stays.
    used: Option<Units<u64>>,
    holds: Option<Units<Option<u64>>>,
    refused: u64,
    /// Whether the counts belong to an earlier window than the operator's (the sidecar's clock
    /// is behind near a boundary): it has used nothing of the operator's window yet.
    earlier: bool,
}

// === impl LeaseBook ===

impl LeaseBook {
    /// An empty book that learns for [`LEASE_TTL`] from `now`: create one whenever this replica
    /// becomes the leader.
    pub fn new(now: Timestamp) -> Self {
        Self {
            learning_until: now + LEASE_TTL,
            limits: HashMap::new(),
            durable: Arc::default(),
        }
    }

    /// Takes what Budget status says each limit's window used, as the controller last saw it.
    /// Each later report raises the floor of the limits it touches to the total given here for
    /// their current window (same period as written, same start); a total for another window is
    /// ignored. Cheap: the map is shared, not copied.
    pub fn resume_from(&mut self, durable: Arc<DurableTotals>) {
        self.durable = durable;
    }

    /// The fleet's use of every limit the book knows, by (budget `namespace/name`, limit index),
    /// in the window the book last counted it (which may have ended at `now`: compare it with the
    /// limit's window before use).
    pub fn totals(&self, now: Timestamp) -> HashMap<(String, u32), LimitTotals> {
        self.limits
            .iter()
            .map(|(key, book)| (key.clone(), book.totals(now)))
            .collect()
    }

    /// Each holder's use of every limit the book knows, by (budget `namespace/name`, limit
    /// index), in the window the book last counted it: what Budget status `topWorkloads` is
    /// built from (docs/reference/operator.md#spend-per-workload). Forgotten holders are
    /// included (spent is spent). Micro-dollars, requests, tokens.
    pub fn holder_use(&self) -> HolderUse {
        self.limits
            .iter()
            .map(|(key, book)| {
                let holders = book
                    .holders
                    .iter()
                    .map(|(holder, h)| (holder.clone(), h.used))
                    .collect();
                (key.clone(), (book.window, holders))
            })
            .collect()
    }

    /// Stops learning now: for a leader that knows no other one granted anything still live.
    pub fn end_learning(&mut self) {
        self.learning_until = Timestamp::MIN;
    }

    /// Whether the book still only learns at `now`.
    pub fn learning(&self, now: Timestamp) -> bool {
        now < self.learning_until
    }

    /// Takes one report of `holder`, whose table holds `budgets`, and returns its leases: one
    /// per (budget, limit) of the table, in the table's order. Usage of budgets not in the table,
    /// of limit indexes it lacks, or with another `period` than the table's, is ignored.
    pub fn report(
        &mut self,
        holder: &HolderKey,
        budgets: &BTreeMap<String, table::Budget>,
        usage: &[BudgetUsage],
        now: Timestamp,
    ) -> Vec<Lease> {
        self.forget(now);
        let learning = self.learning(now);
        let expires_at_ms = (now + LEASE_TTL).as_millisecond();
        let mut leases = Vec::new();
        for (id, budget) in budgets {
            for (index, limit) in budget.limits.iter().enumerate() {
                let Ok(index) = u32::try_from(index) else {
                    continue;
                };
                // `validate` refused periods that do not parse; a window past year 9999 has no
                // lease either.
                let Some(window) = Period::parse(&limit.period).and_then(|p| p.window(now)) else {
                    continue;
                };
                let report = usage
                    .iter()
                    .find(|u| u.budget == *id && u.limit == index && u.period == limit.period);
                let book = self
                    .limits
                    .entry((id.clone(), index))
                    .or_insert_with(|| LimitBook::new(window, now));
                book.roll_to(window);
                book.when_unreachable = budget.when_unreachable;
                if let Some(durable) = self.durable.get(&(id.clone(), index)) {
                    book.resume(durable, &limit.period);
                }
                book.settle(now);
                let reported = Reported::of(report, window);
                let allowance = book.grant(holder, &reported, caps(limit), learning, now);
                leases.push(Lease {
                    budget: id.clone(),
                    limit: index,
                    period: limit.period.clone(),
                    window_start: window.start.as_second(),
                    window_end: window.end.as_second(),
                    allowance,
                    expires_at_ms,
                });
            }
        }
        leases
    }

    /// Forgets holders not heard from for [`FORGET_AFTER`], and limits whose window is over and
    /// that no holder outlives (nothing of them is needed in the next).
    fn forget(&mut self, now: Timestamp) {
        for book in self.limits.values_mut() {
            book.forget(now);
        }
        self.limits.retain(|_, book| {
            book.window.contains(now) || book.holders.values().any(|h| h.outlives(book.window))
        });
    }
}

// === impl LimitBook ===

impl LimitBook {
    fn new(window: Window, now: Timestamp) -> Self {
        Self {
            window,
            when_unreachable: WhenUnreachable::default(),
            floor: [0; UNITS],
            baseline: None,
            since: now,
            holders: HashMap::new(),
        }
    }

    /// Fixes the baseline once every live holder has had time to report (one [`LEASE_TTL`]
    /// after the book began): what the floor holds beyond what they reported is the use of
    /// sidecars that stopped before this book heard from them, and is counted on top of the
    /// holders' from now on. A holder first heard from later is counted in full, even if the
    /// floor included its earlier use: more than it spent, never less.
    fn settle(&mut self, now: Timestamp) {
        if self.baseline.is_some() || now < self.since + LEASE_TTL {
            return;
        }
        let counted = self.counted();
        self.baseline = Some(std::array::from_fn(|unit| {
            self.floor[unit].saturating_sub(counted[unit])
        }));
    }

    /// Every holder's use, forgotten ones' included.
    fn counted(&self) -> Units<u64> {
        std::array::from_fn(|unit| {
            self.holders
                .values()
                .fold(0, |sum: u64, h| sum.saturating_add(h.used[unit]))
        })
    }

    /// Raises the floor to what status said of this window, if it speaks of this window.
    fn resume(&mut self, durable: &Durable, period: &str) {
        if durable.period != period || durable.window_start != self.window.start {
            return;
        }
        for (floor, used) in self.floor.iter_mut().zip(durable.used) {
            *floor = (*floor).max(used);
        }
    }

    /// The fleet's use of `unit` in the window: every holder's (forgotten ones' included), plus
    /// the baseline once fixed, and at least the floor. Not the sum of floor and holders: the
    /// holders that were reporting when the status was written are part of its total, and
    /// report their whole use again.
    fn spent(&self, unit: usize) -> u64 {
        let counted = self.counted()[unit];
        let baseline = self.baseline.map_or(0, |b| b[unit]);
        counted.saturating_add(baseline).max(self.floor[unit])
    }

    fn totals(&self, now: Timestamp) -> LimitTotals {
        let live = |h: &&Holder| {
            h.last_seen
                .is_some_and(|seen| now.duration_since(seen).unsigned_abs() < LEASE_TTL)
        };
        let reporting = self.holders.values().filter(live).count();
        // A lease is granted at every report and lasts LEASE_TTL: a live holder holds one unless
        // the window turned since (its allowance is then forgotten until it reports again).
        let leased = self
            .holders
            .values()
            .filter(live)
            .filter(|h| h.allowance.is_some())
            .count();
        LimitTotals {
            window: self.window,
            used: std::array::from_fn(|unit| self.spent(unit)),
            refused: self
                .holders
                .values()
                .fold(0, |sum: u64, h| sum.saturating_add(h.refused)),
            reporting: u32::try_from(reporting).unwrap_or(u32::MAX),
            leased: u32::try_from(leased).unwrap_or(u32::MAX),
        }
    }

    /// A new window by the operator's clock: everything counts from zero again, but demand is
    /// kept, so shares follow load from the first report on, and each holder's last grant stays
    /// reserved until it is renewed (its sidecar enforces it in the new window meanwhile).
    fn roll_to(&mut self, window: Window) {
        if self.window == window {
            return;
        }
        // Holders forgotten in the window that ended hold nothing any more (their reservation
        // was kept only until it ended); one forgotten since is still in the book.
        let ended = std::mem::replace(&mut self.window, window);
        self.holders.retain(|_, holder| holder.outlives(ended));
        self.floor = [0; UNITS];
        // The book saw this window begin: nobody used any of it unheard.
        self.baseline = Some([0; UNITS]);
        for holder in self.holders.values_mut() {
            // The sidecar keeps enforcing its last lease with its grant, from 0 used in the new
            // window, until it is renewed: reserve as much. A holder not granted anything in the
            // window that ended still carries the grant it carried into it.
            if let Some(allowance) = holder.allowance {
                holder.carried = Some(std::array::from_fn(|unit| {
                    allowance[unit].saturating_sub(holder.used[unit])
                }));
            }
            holder.used = [0; UNITS];
            holder.refused = 0;
            holder.allowance = None;
            holder.sample = None;
        }
    }

    /// Marks holders not heard from for [`FORGET_AFTER`] forgotten. They stay in the book until
    /// the window ends: their use is spent, and one that reports again is the same holder.
    fn forget(&mut self, now: Timestamp) {
        for holder in self.holders.values_mut() {
            holder.forgotten |= holder
                .last_seen
                .is_none_or(|seen| now.duration_since(seen).unsigned_abs() >= FORGET_AFTER);
        }
    }

    /// What `holder` may still use of `unit` beyond what it reported: its allowance less its
    /// use (before it is granted in this window, the grant it carries from an earlier one);
    /// nothing for a forgotten holder unless the budget is `LastShare`, whose cut-off sidecars
    /// keep enforcing their last lease.
    fn reservation(&self, holder: &Holder, unit: usize) -> u64 {
        if holder.forgotten && self.when_unreachable != WhenUnreachable::LastShare {
            return 0;
        }
        holder
            .allowance
            .or(holder.carried)
            .map_or(0, |a| a[unit].saturating_sub(holder.used[unit]))
    }

    /// Records `reported` for `key` and decides its allowance for the units in `caps`.
    fn grant(
        &mut self,
        key: &HolderKey,
        reported: &Reported,
        caps: Units<Option<u64>>,
        learning: bool,
        now: Timestamp,
    ) -> Amounts {
        let holder = self.holders.entry(key.clone()).or_default();
        holder.observe(reported, now);
        let n = self.holders.values().filter(|h| !h.forgotten).count() as f64;
        let mut granted = [0; UNITS];
        let mut out: Units<Option<u64>> = [None; UNITS];
        for unit in 0..UNITS {
            let Some(limit) = caps[unit] else { continue };
            let holder = &self.holders[key];
            let used_i = holder.used[unit];
            let spent = self.spent(unit);
            let reserved: u64 = self
                .holders
                .iter()
                .filter(|(k, _)| *k != key)
                .map(|(_, h)| self.reservation(h, unit))
                .fold(0, u64::saturating_add);
            let left = limit.saturating_sub(spent);
            let available = left.saturating_sub(reserved);
            let echoed = reported.holds.and_then(|h| h[unit]);
            let allowance = match (learning, echoed) {
                // What the previous leader granted, as the sidecar says (it enforces that until
                // told otherwise), but never more than is available: a lowered limit, a status
                // total the old leader did not know or a bogus report cannot push the total
                // past the limit.
                (true, Some(holds)) => holds.min(used_i.saturating_add(available)),
                (true, None) => used_i + down(left as f64 * FLOOR / n).min(available),
                (false, _) => {
                    let weight = weight(&self.holders, key, unit);
                    used_i + down(left as f64 * weight).min(available)
                }
            };
            granted[unit] = allowance;
            out[unit] = Some(allowance);
        }
        if let Some(holder) = self.holders.get_mut(key) {
            holder.allowance = Some(granted);
            holder.carried = None;
        }
        let [usd_micros, requests, tokens] = out;
        Amounts {
            usd_micros,
            requests,
            tokens,
        }
    }
}

// === impl Holder ===

impl Holder {
    /// Whether the holder stays in the book when `window` ends: it was not forgotten in it (a
    /// `LastShare` reservation is kept until the window in which the holder was forgotten ends).
    fn outlives(&self, window: Window) -> bool {
        self.last_seen
            .is_some_and(|seen| seen + FORGET_AFTER > window.end)
    }

    /// Takes a report: its use in the book's window, and the rate since the previous one into
    /// the demand.
    fn observe(&mut self, reported: &Reported, now: Timestamp) {
        self.last_seen = Some(now);
        self.forgotten = false;
        if reported.earlier {
            // Counted in an earlier window by the sidecar's clock: nothing of this one yet, and
            // no rate to learn from.
            self.used = [0; UNITS];
            self.refused = 0;
            self.sample = None;
            return;
        }
        let Some(used) = reported.used else {
            return;
        };
        self.refused = reported.refused;
        if let Some((before, at)) = self.sample {
            let seconds = now.duration_since(at).as_secs_f64().max(1e-3);
            for unit in 0..UNITS {
                // A count that went down is a restarted count: all of it is new.
                let grown = used[unit].checked_sub(before[unit]).unwrap_or(used[unit]);
                let rate = grown as f64 / seconds;
                self.demand[unit] =
                    DEMAND_WEIGHT * rate + (1.0 - DEMAND_WEIGHT) * self.demand[unit];
            }
        }
        self.used = used;
        self.sample = Some((used, now));
    }
}

// === impl Reported ===

impl Reported {
    fn of(usage: Option<&BudgetUsage>, window: Window) -> Self {
        let Some(usage) = usage else {
            return Self {
                used: None,
                holds: None,
                refused: 0,
                earlier: false,
            };
        };
        if usage.window_start != window.start.as_second() {
            // A later window (the sidecar's clock is ahead) says nothing of the operator's: the
            // holder's use of it is what it last reported, not nothing.
            return Self {
                used: None,
                holds: None,
                refused: 0,
                earlier: usage.window_start < window.start.as_second(),
            };
        }
        let amounts = |a: &Amounts| [a.usd_micros, a.requests, a.tokens];
        Self {
            used: Some(amounts(&usage.used).map(|v| v.unwrap_or(0))),
            holds: usage.holds.as_ref().map(amounts),
            refused: usage.refused,
            earlier: false,
        }
    }
}

/// The units `limit` caps, with their caps.
fn caps(limit: &table::BudgetLimit) -> Units<Option<u64>> {
    [limit.usd_micros, limit.requests, limit.tokens]
}

/// The share of what is left that `key` may claim for `unit`: the floor divided equally, the
/// rest by demand (equally when nobody has any).
fn weight(holders: &HashMap<HolderKey, Holder>, key: &HolderKey, unit: usize) -> f64 {
    let active = || holders.values().filter(|h| !h.forgotten);
    let n = active().count() as f64;
    let total: f64 = active().map(|h| h.demand[unit]).sum();
    if total <= 0.0 || !total.is_finite() {
        return 1.0 / n;
    }
    FLOOR / n + (1.0 - FLOOR) * holders[key].demand[unit] / total
}

/// Rounds a share down to a whole amount (never up: the sum must stay within the limit).
fn down(share: f64) -> u64 {
    if share.is_finite() && share > 0.0 {
        // NB: `as` saturates, and the share is never above the limit, a u64.
        share.floor() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
