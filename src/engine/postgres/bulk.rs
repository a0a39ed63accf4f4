//! The converter's side of the PostgreSQL engine: a consistent snapshot
//! of everything, read a page at a time, and an importer that loads data
//! as it is (ids, timestamps, extra rows), all in one transaction.
//!
//! - The snapshot holds one connection of its own in a `REPEATABLE READ
//!   READ ONLY` transaction for its life: every page it reads, by any of
//!   its iterators, sees the same state. Pages of 1,000 rows by key
//!   (keyset paging), so memory stays bounded whatever the store holds.
//! - The importer holds one connection of its own in one transaction:
//!   nothing it loads is seen before `finish` commits it, and a refusal
//!   or an error (a session loaded twice, a message id taken, a user name
//!   PostgreSQL cannot hold) rolls all of it back. Sessions and messages
//!   go in by `COPY`, in batches of bounded size (see [`PgImporter`]).

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::Client;
use uuid::Uuid;

use super::connection::{server_error, Failure, Step};
use super::rows::{self, TitleColumns, MESSAGE_COLUMNS, SESSION_COLUMNS};
use super::search;
use crate::engine::{ImportSink, Rows, SnapshotSource};
use crate::error::{Error, Result};
use crate::model::{ExtraColumns, ExtraRow, ExtraValue, Message, SessionInfo};
use crate::rules;

/// Rows a page reads.
const PAGE: i64 = 1_000;

pub(crate) struct PgSnapshot {
    client: Mutex<Client>,
}

impl PgSnapshot {
    pub(crate) fn begin(mut client: Client) -> Result<PgSnapshot> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(|e| server_error("begin the snapshot of", &e))?;
        Ok(PgSnapshot {
            client: Mutex::new(client),
        })
    }

    /// Runs `f` on the snapshot's connection (one query at a time).
    fn with<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut client).map_err(|e| server_error(action, &e))
    }

    /// The rows after `start`, a page at a time: `fetch` reads the page
    /// after a key and gives each row with its key.
    fn paged<'a, K: 'a, T: 'a>(
        &'a self,
        start: K,
        mut fetch: impl FnMut(&mut Client, &K) -> Result<Vec<(K, T)>> + 'a,
    ) -> Rows<'a, T> {
        let mut after = Some(start);
        let mut page = std::collections::VecDeque::new();
        Box::new(std::iter::from_fn(move || loop {
            if let Some(row) = page.pop_front() {
                return Some(Ok(row));
            }
            let key = after.take()?;
            let fetched = {
                let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
                fetch(&mut client, &key)
            };
            match fetched {
                Err(e) => return Some(Err(e)),
                Ok(rows) => {
                    let full = rows.len() as i64 == PAGE;
                    for (key, row) in rows {
                        after = Some(key);
                        page.push_back(row);
                    }
                    if !full {
                        after = None;
                    }
                    if page.is_empty() {
                        return None;
                    }
                }
            }
        }))
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = client.batch_execute("ROLLBACK");
    }
}

fn read_error(action: &'static str) -> impl Fn(postgres::Error) -> Error {
    move |e| server_error(action, &e)
}

impl SnapshotSource for PgSnapshot {
    fn sessions(&self) -> Result<Rows<'_, SessionInfo>> {
        let query = format!(
            "SELECT {SESSION_COLUMNS} FROM chat_sessions s WHERE s.session_id > $1 ORDER BY s.session_id LIMIT {PAGE}"
        );
        Ok(self.paged(Uuid::nil(), move |client, after| {
            let found = client
                .query(&query, &[after])
                .map_err(read_error("read the sessions of"))?;
            found
                .iter()
                .map(|row| rows::session_info(row).map(|info| (info.session_id, info)))
                .collect()
        }))
    }

    fn messages(&self, session: Uuid) -> Result<Rows<'_, Message>> {
        let query = format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages m WHERE m.session_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT {PAGE}"
        );
        Ok(self.paged(-1i64, move |client, after| {
            let found = client
                .query(&query, &[&session, after])
                .map_err(read_error("read the messages of"))?;
            found
                .iter()
                .map(|row| rows::message(row).map(|m| (rows::bigint(m.seq), m)))
                .collect()
        }))
    }

    fn messages_by_id(&self) -> Result<Rows<'_, (Uuid, Message)>> {
        let query = format!(
            "SELECT {MESSAGE_COLUMNS}, m.session_id FROM chat_messages m WHERE m.id > $1 ORDER BY m.id LIMIT {PAGE}"
        );
        Ok(self.paged(0i64, move |client, after| {
            let found = client
                .query(&query, &[after])
                .map_err(read_error("read the messages of"))?;
            found
                .iter()
                .map(|row| {
                    let session: Uuid = row.get(11);
                    rows::message(row).map(|m| (rows::bigint(m.id), (session, m)))
                })
                .collect()
        }))
    }

    fn extra_rows(&self) -> Result<Rows<'_, ExtraRow>> {
        let query = format!(
            "SELECT table_name, row_id, session_id, value_list FROM sessionstore_extra_rows
             WHERE (table_name, row_id) > ($1, $2) ORDER BY table_name, row_id LIMIT {PAGE}"
        );
        Ok(
            self.paged((String::new(), i64::MIN), move |client, (table, rowid)| {
                let found = client
                    .query(&query, &[table, rowid])
                    .map_err(read_error("read the extra rows of"))?;
                found
                    .iter()
                    .map(|row| {
                        let table: String = row.get(0);
                        let rowid: i64 = row.get(1);
                        let bytes: Vec<u8> = row.get(3);
                        let values: Vec<ExtraValue> =
                            postcard::from_bytes(&bytes).map_err(|e| Error::CorruptRecord {
                                table: "sessionstore_extra_rows",
                                key: Some(format!("{table} row {rowid}")),
                                why: e.to_string(),
                            })?;
                        let extra = ExtraRow {
                            table: table.clone(),
                            rowid,
                            session: row.get(2),
                            values,
                        };
                        Ok(((table, rowid), extra))
                    })
                    .collect()
            }),
        )
    }

    fn opaque(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.with("read the stored values of", |client| {
            Ok(client
                .query_opt("SELECT value FROM sessionstore_opaque WHERE name = $1", &[&key])?
                .map(|row| row.get(0)))
        })
    }

    fn next_message_id(&self) -> Result<u64> {
        self.with("read the next message id of", |client| {
            let row = client.query_one("SELECT last_value, is_called FROM chat_messages_id_seq", &[])?;
            let (last, called): (i64, bool) = (row.get(0), row.get(1));
            Ok(rows::count(if called { last + 1 } else { last }))
        })
    }

    fn session_count(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM chat_sessions")
    }

    fn message_count(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM chat_messages")
    }

    fn extra_row_count(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM sessionstore_extra_rows")
    }
}

impl PgSnapshot {
    fn count(&self, query: &'static str) -> Result<u64> {
        self.with("count the rows of", |client| {
            Ok(rows::count(client.query_one(query, &[])?.get(0)))
        })
    }
}

/// Messages (or sessions) one `COPY` of the importer writes at most.
const COPY_ROWS: usize = 10_000;
/// Bytes of content one `COPY` of the importer holds at most.
const COPY_BYTES: usize = 16 << 20;

/// The columns of `chat_sessions` the importer writes, and their types.
const SESSION_COPY: &str = "COPY chat_sessions (session_id, user_id, created_at, updated_at, expired_at, \
     context, metadata, created_micros, updated_micros, expired_micros, message_count, extra, \
     title, title_exact, title_seq) FROM STDIN BINARY";
const SESSION_TYPES: [Type; 15] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::BYTEA,
    Type::TEXT,
    Type::BYTEA,
    Type::INT8,
];
/// The columns of `chat_messages` the importer writes, and their types.
const MESSAGE_COPY: &str = "COPY chat_messages (session_id, seq, id, role, content, content_exact, \
     query_plan, candidate_set, timestamp, timestamp_micros, tokens, extra) FROM STDIN BINARY";
const MESSAGE_TYPES: [Type; 12] = [
    Type::UUID,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::BYTEA,
];

/// Loads data as it is, in one transaction committed by `finish`.
///
/// Sessions and messages are written by `COPY ... FROM STDIN BINARY`, a
/// batch of at most [`COPY_ROWS`] rows or [`COPY_BYTES`] of content at a
/// time (so memory stays bounded whatever is loaded): a session's row
/// waits in the batch, its message count and title kept up to date by the
/// messages added to it while it waits. Messages of a session whose row
/// is written already (loaded earlier, or in the database before) take
/// its count under a lock of its row, as before. The rules the server
/// checks are checked at each batch's `COPY` (a session loaded twice: its
/// primary key; a message id taken: a query of the batch's ids after it),
/// and any error ends the import: every later call answers it, and
/// nothing is committed.
pub(crate) struct PgImporter {
    /// The connection in its transaction, or why there is none (a failed
    /// connect, an error that ended the import), which every call then
    /// answers.
    client: std::result::Result<Client, Error>,
    batch: Batch,
    next_message_id: u64,
}

/// Rows waiting for their `COPY`.
#[derive(Default)]
struct Batch {
    sessions: Vec<PendingSession>,
    /// Where each session of `sessions` is in it.
    pending: HashMap<Uuid, usize>,
    messages: Vec<PendingMessage>,
    /// Content bytes the batch holds.
    bytes: usize,
}

struct PendingSession {
    info: SessionInfo,
    extra: Option<Vec<u8>>,
    title: Option<TitleColumns>,
}

struct PendingMessage {
    session: Uuid,
    seq: u64,
    message: Message,
    extra: Option<Vec<u8>>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.sessions.len() >= COPY_ROWS || self.messages.len() >= COPY_ROWS || self.bytes >= COPY_BYTES
    }

    /// The session `id` when its row waits in the batch.
    fn session(&mut self, id: Uuid) -> Option<&mut PendingSession> {
        let at = *self.pending.get(&id)?;
        self.sessions.get_mut(at)
    }

    /// Adds `messages` of session `id` at seqs from `first_seq` on.
    fn add_messages(&mut self, id: Uuid, first_seq: u64, messages: Vec<Message>) -> Result<()> {
        for (seq, message) in (first_seq..).zip(messages) {
            self.bytes += message.content.len();
            self.messages.push(PendingMessage {
                session: id,
                seq,
                extra: extra_bytes(&message.extra)?,
                message,
            });
        }
        Ok(())
    }

    /// Writes the batch by two `COPY`s, then checks that no id of its
    /// messages is held twice.
    fn copy(&mut self, client: &mut Client) -> std::result::Result<(), CopyFailure> {
        if !self.sessions.is_empty() {
            let mut writer = BinaryCopyInWriter::new(client.copy_in(SESSION_COPY)?, &SESSION_TYPES);
            self.pending.clear();
            for pending in self.sessions.drain(..) {
                let info = &pending.info;
                let (created, created_micros) = rows::columns(&info.created_at);
                let (updated, updated_micros) = rows::columns(&info.updated_at);
                let expired = info.expired_at.as_ref().map(rows::columns);
                let (title, title_exact, title_seq) = TitleColumns::params(pending.title.as_ref());
                writer.write(&[
                    &info.session_id,
                    &info.user_id,
                    &created,
                    &updated,
                    &expired.as_ref().map(|(text, _)| text),
                    &info.context.as_ref().map(|c| c.as_str()),
                    &info.metadata.as_ref().map(|m| m.as_str()),
                    &created_micros,
                    &updated_micros,
                    &expired.as_ref().map(|(_, micros)| *micros),
                    &rows::bigint(info.message_count),
                    &pending.extra,
                    &title,
                    &title_exact,
                    &title_seq,
                ])?;
            }
            writer.finish()?;
        }
        if !self.messages.is_empty() {
            let ids: Vec<i64> = self.messages.iter().map(|m| rows::bigint(m.message.id)).collect();
            let mut writer = BinaryCopyInWriter::new(client.copy_in(MESSAGE_COPY)?, &MESSAGE_TYPES);
            for pending in self.messages.drain(..) {
                let message = &pending.message;
                let (content, exact) = rows::content_columns(&message.content);
                let (timestamp, micros) = rows::columns(&message.timestamp);
                writer.write(&[
                    &pending.session,
                    &rows::bigint(pending.seq),
                    &rows::bigint(message.id),
                    &message.role.as_str(),
                    &content.as_ref(),
                    &exact,
                    &message.query_plan.as_ref().map(|p| p.as_str()),
                    &message.candidate_set.as_ref().map(|c| c.as_str()),
                    &timestamp,
                    &micros,
                    &message.tokens.map(i64::from),
                    &pending.extra,
                ])?;
            }
            writer.finish()?;
            let twice = client.query_opt(
                "SELECT id FROM chat_messages WHERE id = ANY($1) GROUP BY id HAVING COUNT(*) > 1
                 ORDER BY id LIMIT 1",
                &[&ids],
            )?;
            if let Some(row) = twice {
                let id: i64 = row.get(0);
                return Err(CopyFailure::Refused(Error::invalid(
                    "message id",
                    format!("message {id} is loaded twice"),
                )));
            }
            search::recount(
                client,
                "s.session_id IN (SELECT session_id FROM chat_messages WHERE id = ANY($1))",
                &[&ids],
            )?;
        }
        self.bytes = 0;
        Ok(())
    }
}

/// Why a batch's `COPY` failed.
enum CopyFailure {
    Server(postgres::Error),
    Refused(Error),
}

impl From<postgres::Error> for CopyFailure {
    fn from(e: postgres::Error) -> Self {
        CopyFailure::Server(e)
    }
}

impl PgImporter {
    pub(crate) fn begin(client: Result<Client>) -> PgImporter {
        let client = client.and_then(|mut client| {
            // Every statement of the import reads by key; the planner's
            // statistics know nothing of the rows loaded meanwhile, so it
            // would scan whole tables that grow with each batch.
            client
                .batch_execute("BEGIN; SET LOCAL enable_seqscan TO off")
                .map_err(|e| server_error("begin the import into", &e))?;
            Ok(client)
        });
        PgImporter {
            client,
            batch: Batch::default(),
            next_message_id: 0,
        }
    }

    /// Refuses every call once the import has ended by an error.
    fn alive(&self) -> Result<()> {
        self.client.as_ref().map(|_| ()).map_err(Error::clone)
    }

    /// Runs `f` on the connection; an error of the server ends the import
    /// (the connection is closed, which rolls its transaction back).
    fn run<T>(&mut self, f: impl FnOnce(&mut Client, &mut Batch) -> Step<T>) -> Result<T> {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(e) => return Err(e.clone()),
        };
        match f(client, &mut self.batch) {
            Ok(value) => Ok(value),
            Err(Failure::Store(refusal)) => Err(refusal),
            Err(Failure::Server(e)) => {
                let error = write_error(e);
                self.client = Err(error.clone());
                Err(error)
            }
        }
    }

    /// Writes the batch; any error ends the import (a refusal found by the
    /// server too: the transaction holds part of the batch).
    fn flush(&mut self) -> Result<()> {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(e) => return Err(e.clone()),
        };
        let error = match self.batch.copy(client) {
            Ok(()) => return Ok(()),
            Err(CopyFailure::Refused(refusal)) => refusal,
            Err(CopyFailure::Server(e)) => loaded_twice(&e).unwrap_or_else(|| write_error(e)),
        };
        self.client = Err(error.clone());
        self.batch = Batch::default();
        Err(error)
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.batch.is_full() {
            self.flush()?;
        }
        Ok(())
    }
}

fn write_error(e: postgres::Error) -> Error {
    server_error("import into", &e)
}

/// The refusal of a session loaded twice (its id's primary key violated),
/// naming it as the server did.
fn loaded_twice(e: &postgres::Error) -> Option<Error> {
    let db = e.as_db_error()?;
    (*db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("chat_sessions_pkey")).then(|| {
        Error::invalid(
            "session_id",
            format!(
                "a session is loaded twice: {}",
                db.detail().unwrap_or(db.message())
            ),
        )
    })
}

/// Extra columns as stored: postcard of the (name, value) list, `NULL` when
/// there are none.
fn extra_bytes(extra: &ExtraColumns) -> Result<Option<Vec<u8>>> {
    if extra.is_empty() {
        return Ok(None);
    }
    let list: Vec<(&String, &ExtraValue)> = extra.iter().collect();
    postcard::to_stdvec(&list)
        .map(Some)
        .map_err(|e| Error::invalid("extra columns", e.to_string()))
}

impl ImportSink for PgImporter {
    fn add_session(&mut self, mut session: SessionInfo) -> Result<()> {
        if let Some(user) = &session.user_id {
            rows::storable("user_id", user)?;
        }
        let extra = extra_bytes(&session.extra)?;
        session.message_count = 0;
        self.alive()?;
        self.flush_if_full()?;
        // A session given twice in one batch is its COPY's refusal.
        self.batch
            .pending
            .entry(session.session_id)
            .or_insert(self.batch.sessions.len());
        self.batch.sessions.push(PendingSession {
            info: session,
            extra,
            title: None,
        });
        Ok(())
    }

    fn add_messages(&mut self, session: Uuid, mut messages: Vec<Message>) -> Result<()> {
        rules::import::order_for_seqs(&mut messages);
        let highest = messages.iter().map(|m| m.id.saturating_add(1)).max().unwrap_or(0);
        self.next_message_id = self.next_message_id.max(highest);
        let title_of = |first_seq: u64, messages: &[Message]| {
            TitleColumns::first_user(first_seq, messages.iter().map(|m| (m.role, m.content.as_str())))
        };
        self.alive()?;
        if let Some(pending) = self.batch.session(session) {
            // The session's row waits in the batch: its count and title
            // are kept there.
            let first_seq = pending.info.message_count;
            pending.info.message_count += messages.len() as u64;
            if pending.title.is_none() {
                pending.title = title_of(first_seq, &messages);
            }
            self.batch.add_messages(session, first_seq, messages)?;
            return self.flush_if_full();
        }
        // The session's row is written: its count read under its lock.
        self.flush()?;
        self.run(|client, batch| {
            let count = client
                .query_opt(
                    "SELECT message_count FROM chat_sessions WHERE session_id = $1 FOR UPDATE",
                    &[&session],
                )?
                .map(|row| rows::count(row.get(0)))
                .ok_or(Error::SessionNotFound(session))?;
            let title = title_of(count, &messages);
            let (title, title_exact, title_seq) = TitleColumns::params(title.as_ref());
            client.execute(
                &format!(
                    "UPDATE chat_sessions SET message_count = $2, {} WHERE session_id = $1",
                    rows::set_title_if_none(3, 4, 5)
                ),
                &[
                    &session,
                    &rows::bigint(count + messages.len() as u64),
                    &title,
                    &title_exact,
                    &title_seq,
                ],
            )?;
            batch.add_messages(session, count, messages)?;
            Ok(())
        })?;
        self.flush_if_full()
    }

    fn add_extra_row(&mut self, row: ExtraRow) -> Result<()> {
        let values =
            postcard::to_stdvec(&row.values).map_err(|e| Error::invalid("extra row", e.to_string()))?;
        self.flush()?;
        self.run(|client, _| {
            if let Some(session) = row.session {
                let found =
                    client.query_opt("SELECT 1 FROM chat_sessions WHERE session_id = $1", &[&session])?;
                if found.is_none() {
                    return Err(Error::SessionNotFound(session).into());
                }
            }
            client.execute(
                "INSERT INTO sessionstore_extra_rows (table_name, row_id, session_id, value_list)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (table_name, row_id) DO UPDATE
                 SET session_id = EXCLUDED.session_id, value_list = EXCLUDED.value_list",
                &[&row.table, &row.rowid, &row.session, &values],
            )?;
            Ok(())
        })
    }

    fn set_opaque(&mut self, key: &str, value: Vec<u8>) -> Result<()> {
        self.run(|client, _| {
            client.execute(
                "INSERT INTO sessionstore_opaque (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )?;
            Ok(())
        })
    }

    fn raise_next_message_id(&mut self, next: u64) {
        self.next_message_id = self.next_message_id.max(next);
    }

    /// Writes the last batch, moves the id sequence past every id loaded
    /// (and the id raised to), then commits.
    fn finish(mut self: Box<Self>) -> Result<()> {
        self.flush()?;
        let next = self.next_message_id;
        self.run(|client, _| {
            let row = client.query_one("SELECT last_value, is_called FROM chat_messages_id_seq", &[])?;
            let (last, called): (i64, bool) = (row.get(0), row.get(1));
            let used = if called { last } else { last - 1 };
            let wanted = rows::bigint(next).saturating_sub(1);
            if wanted > used && wanted >= 1 {
                client.execute("SELECT setval('chat_messages_id_seq', $1, true)", &[&wanted])?;
            }
            client.batch_execute("COMMIT")?;
            Ok(())
        })
    }
}

impl Drop for PgImporter {
    fn drop(&mut self) {
        // After a commit this is a no-op the server warns of; after an
        // error or an abandoned import it takes everything back.
        if let Ok(client) = &mut self.client {
            if !client.is_closed() {
                let _ = client.batch_execute("ROLLBACK");
            }
        }
    }
}
