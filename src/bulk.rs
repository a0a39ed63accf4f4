//! Bulk access for conversion: [`Snapshot`] reads everything as of one
//! moment, [`Importer`] loads data as it is (ids, timestamps, extra rows).
//! Each wraps what the store's engine gives.

use uuid::Uuid;

use crate::engine::{ImportSink, SnapshotSource};
use crate::error::Result;
use crate::model::{ExtraRow, Message, SessionInfo};
use crate::store::SessionStore;

/// A consistent, read-only view of the whole store at one moment.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
/// let id = store.create_session(Some("ana")).unwrap();
/// store.add_message(id, sessionstore::NewMessage::user("hi")).unwrap();
/// let snapshot = store.snapshot().unwrap();
/// for session in snapshot.sessions().unwrap() {
///     let session = session.unwrap();
///     let messages: Vec<_> = snapshot.messages(session.session_id).unwrap().collect();
///     assert_eq!(messages.len(), 1);
/// }
/// ```
pub struct Snapshot {
    source: Box<dyn SnapshotSource>,
}

impl SessionStore {
    /// The files a store at `path` keeps beside it (its journal). A tool
    /// that writes a store under a temporary name and renames it into place
    /// moves these with it, once the store is closed.
    ///
    /// ```
    /// let files = sessionstore::SessionStore::files_beside(std::path::Path::new("data/s.redb"));
    /// assert_eq!(files, [std::path::Path::new("data/s.redb-journal")]);
    /// ```
    pub fn files_beside(path: &std::path::Path) -> Vec<std::path::PathBuf> {
        vec![crate::engine::redb::journal::journal_path(path)]
    }

    /// A consistent view of everything in the store, unaffected by later writes.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            source: self.engine().snapshot()?,
        })
    }

    /// A loader for sessions and messages as they are (ids, timestamps,
    /// extra columns kept). Writes are batched into large commits that are
    /// not synced and not journaled, made on a thread of their own while the
    /// caller prepares the next batch; [`Importer::finish`] makes them
    /// durable with one synced commit. Until then a crash loses the import
    /// (load into a new file, as the converter does, to have all or
    /// nothing). Other writes may go on meanwhile: the first one after an
    /// import's batch commits durably, with that batch (its ids indexed
    /// first), so that a crash loses only what was loaded since and never
    /// a write that read what the import loaded.
    /// The messages' ids are indexed in large runs in id order (an import
    /// brings them in session order), so until [`Importer::finish`] returns
    /// a message loaded may not yet be found by its id or counted.
    pub fn importer(&self) -> Importer {
        Importer {
            sink: self.engine().importer(),
        }
    }
}

impl Snapshot {
    /// Every session (expired ones too), in id order, without messages.
    pub fn sessions(&self) -> Result<impl Iterator<Item = Result<SessionInfo>> + '_> {
        self.source.sessions()
    }

    /// The messages of one session, in seq order.
    pub fn messages(&self, session: Uuid) -> Result<impl Iterator<Item = Result<Message>> + '_> {
        self.source.messages(session)
    }

    /// Every message of every session, in global id order, with the
    /// session it belongs to (what a SQLite `chat_messages` table lists).
    pub fn messages_by_id(&self) -> Result<impl Iterator<Item = Result<(Uuid, Message)>> + '_> {
        self.source.messages_by_id()
    }

    /// Every extra row, by table then rowid.
    pub fn extra_rows(&self) -> Result<impl Iterator<Item = Result<ExtraRow>> + '_> {
        self.source.extra_rows()
    }

    /// An opaque value stored by [`Importer::set_opaque`].
    pub fn opaque(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.source.opaque(key)
    }

    /// The id the next message would get: one above the highest ever given.
    pub fn next_message_id(&self) -> Result<u64> {
        self.source.next_message_id()
    }

    /// How many sessions (active and expired).
    pub fn session_count(&self) -> Result<u64> {
        self.source.session_count()
    }

    /// How many messages.
    pub fn message_count(&self) -> Result<u64> {
        self.source.message_count()
    }

    /// How many extra rows ([`Snapshot::extra_rows`] yields them).
    pub fn extra_row_count(&self) -> Result<u64> {
        self.source.extra_row_count()
    }
}

/// Loads data as it is; see [`SessionStore::importer`].
///
/// Rules are checked as in any write: a duplicate session or message id, a
/// message of a session not loaded, JSON that is not an object, are
/// refused with an error naming the id, and nothing of the refused call's
/// batch is committed.
///
/// ```
/// use sessionstore::{Message, NewMessage, Role, SessionStore, Timestamp};
/// # let dir = tempfile::tempdir().unwrap();
/// # let source = SessionStore::open(dir.path().join("a.redb")).unwrap();
/// # let id = source.create_session(Some("ana")).unwrap();
/// # source.add_message(id, NewMessage::user("hi")).unwrap();
/// let target = SessionStore::open(dir.path().join("b.redb")).unwrap();
/// let snapshot = source.snapshot().unwrap();
/// let mut importer = target.importer();
/// for session in snapshot.sessions().unwrap() {
///     let session = session.unwrap();
///     let messages = snapshot.messages(session.session_id).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
///     importer.add_session(session.clone()).unwrap();
///     importer.add_messages(session.session_id, messages).unwrap();
/// }
/// importer.finish().unwrap();
/// assert_eq!(target.get_session(id).unwrap(), source.get_session(id).unwrap());
/// ```
pub struct Importer {
    sink: Box<dyn ImportSink>,
}

impl Importer {
    /// Adds a session (its `message_count` is set from the messages added).
    ///
    /// Its JSON values are objects already: a [`JsonText`](crate::JsonText) is checked when
    /// it is made.
    pub fn add_session(&mut self, session: SessionInfo) -> Result<()> {
        self.sink.add_session(session)
    }

    /// Adds the messages of a session added before. They are put in order
    /// of timestamp instant, then id, and given seqs from the session's
    /// current count on; `seq` fields are ignored.
    pub fn add_messages(&mut self, session: Uuid, messages: Vec<Message>) -> Result<()> {
        self.sink.add_messages(session, messages)
    }

    /// Adds a row of a table the store carries without interpreting it.
    pub fn add_extra_row(&mut self, row: ExtraRow) -> Result<()> {
        self.sink.add_extra_row(row)
    }

    /// Stores an opaque named value (the converter's SQLite schema, ...).
    pub fn set_opaque(&mut self, key: &str, value: Vec<u8>) -> Result<()> {
        self.sink.set_opaque(key, value)
    }

    /// Raises the next message id to at least `next` (the SQLite
    /// `sqlite_sequence` high-water mark plus one).
    pub fn raise_next_message_id(&mut self, next: u64) {
        self.sink.raise_next_message_id(next)
    }

    /// Commits what is pending, durably, and ends the import. Returns the
    /// first error of any batch.
    pub fn finish(self) -> Result<()> {
        self.sink.finish()
    }
}
