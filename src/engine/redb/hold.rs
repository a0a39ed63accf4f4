//! Holding a store file while something else takes its place.

use std::path::Path;

use crate::engine::redb::store::{guard_panics, open_error};
use crate::error::{Error, Result};
use crate::store::SessionStore;

/// A store file held against every open of it for as long as this lives;
/// see [`SessionStore::hold_for_replacement`].
#[must_use = "the file is held only while the hold lives"]
pub struct StoreHold {
    _database: Option<redb::ReadOnlyDatabase>,
}

impl std::fmt::Debug for StoreHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHold")
            .field("holds_a_store", &self._database.is_some())
            .finish()
    }
}

impl SessionStore {
    /// Holds the store file at `path` for a caller about to replace it (a
    /// conversion's `--force`), so that no store has it open meanwhile.
    /// Refused when a store has it open, as [`SessionStore::open`] is
    /// refused: [`Error::InUse`] (another process) or
    /// [`Error::AlreadyOpen`] (this one); while the hold lives, opening it
    /// is refused with [`Error::InUse`]. It only reads the file.
    ///
    /// A path where no file is, or a file no store could open as it is (not
    /// a store, damaged, left by a crash until an open applies its
    /// journal), is open nowhere: the hold then holds nothing.
    ///
    /// ```
    /// use sessionstore::{Error, SessionStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("sessions.redb");
    /// let store = SessionStore::open(&path)?;
    /// let refused = SessionStore::hold_for_replacement(&path).unwrap_err();
    /// assert!(matches!(refused, Error::AlreadyOpen { .. }));
    /// drop(store);
    /// let hold = SessionStore::hold_for_replacement(&path)?;
    /// assert!(matches!(SessionStore::open(&path), Err(Error::InUse { .. })));
    /// drop(hold);
    /// SessionStore::open(&path)?;
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn hold_for_replacement(path: impl AsRef<Path>) -> Result<StoreHold> {
        let path = path.as_ref();
        if !path.exists() {
            return Ok(StoreHold { _database: None });
        }
        // redb takes its locks before it reads anything: any refusal but
        // "already open", or a panic on a damaged page, found the file open
        // nowhere.
        let opened = guard_panics(path, || match redb::ReadOnlyDatabase::open(path) {
            Ok(database) => Ok(Some(database)),
            Err(error @ redb::DatabaseError::DatabaseAlreadyOpen) => Err(open_error(path, error)),
            Err(_) => Ok(None),
        });
        let database = match opened {
            Err(Error::Corrupt { .. }) => None,
            opened => opened?,
        };
        Ok(StoreHold { _database: database })
    }
}
