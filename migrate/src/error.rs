//! The one error type of the migrate crate.

use std::path::{Path, PathBuf};

/// Everything that can stop an import, an export or a verify.
///
/// Problems with the data name the table, the row and the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input file does not exist.
    #[error("{path}: no such file")]
    Missing {
        /// The path given.
        path: PathBuf,
    },

    /// The file is not a SQLite database at all.
    #[error("{path}: not a SQLite database: {reason}")]
    NotSqlite {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// The file is a SQLite database, but damaged (`PRAGMA quick_check`
    /// failed or a page does not read).
    #[error("{path}: damaged SQLite database: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        reason: String,
    },

    /// The destination database of an import holds sessions already and
    /// `--force` was not given: nothing was written.
    #[error(
        "{database} holds {sessions} sessions already: the import is refused, as it would mix two \
         stores, and nothing was written; give an empty database, or pass --force to load into \
         this one (an id it holds already is refused then)"
    )]
    DatabaseNotEmpty {
        /// The database (its URL without the password).
        database: PathBuf,
        /// How many sessions it holds.
        sessions: u64,
    },

    /// A database URL was given to a build without PostgreSQL.
    #[error("{location}: a PostgreSQL database, but this sessionstore-migrate was built without its `postgres` feature")]
    NoPostgres {
        /// The URL without its password.
        location: PathBuf,
    },

    /// A SQLite file was given where a store file is expected.
    #[error("{path} is a SQLite file, not a store file (import it first)")]
    NotAStore {
        /// The file.
        path: std::path::PathBuf,
    },

    /// The output file exists and `--force` was not given.
    #[error("{path} exists already; pass --force to replace it")]
    DestinationExists {
        /// The output path.
        path: PathBuf,
    },

    /// The output file is the input file itself (the same path, or a link
    /// to it): writing it would replace the input.
    #[error("{output} is the same file as {input}: the output would replace its own input; give another destination")]
    SameFile {
        /// The input file.
        input: PathBuf,
        /// The output path given.
        output: PathBuf,
    },

    /// A table is missing or has a shape the conversion cannot carry.
    #[error("table {table}: {reason}")]
    Table {
        /// The SQLite table.
        table: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A row breaks a rule of the data model.
    #[error("table {table}, row {row}: {reason}")]
    Row {
        /// The SQLite table.
        table: String,
        /// Which row (its id or key).
        row: String,
        /// Why it is refused.
        reason: String,
    },

    /// The chosen output schema has no place for data the store holds.
    #[error("the {schema} schema has no place for {what}; export with the store's own schema instead")]
    DoesNotFit {
        /// The schema asked for.
        schema: &'static str,
        /// What would be lost.
        what: String,
    },

    /// SQLite failed.
    #[error("SQLite {path}: {source}")]
    Sqlite {
        /// The SQLite file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// The store failed.
    #[error("store {path}: {source}")]
    Store {
        /// The store file.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: sessionstore::Error,
    },

    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path acted on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn row(table: &str, row: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Row {
            table: table.to_owned(),
            row: row.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn table(table: &str, reason: impl Into<String>) -> Self {
        Error::Table {
            table: table.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Attaches the file a SQLite or store error happened in.
pub(crate) trait InFile<T> {
    fn in_file(self, path: &Path) -> Result<T>;
}

impl<T> InFile<T> for std::result::Result<T, rusqlite::Error> {
    fn in_file(self, path: &Path) -> Result<T> {
        self.map_err(|source| sqlite_error(path, source))
    }
}

impl<T> InFile<T> for std::result::Result<T, sessionstore::Error> {
    fn in_file(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Store {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Maps SQLite's "not a database" and "corrupt" codes to their own variants.
pub(crate) fn sqlite_error(path: &Path, source: rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotSqlite {
            path,
            reason: source.to_string(),
        },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => Error::Damaged {
            path,
            reason: source.to_string(),
        },
        _ => Error::Sqlite { path, source },
    }
}
