//! Only a creating open makes a store (`StoreOptions::create_if_missing`,
//! on by default): an open of an existing store refuses a missing, empty
//! or all-zero file with `Error::NoStore` and changes no file; the CLI
//! opens that way for every command but `chat-init`.

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use sessionstore::{Error, SessionStore, StoreOptions};

fn existing() -> StoreOptions {
    StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    }
}

/// Every file in `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// The files that are no store: empty, zeros, and the header redb writes
/// first with zeros where its magic number goes (a creation cut short).
fn no_stores() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut header = vec![0u8; 4096];
    header[9..320].fill(0x5a);
    vec![
        ("empty", Vec::new(), "the file is empty"),
        ("zeros", vec![0; 1 << 20], "the file holds nothing but zeros"),
        ("header", header, "the file holds nothing but zeros"),
    ]
}

#[test]
fn opening_an_existing_store_refuses_a_missing_empty_or_all_zero_file_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("folder/s.redb");
    let error = SessionStore::open_with(&missing, existing()).unwrap_err();
    assert!(
        matches!(&error, Error::NoStore { path, .. } if path == &missing),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("{}: no store there: no such file", missing.display())
    );
    assert!(!dir.path().join("folder").exists(), "a folder was created");

    for (name, bytes, why) in no_stores() {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let before = files(dir.path());
        let error = SessionStore::open_with(&path, existing()).unwrap_err();
        assert!(
            matches!(&error, Error::NoStore { path: p, .. } if p == &path),
            "{name}: {error:?}"
        );
        assert!(error.to_string().contains(why), "{name}: {error}");
        assert_eq!(files(dir.path()), before, "{name}: a file was created or changed");
    }
}

#[test]
fn opening_an_existing_store_opens_it_and_a_creating_open_still_creates() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, _) in no_stores() {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let store = SessionStore::open(&path).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        drop(store);
        let store = SessionStore::open_with(&path, existing()).unwrap();
        assert!(store.get_session(id).unwrap().is_some(), "{name}");
    }
}

/// The CLI run on the store at `path` with `args`.
fn sessionstore(path: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    cargo_bin_cmd!("sessionstore")
        .env_remove("SESSIONSTORE_DB")
        .arg("--db")
        .arg(path)
        .args(args)
        .assert()
}

#[test]
fn cli_commands_but_chat_init_refuse_an_empty_or_all_zero_file_and_leave_it_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, why) in no_stores() {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let backup = dir.path().join("backup.redb");
        let commands: [&[&str]; 5] = [
            &["stats"],
            &["check"],
            &["compact"],
            &["chat-sessions", "--user-id", "ana"],
            &["backup", backup.to_str().unwrap()],
        ];
        for args in commands {
            let before = files(dir.path());
            sessionstore(&path, args).code(1).stderr(
                predicate::str::starts_with(format!("error: no store at {}: {why}", path.display()))
                    .and(predicate::str::contains("sessionstore chat-init")),
            );
            assert_eq!(
                files(dir.path()),
                before,
                "{name} {args:?}: a file was created or changed"
            );
        }
        // chat-init makes a store of it.
        sessionstore(&path, &["chat-init"]).success();
        sessionstore(&path, &["stats"])
            .success()
            .stdout(predicate::str::starts_with("Active sessions: 1\n"));
    }
}
