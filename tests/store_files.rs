//! The store file: reopening, a second process, files that are not stores,
//! format versions, backups, compaction and the integrity check.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableHandle};

use common::{assert_clean, dump, file_len, store_path, temp_store};
use sessionstore::{Durability, Error, NewMessage, SessionStore, FORMAT_VERSION};

/// A store with a bit of everything: users of every kind, JSON, expiry,
/// an undone turn, a deleted session.
fn populate(store: &SessionStore) {
    let ana = store.create_session(Some("ana")).unwrap();
    store
        .add_message(
            ana,
            NewMessage::user("Find books by Oxford")
                .with_query_plan(r#"{"f": [1]}"#)
                .unwrap(),
        )
        .unwrap();
    store
        .add_message(
            ana,
            NewMessage::assistant("Found 15")
                .with_candidate_set(r#"{"total_count": 15}"#)
                .unwrap(),
        )
        .unwrap();
    store
        .update_context(ana, r#"{"last_publisher": "Oxford"}"#)
        .unwrap();
    let anonymous = store.create_session(None).unwrap();
    store
        .add_message(anonymous, NewMessage::system("\u{1F600}\0"))
        .unwrap();
    let empty = store.create_session(Some("")).unwrap();
    store.add_message(empty, NewMessage::user("")).unwrap();
    store.expire_session(empty).unwrap();
    let unicode = store.create_session(Some("\u{5BFF}\u{53F8}\0")).unwrap();
    store.add_message(unicode, NewMessage::user("kept")).unwrap();
    store.add_message(unicode, NewMessage::user("undone")).unwrap();
    store.pop_last_message(unicode).unwrap();
    let gone = store.create_session(Some("ana")).unwrap();
    store.add_message(gone, NewMessage::user("deleted")).unwrap();
    store.delete_session(gone).unwrap();
}

#[test]
fn reopening_keeps_everything_and_ids_continue_above_the_high_water_mark() {
    let (dir, store) = temp_store();
    populate(&store);
    let relaxed = store.with_durability(Durability::Relaxed);
    let late = relaxed.create_session(Some("ana")).unwrap();
    relaxed
        .add_message(late, NewMessage::user("relaxed, on disk at close"))
        .unwrap();
    let before = dump(&store);
    let lists = (
        store.list_user_sessions("ana", true).unwrap(),
        store.recent_sessions("ana", 10).unwrap(),
        store.stats().unwrap().active_sessions,
    );
    let highest_ever = before.1 - 1;
    drop((store, relaxed));

    let store = SessionStore::open(store_path(&dir)).unwrap();
    assert_eq!(
        dump(&store),
        before,
        "sessions, messages, context, expiry, next id"
    );
    assert_eq!(
        (
            store.list_user_sessions("ana", true).unwrap(),
            store.recent_sessions("ana", 10).unwrap(),
            store.stats().unwrap().active_sessions,
        ),
        lists
    );
    let id = store.add_message(late, NewMessage::user("after reopen")).unwrap();
    assert_eq!(id, highest_ever + 1, "ids continue above every id ever given");
    assert_clean(&store);
}

#[test]
fn open_creates_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/sessions.redb");
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert!(path.is_file());
}

/// Set in a child process: what it does with the store at the given path.
const CHILD: &str = "SESSIONSTORE_TEST_CHILD";
const THIS_TEST: &str = "a_second_process_gets_the_in_use_error_naming_the_path";

/// Runs this test binary again, as the child `role` on `path`.
fn spawn_child(role: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", THIS_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{role}:{}", path.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The child's part: `try` opens the store held by the parent and writes
/// the error it got; `hold` opens the store and keeps it until its stdin
/// closes.
fn run_child(spec: &str) {
    let (role, path) = spec.split_once(':').unwrap();
    let path = Path::new(path);
    match role {
        "try" => {
            let error = SessionStore::open(path).unwrap_err();
            assert!(
                matches!(&error, Error::InUse { path: p } if p == path),
                "{error:?}"
            );
            std::fs::write(side_file(path, ".child-error"), error.to_string()).unwrap();
        }
        "hold" => {
            let store = SessionStore::open(path).unwrap();
            store.create_session(Some("child")).unwrap();
            std::fs::write(side_file(path, ".ready"), "").unwrap();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new()).unwrap();
            drop(store);
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn a_second_process_gets_the_in_use_error_naming_the_path() {
    if let Ok(spec) = std::env::var(CHILD) {
        return run_child(&spec);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.redb");

    // This process holds the store; the child is refused.
    let store = SessionStore::open(&path).unwrap();
    let status = spawn_child("try", &path).wait().unwrap();
    assert!(status.success(), "the child saw another error: {status}");
    let message = std::fs::read_to_string(side_file(&path, ".child-error")).unwrap();
    assert_eq!(
        message,
        format!("{} is in use by another process", path.display())
    );
    // A second open in this process is refused as such.
    let error = SessionStore::open(&path).unwrap_err();
    assert!(
        matches!(&error, Error::AlreadyOpen { path: p } if p == &path),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("already open in this process"),
        "{error}"
    );
    drop(store);

    // The child holds it; this process is refused until the child exits.
    let mut child = spawn_child("hold", &path);
    let ready = side_file(&path, ".ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the child never opened the store");
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let error = SessionStore::open(&path).unwrap_err();
    match &error {
        Error::InUse { path: named } => assert_eq!(named, &path),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(store.list_user_sessions("child", false).unwrap().len(), 1);
}

/// Asserts that opening the file `name` in `dir` as a store is refused as
/// corrupt, naming the path; returns the message.
fn assert_refused_as_corrupt(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let error = SessionStore::open(&path).unwrap_err();
    match &error {
        Error::Corrupt { path: named, .. } => assert_eq!(named, &path, "{name}"),
        other => panic!("{name}: expected Corrupt, got {other:?}"),
    }
    assert!(error
        .to_string()
        .starts_with(&format!("{}: not a usable sessionstore file: ", path.display())));
    error.to_string()
}

/// As [`assert_refused_as_corrupt`] for a file holding `bytes`, which must
/// be left exactly as they were.
fn assert_bytes_refused_as_corrupt(name: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    assert_refused_as_corrupt(dir.path(), name);
    assert!(
        std::fs::read(dir.path().join(name)).unwrap() == bytes,
        "{name}: the file was changed"
    );
}

#[test]
fn files_that_are_not_stores_are_refused_as_corrupt() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for len in [1, 9, 100, 4096, 70_000] {
        assert_bytes_refused_as_corrupt("random.redb", &random(len));
    }
    assert_bytes_refused_as_corrupt(
        "notes.txt",
        "Session notes\nnot a database at all\n".repeat(50).as_bytes(),
    );
    let sqlite = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference-v1.db"
    ))
    .unwrap();
    assert_bytes_refused_as_corrupt("sessions.db", &sqlite);
}

/// Writes, in `dir`, a redb file of another program holding one table
/// `table` with the entry ("key", `value`).
fn foreign_redb<V: redb::Value + 'static>(dir: &Path, file: &str, table: &str, value: V::SelfType<'_>) {
    let db = redb::Database::create(dir.join(file)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, V>::new(table))
        .unwrap()
        .insert("key", value)
        .unwrap();
    txn.commit().unwrap();
}

/// The entry of [`foreign_redb`], read back with redb.
fn foreign_entry<V: redb::Value + 'static>(dir: &Path, file: &str, table: &str) -> String
where
    for<'a> V::SelfType<'a>: std::fmt::Debug,
{
    let db = redb::Database::create(dir.join(file)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn
        .open_table(redb::TableDefinition::<&str, V>::new(table))
        .unwrap();
    let value = table.get("key").unwrap().unwrap();
    format!("{:?}", value.value())
}

#[test]
fn redb_files_of_other_programs_are_refused_as_corrupt_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    foreign_redb::<&str>(dir, "other.redb", "settings", "x");
    let message = assert_refused_as_corrupt(dir, "other.redb");
    assert!(
        message.ends_with("a redb file, but not a sessionstore file (no format version)"),
        "{message}"
    );
    assert_eq!(foreign_entry::<&str>(dir, "other.redb", "settings"), "\"x\"");
    assert_eq!(
        redb::Database::create(dir.join("other.redb"))
            .unwrap()
            .begin_read()
            .unwrap()
            .list_tables()
            .unwrap()
            .count(),
        1,
        "no table added"
    );

    // Tables named like the store's, with other types.
    foreign_redb::<u64>(dir, "meta.redb", "meta", 7);
    let message = assert_refused_as_corrupt(dir, "meta.redb");
    assert!(message.contains("meta"), "{message}");
    assert_eq!(foreign_entry::<u64>(dir, "meta.redb", "meta"), "7");
    foreign_redb::<&str>(dir, "sessions.redb", "sessions", "x");
    let message = assert_refused_as_corrupt(dir, "sessions.redb");
    assert!(message.contains("sessions"), "{message}");
}

#[test]
fn an_empty_file_becomes_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.redb");
    std::fs::write(&path, b"").unwrap();
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(None).unwrap();
    drop(store);
    let store = SessionStore::open(&path).unwrap();
    assert!(store.get_session(id).unwrap().is_some());
}

/// Tables are opened as a write first uses them: an open gives a file that
/// lacks some (written by an earlier version) every table, which the read
/// paths count on.
#[test]
fn an_open_creates_the_tables_a_file_lacks() {
    let (dir, store) = temp_store();
    let path = store_path(&dir);
    let id = store.create_session(Some("u")).unwrap();
    store.add_message(id, NewMessage::user("kept")).unwrap();
    drop(store);
    let tables = |path: &Path| {
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let mut names: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_owned()).collect();
        names.sort();
        names
    };
    let all = tables(&path);
    assert_eq!(all.len(), 22, "{all:?}");
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn
            .delete_table(redb::TableDefinition::<(&str, i64), &[u8]>::new("extra_rows"))
            .unwrap());
        assert!(txn
            .delete_table(redb::TableDefinition::<i64, &[u8]>::new("expiry_events"))
            .unwrap());
        txn.commit().unwrap();
    }
    assert_eq!(tables(&path).len(), all.len() - 2);
    let store = SessionStore::open(&path).unwrap();
    assert_clean(&store);
    assert_eq!(
        store.get_session(id).unwrap().unwrap().messages[0].content,
        "kept"
    );
    assert_eq!(store.recent_sessions("u", 10).unwrap().len(), 1);
    drop(store);
    assert_eq!(tables(&path), all);
}

/// A process killed while creating a store leaves what redb writes first:
/// its header without the magic number (added last), then zeros. Such a
/// file holds nothing and becomes a store; anything more is refused as it is.
#[test]
fn a_creation_cut_short_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut unfinished = vec![0u8; 1 << 20];
    unfinished[9..320]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8 | 1);
    for (name, bytes) in [
        ("unfinished.redb", unfinished.clone()),
        ("zeros.redb", vec![0; 4096]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let store = SessionStore::open(&path).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        drop(store);
        let store = SessionStore::open(&path).unwrap();
        assert!(store.get_session(id).unwrap().is_some(), "{name}");
        assert_clean(&store);
    }
    // One byte of data past the header, or in the magic number's place,
    // and the file is not ours to clear.
    for at in [320, (1 << 20) - 1, 0, 8] {
        let mut bytes = unfinished.clone();
        bytes[at] = 7;
        assert_bytes_refused_as_corrupt("kept.redb", &bytes);
    }
}

/// Rewrites the `format_version` entry of the store's `meta` table with
/// redb itself, as a file written by another build would hold it.
fn set_format_version(path: &Path, bytes: &[u8]) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
        .unwrap()
        .insert("format_version", bytes)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_store_of_another_format_version_is_refused() {
    let (dir, store) = temp_store();
    populate(&store);
    drop(store);
    let path = store_path(&dir);
    set_format_version(&path, &(FORMAT_VERSION + 1).to_le_bytes());
    let error = SessionStore::open(&path).unwrap_err();
    match &error {
        Error::UnsupportedVersion {
            path: named,
            found,
            supported,
        } => assert_eq!(
            (named, *found, *supported),
            (&path, FORMAT_VERSION + 1, FORMAT_VERSION)
        ),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!(
            "{}: store format version {} is not supported (this build reads version {FORMAT_VERSION})",
            path.display(),
            FORMAT_VERSION + 1
        )
    );
    set_format_version(&path, b"\x01\x00");
    assert!(matches!(SessionStore::open(&path), Err(Error::Corrupt { .. })));
    // Put back, the store opens with everything in it.
    set_format_version(&path, &FORMAT_VERSION.to_le_bytes());
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(store.list_user_sessions("ana", true).unwrap().len(), 1);
    assert_clean(&store);
}

#[test]
fn backup_is_an_equal_store_and_never_overwrites() {
    let (dir, store) = temp_store();
    populate(&store);
    let dest = dir.path().join("backup.redb");
    let mut calls = 0;
    store
        .backup_to(&dest, &mut |done, total| {
            assert!(done <= total);
            calls += 1;
        })
        .unwrap();
    assert!(calls > 0, "progress reported");
    let original = dump(&store);
    let copy = SessionStore::open(&dest).unwrap();
    assert_eq!(dump(&copy), original);
    assert_clean(&copy);
    drop(copy);

    // An existing destination is refused and left alone.
    let before = std::fs::read(&dest).unwrap();
    store.create_session(Some("later")).unwrap();
    let message = common::assert_invalid(store.backup_to(&dest, &mut |_, _| {}), "backup destination");
    assert!(message.contains(&dest.display().to_string()), "{message}");
    assert!(std::fs::read(&dest).unwrap() == before);
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "mine").unwrap();
    assert!(store.backup_to(&other, &mut |_, _| {}).is_err());
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "mine");

    // A file that appears at the destination while the copy is made (another
    // backup to the same name) is not replaced either.
    let racing = dir.path().join("racing.redb");
    let result = store.backup_to(&racing, &mut |_, _| {
        if !racing.exists() {
            std::fs::write(&racing, "the other backup").unwrap();
        }
    });
    let message = common::assert_invalid(result, "backup destination");
    assert!(message.contains("exists already"), "{message}");
    assert_eq!(std::fs::read_to_string(&racing).unwrap(), "the other backup");

    // A destination whose folder cannot be made (a missing one is made) is
    // an I/O error naming it.
    let nowhere = other.join("backup.redb");
    match store.backup_to(&nowhere, &mut |_, _| {}) {
        Err(error @ Error::Io { .. }) => assert!(error.to_string().contains("notes.txt"), "{error}"),
        other => panic!("expected Io, got {other:?}"),
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|name| !name.to_string_lossy().contains(".tmp")),
        "{leftovers:?}"
    );
}

#[test]
fn backup_taken_while_writers_run_is_consistent() {
    let (dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let dest = dir.path().join("during.redb");
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for k in 0..300 {
                store.add_message(id, NewMessage::user(format!("{k}"))).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        store.backup_to(&dest, &mut |_, _| {}).unwrap();
        writer.join().unwrap();
    });
    let copy = SessionStore::open(&dest).unwrap();
    assert_clean(&copy);
    let copied = copy.get_session(id).unwrap().unwrap().messages;
    let all = store.get_session(id).unwrap().unwrap().messages;
    assert_eq!(
        copied[..],
        all[..copied.len()],
        "a prefix of the history, as of one moment"
    );
}

#[test]
fn compact_keeps_the_data_and_shrinks_the_file_after_deleting_a_lot() {
    let (dir, store) = temp_store();
    populate(&store);
    let bulk = store.with_durability(Durability::Relaxed);
    let big: Vec<_> = (0..20)
        .map(|n| {
            let id = bulk.create_session(Some("bulk")).unwrap();
            for k in 0..10 {
                bulk.add_message(id, NewMessage::user(format!("{n}/{k} {}", "x".repeat(50_000))))
                    .unwrap();
            }
            id
        })
        .collect();
    drop(bulk);
    assert_eq!(store.erase_user("bulk").unwrap().sessions, big.len() as u64);
    let before = dump(&store);
    let size_before = file_len(&store_path(&dir));

    let report = store.compact(&mut |_, _| {}).unwrap();
    assert_eq!(report.before, size_before);
    assert_eq!(report.after, file_len(&store_path(&dir)));
    assert!(
        report.after * 2 < report.before,
        "{} bytes before, {} after",
        report.before,
        report.after
    );
    assert_eq!(dump(&store), before, "data intact");
    assert_clean(&store);

    // The store goes on working, and the compacted file reopens.
    let id = store.create_session(Some("ana")).unwrap();
    let message = store.add_message(id, NewMessage::user("after compact")).unwrap();
    assert_eq!(message, before.1);
    drop(store);
    let store = SessionStore::open(store_path(&dir)).unwrap();
    assert_eq!(store.get_message(message).unwrap().unwrap().0, id);
    assert_clean(&store);
}

#[test]
fn check_reports_a_healthy_store_clean_with_its_counts() {
    let (_dir, store) = temp_store();
    let report = store.check(&mut |_, _| {}).unwrap();
    assert!(report.is_clean());
    assert_eq!((report.sessions, report.messages), (0, 0));
    populate(&store);
    let mut last = (0, 0);
    let report = store.check(&mut |done, total| last = (done, total)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.sessions, report.messages), (4, 5));
    assert_eq!(last.0, last.1, "progress ends complete");
}

/// A store file damaged in place (a run of bytes overwritten, or cut
/// short) opens with an error, or opens and answers every call with data
/// or an error: never a panic.
#[test]
fn damaged_store_files_give_errors_never_panics() {
    let (dir, store) = temp_store();
    let mut ids = Vec::new();
    for n in 0..12 {
        let id = store.create_session(Some(&format!("u{}", n % 3))).unwrap();
        for k in 0..12 {
            store
                .add_message(id, NewMessage::user(format!("{n}/{k} {}", "x".repeat(300))))
                .unwrap();
        }
        ids.push(id);
    }
    drop(store);
    let good = std::fs::read(store_path(&dir)).unwrap();
    let trials = 48;
    let mut refused = 0;
    for trial in 0..trials {
        let mut bytes = good.clone();
        let at = good.len() * trial / trials;
        if trial % 4 == 3 {
            bytes.truncate(at);
        } else {
            let end = (at + 4096).min(bytes.len());
            bytes[at..end].fill((trial * 37 % 256) as u8);
        }
        let path = dir.path().join(format!("damaged-{trial}.redb"));
        std::fs::write(&path, &bytes).unwrap();
        let outcome = std::panic::catch_unwind(|| match SessionStore::open(&path) {
            Err(Error::Corrupt { .. } | Error::Storage { .. } | Error::CorruptRecord { .. }) => true,
            Err(other) => panic!("damaged at {at}: unexpected {other:?}"),
            Ok(store) => {
                let _ = store.check(&mut |_, _| {});
                let _ = store.stats();
                let _ = store.list_user_sessions("u1", true);
                let _ = store.recent_sessions("u2", 5);
                for id in &ids {
                    let _ = store.get_session(*id);
                    let _ = store.get_recent_messages(*id, 3);
                }
                let _ = store.get_message(5);
                // Writes run on the store's writer thread: they answer too
                // (tried on a third of the files: they commit durably).
                if trial % 3 == 0 {
                    let _ = store.add_message(ids[0], NewMessage::user("after the damage"));
                    let _ = store.erase_user("u2");
                }
                false
            }
        });
        match outcome {
            Ok(was_refused) => refused += usize::from(was_refused),
            Err(_) => panic!("trial {trial}: a file damaged at byte {at} made the store panic"),
        }
    }
    assert!(refused > 0, "some damage is seen at open");
}

/// The check is not a formality: entries removed behind the store's back
/// (with redb directly, on the closed file) are each reported.
#[test]
fn check_reports_an_index_or_a_message_removed_behind_the_store() {
    let (dir, store) = temp_store();
    populate(&store);
    let ana = store.list_user_sessions("ana", false).unwrap()[0];
    drop(store);
    {
        let db = redb::Database::create(store_path(&dir)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let index = redb::TableDefinition::<(&str, i64, u128), ()>::new("user_active_sessions");
            let mut index = txn.open_table(index).unwrap();
            // The first active entry by user is ana's session (the "" user's
            // session, which would sort first, is expired).
            let (user, at, id) = index
                .first()
                .unwrap()
                .map(|(key, _)| {
                    let (user, at, id) = key.value();
                    (user.to_owned(), at, id)
                })
                .unwrap();
            assert_eq!((user.as_str(), id), ("ana", ana.as_u128()));
            index.remove((user.as_str(), at, id)).unwrap();
            let messages = redb::TableDefinition::<(u128, u64), &[u8]>::new("messages");
            txn.open_table(messages)
                .unwrap()
                .remove((ana.as_u128(), 1))
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = SessionStore::open(store_path(&dir)).unwrap();
    let report = store.check(&mut |_, _| {}).unwrap();
    assert!(!report.is_clean());
    let problems = report.problems.join("\n");
    assert!(
        problems.contains("index user_active_sessions differs from its table: 0 stray entries, 1 missing"),
        "{problems}"
    );
    assert!(
        problems.contains(&format!("session {ana}: holds 1 messages but counts 2")),
        "{problems}"
    );
    assert!(problems.contains("message_ids has"), "{problems}");
}

#[test]
fn check_while_a_snapshot_is_open_names_the_snapshot_and_works_once_it_is_dropped() {
    let (_dir, store) = temp_store();
    populate(&store);
    let snapshot = store.snapshot().unwrap();
    match store.check(&mut |_, _| {}) {
        Err(Error::SnapshotOpen { path, operation }) => {
            assert_eq!(path, store.path());
            assert_eq!(operation, "check");
        }
        other => panic!("expected SnapshotOpen, got {other:?}"),
    }
    // The refused check changed nothing: the snapshot still reads, and
    // once it is gone the check runs and is clean.
    assert!(snapshot.sessions().unwrap().count() > 0);
    drop(snapshot);
    assert_clean(&store);
}
