//! BEIR's layout: `queries.jsonl` and `corpus.jsonl`, the distinct records
//! seen, each once.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Serialize;

use super::files::Outputs;
use super::{FormatWriter, RetrievalEvent};
use crate::error::Result;

pub const QUERIES: &str = "queries.jsonl";
pub const CORPUS: &str = "corpus.jsonl";

#[derive(Serialize)]
struct Query<'a> {
    _id: String,
    text: &'a str,
    metadata: QueryMetadata<'a>,
}

#[derive(Serialize)]
struct QueryMetadata<'a> {
    session_id: uuid::Uuid,
    user_id: Option<&'a str>,
    query_message_id: u64,
}

#[derive(Serialize)]
struct Record<'a> {
    _id: &'a str,
    title: &'a str,
    text: &'a str,
}

#[derive(Default)]
pub struct Writer {
    /// The records written, by a 128-bit hash of their id: memory grows
    /// with the distinct records (16 bytes each), not with the events.
    written: HashSet<u128>,
}

/// A 128-bit hash of a record id: two SipHash runs with different prefixes.
fn id_hash(id: &str) -> u128 {
    let half = |prefix: u8| {
        let mut hasher = DefaultHasher::new();
        prefix.hash(&mut hasher);
        id.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

impl FormatWriter for Writer {
    fn event(&mut self, files: &mut Outputs, event: &RetrievalEvent<'_>) -> Result<()> {
        files.json_line(
            0,
            &Query {
                _id: event.query_id(),
                text: &event.query.content,
                metadata: QueryMetadata {
                    session_id: event.session.session_id,
                    user_id: event.session.user_id.as_deref(),
                    query_message_id: event.query.id,
                },
            },
        )?;
        for candidate in &event.candidates {
            if self.written.insert(id_hash(&candidate.record_id)) {
                files.json_line(
                    1,
                    &Record {
                        _id: &candidate.record_id,
                        title: candidate.title.as_deref().unwrap_or(""),
                        text: &candidate.rationale_text,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "beir": {
                "queries": "_id: the query id; text: the user's message; metadata: session_id, user_id, query_message_id",
                "corpus": "each distinct record_id once, as first seen: title (the candidate's `title`, else empty) and text (its match_rationale, then each evidence item as `name: value; ...`, one a line)",
                "corpus_records": self.written.len()
            }
        })
    }
}
