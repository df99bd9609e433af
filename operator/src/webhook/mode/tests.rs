//! Version parsing and the auto-mode rule, plus detection against a mock apiserver.

use super::*;

#[test]
fn versions_parse_with_vendor_suffixes() {
    assert_eq!(parse_minor("v1.29.3"), Some(29));
    assert_eq!(parse_minor("v1.30.0-eks-abc"), Some(30));
    assert_eq!(parse_minor("v1.28.15+k3s1"), Some(28));
    assert_eq!(parse_minor("1.31"), Some(31));
    assert_eq!(parse_minor("v1.29+"), Some(29));
    assert_eq!(parse_minor("v2.0.0"), None);
    assert_eq!(parse_minor("v1."), None);
    assert_eq!(parse_minor("garbage"), None);
    assert_eq!(parse_minor(""), None);
}

#[test]
fn native_needs_the_apiserver_and_every_kubelet_at_1_29() {
    let cases: &[(&str, &[&str], Mode)] = &[
        ("v1.29.3", &["v1.29.3", "v1.30.0-eks-abc"], Mode::Native),
        ("v1.31.0", &["v1.31.0"], Mode::Native),
        ("v1.28.15+k3s1", &["v1.29.0"], Mode::Container),
        ("v1.30.1", &["v1.30.1", "v1.28.15+k3s1"], Mode::Container),
        ("v1.30.1", &["v1.30.1", ""], Mode::Container),
        ("v1.30.1", &["v1.30.1", "unknown"], Mode::Container),
        ("not-a-version", &["v1.30.1"], Mode::Container),
        ("v1.30.1", &[], Mode::Container),
    ];
    for (apiserver, kubelets, want) in cases {
        assert_eq!(
            resolve_mode(apiserver, kubelets),
            *want,
            "{apiserver} {kubelets:?}"
        );
    }
}

#[test]
fn annotations_name_modes() {
    assert_eq!(Mode::from_annotation("native"), Some(Mode::Native));
    assert_eq!(Mode::from_annotation(" container "), Some(Mode::Container));
    assert_eq!(Mode::from_annotation("Native"), None);
    assert_eq!(Mode::from_annotation("auto"), None);
}

/// A mock apiserver answering `/version` with `apiserver` and the node list with `kubelets`,
/// checking that nodes come from the watch cache. Without kubelets, listing nodes fails the
/// test.
fn mock_cluster(apiserver: &'static str, kubelets: &'static [&'static str]) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let body = match request.uri().path() {
                "/version" => serde_json::json!({
                    "major": "1", "minor": "30", "gitVersion": apiserver,
                    "gitCommit": "abc", "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.22",
                    "compiler": "gc", "platform": "linux/amd64",
                }),
                "/api/v1/nodes" => {
                    assert!(!kubelets.is_empty(), "nodes listed needlessly");
                    let query = request.uri().query().unwrap_or_default();
                    assert!(query.contains("resourceVersion=0"), "{query}");
                    let items: Vec<_> = kubelets
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            serde_json::json!({
                                "metadata": {"name": format!("node-{i}")},
                                "status": {"nodeInfo": {
                                    "kubeletVersion": v, "kubeProxyVersion": v,
                                    "architecture": "amd64", "bootID": "b",
                                    "containerRuntimeVersion": "containerd://1.7",
                                    "kernelVersion": "6.1", "machineID": "m",
                                    "operatingSystem": "linux", "osImage": "Linux",
                                    "systemUUID": "s",
                                }},
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "apiVersion": "v1", "kind": "NodeList",
                        "metadata": {"resourceVersion": "1"}, "items": items,
                    })
                }
                other => panic!("unexpected request for {other}"),
            };
            let response = http::Response::builder()
                .status(200)
                .body(kube::client::Body::from(body.to_string().into_bytes()))
                .unwrap();
            send.send_response(response);
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test]
async fn detection_reads_the_version_and_the_nodes() {
    let native = mock_cluster("v1.30.2-eks-1", &["v1.30.2-eks-1", "v1.29.0"]);
    assert_eq!(detect(&native).await.unwrap(), Mode::Native);
    let old_node = mock_cluster("v1.30.2", &["v1.30.2", "v1.28.15+k3s1"]);
    assert_eq!(detect(&old_node).await.unwrap(), Mode::Container);
    // An old apiserver is enough to answer: no node list.
    let old = mock_cluster("v1.28.3", &[]);
    assert_eq!(detect(&old).await.unwrap(), Mode::Container);
}

#[tokio::test]
async fn fixed_flags_need_no_task() {
    let (rx, task) = source(SidecarMode::Native, None, AUTO_REFRESH);
    assert_eq!(*rx.borrow(), Mode::Native);
    assert!(task.is_none());
    let (rx, task) = source(SidecarMode::Auto, None, AUTO_REFRESH);
    assert_eq!(*rx.borrow(), Mode::Container);
    assert!(task.is_none());
}
