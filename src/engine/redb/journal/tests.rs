use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, StorageBackend};

use super::{journal_path, padded, parse_header, Journal, HEADER};
use crate::engine::redb::storage::{FileRole, StorageFactory};
use crate::engine::redb::RedbOptions;
use crate::error::Result;
use crate::{NewMessage, SessionStore, StoreOptions};

/// A disk in memory that keeps, for each file, what a power loss would
/// leave: the bytes as of the last sync.
#[derive(Clone, Default)]
struct Disk(Arc<Mutex<HashMap<PathBuf, Arc<SimFile>>>>);

#[derive(Debug, Default)]
struct SimFile {
    current: Mutex<Vec<u8>>,
    synced: Mutex<Vec<u8>>,
    bytes_read: AtomicUsize,
}

#[derive(Debug)]
struct SimBackend(Arc<SimFile>);

impl StorageBackend for SimBackend {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.current.lock().unwrap().len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.bytes_read.fetch_add(out.len(), Ordering::Relaxed);
        let data = self.0.current.lock().unwrap();
        let start = offset as usize;
        let bytes = data
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(bytes);
        Ok(())
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.current.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> std::io::Result<()> {
        let now = self.0.current.lock().unwrap().clone();
        *self.0.synced.lock().unwrap() = now;
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut file = self.0.current.lock().unwrap();
        let end = offset as usize + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

impl StorageFactory for Disk {
    fn open(&self, path: &Path, _role: FileRole) -> std::io::Result<Box<dyn StorageBackend>> {
        let file = self
            .0
            .lock()
            .unwrap()
            .entry(path.to_path_buf())
            .or_default()
            .clone();
        Ok(Box::new(SimBackend(file)))
    }
}

impl Disk {
    /// The disk as a power loss now would leave it.
    fn after_power_loss(&self) -> Disk {
        let files = self.0.lock().unwrap();
        let copy = files
            .iter()
            .map(|(path, file)| {
                let synced = file.synced.lock().unwrap().clone();
                let file = SimFile {
                    current: Mutex::new(synced.clone()),
                    synced: Mutex::new(synced),
                    bytes_read: AtomicUsize::new(0),
                };
                (path.clone(), Arc::new(file))
            })
            .collect();
        Disk(Arc::new(Mutex::new(copy)))
    }

    fn bytes(&self, path: &Path) -> Vec<u8> {
        self.0.lock().unwrap()[path].current.lock().unwrap().clone()
    }

    /// Bytes read from `path` since the last call.
    fn take_bytes_read(&self, path: &Path) -> usize {
        self.0.lock().unwrap()[path].bytes_read.swap(0, Ordering::Relaxed)
    }

    fn set_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let files = self.0.lock().unwrap();
        *files[path].current.lock().unwrap() = bytes.clone();
        *files[path].synced.lock().unwrap() = bytes;
    }

    fn open(&self) -> SessionStore {
        let options = StoreOptions {
            redb: RedbOptions {
                storage: Arc::new(self.clone()),
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        };
        SessionStore::open_with(STORE, options).unwrap()
    }
}

const STORE: &str = "/sim/sessions.redb";

/// (offset, payload length) of each record in a journal's bytes, from
/// the first on while they follow each other.
fn records(journal: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(header) = parse_header(&journal[at..]) {
        found.push((at, header.len as usize));
        at += header.record_len() as usize;
    }
    found
}

/// A store with one session holding `n` messages, each a durable write,
/// and the disk as a power loss right after would leave it: every write
/// in the journal only. A checkpoint by age (a slow, loaded machine)
/// would put them in the database too, so such a run is done again.
fn crashed_with(n: usize) -> (Disk, uuid::Uuid) {
    let journal = journal_path(Path::new(STORE));
    for _ in 0..10 {
        let disk = Disk::default();
        let store = disk.open();
        // No user: a user's messages would have the idle writer index
        // them for search in records of its own between the appends.
        let id = store.create_session(None).unwrap();
        for i in 0..n {
            store
                .add_message(id, NewMessage::user(format!("message {i}")))
                .unwrap();
        }
        let crashed = disk.after_power_loss();
        drop(store);
        if records(&crashed.bytes(&journal)).len() == n + 1 {
            return (crashed, id);
        }
    }
    panic!("ten runs of {n} writes never left them all in the journal alone");
}

fn contents(store: &SessionStore, id: uuid::Uuid) -> Vec<String> {
    let session = store.get_session(id).unwrap().unwrap();
    session.messages.iter().map(|m| m.content.clone()).collect()
}

/// A folder holding a new store's database, opened by redb alone.
fn bare_database() -> (tempfile::TempDir, redb::Database) {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("s.redb");
    drop(SessionStore::open(&database).unwrap());
    let db = redb::Database::open(&database).unwrap();
    (dir, db)
}

/// The same appends (synced and not), a retraction and a new round,
/// on a real file: with its direct handle (where the file system allows
/// direct I/O), and with a handle whose writes fail, the file must hold
/// after each step the bytes it holds written through the page cache
/// alone. Each append writes whole blocks: zeros from the end of the
/// round to the end of its block, an earlier round's records after.
#[test]
fn appends_write_the_same_bytes_past_the_page_cache_as_through_it() {
    use super::{Journal, BLOCK};
    use crate::engine::redb::storage::FileStorage;

    let (dir, mut db) = bare_database();
    let payload = |i: usize| vec![i as u8 + 1; 150 + i * 37 % 400];
    // The file after each step, and where the journal ends then.
    let mut write = |name: &str, handle: fn(&Path) -> Option<std::fs::File>| {
        let path = dir.path().join(name);
        let file = FileStorage.open(&path, FileRole::Journal).unwrap();
        let direct = handle(&path);
        let used_direct = direct.is_some();
        let mut journal = Journal::recover(file, direct, path.clone(), 64 << 10, true, &mut db).unwrap();
        // The same rounds in the three files (drawn at random otherwise).
        journal.round = 1;
        let mut steps = Vec::new();
        let mut step = |journal: &Journal| steps.push((std::fs::read(&path).unwrap(), journal.end as usize));
        for i in 0..40 {
            journal.append(&payload(i), i % 3 != 0).unwrap();
            step(&journal);
        }
        journal.retract().unwrap();
        journal.append(&payload(40), true).unwrap();
        step(&journal);
        journal.reset();
        journal.round = 2;
        for i in 41..45 {
            journal.append(&payload(i), true).unwrap();
            step(&journal);
        }
        (steps, used_direct)
    };
    let (cached, _) = write("cached-journal", |_| None);
    let (direct, used_direct) = write("direct-journal", |path| FileStorage.open_direct(path));
    // Opened read-only: its writes fail, and the journal must write
    // through the backend instead.
    let (refused, _) = write("refused-journal", |path| std::fs::File::open(path).ok());
    for (n, ((cached, direct), refused)) in cached.iter().zip(&direct).zip(&refused).enumerate() {
        assert!(cached == direct, "step {n}: the direct appends wrote other bytes");
        assert!(
            cached == refused,
            "step {n}: other bytes after a refused direct write"
        );
    }
    if !used_direct {
        eprintln!("this file system refuses O_DIRECT: both journals went through the page cache");
    }
    let (first_round, _) = &cached[40];
    assert_eq!(
        records(first_round).len(),
        40,
        "40 appended, the last retracted, one more"
    );
    let (second_round, end) = cached.last().unwrap();
    assert_eq!(records(second_round).len(), 4, "the second round's records");
    assert!(*end < BLOCK, "the second round ends in the first block");
    assert!(
        second_round[*end..BLOCK].iter().all(|&b| b == 0),
        "zeros to the block's end"
    );
    assert_eq!(
        second_round[BLOCK..],
        first_round[BLOCK..],
        "the first round after that block"
    );
}

#[test]
fn acknowledged_writes_survive_a_power_loss_through_the_journal() {
    let (disk, id) = crashed_with(5);
    let journal = journal_path(Path::new(STORE));
    // One record for the session, one per message: the database alone
    // (no checkpoint yet) does not hold them.
    assert_eq!(records(&disk.bytes(&journal)).len(), 6);
    let store = disk.open();
    assert_eq!(contents(&store, id).len(), 5);
    assert_eq!(store.add_message(id, NewMessage::user("next")).unwrap(), 6);
    assert_eq!(contents(&store, id)[5], "next");
}

/// A journal a version before rounds were numbered left (records with
/// the shorter header, no `round`) replays, and the store goes on.
#[test]
fn a_journal_written_before_rounds_were_numbered_replays() {
    use super::{checksum, UNNUMBERED_HEADER};

    let (disk, id) = crashed_with(4);
    written_before_announcements(&disk);
    let journal = journal_path(Path::new(STORE));
    let bytes = disk.bytes(&journal);
    let mut old = vec![0u8; bytes.len()];
    let mut at = 0;
    for (start, len) in records(&bytes) {
        let header = parse_header(&bytes[start..]).unwrap();
        let payload = &bytes[start + HEADER..start + HEADER + len];
        let fields = [
            &header.len.to_le_bytes()[..],
            &checksum(header.len, header.lsn, header.synced, None, payload).to_le_bytes(),
            &header.lsn.to_le_bytes(),
            &header.synced.to_le_bytes(),
            payload,
        ];
        for field in fields {
            old[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        at = padded(at) as usize;
    }
    assert_eq!(
        at,
        records(&bytes)
            .iter()
            .map(|&(_, len)| padded(UNNUMBERED_HEADER + len) as usize)
            .sum::<usize>()
    );
    disk.set_bytes(&journal, old);
    let store = disk.open();
    assert_eq!(contents(&store, id).len(), 4);
    store.add_message(id, NewMessage::user("after")).unwrap();
    drop(store);
    assert_eq!(contents(&disk.after_power_loss().open(), id).len(), 5);
}

#[test]
fn records_past_the_size_the_journal_started_at_replay_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let id = store.create_session(None).unwrap();
    let journal_len = || std::fs::metadata(journal_path(store.path())).unwrap().len();
    assert_eq!(journal_len(), RedbOptions::MIN_JOURNAL_BYTES);
    // About 32 KB each that compression cannot shrink: the journal
    // doubles twice, and no checkpoint comes in this crate's tests.
    let sent: Vec<String> = (0..6)
        .map(|_| {
            (0..1000)
                .map(|_| uuid::Uuid::new_v4().simple().to_string())
                .collect()
        })
        .collect();
    for text in &sent {
        store.add_message(id, NewMessage::user(text)).unwrap();
    }
    assert!(
        journal_len() >= 4 * RedbOptions::MIN_JOURNAL_BYTES,
        "{}",
        journal_len()
    );
    let (_crashed, reopened) = store.reopened_after_a_crash();
    assert_eq!(contents(&reopened, id), sent);
    assert!(reopened.check(&mut |_, _| {}).unwrap().is_clean());
}

#[test]
fn a_torn_tail_ends_the_journal() {
    let (disk, id) = crashed_with(3);
    let journal = journal_path(Path::new(STORE));
    let mut bytes = disk.bytes(&journal);
    let (last, len) = *records(&bytes).last().unwrap();
    // The last record's second half never reached the disk.
    let cut = last + HEADER + len / 2;
    bytes[cut..last + HEADER + len].fill(0);
    disk.set_bytes(&journal, bytes);
    let store = disk.open();
    assert_eq!(contents(&store, id), ["message 0", "message 1"]);
}

#[test]
fn a_damaged_record_with_synced_records_after_it_fails_the_open() {
    let (disk, _) = crashed_with(4);
    let journal = journal_path(Path::new(STORE));
    let mut bytes = disk.bytes(&journal);
    // Record 0 creates the session; record 2 holds message 1; records 3
    // and 4 were written after it was synced.
    let (at, _) = records(&bytes)[2];
    bytes[at + HEADER] ^= 0x40;
    disk.set_bytes(&journal, bytes);
    let error = open_error(&disk);
    assert!(
        matches!(&error, crate::Error::Corrupt { why, .. } if why.contains("record 3 (at byte") && why.contains("but record 4 (at byte")),
        "{error}"
    );
}

/// Only records of the round being read vouch for a damaged one: the
/// same records, had another round (another process) written them, are
/// leftovers, and the journal ends at the damage.
#[test]
fn records_of_another_round_do_not_vouch_for_a_damaged_one() {
    use super::checksum;

    let (disk, id) = crashed_with(4);
    let journal = journal_path(Path::new(STORE));
    let mut bytes = disk.bytes(&journal);
    let found = records(&bytes);
    let (at, _) = found[2];
    bytes[at + HEADER] ^= 0x40;
    for &(start, len) in &found[3..] {
        let header = parse_header(&bytes[start..]).unwrap();
        let other = header.round.unwrap() ^ 1;
        let payload = &bytes[start + HEADER..start + HEADER + len];
        let crc = checksum(header.len, header.lsn, header.synced, Some(other), payload);
        bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        bytes[start + 24..start + 32].copy_from_slice(&other.to_le_bytes());
    }
    disk.set_bytes(&journal, bytes);
    let store = disk.open();
    assert_eq!(contents(&store, id), ["message 0"]);
}

fn open_error(disk: &Disk) -> crate::Error {
    let options = StoreOptions {
        redb: RedbOptions {
            storage: Arc::new(disk.clone()),
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    };
    match SessionStore::open_with(STORE, options) {
        Ok(_) => panic!("the damaged store opened"),
        Err(error) => error,
    }
}

#[test]
fn a_zeroed_record_with_synced_records_after_it_fails_the_open() {
    let (disk, _) = crashed_with(4);
    let journal = journal_path(Path::new(STORE));
    let mut bytes = disk.bytes(&journal);
    // Record 2's header is gone: the journal seems to end there.
    let (at, len) = records(&bytes)[1];
    bytes[at..at + HEADER + len].fill(0);
    disk.set_bytes(&journal, bytes);
    let error = open_error(&disk);
    assert!(
        matches!(&error, crate::Error::Corrupt { path, why } if path == &journal && why.contains("record 2 (at byte") && why.contains("but record 3 (at byte")),
        "{error}"
    );
}

#[test]
fn a_journal_cut_short_fails_the_open() {
    let (disk, _) = crashed_with(4);
    let journal = journal_path(Path::new(STORE));
    let bytes = disk.bytes(&journal);
    let (at, len) = records(&bytes)[3];
    let cuts = [at + HEADER + len / 2, at];
    // The database says how long the journal was.
    for cut in cuts {
        disk.set_bytes(&journal, bytes[..cut].to_vec());
        let error = open_error(&disk);
        assert!(
            matches!(&error, crate::Error::JournalLost { path, why } if path == &journal && why.contains("cut short")),
            "{cut}: {error}"
        );
    }
    // A database written before it said so: inside record 4; and right
    // after it, where nothing tells the journal's end from the cut but
    // the file's size.
    written_before_announcements(&disk);
    for (cut, expected) in cuts.into_iter().zip(["past the end of the file", "shorter than"]) {
        disk.set_bytes(&journal, bytes[..cut].to_vec());
        let error = open_error(&disk);
        assert!(
            matches!(&error, crate::Error::Corrupt { why, .. } if why.contains(expected) && why.contains("cut short")),
            "{cut}: {error}"
        );
    }
}

#[test]
fn a_journal_of_zeros_beside_a_crashed_store_is_refused() {
    let (disk, _) = crashed_with(2);
    let journal = journal_path(Path::new(STORE));
    let len = disk.bytes(&journal).len();
    disk.set_bytes(&journal, vec![0; len]);
    let error = open_error(&disk);
    assert!(
        matches!(&error, crate::Error::JournalLost { why, .. } if why.contains("zeros")),
        "{error}"
    );
    assert_eq!(
        disk.bytes(&journal),
        vec![0; len],
        "the refused open wrote the journal"
    );
}

/// Removes from the database what it says of its journal, as a version
/// before it said anything left it.
fn written_before_announcements(disk: &Disk) {
    let file = disk.0.lock().unwrap()[Path::new(STORE)].clone();
    let db = redb::Builder::new()
        .create_with_backend(SimBackend(file))
        .unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn.delete_table(super::OUTSTANDING).unwrap());
    txn.commit().unwrap();
}

#[test]
fn a_damaged_database_is_not_replayed_into() {
    // A message in the database (a clean close checkpoints it), then
    // appends to the same session through the journal alone.
    let disk = Disk::default();
    let store = disk.open();
    let id = store.create_session(None).unwrap();
    store
        .add_message(id, NewMessage::user("checkpointed message"))
        .unwrap();
    drop(store);
    let store = disk.open();
    store.add_message(id, NewMessage::user("journaled")).unwrap();
    let crashed = disk.after_power_loss();
    drop(store);
    let database = PathBuf::from(STORE);
    let mut bytes = crashed.bytes(&database);
    let text = b"checkpointed message";
    let places: Vec<usize> = (0..bytes.len() - text.len())
        .filter(|&at| &bytes[at..at + text.len()] == text)
        .collect();
    assert!(!places.is_empty());
    for at in places {
        bytes[at] ^= 1;
    }
    crashed.set_bytes(&database, bytes);
    // The replay would rewrite the session's page, damage included,
    // under a fresh checksum.
    let error = open_error(&crashed);
    assert!(
        matches!(&error, crate::Error::Corrupt { path, why } if path == &database && why.contains("were not replayed")),
        "{error}"
    );
}

#[test]
fn a_bad_record_followed_only_by_unsynced_ones_ends_the_journal_there() {
    // Relaxed writes: records appended without a sync. A crash may
    // leave a later one whole and an earlier one torn: neither was
    // acknowledged as durable, and the open replays up to the tear.
    let disk = Disk::default();
    let store = disk.open();
    let id = store.create_session(None).unwrap();
    let relaxed = store.with_durability(crate::Durability::Relaxed);
    for i in 0..3 {
        relaxed
            .add_message(id, NewMessage::user(format!("message {i}")))
            .unwrap();
    }
    let journal = journal_path(Path::new(STORE));
    let mut bytes = disk.bytes(&journal);
    let crashed = disk.after_power_loss();
    drop((relaxed, store));
    let (at, _) = records(&bytes)[2];
    bytes[at + HEADER] ^= 0x40;
    crashed.set_bytes(&journal, bytes);
    let store = crashed.open();
    assert_eq!(contents(&store, id), ["message 0"]);
}

/// A record of an earlier process, left past a torn one by a power
/// loss (relaxed appends reach the disk in any order) and not
/// replayed, must never read as the continuation of a later round,
/// even where that round ends on a block's end (no zeros to that
/// block's end follow its last record) and the leftover carries the
/// very lsn that comes next.
#[test]
fn a_record_left_by_a_crashed_process_never_continues_a_later_round() {
    use super::{Journal, BLOCK};
    use crate::engine::redb::storage::FileStorage;
    use crate::engine::redb::tables::{WriteTables, OPAQUE};
    use redb::{ReadableDatabase, ReadableTable};

    let (dir, mut db) = bare_database();
    let path = dir.path().join("s.redb-journal");
    let open = |db: &mut redb::Database| {
        let file = FileStorage.open(&path, FileRole::Journal).unwrap();
        Journal::recover(file, None, path.clone(), 64 << 10, true, db).unwrap()
    };
    // A change log putting `name` into `opaque`, of a record exactly
    // `size` bytes long.
    let log = |db: &redb::Database, name: &'static str, size: usize| {
        let mut value = size - HEADER;
        loop {
            let txn = db.begin_write().unwrap();
            let log = {
                let mut tables = WriteTables::open(&txn);
                tables.opaque.insert(name, vec![1u8; value].as_slice()).unwrap();
                tables.take_changes()
            };
            txn.abort().unwrap();
            match padded(HEADER + log.len()).cmp(&(size as u64)) {
                std::cmp::Ordering::Equal => return log,
                std::cmp::Ordering::Greater => value -= 1,
                std::cmp::Ordering::Less => panic!("no change log makes a record of {size} bytes"),
            }
        }
    };

    // The first process: a synced record, then two relaxed ones, the
    // third starting at the second block.
    let mut journal = open(&mut db);
    let first = journal.next_lsn();
    journal.append(&log(&db, "first", 128), true).unwrap();
    journal.append(&log(&db, "torn", BLOCK - 128), false).unwrap();
    journal.append(&log(&db, "left over", 256), false).unwrap();
    drop(journal);
    // The power loss kept the third and not the second.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[128 + HEADER + 10] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    // The second process replays the first record only, then appends
    // one record ending on the first block's end, where the third
    // record of the first process starts, with the lsn after its own.
    let mut journal = open(&mut db);
    assert_eq!(journal.next_lsn(), first + 1, "only the first record replays");
    journal.append(&log(&db, "second process", BLOCK), true).unwrap();
    drop(journal);

    // The third process replays the second's record and nothing else.
    let journal = open(&mut db);
    assert_eq!(
        journal.next_lsn(),
        first + 2,
        "a record the second process never wrote was replayed"
    );
    let txn = db.begin_read().unwrap();
    let opaque = txn.open_table(OPAQUE).unwrap();
    let names: Vec<String> = opaque
        .iter()
        .unwrap()
        .map(|entry| entry.unwrap().0.value().to_owned())
        .collect();
    assert!(names.contains(&"second process".to_owned()), "{names:?}");
    assert!(!names.contains(&"left over".to_owned()), "{names:?}");
}

#[test]
fn a_crash_between_the_checkpoint_and_the_journal_reset_replays_nothing_twice() {
    let (disk, id) = crashed_with(3);
    // This open replays the journal and commits it durably, but leaves
    // the journal's bytes as they were: a crash right now is a crash
    // between the durable redb commit and the reset.
    let store = disk.open();
    let again = disk.after_power_loss();
    drop(store);
    let journal = journal_path(Path::new(STORE));
    assert_eq!(records(&again.bytes(&journal)).len(), 4);
    let store = again.open();
    assert_eq!(contents(&store, id), ["message 0", "message 1", "message 2"]);
}

#[test]
fn a_record_replayed_over_a_state_that_holds_it_changes_nothing() {
    let (disk, id) = crashed_with(3);
    let journal = journal_path(Path::new(STORE));
    let bytes = disk.bytes(&journal);
    let payloads: Vec<Vec<u8>> = records(&bytes)
        .into_iter()
        .map(|(at, len)| bytes[at + HEADER..at + HEADER + len].to_vec())
        .collect();
    let store = disk.open();
    let before = store.get_session(id).unwrap().unwrap();
    // Every record again, over the state that holds them all.
    store
        .redb()
        .maintain(move |db| {
            let txn = db.begin_write()?;
            {
                let mut tables = crate::engine::redb::tables::WriteTables::open(&txn);
                for payload in &payloads {
                    tables.apply_changes(payload)?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.get_session(id).unwrap().unwrap(), before);
    assert!(store.check(&mut |_, _| {}).unwrap().is_clean());
    assert_eq!(store.add_message(id, NewMessage::user("next")).unwrap(), 4);
}

#[test]
fn a_clean_open_of_a_journal_never_written_reads_only_its_first_record() {
    let disk = Disk::default();
    let journal = journal_path(Path::new(STORE));
    drop(disk.open());
    // The first open found zeros, looked past them for damage, and
    // marked the journal as checkpointed.
    assert_eq!(records(&disk.bytes(&journal)).len(), 1);
    disk.take_bytes_read(&journal);
    drop(disk.open());
    let read = disk.take_bytes_read(&journal);
    assert!(read < 4096, "a clean open read {read} bytes of the journal");
}

/// `len` letters drawn at random: text LZ4 cannot shrink.
fn incompressible(len: usize) -> String {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

/// A store whose last round began with a record too large for the
/// smallest journal, then closed: the close cut the journal, leaving at
/// its start the head of that record, which runs past the cut. The next
/// open reads the journal's first record and no further: the close marked
/// the round checkpointed, as the marker of a journal never written does.
#[test]
fn a_clean_open_after_writes_reads_only_the_journal_s_first_record() {
    let disk = Disk::default();
    let journal = journal_path(Path::new(STORE));
    let id = disk.open().create_session(None).unwrap();
    let store = disk.open();
    for size in [90_000, 200] {
        store
            .add_message(id, NewMessage::user(incompressible(size)))
            .unwrap();
    }
    drop(store);
    let smallest = RedbOptions::MIN_JOURNAL_BYTES as usize;
    assert_eq!(disk.bytes(&journal).len(), smallest);
    disk.take_bytes_read(&journal);
    let store = disk.open();
    let read = disk.take_bytes_read(&journal);
    assert!(read < 4096, "a clean open read {read} bytes of the journal");
    assert_eq!(contents(&store, id).len(), 2);
    drop(store);
    // Every clean open after that alike.
    disk.take_bytes_read(&journal);
    drop(disk.open());
    let read = disk.take_bytes_read(&journal);
    assert!(read < 4096, "a clean open read {read} bytes of the journal");
}

/// Issue 19: a clean open reads what it uses of its files: redb's header,
/// allocator state and table of tables, the tables the open reads, the
/// journal's first record; here 28 KiB. Opening every table to check the
/// file's layout read the root page of each (44 KiB here; 32 KiB more in
/// the report's populated store, 114 KiB in all against a target of 64).
#[test]
fn a_clean_open_reads_no_table_it_does_not_use() {
    let disk = Disk::default();
    let journal = journal_path(Path::new(STORE));
    let store = disk.open();
    // Sessions without a user: nothing for the idle writer to index,
    // whose reads beside the open would count here too.
    for _ in 0..200 {
        let id = store.create_session(None).unwrap();
        let messages = (0..20).map(|i| NewMessage::user(incompressible(100 + i * 10)));
        store.add_messages(id, messages.collect()).unwrap();
    }
    drop(store);
    disk.take_bytes_read(Path::new(STORE));
    disk.take_bytes_read(&journal);
    let store = disk.open();
    let read = disk.take_bytes_read(Path::new(STORE)) + disk.take_bytes_read(&journal);
    drop(store);
    assert!(read <= 36 << 10, "a clean open read {read} bytes");
}

#[test]
fn the_checkpoint_marker_is_overwritten_by_the_first_append_and_never_replayed() {
    // The journal of a new store starts with the marker; the session
    // and its message, in the journal alone, replay over it.
    let (crashed, id) = crashed_with(1);
    assert_eq!(contents(&crashed.open(), id), ["message 0"]);
}

#[test]
fn a_caller_writing_in_a_loop_does_not_hold_off_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = SessionStore::open(&path)
        .unwrap()
        .with_durability(crate::Durability::Relaxed);
    let id = store.create_session(None).unwrap();
    for i in 0..2000 {
        store.add_message(id, NewMessage::user(format!("{i}"))).unwrap();
    }
    // A checkpoint follows every 256 records, before the next commit:
    // the journal has started over 7 times, its first record is recent.
    let journal = std::fs::read(journal_path(&path)).unwrap();
    let first_lsn = u64::from_le_bytes(journal[8..16].try_into().unwrap());
    assert!(first_lsn > 1792, "the journal starts at record {first_lsn}");
}

impl Journal {
    /// The journal at `path`, whose file `file` is, recovered into `db` as an
    /// open does it.
    pub fn recover(
        file: Box<dyn StorageBackend>,
        direct: Option<std::fs::File>,
        path: PathBuf,
        max: u64,
        verify: bool,
        db: &mut Database,
    ) -> Result<Self> {
        use crate::engine::redb::storage::{FileRole, FileStorage, StorageFactory};
        let look = FileStorage.open_read_only(&path, FileRole::Journal).ok();
        Journal::inspect(look, path, verify, db)?.open_journal(
            file,
            direct,
            max,
            db,
            crate::engine::redb::tables::replay_batches,
        )
    }
}
