//! The native format: `events.jsonl`, one event a line in the schema
//! [`SCHEMA`](super::SCHEMA).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::files::Outputs;
use super::{FormatWriter, RetrievalEvent};
use crate::error::Result;
use crate::timestamp::Timestamp;

pub const EVENTS: &str = "events.jsonl";

/// One line of `events.jsonl`.
#[derive(Serialize)]
struct Line<'a> {
    schema: &'static str,
    session_id: Uuid,
    user_id: Option<&'a str>,
    session_expired: bool,
    turn: u64,
    /// The reply's id, which is the query id of every format.
    message_id: u64,
    seq: u64,
    timestamp: &'a Timestamp,
    query_message_id: u64,
    query_seq: u64,
    query_timestamp: &'a Timestamp,
    query: &'a str,
    query_plan: Option<OneLine<'a>>,
    total_count: Option<u64>,
    candidates: Vec<OneLine<'a>>,
    /// The candidate set's other fields (`sql`, `plan_hash`, ...), as stored.
    candidate_set: FieldsObject<'a>,
    reply: &'a str,
}

pub struct Writer;

impl FormatWriter for Writer {
    fn event(&mut self, files: &mut Outputs, event: &RetrievalEvent<'_>) -> Result<()> {
        let plan = event
            .query
            .query_plan
            .as_ref()
            .and_then(|plan| serde_json::from_str::<&RawValue>(plan.as_str()).ok());
        files.json_line(
            0,
            &Line {
                schema: super::SCHEMA,
                session_id: event.session.session_id,
                user_id: event.session.user_id.as_deref(),
                session_expired: event.session.is_expired(),
                turn: event.turn,
                message_id: event.reply.id,
                seq: event.reply.seq,
                timestamp: &event.reply.timestamp,
                query_message_id: event.query.id,
                query_seq: event.query.seq,
                query_timestamp: &event.query.timestamp,
                query: &event.query.content,
                query_plan: plan.map(OneLine),
                total_count: event.total_count,
                candidates: event.candidates.iter().map(|c| OneLine(&c.stored)).collect(),
                candidate_set: FieldsObject(&event.other_fields),
                reply: &event.reply.content,
            },
        )
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "candidates": "each candidate's JSON object exactly as stored, in rank order"
        })
    }
}

/// A JSON value as stored, on one line: a line break can only stand
/// between tokens (inside a string it is escaped), where a space means the same.
struct OneLine<'a>(&'a RawValue);

impl Serialize for OneLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let text = self.0.get();
        if !text.contains(['\n', '\r']) {
            return self.0.serialize(serializer);
        }
        RawValue::from_string(text.replace(['\n', '\r'], " "))
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// Fields written as one JSON object, in their order.
struct FieldsObject<'a>(&'a [(String, Box<RawValue>)]);

impl Serialize for FieldsObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, &OneLine(value))?;
        }
        map.end()
    }
}
