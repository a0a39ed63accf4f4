//! Round trips: SQLite -> store -> SQLite for the fixtures the old store
//! wrote, store -> SQLite -> store for stores the library made, and the old
//! store's behaviour read back from the converted files.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{assert_same_rows, count, dump, UPGRADED, V1};
use rusqlite::types::Value;
use rusqlite::Connection;
use sessionstore::{NewMessage, Role, SessionStore, Timestamp, Uuid};
use sessionstore_migrate::{export, import, verify, Error, ExportOptions, ImportOptions, SchemaChoice};

fn round_trip(fixture: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sessions.redb");
    let back = dir.path().join("back.db");
    let imported = import(Path::new(fixture), &store, &ImportOptions::default()).unwrap();
    assert_eq!(imported.carried, 0);
    export(&store, &back, &ExportOptions::default()).unwrap();

    let original = dump(Path::new(fixture));
    assert_same_rows(&original, &back);
    assert_eq!(imported.messages as usize, original.tables["chat_messages"].len());
    assert!(verify(Path::new(fixture), &back, 5).unwrap().is_empty());
    assert!(verify(Path::new(fixture), &store, 5).unwrap().is_empty());
}

#[test]
fn the_documented_fixture_round_trips_row_by_row() {
    round_trip(V1);
}

#[test]
fn the_upgraded_fixture_round_trips_row_by_row() {
    round_trip(UPGRADED);
}

#[test]
fn what_the_upgraded_fixture_holds_survives_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    import(Path::new(UPGRADED), &path, &ImportOptions::default()).unwrap();
    let store = SessionStore::open(&path).unwrap();
    let snapshot = store.snapshot().unwrap();
    let sessions: Vec<_> = snapshot.sessions().unwrap().map(Result::unwrap).collect();

    let empty_user = sessions
        .iter()
        .find(|s| s.user_id.as_deref() == Some(""))
        .expect("the empty-string user survives, not as NULL");
    assert!(
        empty_user.context.is_none() && empty_user.metadata.is_none(),
        "NULL context and metadata"
    );
    let explored: Vec<_> = sessions
        .iter()
        .filter(|s| {
            s.extra.get("phase") == Some(&sessionstore::ExtraValue::Text("corpus_exploration".into()))
        })
        .collect();
    assert_eq!(explored.len(), 2, "the phase column's non-default values");

    let forms: std::collections::HashSet<_> = sessions
        .iter()
        .flat_map(|s| snapshot.messages(s.session_id).unwrap().map(Result::unwrap))
        .map(|m| std::mem::discriminant(m.timestamp.form()))
        .collect();
    assert_eq!(forms.len(), 2, "naive and aware timestamps both kept");

    let tables: Vec<String> = snapshot.extra_rows().unwrap().map(|r| r.unwrap().table).collect();
    assert_eq!(
        tables,
        ["active_subgroups", "active_subgroups", "user_goals", "user_goals"]
    );
    assert_eq!(
        snapshot.next_message_id().unwrap(),
        434,
        "sqlite_sequence high-water mark + 1"
    );
}

#[test]
fn the_monitoring_queries_and_get_session_read_the_same() {
    for fixture in [V1, UPGRADED] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        import(Path::new(fixture), &path, &ImportOptions::default()).unwrap();
        let store = SessionStore::open(&path).unwrap();
        let stats = store.stats().unwrap();
        let fixture = Path::new(fixture);
        assert_eq!(
            stats.active_sessions as i64,
            count(
                fixture,
                "SELECT COUNT(*) FROM chat_sessions WHERE expired_at IS NULL"
            )
        );
        assert_eq!(
            stats.messages as i64,
            count(fixture, "SELECT COUNT(*) FROM chat_messages")
        );

        // The old get_session: None when expired, else every message ordered
        // by timestamp (compared as instants), ties by id.
        let conn = Connection::open_with_flags(fixture, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let sessions: Vec<(String, Option<String>)> = conn
            .prepare("SELECT session_id, expired_at FROM chat_sessions")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (id, expired) in sessions {
            let loaded = store.get_session(Uuid::parse_str(&id).unwrap()).unwrap();
            if expired.is_some() {
                assert!(loaded.is_none());
                continue;
            }
            let mut old: Vec<(i64, String, String, String)> = conn
                .prepare("SELECT id, role, content, timestamp FROM chat_messages WHERE session_id = ?1")
                .unwrap()
                .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            old.sort_by_key(|(id, _, _, ts)| (Timestamp::parse(ts).unwrap().micros(), *id));
            let new: Vec<(i64, String, String, String)> = loaded
                .unwrap()
                .messages
                .iter()
                .map(|m| {
                    (
                        m.id as i64,
                        m.role.to_string(),
                        m.content.clone(),
                        m.timestamp.to_text().into_owned(),
                    )
                })
                .collect();
            assert_eq!(new, old, "session {id}");
        }
    }
}

/// A store the library made: sessions with messages, an expired one,
/// contexts, and a popped message whose id must never come back.
fn library_store(path: &Path) -> (Uuid, u64) {
    let store = SessionStore::open(path).unwrap();
    let ana = store.create_session(Some("ana")).unwrap();
    store
        .add_message(ana, NewMessage::user("books by Oxford"))
        .unwrap();
    store
        .add_message(
            ana,
            NewMessage::assistant("Found 15")
                .with_candidate_set(r#"{"total_count": 15, "candidates": []}"#)
                .unwrap(),
        )
        .unwrap();
    store
        .update_context(ana, r#"{"last_publisher": "Oxford"}"#)
        .unwrap();
    let anonymous = store.create_session(None).unwrap();
    store
        .add_message(anonymous, NewMessage::system("be brief\0"))
        .unwrap();
    let old = store.create_session(Some("")).unwrap();
    store.add_message(old, NewMessage::user("é 😀")).unwrap();
    store.expire_session(old).unwrap();
    store.expire_old_sessions(Duration::from_secs(3600)).unwrap();
    let popped = store.add_message(anonymous, NewMessage::user("undo me")).unwrap();
    store.pop_last_message(anonymous).unwrap();
    (ana, popped)
}

fn everything(
    path: &Path,
) -> (
    Vec<sessionstore::SessionInfo>,
    Vec<Vec<sessionstore::Message>>,
    u64,
) {
    let store = SessionStore::open(path).unwrap();
    let snapshot = store.snapshot().unwrap();
    let sessions: Vec<_> = snapshot.sessions().unwrap().map(Result::unwrap).collect();
    let messages = sessions
        .iter()
        .map(|s| {
            snapshot
                .messages(s.session_id)
                .unwrap()
                .map(Result::unwrap)
                .collect()
        })
        .collect();
    (sessions, messages, snapshot.next_message_id().unwrap())
}

#[test]
fn a_store_made_by_the_library_round_trips_through_both_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.redb");
    let (_, popped) = library_store(&original);
    let before = everything(&original);
    assert_eq!(before.2, popped + 1);
    for (name, schema) in [
        ("default", None),
        ("upgraded", Some(SchemaChoice::Upgraded)),
        ("documented", Some(SchemaChoice::Documented)),
    ] {
        let db = dir.path().join(format!("{name}.db"));
        let back = dir.path().join(format!("{name}.redb"));
        let options = ExportOptions {
            schema,
            ..ExportOptions::default()
        };
        export(&original, &db, &options).unwrap();
        import(&db, &back, &ImportOptions::default()).unwrap();
        assert_eq!(everything(&back), before, "{name}");
        let differences = verify(&original, &back, 50).unwrap();
        if schema == Some(SchemaChoice::Documented) {
            // Same data; only generation 2's additions to the schema differ.
            assert!(!differences.is_empty());
            for difference in differences {
                let schema_only =
                    difference.place.starts_with("schema: ") || difference.detail == "only in A";
                assert!(schema_only, "{difference}");
            }
        } else {
            assert!(differences.is_empty(), "{name}: {differences:?}");
        }
        assert_eq!(
            count(
                &db,
                "SELECT seq FROM sqlite_sequence WHERE name = 'chat_messages'"
            ),
            popped as i64,
            "{name}: the popped id is the high-water mark"
        );
    }
}

#[test]
fn an_exported_file_opens_in_both_generations_of_the_old_store() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.redb");
    let (ana, popped) = library_store(&original);
    let db = dir.path().join("exported.db");
    export(&original, &db, &ExportOptions::default()).unwrap();

    let conn = Connection::open(&db).unwrap();
    // Pages of 16 KiB (the old store's own files have SQLite's 4 KiB).
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page_size, 16384);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // Generation 1's schema script, then generation 2's index on phase.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS chat_sessions (session_id TEXT PRIMARY KEY, user_id TEXT, \
           created_at TEXT NOT NULL, updated_at TEXT NOT NULL, context TEXT, metadata TEXT, \
           expired_at TEXT, UNIQUE(session_id));
         CREATE INDEX IF NOT EXISTS idx_sessions_user_id ON chat_sessions(user_id);
         CREATE INDEX IF NOT EXISTS idx_sessions_expired ON chat_sessions(expired_at);
         CREATE TABLE IF NOT EXISTS chat_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, \
           session_id TEXT NOT NULL, role TEXT NOT NULL CHECK(role IN ('user', 'assistant', 'system')), \
           content TEXT NOT NULL, query_plan TEXT, candidate_set TEXT, timestamp TEXT NOT NULL, \
           FOREIGN KEY (session_id) REFERENCES chat_sessions(session_id) ON DELETE CASCADE);
         CREATE INDEX IF NOT EXISTS idx_messages_session ON chat_messages(session_id, timestamp);
         CREATE INDEX IF NOT EXISTS idx_messages_timestamp ON chat_messages(timestamp DESC);
         CREATE INDEX IF NOT EXISTS idx_sessions_phase ON chat_sessions(phase);",
    )
    .unwrap();
    // The old store's add_message: the id continues after the popped one.
    conn.execute(
        "INSERT INTO chat_messages (session_id, role, content, timestamp) VALUES (?1, 'user', 'hi', '2026-01-13T09:41:07')",
        [ana.to_string()],
    )
    .unwrap();
    assert_eq!(conn.last_insert_rowid(), popped as i64 + 1);
    let phase: Value = conn
        .query_row(
            "SELECT phase FROM chat_sessions WHERE session_id = ?1",
            [ana.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(phase, Value::Text("query_definition".into()));
    let role: String = conn
        .query_row(
            "SELECT role FROM chat_messages WHERE content = 'be brief' || char(0)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(role, Role::System.as_str());
}

#[test]
fn the_documented_schema_refuses_what_it_has_no_place_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    import(Path::new(UPGRADED), &store, &ImportOptions::default()).unwrap();
    let dest = dir.path().join("gen1.db");
    let options = ExportOptions {
        schema: Some(SchemaChoice::Documented),
        ..ExportOptions::default()
    };
    let error = export(&store, &dest, &options).unwrap_err();
    assert!(
        matches!(
            error,
            Error::DoesNotFit {
                schema: "documented",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        common::files_in(dir.path()),
        ["s.redb", "s.redb-journal"],
        "no output, no temporary file"
    );
}
