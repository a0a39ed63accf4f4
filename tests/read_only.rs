//! Issue 16, item 7: a store whose files the process may only read can be
//! read (`StoreOptions::read_only`, `SessionStore::open_read_only`), closed
//! cleanly or crashed (its journal applied in memory), and nothing is
//! written to any file; every write is refused. The CLI's read commands
//! fall back to it when the files may not be written.

mod common;

use sessionstore::redb_engine::{FileRole, FileStorage, RedbOptions, StorageBackend, StorageFactory};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::disk::{Files, SimDisk};
use common::{assert_clean, contents, messages_in_database};
use sessionstore::{Error, NewMessage, SessionStore, StoreOptions, Uuid};

const STORE: &str = "/sim/read-only.redb";

/// Storage that refuses to open any file for writing, as a file of mode
/// 0444 (or a read-only mount) refuses a process that is not root; files
/// open to be read through `inner`.
struct MayOnlyRead<F>(F);

impl<F: StorageFactory> StorageFactory for MayOnlyRead<F> {
    fn open(&self, path: &Path, _role: FileRole) -> io::Result<Box<dyn StorageBackend>> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} may only be read", path.display()),
        ))
    }

    fn open_read_only(&self, path: &Path, role: FileRole) -> io::Result<Box<dyn StorageBackend>> {
        self.0.open_read_only(path, role)
    }
}

/// Opens the store on `disk` for writing.
fn open_writable(disk: &SimDisk) -> SessionStore {
    let options = StoreOptions {
        redb: RedbOptions {
            storage: Arc::new(disk.clone()),
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    };
    SessionStore::open_with(STORE, options).unwrap()
}

fn read_only(storage: impl StorageFactory + 'static) -> StoreOptions {
    StoreOptions {
        read_only: true,
        redb: RedbOptions {
            storage: Arc::new(storage),
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    }
}

/// Every write of the API on `store`, each refused as read-only.
fn assert_writes_refused(store: &SessionStore, id: Uuid) {
    let refusals = [
        store.create_session(Some("ana")).map(drop),
        store.add_message(id, NewMessage::user("more")).map(drop),
        store.update_context(id, "{}"),
        store.expire_session(id).map(drop),
        store.expire_old_sessions(Duration::ZERO).map(drop),
        store.purge_expired(Duration::ZERO).map(drop),
        store.delete_session(id).map(drop),
        store.pop_last_message(id).map(drop),
    ];
    for (n, refusal) in refusals.into_iter().enumerate() {
        match refusal {
            Err(error @ Error::ReadOnly { .. }) => {
                assert!(error.is_refusal(), "write {n}: {error}");
                assert!(error.to_string().contains("read-only"), "write {n}: {error}");
            }
            other => panic!("write {n} of a read-only store: {other:?}"),
        }
    }
}

/// A store in `dir` of session `ana` with two messages, closed cleanly.
fn clean_store(dir: &Path) -> (PathBuf, Uuid) {
    let path = dir.join("sessions.redb");
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    store
        .add_message(id, NewMessage::user("books by Oxford"))
        .unwrap();
    store
        .add_message(id, NewMessage::assistant("Found 15 books matching your query"))
        .unwrap();
    drop(store);
    (path, id)
}

/// Every file in `dir` with its bytes and modification time.
fn files(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, i64, i64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let meta = std::fs::metadata(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            (path, (bytes, meta.mtime(), meta.mtime_nsec()))
        })
        .collect()
}

fn make_read_only(path: &Path) {
    for file in std::iter::once(path.to_path_buf()).chain(SessionStore::files_beside(path)) {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
}

/// True when this process writes files whatever their mode (root).
fn writes_anything(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().uid() == 0
}

#[test]
fn a_cleanly_closed_store_of_mode_0444_is_read_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = clean_store(dir.path());
    make_read_only(&path);
    let before = files(dir.path());
    if writes_anything(&path) {
        eprintln!(
            "running as root, which writes files of mode 0444: the open for writing is not refused here"
        );
    } else {
        let refused = SessionStore::open(&path).unwrap_err();
        assert!(refused.is_not_writable(), "{refused:?}");
    }
    let store = SessionStore::open_read_only(&path).unwrap();
    assert_eq!(
        contents(&store, id),
        ["books by Oxford", "Found 15 books matching your query"]
    );
    assert_eq!(store.stats().unwrap().messages, 2);
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), [id]);
    assert_clean(&store);
    let copy = dir.path().join("backup").join("copy.redb");
    std::fs::create_dir(copy.parent().unwrap()).unwrap();
    store.backup_to(&copy, &mut |_, _| {}).unwrap();
    assert_writes_refused(&store, id);
    assert_eq!(
        contents(&store, id).len(),
        2,
        "a refused write changed what reads see"
    );
    drop(store);
    assert!(files(dir.path()) == before, "the read-only store wrote its files");
    assert_eq!(contents(&SessionStore::open(&copy).unwrap(), id).len(), 2);
}

#[test]
fn a_read_only_open_never_asks_to_write_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = clean_store(dir.path());
    let writable = SessionStore::open_with(
        &path,
        StoreOptions {
            redb: RedbOptions {
                storage: Arc::new(MayOnlyRead(FileStorage)),
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        },
    );
    assert!(
        matches!(&writable, Err(error) if error.is_not_writable()),
        "{writable:?}"
    );
    let store = SessionStore::open_with(&path, read_only(MayOnlyRead(FileStorage))).unwrap();
    assert_eq!(contents(&store, id).len(), 2);
}

/// A store whose last acknowledged writes lie in the journal alone, as a
/// kill leaves it (the files as written), and its session's messages.
fn crashed_store() -> (Files, Uuid, Vec<String>) {
    // A checkpoint 500 ms after a record (a slow machine) would put the
    // messages in the database too: then again.
    for _ in 0..5 {
        let disk = SimDisk::default();
        let store = open_writable(&disk);
        let id = store.create_session(Some("ana")).unwrap();
        drop(store);
        let store = open_writable(&disk);
        let sent: Vec<String> = (0..3).map(|i| format!("message {i}")).collect();
        for text in &sent {
            store.add_message(id, NewMessage::user(text.clone())).unwrap();
        }
        let files = disk.written();
        drop(store);
        if messages_in_database(&files[Path::new(STORE)].to_bytes(), id) == 0 {
            return (files, id, sent);
        }
    }
    panic!("every run was checkpointed before the crash");
}

#[test]
fn a_crashed_store_is_read_with_its_journal_applied_in_memory_and_left_to_recover() {
    let (files, id, sent) = crashed_store();
    let disk = SimDisk::with_files(files.clone());
    let store = SessionStore::open_with(STORE, read_only(MayOnlyRead(disk.clone()))).unwrap();
    assert_eq!(contents(&store, id), sent, "the journal's writes are not read");
    assert_clean(&store);
    assert_writes_refused(&store, id);
    drop(store);
    assert_eq!(disk.mutations(), 0, "the read-only store wrote");
    assert!(disk.written() == files, "the files changed");
    // Left as they were: the next open for writing recovers them.
    let store = open_writable(&disk);
    assert_eq!(contents(&store, id), sent);
    store.add_message(id, NewMessage::user("after")).unwrap();
}

#[test]
fn a_crashed_store_without_its_journal_is_refused_read_only_too() {
    let (mut files, _, _) = crashed_store();
    files.remove(&SessionStore::files_beside(Path::new(STORE))[0]);
    let disk = SimDisk::with_files(files);
    let refused = SessionStore::open_with(STORE, read_only(MayOnlyRead(disk.clone())));
    assert!(matches!(refused, Err(Error::JournalLost { .. })), "{refused:?}");
    assert_eq!(disk.mutations(), 0);
}

#[test]
fn a_read_only_open_and_a_writer_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = clean_store(dir.path());
    let writer = SessionStore::open(&path).unwrap();
    // In one process: the file is open here already (another process
    // gets `InUse`, see tests/open_in_use.rs).
    let refused = SessionStore::open_read_only(&path);
    assert!(matches!(refused, Err(Error::AlreadyOpen { .. })), "{refused:?}");
    drop(writer);
    let reader = SessionStore::open_read_only(&path).unwrap();
    let refused = SessionStore::open(&path);
    assert!(matches!(refused, Err(Error::AlreadyOpen { .. })), "{refused:?}");
    assert_eq!(contents(&reader, id).len(), 2);
}

#[test]
fn a_missing_store_is_not_created_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("s.redb");
    let missing = SessionStore::open_read_only(&path);
    assert!(
        matches!(&missing, Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound),
        "{missing:?}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a read-only open created files"
    );
}

/// The CLI's read commands on a store of mode 0444 that the process may
/// not write: run as an account other than root (`setpriv`) when the test
/// runs as root, which writes any file.
#[test]
fn the_cli_reads_a_store_it_may_not_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (path, id) = clean_store(dir.path());
    make_read_only(&path);
    let before = files(dir.path());
    let binary = assert_cmd::cargo::cargo_bin!("sessionstore");
    let command = |args: &[&str]| {
        let mut command = if writes_anything(&path) {
            let mut command = std::process::Command::new("setpriv");
            command
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(binary);
            command
        } else {
            std::process::Command::new(binary)
        };
        command.arg("--db").arg(&path).args(args);
        assert_cmd::Command::from_std(command)
    };
    if writes_anything(&path)
        && std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!(
            "running as root without setpriv: a store of mode 0444 cannot be made unwritable here; skipped"
        );
        return;
    }
    // The process may not write the store: the command that writes fails.
    command(&["chat-expire", &id.to_string()])
        .assert()
        .failure()
        .stderr(predicates::str::contains("Permission denied"));
    command(&["stats"])
        .assert()
        .success()
        .stdout(predicates::str::contains("Messages: 2"));
    command(&["chat-history", &id.to_string()])
        .assert()
        .success()
        .stdout(predicates::str::contains("books by Oxford"));
    command(&["chat-sessions", "--user-id", "ana"])
        .assert()
        .success()
        .stdout(predicates::str::contains(id.to_string()));
    command(&["check"])
        .assert()
        .success()
        .stdout(predicates::str::contains("Clean"));
    assert!(files(dir.path()) == before, "a read command wrote the store");
}
