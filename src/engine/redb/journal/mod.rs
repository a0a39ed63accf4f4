//! The write-ahead journal: how a durable write is acknowledged after one
//! `fdatasync` of an append, instead of a durable redb commit.
//!
//! Each commit of the writer appends one record, the change log of its
//! batch (see [`WriteTables::take_changes`]), and syncs it when the batch
//! holds a durable request; the batch is then committed to redb with
//! `Durability::None`, which readers see at once. Every so often (see
//! `writer.rs`) a durable redb commit makes everything so far durable in the
//! database, and the journal starts over from its first byte.
//!
//! Record, at an offset that is a multiple of 8: `len: u32 | crc32: u32 |
//! lsn: u64 | synced: u64 | round: u64 | payload (len bytes) | zeros to a
//! multiple of 8`, little endian, the checksum over `len`, `lsn`, `synced`,
//! `round` and the payload; `len` has its top bit set ([`ROUND_FLAG`]),
//! which records written before rounds were numbered lack (their header
//! ends before `round`; they are still read, so that a journal such a
//! version left replays). Log sequence numbers (lsn) follow each other
//! without gaps; each redb commit stores the lsn of its record in the
//! `meta` table; `synced` is the last lsn known to be on disk when the
//! record was written; `round` is drawn at random whenever a round starts
//! (an open, a checkpoint). On open, records are read from the start while
//! each is whole, checks out, carries the next lsn and the first record's
//! round; the first that does not (a torn tail, zeros, a record of an
//! earlier round of the journal) ends the journal. The round matters after
//! a crash: a power loss may keep a later record whole and lose the one
//! before it (unsynced pages reach the disk in any order); the open replays
//! up to the lost one and starts a round at byte 0 whose lsns follow the
//! replayed ones, so the record left past the tear may carry the very lsn
//! that round gives its next record, and lie just where the round ends:
//! only its round tells it from that round's own. Records
//! newer than the database's durable lsn are applied again. A change log
//! replays blindly (puts and removes of whole keys), so a record applied
//! twice changes nothing.
//!
//! A journal that holds no record at all (new, or written only by
//! unjournaled commits) gets a marker when opened: a record at byte 0 whose
//! lsn the database holds already, so that later opens see a checkpointed
//! round and skip the look for damage past its end.
//!
//! The database says durably when the journal may hold records it lacks
//! (see [`Journal::announce`]): a table of its own, `journal_outstanding`,
//! holds the round that may hold them and the journal's length then. The
//! writer announces the current round in a durable commit of its own before
//! the first record after an open or maintenance, and every durable commit
//! after which the journal starts over (a checkpoint, a batch too big for
//! the journal) announces the next round; the last checkpoint of a clean
//! close, and the replay of an open, remove it. While it is there, the
//! open refuses ([`Error::JournalLost`]) a journal that is missing, shorter
//! than then, all zeros at its start, or starting with a newer record of
//! another round: the store crashed, and its journal was removed, cut,
//! zeroed or taken from another run. A store closed cleanly needs no
//! journal: one is created. The refusal changes no file: the journal is
//! read through [`StorageFactory::open_read_only`](crate::redb_engine::StorageFactory::open_read_only)
//! before anything is written, and the database's writes while it opens
//! are held in memory until the open has decided (`DatabaseFile`).
//!
//! A record that ends the journal by failing its checksum is a torn tail
//! after a crash, unless a later valid record says (by its `synced`) that
//! the failing one had been on disk: then it was damaged afterwards, the
//! records after it hold acknowledged writes, and the open fails with
//! [`Error::Corrupt`] rather than drop them.
//!
//! An append writes whole blocks of [`BLOCK`] bytes from the start of the
//! block the journal ends in: the bytes of that block before the end (kept
//! in memory), the record, then zeros to the block's end. The file holds
//! the same bytes whichever way they are written, and a block is never
//! written in part; so a record that is synced at once can be written past
//! the page cache (`O_DIRECT`, when the storage offers it: see
//! [`StorageFactory::open_direct`](crate::redb_engine::StorageFactory::open_direct)),
//! which spares its sync the copying through the cache, and a record that
//! is not (relaxed) overwrites whole cached pages, so the kernel never has
//! to read a page the direct write left uncached back in before changing
//! it. The zeros overwrite only what lies past the end of the current
//! round: zeros, or records of an earlier round, which never replay.
//!
//! The file is sized to the load. A new journal is written with zeros to
//! [`StoreOptions::MIN_JOURNAL_BYTES`](crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES);
//! a record that does not fit in what is left first doubles the file (as
//! often as it takes), up to
//! [`RedbOptions::max_journal_bytes`](crate::redb_engine::RedbOptions::max_journal_bytes):
//! the new part is written with zeros and synced, its new length with it,
//! before any record is written there, so that an append never has to
//! allocate (its `fdatasync` writes only the record's pages) and a power
//! cut during the growth leaves records only where the file was already
//! durable. A batch whose record does not fit even then is committed
//! durably to redb instead (`writer.rs`), which empties the journal. An
//! empty journal (after a checkpoint) is halved when [`SHRINK_AFTER`]
//! rounds in a row used at most a quarter of it, and cut to the smallest
//! size when the store closes: the bytes cut hold only records the
//! database holds durably. An open finds the journal at the size it was
//! written with, replays it as it is, then keeps that size, cut to the
//! largest allowed when longer.
//!
//! By concern: `format.rs` (a record's bytes), `append.rs` (writing
//! records), `reader.rs` (reading them back), `recovery.rs` (the open:
//! what to replay, handed up as batches to the caller's [`ApplyBatches`],
//! which knows the tables), `sizing.rs` (growing and shrinking the file),
//! `announce.rs` (what the database says of its journal).

use std::path::{Path, PathBuf};

use redb::{Database, Durability as RedbDurability, StorageBackend, TableDefinition, WriteTransaction};

use crate::engine::redb::writer::set_durability;
use crate::error::{Error, Result};

mod announce;
mod append;
mod format;
mod reader;
mod recovery;
mod sizing;
#[cfg(test)]
mod tests;
use announce::*;
use format::*;
use reader::*;

/// What an open does with the batches the journal hands up: applies each
/// (a batch's change log, in the order written) in `txn`, and records
/// `last`, the lsn the database then holds.
pub(crate) type ApplyBatches = fn(&WriteTransaction, &mut dyn Iterator<Item = &[u8]>, u64) -> Result<()>;

/// Appends write whole blocks of this many bytes, at multiples of it: the
/// page size, and a multiple of every disk's logical block, as direct I/O
/// asks of offsets, lengths and buffers.
const BLOCK: usize = 4096;

/// The database beside the journal at `journal` (see [`journal_path`]).
pub(crate) fn database_path(journal: &Path) -> PathBuf {
    let name = journal
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    journal.with_file_name(name.strip_suffix("-journal").unwrap_or(&name))
}

/// The journal file beside the database at `database`.
pub(crate) fn journal_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push("-journal");
    database.with_file_name(name)
}

pub(crate) struct Journal {
    file: Box<dyn StorageBackend>,
    /// The same file opened for direct I/O, for the records synced at once.
    direct: Option<std::fs::File>,
    /// The bytes from the start of the block `end` lies in up to `end`.
    tail: Vec<u8>,
    /// The blocks of the append under way, kept from one append to the
    /// next (one more block than they need, to align them in it).
    blocks: Vec<u8>,
    path: PathBuf,
    /// The file's size: records are written below it.
    capacity: u64,
    /// The size the file may grow to.
    max: u64,
    /// Rounds in a row, up to the last reset, that used at most a quarter
    /// of a journal larger than the smallest.
    quiet_rounds: u32,
    /// Where the next record goes.
    end: u64,
    /// The lsn of the next record.
    next_lsn: u64,
    /// Offset of the last record appended, for [`Journal::retract`].
    last_start: Option<u64>,
    /// Records were appended without a sync since the last one.
    unsynced: bool,
    /// The last lsn known to be on disk (in the journal or the database).
    synced: u64,
    /// The current round's number, in each of its records.
    round: u64,
    /// The round the next [`Journal::reset`] starts, drawn ahead so that
    /// the checkpoint before it can announce it.
    upcoming: u64,
    /// What the database says durably of the journal.
    announced: Announced,
    /// The file starts with the checkpoint marker, and nothing was
    /// appended since it was written or found.
    marked: bool,
}

impl Journal {
    fn new(file: Box<dyn StorageBackend>, direct: Option<std::fs::File>, path: PathBuf) -> Self {
        Journal {
            file,
            direct,
            tail: Vec::new(),
            blocks: Vec::new(),
            path,
            capacity: 0,
            // Set by `Recovery::open_journal`; `inspect` only reads.
            max: crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES,
            quiet_rounds: 0,
            end: 0,
            next_lsn: 0,
            last_start: None,
            unsynced: false,
            synced: 0,
            round: new_round(),
            upcoming: new_round(),
            announced: Announced::Nothing,
            marked: false,
        }
    }

    /// Starts over from the first byte: the database holds everything
    /// appended so far durably. Old records stay behind the new ones, but
    /// their lsn does not follow, so they never replay.
    ///
    /// Follows a durable commit that announced the next round (see
    /// [`Journal::announce_next`]): records may be appended at once.
    pub fn reset(&mut self) {
        self.quiet_rounds = if self.round_is_oversize() {
            self.quiet_rounds + 1
        } else {
            0
        };
        self.end = 0;
        self.round = std::mem::replace(&mut self.upcoming, new_round());
        self.announced = Announced::Current;
        self.tail.clear();
        self.unsynced = false;
        self.synced = self.last_appended();
        self.last_start = None;
    }

    fn io(&self, action: &'static str, error: std::io::Error) -> Error {
        Error::io(action, &self.path, error)
    }
}

/// The lsn of the last record the database holds durably (0: none).
fn durable_lsn(db: &Database) -> Result<u64> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    crate::engine::redb::tables::journal_lsn(&txn)
}
