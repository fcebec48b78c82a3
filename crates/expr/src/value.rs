//! The data model of the expression language: [`Value`] (null, boolean, number, string, array, object), the
//! insertion-ordered, case-insensitive [`Object`], the [`Kind`] names GitHub uses, and conversions from and to
//! `serde_json`.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::json_text;
use crate::text::fold_key;
use crate::view::View;

/// A value of the expression language.
///
/// Numbers are always `f64`, as in GitHub's implementations; objects keep the order their keys were inserted in
/// and look keys up without regard to case.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

/// The kind of a value, spelled as GitHub spells it in messages and in its conformance data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// The name GitHub uses for this kind, for example `"Boolean"`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "Null",
            Kind::Boolean => "Boolean",
            Kind::Number => "Number",
            Kind::String => "String",
            Kind::Array => "Array",
            Kind::Object => "Object",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Value {
    /// The kind of this value.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    /// Whether the value counts as true in `if:` conditions and in `!`, `&&` and `||`: everything except
    /// `null`, `false`, `0`, `-0`, `NaN` and the empty string.
    pub fn is_truthy(&self) -> bool {
        View::of_value(self).is_truthy()
    }

    /// The value converted to a string the way GitHub converts it when it must: `null` becomes the empty string,
    /// numbers use GitHub's number formatting, arrays and objects become `Array` and `Object`.
    pub fn to_display_string(&self) -> String {
        View::of_value(self).to_display_string().into_owned()
    }

    /// The value converted to a number the way GitHub converts it when it must: `null` is 0, booleans are 1 and
    /// 0, strings are parsed like JavaScript's `Number(text)`, arrays and objects are `NaN`.
    pub fn to_number(&self) -> f64 {
        View::of_value(self).to_number()
    }

    /// Looks up a property of an object without regard to case; `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(object) => object.get(key),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The JSON text `toJSON` produces for this value: pretty-printed with two-space indentation, numbers written
    /// as JavaScript writes them, `NaN` and infinities written as `null`.
    pub fn to_json_pretty(&self) -> String {
        json_text::to_pretty_json_unbounded(View::of_value(self))
    }

    /// Parses JSON text into a value, keeping the order of object keys.
    pub fn from_json_text(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Number(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Number(f64::from(value))
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::String(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::String(value)
    }
}

impl From<Vec<Value>> for Value {
    fn from(value: Vec<Value>) -> Self {
        Value::Array(value)
    }
}

impl From<Object> for Value {
    fn from(value: Object) -> Self {
        Value::Object(value)
    }
}

/// An object whose keys keep their insertion order and are unique and looked up without regard to case, as in
/// GitHub's contexts (`github.EVENT_NAME` reads `github.event_name`).
///
/// Inserting a key that already exists under any spelling replaces the value in place and keeps the first
/// spelling and position, which is what `JSON.parse` does for repeated keys.
#[derive(Clone, Default)]
pub struct Object {
    entries: Vec<(String, Value)>,
    /// Maps each key folded to upper case to its position in `entries`, so lookups stay fast on large objects
    /// (a `fromJSON` of a big document must not turn into a quadratic scan).
    positions_by_folded_key: HashMap<String, usize>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `value` under `key`; returns the value it replaced, if a key equal to `key` without regard to case
    /// was already present.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let key = key.into();
        let folded_key = fold_key(&key).into_owned();
        if let Some(&position) = self.positions_by_folded_key.get(&folded_key) {
            let slot = self.entries.get_mut(position)?;
            return Some(std::mem::replace(&mut slot.1, value));
        }
        self.positions_by_folded_key.insert(folded_key, self.entries.len());
        self.entries.push((key, value));
        None
    }

    /// The value stored under `key`, compared without regard to case.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let position = self.position_of(key)?;
        self.entries.get(position).map(|(_, value)| value)
    }

    /// Whether a key equal to `key` without regard to case is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position_of(key).is_some()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys and values in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(key, value)| (key.as_str(), value))
    }

    /// The keys in insertion order, spelled as first inserted.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|(key, _)| key.as_str())
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.entries.iter().map(|(_, value)| value)
    }

    /// Consumes the object and yields its entries in insertion order.
    pub fn into_entries(self) -> impl ExactSizeIterator<Item = (String, Value)> {
        self.entries.into_iter()
    }

    /// The key and value at `position` in insertion order.
    pub(crate) fn entry_at(&self, position: usize) -> Option<(&str, &Value)> {
        self.entries.get(position).map(|(key, value)| (key.as_str(), value))
    }

    /// The position of `key` in insertion order, compared without regard to case.
    pub(crate) fn position_of(&self, key: &str) -> Option<usize> {
        self.positions_by_folded_key.get(fold_key(key).as_ref()).copied()
    }
}

impl PartialEq for Object {
    /// Two objects are equal when they hold the same keys (spelled the same) with equal values in the same order;
    /// this is Rust-side structural equality, not the expression language's `==`, which compares objects by
    /// identity.
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_map().entries(self.entries.iter().map(|(key, value)| (key, value))).finish()
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iterator: I) -> Self {
        let mut object = Object::new();
        for (key, value) in iterator {
            object.insert(key, value);
        }
        object
    }
}

impl From<serde_json::Value> for Value {
    fn from(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(boolean) => Value::Bool(boolean),
            serde_json::Value::Number(number) => Value::Number(number.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(text) => Value::String(text),
            serde_json::Value::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(map) => {
                Value::Object(map.into_iter().map(|(key, value)| (key, Value::from(value))).collect())
            }
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(value: &serde_json::Value) -> Self {
        Value::from(value.clone())
    }
}

impl From<&Value> for serde_json::Value {
    /// Converts to `serde_json`, writing integral numbers as integers (so `1` stays `1`, not `1.0`) and `NaN` and
    /// infinities as `null`, as JSON has no spelling for them.
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(boolean) => serde_json::Value::Bool(*boolean),
            Value::Number(number) => json_number(*number),
            Value::String(text) => serde_json::Value::String(text.clone()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(serde_json::Value::from).collect()),
            Value::Object(object) => serde_json::Value::Object(
                object.iter().map(|(key, value)| (key.to_owned(), serde_json::Value::from(value))).collect(),
            ),
        }
    }
}

impl From<Value> for serde_json::Value {
    fn from(value: Value) -> Self {
        serde_json::Value::from(&value)
    }
}

/// Integers up to 2^53 are exact in a double, so they can be written without a fraction; everything else keeps
/// its floating-point form.
const LARGEST_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

fn json_number(number: f64) -> serde_json::Value {
    if number.fract() == 0.0 && number.abs() <= LARGEST_EXACT_INTEGER {
        // The range check above makes the cast exact; `-0` becomes `0`, as in JSON.stringify.
        return serde_json::Value::Number(serde_json::Number::from(number as i64));
    }
    serde_json::Number::from_f64(number).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(boolean) => serializer.serialize_bool(*boolean),
            Value::Number(number) => json_number(*number).serialize(serializer),
            Value::String(text) => serializer.serialize_str(text),
            Value::Array(items) => {
                let mut sequence = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    sequence.serialize_element(item)?;
                }
                sequence.end()
            }
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for (key, value) in object.iter() {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    /// Deserializes any self-describing format (JSON in practice), keeping object keys in document order; this is
    /// why the crate does not need `serde_json`'s `preserve_order` feature.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        // Rounding to the nearest double is what JavaScript does with large integers too.
        Ok(Value::Number(value as f64))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value as f64))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Number(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(sequence.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = sequence.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Object::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_lookup_ignores_case_and_keeps_insertion_order() {
        let mut object = Object::new();
        object.insert("Zeta", Value::from(1));
        object.insert("alpha", Value::from(2));
        object.insert("ZETA", Value::from(3));
        assert_eq!(object.keys().collect::<Vec<_>>(), vec!["Zeta", "alpha"]);
        assert_eq!(object.get("zeta"), Some(&Value::from(3)));
        assert_eq!(object.get("ALPHA"), Some(&Value::from(2)));
        assert_eq!(object.get("beta"), None);
    }

    #[test]
    fn json_round_trip_keeps_key_order() {
        let value = Value::from_json_text(r#"{"b": 1, "a": [true, null, "x"], "1": 2.5}"#).expect("valid JSON");
        let keys: Vec<&str> = match &value {
            Value::Object(object) => object.keys().collect(),
            other => panic!("expected an object, got {other:?}"),
        };
        assert_eq!(keys, vec!["b", "a", "1"]);
        assert_eq!(serde_json::to_string(&value).expect("serializes"), r#"{"b":1,"a":[true,null,"x"],"1":2.5}"#);
    }

    #[test]
    fn serde_json_conversions_write_integers_and_null_for_non_finite_numbers() {
        let value = Value::Array(vec![Value::from(1.0), Value::from(-0.0), Value::from(f64::NAN), Value::from(0.5)]);
        assert_eq!(serde_json::Value::from(&value).to_string(), "[1,0,null,0.5]");
        let back = Value::from(serde_json::json!({"k": [1, "two"]}));
        assert_eq!(back.get("K"), Some(&Value::Array(vec![Value::from(1), Value::from("two")])));
    }
}
