//! The background thread: checkpoints (a durable redb commit, then the
//! journal starts over), the commits of submitted requests no caller waits
//! to lead, and the idle work when no request waits; the close's last
//! checkpoint.

use super::*;

/// Work done when no request waits, in small commits of its own on the
/// background thread (relaxed: the work must change nothing a reader can
/// observe, so that losing it in a crash loses nothing).
pub(crate) trait IdleWork: Send + Sync {
    /// True while there is work to do.
    fn due(&self) -> bool;
    /// Does one small piece of it inside a commit.
    fn step(&self, tables: &mut WriteTables<'_>) -> Result<()>;
    /// When work not yet due becomes due, if it will without a write: the
    /// background thread wakes then to look.
    fn due_at(&self) -> Option<Instant> {
        None
    }
}
/// Kinds of idle work: due while one is; a step is the first due one's.
impl IdleWork for Vec<Arc<dyn IdleWork>> {
    fn due(&self) -> bool {
        self.iter().any(|work| work.due())
    }

    fn step(&self, tables: &mut WriteTables<'_>) -> Result<()> {
        match self.iter().find(|work| work.due()) {
            Some(work) => work.step(tables),
            None => Ok(()),
        }
    }

    fn due_at(&self) -> Option<Instant> {
        self.iter().filter_map(|work| work.due_at()).min()
    }
}
impl Shared {
    /// The background thread: checkpoints when due, and the idle work when
    /// no request waits; at close, the last checkpoint.
    pub(super) fn run_background(&self) {
        let mut queue = lock(&self.queue);
        loop {
            // Requests submitted without a waiting caller are committed
            // before the close.
            if queue.closing && !queue.background_leads {
                break;
            }
            let now = Instant::now();
            let aged = queue.checkpoint_at.is_some_and(|at| at <= now);
            if queue.checkpointing || aged {
                queue.checkpointing = true;
                queue.checkpoint_at = None;
                drop(queue);
                let next = self
                    .with_committer(|committer| {
                        if committer.checkpoint_due() {
                            committer.checkpoint_logged();
                        }
                        committer.checkpoint_at()
                    })
                    .flatten();
                queue = lock(&self.queue);
                queue.checkpointing = false;
                queue.checkpoint_at = queue.checkpoint_at.or(next);
                self.checkpointed.notify_all();
                continue;
            }
            if queue.background_leads {
                // After any checkpoint due (above): a leader waits for it.
                queue.background_leads = false;
                drop(queue);
                self.lead();
                queue = lock(&self.queue);
                continue;
            }
            let idle = !queue.idle_failed && queue.waiting.is_empty() && !queue.leading && self.idle.due();
            if idle {
                drop(queue);
                // A stopped writer does no idle work (and is not asked
                // again: nothing clears the failure).
                let succeeded = self
                    .with_committer(|committer| committer.idle_step(&self.idle))
                    .unwrap_or(false);
                queue = lock(&self.queue);
                queue.idle_failed |= !succeeded;
                continue;
            }
            // Work due already waits for the commit under way, which wakes
            // this thread when it ends.
            let idle_at = self.idle.due_at().filter(|at| *at > now && !queue.idle_failed);
            queue.idle_wake_at = idle_at;
            let wake_at = match (queue.checkpoint_at, idle_at) {
                (Some(checkpoint), Some(idle)) => Some(checkpoint.min(idle)),
                (checkpoint, idle) => checkpoint.or(idle),
            };
            queue = match wake_at {
                None => wait(&self.background, queue),
                Some(at) => {
                    self.background
                        .wait_timeout(queue, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        drop(queue);
        // Closing: what redb holds (every commit that was answered Ok)
        // becomes durable.
        self.with_committer(Committer::close);
    }
}
/// A checkpoint (durable redb commit, then the journal starts over) follows
/// this many journal records, or half the largest journal allowed
/// (`RedbOptions::max_journal_bytes`),
pub(super) const CHECKPOINT_RECORDS: u32 = 256;
/// or this long after the oldest record it would cover (in the crate's unit
/// tests, never within a test: they inspect the journal a checkpoint resets).
pub(super) const CHECKPOINT_AGE: Duration = if cfg!(test) {
    Duration::from_secs(3600)
} else {
    Duration::from_millis(500)
};

impl Committer {
    /// One step of the idle work, in a relaxed commit of its own; false
    /// when it failed (logged).
    pub(super) fn idle_step(&mut self, idle: &Arc<dyn IdleWork>) -> bool {
        let work = idle.clone();
        let slot = Slot::new();
        let job = Box::new(Pending {
            op: Some(move |tables: &mut WriteTables<'_>| work.step(tables)),
            result: None,
            answer: slot.clone(),
        });
        let (jobs, committed) = self.commit_batch(vec![(job, false)], &mut |_| Vec::new());
        for job in jobs {
            job.finish(committed.as_ref().err());
        }
        let stepped = committed.and_then(|_| slot.wait().unwrap_or(Err(Error::WriterStopped)));
        match stepped {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "the writer's idle work failed; retried after the next write");
                false
            }
        }
    }

    /// When the oldest record not yet checkpointed makes a checkpoint due.
    pub(super) fn checkpoint_at(&self) -> Option<Instant> {
        self.oldest_unchecked.map(|oldest| oldest + CHECKPOINT_AGE)
    }

    pub(super) fn checkpoint_due(&self) -> bool {
        self.since_checkpoint >= CHECKPOINT_RECORDS
            || self.journal.used() >= self.journal.max() / 2
            || self
                .oldest_unchecked
                .is_some_and(|oldest| oldest.elapsed() >= CHECKPOINT_AGE)
    }

    /// Makes everything committed so far durable in redb, and empties the
    /// journal. A failure leaves the journal as it is (still needed).
    pub(super) fn checkpoint(&mut self) -> Result<()> {
        if self.journal.is_empty() {
            return Ok(());
        }
        let db = self.db.read().map_err(|_| Error::WriterStopped)?;
        let mut txn = db.begin_write()?;
        set_durability(&mut txn, RedbDurability::Immediate)?;
        index_in(&txn, &mut self.unindexed)?;
        if !self.failed {
            self.journal.announce_next(&txn)?;
        }
        // Else the writer stops after this checkpoint, and the journal may
        // hold a record past what the database holds, of the current round
        // (its batch failed, and it could not be withdrawn): the database
        // goes on saying that round holds records, and it replays.
        txn.commit()?;
        drop(db);
        self.unindexed.clear();
        self.imported = false;
        self.checkpointed();
        Ok(())
    }

    /// Closing: makes every commit durable in redb, and says the database
    /// needs the journal no more, so that the next open needs none; the
    /// journal is then cut to its smallest size. A failure is logged: the
    /// database then still says it needs the journal, which keeps the
    /// writes (and its size).
    pub(super) fn close(&mut self) {
        if !self.journal.is_empty() || self.journal.is_needed() {
            let closed = self.db.read().map_err(|_| Error::WriterStopped).and_then(|db| {
                let mut txn = db.begin_write()?;
                set_durability(&mut txn, RedbDurability::Immediate)?;
                index_in(&txn, &mut self.unindexed)?;
                self.journal.withdraw(&txn)?;
                txn.commit()?;
                Ok(())
            });
            if let Err(error) = closed {
                tracing::warn!(%error, "the last checkpoint failed; the journal keeps the writes");
                return;
            }
        }
        self.journal.close_cleanly();
    }

    pub(super) fn checkpoint_logged(&mut self) {
        if let Err(error) = self.checkpoint() {
            tracing::warn!(%error, "checkpoint failed; the journal keeps the writes");
            // Retry after another CHECKPOINT_AGE, not at once (a damaged
            // file fails every attempt: no busy loop).
            self.oldest_unchecked = Some(Instant::now());
        }
    }

    /// The database holds every record durably: the journal starts over,
    /// halved when it has long been larger than its rounds need.
    pub(super) fn checkpointed(&mut self) {
        self.journal.reset();
        self.journal.shrink_if_oversize();
        self.since_checkpoint = 0;
        self.oldest_unchecked = None;
        self.counts.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
}
