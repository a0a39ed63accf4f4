//! The store files this process holds open. redb's file lock refuses a
//! second open of a file alike whether another process or this one holds
//! it; this list tells the two apart, so that the error says which
//! ([`Error::AlreadyOpen`](crate::Error::AlreadyOpen) or
//! [`Error::InUse`](crate::Error::InUse)).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Every store file a [`SessionStore`](crate::SessionStore) of this
/// process holds.
static HELD: Mutex<Vec<FileKey>> = Mutex::new(Vec::new());

/// A file as the file system knows it: its canonical path (which a
/// compaction, renaming a new file onto it, keeps) and, on Unix, its
/// device and inode (which another name of it, a hard link, shares).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileKey {
    path: PathBuf,
    inode: Option<(u64, u64)>,
}

impl FileKey {
    /// The key of the file at `path`; `None` when the file system has no
    /// such file (a [`StorageFactory`](crate::redb_engine::StorageFactory) that keeps
    /// it elsewhere).
    fn of(path: &Path) -> Option<Self> {
        let path = std::fs::canonicalize(path).ok()?;
        Some(FileKey {
            inode: inode(&path),
            path,
        })
    }

    fn same_file(&self, other: &FileKey) -> bool {
        self.path == other.path || (self.inode.is_some() && self.inode == other.inode)
    }
}

#[cfg(unix)]
fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn inode(_path: &Path) -> Option<(u64, u64)> {
    None
}

fn held() -> std::sync::MutexGuard<'static, Vec<FileKey>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The file at `path` held open by a store of this process, until dropped.
#[derive(Debug)]
pub(crate) struct Held(Option<FileKey>);

/// Notes that a store of this process holds the file at `path`, opened.
pub(crate) fn hold(path: &Path) -> Held {
    let key = FileKey::of(path);
    if let Some(key) = &key {
        held().push(key.clone());
    }
    Held(key)
}

/// True when a store of this process holds the file at `path`.
pub(crate) fn is_held(path: &Path) -> bool {
    FileKey::of(path).is_some_and(|key| held().iter().any(|other| other.same_file(&key)))
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(key) = self.0.take() {
            let mut held = held();
            if let Some(at) = held.iter().position(|other| *other == key) {
                held.swap_remove(at);
            }
        }
    }
}
