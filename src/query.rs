//! A query turn as the old store's CLI recorded and showed it: the reply that
//! carries a candidate set, and the counts the history prints for a query
//! plan (its `filters`) and a candidate set (its `total_count`).
//!
//! The store keeps plans and candidate sets as opaque JSON objects; these are
//! the only fields it ever reads in them, and a missing or ill-typed field
//! reads as absent rather than as an error.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::Result;
use crate::json::JsonText;
use crate::model::{Message, NewMessage};

/// The fields of a candidate set the store reads.
#[derive(Deserialize)]
struct CandidateShape {
    total_count: Option<IgnoredOr<u64>>,
    candidates: Option<IgnoredOr<Vec<IgnoredAny>>>,
}

/// The field of a query plan the store reads.
#[derive(Deserialize)]
struct PlanShape {
    filters: Option<IgnoredOr<Vec<IgnoredAny>>>,
}

/// A field of the expected type, or anything else (read as absent).
#[derive(Deserialize)]
#[serde(untagged)]
enum IgnoredOr<T> {
    Expected(T),
    Other(IgnoredAny),
}

impl<T> IgnoredOr<T> {
    fn expected(self) -> Option<T> {
        match self {
            IgnoredOr::Expected(value) => Some(value),
            IgnoredOr::Other(_) => None,
        }
    }
}

fn candidate_shape(set: &JsonText) -> Option<CandidateShape> {
    serde_json::from_str(set.as_str()).ok()
}

/// How many results a candidate set stands for: its `total_count` (a
/// non-negative integer), else the length of its `candidates` array.
///
/// ```
/// use sessionstore::{query, JsonText};
/// let set = |text| JsonText::object("candidate_set", text).unwrap();
/// assert_eq!(query::result_count(&set(r#"{"total_count": 15, "candidates": [1]}"#)), Some(15));
/// assert_eq!(query::result_count(&set(r#"{"candidates": [1, 2]}"#)), Some(2));
/// assert_eq!(query::result_count(&set(r#"{"other": 1}"#)), None);
/// ```
pub fn result_count(candidate_set: &JsonText) -> Option<u64> {
    let shape = candidate_shape(candidate_set)?;
    shape
        .total_count
        .and_then(IgnoredOr::expected)
        .or_else(|| Some(shape.candidates?.expected()?.len() as u64))
}

/// The length of a query plan's `filters` array.
///
/// ```
/// use sessionstore::{query, JsonText};
/// let plan = JsonText::object("query_plan", r#"{"filters": [{"field": "publisher"}]}"#).unwrap();
/// assert_eq!(query::filter_count(&plan), Some(1));
/// ```
pub fn filter_count(query_plan: &JsonText) -> Option<u64> {
    let shape: PlanShape = serde_json::from_str(query_plan.as_str()).ok()?;
    Some(shape.filters?.expected()?.len() as u64)
}

/// The assistant's reply to a query: `Found N books matching your query`,
/// carrying the candidate set (N: [`result_count`], 0 when it has neither
/// field). Refuses text that is not a JSON object.
///
/// ```
/// let reply = sessionstore::query::results_reply(r#"{"total_count": 15, "candidates": []}"#).unwrap();
/// assert_eq!(reply.content, "Found 15 books matching your query");
/// assert!(reply.candidate_set.is_some());
/// ```
pub fn results_reply(candidate_set: impl Into<String>) -> Result<NewMessage> {
    let set = JsonText::object("candidate_set", candidate_set)?;
    let found = result_count(&set).unwrap_or(0);
    let mut reply = NewMessage::assistant(format!("Found {found} books matching your query"));
    reply.candidate_set = Some(set);
    Ok(reply)
}

impl Message {
    /// The length of this message's query plan's `filters`, when it has one.
    pub fn filter_count(&self) -> Option<u64> {
        self.query_plan.as_ref().and_then(filter_count)
    }

    /// How many results this message's candidate set stands for, when it
    /// has one: [`result_count`], what the old CLI's history printed as
    /// `Results: N candidates`.
    ///
    /// ```
    /// let reply = sessionstore::query::results_reply(r#"{"total_count": 15, "candidates": [1, 2]}"#)?;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb"))?;
    /// let id = store.create_session(None)?;
    /// let message = store.add_message(id, reply)?;
    /// let (_, stored) = store.get_message(message)?.expect("stored");
    /// assert_eq!(stored.result_count(), Some(15));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn result_count(&self) -> Option<u64> {
        self.candidate_set.as_ref().and_then(result_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> JsonText {
        JsonText::object("candidate_set", text).unwrap()
    }

    #[test]
    fn ill_typed_fields_read_as_absent() {
        assert_eq!(
            result_count(&set(r#"{"total_count": "15", "candidates": [1]}"#)),
            Some(1)
        );
        assert_eq!(result_count(&set(r#"{"total_count": -1}"#)), None);
        assert_eq!(result_count(&set(r#"{"candidates": {"a": 1}}"#)), None);
        let plan = JsonText::object("query_plan", r#"{"filters": null}"#).unwrap();
        assert_eq!(filter_count(&plan), None);
    }

    #[test]
    fn reply_refuses_what_is_not_an_object() {
        let error = results_reply("[1, 2]").unwrap_err();
        assert!(error.to_string().contains("candidate_set"), "{error}");
        assert_eq!(
            results_reply("{}").unwrap().content,
            "Found 0 books matching your query"
        );
    }
}
