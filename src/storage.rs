//! Where the store's bytes go: every file the store writes is opened through
//! a [`StorageFactory`], as a [`redb::StorageBackend`]. The default,
//! [`FileStorage`], opens real files; tests wrap it to count, delay, fail or
//! drop writes (fault injection, simulated power loss).

use std::fmt;
use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Which of the store's files is being opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileRole {
    /// The redb database file: the path given to
    /// [`SessionStore::open`](crate::SessionStore::open).
    Database,
    /// The write-ahead journal beside the database (its path plus
    /// `-journal`), where durable writes are acknowledged before the
    /// database catches up.
    Journal,
}

/// Opens the storage behind each file of a store.
///
/// Implement it to observe or alter every byte the store reads, writes or
/// syncs. A wrapper should forward the lock methods of
/// [`redb::StorageBackend`] (`try_lock_range` and the others) to the backend
/// it wraps: redb takes its file lock through them, and that lock is what
/// makes a second open of the same file fail with
/// [`Error::InUse`](crate::Error::InUse).
///
/// ```
/// use std::ops::Bound;
/// use std::path::Path;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use sessionstore::{
///     BackendError, FileRole, FileStorage, NewMessage, SessionStore, StorageBackend, StorageFactory,
///     StoreOptions,
/// };
///
/// /// Counts the syncs of every file it opens.
/// #[derive(Debug, Default)]
/// struct CountSyncs(Arc<AtomicU64>);
///
/// #[derive(Debug)]
/// struct Counted {
///     inner: Box<dyn StorageBackend>,
///     syncs: Arc<AtomicU64>,
/// }
///
/// impl StorageFactory for CountSyncs {
///     fn open(&self, path: &Path, role: FileRole) -> std::io::Result<Box<dyn StorageBackend>> {
///         let inner = FileStorage.open(path, role)?;
///         Ok(Box::new(Counted { inner, syncs: self.0.clone() }))
///     }
/// }
///
/// impl StorageBackend for Counted {
///     fn len(&self) -> std::io::Result<u64> {
///         self.inner.len()
///     }
///     fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
///         self.inner.read(offset, out)
///     }
///     fn set_len(&self, len: u64) -> std::io::Result<()> {
///         self.inner.set_len(len)
///     }
///     fn sync_data(&self) -> std::io::Result<()> {
///         self.syncs.fetch_add(1, Ordering::SeqCst);
///         self.inner.sync_data()
///     }
///     fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
///         self.inner.write(offset, data)
///     }
///     fn close(&self) -> std::io::Result<()> {
///         self.inner.close()
///     }
///     // The file lock: forwarded, so that a second open still reports InUse.
///     fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
///         self.inner.try_lock_range(s, e)
///     }
///     fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
///         self.inner.try_lock_shared_range(s, e)
///     }
///     fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
///         self.inner.lock_range(s, e)
///     }
///     fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
///         self.inner.lock_shared_range(s, e)
///     }
///     fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
///         self.inner.unlock_range(s, e)
///     }
///     fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
///         self.inner.query_lock_range(s, e)
///     }
/// }
///
/// let dir = tempfile::tempdir().unwrap();
/// let syncs = Arc::new(AtomicU64::new(0));
/// let options = StoreOptions {
///     storage: Arc::new(CountSyncs(syncs.clone())),
///     ..StoreOptions::default()
/// };
/// let store = SessionStore::open_with(dir.path().join("s.redb"), options)?;
/// let before = syncs.load(Ordering::SeqCst);
/// let id = store.create_session(None)?;
/// store.add_message(id, NewMessage::user("hello"))?;
/// // Durable writes: each acknowledged only after a sync.
/// assert!(syncs.load(Ordering::SeqCst) >= before + 2);
/// // The lock still holds through the wrapper.
/// let again = SessionStore::open(dir.path().join("s.redb")).unwrap_err();
/// assert!(matches!(again, sessionstore::Error::InUse { .. }));
/// # Ok::<(), sessionstore::Error>(())
/// ```
pub trait StorageFactory: Send + Sync {
    /// Opens (creating it when missing, empty) the storage for `path`.
    fn open(&self, path: &Path, role: FileRole) -> std::io::Result<Box<dyn StorageBackend>>;

    /// Opens the journal at `path`, which [`open`](Self::open) has opened
    /// already, a second time for writes past the page cache (Linux
    /// `O_DIRECT`). The journal writes the records it syncs at once through
    /// it, as whole 4 KiB blocks from 4 KiB-aligned memory, and everything
    /// else through the backend `open` gave; skipping the copy through the
    /// page cache takes about 5 % off a durable append. `None`, the
    /// default, when the storage has no such access (or the file system
    /// refuses direct I/O): every write then goes through the backend.
    fn open_direct(&self, _path: &Path) -> Option<std::fs::File> {
        None
    }
}

/// The default [`StorageFactory`]: real files, through redb's
/// [`FileBackend`] (which holds redb's file lock).
#[derive(Clone, Copy, Debug, Default)]
pub struct FileStorage;

impl StorageFactory for FileStorage {
    fn open(&self, path: &Path, role: FileRole) -> std::io::Result<Box<dyn StorageBackend>> {
        let file = crate::files::open_store_file(path, role)?;
        let backend = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Box::new(backend))
    }

    #[cfg(target_os = "linux")]
    fn open_direct(&self, path: &Path) -> Option<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
}

/// The database file as the store hands it to redb: every method
/// forwarded (locks included), except the sync redb asks for at the end of
/// an open, which is put off until the file's next write.
///
/// That sync (`begin_writable` in redb's page manager) makes durable the
/// header's "recovery required" flag, which redb has just written. Nothing
/// needs it on disk before the file's next write: a crash before then finds
/// the header of the last sync (the file as it was closed, which needs no
/// recovery) or the new one (recovery, of the same unchanged file). Every
/// sync asked for while opening is kept back this way, and made before the
/// next write, change of length, sync or close, so the order in which writes
/// reach the disk is the order redb asked for; only the last one, which no
/// write of the open follows, is left for after the open. A clean open then
/// syncs nothing (SQLite's open writes nothing either); the file's next
/// write, most often the first checkpoint on the background thread (a
/// commit of a write request does not write the file), pays it instead.
/// Tested by `a_clean_open_syncs_the_database_only_before_its_next_write`
/// in `tests/reliability_disk.rs`.
#[derive(Clone)]
pub(crate) struct DatabaseFile(Arc<Deferring>);

struct Deferring {
    inner: Box<dyn StorageBackend>,
    /// The open is under way: syncs are kept back.
    opening: AtomicBool,
    /// A sync was kept back and not made yet.
    pending: AtomicBool,
    /// Held while the kept-back sync is made, so that no write overtakes it.
    settling: Mutex<()>,
}

impl DatabaseFile {
    /// Wraps `inner`, keeping back syncs until [`DatabaseFile::opened`].
    pub fn opening(inner: Box<dyn StorageBackend>) -> Self {
        DatabaseFile(Arc::new(Deferring {
            inner,
            opening: AtomicBool::new(true),
            pending: AtomicBool::new(false),
            settling: Mutex::new(()),
        }))
    }

    /// The open is over: syncs are made when asked for again, and the one
    /// kept back (if any) before the next write.
    pub fn opened(&self) {
        self.0.opening.store(false, Ordering::Release);
    }

    /// Makes the sync kept back, if any.
    pub fn settle(&self) -> std::io::Result<()> {
        let file = &self.0;
        if !file.pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let _settling = file.settling.lock().unwrap_or_else(PoisonError::into_inner);
        if file.pending.load(Ordering::Acquire) {
            file.inner.sync_data()?;
            file.pending.store(false, Ordering::Release);
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.inner.fmt(f)
    }
}

impl StorageBackend for DatabaseFile {
    fn len(&self) -> std::io::Result<u64> {
        self.0.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.settle()?;
        self.0.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.0.opening.load(Ordering::Acquire) {
            self.0.pending.store(true, Ordering::Release);
            return Ok(());
        }
        self.0.inner.sync_data()?;
        self.0.pending.store(false, Ordering::Release);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.settle()?;
        self.0.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        let settled = self.settle();
        self.0.inner.close().and(settled)
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.inner.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.inner.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.inner.query_lock_range(start, end)
    }
}
