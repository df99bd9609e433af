//! A stream event read as a borrowed JSON tree: strings (keys included) point into the event's
//! bytes unless they have escapes, objects are member lists in document order. The assembler
//! keeps little of each event (text to append, a field seen for the first time), so building a
//! `serde_json::Value` for all of it, with a map node and a `String` for every key and string,
//! cost more than the assembling itself; only what is kept becomes a `Value` ([`Json::into_value`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// One JSON value of an event.
#[derive(Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    /// A boolean or a number (neither allocates as a `Value`).
    Scalar(Value),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in document order; a repeated key's last value is the one that counts, as in a
    /// parsed `Value`.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses one event's data.
    pub fn parse(data: &'a [u8]) -> Result<Self, serde_json::Error> {
        crate::convert::parse_json(data)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Scalar(value) => value.as_u64(),
            _ => None,
        }
    }

    /// A member of an object (the last one of that name).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => find(members, key),
            _ => None,
        }
    }

    /// An owned copy of this as a `Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Scalar(value) => value.clone(),
            Json::Str(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// The owned `Value` this is.
    pub fn into_value(self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Scalar(value) => value,
            Json::Str(s) => Value::String(s.into_owned()),
            Json::Array(items) => Value::Array(items.into_iter().map(Json::into_value).collect()),
            Json::Object(members) => Value::Object(into_map(members)),
        }
    }
}

/// An owned `Value` as a tree the assembler reads: its strings are moved, not copied.
impl From<Value> for Json<'static> {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::String(s) => Json::Str(Cow::Owned(s)),
            Value::Array(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            Value::Object(map) => Json::Object(
                map.into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Json::from(v)))
                    .collect(),
            ),
            scalar => Json::Scalar(scalar),
        }
    }
}

/// Written as JSON, members in their order (a repeated key is written again).
impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Scalar(value) => value.serialize(serializer),
            Json::Str(s) => serializer.serialize_str(s),
            Json::Array(items) => serializer.collect_seq(items),
            Json::Object(members) => {
                serializer.collect_map(members.iter().map(|(k, v)| (k.as_ref(), v)))
            }
        }
    }
}

/// An object's members, read borrowed from an event.
pub type Members<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

/// A member's value (the last of that name, as in a parsed map).
pub fn find<'m, 'a>(members: &'m Members<'a>, key: &str) -> Option<&'m Json<'a>> {
    members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// An object's members as an owned map (a repeated key's last value stands).
pub fn into_map(members: Members<'_>) -> Map<String, Value> {
    members
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_value()))
        .collect()
}

/// A string borrowed from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::Bool(b)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::from(n)))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::from(n)))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Value::from(n)))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        // serde_json gives no size hint: room for a typical event's lists and objects at once
        // rather than growing them (reallocating was a tenth of the parse).
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((Text(key), value)) = map.next_entry::<Text<'de>, Json<'de>>()? {
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_escaped_and_values_round_trip() {
        let data = br#"{"a":"plain","b\n":"esc\"aped","n":[1,-2,2.5,true,null],"o":{"x":{}}}"#;
        let json = Json::parse(data).unwrap();
        let Json::Object(members) = &json else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        assert!(matches!(members[0].1, Json::Str(Cow::Borrowed("plain"))));
        assert!(matches!(members[1].0, Cow::Owned(_)));
        assert_eq!(json.get("b\n").and_then(Json::as_str), Some("esc\"aped"));
        let parsed: Value = serde_json::from_slice(data).unwrap();
        assert_eq!(json.into_value(), parsed);
    }

    #[test]
    fn a_repeated_key_counts_once_with_its_last_value() {
        let json = Json::parse(br#"{"k":1,"k":2}"#).unwrap();
        assert_eq!(json.get("k").and_then(Json::as_u64), Some(2));
        assert_eq!(json.into_value(), serde_json::json!({"k": 2}));
    }
}
