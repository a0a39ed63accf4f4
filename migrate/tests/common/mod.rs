//! Helpers shared by the migrate tests: fixtures, a full dump of a SQLite
//! file for comparisons, broken copies, and running the binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

pub const V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/reference-v1.db");
pub const UPGRADED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/reference-upgraded.db"
);

/// Everything a SQLite file holds, as the old store could see it: the
/// schema rows and every table's rows (sessions by id, `sqlite_sequence`
/// by name, others by rowid), values with their storage class.
#[derive(Debug, PartialEq)]
pub struct Dump {
    pub schema: Vec<(String, String, String, Option<String>)>,
    pub tables: BTreeMap<String, Vec<Vec<Value>>>,
}

pub fn dump(path: &Path) -> Dump {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut schema: Vec<(String, String, String, Option<String>)> = conn
        .prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex%'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    schema.sort();
    let mut tables = BTreeMap::new();
    for (kind, name, _, _) in &schema {
        if kind != "table" {
            continue;
        }
        let order = match name.as_str() {
            "chat_sessions" => "session_id",
            "sqlite_sequence" => "name",
            _ => "rowid",
        };
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY {order}"))
            .unwrap();
        let width = statement.column_count();
        let rows: Vec<Vec<Value>> = statement
            .query_map([], |r| (0..width).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.insert(name.clone(), rows);
    }
    Dump { schema, tables }
}

/// Asserts that the SQLite file `back` holds `original`'s schema and rows,
/// row by row (the first difference named).
pub fn assert_same_rows(original: &Dump, back: &Path) {
    let exported = dump(back);
    assert_eq!(exported.schema, original.schema, "schema DDL");
    assert_eq!(
        exported.tables.keys().collect::<Vec<_>>(),
        original.tables.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &original.tables {
        let back_rows = &exported.tables[table];
        assert_eq!(back_rows.len(), rows.len(), "rows of {table}");
        for (i, (a, b)) in rows.iter().zip(back_rows).enumerate() {
            assert_eq!(a, b, "table {table}, row {i}");
        }
    }
}

/// One count query's answer.
pub fn count(path: &Path, sql: &str) -> i64 {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A writable copy of a fixture, changed by `sql`.
pub fn broken_copy(fixture: &str, dir: &Path, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(fixture, &path).unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&path, permissions).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    path
}

/// Runs the `sessionstore-migrate` binary.
pub fn migrate(args: &[&std::ffi::OsStr]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessionstore-migrate"))
        .args(args)
        .output()
        .unwrap()
}

/// The names of the files in `dir`.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
