//! The PostgreSQL engine against a real server: every operation's results
//! and refusals, the schema and its version, and many connections writing
//! to the same sessions.
//!
//! Needs `SESSIONSTORE_TEST_POSTGRES_URL` (a database the tests may create
//! schemas in); `.ci/postgres run -- cargo test --features postgres --test
//! postgres_engine` starts a throwaway cluster for them. Without it each
//! test says loudly that it skipped PostgreSQL, and fails when
//! `SESSIONSTORE_REQUIRE_POSTGRES=1` (as CI sets it).
#![cfg(feature = "postgres")]

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use sessionstore::{
    Durability, Error, ExtraRow, JsonText, Message, NewMessage, Role, SessionCursor, SessionInfo,
    SessionStore, StoreOptions, Timestamp, TimestampForm, TokenRule, Uuid,
};

mod postgres_support;
use postgres_support::Schema;

fn seqs_and_contents(engine: &SessionStore, id: Uuid) -> Vec<(u64, String)> {
    let session = engine.get_session(id).unwrap().expect("active");
    session
        .messages
        .iter()
        .map(|m| (m.seq, m.content.clone()))
        .collect()
}

#[test]
fn the_schema_is_created_versioned_and_answers_the_old_monitoring_sql() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let live = engine.create_session(Some("ana")).unwrap();
    let gone = engine.create_session(Some("ana")).unwrap();
    engine.add_message(live, NewMessage::user("hi")).unwrap();
    engine.add_message(gone, NewMessage::user("bye")).unwrap();
    assert!(engine.expire_session(gone).unwrap());
    // The old guide's monitoring queries, unchanged.
    let mut sql = schema.sql();
    let active: i64 = sql
        .query_one(
            "SELECT COUNT(*) FROM chat_sessions WHERE expired_at IS NULL;",
            &[],
        )
        .unwrap()
        .get(0);
    let messages: i64 = sql
        .query_one("SELECT COUNT(*) FROM chat_messages;", &[])
        .unwrap()
        .get(0);
    assert_eq!((active, messages), (1, 2));
    assert_eq!(schema_version(&mut sql), 3);
    // A second open of the same schema keeps its data.
    drop(engine);
    assert_eq!(schema.store().stats().unwrap().messages, 2);
    // A newer schema is refused, and left as it is.
    sql.batch_execute("UPDATE sessionstore_meta SET value = 7 WHERE name = 'schema_version'")
        .unwrap();
    let refused = SessionStore::open(&schema.url).unwrap_err();
    assert!(
        matches!(
            refused,
            Error::UnsupportedVersion {
                found: 7,
                supported: 3,
                ..
            }
        ),
        "{refused:?}"
    );
    let messages: i64 = sql
        .query_one("SELECT COUNT(*) FROM chat_messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(messages, 2);
}

#[test]
fn tables_the_library_did_not_make_are_refused() {
    let Some(schema) = Schema::fresh() else { return };
    schema
        .sql()
        .batch_execute("CREATE TABLE chat_sessions (session_id TEXT PRIMARY KEY)")
        .unwrap();
    let refused = SessionStore::open(&schema.url).unwrap_err();
    assert!(matches!(refused, Error::Corrupt { .. }), "{refused:?}");
    assert!(refused.to_string().contains("did not create"), "{refused}");
}

#[test]
fn a_bad_url_and_an_unreachable_server_are_clear_errors() {
    let Some(_schema) = Schema::fresh() else { return };
    let bad = SessionStore::open("postgres://ana:secret@[::1/x").unwrap_err();
    assert!(matches!(bad, Error::InvalidInput { .. }), "{bad:?}");
    assert!(!bad.to_string().contains("secret"), "{bad}");
    let down = SessionStore::open("postgres://ana:secret@127.0.0.1:1/x?connect_timeout=2").unwrap_err();
    assert!(
        matches!(
            down,
            Error::Unavailable {
                engine: "postgres",
                ..
            }
        ),
        "{down:?}"
    );
    assert!(
        down.to_string()
            .starts_with("storage (postgres) unavailable: connect to: "),
        "{down}"
    );
    assert!(!down.to_string().contains("secret"), "{down}");
}

#[test]
fn sessions_are_created_read_merged_expired_and_refused_as_on_redb() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let id = engine.create_session(Some("ana")).unwrap();
    let info = engine.session_info(id).unwrap().unwrap();
    assert_eq!(info.user_id.as_deref(), Some("ana"));
    assert_eq!(info.context.as_ref().unwrap().as_str(), "{}");
    assert_eq!(info.metadata.as_ref().unwrap().as_str(), "{}");
    assert_eq!(info.created_at, info.updated_at);
    assert!(info.created_at.to_text().ends_with("+00:00"));

    engine
        .update_context(id, r#"{"last_publisher": "Oxford", "n": 1}"#)
        .unwrap();
    engine.update_context(id, r#"{"n": 2, "é": true}"#).unwrap();
    let context = engine.session_info(id).unwrap().unwrap().context.unwrap();
    assert_eq!(
        context.as_str(),
        r#"{"last_publisher": "Oxford", "n": 2, "\u00e9": true}"#
    );
    let bad = engine.update_context(id, "[1]").unwrap_err();
    assert!(
        matches!(bad, Error::InvalidInput { what: "context", .. }),
        "{bad:?}"
    );

    // Another user's view sees nothing and may write nothing.
    let bob = engine.for_user("bob");
    assert!(bob.get_session(id).unwrap().is_none());
    assert!(bob.session_info(id).unwrap().is_none());
    assert!(bob
        .add_message(id, NewMessage::user("x"))
        .unwrap_err()
        .is_not_found());
    assert!(bob.expire_session(id).unwrap_err().is_not_found());
    assert!(bob.delete_session(id).unwrap_err().is_not_found());
    assert!(engine.for_user("ana").get_session(id).unwrap().is_some());

    // Missing: None to a read, SessionNotFound to a write.
    let unknown = Uuid::new_v4();
    assert!(engine.get_session(unknown).unwrap().is_none());
    assert!(engine.session_info(unknown).unwrap().is_none());
    assert!(engine.get_recent_messages(unknown, 5).unwrap().is_none());
    let write = engine.add_message(unknown, NewMessage::user("x"));
    assert!(matches!(write, Err(Error::SessionNotFound(got)) if got == unknown));
    assert!(engine.update_context(unknown, "{}").unwrap_err().is_not_found());
    assert!(engine.expire_session(unknown).unwrap_err().is_not_found());
    assert!(engine.delete_session(unknown).unwrap_err().is_not_found());
    assert!(engine.pop_last_message(unknown).unwrap_err().is_not_found());

    // Expired: gone to reads but session_info, refused to writes.
    assert!(engine.expire_session(id).unwrap());
    assert!(!engine.expire_session(id).unwrap());
    assert!(engine.get_session(id).unwrap().is_none());
    assert!(engine.messages_from(id, 0, 10).unwrap().is_none());
    assert!(engine.session_info(id).unwrap().unwrap().is_expired());
    assert!(engine
        .add_message(id, NewMessage::user("x"))
        .unwrap_err()
        .is_not_found());
    assert!(engine.update_context(id, "{}").unwrap_err().is_not_found());
    assert!(engine.pop_last_message(id).unwrap_err().is_not_found());
    assert!(engine.fork_session(id, 0).unwrap_err().is_not_found());

    // Deleting works on an expired session, and then it is missing.
    assert_eq!(engine.delete_session(id).unwrap(), 0);
    assert!(engine.session_info(id).unwrap().is_none());
}

#[test]
fn messages_append_page_pop_and_keep_their_exact_text() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let id = engine.create_session(None).unwrap();
    let plan = r#"{"filters": [], "big": 123456789012345678901234567890}"#;
    let first = NewMessage::user("a\0b é")
        .with_query_plan(plan)
        .unwrap()
        .with_tokens(3);
    let ids = engine
        .add_messages(
            id,
            vec![first, NewMessage::assistant("").with_candidate_set("{}").unwrap()],
        )
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);
    for n in 2..6 {
        engine
            .add_message(id, NewMessage::system(format!("m{n}")))
            .unwrap();
    }
    let session = engine.get_session(id).unwrap().unwrap();
    assert_eq!(session.message_count, 6);
    let m0 = &session.messages[0];
    assert_eq!((m0.id, m0.seq, m0.role), (ids[0], 0, Role::User));
    assert_eq!(m0.content, "a\0b é");
    assert_eq!(m0.query_plan.as_ref().unwrap().as_str(), plan);
    assert_eq!(m0.tokens, Some(3));
    assert_eq!(session.messages[1].candidate_set.as_ref().unwrap().as_str(), "{}");
    assert_eq!(session.messages[1].content, "");
    assert!(session.updated_at.micros() >= session.created_at.micros());

    let seqs = |page: Option<Vec<Arc<sessionstore::Message>>>| -> Vec<u64> {
        page.unwrap().iter().map(|m| m.seq).collect()
    };
    assert_eq!(seqs(engine.messages_from(id, 2, 2).unwrap()), [2, 3]);
    assert_eq!(seqs(engine.messages_after(id, 2, 2).unwrap()), [3, 4]);
    assert_eq!(seqs(engine.messages_before(id, 2, 5).unwrap()), [0, 1]);
    assert_eq!(seqs(engine.get_recent_messages(id, 2).unwrap()), [4, 5]);
    assert_eq!(
        seqs(engine.messages_after(id, u64::MAX, 2).unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(seqs(engine.messages_from(id, 9, 2).unwrap()), Vec::<u64>::new());

    let (owner, found) = engine.get_message(ids[0]).unwrap().unwrap();
    assert_eq!((owner, found.content.as_str()), (id, "a\0b é"));
    assert!(engine.for_user("ana").get_message(ids[0]).unwrap().is_none());
    assert!(engine.get_message(u64::MAX).unwrap().is_none());

    // Undo: the last message goes, its id is not given again.
    let popped = engine.pop_last_message(id).unwrap().unwrap();
    assert_eq!((popped.seq, popped.content.as_str()), (5, "m5"));
    assert!(engine.get_message(popped.id).unwrap().is_none());
    let next = engine.add_message(id, NewMessage::user("again")).unwrap();
    assert!(next > popped.id);
    assert_eq!(
        engine.get_session(id).unwrap().unwrap().messages[5].content,
        "again"
    );

    // Refusals write nothing.
    let none = engine.add_messages(id, Vec::new()).unwrap_err();
    assert!(
        matches!(none, Error::InvalidInput { what: "messages", .. }),
        "{none:?}"
    );
    let small = SessionStore::open_with(
        &schema.url,
        StoreOptions {
            max_content_bytes: 4,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let big = small.add_message(id, NewMessage::user("12345")).unwrap_err();
    assert!(
        matches!(big, Error::InvalidInput { what: "content", .. }),
        "{big:?}"
    );
    let conflict = engine
        .add_message_if(id, 3, NewMessage::user("late"))
        .unwrap_err();
    assert!(
        matches!(
            conflict,
            Error::SeqConflict {
                expected: 3,
                actual: 6,
                ..
            }
        ),
        "{conflict:?}"
    );
    assert_eq!(engine.session_info(id).unwrap().unwrap().message_count, 6);
    engine.add_message_if(id, 6, NewMessage::user("on time")).unwrap();
    let conflict = engine
        .add_messages_if(id, 6, vec![NewMessage::user("x")])
        .unwrap_err();
    assert!(
        matches!(conflict, Error::SeqConflict { actual: 7, .. }),
        "{conflict:?}"
    );

    // Pop of an empty session: None.
    let empty = engine.create_session(None).unwrap();
    assert!(engine.pop_last_message(empty).unwrap().is_none());
}

#[test]
fn user_lists_pages_and_titles_follow_the_old_store() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(engine.create_session(Some("ana")).unwrap());
        thread::sleep(Duration::from_millis(2));
    }
    engine
        .add_message(ids[1], NewMessage::assistant("hello"))
        .unwrap();
    engine
        .add_message(ids[1], NewMessage::user("é".repeat(51)))
        .unwrap();
    engine.create_session(Some("bob")).unwrap();
    engine.expire_session(ids[0]).unwrap();
    // Most recently updated first: ids[1] got messages after the others were made.
    let active = engine.list_user_sessions("ana", false).unwrap();
    assert_eq!(active, [ids[1], ids[4], ids[3], ids[2]]);
    let all = engine.list_user_sessions("ana", true).unwrap();
    assert_eq!(all, [ids[1], ids[4], ids[3], ids[2], ids[0]]);

    let recent = engine.recent_sessions("ana", 2).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].title, format!("{}...", "é".repeat(47)));
    assert_eq!(recent[0].message_count, 2);
    assert_eq!(recent[1].title, "New conversation");
    assert!(engine.recent_sessions("ana", 0).unwrap().is_empty());

    let mut seen = Vec::new();
    let mut cursor: Option<SessionCursor> = None;
    loop {
        let page = engine.user_sessions_page("ana", true, cursor, 2).unwrap();
        seen.extend(page.sessions.iter().map(|s| (s.session_id, s.expired)));
        match page.next {
            Some(next) => cursor = Some(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    let expected: Vec<(Uuid, bool)> = all.iter().map(|&id| (id, id == ids[0])).collect();
    assert_eq!(seen, expected);
    let zero = engine.user_sessions_page("ana", false, None, 0).unwrap_err();
    assert!(
        matches!(zero, Error::InvalidInput { what: "limit", .. }),
        "{zero:?}"
    );

    engine.update_user_context("ana", r#"{"lang": "fr"}"#).unwrap();
    let erased = engine.erase_user("ana").unwrap();
    assert_eq!((erased.sessions, erased.messages), (5, 2));
    assert!(engine.list_user_sessions("ana", true).unwrap().is_empty());
    assert!(engine.user_context("ana").unwrap().is_none());
    assert_eq!(engine.list_user_sessions("bob", false).unwrap().len(), 1);

    // A name PostgreSQL's text cannot hold owns nothing, and cannot own.
    let nul = "a\0b";
    assert!(engine.list_user_sessions(nul, true).unwrap().is_empty());
    assert!(engine
        .user_sessions_page(nul, true, None, 5)
        .unwrap()
        .sessions
        .is_empty());
    assert!(engine.user_context(nul).unwrap().is_none());
    assert_eq!(engine.erase_user(nul).unwrap().sessions, 0);
    let refused = engine.create_session(Some(nul)).unwrap_err();
    assert!(
        matches!(refused, Error::InvalidInput { what: "user_id", .. }),
        "{refused:?}"
    );
}

/// The schema version the database records.
fn schema_version(sql: &mut postgres::Client) -> i64 {
    sql.query_one(
        "SELECT value FROM sessionstore_meta WHERE name = 'schema_version'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The title columns of session `id` as its row holds them: the title
/// (from its exact bytes when there are some) and the seq it comes from.
fn title_row(sql: &mut postgres::Client, id: Uuid) -> (Option<String>, Option<i64>) {
    let row = sql
        .query_one(
            "SELECT title, title_exact, title_seq FROM chat_sessions WHERE session_id = $1",
            &[&id],
        )
        .unwrap();
    let title = match row.get::<_, Option<Vec<u8>>>(1) {
        Some(exact) => Some(String::from_utf8(exact).unwrap()),
        None => row.get(0),
    };
    (title, row.get(2))
}

#[test]
fn titles_live_in_the_session_row_through_appends_pops_forks_and_imports() {
    let Some(schema) = Schema::fresh() else { return };
    let store = schema.store();
    let mut sql = schema.sql();
    let id = store.create_session(Some("ana")).unwrap();
    assert_eq!(title_row(&mut sql, id), (None, None));
    store
        .add_messages(
            id,
            vec![NewMessage::system("be brief"), NewMessage::assistant("hello")],
        )
        .unwrap();
    assert_eq!(title_row(&mut sql, id), (None, None));
    store
        .add_messages(
            id,
            vec![NewMessage::user("é".repeat(60)), NewMessage::user("second")],
        )
        .unwrap();
    let long = format!("{}...", "é".repeat(47));
    assert_eq!(title_row(&mut sql, id), (Some(long.clone()), Some(2)));
    // A later user message leaves it; the list reads it from the row.
    store.add_message(id, NewMessage::user("third")).unwrap();
    assert_eq!(title_row(&mut sql, id), (Some(long.clone()), Some(2)));
    assert_eq!(store.recent_sessions("ana", 5).unwrap()[0].title, long);

    // A fork before the first user message has none, one after it the same.
    let before = store.fork_session(id, 2).unwrap();
    assert_eq!(title_row(&mut sql, before), (None, None));
    let after = store.fork_session(id, 3).unwrap();
    assert_eq!(title_row(&mut sql, after), (Some(long.clone()), Some(2)));

    // Pops: the title stays while its message does, goes with it.
    for _ in 0..2 {
        store.pop_last_message(id).unwrap().unwrap();
        assert_eq!(title_row(&mut sql, id), (Some(long.clone()), Some(2)));
    }
    store.pop_last_message(id).unwrap().unwrap();
    assert_eq!(title_row(&mut sql, id), (None, None));
    let listed = store.user_sessions_page("ana", false, None, 10).unwrap();
    let summary = listed.sessions.iter().find(|s| s.session_id == id).unwrap();
    assert_eq!(summary.title, "New conversation");
    // The next user message gives the title again; NUL characters kept.
    store.add_message(id, NewMessage::user("a\0b")).unwrap();
    assert_eq!(title_row(&mut sql, id), (Some("a\0b".into()), Some(2)));
    let listed = store.user_sessions_page("ana", false, None, 10).unwrap();
    let summary = listed.sessions.iter().find(|s| s.session_id == id).unwrap();
    assert_eq!(summary.title, "a\0b");

    // An import writes the titles of what it loads.
    let target = Schema::fresh().unwrap();
    let copy = target.store();
    let mut importer = copy.importer();
    let snapshot = store.snapshot().unwrap();
    for session in snapshot.sessions().unwrap() {
        let session = session.unwrap();
        let sid = session.session_id;
        importer.add_session(session).unwrap();
        let messages: Vec<_> = snapshot.messages(sid).unwrap().map(Result::unwrap).collect();
        importer.add_messages(sid, messages).unwrap();
    }
    importer.finish().unwrap();
    let mut target_sql = target.sql();
    for sid in [id, before, after] {
        assert_eq!(title_row(&mut target_sql, sid), title_row(&mut sql, sid));
    }
    assert!(copy.check(&mut |_, _| {}).unwrap().problems.is_empty());

    // check() finds a title that is not its first user message's.
    assert!(store.check(&mut |_, _| {}).unwrap().problems.is_empty());
    sql.execute(
        "UPDATE chat_sessions SET title_seq = 0 WHERE session_id = $1",
        &[&after],
    )
    .unwrap();
    let problems = store.check(&mut |_, _| {}).unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&after.to_string()), "{problems:?}");
}

#[test]
fn a_version_1_schema_is_upgraded_at_open_with_every_title_filled() {
    let Some(schema) = Schema::fresh() else { return };
    let store = schema.store();
    let titled = store.create_session(Some("ana")).unwrap();
    store
        .add_messages(
            titled,
            vec![NewMessage::assistant("hi"), NewMessage::user("x".repeat(80))],
        )
        .unwrap();
    let nul = store.create_session(Some("ana")).unwrap();
    store.add_message(nul, NewMessage::user("a\0b")).unwrap();
    let untitled = store.create_session(Some("ana")).unwrap();
    store
        .add_message(untitled, NewMessage::assistant("only me"))
        .unwrap();
    drop(store);
    // The schema as version 1 made it (version 2 added three columns,
    // version 3 search's column, index and table), with more sessions
    // than one page of the upgrade.
    let mut sql = schema.sql();
    sql.batch_execute(
        "ALTER TABLE chat_sessions DROP COLUMN title, DROP COLUMN title_exact, DROP COLUMN title_seq;
         ALTER TABLE chat_messages DROP COLUMN search_vector, DROP COLUMN search_length;
         ALTER TABLE chat_sessions DROP COLUMN search_docs, DROP COLUMN search_words;
         DROP FUNCTION sessionstore_words;
         UPDATE sessionstore_meta SET value = 1 WHERE name = 'schema_version';
         INSERT INTO chat_sessions (session_id, user_id, created_at, updated_at, created_micros,
                                    updated_micros, message_count)
             SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'bob',
                    '2024-01-01T00:00:00', '2024-01-01T00:00:00', n, n, 1
             FROM generate_series(1, 2500) AS n;
         INSERT INTO chat_messages (session_id, seq, id, role, content, timestamp, timestamp_micros)
             SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 0,
                    nextval('chat_messages_id_seq'), 'user', 'question ' || n,
                    '2024-01-01T00:00:00', n
             FROM generate_series(1, 2500) AS n;",
    )
    .unwrap();

    // A read-only open cannot upgrade it: refused, nothing changed.
    let refused = SessionStore::open_read_only(&schema.url).unwrap_err();
    assert!(
        matches!(
            refused,
            Error::UnsupportedVersion {
                found: 1,
                supported: 3,
                ..
            }
        ),
        "{refused:?}"
    );
    // Opens at once: one upgrades, the others wait for it and go on.
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = schema.url.clone();
            thread::spawn(move || SessionStore::open(&url).map(drop))
        })
        .collect();
    for open in opened {
        open.join().unwrap().unwrap();
    }
    assert_eq!(schema_version(&mut sql), 3);
    assert_eq!(
        title_row(&mut sql, titled),
        (Some(format!("{}...", "x".repeat(47))), Some(1))
    );
    assert_eq!(title_row(&mut sql, nul), (Some("a\0b".into()), Some(0)));
    assert_eq!(title_row(&mut sql, untitled), (None, None));
    let store = schema.store();
    let bob = store
        .user_sessions_page("bob", false, None, 3000)
        .unwrap()
        .sessions;
    assert_eq!(bob.len(), 2500);
    for summary in &bob {
        let n = summary.session_id.as_u128() & 0xffff_ffff_ffff;
        let n: u64 = format!("{n:x}").parse().unwrap();
        assert_eq!(summary.title, format!("question {n}"));
    }
    assert!(store.check(&mut |_, _| {}).unwrap().problems.is_empty());
}

/// A session of `user` as an import brings it, made at `micros`.
fn imported_session(id: Uuid, user: &str, micros: i64) -> SessionInfo {
    let at = Timestamp::from_micros(micros, TimestampForm::Utc);
    SessionInfo {
        session_id: id,
        user_id: Some(user.into()),
        created_at: at.clone(),
        updated_at: at,
        expired_at: None,
        context: Some(JsonText::object("context", "{}").unwrap()),
        metadata: None,
        message_count: 0,
        extra: Default::default(),
    }
}

/// `n` messages as an import brings them, ids from `first_id`, user and
/// assistant in turn.
fn imported_messages(first_id: u64, n: u64, micros: i64) -> Vec<Message> {
    (0..n)
        .map(|k| Message {
            id: first_id + k,
            seq: 0,
            role: if k % 2 == 0 { Role::User } else { Role::Assistant },
            content: format!("message {} of the import", first_id + k),
            query_plan: None,
            candidate_set: None,
            timestamp: Timestamp::from_micros(micros + k as i64, TimestampForm::Utc),
            extra: Default::default(),
            tokens: None,
        })
        .collect()
}

fn table_counts(sql: &mut postgres::Client) -> (i64, i64) {
    let row = sql
        .query_one(
            "SELECT (SELECT COUNT(*) FROM chat_sessions), (SELECT COUNT(*) FROM chat_messages)",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn the_importer_loads_many_batches_in_one_transaction_and_refuses_as_before() {
    let Some(schema) = Schema::fresh() else { return };
    let store = schema.store();
    let mut sql = schema.sql();
    // 2,500 sessions of 10 messages: the batches of COPY fill and flush
    // mid-import (its speed is the report's big_store load, not a test's).
    let sessions: Vec<Uuid> = (0..2_500u128)
        .map(|n| Uuid::from_u128(0xa000 << 64 | n))
        .collect();
    let mut importer = store.importer();
    for (n, &id) in sessions.iter().enumerate() {
        let micros = 1_700_000_000_000_000 + n as i64 * 1_000;
        importer
            .add_session(imported_session(id, &format!("u{}", n % 7), micros))
            .unwrap();
        importer
            .add_messages(id, imported_messages(1 + n as u64 * 10, 6, micros))
            .unwrap();
        // A session's messages in two calls: the second after another
        // session, so its row is written already.
        if n > 0 {
            let previous = sessions[n - 1];
            let micros = micros + 100;
            importer
                .add_messages(previous, imported_messages(7 + (n as u64 - 1) * 10, 4, micros))
                .unwrap();
        }
    }
    importer
        .add_messages(
            sessions[2_499],
            imported_messages(7 + 2_499 * 10, 4, 1_800_000_000_000_000),
        )
        .unwrap();
    // Nothing is seen before finish.
    assert_eq!(table_counts(&mut sql), (0, 0));
    importer.finish().unwrap();
    assert_eq!(table_counts(&mut sql), (2_500, 25_000));
    assert!(store.check(&mut |_, _| {}).unwrap().problems.is_empty());
    let last = store.get_session(sessions[2_499]).unwrap().unwrap();
    let ids: Vec<u64> = last.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, (24_991..=25_000).collect::<Vec<_>>());
    assert_eq!(last.info.message_count, 10);
    let listed = store.user_sessions_page("u0", false, None, 1).unwrap().sessions;
    assert_eq!(
        listed[0].title,
        format!("message {} of the import", 1 + 2_499 * 10)
    );
    // The id sequence is past every id loaded.
    let fresh = store.create_session(Some("u0")).unwrap();
    assert_eq!(store.add_message(fresh, NewMessage::user("new")).unwrap(), 25_001);

    // A session loaded twice (the database holds it) ends the import with
    // a refusal naming it, and nothing of it is written.
    let before = table_counts(&mut sql);
    let mut importer = store.importer();
    let new = Uuid::from_u128(0xb000 << 64);
    importer.add_session(imported_session(new, "u0", 1)).unwrap();
    importer
        .add_messages(new, imported_messages(900_000, 3, 1))
        .unwrap();
    importer
        .add_session(imported_session(sessions[7], "u0", 1))
        .unwrap();
    let refused = importer.finish().unwrap_err();
    assert!(
        matches!(
            refused,
            Error::InvalidInput {
                what: "session_id",
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains(&sessions[7].to_string()),
        "{refused}"
    );
    assert_eq!(table_counts(&mut sql), before);

    // A message id taken: refused, named; later calls answer the same.
    let mut importer = store.importer();
    importer.add_session(imported_session(new, "u0", 1)).unwrap();
    importer
        .add_messages(new, imported_messages(24_990, 2, 1))
        .unwrap();
    importer
        .add_extra_row(ExtraRow {
            table: "notes".into(),
            rowid: 1,
            session: None,
            values: Vec::new(),
        })
        .map(drop)
        .expect_err("the batch's ids are checked before the row");
    let refused = importer
        .add_session(imported_session(Uuid::from_u128(1), "u0", 1))
        .unwrap_err();
    assert!(
        matches!(
            refused,
            Error::InvalidInput {
                what: "message id",
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("24990"), "{refused}");
    assert!(importer.finish().is_err());
    assert_eq!(table_counts(&mut sql), before);
    assert!(store.check(&mut |_, _| {}).unwrap().problems.is_empty());
}

/// The search counts of session `id` as stored: (messages holding words,
/// their words).
fn search_counts(sql: &mut postgres::Client, id: Uuid) -> (i64, i64) {
    let row = sql
        .query_one(
            "SELECT search_docs, search_words FROM chat_sessions WHERE session_id = $1",
            &[&id],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn search_counts_follow_every_write_and_check_verifies_them() {
    let Some(schema) = Schema::fresh() else { return };
    let store = schema.store();
    let mut sql = schema.sql();
    let id = store.create_session(Some("ana")).unwrap();
    assert_eq!(search_counts(&mut sql, id), (0, 0));
    store
        .add_messages(
            id,
            vec![
                NewMessage::user("red apple red"),
                NewMessage::assistant("green apple"),
                NewMessage::user("!!"),
            ],
        )
        .unwrap();
    assert_eq!(search_counts(&mut sql, id), (2, 5));
    // A fork counts the messages it holds.
    let fork = store.fork_session(id, 1).unwrap();
    assert_eq!(search_counts(&mut sql, fork), (1, 3));
    // The statistics count every session of the user: "red" is rarer
    // beside the fork's copy of "red apple red" than without it.
    let with_fork = store.search("ana", "green", None, 10).unwrap().hits[0].score;
    store.delete_session(fork).unwrap();
    let without = store.search("ana", "green", None, 10).unwrap().hits[0].score;
    assert!(with_fork > without, "{with_fork} {without}");
    // A pop of a message without words changes nothing; the next one does.
    store.pop_last_message(id).unwrap().unwrap();
    assert_eq!(search_counts(&mut sql, id), (2, 5));
    store.pop_last_message(id).unwrap().unwrap();
    assert_eq!(search_counts(&mut sql, id), (1, 3));
    // Expired: still counted (as on redb) until purged, but not found.
    let other = store.create_session(Some("ana")).unwrap();
    store.add_message(other, NewMessage::user("apple pie")).unwrap();
    let before = store.search("ana", "pie", None, 10).unwrap().hits[0].score;
    store.expire_session(id).unwrap();
    assert!(store.search("ana", "red", None, 10).unwrap().hits.is_empty());
    assert_eq!(
        store.search("ana", "pie", None, 10).unwrap().hits[0].score,
        before
    );
    assert_eq!(store.purge_expired(Duration::ZERO).unwrap(), 1);
    assert_ne!(
        store.search("ana", "pie", None, 10).unwrap().hits[0].score,
        before
    );
    // An import counts what it loads.
    let mut importer = store.importer();
    let loaded = Uuid::from_u128(0xfeed);
    importer.add_session(imported_session(loaded, "ana", 1)).unwrap();
    importer
        .add_messages(loaded, imported_messages(900, 2, 1))
        .unwrap();
    importer.finish().unwrap();
    assert_eq!(search_counts(&mut sql, loaded), (2, 10));
    assert_eq!(store.search("ana", "import", None, 10).unwrap().hits.len(), 2);
    assert!(store.check(&mut |_, _| {}).unwrap().problems.is_empty());

    // check() finds counts that are not what the messages give.
    sql.execute(
        "UPDATE chat_sessions SET search_words = 99 WHERE session_id = $1",
        &[&other],
    )
    .unwrap();
    let problems = store.check(&mut |_, _| {}).unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&other.to_string()), "{problems:?}");
}

#[test]
fn search_scores_are_redbs_for_plain_words() {
    let Some(schema) = Schema::fresh() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let database = schema.store();
    let texts = [
        "books by oxford university press",
        "found fifteen books by oxford university press and oxford has more",
        "nothing about them here",
        "press the button",
        "oxford oxford oxford",
    ];
    for store in [&file, &database] {
        let mut importer = store.importer();
        for (n, text) in texts.iter().enumerate() {
            let id = Uuid::from_u128(n as u128 + 1);
            importer.add_session(imported_session(id, "ana", 1)).unwrap();
            let mut message = imported_messages(n as u64 * 2 + 1, 1, 1).remove(0);
            message.content = (*text).to_owned();
            importer.add_messages(id, vec![message]).unwrap();
        }
        importer.finish().unwrap();
    }
    for query in ["oxford", "oxford press", "books button", "zebra oxford"] {
        let on_file = file.search("ana", query, None, 10).unwrap();
        let on_database = database.search("ana", query, None, 10).unwrap();
        assert_eq!(on_file.hits.len(), on_database.hits.len(), "{query}");
        for (a, b) in on_file.hits.iter().zip(&on_database.hits) {
            assert_eq!(
                (a.session_id, a.seq, &a.snippet),
                (b.session_id, b.seq, &b.snippet),
                "{query}"
            );
            assert!(
                (a.score - b.score).abs() < 1e-9,
                "{query}: {} vs {}",
                a.score,
                b.score
            );
        }
    }
}

#[test]
fn a_message_with_more_words_than_a_tsvector_holds_is_stored_and_searched() {
    let Some(schema) = Schema::fresh() else { return };
    let store = schema.store();
    let id = store.create_session(Some("ana")).unwrap();
    // 300,000 distinct words, 2.3 MB: their tsvector would pass 1 MiB.
    let words: Vec<String> = (0..300_000).map(|n| format!("w{n:x}")).collect();
    let content = words.join(" ");
    store.add_message(id, NewMessage::user(content.clone())).unwrap();
    let stored = store.get_session(id).unwrap().unwrap();
    assert_eq!(stored.messages[0].content, content);
    // Searched in its first 65,536 characters.
    assert_eq!(store.search("ana", "w10", None, 10).unwrap().hits.len(), 1);
    assert!(store.search("ana", "w40000", None, 10).unwrap().hits.is_empty());
    assert!(store.check(&mut |_, _| {}).unwrap().problems.is_empty());
}

#[test]
fn a_version_2_schema_is_upgraded_to_search() {
    let Some(schema) = Schema::fresh() else { return };
    let store = schema.store();
    let id = store.create_session(Some("ana")).unwrap();
    store
        .add_messages(
            id,
            vec![NewMessage::user("alpha beta"), NewMessage::assistant("beta")],
        )
        .unwrap();
    drop(store);
    let mut sql = schema.sql();
    sql.batch_execute(
        "ALTER TABLE chat_messages DROP COLUMN search_vector, DROP COLUMN search_length;
         ALTER TABLE chat_sessions DROP COLUMN search_docs, DROP COLUMN search_words;
         DROP FUNCTION sessionstore_words;
         UPDATE sessionstore_meta SET value = 2 WHERE name = 'schema_version';",
    )
    .unwrap();
    let store = schema.store();
    assert_eq!(schema_version(&mut sql), 3);
    assert_eq!(search_counts(&mut sql, id), (2, 3));
    let hits = store.search("ana", "beta", None, 10).unwrap().hits;
    assert_eq!(hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [1, 0]);
    assert!(store.check(&mut |_, _| {}).unwrap().problems.is_empty());
}

#[test]
fn expiry_by_age_purge_and_stats() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let old = engine.create_session(Some("ana")).unwrap();
    engine.add_message(old, NewMessage::user("old")).unwrap();
    let mut sql = schema.sql();
    sql.execute(
        "UPDATE chat_sessions SET updated_micros = updated_micros - 7200000000 WHERE session_id = $1",
        &[&old],
    )
    .unwrap();
    let fresh = engine.create_session(Some("ana")).unwrap();
    assert_eq!(engine.expire_old_sessions(Duration::from_secs(3600)).unwrap(), 1);
    assert_eq!(engine.expire_old_sessions(Duration::from_secs(3600)).unwrap(), 0);
    assert!(engine.get_session(old).unwrap().is_none());
    assert!(engine.get_session(fresh).unwrap().is_some());
    let stats = engine.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.expired_sessions, stats.messages),
        (1, 1, 1)
    );
    assert!(stats.file_size > 0);
    assert_eq!(stats.journal_size, 0);

    // Expired just now: not older than an hour, so kept.
    assert_eq!(engine.purge_expired(Duration::from_secs(3600)).unwrap(), 0);
    let mut calls = Vec::new();
    let purged = engine
        .purge_expired_with_progress(Duration::ZERO, &mut |done, due| calls.push((done, due)))
        .unwrap();
    assert_eq!((purged, calls), (1, vec![(1, 1)]));
    assert!(engine.session_info(old).unwrap().is_none());
    let messages: i64 = sql
        .query_one("SELECT COUNT(*) FROM chat_messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(messages, 0);
    assert!(engine.check(&mut |_, _| {}).unwrap().is_clean());
}

#[test]
fn forks_user_contexts_and_token_budgets() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let id = engine.create_session(Some("ana")).unwrap();
    engine.update_context(id, r#"{"k": 1}"#).unwrap();
    let ids = engine
        .add_messages(
            id,
            vec![
                NewMessage::user("books by Oxford").with_tokens(4),
                NewMessage::assistant("Found 15 books").with_tokens(4),
                NewMessage::user("only those after 1900").with_tokens(5),
                NewMessage::assistant("Found 6 books").with_tokens(4),
            ],
        )
        .unwrap();
    let fit = engine
        .messages_within(id, 12, TokenRule::default())
        .unwrap()
        .unwrap();
    assert_eq!(fit.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(engine
        .for_user("bob")
        .messages_within(id, 12, TokenRule::default())
        .unwrap()
        .is_none());

    let fork = engine.fork_session(id, 3).unwrap();
    let branched = engine.get_session(fork).unwrap().unwrap();
    assert_eq!(branched.messages.len(), 3);
    assert_eq!(branched.user_id.as_deref(), Some("ana"));
    assert_eq!(branched.context.as_ref().unwrap().as_str(), r#"{"k": 1}"#);
    assert_eq!(
        branched.metadata.as_ref().unwrap().as_str(),
        format!(r#"{{"forked_from": {{"session": "{id}", "at_seq": 3}}}}"#)
    );
    assert!(branched.messages.iter().all(|m| !ids.contains(&m.id)));
    assert_eq!(branched.messages[2].content, "only those after 1900");
    assert_eq!(branched.messages[0].tokens, Some(4));
    let past = engine.fork_session(id, 5).unwrap_err();
    assert!(
        matches!(past, Error::InvalidInput { what: "at_seq", .. }),
        "{past:?}"
    );
    let forks = engine.forks(id).unwrap().unwrap();
    assert_eq!(forks.iter().map(|f| f.session_id).collect::<Vec<_>>(), [fork]);
    assert!(engine.for_user("bob").forks(id).unwrap().is_none());
    assert!(engine.forks(Uuid::new_v4()).unwrap().is_none());
    engine.delete_session(fork).unwrap();
    assert!(engine.forks(id).unwrap().unwrap().is_empty());

    assert!(engine.user_context("ana").unwrap().is_none());
    engine.update_user_context("ana", r#"{"lang": "fr"}"#).unwrap();
    engine.update_user_context("ana", r#"{"pub": "Oxford"}"#).unwrap();
    assert_eq!(
        engine.user_context("ana").unwrap().unwrap().as_str(),
        r#"{"lang": "fr", "pub": "Oxford"}"#
    );
    assert!(engine.update_user_context("ana", "1").is_err());
    assert!(engine.check(&mut |_, _| {}).unwrap().is_clean());
}

#[test]
fn what_belongs_to_redb_files_is_refused() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let dir = tempfile::tempdir().unwrap();
    let backup = engine
        .backup_to(&dir.path().join("copy"), &mut |_, _| {})
        .unwrap_err();
    assert!(
        matches!(
            backup,
            Error::NotSupported {
                operation: "backup",
                ..
            }
        ),
        "{backup:?}"
    );
    assert!(backup.to_string().contains("pg_dump"), "{backup}");
    let compact = engine.compact(&mut |_, _| {}).unwrap_err();
    assert!(
        matches!(
            compact,
            Error::NotSupported {
                operation: "compact",
                ..
            }
        ),
        "{compact:?}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn idempotent_appends_are_done_once_across_connections() {
    let Some(schema) = Schema::fresh() else { return };
    let (one, two) = (schema.store(), schema.store());
    let id = one.create_session(None).unwrap();
    let turn = || {
        vec![
            NewMessage::user("books by Aldus"),
            NewMessage::assistant("Found 3 books"),
        ]
    };
    let first = one.add_messages_idempotent(id, "turn-1", None, turn()).unwrap();
    let retry = two.add_messages_idempotent(id, "turn-1", None, turn()).unwrap();
    assert_eq!(first, retry);
    assert_eq!(two.session_info(id).unwrap().unwrap().message_count, 2);
    // A remembered key answers even after the seq moved on.
    two.add_message(id, NewMessage::user("more")).unwrap();
    let again = one
        .add_messages_idempotent(id, "turn-1", Some(0), turn())
        .unwrap();
    assert_eq!(again, first);
    let bad = one.add_messages_idempotent(id, "", None, turn()).unwrap_err();
    assert!(
        matches!(
            bad,
            Error::InvalidInput {
                what: "idempotency_key",
                ..
            }
        ),
        "{bad:?}"
    );

    // Racing retries of one key from many threads: one append.
    let barrier = Arc::new(Barrier::new(8));
    let engines = Arc::new([one, two]);
    let answers: Vec<Vec<u64>> = (0..8)
        .map(|n| {
            let (barrier, engines) = (barrier.clone(), engines.clone());
            thread::spawn(move || {
                barrier.wait();
                engines[n % 2]
                    .add_messages_idempotent(id, "turn-2", None, vec![NewMessage::user("x")])
                    .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(engines[0].session_info(id).unwrap().unwrap().message_count, 4);
}

#[test]
fn many_threads_on_many_connections_keep_seqs_dense_and_lose_nothing() {
    let Some(schema) = Schema::fresh() else { return };
    const ENGINES: usize = 3;
    const THREADS: usize = 12;
    const EACH: usize = 25;
    let engines: Arc<Vec<SessionStore>> = Arc::new((0..ENGINES).map(|_| schema.store()).collect());
    let sessions: Arc<Vec<Uuid>> =
        Arc::new((0..3).map(|_| engines[0].create_session(None).unwrap()).collect());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (engines, sessions, barrier) = (engines.clone(), sessions.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let mut ids = Vec::new();
                for n in 0..EACH {
                    let session = sessions[(t + n) % sessions.len()];
                    let durability = if n % 2 == 0 {
                        Durability::Durable
                    } else {
                        Durability::Relaxed
                    };
                    let message = NewMessage::user(format!("{t}-{n}"));
                    ids.push(
                        engines[t % ENGINES]
                            .with_durability(durability)
                            .add_message(session, message)
                            .unwrap(),
                    );
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let mut contents = Vec::new();
    for &session in sessions.iter() {
        let got = seqs_and_contents(&engines[1], session);
        for (expected, (seq, _)) in got.iter().enumerate() {
            assert_eq!(*seq, expected as u64);
        }
        contents.extend(got.into_iter().map(|(_, content)| content));
    }
    assert_eq!(contents.len(), THREADS * EACH);
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), THREADS * EACH);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), THREADS * EACH);
    assert!(engines[2].check(&mut |_, _| {}).unwrap().is_clean());
}

#[test]
fn conditional_appends_from_many_connections_conflict_and_one_wins() {
    let Some(schema) = Schema::fresh() else { return };
    let engines: Arc<Vec<SessionStore>> = Arc::new((0..4).map(|_| schema.store()).collect());
    let id = engines[0].create_session(None).unwrap();
    for round in 0..10u64 {
        let barrier = Arc::new(Barrier::new(4));
        let results: Vec<_> = (0..4)
            .map(|t| {
                let (engines, barrier) = (engines.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    engines[t].add_message_if(id, round, NewMessage::user(format!("{t}")))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        for result in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(result, Error::SeqConflict { expected, actual, .. } if *expected == round && *actual == round + 1),
                "{result:?}"
            );
        }
    }
    assert_eq!(engines[0].session_info(id).unwrap().unwrap().message_count, 10);
}

#[test]
fn a_connection_killed_mid_transaction_is_a_clear_error_and_a_safe_retry() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = Arc::new(schema.store());
    let id = engine.create_session(None).unwrap();
    engine.add_message(id, NewMessage::user("before")).unwrap();

    // Hold the session's row, so that the append waits inside its
    // transaction, then kill its connection from another one.
    let mut holder = schema.sql();
    let mut lock = holder.transaction().unwrap();
    lock.execute(
        "SELECT 1 FROM chat_sessions WHERE session_id = $1 FOR UPDATE",
        &[&id],
    )
    .unwrap();
    let appending = {
        let engine = engine.clone();
        thread::spawn(move || engine.add_messages_idempotent(id, "k", None, vec![NewMessage::user("during")]))
    };
    let mut killer = schema.sql();
    let mut killed = false;
    for _ in 0..500 {
        let row = killer
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
                &[&schema.name],
            )
            .unwrap();
        if row.get::<_, i64>(0) > 0 {
            killed = true;
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(killed, "the append never waited on the lock");
    lock.rollback().unwrap();
    let error = appending.join().unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unavailable {
                engine: "postgres",
                ..
            }
        ),
        "{error:?}"
    );
    // The client sees either the server's notice (SQLSTATE 57P01) or the
    // closed socket first: the message is the same either way.
    assert!(
        error.to_string().contains("connection to the server was lost"),
        "{error}"
    );
    assert!(error.to_string().contains("retrying is safe"), "{error}");
    // Nothing of it was written; the retry appends once, at the next seq.
    assert_eq!(seqs_and_contents(&engine, id), [(0, "before".to_owned())]);
    engine
        .add_messages_idempotent(id, "k", None, vec![NewMessage::user("during")])
        .unwrap();
    engine
        .add_messages_idempotent(id, "k", None, vec![NewMessage::user("during")])
        .unwrap();
    assert_eq!(
        seqs_and_contents(&engine, id),
        [(0, "before".to_owned()), (1, "during".to_owned())]
    );
}

#[test]
fn idle_connections_the_server_closed_are_replaced() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let id = engine.create_session(None).unwrap();
    let mut sql = schema.sql();
    let killed: i64 = sql
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid() AND state = 'idle'",
            &[&schema.name],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    thread::sleep(Duration::from_millis(100));
    engine.add_message(id, NewMessage::user("after")).unwrap();
    assert_eq!(seqs_and_contents(&engine, id), [(0, "after".to_owned())]);
}

/// Set in the processes `many_processes_append_to_the_same_sessions`
/// starts: the schema's URL and the sessions, `URL|ID,ID,...`.
const FLEET: &str = "SESSIONSTORE_TEST_FLEET";
const FLEET_PROCESSES: usize = 4;
const FLEET_THREADS: usize = 4;
const FLEET_EACH: usize = 20;

/// One process of the fleet: appends from its threads, idempotently (each
/// append retried once under its key, as a client that lost the answer
/// does). Does nothing in a plain test run.
#[test]
fn fleet_process() {
    let Ok(fleet) = std::env::var(FLEET) else { return };
    let (url, ids) = fleet.split_once('|').unwrap();
    let sessions: Vec<Uuid> = ids.split(',').map(|id| id.parse().unwrap()).collect();
    let engine = Arc::new(SessionStore::open(url).unwrap());
    let process = std::process::id();
    let threads: Vec<_> = (0..FLEET_THREADS)
        .map(|t| {
            let (engine, sessions) = (engine.clone(), sessions.clone());
            thread::spawn(move || {
                for n in 0..FLEET_EACH {
                    let session = sessions[(t + n) % sessions.len()];
                    let key = format!("{process}-{t}-{n}");
                    let turn = || vec![NewMessage::user(key.clone()), NewMessage::assistant(key.clone())];
                    let first = engine
                        .add_messages_idempotent(session, &key, None, turn())
                        .unwrap();
                    let again = engine
                        .add_messages_idempotent(session, &key, None, turn())
                        .unwrap();
                    assert_eq!(first, again);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn many_processes_append_to_the_same_sessions() {
    let Some(schema) = Schema::fresh() else { return };
    let engine = schema.store();
    let sessions: Vec<Uuid> = (0..3).map(|_| engine.create_session(None).unwrap()).collect();
    let ids: Vec<String> = sessions.iter().map(Uuid::to_string).collect();
    let fleet = format!("{}|{}", schema.url, ids.join(","));
    let processes: Vec<_> = (0..FLEET_PROCESSES)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "fleet_process", "--test-threads=1"])
                .env(FLEET, &fleet)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for process in processes {
        let output = process.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let mut turns = 0;
    for &session in &sessions {
        let messages = engine.get_session(session).unwrap().unwrap().messages;
        for (expected, pair) in messages.chunks(2).enumerate() {
            assert_eq!(
                (pair[0].seq, pair[1].seq),
                (2 * expected as u64, 2 * expected as u64 + 1)
            );
            assert_eq!(pair[0].content, pair[1].content, "a turn was split");
        }
        turns += messages.len() / 2;
    }
    assert_eq!(turns, FLEET_PROCESSES * FLEET_THREADS * FLEET_EACH);
    assert!(engine.check(&mut |_, _| {}).unwrap().is_clean());
}

#[test]
fn opens_that_may_not_create_and_read_only_opens_write_nothing() {
    let Some(schema) = Schema::fresh() else { return };
    let existing = StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    };
    let refused = SessionStore::open_with(&schema.url, existing.clone()).unwrap_err();
    assert!(matches!(refused, Error::NoStore { .. }), "{refused:?}");
    let read_only = SessionStore::open_read_only(&schema.url).unwrap_err();
    assert!(matches!(read_only, Error::NoStore { .. }), "{read_only:?}");
    let tables: i64 = schema
        .sql()
        .query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a refused open created tables");

    let id = schema.store().create_session(Some("ana")).unwrap();
    let store = SessionStore::open_with(&schema.url, existing).unwrap();
    assert_eq!(store.path().to_str().unwrap(), schema.url);
    assert!(store.get_session(id).unwrap().is_some());
    let reader = SessionStore::open_read_only(&schema.url).unwrap();
    assert!(reader.session_info(id).unwrap().is_some());
    let write = reader.add_message(id, NewMessage::user("x")).unwrap_err();
    assert!(matches!(write, Error::ReadOnly { .. }), "{write:?}");
    assert!(reader.create_session(None).unwrap_err().is_refusal());
    assert_eq!(store.session_info(id).unwrap().unwrap().message_count, 0);
}

/// The async API runs each call on tokio's blocking pool: the blocking
/// PostgreSQL client works there (it would refuse to run on a runtime's
/// own threads).
#[cfg(feature = "tokio")]
#[test]
fn the_async_api_works_on_postgresql() {
    let Some(schema) = Schema::fresh() else { return };
    let store = sessionstore::AsyncSessionStore::new(schema.store());
    let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    runtime.block_on(async {
        let id = store.create_session(Some("ana".into())).await.unwrap();
        store.add_message(id, NewMessage::user("hello")).await.unwrap();
        let session = store.get_session(id).await.unwrap().unwrap();
        assert_eq!(session.messages[0].content, "hello");
    });
}
