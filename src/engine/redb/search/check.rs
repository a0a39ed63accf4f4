//! The search index checked against the messages (`SessionStore::check`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use redb::{ReadTransaction, ReadableTableMetadata};

use super::build::{self, is_dead};
use super::segment::{self, Doc};
use crate::engine::redb::encoding::{decode, MessageRecord, RecordKey, SessionRecord};
use crate::engine::redb::tables;
use crate::error::Result;
use crate::rules::search::Terms;

/// What a message holds, as far as the index is concerned: its length,
/// how many distinct terms, and a sum of a hash of each (term, frequency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Print {
    length: u32,
    distinct: u32,
    sum: u64,
}

impl Print {
    fn add(&mut self, term: &str, frequency: u32) {
        let mut hasher = DefaultHasher::new();
        (term, frequency).hash(&mut hasher);
        self.sum = self.sum.wrapping_add(hasher.finish());
        self.distinct += 1;
    }

    fn of(terms: &Terms) -> Self {
        let mut print = Print {
            length: terms.length,
            ..Print::default()
        };
        for (term, &frequency) in &terms.counts {
            print.add(term, frequency);
        }
        print
    }
}

/// What is wrong with the search index of `txn`'s state, one sentence
/// each: every message of a user's session must be either pending or
/// live in exactly one of the user's segments (with its length and term
/// frequencies), never both; the user's statistics must be those of the
/// live messages; segments must decode; no entry may describe anything
/// else (a missing message, another user's, an unknown user number).
pub(crate) fn check(txn: &ReadTransaction) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut owned: BTreeMap<String, Vec<u128>> = BTreeMap::new();
    for entry in txn.open_table(tables::SESSIONS)?.range::<u128>(..)? {
        let (key, value) = entry?;
        let id = key.value();
        // Damaged records are reported by the model's check.
        if let Ok(SessionRecord {
            user_id: Some(user), ..
        }) = decode::<SessionRecord>(RecordKey::Session(id), value.value())
        {
            owned.entry(user).or_default().push(id);
        }
    }
    let mut numbers: BTreeMap<String, u64> = BTreeMap::new();
    for entry in txn.open_table(tables::SEARCH_USER_NUMBERS)?.range::<&str>(..)? {
        let (key, value) = entry?;
        numbers.insert(key.value().to_owned(), value.value());
    }
    let known: BTreeSet<u64> = numbers.values().copied().collect();
    if known.len() != numbers.len() {
        problems.push("search_user_numbers gives one number to two users".to_owned());
    }
    let mut expected_pending = 0u64;
    let users: BTreeSet<&String> = owned.keys().chain(numbers.keys()).collect();
    for user in users {
        let sessions = owned.get(user).map_or(&[][..], Vec::as_slice);
        let (expected, pending) = expected_of(txn, user, sessions)?;
        expected_pending += pending.len() as u64;
        let found = match numbers.get(user) {
            Some(&number) => live_of(txn, number, &mut problems)?,
            None => HashMap::new(),
        };
        let wrong = expected
            .iter()
            .filter(|(place, print)| found.get(*place) != Some(*print))
            .count();
        let both = found.keys().filter(|place| pending.contains(*place)).count();
        let other = found
            .keys()
            .filter(|place| !expected.contains_key(*place) && !pending.contains(*place))
            .count();
        if wrong + both + other > 0 {
            problems.push(format!(
                "search_segments differs from the messages of a user: {wrong} missing or wrong, {both} of \
                 pending messages, {other} of no message of the user"
            ));
        }
        let docs = expected.len() as u64;
        let length: u64 = expected.values().map(|print| u64::from(print.length)).sum();
        let stats = match numbers.get(user) {
            Some(&number) => build::stats(&txn.open_table(tables::SEARCH_STATS)?, number)?,
            None => build::Stats::default(),
        };
        if (stats.docs, stats.length) != (docs, length) {
            problems.push(format!(
                "search_stats differs from the indexed messages of a user: {} messages of {} terms \
                 counted, {docs} of {length} indexed",
                stats.docs, stats.length
            ));
        }
    }
    let held = txn.open_table(tables::SEARCH_PENDING)?.len()?;
    if held != expected_pending {
        problems.push(format!(
            "search_pending holds {held} entries, of which {expected_pending} are messages of their user"
        ));
    }
    problems.extend(unknown_numbers(txn, &known)?);
    Ok(problems)
}

/// The messages of `user`'s `sessions`: what each indexed one holds (those
/// holding a term), and the places of the pending ones.
#[allow(clippy::type_complexity)]
fn expected_of(
    txn: &ReadTransaction,
    user: &str,
    sessions: &[u128],
) -> Result<(HashMap<(u128, u64), Print>, BTreeSet<(u128, u64)>)> {
    let messages = txn.open_table(tables::MESSAGES)?;
    let pending_table = txn.open_table(tables::SEARCH_PENDING)?;
    let (mut expected, mut pending) = (HashMap::new(), BTreeSet::new());
    for &id in sessions {
        for entry in messages.range((id, 0)..=(id, u64::MAX))? {
            let (key, value) = entry?;
            let seq = key.value().1;
            if pending_table.get((user, id, seq))?.is_some() {
                pending.insert((id, seq));
                continue;
            }
            let Ok(message) = decode::<MessageRecord>(RecordKey::Message(id, seq), value.value()) else {
                continue;
            };
            let terms = Terms::of(&message.content);
            if terms.length > 0 {
                expected.insert((id, seq), Print::of(&terms));
            }
        }
    }
    Ok((expected, pending))
}

/// What each live message of the segments of user `number` holds; damaged
/// segments, postings of no segment and messages live twice go to
/// `problems`.
fn live_of(
    txn: &ReadTransaction,
    number: u64,
    problems: &mut Vec<String>,
) -> Result<HashMap<(u128, u64), Print>> {
    let tombstones = build::tombstones(&txn.open_table(tables::SEARCH_TOMBSTONES)?, number)?;
    let mut headers: BTreeMap<u64, Vec<Doc>> = BTreeMap::new();
    for entry in txn
        .open_table(tables::SEARCH_SEGMENTS)?
        .range((number, 0)..=(number, u64::MAX))?
    {
        let (key, value) = entry?;
        let segment_number = key.value().1;
        match segment::decode_header(number, segment_number, value.value()) {
            Ok(docs) => drop(headers.insert(segment_number, docs)),
            Err(error) => problems.push(format!("search_segments: {error}")),
        }
    }
    let mut live: HashMap<(u128, u64), Print> = HashMap::new();
    let mut twice = 0u64;
    for (&segment_number, docs) in &headers {
        for doc in docs
            .iter()
            .filter(|doc| !is_dead(&tombstones, doc, segment_number))
        {
            let print = Print {
                length: doc.length,
                ..Print::default()
            };
            if live.insert((doc.session, doc.seq), print).is_some() {
                twice += 1;
            }
        }
    }
    if twice > 0 {
        problems.push(format!(
            "search_segments holds {twice} messages live in two segments of a user"
        ));
    }
    let mut orphans = 0u64;
    for entry in txn.open_table(tables::SEARCH_TERMS)?.range((number, 0, "")..)? {
        let (key, value) = entry?;
        let (owner, segment_number, term) = key.value();
        if owner != number {
            break;
        }
        let Some(docs) = headers.get(&segment_number) else {
            orphans += 1;
            continue;
        };
        let decoded = segment::decode_postings(
            number,
            segment_number,
            term,
            value.value(),
            docs.len(),
            |(place, frequency)| {
                let doc = &docs[place as usize];
                if !is_dead(&tombstones, doc, segment_number) {
                    if let Some(print) = live.get_mut(&(doc.session, doc.seq)) {
                        print.add(term, frequency);
                    }
                }
            },
        );
        if let Err(error) = decoded {
            problems.push(format!("search_terms: {error}"));
        }
    }
    if orphans > 0 {
        problems.push(format!(
            "search_terms holds {orphans} postings of segments that are not there"
        ));
    }
    Ok(live)
}

/// Rows of `search_stats`, `search_segments`, `search_terms` and
/// `search_tombstones` of user numbers `search_user_numbers` does not give.
fn unknown_numbers(txn: &ReadTransaction, known: &BTreeSet<u64>) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut report = |table: &str, unknown: usize| {
        if unknown > 0 {
            problems.push(format!("{table} holds {unknown} entries of no user"));
        }
    };
    let stats = txn.open_table(tables::SEARCH_STATS)?;
    let mut unknown = 0;
    for entry in stats.range::<u64>(..)? {
        unknown += usize::from(!known.contains(&entry?.0.value()));
    }
    report("search_stats", unknown);
    let segments = txn.open_table(tables::SEARCH_SEGMENTS)?;
    let mut unknown = 0;
    for entry in segments.range::<(u64, u64)>(..)? {
        unknown += usize::from(!known.contains(&entry?.0.value().0));
    }
    report("search_segments", unknown);
    let terms = txn.open_table(tables::SEARCH_TERMS)?;
    let mut unknown = 0;
    for entry in terms.range::<(u64, u64, &str)>(..)? {
        unknown += usize::from(!known.contains(&entry?.0.value().0));
    }
    report("search_terms", unknown);
    let tombstones = txn.open_table(tables::SEARCH_TOMBSTONES)?;
    let mut unknown = 0;
    for entry in tombstones.range::<(u64, u128, u64)>(..)? {
        unknown += usize::from(!known.contains(&entry?.0.value().0));
    }
    report("search_tombstones", unknown);
    Ok(problems)
}
