use switchyard_crds::v1alpha1::{BudgetMode, WhenUnreachable};

use super::*;

/// A whole hour (window start of the `1h` limit), long after the book stopped learning.
const T0: i64 = 3_600 * 500_000;
const LIMIT: u64 = 1_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

/// A book created long ago: past learning.
fn book() -> LeaseBook {
    LeaseBook::new(at(-3_000))
}

fn limit(period: &str, requests: Option<u64>, tokens: Option<u64>) -> table::BudgetLimit {
    table::BudgetLimit {
        period: period.into(),
        usd_micros: None,
        requests,
        tokens,
    }
}

fn budget(name: &str, limits: Vec<table::BudgetLimit>) -> table::Budget {
    table::Budget {
        namespace: "ns".into(),
        name: name.into(),
        routes: vec![],
        providers: vec![],
        limits,
        mode: BudgetMode::Enforce,
        when_unreachable: WhenUnreachable::LastShare,
        kind: table::BudgetKind::Budget,
    }
}

/// The table's budgets: `ns/cap`, one `1h` limit of [`LIMIT`] requests, `LastShare`.
fn budgets() -> BTreeMap<String, table::Budget> {
    budgets_when(WhenUnreachable::LastShare)
}

/// [`budgets`] with another `whenUnreachable`.
fn budgets_when(when_unreachable: WhenUnreachable) -> BTreeMap<String, table::Budget> {
    let b = table::Budget {
        when_unreachable,
        ..budget("cap", vec![limit("1h", Some(LIMIT), None)])
    };
    BTreeMap::from([(b.id(), b)])
}

fn holder(name: &str) -> HolderKey {
    (format!("uid-{name}"), format!("{name}/start"))
}

fn used(requests: u64) -> Amounts {
    Amounts {
        usd_micros: Some(0),
        requests: Some(requests),
        tokens: Some(0),
    }
}

/// `ns/cap` limit 0 with `requests` used in the `1h` window starting at `window_start`.
fn usage(requests: u64, window_start: i64) -> BudgetUsage {
    BudgetUsage {
        budget: "ns/cap".into(),
        limit: 0,
        period: "1h".into(),
        window_start,
        used: used(requests),
        holds: None,
        refused: 0,
    }
}

/// Reports `requests` used in the current window and returns the request allowance.
fn report(book: &mut LeaseBook, who: &str, requests: u64, now: Timestamp) -> u64 {
    report_when(book, WhenUnreachable::LastShare, who, requests, now)
}

/// [`report`] for a budget with another `whenUnreachable`.
fn report_when(
    book: &mut LeaseBook,
    when: WhenUnreachable,
    who: &str,
    requests: u64,
    now: Timestamp,
) -> u64 {
    let leases = book.report(
        &holder(who),
        &budgets_when(when),
        &[usage(requests, T0)],
        now,
    );
    assert_eq!(leases.len(), 1);
    leases[0].allowance.requests.unwrap()
}

#[test]
fn a_lone_holder_may_use_the_whole_limit() {
    let mut book = book();
    let leases = book.report(&holder("a"), &budgets(), &[usage(0, T0)], at(10));
    assert_eq!(
        leases,
        vec![Lease {
            budget: "ns/cap".into(),
            limit: 0,
            period: "1h".into(),
            window_start: T0,
            window_end: T0 + 3_600,
            allowance: Amounts {
                requests: Some(LIMIT),
                ..Amounts::default()
            },
            expires_at_ms: (T0 + 10) * 1_000 + 15_000,
        }],
        "only the capped unit, the operator's window, an expiry three report intervals ahead"
    );
    assert_eq!(
        report(&mut book, "a", 400, at(15)),
        LIMIT,
        "its own use included"
    );
}

#[test]
fn what_another_holder_was_granted_and_has_not_used_is_not_granted_again() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 0, at(10)), LIMIT);
    // b is new: a holds everything it was granted, so nothing is available.
    assert_eq!(report(&mut book, "b", 0, at(11)), 0);
    // a, renewing, gets half of what is left (equal demand): b can then claim the rest.
    assert_eq!(report(&mut book, "a", 0, at(15)), 500);
    assert_eq!(report(&mut book, "b", 0, at(16)), 500);
}

/// A small deterministic generator, so that the order is varied but the test reproducible.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

#[test]
fn allowances_never_add_up_past_the_limit_whatever_the_order() {
    for seed in 1..=20 {
        let mut rng = Lcg(seed);
        let mut book = book();
        let holders = 2 + rng.below(30) as usize;
        let mut allowance = vec![0u64; holders];
        let mut spent = vec![0u64; holders];
        let mut now = at(0);
        for _ in 0..600 {
            let i = rng.below(holders as u64) as usize;
            // A sidecar stays within what it holds (it admits only below its allowance).
            spent[i] += rng.below(allowance[i] - spent[i] + 1);
            now += Duration::from_millis(rng.below(400));
            allowance[i] = report(&mut book, &i.to_string(), spent[i], now);
            assert!(allowance[i] >= spent[i], "seed {seed}: own use is included");
            let total: u64 = allowance.iter().sum();
            assert!(total <= LIMIT, "seed {seed}: {total} granted of {LIMIT}");
        }
        let total: u64 = allowance.iter().sum();
        assert!(
            total > LIMIT * 9 / 10,
            "seed {seed}: the limit is handed out, not hoarded ({total})"
        );
    }
}

/// A simulated sidecar of a `LastShare` budget, on the operator's clock.
#[derive(Default)]
struct Sidecar {
    /// Its lease: (window start, allowance, grant).
    lease: Option<(i64, u64, u64)>,
    /// Its count: (window start, used).
    used: (i64, u64),
    last_report: Option<Timestamp>,
    /// Cut off (its reports are lost) until then; it keeps spending within its last lease.
    silent_until: Option<Timestamp>,
    /// Stopped for good.
    dead: bool,
}

impl Sidecar {
    /// What it admits up to in the window starting at `window`: the allowance of a lease for
    /// that window, the grant of one for another (`LastShare`, also once expired).
    fn cap(&self, window: i64) -> u64 {
        match self.lease {
            Some((w, allowance, _)) if w == window => allowance,
            Some((_, _, grant)) => grant,
            None => 0,
        }
    }

    fn used_in(&self, window: i64) -> u64 {
        if self.used.0 == window {
            self.used.1
        } else {
            0
        }
    }
}

/// The start of the `1h` window holding `now`.
fn window_of(now: Timestamp) -> i64 {
    T0 + (now.as_second() - T0).div_euclid(3_600) * 3_600
}

#[test]
fn allowances_never_add_up_past_the_limit_across_a_window_and_silences() {
    for seed in 1..=20 {
        let mut rng = Lcg(seed);
        let mut book = book();
        let mut sidecars: Vec<Sidecar> =
            (0..2 + rng.below(20)).map(|_| Sidecar::default()).collect();
        let n = sidecars.len() as u64;
        // Twenty seconds before the hour turns, for about four minutes.
        let mut now = at(3_580);
        let mut handed_out = 0;
        for step in 0..1_200 {
            now += Duration::from_millis(rng.below(400));
            let window = window_of(now);
            // The book drops holders forgotten in a window that ended: their LastShare
            // reservation is kept only until then. Such a sidecar is taken as gone.
            for s in &mut sidecars {
                if let Some(seen) = s.last_report
                    && window_of(seen) < window
                    && seen + FORGET_AFTER
                        <= Timestamp::from_second(window_of(seen) + 3_600).unwrap()
                {
                    s.dead = true;
                }
            }
            let i = rng.below(n) as usize;
            let s = &mut sidecars[i];
            if s.dead {
                continue;
            }
            if s.used.0 != window {
                s.used = (window, 0);
            }
            // Small steps, so that grants are still unused when the window turns.
            let room = s.cap(window).saturating_sub(s.used.1);
            s.used.1 += rng.below(room.min(LIMIT / 100) + 1);
            if s.silent_until.is_none_or(|until| now >= until) {
                let used = s.used.1;
                let leases = book.report(
                    &holder(&i.to_string()),
                    &budgets(),
                    &[usage(used, window)],
                    now,
                );
                let allowance = leases[0].allowance.requests.unwrap();
                assert_eq!(leases[0].window_start, window);
                assert!(allowance >= used, "seed {seed}: own use is included");
                s.lease = Some((window, allowance, allowance - used));
                s.last_report = Some(now);
                if rng.below(30) == 0 {
                    s.silent_until = Some(now + Duration::from_millis(rng.below(60_000)));
                }
            }
            // What every sidecar may have used of this window at most.
            let total: u64 = sidecars
                .iter()
                .map(|s| {
                    if s.dead {
                        s.used_in(window)
                    } else {
                        s.cap(window).max(s.used_in(window))
                    }
                })
                .sum();
            assert!(
                total <= LIMIT,
                "seed {seed} step {step}: {total} granted of {LIMIT}"
            );
            if window > T0 {
                handed_out = handed_out.max(total);
            }
        }
        assert!(
            handed_out > LIMIT * 9 / 10,
            "seed {seed}: the next window's limit is handed out, not hoarded ({handed_out})"
        );
    }
}

#[test]
fn more_demand_gets_more() {
    let mut book = book();
    let (mut a, mut b) = (0, 0);
    for step in 0..6 {
        let now = at(step * 5);
        let grant_a = report(&mut book, "a", a, now) - a;
        let grant_b = report(&mut book, "b", b, now + Duration::from_secs(1)) - b;
        if step >= 3 {
            assert!(
                grant_a > 2 * grant_b,
                "step {step}: a uses ten times b, a gets {grant_a}, b {grant_b}"
            );
            // Even an almost idle holder keeps its floor.
            let floor = down((LIMIT - a - b) as f64 * FLOOR / 2.0);
            assert!(grant_b + 1 >= floor.min(LIMIT - a - b), "b: {grant_b}");
        }
        a = (a + 50).min(a + grant_a);
        b = (b + 5).min(b + grant_b);
    }
}

#[test]
fn an_idle_holder_keeps_a_floor() {
    let mut book = book();
    // a is busy; b has never used anything.
    report(&mut book, "a", 0, at(0));
    report(&mut book, "b", 0, at(0));
    report(&mut book, "a", 100, at(5));
    report(&mut book, "b", 0, at(5));
    report(&mut book, "a", 100, at(10));
    let b = report(&mut book, "b", 0, at(10));
    // (L − U)·FLOOR/n with U = 100, n = 2.
    assert_eq!(b, 45);
}

#[test]
fn use_beyond_the_allowance_is_debt() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 0, at(0)), LIMIT);
    assert_eq!(report(&mut book, "b", 0, at(0)), 0);
    // b overspent what it held (nothing) by 300: nothing is available, it gets no more...
    assert_eq!(report(&mut book, "b", 300, at(1)), 300);
    // ...and what is left to share shrinks by as much: a (idle) gets its floor of 700.
    assert_eq!(report(&mut book, "a", 0, at(2)), 35, "(1000 − 300)·FLOOR/2");
    assert_eq!(report(&mut book, "b", 300, at(3)), 965, "300 + 700 − 35");
}

#[test]
fn counts_from_another_window_are_nothing_of_this_one() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 0, at(1)), LIMIT);
    assert_eq!(report(&mut book, "b", 0, at(2)), 0);
    // a's clock is an hour behind: its 900 belong to the previous window.
    let late = book.report(&holder("a"), &budgets(), &[usage(900, T0 - 3_600)], at(3));
    assert_eq!(late[0].window_start, T0, "the operator's window");
    assert_eq!(
        late[0].allowance.requests,
        Some(500),
        "nothing used: half of the limit (900 counted would give 950)"
    );
    assert_eq!(report(&mut book, "b", 0, at(4)), 500);
}

#[test]
fn counts_from_a_later_window_keep_what_was_used_of_this_one() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 400, at(3_590)), LIMIT);
    assert_eq!(report(&mut book, "b", 0, at(3_591)), 0, "a holds it all");
    // a's clock is ahead: by it the next hour began, and it counts 5 in it.
    let early = book.report(&holder("a"), &budgets(), &[usage(5, T0 + 3_600)], at(3_595));
    assert_eq!(early[0].window_start, T0, "the operator's window");
    assert_eq!(
        totals(&book, at(3_595)).used[1],
        400,
        "a's 400 of the operator's window stay spent"
    );
    assert_eq!(
        early[0].allowance.requests,
        Some(400 + 300),
        "its 400 plus half of the 600 left (wiped, it would get 500)"
    );
}

#[test]
fn usage_for_another_period_is_ignored() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 0, at(1)), LIMIT);
    assert_eq!(report(&mut book, "b", 0, at(2)), 0);
    let moved = BudgetUsage {
        period: "1m".into(),
        ..usage(900, T0)
    };
    let leases = book.report(&holder("a"), &budgets(), &[moved], at(3));
    assert_eq!(
        leases[0].allowance.requests,
        Some(500),
        "a's 900 of another limit are not this one's (counted, they would give 950)"
    );
    // The same usage with the table's period counts: 900 + ⌊100·(0.05 + 0.9)⌋, a having all the
    // demand now.
    assert_eq!(report(&mut book, "a", 900, at(4)), 995);
}

#[test]
fn budgets_and_limits_outside_the_table_are_ignored() {
    let mut book = book();
    let elsewhere = BudgetUsage {
        budget: "ns/other".into(),
        ..usage(900, T0)
    };
    let no_such_limit = BudgetUsage {
        limit: 3,
        ..usage(900, T0)
    };
    let leases = book.report(&holder("a"), &budgets(), &[elsewhere, no_such_limit], at(1));
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].budget, "ns/cap");
    assert_eq!(leases[0].allowance.requests, Some(LIMIT), "nothing counted");
    assert!(
        book.report(&holder("a"), &BTreeMap::new(), &[usage(1, T0)], at(2))
            .is_empty(),
        "no budgets in the table, no leases"
    );
}

#[test]
fn leases_follow_the_tables_order_and_caps() {
    let mut book = book();
    let a = budget(
        "a",
        vec![
            limit("Day", None, Some(5_000)),
            limit("1m", Some(10), Some(70)),
        ],
    );
    let b = budget("b", vec![limit("1h", Some(LIMIT), None)]);
    let budgets = BTreeMap::from([(b.id(), b), (a.id(), a)]);
    let leases = book.report(&holder("x"), &budgets, &[], at(30));
    let shape: Vec<_> = leases
        .iter()
        .map(|l| (l.budget.as_str(), l.limit, l.period.as_str(), l.allowance))
        .collect();
    let amounts = |requests, tokens| Amounts {
        usd_micros: None,
        requests,
        tokens,
    };
    assert_eq!(
        shape,
        vec![
            ("ns/a", 0, "Day", amounts(None, Some(5_000))),
            ("ns/a", 1, "1m", amounts(Some(10), Some(70))),
            ("ns/b", 0, "1h", amounts(Some(LIMIT), None)),
        ]
    );
    let day = Period::Day.window(at(30)).unwrap();
    assert_eq!(
        (leases[0].window_start, leases[0].window_end),
        (day.start.as_second(), day.end.as_second())
    );
}

#[test]
fn a_new_window_starts_from_zero_but_remembers_demand() {
    let mut book = book();
    let (mut a, mut b) = (0, 0);
    for step in 0..5 {
        a = report(&mut book, "a", a, at(3_570 + step * 5)).min(a + 100);
        b = report(&mut book, "b", b, at(3_571 + step * 5)).min(b + 10);
    }
    // The next hour, by the operator's clock: both report their new window's first counts.
    let next = |requests| BudgetUsage {
        window_start: T0 + 3_600,
        ..usage(requests, T0 + 3_600)
    };
    let a_new = book.report(&holder("a"), &budgets(), &[next(0)], at(3_600));
    assert_eq!(a_new[0].window_start, T0 + 3_600);
    let b_new = book.report(&holder("b"), &budgets(), &[next(0)], at(3_601));
    let (a_new, b_new) = (
        a_new[0].allowance.requests.unwrap(),
        b_new[0].allowance.requests.unwrap(),
    );
    assert!(
        a_new > 500,
        "the whole limit again, shared by demand: {a_new}"
    );
    assert!(b_new <= LIMIT - a_new && b_new > 0, "b: {b_new}");
    assert!(a_new > 3 * b_new, "a was the busier: {a_new} vs {b_new}");
    assert!(
        a_new + b_new >= LIMIT - 1,
        "nothing of the last window's use is counted: {a_new} + {b_new}"
    );
}

#[test]
fn last_windows_grants_stay_reserved_in_the_next_until_renewed() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 300, at(3_590)), LIMIT);
    assert_eq!(report(&mut book, "b", 0, at(3_591)), 0, "a holds it all");
    let mut next = |who: &str, requests, now| {
        book.report(
            &holder(who),
            &budgets(),
            &[usage(requests, T0 + 3_600)],
            now,
        )[0]
        .allowance
        .requests
        .unwrap()
    };
    // The next hour: b renews first. a's sidecar keeps enforcing its lease for the last
    // window with its grant, 1000 − 300, from 0 used in this one: that stays reserved.
    assert_eq!(next("b", 0, at(3_600)), 300);
    // Once a is granted in this window, its own allowance counts instead.
    // a, having used 100 of it: 100 + min(1000 − 100 − 300, (1000 − 100)/2).
    assert_eq!(next("a", 100, at(3_601)), 550);
    // Once b is renewed, only a's 450 unused is reserved: b gets its half of what is left.
    assert_eq!(next("b", 0, at(3_602)), 450);
}

#[test]
fn a_silent_holder_is_forgotten_but_its_use_stays_counted() {
    for when in [WhenUnreachable::FailClosed, WhenUnreachable::FailOpen] {
        let mut book = book();
        let mut report = |who, requests, now| report_when(&mut book, when, who, requests, now);
        assert_eq!(report("a", 0, at(0)), LIMIT);
        assert_eq!(report("b", 0, at(1)), 0);
        // a has all the demand: 200 + (1000 − 200)·(FLOOR/2 + 1 − FLOOR).
        assert_eq!(report("a", 200, at(5)), 960);
        // b renews while a is within its lease; then a goes silent.
        report("b", 0, at(6));
        // Within 2 × LEASE_TTL a still holds its reservation...
        assert_eq!(report("b", 0, at(30)), 40, "{when:?}");
        // ...after it, a is forgotten: its 200 stay spent, its reservation is released (a
        // FailClosed sidecar refuses, a FailOpen one no longer enforces anything).
        assert_eq!(report("b", 0, at(36)), 800, "{when:?}");
    }
}

#[test]
fn a_forgotten_last_share_holder_keeps_its_reservation_until_the_window_ends() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 0, at(0)), LIMIT);
    assert_eq!(report(&mut book, "b", 0, at(1)), 0);
    assert_eq!(report(&mut book, "a", 200, at(5)), 960);
    report(&mut book, "b", 0, at(6));
    // a is cut off: its sidecar keeps enforcing 960, so its 760 unused stay reserved after
    // FORGET_AFTER; its use stays counted, and its demand no longer weighs (b alone: all of
    // what is left, within what is available).
    assert_eq!(report(&mut book, "b", 0, at(36)), 40);
    assert_eq!(report(&mut book, "b", 0, at(1_000)), 40);
    assert_eq!(totals(&book, at(1_000)).used[1], 200);
    // The next window: a's lease was for the last one and it was forgotten in it.
    let next = Timestamp::from_second(T0 + 3_600 + 5).unwrap();
    let b = book.report(&holder("b"), &budgets(), &[usage(0, T0 + 3_600)], next);
    assert_eq!(b[0].allowance.requests, Some(LIMIT));
}

#[test]
fn a_holder_forgotten_after_the_window_turned_keeps_its_grant_reserved_in_the_next() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 400, at(3_590)), LIMIT);
    // a goes silent 10 s before the hour: it is forgotten in the next one, where its sidecar
    // keeps enforcing its grant of 600. The next report on the limit comes 40 s into it.
    let b = book.report(&holder("b"), &budgets(), &[usage(0, T0 + 3_600)], at(3_640));
    assert_eq!(b[0].allowance.requests, Some(LIMIT - 600));
}

#[test]
fn a_forgotten_holder_that_reports_again_is_not_counted_twice() {
    let mut book = book();
    assert_eq!(report(&mut book, "a", 0, at(0)), LIMIT);
    assert_eq!(report(&mut book, "b", 0, at(1)), 0);
    assert_eq!(report(&mut book, "a", 200, at(5)), 960);
    // a is forgotten (b renews past FORGET_AFTER), then reports its cumulative 300.
    report(&mut book, "b", 0, at(40));
    report(&mut book, "a", 300, at(41));
    assert_eq!(
        totals(&book, at(41)).used[1],
        300,
        "its 300, not its 200 as forgotten plus its 300"
    );
}

#[test]
fn a_new_book_learns_before_it_grants() {
    let start = at(100);
    let mut book = LeaseBook::new(start);
    assert!(book.learning(start));
    let held = |requests| BudgetUsage {
        holds: Some(Amounts {
            requests: Some(requests),
            ..Amounts::default()
        }),
        ..usage(100, T0)
    };
    // a held 700 from the previous leader: it gets exactly that back, even with room to spare.
    let a = book.report(&holder("a"), &budgets(), &[held(700)], at(101));
    assert_eq!(a[0].allowance.requests, Some(700));
    // b says nothing of a lease: the floor only, (L − U)·FLOOR/n with U = 100, n = 2.
    assert_eq!(report(&mut book, "b", 0, at(102)), 45);
    // A holder echoing more than is left gets no more than its use plus what is available:
    // 100 + (1000 − 200 − 600 − 45).
    let c = book.report(&holder("c"), &budgets(), &[held(900)], at(103));
    assert_eq!(c[0].allowance.requests, Some(255));
    // Once learnt, the book divides again: a and c hold all but b's 45 of what is left.
    let after = start + LEASE_TTL;
    assert!(!book.learning(after));
    let b = report(&mut book, "b", 0, after);
    assert_eq!(b, 45, "1000 − 200 − 600 − 155");
}

#[test]
fn echoes_never_push_the_total_past_the_limit() {
    let start = at(100);
    let mut book = LeaseBook::new(start);
    // Status says 900 were used this hour: whatever a says it holds, only 100 are left.
    book.resume_from(durable(900, T0));
    let held = BudgetUsage {
        holds: Some(Amounts {
            requests: Some(700),
            ..Amounts::default()
        }),
        ..usage(100, T0)
    };
    let a = book.report(&holder("a"), &budgets(), &[held], at(101));
    assert!(book.learning(at(101)));
    assert_eq!(
        a[0].allowance.requests,
        Some(100 + 100),
        "its 100 used plus the 100 left, not its echo of 700"
    );
}

/// What a status written by an earlier leader says of `ns/cap` limit 0: `requests` used in the
/// `1h` window starting at `window_start`.
fn durable(requests: u64, window_start: i64) -> Arc<DurableTotals> {
    Arc::new(DurableTotals::from([(
        ("ns/cap".to_string(), 0),
        Durable {
            period: "1h".into(),
            window_start: Timestamp::from_second(window_start).unwrap(),
            used: [0, requests, 0],
        },
    )]))
}

fn totals(book: &LeaseBook, now: Timestamp) -> LimitTotals {
    book.totals(now)[&("ns/cap".to_string(), 0)].clone()
}

#[test]
fn a_new_book_resumes_from_the_status_total() {
    let mut book = book();
    book.resume_from(durable(700, T0));
    // A sidecar that started after the failover has used nothing, yet 700 were spent.
    assert_eq!(
        report(&mut book, "new", 0, at(10)),
        LIMIT - 700,
        "only what status says is left"
    );
    assert_eq!(totals(&book, at(10)).used, [0, 700, 0]);
}

#[test]
fn holders_reporting_their_use_again_are_not_counted_twice() {
    let mut book = book();
    // The old leader wrote 700: a's 500 and b's 200.
    book.resume_from(durable(700, T0));
    report(&mut book, "a", 500, at(10));
    report(&mut book, "b", 200, at(11));
    assert_eq!(
        totals(&book, at(11)).used[1],
        700,
        "the floor holds what they report, it is not added to it"
    );
    // Spend beyond what status said counts from there.
    report(&mut book, "a", 550, at(15));
    assert_eq!(totals(&book, at(15)).used[1], 750);
    // A new status total below what the book counts changes nothing; a higher one raises it.
    book.resume_from(durable(600, T0));
    report(&mut book, "a", 550, at(20));
    assert_eq!(totals(&book, at(20)).used[1], 750);
    book.resume_from(durable(900, T0));
    report(&mut book, "a", 550, at(25));
    assert_eq!(totals(&book, at(25)).used[1], 900);
}

#[test]
fn a_status_total_of_another_window_or_period_is_ignored() {
    let mut book = book();
    book.resume_from(durable(700, T0 - 3_600));
    assert_eq!(
        report(&mut book, "a", 0, at(10)),
        LIMIT,
        "last hour's total"
    );
    let mut other = durable(700, T0);
    Arc::make_mut(&mut other)
        .get_mut(&("ns/cap".to_string(), 0))
        .unwrap()
        .period = "60m".into();
    book.resume_from(other);
    assert_eq!(
        report(&mut book, "a", 0, at(15)),
        LIMIT,
        "written for a limit of another period at that index"
    );
}

#[test]
fn the_floor_ends_with_its_window() {
    let mut book = book();
    book.resume_from(durable(700, T0));
    report(&mut book, "a", 0, at(10));
    // The next hour: the status still speaks of the last one.
    let next = Timestamp::from_second(T0 + 3_600 + 5).unwrap();
    let leases = book.report(&holder("a"), &budgets(), &[usage(0, T0 + 3_600)], next);
    assert_eq!(leases[0].allowance.requests, Some(LIMIT));
    assert_eq!(totals(&book, next).used, [0, 0, 0]);
}

#[test]
fn totals_count_holders_heard_from_within_the_lease_ttl() {
    let mut book = book();
    report(&mut book, "a", 100, at(0));
    report(&mut book, "b", 50, at(10));
    let now = totals(&book, at(12));
    assert_eq!((now.reporting, now.leased), (2, 2));
    assert_eq!(now.used, [0, 150, 0]);
    assert_eq!(now.window.start, at(0));
    // a's lease (granted at 0) has expired at 15: a no longer counts, its use does.
    let later = totals(&book, at(16));
    assert_eq!((later.reporting, later.leased), (1, 1));
    assert_eq!(later.used, [0, 150, 0]);
    // A new window by the operator's clock: b reported in it, a did not.
    let next = Timestamp::from_second(T0 + 3_600 + 1).unwrap();
    book.report(&holder("b"), &budgets(), &[usage(0, T0 + 3_600)], next);
    let rolled = totals(&book, next);
    assert_eq!((rolled.reporting, rolled.leased), (1, 1));
}

#[test]
fn use_of_sidecars_gone_before_the_failover_stays_counted_on_top() {
    let mut book = book();
    // Status says 900: a's 100 and 800 of sidecars that stopped before this leader took over.
    book.resume_from(durable(900, T0));
    report(&mut book, "a", 100, at(10));
    assert_eq!(totals(&book, at(10)).used[1], 900);
    // Every live holder has reported by LEASE_TTL after the book began: the 800 is fixed.
    report(&mut book, "a", 150, at(25));
    assert_eq!(
        totals(&book, at(25)).used[1],
        950,
        "the 800 nobody reports any more, plus a's 150"
    );
    assert_eq!(report(&mut book, "a", 190, at(30)), 190 + 10);
    // A holder first heard from afterwards counts in full: more than was spent, never less.
    report(&mut book, "late", 5, at(31));
    assert_eq!(totals(&book, at(31)).used[1], 995);
}

#[test]
fn refusals_add_up_over_holders_and_start_again_with_the_window() {
    let mut book = book();
    let refused = |n| BudgetUsage {
        refused: n,
        ..usage(10, T0)
    };
    book.report(&holder("a"), &budgets(), &[refused(2)], at(1));
    book.report(&holder("b"), &budgets(), &[refused(3)], at(2));
    // Cumulative in the window: a's second report replaces its first.
    book.report(&holder("a"), &budgets(), &[refused(4)], at(3));
    assert_eq!(totals(&book, at(3)).refused, 7);
    // The next hour: nobody has refused anything in it yet.
    let next = T0 + 3_600;
    let later = Timestamp::from_second(next + 1).unwrap();
    book.report(&holder("a"), &budgets(), &[usage(0, next)], later);
    assert_eq!(totals(&book, later).refused, 0);
}

/// A provider's fleet-wide rate limit, as the compiler writes it: `ns/p/a`, 600 requests and
/// 6000 tokens per `1m` window.
fn fleet_limit() -> table::Budget {
    table::Budget {
        name: "p/a".into(),
        providers: vec!["p/a".into()],
        kind: table::BudgetKind::FleetLimit,
        ..budget("unused", vec![limit("1m", Some(600), Some(6_000))])
    }
}

#[test]
fn a_fleet_limit_is_divided_by_demand_like_a_budget_and_beside_it() {
    let fleet = fleet_limit();
    let mut table = budgets();
    table.insert(fleet.id(), fleet);
    let mut book = book();
    // a is busy, b and c barely: each uses what it would, within what it holds.
    let wants: [(u64, u64); 3] = [(20, 200), (1, 10), (1, 10)];
    let mut used = [(0u64, 0u64); 3];
    let mut allowance = [(0u64, 0u64); 3];
    let mut reported = [0u64; 3];
    // Eleven rounds 5 s apart: all within the minute at T0 (an hour boundary).
    for round in 0..11 {
        for (i, who) in ["a", "b", "c"].into_iter().enumerate() {
            let now = at(round * 5 + i as i64);
            let fleet_usage = BudgetUsage {
                budget: "ns/p/a".into(),
                limit: 0,
                period: "1m".into(),
                window_start: T0,
                used: Amounts {
                    usd_micros: Some(0),
                    requests: Some(used[i].0),
                    tokens: Some(used[i].1),
                },
                holds: None,
                refused: 0,
            };
            reported[i] = used[i].0;
            let leases = book.report(&holder(who), &table, &[usage(0, T0), fleet_usage], now);
            let ids: Vec<_> = leases.iter().map(|l| l.budget.as_str()).collect();
            assert_eq!(
                ids,
                ["ns/cap", "ns/p/a"],
                "one lease each, the budget's apart"
            );
            let lease = &leases[1];
            assert_eq!((lease.period.as_str(), lease.window_start), ("1m", T0));
            assert_eq!(lease.allowance.usd_micros, None, "only the units it caps");
            allowance[i] = (
                lease.allowance.requests.unwrap(),
                lease.allowance.tokens.unwrap(),
            );
            let requests: u64 = allowance.iter().map(|a| a.0).sum();
            let tokens: u64 = allowance.iter().map(|a| a.1).sum();
            assert!(
                requests <= 600 && tokens <= 6_000,
                "round {round}: {allowance:?}"
            );
            used[i].0 += wants[i].0.min(allowance[i].0 - used[i].0);
            used[i].1 += wants[i].1.min(allowance[i].1 - used[i].1);
        }
    }
    let grants: Vec<u64> = (0..3).map(|i| allowance[i].0 - used[i].0).collect();
    assert!(
        grants[0] > 2 * grants[1] && grants[0] > 2 * grants[2],
        "the busy sidecar gets more: {grants:?}"
    );
    assert!(
        grants[1] > 0 && grants[2] > 0,
        "the others keep a floor: {grants:?}"
    );
    let totals = book.totals(at(55));
    let fleet = &totals[&("ns/p/a".to_string(), 0)];
    assert_eq!(
        fleet.used[1],
        reported.iter().sum::<u64>(),
        "the fleet's use as reported, summed"
    );
    assert_eq!(fleet.reporting, 3);
    assert_eq!(
        totals[&("ns/cap".to_string(), 0)].used[1],
        0,
        "counted apart"
    );
}
