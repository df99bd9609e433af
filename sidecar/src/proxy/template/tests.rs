use serde_json::json;

use super::*;

fn rendered(prepend: Option<&str>, append: Option<&str>) -> Rendered {
    Rendered {
        label: "t@00000000".into(),
        prepend: prepend.map(str::to_string),
        append: append.map(str::to_string),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn a_system_message_is_created_when_there_is_none() {
    let mut hub = object(json!({"messages": [{"role": "user", "content": "hi"}]}));
    edit_hub(&mut hub, &rendered(Some("Be brief."), Some("Sign off.")));
    assert_eq!(
        hub["messages"],
        json!([
            {"role": "system", "content": "Be brief.\n\nSign off."},
            {"role": "user", "content": "hi"}
        ])
    );
}

#[test]
fn the_first_system_or_developer_message_gets_the_text() {
    let mut hub = object(json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": "Own rules."},
        {"role": "system", "content": "Second."}
    ]}));
    edit_hub(&mut hub, &rendered(Some("Before."), None));
    assert_eq!(hub["messages"][1]["content"], "Before.\n\nOwn rules.");
    assert_eq!(hub["messages"][2]["content"], "Second.");
    assert_eq!(hub["messages"].as_array().unwrap().len(), 3);

    let mut parts = object(json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Own."}]}
    ]}));
    edit_hub(&mut parts, &rendered(Some("Before."), Some("After.")));
    assert_eq!(
        parts["messages"][0]["content"],
        json!([
            {"type": "text", "text": "Before."},
            {"type": "text", "text": "Own."},
            {"type": "text", "text": "After."}
        ])
    );
}

#[test]
fn the_clients_own_body_is_edited_in_its_format() {
    let mut anthropic = object(json!({"system": "Own.", "messages": []}));
    edit_original(&mut anthropic, &rendered(None, Some("After.")));
    assert_eq!(anthropic["system"], "Own.\n\nAfter.");

    let mut without = object(json!({"messages": []}));
    edit_original(&mut without, &rendered(Some("Before."), None));
    assert_eq!(without["system"], "Before.");

    let mut blocks = object(json!({"system": [{"type": "text", "text": "Own.",
        "cache_control": {"type": "ephemeral"}}], "messages": []}));
    edit_original(&mut blocks, &rendered(Some("Before."), None));
    assert_eq!(
        blocks["system"][0],
        json!({"type": "text", "text": "Before."})
    );
    assert_eq!(blocks["system"][1]["cache_control"]["type"], "ephemeral");

    let mut responses = object(json!({"input": "hi", "instructions": "Own."}));
    edit_original(&mut responses, &rendered(Some("Before."), None));
    assert_eq!(responses["instructions"], "Before.\n\nOwn.");
}

#[test]
fn the_vars_header_is_parsed_or_refused() {
    let mut headers = HeaderMap::new();
    assert!(vars(&headers).unwrap().is_empty());
    headers.insert(VARS_HEADER, r#"{"product": "Widgets"}"#.parse().unwrap());
    assert_eq!(vars(&headers).unwrap()["product"], "Widgets");
    headers.insert(VARS_HEADER, r#"{"product": 3}"#.parse().unwrap());
    let error = vars(&headers).unwrap_err();
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert!(
        error.message.contains("must be a string"),
        "{}",
        error.message
    );
}

#[test]
fn the_cache_key_sees_the_variables() {
    let hub = object(json!({"messages": []}));
    let none = Renderer::new(&BTreeMap::new()).0;
    assert!(matches!(
        cache_view(&hub, &BTreeMap::new(), &none, &[]),
        Cow::Borrowed(_)
    ));
    let vars = BTreeMap::from([("a".to_string(), "b".to_string())]);
    assert_eq!(
        cache_view(&hub, &vars, &none, &[])[VARS_HEADER],
        json!({"a": "b"})
    );
}
