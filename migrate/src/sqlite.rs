//! SQLite files: opening them untrusted, reading their schema and table
//! layouts, and moving values between SQLite and the store's [`ExtraValue`].

use std::cmp::Ordering;
use std::io::Read;
use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sessionstore::ExtraValue;

use crate::error::{sqlite_error, Error, InFile, Result};

/// The two tables the store interprets.
pub(crate) const SESSIONS: &str = "chat_sessions";
pub(crate) const MESSAGES: &str = "chat_messages";
/// SQLite's AUTOINCREMENT high-water marks.
pub(crate) const SEQUENCE: &str = "sqlite_sequence";

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// True when the file starts with the SQLite header.
pub(crate) fn has_sqlite_header(path: &Path) -> Result<bool> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut header = [0u8; 16];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    Ok(read == header.len() && &header == MAGIC)
}

/// Fails unless `path` is an existing file.
pub(crate) fn require_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Error::io(
            "read",
            path,
            std::io::Error::other("not a regular file"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Turns off everything a hostile file could use to run code or reach
/// outside itself: defensive mode, untrusted schema, no triggers, no views.
fn harden(conn: &Connection, path: &Path) -> Result<()> {
    for (setting, on) in [
        (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
        (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_VIEW, false),
    ] {
        conn.set_db_config(setting, on).in_file(path)?;
    }
    Ok(())
}

/// Opens a SQLite file someone else wrote: read-only, hardened, and checked
/// with `PRAGMA quick_check` before anything is read from it.
pub(crate) fn open_untrusted(path: &Path) -> Result<Connection> {
    let conn = open_unchecked(path)?;
    quick_check(&conn, path)?;
    Ok(conn)
}

/// Opens a SQLite file someone else wrote, read-only and hardened, without
/// checking it (see [`QuickCheck`]).
pub(crate) fn open_unchecked(path: &Path) -> Result<Connection> {
    require_file(path)?;
    if !has_sqlite_header(path)? {
        return Err(Error::NotSqlite {
            path: path.to_path_buf(),
            reason: "the file does not start with the SQLite header".into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .in_file(path)?;
    harden(&conn, path)?;
    conn.pragma_update(None, "query_only", true).in_file(path)?;
    conn.pragma_update(None, "cell_size_check", true).in_file(path)?;
    conn.pragma_update(None, "cache_size", -65536).in_file(path)?;
    Ok(conn)
}

/// Runs `PRAGMA quick_check`; an error listing the first problems.
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let problems: Vec<String> = {
        let mut check = conn.prepare("PRAGMA quick_check(5)").in_file(path)?;
        let rows = check.query_map([], |row| row.get::<_, String>(0)).in_file(path)?;
        rows.collect::<rusqlite::Result<_>>().in_file(path)?
    };
    if problems != ["ok"] {
        return Err(Error::Damaged {
            path: path.to_path_buf(),
            reason: problems.join("; "),
        });
    }
    Ok(())
}

/// `PRAGMA quick_check` of a file on a thread of its own, on its own
/// read-only connection, while the file is read: a conversion waits for it
/// before it writes its output, so a damaged file still leaves nothing.
/// Dropped unfinished, it interrupts the check.
pub(crate) struct QuickCheck {
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    interrupt: rusqlite::InterruptHandle,
}

impl QuickCheck {
    pub fn start(path: &Path) -> Result<Self> {
        let conn = open_unchecked(path)?;
        let interrupt = conn.get_interrupt_handle();
        let owned = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("quick-check".into())
            .spawn(move || quick_check(&conn, &owned))
            .map_err(|e| Error::io("start the check of", path, e))?;
        Ok(QuickCheck {
            thread: Some(thread),
            interrupt,
        })
    }

    /// The check's verdict.
    pub fn finish(mut self, path: &Path) -> Result<()> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(verdict)) => verdict,
            _ => Err(Error::Damaged {
                path: path.to_path_buf(),
                reason: "the check stopped unexpectedly".into(),
            }),
        }
    }
}

impl Drop for QuickCheck {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.interrupt.interrupt();
            let _ = thread.join();
        }
    }
}

/// Opens a new, empty SQLite file for writing with pages of `page_size`
/// bytes, tuned for one bulk load (no journal: an unfinished file is thrown
/// away, never used). Foreign keys are not enforced, as in the old store:
/// rows go in table by table.
pub(crate) fn open_output(path: &Path, page_size: u32) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .in_file(path)?;
    harden(&conn, path)?;
    // The page size first: SQLite counts a cache size given in KiB as pages
    // of the page size it has when the cache size is set.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {page_size}; PRAGMA foreign_keys = OFF; PRAGMA journal_mode = OFF; \
         PRAGMA synchronous = OFF; PRAGMA cache_size = -65536; PRAGMA temp_store = FILE;"
    ))
    .in_file(path)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A row of `sqlite_master`: a table, index, view or trigger and the DDL
/// that makes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct SchemaObject {
    pub kind: String,
    pub name: String,
    pub table: String,
    pub sql: String,
}

/// The schema objects of a file, in `sqlite_master` order, without SQLite's
/// own (`sqlite_sequence`, automatic indexes, statistics).
pub(crate) fn read_schema(conn: &Connection, path: &Path) -> Result<Vec<SchemaObject>> {
    let mut statement = conn
        .prepare(
            "SELECT type, name, tbl_name, sql FROM main.sqlite_master \
             WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
        )
        .in_file(path)?;
    let rows = statement
        .query_map([], |row| {
            Ok(SchemaObject {
                kind: row.get(0)?,
                name: row.get(1)?,
                table: row.get(2)?,
                sql: row.get(3)?,
            })
        })
        .in_file(path)?;
    rows.collect::<rusqlite::Result<_>>().in_file(path)
}

/// Quotes an identifier for SQL text.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column of a table, as SQLite describes it.
#[derive(Clone, Debug)]
pub(crate) struct Column {
    pub name: String,
    /// The declared type, as written.
    pub declared: String,
    /// Position in the primary key (0 when not part of it).
    pub pk: u32,
    /// The value a row gets when an INSERT leaves the column out, when that
    /// is a constant (`None` for an expression such as `CURRENT_TIMESTAMP`).
    pub default: Option<ExtraValue>,
}

/// The columns of a table and how its rows are addressed.
#[derive(Clone, Debug)]
pub(crate) struct TableLayout {
    pub name: String,
    /// Ordinary columns (no hidden or generated ones), in table order.
    pub columns: Vec<Column>,
    /// False for WITHOUT ROWID tables.
    pub has_rowid: bool,
    /// The column that refers to `chat_sessions(session_id)` with
    /// `ON DELETE CASCADE`: rows that go when their session goes.
    pub session_column: Option<usize>,
}

impl TableLayout {
    /// Reads a table's layout; refuses virtual tables and missing tables.
    pub fn read(conn: &Connection, path: &Path, table: &str) -> Result<Self> {
        let kind: Option<(String, bool)> = conn
            .query_row(
                "SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
                [table],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .in_file(path)?;
        let without_rowid = match kind {
            None => return Err(Error::table(table, "no such table")),
            Some((kind, without_rowid)) if kind == "table" => without_rowid,
            Some((kind, _)) => {
                return Err(Error::table(
                    table,
                    format!("is a {kind}, not an ordinary table; it cannot be read safely"),
                ))
            }
        };
        let mut statement = conn
            .prepare("SELECT name, type, pk, dflt_value, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")
            .in_file(path)?;
        let mut rows = statement.query([table]).in_file(path)?;
        let mut columns = Vec::new();
        while let Some(row) = rows.next().in_file(path)? {
            let hidden: i64 = row.get(4).in_file(path)?;
            if hidden != 0 {
                continue;
            }
            let default: Option<String> = row.get(3).in_file(path)?;
            columns.push(Column {
                name: row.get(0).in_file(path)?,
                declared: row.get(1).in_file(path)?,
                pk: row.get(2).in_file(path)?,
                default: match default {
                    None => Some(ExtraValue::Null),
                    Some(text) => literal(&text),
                },
            });
        }
        let session_column = session_reference(conn, path, table, &columns)?;
        Ok(TableLayout {
            name: table.to_owned(),
            columns,
            has_rowid: !without_rowid,
            session_column,
        })
    }

    /// The index of a column, by name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The index of a column the store needs; an error naming the table
    /// when it is missing.
    pub fn require(&self, name: &str) -> Result<usize> {
        self.position(name)
            .ok_or_else(|| Error::table(&self.name, format!("has no column {name}")))
    }

    /// True when `column` is the table's INTEGER PRIMARY KEY (the rowid).
    pub fn is_rowid_alias(&self, column: usize) -> bool {
        let pk_columns = self.columns.iter().filter(|c| c.pk > 0).count();
        self.has_rowid
            && pk_columns == 1
            && self.columns[column].pk == 1
            && self.columns[column].declared.eq_ignore_ascii_case("INTEGER")
    }

    /// Columns of the primary key, in key order.
    pub fn primary_key(&self) -> Vec<usize> {
        let mut key: Vec<usize> = (0..self.columns.len())
            .filter(|&i| self.columns[i].pk > 0)
            .collect();
        key.sort_by_key(|&i| self.columns[i].pk);
        key
    }

    /// `"a", "b", ...` for the given columns.
    pub fn column_list(&self, columns: impl IntoIterator<Item = usize>) -> String {
        columns
            .into_iter()
            .map(|i| quote(&self.columns[i].name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The column of `table` that refers to `chat_sessions(session_id)` with
/// `ON DELETE CASCADE`.
fn session_reference(
    conn: &Connection,
    path: &Path,
    table: &str,
    columns: &[Column],
) -> Result<Option<usize>> {
    let mut statement = conn
        .prepare("SELECT \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1)")
        .in_file(path)?;
    let mut rows = statement.query([table]).in_file(path)?;
    while let Some(row) = rows.next().in_file(path)? {
        let target: String = row.get(0).in_file(path)?;
        let from: String = row.get(1).in_file(path)?;
        let to: Option<String> = row.get(2).in_file(path)?;
        let on_delete: String = row.get(3).in_file(path)?;
        if target == SESSIONS
            && to.as_deref() == Some("session_id")
            && on_delete.eq_ignore_ascii_case("CASCADE")
        {
            return Ok(columns.iter().position(|c| c.name == from));
        }
    }
    Ok(None)
}

/// The value of a constant DEFAULT clause: `NULL`, a string, an integer or
/// a real number. `None` for anything else (it may not be constant).
fn literal(text: &str) -> Option<ExtraValue> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("NULL") {
        return Some(ExtraValue::Null);
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        if inner.replace("''", "").contains('\'') {
            return None;
        }
        return Some(ExtraValue::Text(inner.replace("''", "'")));
    }
    if let Ok(integer) = text.parse::<i64>() {
        return Some(ExtraValue::Integer(integer));
    }
    None
}

/// A SQLite value as the store keeps it; text must be UTF-8.
pub(crate) fn to_extra(value: ValueRef<'_>) -> std::result::Result<ExtraValue, String> {
    Ok(match value {
        ValueRef::Null => ExtraValue::Null,
        ValueRef::Integer(i) => ExtraValue::Integer(i),
        ValueRef::Real(r) => ExtraValue::Real(r),
        ValueRef::Text(bytes) => ExtraValue::Text(
            String::from_utf8(bytes.to_vec()).map_err(|e| format!("text is not valid UTF-8 ({e})"))?,
        ),
        ValueRef::Blob(bytes) => ExtraValue::Blob(bytes.to_vec()),
    })
}

/// A value to bind to a statement.
pub(crate) fn bind(value: ValueRef<'_>) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(value)
}

/// A store value as a SQLite value, borrowed.
pub(crate) fn from_extra(value: &ExtraValue) -> ValueRef<'_> {
    match value {
        ExtraValue::Null => ValueRef::Null,
        ExtraValue::Integer(i) => ValueRef::Integer(*i),
        ExtraValue::Real(r) => ValueRef::Real(*r),
        ExtraValue::Text(text) => ValueRef::Text(text.as_bytes()),
        ExtraValue::Blob(bytes) => ValueRef::Blob(bytes),
    }
}

/// SQLite's own storage-class name of a value.
pub(crate) fn type_name(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

/// Orders values as SQLite's ORDER BY does with the BINARY collation:
/// NULL, then numbers, then text, then blobs.
pub(crate) fn sql_order(a: ValueRef<'_>, b: ValueRef<'_>) -> Ordering {
    fn class(v: ValueRef<'_>) -> u8 {
        match v {
            ValueRef::Null => 0,
            ValueRef::Integer(_) | ValueRef::Real(_) => 1,
            ValueRef::Text(_) => 2,
            ValueRef::Blob(_) => 3,
        }
    }
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => x.cmp(&y),
        (ValueRef::Integer(x), ValueRef::Real(y)) => (x as f64).total_cmp(&y),
        (ValueRef::Real(x), ValueRef::Integer(y)) => x.total_cmp(&(y as f64)),
        (ValueRef::Real(x), ValueRef::Real(y)) => x.total_cmp(&y),
        (ValueRef::Text(x), ValueRef::Text(y)) | (ValueRef::Blob(x), ValueRef::Blob(y)) => x.cmp(y),
        _ => class(a).cmp(&class(b)),
    }
}

/// True when two values are the same, storage class included.
pub(crate) fn same_value(a: ValueRef<'_>, b: ValueRef<'_>) -> bool {
    match (a, b) {
        (ValueRef::Real(x), ValueRef::Real(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// A short, readable rendering of a value for messages.
pub(crate) fn render(value: ValueRef<'_>) -> String {
    const SHOWN: usize = 48;
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(r) => format!("{r:?}"),
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let shown: String = text.chars().take(SHOWN).collect();
            if shown.len() < text.len() {
                format!("{shown:?}... ({} bytes)", bytes.len())
            } else {
                format!("{shown:?}")
            }
        }
        ValueRef::Blob(bytes) => format!("a {}-byte blob", bytes.len()),
    }
}

/// An owned copy of a value read from a row, bytes as they are.
#[derive(Clone, Debug)]
pub(crate) enum OwnedValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl OwnedValue {
    pub fn of(value: ValueRef<'_>) -> Self {
        match value {
            ValueRef::Null => OwnedValue::Null,
            ValueRef::Integer(i) => OwnedValue::Integer(i),
            ValueRef::Real(r) => OwnedValue::Real(r),
            ValueRef::Text(t) => OwnedValue::Text(t.to_vec()),
            ValueRef::Blob(b) => OwnedValue::Blob(b.to_vec()),
        }
    }

    pub fn get(&self) -> ValueRef<'_> {
        match self {
            OwnedValue::Null => ValueRef::Null,
            OwnedValue::Integer(i) => ValueRef::Integer(*i),
            OwnedValue::Real(r) => ValueRef::Real(*r),
            OwnedValue::Text(t) => ValueRef::Text(t),
            OwnedValue::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// True when the file has an ordinary table `table`.
pub(crate) fn has_table(conn: &Connection, path: &Path, table: &str) -> Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) > 0 FROM main.sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |row| row.get(0),
    )
    .in_file(path)
}

/// Counts the rows of a table (for progress bars).
pub(crate) fn count_rows(conn: &Connection, path: &Path, table: &str) -> Result<u64> {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM main.{}", quote(table)),
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
    .map_err(|e| sqlite_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_defaults_are_read_and_expressions_are_not() {
        assert_eq!(
            literal("'query_definition'"),
            Some(ExtraValue::Text("query_definition".into()))
        );
        assert_eq!(literal("'it''s'"), Some(ExtraValue::Text("it's".into())));
        assert_eq!(literal("NULL"), Some(ExtraValue::Null));
        assert_eq!(literal("-3"), Some(ExtraValue::Integer(-3)));
        assert_eq!(literal("CURRENT_TIMESTAMP"), None);
        assert_eq!(literal("'a' || 'b'"), None);
    }

    #[test]
    fn values_order_like_sqlite() {
        use ValueRef::*;
        assert_eq!(sql_order(Null, Integer(1)), Ordering::Less);
        assert_eq!(sql_order(Integer(2), Real(1.5)), Ordering::Greater);
        assert_eq!(sql_order(Real(9e9), Text(b"0")), Ordering::Less);
        assert_eq!(sql_order(Text(b"b"), Text(b"ab")), Ordering::Greater);
        assert_eq!(sql_order(Text(b"z"), Blob(b"a")), Ordering::Less);
    }
}
