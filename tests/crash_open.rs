//! `StoreOptions::verify_after_crash`: an open that has journal records to
//! replay verifies every page of the database first (the default), or
//! replays into the file as it is. Both replay every acknowledged write;
//! only the check refuses a crashed store that is damaged too, and only it
//! reads the whole file.

mod common;

use sessionstore::redb_engine::{FileRole, RedbOptions};
use std::path::PathBuf;
use std::sync::Arc;

use common::assert_clean;
use common::disk::{Files, SimDisk, SparseFile};
use sessionstore::{Error, NewMessage, SessionStore, StoreOptions, Uuid};

const STORE: &str = "/sim/crash.redb";
/// A message small enough to be stored as it is (not compressed), so that
/// the test can find its bytes in the file and damage them.
const NEEDLE: &str = "needle: the message whose bytes the test damages";

fn options(disk: &SimDisk, verify_after_crash: bool) -> StoreOptions {
    StoreOptions {
        redb: RedbOptions {
            storage: Arc::new(disk.clone()),
            verify_after_crash,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    }
}

fn database() -> PathBuf {
    PathBuf::from(STORE)
}

fn contents(store: &SessionStore, id: Uuid) -> sessionstore::Result<Vec<String>> {
    let session = store.get_session(id)?.expect("the session is active");
    Ok(session.messages.iter().map(|m| m.content.clone()).collect())
}

/// The files a kill left, and what they hold.
struct Crashed {
    files: Files,
    /// The session of the needle (its one message).
    needle: Uuid,
    /// Every session written before the kill's open, the needle's first,
    /// with its messages.
    sessions: Vec<(Uuid, Vec<String>)>,
    /// The session whose message only the journal holds.
    last: Uuid,
}

/// What a kill leaves: a store of 61 sessions written and closed cleanly,
/// reopened, and a message appended to a new session, acknowledged (in
/// the journal) but not yet checkpointed into the database.
fn crashed_store() -> Crashed {
    let disk = SimDisk::default();
    let store = SessionStore::open_with(STORE, options(&disk, true)).unwrap();
    let needle = store.create_session(Some("ana")).unwrap();
    store.add_message(needle, NewMessage::user(NEEDLE)).unwrap();
    let mut sessions = vec![(needle, vec![NEEDLE.to_owned()])];
    for n in 0..60u64 {
        // No user: a user's messages would be indexed for search by the
        // idle writer as the store reopens, and the replay of those
        // records would read the index's pages too, which is not what
        // this test weighs.
        let id = store.create_session(None).unwrap();
        let messages: Vec<String> = (0..20).map(|m| common::content(n * 100 + m, 1_000)).collect();
        store
            .add_messages(id, messages.iter().cloned().map(NewMessage::user).collect())
            .unwrap();
        sessions.push((id, messages));
    }
    drop(store);
    // A checkpoint follows 500 ms after a record at the latest: the kill
    // must come before it, which a slow machine may miss; then again.
    for _ in 0..5 {
        let disk = SimDisk::with_files(disk.written());
        let store = SessionStore::open_with(STORE, options(&disk, true)).unwrap();
        let last = store.create_session(None).unwrap();
        store
            .add_message(last, NewMessage::user("after the reopen"))
            .unwrap();
        let files = disk.written();
        drop(store);
        if needs_replay(&files, last) {
            return Crashed {
                files,
                needle,
                sessions,
                last,
            };
        }
    }
    panic!("every attempt was checkpointed before the kill");
}

/// Whether the database of `files` lacks `last`: only the journal holds it.
fn needs_replay(files: &Files, last: Uuid) -> bool {
    common::messages_in_database(&files[&database()].to_bytes(), last) == 0
}

/// `files` with every copy of the needle's bytes in the database changed.
fn damage_needle(files: &Files) -> Files {
    let mut bytes = files[&database()].to_bytes();
    let mut copies = 0;
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], NEEDLE.as_bytes()) {
        bytes[at + found] ^= 0x20;
        copies += 1;
        at += found + NEEDLE.len();
    }
    assert!(copies > 0, "the needle is in the database");
    let mut damaged = files.clone();
    damaged.insert(database(), SparseFile::from_bytes(&bytes));
    damaged
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn both_ways_replay_every_acknowledged_write_and_only_the_check_reads_the_whole_file() {
    let crashed = crashed_store();
    let database_len = crashed.files[&database()].len();
    let mut read = Vec::new();
    for verify in [true, false] {
        let disk = SimDisk::with_files(crashed.files.clone());
        let store = SessionStore::open_with(STORE, options(&disk, verify)).unwrap();
        read.push(disk.bytes_read(FileRole::Database));
        assert_eq!(contents(&store, crashed.last).unwrap(), ["after the reopen"]);
        for (id, messages) in &crashed.sessions {
            assert_eq!(&contents(&store, *id).unwrap(), messages);
        }
        assert_clean(&store);
    }
    let [verified, unverified] = read[..] else {
        unreachable!()
    };
    assert!(
        verified >= database_len / 4,
        "the check read {verified} bytes of a database of {database_len}"
    );
    assert!(
        unverified * 10 <= verified,
        "the open without the check read {unverified} bytes, with it {verified}"
    );
}

#[test]
fn only_the_check_refuses_a_crashed_store_damaged_too_and_without_it_the_damage_is_found_at_the_read() {
    let crashed = crashed_store();
    let damaged = damage_needle(&crashed.files);

    let disk = SimDisk::with_files(damaged.clone());
    let refused = SessionStore::open_with(STORE, options(&disk, true)).unwrap_err();
    assert!(
        matches!(&refused, Error::Corrupt { path, why } if path == &database() && why.contains("not replayed")),
        "{refused:?}"
    );

    let disk = SimDisk::with_files(damaged);
    let store = SessionStore::open_with(STORE, options(&disk, false)).unwrap();
    let read = contents(&store, crashed.needle).unwrap_err();
    assert!(matches!(read, Error::CorruptRecord { .. }), "{read:?}");
    assert_eq!(contents(&store, crashed.last).unwrap(), ["after the reopen"]);
    for (id, messages) in &crashed.sessions[1..] {
        assert_eq!(&contents(&store, *id).unwrap(), messages);
    }
}
