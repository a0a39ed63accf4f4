//! A search: the user's segments and pending messages tallied, then the
//! page of hits read.

use std::collections::HashMap;

use redb::ReadTransaction;
use uuid::Uuid;

use super::build::{self, is_dead};
use super::segment;
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
            tally_segments(txn, user, &terms, &mut tally)?;
            let pending = txn.open_table(tables::SEARCH_PENDING)?;
            let messages = txn.open_table(tables::MESSAGES)?;
            let mut decoder = Decoder::default();
            for entry in pending.range((user, 0, 0)..=(user, u128::MAX, u64::MAX))? {
                let (key, _) = entry?;
                let (_, session, seq) = key.value();
                let bytes = messages.get((session, seq))?.ok_or_else(|| {
                    Error::corrupt_record("search_pending", "an entry of a message that is not there")
                })?;
                let message: MessageRecord =
                    decoder.decode(RecordKey::Message(session, seq), bytes.value())?;
                tally.message(session, seq, &Terms::of(&message.content));
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
                    Error::corrupt_record("search_segments", "an entry of a message that is not there")
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

/// Adds to `tally` the statistics of `user`'s live indexed messages and
/// the postings of `terms` in the user's segments, dead copies left out.
fn tally_segments(txn: &ReadTransaction, user: &str, terms: &[String], tally: &mut Tally<'_>) -> Result<()> {
    let Some(number) = txn
        .open_table(tables::SEARCH_USER_NUMBERS)?
        .get(user)?
        .map(|g| g.value())
    else {
        return Ok(());
    };
    let stats = build::stats(&txn.open_table(tables::SEARCH_STATS)?, number)?;
    tally.count(stats.docs, stats.length);
    let tombstones = build::tombstones(&txn.open_table(tables::SEARCH_TOMBSTONES)?, number)?;
    let postings = txn.open_table(tables::SEARCH_TERMS)?;
    for entry in txn
        .open_table(tables::SEARCH_SEGMENTS)?
        .range((number, 0)..=(number, u64::MAX))?
    {
        let (key, header) = entry?;
        let segment_number = key.value().1;
        let mut docs = None;
        for (index, term) in terms.iter().enumerate() {
            let Some(value) = postings.get((number, segment_number, term.as_str()))? else {
                continue;
            };
            let docs = match &docs {
                Some(docs) => docs,
                None => docs.insert(segment::decode_header(number, segment_number, header.value())?),
            };
            segment::decode_postings(
                number,
                segment_number,
                term,
                value.value(),
                docs.len(),
                |(place, frequency)| {
                    let doc = &docs[place as usize];
                    if !is_dead(&tombstones, doc, segment_number) {
                        tally.posting(index, doc.session, doc.seq, frequency, doc.length);
                    }
                },
            )?;
        }
    }
    Ok(())
}
