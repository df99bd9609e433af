//! What a budget limit lets this sidecar use: the whole limit in standalone mode, in pod mode the
//! share the operator leased it (docs/reference/sidecar.md#budgets).
//!
//! A lease is an allowance for one window: admit while this sidecar's count is below it. It
//! lapses at an absolute time unless a report renews it; then the budget's `whenUnreachable`
//! decides. Before the first lease arrives (normally a couple of seconds after the first table:
//! the sidecar reports at once) nothing is capped: the sidecar has not been told anything yet.
//! A sidecar that gets no lease for [`FIRST_LEASE_GRACE`] (the operator is away, and the table
//! came from the state dir) counts as lapsed with nothing held: `FailOpen` admits, `LastShare`
//! and `FailClosed` refuse, since there is no share to keep enforcing.

use std::time::Duration;

use switchyard_crds::report;
use switchyard_crds::table::BudgetLimit;
use switchyard_crds::v1alpha1::WhenUnreachable;
use switchyard_crds::window::Timestamp;

/// How long a leased budget may go without any lease before `whenUnreachable` applies: a lease's
/// own length (three report intervals).
pub const FIRST_LEASE_GRACE: Duration = Duration::from_secs(15);

/// Nano-dollars in a micro-dollar.
pub const NANOS_PER_MICRO: u64 = 1_000;

/// The most a window may count, per unit; `None` leaves a unit uncapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Caps {
    pub usd_nanos: Option<u64>,
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
}

impl Caps {
    /// The limit as written: the standalone sidecar is the whole fleet.
    pub fn whole(def: &BudgetLimit) -> Self {
        Self {
            usd_nanos: def.usd_micros.map(|m| m.saturating_mul(NANOS_PER_MICRO)),
            requests: def.requests,
            tokens: def.tokens,
        }
    }

    /// Nothing at all of the units `def` caps: every request is refused.
    fn nothing(def: &BudgetLimit) -> Self {
        Self {
            usd_nanos: def.usd_micros.map(|_| 0),
            requests: def.requests.map(|_| 0),
            tokens: def.tokens.map(|_| 0),
        }
    }

    /// The caps as report amounts (dollars in whole micro-dollars, rounded down).
    pub fn to_amounts(self) -> report::Amounts {
        report::Amounts {
            usd_micros: self.usd_nanos.map(|n| n / NANOS_PER_MICRO),
            requests: self.requests,
            tokens: self.tokens,
        }
    }

    fn from_amounts(amounts: &report::Amounts) -> Self {
        Self {
            usd_nanos: amounts
                .usd_micros
                .map(|m| m.saturating_mul(NANOS_PER_MICRO)),
            requests: amounts.requests,
            tokens: amounts.tokens,
        }
    }
}

/// A lease as this sidecar holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The window the lease is for, by the operator's clock (Unix seconds).
    pub window_start: i64,
    /// The allowance in that window, this sidecar's own use included.
    pub allowance: Caps,
    /// What the lease added to what this sidecar had used when it arrived: the share to keep
    /// enforcing in a window the lease was not granted for.
    pub grant: Caps,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

impl Held {
    /// `lease`, received when this sidecar had used `used` of its window.
    pub fn new(lease: &report::Lease, used: Caps) -> Self {
        let allowance = Caps::from_amounts(&lease.allowance);
        let left = |cap: Option<u64>, used: Option<u64>| {
            cap.map(|c| c.saturating_sub(used.unwrap_or_default()))
        };
        Self {
            window_start: lease.window_start,
            grant: Caps {
                usd_nanos: left(allowance.usd_nanos, used.usd_nanos),
                requests: left(allowance.requests, used.requests),
                tokens: left(allowance.tokens, used.tokens),
            },
            allowance,
            expires_at: Timestamp::from_millisecond(lease.expires_at_ms)
                .unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }
}

/// What a leased limit caps now, for a window starting at `window_start` (Unix seconds).
pub fn caps(
    def: &BudgetLimit,
    held: Option<&Held>,
    when_unreachable: WhenUnreachable,
    window_start: i64,
    since: Timestamp,
    now: Timestamp,
) -> Caps {
    let Some(held) = held else {
        let waited = now.duration_since(since);
        let lapsed = waited.is_positive() && waited.unsigned_abs() >= FIRST_LEASE_GRACE;
        return match when_unreachable {
            _ if !lapsed => Caps::default(),
            WhenUnreachable::FailOpen => Caps::default(),
            WhenUnreachable::LastShare | WhenUnreachable::FailClosed => Caps::nothing(def),
        };
    };
    let in_force = now < held.expires_at;
    if !in_force {
        match when_unreachable {
            WhenUnreachable::FailOpen => return Caps::default(),
            WhenUnreachable::FailClosed => return Caps::nothing(def),
            WhenUnreachable::LastShare => {}
        }
    }
    if held.window_start == window_start {
        held.allowance
    } else {
        // A lease for another window (the window turned before a renewal, or the clocks
        // disagree near a boundary): its share, not its total, holds in this one.
        held.grant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> BudgetLimit {
        BudgetLimit {
            period: "1m".into(),
            usd_micros: None,
            requests: Some(100),
            tokens: None,
        }
    }

    fn held(window_start: i64, allowance: u64, grant: u64, expires: i64) -> Held {
        let requests = |n| Caps {
            requests: Some(n),
            ..Caps::default()
        };
        Held {
            window_start,
            allowance: requests(allowance),
            grant: requests(grant),
            expires_at: Timestamp::from_second(expires).unwrap(),
        }
    }

    fn requests_cap(
        held: Option<&Held>,
        mode: WhenUnreachable,
        window: i64,
        now: i64,
    ) -> Option<u64> {
        caps(
            &def(),
            held,
            mode,
            window,
            Timestamp::from_second(50).unwrap(),
            Timestamp::from_second(now).unwrap(),
        )
        .requests
    }

    #[test]
    fn standalone_holds_the_whole_limit() {
        let whole = Caps::whole(&BudgetLimit {
            usd_micros: Some(3),
            ..def()
        });
        assert_eq!(whole.requests, Some(100));
        assert_eq!(whole.usd_nanos, Some(3_000));
        assert_eq!(whole.tokens, None);
    }

    #[test]
    fn a_lease_in_force_caps_its_window_at_the_allowance_and_others_at_the_grant() {
        let h = held(60, 30, 12, 100);
        assert_eq!(
            requests_cap(Some(&h), WhenUnreachable::LastShare, 60, 70),
            Some(30)
        );
        assert_eq!(
            requests_cap(Some(&h), WhenUnreachable::LastShare, 120, 70),
            Some(12)
        );
    }

    #[test]
    fn when_a_lease_lapses_when_unreachable_decides() {
        let h = held(60, 30, 12, 100);
        let lapsed = |mode| requests_cap(Some(&h), mode, 60, 100);
        assert_eq!(lapsed(WhenUnreachable::LastShare), Some(30));
        assert_eq!(lapsed(WhenUnreachable::FailOpen), None);
        assert_eq!(lapsed(WhenUnreachable::FailClosed), Some(0));
        assert_eq!(
            requests_cap(Some(&h), WhenUnreachable::LastShare, 120, 130),
            Some(12),
            "the last share, in the next window too"
        );
    }

    #[test]
    fn before_the_first_lease_nothing_is_capped_for_a_while() {
        assert_eq!(
            requests_cap(None, WhenUnreachable::FailClosed, 60, 60),
            None
        );
        assert_eq!(requests_cap(None, WhenUnreachable::LastShare, 60, 64), None);
        // 15 s after the budget arrived (at 50) with no lease: nothing held to keep enforcing.
        assert_eq!(
            requests_cap(None, WhenUnreachable::LastShare, 60, 65),
            Some(0)
        );
        assert_eq!(
            requests_cap(None, WhenUnreachable::FailClosed, 60, 65),
            Some(0)
        );
        assert_eq!(requests_cap(None, WhenUnreachable::FailOpen, 60, 65), None);
    }

    #[test]
    fn the_grant_is_what_the_lease_added_to_what_was_used() {
        let lease = report::Lease {
            budget: "ns/b".into(),
            limit: 0,
            period: "1m".into(),
            window_start: 60,
            window_end: 120,
            allowance: report::Amounts {
                usd_micros: Some(5),
                requests: Some(40),
                tokens: None,
            },
            expires_at_ms: 75_000,
        };
        let used = Caps {
            usd_nanos: Some(2_000),
            requests: Some(45),
            tokens: Some(7),
        };
        let h = Held::new(&lease, used);
        assert_eq!(h.allowance.usd_nanos, Some(5_000));
        assert_eq!(h.grant.usd_nanos, Some(3_000));
        assert_eq!(h.grant.requests, Some(0), "in debt: no grant");
        assert_eq!(h.grant.tokens, None, "uncapped stays uncapped");
        assert_eq!(h.expires_at, Timestamp::from_second(75).unwrap());
    }
}
