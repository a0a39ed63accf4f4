//! Where the store's bytes go: every file the store writes is opened through
//! a [`StorageFactory`], as a [`redb::StorageBackend`]. The default,
//! [`FileStorage`], opens real files; tests wrap it to count, delay, fail or
//! drop writes (fault injection, simulated power loss).

use std::fmt;
use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::Path;

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
}

/// The default [`StorageFactory`]: real files, through redb's
/// [`FileBackend`] (which holds redb's file lock).
#[derive(Clone, Copy, Debug, Default)]
pub struct FileStorage;

impl StorageFactory for FileStorage {
    fn open(&self, path: &Path, _role: FileRole) -> std::io::Result<Box<dyn StorageBackend>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let backend = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Box::new(backend))
    }
}

/// A boxed backend as the `impl StorageBackend` redb's builder takes:
/// forwards every method, locks included.
pub(crate) struct Boxed(pub Box<dyn StorageBackend>);

impl fmt::Debug for Boxed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StorageBackend for Boxed {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}
