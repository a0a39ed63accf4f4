//! `export`: a sessions.db SQLite file from a store (a file or a database).
//!
//! Tables are made first, rows are loaded in one transaction (messages in
//! id order, so SQLite appends), then indexes, views and triggers are made
//! from the same DDL, and `sqlite_sequence` is written last.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use sessionstore::{ExtraColumns, ExtraValue, Message, SessionInfo, SessionStore, Snapshot, Uuid};

use crate::error::{Error, InFile, Result};
use crate::location;
use crate::output::Output;
use crate::progress::Progress;
use crate::read_ahead;
use crate::replace;
use crate::schema::{self, SchemaChoice};
use crate::sqlite::{self, quote, SchemaObject, TableLayout, MESSAGES, SEQUENCE, SESSIONS};

/// The page size of exported files. A message row (1 to 4 KB in the old
/// store's files) fits a 16 KiB page several times over: a 4 KiB page holds
/// one and wastes the rest, and makes the file a fifth larger. Both
/// generations of the old store open any page size.
const PAGE_SIZE: u32 = 16384;

/// How to export.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Replace an existing destination.
    pub force: bool,
    /// The schema to write. `None`: the schema of the file the store was
    /// imported from, exactly; the generation-2 schema for a store made by
    /// the library.
    pub schema: Option<SchemaChoice>,
    /// Draw progress bars (only on a terminal).
    pub progress: bool,
}

/// What an export did.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    /// Sessions written.
    pub sessions: u64,
    /// Messages written.
    pub messages: u64,
    /// Rows of other tables written.
    pub extra_rows: u64,
    /// Which schema was written.
    pub schema: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Exports the store `source` (a store file, or a `postgres://` URL) to a
/// new SQLite file `dest`.
///
/// On any error nothing is left at `dest` (and no temporary file). An
/// existing `dest` (replaced only with [`ExportOptions::force`]) is refused
/// when it is `source` itself, or a store open elsewhere. A store file
/// another process holds (the chatbot, say) is exported from a consistent
/// copy its holder writes (a backup, through its local socket) into a
/// temporary folder beside it, removed after: the output is the same, byte
/// for byte.
pub fn export(source: &Path, dest: &Path, options: &ExportOptions) -> Result<ExportReport> {
    let file = location::database_url(source).is_none();
    if file {
        sqlite::require_file(source)?;
        replace::refuse_same_file(source, dest)?;
    }
    // Held until the new file is in place.
    let _held = replace::hold_destination(dest)?;
    let store = location::open_source(source, location::store_options(64 << 20))?;
    let _reading_ahead = file.then(|| read_ahead::Background::start(source));
    export_store(
        &store,
        &location::shown(source),
        dest,
        options,
        file.then_some(source),
    )
}

/// Exports an open store.
///
/// `source` names the store in messages; `dest` takes the permissions of
/// `mode_of` (the store file), else those of a new private file.
pub(crate) fn export_store(
    store: &SessionStore,
    source: &Path,
    dest: &Path,
    options: &ExportOptions,
    mode_of: Option<&Path>,
) -> Result<ExportReport> {
    let started = Instant::now();
    let snapshot = store.snapshot().in_file(source)?;
    let (objects, schema_name) = match options.schema {
        Some(choice) => (choice.objects(), choice.name()),
        None => match schema::stored_schema(&snapshot, source)? {
            Some(objects) => (objects, "imported"),
            None => (SchemaChoice::Upgraded.objects(), SchemaChoice::Upgraded.name()),
        },
    };
    let mut output = Output::create(dest, options.force)?;
    output.write_back_early()?;
    let mut report = {
        let conn = sqlite::open_output(output.path(), PAGE_SIZE)?;
        // The run's statements are finalized when it ends, before the close.
        let report = {
            let mut run = Run {
                conn: &conn,
                snapshot: &snapshot,
                source,
                dest,
                schema: schema_name,
                progress: Progress::new(options.progress),
                layouts: HashMap::new(),
                statements: HashMap::new(),
                extra_inserts: HashMap::new(),
                last_insert: None,
                report: ExportReport {
                    schema: schema_name.to_owned(),
                    ..ExportReport::default()
                },
            };
            conn.execute_batch("BEGIN").in_file(dest)?;
            for object in objects.iter().filter(|o| o.kind == "table") {
                run.create(object)?;
            }
            run.extra_rows()?;
            run.sessions()?;
            run.messages()?;
            for object in objects.iter().filter(|o| o.kind != "table") {
                run.create(object)?;
            }
            run.sequence()?;
            conn.execute_batch("COMMIT").in_file(dest)?;
            run.report
        };
        conn.close().map_err(|(_, e)| e).in_file(dest)?;
        report
    };
    output.commit(mode_of)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

struct Run<'a> {
    conn: &'a Connection,
    snapshot: &'a Snapshot,
    source: &'a Path,
    dest: &'a Path,
    schema: &'static str,
    progress: Progress,
    layouts: HashMap<String, TableLayout>,
    /// INSERT statements' SQL by table and the extra columns they name.
    statements: HashMap<(String, Vec<String>), String>,
    /// The INSERT of an extra row, by table.
    extra_inserts: HashMap<String, String>,
    /// The statement of the last INSERT through [`Run::insert`], kept
    /// prepared: rows of one table with the same extra columns follow each
    /// other by the million.
    last_insert: Option<LastInsert<'a>>,
    report: ExportReport,
}

/// The columns the store interprets, in the order the INSERTs bind them.
const SESSION_COLUMNS: [&str; 7] = [
    "session_id",
    "user_id",
    "created_at",
    "updated_at",
    "context",
    "metadata",
    "expired_at",
];
const MESSAGE_COLUMNS: [&str; 7] = [
    "id",
    "session_id",
    "role",
    "content",
    "query_plan",
    "candidate_set",
    "timestamp",
];

struct LastInsert<'a> {
    table: String,
    extra: Vec<String>,
    statement: rusqlite::CachedStatement<'a>,
}

impl Run<'_> {
    /// Runs one stored CREATE statement (and nothing else).
    fn create(&mut self, object: &SchemaObject) -> Result<()> {
        let starts_with_create = object
            .sql
            .trim_start()
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case("CREATE "));
        if !starts_with_create {
            return Err(Error::table(
                &object.name,
                "its stored DDL is not a CREATE statement",
            ));
        }
        let mut statement = self.conn.prepare(&object.sql).in_file(self.dest)?;
        statement.execute([]).in_file(self.dest)?;
        Ok(())
    }

    fn layout(&mut self, table: &str) -> Result<&TableLayout> {
        if !self.layouts.contains_key(table) {
            let layout = TableLayout::read(self.conn, self.dest, table).map_err(|e| match e {
                Error::Table { table, reason } if reason == "no such table" => Error::DoesNotFit {
                    schema: self.schema,
                    what: format!("the rows of table {table}"),
                },
                other => other,
            })?;
            self.layouts.insert(table.to_owned(), layout);
        }
        Ok(&self.layouts[table])
    }

    /// The INSERT for `table` naming `columns` then `extra`, made once.
    fn insert_sql(&mut self, table: &str, columns: &[&str], extra: Vec<String>) -> Result<String> {
        let key = (table.to_owned(), extra);
        if let Some(sql) = self.statements.get(&key) {
            return Ok(sql.clone());
        }
        let layout = self.layout(table)?;
        for name in &key.1 {
            if layout.position(name).is_none() {
                return Err(Error::DoesNotFit {
                    schema: self.schema,
                    what: format!("column {table}.{name}"),
                });
            }
        }
        let names: Vec<String> = columns
            .iter()
            .map(|c| quote(c))
            .chain(key.1.iter().map(|c| quote(c)))
            .collect();
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO main.{} ({}) VALUES ({})",
            quote(table),
            names.join(", "),
            placeholders.join(", ")
        );
        self.statements.insert(key, sql.clone());
        Ok(sql)
    }

    fn insert(
        &mut self,
        table: &str,
        columns: &[&str],
        extra: &ExtraColumns,
        values: [ValueRef<'_>; 7],
    ) -> Result<()> {
        let same = self
            .last_insert
            .as_ref()
            .is_some_and(|last| last.table == table && last.extra.iter().eq(extra.keys()));
        let mut last = match self.last_insert.take() {
            Some(last) if same => last,
            _ => {
                let names: Vec<String> = extra.keys().cloned().collect();
                let sql = self.insert_sql(table, columns, names.clone())?;
                LastInsert {
                    table: table.to_owned(),
                    extra: names,
                    statement: self.conn.prepare_cached(&sql).in_file(self.dest)?,
                }
            }
        };
        let all = values
            .into_iter()
            .chain(extra.values().map(sqlite::from_extra))
            .map(sqlite::bind);
        let inserted = last.statement.execute(rusqlite::params_from_iter(all));
        self.last_insert = Some(last);
        inserted.in_file(self.dest)?;
        Ok(())
    }

    /// Rows of tables the store does not interpret, and rows carried
    /// uninterpreted into the two it does.
    fn extra_rows(&mut self) -> Result<()> {
        let rows = self.snapshot.extra_row_count().in_file(self.source)?;
        let bar = self.progress.table("other tables", rows);
        let schema = self.schema;
        for row in self.snapshot.extra_rows().in_file(self.source)? {
            let row = row.in_file(self.source)?;
            self.layout(&row.table)?;
            let layout = &self.layouts[&row.table];
            if row.values.len() != layout.columns.len() {
                return Err(Error::DoesNotFit {
                    schema,
                    what: format!(
                        "the rows of table {} ({} columns there, {} in the store)",
                        row.table,
                        layout.columns.len(),
                        row.values.len()
                    ),
                });
            }
            let has_rowid = layout.has_rowid;
            if !self.extra_inserts.contains_key(&row.table) {
                let sql = extra_row_insert(&row.table, layout);
                self.extra_inserts.insert(row.table.clone(), sql);
            }
            let mut statement = self
                .conn
                .prepare_cached(&self.extra_inserts[&row.table])
                .in_file(self.dest)?;
            let rowid = has_rowid.then_some(ValueRef::Integer(row.rowid));
            let values = rowid
                .into_iter()
                .chain(row.values.iter().map(sqlite::from_extra))
                .map(sqlite::bind);
            statement
                .execute(rusqlite::params_from_iter(values))
                .map_err(|e| Error::row(&row.table, format!("rowid {}", row.rowid), e.to_string()))?;
            bar.inc(1);
            self.report.extra_rows += 1;
        }
        bar.finish();
        Ok(())
    }

    fn sessions(&mut self) -> Result<()> {
        let snapshot = self.snapshot;
        let bar = self
            .progress
            .table(SESSIONS, snapshot.session_count().in_file(self.source)?);
        for session in snapshot.sessions().in_file(self.source)? {
            let session: SessionInfo = session.in_file(self.source)?;
            let mut id = Uuid::encode_buffer();
            let id = session.session_id.hyphenated().encode_lower(&mut id);
            let created = session.created_at.to_text();
            let updated = session.updated_at.to_text();
            let expired = session.expired_at.as_ref().map(|t| t.to_text());
            let values = [
                ValueRef::Text(id.as_bytes()),
                optional(session.user_id.as_deref()),
                ValueRef::Text(created.as_bytes()),
                ValueRef::Text(updated.as_bytes()),
                optional(session.context.as_ref().map(|j| j.as_str())),
                optional(session.metadata.as_ref().map(|j| j.as_str())),
                optional(expired.as_ref().map(Cow::as_ref)),
            ];
            self.insert(SESSIONS, &SESSION_COLUMNS, &session.extra, values)?;
            bar.inc(1);
            self.report.sessions += 1;
        }
        bar.finish();
        Ok(())
    }

    /// Messages in id order. A second thread reads them from the store
    /// while this one writes them to SQLite; they pass in chunks, at most
    /// [`CHUNKS_IN_FLIGHT`] at a time.
    fn messages(&mut self) -> Result<()> {
        let (snapshot, source) = (self.snapshot, self.source);
        let bar = self
            .progress
            .table(MESSAGES, snapshot.message_count().in_file(source)?);
        std::thread::scope(|scope| {
            let (chunks, receiver) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
            scope.spawn(move || read_messages(snapshot, &chunks));
            for chunk in receiver {
                for (session, message) in chunk.in_file(source)? {
                    self.message(session, message)?;
                    bar.inc(1);
                }
            }
            Ok::<(), Error>(())
        })?;
        bar.finish();
        Ok(())
    }

    fn message(&mut self, session: Uuid, message: Message) -> Result<()> {
        let mut id = Uuid::encode_buffer();
        let session = session.hyphenated().encode_lower(&mut id);
        let timestamp = message.timestamp.to_text();
        let message_id = i64::try_from(message.id).map_err(|_| {
            Error::row(
                MESSAGES,
                format!("id {}", message.id),
                "id is beyond SQLite's integers",
            )
        })?;
        let values = [
            ValueRef::Integer(message_id),
            ValueRef::Text(session.as_bytes()),
            ValueRef::Text(message.role.as_str().as_bytes()),
            ValueRef::Text(message.content.as_bytes()),
            optional(message.query_plan.as_ref().map(|j| j.as_str())),
            optional(message.candidate_set.as_ref().map(|j| j.as_str())),
            ValueRef::Text(timestamp.as_bytes()),
        ];
        self.insert(MESSAGES, &MESSAGE_COLUMNS, &message.extra, values)?;
        self.report.messages += 1;
        Ok(())
    }

    /// Writes `sqlite_sequence` as imported, with the `chat_messages` mark
    /// raised to the store's highest id ever given.
    fn sequence(&mut self) -> Result<()> {
        if !sqlite::has_table(self.conn, self.dest, SEQUENCE)? {
            return Ok(());
        }
        let mut rows = schema::stored_sequence(self.snapshot, self.source)?;
        let next = self.snapshot.next_message_id().in_file(self.source)?;
        let high = i64::try_from(next.saturating_sub(1)).unwrap_or(i64::MAX);
        let messages = ExtraValue::Text(MESSAGES.to_owned());
        match rows.iter_mut().find(|(name, _)| *name == messages) {
            Some((_, seq)) => {
                if let ExtraValue::Integer(stored) = seq {
                    *seq = ExtraValue::Integer(high.max(*stored));
                }
            }
            None if high > 0 => rows.push((messages, ExtraValue::Integer(high))),
            None => {}
        }
        self.conn
            .execute("DELETE FROM main.sqlite_sequence", [])
            .in_file(self.dest)?;
        let mut insert = self
            .conn
            .prepare("INSERT INTO main.sqlite_sequence (name, seq) VALUES (?1, ?2)")
            .in_file(self.dest)?;
        for (name, seq) in &rows {
            insert
                .execute([
                    sqlite::bind(sqlite::from_extra(name)),
                    sqlite::bind(sqlite::from_extra(seq)),
                ])
                .map_err(|e| Error::row(SEQUENCE, sqlite::render(sqlite::from_extra(name)), e.to_string()))?;
        }
        Ok(())
    }
}

/// Chunks of messages between the reading and the writing thread.
const CHUNKS_IN_FLIGHT: usize = 4;
/// A chunk ends after this many messages or this many bytes of text.
const CHUNK_MESSAGES: usize = 512;
const CHUNK_BYTES: usize = 1 << 20;

type Chunk = sessionstore::Result<Vec<(Uuid, Message)>>;

/// Reads every message in id order and sends them in chunks; stops at the
/// first error (sent on) or when the writing side has gone.
fn read_messages(snapshot: &Snapshot, chunks: &std::sync::mpsc::SyncSender<Chunk>) {
    let messages = match snapshot.messages_by_id() {
        Ok(messages) => messages,
        Err(error) => {
            // The writing side reports it; if it has gone, there is no one to tell.
            chunks.send(Err(error)).ok();
            return;
        }
    };
    let mut chunk = Vec::with_capacity(CHUNK_MESSAGES);
    let mut bytes = 0;
    for entry in messages {
        match entry {
            Ok((session, message)) => {
                bytes += message.content.len()
                    + message.query_plan.as_ref().map_or(0, |j| j.as_str().len())
                    + message.candidate_set.as_ref().map_or(0, |j| j.as_str().len());
                chunk.push((session, message));
                if chunk.len() >= CHUNK_MESSAGES || bytes >= CHUNK_BYTES {
                    bytes = 0;
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_MESSAGES));
                    if chunks.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                chunks.send(Err(error)).ok();
                return;
            }
        }
    }
    if !chunk.is_empty() {
        chunks.send(Ok(chunk)).ok();
    }
}

/// The INSERT of a row of `table` carried as it was: its rowid (when the
/// table has one), then every column, in order.
fn extra_row_insert(table: &str, layout: &TableLayout) -> String {
    let rowid = if layout.has_rowid { "_rowid_, " } else { "" };
    let count = layout.columns.len() + usize::from(layout.has_rowid);
    let placeholders: Vec<String> = (1..=count).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO main.{} ({rowid}{}) VALUES ({})",
        quote(table),
        layout.column_list(0..layout.columns.len()),
        placeholders.join(", ")
    )
}

fn optional(text: Option<&str>) -> ValueRef<'_> {
    text.map_or(ValueRef::Null, |t| ValueRef::Text(t.as_bytes()))
}
