//! Full-text search on redb.
//!
//! This first version reads every message of the user's sessions at each
//! search; the index replaces it.

use std::collections::HashMap;

use redb::ReadTransaction;
use uuid::Uuid;

use crate::engine::redb::encoding::{Decoder, MessageRecord, RecordKey};
use crate::engine::redb::store::RedbEngine;
use crate::engine::redb::tables;
use crate::error::{Error, Result};
use crate::rules::search::{self, Scored, SearchCursor, SearchHit, SearchPage, Tally, Terms};

impl RedbEngine {
    pub(crate) fn search(
        &self,
        user: &str,
        query: &str,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        let terms = search::check(query, limit)?;
        self.reading(|txn| {
            let mut tally = Tally::new(&terms);
            let messages = txn.open_table(tables::MESSAGES)?;
            let mut decoder = Decoder::default();
            for index in [tables::USER_ACTIVE, tables::USER_EXPIRED] {
                let table = txn.open_table(index)?;
                for entry in table.range((user, i64::MIN, 0)..=(user, i64::MAX, u128::MAX))? {
                    let session = entry?.0.value().2;
                    for entry in messages.range((session, 0)..=(session, u64::MAX))? {
                        let (key, value) = entry?;
                        let seq = key.value().1;
                        let record: MessageRecord =
                            decoder.decode(RecordKey::Message(session, seq), value.value())?;
                        tally.message(session, seq, &Terms::of(&record.content));
                    }
                }
            }
            self.hits(txn, tally.ranked(after.as_ref()), limit, &terms)
        })
    }

    /// The page of `ranked`: each candidate read, those of sessions not
    /// active (lazy expiry applied) left out.
    fn hits(
        &self,
        txn: &ReadTransaction,
        ranked: Vec<Scored>,
        limit: usize,
        terms: &[String],
    ) -> Result<SearchPage> {
        let sessions = txn.open_table(tables::SESSIONS)?;
        let messages = txn.open_table(tables::MESSAGES)?;
        let mut expiry = self.expiry(txn);
        let mut active: HashMap<u128, bool> = HashMap::new();
        search::page(ranked, limit, |candidate| {
            let live = match active.get(&candidate.session) {
                Some(&live) => live,
                None => {
                    let live = match tables::session_record(&sessions, candidate.session)? {
                        Some(mut record) => {
                            expiry.apply(&mut record)?;
                            record.expired_at.is_none()
                        }
                        None => false,
                    };
                    active.insert(candidate.session, live);
                    live
                }
            };
            if !live {
                return Ok(None);
            }
            let message =
                tables::message_record(&messages, candidate.session, candidate.seq)?.ok_or_else(|| {
                    Error::corrupt_record("messages", "a search found a message that is not there")
                })?;
            Ok(Some(SearchHit {
                session_id: Uuid::from_u128(candidate.session),
                message_id: message.id,
                seq: candidate.seq,
                score: candidate.score,
                snippet: search::snippet(&message.content, terms),
            }))
        })
    }
}
