//! Where a command reads or writes: a file (sessions.db or store), or a
//! store in a PostgreSQL database named by a `postgres://` or
//! `postgresql://` URL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sessionstore::client::{HeldCopy, Opened};
use sessionstore::redb_engine::RedbOptions;
use sessionstore::{SessionStore, StoreOptions};

use crate::error::{Error, InFile, Result};
use crate::sqlite;

/// The URL, when `location` names a PostgreSQL database rather than a file.
pub(crate) fn database_url(location: &Path) -> Option<&str> {
    location.to_str().filter(|l| sessionstore::is_postgres_url(l))
}

/// `location` as messages show it: a file's path as it is, a database URL
/// without its password.
///
/// ```
/// use std::path::Path;
/// let shown = sessionstore_migrate::shown(Path::new("postgres://bot:secret@db/chat"));
/// assert_eq!(shown, Path::new("postgres://bot:***@db/chat"));
/// assert_eq!(sessionstore_migrate::shown(Path::new("s.redb")), Path::new("s.redb"));
/// ```
pub fn shown(location: &Path) -> PathBuf {
    match database_url(location) {
        Some(url) => PathBuf::from(sessionstore::redacted_location(url)),
        None => location.to_path_buf(),
    }
}

/// The store options of a conversion: a larger cache, for one pass over
/// everything; no local socket for a database (it is no file).
pub(crate) fn store_options(cache_bytes: usize) -> StoreOptions {
    StoreOptions {
        redb: RedbOptions {
            cache_bytes,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    }
}

/// Opens the store in the database `url`: to read it only (it must hold a
/// store then), or to load into it (its tables are made when missing).
pub(crate) fn open_database(url: &str, to_write: bool) -> Result<SessionStore> {
    if cfg!(not(feature = "postgres")) {
        return Err(Error::NoPostgres {
            location: shown(Path::new(url)),
        });
    }
    let options = StoreOptions {
        read_only: !to_write,
        create_if_missing: to_write,
        serve_socket: false,
        ..StoreOptions::default()
    };
    SessionStore::open_with(url, options).in_file(&shown(Path::new(url)))
}

/// A store read by a conversion: opened here, or a copy its holder made.
pub(crate) enum SourceStore {
    /// Opened by this process.
    Open(SessionStore),
    /// Another process holds the store file: a consistent copy of it.
    Copy(HeldCopy),
}

impl std::ops::Deref for SourceStore {
    type Target = SessionStore;
    fn deref(&self) -> &SessionStore {
        match self {
            SourceStore::Open(store) => store,
            SourceStore::Copy(copy) => copy,
        }
    }
}

/// How long a store in use whose socket does not answer (its holder is
/// opening or closing it) is tried again.
const SOCKET_WAIT: Duration = Duration::from_secs(2);

/// Opens the store `source` to read it: a database URL, or a store file
/// (refusing a SQLite file). A store file another process holds (the
/// chatbot, say) is read from a consistent copy the holder writes through
/// its local socket into a temporary folder beside it.
pub(crate) fn open_source(source: &Path, options: StoreOptions) -> Result<SourceStore> {
    if let Some(url) = database_url(source) {
        return open_database(url, false).map(SourceStore::Open);
    }
    sqlite::require_file(source)?;
    if sqlite::has_sqlite_header(source)? {
        return Err(Error::NotAStore {
            path: source.to_path_buf(),
        });
    }
    let options = StoreOptions {
        create_if_missing: false,
        ..options
    };
    match Opened::open(source, &options, Instant::now(), SOCKET_WAIT).in_file(source)? {
        Opened::Local(store) => Ok(SourceStore::Open(store)),
        Opened::Held(client) => client.copy(options).in_file(source).map(SourceStore::Copy),
    }
}

/// True when `source` is a SQLite file (rather than a store file or a
/// database).
pub(crate) fn is_sqlite(source: &Path) -> Result<bool> {
    if database_url(source).is_some() {
        return Ok(false);
    }
    sqlite::require_file(source)?;
    sqlite::has_sqlite_header(source)
}

/// Opens the source of an import that is no SQLite file: a store. A file
/// that is no store either is refused as not SQLite (what an import reads
/// first), with the store's reason beside.
pub(crate) fn open_import_source(source: &Path, options: StoreOptions) -> Result<SourceStore> {
    open_source(source, options).map_err(|error| match error {
        Error::Store {
            path,
            source: store_error @ (sessionstore::Error::NoStore { .. } | sessionstore::Error::Corrupt { .. }),
        } if database_url(source).is_none() => Error::NotSqlite {
            path,
            reason: format!("not a store file either ({store_error})"),
        },
        other => other,
    })
}
