//! Operator work on the whole store: the integrity check, consistent backups,
//! and compaction.

use std::path::Path;

use crate::error::Result;
use crate::model::{CheckReport, CompactReport, Progress};
use crate::store::SessionStore;

impl SessionStore {
    /// Checks the file: redb's page checksums, then every rule of the data
    /// model (seqs dense, message ids mapped both ways and below the next
    /// id, each index equal to what its table implies, extra rows linked).
    ///
    /// redb verifies pages only while no read is open: with a
    /// [`Snapshot`](crate::Snapshot) of the store alive, this returns
    /// [`Error::SnapshotOpen`] and checks nothing.
    pub fn check(&self, progress: Progress<'_>) -> Result<CheckReport> {
        self.engine().check(progress)
    }

    /// Writes a consistent copy of the store, as of one moment, to `dest`
    /// (a new file, with the store file's permissions; refused if it
    /// exists; its folder is made when missing). Made through a read
    /// transaction, so writers go on meanwhile; written beside `dest` and
    /// linked into place only when complete and on disk (never over a file
    /// that appeared meanwhile).
    ///
    /// Every record is verified first, as [`check`](Self::check) does: a
    /// store with a damaged record is refused with [`Error::Damaged`] and
    /// nothing is written.
    pub fn backup_to(&self, dest: &Path, progress: Progress<'_>) -> Result<()> {
        self.engine().backup_to(dest, progress)
    }

    /// Rewrites the store into a fresh file holding only live data, and
    /// swaps it in: the file shrinks to its content, and nothing deleted or
    /// erased remains in its bytes. The fresh file gets the permissions of
    /// the store file, and its owner where the process may set it (root
    /// may). Writers wait meanwhile; readers of earlier snapshots go on
    /// reading them. It starts by making every write durable in the
    /// database; when that fails (an I/O error), it fails with that error
    /// and changes nothing.
    ///
    /// Every record is verified first, as [`check`](Self::check) does: a
    /// store with a damaged record is refused with [`Error::Damaged`], and
    /// left as it is.
    pub fn compact(&self, progress: Progress<'_>) -> Result<CompactReport> {
        self.engine().compact(progress)
    }
}
