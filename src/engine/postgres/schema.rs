//! The schema, created and versioned by the library.
//!
//! `chat_sessions` and `chat_messages` keep the old SQLite store's columns
//! and names, so that its guide's monitoring SQL runs unchanged
//! (`SELECT COUNT(*) FROM chat_sessions WHERE expired_at IS NULL;`,
//! `SELECT COUNT(*) FROM chat_messages;`), with what the model adds beside
//! them: each timestamp as its text (the form it was written in, as the
//! old store wrote it) and its instant in microseconds (for ordering and
//! ranges), seq, revision, message count, token count, the extra columns
//! of converted rows (postcard, as in the redb records). The library's own
//! tables are prefixed `sessionstore_`.
//!
//! Portable to the servers that distribute PostgreSQL (Citus, CockroachDB,
//! YugabyteDB): no triggers, no advisory locks, no LISTEN/NOTIFY, no
//! foreign keys across sessions; every key of a session's rows starts with
//! its `session_id` (the distribution column), so messages are keyed
//! `(session_id, seq)`. Message ids come from the sequence
//! `chat_messages_id_seq`, which only grows: an id is never given twice,
//! and `chat_messages.id` has a plain index (a unique one would have to
//! hold the distribution column on Citus).

use postgres::Client;

use super::connection::{redacted, server_error};
use crate::error::{Error, Result};

/// The schema version this build creates and reads. A database of a
/// newer one is refused.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The tables, sequence and indexes of [`SCHEMA_VERSION`], each created
/// only if missing.
const CREATE: &str = "
CREATE TABLE IF NOT EXISTS sessionstore_meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_sessions (
    session_id UUID PRIMARY KEY,
    user_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    context TEXT,
    metadata TEXT,
    expired_at TEXT,
    created_micros BIGINT NOT NULL,
    updated_micros BIGINT NOT NULL,
    expired_micros BIGINT,
    message_count BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL DEFAULT 0,
    extra BYTEA
);
CREATE INDEX IF NOT EXISTS idx_sessions_user_updated
    ON chat_sessions (user_id, updated_micros, session_id);
CREATE INDEX IF NOT EXISTS idx_sessions_active_updated
    ON chat_sessions (updated_micros) WHERE expired_micros IS NULL;
CREATE INDEX IF NOT EXISTS idx_sessions_expired
    ON chat_sessions (expired_micros) WHERE expired_micros IS NOT NULL;
CREATE SEQUENCE IF NOT EXISTS chat_messages_id_seq;
CREATE TABLE IF NOT EXISTS chat_messages (
    session_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    id BIGINT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    content_exact BYTEA,
    query_plan TEXT,
    candidate_set TEXT,
    timestamp TEXT NOT NULL,
    timestamp_micros BIGINT NOT NULL,
    tokens BIGINT,
    extra BYTEA,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX IF NOT EXISTS idx_messages_id ON chat_messages (id);
CREATE TABLE IF NOT EXISTS sessionstore_idempotency_keys (
    session_id UUID NOT NULL,
    key TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    ids BIGINT[] NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE TABLE IF NOT EXISTS sessionstore_forks (
    parent_id UUID NOT NULL,
    fork_id UUID NOT NULL,
    PRIMARY KEY (parent_id, fork_id)
);
CREATE INDEX IF NOT EXISTS idx_forks_fork ON sessionstore_forks (fork_id);
CREATE TABLE IF NOT EXISTS sessionstore_extra_rows (
    table_name TEXT NOT NULL,
    row_id BIGINT NOT NULL,
    session_id UUID,
    value_list BYTEA NOT NULL,
    PRIMARY KEY (table_name, row_id)
);
CREATE INDEX IF NOT EXISTS idx_extra_rows_session ON sessionstore_extra_rows (session_id);
CREATE TABLE IF NOT EXISTS sessionstore_opaque (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS sessionstore_user_contexts (
    user_id TEXT PRIMARY KEY,
    context TEXT NOT NULL
);
";

/// The library's tables, for [`stats`](super::PgEngine::stats)' size.
pub(crate) const TABLES: &str = "'chat_sessions', 'chat_messages', 'sessionstore_meta', \
     'sessionstore_idempotency_keys', 'sessionstore_forks', 'sessionstore_user_contexts', \
     'sessionstore_extra_rows', 'sessionstore_opaque'";

/// Creates the schema when the database has none, or checks the version of
/// the one it has: a newer version is refused with
/// [`Error::UnsupportedVersion`], tables of the old store's names that the
/// library did not make with [`Error::Corrupt`]. Two processes creating it
/// at once both succeed.
pub(crate) fn prepare(client: &mut Client, url: &str, create: bool) -> Result<()> {
    let refused = |why: String| Error::Corrupt {
        path: redacted(url).into(),
        why,
    };
    let mut retried = false;
    loop {
        match try_prepare(client, create) {
            Ok(Prepared::Version(found)) if found == SCHEMA_VERSION => return Ok(()),
            Ok(Prepared::Version(found)) => {
                return Err(Error::UnsupportedVersion {
                    path: redacted(url).into(),
                    found: u32::try_from(found).unwrap_or(u32::MAX),
                    supported: SCHEMA_VERSION as u32,
                })
            }
            Ok(Prepared::Missing) => {
                return Err(Error::NoStore {
                    path: redacted(url).into(),
                    why: "the database holds no sessionstore schema",
                })
            }
            Ok(Prepared::Foreign) => {
                return Err(refused(
                    "the database has a chat_sessions table that sessionstore did not create \
                     (no sessionstore_meta table); convert it with `sessionstore-migrate` \
                     into an empty database instead"
                        .into(),
                ))
            }
            // Another process created the same objects at the same time.
            Err(e) if !retried && is_concurrent_creation(&e) => retried = true,
            Err(e) => return Err(server_error("create the schema of", &e)),
        }
    }
}

enum Prepared {
    Version(i64),
    Foreign,
    /// No schema, and none to be created.
    Missing,
}

fn try_prepare(client: &mut Client, create: bool) -> std::result::Result<Prepared, postgres::Error> {
    let mut txn = client.transaction()?;
    let exists = |txn: &mut postgres::Transaction<'_>, table: &str| -> Result<bool, postgres::Error> {
        let row = txn.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?;
        Ok(row.get(0))
    };
    if exists(&mut txn, "sessionstore_meta")? {
        let found: Option<i64> = txn
            .query_opt(
                "SELECT value FROM sessionstore_meta WHERE name = 'schema_version'",
                &[],
            )?
            .map(|row| row.get(0));
        if let Some(found) = found {
            return Ok(Prepared::Version(found));
        }
    } else if exists(&mut txn, "chat_sessions")? {
        return Ok(Prepared::Foreign);
    }
    if !create {
        return Ok(Prepared::Missing);
    }
    txn.batch_execute(CREATE)?;
    txn.execute(
        "INSERT INTO sessionstore_meta (name, value) VALUES ('schema_version', $1)
         ON CONFLICT (name) DO NOTHING",
        &[&SCHEMA_VERSION],
    )?;
    let found: i64 = txn
        .query_one(
            "SELECT value FROM sessionstore_meta WHERE name = 'schema_version'",
            &[],
        )?
        .get(0);
    txn.commit()?;
    Ok(Prepared::Version(found))
}

/// A unique violation on the catalog, or an object that exists: what a
/// concurrent `CREATE ... IF NOT EXISTS` of the same object gives.
fn is_concurrent_creation(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    matches!(
        error.code(),
        Some(code) if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::DUPLICATE_TABLE
            || *code == SqlState::DUPLICATE_OBJECT
    )
}
