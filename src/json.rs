//! JSON values kept as text: validated on the way in, never re-serialised on
//! the way through, and written in Python's `json.dumps` style when the store
//! has to produce JSON itself (a merged context).

use std::fmt;
use std::io;

use serde_json::ser::Formatter;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};

/// The exact text of a JSON object, as it arrived.
///
/// Serialises to JSON as the object itself (not as a string).
///
/// ```
/// use sessionstore::JsonText;
/// let plan = JsonText::object("query_plan", r#"{"filters": []}"#).unwrap();
/// assert_eq!(plan.as_str(), r#"{"filters": []}"#);
/// assert!(JsonText::object("query_plan", "[1, 2]").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JsonText(String);

impl JsonText {
    /// Checks that `text` is one JSON object and keeps it byte for byte.
    /// `what` names the value in the error.
    pub fn object(what: &'static str, text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        check_object(what, &text)?;
        Ok(JsonText(text))
    }

    /// Wraps text already known to be valid (read back from the store).
    pub(crate) fn trusted(text: String) -> Self {
        JsonText(text)
    }

    /// Renders `value` the way Python's `json.dumps` does (`", "` and `": "`
    /// separators, non-ASCII escaped).
    pub fn from_value(value: &Value) -> Self {
        JsonText(python_dumps(value))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Parses the text into a value.
    pub fn to_value(&self) -> Result<Value> {
        serde_json::from_str(&self.0).map_err(|e| Error::corrupt_record("json", e))
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get().to_owned();
        check_object("json", &text).map_err(serde::de::Error::custom)?;
        Ok(JsonText(text))
    }
}

fn check_object(what: &'static str, text: &str) -> Result<()> {
    if !text.trim_start().starts_with('{') {
        return Err(Error::invalid(what, "not a JSON object"));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| Error::invalid(what, format!("not valid JSON: {e}")))?;
    Ok(())
}

/// `{**old, **new}`: keys of `update` replace those of `old`, in Python's order
/// (old keys keep their place, new keys are appended), written as Python's
/// `json.dumps` writes it.
///
/// Values are re-rendered from their text, never through a number type:
/// numbers are kept digit for digit (Python keeps integers of any size, which
/// an `f64` or `u64` would not).
pub(crate) fn shallow_merge(old: Option<&JsonText>, update: &JsonText) -> Result<JsonText> {
    let mut merged = match old {
        Some(old) => object_entries(old.as_str())
            .map_err(|e| Error::corrupt_record("sessions", format!("stored context: {e}")))?,
        None => Vec::new(),
    };
    let update = object_entries(update.as_str())
        .map_err(|e| Error::invalid("context", format!("not a JSON object: {e}")))?;
    let mut places: std::collections::HashMap<String, usize> = merged
        .iter()
        .enumerate()
        .map(|(n, (key, _))| (key.clone(), n))
        .collect();
    for (key, value) in update {
        match places.get(&key) {
            Some(&place) => merged[place].1 = value,
            None => {
                places.insert(key.clone(), merged.len());
                merged.push((key, value));
            }
        }
    }
    let mut out = String::new();
    write_object(&mut out, &merged).map_err(|e| Error::invalid("context", e.to_string()))?;
    Ok(JsonText(out))
}

/// The entries of a JSON object, in order, each value as its own text; a
/// repeated key keeps its first place and its last value, as in Python.
fn object_entries(text: &str) -> serde_json::Result<Vec<(String, &RawValue)>> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries: Vec<(String, &'de RawValue)> = Vec::new();
            let mut places = std::collections::HashMap::new();
            while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                match places.get(&key) {
                    Some(&place) => entries[place] = (key, value),
                    None => {
                        places.insert(key.clone(), entries.len());
                        entries.push((key, value));
                    }
                }
            }
            Ok(entries)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let entries = serde::Deserializer::deserialize_map(&mut deserializer, Entries)?;
    deserializer.end()?;
    Ok(entries)
}

fn write_object(out: &mut String, entries: &[(String, &RawValue)]) -> serde_json::Result<()> {
    out.push('{');
    for (n, (key, value)) in entries.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str(&python_dumps(&Value::String(key.clone())));
        out.push_str(": ");
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

/// One value in `json.dumps` style: containers and strings re-rendered,
/// numbers, booleans and null as written.
fn write_value(out: &mut String, value: &RawValue) -> serde_json::Result<()> {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'{') => write_object(out, &object_entries(text)?)?,
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push('[');
            for (n, item) in items.into_iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Some(b'"') => out.push_str(&python_dumps(&Value::String(serde_json::from_str(text)?))),
        _ => out.push_str(text),
    }
    Ok(())
}

/// Python's `json.dumps(value)` with its default arguments.
fn python_dumps(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing a Value into a Vec cannot fail.
    if serde::Serialize::serialize(value, &mut serializer).is_err() {
        return value.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut units = [0u16; 2];
        for ch in fragment.chars() {
            if ch.is_ascii() {
                w.write_all(&[ch as u8])?;
            } else {
                for unit in ch.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_like_python() {
        let value: Value = serde_json::from_str(r#"{"a":[1,2,{"b":null}],"é":"😀 x"}"#).unwrap();
        assert_eq!(
            python_dumps(&value),
            r#"{"a": [1, 2, {"b": null}], "\u00e9": "\ud83d\ude00 x"}"#
        );
    }

    #[test]
    fn merge_keeps_old_order_and_replaces_values() {
        let old = JsonText::object("context", r#"{"a": 1, "b": 2}"#).unwrap();
        let new = JsonText::object("context", r#"{"b": 3, "c": 4}"#).unwrap();
        let merged = shallow_merge(Some(&old), &new).unwrap();
        assert_eq!(merged.as_str(), r#"{"a": 1, "b": 3, "c": 4}"#);
    }

    #[test]
    fn merge_keeps_numbers_digit_for_digit_and_renders_the_rest_like_python() {
        let old = JsonText::object("context", r#"{"big":123456789012345678901234567890,"f":1.0}"#).unwrap();
        let new = JsonText::object(
            "context",
            r#"{"n":{"é":[1,-0.5e-7,true,null,"x\u0000"]},"f":2.50,"big":-98765432109876543210,"f":3}"#,
        )
        .unwrap();
        let merged = shallow_merge(Some(&old), &new).unwrap();
        assert_eq!(
            merged.as_str(),
            r#"{"big": -98765432109876543210, "f": 3, "n": {"\u00e9": [1, -0.5e-7, true, null, "x\u0000"]}}"#
        );
    }

    #[test]
    fn refuses_non_objects_and_bad_json() {
        for text in ["[]", "1", "\"x\"", "{", "{\"a\": }", ""] {
            assert!(JsonText::object("context", text).is_err(), "{text}");
        }
    }
}
