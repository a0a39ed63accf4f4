//! The `sessionstore` command on a PostgreSQL database: `--db` and
//! `SESSIONSTORE_DB` take a `postgres://` URL, as a file path.
//! Run with `.ci/postgres run -- cargo test --features postgres --test postgres_cli`.
#![cfg(all(feature = "postgres", feature = "cli"))]

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

mod postgres_support;
use postgres_support::Schema;

fn sessionstore() -> Command {
    Command::cargo_bin("sessionstore").unwrap()
}

#[test]
fn the_command_line_works_on_a_database_url() {
    let Some(schema) = Schema::fresh() else { return };
    // Every command but chat-init needs the store to exist.
    sessionstore()
        .args(["--db", &schema.url, "stats"])
        .assert()
        .failure()
        .stderr(contains("no sessionstore schema"));
    let created = sessionstore()
        .args(["--db", &schema.url, "chat-init", "--user-id", "ana"])
        .assert()
        .success();
    let out = String::from_utf8(created.get_output().stdout.clone()).unwrap();
    let id = out
        .lines()
        .find_map(|line| line.strip_prefix("Created session: "))
        .expect("a session id")
        .to_owned();
    sessionstore()
        .env("SESSIONSTORE_DB", &schema.url)
        .args(["query", "--session-id", &id, "books by Oxford"])
        .assert()
        .success();
    sessionstore()
        .env("SESSIONSTORE_DB", &schema.url)
        .args(["chat-history", &id])
        .assert()
        .success()
        .stdout(contains("books by Oxford"));
    sessionstore()
        .env("SESSIONSTORE_DB", &schema.url)
        .arg("stats")
        .assert()
        .success()
        .stdout(contains("Active sessions: 1").and(contains("Messages: 1")));
    // The old guide's monitoring SQL sees the same.
    let messages: i64 = schema
        .sql()
        .query_one("SELECT COUNT(*) FROM chat_messages;", &[])
        .unwrap()
        .get(0);
    assert_eq!(messages, 1);
    sessionstore()
        .env("SESSIONSTORE_DB", &schema.url)
        .arg("compact")
        .assert()
        .failure()
        .stderr(contains("not supported by the PostgreSQL engine"));
}
