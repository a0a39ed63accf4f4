//! [`SessionStore`]: the public API. Reads run on the caller's thread in their
//! own read transaction; writes go to the writer (see `writer.rs`).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use uuid::Uuid;

use crate::cache::{Edit, MessageCache, Ticket};
use crate::encoding::{decode, MessageRecord, RecordKey, SessionRecord, StoredTimestamp};
use crate::error::{Error, Result};
use crate::expiry::{self, Expiry, ExpiryState};
use crate::journal::{journal_path, Journal};
use crate::json::{shallow_merge, JsonText};
use crate::maintenance::Progress;
use crate::model::{
    Message, NewMessage, Role, Session, SessionCursor, SessionInfo, SessionPage, SessionSummary, Stats,
    StoreCounters,
};
use crate::storage::{DatabaseFile, FileRole, FileStorage, StorageFactory};
use crate::tables::{self, IdempotencyRecord, WriteTables};
use crate::timestamp::Timestamp;
use crate::writer::{Durability, Writer};

/// The store file format this build reads and writes.
///
/// Version 2 gave every record a checksum over its bytes and its key, and
/// session records a revision; files of version 1 (records without them)
/// are refused with [`Error::UnsupportedVersion`].
pub const FORMAT_VERSION: u32 = 2;

/// Settings for [`SessionStore::open_with`].
#[derive(Clone)]
pub struct StoreOptions {
    /// Largest message content accepted, in bytes (default 64 MiB).
    pub max_content_bytes: usize,
    /// Durability of writes made through this handle (default durable).
    pub durability: Durability,
    /// redb's page cache size in bytes (default 256 MiB).
    pub cache_bytes: usize,
    /// Budget in bytes of the message cache (default 64 MiB; 0 disables
    /// it): the decoded messages of the sessions read lately, which
    /// [`SessionStore::get_session`] and the paging calls then hand out
    /// without decoding or copying them again. An entry is served only for
    /// the revision of the session it was read at, so a read never sees a
    /// stale message; the writer brings entries up to date after each
    /// commit (an append, a pop, a new context), and drops those of deleted
    /// sessions. Messages a caller still holds are not counted.
    ///
    /// ```
    /// use sessionstore::{NewMessage, SessionStore, StoreOptions};
    /// use std::sync::Arc;
    /// let dir = tempfile::tempdir().unwrap();
    /// let options = StoreOptions { message_cache_bytes: 16 << 20, ..StoreOptions::default() };
    /// let store = SessionStore::open_with(dir.path().join("s.redb"), options).unwrap();
    /// let id = store.create_session(None).unwrap();
    /// store.add_message(id, NewMessage::user("books by Aldus")).unwrap();
    /// let first = store.get_session(id).unwrap().unwrap();
    /// let again = store.get_session(id).unwrap().unwrap();
    /// assert!(Arc::ptr_eq(&first.messages[0], &again.messages[0]));
    /// ```
    pub message_cache_bytes: usize,
    /// Opens every file the store reads and writes (default [`FileStorage`]:
    /// real files). See [`StorageFactory`] for a wrapper.
    pub storage: Arc<dyn StorageFactory>,
    /// The largest size in bytes the write-ahead journal beside the store
    /// grows to (default 32 MiB; from [`StoreOptions::MIN_JOURNAL_BYTES`]
    /// to [`StoreOptions::MAX_JOURNAL_BYTES`], else the open fails with
    /// [`Error::InvalidInput`]).
    ///
    /// A durable write is acknowledged once its batch's record is appended
    /// to the journal and synced; the database catches up with one durable
    /// commit (a checkpoint) every 256 records, 500 ms, or when half of
    /// this size is used, after which the journal starts over. The journal
    /// is sized to the load: it starts at
    /// [`StoreOptions::MIN_JOURNAL_BYTES`] and doubles when a batch's record
    /// does not fit in what is left (the new part written with zeros and
    /// synced before a record goes there, so that an append never
    /// allocates), up to this size; it is halved after a long run of
    /// checkpoints that used at most a quarter of it, and cut back to the
    /// smallest size when the store closes. A batch whose record does not
    /// fit even at this size (a message larger than the journal included)
    /// is committed durably to the database directly, which empties the
    /// journal: as durable, just slower.
    ///
    /// A journal found longer than this at an open is replayed as it is,
    /// then cut to this size. [`SessionStore::stats`] reports the
    /// journal's size.
    ///
    /// ```
    /// use sessionstore::{NewMessage, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let journal_size = |store: &SessionStore| store.stats().unwrap().journal_size;
    /// // About 100 KB that compression cannot shrink.
    /// let big: String = (0..3000).map(|_| sessionstore::Uuid::new_v4().simple().to_string()).collect();
    /// let store = SessionStore::open(&path)?;
    /// let id = store.create_session(None)?;
    /// // A new store's journal is the smallest.
    /// assert_eq!(journal_size(&store), StoreOptions::MIN_JOURNAL_BYTES);
    /// // A batch of 100 KB grows it, as far as that batch needs.
    /// store.add_message(id, NewMessage::user(big.clone()))?;
    /// assert!(journal_size(&store) > StoreOptions::MIN_JOURNAL_BYTES);
    /// assert!(journal_size(&store) <= 1 << 20);
    /// drop(store);
    ///
    /// // At most the smallest journal: the big message is committed
    /// // durably to the database instead.
    /// let options = StoreOptions {
    ///     max_journal_bytes: StoreOptions::MIN_JOURNAL_BYTES,
    ///     ..StoreOptions::default()
    /// };
    /// let store = SessionStore::open_with(&path, options.clone())?;
    /// store.add_message(id, NewMessage::user(big))?;
    /// store.add_message(id, NewMessage::user("journaled"))?;
    /// assert_eq!(journal_size(&store), StoreOptions::MIN_JOURNAL_BYTES);
    /// drop(store);
    /// let store = SessionStore::open_with(&path, options)?;
    /// assert_eq!(store.get_session(id)?.unwrap().messages.len(), 3);
    ///
    /// let too_small = StoreOptions { max_journal_bytes: 4096, ..StoreOptions::default() };
    /// let error = SessionStore::open_with(dir.path().join("t.redb"), too_small).unwrap_err();
    /// assert!(matches!(error, sessionstore::Error::InvalidInput { what: "max_journal_bytes", .. }));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub max_journal_bytes: u64,
    /// Whether an open that has a crash to recover from (journal records
    /// the database does not hold yet) first verifies redb's checksum of
    /// every page of the database (default `true`). An open after a clean
    /// close never does.
    ///
    /// The check reads the whole file: about 0.45 s for a store of 570 MB
    /// here, against about 3 ms for the same open without it. What it
    /// buys: a store damaged as well as crashed (a disk error on top of a
    /// kill) is refused at the open with [`Error::Corrupt`], before the
    /// replay writes over the damage. Without it the records are replayed
    /// into the file as it is. Of 20,000 randomly damaged crashed and clean
    /// copies in the long damage test (`tests/reliability_damage.rs`), none
    /// read back as different data either way (each record carries a
    /// checksum that every read verifies), but about one in nine was found
    /// damaged at a read instead of at the open, and on 1 to 4 of them
    /// (in three runs) redb aborted the process in the replay's commit (a
    /// panic on a damaged page of its free-page table, then a second one
    /// while unwinding, which no caller can catch). [`SessionStore::check`]
    /// verifies the same pages on demand.
    ///
    /// Turn it off when a quick restart after a crash matters more than
    /// that: a large store behind a service that is restarted when it
    /// dies.
    ///
    /// ```
    /// use sessionstore::{NewMessage, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let options = StoreOptions { verify_after_crash: false, ..StoreOptions::default() };
    /// let store = SessionStore::open_with(dir.path().join("s.redb"), options)?;
    /// let id = store.create_session(None)?;
    /// store.add_message(id, NewMessage::user("hello"))?;
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub verify_after_crash: bool,
    /// Whether an open creates the store when there is none (default
    /// `true`): the file missing (its folders are created too), empty, or
    /// holding nothing but zeros where redb's header goes (a creation cut
    /// short).
    ///
    /// `false` opens an existing store only: the open fails with
    /// [`Error::NoStore`] and creates or changes no file, not even the
    /// journal. (Whether the file is missing is asked of the file system,
    /// whatever [`StoreOptions::storage`] is.)
    ///
    /// ```
    /// use sessionstore::{Error, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let existing = StoreOptions { create_if_missing: false, ..StoreOptions::default() };
    /// let error = SessionStore::open_with(&path, existing.clone()).unwrap_err();
    /// assert!(matches!(error, Error::NoStore { .. }), "{error}");
    /// assert!(!path.exists());
    /// // An empty file is no store either, and stays as it is.
    /// std::fs::write(&path, b"")?;
    /// let error = SessionStore::open_with(&path, existing.clone()).unwrap_err();
    /// assert!(error.to_string().contains("empty"), "{error}");
    /// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
    ///
    /// drop(SessionStore::open(&path)?);
    /// SessionStore::open_with(&path, existing)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub create_if_missing: bool,
    /// Opens the store to read it only (default `false`): no file is
    /// written, created or locked for writing, so a store whose files the
    /// process may only read (mode 0444, a read-only mount, another
    /// account's files) can be read. Every write is refused with
    /// [`Error::ReadOnly`].
    ///
    /// A store that was not closed cleanly is recovered in memory: redb's
    /// repair and the replay of its journal are kept in memory (the pages
    /// they rewrite: about the size of the journal's records, at most), and
    /// the reads see every acknowledged write; the files stay as they are,
    /// for the next open for writing to recover. As an open for writing,
    /// it refuses a crashed store whose journal is missing, cut short or
    /// another run's ([`Error::JournalLost`]). The file must exist. As an
    /// open for writing, it is refused while another process has the store
    /// open for writing ([`Error::InUse`]), and it holds off such an open
    /// while it lasts.
    ///
    /// ```
    /// use sessionstore::{Error, NewMessage, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let store = SessionStore::open(&path)?;
    /// let id = store.create_session(Some("ana"))?;
    /// store.add_message(id, NewMessage::user("hello"))?;
    /// drop(store);
    ///
    /// let options = StoreOptions { read_only: true, ..StoreOptions::default() };
    /// let store = SessionStore::open_with(&path, options)?;
    /// assert_eq!(store.get_session(id)?.unwrap().messages[0].content, "hello");
    /// let refused = store.add_message(id, NewMessage::user("more")).unwrap_err();
    /// assert!(matches!(refused, Error::ReadOnly { .. }));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub read_only: bool,
    /// Whether the store serves its HTTP API (see [`crate::server`]) on a
    /// local Unix socket while open (default `true` where the library is
    /// built with its feature `socket`, on by default; ignored without
    /// it). The socket, `<file>.sock` (see `SessionStore::socket_path`),
    /// has mode 0600 and serves only the process's own user and root,
    /// with full rights: the CLI, a cron job's cleanup, a backup reach the
    /// store while this process holds it. It is removed on close. A
    /// socket that cannot be made (a read-only folder, say) is logged and
    /// left out; the open goes on. A [`StoreOptions::read_only`] store
    /// serves none (it writes no file).
    pub serve_socket: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_content_bytes: 64 << 20,
            durability: Durability::Durable,
            cache_bytes: 256 << 20,
            message_cache_bytes: 64 << 20,
            storage: Arc::new(FileStorage),
            max_journal_bytes: 32 << 20,
            verify_after_crash: true,
            create_if_missing: true,
            read_only: false,
            serve_socket: cfg!(feature = "socket"),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("max_content_bytes", &self.max_content_bytes)
            .field("durability", &self.durability)
            .field("cache_bytes", &self.cache_bytes)
            .field("message_cache_bytes", &self.message_cache_bytes)
            .field("max_journal_bytes", &self.max_journal_bytes)
            .field("verify_after_crash", &self.verify_after_crash)
            .field("create_if_missing", &self.create_if_missing)
            .field("read_only", &self.read_only)
            .field("serve_socket", &self.serve_socket)
            .finish_non_exhaustive()
    }
}

impl StoreOptions {
    /// The size a new journal starts at, and the smallest
    /// [`StoreOptions::max_journal_bytes`] (64 KiB): below it, most batches
    /// would skip the journal for a durable database commit.
    pub const MIN_JOURNAL_BYTES: u64 = 64 << 10;
    /// The largest [`StoreOptions::max_journal_bytes`] (1 GiB): a checkpoint
    /// follows every 256 records anyway, and an open may read the whole
    /// journal into memory.
    pub const MAX_JOURNAL_BYTES: u64 = 1 << 30;

    /// Refuses settings the store cannot work with.
    fn validate(&self) -> Result<()> {
        let range = Self::MIN_JOURNAL_BYTES..=Self::MAX_JOURNAL_BYTES;
        if !range.contains(&self.max_journal_bytes) {
            return Err(Error::invalid(
                "max_journal_bytes",
                format!(
                    "{} bytes is outside {}..={} (64 KiB to 1 GiB)",
                    self.max_journal_bytes,
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(())
    }

    /// Opens the redb database at `path` through [`StoreOptions::storage`],
    /// creating it when missing or empty if
    /// [`StoreOptions::create_if_missing`], its writes held (see
    /// [`DatabaseFile`]): the caller releases them once it has decided to
    /// go on. Read-only: the file must exist, and is never written.
    ///
    /// A file whose creation was cut short (the process killed while redb
    /// wrote its first header, which gets its magic number last) holds
    /// nothing: it is created again instead of being refused as corrupt
    /// (or refused as no store, when the open may not create one or is
    /// read-only).
    pub(crate) fn open_database(&self, path: &Path) -> Result<(Database, DatabaseFile)> {
        if !self.create_if_missing {
            self.refuse_no_file(path)?;
        }
        match self.open_database_once(path) {
            Err(Error::Corrupt { .. }) if self.is_unfinished_creation(path)? => {
                if !self.create_if_missing || self.read_only {
                    return Err(no_store(
                        path,
                        "the file holds nothing but zeros (at most the header of a creation cut short)",
                    ));
                }
                tracing::warn!(path = %path.display(), "the store's creation was cut short; creating it again");
                self.clear(path)?;
                self.open_database_once(path)
            }
            other => other,
        }
    }

    /// Fails with [`Error::NoStore`] when `path` is missing or empty,
    /// before anything opens it: redb would make a store of it.
    fn refuse_no_file(&self, path: &Path) -> Result<()> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_store(path, "no such file")),
            Err(e) => Err(Error::io("read the size of", path, e)),
            Ok(_) => {
                let len = self
                    .open_backend(path)?
                    .len()
                    .map_err(|e| Error::io("read the size of", path, e))?;
                if len == 0 {
                    return Err(no_store(path, "the file is empty"));
                }
                Ok(())
            }
        }
    }

    fn open_database_once(&self, path: &Path) -> Result<(Database, DatabaseFile)> {
        let backend = self.open_backend(path)?;
        let file = if self.read_only {
            DatabaseFile::read_only(backend)
        } else {
            DatabaseFile::opening(backend)
        }
        .map_err(|e| Error::io("open", path, e))?;
        let db = redb::Builder::new()
            .set_cache_size(self.cache_bytes)
            .create_with_backend(file.clone())
            .map_err(|e| open_error(path, e))?;
        Ok((db, file))
    }

    /// The journal at `path` opened to be read only; `None` when there is
    /// none.
    fn look_at_journal(&self, path: &Path) -> Result<Option<Box<dyn redb::StorageBackend>>> {
        match self.storage.open_read_only(path, FileRole::Journal) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open", path, e)),
        }
    }

    /// The database file as the open uses it: to read only when
    /// [`StoreOptions::read_only`].
    fn open_backend(&self, path: &Path) -> Result<Box<dyn redb::StorageBackend>> {
        if self.read_only {
            self.storage.open_read_only(path, FileRole::Database)
        } else {
            self.storage.open(path, FileRole::Database)
        }
        .map_err(|e| Error::io("open", path, e))
    }

    /// Whether the file at `path` is what a creation cut short leaves: no
    /// magic number (zeros in its place), and nothing but zeros after the
    /// header redb writes first.
    fn is_unfinished_creation(&self, path: &Path) -> Result<bool> {
        /// redb's magic number, and its header, are this long.
        const MAGIC_BYTES: u64 = 9;
        const HEADER_BYTES: u64 = 320;
        /// A new redb file is far smaller: a larger one was never that.
        const LARGEST: u64 = 16 << 20;
        let backend = self.open_backend(path)?;
        let io = |e: std::io::Error| Error::io("read", path, e);
        let len = backend.len().map_err(io)?;
        if len == 0 || len > LARGEST {
            return Ok(false);
        }
        let mut chunk = vec![0u8; 64 << 10];
        let mut at = 0;
        while at < len {
            let n = chunk.len().min((len - at) as usize);
            backend.read(at, &mut chunk[..n]).map_err(io)?;
            let stray = chunk[..n].iter().enumerate().any(|(i, &byte)| {
                let offset = at + i as u64;
                byte != 0 && !(MAGIC_BYTES..HEADER_BYTES).contains(&offset)
            });
            if stray {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    /// Empties the file at `path`, a creation cut short.
    fn clear(&self, path: &Path) -> Result<()> {
        let backend = self.open_backend(path)?;
        let io = |e: std::io::Error| Error::io("clear the unfinished", path, e);
        backend.set_len(0).map_err(io)?;
        backend.sync_data().map_err(io)
    }
}

/// [`Error::NoStore`] for `path`.
fn no_store(path: &Path, why: &'static str) -> Error {
    Error::NoStore {
        path: path.to_path_buf(),
        why,
    }
}

/// Who may see a session: anyone (the operator's API) or one user.
#[derive(Clone, Copy, Debug)]
pub enum Access<'a> {
    /// Every session.
    Any,
    /// The sessions of this user only.
    Owner(&'a str),
}

impl Access<'_> {
    pub(crate) fn allows(self, record: &SessionRecord) -> bool {
        match self {
            Access::Any => true,
            Access::Owner(user) => record.user_id.as_deref() == Some(user),
        }
    }

    pub(crate) fn to_owned(self) -> OwnedAccess {
        match self {
            Access::Any => OwnedAccess::Any,
            Access::Owner(user) => OwnedAccess::Owner(user.to_owned()),
        }
    }
}

/// [`Access`] moved into a write job.
pub(crate) enum OwnedAccess {
    Any,
    Owner(String),
}

impl OwnedAccess {
    pub(crate) fn borrow(&self) -> Access<'_> {
        match self {
            OwnedAccess::Any => Access::Any,
            OwnedAccess::Owner(user) => Access::Owner(user),
        }
    }
}

struct Inner {
    path: PathBuf,
    db: Arc<RwLock<Database>>,
    /// `None` when the store is read-only.
    writer: Option<Writer>,
    options: StoreOptions,
    expiry: Arc<ExpiryState>,
    cache: Arc<MessageCache>,
    /// Marks the file held by this process; last, so that it is released
    /// once the file is closed.
    _held: crate::open_files::Held,
}

/// A store of chat sessions in one redb file.
///
/// Cheap to clone (clones share one file and one writer), `Send + Sync`.
/// The file is closed, after a final durable commit, when the last clone is
/// dropped.
///
/// ```
/// use sessionstore::{NewMessage, SessionStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SessionStore::open(dir.path().join("chat/sessions.redb")).unwrap();
///
/// let session = store.create_session(Some("user123")).unwrap();
/// store.add_message(session, NewMessage::user("Find books by Oxford")).unwrap();
/// store
///     .add_message(session, NewMessage::assistant("Found 15 books by Oxford University Press"))
///     .unwrap();
/// store
///     .update_context(session, r#"{"last_publisher": "Oxford", "last_result_count": 15}"#)
///     .unwrap();
///
/// let loaded = store.get_session(session).unwrap().expect("active session");
/// assert_eq!(loaded.messages.len(), 2);
/// assert_eq!(loaded.messages[1].content, "Found 15 books by Oxford University Press");
/// assert_eq!(store.list_user_sessions("user123", false).unwrap(), vec![session]);
/// ```
#[derive(Clone)]
pub struct SessionStore {
    /// The local socket, shared by the caller's handles only (the
    /// socket's own handle has `None`): the last of them to go stops it,
    /// before `inner` goes and the store closes.
    #[cfg(all(feature = "socket", unix))]
    socket: Option<Arc<crate::socket::LocalSocket>>,
    inner: Arc<Inner>,
    durability: Durability,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SessionStore {
    /// Opens the store at `path`, creating its parent folders and the file
    /// when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the store at `path` to read it only: see
    /// [`StoreOptions::read_only`].
    ///
    /// ```
    /// use sessionstore::SessionStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let id = SessionStore::open(&path)?.create_session(None)?;
    /// let store = SessionStore::open_read_only(&path)?;
    /// assert!(store.get_session(id)?.is_some());
    /// assert!(store.create_session(None).unwrap_err().is_refusal());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let options = StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        };
        Self::open_with(path, options)
    }

    /// Opens the store with the given options.
    ///
    /// After a crash, the journal's records the database lacks are
    /// replayed. An open that cannot go on (the file is damaged, not a
    /// store, of another version, or in use; the store was not closed
    /// cleanly and its journal is missing, cut short or another run's:
    /// [`Error::JournalLost`]) changes no file: it fails the same way when
    /// tried again.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        options.validate()?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent.filter(|_| options.create_if_missing && !options.read_only) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create folder", parent, e))?;
        }
        let (db, journal, expiry, held) = guard_panics(&path, || {
            let (mut db, file) = options.open_database(&path)?;
            let held = crate::open_files::hold(&path);
            initialise(&path, &db)?;
            let journal_path = journal_path(&path);
            let recovery = Journal::inspect(
                options.look_at_journal(&journal_path)?,
                journal_path.clone(),
                options.verify_after_crash,
                &mut db,
            )?;
            let journal = if options.read_only {
                recovery.replay_in_memory(&mut db)?;
                None
            } else {
                let journal_file = options
                    .storage
                    .open(&journal_path, FileRole::Journal)
                    .map_err(|e| Error::io("open", &journal_path, e))?;
                let direct = options.storage.open_direct(&journal_path);
                // Decided: what the open wrote reaches the file.
                file.release().map_err(|e| Error::io("write", &path, e))?;
                Some(recovery.open_journal(journal_file, direct, options.max_journal_bytes, &mut db)?)
            };
            let expiry = Arc::new(ExpiryState::load(&db.begin_read()?)?);
            Ok((db, journal, expiry, held))
        })?;
        let db = Arc::new(RwLock::new(db));
        let cache = Arc::new(MessageCache::new(options.message_cache_bytes));
        let writer = journal
            .map(|journal| Writer::start(&path, db.clone(), journal, expiry.clone(), cache.clone()))
            .transpose()?;
        #[allow(unused_mut)]
        let mut store = SessionStore {
            #[cfg(all(feature = "socket", unix))]
            socket: None,
            durability: options.durability,
            inner: Arc::new(Inner {
                path,
                db,
                writer,
                options,
                expiry,
                cache,
                _held: held,
            }),
        };
        #[cfg(all(feature = "socket", unix))]
        // A read-only store writes no file, the socket's included.
        if store.inner.options.serve_socket && !store.inner.options.read_only {
            match crate::socket::LocalSocket::start(store.clone()) {
                Ok(socket) => store.socket = Some(Arc::new(socket)),
                Err(e) => {
                    tracing::warn!(store = %store.inner.path.display(), error = %e, "serving no local socket")
                }
            }
        }
        Ok(store)
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A handle to the same store whose writes use `durability` instead of
    /// the store's default.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use sessionstore::{Durability, NewMessage, SessionStore};
    /// let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// let fast = store.with_durability(Durability::Relaxed);
    /// let id = fast.create_session(None).unwrap();
    /// fast.add_message(id, NewMessage::user("visible at once, on disk soon")).unwrap();
    /// assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 1);
    /// ```
    pub fn with_durability(&self, durability: Durability) -> Self {
        SessionStore {
            durability,
            ..self.clone()
        }
    }

    /// A view that reads and writes only `user`'s sessions; any other session
    /// answers exactly as a missing one.
    pub fn for_user<'a>(&'a self, user: &'a str) -> UserView<'a> {
        UserView { store: self, user }
    }

    /// Runs `f` on a fresh read transaction, with the storage engine's
    /// panics on damaged pages turned into [`Error::Corrupt`].
    pub(crate) fn reading<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        guard_panics(&self.inner.path, || f(&self.read()?))
    }

    /// As [`reading`](Self::reading), with a ticket of the message cache
    /// taken before the transaction begins (see [`Self::session_messages`]).
    fn reading_messages<T>(&self, f: impl FnOnce(&ReadTransaction, Ticket) -> Result<T>) -> Result<T> {
        let ticket = self.inner.cache.ticket();
        self.reading(|txn| f(txn, ticket))
    }

    /// The messages `seqs` of session `id`, whose record `txn` holds is
    /// `record`: from the message cache when it has them at the record's
    /// revision, else read (and kept when they end the session).
    fn session_messages(
        &self,
        txn: &ReadTransaction,
        ticket: Ticket,
        id: Uuid,
        record: &SessionRecord,
        seqs: std::ops::Range<u64>,
    ) -> Result<Vec<Arc<Message>>> {
        let key = id.as_u128();
        self.inner
            .cache
            .messages(ticket, key, record.revision, record.message_count, seqs, |seqs| {
                read_messages(txn, key, seqs)
            })
    }

    pub(crate) fn read(&self) -> Result<ReadTransaction> {
        let db = self.inner.db.read().map_err(|_| Error::WriterStopped)?;
        Ok(db.begin_read()?)
    }

    pub(crate) fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTables<'_>) -> Result<T> + Send + 'static,
    {
        self.writer()?.write(self.durability, op)
    }

    /// The writer; [`Error::ReadOnly`] when the store is read-only.
    fn writer(&self) -> Result<&Writer> {
        self.inner.writer.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.inner.path.clone(),
        })
    }

    pub(crate) fn expiry_state(&self) -> Arc<ExpiryState> {
        self.inner.expiry.clone()
    }

    /// The lazy expiry rule over `txn`, which must have begun before.
    pub(crate) fn expiry<'t>(&self, txn: &'t ReadTransaction) -> Expiry<'t> {
        self.inner.expiry.view(txn)
    }

    pub(crate) fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    pub(crate) fn maintain<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Database) -> Result<T> + Send + 'static,
    {
        self.writer()?.maintain(op)
    }

    /// Runs `op` with the database to itself, as [`SessionStore::maintain`]
    /// does; in a read-only store too, whose writes stay in memory (`op`
    /// may only examine the database: redb's integrity check).
    pub(crate) fn examine<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Database) -> Result<T> + Send + 'static,
    {
        if self.inner.writer.is_some() {
            return self.maintain(op);
        }
        let mut db = self.inner.db.write().map_err(|_| Error::WriterStopped)?;
        op(&mut db)
    }

    pub(crate) fn maintain_importing<T, F>(&self, op: F) -> Result<T>
    where
        F: FnOnce(&mut Database, &mut crate::writer::Unindexed) -> Result<T>,
    {
        self.writer()?.maintain_importing(op)
    }

    // ---- sessions -------------------------------------------------------

    /// Creates a session (a new UUID v4, context and metadata `{}`) and
    /// returns its id. `None` makes an anonymous session.
    pub fn create_session(&self, user_id: Option<&str>) -> Result<Uuid> {
        let id = Uuid::new_v4();
        let now = StoredTimestamp::from(&Timestamp::now());
        let record = SessionRecord {
            user_id: user_id.map(str::to_owned),
            created_at: now.clone(),
            updated_at: now,
            expired_at: None,
            context: Some("{}".into()),
            metadata: Some("{}".into()),
            message_count: 0,
            extra: Vec::new(),
            revision: 0,
        };
        self.write(move |tables| {
            let key = id.as_u128();
            if tables.session(key)?.is_some() {
                return Err(Error::invalid("session_id", format!("{id} exists already")));
            }
            tables.put_session(key, None, record)
        })?;
        Ok(id)
    }

    /// The session with all its messages; `None` when missing or expired.
    pub fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        self.get_session_as(id, Access::Any)
    }

    fn get_session_as(&self, id: Uuid, access: Access<'_>) -> Result<Option<Session>> {
        self.reading_messages(|txn, ticket| {
            let Some(record) = self.active_session(txn, id, access)? else {
                return Ok(None);
            };
            let messages = self.session_messages(txn, ticket, id, &record, 0..record.message_count)?;
            Ok(Some(Session {
                info: record.into_info(id),
                messages,
            }))
        })
    }

    /// The session's own fields, expired or not; `None` only when missing.
    pub fn session_info(&self, id: Uuid) -> Result<Option<SessionInfo>> {
        self.reading(|txn| {
            let sessions = txn.open_table(tables::SESSIONS)?;
            let Some(mut record) = tables::session_record(&sessions, id.as_u128())? else {
                return Ok(None);
            };
            self.expiry(txn).apply(&mut record)?;
            Ok(Some(record.into_info(id)))
        })
    }

    /// Appends a message; returns its global id. Refused when the session is
    /// missing or expired. Sets the session's `updated_at`.
    pub fn add_message(&self, id: Uuid, message: NewMessage) -> Result<u64> {
        self.add_message_checked(id, None, message, Access::Any)
    }

    /// Appends a message only if it would get seq `expected_next_seq`;
    /// otherwise refuses with [`Error::SeqConflict`] and writes nothing.
    pub fn add_message_if(&self, id: Uuid, expected_next_seq: u64, message: NewMessage) -> Result<u64> {
        self.add_message_checked(id, Some(expected_next_seq), message, Access::Any)
    }

    /// Appends several messages in one commit, all or none (a user's turn
    /// and the reply to it); returns their global ids, in order. Refused as
    /// [`add_message`](Self::add_message) is, and when `messages` is empty
    /// ([`Error::InvalidInput`]: nothing to add, and the session is not
    /// touched).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None).unwrap();
    /// let ids = store
    ///     .add_messages(id, vec![NewMessage::user("books by Aldus"), NewMessage::assistant("Found 3 books")])
    ///     .unwrap();
    /// assert_eq!(ids.len(), 2);
    /// assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 2);
    /// ```
    pub fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
        self.append_messages(id, Append::checked(None), messages, Access::Any)
    }

    /// As [`add_messages`](Self::add_messages), only if the first message
    /// would get seq `expected_next_seq`; otherwise refuses with
    /// [`Error::SeqConflict`] and writes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::{Error, NewMessage};
    /// let id = store.create_session(None).unwrap();
    /// store.add_messages_if(id, 0, vec![NewMessage::user("hi"), NewMessage::assistant("hello")]).unwrap();
    /// let late = store.add_messages_if(id, 0, vec![NewMessage::user("hi")]).unwrap_err();
    /// assert!(matches!(late, Error::SeqConflict { actual: 2, .. }));
    /// ```
    pub fn add_messages_if(
        &self,
        id: Uuid,
        expected_next_seq: u64,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.append_messages(
            id,
            Append::checked(Some(expected_next_seq)),
            messages,
            Access::Any,
        )
    }

    /// As [`add_messages`](Self::add_messages) (or
    /// [`add_messages_if`](Self::add_messages_if) when
    /// `expected_next_seq` is given), remembering `key`, a text the caller
    /// chose for this append (1 to 255 bytes), in the same commit: a call
    /// again with the same session and key appends nothing and returns the
    /// ids the first call gave. A client that lost the answer (a dropped
    /// connection, a crash after the call) retries safely.
    ///
    /// A session remembers its keys for 24 hours, and its newest 64 of them
    /// (older ones are forgotten by its next idempotent append); deleting
    /// the session forgets them. The key is not checked against the
    /// messages: a different request under a remembered key gets the first
    /// one's ids too.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None).unwrap();
    /// let turn = || vec![NewMessage::user("books by Aldus"), NewMessage::assistant("Found 3 books")];
    /// let first = store.add_messages_idempotent(id, "turn-1", None, turn()).unwrap();
    /// let retry = store.add_messages_idempotent(id, "turn-1", None, turn()).unwrap();
    /// assert_eq!(first, retry);
    /// assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 2);
    /// ```
    pub fn add_messages_idempotent(
        &self,
        id: Uuid,
        key: &str,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        let append = Append::idempotent(key, expected_next_seq)?;
        self.append_messages(id, append, messages, Access::Any)
    }

    fn add_message_checked(
        &self,
        id: Uuid,
        expected_next_seq: Option<u64>,
        message: NewMessage,
        access: Access<'_>,
    ) -> Result<u64> {
        let mut added =
            self.append_messages(id, Append::checked(expected_next_seq), vec![message], access)?;
        added
            .pop()
            .ok_or_else(|| Error::invalid("messages", "none to add"))
    }

    /// Appends messages in one commit: all of them or none. Returns their ids.
    fn append_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
    ) -> Result<Vec<u64>> {
        check_append(&messages, self.inner.options.max_content_bytes)?;
        let access = access.to_owned();
        self.write(move |tables| {
            let key = id.as_u128();
            let visible = visible_session(tables, id, access.borrow())?;
            if let Some(idempotency_key) = &append.idempotency_key {
                if let Some(remembered) = tables.idempotency_key(key, idempotency_key)? {
                    return Ok(remembered.ids);
                }
            }
            let old = active_in_write(tables, id, visible)?;
            if let Some(expected) = append.expected_next_seq {
                if expected != old.message_count {
                    return Err(Error::SeqConflict {
                        session: id,
                        expected,
                        actual: old.message_count,
                    });
                }
            }
            let now = Timestamp::now();
            let first_id = tables.next_message_id()?;
            let mut new = old.clone();
            let mut added = Vec::with_capacity(messages.len());
            for (message_id, message) in (first_id..).zip(messages) {
                let record = MessageRecord {
                    id: message_id,
                    role: message.role,
                    content: message.content,
                    query_plan: message.query_plan.map(JsonText::into_string),
                    candidate_set: message.candidate_set.map(JsonText::into_string),
                    timestamp: (&now).into(),
                    extra: Vec::new(),
                    tokens: message.tokens,
                };
                tables.put_message(key, new.message_count, &record)?;
                added.push(Arc::new(record.into_message(new.message_count)));
                new.message_count += 1;
            }
            new.updated_at = (&now).into();
            tables.set_next_message_id(first_id + added.len() as u64)?;
            tables.put_session(key, Some(&old), new)?;
            let ids: Vec<u64> = added.iter().map(|m| m.id).collect();
            tables.describe_last_write(key, Edit::Appended(added));
            if let Some(idempotency_key) = &append.idempotency_key {
                let record = IdempotencyRecord {
                    created_micros: now.micros(),
                    ids: ids.clone(),
                };
                tables.remember_idempotency_key(key, idempotency_key, &record)?;
            }
            Ok(ids)
        })
    }

    /// Shallow-merges `context` (a JSON object) into the session's context,
    /// as Python's `{**old, **new}`; sets `updated_at`.
    pub fn update_context(&self, id: Uuid, context: &str) -> Result<()> {
        self.update_context_as(id, context, Access::Any)
    }

    fn update_context_as(&self, id: Uuid, context: &str, access: Access<'_>) -> Result<()> {
        let update = JsonText::object("context", context)?;
        let access = access.to_owned();
        self.write(move |tables| {
            let old = writable_session(tables, id, access.borrow())?;
            let merged = shallow_merge(old.context.clone().map(JsonText::trusted).as_ref(), &update)?;
            let mut new = old.clone();
            new.context = Some(merged.into_string());
            new.updated_at = (&Timestamp::now()).into();
            tables.put_session(id.as_u128(), Some(&old), new)?;
            tables.describe_last_write(id.as_u128(), Edit::Kept);
            Ok(())
        })
    }

    /// Expires a session (soft delete: its data stays). Returns false when it
    /// was expired already. Refused when missing.
    pub fn expire_session(&self, id: Uuid) -> Result<bool> {
        self.expire_session_as(id, Access::Any)
    }

    fn expire_session_as(&self, id: Uuid, access: Access<'_>) -> Result<bool> {
        let access = access.to_owned();
        self.write(move |tables| {
            let old = visible_session(tables, id, access.borrow())?;
            if expiry::expired_at(tables.expiry_events.table()?, &old)?.is_some() {
                return Ok(false);
            }
            let mut new = old.clone();
            new.expired_at = Some((&Timestamp::now()).into());
            tables.put_session(id.as_u128(), Some(&old), new)?;
            Ok(true)
        })
    }

    /// Expires every active session not updated for `max_age`; returns how
    /// many. Their `expired_at` is the time of this call.
    ///
    /// Costs a count of the sessions it expires and one small commit: the
    /// expiry is recorded as an event that every read applies, and the
    /// sessions are rewritten as expired later, when the writer is idle
    /// (see `ARCHITECTURE.md`, lazy expiry).
    pub fn expire_old_sessions(&self, max_age: Duration) -> Result<u64> {
        let cutoff = cutoff_micros(max_age);
        let state = self.inner.expiry.clone();
        self.write(move |tables| expiry::expire_before(tables, cutoff, &state))
    }

    /// As [`expire_old_sessions`](Self::expire_old_sessions), for a cleanup
    /// that shows its progress: calls `progress(expired, due)` once its one
    /// commit is done.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// store.create_session(None).unwrap();
    /// let mut seen = Vec::new();
    /// let expired = store
    ///     .expire_old_sessions_with_progress(std::time::Duration::ZERO, &mut |done, due| seen.push((done, due)))
    ///     .unwrap();
    /// assert_eq!((expired, seen), (1, vec![(1, 1)]));
    /// ```
    pub fn expire_old_sessions_with_progress(
        &self,
        max_age: Duration,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let expired = self.expire_old_sessions(max_age)?;
        progress(expired, expired);
        Ok(expired)
    }

    /// Deletes, with their messages, every session expired more than
    /// `older_than` ago; returns how many.
    pub fn purge_expired(&self, older_than: Duration) -> Result<u64> {
        let cutoff = cutoff_micros(older_than);
        self.write(move |tables| expiry::purge_before(tables, cutoff, usize::MAX))
    }

    /// As [`purge_expired`](Self::purge_expired), in commits of at most 1,024
    /// sessions, calling `progress(deleted, due)` after each. A failure keeps
    /// the commits made before it.
    pub fn purge_expired_with_progress(&self, older_than: Duration, progress: Progress<'_>) -> Result<u64> {
        let cutoff = cutoff_micros(older_than);
        let due = self.reading(|txn| self.expiry(txn).expired_before(cutoff))?;
        let mut done = 0;
        loop {
            let handled = self.write(move |tables| expiry::purge_before(tables, cutoff, BATCH))?;
            done += handled;
            progress(done, due.max(done));
            if handled < BATCH as u64 {
                return Ok(done);
            }
        }
    }

    /// Deletes a session, expired or not, with its messages and index
    /// entries; returns how many messages it held. Refused when missing.
    pub fn delete_session(&self, id: Uuid) -> Result<u64> {
        self.delete_session_as(id, Access::Any)
    }

    fn delete_session_as(&self, id: Uuid, access: Access<'_>) -> Result<u64> {
        let access = access.to_owned();
        self.write(move |tables| {
            let record = visible_session(tables, id, access.borrow())?;
            tables.remove_session(id.as_u128(), &record)
        })
    }

    /// Deletes every session of `user`, active or expired, with all their
    /// messages, and the user's context (see
    /// [`user_context`](Self::user_context)): an erasure request. Returns
    /// what was removed.
    pub fn erase_user(&self, user: &str) -> Result<Erased> {
        let user = user.to_owned();
        self.write(move |tables| {
            let mut ids = Vec::new();
            for index in [&mut tables.user_active, &mut tables.user_expired] {
                for entry in index.table()?.range(user_range(&user))? {
                    ids.push(entry?.0.value().2);
                }
            }
            let mut erased = Erased::default();
            for key in ids {
                let record = tables.session(key)?.ok_or_else(|| {
                    Error::corrupt_record("user_active_sessions", "entry without a session")
                })?;
                erased.messages += tables.remove_session(key, &record)?;
                erased.sessions += 1;
            }
            crate::user_context::erase(tables, &user)?;
            Ok(erased)
        })
    }

    /// Session ids of `user`, most recently updated first.
    pub fn list_user_sessions(&self, user: &str, include_expired: bool) -> Result<Vec<Uuid>> {
        self.reading(|txn| {
            let ids = self.user_session_keys(txn, user, include_expired, None, usize::MAX)?;
            Ok(ids.into_iter().map(|(_, id)| Uuid::from_u128(id)).collect())
        })
    }

    /// The user's active sessions for a sidebar, most recent first: title,
    /// message count, last activity.
    /// A `limit` of 0 gives an empty list, as SQL's `LIMIT 0` did.
    pub fn recent_sessions(&self, user: &str, limit: usize) -> Result<Vec<SessionSummary>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self.user_sessions_page(user, false, None, limit)?.sessions)
    }

    /// One page of `user`'s sessions, most recently updated first, starting
    /// after `cursor` (from the previous page's `next`). A `limit` of 0 is
    /// refused: an empty page could not say where the next one starts.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// for _ in 0..5 {
    ///     store.create_session(Some("ana")).unwrap();
    /// }
    /// let mut seen = 0;
    /// let mut cursor = None;
    /// loop {
    ///     let page = store.user_sessions_page("ana", false, cursor, 2).unwrap();
    ///     seen += page.sessions.len();
    ///     match page.next {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, 5);
    /// ```
    pub fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        if limit == 0 {
            return Err(Error::invalid("limit", "a page holds at least one session"));
        }
        self.reading(|txn| {
            let mut keys =
                self.user_session_keys(txn, user, include_expired, after, limit.saturating_add(1))?;
            let next = if keys.len() > limit {
                keys.truncate(limit);
                keys.last().map(|&(updated_micros, session)| SessionCursor {
                    updated_micros,
                    session,
                })
            } else {
                None
            };
            let sessions_table = txn.open_table(tables::SESSIONS)?;
            let messages_table = txn.open_table(tables::MESSAGES)?;
            let mut expiry = self.expiry(txn);
            let mut sessions = Vec::with_capacity(keys.len());
            for (_, key) in keys {
                let mut record = tables::session_record(&sessions_table, key)?.ok_or_else(|| {
                    Error::corrupt_record("user_active_sessions", "entry without a session")
                })?;
                expiry.apply(&mut record)?;
                sessions.push(SessionSummary {
                    session_id: Uuid::from_u128(key),
                    title: session_title(&messages_table, key, record.message_count)?,
                    message_count: record.message_count,
                    last_activity: record.updated_at.into(),
                    expired: record.expired_at.is_some(),
                });
            }
            Ok(SessionPage { sessions, next })
        })
    }

    // ---- messages -------------------------------------------------------

    /// The last `n` messages of an active session, oldest first; reads only
    /// those. `None` when the session is missing or expired (a read: see
    /// the [crate docs](crate#missing-none-for-a-read-an-error-for-a-write)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::{NewMessage, Uuid};
    /// let id = store.create_session(None)?;
    /// for n in 0..5 {
    ///     store.add_message(id, NewMessage::user(format!("m{n}")))?;
    /// }
    /// let last = store.get_recent_messages(id, 2)?.expect("active session");
    /// assert_eq!((last[0].content.as_str(), last[1].content.as_str()), ("m3", "m4"));
    /// assert!(store.get_recent_messages(Uuid::new_v4(), 2)?.is_none());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn get_recent_messages(&self, id: Uuid, n: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.messages_before(id, u64::MAX, n)
    }

    /// Up to `limit` messages with seq greater than `seq`, oldest first;
    /// `None` when the session is missing or expired.
    pub fn messages_after(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.page_messages(id, Page::After(seq), limit, Access::Any)
    }

    /// Up to `limit` messages from seq `seq` on (that one included), oldest
    /// first: the first page when paging forward from the start; `None`
    /// when the session is missing or expired.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None).unwrap();
    /// for n in 0..5 {
    ///     store.add_message(id, NewMessage::user(format!("m{n}"))).unwrap();
    /// }
    /// let first = store.messages_from(id, 0, 2).unwrap().expect("active session");
    /// let next = store.messages_after(id, first[1].seq, 2).unwrap().expect("active session");
    /// assert_eq!(next[0].content, "m2");
    /// ```
    pub fn messages_from(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.page_messages(id, Page::From(seq), limit, Access::Any)
    }

    /// Up to `limit` messages with seq less than `seq`, the nearest ones,
    /// oldest first; `None` when the session is missing or expired.
    pub fn messages_before(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.page_messages(id, Page::Before(seq), limit, Access::Any)
    }

    fn page_messages(
        &self,
        id: Uuid,
        page: Page,
        limit: u64,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.reading_messages(|txn, ticket| {
            let Some(record) = self.active_session(txn, id, access)? else {
                return Ok(None);
            };
            let range = page.range(limit, record.message_count);
            self.session_messages(txn, ticket, id, &record, range).map(Some)
        })
    }

    /// A message by its global id, with the session it belongs to (expired
    /// or not, as [`session_info`](Self::session_info)); `None` when no
    /// message has that id (never given out, popped, or its session deleted).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None)?;
    /// let message = store.add_message(id, NewMessage::user("hello"))?;
    /// let (session, found) = store.get_message(message)?.expect("stored");
    /// assert_eq!((session, found.content.as_str()), (id, "hello"));
    /// store.pop_last_message(id)?;
    /// assert!(store.get_message(message)?.is_none());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn get_message(&self, message_id: u64) -> Result<Option<(Uuid, Message)>> {
        self.get_message_as(message_id, Access::Any)
    }

    fn get_message_as(&self, message_id: u64, access: Access<'_>) -> Result<Option<(Uuid, Message)>> {
        self.reading(|txn| {
            let ids = txn.open_table(tables::MESSAGE_IDS)?;
            let Some((session, seq)) = ids.get(message_id)?.map(|g| g.value()) else {
                return Ok(None);
            };
            if let Access::Owner(_) = access {
                let sessions = txn.open_table(tables::SESSIONS)?;
                let owned = tables::session_record(&sessions, session)?.is_some_and(|r| access.allows(&r));
                if !owned {
                    return Ok(None);
                }
            }
            let messages = txn.open_table(tables::MESSAGES)?;
            let record = tables::message_record(&messages, session, seq)?
                .ok_or_else(|| Error::corrupt_record("message_ids", "entry without a message"))?;
            Ok(Some((Uuid::from_u128(session), record.into_message(seq))))
        })
    }

    /// Removes the last message of an active session (undo the last turn)
    /// and returns it; `None` when the session has none. Its id is never
    /// given out again.
    pub fn pop_last_message(&self, id: Uuid) -> Result<Option<Message>> {
        self.pop_last_message_as(id, Access::Any)
    }

    fn pop_last_message_as(&self, id: Uuid, access: Access<'_>) -> Result<Option<Message>> {
        let access = access.to_owned();
        self.write(move |tables| {
            let old = writable_session(tables, id, access.borrow())?;
            let Some(seq) = old.message_count.checked_sub(1) else {
                return Ok(None);
            };
            let key = id.as_u128();
            let record = tables
                .remove_message(key, seq)?
                .ok_or_else(|| Error::corrupt_record("messages", "message count beyond the last message"))?;
            let mut new = old.clone();
            new.message_count = seq;
            new.updated_at = (&Timestamp::now()).into();
            tables.put_session(key, Some(&old), new)?;
            tables.describe_last_write(key, Edit::Popped);
            Ok(Some(record.into_message(seq)))
        })
    }

    /// The active session `id`, if `access` may see it.
    pub(crate) fn active_session(
        &self,
        txn: &ReadTransaction,
        id: Uuid,
        access: Access<'_>,
    ) -> Result<Option<SessionRecord>> {
        let sessions = txn.open_table(tables::SESSIONS)?;
        let Some(mut record) = tables::session_record(&sessions, id.as_u128())?.filter(|r| access.allows(r))
        else {
            return Ok(None);
        };
        self.expiry(txn).apply(&mut record)?;
        Ok(record.expired_at.is_none().then_some(record))
    }

    /// (updated_at, session) of a user's sessions, newest first, strictly
    /// after `after`, at most `limit`. The active ones are the entries of
    /// the active index from the expiry watermark on.
    fn user_session_keys(
        &self,
        txn: &ReadTransaction,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<Vec<UserKey>> {
        let from = if include_expired {
            i64::MIN
        } else {
            self.expiry(txn).watermark()?
        };
        let lower = (user, from, 0u128);
        let upper = match after {
            Some(c) if (c.updated_micros, c.session) <= (from, 0) => return Ok(Vec::new()),
            Some(c) => Bound::Excluded((user, c.updated_micros, c.session)),
            None => Bound::Included((user, i64::MAX, u128::MAX)),
        };
        let range = (Bound::Included(lower), upper);
        let read = |definition| -> Result<Vec<UserKey>> {
            let table = txn.open_table(definition)?;
            let mut keys = Vec::new();
            for entry in table.range::<(&str, i64, u128)>(range)?.rev().take(limit) {
                let (key, _) = entry?;
                let (_, updated, session) = key.value();
                keys.push((updated, session));
            }
            Ok(keys)
        };
        let mut keys = read(tables::USER_ACTIVE)?;
        if include_expired {
            keys.extend(read(tables::USER_EXPIRED)?);
            keys.sort_unstable_by(|a, b| b.cmp(a));
            keys.truncate(limit);
        }
        Ok(keys)
    }

    // ---- monitoring -----------------------------------------------------

    /// Active and expired sessions, messages, and the sizes of the file and
    /// of its journal.
    pub fn stats(&self) -> Result<Stats> {
        self.reading(|txn| {
            let size_of = |path: &Path| {
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .map_err(|e| Error::io("read the size of", path, e))
            };
            let file_size = size_of(&self.inner.path)?;
            let journal_size = size_of(&journal_path(&self.inner.path))?;
            let lazily_expired = self.expiry(txn).lazily_expired()?;
            Ok(Stats {
                active_sessions: tables::count(txn, tables::ACTIVE_BY_UPDATED)? - lazily_expired,
                expired_sessions: tables::count(txn, tables::EXPIRED_BY_TIME)? + lazily_expired,
                messages: tables::count(txn, tables::MESSAGE_IDS)?,
                file_size,
                journal_size,
            })
        })
    }

    /// What this store has done since it was opened: commits and their
    /// write requests, checkpoints, and the message cache's hits and
    /// misses (see [`StoreCounters`]). Reads counters kept in memory: no
    /// I/O, no lock. Clones of a store share its counters; a read-only
    /// store commits nothing.
    ///
    /// ```
    /// use sessionstore::{NewMessage, SessionStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = SessionStore::open(dir.path().join("s.redb"))?;
    /// let id = store.create_session(None)?;
    /// store.add_messages(id, vec![NewMessage::user("hi"), NewMessage::assistant("hello")])?;
    /// store.get_session(id)?; // read from the file, then kept
    /// store.get_session(id)?; // served from the message cache
    /// let counters = store.counters();
    /// // One thread writing: each call its own commit of one request.
    /// assert_eq!((counters.commits, counters.batch_requests), (2, 2));
    /// assert_eq!((counters.message_cache_misses, counters.message_cache_hits), (1, 1));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn counters(&self) -> StoreCounters {
        let mut counters = StoreCounters::default();
        if let Some(writer) = &self.inner.writer {
            writer.count(&mut counters);
        }
        self.inner.cache.count(&mut counters);
        counters
    }
}

/// What [`SessionStore::erase_user`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Sessions deleted.
    pub sessions: u64,
    /// Messages deleted.
    pub messages: u64,
}

/// Which messages of a session a page holds.
#[derive(Clone, Copy)]
pub(crate) enum Page {
    /// From this seq on, that one included.
    From(u64),
    /// After this seq.
    After(u64),
    /// Before this seq, the nearest ones.
    Before(u64),
}

impl Page {
    /// The seqs of the page of at most `limit` messages in a session of
    /// `count`.
    pub(crate) fn range(self, limit: u64, count: u64) -> std::ops::Range<u64> {
        match self {
            Page::From(seq) => {
                let start = seq.min(count);
                start..start.saturating_add(limit).min(count)
            }
            Page::After(seq) => {
                let start = seq.saturating_add(1).min(count);
                start..start.saturating_add(limit).min(count)
            }
            Page::Before(seq) => {
                let end = seq.min(count);
                end.saturating_sub(limit)..end
            }
        }
    }
}

/// A [`SessionStore`] seen by one user: every call behaves as if other users'
/// sessions did not exist, and anonymous sessions are nobody's.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
/// let bobs = store.create_session(Some("bob")).unwrap();
/// let ana = store.for_user("ana");
/// assert!(ana.get_session(bobs).unwrap().is_none());
/// assert!(ana.add_message(bobs, sessionstore::NewMessage::user("hi")).unwrap_err().is_not_found());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct UserView<'a> {
    pub(crate) store: &'a SessionStore,
    pub(crate) user: &'a str,
}

impl UserView<'_> {
    pub(crate) fn access(&self) -> Access<'_> {
        Access::Owner(self.user)
    }

    /// Creates a session owned by this user.
    pub fn create_session(&self) -> Result<Uuid> {
        self.store.create_session(Some(self.user))
    }

    /// As [`SessionStore::get_session`], for this user's sessions only.
    pub fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        self.store.get_session_as(id, self.access())
    }

    /// As [`SessionStore::add_message`], for this user's sessions only.
    pub fn add_message(&self, id: Uuid, message: NewMessage) -> Result<u64> {
        self.store.add_message_checked(id, None, message, self.access())
    }

    /// As [`SessionStore::add_message_if`], for this user's sessions only.
    pub fn add_message_if(&self, id: Uuid, expected_next_seq: u64, message: NewMessage) -> Result<u64> {
        self.store
            .add_message_checked(id, Some(expected_next_seq), message, self.access())
    }

    /// As [`SessionStore::add_messages`], for this user's sessions only.
    pub fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
        self.store
            .append_messages(id, Append::checked(None), messages, self.access())
    }

    /// As [`SessionStore::add_messages_if`], for this user's sessions only.
    pub fn add_messages_if(
        &self,
        id: Uuid,
        expected_next_seq: u64,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.store.append_messages(
            id,
            Append::checked(Some(expected_next_seq)),
            messages,
            self.access(),
        )
    }

    /// As [`SessionStore::add_messages_idempotent`], for this user's
    /// sessions only.
    pub fn add_messages_idempotent(
        &self,
        id: Uuid,
        key: &str,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        let append = Append::idempotent(key, expected_next_seq)?;
        self.store.append_messages(id, append, messages, self.access())
    }

    /// As [`SessionStore::update_context`], for this user's sessions only.
    pub fn update_context(&self, id: Uuid, context: &str) -> Result<()> {
        self.store.update_context_as(id, context, self.access())
    }

    /// As [`SessionStore::expire_session`], for this user's sessions only.
    pub fn expire_session(&self, id: Uuid) -> Result<bool> {
        self.store.expire_session_as(id, self.access())
    }

    /// As [`SessionStore::delete_session`], for this user's sessions only.
    pub fn delete_session(&self, id: Uuid) -> Result<u64> {
        self.store.delete_session_as(id, self.access())
    }

    /// As [`SessionStore::get_recent_messages`], for this user's sessions only.
    pub fn get_recent_messages(&self, id: Uuid, n: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .page_messages(id, Page::Before(u64::MAX), n, self.access())
    }

    /// As [`SessionStore::messages_after`], for this user's sessions only.
    pub fn messages_after(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .page_messages(id, Page::After(seq), limit, self.access())
    }

    /// As [`SessionStore::messages_from`], for this user's sessions only.
    pub fn messages_from(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .page_messages(id, Page::From(seq), limit, self.access())
    }

    /// As [`SessionStore::messages_before`], for this user's sessions only.
    pub fn messages_before(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .page_messages(id, Page::Before(seq), limit, self.access())
    }

    /// As [`SessionStore::get_message`], for this user's messages only.
    pub fn get_message(&self, message_id: u64) -> Result<Option<(Uuid, Message)>> {
        self.store.get_message_as(message_id, self.access())
    }

    /// As [`SessionStore::pop_last_message`], for this user's sessions only.
    pub fn pop_last_message(&self, id: Uuid) -> Result<Option<Message>> {
        self.store.pop_last_message_as(id, self.access())
    }

    /// This user's session ids, most recently updated first.
    pub fn list_sessions(&self, include_expired: bool) -> Result<Vec<Uuid>> {
        self.store.list_user_sessions(self.user, include_expired)
    }

    /// This user's active sessions for a sidebar.
    pub fn recent_sessions(&self, limit: usize) -> Result<Vec<SessionSummary>> {
        self.store.recent_sessions(self.user, limit)
    }

    /// As [`SessionStore::user_sessions_page`], for this user.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// let ana = store.for_user("ana");
    /// for _ in 0..3 {
    ///     ana.create_session().unwrap();
    /// }
    /// let first = ana.sessions_page(false, None, 2).unwrap();
    /// let rest = ana.sessions_page(false, first.next, 2).unwrap();
    /// assert_eq!((first.sessions.len(), rest.sessions.len(), rest.next), (2, 1, None));
    /// ```
    pub fn sessions_page(
        &self,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        self.store
            .user_sessions_page(self.user, include_expired, after, limit)
    }

    /// As [`SessionStore::session_info`] (expired sessions included), for
    /// this user's sessions only.
    pub fn session_info(&self, id: Uuid) -> Result<Option<SessionInfo>> {
        Ok(self
            .store
            .session_info(id)?
            .filter(|info| info.user_id.as_deref() == Some(self.user)))
    }
}

// ---- helpers ------------------------------------------------------------

pub(crate) fn open_error(path: &Path, error: redb::DatabaseError) -> Error {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen if crate::open_files::is_held(path) => Error::AlreadyOpen {
            path: path.to_path_buf(),
        },
        redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse {
            path: path.to_path_buf(),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => match io.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => Error::Corrupt {
                path: path.to_path_buf(),
                why: io.to_string(),
            },
            _ => Error::io("open", path, io),
        },
        other => Error::Corrupt {
            path: path.to_path_buf(),
            why: other.to_string(),
        },
    }
}

/// Runs `f`, turning a panic inside it into [`Error::Corrupt`] about `path`.
///
/// redb 4.6 panics (`unreachable!`) on some damaged pages instead of
/// returning an error; the store promises an error on any file.
pub(crate) fn guard_panics<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("the storage engine failed on a damaged page ({what})"),
        })
    })
}

/// Creates the tables of a new file, or checks the format of an existing one.
fn initialise(path: &Path, db: &Database) -> Result<()> {
    let corrupt = |why: String| Error::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let txn = db.begin_read()?;
    if txn.list_tables()?.next().is_none() && txn.list_multimap_tables()?.next().is_none() {
        drop(txn);
        let txn = db.begin_write()?;
        {
            let mut tables = WriteTables::open(&txn);
            tables.open_all()?;
            tables.set_meta(tables::META_FORMAT_VERSION, &FORMAT_VERSION.to_le_bytes())?;
            tables.set_next_message_id(1)?;
        }
        txn.commit()?;
        return Ok(());
    }
    let not_ours = || corrupt("a redb file, but not a sessionstore file (no format version)".into());
    let meta = match txn.open_table(tables::META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Err(not_ours()),
        Err(redb::TableError::Storage(e)) => return Err(e.into()),
        Err(e) => return Err(corrupt(e.to_string())),
    };
    let version = meta.get(tables::META_FORMAT_VERSION)?.ok_or_else(not_ours)?;
    let version: [u8; 4] = version
        .value()
        .try_into()
        .map_err(|_| corrupt("format version is not 4 bytes".into()))?;
    let found = u32::from_le_bytes(version);
    if found != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    tables::next_message_id(&meta).map_err(|e| corrupt(e.to_string()))?;
    let complete = match tables::check_layout(&txn) {
        Ok(complete) => complete,
        Err(redb::TableError::Storage(e)) => return Err(e.into()),
        Err(e) => return Err(corrupt(e.to_string())),
    };
    if !complete {
        // Tables are opened as used: a file must have every one before.
        drop((meta, txn));
        let txn = db.begin_write()?;
        WriteTables::open(&txn).open_all()?;
        txn.commit()?;
    }
    Ok(())
}

/// Sessions one commit of a cleanup with progress handles.
const BATCH: usize = 1024;

fn cutoff_micros(age: Duration) -> i64 {
    let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
    Timestamp::now().micros().saturating_sub(age)
}

/// The active session `id` inside a write, or the refusal.
pub(crate) fn writable_session(
    tables: &mut WriteTables<'_>,
    id: Uuid,
    access: Access<'_>,
) -> Result<SessionRecord> {
    let record = visible_session(tables, id, access)?;
    active_in_write(tables, id, record)
}

/// `record`, the session `id` read inside a write, if it is active.
fn active_in_write(tables: &mut WriteTables<'_>, id: Uuid, record: SessionRecord) -> Result<SessionRecord> {
    if expiry::expired_at(tables.expiry_events.table()?, &record)?.is_some() {
        return Err(Error::SessionNotFound(id));
    }
    Ok(record)
}

/// How an append is checked: the seq its first message must get, the
/// idempotency key it is remembered under.
struct Append {
    expected_next_seq: Option<u64>,
    idempotency_key: Option<String>,
}

impl Append {
    fn checked(expected_next_seq: Option<u64>) -> Self {
        Append {
            expected_next_seq,
            idempotency_key: None,
        }
    }

    /// Refuses an empty key and one over 255 bytes.
    fn idempotent(key: &str, expected_next_seq: Option<u64>) -> Result<Self> {
        check_idempotency_key(key)?;
        Ok(Append {
            expected_next_seq,
            idempotency_key: Some(key.to_owned()),
        })
    }
}

/// Refuses an empty idempotency key and one over 255 bytes.
pub(crate) fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 255 {
        return Err(Error::invalid(
            "idempotency_key",
            format!("{} bytes is not within 1..=255", key.len()),
        ));
    }
    Ok(())
}

/// Refuses an append of no message, and one with a content longer than
/// `limit` bytes.
pub(crate) fn check_append(messages: &[NewMessage], limit: usize) -> Result<()> {
    if messages.is_empty() {
        return Err(Error::invalid("messages", "none to add"));
    }
    if let Some(message) = messages.iter().find(|m| m.content.len() > limit) {
        return Err(Error::invalid(
            "content",
            format!(
                "{} bytes is over the limit of {limit} bytes",
                message.content.len()
            ),
        ));
    }
    Ok(())
}

/// The session `id`, expired or not, inside a write, if `access` may see it.
fn visible_session(tables: &mut WriteTables<'_>, id: Uuid, access: Access<'_>) -> Result<SessionRecord> {
    tables
        .session(id.as_u128())?
        .filter(|r| access.allows(r))
        .ok_or(Error::SessionNotFound(id))
}

fn read_messages(txn: &ReadTransaction, session: u128, seqs: std::ops::Range<u64>) -> Result<Vec<Message>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let table = txn.open_table(tables::MESSAGES)?;
    let mut messages = Vec::with_capacity((seqs.end - seqs.start).min(4096) as usize);
    for entry in table.range((session, seqs.start)..(session, seqs.end))? {
        let (key, value) = entry?;
        let seq = key.value().1;
        let record: MessageRecord = decode(RecordKey::Message(session, seq), value.value())?;
        messages.push(record.into_message(seq));
    }
    Ok(messages)
}

/// The old store's title: the first user message, cut to 47 characters and
/// `...` when over 50, or `New conversation`.
fn session_title(
    messages: &impl ReadableTable<(u128, u64), &'static [u8]>,
    session: u128,
    count: u64,
) -> Result<String> {
    for entry in messages.range((session, 0)..(session, count))? {
        let (key, value) = entry?;
        let record: MessageRecord = decode(RecordKey::Message(session, key.value().1), value.value())?;
        if record.role == Role::User {
            return Ok(title_of(&record.content));
        }
    }
    Ok("New conversation".to_owned())
}

pub(crate) fn title_of(content: &str) -> String {
    if content.chars().count() > 50 {
        let mut title: String = content.chars().take(47).collect();
        title.push_str("...");
        title
    } else {
        content.to_owned()
    }
}

type UserKey = (i64, u128);

fn user_range(user: &str) -> std::ops::RangeInclusive<(&str, i64, u128)> {
    (user, i64::MIN, 0)..=(user, i64::MAX, u128::MAX)
}

#[cfg(test)]
impl SessionStore {
    /// The store opened from a copy of its files as they are now, this one
    /// still open: what a crash would leave (the copy's folder beside it).
    pub(crate) fn reopened_after_a_crash(&self) -> (tempfile::TempDir, SessionStore) {
        let crashed = tempfile::tempdir().unwrap();
        let path = self.path();
        for file in std::iter::once(path.to_path_buf()).chain(SessionStore::files_beside(path)) {
            std::fs::copy(&file, crashed.path().join(file.file_name().unwrap())).unwrap();
        }
        let reopened = SessionStore::open(crashed.path().join(path.file_name().unwrap())).unwrap();
        (crashed, reopened)
    }
}

#[cfg(test)]
mod tests {
    use super::title_of;

    #[test]
    fn titles_cut_like_the_old_store() {
        assert_eq!(title_of(&"x".repeat(50)), "x".repeat(50));
        assert_eq!(title_of(&"é".repeat(51)), format!("{}...", "é".repeat(47)));
    }
}
