//! Helpers shared by the integration tests (`tests/store_*.rs`,
//! `tests/reliability_*.rs`, ...).
//!
//! Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionstore::{Error, Message, SessionInfo, SessionStore, Timestamp, TimestampForm, Uuid};

/// The contents of the messages of session `id`, which must be active.
pub fn contents(store: &SessionStore, id: Uuid) -> Vec<String> {
    let session = store.get_session(id).expect("read").expect("session");
    session.messages.iter().map(|m| m.content.clone()).collect()
}

/// A new store on the engine the run tests (see [`Scratch`]), kept alive
/// by the returned guard.
pub fn temp_store() -> (Scratch, SessionStore) {
    let scratch = Scratch::new();
    let store = SessionStore::open(scratch.location()).expect("open a new store");
    (scratch, store)
}

/// The store file's path inside `dir`.
pub fn store_path(dir: &impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join("data/chat/sessions.redb")
}

/// Where a test's store lives, on the engine the run tests: a file in a
/// temporary folder (redb, by default), or, when
/// `SESSIONSTORE_TEST_ENGINE=postgres`, a database of its own made on the
/// server `SESSIONSTORE_TEST_POSTGRES_URL` names and dropped after the
/// test. The conformance tests (`tests/store_*.rs` and the others
/// `.ci/run` lists) run once on each engine.
pub struct Scratch {
    dir: tempfile::TempDir,
    database: Option<TestDatabase>,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temporary folder");
        let database = testing_postgres().then(TestDatabase::new);
        Scratch { dir, database }
    }

    /// A database of its own on the server `SESSIONSTORE_TEST_POSTGRES_URL`
    /// names, whatever engine the run tests; `None`, after saying so
    /// loudly, when the variable is unset (a failure when
    /// `SESSIONSTORE_REQUIRE_POSTGRES=1`, as in `.ci/run`).
    pub fn on_postgres() -> Option<Scratch> {
        if std::env::var_os("SESSIONSTORE_TEST_POSTGRES_URL").is_none() {
            assert!(
                std::env::var("SESSIONSTORE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "SESSIONSTORE_REQUIRE_POSTGRES=1 but SESSIONSTORE_TEST_POSTGRES_URL is unset"
            );
            eprintln!("SKIPPED PostgreSQL: SESSIONSTORE_TEST_POSTGRES_URL is unset (see .ci/postgres)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        Some(Scratch {
            dir,
            database: Some(TestDatabase::new()),
        })
    }

    /// The temporary folder (for files a test writes beside the store).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What `SessionStore::open` takes: the store file, or the database's URL.
    pub fn location(&self) -> PathBuf {
        match &self.database {
            Some(database) => PathBuf::from(&database.url),
            None => store_path(&self.dir),
        }
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether this run tests the PostgreSQL engine.
pub fn testing_postgres() -> bool {
    match std::env::var("SESSIONSTORE_TEST_ENGINE").as_deref() {
        Ok("postgres") => true,
        Ok("redb") | Err(_) => false,
        Ok(other) => panic!("SESSIONSTORE_TEST_ENGINE={other}: expected redb or postgres"),
    }
}

/// True, after saying so, when the run tests PostgreSQL: for the checks of
/// a conformance test that are about redb's files (paths, the journal,
/// reopening a file), which the caller then skips.
pub fn redb_only(what: &str) -> bool {
    let skip = testing_postgres();
    if skip {
        eprintln!("SKIPPED on PostgreSQL (about redb's files): {what}");
    }
    skip
}

/// A database made for one test, dropped with it.
struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    fn new() -> TestDatabase {
        let admin = std::env::var("SESSIONSTORE_TEST_POSTGRES_URL").expect(
            "SESSIONSTORE_TEST_ENGINE=postgres needs SESSIONSTORE_TEST_POSTGRES_URL (see .ci/postgres)",
        );
        let name = format!("sessionstore_test_{}", Uuid::new_v4().simple());
        let mut client =
            postgres::Client::connect(&admin, postgres::NoTls).expect("connect to the test server");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test's database");
        let url = with_database(&admin, &name);
        TestDatabase { admin, name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// `url` with its database replaced by `name` (`postgres://user@host:port/db?query`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Asserts that `check()` finds every rule of the data model kept.
pub fn assert_clean(store: &SessionStore) {
    let report = store.check(&mut |_, _| {}).expect("check runs");
    assert!(report.is_clean(), "check found problems: {:#?}", report.problems);
}

/// How many messages of session `id` the database whose bytes are
/// `database` holds, read with redb alone in a copy: without the journal,
/// which the store would replay (or refuse to open without).
pub fn messages_in_database(database: &[u8], id: Uuid) -> usize {
    const MESSAGES: redb::TableDefinition<(u128, u64), &[u8]> = redb::TableDefinition::new("messages");
    let copy = tempfile::NamedTempFile::new().expect("temporary file");
    std::fs::write(copy.path(), database).expect("copy the database");
    let db = redb::Database::open(copy.path()).expect("redb opens the copy");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let messages = txn.open_table(MESSAGES).expect("the messages table");
    let session = id.as_u128();
    messages
        .range((session, 0)..(session, u64::MAX))
        .expect("range")
        .count()
}

/// The time `age` ago, in the store's own (aware) form.
pub fn ago(age: Duration) -> Timestamp {
    let micros = Timestamp::now().micros() - i64::try_from(age.as_micros()).expect("age fits");
    Timestamp::from_micros(micros, TimestampForm::Utc)
}

/// Hours as a duration.
pub fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// A session last updated `updated_ago` ago, expired `expired_ago` ago when
/// given, loaded through the importer (the only way to make old sessions
/// without waiting).
pub fn aged_session(
    store: &SessionStore,
    user: Option<&str>,
    updated_ago: Duration,
    expired_ago: Option<Duration>,
) -> Uuid {
    let id = Uuid::new_v4();
    let mut importer = store.importer();
    importer
        .add_session(SessionInfo {
            session_id: id,
            user_id: user.map(str::to_owned),
            created_at: ago(updated_ago),
            updated_at: ago(updated_ago),
            expired_at: expired_ago.map(ago),
            context: Some(sessionstore::JsonText::object("context", "{}").expect("object")),
            metadata: Some(sessionstore::JsonText::object("metadata", "{}").expect("object")),
            message_count: 0,
            extra: Default::default(),
        })
        .expect("add session");
    importer.finish().expect("import");
    id
}

/// Everything in the store, in a comparable form: every session (in id
/// order) with its messages, and the next message id.
pub fn dump(store: &SessionStore) -> (Vec<(SessionInfo, Vec<Message>)>, u64) {
    let snapshot = store.snapshot().expect("snapshot");
    let mut all = Vec::new();
    for info in snapshot.sessions().expect("sessions") {
        let info = info.expect("session decodes");
        let messages = snapshot
            .messages(info.session_id)
            .expect("messages")
            .collect::<Result<Vec<_>, _>>()
            .expect("messages decode");
        all.push((info, messages));
    }
    (all, snapshot.next_message_id().expect("next id"))
}

/// Asserts `result` is `Error::SessionNotFound(id)`.
pub fn assert_session_not_found<T: std::fmt::Debug>(result: Result<T, Error>, id: Uuid) {
    match result {
        Err(Error::SessionNotFound(found)) => assert_eq!(found, id),
        other => panic!("expected SessionNotFound({id}), got {other:?}"),
    }
}

/// Asserts `result` is `Error::InvalidInput` about `what`, and returns its
/// message.
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>, expected_what: &str) -> String {
    match result {
        Err(error @ Error::InvalidInput { what, .. }) => {
            assert_eq!(what, expected_what, "{error}");
            error.to_string()
        }
        other => panic!("expected InvalidInput about {expected_what}, got {other:?}"),
    }
}

/// The size of a file.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("file exists").len()
}

/// True when the long runs were asked for (`SESSIONSTORE_LONG=1`).
pub fn long_run() -> bool {
    std::env::var_os("SESSIONSTORE_LONG").is_some_and(|v| v != "0" && !v.is_empty())
}

/// `short` in `cargo test`, `long` under `SESSIONSTORE_LONG=1`.
pub fn scale<T>(short: T, long: T) -> T {
    if long_run() {
        long
    } else {
        short
    }
}

/// How many cases a long run makes: `SESSIONSTORE_CASES` when given, else
/// `default` (for a shorter long run on a busy machine).
pub fn cases(default: u64) -> u64 {
    std::env::var("SESSIONSTORE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed of a run: `SESSIONSTORE_SEED` when given (to replay a failure),
/// else the clock. Printed so that a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SESSIONSTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: SESSIONSTORE_SEED={seed}");
    seed
}

/// A small deterministic generator (SplitMix64): the tests must replay
/// from a printed seed, and need nothing more.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

/// Message content made from `seed`, `len` characters long: ASCII, accents,
/// emoji and NUL, so that a test can rebuild it and compare byte for byte.
pub fn content(seed: u64, len: usize) -> String {
    const PIECES: [&str; 8] = ["a", "Z", " ", "é", "😀", "\0", "\n", "語"];
    let mut rng = Rng::new(seed);
    (0..len).map(|_| PIECES[rng.below(8) as usize]).collect()
}

pub mod disk;
