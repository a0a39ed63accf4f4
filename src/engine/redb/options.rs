//! The redb engine's settings.

use std::sync::Arc;

use crate::engine::redb::storage::{FileStorage, StorageFactory};

/// The redb engine's settings ([`StoreOptions::redb`](crate::StoreOptions)):
/// its caches, the files it opens, its journal.
#[derive(Clone)]
pub struct RedbOptions {
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
    /// use sessionstore::redb_engine::RedbOptions;
    /// use sessionstore::{NewMessage, SessionStore, StoreOptions};
    /// use std::sync::Arc;
    /// let dir = tempfile::tempdir().unwrap();
    /// let options = StoreOptions {
    ///     redb: RedbOptions { message_cache_bytes: 16 << 20, ..RedbOptions::default() },
    ///     ..StoreOptions::default()
    /// };
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
    /// grows to (default 32 MiB; from [`RedbOptions::MIN_JOURNAL_BYTES`]
    /// to [`RedbOptions::MAX_JOURNAL_BYTES`], else the open fails with
    /// [`Error::InvalidInput`]).
    ///
    /// A durable write is acknowledged once its batch's record is appended
    /// to the journal and synced; the database catches up with one durable
    /// commit (a checkpoint) every 256 records, 500 ms, or when half of
    /// this size is used, after which the journal starts over. The journal
    /// is sized to the load: it starts at
    /// [`RedbOptions::MIN_JOURNAL_BYTES`] and doubles when a batch's record
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
    /// use sessionstore::redb_engine::RedbOptions;
    /// use sessionstore::{NewMessage, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let journal_size = |store: &SessionStore| store.stats().unwrap().journal_size;
    /// // About 100 KB that compression cannot shrink.
    /// let big: String = (0..3000).map(|_| sessionstore::Uuid::new_v4().simple().to_string()).collect();
    /// let store = SessionStore::open(&path)?;
    /// let id = store.create_session(None)?;
    /// // A new store's journal is the smallest.
    /// assert_eq!(journal_size(&store), RedbOptions::MIN_JOURNAL_BYTES);
    /// // A batch of 100 KB grows it, as far as that batch needs.
    /// store.add_message(id, NewMessage::user(big.clone()))?;
    /// assert!(journal_size(&store) > RedbOptions::MIN_JOURNAL_BYTES);
    /// assert!(journal_size(&store) <= 1 << 20);
    /// drop(store);
    ///
    /// // At most the smallest journal: the big message is committed
    /// // durably to the database instead.
    /// let options = StoreOptions {
    ///     redb: RedbOptions {
    ///         max_journal_bytes: RedbOptions::MIN_JOURNAL_BYTES,
    ///         ..RedbOptions::default()
    ///     },
    ///     ..StoreOptions::default()
    /// };
    /// let store = SessionStore::open_with(&path, options.clone())?;
    /// store.add_message(id, NewMessage::user(big))?;
    /// store.add_message(id, NewMessage::user("journaled"))?;
    /// assert_eq!(journal_size(&store), RedbOptions::MIN_JOURNAL_BYTES);
    /// drop(store);
    /// let store = SessionStore::open_with(&path, options)?;
    /// assert_eq!(store.get_session(id)?.unwrap().messages.len(), 3);
    ///
    /// let too_small = StoreOptions {
    ///     redb: RedbOptions { max_journal_bytes: 4096, ..RedbOptions::default() },
    ///     ..StoreOptions::default()
    /// };
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
    /// use sessionstore::redb_engine::RedbOptions;
    /// use sessionstore::{NewMessage, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let options = StoreOptions {
    ///     redb: RedbOptions { verify_after_crash: false, ..RedbOptions::default() },
    ///     ..StoreOptions::default()
    /// };
    /// let store = SessionStore::open_with(dir.path().join("s.redb"), options)?;
    /// let id = store.create_session(None)?;
    /// store.add_message(id, NewMessage::user("hello"))?;
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub verify_after_crash: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            cache_bytes: 256 << 20,
            message_cache_bytes: 64 << 20,
            storage: Arc::new(FileStorage),
            max_journal_bytes: 32 << 20,
            verify_after_crash: true,
        }
    }
}

impl std::fmt::Debug for RedbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbOptions")
            .field("cache_bytes", &self.cache_bytes)
            .field("message_cache_bytes", &self.message_cache_bytes)
            .field("max_journal_bytes", &self.max_journal_bytes)
            .field("verify_after_crash", &self.verify_after_crash)
            .finish_non_exhaustive()
    }
}

impl RedbOptions {
    /// The size a new journal starts at, and the smallest
    /// [`RedbOptions::max_journal_bytes`] (64 KiB): below it, most batches
    /// would skip the journal for a durable database commit.
    pub const MIN_JOURNAL_BYTES: u64 = 64 << 10;
    /// The largest [`RedbOptions::max_journal_bytes`] (1 GiB): a checkpoint
    /// follows every 256 records anyway, and an open may read the whole
    /// journal into memory.
    pub const MAX_JOURNAL_BYTES: u64 = 1 << 30;
}
