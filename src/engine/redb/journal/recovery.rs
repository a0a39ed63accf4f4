//! The open's look at the journal (`Recovery`): what to replay, whether it
//! may go on; the replay, as batches handed to the caller's `apply`.

use super::*;

/// A journal looked at, before the open decides to go on: the records to
/// replay into the database.
pub(crate) struct Recovery {
    path: PathBuf,
    records: Vec<Replayed>,
    /// What the file starts with ([`Start::Zeros`] when it is missing).
    start: Start,
    /// The database says a round may hold records it lacks.
    announced: bool,
}
impl Journal {
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
    /// checksum over the damage (see `RedbOptions::verify_after_crash`).
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
                start: Start::Zeros,
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
        let (records, start) = journal.read_after(durable, written)?;
        if verify && !records.is_empty() {
            tracing::info!(
                path = %journal.path.display(),
                "the store crashed: verifying every page of the database before the replay \
                 (reads the whole file; RedbOptions::verify_after_crash)"
            );
            journal.verify_database(db)?;
        }
        Ok(Recovery {
            path: journal.path,
            records,
            start,
            announced: outstanding.is_some(),
        })
    }

    /// Fails unless the journal's first record is of `round`, the round the
    /// database says may hold records newer than `durable`, or one the
    /// database holds (left by an earlier round: the announced one wrote
    /// nothing). A damaged first record is left to [`Journal::read_after`].
    pub(super) fn check_round(&self, round: u64, durable: u64) -> Result<()> {
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

    /// Fails unless redb's checksums of every page of `db` hold.
    pub(super) fn verify_database(&self, db: &mut Database) -> Result<()> {
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

    /// Writes, at the start of a journal that holds nothing, a record the
    /// database holds already (the last durable lsn, never replayed): the
    /// next open then knows the round was checkpointed and need not read
    /// past the first record looking for damage (a MiB of zeros, otherwise,
    /// on every open of a store whose journal was never written). The
    /// first append overwrites it.
    pub(super) fn mark_checkpointed(&mut self) -> Result<()> {
        let lsn = self.last_appended();
        let record = record(lsn, lsn, self.round, CHECKPOINT_MARKER)?;
        self.file
            .write(0, &record)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io("mark the start of", e))?;
        self.marked = true;
        Ok(())
    }
}
impl Recovery {
    /// Hands the records found, as batches, to `apply` in one durable
    /// commit of `db`, which records the last one's lsn and withdraws what the database said of
    /// the journal (it holds every record now); no commit when there is
    /// neither. The last lsn the database holds.
    pub(super) fn replay(&self, db: &mut Database, apply: ApplyBatches) -> Result<u64> {
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
        apply(
            &txn,
            &mut self.records.iter().map(|(_, batch)| batch.as_slice()),
            last,
        )?;
        write_outstanding(&txn, None)?;
        txn.commit()?;
        Ok(last)
    }

    /// Replays the records found into `db` (its writes still held: a store
    /// opened read-only, whose files are never written).
    pub fn replay_in_memory(self, db: &mut Database, apply: ApplyBatches) -> Result<()> {
        self.replay(db, apply).map(drop)
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
        apply: ApplyBatches,
    ) -> Result<Journal> {
        let last = self.replay(db, apply)?;
        let mut journal = Journal::new(file, direct, self.path);
        journal.max = max;
        let written = journal
            .file
            .len()
            .map_err(|e| journal.io("read the size of", e))?;
        journal.next_lsn = last + 1;
        journal.capacity = journal.grow_to(crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES, written)?;
        journal.synced = journal.last_appended();
        journal.cut_to(max)?;
        match self.start {
            Start::Zeros => journal.mark_checkpointed()?,
            Start::Marker => journal.marked = true,
            Start::Records => {}
        }
        Ok(journal)
    }
}
