//! The migrate commands between the three: sessions.db -> PostgreSQL ->
//! store file -> sessions.db gives back the original rows, and an import
//! into a database that holds sessions is refused unless `--force`.
//!
//! Runs on the server `SESSIONSTORE_TEST_POSTGRES_URL` names, in a fresh
//! database per test (`.ci/postgres run -- cargo test -p
//! sessionstore-migrate --features postgres --test postgres_round_trip`);
//! without it, says loudly that it skipped PostgreSQL, and fails when
//! `SESSIONSTORE_REQUIRE_POSTGRES=1`.

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use common::{assert_same_rows, broken_copy, dump, migrate, UPGRADED, V1};
use sessionstore::{SessionStore, Uuid};
use sessionstore_migrate::{export, import, verify, ExportOptions, ImportOptions};

/// A database of its own on the test server, dropped at the end.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    /// A fresh database, or `None` (after saying so) when no server is
    /// configured.
    fn fresh() -> Option<Database> {
        let Ok(admin) = std::env::var("SESSIONSTORE_TEST_POSTGRES_URL") else {
            let required = std::env::var("SESSIONSTORE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SESSIONSTORE_REQUIRE_POSTGRES=1 but SESSIONSTORE_TEST_POSTGRES_URL is not set: \
                 run the test under `.ci/postgres run -- ...`"
            );
            // Straight to stderr, past the test harness's capture.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED PostgreSQL: SESSIONSTORE_TEST_POSTGRES_URL is not set; the migrate \
                 commands were not tried on PostgreSQL (run `.ci/postgres run -- cargo test -p \
                 sessionstore-migrate --features postgres --test postgres_round_trip`) ***\n"
            );
            return None;
        };
        let name = format!("m_{}", Uuid::new_v4().simple());
        client(&admin)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (server, _) = admin.rsplit_once('/').expect("the URL names a database");
        let url = format!("{server}/{name}");
        Some(Database { admin, name, url })
    }

    fn location(&self) -> &Path {
        Path::new(&self.url)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = client(&self.admin).batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name));
    }
}

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

fn quiet() -> ImportOptions {
    ImportOptions::default()
}

fn assert_equal(a: &Path, b: &Path) {
    let differences = verify(a, b, 5).unwrap();
    assert!(
        differences.is_empty(),
        "{} and {} differ: {differences:?}",
        a.display(),
        b.display()
    );
}

fn round_trip_through_postgres(fixture: &str) {
    let Some(database) = Database::fresh() else {
        return;
    };
    let fixture = Path::new(fixture);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sessions.redb");
    let back = dir.path().join("back.db");

    let into_database = import(fixture, database.location(), &quiet()).unwrap();
    assert_eq!(into_database.carried, 0);
    assert_equal(fixture, database.location());

    let into_file = import(database.location(), &store, &quiet()).unwrap();
    assert_eq!(
        (into_file.sessions, into_file.messages, into_file.extra_rows),
        (
            into_database.sessions,
            into_database.messages,
            into_database.extra_rows
        )
    );
    assert_equal(database.location(), &store);

    export(&store, &back, &ExportOptions::default()).unwrap();
    assert_equal(&store, &back);
    assert_equal(fixture, &back);

    let original = dump(fixture);
    assert_same_rows(&original, &back);

    // And straight from the database to a sessions.db.
    let direct = dir.path().join("direct.db");
    export(database.location(), &direct, &ExportOptions::default()).unwrap();
    assert_eq!(dump(&direct), original);
}

#[test]
fn the_documented_fixture_round_trips_through_postgres() {
    round_trip_through_postgres(V1);
}

#[test]
fn the_upgraded_fixture_round_trips_through_postgres() {
    round_trip_through_postgres(UPGRADED);
}

/// A database holding one session of one message, and that session.
fn database_with_a_session() -> Option<(Database, Uuid)> {
    let database = Database::fresh()?;
    let store = SessionStore::open(&database.url).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    store
        .add_message(id, sessionstore::NewMessage::user("hi"))
        .unwrap();
    Some((database, id))
}

/// What the database holds, as the public API reads it.
fn contents(database: &Database, id: Uuid) -> (u64, u64, Option<sessionstore::Session>) {
    let store = SessionStore::open(&database.url).unwrap();
    let stats = store.stats().unwrap();
    (
        stats.active_sessions + stats.expired_sessions,
        stats.messages,
        store.get_session(id).unwrap(),
    )
}

#[test]
fn a_database_holding_sessions_is_refused_without_force_and_left_as_it_was() {
    let Some((database, id)) = database_with_a_session() else {
        return;
    };
    let before = contents(&database, id);
    assert_eq!((before.0, before.1), (1, 1));

    let output = migrate(&[OsStr::new("import"), OsStr::new(V1), OsStr::new(&database.url)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds 1 sessions already"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(contents(&database, id), before);

    // From a store file too.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    import(Path::new(V1), &store, &quiet()).unwrap();
    let refused = import(&store, database.location(), &quiet()).unwrap_err();
    assert!(
        matches!(
            refused,
            sessionstore_migrate::Error::DatabaseNotEmpty { sessions: 1, .. }
        ),
        "{refused}"
    );
    assert_eq!(contents(&database, id), before);
}

#[test]
fn with_force_an_import_loads_beside_what_the_database_holds() {
    let Some((database, id)) = database_with_a_session() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    // A store whose message ids are not the database's (those start at 1).
    let made = SessionStore::open(&store).unwrap();
    let other = made.create_session(Some("bo")).unwrap();
    drop(made);
    let forced = ImportOptions {
        force: true,
        ..quiet()
    };
    let loaded = import(&store, database.location(), &forced).unwrap();
    assert_eq!(loaded.sessions, 1);
    let held = SessionStore::open(&database.url).unwrap();
    assert!(held.get_session(id).unwrap().is_some());
    assert!(held.get_session(other).unwrap().is_some());
}

#[test]
fn a_store_file_imports_into_another_store_file_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, back) = (
        dir.path().join("first.redb"),
        dir.path().join("second.redb"),
        dir.path().join("back.db"),
    );
    import(Path::new(UPGRADED), &first, &quiet()).unwrap();
    let copied = import(&first, &second, &quiet()).unwrap();
    assert!(copied.sessions > 0 && copied.messages > 0 && copied.extra_rows > 0);
    assert_equal(&first, &second);
    export(&second, &back, &ExportOptions::default()).unwrap();
    assert_eq!(dump(&back), dump(Path::new(UPGRADED)));
}

#[test]
fn a_sessions_db_with_a_refused_row_leaves_the_database_untouched() {
    let Some(database) = Database::fresh() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broken = broken_copy(
        V1,
        dir.path(),
        "broken.db",
        "UPDATE chat_messages SET timestamp = '13/01/2026 09:41' \
         WHERE id = (SELECT max(id) FROM chat_messages)",
    );
    let error = import(&broken, database.location(), &quiet()).unwrap_err();
    assert!(error.to_string().contains("not an ISO 8601 timestamp"), "{error}");
    let tables: i64 = client(&database.url)
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the database was touched: {error}");
}
