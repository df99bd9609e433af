//! Pod mode under faults, each one real: a config server that dies mid-answer or is replaced, a
//! leader that stops serving mid-poll, a sidecar process killed mid-stream and restarted without
//! its operator, a state dir that cannot be written and a state file that is corrupt. The
//! promise in every case: the last good table keeps serving (docs/reference/sidecar.md#failure-modes).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_sim::openai::MockProvider;

use support::*;

/// The stored table's version, if there is an intact file.
fn stored_version(files: &PodFiles) -> Option<String> {
    let text = std::fs::read_to_string(files.state.join("route-table.json")).ok()?;
    let stored: serde_json::Value = serde_json::from_str(&text).ok()?;
    stored["table"]["version"].as_str().map(str::to_string)
}

fn polls(operator: &FakeOperator) -> usize {
    operator.shared.polls.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_server_dying_mid_table_leaves_the_last_good_table_serving_until_it_is_back() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    // The head and half of the next table's body, then the connection drops; the sidecar backs
    // off and asks again, and gets the same broken answer.
    let second = table(&provider, "chat-2");
    let half = serde_json::to_string(&second).expect("serializes").len() / 2;
    let before = polls(&operator);
    operator.set(Answer::cut(&second, half));
    assert!(
        eventually(SOON, || polls(&operator) >= before + 2).await,
        "asked again after the cut"
    );
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    assert_eq!(stored_version(&files), Some(first.version.clone()));
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(chat(&sidecar, "chat-2").await.0, 404);
    assert_eq!(readyz(&sidecar).await.0, 200);

    // The server dies outright, then a new one comes up on the same address with the table.
    let addr = operator.addr;
    operator.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    let back = FakeOperator::start_at(&pki, "token", Answer::table(&second), addr).await;
    assert!(
        eventually(2 * SOON, || version(&sidecar)
            == Some(second.version.clone()))
        .await,
        "the new table once the server is back"
    );
    assert_eq!(chat(&sidecar, "chat-2").await.0, 200);
    assert_eq!(stored_version(&files), Some(second.version.clone()));

    sidecar.shutdown().await;
    back.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_a_mismatched_table_is_neither_served_nor_persisted() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let second = table(&provider, "chat-2");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    // A server answering garbage, or a table that is not what its version says.
    let mut mismatched = second.clone();
    mismatched.version = "0123456789abcdef".into();
    let bad = [
        (
            Answer::other(200, Some("\"garbage\""), "\u{0}\u{1}sk-pod-secret"),
            "not a route table",
        ),
        (
            Answer::other(
                200,
                Some("\"0123456789abcdef\""),
                &serde_json::to_string(&mismatched).expect("serializes"),
            ),
            "content hash",
        ),
    ];
    for (answer, why) in bad {
        operator.set(answer);
        assert!(
            eventually(SOON, || sidecar
                .runtime
                .last_error()
                .is_some_and(|e| e.contains(why)))
            .await,
            "{why}"
        );
        assert_eq!(version(&sidecar), Some(first.version.clone()));
        assert_eq!(stored_version(&files), Some(first.version.clone()));
        assert_eq!(chat(&sidecar, "chat").await.0, 200);
    }
    assert!(
        !sidecar
            .runtime
            .last_error()
            .unwrap_or_default()
            .contains("sk-pod-secret"),
        "no key in the reason"
    );

    assert_eq!(readyz(&sidecar).await.0, 200);

    sidecar.shutdown().await;
    operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_mid_poll_leaves_the_table_serving_and_the_sidecar_moves_to_the_new_one() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);
    assert!(eventually(SOON, || polls(&operator) >= 2).await, "waiting");

    // The waiting poll is answered 503, as a replica that lost its Lease does, and so is every
    // poll after it: the sidecar backs off instead of spinning, and serves on.
    let before = polls(&operator);
    operator.set(Answer::other(
        503,
        None,
        r#"{"error":"this operator replica is not serving (not the leader, or shutting down)"}"#,
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = polls(&operator) - before;
    assert!((1..=5).contains(&during), "{during} polls in 1.5 s");
    assert_eq!(version(&sidecar), Some(first.version.clone()));
    assert_eq!(chat(&sidecar, "chat").await.0, 200);
    assert_eq!(readyz(&sidecar).await.0, 200);

    // The new leader takes over the Service's address with a newer table.
    let addr = operator.addr;
    operator.stop();
    let second = table(&provider, "chat-2");
    let leader = FakeOperator::start_at(&pki, "token", Answer::table(&second), addr).await;
    assert!(
        eventually(2 * SOON, || version(&sidecar)
            == Some(second.version.clone()))
        .await,
        "resumed with the new leader"
    );
    assert_eq!(chat(&sidecar, "chat-2").await.0, 200);

    sidecar.shutdown().await;
    leader.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_or_an_unreviewable_one_keeps_the_table_serving() {
    let (provider, pki) = (MockProvider::start("sim").await.expect("mock"), pki());
    let first = table(&provider, "chat");
    let operator = FakeOperator::start(&pki, "token", Answer::table(&first)).await;
    let files = PodFiles::new(&pki.ca_pem, "token");
    let sidecar = start_sidecar(&operator.url(), &files).await;
    assert!(eventually(SOON, || version(&sidecar) == Some(first.version.clone())).await);

    // What the operator answers while the apiserver is down (503), and what a sidecar would see
    // if a review ever came back negative (401): neither drops or replaces the table.
    for (status, body) in [
        (503, r#"{"error":"cannot review the token now"}"#),
        (401, r#"{"error":"token not authenticated"}"#),
    ] {
        let before = polls(&operator);
        operator.set(Answer::other(status, None, body));
        assert!(
            eventually(SOON, || polls(&operator) >= before + 2).await,
            "{status}: asked again"
        );
        assert_eq!(version(&sidecar), Some(first.version.clone()), "{status}");
        assert_eq!(chat(&sidecar, "chat").await.0, 200, "{status}");
        assert_eq!(readyz(&sidecar).await.0, 200, "{status}");
        assert_eq!(stored_version(&files), Some(first.version.clone()));
    }
    let second = table(&provider, "chat-2");
    operator.set(Answer::table(&second));
    assert!(
        eventually(2 * SOON, || version(&sidecar)
            == Some(second.version.clone()))
        .await
    );

    sidecar.shutdown().await;
    operator.stop();
}
