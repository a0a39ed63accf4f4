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
//!
//! Versions: 1, the first; 2 keeps each session's title in its row
//! (`title`, `title_exact` when it holds a NUL character, and `title_seq`,
//! the seq of the first user message it comes from), so a user's list is
//! one query of `chat_sessions`; 3 adds full-text search (see
//! `search.rs`): `chat_messages.search_vector`, a stored generated
//! `tsvector` of the content with a GIN index, and `search_length`, its
//! words; each session's count of messages holding words and of their
//! words (`chat_sessions.search_docs`, `search_words`). An open that may
//! write upgrades an older schema in one transaction (`upgrade`), filling
//! what the new version adds from the rows there.

use postgres::{Client, Transaction};

use uuid::Uuid;

use super::connection::server_error;
use super::rows::{self, TitleColumns};
use super::search;
use crate::error::{Error, Result};
use crate::location::redacted_location;
use crate::model::Role;

/// The schema version this build creates and reads. A database of a
/// newer one is refused, one of an older one upgraded.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// Sessions whose titles one statement of the upgrade to version 2 fills.
const UPGRADE_PAGE: i64 = 1_000;

/// The tables, sequence and indexes of [`SCHEMA_VERSION`] but search's
/// ([`SEARCH`]), each created only if missing.
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
    extra BYTEA,
    title TEXT,
    title_exact BYTEA,
    title_seq BIGINT
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

/// The function giving a `tsvector`'s words, repeats included (the count
/// of its positions), for `chat_messages.search_length`; made by
/// [`SEARCH`]'s step when missing.
const WORDS_FUNCTION: &str = "
CREATE FUNCTION sessionstore_words(vector TSVECTOR) RETURNS INTEGER
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS 'SELECT COALESCE(SUM(COALESCE(array_length(positions, 1), 1)), 0)::INTEGER FROM unnest(vector)'";

/// What version 3 adds for search (see `search.rs`), after [`CREATE`]
/// or to a schema of an older version (and [`WORDS_FUNCTION`] before it).
/// The vector is of the content's first 65,536 characters: a `tsvector`
/// holds at most 1 MiB, which the words of a longer content may pass (the
/// insert would fail), and these cannot (at most 10 bytes a character);
/// `search_length` is how many words it holds, repeats included; a
/// session's `search_docs` and `search_words` sum its messages'.
const SEARCH: &str = "
ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS search_vector TSVECTOR
    GENERATED ALWAYS AS (to_tsvector('simple', left(content, 65536))) STORED;
ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS search_length INTEGER
    GENERATED ALWAYS AS (sessionstore_words(to_tsvector('simple', left(content, 65536)))) STORED;
CREATE INDEX IF NOT EXISTS idx_messages_search ON chat_messages USING GIN (search_vector);
ALTER TABLE chat_sessions ADD COLUMN IF NOT EXISTS search_docs BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS search_words BIGINT NOT NULL DEFAULT 0;
";

/// The library's tables, for [`stats`](super::PgEngine::stats)' size.
pub(crate) const TABLES: &str = "'chat_sessions', 'chat_messages', 'sessionstore_meta', \
     'sessionstore_idempotency_keys', 'sessionstore_forks', 'sessionstore_user_contexts', \
     'sessionstore_extra_rows', 'sessionstore_opaque'";

/// Creates the schema when the database has none, or checks the version of
/// the one it has: a newer version is refused with
/// [`Error::UnsupportedVersion`], an older one upgraded (see [`upgrade`];
/// refused as well when the open may not write), tables of the old
/// store's names that the library did not make with [`Error::Corrupt`].
/// Two processes creating or upgrading it at once both succeed.
pub(crate) fn prepare(client: &mut Client, url: &str, create: bool, may_upgrade: bool) -> Result<()> {
    let refused = |why: String| Error::Corrupt {
        path: redacted_location(url).into(),
        why,
    };
    let mut retried = false;
    loop {
        match try_prepare(client, create, may_upgrade) {
            Ok(Prepared::Version(found)) if found == SCHEMA_VERSION => return Ok(()),
            Ok(Prepared::Version(found)) => {
                return Err(Error::UnsupportedVersion {
                    path: redacted_location(url).into(),
                    found: u32::try_from(found).unwrap_or(u32::MAX),
                    supported: SCHEMA_VERSION as u32,
                })
            }
            Ok(Prepared::Missing) => {
                return Err(Error::NoStore {
                    path: redacted_location(url).into(),
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

fn try_prepare(
    client: &mut Client,
    create: bool,
    may_upgrade: bool,
) -> std::result::Result<Prepared, postgres::Error> {
    let mut txn = client.transaction()?;
    let exists = |txn: &mut Transaction<'_>, table: &str| -> Result<bool, postgres::Error> {
        let row = txn.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?;
        Ok(row.get(0))
    };
    if exists(&mut txn, "sessionstore_meta")? {
        match version(&mut txn, "")? {
            Some(found) if found < SCHEMA_VERSION && may_upgrade => {
                // The version's row locked: one process upgrades, the
                // others wait for its commit and read the new version.
                let found = version(&mut txn, "FOR UPDATE")?.unwrap_or(found);
                if found < SCHEMA_VERSION {
                    upgrade(&mut txn, found)?;
                    txn.execute(
                        "UPDATE sessionstore_meta SET value = $1 WHERE name = 'schema_version'",
                        &[&SCHEMA_VERSION],
                    )?;
                    txn.commit()?;
                    return Ok(Prepared::Version(SCHEMA_VERSION));
                }
                return Ok(Prepared::Version(found));
            }
            Some(found) => return Ok(Prepared::Version(found)),
            None => {}
        }
    } else if exists(&mut txn, "chat_sessions")? {
        return Ok(Prepared::Foreign);
    }
    if !create {
        return Ok(Prepared::Missing);
    }
    txn.batch_execute(CREATE)?;
    create_search(&mut txn)?;
    txn.execute(
        "INSERT INTO sessionstore_meta (name, value) VALUES ('schema_version', $1)
         ON CONFLICT (name) DO NOTHING",
        &[&SCHEMA_VERSION],
    )?;
    let found = version(&mut txn, "")?.unwrap_or(SCHEMA_VERSION);
    txn.commit()?;
    Ok(Prepared::Version(found))
}

/// The schema version recorded, read with `lock` (`""` or `FOR UPDATE`).
fn version(txn: &mut Transaction<'_>, lock: &str) -> std::result::Result<Option<i64>, postgres::Error> {
    Ok(txn
        .query_opt(
            &format!("SELECT value FROM sessionstore_meta WHERE name = 'schema_version' {lock}"),
            &[],
        )?
        .map(|row| row.get(0)))
}

/// Makes what [`SEARCH`] makes, and the function it calls first.
fn create_search(txn: &mut Transaction<'_>) -> std::result::Result<(), postgres::Error> {
    let missing: bool = txn
        .query_one(
            "SELECT to_regprocedure('sessionstore_words(tsvector)') IS NULL",
            &[],
        )?
        .get(0);
    if missing {
        txn.batch_execute(WORDS_FUNCTION)?;
    }
    txn.batch_execute(SEARCH)
}

/// Brings a schema of version `from` to [`SCHEMA_VERSION`], in the
/// caller's transaction: each step adds what its version adds, and fills it
/// from the rows there.
fn upgrade(txn: &mut Transaction<'_>, from: i64) -> std::result::Result<(), postgres::Error> {
    if from < 2 {
        txn.batch_execute(
            "ALTER TABLE chat_sessions ADD COLUMN IF NOT EXISTS title TEXT,
                 ADD COLUMN IF NOT EXISTS title_exact BYTEA,
                 ADD COLUMN IF NOT EXISTS title_seq BIGINT",
        )?;
        fill_titles(txn)?;
    }
    if from < 3 {
        create_search(txn)?;
        search::recount(txn, "true", &[])?;
    }
    Ok(())
}

/// Writes the title columns of every session with a user message, a page
/// of sessions (in id order) at a time.
fn fill_titles(txn: &mut Transaction<'_>) -> std::result::Result<(), postgres::Error> {
    let mut after = Uuid::nil();
    loop {
        let found = txn.query(
            "SELECT s.session_id, t.seq, t.content, t.content_exact FROM chat_sessions s
             JOIN LATERAL (
                 SELECT m.seq, m.content, m.content_exact FROM chat_messages m
                 WHERE m.session_id = s.session_id AND m.role = $3 AND m.seq < s.message_count
                 ORDER BY m.seq LIMIT 1
             ) t ON true
             WHERE s.session_id > $1 ORDER BY s.session_id LIMIT $2",
            &[&after, &UPGRADE_PAGE, &Role::User.as_str()],
        )?;
        let (mut ids, mut seqs, mut texts, mut exacts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in &found {
            let content = rows::exact_text(row.get(2), row.get(3));
            let title = TitleColumns::of(rows::count(row.get(1)), &content);
            ids.push(row.get::<_, Uuid>(0));
            seqs.push(title.seq);
            texts.push(title.text);
            exacts.push(title.exact);
        }
        txn.execute(
            "UPDATE chat_sessions s SET title = v.title, title_exact = v.exact, title_seq = v.seq
             FROM unnest($1::UUID[], $2::BIGINT[], $3::TEXT[], $4::BYTEA[]) AS v(id, seq, title, exact)
             WHERE s.session_id = v.id",
            &[&ids, &seqs, &texts, &exacts],
        )?;
        match ids.last() {
            Some(last) if found.len() as i64 == UPGRADE_PAGE => after = *last,
            _ => return Ok(()),
        }
    }
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
