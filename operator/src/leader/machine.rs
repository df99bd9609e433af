//! The pure half of leader election: what this replica does when the Lease manager, a look at
//! the Lease, or a shutdown tells it something. No I/O and no clock: [`super::spawn`] turns
//! watches, ticks and requests into [`Event`]s, passes the time in, and carries out the
//! [`Action`]s that [`step`] returns.

use std::time::Duration;

use tokio::time::Instant;

/// The longest a leader acts without seeing its Lease held by itself (a 10 s renew deadline,
/// see docs/reference/operator.md), shorter than the Lease so that it stops before a standby
/// may take over.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// Where this replica stands with the Lease manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The manager does not hold the Lease (or has not said yet): not acting.
    Following,
    /// The manager holds the Lease.
    Elected {
        /// When the Lease was last seen held by this replica; `None` once someone else was
        /// seen holding it.
        confirmed: Option<Instant>,
        /// Whether this replica acts as leader, i.e. [`may_lead`] held after the last event.
        acting: bool,
    },
    /// Shut down: nothing happens any more.
    Stopped,
}

/// Something the shell observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The Lease manager says it holds the Lease (`true`) or does not (`false`).
    Elected(bool),
    /// The Lease was read: held by this replica, or by someone else.
    LeaseSeen { ours: bool },
    /// The Lease could not be read in time; only the deadline moves on.
    LeaseUnreadable,
    /// The Lease manager's task ended: we may no longer hold the Lease.
    ManagerEnded,
    /// The process is shutting down.
    Shutdown,
}

/// What the shell must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start (`true`) or stop (`false`) acting as leader: the gauge, the leadership channel and
    /// the leader label of this replica's Pod follow.
    Act(bool),
    /// Stop acting (without touching the label), wait, and start a new Lease manager.
    Restart,
    /// Release the Lease, stop acting, remove the leader label, and end.
    StepDown,
}

impl State {
    /// Whether the shell should look at the Lease now and then: only the elected do.
    pub fn watches_lease(self) -> bool {
        matches!(self, Self::Elected { .. })
    }

    fn acting(self) -> bool {
        matches!(self, Self::Elected { acting: true, .. })
    }
}

/// The state after `event` at `now`, and what to do about it.
pub fn step(state: State, event: Event, now: Instant) -> (State, Vec<Action>) {
    let next = match (state, event) {
        (State::Stopped, _) => return (state, Vec::new()),
        (_, Event::Shutdown) => return (State::Stopped, vec![Action::StepDown]),
        (_, Event::ManagerEnded) => return (State::Following, vec![Action::Restart]),
        (_, Event::Elected(false)) => State::Following,
        // Elected, or told so again: the manager has just acquired or renewed the Lease.
        (_, Event::Elected(true)) => elected(Some(now), now),
        // The Lease is only looked at while elected; a late look changes nothing.
        (State::Following, Event::LeaseSeen { .. } | Event::LeaseUnreadable) => State::Following,
        (State::Elected { .. }, Event::LeaseSeen { ours: true }) => elected(Some(now), now),
        // Someone else holds it: stop at once, whatever the manager believes.
        (State::Elected { .. }, Event::LeaseSeen { ours: false }) => elected(None, now),
        (State::Elected { confirmed, .. }, Event::LeaseUnreadable) => elected(confirmed, now),
    };
    let actions = if next.acting() == state.acting() {
        Vec::new()
    } else {
        vec![Action::Act(next.acting())]
    };
    (next, actions)
}

/// The elected state, acting while the Lease was `confirmed` recently enough at `now`.
fn elected(confirmed: Option<Instant>, now: Instant) -> State {
    State::Elected {
        confirmed,
        acting: may_lead(true, confirmed, now),
    }
}

/// Whether a replica the Lease manager calls leader may act as one: only while it has seen the
/// Lease held by itself within [`RENEW_DEADLINE`]. The manager keeps believing it leads while its
/// renewals fail (it retries), so a leader cut off from the apiserver would otherwise go on
/// writing and serving after its Lease expired and a standby took over.
pub fn may_lead(elected: bool, confirmed: Option<Instant>, now: Instant) -> bool {
    elected && confirmed.is_some_and(|at| now.saturating_duration_since(at) < RENEW_DEADLINE)
}

#[cfg(test)]
mod tests;
