//! The floor of issue 19: a plain redb store of the same conversations, as
//! a reader would write it in an afternoon. A table of sessions and one of
//! messages keyed by (session, seq), values in postcard, no checksums of
//! its own, no compression, no journal (each append one durable redb
//! commit), no cache, no indexes. What sessionstore pays on top of it is
//! the price of its features.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sessionstore::{Role, Uuid};

use crate::common::Turn;

const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("messages");

#[derive(Serialize, Deserialize)]
struct SessionRow {
    user_id: Option<String>,
    created_at: String,
    updated_at: String,
    context: String,
    message_count: u64,
}

/// A message as the floor keeps it.
#[derive(Serialize, Deserialize)]
pub struct MinimalMessage {
    pub id: u64,
    pub role: Role,
    pub content: String,
    pub query_plan: Option<String>,
    pub candidate_set: Option<String>,
    pub timestamp: String,
}

pub struct MinimalRedb {
    db: Database,
}

impl MinimalRedb {
    pub fn open(path: &Path) -> MinimalRedb {
        let db = Database::create(path).expect("open the minimal store");
        let txn = db.begin_write().expect("begin");
        txn.open_table(SESSIONS).expect("sessions");
        txn.open_table(MESSAGES).expect("messages");
        txn.commit().expect("commit");
        MinimalRedb { db }
    }

    /// A new session holding `turns`, in one transaction.
    pub fn load_session(&self, turns: &[Turn]) -> Uuid {
        let id = Uuid::new_v4();
        let txn = self.db.begin_write().expect("begin");
        {
            let mut messages = txn.open_table(MESSAGES).expect("messages");
            for (seq, turn) in turns.iter().enumerate() {
                let bytes = postcard::to_stdvec(&message(seq as u64, turn)).expect("encode");
                messages
                    .insert((id.as_u128(), seq as u64), bytes.as_slice())
                    .expect("insert");
            }
            let row = session_row(turns.len() as u64);
            let mut sessions = txn.open_table(SESSIONS).expect("sessions");
            let bytes = postcard::to_stdvec(&row).expect("encode");
            sessions.insert(id.as_u128(), bytes.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        id
    }

    /// Appends one message durably: one redb commit, synced.
    pub fn add_message(&self, id: Uuid, turn: &Turn) {
        let txn = self.db.begin_write().expect("begin");
        {
            let mut sessions = txn.open_table(SESSIONS).expect("sessions");
            let mut row: SessionRow = {
                let value = sessions.get(id.as_u128()).expect("get").expect("session");
                postcard::from_bytes(value.value()).expect("decode")
            };
            let seq = row.message_count;
            row.message_count += 1;
            row.updated_at = crate::common::iso(chrono::Utc::now());
            let bytes = postcard::to_stdvec(&row).expect("encode");
            sessions.insert(id.as_u128(), bytes.as_slice()).expect("insert");
            let mut messages = txn.open_table(MESSAGES).expect("messages");
            let bytes = postcard::to_stdvec(&message(seq, turn)).expect("encode");
            messages
                .insert((id.as_u128(), seq), bytes.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }

    /// The session's messages, in seq order.
    pub fn get_session(&self, id: Uuid) -> Vec<MinimalMessage> {
        let txn = self.db.begin_read().expect("begin");
        let sessions = txn.open_table(SESSIONS).expect("sessions");
        let row: SessionRow = {
            let value = sessions.get(id.as_u128()).expect("get").expect("session");
            postcard::from_bytes(value.value()).expect("decode")
        };
        let messages = txn.open_table(MESSAGES).expect("messages");
        messages
            .range((id.as_u128(), 0)..(id.as_u128(), row.message_count))
            .expect("range")
            .map(|entry| postcard::from_bytes(entry.expect("entry").1.value()).expect("decode"))
            .collect()
    }
}

fn session_row(message_count: u64) -> SessionRow {
    let now = crate::common::iso(chrono::Utc::now());
    SessionRow {
        user_id: Some("reader".into()),
        created_at: now.clone(),
        updated_at: now,
        context: "{}".into(),
        message_count,
    }
}

fn message(seq: u64, turn: &Turn) -> MinimalMessage {
    MinimalMessage {
        id: seq + 1,
        role: turn.role,
        content: turn.content.clone(),
        query_plan: turn.query_plan.clone(),
        candidate_set: turn.candidate_set.clone(),
        timestamp: crate::common::iso(chrono::Utc::now()),
    }
}
