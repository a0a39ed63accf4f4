//! One commit of a batch: its jobs run in one redb transaction, its change
//! log journaled (synced when a request is durable), then committed to redb
//! without a sync; the import's unindexed ids added before a durable commit.

use super::*;

/// The writer thread's state: the database, the journal, and how much the
/// journal holds that the database holds only non-durably.
pub(super) struct Committer {
    pub(super) db: Arc<RwLock<Database>>,
    pub(super) journal: Journal,
    /// Follows every commit (see `cache.rs`).
    pub(super) cache: Arc<MessageCache>,
    pub(super) since_checkpoint: u32,
    pub(super) oldest_unchecked: Option<Instant>,
    /// The journal could not be written: the writer stops.
    pub(super) failed: bool,
    /// Stopped (after a journal failure or a panic): every write answers
    /// [`Error::WriterStopped`].
    pub(super) stopped: bool,
    /// Entries of messages an import wrote without them (see `bulk.rs`),
    /// added before any durable commit.
    pub(super) unindexed: Unindexed,
    /// An import wrote since the last durable commit, neither synced nor
    /// journaled: the next batch commits durably instead of journaling.
    pub(super) imported: bool,
    pub(super) counts: Arc<WriteCounts>,
}
/// `message_ids` entries (message id, (session, seq)) of messages an import
/// committed without them, neither synced nor journaled, to be added in id
/// order in larger runs (see [`Writer::maintain_importing`]).
pub(crate) type Unindexed = Vec<(u64, (u128, u64))>;
/// Adds the `unindexed` entries within `txn`, in id order. The caller
/// empties `unindexed` once `txn` is committed.
pub(super) fn index_in(txn: &redb::WriteTransaction, unindexed: &mut Unindexed) -> Result<()> {
    if unindexed.is_empty() {
        return Ok(());
    }
    unindexed.sort_unstable_by_key(|&(id, _)| id);
    WriteTables::open_unlogged(txn).index_message_ids(unindexed)
}
/// Adds the `unindexed` entries in a commit of their own, neither synced
/// nor journaled, and empties `unindexed`.
pub(super) fn index_now(db: &Database, unindexed: &mut Unindexed) -> Result<()> {
    if unindexed.is_empty() {
        return Ok(());
    }
    let mut txn = db.begin_write()?;
    set_durability(&mut txn, RedbDurability::None)?;
    index_in(&txn, unindexed)?;
    txn.commit()?;
    unindexed.clear();
    Ok(())
}
impl Committer {
    /// Runs the jobs of one batch (`queued`, then those `more` gives, up to
    /// the room it is told of, while they run; each says whether it is
    /// durable) in one transaction and commits; every job, to be answered,
    /// and the commit's outcome: whether a transaction committed (false
    /// when the jobs wrote nothing).
    pub(super) fn commit_batch(
        &mut self,
        queued: Vec<(Box<dyn Job>, bool)>,
        more: &mut dyn FnMut(usize) -> Vec<(Box<dyn Job>, bool)>,
    ) -> (Vec<Box<dyn Job>>, Result<bool>) {
        let mut jobs = Vec::with_capacity(queued.len());
        let outcome = self.run_and_commit(&mut jobs, queued, more);
        (jobs, outcome)
    }

    pub(super) fn run_and_commit(
        &mut self,
        jobs: &mut Vec<Box<dyn Job>>,
        queued: Vec<(Box<dyn Job>, bool)>,
        more: &mut dyn FnMut(usize) -> Vec<(Box<dyn Job>, bool)>,
    ) -> Result<bool> {
        let mut durable = take_in(jobs, queued);
        let lock = self.db.clone();
        let db = lock.read().map_err(|_| Error::WriterStopped)?;
        if !self.journal.is_announced() && !self.imported {
            // Before a round's first record, the database says durably that
            // the journal may hold records it lacks: an open after a crash
            // then refuses to go on without the journal.
            self.journal.announce(&db)?;
        }
        let mut txn = db.begin_write()?;
        let (changes, notes, journaled) = {
            let mut tables = WriteTables::open(&txn);
            let mut ran = 0;
            loop {
                for job in &mut jobs[ran..] {
                    if !job.run(&mut tables) {
                        return Err(Error::BatchAborted);
                    }
                }
                ran = jobs.len();
                let late = more(MAX_BATCH.saturating_sub(ran));
                if late.is_empty() {
                    break;
                }
                durable |= take_in(jobs, late);
            }
            let changes = tables.take_changes();
            let journaled = !self.imported && self.journal.make_room(changes.len());
            if journaled && !changes.is_empty() {
                tables.set_journal_lsn(self.journal.next_lsn())?;
            }
            (changes, tables.take_notes(), journaled)
        };
        if changes.is_empty() {
            txn.abort()?;
            if durable {
                // Nothing new, but earlier relaxed records must be on disk.
                self.sync_journal()?;
            }
            return Ok(false);
        }
        if !journaled {
            // Too big for what is left of the journal at its largest, or
            // written over an
            // import's batch that is not durable (its record would replay,
            // after a crash, over a state without that batch): commit it
            // durably to redb, which then holds everything and the journal
            // starts over.
            set_durability(&mut txn, RedbDurability::Immediate)?;
            index_in(&txn, &mut self.unindexed)?;
            self.journal.announce_next(&txn)?;
            txn.commit()?;
            self.unindexed.clear();
            self.imported = false;
            self.cache.apply(notes);
            self.checkpointed();
            return Ok(true);
        }
        set_durability(&mut txn, RedbDurability::None)?;
        if let Err(error) = self.journal.append(&changes, durable) {
            self.failed = true;
            return Err(error);
        }
        if let Err(error) = txn.commit() {
            if let Err(retract) = self.journal.retract() {
                tracing::error!(%retract, "a failed commit's journal record could not be retracted");
                self.failed = true;
            }
            return Err(error.into());
        }
        self.cache.apply(notes);
        self.since_checkpoint += 1;
        self.oldest_unchecked.get_or_insert_with(Instant::now);
        Ok(true)
    }

    pub(super) fn sync_journal(&mut self) -> Result<()> {
        self.journal.sync().inspect_err(|_| self.failed = true)
    }
}
/// Sets a transaction's durability. A durable commit (a checkpoint: rare,
/// off the path of an acknowledgement) also saves redb's allocator state
/// (quick repair), so that an open after a crash need not walk the file.
pub(crate) fn set_durability(txn: &mut redb::WriteTransaction, durability: RedbDurability) -> Result<()> {
    txn.set_durability(durability)
        .map_err(crate::engine::redb::storage_error)?;
    txn.set_quick_repair(matches!(durability, RedbDurability::Immediate));
    Ok(())
}
