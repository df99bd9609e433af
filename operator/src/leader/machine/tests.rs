use std::time::Duration;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn leading(at: Instant) -> State {
    State::Elected {
        confirmed: Some(at),
        acting: true,
    }
}

#[test]
fn a_follower_that_acquires_the_lease_starts_acting() {
    let t0 = Instant::now();
    let (state, actions) = step(State::Following, Event::Elected(true), t0);
    assert_eq!(state, leading(t0));
    assert_eq!(actions, [Action::Act(true)]);
}

#[test]
fn a_follower_told_it_still_follows_does_nothing() {
    let t0 = Instant::now();
    let (state, actions) = step(State::Following, Event::Elected(false), t0);
    assert_eq!(state, State::Following);
    assert!(actions.is_empty());
}

#[test]
fn a_leader_that_sees_its_lease_keeps_acting_and_moves_its_deadline() {
    let t0 = Instant::now();
    let later = t0 + 8 * SECOND;
    let (state, actions) = step(leading(t0), Event::LeaseSeen { ours: true }, later);
    assert_eq!(state, leading(later));
    assert!(actions.is_empty());
    let (state, actions) = step(state, Event::LeaseUnreadable, later + 8 * SECOND);
    assert_eq!(
        state,
        leading(later),
        "still within the deadline of the last look"
    );
    assert!(actions.is_empty());
}

#[test]
fn a_renewal_by_the_manager_counts_as_seeing_the_lease() {
    let t0 = Instant::now();
    let later = t0 + 9 * SECOND;
    let (state, actions) = step(leading(t0), Event::Elected(true), later);
    assert_eq!(state, leading(later));
    assert!(actions.is_empty());
}

#[test]
fn a_leader_that_cannot_read_its_lease_acts_until_the_renew_deadline_passes() {
    let t0 = Instant::now();
    let just_before = t0 + RENEW_DEADLINE - Duration::from_millis(1);
    let (state, actions) = step(leading(t0), Event::LeaseUnreadable, just_before);
    assert_eq!(state, leading(t0));
    assert!(actions.is_empty());

    let (state, actions) = step(state, Event::LeaseUnreadable, t0 + RENEW_DEADLINE);
    assert_eq!(
        state,
        State::Elected {
            confirmed: Some(t0),
            acting: false
        }
    );
    assert_eq!(
        actions,
        [Action::Act(false)],
        "renewals failed for too long"
    );

    let (state, actions) = step(state, Event::LeaseUnreadable, t0 + 2 * RENEW_DEADLINE);
    assert!(!state.acting() && state.watches_lease());
    assert!(actions.is_empty(), "stopping is announced once");
}

#[test]
fn a_suspended_leader_that_sees_its_lease_again_resumes() {
    let t0 = Instant::now();
    let suspended = State::Elected {
        confirmed: Some(t0),
        acting: false,
    };
    let again = t0 + 12 * SECOND;
    let (state, actions) = step(suspended, Event::LeaseSeen { ours: true }, again);
    assert_eq!(state, leading(again));
    assert_eq!(actions, [Action::Act(true)]);
}

#[test]
fn a_leader_that_sees_another_holder_stops_at_once() {
    let t0 = Instant::now();
    let (state, actions) = step(leading(t0), Event::LeaseSeen { ours: false }, t0 + SECOND);
    assert_eq!(
        state,
        State::Elected {
            confirmed: None,
            acting: false
        }
    );
    assert_eq!(actions, [Action::Act(false)]);

    let (state, actions) = step(state, Event::LeaseUnreadable, t0 + 2 * SECOND);
    assert!(
        !state.acting(),
        "an unreadable Lease does not bring it back"
    );
    assert!(actions.is_empty());
}

#[test]
fn a_leader_the_manager_says_lost_the_lease_stops_acting_and_follows() {
    let t0 = Instant::now();
    let (state, actions) = step(leading(t0), Event::Elected(false), t0 + SECOND);
    assert_eq!(state, State::Following);
    assert!(!state.watches_lease());
    assert_eq!(actions, [Action::Act(false)]);
}

#[test]
fn a_suspended_leader_that_loses_the_lease_has_nothing_to_announce() {
    let t0 = Instant::now();
    let suspended = State::Elected {
        confirmed: None,
        acting: false,
    };
    let (state, actions) = step(suspended, Event::Elected(false), t0);
    assert_eq!(state, State::Following);
    assert!(actions.is_empty());
}

#[test]
fn looks_at_the_lease_change_nothing_for_a_follower() {
    let t0 = Instant::now();
    for event in [Event::LeaseSeen { ours: true }, Event::LeaseUnreadable] {
        assert_eq!(
            step(State::Following, event, t0),
            (State::Following, Vec::new())
        );
    }
}

#[test]
fn an_ended_manager_restarts_the_election_from_following() {
    let t0 = Instant::now();
    for state in [State::Following, leading(t0)] {
        let (next, actions) = step(state, Event::ManagerEnded, t0);
        assert_eq!(next, State::Following);
        assert_eq!(actions, [Action::Restart]);
    }
}

#[test]
fn a_shutdown_steps_down_whether_leading_or_not_and_ends_everything() {
    let t0 = Instant::now();
    for state in [State::Following, leading(t0)] {
        let (next, actions) = step(state, Event::Shutdown, t0);
        assert_eq!(next, State::Stopped);
        assert_eq!(actions, [Action::StepDown]);
    }
    for event in [
        Event::Elected(true),
        Event::LeaseSeen { ours: true },
        Event::ManagerEnded,
        Event::Shutdown,
    ] {
        assert_eq!(
            step(State::Stopped, event, t0),
            (State::Stopped, Vec::new()),
            "nothing happens after a shutdown"
        );
    }
}

#[test]
fn a_leader_acts_only_while_its_lease_was_seen_within_the_renew_deadline() {
    let t0 = Instant::now();
    assert!(may_lead(true, Some(t0), t0));
    assert!(may_lead(
        true,
        Some(t0),
        t0 + RENEW_DEADLINE - Duration::from_millis(1)
    ));
    assert!(
        !may_lead(true, Some(t0), t0 + RENEW_DEADLINE),
        "cut off too long"
    );
    assert!(!may_lead(true, None, t0), "someone else holds the Lease");
    assert!(!may_lead(false, Some(t0), t0), "not elected");
}
