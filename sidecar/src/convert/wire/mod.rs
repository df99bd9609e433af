//! Typed views of the three wire formats, as far as the converters read them: [`openai`] (the
//! hub), [`anthropic`] and [`gemini`].
//!
//! Every field reads leniently, the way indexing a `serde_json::Value` did: a field holding the
//! wrong JSON type reads as absent (or as its default), a non-object where an object belongs
//! reads as an empty object, and a content block or part of an unknown type reads as `Other`.
//! Reading never fails, so no input the converters accepted is rejected; deciding what is an
//! error stays with the converters. Values copied to the output unread (ids, names, schemas) are
//! kept as `Value`, so that they pass through exactly as given. Nothing here passes unknown
//! fields on: the converters build every output field themselves, so none are kept.

pub mod anthropic;
pub mod gemini;
pub mod openai;

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// `value` as `T` when it is a JSON object, else `T::default()`.
///
/// NB: derived structs and internally tagged enums also read JSON arrays (positionally), which
/// `Value` indexing never did; hence the object check.
pub fn object<T: DeserializeOwned + Default>(value: Value) -> T {
    if value.is_object() {
        T::deserialize(value).unwrap_or_default()
    } else {
        T::default()
    }
}

/// `value` as the internally tagged enum `T` when it is an object with a string `type`, else
/// `T::default()` (the enum's `Other`).
///
/// NB: serde reads a numeric tag as a variant index (`"type": 0` would be the first variant),
/// where matching `type` as a string never did; hence the string check.
pub fn tagged<T: DeserializeOwned + Default>(value: Value) -> T {
    if value.get("type").is_some_and(Value::is_string) {
        object(value)
    } else {
        T::default()
    }
}

/// A borrowed JSON value as the internally tagged enum `T`, by the same rule as [`tagged`].
pub fn read_tagged<T: DeserializeOwned + Default>(value: &Value) -> T {
    if value.get("type").is_some_and(Value::is_string) {
        read(value)
    } else {
        T::default()
    }
}

/// A borrowed JSON value as `T`, by the same rule as [`object`].
pub fn read<T: DeserializeOwned + Default>(value: &Value) -> T {
    if value.is_object() {
        T::deserialize(value).unwrap_or_default()
    } else {
        T::default()
    }
}

/// A JSON object as `T`.
pub fn read_map<T: DeserializeOwned + Default>(map: &Map<String, Value>) -> T {
    T::deserialize(map).unwrap_or_default()
}

/// Field reader: the field as `T` when it holds one, else `None` (as `.get(k).and_then(as_…)`).
pub fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Ok(T::deserialize(Value::deserialize(d)?).ok())
}

/// Field reader for an object field: [`object`] of what it holds (as `v["k"]` then indexing on).
pub fn obj<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Ok(object(Value::deserialize(d)?))
}

/// Field reader for an optional object field: `Some` only when it holds an object (as
/// `.get(k).filter(|v| v.is_object())`).
pub fn if_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = Value::deserialize(d)?;
    Ok(value.is_object().then(|| object(value)))
}

/// Field reader for a field whose mere presence matters (as `.get(k).is_some()`, `null`
/// included): `Some` of [`object`] of what it holds.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Ok(Some(object(Value::deserialize(d)?)))
}

/// Field reader for a `Value` whose presence matters, `null` included (a plain `Option<Value>`
/// reads `null` as `None`).
pub fn present_value<'de, D>(d: D) -> Result<Option<Value>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Some(Value::deserialize(d)?))
}

/// Field reader for an array of objects: `None` unless the field is an array, and each element
/// [`object`] of what it holds.
pub fn objects<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(items.into_iter().map(object).collect()),
        _ => None,
    })
}

/// Field reader for an internally tagged enum: [`tagged`] of what it holds.
pub fn tag_obj<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Ok(tagged(Value::deserialize(d)?))
}

/// Field reader for an array of internally tagged enums: `None` unless the field is an array,
/// and each element [`tagged`] of what it holds.
pub fn tag_objects<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(items.into_iter().map(tagged).collect()),
        _ => None,
    })
}

/// `T` read from a JSON object only, for the strict borrowed readings of hot events (the
/// general ones read a `Value` first). A derived struct also reads an array of its fields in
/// order, which the general reading takes as no object at all: here an array is an error, and
/// the event is left to the general reading.
pub struct ObjectOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Members<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Members(PhantomData)).map(ObjectOnly)
    }
}

#[cfg(test)]
mod tests;
