//! The `sessionstore` commands of issue 21: `chat-fork` and `chat-search`.

use assert_cmd::cargo::cargo_bin_cmd;
use assert_cmd::Command;
use predicates::prelude::*;
use sessionstore::{NewMessage, SessionStore, Uuid};
use tempfile::TempDir;

/// A store with one session of `ana` holding `q0`, `a1`, `q2`, `a3`.
fn scene() -> (TempDir, std::path::PathBuf, Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.redb");
    let store = SessionStore::open(&db).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    for (n, text) in ["q0", "a1", "q2", "a3"].into_iter().enumerate() {
        let message = if n % 2 == 0 {
            NewMessage::user(text)
        } else {
            NewMessage::assistant(text)
        };
        store.add_message(id, message).unwrap();
    }
    (dir, db, id)
}

fn cli(db: &std::path::Path) -> Command {
    let mut cmd = cargo_bin_cmd!("sessionstore");
    cmd.env_remove("SESSIONSTORE_DB").arg("--db").arg(db);
    cmd
}

#[test]
fn chat_fork_prints_the_new_session_which_holds_the_messages_before_at() {
    let (_dir, db, id) = scene();
    let output = cli(&db)
        .args(["chat-fork", &id.to_string(), "--at", "3"])
        .assert()
        .success();
    let text = String::from_utf8(output.get_output().stdout.clone()).unwrap();
    let fork: Uuid = text
        .strip_prefix("Created session: ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("one line: {text:?}"))
        .parse()
        .unwrap();
    let store = SessionStore::open(&db).unwrap();
    let session = store.get_session(fork).unwrap().unwrap();
    let contents: Vec<_> = session.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["q0", "a1", "q2"]);
    assert_eq!(store.forks(id).unwrap().unwrap()[0].session_id, fork);
}

#[test]
fn chat_fork_past_the_end_or_of_an_unknown_session_is_refused_and_writes_nothing() {
    let (_dir, db, id) = scene();
    cli(&db)
        .args(["chat-fork", &id.to_string(), "--at", "5"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("at_seq").and(predicate::str::contains("holds 4 messages")));
    let unknown = Uuid::new_v4();
    cli(&db)
        .args(["chat-fork", &unknown.to_string(), "--at", "0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(unknown.to_string()));
    cli(&db).args(["chat-fork", &id.to_string()]).assert().code(2);
    let store = SessionStore::open(&db).unwrap();
    assert_eq!(store.list_user_sessions("ana", true).unwrap(), [id]);
}
