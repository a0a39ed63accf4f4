//! Holding a store file while something else takes its place.

use std::path::Path;

use crate::engine::redb::store::{guard_panics, open_error};
use crate::error::{Error, Result};

/// A store file held against every open of it for as long as this lives;
/// see [`SessionStore::hold_for_replacement`](crate::SessionStore::hold_for_replacement).
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

/// See [`SessionStore::hold_for_replacement`](crate::SessionStore::hold_for_replacement).
pub(crate) fn hold(path: &Path) -> Result<StoreHold> {
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
