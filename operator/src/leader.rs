//! Leader election (DESIGN §4). Every replica runs the informers and the compiler, so a standby
//! is warm; the holder of the `switchyard-operator` Lease serves config and reports, writes
//! status and trust material, and labels its own Pod `switchyard.dev/role=leader` so that the
//! config Service selects it.
//!
//! The Lease is kept by `kube-lease-manager` (server-side apply, so two replicas can never both
//! believe they hold it). Outside a cluster (no `POD_NAME`) there is no Lease: the process is
//! the leader, as DESIGN says ("out of cluster it just serves").

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt as _};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::names::{FIELD_MANAGER, LEASE_NAME, ROLE_LABEL, ROLE_LEADER};

/// How long a Lease stays valid after its last renewal (DESIGN: about 15 s)...
const LEASE_SECONDS: u64 = 15;
/// ...and how long before that the holder renews it, so the renew deadline is 10 s.
const GRACE_SECONDS: u64 = 5;
/// Pause before retrying after the Lease could not be created or read.
const RETRY: Duration = Duration::from_secs(5);
/// The longest a leader acts without seeing its Lease held by itself (DESIGN: a 10 s renew
/// deadline), shorter than the Lease so that it stops before a standby may take over.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a leader looks at its Lease.
const CONFIRM_EVERY: Duration = Duration::from_secs(2);
/// The longest a shutdown waits to release the Lease.
const STEP_DOWN: Duration = Duration::from_secs(3);

/// Whether this replica leads right now, and a way to wait for that to change.
#[derive(Clone, Debug)]
pub enum Leadership {
    /// Out of a cluster (and in tests): this process always leads.
    Always,
    /// The outcome of a Lease election.
    Elected(watch::Receiver<bool>),
}

// === impl Leadership ===

impl Leadership {
    /// A process that always leads.
    pub fn always() -> Self {
        Self::Always
    }

    /// A leadership driven by the sender of `rx`, for tests of what follows it.
    pub fn from_receiver(rx: watch::Receiver<bool>) -> Self {
        Self::Elected(rx)
    }

    pub fn is_leader(&self) -> bool {
        match self {
            Self::Always => true,
            Self::Elected(rx) => *rx.borrow(),
        }
    }

    /// Waits until leadership changes and returns the new value; never returns for a
    /// leadership that cannot change.
    pub async fn changed(&mut self) -> bool {
        if let Self::Elected(rx) = self
            && rx.changed().await.is_ok()
        {
            return *rx.borrow_and_update();
        }
        // Nothing can change any more (always leading, or the election ended with the process).
        std::future::pending().await
    }
}

/// A running election: its outcome, and how to leave it.
pub struct Election {
    pub leadership: Leadership,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Releases the Lease (and the leader label) so that a standby takes over at once rather
    /// than after the Lease expires. Bounded: a shutdown never waits on an unreachable
    /// apiserver for long.
    pub async fn step_down(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(STEP_DOWN, self.task).await;
    }
}

/// Starts competing for the Lease in `namespace` as `pod_name` and keeps the leader label of
/// that Pod in step with the outcome. Never returns an error: failures are logged and retried,
/// and this replica is a follower meanwhile.
pub fn spawn(client: Client, namespace: String, pod_name: String, gauge: IntGauge) -> Election {
    let (tx, rx) = watch::channel(false);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
                .with_namespace(&namespace)
                .with_identity(&pod_name)
                .with_duration(LEASE_SECONDS)
                .with_grace(GRACE_SECONDS)
                .with_field_manager(format!("{FIELD_MANAGER}/{pod_name}"))
                .build()
                .await;
            let manager = match manager {
                Ok(manager) => manager,
                Err(error) => {
                    tracing::warn!(%error, lease = LEASE_NAME, %namespace, "cannot set up the leader Lease; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let (mut state, task) = manager.watch().await;
            let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
            // What the manager says, when the Lease was last seen held by us, and what we act on.
            let (mut elected, mut confirmed, mut acting) = (false, None, false);
            let mut check = tokio::time::interval(CONFIRM_EVERY);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = state.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        elected = *state.borrow_and_update();
                        confirmed = elected.then(Instant::now);
                    }
                    _ = check.tick(), if elected => {
                        // Bounded: a partitioned apiserver must not stall the deadline check.
                        match tokio::time::timeout(CONFIRM_EVERY, leases.get(LEASE_NAME)).await {
                            Ok(Ok(lease)) if holder(&lease) == Some(pod_name.as_str()) => {
                                confirmed = Some(Instant::now());
                            }
                            // Someone else holds it: stop at once, whatever the manager believes.
                            Ok(Ok(_)) => confirmed = None,
                            Ok(Err(error)) => tracing::debug!(%error, "cannot confirm the Lease"),
                            Err(_) => tracing::debug!("confirming the Lease timed out"),
                        }
                    }
                    _ = wait_true(&mut stopped) => {
                        // Closing the channel makes the manager release the Lease and end.
                        drop(state);
                        let _ = task.await;
                        gauge.set(0);
                        tx.send_replace(false);
                        if let Err(error) = label(&client, &namespace, &pod_name, false).await {
                            tracing::debug!(%error, "cannot remove the leader label");
                        }
                        tracing::info!(pod = %pod_name, "stepped down");
                        return;
                    }
                }
                let leading = may_lead(elected, confirmed, Instant::now());
                if leading == acting {
                    continue;
                }
                acting = leading;
                tracing::info!(leading, pod = %pod_name, "leadership changed");
                gauge.set(i64::from(leading));
                tx.send_replace(leading);
                if let Err(error) = label(&client, &namespace, &pod_name, leading).await {
                    tracing::warn!(%error, "cannot update the leader label");
                }
            }
            // The manager's task ended: we may no longer hold the Lease, so stop acting as
            // leader before trying again.
            let error = task
                .await
                .map_or_else(|e| e.to_string(), |r| format!("{:?}", r.err()));
            tracing::warn!(%error, "leader election stopped; restarting");
            gauge.set(0);
            tx.send_replace(false);
            tokio::time::sleep(RETRY).await;
        }
    });
    Election {
        leadership: Leadership::Elected(rx),
        stop,
        task,
    }
}

/// Whether a replica the Lease manager calls leader may act as one: only while it has seen the
/// Lease held by itself within [`RENEW_DEADLINE`]. The manager keeps believing it leads while its
/// renewals fail (it retries), so a leader cut off from the apiserver would otherwise go on
/// writing and serving after its Lease expired and a standby took over.
pub fn may_lead(elected: bool, confirmed: Option<Instant>, now: Instant) -> bool {
    elected && confirmed.is_some_and(|at| now.saturating_duration_since(at) < RENEW_DEADLINE)
}

/// The holder the Lease names.
fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

/// Waits until `rx` holds true (a `wait_for` whose guard does not outlive the wait, so the
/// future stays `Send` inside `select!`).
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

/// Puts the leader label on `pod_name` (removing it from any other Pod that still carries it,
/// such as a leader that died before it could clean up), or removes it when not leading.
async fn label(
    client: &Client,
    namespace: &str,
    pod_name: &str,
    leading: bool,
) -> kube::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    if leading {
        let others = pods
            .list(&ListParams::default().labels(&format!("{ROLE_LABEL}={ROLE_LEADER}")))
            .await?;
        for pod in others.items.iter().filter(|p| p.name_any() != pod_name) {
            pods.patch(&pod.name_any(), &PatchParams::default(), &role_patch(false))
                .await?;
        }
    }
    pods.patch(pod_name, &PatchParams::default(), &role_patch(leading))
        .await?;
    Ok(())
}

/// A merge patch setting (or, with `null`, removing) the leader label.
fn role_patch(leading: bool) -> Patch<serde_json::Value> {
    let value = if leading {
        serde_json::Value::from(ROLE_LEADER)
    } else {
        serde_json::Value::Null
    };
    Patch::Merge(serde_json::json!({"metadata": {"labels": {ROLE_LABEL: value}}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_patch_sets_and_removes_the_label() {
        let Patch::Merge(set) = role_patch(true) else {
            panic!("a merge patch")
        };
        assert_eq!(set["metadata"]["labels"][ROLE_LABEL], ROLE_LEADER);
        let Patch::Merge(unset) = role_patch(false) else {
            panic!("a merge patch")
        };
        assert!(unset["metadata"]["labels"][ROLE_LABEL].is_null());
    }

    #[tokio::test]
    async fn a_new_leader_takes_the_label_from_a_stale_one() {
        use http_body_util::BodyExt as _;

        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = Client::new(service, "ops");
        let task = tokio::spawn(async move { label(&client, "ops", "op-b", true).await });
        let respond = |body: serde_json::Value| {
            http::Response::builder()
                .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap()
        };
        let pod = |name: &str| {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "ops", "labels": {ROLE_LABEL: "leader"}}})
        };

        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), http::Method::GET);
        assert!(
            request
                .uri()
                .query()
                .unwrap()
                .contains("labelSelector=switchyard.dev%2Frole%3Dleader")
        );
        send.send_response(respond(serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [pod("op-a"), pod("op-b")],
        })));
        let mut patched = Vec::new();
        for _ in 0..2 {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), http::Method::PATCH);
            let name = request.uri().path().rsplit('/').next().unwrap().to_string();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            patched.push((name.clone(), body["metadata"]["labels"][ROLE_LABEL].clone()));
            send.send_response(respond(pod(&name)));
        }
        task.await.unwrap().unwrap();
        assert_eq!(
            patched,
            [
                ("op-a".to_string(), serde_json::Value::Null),
                ("op-b".to_string(), serde_json::Value::from("leader")),
            ],
            "the stale leader loses the label before the new one gets it"
        );
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
        const { assert!(RENEW_DEADLINE.as_secs() < LEASE_SECONDS) };
    }

    #[tokio::test]
    async fn always_leads_and_never_changes() {
        let mut leadership = Leadership::always();
        assert!(leadership.is_leader());
        let changed = tokio::time::timeout(Duration::from_millis(50), leadership.changed()).await;
        assert!(changed.is_err(), "a constant leadership never changes");
    }
}
