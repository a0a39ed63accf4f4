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
//! read through [`StorageFactory::open_read_only`](crate::StorageFactory::open_read_only)
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
//! [`StorageFactory::open_direct`](crate::StorageFactory::open_direct)),
//! which spares its sync the copying through the cache, and a record that
//! is not (relaxed) overwrites whole cached pages, so the kernel never has
//! to read a page the direct write left uncached back in before changing
//! it. The zeros overwrite only what lies past the end of the current
//! round: zeros, or records of an earlier round, which never replay.
//!
//! The file is sized to the load. A new journal is written with zeros to
//! [`StoreOptions::MIN_JOURNAL_BYTES`](crate::StoreOptions::MIN_JOURNAL_BYTES);
//! a record that does not fit in what is left first doubles the file (as
//! often as it takes), up to
//! [`StoreOptions::max_journal_bytes`](crate::StoreOptions::max_journal_bytes):
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

use std::path::{Path, PathBuf};

use redb::{Database, Durability as RedbDurability, StorageBackend, TableDefinition, WriteTransaction};

use crate::engine::redb::tables::WriteTables;
use crate::engine::redb::writer::set_durability;
use crate::error::{Error, Result};

/// A record's header: `len`, `crc32`, `lsn`, `synced`, `round`.
const HEADER: usize = 32;
/// The header of a record written before rounds were numbered: no `round`.
const UNNUMBERED_HEADER: usize = 24;
/// Set in `len` of a record whose header carries its round.
const ROUND_FLAG: u32 = 1 << 31;

/// A record's round; `None` for a record written before rounds were
/// numbered.
type Round = Option<u64>;
/// Records start at multiples of this.
const ALIGN: u64 = 8;
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
}

/// What the database says durably of the journal (see [`Journal::announce`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Announced {
    /// Nothing: it needs no journal.
    Nothing,
    /// That the current round may hold records it lacks: records may be
    /// appended.
    Current,
    /// Maybe another round (maintenance may have replaced the file, a crash
    /// left one): the next record needs an announcement first.
    Unknown,
}

/// The database's entry that says its journal may hold records it lacks:
/// written by a durable commit before a round's first record, absent once
/// the store closed cleanly. A table of its own, which copies of the store
/// (backups, compaction) leave out: a copy needs no journal.
const OUTSTANDING: TableDefinition<&str, &[u8]> = TableDefinition::new("journal_outstanding");
/// Its one key: the round (u64) and the journal's length (u64) then.
const OUTSTANDING_ROUND: &str = "round";

/// The round the database says may hold records it lacks, and the journal's
/// length when it said so (the file is never shorter while it may).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outstanding {
    round: u64,
    len: u64,
}

/// A journal looked at, before the open decides to go on: the records to
/// replay into the database.
pub(crate) struct Recovery {
    path: PathBuf,
    records: Vec<Replayed>,
    /// The file starts with zeros (no record, no marker), or is missing.
    starts_empty: bool,
    /// The database says a round may hold records it lacks.
    announced: bool,
}

/// What lies at an offset of the journal.
enum Slot {
    /// A whole record whose checksum holds.
    Record {
        lsn: u64,
        round: Round,
        payload: Vec<u8>,
        next: u64,
    },
    /// Zeros, or the end of the file.
    Empty,
    /// Bytes that are not a whole, valid record.
    Bad,
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
            max: crate::StoreOptions::MIN_JOURNAL_BYTES,
            quiet_rounds: 0,
            end: 0,
            next_lsn: 0,
            last_start: None,
            unsynced: false,
            synced: 0,
            round: new_round(),
            upcoming: new_round(),
            announced: Announced::Nothing,
        }
    }

    /// The journal at `path`, whose file `file` is, recovered into `db` as an
    /// open does it.
    #[cfg(test)]
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
        Journal::inspect(look, path, verify, db)?.open_journal(file, direct, max, db)
    }

    /// Reads the journal in `file` (`None`: there is none), opened to be
    /// read only, and finds the records newer than `db`'s durable lsn;
    /// writes nothing anywhere but in `db`, whose writes are held (see
    /// `DatabaseFile`).
    ///
    /// Refuses ([`Error::JournalLost`]) when the database says a round of
    /// the journal may hold records it lacks (the store was not closed
    /// cleanly) and the journal is missing, shorter than the database saw
    /// it, starts with zeros, or starts with a record of another round
    /// newer than the database: a journal removed, cut, zeroed, or taken
    /// from another run. Fails ([`Error::Corrupt`]) where the journal shows
    /// damage (see [`Journal::check_end`]).
    ///
    /// With `verify`, when there are records to replay (the store crashed),
    /// redb's checksums of the whole database are verified: the replay
    /// rewrites pages, and a damaged page it rewrote would get a fresh
    /// checksum over the damage (see `StoreOptions::verify_after_crash`).
    pub fn inspect(
        file: Option<Box<dyn StorageBackend>>,
        path: PathBuf,
        verify: bool,
        db: &mut Database,
    ) -> Result<Recovery> {
        let outstanding = outstanding(db)?;
        let lost = |why: String| {
            Err(Error::JournalLost {
                path: path.clone(),
                why,
            })
        };
        let written = match &file {
            Some(file) => file.len().map_err(|e| Error::io("read the size of", &path, e))?,
            None => 0,
        };
        let (Some(file), true) = (file, written > 0) else {
            if outstanding.is_some() {
                return lost(
                    "the journal is missing (or empty), and the store was not closed cleanly: it \
                     may hold writes the database lacks"
                        .into(),
                );
            }
            return Ok(Recovery {
                path,
                records: Vec::new(),
                starts_empty: true,
                announced: false,
            });
        };
        if let Some(outstanding) = outstanding {
            if written < outstanding.len {
                return lost(format!(
                    "the journal is {written} bytes long, cut short of the {} bytes it had when \
                     the store last wrote it, and the store was not closed cleanly",
                    outstanding.len
                ));
            }
        }
        let mut journal = Journal::new(file, None, path);
        journal.capacity = written;
        let durable = durable_lsn(db)?;
        if let Some(outstanding) = outstanding {
            journal.check_round(outstanding.round, durable)?;
        }
        let (records, starts_empty) = journal.read_after(durable, written)?;
        if verify && !records.is_empty() {
            tracing::info!(
                path = %journal.path.display(),
                "the store crashed: verifying every page of the database before the replay \
                 (reads the whole file; StoreOptions::verify_after_crash)"
            );
            journal.verify_database(db)?;
        }
        Ok(Recovery {
            path: journal.path,
            records,
            starts_empty,
            announced: outstanding.is_some(),
        })
    }

    /// Fails unless the journal's first record is of `round`, the round the
    /// database says may hold records newer than `durable`, or one the
    /// database holds (left by an earlier round: the announced one wrote
    /// nothing). A damaged first record is left to [`Journal::read_after`].
    fn check_round(&self, round: u64, durable: u64) -> Result<()> {
        let why = match self.read_slot(0)? {
            Slot::Record {
                lsn, round: found, ..
            } if lsn > durable && found != Some(round) => format!(
                "the journal is another run's: its first record ({lsn}) is of another round than \
                 the one the database says holds its latest writes, and the store was not closed \
                 cleanly"
            ),
            Slot::Empty => "the journal holds nothing (zeros from its start), and the store was not \
                            closed cleanly: it may hold writes the database lacks"
                .to_owned(),
            Slot::Record { .. } | Slot::Bad => return Ok(()),
        };
        Err(Error::JournalLost {
            path: self.path.clone(),
            why,
        })
    }

    /// Zero-fills the file, `len` bytes long, to `size` when shorter; its
    /// size.
    fn grow_to(&self, size: u64, len: u64) -> Result<u64> {
        if len >= size {
            return Ok(len);
        }
        let zeros = vec![0u8; (size - len).min(1 << 20) as usize];
        let mut at = len;
        while at < size {
            let n = (size - at).min(zeros.len() as u64);
            self.file
                .write(at, &zeros[..n as usize])
                .map_err(|e| self.io("fill", e))?;
            at += n;
        }
        self.file.sync_data().map_err(|e| self.io("sync", e))?;
        Ok(size)
    }

    /// Cuts the file to `size` when longer. Only while the journal is
    /// empty (replayed, or reset after a checkpoint): the database then
    /// holds every record durably, and the records cut off are never
    /// needed. No record is written past `size` from then on, even when
    /// the cut fails.
    fn cut_to(&mut self, size: u64) -> Result<()> {
        if self.capacity > size {
            self.capacity = size;
            self.file.set_len(size).map_err(|e| self.io("shrink", e))?;
            self.file.sync_data().map_err(|e| self.io("sync", e))?;
        }
        Ok(())
    }

    /// True when a record of `payload_len` bytes fits in what is left,
    /// once the file is grown to make room for it: doubled as often as it
    /// takes, up to the largest size allowed, zero-filled and synced
    /// before any record is written there. A failed growth is logged and
    /// leaves the journal as it was: the record does not fit.
    pub fn make_room(&mut self, payload_len: usize) -> bool {
        if u32::try_from(payload_len).is_err() {
            return false;
        }
        let needed = self.end + padded(HEADER + payload_len);
        if needed <= self.capacity {
            return true;
        }
        if needed > self.max {
            return false;
        }
        let mut size = self.capacity.max(crate::StoreOptions::MIN_JOURNAL_BYTES);
        while size < needed {
            size = size.saturating_mul(2);
        }
        let size = size.min(self.max);
        match self.grow_to(size, self.capacity) {
            Ok(size) => {
                self.capacity = size;
                // The growth's sync made every record appended so far
                // durable as well.
                self.unsynced = false;
                self.synced = self.last_appended();
                true
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "the journal could not grow; the batch is committed to the database instead");
                false
            }
        }
    }

    /// Halves the journal, emptied by a checkpoint, when [`SHRINK_AFTER`]
    /// rounds in a row used at most a quarter of it. A failed cut is
    /// logged: the journal goes on, no larger than before.
    pub fn shrink_if_oversize(&mut self) {
        if self.quiet_rounds >= SHRINK_AFTER {
            self.quiet_rounds = 0;
            self.shrink_to((self.capacity / 2).max(crate::StoreOptions::MIN_JOURNAL_BYTES));
        }
    }

    /// Cuts the journal to the smallest size once the store's last commit
    /// holds every record durably and says the database needs the journal
    /// no more (the store closes): a store at rest takes little room.
    pub fn shrink_to_smallest(&mut self) {
        if let Err(error) = self.cut_to(crate::StoreOptions::MIN_JOURNAL_BYTES) {
            tracing::warn!(path = %self.path.display(), %error, "the journal could not be made smaller");
        }
    }

    fn shrink_to(&mut self, size: u64) {
        if !self.is_empty() {
            return;
        }
        if let Err(error) = self.cut_to(size) {
            tracing::warn!(path = %self.path.display(), %error, "the journal could not be made smaller");
        }
    }

    /// Fails unless redb's checksums of every page of `db` hold.
    fn verify_database(&self, db: &mut Database) -> Result<()> {
        let why = match db.check_integrity() {
            Ok(true) => return Ok(()),
            Ok(false) => "its page checksums fail (redb rolled it back to its last good commit)".to_owned(),
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why))) => why,
            Err(other) => return Err(other.into()),
        };
        Err(Error::Corrupt {
            path: database_path(&self.path),
            why: format!(
                "the database is damaged ({why}); the journal's records, which a crash left to \
                 replay into it, were not replayed"
            ),
        })
    }

    /// The records of the current round with lsn above `durable`, in order,
    /// and whether the file starts with zeros (no record, no marker).
    /// `written`: the file's size before [`Journal::grow_to`] filled it.
    fn read_after(&self, durable: u64, written: u64) -> Result<(Vec<Replayed>, bool)> {
        let mut records = Vec::new();
        let mut at = 0u64;
        let mut expected: Option<u64> = None;
        // The round of the record at byte 0, which the others must carry.
        let mut round: Option<Round> = None;
        // A round whose first record the database holds was wholly
        // checkpointed (a checkpoint starts the next round at byte 0): its
        // end needs no look for damage, which spares a clean open reading
        // the whole file.
        let mut checkpointed = false;
        let check_end = |at, wanted, round, records: &Vec<_>, checkpointed| {
            if checkpointed && records.is_empty() {
                return Ok(());
            }
            self.check_end(at, wanted, round, durable, written, !records.is_empty())
        };
        loop {
            let wanted = expected.unwrap_or(durable + 1);
            let (lsn, payload, next) = match self.read_slot(at)? {
                Slot::Record {
                    lsn,
                    round: found,
                    payload,
                    next,
                } if round.is_none_or(|round| round == found) => {
                    round = Some(found);
                    (lsn, payload, next)
                }
                Slot::Empty if at == 0 => {
                    check_end(at, wanted, round, &records, checkpointed)?;
                    return Ok((records, true));
                }
                // A record of another round is where this one ends.
                Slot::Record { .. } | Slot::Empty | Slot::Bad => {
                    check_end(at, wanted, round, &records, checkpointed)?;
                    break;
                }
            };
            checkpointed |= at == 0 && lsn <= durable;
            match expected {
                Some(lsn_wanted) if lsn != lsn_wanted => {
                    check_end(at, wanted, round, &records, checkpointed)?;
                    break;
                }
                None if lsn > durable + 1 => {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        why: format!(
                            "the journal starts at record {lsn} but the database holds only up to \
                             {durable}: records are missing (is this the journal of another copy \
                             of the store?)"
                        ),
                    })
                }
                _ => {}
            }
            if lsn > durable {
                records.push((lsn, payload));
            }
            expected = Some(lsn + 1);
            at = next;
        }
        Ok((records, false))
    }

    /// Writes, at the start of a journal that holds nothing, a record the
    /// database holds already (the last durable lsn, never replayed): the
    /// next open then knows the round was checkpointed and need not read
    /// past the first record looking for damage (a MiB of zeros, otherwise,
    /// on every open of a store whose journal was never written). The
    /// first append overwrites it.
    fn mark_checkpointed(&mut self) -> Result<()> {
        let lsn = self.last_appended();
        let record = record(lsn, lsn, self.round, CHECKPOINT_MARKER)?;
        self.file
            .write(0, &record)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io("mark the start of", e))
    }

    /// The current round of the journal ended at `at`, where record `lsn`
    /// belonged (zeros, an invalid record, or a record of an earlier
    /// round). That is a torn tail, or the end of what was written, unless
    /// the file shows it was damaged:
    /// - the record there runs past the end of the file as it was found
    ///   (`written` bytes): the store writes records only inside a file
    ///   already filled to its size, so the file was cut short;
    /// - the file is shorter than the smallest journal the store makes, yet
    ///   holds records to replay (`replaying`): cut short too;
    /// - a valid record after `at`, newer than the database (`durable`),
    ///   says `lsn` had been synced before it was written: `lsn` was on
    ///   disk and was damaged afterwards, and the records after it hold
    ///   acknowledged writes.
    ///
    /// Then the open fails with [`Error::Corrupt`] rather than drop them.
    fn check_end(
        &self,
        at: u64,
        lsn: u64,
        round: Option<Round>,
        durable: u64,
        written: u64,
        replaying: bool,
    ) -> Result<()> {
        let damaged = |why: String| {
            Err(Error::Corrupt {
                path: self.path.clone(),
                why: format!("{why}: acknowledged writes would be lost"),
            })
        };
        if lsn > durable {
            if let Some(header) = self.read_header(at)? {
                let end = at + header.record_len();
                if header.lsn == lsn && end > written {
                    return damaged(format!(
                        "journal record {lsn} (at byte {at}) runs to byte {end}, past the end of \
                         the file at byte {written}: the file was cut short (or the record's \
                         length damaged)"
                    ));
                }
            }
        }
        let smallest = crate::StoreOptions::MIN_JOURNAL_BYTES;
        if replaying && written < smallest {
            return damaged(format!(
                "the journal is {written} bytes long, shorter than the smallest the store \
                 writes ({smallest}), yet holds records to replay: the file was cut short"
            ));
        }
        if let Some((found, offset)) = self.find_synced_after(at + ALIGN, lsn, round, durable, written)? {
            return damaged(format!(
                "journal record {lsn} (at byte {at}) is damaged or missing, but record {found} (at \
                 byte {offset}) after it was written once {lsn} was on disk"
            ));
        }
        Ok(())
    }

    /// The first valid record from `start` on (up to `written`, or to the
    /// first MiB of zeros) that is newer than `durable`, was written once
    /// `lsn` was synced and belongs to `round` (the round being read, when
    /// its first record could be read): its lsn and offset.
    fn find_synced_after(
        &self,
        start: u64,
        lsn: u64,
        round: Option<Round>,
        durable: u64,
        written: u64,
    ) -> Result<Option<(u64, u64)>> {
        const CHUNK: u64 = 1 << 20;
        let end = written.min(self.capacity);
        // At most one record per header's worth of journal.
        let most_records = self.capacity / UNNUMBERED_HEADER as u64;
        let mut chunk = vec![0u8; (CHUNK as usize) + HEADER];
        let mut from = start;
        while from + HEADER as u64 <= end {
            let n = (end - from).min(CHUNK + HEADER as u64) as usize;
            self.file
                .read(from, &mut chunk[..n])
                .map_err(|e| self.io("read", e))?;
            let headers = n.saturating_sub(UNNUMBERED_HEADER - 1).min(CHUNK as usize);
            // A round is written from byte 0 on without gaps, so the
            // records damage hides follow it closely; a MiB of zeros is
            // the part of the file no round reached (a fresh journal is
            // all zeros, and is not read to its end on every open).
            if chunk[..n].iter().all(|&byte| byte == 0) {
                break;
            }
            for offset in (0..headers).step_by(ALIGN as usize) {
                let Some(header) = parse_header(&chunk[offset..n]) else {
                    continue;
                };
                // A cheap filter before the checksum reads the payload:
                // anything else is leftover bytes of other rounds.
                let found = header.lsn;
                if found <= durable || found < lsn || found > lsn.saturating_add(most_records) {
                    continue;
                }
                if header.synced < lsn || header.synced >= found {
                    continue;
                }
                if round.is_some_and(|round| round != header.round) {
                    continue;
                }
                let at = from + offset as u64;
                if at + header.record_len() > end {
                    continue;
                }
                if self.read_payload(at, &header)?.is_some() {
                    return Ok(Some((found, at)));
                }
            }
            from += CHUNK;
        }
        Ok(None)
    }

    /// What lies at `at`.
    fn read_slot(&self, at: u64) -> Result<Slot> {
        let Some(header) = self.read_header(at)? else {
            return Ok(Slot::Empty);
        };
        let next = at + header.record_len();
        if next > self.capacity {
            return Ok(Slot::Bad);
        }
        Ok(match self.read_payload(at, &header)? {
            Some(payload) => Slot::Record {
                lsn: header.lsn,
                round: header.round,
                payload,
                next,
            },
            None => Slot::Bad,
        })
    }

    /// The header of a record at `at`; `None` for zeros, or too little of
    /// the file left for one.
    fn read_header(&self, at: u64) -> Result<Option<Header>> {
        let room = self.capacity.saturating_sub(at).min(HEADER as u64) as usize;
        let mut bytes = [0u8; HEADER];
        if room >= UNNUMBERED_HEADER {
            self.file
                .read(at, &mut bytes[..room])
                .map_err(|e| self.io("read", e))?;
        }
        Ok(parse_header(&bytes[..room]))
    }

    /// The payload of the record `header` begins at `at`; `None` when its
    /// checksum fails.
    fn read_payload(&self, at: u64, header: &Header) -> Result<Option<Vec<u8>>> {
        let mut payload = vec![0u8; header.len as usize];
        self.file
            .read(at + header.size() as u64, &mut payload)
            .map_err(|e| self.io("read", e))?;
        Ok(header.checks(&payload).then_some(payload))
    }

    /// The lsn the next record gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The size the journal may grow to.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// True when records were appended since the last [`Journal::reset`].
    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Bytes appended since the last [`Journal::reset`].
    pub fn used(&self) -> u64 {
        self.end
    }

    /// Appends `payload` as record [`Journal::next_lsn`]; with `sync`, returns
    /// once it is on disk. The caller made room for it ([`Journal::make_room`]).
    pub fn append(&mut self, payload: &[u8], sync: bool) -> Result<u64> {
        let lsn = self.next_lsn;
        let record = record(lsn, self.synced, self.round, payload)?;
        // Past the page cache only when no record written through it waits
        // for this sync: the kernel would write those pages out before the
        // direct write (one more trip to the disk), where one sync of them
        // all is enough.
        self.write_blocks(&record, sync && !self.unsynced)
            .map_err(|e| self.io("append to", e))?;
        self.last_start = Some(self.end);
        self.end += record.len() as u64;
        self.next_lsn += 1;
        self.unsynced = true;
        if sync {
            self.sync()?;
        }
        Ok(lsn)
    }

    /// Writes `record` at `end` as whole blocks (see the module's
    /// documentation): past the page cache when `direct` is asked and the
    /// file was opened for it, else through the storage backend. Keeps
    /// [`Journal::tail`] for the next append; `end` is left to the caller.
    fn write_blocks(&mut self, record: &[u8], direct: bool) -> std::io::Result<()> {
        let start = self.end - self.tail.len() as u64;
        let used = self.tail.len() + record.len();
        let mut len = used.div_ceil(BLOCK) * BLOCK;
        if start + len as u64 > self.capacity {
            // The file ends inside the last block (a journal size that is
            // not a multiple of it): the bytes alone, through the backend.
            len = used;
        }
        // Direct I/O wants the buffer aligned too: a block more than needed,
        // used from its first aligned byte.
        if self.blocks.len() < len + BLOCK {
            self.blocks.resize(len + BLOCK, 0);
        }
        let at = self.blocks.as_ptr().align_offset(BLOCK).min(BLOCK);
        let blocks = &mut self.blocks[at..at + len];
        blocks[..self.tail.len()].copy_from_slice(&self.tail);
        blocks[self.tail.len()..used].copy_from_slice(record);
        blocks[used..].fill(0);
        let whole = at < BLOCK && len % BLOCK == 0;
        let direct_write = self
            .direct
            .as_ref()
            .filter(|_| direct && whole)
            .map(|file| write_direct(file, blocks, start));
        match direct_write {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                // Direct writes refused (a file system that opened the file
                // so but wants larger blocks, or a failing disk): the
                // backend's write, and its sync, say whether this one
                // reaches the disk.
                tracing::warn!(path = %self.path.display(), %error, "a direct write failed; the journal goes through the page cache from now on");
                self.direct = None;
                self.file.write(start, blocks)?;
            }
            None => self.file.write(start, blocks)?,
        }
        let kept = used % BLOCK;
        self.tail.clear();
        self.tail.extend_from_slice(&blocks[used - kept..used]);
        Ok(())
    }

    /// The lsn of the last record appended (or replayed).
    fn last_appended(&self) -> u64 {
        self.next_lsn - 1
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file.sync_data().map_err(|e| self.io("sync", e))?;
            self.unsynced = false;
            self.synced = self.last_appended();
        }
        Ok(())
    }

    /// Undoes the last append (its commit failed): its header is zeroed and
    /// synced, so that it never replays.
    pub fn retract(&mut self) -> Result<()> {
        let Some(start) = self.last_start.take() else {
            return Ok(());
        };
        self.file
            .write(start, &[0u8; HEADER])
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io("retract a record of", e))?;
        self.end = start;
        self.next_lsn -= 1;
        // What the block `start` lies in holds before it, read back (a
        // retraction is rare: a commit failed).
        let block_start = start - start % BLOCK as u64;
        let mut tail = vec![0u8; (start - block_start) as usize];
        self.file
            .read(block_start, &mut tail)
            .map_err(|e| self.io("read back", e))?;
        self.tail = tail;
        Ok(())
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

    /// True when the database says durably that the current round may hold
    /// records it lacks: only then may one be appended.
    pub fn is_announced(&self) -> bool {
        self.announced == Announced::Current
    }

    /// Says durably, in a commit of its own, that the current round may
    /// hold records the database lacks, and the journal's length: from then
    /// on, until the store closes cleanly, an open refuses to go on without
    /// the journal as it is ([`Journal::inspect`]).
    pub fn announce(&mut self, db: &Database) -> Result<()> {
        let mut txn = db.begin_write()?;
        set_durability(&mut txn, RedbDurability::Immediate)?;
        let (round, len) = (self.round, self.capacity);
        write_outstanding(&txn, Some(Outstanding { round, len }))?;
        txn.commit()?;
        self.announced = Announced::Current;
        Ok(())
    }

    /// Writes into `txn`, a durable commit after which the journal starts
    /// over ([`Journal::reset`]), that the next round may hold records.
    ///
    /// Until that reset, what the database says is not known: a commit that
    /// fails (a failed sync) may still have reached the disk, and the
    /// current round's next record then needs an announcement of its own.
    ///
    /// The length said is the one the journal will have once reset (halved
    /// when long oversize, see [`Journal::shrink_if_oversize`]): a shrink
    /// after the commit must not make the journal shorter than the
    /// database says it is.
    pub fn announce_next(&mut self, txn: &WriteTransaction) -> Result<()> {
        self.announced = Announced::Unknown;
        write_outstanding(
            txn,
            Some(Outstanding {
                round: self.upcoming,
                len: self.capacity_after_reset(),
            }),
        )
    }

    /// Whether this round leaves the journal oversize: larger than the
    /// smallest size, and using at most a quarter of it.
    fn round_is_oversize(&self) -> bool {
        self.capacity > crate::StoreOptions::MIN_JOURNAL_BYTES && self.end <= self.capacity / 4
    }

    /// The journal's size once [`Journal::reset`] and
    /// [`Journal::shrink_if_oversize`] have run (if the cut succeeds).
    fn capacity_after_reset(&self) -> u64 {
        let quiet = if self.round_is_oversize() {
            self.quiet_rounds + 1
        } else {
            0
        };
        if quiet >= SHRINK_AFTER {
            (self.capacity / 2).max(crate::StoreOptions::MIN_JOURNAL_BYTES)
        } else {
            self.capacity
        }
    }

    /// True when the database may say the journal holds records it lacks.
    pub fn is_needed(&self) -> bool {
        self.announced != Announced::Nothing
    }

    /// Writes into `txn`, the durable commit that closes the store, that the
    /// database needs the journal no more: it holds every record.
    pub fn withdraw(&self, txn: &WriteTransaction) -> Result<()> {
        write_outstanding(txn, None)
    }

    /// Maintenance may have replaced the database: what it says of the
    /// journal is not known, and the next record needs an announcement.
    pub fn forget_announcement(&mut self) {
        self.announced = Announced::Unknown;
    }

    fn io(&self, action: &'static str, error: std::io::Error) -> Error {
        Error::io(action, &self.path, error)
    }
}

impl Recovery {
    /// Applies the records found to `db` in one durable commit, which
    /// records the last one's lsn and withdraws what the database said of
    /// the journal (it holds every record now); no commit when there is
    /// neither. The last lsn the database holds.
    fn replay(&self, db: &mut Database) -> Result<u64> {
        let durable = durable_lsn(db)?;
        if self.records.is_empty() && !self.announced {
            return Ok(durable);
        }
        tracing::info!(
            records = self.records.len(),
            "replaying the journal into the database"
        );
        let mut txn = db.begin_write()?;
        set_durability(&mut txn, RedbDurability::Immediate)?;
        let last = self.records.last().map_or(durable, |&(lsn, _)| lsn);
        {
            let mut tables = WriteTables::open(&txn);
            for (_, payload) in &self.records {
                tables.apply_changes(payload)?;
            }
            tables.set_journal_lsn(last)?;
        }
        write_outstanding(&txn, None)?;
        txn.commit()?;
        Ok(last)
    }

    /// Replays the records found into `db` (its writes still held: a store
    /// opened read-only, whose files are never written).
    pub fn replay_in_memory(self, db: &mut Database) -> Result<()> {
        self.replay(db).map(drop)
    }

    /// Goes on with the open: replays the records found into `db` (whose
    /// held writes were released) in a durable commit, which also says the
    /// database needs the journal no more (made for that alone when there
    /// is nothing to replay but the database said it: the journal may be
    /// cut to a smaller size next), and returns the journal over
    /// `file` (the same file, opened for writing; created when missing),
    /// empty and `size` bytes long (zero-filled when it was shorter, cut
    /// once replayed when it was longer).
    ///
    /// `direct`: the file opened a second time for direct I/O, if the
    /// storage offers it.
    pub fn open_journal(
        self,
        file: Box<dyn StorageBackend>,
        direct: Option<std::fs::File>,
        max: u64,
        db: &mut Database,
    ) -> Result<Journal> {
        let last = self.replay(db)?;
        let mut journal = Journal::new(file, direct, self.path);
        journal.max = max;
        let written = journal
            .file
            .len()
            .map_err(|e| journal.io("read the size of", e))?;
        journal.next_lsn = last + 1;
        journal.capacity = journal.grow_to(crate::StoreOptions::MIN_JOURNAL_BYTES, written)?;
        journal.synced = journal.last_appended();
        journal.cut_to(max)?;
        if self.starts_empty {
            journal.mark_checkpointed()?;
        }
        Ok(journal)
    }
}

/// What `db` says durably of its journal: the round that may hold records
/// it lacks, if any.
fn outstanding(db: &Database) -> Result<Option<Outstanding>> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let Some(table) = crate::engine::redb::tables::open_if_present(&txn, OUTSTANDING)? else {
        return Ok(None);
    };
    let Some(value) = table.get(OUTSTANDING_ROUND)? else {
        return Ok(None);
    };
    let bytes: [u8; 16] = value
        .value()
        .try_into()
        .map_err(|_| Error::corrupt_record("journal_outstanding", "the round entry is not 16 bytes"))?;
    let [round, len] =
        [&bytes[..8], &bytes[8..]].map(|half| u64::from_le_bytes(half.try_into().unwrap_or_default()));
    Ok(Some(Outstanding { round, len }))
}

/// Writes into `txn` what the database says of its journal (`None`:
/// nothing, the table removed).
fn write_outstanding(txn: &WriteTransaction, outstanding: Option<Outstanding>) -> Result<()> {
    let Some(Outstanding { round, len }) = outstanding else {
        txn.delete_table(OUTSTANDING)?;
        return Ok(());
    };
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&round.to_le_bytes());
    value[8..].copy_from_slice(&len.to_le_bytes());
    txn.open_table(OUTSTANDING)?
        .insert(OUTSTANDING_ROUND, value.as_slice())?;
    Ok(())
}

/// Writes `bytes` at `offset` of a file opened for direct I/O.
#[cfg(unix)]
fn write_direct(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

/// Direct I/O is offered on Linux only (see
/// [`StorageFactory::open_direct`](crate::StorageFactory::open_direct)).
#[cfg(not(unix))]
fn write_direct(_file: &std::fs::File, _bytes: &[u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Rounds in a row that use at most a quarter of the journal before it is
/// halved (see [`Journal::shrink_if_oversize`]): about 16 s of a light
/// load, whose checkpoints come every 500 ms.
const SHRINK_AFTER: u32 = 32;

/// A record to replay: its lsn and payload.
type Replayed = (u64, Vec<u8>);

/// The payload of the record [`Journal::mark_checkpointed`] writes.
const CHECKPOINT_MARKER: &[u8] = b"checkpointed";

/// Record `lsn` of `round` holding `payload`, padded to a multiple of
/// [`ALIGN`].
fn record(lsn: u64, synced: u64, round: u64, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| len & ROUND_FLAG == 0)
        .ok_or_else(|| Error::invalid("journal record", "over 2 GiB"))?;
    let size = padded(HEADER + payload.len());
    let mut record = Vec::with_capacity(size as usize);
    record.extend_from_slice(&(len | ROUND_FLAG).to_le_bytes());
    record.extend_from_slice(&checksum(len, lsn, synced, Some(round), payload).to_le_bytes());
    record.extend_from_slice(&lsn.to_le_bytes());
    record.extend_from_slice(&synced.to_le_bytes());
    record.extend_from_slice(&round.to_le_bytes());
    record.extend_from_slice(payload);
    record.resize(size as usize, 0);
    Ok(record)
}

/// A new round's number: drawn at random, so that no other round, of this
/// process or of one before it, has it.
fn new_round() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A record's checksum: over its header's fields as written (`len` with
/// [`ROUND_FLAG`] when it has a round) and its payload.
fn checksum(len: u32, lsn: u64, synced: u64, round: Round, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let flag = if round.is_some() { ROUND_FLAG } else { 0 };
    hasher.update(&(len | flag).to_le_bytes());
    hasher.update(&lsn.to_le_bytes());
    hasher.update(&synced.to_le_bytes());
    if let Some(round) = round {
        hasher.update(&round.to_le_bytes());
    }
    hasher.update(payload);
    hasher.finalize()
}

/// A record's header as read.
struct Header {
    /// The payload's length.
    len: u32,
    crc: u32,
    lsn: u64,
    synced: u64,
    round: Round,
}

impl Header {
    /// The header's own length.
    fn size(&self) -> usize {
        match self.round {
            Some(_) => HEADER,
            None => UNNUMBERED_HEADER,
        }
    }

    /// The whole record's length, padding included.
    fn record_len(&self) -> u64 {
        padded(self.size() + self.len as usize)
    }

    /// True when `payload` is the one this header's checksum was made over.
    fn checks(&self, payload: &[u8]) -> bool {
        checksum(self.len, self.lsn, self.synced, self.round, payload) == self.crc
    }
}

/// The header at the start of `bytes`; `None` for zeros (no record) or
/// fewer bytes than the header takes.
fn parse_header(bytes: &[u8]) -> Option<Header> {
    let (fixed, rest) = bytes.split_first_chunk::<UNNUMBERED_HEADER>()?;
    let [l0, l1, l2, l3, c0, c1, c2, c3, n0, n1, n2, n3, n4, n5, n6, n7, synced @ ..] = *fixed;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len == 0 {
        return None;
    }
    let round = match len & ROUND_FLAG {
        0 => None,
        _ => Some(u64::from_le_bytes(*rest.first_chunk::<8>()?)),
    };
    Some(Header {
        len: len & !ROUND_FLAG,
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
        lsn: u64::from_le_bytes([n0, n1, n2, n3, n4, n5, n6, n7]),
        synced: u64::from_le_bytes(synced),
        round,
    })
}

/// `size` rounded up to a multiple of [`ALIGN`].
fn padded(size: usize) -> u64 {
    (size as u64).div_ceil(ALIGN) * ALIGN
}

/// The lsn of the last record the database holds durably (0: none).
fn durable_lsn(db: &Database) -> Result<u64> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    crate::engine::redb::tables::journal_lsn(&txn)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use redb::StorageBackend;

    use super::{journal_path, padded, parse_header, HEADER};
    use crate::engine::redb::storage::{FileRole, StorageFactory};
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
                storage: Arc::new(self.clone()),
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
            let id = store.create_session(Some("ana")).unwrap();
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
            let mut step =
                |journal: &Journal| steps.push((std::fs::read(&path).unwrap(), journal.end as usize));
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
        assert_eq!(journal_len(), StoreOptions::MIN_JOURNAL_BYTES);
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
            journal_len() >= 4 * StoreOptions::MIN_JOURNAL_BYTES,
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
            storage: Arc::new(disk.clone()),
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
}
