use serde_json::json;

use super::*;

fn err(body: Value) -> String {
    parse(body.to_string().as_bytes()).unwrap_err()
}

#[test]
fn every_documented_input_shape_parses() {
    let parsed = |input: Value| {
        parse(json!({"model": "e", "input": input}).to_string().as_bytes())
            .unwrap()
            .input
    };
    assert_eq!(parsed(json!("one")), Input::Texts(vec!["one".into()]));
    assert_eq!(
        parsed(json!(["a", "b"])),
        Input::Texts(vec!["a".into(), "b".into()])
    );
    assert_eq!(parsed(json!([1, 2, 3])), Input::Tokens(vec![vec![1, 2, 3]]));
    assert_eq!(
        parsed(json!([[1, 2], [3]])),
        Input::Tokens(vec![vec![1, 2], vec![3]])
    );
}

#[test]
fn malformed_requests_name_the_field() {
    assert!(err(json!({"input": "x"})).contains("`model` is required"));
    assert!(err(json!({"model": "", "input": "x"})).contains("`model`"));
    assert!(err(json!({"model": "e"})).contains("`input` is required"));
    assert!(err(json!({"model": "e", "input": ""})).contains("must not be empty"));
    assert!(err(json!({"model": "e", "input": []})).contains("empty array"));
    assert!(err(json!({"model": "e", "input": 7})).contains("must be a string"));
    assert!(err(json!({"model": "e", "input": ["a", ""]})).contains("`input[1]`"));
    assert!(err(json!({"model": "e", "input": ["a", 1]})).contains("`input[0]` is neither"));
    assert!(err(json!({"model": "e", "input": [[1], []]})).contains("`input[1]`"));
    assert!(err(json!({"model": "e", "input": [-1]})).contains("`input[0]`"));
    let bad_dimensions = json!({"model": "e", "input": "x", "dimensions": 0});
    assert!(err(bad_dimensions).contains("`dimensions`"));
    let bad_format = json!({"model": "e", "input": "x", "encoding_format": "hex"});
    assert!(err(bad_format).contains("`encoding_format`"));
    assert!(err(json!({"model": "e", "input": "x", "user": 3})).contains("`user`"));
    assert!(parse(b"[]").unwrap_err().contains("JSON object"));
    assert!(parse(b"{").unwrap_err().contains("not valid JSON"));
}

#[test]
fn options_are_read() {
    let body = json!({"model": "e", "input": "x", "dimensions": 256, "encoding_format": "base64", "user": "u"});
    let parsed = parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.dimensions, Some(256));
    assert!(parsed.base64);
    assert_eq!(parsed.model, "e");
}

#[test]
fn the_gemini_request_has_one_entry_per_input_in_order() {
    let texts = vec!["first".to_string(), "second".to_string()];
    let request = gemini_request("text-embedding-004", &texts, Some(64));
    assert_eq!(
        request,
        json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "first"}]}, "outputDimensionality": 64},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "second"}]}, "outputDimensionality": 64},
        ]})
    );
    let plain = gemini_request("m", &texts[..1], None);
    assert!(plain["requests"][0].get("outputDimensionality").is_none());
}

#[test]
fn the_gemini_answer_becomes_an_openai_list_in_order() {
    let answer = json!({"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]});
    let openai = gemini_response(&answer, 2, "text-embedding-004", false, 7).unwrap();
    assert_eq!(
        openai,
        json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]},
            ],
            "model": "text-embedding-004",
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        })
    );
}

#[test]
fn base64_vectors_are_little_endian_f32() {
    let answer = json!({"embeddings": [{"values": [1.0, -2.0]}]});
    let openai = gemini_response(&answer, 1, "m", true, 1).unwrap();
    // 1.0f32 = 00 00 80 3f, -2.0f32 = 00 00 00 c0.
    assert_eq!(openai["data"][0]["embedding"], "AACAPwAAAMA=");
}

#[test]
fn an_answer_with_the_wrong_count_or_shape_is_refused() {
    let one = json!({"embeddings": [{"values": [1.0]}]});
    assert!(gemini_response(&one, 2, "m", false, 0).is_none());
    assert!(
        gemini_response(
            &json!({"embeddings": [{"values": ["x"]}]}),
            1,
            "m",
            false,
            0
        )
        .is_none()
    );
    assert!(gemini_response(&json!({"error": {}}), 1, "m", false, 0).is_none());
}
