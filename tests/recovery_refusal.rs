//! Issue 16, item 1: a store killed with acknowledged writes in its journal
//! alone refuses to open without that journal (missing, cut short, or the
//! journal of another run), changes no file in refusing, and so refuses the
//! same way every time. A store closed cleanly needs no journal.
//!
//! The crash is real: the test binary runs itself again as a child (the
//! ignored test `append_then_wait`), which opens a store of 200 messages,
//! appends 100 more durably and says so; the parent then kills it with
//! SIGKILL, before a checkpoint puts them in the database.

mod common;

use sessionstore::redb_engine::RedbOptions;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use std::sync::Arc;

use common::disk::SimDisk;
use sessionstore::{Error, NewMessage, SessionStore, StoreOptions};

/// Tells the child where the store is.
const CHILD_ENV: &str = "SESSIONSTORE_RECOVERY_CHILD";
const BEFORE: usize = 200;
const APPENDED: usize = 100;

/// The child: appends [`APPENDED`] messages durably (10 batches of 10) to
/// the store's one session, says `ACKED`, then waits to be killed.
#[test]
#[ignore = "child process of the refusal tests; runs only with SESSIONSTORE_RECOVERY_CHILD set"]
fn append_then_wait() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = SessionStore::open(&path).expect("the child opens the store");
    let id = session(&store);
    for batch in 0..APPENDED / 10 {
        let messages = (0..10)
            .map(|i| NewMessage::user(common::content((batch * 10 + i) as u64, 300)))
            .collect();
        store.add_messages(id, messages).expect("durable append");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACKED").expect("the parent reads stdout");
    out.flush().expect("the parent reads stdout");
    std::thread::sleep(Duration::from_secs(120));
}

/// The store's one session.
fn session(store: &SessionStore) -> sessionstore::Uuid {
    store.list_user_sessions("ana", false).expect("list sessions")[0]
}

fn journal(path: &Path) -> PathBuf {
    SessionStore::files_beside(path).remove(0)
}

/// A store of one session with [`BEFORE`] messages, closed cleanly.
fn clean_store(dir: &Path) -> PathBuf {
    let path = dir.join("sessions.redb");
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    let messages = (0..BEFORE)
        .map(|i| NewMessage::user(common::content(10_000 + i as u64, 300)))
        .collect();
    store.add_messages(id, messages).unwrap();
    drop(store);
    path
}

/// Runs the child on the store at `path` and kills it once it has
/// acknowledged its appends.
fn append_and_kill(path: &Path) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "append_then_wait",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let acked = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with("ACKED"));
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    assert!(acked, "the child never acknowledged its appends");
}

/// Copies the store at `path` and its journal into the new folder `to`;
/// the copy's path.
fn copy_store(path: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir(to).unwrap();
    for file in [path.to_path_buf(), journal(path)] {
        std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
    }
    to.join(path.file_name().unwrap())
}

/// Kills a run appending to the clean store at `path`, leaving
/// [`APPENDED`] acknowledged messages in its journal: with the journal,
/// every message is there (the open that shows it works on a copy).
fn crash(path: &Path) {
    append_and_kill(path);
    let copy = copy_store(path, &path.parent().unwrap().join("with-journal"));
    let store = SessionStore::open(copy).unwrap();
    assert_eq!(message_count(&store), BEFORE + APPENDED);
}

/// A store killed with acknowledged messages in its journal alone.
fn crashed_store(dir: &Path) -> PathBuf {
    let path = clean_store(dir);
    crash(&path);
    path
}

fn message_count(store: &SessionStore) -> usize {
    let id = session(store);
    store.get_session(id).unwrap().unwrap().messages.len()
}

/// Every file in `dir` (not in its sub-folders) and its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Opens the store at `path` twice: both opens are refused the same way,
/// naming the journal and saying `why`, and neither changes any file.
fn assert_refused_twice(path: &Path, why: &str) {
    let dir = path.parent().unwrap();
    let before = files(dir);
    let mut errors = Vec::new();
    for attempt in 1..=2 {
        let error = match SessionStore::open(path) {
            Ok(store) => panic!(
                "open {attempt} succeeded with {} of {} messages",
                message_count(&store),
                BEFORE + APPENDED
            ),
            Err(error) => error,
        };
        let text = error.to_string();
        assert!(
            matches!(&error, Error::JournalLost { path: named, .. } if *named == journal(path)),
            "open {attempt}: {error:?}"
        );
        assert!(text.contains(why), "open {attempt}: {text}");
        assert!(text.contains("acknowledged writes"), "open {attempt}: {text}");
        assert!(files(dir) == before, "open {attempt} changed the files");
        errors.push(text);
    }
    assert_eq!(errors[0], errors[1], "the second refusal differs");
}

#[test]
fn a_crashed_store_whose_journal_is_missing_is_refused_twice_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = crashed_store(dir.path());
    std::fs::remove_file(journal(&path)).unwrap();
    assert_refused_twice(&path, "missing");
    assert!(!journal(&path).exists(), "a refused open created the journal");
}

#[test]
fn a_crashed_store_whose_journal_is_cut_is_refused_twice_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = crashed_store(dir.path());
    let journal = journal(&path);
    let bytes = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, &bytes[..8 << 10]).unwrap();
    assert_refused_twice(&path, "cut short");
    // Put back, it replays every acknowledged message.
    std::fs::write(&journal, &bytes).unwrap();
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(message_count(&store), BEFORE + APPENDED);
    common::assert_clean(&store);
}

/// Two runs from the same clean store, each killed: the journal of one
/// beside the database of the other continues it by its record numbers,
/// but holds the other run's writes, not this one's.
#[test]
fn a_crashed_store_beside_the_journal_of_another_run_is_refused_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = clean_store(&dir.path().join("one"));
    let other = copy_store(&path, &dir.path().join("other"));
    crash(&path);
    crash(&other);
    std::fs::copy(journal(&other), journal(&path)).unwrap();
    assert_refused_twice(&path, "another");
}

#[test]
fn a_cleanly_closed_store_needs_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = clean_store(dir.path());
    let store = SessionStore::open(&path).unwrap();
    store
        .add_message(session(&store), NewMessage::user("one more"))
        .unwrap();
    drop(store);
    std::fs::remove_file(journal(&path)).unwrap();
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(message_count(&store), BEFORE + 1);
    common::assert_clean(&store);
}

/// Killed after a checkpoint, with nothing in the journal the database
/// lacks (it says the next round may hold records), then opened with a
/// smaller journal and killed again: the open that cut the journal had
/// said first that the database needs it no more.
#[test]
fn a_journal_cut_to_a_smaller_size_by_an_open_after_a_crash_is_not_refused_later() {
    let open = |disk: &SimDisk, max_journal_bytes| {
        let options = StoreOptions {
            redb: RedbOptions {
                storage: Arc::new(disk.clone()),
                max_journal_bytes,
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        };
        SessionStore::open_with("/sim/s.redb", options)
    };
    let disk = SimDisk::default();
    let store = open(&disk, 1 << 20).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    // Grows the journal past the smallest size the second open cuts it to.
    let big = "x".repeat(200_000);
    store.add_message(id, NewMessage::user(big.as_str())).unwrap();
    store.add_message(id, NewMessage::user("checkpointed")).unwrap();
    // Maintenance checkpoints first.
    common::assert_clean(&store);
    let killed = SimDisk::with_files(disk.written());
    drop(store);
    let store = open(&killed, RedbOptions::MIN_JOURNAL_BYTES).unwrap();
    let killed_again = SimDisk::with_files(killed.written());
    drop(store);
    let store = open(&killed_again, RedbOptions::MIN_JOURNAL_BYTES).unwrap();
    assert_eq!(common::contents(&store, id), [big.as_str(), "checkpointed"]);
}
