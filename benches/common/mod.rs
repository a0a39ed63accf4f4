//! What both benchmark binaries share: the data (messages shaped like the
//! fixtures' conversations), the SQLite session store they compare with, and
//! the stores loaded for each workload.
//!
//! The SQLite store is the old Python store's, at its best: the documented
//! schema (`shared/spec/sqlite-compat.md`, generation 1), the old store's
//! statements and semantics, WAL, prepared and cached statements, one
//! connection per thread, `synchronous=FULL` beside durable writes and
//! `NORMAL` beside relaxed ones, a busy timeout.

#![allow(dead_code)] // each bench binary uses its own part

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use sessionstore::{Durability, Message, NewMessage, Role, SessionInfo, SessionStore, Timestamp, Uuid};

// ---- data ---------------------------------------------------------------

const PUBLISHERS: [&str; 8] = [
    "Oxford",
    "Cambridge",
    "Penguin",
    "Springer",
    "Elsevier",
    "Wiley",
    "Routledge",
    "MIT Press",
];

/// Words of the fixtures' queries and answers, drawn at random so that the
/// text varies as real text does (repeated strings compress better).
const WORDS: [&str; 64] = [
    "Latin",
    "printer",
    "astronomy",
    "vellum",
    "colophon",
    "binding",
    "Greek",
    "provenance",
    "imprint",
    "woodcut",
    "octavo",
    "quarto",
    "folio",
    "incunable",
    "Venice",
    "Paris",
    "Leiden",
    "Basel",
    "Lyon",
    "Antwerp",
    "London",
    "engraving",
    "marginalia",
    "psalter",
    "herbal",
    "atlas",
    "sermons",
    "grammar",
    "lexicon",
    "chronicle",
    "letters",
    "poems",
    "medicine",
    "anatomy",
    "botany",
    "geometry",
    "optics",
    "theology",
    "law",
    "music",
    "first",
    "edition",
    "illustrated",
    "annotated",
    "rare",
    "signed",
    "translated",
    "revised",
    "sixteenth",
    "century",
    "seventeenth",
    "eighteenth",
    "bookseller",
    "dedication",
    "frontispiece",
    "plates",
    "maps",
    "index",
    "errata",
    "catalogue",
    "library",
    "stamp",
    "ownership",
    "inscription",
];

/// A small deterministic generator (xorshift64*): the same data every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `least` to `least + spread - 1` words, space-separated.
    pub fn words(&mut self, least: u64, spread: u64) -> String {
        let n = least + self.below(spread);
        let words: Vec<&str> = (0..n)
            .map(|_| WORDS[self.below(WORDS.len() as u64) as usize])
            .collect();
        words.join(" ")
    }
}

/// One turn of a conversation as the fixtures hold them: even turns are
/// user queries with a query plan (about 260 bytes of JSON), odd turns are
/// assistant answers with a candidate set of 1 to 4 KB, their text and
/// rationales of words drawn at random, their ids varied.
#[derive(Clone)]
pub struct Turn {
    pub role: Role,
    pub content: String,
    pub query_plan: Option<String>,
    pub candidate_set: Option<String>,
}

impl Turn {
    pub fn new(rng: &mut Rng, index: u64) -> Turn {
        let publisher = PUBLISHERS[rng.below(PUBLISHERS.len() as u64) as usize];
        if index % 2 == 0 {
            let query = format!(
                "books by {publisher} published after {} {}",
                1950 + rng.below(70),
                rng.words(3, 12)
            );
            let plan = format!(
                r#"{{"version": "1.0", "query_text": "{query}", "filters": [{{"field": "publisher", "op": "CONTAINS", "value": "{publisher}", "start": null, "end": null, "negate": false, "confidence": null, "notes": null}}], "soft_filters": [], "limit": null, "debug": {{}}}}"#
            );
            Turn {
                role: Role::User,
                content: query,
                query_plan: Some(plan),
                candidate_set: None,
            }
        } else {
            let count = 3 + rng.below(10);
            let candidates: Vec<String> = (0..count)
                .map(|_| {
                    format!(
                        r#"{{"record_id": "{}", "match_rationale": "publisher matches {publisher}; {}", "evidence": [{{"field": "publisher_norm", "value": "{}", "operator": "LIKE", "matched_against": "{publisher}", "source": "db.imprints.publisher_norm", "confidence": 0.{}}}]}}"#,
                        99_000_000_000_000 + rng.below(999_999_999_999),
                        rng.words(3, 6),
                        publisher.to_lowercase(),
                        rng.below(1000)
                    )
                })
                .collect();
            let set = format!(
                r#"{{"query_text": "books by {publisher}", "plan_hash": "{:016x}{:016x}{:016x}{:016x}", "sql": "SELECT * FROM records WHERE publisher_norm LIKE ?", "generated_at": "2026-11-24T01:40:21.145212+00:00", "candidates": [{}], "total_count": {count}}}"#,
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next(),
                candidates.join(", ")
            );
            Turn {
                role: Role::Assistant,
                content: format!(
                    "Found {count} books by {publisher}: {}. Ask me to narrow them by year, subject or place of publication.",
                    rng.words(5, 60)
                ),
                query_plan: None,
                candidate_set: Some(set),
            }
        }
    }

    pub fn to_new_message(&self) -> NewMessage {
        let mut message = NewMessage::new(self.role, self.content.clone());
        if let Some(plan) = &self.query_plan {
            message = message.with_query_plan(plan.clone()).expect("a JSON object");
        }
        if let Some(set) = &self.candidate_set {
            message = message.with_candidate_set(set.clone()).expect("a JSON object");
        }
        message
    }

    pub fn to_message(&self, id: u64, timestamp: Timestamp) -> Message {
        Message {
            id,
            seq: 0,
            role: self.role,
            content: self.content.clone(),
            query_plan: self.to_new_message().query_plan,
            candidate_set: self.to_new_message().candidate_set,
            timestamp,
            extra: Default::default(),
            tokens: None,
        }
    }
}

/// `n` turns of one conversation.
/// A session row for an importer, created and updated at `at`, without
/// context or metadata; its messages come after.
pub fn imported_session(id: Uuid, user: String, at: &Timestamp) -> SessionInfo {
    SessionInfo {
        session_id: id,
        user_id: Some(user),
        created_at: at.clone(),
        updated_at: at.clone(),
        expired_at: None,
        context: None,
        metadata: None,
        message_count: 0,
        extra: Default::default(),
    }
}

/// `turns` as messages for an importer, at `at`, their ids from
/// `*next_id` on (left past the last).
pub fn imported_messages(turns: &[Turn], next_id: &mut u64, at: &Timestamp) -> Vec<Message> {
    turns
        .iter()
        .map(|turn| {
            *next_id += 1;
            turn.to_message(*next_id - 1, at.clone())
        })
        .collect()
}

pub fn conversation(seed: u64, n: u64) -> Vec<Turn> {
    let mut rng = Rng::new(seed);
    (0..n).map(|i| Turn::new(&mut rng, i)).collect()
}

/// Python's `datetime.now(timezone.utc).isoformat()`.
pub fn iso(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

pub fn micros_ago(micros: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::microseconds(micros)
}

// ---- the SQLite store ----------------------------------------------------

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chat_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    context TEXT,
    metadata TEXT,
    expired_at TEXT,
    UNIQUE(session_id)
);
CREATE INDEX IF NOT EXISTS idx_sessions_user_id ON chat_sessions(user_id);
CREATE INDEX IF NOT EXISTS idx_sessions_expired ON chat_sessions(expired_at);

CREATE TABLE IF NOT EXISTS chat_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK(role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    query_plan TEXT,
    candidate_set TEXT,
    timestamp TEXT NOT NULL,
    FOREIGN KEY (session_id) REFERENCES chat_sessions(session_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_messages_session ON chat_messages(session_id, timestamp);
CREATE INDEX IF NOT EXISTS idx_messages_timestamp ON chat_messages(timestamp DESC);
";

/// A message row as the old store returned it.
pub struct SqlMessage {
    pub id: i64,
    pub role: String,
    pub content: String,
    pub query_plan: Option<String>,
    pub candidate_set: Option<String>,
    pub timestamp: String,
}

/// A session row with its messages.
pub struct SqlSession {
    pub session_id: String,
    pub user_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub context: Option<String>,
    pub metadata: Option<String>,
    pub messages: Vec<SqlMessage>,
}

/// A sidebar entry, as the old store's `get_recent_sessions`.
pub struct SqlSummary {
    pub session_id: String,
    pub title: String,
    pub message_count: i64,
    pub last_activity: String,
}

/// One connection of the SQLite store (one per thread, as the old store).
pub struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    /// Opens (creating) the store; `durability` picks `synchronous`.
    pub fn open(path: &Path, durability: Durability) -> Sqlite {
        let conn = Connection::open(path).expect("open sqlite");
        conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
        let sync = match durability {
            Durability::Durable => "FULL",
            Durability::Relaxed => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
        ))
        .expect("pragmas");
        conn.execute_batch(SCHEMA).expect("schema");
        conn.set_prepared_statement_cache_capacity(64);
        Sqlite { conn }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn create_session(&self, user_id: Option<&str>) -> String {
        let id = Uuid::new_v4().to_string();
        let now = iso(Utc::now());
        self.conn
            .prepare_cached(
                "INSERT INTO chat_sessions (session_id, user_id, created_at, updated_at, context, metadata) \
                 VALUES (?1, ?2, ?3, ?3, '{}', '{}')",
            )
            .and_then(|mut s| s.execute(params![id, user_id, now]))
            .expect("create session");
        id
    }

    fn message_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SqlMessage> {
        Ok(SqlMessage {
            id: row.get(0)?,
            role: row.get(1)?,
            content: row.get(2)?,
            query_plan: row.get(3)?,
            candidate_set: row.get(4)?,
            timestamp: row.get(5)?,
        })
    }

    /// The session with all its messages; `None` when missing or expired.
    pub fn get_session(&self, id: &str) -> Option<SqlSession> {
        let mut session = self
            .conn
            .prepare_cached(
                "SELECT session_id, user_id, created_at, updated_at, context, metadata \
                 FROM chat_sessions WHERE session_id = ?1 AND expired_at IS NULL",
            )
            .and_then(|mut s| {
                s.query_row([id], |row| {
                    Ok(SqlSession {
                        session_id: row.get(0)?,
                        user_id: row.get(1)?,
                        created_at: row.get(2)?,
                        updated_at: row.get(3)?,
                        context: row.get(4)?,
                        metadata: row.get(5)?,
                        messages: Vec::new(),
                    })
                })
                .optional()
            })
            .expect("read session")?;
        session.messages = self
            .conn
            .prepare_cached(
                "SELECT id, role, content, query_plan, candidate_set, timestamp FROM chat_messages \
                 WHERE session_id = ?1 ORDER BY timestamp, id",
            )
            .and_then(|mut s| s.query_map([id], Self::message_row)?.collect())
            .expect("read messages");
        Some(session)
    }

    fn is_active(&self, id: &str) -> bool {
        self.conn
            .prepare_cached("SELECT 1 FROM chat_sessions WHERE session_id = ?1 AND expired_at IS NULL")
            .and_then(|mut s| s.exists([id]))
            .expect("check session")
    }

    /// The last `n` messages, oldest first (the index on (session_id,
    /// timestamp) serves it).
    pub fn get_recent_messages(&self, id: &str, n: i64) -> Vec<SqlMessage> {
        assert!(self.is_active(id), "session {id} not found");
        let mut messages: Vec<SqlMessage> = self
            .conn
            .prepare_cached(
                "SELECT id, role, content, query_plan, candidate_set, timestamp FROM chat_messages \
                 WHERE session_id = ?1 ORDER BY timestamp DESC, id DESC LIMIT ?2",
            )
            .and_then(|mut s| s.query_map(params![id, n], Self::message_row)?.collect())
            .expect("read recent messages");
        messages.reverse();
        messages
    }

    /// Appends a message in its own transaction, as the old store: check the
    /// session, insert, set the session's updated_at.
    pub fn add_message(&self, id: &str, turn: &Turn) -> i64 {
        // IMMEDIATE: a writer waits (busy timeout) for the write lock at the
        // start instead of failing when it upgrades a read lock.
        let txn = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).expect("begin");
        let message_id = insert_message(&txn, id, turn);
        txn.commit().expect("commit");
        message_id
    }

    pub fn list_user_sessions(&self, user: &str) -> Vec<String> {
        self.conn
            .prepare_cached(
                "SELECT session_id FROM chat_sessions WHERE user_id = ?1 AND expired_at IS NULL \
                 ORDER BY updated_at DESC",
            )
            .and_then(|mut s| s.query_map([user], |row| row.get(0))?.collect())
            .expect("list sessions")
    }

    /// The old store's `get_recent_sessions`: title from the first user
    /// message, message count, last activity.
    pub fn recent_sessions(&self, user: &str, limit: i64) -> Vec<SqlSummary> {
        self.conn
            .prepare_cached(
                "SELECT s.session_id, s.updated_at, \
                   (SELECT COUNT(*) FROM chat_messages m WHERE m.session_id = s.session_id), \
                   (SELECT content FROM chat_messages m WHERE m.session_id = s.session_id \
                      AND m.role = 'user' ORDER BY m.timestamp, m.id LIMIT 1) \
                 FROM chat_sessions s WHERE s.user_id = ?1 AND s.expired_at IS NULL \
                 ORDER BY s.updated_at DESC LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![user, limit], |row| {
                    let first: Option<String> = row.get(3)?;
                    Ok(SqlSummary {
                        session_id: row.get(0)?,
                        last_activity: row.get(1)?,
                        message_count: row.get(2)?,
                        title: title(first.as_deref()),
                    })
                })?
                .collect()
            })
            .expect("recent sessions")
    }

    /// Expires every active session not updated for `max_age`.
    pub fn expire_old_sessions(&self, max_age: Duration) -> usize {
        let cutoff = iso(micros_ago(max_age.as_micros() as i64));
        self.conn
            .prepare_cached(
                "UPDATE chat_sessions SET expired_at = ?1 WHERE expired_at IS NULL AND updated_at < ?2",
            )
            .and_then(|mut s| s.execute(params![iso(Utc::now()), cutoff]))
            .expect("expire")
    }

    /// Folds the WAL into the database file (for sizes and clean closes).
    pub fn checkpoint(&self) {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }
}

fn insert_message(conn: &Connection, id: &str, turn: &Turn) -> i64 {
    let active = conn
        .prepare_cached("SELECT 1 FROM chat_sessions WHERE session_id = ?1 AND expired_at IS NULL")
        .and_then(|mut s| s.exists([id]))
        .expect("check session");
    assert!(active, "Session {id} not found");
    let now = iso(Utc::now());
    conn.prepare_cached(
        "INSERT INTO chat_messages (session_id, role, content, query_plan, candidate_set, timestamp) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            turn.role.as_str(),
            turn.content,
            turn.query_plan,
            turn.candidate_set,
            now
        ])
    })
    .expect("insert message");
    let message_id = conn.last_insert_rowid();
    conn.prepare_cached("UPDATE chat_sessions SET updated_at = ?1 WHERE session_id = ?2")
        .and_then(|mut s| s.execute(params![now, id]))
        .expect("touch session");
    message_id
}

fn title(first_user_message: Option<&str>) -> String {
    match first_user_message {
        None => "New conversation".to_owned(),
        Some(text) if text.chars().count() > 50 => {
            let mut cut: String = text.chars().take(47).collect();
            cut.push_str("...");
            cut
        }
        Some(text) => text.to_owned(),
    }
}

/// SQLite behind the same batching writer as sessionstore's: one thread
/// takes every waiting `add_message` and commits them in one transaction.
pub struct BatchedSqlite {
    requests: Option<Sender<(String, Turn, SyncSender<i64>)>>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedSqlite {
    pub fn open(path: &Path) -> BatchedSqlite {
        let path = path.to_path_buf();
        let (requests, receiver) = mpsc::channel::<(String, Turn, SyncSender<i64>)>();
        let thread = std::thread::spawn(move || batch_writer(&path, receiver));
        BatchedSqlite {
            requests: Some(requests),
            thread: Some(thread),
        }
    }

    pub fn add_message(&self, id: &str, turn: &Turn) -> i64 {
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .as_ref()
            .expect("open")
            .send((id.to_owned(), turn.clone(), reply))
            .expect("writer running");
        answer.recv().expect("writer answered")
    }
}

impl Drop for BatchedSqlite {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn batch_writer(path: &Path, requests: Receiver<(String, Turn, SyncSender<i64>)>) {
    let store = Sqlite::open(path, Durability::Durable);
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while let Ok(next) = requests.try_recv() {
            batch.push(next);
        }
        let txn = Transaction::new_unchecked(&store.conn, TransactionBehavior::Immediate).expect("begin");
        let ids: Vec<i64> = batch
            .iter()
            .map(|(id, turn, _)| insert_message(&txn, id, turn))
            .collect();
        txn.commit().expect("commit");
        for ((_, _, reply), id) in batch.into_iter().zip(ids) {
            let _ = reply.send(id);
        }
    }
}

// ---- loading -------------------------------------------------------------

/// A folder for one workload's files, removed afterwards.
pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("BENCH_DIR").map(PathBuf::from);
    match base {
        Some(base) => {
            std::fs::create_dir_all(&base).expect("BENCH_DIR");
            tempfile::tempdir_in(base).expect("temp dir")
        }
        None => tempfile::tempdir().expect("temp dir"),
    }
}

/// A session of `n` messages in a sessionstore store, loaded relaxed.
pub fn ss_session(store: &SessionStore, seed: u64, n: u64) -> Uuid {
    let relaxed = store.with_durability(Durability::Relaxed);
    let id = relaxed.create_session(Some("reader")).expect("create");
    for turn in conversation(seed, n) {
        relaxed.add_message(id, turn.to_new_message()).expect("add");
    }
    id
}

/// The same session in SQLite, loaded in one transaction.
pub fn sql_session(store: &Sqlite, seed: u64, n: u64) -> String {
    let id = store.create_session(Some("reader"));
    let txn = store.conn.unchecked_transaction().expect("begin");
    for turn in conversation(seed, n) {
        insert_message(&txn, &id, &turn);
    }
    txn.commit().expect("commit");
    id
}

/// The user whose sessions the list workloads read.
pub const TARGET_USER: &str = "user-target";

/// Sessions of the big store: `total` sessions of which the target user has
/// `of_target` (each with two messages: a query and its answer), the others
/// spread over many users; every hundredth updated two days ago (due for a
/// 24-hour expiry), the rest in the last hour.
pub struct BigStore {
    pub total: u64,
    pub of_target: u64,
}

impl BigStore {
    fn sessions(&self) -> impl Iterator<Item = (Uuid, String, i64, bool)> + '_ {
        let stride = self.total / self.of_target;
        (0..self.total).map(move |i| {
            let target = i % stride == 0 && i / stride < self.of_target;
            let user = if target {
                TARGET_USER.to_owned()
            } else {
                format!("user-{}", i % 100_003)
            };
            let due = i % 100 == 1;
            let age = if due {
                48 * 3_600_000_000 + (i as i64) * 10
            } else {
                (i as i64 * 7_919) % 3_600_000_000
            };
            (
                Uuid::from_u128(0x5e55_0000_0000_0000_0000_0000_0000_0000 + i as u128),
                user,
                age,
                target,
            )
        })
    }

    pub fn load_sessionstore(&self, store: &SessionStore) {
        let mut importer = store.importer();
        let turns = conversation(7, 2);
        let mut next_id = 1;
        for (id, user, age, target) in self.sessions() {
            let at = Timestamp::from_micros(
                micros_ago(age).timestamp_micros(),
                sessionstore::TimestampForm::Utc,
            );
            importer
                .add_session(SessionInfo {
                    context: Some(sessionstore::JsonText::object("context", "{}").expect("json")),
                    metadata: Some(sessionstore::JsonText::object("metadata", "{}").expect("json")),
                    ..imported_session(id, user, &at)
                })
                .expect("add session");
            if target {
                let messages = imported_messages(&turns, &mut next_id, &at);
                importer.add_messages(id, messages).expect("add messages");
            }
        }
        importer.finish().expect("finish");
    }

    pub fn load_sqlite(&self, path: &Path) {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
            .expect("pragmas");
        conn.execute_batch(SCHEMA).expect("schema");
        let turns = conversation(7, 2);
        let txn = conn.unchecked_transaction().expect("begin");
        {
            let mut session = txn
                .prepare(
                    "INSERT INTO chat_sessions (session_id, user_id, created_at, updated_at, context, metadata) \
                     VALUES (?1, ?2, ?3, ?3, '{}', '{}')",
                )
                .expect("prepare");
            let mut message = txn
                .prepare(
                    "INSERT INTO chat_messages (session_id, role, content, query_plan, candidate_set, timestamp) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .expect("prepare");
            for (id, user, age, target) in self.sessions() {
                let id = id.to_string();
                let at = iso(micros_ago(age));
                session.execute(params![id, user, at]).expect("insert session");
                if target {
                    for turn in &turns {
                        message
                            .execute(params![
                                id,
                                turn.role.as_str(),
                                turn.content,
                                turn.query_plan,
                                turn.candidate_set,
                                at
                            ])
                            .expect("insert message");
                    }
                }
            }
        }
        txn.commit().expect("commit");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }
}
