//! The SQLite schema a store carries: the DDL of the file it was imported
//! from, and the `sqlite_sequence` rows, kept as opaque values in the store.

use sessionstore::{ExtraValue, Snapshot};

use crate::builtin_schema;
use crate::error::{Error, Result};
use crate::sqlite::SchemaObject;

/// Opaque key: the `sqlite_master` rows of the imported file (JSON).
pub(crate) const SCHEMA_KEY: &str = "sqlite.schema";
/// Opaque key: the `sqlite_sequence` rows of the imported file (JSON).
pub(crate) const SEQUENCE_KEY: &str = "sqlite.sequence";

/// A schema object compiled into the program.
pub(crate) struct BuiltinObject {
    pub kind: &'static str,
    pub name: &'static str,
    pub table: &'static str,
    pub sql: &'static str,
}

/// Which schema an export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaChoice {
    /// Generation 1 only: the documented schema.
    Documented,
    /// Generation 2: the documented schema upgraded in place (`phase`
    /// column, `active_subgroups`, `user_goals`, `feedback_reports`); both
    /// generations of the old store open it.
    Upgraded,
}

impl SchemaChoice {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SchemaChoice::Documented => "documented",
            SchemaChoice::Upgraded => "upgraded",
        }
    }

    pub(crate) fn objects(self) -> Vec<SchemaObject> {
        let list = match self {
            SchemaChoice::Documented => builtin_schema::DOCUMENTED,
            SchemaChoice::Upgraded => builtin_schema::UPGRADED,
        };
        list.iter()
            .map(|o| SchemaObject {
                kind: o.kind.to_owned(),
                name: o.name.to_owned(),
                table: o.table.to_owned(),
                sql: o.sql.to_owned(),
            })
            .collect()
    }
}

/// A `sqlite_sequence` row: table name and high-water mark, as they were.
pub(crate) type SequenceRow = (ExtraValue, ExtraValue);

/// Encodes a value to keep under `key`.
pub(crate) fn encode<T: serde::Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::table(key, format!("cannot be encoded: {e}")))
}

fn stored<T: serde::de::DeserializeOwned>(
    snapshot: &Snapshot,
    key: &str,
    path: &std::path::Path,
) -> Result<Option<T>> {
    let bytes = snapshot.opaque(key).map_err(|source| Error::Store {
        path: path.to_path_buf(),
        source,
    })?;
    bytes
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::table(key, format!("the stored value does not decode: {e}")))
        })
        .transpose()
}

/// The schema the store was imported with, if it was.
pub(crate) fn stored_schema(
    snapshot: &Snapshot,
    path: &std::path::Path,
) -> Result<Option<Vec<SchemaObject>>> {
    stored(snapshot, SCHEMA_KEY, path)
}

/// The `sqlite_sequence` rows the store was imported with, if it was.
pub(crate) fn stored_sequence(snapshot: &Snapshot, path: &std::path::Path) -> Result<Vec<SequenceRow>> {
    Ok(stored(snapshot, SEQUENCE_KEY, path)?.unwrap_or_default())
}
