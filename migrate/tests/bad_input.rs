//! Hostile or broken input: an error naming table, row and reason, exit
//! status 1, and nothing left behind (no DEST, no temporary file).

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{broken_copy, files_in, migrate, UPGRADED, V1};
use sessionstore_migrate::{export, import, verify, ExportOptions, ImportOptions};

/// Imports `source` with the binary and checks the refusal.
fn refused(source: &Path, expected: &[&str]) {
    let dir = source.parent().unwrap();
    let before = files_in(dir);
    let dest = dir.join("out.redb");
    let output = migrate(&[OsStr::new("import"), source.as_os_str(), dest.as_os_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for fragment in expected {
        assert!(stderr.contains(fragment), "{fragment:?} not in {stderr}");
    }
    assert_eq!(files_in(dir), before, "no output and no temporary file: {stderr}");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "this is a text file, long enough to hold a header\n").unwrap();
    refused(&text, &["notes.db", "not a SQLite database"]);
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    refused(&empty, &["empty.db", "not a SQLite database"]);
    refused(&dir.path().join("missing.db"), &["missing.db", "no such file"]);
}

#[test]
fn a_damaged_file_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_copy(V1, dir.path(), "damaged.db", "");
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096 * 40;
    bytes[page..page + 64].fill(0xff);
    std::fs::write(&path, bytes).unwrap();
    refused(&path, &["damaged.db", "damaged SQLite database", "page 40"]);
}

#[test]
fn a_session_id_that_is_not_a_uuid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, new_id) in [("words.db", "'not-a-uuid'"), ("upper.db", "upper(session_id)")] {
        let sql = format!(
            "UPDATE chat_messages SET session_id = (SELECT {new_id} FROM chat_sessions WHERE rowid = 1) \
               WHERE session_id = (SELECT session_id FROM chat_sessions WHERE rowid = 1);
             UPDATE chat_sessions SET session_id = {new_id} WHERE rowid = 1;"
        );
        let path = broken_copy(V1, dir.path(), name, &sql);
        refused(
            &path,
            &[
                "table chat_sessions, row session_id",
                "(rowid 1)",
                "not a lowercase hyphenated UUID",
            ],
        );
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn a_message_whose_session_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "orphan.db",
        "UPDATE chat_messages SET session_id = '00000000-0000-4000-8000-000000000000' WHERE id = 5",
    );
    refused(
        &path,
        &[
            "table chat_messages, row id 5",
            "00000000-0000-4000-8000-000000000000",
            "is not in chat_sessions",
        ],
    );
}

#[test]
fn carry_invalid_rows_keeps_orphans_and_bad_sessions_and_gives_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_copy(
        UPGRADED,
        dir.path(),
        "odd.db",
        "UPDATE chat_messages SET session_id = '00000000-0000-4000-8000-000000000000' WHERE id = 5;
         UPDATE chat_messages SET session_id = 'legacy-7' \
           WHERE session_id = (SELECT session_id FROM chat_sessions WHERE rowid = 2);
         UPDATE chat_sessions SET session_id = 'legacy-7' WHERE rowid = 2;",
    );
    let store = dir.path().join("odd.redb");
    let options = ImportOptions {
        carry_invalid_rows: true,
        ..ImportOptions::default()
    };
    let report = import(&path, &store, &options).unwrap();
    let legacy_messages = common::count(
        &path,
        "SELECT COUNT(*) FROM chat_messages WHERE session_id = 'legacy-7'",
    );
    assert_eq!(
        report.carried as i64,
        2 + legacy_messages,
        "{:?}",
        report.carried_examples
    );
    assert!(
        report.carried_examples[0].contains("table chat_messages"),
        "{:?}",
        report.carried_examples
    );
    let all = common::count(&path, "SELECT COUNT(*) FROM chat_messages");
    assert_eq!(report.messages as i64, all - 1 - legacy_messages);

    let back = dir.path().join("back.db");
    export(&store, &back, &ExportOptions::default()).unwrap();
    assert_eq!(common::dump(&back), common::dump(&path));
    assert!(verify(&path, &store, 5).unwrap().is_empty());
}

#[test]
fn a_json_column_that_does_not_parse_or_is_not_an_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "json.db",
        "UPDATE chat_messages SET candidate_set = '{\"total_count\": 3,' WHERE id = 2",
    );
    refused(
        &path,
        &["table chat_messages, row id 2", "candidate_set", "not valid JSON"],
    );
    std::fs::remove_file(path).unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "array.db",
        "UPDATE chat_sessions SET context = '[1, 2]' WHERE rowid = 3",
    );
    refused(
        &path,
        &[
            "table chat_sessions, row session_id",
            "(rowid 3)",
            "context",
            "not a JSON object",
        ],
    );
}

#[test]
fn a_timestamp_that_is_not_iso_8601_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "ts.db",
        "UPDATE chat_messages SET timestamp = '13/01/2026 09:41' WHERE id = 7",
    );
    refused(
        &path,
        &[
            "table chat_messages, row id 7",
            "timestamp",
            "\"13/01/2026 09:41\" is not an ISO 8601 timestamp",
        ],
    );
    std::fs::remove_file(path).unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "created.db",
        "UPDATE chat_sessions SET created_at = 'yesterday' WHERE rowid = 4",
    );
    refused(
        &path,
        &[
            "table chat_sessions",
            "(rowid 4)",
            "created_at",
            "not an ISO 8601 timestamp",
        ],
    );
}

#[test]
fn a_role_outside_user_assistant_system_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "role.db",
        "PRAGMA ignore_check_constraints = ON; UPDATE chat_messages SET role = 'robot' WHERE id = 9;",
    );
    refused(
        &path,
        &[
            "table chat_messages, row id 9",
            "role",
            "\"robot\" is not one of user, assistant, system",
        ],
    );
}

#[test]
fn duplicate_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Tables without the uniqueness the old schema declares.
    let path = broken_copy(
        V1,
        dir.path(),
        "sessions.db",
        "CREATE TABLE copy AS SELECT * FROM chat_sessions; DROP TABLE chat_sessions;
         ALTER TABLE copy RENAME TO chat_sessions;
         INSERT INTO chat_sessions SELECT * FROM chat_sessions WHERE rowid = 1;",
    );
    refused(
        &path,
        &[
            "table chat_sessions, row session_id",
            "duplicate session_id (rowid 1 has it too)",
        ],
    );
    std::fs::remove_file(path).unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "messages.db",
        "CREATE TABLE copy AS SELECT * FROM chat_messages; DROP TABLE chat_messages;
         ALTER TABLE copy RENAME TO chat_messages;
         INSERT INTO chat_messages SELECT * FROM chat_messages WHERE id = 3;",
    );
    refused(&path, &["table chat_messages, row id 3", "duplicate id"]);
}

#[test]
fn a_view_in_place_of_a_table_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_copy(
        V1,
        dir.path(),
        "view.db",
        "ALTER TABLE chat_messages RENAME TO hidden;
         CREATE VIEW chat_messages AS SELECT * FROM hidden;",
    );
    refused(
        &path,
        &["table chat_messages", "is a view, not an ordinary table"],
    );
}

#[test]
fn an_existing_destination_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sessions.redb");
    std::fs::write(&dest, "precious").unwrap();
    let args = [OsStr::new("import"), OsStr::new(V1), dest.as_os_str()];
    let output = migrate(&args);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exists already; pass --force"));
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");

    let forced = migrate(&[&args[..], &[OsStr::new("--force"), OsStr::new("--quiet")]].concat());
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(String::from_utf8_lossy(&forced.stdout).contains("imported 30 sessions, 369 messages"));
    assert_eq!(
        sessionstore::SessionStore::open(&dest)
            .unwrap()
            .stats()
            .unwrap()
            .messages,
        369
    );
}

#[test]
fn export_of_a_sqlite_file_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = broken_copy(V1, dir.path(), "sessions.db", "");
    let before = files_in(dir.path());
    let dest = dir.path().join("out.db");
    let output = migrate(&[OsStr::new("export"), source.as_os_str(), dest.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sessions.db is a SQLite file, not a store file"),
        "{stderr}"
    );
    assert_eq!(
        files_in(dir.path()),
        before,
        "nothing written, not even beside the source"
    );
}
