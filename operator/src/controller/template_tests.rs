//! PromptTemplates in the controller: compiled into the tables of the routes that name them,
//! their status (`Accepted`, `Ready`, `usedBy`, `version`) decided by the step and written by
//! server-side apply through the apiserver (a `tower_test` mock speaking its wire format); a
//! route naming a missing template is `ResolvedRefs=False` and still served.

use http_body_util::BodyExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use switchyard_crds::v1alpha1::API_VERSION;

use super::*;

fn now() -> Time {
    Time(Timestamp::from_second(1_000).unwrap())
}

fn route(name: &str, model: &str, template: &str) -> ModelRoute {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": "ns", "generation": 1},
        "spec": {"model": model, "promptTemplate": {"name": template},
                 "targets": [{"pool": "pool", "provider": "a", "model": "m"}]},
    }))
    .unwrap()
}

fn template(name: &str, prepend: &str) -> PromptTemplate {
    serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "PromptTemplate",
        "metadata": {"name": name, "namespace": "ns", "generation": 4},
        "spec": {"variables": [{"name": "product", "default": "Acme"}],
                 "variants": [{"system": {"prepend": prepend}}]},
    }))
    .unwrap()
}

fn world() -> World {
    let mut world = super::tests::world();
    world.routes = vec![
        route("templated", "chat", "support"),
        route("also", "other", "support"),
        route("dangling", "third", "absent"),
    ];
    world.templates = vec![
        template("support", "You support {{ product }} customers."),
        template("broken", "{% if product %}unclosed"),
    ];
    world
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> (&'a str, &'a str) {
    let c = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"));
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn templates_reach_the_tables_and_get_their_status() {
    let out = step(&world(), &Reports::default(), now());

    let table = out.snapshot.table_for(out.snapshot.pod("u1").unwrap());
    assert_eq!(
        table.routes["chat"].targets[0].prompt_template.as_deref(),
        Some("support")
    );
    assert_eq!(
        table.templates.keys().collect::<Vec<_>>(),
        ["support"],
        "only the templates its routes name"
    );
    let dangling = &table.routes["third"];
    assert_eq!(dangling.targets.len(), 1, "still served");
    assert_eq!(dangling.targets[0].prompt_template, None);

    let status = |name: &str| {
        out.templates
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no status for {name}"))
    };
    let support = status("support");
    assert_eq!(
        condition(&support.conditions, "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(condition(&support.conditions, "Ready"), ("True", "Ready"));
    assert_eq!(support.used_by, ["also", "templated"]);
    assert_eq!(support.observed_generation, Some(4));
    let label = switchyard_crds::template::label("support", &world().templates[0].spec);
    assert_eq!(support.version.as_deref(), Some(label.as_str()));

    let broken = status("broken");
    assert_eq!(
        condition(&broken.conditions, "Accepted"),
        ("False", "InvalidTemplate")
    );
    assert_eq!(
        condition(&broken.conditions, "Ready"),
        ("False", "NotReady")
    );
    assert!(broken.used_by.is_empty());
    let accepted = broken.conditions.iter().find(|c| c.type_ == "Accepted");
    let message = &accepted.unwrap().message;
    assert!(
        message.contains("spec.variants[0].system.prepend"),
        "{message}"
    );
    assert!(message.contains("syntax error"), "{message}");

    let route = out
        .routes
        .iter()
        .find(|w| w.key.name == "dangling")
        .expect("a status for the dangling route");
    assert_eq!(
        condition(&route.status.conditions, "ResolvedRefs"),
        ("False", "TemplateNotFound")
    );
    let templated = out.routes.iter().find(|w| w.key.name == "templated");
    let templated = &templated.unwrap().status.conditions;
    assert_eq!(condition(templated, "ResolvedRefs").0, "True");

    // Written back, the same status is not written again.
    let mut again = world();
    for t in &mut again.templates {
        t.status = Some(status(&t.metadata.name.clone().unwrap()));
    }
    let later = Time(Timestamp::from_second(2_000).unwrap());
    assert!(
        step(&again, &Reports::default(), later)
            .templates
            .is_empty()
    );
}

#[tokio::test]
async fn template_status_is_written_by_forced_server_side_apply() {
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("one request");
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut object = serde_json::to_value(template("support", "x")).unwrap();
        object["status"] = body["status"].clone();
        send.send_response(
            http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(
                    serde_json::to_vec(&object).unwrap(),
                ))
                .unwrap(),
        );
        (parts, body)
    });
    let out = step(&world(), &Reports::default(), now());
    let (key, status) = out
        .templates
        .iter()
        .find(|(k, _)| k.name == "support")
        .unwrap()
        .clone();
    apply_template_status(&client, &key, &status).await.unwrap();

    let (parts, body) = server.await.unwrap();
    assert_eq!(parts.method, http::Method::PATCH);
    assert_eq!(
        parts.uri.path(),
        "/apis/switchyard.dev/v1alpha1/namespaces/ns/prompttemplates/support/status"
    );
    let query = parts.uri.query().unwrap();
    assert!(query.contains("force=true"), "{query}");
    assert!(query.contains("fieldManager="), "{query}");
    assert_eq!(body["kind"], "PromptTemplate");
    assert_eq!(
        body["status"]["usedBy"],
        serde_json::json!(["also", "templated"])
    );
    assert_eq!(body["status"]["conditions"][1]["type"], "Ready");
    assert_eq!(body["status"]["version"], status.version.unwrap());
}
