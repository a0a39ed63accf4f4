//! `StoreOptions::journal_bytes`: the journal is made the size asked for,
//! resized at each open without losing a record, and a batch too big for
//! it is still durable.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::disk::{Files, SimDisk, SparseFile};
use common::{assert_clean, content, contents, messages_in_database};
use sessionstore::{Error, NewMessage, SessionStore, StoreOptions, Uuid};

const STORE: &str = "/sim/journal.redb";

fn journal() -> PathBuf {
    SessionStore::files_beside(Path::new(STORE)).remove(0)
}

fn options(disk: &SimDisk, journal_bytes: u64) -> StoreOptions {
    StoreOptions {
        storage: Arc::new(disk.clone()),
        journal_bytes,
        ..StoreOptions::default()
    }
}

fn open(disk: &SimDisk, journal_bytes: u64) -> SessionStore {
    SessionStore::open_with(STORE, options(disk, journal_bytes)).expect("open")
}

/// True when the journal holds bytes (a record) at or past `offset`.
fn written_past(files: &Files, offset: u64) -> bool {
    let bytes = files[&journal()].to_bytes();
    bytes
        .get(offset as usize..)
        .is_some_and(|rest| rest.iter().any(|&b| b != 0))
}

#[test]
fn the_journal_is_made_the_size_asked_and_resized_at_each_open() {
    let disk = SimDisk::default();
    let small = StoreOptions::MIN_JOURNAL_BYTES;
    let store = open(&disk, small);
    assert_eq!(disk.written()[&journal()].len(), small);
    let id = store.create_session(None).unwrap();
    store.add_message(id, NewMessage::user("first")).unwrap();
    drop(store);

    let store = open(&disk, 1 << 20);
    assert_eq!(disk.written()[&journal()].len(), 1 << 20);
    store.add_message(id, NewMessage::user("second")).unwrap();
    drop(store);

    let store = open(&disk, small);
    assert_eq!(disk.written()[&journal()].len(), small);
    assert_eq!(contents(&store, id), ["first", "second"]);
    assert_clean(&store);
}

/// A store on a 1 MiB journal whose last durable writes lie in the journal
/// alone, past its first 64 KiB, as a power loss right after them leaves
/// it. A checkpoint by age (a slow, loaded machine) would move them into
/// the database, so such a run is done again.
fn crashed_with_records_past(offset: u64) -> (Files, Uuid, Vec<String>) {
    for _ in 0..10 {
        let disk = SimDisk::default();
        let store = open(&disk, 1 << 20);
        let id = store.create_session(None).unwrap();
        let sent: Vec<String> = (0..12).map(|i| content(i, 6_000)).collect();
        for text in &sent {
            store.add_message(id, NewMessage::user(text.clone())).unwrap();
        }
        let synced = disk.synced();
        drop(store);
        if written_past(&synced, offset) {
            return (synced, id, sent);
        }
    }
    panic!("ten runs never left records past byte {offset} of the journal");
}

#[test]
fn a_journal_opened_smaller_is_replayed_whole_before_it_is_cut() {
    let small = StoreOptions::MIN_JOURNAL_BYTES;
    let (files, id, sent) = crashed_with_records_past(small);
    let disk = SimDisk::with_files(files);
    let store = open(&disk, small);
    assert_eq!(contents(&store, id), sent);
    assert_eq!(disk.written()[&journal()].len(), small);
    store.add_message(id, NewMessage::user("after")).unwrap();
    // The power goes again: the cut journal and the replayed database hold
    // every acknowledged write.
    let disk = SimDisk::with_files(disk.synced());
    drop(store);
    let store = open(&disk, small);
    let mut expected = sent;
    expected.push("after".into());
    assert_eq!(contents(&store, id), expected);
    assert_clean(&store);
}

#[test]
fn a_batch_larger_than_the_journal_is_committed_durably_to_the_database() {
    let disk = SimDisk::default();
    let small = StoreOptions::MIN_JOURNAL_BYTES;
    let store = open(&disk, small);
    let id = store.create_session(None).unwrap();
    // About 200 KB of little-compressible text: no record of it fits.
    let big = content(7, 100_000);
    store.add_message(id, NewMessage::user(big.clone())).unwrap();
    store.add_message(id, NewMessage::user("small")).unwrap();
    let files = disk.synced();
    drop(store);
    // Power loss: the database alone holds the big message (and what came
    // before it); the small one after it was acknowledged through the
    // journal (without which the store refuses to open).
    let mut without_journal = files.clone();
    without_journal.insert(journal(), SparseFile::from_bytes(&vec![0; small as usize]));
    let refused = SessionStore::open_with(STORE, options(&SimDisk::with_files(without_journal), small));
    assert!(matches!(refused, Err(Error::JournalLost { .. })), "{refused:?}");
    assert_eq!(messages_in_database(&files[Path::new(STORE)].to_bytes(), id), 1);
    let store = open(&SimDisk::with_files(files), small);
    assert_eq!(contents(&store, id), [big, "small".into()]);
    assert_clean(&store);
}

#[test]
fn a_journal_size_out_of_range_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/s.redb");
    for journal_bytes in [
        0,
        4096,
        StoreOptions::MIN_JOURNAL_BYTES - 1,
        StoreOptions::MAX_JOURNAL_BYTES + 1,
    ] {
        let options = StoreOptions {
            journal_bytes,
            ..StoreOptions::default()
        };
        let error = SessionStore::open_with(&path, options).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(
                &error,
                Error::InvalidInput {
                    what: "journal_bytes",
                    ..
                }
            ) && text.contains(&journal_bytes.to_string())
                && text.contains("65536"),
            "{text}"
        );
        assert!(!dir.path().join("data").exists(), "a refused open created files");
    }
}
