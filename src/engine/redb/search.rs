//! Full-text search on redb: an inverted index kept exact at every commit,
//! at little cost to the write that adds a message.
//!
//! Three tables (`tables.rs`): `search_postings` (user, term, session,
//! seq) -> (term frequency, message length), `search_users` user ->
//! (messages indexed, their total length), and `search_pending` (user,
//! session, seq): the messages not indexed yet. The commit that writes a
//! message of a user's session (append, fork, import) adds only its
//! pending entry, one small insert; the writer's idle work
//! ([`SearchIndexer`]) moves pending messages into the postings, 16 per
//! relaxed commit, when no request waits and 64 messages wait or none was
//! queued for 500 ms (so that an append is seldom followed by an index
//! commit the next append waits for). A search reads the postings of
//! its terms and the user's pending messages whole (tokenised in its read
//! transaction, and counted in BM25's statistics as indexed ones are): it
//! finds exactly what the messages hold at every commit. Every removal
//! (pop, deletion, purge, erasure) removes a message's postings, or its
//! pending entry, in its own commit ([`forget`]). Every change goes
//! through the journal like any write, the idle work's included, so a
//! crash leaves each message indexed or pending, never both nor neither.
//!
//! How many messages hold a term is counted as its postings are read,
//! not stored: a stored count would cost every indexing two more B-tree
//! operations a term. A file written before search gets every message of
//! a user's session queued at its open ([`queue_unindexed`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use uuid::Uuid;

use crate::engine::redb::encoding::{decode, Decoder, MessageRecord, RecordKey, SessionRecord};
use crate::engine::redb::store::RedbEngine;
use crate::engine::redb::tables::{self, WriteTables};
use crate::engine::redb::writer::IdleWork;
use crate::error::{Error, Result};
use crate::rules::search::{self, Scored, SearchCursor, SearchHit, SearchPage, Tally, Terms};

/// Messages indexed per relaxed commit of the idle work: a write arriving
/// meanwhile waits for at most one such commit.
const IDLE_STEP: usize = 16;
/// The idle work indexes once this many messages wait,
const BACKLOG: u64 = 64;
/// or once no message was queued for this long (as long as a checkpoint
/// waits for records): a chatbot appending without pause does not wait
/// for an index commit after each append, only after every
/// [`IDLE_STEP`]-th or so, and a short burst of writes is followed by the
/// same commits whatever its pace.
const QUIET: Duration = Duration::from_millis(500);

/// Queues the message at (session, seq) of a session of `user` for the
/// index (nothing for a session without a user: it is never searched).
pub(crate) fn queue(tables: &mut WriteTables<'_>, user: Option<&str>, session: u128, seq: u64) -> Result<()> {
    match user {
        Some(user) => tables.search_pending.insert((user, session, seq), ()),
        None => Ok(()),
    }
}

/// Removes the message at (session, seq) of a session of `user`, whose
/// content is `content`, from the index: its pending entry, else its
/// postings and its share of the user's statistics.
pub(crate) fn forget(
    tables: &mut WriteTables<'_>,
    user: Option<&str>,
    session: u128,
    seq: u64,
    content: &str,
) -> Result<()> {
    let Some(user) = user else {
        return Ok(());
    };
    if tables.search_pending.remove((user, session, seq))? {
        return Ok(());
    }
    let terms = Terms::of(content);
    if terms.length == 0 {
        return Ok(());
    }
    for term in terms.counts.keys() {
        tables
            .search_postings
            .remove((user, term.as_str(), session, seq))?;
    }
    let (docs, length) = user_counts(tables, user)?;
    if docs > 1 {
        tables
            .search_users
            .insert(user, (docs - 1, length.saturating_sub(u64::from(terms.length))))
    } else {
        tables.search_users.remove(user).map(drop)
    }
}

fn user_counts(tables: &mut WriteTables<'_>, user: &str) -> Result<(u64, u64)> {
    Ok(tables
        .search_users
        .table()?
        .get(user)?
        .map_or((0, 0), |g| g.value()))
}

/// Indexes at most `limit` pending messages; how many it indexed, and
/// whether some remain.
fn index_pending(tables: &mut WriteTables<'_>, limit: usize) -> Result<(usize, bool)> {
    let mut taken = Vec::with_capacity(limit.min(IDLE_STEP));
    for entry in tables.search_pending.table()?.range::<(&str, u128, u64)>(..)? {
        if taken.len() == limit {
            break;
        }
        let (key, _) = entry?;
        let (user, session, seq) = key.value();
        taken.push((user.to_owned(), session, seq));
    }
    let mut added: HashMap<String, (u64, u64)> = HashMap::new();
    for (user, session, seq) in &taken {
        let message = tables::message_record(tables.messages.table()?, *session, *seq)?.ok_or_else(|| {
            Error::corrupt_record("search_pending", "an entry of a message that is not there")
        })?;
        let terms = Terms::of(&message.content);
        for (term, &count) in &terms.counts {
            tables.search_postings.insert(
                (user.as_str(), term.as_str(), *session, *seq),
                (count, terms.length),
            )?;
        }
        if terms.length > 0 {
            let counts = added.entry(user.clone()).or_default();
            *counts = (counts.0 + 1, counts.1 + u64::from(terms.length));
        }
        tables.search_pending.remove((user.as_str(), *session, *seq))?;
    }
    for (user, (docs, length)) in added {
        let (old_docs, old_length) = user_counts(tables, &user)?;
        tables
            .search_users
            .insert(user.as_str(), (old_docs + docs, old_length + length))?;
    }
    let more = taken.len() == limit && !tables.search_pending.table()?.is_empty()?;
    Ok((taken.len(), more))
}

/// Indexes every pending message, in one durable commit past the journal
/// (maintenance, which runs once the database holds every record:
/// compaction).
pub(crate) fn index_everything(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    index_pending(&mut WriteTables::open_unlogged(&txn), usize::MAX)?;
    txn.commit()?;
    Ok(())
}

/// The writer's idle work for search: indexing the pending messages, once
/// [`BACKLOG`] wait or none was queued for [`QUIET`].
#[derive(Debug)]
pub(crate) struct SearchIndexer {
    /// About how many messages are pending (removals are not counted):
    /// 0 once a step found none left.
    pending: AtomicU64,
    /// When the last message was queued, in milliseconds since `started`.
    last_queued: AtomicU64,
    started: Instant,
}

impl SearchIndexer {
    /// The state of the store whose latest commit `txn` reads.
    pub(crate) fn load(txn: &ReadTransaction) -> Result<Self> {
        let indexer = SearchIndexer {
            pending: AtomicU64::new(0),
            last_queued: AtomicU64::new(0),
            started: Instant::now(),
        };
        indexer.recount(txn)?;
        Ok(indexer)
    }

    /// Says that a write queued `count` messages: work for the idle
    /// writer. Called inside the write, so that the writer looks at the
    /// work after the commit.
    pub(crate) fn queued(&self, count: u64) {
        self.pending.fetch_add(count, Ordering::SeqCst);
        self.last_queued.store(self.now(), Ordering::SeqCst);
    }

    /// Counts the pending messages again (after an import, which queues
    /// them past the writer).
    pub(crate) fn recount(&self, txn: &ReadTransaction) -> Result<()> {
        let pending = txn.open_table(tables::SEARCH_PENDING)?.len()?;
        self.pending.store(pending, Ordering::SeqCst);
        Ok(())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl IdleWork for SearchIndexer {
    fn due(&self) -> bool {
        let pending = self.pending.load(Ordering::SeqCst);
        let quiet = self.now().saturating_sub(self.last_queued.load(Ordering::SeqCst));
        pending >= BACKLOG || (pending > 0 && u128::from(quiet) >= QUIET.as_millis())
    }

    fn due_at(&self) -> Option<Instant> {
        let pending = self.pending.load(Ordering::SeqCst);
        let last = Duration::from_millis(self.last_queued.load(Ordering::SeqCst));
        (pending > 0).then(|| self.started + last + QUIET)
    }

    fn step(&self, tables: &mut WriteTables<'_>) -> Result<()> {
        let result = index_pending(tables, IDLE_STEP);
        match result {
            Ok((_, false)) | Err(_) => self.pending.store(0, Ordering::SeqCst),
            Ok((indexed, true)) => {
                let left = |pending: u64| Some(pending.saturating_sub(indexed as u64).max(1));
                let _ = self
                    .pending
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, left);
            }
        }
        result.map(drop)
    }
}

/// Queues every message of a user's session for the index, once, in a
/// file written before search existed (no `search_index` mark in `meta`):
/// after the journal's replay, so that what it replayed is queued too. The
/// mark is written in the same commit.
pub(crate) fn queue_unindexed(db: &Database) -> Result<()> {
    let marked = db
        .begin_read()?
        .open_table(tables::META)?
        .get(tables::META_SEARCH_INDEX)?
        .is_some();
    if marked {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        let mut tables = WriteTables::open_unlogged(&txn);
        let mut owned = Vec::new();
        for entry in tables.sessions.table()?.range::<u128>(..)? {
            let (key, value) = entry?;
            let id = key.value();
            let record: SessionRecord = decode(RecordKey::Session(id), value.value())?;
            if let Some(user) = record.user_id {
                owned.push((id, user, record.message_count));
            }
        }
        for (id, user, count) in owned {
            let mut seqs = Vec::with_capacity(count.min(1 << 16) as usize);
            for entry in tables.messages.table()?.range((id, 0)..=(id, u64::MAX))? {
                seqs.push(entry?.0.value().1);
            }
            for seq in seqs {
                queue(&mut tables, Some(&user), id, seq)?;
            }
        }
        tables.set_meta(tables::META_SEARCH_INDEX, &[1])?;
    }
    txn.commit()?;
    Ok(())
}

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
            if let Some((docs, length)) = txn
                .open_table(tables::SEARCH_USERS)?
                .get(user)?
                .map(|g| g.value())
            {
                tally.count(docs, length);
            }
            let postings = txn.open_table(tables::SEARCH_POSTINGS)?;
            for (index, term) in terms.iter().enumerate() {
                let term = term.as_str();
                for entry in postings.range((user, term, 0, 0)..=(user, term, u128::MAX, u64::MAX))? {
                    let (key, value) = entry?;
                    let (_, _, session, seq) = key.value();
                    let (frequency, length) = value.value();
                    tally.posting(index, session, seq, frequency, length);
                }
            }
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
                    Error::corrupt_record("search_postings", "an entry of a message that is not there")
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

/// What is wrong with the search index of `txn`'s state, one sentence
/// each: every message of a user's session must be either pending or
/// indexed (its postings, with its term frequencies and length, and its
/// share of the user's statistics), never both; no entry may describe
/// anything else (a missing message, another user's, a wrong count).
pub(crate) fn check(txn: &ReadTransaction) -> Result<Vec<String>> {
    let sessions = txn.open_table(tables::SESSIONS)?;
    let messages = txn.open_table(tables::MESSAGES)?;
    let pending = txn.open_table(tables::SEARCH_PENDING)?;
    let postings = txn.open_table(tables::SEARCH_POSTINGS)?;
    let mut expected_postings = 0u64;
    let mut expected_pending = 0u64;
    let mut expected_users: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut wrong, mut both) = (0u64, 0u64);
    for entry in sessions.range::<u128>(..)? {
        let (key, value) = entry?;
        let id = key.value();
        // Damaged records are reported by the model's check.
        let Ok(record) = decode::<SessionRecord>(RecordKey::Session(id), value.value()) else {
            continue;
        };
        let Some(user) = record.user_id else {
            continue;
        };
        for entry in messages.range((id, 0)..=(id, u64::MAX))? {
            let (key, value) = entry?;
            let seq = key.value().1;
            let Ok(message) = decode::<MessageRecord>(RecordKey::Message(id, seq), value.value()) else {
                continue;
            };
            let terms = Terms::of(&message.content);
            let is_pending = pending.get((user.as_str(), id, seq))?.is_some();
            if is_pending {
                expected_pending += 1;
            } else if terms.length > 0 {
                let counts = expected_users.entry(user.clone()).or_default();
                *counts = (counts.0 + 1, counts.1 + u64::from(terms.length));
            }
            for (term, &count) in &terms.counts {
                let found = postings
                    .get((user.as_str(), term.as_str(), id, seq))?
                    .map(|g| g.value());
                match (is_pending, found) {
                    (true, Some(_)) => both += 1,
                    (true, None) => {}
                    (false, found) => {
                        expected_postings += 1;
                        if found != Some((count, terms.length)) {
                            wrong += 1;
                        }
                    }
                }
            }
        }
    }
    let mut problems = Vec::new();
    let held = postings.len()?;
    if wrong > 0 || both > 0 || held != expected_postings + both {
        problems.push(format!(
            "search_postings differs from the messages: {wrong} entries missing or wrong, {both} of \
             pending messages, {held} held for {expected_postings}"
        ));
    }
    let held = pending.len()?;
    if held != expected_pending {
        problems.push(format!(
            "search_pending holds {held} entries, of which {expected_pending} are messages of their user"
        ));
    }
    let users = txn.open_table(tables::SEARCH_USERS)?;
    let mut found_users = BTreeMap::new();
    for entry in users.range::<&str>(..)? {
        let (key, value) = entry?;
        found_users.insert(key.value().to_owned(), value.value());
    }
    if found_users != expected_users {
        let users: BTreeSet<&String> = expected_users.keys().chain(found_users.keys()).collect();
        let differing = users
            .into_iter()
            .filter(|user| expected_users.get(*user) != found_users.get(*user))
            .count();
        problems.push(format!(
            "search_users differs from the indexed messages for {differing} users"
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use redb::Database;

    use super::*;
    use crate::model::{Durability, NewMessage};
    use crate::SessionStore;

    fn problems(store: &SessionStore) -> Vec<String> {
        store.check(&mut |_, _| {}).unwrap().problems
    }

    /// (pending entries, postings, users) of the store's index.
    fn sizes(store: &SessionStore) -> (u64, u64, u64) {
        store
            .redb()
            .reading(|txn| {
                Ok((
                    txn.open_table(tables::SEARCH_PENDING)?.len()?,
                    txn.open_table(tables::SEARCH_POSTINGS)?.len()?,
                    txn.open_table(tables::SEARCH_USERS)?.len()?,
                ))
            })
            .unwrap()
    }

    /// Indexes every pending message now, as the idle work would.
    fn index_all(store: &SessionStore) {
        store
            .redb()
            .write(Durability::Relaxed, |tables| index_pending(tables, usize::MAX))
            .unwrap();
    }

    fn hits(store: &SessionStore, user: &str, query: &str) -> Vec<(Uuid, u64)> {
        let page = store.search(user, query, None, 100).unwrap();
        page.hits.iter().map(|h| (h.session_id, h.seq)).collect()
    }

    /// An append writes a pending entry, not postings; the idle writer
    /// moves it into the postings soon after, with no call to wait for.
    #[test]
    fn the_idle_writer_indexes_what_appends_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        let anonymous = store.create_session(None).unwrap();
        store
            .add_message(anonymous, NewMessage::user("never searched"))
            .unwrap();
        assert_eq!(sizes(&store), (0, 0, 0));
        for n in 0..40 {
            store
                .add_message(id, NewMessage::user(format!("word{n} shared shared")))
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while sizes(&store).0 > 0 {
            assert!(
                Instant::now() < deadline,
                "pending entries left: {:?}",
                sizes(&store)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // 40 messages of 2 distinct terms each, one user.
        assert_eq!(sizes(&store), (0, 80, 1));
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
        assert_eq!(hits(&store, "ana", "word7"), [(id, 7)]);
        assert_eq!(hits(&store, "ana", "shared").len(), 40);
    }

    /// Indexed or pending, a message leaves no entry once popped, deleted,
    /// purged or erased; what is pending and what is indexed score alike.
    #[test]
    fn removals_leave_no_entry_whether_indexed_or_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
        let sessions: Vec<Uuid> = (0..4)
            .map(|_| store.create_session(Some("ana")).unwrap())
            .collect();
        for &id in &sessions {
            store
                .add_messages(
                    id,
                    vec![
                        NewMessage::user("alpha beta"),
                        NewMessage::assistant("beta gamma gamma"),
                    ],
                )
                .unwrap();
        }
        let before = store.search("ana", "gamma beta", None, 100).unwrap();
        index_all(&store);
        assert_eq!(sizes(&store).0, 0);
        assert_eq!(store.search("ana", "gamma beta", None, 100).unwrap(), before);
        store.pop_last_message(sessions[0]).unwrap();
        store.delete_session(sessions[1]).unwrap();
        store.expire_session(sessions[2]).unwrap();
        store.purge_expired(Duration::ZERO).unwrap();
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
        let mut left = hits(&store, "ana", "beta");
        left.sort();
        let mut expected = vec![(sessions[0], 0), (sessions[3], 0), (sessions[3], 1)];
        expected.sort();
        assert_eq!(left, expected);
        // Queued again and erased while pending, or indexed: nothing left.
        store.add_message(sessions[0], NewMessage::user("delta")).unwrap();
        store.erase_user("ana").unwrap();
        assert_eq!(sizes(&store), (0, 0, 0));
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
        // A pending entry is removed instead of postings, in one commit.
        let id = store.create_session(Some("bob")).unwrap();
        store.add_message(id, NewMessage::user("epsilon")).unwrap();
        index_all(&store);
        let (id, user) = (id.as_u128(), "bob");
        store
            .redb()
            .write(Durability::Relaxed, move |tables| {
                queue(tables, Some(user), id, 1)?;
                forget(tables, Some(user), id, 1, "epsilon")
            })
            .unwrap();
        assert_eq!(sizes(&store), (0, 1, 1));
    }

    /// `check()` finds an index that differs from the messages: a posting
    /// of a message that is not there, a message both pending and indexed,
    /// a pending entry of another user's message, wrong statistics.
    #[test]
    fn check_reports_an_index_that_differs_from_the_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = SessionStore::open(&path).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        store.add_message(id, NewMessage::user("indexed words")).unwrap();
        store.add_message(id, NewMessage::user("more words")).unwrap();
        index_all(&store);
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
        drop(store);
        let key = id.as_u128();
        for (n, damage) in [
            "a posting of a message that is not there",
            "a message both pending and indexed",
            "a pending entry of another user's message",
            "wrong statistics",
        ]
        .into_iter()
        .enumerate()
        {
            let copy = dir.path().join(format!("damaged{n}.redb"));
            std::fs::copy(&path, &copy).unwrap();
            let db = Database::open(&copy).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut postings = txn.open_table(tables::SEARCH_POSTINGS).unwrap();
                let mut pending = txn.open_table(tables::SEARCH_PENDING).unwrap();
                let mut users = txn.open_table(tables::SEARCH_USERS).unwrap();
                match n {
                    0 => drop(postings.insert(("ana", "ghost", key, 9), (1, 1)).unwrap()),
                    1 => drop(pending.insert(("ana", key, 0), ()).unwrap()),
                    2 => drop(pending.insert(("bob", key, 1), ()).unwrap()),
                    _ => drop(users.insert("ana", (2, 5)).unwrap()),
                }
            }
            txn.commit().unwrap();
            drop(db);
            let store = SessionStore::open(&copy).unwrap();
            let found = problems(&store);
            let table = [
                "search_postings",
                "search_postings",
                "search_pending",
                "search_users",
            ][n];
            // A message both pending and indexed is also left out of the
            // statistics it is counted in: two problems.
            assert_eq!(found.len(), if n == 1 { 2 } else { 1 }, "{damage}: {found:?}");
            assert!(found[0].starts_with(table), "{damage}: {found:?}");
        }
    }

    /// What a crash leaves (the files copied while the store is open, the
    /// journal holding appends and the idle work's commits) opens with an
    /// exact index.
    #[test]
    fn a_crash_leaves_each_message_indexed_or_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        for n in 0..30 {
            store
                .add_message(id, NewMessage::user(format!("term{n} common")))
                .unwrap();
            if n == 10 {
                index_all(&store);
                store.pop_last_message(id).unwrap();
            }
        }
        let (_crashed, reopened) = store.reopened_after_a_crash();
        assert!(problems(&reopened).is_empty(), "{:?}", problems(&reopened));
        assert_eq!(hits(&reopened, "ana", "common").len(), 29);
        assert!(hits(&reopened, "ana", "term10").is_empty());
        assert_eq!(hits(&reopened, "ana", "term29"), [(id, 28)]);
    }

    /// A file written before search (no index tables, no mark) gets every
    /// message of a user's session queued at its open, once.
    #[test]
    fn a_store_written_before_search_is_queued_at_its_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = SessionStore::open(&path).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        store
            .add_message(id, NewMessage::user("written before the index"))
            .unwrap();
        let anonymous = store.create_session(None).unwrap();
        store.add_message(anonymous, NewMessage::user("before")).unwrap();
        drop(store);
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            assert!(txn.delete_table(tables::SEARCH_PENDING).unwrap());
            assert!(txn.delete_table(tables::SEARCH_POSTINGS).unwrap());
            assert!(txn.delete_table(tables::SEARCH_USERS).unwrap());
            txn.open_table(tables::META)
                .unwrap()
                .remove(tables::META_SEARCH_INDEX)
                .unwrap();
            txn.commit().unwrap();
        }
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(hits(&store, "ana", "before"), [(id, 0)]);
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
        drop(store);
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(hits(&store, "ana", "index"), [(id, 0)]);
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    }
}
