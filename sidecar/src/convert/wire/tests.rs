use serde_json::json;

use super::anthropic::{Block, StreamEvent};
use super::openai::{ChatRequest, Content, Message, Part};
use super::*;

#[test]
fn a_field_of_the_wrong_type_reads_as_absent() {
    let request: ChatRequest = read(&json!({"max_tokens": "100", "temperature": 0.5, "user": 7}));
    assert_eq!(request.max_tokens, None);
    assert_eq!(request.temperature.and_then(|t| t.as_f64()), Some(0.5));
    assert_eq!(request.user, None);
}

#[test]
fn an_array_where_an_object_belongs_reads_as_an_empty_object() {
    let message: Message = read(&json!(["user", "hi"]));
    assert_eq!(message.role, None);
    let request: ChatRequest = read(&json!({"messages": [["user", "hi"], 5]}));
    let messages = request.messages.expect("messages is an array");
    assert_eq!(
        messages.len(),
        2,
        "odd elements are kept, as empty messages"
    );
    assert!(messages.iter().all(|m| m.role.is_none()));
}

#[test]
fn a_numeric_type_is_no_variant_index() {
    assert!(matches!(
        read_tagged(&json!({"type": 0})),
        StreamEvent::Other
    ));
    let content: Content = serde_json::from_value(json!([{"type": 0, "text": "hi"}])).unwrap();
    assert!(matches!(content, Content::Parts(ref parts) if matches!(parts[0], Part::Other)));
}

#[test]
fn unknown_block_types_read_as_other_and_known_ones_keep_their_fields() {
    let message: anthropic::Message = read(&json!({"content": [
        {"type": "thinking", "thinking": "..."},
        {"type": "tool_use", "id": "t1", "name": "f", "input": null},
    ]}));
    let content = message.content.expect("content is an array");
    assert!(matches!(content[0], Block::Other));
    match &content[1] {
        Block::ToolUse { id, input, .. } => {
            assert_eq!(id, "t1");
            assert_eq!(input, &Some(Value::Null), "a null input is present");
        }
        other => panic!("not a tool_use: {other:?}"),
    }
}
