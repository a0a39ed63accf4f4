//! Branching: a new session holding the first messages of another one
//! ("edit this message and regenerate", "branch in a new chat").
//!
//! A fork copies the messages it keeps, under new ids: each copy costs
//! what the original costs (its record, its `message_ids` entry and its
//! entry in `search_pending`, indexed for search by the idle writer).
//! Sharing them would need every read of a message to follow an
//! indirection, and `pop_last_message`, deletion and erasure to count the
//! sessions that share it; a copy keeps each session's messages its own.

use uuid::Uuid;

use crate::engine::redb::encoding::{SessionRecord, StoredTimestamp};
use crate::engine::redb::store::{writable_session, RedbEngine};
use crate::engine::redb::tables;
use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::Durability;
use crate::model::SessionInfo;
use crate::rules::Access;
use crate::rules::{self, context};
use crate::timestamp::Timestamp;

impl RedbEngine {
    pub(crate) fn fork_session(
        &self,
        id: Uuid,
        at_seq: u64,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Uuid> {
        let fork = Uuid::new_v4();
        let origin = JsonText::from_value(&serde_json::json!({
            "forked_from": {"session": id.to_string(), "at_seq": at_seq}
        }));
        let access = access.to_owned();
        let search = self.search_indexer();
        self.write(durability, move |tables| {
            let source = writable_session(tables, id, access.borrow())?;
            rules::fork::check_at_seq(id, at_seq, source.message_count)?;
            let (parent, key) = (id.as_u128(), fork.as_u128());
            if tables.session(key)?.is_some() {
                return Err(Error::invalid("session_id", format!("{fork} exists already")));
            }
            let first_id = tables.next_message_id()?;
            for seq in 0..at_seq {
                let mut message =
                    tables::message_record(tables.messages.table()?, parent, seq)?.ok_or_else(|| {
                        Error::corrupt_record("messages", "message count beyond the last message")
                    })?;
                message.id = first_id + seq;
                tables.put_message(key, seq, source.user_id.as_deref(), &message)?;
            }
            if source.user_id.is_some() && at_seq > 0 {
                search.queued(at_seq);
            }
            tables.set_next_message_id(first_id + at_seq)?;
            let metadata = context::merged(source.metadata.as_deref(), &origin)?;
            let now = StoredTimestamp::from(&Timestamp::now());
            let record = SessionRecord {
                user_id: source.user_id.clone(),
                created_at: now.clone(),
                updated_at: now,
                expired_at: None,
                context: source.context.clone(),
                metadata: Some(metadata.into_string()),
                message_count: at_seq,
                extra: Vec::new(),
                revision: 0,
            };
            tables.put_session(key, None, record)?;
            tables.add_fork(parent, key)
        })?;
        Ok(fork)
    }

    pub(crate) fn forks(&self, id: Uuid, access: Access<'_>) -> Result<Option<Vec<SessionInfo>>> {
        self.reading(|txn| {
            let sessions = txn.open_table(tables::SESSIONS)?;
            let parent = id.as_u128();
            if !tables::session_record(&sessions, parent)?
                .is_some_and(|r| access.allows(r.user_id.as_deref()))
            {
                return Ok(None);
            }
            let forks = txn.open_table(tables::FORKS)?;
            let mut expiry = self.expiry(txn);
            let mut infos = Vec::new();
            for entry in forks.range((parent, 0)..=(parent, u128::MAX))? {
                let key = entry?.0.value().1;
                let mut record = tables::session_record(&sessions, key)?
                    .ok_or_else(|| Error::corrupt_record("forks", "entry without a session"))?;
                expiry.apply(&mut record)?;
                infos.push(record.into_info(Uuid::from_u128(key)));
            }
            infos.sort_by_key(|info| (info.created_at.micros(), info.session_id));
            Ok(Some(infos))
        })
    }
}
