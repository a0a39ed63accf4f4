//! `verify` finds planted differences, names them, and exits 1; equal
//! files exit 0.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{broken_copy, migrate, UPGRADED};
use sessionstore_migrate::{import, ImportOptions};

/// Runs `verify A B` with the binary: exit status and standard output.
fn verify_files(a: &Path, b: &Path) -> (Option<i32>, String) {
    let output = migrate(&[OsStr::new("verify"), a.as_os_str(), b.as_os_str()]);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn imported_fixture(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("sessions.redb");
    import(Path::new(UPGRADED), &store, &ImportOptions::default()).unwrap();
    store
}

#[test]
fn equal_files_verify_equal_in_every_mix() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported_fixture(dir.path());
    let copy = broken_copy(UPGRADED, dir.path(), "copy.db", "");
    for (a, b) in [
        (Path::new(UPGRADED), store.as_path()),
        (store.as_path(), copy.as_path()),
        (Path::new(UPGRADED), copy.as_path()),
    ] {
        let (code, stdout) = verify_files(a, b);
        assert_eq!(code, Some(0), "{stdout}");
        assert!(stdout.starts_with("equal:"), "{stdout}");
    }
}

#[test]
fn one_changed_byte_of_content_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported_fixture(dir.path());
    let changed = broken_copy(
        UPGRADED,
        dir.path(),
        "changed.db",
        "UPDATE chat_messages SET content = substr(content, 1, 10) || 'X' || substr(content, 12) WHERE id = 10",
    );
    let (code, stdout) = verify_files(&store, &changed);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("table chat_messages, row id = 10, column content: A has"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "only that difference: {stdout}");
}

#[test]
fn one_changed_timestamp_form_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported_fixture(dir.path());
    // Same instant, the aware form instead of the naive one.
    let changed = broken_copy(
        UPGRADED,
        dir.path(),
        "aware.db",
        "UPDATE chat_messages SET timestamp = timestamp || '+00:00' WHERE id = 1",
    );
    let (code, stdout) = verify_files(&store, &changed);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("table chat_messages, row id = 1, column timestamp"),
        "{stdout}"
    );
    assert!(stdout.contains("+00:00"), "{stdout}");
}

#[test]
fn one_missing_extra_row_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported_fixture(dir.path());
    let changed = broken_copy(
        UPGRADED,
        dir.path(),
        "fewer.db",
        "DELETE FROM user_goals WHERE id = 2",
    );
    let (code, stdout) = verify_files(&store, &changed);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("table user_goals, row id = 2: only in A"),
        "{stdout}"
    );
}

#[test]
fn a_changed_high_water_mark_and_schema_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported_fixture(dir.path());
    let changed = broken_copy(
        UPGRADED,
        dir.path(),
        "sequence.db",
        "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'chat_messages'; DROP INDEX idx_feedback_sync;",
    );
    let (code, stdout) = verify_files(&store, &changed);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("schema: index idx_feedback_sync: only in A"),
        "{stdout}"
    );
    assert!(
        stdout.contains("table sqlite_sequence, row name = \"chat_messages\", column seq: A has 433"),
        "{stdout}"
    );
}
