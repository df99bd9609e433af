//! Kubernetes Events for notable changes (a route or pool accepted, a reference broken), decided
//! purely from the conditions before and after a step. Events follow status writes, so they are
//! published by the leader only and exactly once per transition: a new leader finds the status
//! already written and sees no transition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use switchyard_crds::v1alpha1::BudgetStatus;

use super::conditions::{types, window_fraction};

/// One event to publish about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    /// CamelCase, as Kubernetes reasons are.
    pub reason: String,
    /// What happened, for a person reading `kubectl describe`.
    pub note: String,
}

/// The reason of the event published when an object becomes ready.
pub const ACCEPTED: &str = "Accepted";

/// The reason of the event published when a budget's window has used 80 % of a limit.
pub const BUDGET_NEARLY_EXHAUSTED: &str = "BudgetNearlyExhausted";
/// The reason of the warning published when a budget's window has used all of a limit.
pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
/// The share of a limit at which a budget is announced as nearly exhausted.
pub const NEARLY: f64 = 0.8;

/// The events a budget's spend deserves: for each window of `current` that crossed 80 % (a
/// normal event) or 100 % (a warning) of its limit since `previous` said of the same window
/// (same period, same start), one event for the highest threshold crossed. A window `previous`
/// does not have counts from zero. Since the status that crossed is then written, each window
/// and threshold is announced once, even across leader changes.
pub fn budget_notices(previous: Option<&BudgetStatus>, current: &BudgetStatus) -> Vec<Notice> {
    let mut out = Vec::new();
    for (index, window) in current.windows.iter().enumerate() {
        let before = previous
            .and_then(|p| p.windows.get(index))
            .filter(|b| b.period == window.period && b.start == window.start)
            .map_or(0.0, window_fraction);
        let now = window_fraction(window);
        let crossed = |threshold: f64| before < threshold && now >= threshold;
        let (warning, reason, what) = if crossed(1.0) {
            (true, BUDGET_EXHAUSTED, "all")
        } else if crossed(NEARLY) {
            (false, BUDGET_NEARLY_EXHAUSTED, "80 %")
        } else {
            continue;
        };
        out.push(Notice {
            warning,
            reason: reason.to_string(),
            note: format!(
                "limits[{index}] ({}): {what} of the limit used in the window from {}",
                window.period, window.start.0
            ),
        });
    }
    out
}

/// The events a change from `previous` to `current` conditions deserves: a warning when
/// `Accepted` or `ResolvedRefs` becomes false or its complaint changes, and one normal event
/// when the object becomes `Ready`.
pub fn notices(previous: &[Condition], current: &[Condition]) -> Vec<Notice> {
    let before = |kind: &str| previous.iter().find(|c| c.type_ == kind);
    let mut out = Vec::new();
    for kind in [types::ACCEPTED, types::RESOLVED_REFS] {
        let Some(now) = current.iter().find(|c| c.type_ == kind) else {
            continue;
        };
        let unchanged =
            before(kind).is_some_and(|b| b.status == now.status && b.message == now.message);
        if now.status == "False" && !unchanged {
            out.push(Notice {
                warning: true,
                reason: now.reason.clone(),
                note: now.message.clone(),
            });
        }
    }
    let ready = |c: Option<&Condition>| c.is_some_and(|c| c.status == "True");
    let ready_now = current.iter().find(|c| c.type_ == types::READY);
    if ready(ready_now) && !ready(before(types::READY)) {
        out.push(Notice {
            warning: false,
            reason: ACCEPTED.to_string(),
            note: ready_now.map(|c| c.message.clone()).unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: Some(1),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn ready() -> Vec<Condition> {
        vec![
            condition(types::ACCEPTED, "True", "Accepted", "the route is valid"),
            condition(types::RESOLVED_REFS, "True", "ResolvedRefs", "all resolved"),
            condition(types::READY, "True", "Ready", "served"),
        ]
    }

    fn broken(message: &str) -> Vec<Condition> {
        vec![
            condition(types::ACCEPTED, "True", "Accepted", "the route is valid"),
            condition(types::RESOLVED_REFS, "False", "PoolNotFound", message),
            condition(types::READY, "False", "NotReady", "ResolvedRefs is False"),
        ]
    }

    #[test]
    fn a_new_ready_object_is_accepted_once() {
        let first = notices(&[], &ready());
        assert_eq!(first.len(), 1);
        assert!(!first[0].warning);
        assert_eq!(first[0].reason, ACCEPTED);
        assert!(
            notices(&ready(), &ready()).is_empty(),
            "no transition, no event"
        );
    }

    #[test]
    fn a_broken_reference_warns_with_the_conditions_words() {
        let events = notices(&ready(), &broken("pool \"gpt\" not found"));
        assert_eq!(
            events,
            vec![Notice {
                warning: true,
                reason: "PoolNotFound".into(),
                note: "pool \"gpt\" not found".into(),
            }]
        );
        let same = notices(
            &broken("pool \"gpt\" not found"),
            &broken("pool \"gpt\" not found"),
        );
        assert!(same.is_empty(), "the same complaint is not repeated");
        let other = notices(
            &broken("pool \"gpt\" not found"),
            &broken("pool \"x\" not found"),
        );
        assert_eq!(other.len(), 1, "a different complaint is news");
    }

    /// A `1m` budget window of 600 requests, `used` of them used, starting at `start` seconds.
    fn spent(used: u64, start: i64) -> BudgetStatus {
        serde_json::from_value(serde_json::json!({"windows": [{
            "period": "1m",
            "start": Time(k8s_openapi::jiff::Timestamp::from_second(start).unwrap()),
            "end": Time(k8s_openapi::jiff::Timestamp::from_second(start + 60).unwrap()),
            "used": {"requests": used}, "limit": {"requests": 600},
            "remaining": {"requests": 600u64.saturating_sub(used)},
        }]}))
        .unwrap()
    }

    #[test]
    fn a_budget_is_announced_at_80_and_100_percent_once_per_window() {
        let reasons = |before: Option<&BudgetStatus>, after: &BudgetStatus| {
            budget_notices(before, after)
                .into_iter()
                .map(|n| (n.warning, n.reason))
                .collect::<Vec<_>>()
        };
        let near = vec![(false, BUDGET_NEARLY_EXHAUSTED.to_string())];
        let out = vec![(true, BUDGET_EXHAUSTED.to_string())];
        assert!(reasons(None, &spent(479, 0)).is_empty(), "below 80 %");
        assert_eq!(reasons(Some(&spent(100, 0)), &spent(480, 0)), near);
        assert!(
            reasons(Some(&spent(480, 0)), &spent(500, 0)).is_empty(),
            "already announced: the status that crossed was written"
        );
        assert_eq!(reasons(Some(&spent(500, 0)), &spent(600, 0)), out);
        assert!(reasons(Some(&spent(600, 0)), &spent(650, 0)).is_empty());
        assert_eq!(
            reasons(Some(&spent(100, 0)), &spent(700, 0)),
            out,
            "the highest threshold crossed only"
        );
        assert_eq!(
            reasons(Some(&spent(600, 0)), &spent(500, 60)),
            near,
            "a new window counts from zero"
        );
        let note = &budget_notices(None, &spent(600, 0))[0].note;
        assert!(
            note.starts_with("limits[0] (1m): all of the limit"),
            "{note}"
        );
    }

    #[test]
    fn repairing_a_reference_is_announced() {
        let events = notices(&broken("pool \"gpt\" not found"), &ready());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, ACCEPTED);
    }
}
