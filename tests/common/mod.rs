//! Helpers shared by the `store_*` integration tests.
//!
//! Each test binary uses a different subset of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionstore::{Error, Message, SessionInfo, SessionStore, Timestamp, TimestampForm, Uuid};

/// A store in a fresh temporary folder (kept alive by the returned guard).
pub fn temp_store() -> (tempfile::TempDir, SessionStore) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SessionStore::open(store_path(&dir)).expect("open a new store");
    (dir, store)
}

/// The store file's path inside `dir`.
pub fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data/chat/sessions.redb")
}

/// Asserts that `check()` finds every rule of the data model kept.
pub fn assert_clean(store: &SessionStore) {
    let report = store.check(&mut |_, _| {}).expect("check runs");
    assert!(report.is_clean(), "check found problems: {:#?}", report.problems);
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
