use http_body_util::BodyExt as _;
use serde_json::json;

use super::*;
use crate::metrics::Metrics;

fn pod(uid: &str, owner: (&str, &str, &str, &str)) -> Pod {
    let (api_version, kind, name, owner_uid) = owner;
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{uid}"), "namespace": "ns", "uid": uid,
                     "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": name,
                                          "uid": owner_uid, "controller": true}]},
    }))
    .unwrap()
}

fn partial(uid: &str, controller: Option<(&str, &str, &str)>) -> serde_json::Value {
    let owners: Vec<_> = controller
        .into_iter()
        .map(|(api_version, kind, name)| {
            json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": "top",
                   "controller": true})
        })
        .collect();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": "x", "namespace": "ns", "uid": uid, "ownerReferences": owners}})
}

/// A mock apiserver answering each GET by its path from `answers` (status, body); records the
/// paths and `Accept` headers it was asked.
fn apiserver(
    answers: Vec<(&'static str, u16, serde_json::Value)>,
) -> (Client, tokio::task::JoinHandle<Vec<(String, String)>>) {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let server = tokio::spawn(async move {
        let mut asked = Vec::new();
        for _ in 0..answers.len() {
            let (request, send) = handle.next_request().await.expect("a request");
            let path = request.uri().path().to_string();
            let accept = request
                .headers()
                .get(http::header::ACCEPT)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let _ = request.into_body().collect().await;
            let (_, status, body) = answers
                .iter()
                .find(|(p, _, _)| *p == path)
                .unwrap_or_else(|| panic!("unexpected request for {path}"));
            send.send_response(
                http::Response::builder()
                    .status(*status)
                    .body(kube::client::Body::from(serde_json::to_vec(body).unwrap()))
                    .unwrap(),
            );
            asked.push((path, accept));
        }
        asked
    });
    (Client::new(service, "default"), server)
}

#[tokio::test]
async fn a_replicaset_is_resolved_to_its_deployment_and_a_job_to_its_cronjob() {
    let (client, server) = apiserver(vec![
        (
            "/apis/apps/v1/namespaces/ns/replicasets/web-7d4f",
            200,
            partial("rs-uid", Some(("apps/v1", "Deployment", "web"))),
        ),
        (
            "/apis/batch/v1/namespaces/ns/jobs/nightly-1",
            200,
            partial("job-uid", Some(("batch/v1", "CronJob", "nightly"))),
        ),
    ]);
    let pods = vec![
        pod("a", ("apps/v1", "ReplicaSet", "web-7d4f", "rs-uid")),
        // A second pod of the same ReplicaSet: one lookup for both.
        pod("b", ("apps/v1", "ReplicaSet", "web-7d4f", "rs-uid")),
        pod("c", ("batch/v1", "Job", "nightly-1", "job-uid")),
        // Needs no lookup.
        pod("d", ("apps/v1", "StatefulSet", "db", "sts-uid")),
    ];
    let cache = Arc::new(OwnerCache::default());
    let changed = Arc::new(Notify::new());
    let metrics = Metrics::new().unwrap().controller;
    cache.refresh(&client, &pods, &changed, &metrics);
    // Asked again before the answers: nothing is looked up twice.
    cache.refresh(&client, &pods, &changed, &metrics);
    tokio::time::timeout(Duration::from_secs(5), changed.notified())
        .await
        .expect("notified once the lookups are in");

    let asked = server.await.unwrap();
    assert_eq!(asked.len(), 2, "{asked:?}");
    for (path, accept) in &asked {
        assert!(
            accept.contains("as=PartialObjectMetadata"),
            "{path}: metadata only, got {accept:?}"
        );
    }
    let owners = cache.known();
    let resolved: Vec<String> = pods
        .iter()
        .map(|p| workload::resolve(p, &owners).kind_name())
        .collect();
    assert_eq!(
        resolved,
        [
            "Deployment/web",
            "Deployment/web",
            "CronJob/nightly",
            "StatefulSet/db"
        ]
    );

    // Forgotten once no pod refers to it.
    cache.refresh(&client, &pods[3..], &changed, &metrics);
    assert!(cache.known().is_empty());
}

#[tokio::test]
async fn a_vanished_or_replaced_owner_keeps_the_interim_answer_and_is_not_asked_again_soon() {
    let (client, server) = apiserver(vec![
        (
            "/apis/apps/v1/namespaces/ns/replicasets/gone",
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "not found"}),
        ),
        (
            "/apis/apps/v1/namespaces/ns/replicasets/renamed",
            200,
            partial("a-successor", Some(("apps/v1", "Deployment", "other"))),
        ),
    ]);
    let pods = vec![
        pod("a", ("apps/v1", "ReplicaSet", "gone", "gone-uid")),
        pod("b", ("apps/v1", "ReplicaSet", "renamed", "old-uid")),
    ];
    let cache = Arc::new(OwnerCache::default());
    let changed = Arc::new(Notify::new());
    let metrics = Metrics::new().unwrap().controller;
    cache.refresh(&client, &pods, &changed, &metrics);
    assert_eq!(server.await.unwrap().len(), 2);
    // Wait for the lookup task to record its answers.
    for _ in 0..100 {
        if cache.lock().in_flight.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cache.lock().in_flight.is_empty());
    assert!(cache.known().is_empty(), "nothing learnt");
    let resolved: Vec<String> = pods
        .iter()
        .map(|p| workload::resolve(p, &cache.known()).kind_name())
        .collect();
    assert_eq!(resolved, ["ReplicaSet/gone", "ReplicaSet/renamed"]);
    // Within the retry delay, refreshing starts no lookup (it would show as in flight).
    cache.refresh(&client, &pods, &changed, &metrics);
    assert!(cache.lock().in_flight.is_empty(), "retried only later");
}
