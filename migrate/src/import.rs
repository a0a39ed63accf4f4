//! `import`: a store (a file or a database) from a sessions.db SQLite file,
//! or from another store (see `copy.rs`).
//!
//! Sessions are read in `session_id` order, and each session's messages are
//! read beside it (SQLite walks its `(session_id, timestamp)` index), so only
//! one session's messages are held at a time; the library sorts them by
//! timestamp instant, then id, and numbers them. Every other table's rows,
//! the schema's DDL and `sqlite_sequence` travel in the store unchanged.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use sessionstore::{
    ExtraColumns, ExtraRow, ExtraValue, Importer, JsonText, Message, Role, SessionInfo, SessionStore,
    StoreOptions, Timestamp, Uuid,
};

use crate::copy;
use crate::error::{Error, InFile, Result};
use crate::location;
use crate::output::Output;
use crate::progress::Progress;
use crate::read_ahead;
use crate::replace;
use crate::schema::{self, SequenceRow};
use crate::sqlite::{self, quote, to_extra, SchemaObject, TableLayout, MESSAGES, SEQUENCE, SESSIONS};

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Replace an existing destination.
    pub force: bool,
    /// Carry rows the store cannot hold (a message whose session does not
    /// exist, a session or message that breaks a rule of the data model)
    /// as uninterpreted rows instead of stopping: they are invisible to the
    /// store's API, counted in the report, and written back by `export`.
    pub carry_invalid_rows: bool,
    /// Draw progress bars (only on a terminal).
    pub progress: bool,
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// Sessions imported.
    pub sessions: u64,
    /// Messages imported.
    pub messages: u64,
    /// Rows of other tables carried.
    pub extra_rows: u64,
    /// Rows carried uninterpreted because they break a rule (only with
    /// [`ImportOptions::carry_invalid_rows`]).
    pub carried: u64,
    /// Why the first carried rows were carried.
    pub carried_examples: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Imports `source` (a sessions.db SQLite file, or a store: a store file or
/// a `postgres://` URL) into `dest` (a new store file, or a `postgres://`
/// URL).
///
/// Into a file: on any error nothing is left at `dest` (and no temporary
/// file). An existing `dest` (replaced only with [`ImportOptions::force`])
/// is refused when it is `source` itself, or a store open elsewhere.
///
/// Into a database: one that holds sessions already is refused
/// ([`Error::DatabaseNotEmpty`], nothing written) unless
/// [`ImportOptions::force`], which loads into it (the library refuses an id
/// it holds already). The source is opened and checked before the database
/// is: a sessions.db is imported into a store file in a temporary folder
/// first (every rule checked there), then copied.
pub fn import(source: &Path, dest: &Path, options: &ImportOptions) -> Result<ImportReport> {
    let started = Instant::now();
    let mut report = match location::database_url(dest) {
        Some(url) => import_into_database(source, url, options)?,
        None => import_into_file(source, dest, options)?,
    };
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The store options of the store an import writes.
fn dest_options() -> StoreOptions {
    location::store_options(128 << 20)
}

fn import_into_file(source: &Path, dest: &Path, options: &ImportOptions) -> Result<ImportReport> {
    let source_is_file = location::database_url(source).is_none();
    if source_is_file {
        replace::refuse_same_file(source, dest)?;
    }
    // Held until the new store is in place.
    let _held = replace::hold_destination(dest)?;
    if location::is_sqlite(source)? {
        return import_sqlite_into_file(source, dest, options);
    }
    let from = location::open_import_source(source, location::store_options(64 << 20))?;
    let mut output = Output::create(dest, options.force)?.with_files_beside(SessionStore::files_beside);
    output.write_back_early()?;
    let report = {
        let into = SessionStore::open_with(output.path(), dest_options()).in_file(dest)?;
        copy::copy(&from, &location::shown(source), &into, dest, options)?
    };
    output.commit(source_is_file.then_some(source))?;
    Ok(report)
}

fn import_sqlite_into_file(source: &Path, dest: &Path, options: &ImportOptions) -> Result<ImportReport> {
    let conn = sqlite::open_unchecked(source)?;
    let _reading_ahead = read_ahead::Background::start(source);
    let check = sqlite::QuickCheck::start(source)?;
    let mut output = Output::create(dest, options.force)?.with_files_beside(SessionStore::files_beside);
    output.write_back_early()?;
    let loaded = SessionStore::open_with(output.path(), dest_options())
        .in_file(dest)
        .and_then(|store| load(&conn, source, dest, &store, options));
    // A damaged file is reported as such, whatever reading it ran into.
    check.finish(source)?;
    let report = loaded?;
    output.commit(Some(source))?;
    Ok(report)
}

fn import_into_database(source: &Path, url: &str, options: &ImportOptions) -> Result<ImportReport> {
    let dest = location::shown(Path::new(url));
    if location::is_sqlite(source)? {
        // The library checks every row into a store file staged in a
        // temporary folder first: a damaged file or a refused row stops the
        // import before the database is touched.
        let staging = tempfile::tempdir()
            .map_err(|e| Error::io("create a temporary folder in", &std::env::temp_dir(), e))?;
        let staged = staging.path().join("staged.redb");
        let report = import_sqlite_into_file(source, &staged, options)?;
        let from = SessionStore::open_with(&staged, location::store_options(64 << 20)).in_file(&staged)?;
        let into = open_empty_database(url, &dest, options)?;
        copy::copy(&from, source, &into, &dest, options)?;
        Ok(report)
    } else {
        let from = location::open_import_source(source, location::store_options(64 << 20))?;
        let into = open_empty_database(url, &dest, options)?;
        copy::copy(&from, &location::shown(source), &into, &dest, options)
    }
}

/// Opens the database an import loads into, refusing one that holds
/// sessions already unless `--force`.
fn open_empty_database(url: &str, dest: &Path, options: &ImportOptions) -> Result<SessionStore> {
    let into = location::open_database(url, true)?;
    let stats = into.stats().in_file(dest)?;
    let sessions = stats.active_sessions + stats.expired_sessions;
    if sessions > 0 && !options.force {
        return Err(Error::DatabaseNotEmpty {
            database: dest.to_path_buf(),
            sessions,
        });
    }
    Ok(into)
}

/// Reads everything from `conn` into `store` (the store `dest` names).
fn load(
    conn: &Connection,
    source: &Path,
    dest: &Path,
    store: &SessionStore,
    options: &ImportOptions,
) -> Result<ImportReport> {
    let schema = sqlite::read_schema(conn, source)?;
    let mut run = Run {
        conn,
        source,
        dest,
        importer: store.importer(),
        options,
        progress: Progress::new(options.progress),
        report: ImportReport::default(),
        carried_sessions: HashSet::new(),
    };
    run.sessions_and_messages()?;
    run.extra_tables(&schema)?;
    run.sequence()?;
    run.importer
        .set_opaque(schema::SCHEMA_KEY, schema::encode(schema::SCHEMA_KEY, &schema)?)
        .in_file(dest)?;
    let Run { importer, report, .. } = run;
    importer.finish().in_file(dest)?;
    Ok(report)
}

/// How many carried rows the report explains.
const EXAMPLES: usize = 10;

struct Run<'a> {
    conn: &'a Connection,
    source: &'a Path,
    dest: &'a Path,
    importer: Importer,
    options: &'a ImportOptions,
    progress: Progress,
    report: ImportReport,
    /// Session ids (as text) carried uninterpreted: rows of other tables
    /// that name them are not tied to a session in the store.
    carried_sessions: HashSet<String>,
}

/// Where the columns the store interprets are in `chat_sessions`.
struct SessionColumns {
    id: usize,
    user: usize,
    created: usize,
    updated: usize,
    context: usize,
    metadata: usize,
    expired: usize,
}

/// Where the columns the store interprets are in `chat_messages`.
struct MessageColumns {
    id: usize,
    session: usize,
    role: usize,
    content: usize,
    query_plan: usize,
    candidate_set: usize,
    timestamp: usize,
}

/// `chat_messages` as the file lays it out.
struct MessageShape<'a> {
    layout: &'a TableLayout,
    columns: &'a MessageColumns,
}

impl MessageShape<'_> {
    /// The row a checked message came from, rebuilt exactly (to carry it
    /// uninterpreted after all: its session is missing or refused).
    fn values(&self, message: Message, session_key: ExtraValue) -> Vec<ExtraValue> {
        let c = self.columns;
        let json = |j: Option<JsonText>| j.map_or(ExtraValue::Null, |j| ExtraValue::Text(j.into_string()));
        let mut values: Vec<ExtraValue> = self
            .layout
            .columns
            .iter()
            .map(|column| {
                message
                    .extra
                    .get(&column.name)
                    .cloned()
                    .or_else(|| column.default.clone())
                    .unwrap_or(ExtraValue::Null)
            })
            .collect();
        values[c.id] = ExtraValue::Integer(message.id as i64);
        values[c.session] = session_key;
        values[c.role] = ExtraValue::Text(message.role.as_str().to_owned());
        values[c.timestamp] = ExtraValue::Text(message.timestamp.to_text().into_owned());
        values[c.content] = ExtraValue::Text(message.content);
        values[c.query_plan] = json(message.query_plan);
        values[c.candidate_set] = json(message.candidate_set);
        values
    }
}

/// A row refused by a rule, with its values (to carry it) and the reason.
struct Refused {
    rowid: i64,
    row: String,
    reason: String,
    values: Vec<ExtraValue>,
}

/// A row of `chat_messages`, read and checked, waiting for its session.
struct PendingMessage {
    session_key: ExtraValue,
    checked: std::result::Result<Message, Refused>,
}

/// A row of `chat_sessions`, read and checked.
struct PendingSession {
    key: ExtraValue,
    rowid: i64,
    checked: std::result::Result<SessionInfo, Refused>,
}

impl Run<'_> {
    fn sessions_and_messages(&mut self) -> Result<()> {
        let (conn, source) = (self.conn, self.source);
        let sessions_layout = TableLayout::read(conn, source, SESSIONS)?;
        let messages_layout = TableLayout::read(conn, source, MESSAGES)?;
        let session_columns = SessionColumns {
            id: sessions_layout.require("session_id")?,
            user: sessions_layout.require("user_id")?,
            created: sessions_layout.require("created_at")?,
            updated: sessions_layout.require("updated_at")?,
            context: sessions_layout.require("context")?,
            metadata: sessions_layout.require("metadata")?,
            expired: sessions_layout.require("expired_at")?,
        };
        let message_columns = MessageColumns {
            id: messages_layout.require("id")?,
            session: messages_layout.require("session_id")?,
            role: messages_layout.require("role")?,
            content: messages_layout.require("content")?,
            query_plan: messages_layout.require("query_plan")?,
            candidate_set: messages_layout.require("candidate_set")?,
            timestamp: messages_layout.require("timestamp")?,
        };
        if !messages_layout.is_rowid_alias(message_columns.id) {
            self.refuse_duplicate_message_ids()?;
        }
        let session_bar = self
            .progress
            .table(SESSIONS, sqlite::count_rows(conn, source, SESSIONS)?);
        let message_bar = self
            .progress
            .table(MESSAGES, sqlite::count_rows(conn, source, MESSAGES)?);

        let mut sessions_statement = conn
            .prepare(&ordered_select(&sessions_layout, "session_id"))
            .in_file(source)?;
        let mut messages_statement = conn
            .prepare(&ordered_select(&messages_layout, "session_id"))
            .in_file(source)?;
        let mut session_rows = sessions_statement.query([]).in_file(source)?;
        let mut message_rows = messages_statement.query([]).in_file(source)?;

        let shape = MessageShape {
            layout: &messages_layout,
            columns: &message_columns,
        };
        let read_message = |rows: &mut rusqlite::Rows<'_>| -> Result<Option<PendingMessage>> {
            match rows.next().in_file(source)? {
                Some(row) => {
                    message_bar.inc(1);
                    Ok(Some(check_message(row, &shape)?))
                }
                None => Ok(None),
            }
        };
        let mut next_message = read_message(&mut message_rows)?;
        let mut previous: Option<(ExtraValue, i64)> = None;
        while let Some(row) = session_rows.next().in_file(source)? {
            session_bar.inc(1);
            let mut session = check_session(row, &sessions_layout, &session_columns)?;
            if let Some((key, rowid)) = &previous {
                if *key == session.key && session.checked.is_ok() {
                    session.checked = Err(Refused {
                        rowid: session.rowid,
                        row: format!("session_id {}", sqlite::render(sqlite::from_extra(key))),
                        reason: format!("duplicate session_id (rowid {rowid} has it too)"),
                        values: row_values(row, 1, sessions_layout.columns.len()).unwrap_or_default(),
                    });
                }
            }
            previous = Some((session.key.clone(), session.rowid));
            // Messages before this session's key name no session: orphans.
            while let Some(pending) = next_message.take() {
                if sqlite::sql_order(
                    sqlite::from_extra(&pending.session_key),
                    sqlite::from_extra(&session.key),
                )
                .is_lt()
                {
                    self.orphan(pending, &shape)?;
                    next_message = read_message(&mut message_rows)?;
                } else {
                    next_message = Some(pending);
                    break;
                }
            }
            let mut group = Vec::new();
            while let Some(pending) = next_message.take() {
                if pending.session_key == session.key {
                    group.push(pending);
                    next_message = read_message(&mut message_rows)?;
                } else {
                    next_message = Some(pending);
                    break;
                }
            }
            self.session(session, group, &shape)?;
        }
        while let Some(pending) = next_message.take() {
            self.orphan(pending, &shape)?;
            next_message = read_message(&mut message_rows)?;
        }
        session_bar.finish();
        message_bar.finish();
        Ok(())
    }

    /// Refuses a file whose `chat_messages.id` is not its rowid and holds
    /// one id twice.
    fn refuse_duplicate_message_ids(&self) -> Result<()> {
        let duplicate: Option<String> = self
            .conn
            .query_row(
                "SELECT quote(id) FROM main.chat_messages GROUP BY id HAVING COUNT(*) > 1 LIMIT 1",
                [],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .in_file(self.source)?;
        match duplicate {
            Some(id) => Err(Error::row(MESSAGES, format!("id {id}"), "duplicate id")),
            None => Ok(()),
        }
    }

    fn session(
        &mut self,
        session: PendingSession,
        group: Vec<PendingMessage>,
        shape: &MessageShape<'_>,
    ) -> Result<()> {
        match session.checked {
            Ok(info) => {
                let id = info.session_id;
                let mut messages = Vec::with_capacity(group.len());
                for pending in group {
                    match pending.checked {
                        Ok(message) => messages.push(message),
                        Err(refused) => self.carry(MESSAGES, refused)?,
                    }
                }
                self.report.sessions += 1;
                self.report.messages += messages.len() as u64;
                self.importer.add_session(info).in_file(self.dest)?;
                self.importer.add_messages(id, messages).in_file(self.dest)?;
            }
            Err(refused) => {
                if let ExtraValue::Text(text) = &session.key {
                    self.carried_sessions.insert(text.clone());
                }
                let reason = refused.reason.clone();
                self.carry(SESSIONS, refused)?;
                for pending in group {
                    let refused = match pending.checked {
                        Ok(message) => Refused {
                            rowid: message.id as i64,
                            row: format!("id {}", message.id),
                            reason: format!("its session was not imported ({reason})"),
                            values: shape.values(message, pending.session_key),
                        },
                        Err(refused) => refused,
                    };
                    self.carry(MESSAGES, refused)?;
                }
            }
        }
        Ok(())
    }

    fn orphan(&mut self, pending: PendingMessage, shape: &MessageShape<'_>) -> Result<()> {
        let reason = format!(
            "session_id {} is not in {SESSIONS}",
            sqlite::render(sqlite::from_extra(&pending.session_key))
        );
        let refused = match pending.checked {
            Ok(message) => Refused {
                rowid: message.id as i64,
                row: format!("id {}", message.id),
                reason,
                values: shape.values(message, pending.session_key),
            },
            Err(refused) => refused,
        };
        self.carry(MESSAGES, refused)
    }

    /// Carries a refused row uninterpreted, or stops with its error.
    fn carry(&mut self, table: &str, refused: Refused) -> Result<()> {
        if !self.options.carry_invalid_rows {
            return Err(Error::row(table, refused.row, refused.reason));
        }
        self.report.carried += 1;
        if self.report.carried_examples.len() < EXAMPLES {
            self.report
                .carried_examples
                .push(format!("table {table}, row {}: {}", refused.row, refused.reason));
        }
        self.importer
            .add_extra_row(ExtraRow {
                table: table.to_owned(),
                rowid: refused.rowid,
                session: None,
                values: refused.values,
            })
            .in_file(self.dest)
    }

    /// Every table other than the two the store interprets, row by row.
    fn extra_tables(&mut self, schema: &[SchemaObject]) -> Result<()> {
        let (conn, source) = (self.conn, self.source);
        let mut session_exists = conn
            .prepare("SELECT 1 FROM main.chat_sessions WHERE session_id = ?1")
            .in_file(source)?;
        for object in schema {
            if object.kind != "table" || object.name == SESSIONS || object.name == MESSAGES {
                continue;
            }
            let layout = TableLayout::read(conn, source, &object.name)?;
            let bar = self
                .progress
                .table(&object.name, sqlite::count_rows(conn, source, &object.name)?);
            let rowid = if layout.has_rowid { "_rowid_" } else { "NULL" };
            let order = if layout.has_rowid {
                "_rowid_".to_owned()
            } else {
                layout.column_list(layout.primary_key())
            };
            let sql = format!(
                "SELECT {rowid}, {} FROM main.{} ORDER BY {order}",
                layout.column_list(0..layout.columns.len()),
                quote(&object.name)
            );
            let mut statement = conn.prepare(&sql).in_file(source)?;
            let mut rows = statement.query([]).in_file(source)?;
            let mut position = 0i64;
            while let Some(row) = rows.next().in_file(source)? {
                bar.inc(1);
                position += 1;
                let rowid = match row.get_ref(0).in_file(source)? {
                    ValueRef::Integer(rowid) => rowid,
                    _ => position,
                };
                let values = row_values(row, 1, layout.columns.len())
                    .map_err(|reason| Error::row(&object.name, format!("rowid {rowid}"), reason))?;
                let session = match layout.session_column.map(|c| &values[c]) {
                    Some(ExtraValue::Text(text)) if !self.carried_sessions.contains(text) => {
                        match canonical_uuid(text) {
                            Some(id) if session_exists.exists([text]).in_file(source)? => Some(id),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                self.report.extra_rows += 1;
                self.importer
                    .add_extra_row(ExtraRow {
                        table: object.name.clone(),
                        rowid,
                        session,
                        values,
                    })
                    .in_file(self.dest)?;
            }
            bar.finish();
        }
        Ok(())
    }

    /// `sqlite_sequence`, kept as it is; its `chat_messages` row raises the
    /// store's next message id.
    fn sequence(&mut self) -> Result<()> {
        if !sqlite::has_table(self.conn, self.source, SEQUENCE)? {
            return Ok(());
        }
        let mut statement = self
            .conn
            .prepare("SELECT rowid, name, seq FROM main.sqlite_sequence ORDER BY rowid")
            .in_file(self.source)?;
        let mut rows = statement.query([]).in_file(self.source)?;
        let mut sequence: Vec<SequenceRow> = Vec::new();
        while let Some(row) = rows.next().in_file(self.source)? {
            let rowid: i64 = row.get(0).in_file(self.source)?;
            let values = row_values(row, 1, 2)
                .map_err(|reason| Error::row(SEQUENCE, format!("rowid {rowid}"), reason))?;
            let [name, seq]: [ExtraValue; 2] = values
                .try_into()
                .map_err(|_| Error::row(SEQUENCE, format!("rowid {rowid}"), "expected two columns"))?;
            if matches!(seq, ExtraValue::Real(_) | ExtraValue::Blob(_)) {
                return Err(Error::row(
                    SEQUENCE,
                    format!("rowid {rowid}"),
                    "seq is not an integer",
                ));
            }
            if let (ExtraValue::Text(name), ExtraValue::Integer(seq)) = (&name, &seq) {
                if name == MESSAGES && *seq >= 0 {
                    self.importer.raise_next_message_id(*seq as u64 + 1);
                }
            }
            sequence.push((name, seq));
        }
        self.importer
            .set_opaque(
                schema::SEQUENCE_KEY,
                schema::encode(schema::SEQUENCE_KEY, &sequence)?,
            )
            .in_file(self.dest)
    }
}

/// `SELECT rowid, every column FROM table ORDER BY key` (byte order).
fn ordered_select(layout: &TableLayout, key: &str) -> String {
    let rowid = if layout.has_rowid { "_rowid_" } else { "NULL" };
    format!(
        "SELECT {rowid}, {} FROM main.{} ORDER BY {} COLLATE BINARY",
        layout.column_list(0..layout.columns.len()),
        quote(&layout.name),
        quote(key)
    )
}

/// Columns `first..first + count` of a row, as the store keeps values.
fn row_values(row: &Row<'_>, first: usize, count: usize) -> std::result::Result<Vec<ExtraValue>, String> {
    (first..first + count)
        .map(|i| {
            let value = row.get_ref(i).map_err(|e| e.to_string())?;
            to_extra(value)
        })
        .collect()
}

/// The lowercase hyphenated form the old store writes, and nothing else
/// (another spelling of the same UUID would not come back byte for byte).
fn canonical_uuid(text: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(text).ok()?;
    let mut buffer = Uuid::encode_buffer();
    (id.hyphenated().encode_lower(&mut buffer) == text).then_some(id)
}

/// The text of a column, or why it is not text.
fn text<'r>(value: ValueRef<'r>, column: &str) -> std::result::Result<&'r str, String> {
    match value {
        ValueRef::Text(bytes) => {
            std::str::from_utf8(bytes).map_err(|e| format!("{column} is not valid UTF-8 ({e})"))
        }
        other => Err(format!("{column} is {}, not TEXT", sqlite::type_name(other))),
    }
}

/// Text or NULL.
fn optional_text<'r>(value: ValueRef<'r>, column: &str) -> std::result::Result<Option<&'r str>, String> {
    match value {
        ValueRef::Null => Ok(None),
        other => text(other, column).map(Some),
    }
}

fn timestamp(value: ValueRef<'_>, column: &str) -> std::result::Result<Timestamp, String> {
    Timestamp::parse(text(value, column)?).map_err(|e| format!("{column}: {e}"))
}

fn optional_timestamp(value: ValueRef<'_>, column: &str) -> std::result::Result<Option<Timestamp>, String> {
    optional_text(value, column)?
        .map(|t| Timestamp::parse(t).map_err(|e| format!("{column}: {e}")))
        .transpose()
}

fn json(value: ValueRef<'_>, column: &'static str) -> std::result::Result<Option<JsonText>, String> {
    optional_text(value, column)?
        .map(|t| JsonText::object(column, t).map_err(|e| e.to_string()))
        .transpose()
}

/// The columns the store does not interpret, except those holding the
/// value the column's constant DEFAULT gives (export leaves them out, and
/// SQLite fills the same value back in).
fn extra_columns(
    row: &Row<'_>,
    layout: &TableLayout,
    interpreted: &[usize],
) -> std::result::Result<ExtraColumns, String> {
    let mut extra = ExtraColumns::new();
    for (i, column) in layout.columns.iter().enumerate() {
        if interpreted.contains(&i) {
            continue;
        }
        let value = to_extra(row.get_ref(i + 1).map_err(|e| e.to_string())?)?;
        if column.default.as_ref() != Some(&value) {
            extra.insert(column.name.clone(), value);
        }
    }
    Ok(extra)
}

fn rowid_of(row: &Row<'_>) -> i64 {
    match row.get_ref(0) {
        Ok(ValueRef::Integer(rowid)) => rowid,
        _ => 0,
    }
}

fn check_session(row: &Row<'_>, layout: &TableLayout, c: &SessionColumns) -> Result<PendingSession> {
    let get = |i: usize| row.get_ref(i + 1);
    let rowid = rowid_of(row);
    let key = to_extra(get(c.id).map_err(|e| sqlite_row_error(SESSIONS, rowid, e))?)
        .map_err(|reason| Error::row(SESSIONS, format!("rowid {rowid}"), reason))?;
    let checked = (|| -> std::result::Result<SessionInfo, String> {
        let value = |i: usize| get(i).map_err(|e| e.to_string());
        let id_text = text(value(c.id)?, "session_id")?;
        let session_id = canonical_uuid(id_text)
            .ok_or_else(|| "session_id is not a lowercase hyphenated UUID".to_owned())?;
        Ok(SessionInfo {
            session_id,
            user_id: optional_text(value(c.user)?, "user_id")?.map(str::to_owned),
            created_at: timestamp(value(c.created)?, "created_at")?,
            updated_at: timestamp(value(c.updated)?, "updated_at")?,
            expired_at: optional_timestamp(value(c.expired)?, "expired_at")?,
            context: json(value(c.context)?, "context")?,
            metadata: json(value(c.metadata)?, "metadata")?,
            message_count: 0,
            extra: extra_columns(
                row,
                layout,
                &[
                    c.id, c.user, c.created, c.updated, c.context, c.metadata, c.expired,
                ],
            )?,
        })
    })();
    let checked = checked.map_err(|reason| Refused {
        rowid,
        row: format!(
            "session_id {} (rowid {rowid})",
            sqlite::render(sqlite::from_extra(&key))
        ),
        reason,
        values: row_values(row, 1, layout.columns.len()).unwrap_or_default(),
    });
    Ok(PendingSession { key, rowid, checked })
}

fn check_message(row: &Row<'_>, shape: &MessageShape<'_>) -> Result<PendingMessage> {
    let (layout, c) = (shape.layout, shape.columns);
    let get = |i: usize| row.get_ref(i + 1);
    let rowid = rowid_of(row);
    let session_key = to_extra(get(c.session).map_err(|e| sqlite_row_error(MESSAGES, rowid, e))?)
        .map_err(|reason| Error::row(MESSAGES, format!("rowid {rowid}"), reason))?;
    let id_value = get(c.id).map_err(|e| sqlite_row_error(MESSAGES, rowid, e))?;
    let checked = (|| -> std::result::Result<Message, String> {
        let value = |i: usize| get(i).map_err(|e| e.to_string());
        let id = match id_value {
            ValueRef::Integer(id) if id >= 0 => id as u64,
            other => {
                return Err(format!(
                    "id {} is not a non-negative integer",
                    sqlite::render(other)
                ))
            }
        };
        text(value(c.session)?, "session_id")?;
        let role: Role = text(value(c.role)?, "role")?
            .parse()
            .map_err(|e: sessionstore::Error| e.to_string())?;
        Ok(Message {
            id,
            seq: 0,
            role,
            content: text(value(c.content)?, "content")?.to_owned(),
            query_plan: json(value(c.query_plan)?, "query_plan")?,
            candidate_set: json(value(c.candidate_set)?, "candidate_set")?,
            timestamp: timestamp(value(c.timestamp)?, "timestamp")?,
            extra: extra_columns(
                row,
                layout,
                &[
                    c.id,
                    c.session,
                    c.role,
                    c.content,
                    c.query_plan,
                    c.candidate_set,
                    c.timestamp,
                ],
            )?,
            tokens: None,
        })
    })();
    let checked = checked.map_err(|reason| Refused {
        rowid,
        row: format!("id {}", sqlite::render(id_value)),
        reason,
        values: row_values(row, 1, layout.columns.len()).unwrap_or_default(),
    });
    Ok(PendingMessage { session_key, checked })
}

fn sqlite_row_error(table: &str, rowid: i64, error: rusqlite::Error) -> Error {
    Error::row(table, format!("rowid {rowid}"), error.to_string())
}
