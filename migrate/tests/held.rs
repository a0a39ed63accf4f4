//! Issue 17 item 3: `export` and `verify` of a store another process holds
//! (the chatbot) go through its local socket and give what they give on
//! the free file, byte for byte.

#[path = "../../tests/holder/mod.rs"]
mod holder;

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use common::{count, files_in, migrate, V1};
use holder::Holder;

#[test]
#[ignore = "child process of the held-store tests; runs only with SESSIONSTORE_HOLDER_STORE set"]
fn holder_child() {
    holder::child();
}

/// Runs `sessionstore-migrate ARGS` in `folder`.
fn run_in(folder: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessionstore-migrate"))
        .current_dir(folder)
        .args(args)
        .output()
        .unwrap()
}

/// Exit code, stdout and stderr, but for the line of time (and speed) and
/// memory export and verify end with, which no two runs share.
fn outcome(output: &Output) -> (Option<i32>, String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !(line.ends_with(" MiB") && line.contains(" s, ") && line.contains("peak memory ")))
        .map(|line| format!("{line}\n"))
        .collect();
    (
        output.status.code(),
        stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn export_and_verify_of_a_held_store_give_what_the_free_file_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (held, free) = (dir.path().join("held"), dir.path().join("free"));
    std::fs::create_dir(&held).unwrap();
    std::fs::create_dir(&free).unwrap();
    // A converted store: its stored schema and rows of other tables are
    // part of what export writes back.
    let imported = migrate(&[
        OsStr::new("import"),
        OsStr::new(V1),
        held.join("s.redb").as_os_str(),
    ]);
    assert!(imported.status.success(), "{imported:?}");
    for name in ["s.redb", "s.redb-journal"] {
        std::fs::copy(held.join(name), free.join(name)).unwrap();
    }
    let holder = Holder::start(&held.join("s.redb"), false, true);
    let exported = run_in(&held, &["export", "s.redb", "out.db", "--quiet"]);
    let verified = run_in(&held, &["verify", "out.db", "s.redb"]);
    let left_beside = files_in(&held);
    holder.stop();
    assert_eq!(exported.status.code(), Some(0), "{exported:?}");
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    assert_eq!(
        outcome(&exported),
        outcome(&run_in(&free, &["export", "s.redb", "out.db", "--quiet"]))
    );
    assert_eq!(
        outcome(&verified),
        outcome(&run_in(&free, &["verify", "out.db", "s.redb"]))
    );
    assert_eq!(
        std::fs::read(held.join("out.db")).unwrap(),
        std::fs::read(free.join("out.db")).unwrap(),
        "the exports differ"
    );
    let verified = run_in(dir.path(), &["verify", "held/out.db", V1]);
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    // The holder's copy for the export is gone.
    assert_eq!(left_beside, ["out.db", "s.redb", "s.redb-journal", "s.redb.sock"]);
}

#[test]
fn export_of_a_held_store_runs_while_the_holder_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    sessionstore::SessionStore::open(&path).unwrap();
    let holder = Holder::start(&path, true, true);
    let mut before = Vec::new();
    while before.len() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        before.extend(holder.printed());
    }
    let exported = run_in(dir.path(), &["export", "s.redb", "out.db", "--quiet"]);
    let verified = run_in(dir.path(), &["verify", "out.db", "out.db"]);
    let lines = holder.stop();
    assert_eq!(exported.status.code(), Some(0), "{exported:?}");
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    let acked_before = holder::acknowledged(&before);
    let acked_after = holder::acknowledged(&lines);
    assert!(!acked_after.is_empty(), "the holder wrote on");
    // The export holds at least what was acknowledged before it started.
    let exported_messages = count(&dir.path().join("out.db"), "SELECT count(*) FROM chat_messages");
    assert!(exported_messages as usize >= acked_before.len());
    // Nothing the holder acknowledged is lost.
    let store = sessionstore::SessionStore::open(&path).unwrap();
    holder::assert_kept(&store, &[acked_before, acked_after].concat());
}

#[test]
fn export_of_a_store_held_without_a_socket_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    sessionstore::SessionStore::open(&path).unwrap();
    let holder = Holder::start(&path, false, false);
    let exported = run_in(dir.path(), &["export", "s.redb", "out.db", "--quiet"]);
    holder.stop();
    assert_eq!(
        outcome(&exported),
        (
            Some(1),
            String::new(),
            format!(
                "error: store s.redb: s.redb is in use by another process, which serves no socket at {}: \
                 stop it, or open the store with the socket on\n",
                sessionstore::SessionStore::socket_path(&path).display()
            )
        )
    );
    assert_eq!(files_in(dir.path()), ["s.redb", "s.redb-journal"]);
}
