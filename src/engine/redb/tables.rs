//! The redb tables, typed, and the only code that writes them.
//!
//! Every index entry is derived from a session record by [`index_keys`], and
//! every session write goes through [`WriteTables::put_session`] or
//! [`WriteTables::remove_session`], which remove the old record's entries
//! and add the new one's: that is what keeps each index equal to its table.

use std::borrow::Borrow;
use std::ops::Bound;

use redb::{
    Key, ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition, TableHandle, Value,
    WriteTransaction,
};

use crate::engine::redb::cache::{Edit, Notes};
use crate::engine::redb::encoding::{
    decode, encode, encode_unsealed, ExtraRowRecord, MessageRecord, RecordKey, SessionRecord, Unsealed,
};
use crate::engine::redb::{expiry, search};
use crate::error::{Error, Result};

/// Store-wide values: format version, next message id.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Session id -> [`SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
/// (session id, seq) -> [`MessageRecord`].
pub(crate) const MESSAGES: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("messages");
/// Global message id -> (session id, seq).
pub(crate) const MESSAGE_IDS: TableDefinition<u64, (u128, u64)> = TableDefinition::new("message_ids");
/// (user, updated_at, session) for active sessions of a user.
pub(crate) const USER_ACTIVE: TableDefinition<(&str, i64, u128), ()> =
    TableDefinition::new("user_active_sessions");
/// (user, updated_at, session) for expired sessions of a user.
pub(crate) const USER_EXPIRED: TableDefinition<(&str, i64, u128), ()> =
    TableDefinition::new("user_expired_sessions");
/// (updated_at, session) for every active session: expiry by age.
pub(crate) const ACTIVE_BY_UPDATED: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("active_by_updated");
/// (expired_at, session) for every expired session: purge by age.
pub(crate) const EXPIRED_BY_TIME: TableDefinition<(i64, u128), ()> = TableDefinition::new("expired_by_time");
/// Expiry cutoff -> when that expiry ran (a stored timestamp): the events
/// of lazy expiry (see `expiry.rs`). An active session updated before the
/// last cutoff is expired, since the first event whose cutoff is above its
/// `updated_at`.
pub(crate) const EXPIRY_EVENTS: TableDefinition<i64, &[u8]> = TableDefinition::new("expiry_events");
/// (SQLite table, rowid) -> [`ExtraRowRecord`]: rows the store carries for
/// the converter.
pub(crate) const EXTRA_ROWS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("extra_rows");
/// (session, SQLite table, rowid) for extra rows that belong to a session,
/// so that deleting the session deletes them (SQLite's ON DELETE CASCADE).
pub(crate) const EXTRA_ROWS_BY_SESSION: TableDefinition<(u128, &str, i64), ()> =
    TableDefinition::new("extra_rows_by_session");
/// Opaque named blobs the converter keeps (the SQLite schema, ...).
pub(crate) const OPAQUE: TableDefinition<&str, &[u8]> = TableDefinition::new("opaque");
/// (session, client's idempotency key) -> [`IdempotencyRecord`]: the ids an
/// idempotent append gave, so that its retry gets them again instead of
/// appending twice. Bounded: see [`WriteTables::remember_idempotency_key`].
pub(crate) const IDEMPOTENCY_KEYS: TableDefinition<(u128, &str), &[u8]> =
    TableDefinition::new("idempotency_keys");

pub(crate) use crate::rules::append::{IDEMPOTENCY_KEYS_PER_SESSION, IDEMPOTENCY_KEY_MICROS};

/// What an idempotent append stored under its key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IdempotencyRecord {
    /// When the append committed, in microseconds since the epoch.
    pub created_micros: i64,
    /// The ids it gave, in order.
    pub ids: Vec<u64>,
}

/// (parent session, fork) for every fork made by `fork_session` whose
/// parent still exists: the forks of a session, listed.
pub(crate) const FORKS: TableDefinition<(u128, u128), ()> = TableDefinition::new("forks");
/// Fork -> its parent: the other direction of [`FORKS`], so that deleting a
/// fork removes its entry.
pub(crate) const FORK_PARENTS: TableDefinition<u128, u128> = TableDefinition::new("fork_parents");

/// User -> the user's context, a JSON object (encoded `String`): the
/// state that follows a user across sessions.
pub(crate) const USER_CONTEXTS: TableDefinition<&str, &[u8]> = TableDefinition::new("user_contexts");

/// (user, session, seq) of each message of a user's session that the
/// search index does not hold yet: written in the commit that writes the
/// message, moved into a segment by the writer's idle work (see
/// `search/mod.rs`). A search reads these messages whole.
pub(crate) const SEARCH_PENDING: TableDefinition<(&str, u128, u64), ()> =
    TableDefinition::new("search_pending");
/// User -> the user's number in the search index: the other search tables
/// key a user by it, eight bytes instead of the user's name.
pub(crate) const SEARCH_USER_NUMBERS: TableDefinition<&str, u64> =
    TableDefinition::new("search_user_numbers");
/// User number -> (live indexed messages holding a term, their total
/// length in terms, the number the user's next segment gets): BM25's
/// statistics of the segments, exact at every commit.
pub(crate) const SEARCH_STATS: TableDefinition<u64, (u64, u64, u64)> = TableDefinition::new("search_stats");
/// (user number, segment number) -> the segment's messages (its header,
/// `search/segment.rs`): (session, seq, length in terms) of each, in
/// (session, seq) order; a message is known in the segment by its place.
pub(crate) const SEARCH_SEGMENTS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("search_segments");
/// (user number, segment number, term) -> the term's postings in the
/// segment: (place of the message in the header, term frequency) of each
/// message of the segment holding it.
pub(crate) const SEARCH_TERMS: TableDefinition<(u64, u64, &str), &[u8]> =
    TableDefinition::new("search_terms");
/// (user number, session, seq) -> N: the copies of that message in the
/// user's segments numbered below N are removed (popped, deleted, purged);
/// dropped once no segment holds such a copy.
pub(crate) const SEARCH_TOMBSTONES: TableDefinition<(u64, u128, u64), u64> =
    TableDefinition::new("search_tombstones");
/// The first index's postings, (user, term, session, seq) -> (term
/// frequency, length): only replayed from a journal written before the
/// segments, then dropped by the open's upgrade (`search::upgrade`).
pub(crate) const SEARCH_POSTINGS_V1: TableDefinition<(&str, &str, u128, u64), (u32, u32)> =
    TableDefinition::new("search_postings");
/// The first index's statistics, user -> (messages, length): as
/// [`SEARCH_POSTINGS_V1`].
pub(crate) const SEARCH_USERS_V1: TableDefinition<&str, (u64, u64)> = TableDefinition::new("search_users");

pub(crate) const META_FORMAT_VERSION: &str = "format_version";
pub(crate) const META_NEXT_MESSAGE_ID: &str = "next_message_id";
/// The lsn of the last journal record the database holds (see `journal.rs`).
pub(crate) const META_JOURNAL_LSN: &str = "journal_lsn";
/// The version of the search index the file holds, one byte: written at a
/// store's creation, or by the open that queues the messages of a file
/// written before search, or with an older index (see `search/mod.rs`).
pub(crate) const META_SEARCH_INDEX: &str = "search_index";

/// Index entries a session record implies.
pub(crate) struct IndexKeys<'a> {
    user: Option<&'a str>,
    expired: bool,
    updated: i64,
    expired_at: i64,
    id: u128,
}

impl IndexKeys<'_> {
    /// (expired, updated_at, expired_at) for the checker.
    pub fn parts(&self) -> (bool, i64, i64) {
        (self.expired, self.updated, self.expired_at)
    }
}

pub(crate) fn index_keys(id: u128, record: &SessionRecord) -> IndexKeys<'_> {
    IndexKeys {
        user: record.user_id.as_deref(),
        expired: record.expired_at.is_some(),
        updated: record.updated_at.micros(),
        expired_at: record.expired_at.as_ref().map_or(0, |t| t.micros()),
        id,
    }
}

/// Every table, opened for writing in one transaction. Each table logs the
/// changes made through it (see [`Logged`]): that log is the journal record
/// of the commit. The session writes are also noted for the message cache
/// (see [`WriteTables::take_notes`]).
pub(crate) struct WriteTables<'txn> {
    meta: Logged<'txn, &'static str, &'static [u8]>,
    pub sessions: Logged<'txn, u128, &'static [u8]>,
    pub messages: Logged<'txn, (u128, u64), &'static [u8]>,
    pub message_ids: Logged<'txn, u64, (u128, u64)>,
    pub user_active: Logged<'txn, (&'static str, i64, u128), ()>,
    pub user_expired: Logged<'txn, (&'static str, i64, u128), ()>,
    pub active_by_updated: Logged<'txn, (i64, u128), ()>,
    pub expired_by_time: Logged<'txn, (i64, u128), ()>,
    pub extra_rows: Logged<'txn, (&'static str, i64), &'static [u8]>,
    pub extra_by_session: Logged<'txn, (u128, &'static str, i64), ()>,
    pub opaque: Logged<'txn, &'static str, &'static [u8]>,
    pub expiry_events: Logged<'txn, i64, &'static [u8]>,
    pub idempotency_keys: Logged<'txn, (u128, &'static str), &'static [u8]>,
    pub forks: Logged<'txn, (u128, u128), ()>,
    pub fork_parents: Logged<'txn, u128, u128>,
    pub user_contexts: Logged<'txn, &'static str, &'static [u8]>,
    pub search_pending: Logged<'txn, (&'static str, u128, u64), ()>,
    search_postings_v1: Logged<'txn, (&'static str, &'static str, u128, u64), (u32, u32)>,
    search_users_v1: Logged<'txn, &'static str, (u64, u64)>,
    pub search_user_numbers: Logged<'txn, &'static str, u64>,
    pub search_stats: Logged<'txn, u64, (u64, u64, u64)>,
    pub search_segments: Logged<'txn, (u64, u64), &'static [u8]>,
    pub search_terms: Logged<'txn, (u64, u64, &'static str), &'static [u8]>,
    pub search_tombstones: Logged<'txn, (u64, u128, u64), u64>,
    notes: Notes,
}

/// The tag of each table in a change log. Never renumber: journals on disk
/// use them.
const TABLE_TAGS: [&str; 24] = [
    "meta",
    "sessions",
    "messages",
    "message_ids",
    "user_active_sessions",
    "user_expired_sessions",
    "active_by_updated",
    "expired_by_time",
    "extra_rows",
    "extra_rows_by_session",
    "opaque",
    "expiry_events",
    "idempotency_keys",
    "forks",
    "fork_parents",
    "user_contexts",
    "search_pending",
    "search_postings",
    "search_users",
    "search_user_numbers",
    "search_stats",
    "search_segments",
    "search_terms",
    "search_tombstones",
];

/// The tags of tables a store no longer has: a journal written before may
/// hold their changes, replayed before the open drops them.
const RETIRED_TAGS: [usize; 2] = [17, 18];

impl<'txn> WriteTables<'txn> {
    /// The tables of `txn`, each opened at its first use.
    pub fn open(txn: &'txn WriteTransaction) -> Self {
        Self::open_logging(txn, true)
    }

    /// The tables without a change log, for writes that are not journaled
    /// (the bulk importer's).
    pub fn open_unlogged(txn: &'txn WriteTransaction) -> Self {
        Self::open_logging(txn, false)
    }

    fn open_logging(txn: &'txn WriteTransaction, logging: bool) -> Self {
        WriteTables {
            meta: Logged::new(txn, META, 0, logging),
            sessions: Logged::new(txn, SESSIONS, 1, logging),
            messages: Logged::new(txn, MESSAGES, 2, logging),
            message_ids: Logged::new(txn, MESSAGE_IDS, 3, logging),
            user_active: Logged::new(txn, USER_ACTIVE, 4, logging),
            user_expired: Logged::new(txn, USER_EXPIRED, 5, logging),
            active_by_updated: Logged::new(txn, ACTIVE_BY_UPDATED, 6, logging),
            expired_by_time: Logged::new(txn, EXPIRED_BY_TIME, 7, logging),
            extra_rows: Logged::new(txn, EXTRA_ROWS, 8, logging),
            extra_by_session: Logged::new(txn, EXTRA_ROWS_BY_SESSION, 9, logging),
            opaque: Logged::new(txn, OPAQUE, 10, logging),
            expiry_events: Logged::new(txn, EXPIRY_EVENTS, 11, logging),
            idempotency_keys: Logged::new(txn, IDEMPOTENCY_KEYS, 12, logging),
            forks: Logged::new(txn, FORKS, 13, logging),
            fork_parents: Logged::new(txn, FORK_PARENTS, 14, logging),
            user_contexts: Logged::new(txn, USER_CONTEXTS, 15, logging),
            search_pending: Logged::new(txn, SEARCH_PENDING, 16, logging),
            search_postings_v1: Logged::new(txn, SEARCH_POSTINGS_V1, 17, logging),
            search_users_v1: Logged::new(txn, SEARCH_USERS_V1, 18, logging),
            search_user_numbers: Logged::new(txn, SEARCH_USER_NUMBERS, 19, logging),
            search_stats: Logged::new(txn, SEARCH_STATS, 20, logging),
            search_segments: Logged::new(txn, SEARCH_SEGMENTS, 21, logging),
            search_terms: Logged::new(txn, SEARCH_TERMS, 22, logging),
            search_tombstones: Logged::new(txn, SEARCH_TOMBSTONES, 23, logging),
            notes: Notes::default(),
        }
    }

    /// Opens every table, creating those the file lacks: a store's file
    /// has them all once opened (`initialise` in `store.rs`), and the read
    /// paths count on it.
    pub fn open_all(&mut self) -> Result<()> {
        self.all()
            .into_iter()
            .enumerate()
            .filter(|(tag, _)| !RETIRED_TAGS.contains(tag))
            .try_for_each(|(_, table)| table.open())
    }

    /// Every table, in the order of its tag (see [`TABLE_TAGS`]).
    fn all(&mut self) -> [&mut dyn AnyLogged; 24] {
        [
            &mut self.meta,
            &mut self.sessions,
            &mut self.messages,
            &mut self.message_ids,
            &mut self.user_active,
            &mut self.user_expired,
            &mut self.active_by_updated,
            &mut self.expired_by_time,
            &mut self.extra_rows,
            &mut self.extra_by_session,
            &mut self.opaque,
            &mut self.expiry_events,
            &mut self.idempotency_keys,
            &mut self.forks,
            &mut self.fork_parents,
            &mut self.user_contexts,
            &mut self.search_pending,
            &mut self.search_postings_v1,
            &mut self.search_users_v1,
            &mut self.search_user_numbers,
            &mut self.search_stats,
            &mut self.search_segments,
            &mut self.search_terms,
            &mut self.search_tombstones,
        ]
    }

    /// Takes the changes made since the last call, as one change log.
    pub fn take_changes(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for table in self.all() {
            table.take_changes_into(&mut out);
        }
        out
    }

    /// Applies a change log made by [`WriteTables::take_changes`]. Applying
    /// it again, or over a state that already holds it, changes nothing.
    pub fn apply_changes(&mut self, mut log: &[u8]) -> Result<()> {
        while !log.is_empty() {
            let (change, rest) = Change::parse(log)?;
            log = rest;
            let table = self.all().into_iter().nth(usize::from(change.table));
            let table = table.ok_or_else(|| {
                Error::corrupt_record("journal", format!("unknown table tag {}", change.table))
            })?;
            table.apply(change.key, change.value)?;
        }
        self.take_changes();
        Ok(())
    }

    pub fn session(&mut self, id: u128) -> Result<Option<SessionRecord>> {
        session_record(self.sessions.table()?, id)
    }

    fn add_index(&mut self, keys: &IndexKeys<'_>) -> Result<()> {
        if keys.expired {
            self.expired_by_time.insert((keys.expired_at, keys.id), ())?;
            if let Some(user) = keys.user {
                self.user_expired.insert((user, keys.updated, keys.id), ())?;
            }
        } else {
            self.active_by_updated.insert((keys.updated, keys.id), ())?;
            if let Some(user) = keys.user {
                self.user_active.insert((user, keys.updated, keys.id), ())?;
            }
        }
        Ok(())
    }

    fn remove_index(&mut self, keys: &IndexKeys<'_>) -> Result<()> {
        if keys.expired {
            self.expired_by_time.remove((keys.expired_at, keys.id))?;
            if let Some(user) = keys.user {
                self.user_expired.remove((user, keys.updated, keys.id))?;
            }
        } else {
            self.active_by_updated.remove((keys.updated, keys.id))?;
            if let Some(user) = keys.user {
                self.user_active.remove((user, keys.updated, keys.id))?;
            }
        }
        Ok(())
    }

    /// Writes a session record, replacing `old` (the record it had, if any)
    /// and its index entries. The record written has the revision after
    /// `old`'s (0 for a new session), whatever `new` says. `new` carries the
    /// expiry the lazy rule gives `old` (see [`expiry::expired_at`]), unless
    /// the write means to change it.
    ///
    /// An active record updated before the expiry watermark (old data
    /// loaded, a clock set back) must stay active: the sessions expired
    /// lazily are expired for good first, which ends every expiry event.
    pub fn put_session(&mut self, id: u128, old: Option<&SessionRecord>, new: SessionRecord) -> Result<()> {
        if new.expired_at.is_none()
            && new.updated_at.micros() < expiry::watermark(self.expiry_events.table()?)?
        {
            expiry::materialize(self, usize::MAX)?;
        }
        self.write_session(id, old, new)
    }

    /// As [`WriteTables::put_session`], without the watermark's check: for
    /// the expiry of sessions expired lazily.
    pub fn write_session(&mut self, id: u128, old: Option<&SessionRecord>, new: SessionRecord) -> Result<()> {
        if let Some(old) = old {
            self.remove_index(&index_keys(id, old))?;
        }
        self.add_index(&index_keys(id, &new))?;
        let from = old.map(|old| old.revision);
        let record = SessionRecord {
            revision: from.map_or(0, |revision| revision.wrapping_add(1)),
            ..new
        };
        self.sessions
            .insert(id, encode(RecordKey::Session(id), &record)?.as_slice())?;
        self.notes.written(id, from);
        Ok(())
    }

    /// Says what the last [`put_session`](Self::put_session), of `id`, did
    /// to its messages, so that the message cache can follow (without it,
    /// the session's cache entry is dropped after the commit).
    pub fn describe_last_write(&mut self, id: u128, edit: Edit) {
        self.notes.describe_last(id, edit);
    }

    /// The session writes made so far, for the message cache once the
    /// transaction has committed.
    pub fn take_notes(&mut self) -> Notes {
        std::mem::take(&mut self.notes)
    }

    /// The id the next message gets.
    pub fn next_message_id(&mut self) -> Result<u64> {
        next_message_id(self.meta.table()?)
    }

    pub fn set_next_message_id(&mut self, next: u64) -> Result<()> {
        self.meta
            .insert(META_NEXT_MESSAGE_ID, next.to_le_bytes().as_slice())?;
        Ok(())
    }

    /// Records that the database holds journal record `lsn` and those before.
    pub fn set_journal_lsn(&mut self, lsn: u64) -> Result<()> {
        self.meta.insert(META_JOURNAL_LSN, lsn.to_le_bytes().as_slice())
    }

    pub fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key, value)?;
        Ok(())
    }

    /// Stores a message at `seq` of a session of `user` and maps its
    /// global id to it; a user's message waits for the search index.
    pub fn put_message(
        &mut self,
        session: u128,
        seq: u64,
        user: Option<&str>,
        record: &MessageRecord,
    ) -> Result<()> {
        self.put_encoded_message(session, seq, user, encode_unsealed("messages", record)?)?;
        self.message_ids.insert(record.id, (session, seq))?;
        Ok(())
    }

    /// Stores a message encoded already (the bulk importer encodes on its
    /// feeder thread), sealed here with the key it gets, without its
    /// `message_ids` entry: the importer adds those later, in id order,
    /// with [`WriteTables::index_message_ids`].
    pub fn put_encoded_message(
        &mut self,
        session: u128,
        seq: u64,
        user: Option<&str>,
        record: Unsealed,
    ) -> Result<()> {
        let record = record.seal(RecordKey::Message(session, seq));
        self.messages.insert((session, seq), record.as_slice())?;
        search::queue(self, user, session, seq)
    }

    /// Adds `message_ids` entries (message id, (session, seq)), given in id
    /// order.
    pub fn index_message_ids(&mut self, entries: &[(u64, (u128, u64))]) -> Result<()> {
        for (id, place) in entries {
            self.message_ids.insert(id, place)?;
        }
        Ok(())
    }

    /// Removes the message at `seq` of a session of `user`, and its
    /// search entries; returns it.
    pub fn remove_message(
        &mut self,
        session: u128,
        seq: u64,
        user: Option<&str>,
    ) -> Result<Option<MessageRecord>> {
        let Some(record) = message_record(self.messages.table()?, session, seq)? else {
            return Ok(None);
        };
        self.messages.remove((session, seq))?;
        self.message_ids.remove(record.id)?;
        search::forget(self, user, session, seq, &record.content)?;
        Ok(Some(record))
    }

    /// Removes a session, its index entries, its messages (and their search
    /// entries) and the extra rows that belong to it. Returns how many
    /// messages it held.
    pub fn remove_session(&mut self, id: u128, record: &SessionRecord) -> Result<u64> {
        self.remove_index(&index_keys(id, record))?;
        self.sessions.remove(id)?;
        self.notes.removed(id);
        let mut messages = Vec::new();
        for entry in self.messages.table()?.range((id, 0)..=(id, u64::MAX))? {
            let (key, value) = entry?;
            let seq = key.value().1;
            let message: MessageRecord = decode(RecordKey::Message(id, seq), value.value())?;
            messages.push((seq, message.id, message.content));
        }
        for (seq, message_id, content) in &messages {
            self.messages.remove((id, *seq))?;
            self.message_ids.remove(message_id)?;
            search::forget(self, record.user_id.as_deref(), id, *seq, content)?;
        }
        let mut rows = Vec::new();
        let end = match id.checked_add(1) {
            Some(next) => Bound::Excluded((next, "", i64::MIN)),
            None => Bound::Unbounded,
        };
        let rows_of_session = self
            .extra_by_session
            .table()?
            .range::<(u128, &str, i64)>((Bound::Included((id, "", i64::MIN)), end))?;
        for entry in rows_of_session {
            let (key, _) = entry?;
            let (_, table, rowid) = key.value();
            rows.push((table.to_owned(), rowid));
        }
        for (table, rowid) in &rows {
            self.extra_by_session.remove((id, table.as_str(), *rowid))?;
            self.extra_rows.remove((table.as_str(), *rowid))?;
        }
        for (key, _) in self.idempotency_keys_of(id)? {
            self.idempotency_keys.remove((id, key.as_str()))?;
        }
        self.remove_fork_entries(id)?;
        Ok(messages.len() as u64)
    }

    /// The idempotency keys of `session`, with what each stored.
    fn idempotency_keys_of(&mut self, session: u128) -> Result<Vec<(String, IdempotencyRecord)>> {
        let end = match session.checked_add(1) {
            Some(next) => Bound::Excluded((next, "")),
            None => Bound::Unbounded,
        };
        let mut keys = Vec::new();
        let range = self
            .idempotency_keys
            .table()?
            .range::<(u128, &str)>((Bound::Included((session, "")), end))?;
        for entry in range {
            let (key, value) = entry?;
            let name = key.value().1;
            let record = decode(RecordKey::IdempotencyKey(session, name), value.value())?;
            keys.push((name.to_owned(), record));
        }
        Ok(keys)
    }

    /// What the idempotent append of `session` under `key` stored, if it is
    /// remembered still.
    pub fn idempotency_key(&mut self, session: u128, key: &str) -> Result<Option<IdempotencyRecord>> {
        match self.idempotency_keys.table()?.get((session, key))? {
            Some(value) => Ok(Some(decode(
                RecordKey::IdempotencyKey(session, key),
                value.value(),
            )?)),
            None => Ok(None),
        }
    }

    /// Stores what the idempotent append of `session` under `key` gave, and
    /// forgets the session's keys older than 24 hours
    /// ([`IDEMPOTENCY_KEY_MICROS`]) and all but its newest
    /// [`IDEMPOTENCY_KEYS_PER_SESSION`]: the table stays bounded by the
    /// sessions' count, and a deleted session's keys go with it.
    pub fn remember_idempotency_key(
        &mut self,
        session: u128,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<()> {
        let now = record.created_micros;
        self.idempotency_keys.insert(
            (session, key),
            encode(RecordKey::IdempotencyKey(session, key), record)?.as_slice(),
        )?;
        let mut kept = self.idempotency_keys_of(session)?;
        kept.sort_by_key(|(_, record)| std::cmp::Reverse(record.created_micros));
        for (index, (name, record)) in kept.iter().enumerate() {
            let stale = now.saturating_sub(record.created_micros) > IDEMPOTENCY_KEY_MICROS;
            if (stale || index >= IDEMPOTENCY_KEYS_PER_SESSION) && name != key {
                self.idempotency_keys.remove((session, name.as_str()))?;
            }
        }
        Ok(())
    }

    /// Records that session `fork` was forked from `parent`.
    pub fn add_fork(&mut self, parent: u128, fork: u128) -> Result<()> {
        self.forks.insert((parent, fork), ())?;
        self.fork_parents.insert(fork, parent)
    }

    /// Removes the fork entries of a session being deleted: its own (as a
    /// fork) and those of its forks (as a parent).
    fn remove_fork_entries(&mut self, id: u128) -> Result<()> {
        let parent = self.fork_parents.table()?.get(id)?.map(|g| g.value());
        if let Some(parent) = parent {
            self.fork_parents.remove(id)?;
            self.forks.remove((parent, id))?;
        }
        let mut forks = Vec::new();
        for entry in self.forks.table()?.range((id, 0)..=(id, u128::MAX))? {
            forks.push(entry?.0.value().1);
        }
        for fork in forks {
            self.forks.remove((id, fork))?;
            self.fork_parents.remove(fork)?;
        }
        Ok(())
    }

    /// Stores a row of a SQLite table the store does not interpret.
    pub fn put_extra_row(&mut self, table: &str, rowid: i64, record: &ExtraRowRecord) -> Result<()> {
        self.extra_rows.insert(
            (table, rowid),
            encode(RecordKey::ExtraRow(table, rowid), record)?.as_slice(),
        )?;
        if let Some(session) = record.session {
            self.extra_by_session.insert((session, table, rowid), ())?;
        }
        Ok(())
    }
}

/// The id the next message gets, from the `meta` table.
pub(crate) fn next_message_id(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    let guard = meta.get(META_NEXT_MESSAGE_ID)?;
    let bytes = guard.as_ref().map(|g| g.value()).unwrap_or(&[]);
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupt_record("meta", "next_message_id is not 8 bytes"))?;
    Ok(u64::from_le_bytes(array))
}

/// Whether every table of the store is in the file (a store's open
/// creates those missing: `initialise` in `store.rs`). By name, from redb's
/// table of tables, which the open reads anyway: opening each table reads
/// its root page (eight pages, 32 KiB, of a populated store that a clean
/// open otherwise never reads). A table of the right name but other key or
/// value types is refused where it is first opened (redb's
/// `TableTypeMismatch`).
pub(crate) fn check_layout(txn: &ReadTransaction) -> std::result::Result<bool, redb::StorageError> {
    use redb::TableHandle;
    let present: std::collections::HashSet<String> =
        txn.list_tables()?.map(|table| table.name().to_owned()).collect();
    Ok([
        META.name(),
        SESSIONS.name(),
        MESSAGES.name(),
        MESSAGE_IDS.name(),
        USER_ACTIVE.name(),
        USER_EXPIRED.name(),
        ACTIVE_BY_UPDATED.name(),
        EXPIRED_BY_TIME.name(),
        EXTRA_ROWS.name(),
        EXTRA_ROWS_BY_SESSION.name(),
        OPAQUE.name(),
        EXPIRY_EVENTS.name(),
        IDEMPOTENCY_KEYS.name(),
        FORKS.name(),
        FORK_PARENTS.name(),
        USER_CONTEXTS.name(),
        SEARCH_PENDING.name(),
        SEARCH_USER_NUMBERS.name(),
        SEARCH_STATS.name(),
        SEARCH_SEGMENTS.name(),
        SEARCH_TERMS.name(),
        SEARCH_TOMBSTONES.name(),
    ]
    .into_iter()
    .all(|name| present.contains(name)))
}

/// Reads and decodes a session record.
pub(crate) fn session_record(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: u128,
) -> Result<Option<SessionRecord>> {
    match table.get(id)? {
        Some(bytes) => Ok(Some(decode(RecordKey::Session(id), bytes.value())?)),
        None => Ok(None),
    }
}

/// Reads and decodes one message record.
pub(crate) fn message_record(
    table: &impl ReadableTable<(u128, u64), &'static [u8]>,
    session: u128,
    seq: u64,
) -> Result<Option<MessageRecord>> {
    match table.get((session, seq))? {
        Some(bytes) => Ok(Some(decode(RecordKey::Message(session, seq), bytes.value())?)),
        None => Ok(None),
    }
}

/// Opens `definition` for reading; `None` when the file does not have the
/// table (a table is created by the first write that needs it, and files
/// written by earlier versions lack the newer tables).
pub(crate) fn open_if_present<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The lsn of the last journal record the database holds (0: none yet).
pub(crate) fn journal_lsn(txn: &ReadTransaction) -> Result<u64> {
    let Some(meta) = open_if_present(txn, META)? else {
        return Ok(0);
    };
    let Some(guard) = meta.get(META_JOURNAL_LSN)? else {
        return Ok(0);
    };
    let array: [u8; 8] = guard
        .value()
        .try_into()
        .map_err(|_| Error::corrupt_record("meta", "journal_lsn is not 8 bytes"))?;
    Ok(u64::from_le_bytes(array))
}

/// Number of entries of a table in a read transaction.
pub(crate) fn count<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64> {
    Ok(txn.open_table(table)?.len()?)
}

/// A table for writing that logs every change made through it: puts and
/// removes of raw key and value bytes, which replay blindly (the last change
/// of a key wins, whatever the state replayed over). Reads go to the table
/// itself ([`Logged::table`]).
///
/// The table is opened at its first use: a commit looks up, in redb's table
/// of tables, every table opened in its transaction, and an append touches
/// about half of them.
pub(crate) struct Logged<'txn, K: Key + 'static, V: Value + 'static> {
    txn: &'txn WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    table: Option<Table<'txn, K, V>>,
    tag: u8,
    log: Vec<u8>,
    /// False for writes that are not journaled (a bulk import).
    logging: bool,
}

const PUT: u8 = 1;
const REMOVE: u8 = 2;

impl<'txn, K: Key + 'static, V: Value + 'static> Logged<'txn, K, V> {
    fn new(
        txn: &'txn WriteTransaction,
        definition: TableDefinition<'static, K, V>,
        tag: u8,
        logging: bool,
    ) -> Self {
        debug_assert_eq!(TABLE_TAGS[usize::from(tag)], definition.name());
        Logged {
            txn,
            definition,
            table: None,
            tag,
            log: Vec::new(),
            logging,
        }
    }

    /// The table, for reading (writes go through [`Logged::insert`] and
    /// [`Logged::remove`], which log them); opened now if not yet.
    pub fn table(&mut self) -> Result<&Table<'txn, K, V>> {
        Ok(self.opened()?)
    }

    fn opened(&mut self) -> Result<&mut Table<'txn, K, V>> {
        match &mut self.table {
            Some(table) => Ok(table),
            unopened => Ok(unopened.insert(self.txn.open_table(self.definition)?)),
        }
    }

    /// Inserts (or replaces) `key`.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<()> {
        let (key, value) = (key.borrow(), value.borrow());
        self.opened()?.insert(key, value)?;
        self.record(PUT, K::as_bytes(key).as_ref(), Some(V::as_bytes(value).as_ref()));
        Ok(())
    }

    /// Removes `key`; true when it was there.
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool> {
        let key = key.borrow();
        let found = self.opened()?.remove(key)?.is_some();
        if found {
            self.record(REMOVE, K::as_bytes(key).as_ref(), None);
        }
        Ok(found)
    }

    fn record(&mut self, kind: u8, key: &[u8], value: Option<&[u8]>) {
        if !self.logging {
            return;
        }
        self.log.push(self.tag);
        self.log.push(kind);
        push_bytes(&mut self.log, key);
        if let Some(value) = value {
            push_bytes(&mut self.log, value);
        }
    }
}

/// What is done to every table alike, whatever its key and value types.
trait AnyLogged {
    /// Opens the table (creating it when the file lacks it).
    fn open(&mut self) -> Result<()>;
    /// Moves the changes logged so far to the end of `out`.
    fn take_changes_into(&mut self, out: &mut Vec<u8>);
    /// Replays one logged change.
    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()>;
}

impl<K: Key + 'static, V: Value + 'static> AnyLogged for Logged<'_, K, V> {
    fn open(&mut self) -> Result<()> {
        self.opened().map(drop)
    }

    fn take_changes_into(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.log);
    }

    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let table = TABLE_TAGS[usize::from(self.tag)];
        check_width(table, "key", K::fixed_width(), key)?;
        let key = K::from_bytes(key);
        match value {
            Some(value) => {
                check_width(table, "value", V::fixed_width(), value)?;
                self.insert(&key, V::from_bytes(value))
            }
            None => self.remove(&key).map(drop),
        }
    }
}

fn check_width(table: &'static str, what: &str, width: Option<usize>, bytes: &[u8]) -> Result<()> {
    match width {
        Some(width) if width != bytes.len() => Err(Error::corrupt_record(
            "journal",
            format!("{table}: a {what} of {} bytes where {width} belong", bytes.len()),
        )),
        _ => Ok(()),
    }
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB: redb refuses larger ones.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// One change of a change log.
struct Change<'a> {
    table: u8,
    key: &'a [u8],
    value: Option<&'a [u8]>,
}

impl<'a> Change<'a> {
    fn parse(log: &'a [u8]) -> Result<(Self, &'a [u8])> {
        let bad = |why: &str| Error::corrupt_record("journal", why.to_owned());
        let [table, kind, rest @ ..] = log else {
            return Err(bad("a change cut short"));
        };
        let (key, rest) = take_bytes(rest).ok_or_else(|| bad("a key cut short"))?;
        let (value, rest) = match *kind {
            PUT => {
                let (value, rest) = take_bytes(rest).ok_or_else(|| bad("a value cut short"))?;
                (Some(value), rest)
            }
            REMOVE => (None, rest),
            _ => return Err(bad("unknown change kind")),
        };
        Ok((
            Change {
                table: *table,
                key,
                value,
            },
            rest,
        ))
    }
}

fn take_bytes(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Replays the journal's batches, change logs in the order written, into
/// `txn`, recording `last` as the journal lsn the database holds (the
/// journal's `ApplyBatches`).
pub(crate) fn replay_batches(
    txn: &WriteTransaction,
    batches: &mut dyn Iterator<Item = &[u8]>,
    last: u64,
) -> Result<()> {
    let mut tables = WriteTables::open(txn);
    for batch in batches {
        tables.apply_changes(batch)?;
    }
    tables.set_journal_lsn(last)
}
