//! Reading a session to a token budget on redb: one reverse scan of the
//! session's messages that stops where the budget does.

use std::sync::Arc;

use uuid::Uuid;

use crate::engine::redb::encoding::{decode, MessageRecord, RecordKey};
use crate::engine::redb::store::RedbEngine;
use crate::engine::redb::tables;
use crate::error::Result;
use crate::model::Message;
use crate::rules::budget::{self, TokenRule};
use crate::rules::Access;

impl RedbEngine {
    pub(crate) fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.reading(|txn| {
            let Some(record) = self.active_session(txn, id, access)? else {
                return Ok(None);
            };
            let session = id.as_u128();
            let table = txn.open_table(tables::MESSAGES)?;
            let mut newest_first = table.range((session, 0)..(session, record.message_count))?.rev();
            let next = || -> Result<Option<Message>> {
                let Some(entry) = newest_first.next() else {
                    return Ok(None);
                };
                let (key, value) = entry?;
                let seq = key.value().1;
                let record: MessageRecord = decode(RecordKey::Message(session, seq), value.value())?;
                Ok(Some(record.into_message(seq)))
            };
            let taken = budget::within(next, budget, rule)?;
            Ok(Some(taken.into_iter().map(Arc::new).collect()))
        })
    }
}

#[cfg(test)]
mod tests {
    use redb::Database;

    use super::*;
    use crate::model::NewMessage;
    use crate::SessionStore;

    /// Messages older than the budget reaches are not read: damage in them
    /// does not fail the read, as it fails a read of the whole session.
    #[test]
    fn the_scan_stops_where_the_budget_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = SessionStore::open(&path).unwrap();
        let id = store.create_session(None).unwrap();
        for n in 0..10 {
            store
                .add_message(id, NewMessage::user(format!("m{n}")).with_tokens(1))
                .unwrap();
        }
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut messages = txn.open_table(tables::MESSAGES).unwrap();
            for seq in 0..5 {
                messages
                    .insert((id.as_u128(), seq), b"damaged".as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        let store = SessionStore::open(&path).unwrap();
        assert!(store.get_session(id).is_err());
        // Seqs 9..=6 fit; seq 5 is read to find that it does not.
        let fit = store
            .messages_within(id, 4, TokenRule::default())
            .unwrap()
            .unwrap();
        assert_eq!(fit.iter().map(|m| m.seq).collect::<Vec<_>>(), [6, 7, 8, 9]);
        assert!(store.messages_within(id, 5, TokenRule::default()).is_err());
    }
}
