//! Leader election (docs/reference/operator.md). Every replica runs the informers and the compiler, so a standby
//! is warm; the holder of the `switchyard-operator` Lease serves config and reports, writes
//! status and trust material, and labels its own Pod `switchyard.dev/role=leader` so that the
//! config Service selects it.
//!
//! The Lease is kept by `kube-lease-manager` (server-side apply, so two replicas can never both
//! believe they hold it). Outside a cluster (no `POD_NAME`) there is no Lease: the process is
//! the leader ("out of cluster it just serves").
//!
//! What a replica does about what it learns is decided by the pure [`machine`]; [`spawn`] only
//! carries it out.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt as _};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::time::Instant;

use self::machine::{Action, Event, State};
pub use self::machine::{RENEW_DEADLINE, may_lead};
use crate::names::{FIELD_MANAGER, LEASE_NAME, ROLE_LABEL, ROLE_LEADER};

pub mod machine;

/// How long a Lease stays valid after its last renewal (about 15 s)...
const LEASE_SECONDS: u64 = 15;
/// ...and how long before that the holder renews it, so the renew deadline is 10 s.
const GRACE_SECONDS: u64 = 5;
/// Pause before retrying after the Lease could not be created or read.
const RETRY: Duration = Duration::from_secs(5);
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

    /// Whether leadership changed since this handle last looked, marking the change seen. A
    /// handle kept for this alone tells each new term from the last (the lease book starts
    /// learning again); one that always leads never changes.
    pub fn take_change(&mut self) -> bool {
        match self {
            Self::Always => false,
            Self::Elected(rx) => {
                let changed = rx.has_changed().unwrap_or(false);
                if changed {
                    rx.borrow_and_update();
                }
                changed
            }
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
    let (stop, stopped) = watch::channel(false);
    let shell = Shell {
        client,
        namespace,
        pod_name,
        gauge,
        tx,
    };
    let task = tokio::spawn(shell.run(stopped));
    Election {
        leadership: Leadership::Elected(rx),
        stop,
        task,
    }
}

/// The imperative half of the election: turns the Lease manager, looks at the Lease and the
/// stop request into [`Event`]s for [`machine::step`], and its [`Action`]s into I/O.
struct Shell {
    client: Client,
    namespace: String,
    pod_name: String,
    gauge: IntGauge,
    tx: watch::Sender<bool>,
}

/// How following one Lease manager ended.
enum Ended {
    /// Its task ended: start another one.
    Restart,
    /// Shut down: the election is over.
    SteppedDown,
}

impl Shell {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            let manager = LeaseManagerBuilder::new(self.client.clone(), LEASE_NAME)
                .with_namespace(&self.namespace)
                .with_identity(&self.pod_name)
                .with_duration(LEASE_SECONDS)
                .with_grace(GRACE_SECONDS)
                .with_field_manager(format!("{FIELD_MANAGER}/{}", self.pod_name))
                .build()
                .await;
            match manager {
                Ok(manager) => {
                    if let Ended::SteppedDown = self.follow(manager, &mut stopped).await {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, lease = LEASE_NAME, namespace = %self.namespace, "cannot set up the leader Lease; retrying");
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Follows one Lease manager until its task ends or the election is stopped.
    async fn follow(&self, manager: LeaseManager, stopped: &mut watch::Receiver<bool>) -> Ended {
        let (mut elected, task) = manager.watch().await;
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut state = State::Following;
        let mut check = tokio::time::interval(CONFIRM_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                changed = elected.changed() => match changed {
                    Ok(()) => Event::Elected(*elected.borrow_and_update()),
                    Err(_) => Event::ManagerEnded,
                },
                _ = check.tick(), if state.watches_lease() => self.look_at(&leases).await,
                _ = wait_true(stopped) => Event::Shutdown,
            };
            let (next, actions) = machine::step(state, event, Instant::now());
            state = next;
            for action in actions {
                match action {
                    Action::Act(leading) => self.act(leading).await,
                    Action::Restart => {
                        // We may no longer hold the Lease: stop acting as leader before trying
                        // again.
                        let error = task
                            .await
                            .map_or_else(|e| e.to_string(), |r| format!("{:?}", r.err()));
                        tracing::warn!(%error, "leader election stopped; restarting");
                        self.publish(false);
                        return Ended::Restart;
                    }
                    Action::StepDown => {
                        // Closing the channel makes the manager release the Lease and end.
                        drop(elected);
                        let _ = task.await;
                        self.publish(false);
                        if let Err(error) = self.label(false).await {
                            tracing::debug!(%error, "cannot remove the leader label");
                        }
                        tracing::info!(pod = %self.pod_name, "stepped down");
                        return Ended::SteppedDown;
                    }
                }
            }
        }
    }

    /// Reads the Lease, bounded: a partitioned apiserver must not stall the deadline check.
    async fn look_at(&self, leases: &Api<Lease>) -> Event {
        match tokio::time::timeout(CONFIRM_EVERY, leases.get(LEASE_NAME)).await {
            Ok(Ok(lease)) => Event::LeaseSeen {
                ours: holder(&lease) == Some(self.pod_name.as_str()),
            },
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot confirm the Lease");
                Event::LeaseUnreadable
            }
            Err(_) => {
                tracing::debug!("confirming the Lease timed out");
                Event::LeaseUnreadable
            }
        }
    }

    /// Starts or stops acting as leader, and moves the leader label with it.
    async fn act(&self, leading: bool) {
        tracing::info!(leading, pod = %self.pod_name, "leadership changed");
        self.publish(leading);
        if let Err(error) = self.label(leading).await {
            tracing::warn!(%error, "cannot update the leader label");
        }
    }

    /// Tells the gauge and everyone following the leadership.
    fn publish(&self, leading: bool) {
        self.gauge.set(i64::from(leading));
        self.tx.send_replace(leading);
    }

    async fn label(&self, leading: bool) -> kube::Result<()> {
        label(&self.client, &self.namespace, &self.pod_name, leading).await
    }
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
    fn the_renew_deadline_ends_before_the_lease_does() {
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
