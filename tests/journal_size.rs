//! The journal is sized to the load: a new store's is the smallest
//! (`RedbOptions::MIN_JOURNAL_BYTES`), batches that need room double it up
//! to `StoreOptions::max_journal_bytes` (safely against a power cut at any
//! sync), checkpoints halve it when it has been oversize for long, a close
//! cuts it back; an open with a smaller largest size replays it whole
//! before it cuts it, and a batch too big for it is still durable.

mod common;

use sessionstore::redb_engine::RedbOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::disk::{Files, Keep, SimDisk, SparseFile};
use common::{assert_clean, content, contents, messages_in_database};
use sessionstore::{Durability, Error, NewMessage, SessionStore, StoreOptions, Uuid};

const STORE: &str = "/sim/journal.redb";

fn journal() -> PathBuf {
    SessionStore::files_beside(Path::new(STORE)).remove(0)
}

fn options(disk: &SimDisk, max_journal_bytes: u64) -> StoreOptions {
    StoreOptions {
        redb: RedbOptions {
            storage: Arc::new(disk.clone()),
            max_journal_bytes,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    }
}

fn open(disk: &SimDisk, max_journal_bytes: u64) -> SessionStore {
    SessionStore::open_with(STORE, options(disk, max_journal_bytes)).expect("open")
}

/// True when the journal holds bytes (a record) at or past `offset`.
fn written_past(files: &Files, offset: u64) -> bool {
    let bytes = files[&journal()].to_bytes();
    bytes
        .get(offset as usize..)
        .is_some_and(|rest| rest.iter().any(|&b| b != 0))
}

#[test]
fn a_new_store_takes_well_under_a_mib_and_so_does_an_opened_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    store.add_message(id, NewMessage::user("hello")).unwrap();
    let on_disk = |path: &Path| -> u64 {
        std::iter::once(path.to_path_buf())
            .chain(SessionStore::files_beside(path))
            .map(|file| std::fs::metadata(file).map_or(0, |m| m.len()))
            .sum()
    };
    let stats = store.stats().unwrap();
    assert_eq!(stats.journal_size, RedbOptions::MIN_JOURNAL_BYTES);
    assert_eq!(stats.file_size + stats.journal_size, on_disk(&path));
    assert!(
        on_disk(&path) < 1 << 20,
        "a new store takes {} bytes",
        on_disk(&path)
    );
    // A batch larger than the journal grows it; stats count what it takes.
    store
        .add_message(id, NewMessage::user(content(1, 100_000)))
        .unwrap();
    let stats = store.stats().unwrap();
    assert!(stats.journal_size > RedbOptions::MIN_JOURNAL_BYTES, "{stats:?}");
    assert_eq!(stats.file_size + stats.journal_size, on_disk(&path));
    // A backup, opened as a store, gets the smallest journal too.
    let backup = dir.path().join("backup.redb");
    store.backup_to(&backup, &mut |_, _| {}).unwrap();
    let opened = SessionStore::open(&backup).unwrap();
    assert_eq!(contents(&opened, id).len(), 2);
    assert!(
        on_disk(&backup) < 1 << 20,
        "an opened backup takes {} bytes",
        on_disk(&backup)
    );
}

/// The journal's length on `disk`.
fn journal_len(disk: &SimDisk) -> u64 {
    disk.written()[&journal()].len()
}

#[test]
fn heavy_batches_grow_the_journal_by_doubling_up_to_its_largest() {
    let disk = SimDisk::default();
    let small = RedbOptions::MIN_JOURNAL_BYTES;
    let store = open(&disk, 1 << 20);
    let id = store.create_session(None).unwrap();
    assert_eq!(journal_len(&disk), small);
    let mut sizes = vec![journal_len(&disk)];
    let mut sent = Vec::new();
    // Ever larger batches, the last larger than the largest journal (it
    // goes to the database). Each from the third on needs twice the room
    // of the one before, whatever the round held before it (a checkpoint
    // by age may empty it).
    for (i, len) in [10_000, 40_000, 80_000, 160_000, 320_000, 1_500_000]
        .into_iter()
        .enumerate()
    {
        let text = content(i as u64, len);
        store.add_message(id, NewMessage::user(text.clone())).unwrap();
        sent.push(text);
        sizes.push(journal_len(&disk));
    }
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(
        sizes.iter().all(|&size| size <= 1 << 20),
        "past its largest: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&size| size.is_power_of_two() && size >= small),
        "{sizes:?}"
    );
    assert!(
        sizes.last() > Some(&(256 << 10)),
        "the journal never grew: {sizes:?}"
    );
    let mut doublings = sizes.clone();
    doublings.dedup();
    assert!(doublings.len() >= 3, "{sizes:?}");
    assert_eq!(contents(&store, id), sent);
    assert_clean(&store);
}

#[test]
fn a_grown_journal_replays_after_a_power_loss_and_is_cut_back_at_close() {
    let disk = SimDisk::default();
    let store = open(&disk, 1 << 20);
    let id = store.create_session(None).unwrap();
    // Each needs more than the smallest journal.
    let sent: Vec<String> = (0..4).map(|i| content(i, 100_000)).collect();
    for text in &sent {
        store.add_message(id, NewMessage::user(text.clone())).unwrap();
    }
    assert!(journal_len(&disk) > RedbOptions::MIN_JOURNAL_BYTES);
    let crashed = disk.synced();
    drop(store);
    // Closed: the journal is back to its smallest size.
    assert_eq!(journal_len(&disk), RedbOptions::MIN_JOURNAL_BYTES);
    assert_eq!(contents(&open(&disk, 1 << 20), id), sent);
    // The power lost before the close: the grown journal holds the
    // writes the database does not.
    let disk = SimDisk::with_files(crashed);
    let store = open(&disk, 1 << 20);
    assert_eq!(contents(&store, id), sent);
    assert_clean(&store);
}

/// The steps of [`power_cuts_while_the_journal_grows_lose_no_acknowledged_write`]:
/// appends that double the journal twice, small ones between them.
fn growing_appends() -> Vec<String> {
    [100, 80_000, 100, 200_000, 100]
        .into_iter()
        .enumerate()
        .map(|(i, len)| content(i as u64, len))
        .collect()
}

/// Runs [`growing_appends`] on `disk` until a call fails; the session, the
/// appends acknowledged and the journal's size after each; `None` when
/// nothing was acknowledged.
fn run_growing_appends(disk: &SimDisk) -> Option<(Uuid, usize, Vec<u64>)> {
    let store = SessionStore::open_with(STORE, options(disk, 1 << 20)).ok()?;
    let id = store.create_session(None).ok()?;
    let mut sizes = Vec::new();
    for text in growing_appends() {
        if store.add_message(id, NewMessage::user(text)).is_err() {
            break;
        }
        sizes.push(journal_len(disk));
    }
    Some((id, sizes.len(), sizes))
}

#[test]
fn power_cuts_while_the_journal_grows_lose_no_acknowledged_write() {
    let healthy = SimDisk::default();
    let (_, acked, mut sizes) = run_growing_appends(&healthy).unwrap();
    assert_eq!(acked, 5);
    sizes.dedup();
    assert!(sizes.len() >= 3, "the journal did not grow twice: {sizes:?}");
    let syncs = healthy.syncs();
    let mut seed = 0;
    for k in 0..syncs {
        seed += 1;
        for keep in [
            Keep::Nothing,
            Keep::Everything,
            Keep::Part(seed),
            Keep::Part(seed + 1000),
        ] {
            let disk = SimDisk::default();
            disk.crash_at_sync(k, keep);
            let ran = run_growing_appends(&disk);
            let Some(files) = disk.crashed() else {
                continue;
            };
            let store = open(&SimDisk::with_files(files), 1 << 20);
            let case = format!("power cut at sync {k} of {syncs}, keeping {keep:?}");
            let Some((id, acked, _)) = ran else {
                // The session's creation was not acknowledged.
                continue;
            };
            let Some(session) = store.get_session(id).unwrap() else {
                panic!("{case}: the session is gone");
            };
            let found: Vec<&str> = session.messages.iter().map(|m| m.content.as_str()).collect();
            let sent = growing_appends();
            // What was acknowledged, and perhaps the append in flight.
            assert!(
                found.len() == acked || found.len() == acked + 1,
                "{case}: {} messages, {acked} acknowledged",
                found.len()
            );
            assert!(
                found.iter().zip(&sent).all(|(a, b)| a == b),
                "{case}: other messages"
            );
            assert_clean(&store);
        }
    }
}

/// A store whose journal one 500 KB message grew to its largest, 1 MiB.
fn grown_to_a_mib() -> (SimDisk, SessionStore, Uuid) {
    let disk = SimDisk::default();
    let store = open(&disk, 1 << 20);
    let id = store.create_session(None).unwrap();
    store
        .add_message(id, NewMessage::user(content(1, 500_000)))
        .unwrap();
    (disk, store, id)
}

#[test]
fn a_journal_long_unused_beyond_a_quarter_is_halved_at_checkpoints() {
    let (disk, store, id) = grown_to_a_mib();
    let grown = journal_len(&disk);
    assert!(grown >= 512 << 10, "{grown}");
    // Small relaxed writes: a checkpoint follows every 256 records, which
    // take less than a quarter of the journal.
    let relaxed = store.with_durability(Durability::Relaxed);
    let mut sizes = Vec::new();
    for round in 0..40 {
        for i in 0..256 {
            relaxed
                .add_message(id, NewMessage::user(format!("{round}.{i}")))
                .unwrap();
        }
        sizes.push(journal_len(&disk));
    }
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    assert!(sizes.last() < sizes.first(), "never halved: {sizes:?}");
    assert!(sizes.iter().all(|&size| size >= RedbOptions::MIN_JOURNAL_BYTES));
    assert_eq!(contents(&store, id).len(), 1 + 40 * 256);
}

/// A power loss in the round right after a checkpoint halved the journal:
/// the checkpoint said the database needs the journal at the length it has
/// once halved, so the open replays it instead of refusing it as cut.
#[test]
fn a_crash_right_after_the_journal_was_halved_loses_nothing() {
    let (disk, store, id) = grown_to_a_mib();
    let relaxed = store.with_durability(Durability::Relaxed);
    let mut size = journal_len(&disk);
    let mut sent = 1;
    // Small writes: a checkpoint every 256, each using less than a quarter
    // of the journal, until one halves it.
    while journal_len(&disk) >= size {
        size = journal_len(&disk);
        relaxed
            .add_message(id, NewMessage::user(format!("{sent}")))
            .unwrap();
        sent += 1;
        assert!(sent < 64 * 256, "never halved");
    }
    store
        .add_message(id, NewMessage::user("after the halving"))
        .unwrap();
    let crashed = SimDisk::with_files(disk.synced());
    drop(store);
    let store = SessionStore::open_with(STORE, options(&crashed, 1 << 20)).expect("the open after the crash");
    let kept = contents(&store, id);
    assert_eq!(kept.len(), sent + 1);
    assert_eq!(kept.last().map(String::as_str), Some("after the halving"));
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
    let small = RedbOptions::MIN_JOURNAL_BYTES;
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
    let small = RedbOptions::MIN_JOURNAL_BYTES;
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
    for max_journal_bytes in [
        0,
        4096,
        RedbOptions::MIN_JOURNAL_BYTES - 1,
        RedbOptions::MAX_JOURNAL_BYTES + 1,
    ] {
        let options = StoreOptions {
            redb: RedbOptions {
                max_journal_bytes,
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        };
        let error = SessionStore::open_with(&path, options).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(
                &error,
                Error::InvalidInput {
                    what: "max_journal_bytes",
                    ..
                }
            ) && text.contains(&max_journal_bytes.to_string())
                && text.contains("65536"),
            "{text}"
        );
        assert!(!dir.path().join("data").exists(), "a refused open created files");
    }
}
