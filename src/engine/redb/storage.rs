//! Where the store's bytes go: every file the store writes is opened through
//! a [`StorageFactory`], as a [`redb::StorageBackend`]. The default,
//! [`FileStorage`], opens real files; tests wrap it to count, delay, fail or
//! drop writes (fault injection, simulated power loss).

use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
/// [`Error::InUse`](crate::Error::InUse) (another process) or
/// [`Error::AlreadyOpen`](crate::Error::AlreadyOpen) (this one).
///
/// ```
/// use std::ops::Bound;
/// use std::path::Path;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use sessionstore::redb_engine::{
///     BackendError, FileRole, FileStorage, RedbOptions, StorageBackend, StorageFactory,
/// };
/// use sessionstore::{NewMessage, SessionStore, StoreOptions};
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
///     // The file lock: forwarded, so that a second open is still refused.
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
///     redb: RedbOptions {
///         storage: Arc::new(CountSyncs(syncs.clone())),
///         ..RedbOptions::default()
///     },
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
/// assert!(matches!(again, sessionstore::Error::AlreadyOpen { .. }));
/// # Ok::<(), sessionstore::Error>(())
/// ```
pub trait StorageFactory: Send + Sync {
    /// Opens (creating it when missing, empty) the storage for `path`.
    fn open(&self, path: &Path, role: FileRole) -> std::io::Result<Box<dyn StorageBackend>>;

    /// Opens the storage for `path`, which must exist, to be read only: the
    /// store writes nothing through it. Used for the files of a store
    /// opened read-only
    /// ([`StoreOptions::read_only`](crate::StoreOptions::read_only)), and to
    /// look at the journal before an open has decided to go on (a missing
    /// journal must stay missing when the open is refused). A missing file
    /// is an error of kind [`std::io::ErrorKind::NotFound`].
    ///
    /// The default calls [`open`](Self::open), which may create the file
    /// (then empty, which the store reads as missing).
    fn open_read_only(&self, path: &Path, role: FileRole) -> std::io::Result<Box<dyn StorageBackend>> {
        self.open(path, role)
    }

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
        let database = (role == FileRole::Journal).then(|| crate::engine::redb::journal::database_path(path));
        let file = crate::files::open_store_file(path, database.as_deref())?;
        let backend = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Box::new(backend))
    }

    fn open_read_only(&self, path: &Path, _role: FileRole) -> std::io::Result<Box<dyn StorageBackend>> {
        let file = OpenOptions::new().read(true).open(path)?;
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
/// forwarded, except while its writes are held.
///
/// An open holds them (see [`DatabaseFile::opening`]): every write, change
/// of length and sync redb and the store make while opening (redb's header,
/// its repair after a crash, the creation of missing tables, the integrity
/// check before a replay) goes to memory, in order, and reads see it there.
/// Only once the store has decided to open (the file is its own, of its
/// version, and its journal holds what the database says it may) does
/// [`DatabaseFile::release`] write them to the file, in the order asked,
/// with each sync between them where it was asked; so a refused open
/// changes nothing, and refuses the same way when tried again.
///
/// The last sync of an open (`begin_writable` in redb's page manager,
/// after the header's "recovery required" flag), which no write of the
/// open follows, is kept back further: nothing needs it on disk before the
/// file's next write (a crash before then finds the header of the last
/// sync, the file as it was closed, which needs no recovery, or the new
/// one: recovery, of the same unchanged file). It is made before the next
/// write, change of length, sync or close. A clean open then syncs nothing
/// (SQLite's open writes nothing either); the file's next write, most often
/// the first checkpoint on the background thread (a commit of a write
/// request does not write the file), pays it instead. Tested by
/// `a_clean_open_syncs_the_database_only_before_its_next_write` in
/// `tests/reliability_disk.rs`.
///
/// A store opened read-only (see [`DatabaseFile::read_only`]) holds its
/// writes for good: redb's repair and a journal's replay live in memory,
/// and the file is never written.
#[derive(Clone)]
pub(crate) struct DatabaseFile(Arc<Deferring>);

struct Deferring {
    inner: Box<dyn StorageBackend>,
    /// Writes go to [`Deferring::held`], not to the file.
    holding: AtomicBool,
    /// Read by many readers at once (a read-only store's reads), written
    /// by one writer.
    held: RwLock<Held>,
    /// Locks are taken shared (the file may be open for reading only,
    /// which an exclusive lock needs write access for).
    read_only: bool,
    /// A sync was kept back and not made yet.
    pending: AtomicBool,
    /// Held while the kept-back sync is made, so that no write overtakes it.
    settling: Mutex<()>,
}

/// The file as the held writes made it: its blocks written, its length.
#[derive(Default)]
struct Held {
    /// The file's length as the writes made it.
    len: u64,
    /// The file's bytes below this still read from it; above it, zeros
    /// where no block was written (a change of length cut them off).
    kept: u64,
    /// Every block written, as it is now.
    blocks: HashMap<u64, Box<[u8]>>,
    /// What was asked, in order, to write to the file on release; `None`
    /// for a read-only store, which never writes.
    log: Option<Vec<Op>>,
}

/// A held change of the file.
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
    Sync,
}

/// Held writes are kept in blocks of this many bytes.
const HELD_BLOCK: u64 = 4096;

impl DatabaseFile {
    /// Wraps `inner`, holding its writes until [`DatabaseFile::release`].
    pub fn opening(inner: Box<dyn StorageBackend>) -> std::io::Result<Self> {
        Self::holding(inner, false)
    }

    /// Wraps `inner`, which is never written: writes stay in memory.
    pub fn read_only(inner: Box<dyn StorageBackend>) -> std::io::Result<Self> {
        Self::holding(inner, true)
    }

    fn holding(inner: Box<dyn StorageBackend>, read_only: bool) -> std::io::Result<Self> {
        let len = inner.len()?;
        let held = Held {
            len,
            kept: len,
            blocks: HashMap::new(),
            log: (!read_only).then(Vec::new),
        };
        Ok(DatabaseFile(Arc::new(Deferring {
            inner,
            holding: AtomicBool::new(true),
            held: RwLock::new(held),
            read_only,
            pending: AtomicBool::new(false),
            settling: Mutex::new(()),
        })))
    }

    /// The open is decided: writes what was held, in order (its last sync
    /// kept back until the next write), and forwards everything from now
    /// on. Nothing for a read-only store.
    pub fn release(&self) -> std::io::Result<()> {
        let file = &self.0;
        let mut held = file.held.write().unwrap_or_else(PoisonError::into_inner);
        let Some(log) = held.log.take() else {
            return Ok(());
        };
        for op in log {
            match op {
                Op::Write(offset, data) => {
                    self.settle()?;
                    file.inner.write(offset, &data)?;
                }
                Op::SetLen(len) => {
                    self.settle()?;
                    file.inner.set_len(len)?;
                }
                Op::Sync => file.pending.store(true, Ordering::Release),
            }
        }
        *held = Held::default();
        file.holding.store(false, Ordering::Release);
        Ok(())
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

    /// The held state to read, while writes are held.
    fn held(&self) -> Option<RwLockReadGuard<'_, Held>> {
        if !self.0.holding.load(Ordering::Acquire) {
            return None;
        }
        let held = self.0.held.read().unwrap_or_else(PoisonError::into_inner);
        self.0.holding.load(Ordering::Acquire).then_some(held)
    }

    /// The held state to change, while writes are held.
    fn held_mut(&self) -> Option<RwLockWriteGuard<'_, Held>> {
        if !self.0.holding.load(Ordering::Acquire) {
            return None;
        }
        let held = self.0.held.write().unwrap_or_else(PoisonError::into_inner);
        self.0.holding.load(Ordering::Acquire).then_some(held)
    }
}

impl Held {
    /// Block `index` as the file holds it now (read from the file, or
    /// zeros, when not written).
    fn block(&self, inner: &dyn StorageBackend, index: u64) -> std::io::Result<Box<[u8]>> {
        if let Some(block) = self.blocks.get(&index) {
            return Ok(block.clone());
        }
        let mut block = vec![0u8; HELD_BLOCK as usize].into_boxed_slice();
        let start = index * HELD_BLOCK;
        let from_file = self.kept.saturating_sub(start).min(HELD_BLOCK) as usize;
        if from_file > 0 {
            inner.read(start, &mut block[..from_file])?;
        }
        Ok(block)
    }

    fn read(&self, inner: &dyn StorageBackend, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let end = offset + out.len() as u64;
        if end > self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut at = offset;
        while at < end {
            let index = at / HELD_BLOCK;
            let within = (at % HELD_BLOCK) as usize;
            let n = (HELD_BLOCK as usize - within).min((end - at) as usize);
            let done = (at - offset) as usize;
            let out = &mut out[done..done + n];
            match self.blocks.get(&index) {
                Some(block) => out.copy_from_slice(&block[within..within + n]),
                None if at + n as u64 <= self.kept => inner.read(at, out)?,
                None => out.copy_from_slice(&self.block(inner, index)?[within..within + n]),
            }
            at += n as u64;
        }
        Ok(())
    }

    fn write(&mut self, inner: &dyn StorageBackend, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let index = at / HELD_BLOCK;
            let within = (at % HELD_BLOCK) as usize;
            let n = (HELD_BLOCK as usize - within).min((end - at) as usize);
            let mut block = match self.blocks.remove(&index) {
                Some(block) => block,
                None => self.block(inner, index)?,
            };
            let done = (at - offset) as usize;
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            self.blocks.insert(index, block);
            at += n as u64;
        }
        self.len = self.len.max(end);
        if let Some(log) = &mut self.log {
            log.push(Op::Write(offset, data.to_vec()));
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.kept = self.kept.min(len);
            self.blocks.retain(|&index, _| index * HELD_BLOCK < len);
            if let Some(block) = self.blocks.get_mut(&(len / HELD_BLOCK)) {
                block[(len % HELD_BLOCK) as usize..].fill(0);
            }
        }
        self.len = len;
        if let Some(log) = &mut self.log {
            log.push(Op::SetLen(len));
        }
    }

    fn sync(&mut self) {
        if let Some(log) = &mut self.log {
            log.push(Op::Sync);
        }
    }
}

impl fmt::Debug for DatabaseFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.inner.fmt(f)
    }
}

impl StorageBackend for DatabaseFile {
    fn len(&self) -> std::io::Result<u64> {
        match self.held() {
            Some(held) => Ok(held.len),
            None => self.0.inner.len(),
        }
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        match self.held() {
            Some(held) => held.read(&*self.0.inner, offset, out),
            None => self.0.inner.read(offset, out),
        }
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if let Some(mut held) = self.held_mut() {
            held.set_len(len);
            return Ok(());
        }
        self.settle()?;
        self.0.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if let Some(mut held) = self.held_mut() {
            held.sync();
            return Ok(());
        }
        self.0.inner.sync_data()?;
        self.0.pending.store(false, Ordering::Release);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if let Some(mut held) = self.held_mut() {
            return held.write(&*self.0.inner, offset, data);
        }
        self.settle()?;
        self.0.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        // Writes still held are dropped: the open was refused, or the
        // store is read-only.
        let settled = match self.held() {
            Some(_) => Ok(()),
            None => self.settle(),
        };
        self.0.inner.close().and(settled)
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        if self.0.read_only {
            return self.0.inner.try_lock_shared_range(start, end);
        }
        self.0.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        if self.0.read_only {
            return self.0.inner.lock_shared_range(start, end);
        }
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
