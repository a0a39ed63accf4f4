//! The PostgreSQL engine (feature `postgres`): the store in a PostgreSQL
//! database (or one that speaks its protocol: CockroachDB, YugabyteDB,
//! Citus), shared by every process that opens the same URL.
//!
//! Each operation is one transaction: a write locks its session's row
//! (`SELECT ... FOR UPDATE`) before it reads the message count, so
//! concurrent appends to one session from any number of connections and
//! processes take dense seqs and see each other's conflicts; a read runs
//! on one snapshot (repeatable read). Transactions the server aborts as a
//! serialization failure or a deadlock are run again (see
//! `connection.rs`). Expiry is eager (an `UPDATE`), which gives what redb's
//! lazy expiry shows.
//!
//! What differs from a redb file, and why:
//! - `backup_to` and `compact` are refused ([`Error::NotSupported`]): the
//!   server's tools copy a database (pg_dump, pg_basebackup) and its
//!   autovacuum reclaims space.
//! - `check` checks the model's rules in SQL (dense seqs, rows of missing
//!   sessions, unique ids below the sequence); the server checks its own
//!   pages.
//! - `stats`: `file_size` is what the store's tables and indexes take
//!   (`pg_total_relation_size`), `journal_size` 0 (the write-ahead log is
//!   the server's); `counters` counts commits, each one request, and no
//!   checkpoint or cache read.
//! - There is no journal: a durable write is acknowledged once the
//!   server's commit is (its `synchronous_commit`); a relaxed one turns
//!   `synchronous_commit` off for its transaction.
//! - Text PostgreSQL cannot hold: a user id or an idempotency key with a
//!   NUL character is refused ([`Error::InvalidInput`]), and such a user
//!   owns nothing; message content keeps its NUL characters (stored as
//!   bytes beside the text).
//!
//! Files: `schema.rs` (DDL and its version), `connection.rs` (pool,
//! transactions, retries, errors), `rows.rs` (rows to the model's types),
//! `sessions.rs`, `messages.rs`, `maintenance.rs` (the operations by
//! concern), `search.rs` (full-text search: a generated `tsvector`, a GIN
//! index, per-user BM25 statistics kept by every write), `bulk.rs` (the
//! converter's snapshot and importer).

mod bulk;
mod connection;
mod engine;
mod maintenance;
mod messages;
mod rows;
mod schema;
mod search;
mod sessions;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use postgres::Transaction;
use uuid::Uuid;

use self::connection::{Pool, Step};
use crate::error::{Error, Result};
use crate::location::redacted_location;
use crate::model::{Durability, Settings};
use crate::rules::Access;

/// A store in a PostgreSQL database (see the module's docs).
pub(crate) struct PgEngine {
    pool: Pool,
    /// The URL without its password: what `SessionStore::path` shows.
    path: PathBuf,
    settings: Settings,
    /// Commits of callers' writes (each write is one commit of one request).
    commits: AtomicU64,
}

impl std::fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEngine")
            .field("url", &self.path)
            .finish_non_exhaustive()
    }
}

impl PgEngine {
    /// Connects to the database at `url` (`postgres://` or
    /// `postgresql://`, with rust-postgres's parameters such as
    /// `options=-csearch_path%3Dchat`), creates the schema when it has
    /// none (unless `settings.create_if_missing` is off or the store is
    /// read-only: then [`Error::NoStore`]), and refuses a schema of a
    /// newer version ([`Error::UnsupportedVersion`]). It serves no local
    /// socket (that is a file's).
    pub(crate) fn connect(url: &str, settings: Settings) -> Result<Self> {
        let (pool, mut client) = Pool::connect(url)?;
        let create = settings.create_if_missing && !settings.read_only;
        let prepared = schema::prepare(&mut client, url, create, !settings.read_only);
        pool.give_back(client);
        prepared?;
        Ok(PgEngine {
            pool,
            path: redacted_location(url).into(),
            settings: Settings {
                serve_socket: false,
                ..settings
            },
            commits: AtomicU64::new(0),
        })
    }

    /// Runs a write transaction (see `Pool::write`), counting its commit;
    /// refused on a store opened read-only.
    fn write<T>(
        &self,
        durability: Durability,
        body: impl FnMut(&mut Transaction<'_>) -> Step<T>,
    ) -> Result<T> {
        if self.settings.read_only {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        let value = self.pool.write(durability, body)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    fn read<T>(&self, body: impl FnMut(&mut Transaction<'_>) -> Step<T>) -> Result<T> {
        self.pool.read(body)
    }
}

/// A session's row, locked for the rest of the transaction.
struct Locked {
    user_id: Option<String>,
    expired: bool,
    message_count: u64,
    context: Option<String>,
    metadata: Option<String>,
}

/// Locks the row of session `id`, expired or not; refuses
/// ([`Error::SessionNotFound`]) a missing session and one `access` may not
/// see.
fn lock_session(txn: &mut Transaction<'_>, id: Uuid, access: Access<'_>) -> Step<Locked> {
    let row = txn.query_opt(
        "SELECT user_id, expired_micros IS NOT NULL, message_count, context, metadata
         FROM chat_sessions WHERE session_id = $1 FOR UPDATE",
        &[&id],
    )?;
    let locked = row.map(|row| Locked {
        user_id: row.get(0),
        expired: row.get(1),
        message_count: rows::count(row.get(2)),
        context: row.get(3),
        metadata: row.get(4),
    });
    match locked {
        Some(locked) if access.allows(locked.user_id.as_deref()) => Ok(locked),
        _ => Err(Error::SessionNotFound(id).into()),
    }
}

/// As [`lock_session`], and refuses an expired session too: the session a
/// write may change.
fn lock_writable(txn: &mut Transaction<'_>, id: Uuid, access: Access<'_>) -> Step<Locked> {
    let locked = lock_session(txn, id, access)?;
    if locked.expired {
        return Err(Error::SessionNotFound(id).into());
    }
    Ok(locked)
}

/// Deletes sessions `ids` with their messages, idempotency keys and fork
/// entries; returns how many messages they held.
fn delete_sessions(txn: &mut Transaction<'_>, ids: &[Uuid]) -> Step<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let messages = txn.execute("DELETE FROM chat_messages WHERE session_id = ANY($1)", &[&ids])?;
    txn.execute(
        "DELETE FROM sessionstore_idempotency_keys WHERE session_id = ANY($1)",
        &[&ids],
    )?;
    txn.execute(
        "DELETE FROM sessionstore_forks WHERE parent_id = ANY($1) OR fork_id = ANY($1)",
        &[&ids],
    )?;
    txn.execute("DELETE FROM chat_sessions WHERE session_id = ANY($1)", &[&ids])?;
    Ok(messages)
}

/// The session `id` as the read of a message page or a whole session sees
/// it: its message count, when it exists, `access` may see it, and it is
/// active.
fn active_count(txn: &mut Transaction<'_>, id: Uuid, access: Access<'_>) -> Step<Option<u64>> {
    let row = txn.query_opt(
        "SELECT user_id, expired_micros IS NOT NULL, message_count FROM chat_sessions
         WHERE session_id = $1",
        &[&id],
    )?;
    Ok(row.and_then(|row| {
        let user: Option<&str> = row.get(0);
        let expired: bool = row.get(1);
        (access.allows(user) && !expired).then(|| rows::count(row.get(2)))
    }))
}

/// The engine's refusal of `operation`, which belongs to redb's files.
fn not_supported(operation: &'static str, why: &'static str) -> Error {
    Error::NotSupported {
        operation,
        engine: "PostgreSQL",
        why,
    }
}
