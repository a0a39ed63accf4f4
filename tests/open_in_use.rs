//! A second open of a store file this process holds says so
//! (`Error::AlreadyOpen`), whatever path names the file; another process
//! holding it is `Error::InUse` (tests/store_files.rs and tests/cli.rs).

use std::path::Path;

use assert_cmd::cargo::cargo_bin_cmd;
use sessionstore::{Error, NewMessage, SessionStore, StoreOptions};

/// `sessionstore stats` on `path`, run in a child process.
fn stats_in_a_child(path: &Path) -> assert_cmd::assert::Assert {
    cargo_bin_cmd!("sessionstore")
        .env_remove("SESSIONSTORE_DB")
        .arg("--db")
        .arg(path)
        .arg("stats")
        .assert()
}

fn assert_already_open(path: &Path) {
    let error = SessionStore::open(path).unwrap_err();
    assert!(
        matches!(&error, Error::AlreadyOpen { path: p } if p == path),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{} is already open in this process; use a clone of the SessionStore that holds it",
            path.display()
        )
    );
}

#[test]
fn a_second_open_in_this_process_says_the_file_is_open_here_by_any_of_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // No socket: a child process cannot reach the store through it.
    let no_socket = StoreOptions {
        serve_socket: false,
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(&path, no_socket).unwrap();
    let id = store.create_session(None).unwrap();
    store.add_message(id, NewMessage::user("hello")).unwrap();
    assert_already_open(&path);
    // Another spelling, a symbolic link, a hard link.
    assert_already_open(&dir.path().join(".").join("s.redb"));
    #[cfg(unix)]
    {
        let symlink = dir.path().join("link.redb");
        std::os::unix::fs::symlink(&path, &symlink).unwrap();
        assert_already_open(&symlink);
        let hard = dir.path().join("hard.redb");
        std::fs::hard_link(&path, &hard).unwrap();
        assert_already_open(&hard);
        std::fs::remove_file(&hard).unwrap();
    }
    // A compaction renames a new file onto the path: still this process's.
    store.compact(&mut |_, _| {}).unwrap();
    assert_already_open(&path);
    // Another process is told it is in use by another process.
    stats_in_a_child(&path).code(1).stderr(format!(
        "error: {} is in use by another process, which serves no socket at {}: stop it, or open \
         the store with the socket on\n",
        path.display(),
        SessionStore::socket_path(&path).display()
    ));
    // Closed: opened again, here and in the child.
    drop(store);
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 1);
    drop(store);
    stats_in_a_child(&path).success();
}
