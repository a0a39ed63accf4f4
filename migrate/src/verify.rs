//! `verify`: compares two stores, each a SQLite file, a store file or a
//! PostgreSQL database (by URL), by content.
//!
//! A store (file or database) is compared through the SQLite file `export` makes of it (in a
//! temporary folder), so "equal" means exactly "export would give this
//! file": the same schema DDL, and in every table (`sqlite_sequence` too)
//! the same rows, matched by primary key (rowid when there is none), with
//! the same values, storage class and bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, InFile, Result};
use crate::export::{export, ExportOptions};
use crate::location;
use crate::sqlite::{self, quote, OwnedValue, TableLayout, SEQUENCE};

/// One way in which the two files differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Where: the schema object, or the table and row.
    pub place: String,
    /// What differs.
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.detail)
    }
}

/// Compares `a` and `b` by content; returns at most `limit` differences,
/// the first ones found (none when the files are equal).
pub fn verify(a: &Path, b: &Path, limit: usize) -> Result<Vec<Difference>> {
    let temp = tempfile::tempdir()
        .map_err(|e| Error::io("create a temporary folder in", &std::env::temp_dir(), e))?;
    let a = as_sqlite(a, &temp.path().join("a.db"))?;
    let b = as_sqlite(b, &temp.path().join("b.db"))?;
    let mut comparison = Comparison {
        a: sqlite::open_untrusted(&a)?,
        b: sqlite::open_untrusted(&b)?,
        a_path: a,
        b_path: b,
        limit,
        found: Vec::new(),
    };
    comparison.run()?;
    Ok(comparison.found)
}

/// The SQLite file to compare for `path`: itself, or the export of the
/// store (file or database) it names.
fn as_sqlite(path: &Path, temp: &Path) -> Result<PathBuf> {
    if location::is_sqlite(path)? {
        return Ok(path.to_path_buf());
    }
    export(path, temp, &ExportOptions::default())?;
    Ok(temp.to_path_buf())
}

struct Comparison {
    a: Connection,
    b: Connection,
    a_path: PathBuf,
    b_path: PathBuf,
    limit: usize,
    found: Vec<Difference>,
}

impl Comparison {
    fn full(&self) -> bool {
        self.found.len() >= self.limit
    }

    fn differ(&mut self, place: String, detail: String) {
        if !self.full() {
            self.found.push(Difference { place, detail });
        }
    }

    fn run(&mut self) -> Result<()> {
        let schema_a = by_name(sqlite::read_schema(&self.a, &self.a_path)?);
        let schema_b = by_name(sqlite::read_schema(&self.b, &self.b_path)?);
        let mut keys: Vec<&(String, String)> = schema_a.keys().chain(schema_b.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in &keys {
            let place = format!("schema: {} {}", key.0, key.1);
            match (schema_a.get(*key), schema_b.get(*key)) {
                (Some(_), None) => self.differ(place, "only in A".into()),
                (None, Some(_)) => self.differ(place, "only in B".into()),
                (Some(x), Some(y)) if x != y => self.differ(place, format!("DDL differs: A {x:?}, B {y:?}")),
                _ => {}
            }
        }
        let mut tables: Vec<String> = keys
            .iter()
            .filter(|(kind, _)| kind == "table")
            .map(|(_, name)| name.clone())
            .collect();
        tables.push(SEQUENCE.to_owned());
        for table in tables {
            if self.full() {
                break;
            }
            let in_a = sqlite::has_table(&self.a, &self.a_path, &table)?;
            let in_b = sqlite::has_table(&self.b, &self.b_path, &table)?;
            match (in_a, in_b) {
                (true, true) => self.rows(&table)?,
                (true, false) => self.differ(format!("table {table}"), "only in A".into()),
                (false, true) => self.differ(format!("table {table}"), "only in B".into()),
                (false, false) => {}
            }
        }
        Ok(())
    }

    /// Compares the rows of a table both files have.
    fn rows(&mut self, table: &str) -> Result<()> {
        let layout_a = TableLayout::read(&self.a, &self.a_path, table)?;
        let layout_b = TableLayout::read(&self.b, &self.b_path, table)?;
        let columns: Vec<String> = layout_a
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|name| layout_b.position(name).is_some())
            .collect();
        let key: Vec<String> = if table == SEQUENCE {
            vec!["name".to_owned()]
        } else {
            let pk: Vec<String> = layout_a
                .primary_key()
                .into_iter()
                .map(|i| layout_a.columns[i].name.clone())
                .filter(|name| layout_b.position(name).is_some())
                .collect();
            if !pk.is_empty() {
                pk.iter().map(|c| quote(c)).collect()
            } else if layout_a.has_rowid && layout_b.has_rowid {
                vec!["_rowid_".to_owned()]
            } else {
                columns.iter().map(|c| quote(c)).collect()
            }
        };
        let key_names: Vec<String> = key
            .iter()
            .map(|k| k.trim_matches('"').replace("\"\"", "\""))
            .collect();
        let sql = format!(
            "SELECT {}, {} FROM main.{} ORDER BY {}",
            key.join(", "),
            columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
            quote(table),
            key.join(", ")
        );
        let mut statement_a = self.a.prepare(&sql).in_file(&self.a_path)?;
        let mut statement_b = self.b.prepare(&sql).in_file(&self.b_path)?;
        let mut rows_a = statement_a.query([]).in_file(&self.a_path)?;
        let mut rows_b = statement_b.query([]).in_file(&self.b_path)?;
        let width = key.len() + columns.len();
        let mut next_a = owned_row(rows_a.next().in_file(&self.a_path)?, width)?;
        let mut next_b = owned_row(rows_b.next().in_file(&self.b_path)?, width)?;
        let mut found = Vec::new();
        while found.len() + self.found.len() < self.limit {
            let order = match (&next_a, &next_b) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => compare_keys(&x[..key.len()], &y[..key.len()]),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some(row) = &next_a {
                        found.push(Difference {
                            place: row_place(table, &key_names, row),
                            detail: "only in A".into(),
                        });
                    }
                    next_a = owned_row(rows_a.next().in_file(&self.a_path)?, width)?;
                }
                std::cmp::Ordering::Greater => {
                    if let Some(row) = &next_b {
                        found.push(Difference {
                            place: row_place(table, &key_names, row),
                            detail: "only in B".into(),
                        });
                    }
                    next_b = owned_row(rows_b.next().in_file(&self.b_path)?, width)?;
                }
                std::cmp::Ordering::Equal => {
                    if let (Some(x), Some(y)) = (&next_a, &next_b) {
                        for (i, name) in columns.iter().enumerate() {
                            let (va, vb) = (&x[key.len() + i], &y[key.len() + i]);
                            if !sqlite::same_value(va.get(), vb.get()) {
                                found.push(Difference {
                                    place: format!("{}, column {name}", row_place(table, &key_names, x)),
                                    detail: format!(
                                        "A has {} ({}), B has {} ({})",
                                        sqlite::render(va.get()),
                                        sqlite::type_name(va.get()),
                                        sqlite::render(vb.get()),
                                        sqlite::type_name(vb.get())
                                    ),
                                });
                            }
                        }
                    }
                    next_a = owned_row(rows_a.next().in_file(&self.a_path)?, width)?;
                    next_b = owned_row(rows_b.next().in_file(&self.b_path)?, width)?;
                }
            }
        }
        drop(rows_a);
        drop(rows_b);
        drop(statement_a);
        drop(statement_b);
        for difference in found {
            self.differ(difference.place, difference.detail);
        }
        Ok(())
    }
}

fn by_name(objects: Vec<sqlite::SchemaObject>) -> BTreeMap<(String, String), String> {
    objects.into_iter().map(|o| ((o.kind, o.name), o.sql)).collect()
}

fn owned_row(row: Option<&rusqlite::Row<'_>>, width: usize) -> Result<Option<Vec<OwnedValue>>> {
    let Some(row) = row else {
        return Ok(None);
    };
    (0..width)
        .map(|i| {
            row.get_ref(i).map(OwnedValue::of).map_err(|e| Error::Sqlite {
                path: PathBuf::new(),
                source: e,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn compare_keys(a: &[OwnedValue], b: &[OwnedValue]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| sqlite::sql_order(x.get(), y.get()))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

fn row_place(table: &str, key_names: &[String], row: &[OwnedValue]) -> String {
    let key: Vec<String> = key_names
        .iter()
        .zip(row)
        .map(|(name, value)| format!("{name} = {}", sqlite::render(value.get())))
        .collect();
    format!("table {table}, row {}", key.join(", "))
}
