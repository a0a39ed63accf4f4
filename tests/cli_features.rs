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

/// `chat-search` prints one line a hit, best first: session, seq, score,
/// snippet; `--limit` bounds them; nothing found says so.
#[test]
fn chat_search_prints_a_line_a_hit_best_first() {
    let (_dir, db, id) = scene();
    let store = SessionStore::open(&db).unwrap();
    store
        .add_message(id, NewMessage::user("books by Oxford University Press"))
        .unwrap();
    store
        .add_message(
            id,
            NewMessage::assistant("Found 15 books by Oxford; Oxford again"),
        )
        .unwrap();
    drop(store);
    let output = cli(&db)
        .args(["chat-search", "--user-id", "ana", "oxford"])
        .assert()
        .success();
    let text = String::from_utf8(output.get_output().stdout.clone()).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The reply holds the term twice: it ranks first.
    assert_eq!(&lines[0][..2], [id.to_string().as_str(), "5"], "{text}");
    assert_eq!(&lines[1][..2], [id.to_string().as_str(), "4"], "{text}");
    let scores: Vec<f64> = lines.iter().map(|l| l[2].parse().unwrap()).collect();
    assert!(scores[0] > scores[1] && scores[1] > 0.0, "{text}");
    assert_eq!(lines[1][3..].join(" "), "books by Oxford University Press");
    cli(&db)
        .args([
            "chat-search",
            "--user-id",
            "ana",
            "oxford",
            "books",
            "--limit",
            "1",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("Oxford again").and(predicate::str::contains("University").not()));
    cli(&db)
        .args(["chat-search", "--user-id", "bob", "oxford"])
        .assert()
        .success()
        .stdout("No messages found for user bob\n");
}

#[test]
fn chat_search_without_a_word_or_with_a_limit_of_0_is_refused() {
    let (_dir, db, _id) = scene();
    cli(&db)
        .args(["chat-search", "--user-id", "ana", "?!"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("invalid query"));
    cli(&db)
        .args(["chat-search", "--user-id", "ana", "q0", "--limit", "0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid limit"));
    cli(&db)
        .args(["chat-search", "--user-id", "ana"])
        .assert()
        .code(2);
}
