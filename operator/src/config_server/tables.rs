//! The state the controller publishes for the config server: one compiled table per audience and
//! the injected pods by UID. Published as a whole immutable [`Snapshot`] through a
//! `tokio::sync::watch` channel, so long-polls wake the moment anything changes and every pod of an
//! audience shares one `Arc<RouteTable>` (nothing is compiled per connection).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use switchyard_crds::compile::Audience;
use switchyard_crds::table::{RouteTable, Workload};
use tokio::sync::watch;

use super::leases::DurableTotals;
use crate::names::GENERATED_BY;

/// What the config server knows about one pod, from the controller's label-filtered Pod watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Whether the pod carries `switchyard.dev/injected=true`; only such pods are served.
    pub injected: bool,
    /// Who the pod's requests are attributed to ([`crate::workload::resolve`]). Reports are
    /// attributed by this, never by anything a report claims.
    pub workload: Workload,
}

/// One consistent view: tables by audience and pods by UID, and what Budget status says was
/// used, from which the lease book resumes counting.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub tables: BTreeMap<Audience, Arc<RouteTable>>,
    pub pods: HashMap<String, PodInfo>,
    /// The window totals of every Budget's status, by (budget `namespace/name`, limit index).
    pub durable: Arc<DurableTotals>,
}

/// The publishing side and the shared reading side of the current [`Snapshot`].
#[derive(Clone)]
pub struct Tables {
    tx: Arc<watch::Sender<Arc<Snapshot>>>,
}

/// The table served to a pod that no route selects (yet): empty, so that its sidecar still
/// becomes ready and simply answers 404 for every model.
pub fn empty_table() -> Arc<RouteTable> {
    static EMPTY: LazyLock<Arc<RouteTable>> = LazyLock::new(|| {
        Arc::new(RouteTable::new(
            BTreeMap::new(),
            BTreeMap::new(),
            GENERATED_BY,
        ))
    });
    EMPTY.clone()
}

// === impl PodInfo ===

impl PodInfo {
    /// The audience this pod's table was compiled for: its namespace, labels and workload.
    /// Pods of one workload share labels, so there is still about one table per workload.
    pub fn audience(&self) -> Audience {
        Audience {
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            workload: Some(self.workload.clone()),
        }
    }

    /// A pod's index entry with the workload a pod has before anything is known of its owners:
    /// itself (`Pod/<name>`, ServiceAccount `default`). For tests and benchmarks.
    pub fn bare(namespace: &str, name: &str, labels: BTreeMap<String, String>) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels,
            injected: true,
            workload: Workload {
                namespace: namespace.to_string(),
                kind: "Pod".to_string(),
                name: name.to_string(),
                service_account: crate::workload::DEFAULT_SERVICE_ACCOUNT.to_string(),
            },
        }
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// The table for a pod: its audience's, or [`empty_table`] when none was compiled.
    pub fn table_for(&self, pod: &PodInfo) -> Arc<RouteTable> {
        self.tables
            .get(&pod.audience())
            .cloned()
            .unwrap_or_else(empty_table)
    }

    /// The pod with this UID, if the index has it.
    pub fn pod(&self, uid: &str) -> Option<&PodInfo> {
        self.pods.get(uid)
    }
}

// === impl Tables ===

impl Tables {
    /// A store holding `initial`.
    pub fn new(initial: Snapshot) -> Self {
        let (tx, _) = watch::channel(Arc::new(initial));
        Self { tx: Arc::new(tx) }
    }

    /// Replaces the snapshot and wakes every waiting long-poll.
    pub fn publish(&self, snapshot: Snapshot) {
        self.tx.send_replace(Arc::new(snapshot));
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver that resolves `changed()` on every publish.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }
}

impl Default for Tables {
    fn default() -> Self {
        Self::new(Snapshot::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, app: &str) -> PodInfo {
        PodInfo::bare(
            ns,
            &format!("{app}-0"),
            BTreeMap::from([("app".to_string(), app.to_string())]),
        )
    }

    #[test]
    fn pods_get_their_audience_table_or_the_empty_one() {
        let table = Arc::new(RouteTable::new(BTreeMap::new(), BTreeMap::new(), "test"));
        let chat = pod("team-a", "chat");
        let snapshot = Snapshot {
            tables: BTreeMap::from([(chat.audience(), table.clone())]),
            pods: HashMap::from([("uid-1".to_string(), chat.clone())]),
            durable: Default::default(),
        };
        assert!(
            Arc::ptr_eq(&snapshot.table_for(&chat), &table),
            "shared, not copied"
        );
        let other = snapshot.table_for(&pod("team-b", "chat"));
        assert!(other.routes.is_empty());
        assert_eq!(other.generated_by, GENERATED_BY);
        assert_eq!(snapshot.pod("uid-1"), Some(&chat));
    }

    #[tokio::test]
    async fn publishing_wakes_subscribers() {
        let tables = Tables::default();
        let mut rx = tables.subscribe();
        tables.publish(Snapshot {
            pods: HashMap::from([("u".to_string(), pod("ns", "a"))]),
            ..Snapshot::default()
        });
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().pods.len(), 1);
        assert_eq!(tables.current().pods.len(), 1);
    }
}
