//! Full-text search on redb: a segmented inverted index (as SQLite's FTS5
//! and Lucene keep theirs), exact at every commit, at little cost to the
//! write that adds a message.
//!
//! The commit that writes a message of a user's session (append, fork,
//! import) adds only its `search_pending` entry (user, session, seq), one
//! small insert. The writer's idle work ([`SearchIndexer`]) turns pending
//! messages into segments: at most [`IDLE_STEP`] messages or
//! [`IDLE_STEP_BYTES`] of content a relaxed commit, one new segment per
//! user among them, once [`BACKLOG`] messages wait or none was queued for
//! [`QUIET`]; while messages keep coming, only users with [`USER_BATCH`]
//! pending or more, so that many users appending at once do not each get
//! a segment of one message. A segment (`segment.rs`) is a header under (user number,
//! segment number) listing its messages (session, seq, length in terms),
//! and one value a term under (user number, segment number, term): the
//! places in the header of the messages holding it, with its frequency,
//! varint and delta coded. A new segment's keys all follow the user's
//! last segment: one run of new leaves, where one entry per (term,
//! message) scattered over a term-ordered tree rewrote a leaf for each.
//! Users are keyed by a number (`search_user_numbers`), eight bytes in
//! every key; `search_stats` holds BM25's statistics of the user's live
//! indexed messages and the next segment's number.
//!
//! Removal (pop, deletion, purge, erasure; [`forget`]) takes a pending
//! message out of `search_pending`, or, for an indexed one, writes a
//! tombstone (user number, session, seq) -> N, N being the user's next
//! segment number (the copies in segments below N are dead; a seq popped
//! then appended again is indexed into a segment numbered N or more, and
//! lives), and takes its share out of the statistics, in the removal's own
//! commit. A search skips dead copies, so it finds only stored messages,
//! and BM25's statistics (how many messages, their length, how many hold
//! a term, counted as postings are read) stay exact. The idle work then
//! tidies the user's segments (`build.rs`): it rewrites each segment that
//! holds a dead copy without it, so removed content does not linger, then
//! drops the tombstones; and it merges [`build::FANIN`] segments of one
//! tier (their sizes within a factor of 8) into one, up to
//! [`build::MAX_SEGMENT_DOCS`] messages, so that a user's history lies in
//! a few segments, each term's postings gathered in one value. Every
//! commit of it is bounded (a few milliseconds: an indexing step of 128
//! messages, a merge into at most 4,096) and journaled like any write, so
//! a crash leaves each message pending or live in exactly one segment. An
//! erasure removes the user's whole key ranges.
//!
//! Chosen over the sketch's alternatives: tombstones rather than
//! rewriting a segment in the removal's commit (a pop stays one small
//! commit, whatever the segment's size); tiers by message count rather
//! than bytes (a header's count is read without decoding it); a user
//! number found again once erased (the highest in use plus one: an
//! erasure leaves no key of the number behind).
//!
//! A search (`query.rs`) reads the user's tombstones, the postings of its
//! terms in each segment, and the user's pending messages whole
//! (tokenised in its read transaction and counted in the statistics as
//! indexed ones are): it finds exactly what the messages hold at every
//! commit. `check.rs` verifies the index against the messages. A file
//! written before search, or with the first index (one entry per term
//! and message, `search_index` mark 1), is upgraded at its open
//! ([`upgrade`]); compaction indexes and tidies everything first
//! ([`index_everything`]).

mod build;
mod check;
mod query;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

pub(crate) use check::check;

use crate::engine::redb::encoding::{decode, RecordKey, SessionRecord};
use crate::engine::redb::store::FORMAT_VERSION;
use crate::engine::redb::tables::{self, WriteTables};
use crate::engine::redb::writer::IdleWork;
use crate::error::Result;
use crate::rules::search::Terms;

/// The version of the index this build writes, in `meta`'s
/// `search_index`: 2, segments (1 was one entry per term and message).
pub(crate) const INDEX_VERSION: u8 = 2;

/// Pending messages indexed per relaxed commit of the idle work, at most,
const IDLE_STEP: usize = 128;
/// and no more once their contents reach this many bytes: a write
/// arriving meanwhile waits for at most one such commit (a few
/// milliseconds).
const IDLE_STEP_BYTES: usize = 256 * 1024;
/// The idle work indexes once this many messages wait,
const BACKLOG: u64 = 64;
/// or once no message was queued for this long: a chatbot appending
/// without pause does not wait for an index commit after each append, and
/// a short burst of writes is followed by the same commits whatever its
/// pace.
const QUIET: Duration = Duration::from_millis(500);
/// While messages keep being queued, a step indexes only the users with
/// at least this many pending (many users appending at once would
/// otherwise each get a segment of a message or two, then merges of
/// those); the rest are indexed once the store is quiet.
const USER_BATCH: usize = 32;

/// Tombstones written in this process, in any store: an indexer that has
/// seen fewer looks for users to tidy (a removal runs in code that knows
/// the tables, not the indexer).
static TOMBSTONES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Queues the message at (session, seq) of a session of `user` for the
/// index (nothing for a session without a user: it is never searched).
pub(crate) fn queue(tables: &mut WriteTables<'_>, user: Option<&str>, session: u128, seq: u64) -> Result<()> {
    match user {
        Some(user) => tables.search_pending.insert((user, session, seq), ()),
        None => Ok(()),
    }
}

/// Removes the message at (session, seq) of a session of `user`, whose
/// content is `content`, from the index: its pending entry, else (when
/// indexed) a tombstone and its share of the user's statistics.
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
    let Some(number) = build::user_number(tables, user)? else {
        return Ok(());
    };
    let length = Terms::of(content).length;
    if length == 0 {
        return Ok(());
    }
    build::remove_indexed(tables, number, session, seq, length)?;
    TOMBSTONES_WRITTEN.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Removes every search entry of `user` (its erasure; its messages are
/// removed in the same commit, which then finds nothing to forget).
pub(crate) fn erase(tables: &mut WriteTables<'_>, user: &str) -> Result<()> {
    build::erase(tables, user)
}

/// Indexes every pending message and tidies every user's segments (no
/// removed message left in any), in one durable commit past the journal
/// (maintenance, which runs once the database holds every record:
/// compaction).
pub(crate) fn index_everything(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut tables = WriteTables::open_unlogged(&txn);
        while build::index_pending(&mut tables, IDLE_STEP, IDLE_STEP_BYTES, 1)?.more {}
        let mut users = Vec::new();
        for entry in tables.search_stats.table()?.range::<u64>(..)? {
            users.push(entry?.0.value());
        }
        for user in users {
            while build::tidy(&mut tables, user)? {}
        }
    }
    txn.commit()?;
    Ok(())
}

/// The numbers of the users with tombstones in `table`.
fn users_with_tombstones(table: &impl ReadableTable<(u64, u128, u64), u64>) -> Result<BTreeSet<u64>> {
    let mut users = BTreeSet::new();
    let mut from = 0u64;
    loop {
        let first = table.range((from, 0, 0)..)?.next().transpose()?;
        let Some((key, _)) = first else {
            return Ok(users);
        };
        let user = key.value().0;
        users.insert(user);
        match user.checked_add(1) {
            Some(next) => from = next,
            None => return Ok(users),
        }
    }
}

/// The writer's idle work for search: indexing the pending messages, once
/// [`BACKLOG`] wait or none was queued for [`QUIET`]; then tidying the
/// segments of the users it indexed or removed messages of.
#[derive(Debug)]
pub(crate) struct SearchIndexer {
    /// About how many messages are pending (removals are not counted):
    /// 0 once a step found none left.
    pending: AtomicU64,
    /// When the last message was queued, in milliseconds since `started`.
    last_queued: AtomicU64,
    started: Instant,
    /// The numbers of the users whose segments may need tidying.
    untidy: Mutex<BTreeSet<u64>>,
    /// [`TOMBSTONES_WRITTEN`] when this indexer last looked for users with
    /// tombstones.
    tombstones_seen: AtomicU64,
    /// Tests take the idle work's steps themselves, in the order they
    /// choose.
    #[cfg(test)]
    paused: std::sync::atomic::AtomicBool,
}

impl SearchIndexer {
    /// The state of the store whose latest commit `txn` reads.
    pub(crate) fn load(txn: &ReadTransaction) -> Result<Self> {
        let untidy = users_with_tombstones(&txn.open_table(tables::SEARCH_TOMBSTONES)?)?;
        let indexer = SearchIndexer {
            pending: AtomicU64::new(0),
            last_queued: AtomicU64::new(0),
            started: Instant::now(),
            untidy: Mutex::new(untidy),
            tombstones_seen: AtomicU64::new(TOMBSTONES_WRITTEN.load(Ordering::SeqCst)),
            #[cfg(test)]
            paused: Default::default(),
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

    /// Stops the idle work's steps (tests take them themselves).
    #[cfg(test)]
    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn quiet(&self) -> bool {
        let quiet = self.now().saturating_sub(self.last_queued.load(Ordering::SeqCst));
        u128::from(quiet) >= QUIET.as_millis()
    }

    fn indexing_due(&self) -> bool {
        let pending = self.pending.load(Ordering::SeqCst);
        pending >= BACKLOG || (pending > 0 && self.quiet())
    }

    fn untidy(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.untidy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn index_step(&self, tables: &mut WriteTables<'_>) -> Result<()> {
        let min_per_user = if self.quiet() { 1 } else { USER_BATCH };
        let result = build::index_pending(tables, IDLE_STEP, IDLE_STEP_BYTES, min_per_user);
        match &result {
            Ok(indexed) if indexed.more => {
                let done = indexed.messages as u64;
                let left = |pending: u64| Some(pending.saturating_sub(done).max(1));
                let _ = self
                    .pending
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, left);
            }
            // Those left out wait for the store to be quiet (or for
            // BACKLOG more messages), not for the next message.
            Ok(indexed) if indexed.left_out => self.pending.store(1, Ordering::SeqCst),
            Ok(_) | Err(_) => self.pending.store(0, Ordering::SeqCst),
        }
        self.untidy().extend(result?.users);
        Ok(())
    }
}

impl IdleWork for SearchIndexer {
    fn due(&self) -> bool {
        #[cfg(test)]
        if self.paused.load(Ordering::SeqCst) {
            return false;
        }
        self.indexing_due()
            || !self.untidy().is_empty()
            || TOMBSTONES_WRITTEN.load(Ordering::SeqCst) != self.tombstones_seen.load(Ordering::SeqCst)
    }

    fn due_at(&self) -> Option<Instant> {
        let pending = self.pending.load(Ordering::SeqCst);
        let last = Duration::from_millis(self.last_queued.load(Ordering::SeqCst));
        (pending > 0).then(|| self.started + last + QUIET)
    }

    fn step(&self, tables: &mut WriteTables<'_>) -> Result<()> {
        let written = TOMBSTONES_WRITTEN.load(Ordering::SeqCst);
        if self.tombstones_seen.swap(written, Ordering::SeqCst) != written {
            let found = users_with_tombstones(tables.search_tombstones.table()?)?;
            self.untidy().extend(found);
        }
        if self.indexing_due() {
            return self.index_step(tables);
        }
        let first = self.untidy().first().copied();
        if let Some(user) = first {
            // A failed step leaves the user to tidy: the commit writes
            // nothing, and the next write's idle work tries again.
            if !build::tidy(tables, user)? {
                self.untidy().remove(&user);
            }
        }
        Ok(())
    }
}

/// Brings the index of a file written before search (no `search_index`
/// mark) or with an older index (mark 1: the postings table) to this
/// build's, once: drops the old index's tables and queues every message
/// of a user's session, writing the mark ([`INDEX_VERSION`]) and the
/// format version ([`FORMAT_VERSION`]: a build of the older index refuses
/// the file from then on) in the same commit. After the journal's replay, so that what it replayed is queued
/// too (and the old tables it replayed into are dropped).
pub(crate) fn upgrade(db: &Database) -> Result<()> {
    let meta = db.begin_read()?.open_table(tables::META)?;
    let current = meta
        .get(tables::META_SEARCH_INDEX)?
        .is_some_and(|mark| mark.value() == [INDEX_VERSION])
        && meta
            .get(tables::META_FORMAT_VERSION)?
            .is_some_and(|version| version.value() == FORMAT_VERSION.to_le_bytes());
    drop(meta);
    if current {
        return Ok(());
    }
    let txn = db.begin_write()?;
    txn.delete_table(tables::SEARCH_POSTINGS_V1)?;
    txn.delete_table(tables::SEARCH_USERS_V1)?;
    txn.delete_table(tables::SEARCH_USER_NUMBERS)?;
    txn.delete_table(tables::SEARCH_STATS)?;
    txn.delete_table(tables::SEARCH_SEGMENTS)?;
    txn.delete_table(tables::SEARCH_TERMS)?;
    txn.delete_table(tables::SEARCH_TOMBSTONES)?;
    {
        let mut tables = WriteTables::open_unlogged(&txn);
        tables.open_all()?;
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
        tables.set_meta(tables::META_SEARCH_INDEX, &[INDEX_VERSION])?;
        tables.set_meta(tables::META_FORMAT_VERSION, &FORMAT_VERSION.to_le_bytes())?;
    }
    txn.commit()?;
    Ok(())
}
