use serde_json::json;

use super::*;

/// A pod in `ns` whose ownerReferences are `owners` (each `(apiVersion, kind, name, uid,
/// controller)`).
fn pod(owners: &[(&str, &str, &str, &str, bool)], service_account: Option<&str>) -> Pod {
    let refs: Vec<_> = owners
        .iter()
        .map(|(api_version, kind, name, uid, controller)| {
            json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
                   "controller": controller})
        })
        .collect();
    let mut spec = json!({"containers": []});
    if let Some(sa) = service_account {
        spec["serviceAccountName"] = json!(sa);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p-1", "namespace": "ns", "uid": "pod-uid", "ownerReferences": refs},
        "spec": spec,
    }))
    .unwrap()
}

fn owner(kind: &str, name: &str) -> Option<Owner> {
    Some(Owner {
        kind: kind.into(),
        name: name.into(),
    })
}

fn kind_name(pod: &Pod, owners: &Owners) -> String {
    resolve(pod, owners).kind_name()
}

#[test]
fn a_replicaset_pod_belongs_to_its_deployment_once_looked_up() {
    let pod = pod(
        &[("apps/v1", "ReplicaSet", "web-7d4f", "rs-uid", true)],
        Some("web-sa"),
    );
    assert_eq!(
        kind_name(&pod, &Owners::new()),
        "ReplicaSet/web-7d4f",
        "interim: the pod's own controller"
    );
    assert_eq!(
        lookup_for(&pod, &Owners::new()),
        Some(Lookup {
            namespace: "ns".into(),
            kind: LookupKind::ReplicaSet,
            name: "web-7d4f".into(),
            uid: "rs-uid".into(),
        })
    );
    let owners = Owners::from([("rs-uid".to_string(), owner("Deployment", "web"))]);
    assert_eq!(
        resolve(&pod, &owners),
        Workload {
            namespace: "ns".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            service_account: "web-sa".into(),
        }
    );
    assert_eq!(lookup_for(&pod, &owners), None, "nothing left to look up");
}

#[test]
fn a_job_pod_belongs_to_its_cronjob_or_to_the_job() {
    let pod = pod(
        &[("batch/v1", "Job", "nightly-2891", "job-uid", true)],
        None,
    );
    let cron = Owners::from([("job-uid".to_string(), owner("CronJob", "nightly"))]);
    assert_eq!(kind_name(&pod, &cron), "CronJob/nightly");
    let bare_job = Owners::from([("job-uid".to_string(), None)]);
    assert_eq!(kind_name(&pod, &bare_job), "Job/nightly-2891");
    assert_eq!(lookup_for(&pod, &bare_job), None);
}

#[test]
fn statefulsets_daemonsets_and_other_controllers_are_the_workload_directly() {
    for (api_version, kind) in [
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("example.dev/v1", "Notebook"),
        // A custom resource called Job is not batch's: nothing to look up.
        ("example.dev/v1", "Job"),
    ] {
        let pod = pod(&[(api_version, kind, "x", "uid", true)], None);
        assert_eq!(kind_name(&pod, &Owners::new()), format!("{kind}/x"));
        assert_eq!(lookup_for(&pod, &Owners::new()), None, "{kind}");
    }
}

#[test]
fn a_replicaset_of_another_controller_is_reported_as_that_kind() {
    let pod = pod(&[("apps/v1", "ReplicaSet", "canary-5c", "rs", true)], None);
    let owners = Owners::from([("rs".to_string(), owner("Rollout", "canary"))]);
    assert_eq!(kind_name(&pod, &owners), "Rollout/canary");
}

#[test]
fn a_pod_without_a_controller_is_its_own_workload_with_the_default_account() {
    let bare = pod(&[], None);
    let workload = resolve(&bare, &Owners::new());
    assert_eq!(workload.id(), "ns/Pod/p-1");
    assert_eq!(workload.service_account, DEFAULT_SERVICE_ACCOUNT);
    // Owner references that do not control (e.g. a ConfigMap's garbage-collection owner) are
    // not controllers.
    let owned = pod(
        &[("apps/v1", "ReplicaSet", "rs", "rs-uid", false)],
        Some(""),
    );
    assert_eq!(kind_name(&owned, &Owners::new()), "Pod/p-1");
    assert_eq!(resolve(&owned, &Owners::new()).service_account, "default");
    assert_eq!(lookup_for(&owned, &Owners::new()), None);
}

#[test]
fn an_owner_missing_or_not_found_keeps_the_interim_answer() {
    let pod = pod(
        &[("apps/v1", "ReplicaSet", "web-7d4f", "rs-uid", true)],
        None,
    );
    // Another ReplicaSet's answer says nothing about this one.
    let others = Owners::from([("other".to_string(), owner("Deployment", "api"))]);
    assert_eq!(kind_name(&pod, &others), "ReplicaSet/web-7d4f");
    // Looked up, found without a controller (orphaned).
    let orphan = Owners::from([("rs-uid".to_string(), None)]);
    assert_eq!(kind_name(&pod, &orphan), "ReplicaSet/web-7d4f");
}

#[test]
fn the_owner_of_a_looked_up_object_is_its_controller_reference() {
    let meta: ObjectMeta = serde_json::from_value(json!({
        "name": "web-7d4f",
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "1"},
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "2",
             "controller": true},
        ],
    }))
    .unwrap();
    assert_eq!(owner_of(&meta), owner("Deployment", "web"));
    assert_eq!(owner_of(&ObjectMeta::default()), None);
}
