//! The write path: every write request runs in one redb transaction with
//! the others waiting at that moment, which commits once and then answers
//! them all (group commit). The commit policy lives here and nowhere else.
//!
//! There is no writer thread on the path of a write: the caller that finds
//! no commit under way commits itself (the leader), taking every request
//! queued at that moment; requests that arrive meanwhile queue, and when the
//! leader's commit is done it hands the lead to the oldest of them
//! (LevelDB's writer queue). A caller alone commits in its own thread, with
//! no thread hop.
//!
//! The leader answers its batch only once it has handed the lead on, so that
//! waking each caller (a system call and a thread switch apiece) overlaps the
//! next commit instead of coming before it; and a batch takes in the
//! requests that arrive while its jobs run, waiting for them while the
//! answers of the batch before are still being given (those callers are the
//! ones about to write again). Without that, the batch after would start
//! with few requests, and the ones before would come in the batch after
//! that: about half the batch size, for the same work per commit.
//!
//! A commit appends the batch's changes to the journal (synced when a
//! request of the batch is durable) and then commits to redb without a sync
//! (`Durability::None`); a checkpoint, a durable redb commit, follows every
//! [`CHECKPOINT_RECORDS`] records, half the largest journal allowed or
//! [`CHECKPOINT_AGE`], after which the journal starts over (see
//! `journal.rs`). Checkpoints and the idle work (see [`IdleWork`]) run on a
//! background thread, off the path of an acknowledgement. Closing ends with
//! a checkpoint.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Durability as RedbDurability};

use crate::engine::redb::cache::MessageCache;
use crate::engine::redb::journal::Journal;
use crate::engine::redb::tables::WriteTables;
use crate::error::{Error, Result};
use crate::model::{Durability, StoreCounters};

/// Most requests one commit takes.
const MAX_BATCH: usize = 4096;

/// A write request waiting for a commit.
trait Job: Send {
    /// Runs the request inside the batch's transaction. False when it failed
    /// in a way that may have left partial writes: the batch must not commit.
    fn run(&mut self, tables: &mut WriteTables<'_>) -> bool;
    /// Answers the caller once the batch's commit is decided.
    fn finish(self: Box<Self>, commit: Option<&Error>);
    /// Tells the caller, still waiting, that it leads the next commit.
    fn lead(&self);
}

/// Where a waiting caller finds its answer, or its turn to lead.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    changed: Condvar,
}

enum SlotState<T> {
    Waiting,
    Lead,
    Done(Result<T>),
}

impl<T> Slot<T> {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::Waiting),
            changed: Condvar::new(),
        })
    }

    fn set(&self, new: SlotState<T>) {
        let mut state = lock(&self.state);
        // An answer is final: a late hand-off never replaces it.
        if !matches!(*state, SlotState::Done(_)) {
            *state = new;
            self.changed.notify_one();
        }
    }

    /// Waits until answered (`Ok`) or handed the lead (`Err(())`).
    fn wait(&self) -> std::result::Result<Result<T>, ()> {
        let mut state = lock(&self.state);
        loop {
            match std::mem::replace(&mut *state, SlotState::Waiting) {
                SlotState::Done(result) => return Ok(result),
                SlotState::Lead => return Err(()),
                SlotState::Waiting => state = wait(&self.changed, state),
            }
        }
    }
}

struct Pending<T, F> {
    op: Option<F>,
    result: Option<Result<T>>,
    slot: Arc<Slot<T>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut WriteTables<'_>) -> Result<T> + Send,
{
    fn run(&mut self, tables: &mut WriteTables<'_>) -> bool {
        let Some(op) = self.op.take() else {
            return true;
        };
        let result = op(tables);
        let clean = match &result {
            Ok(_) => true,
            Err(error) => error.is_refusal(),
        };
        self.result = Some(result);
        clean
    }

    fn finish(mut self: Box<Self>, commit: Option<&Error>) {
        let result = match (commit, self.result.take()) {
            (None, Some(result)) => result,
            (Some(_), Some(Err(own))) if !own.is_refusal() => Err(own),
            (Some(error), _) => Err(error.clone()),
            (None, None) => Err(Error::WriterStopped),
        };
        self.slot.set(SlotState::Done(result));
    }

    fn lead(&self) {
        self.slot.set(SlotState::Lead);
    }
}

impl<T, F> Drop for Pending<T, F> {
    /// A request dropped unanswered (a panic during its commit) answers
    /// [`Error::WriterStopped`], so that its caller never waits forever.
    fn drop(&mut self) {
        self.slot.set(SlotState::Done(Err(Error::WriterStopped)));
    }
}

/// Work done when no request waits, in small commits of its own on the
/// background thread (relaxed: the work must change nothing a reader can
/// observe, so that losing it in a crash loses nothing).
pub(crate) trait IdleWork: Send + Sync {
    /// True while there is work to do.
    fn due(&self) -> bool;
    /// Does one small piece of it inside a commit.
    fn step(&self, tables: &mut WriteTables<'_>) -> Result<()>;
}

/// The requests waiting for a commit, and what the background thread is
/// asked to do. Locked briefly, never across I/O; a thread holding it never
/// takes the committer's lock.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Box<dyn Job>, bool)>,
    /// A leader is committing (or was handed the lead and is waking up).
    leading: bool,
    /// When the oldest record the database holds only non-durably reaches
    /// [`CHECKPOINT_AGE`].
    checkpoint_at: Option<Instant>,
    /// A checkpoint is due (records or bytes) or under way: the background
    /// thread does it, and no leader takes the committer until it is done
    /// (a caller in a loop of writes would otherwise always win the lock
    /// back, and pages freed since the last checkpoint, which only a
    /// checkpoint makes reusable, would pile up in the file).
    checkpointing: bool,
    /// The idle work failed: retried after the next successful batch.
    idle_failed: bool,
    /// The store is closing: the background thread ends (no writer is left).
    closing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the background thread.
    background: Condvar,
    /// Wakes the leaders waiting for a checkpoint to end.
    checkpointed: Condvar,
    committer: Mutex<Committer>,
    idle: Arc<dyn IdleWork>,
    /// Callers of committed batches not answered yet.
    answering: AtomicUsize,
    /// Shared with the committer, read without its lock.
    counts: Arc<WriteCounts>,
}

/// What the writer has done, counted as it goes: a few relaxed additions
/// per commit, none per request or byte.
#[derive(Default)]
struct WriteCounts {
    commits: AtomicU64,
    batch_requests: AtomicU64,
    checkpoints: AtomicU64,
}

/// The handle callers write through.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(
        path: &std::path::Path,
        db: Arc<RwLock<Database>>,
        journal: Journal,
        idle: Arc<dyn IdleWork>,
        cache: Arc<MessageCache>,
    ) -> Result<Self> {
        let counts = Arc::new(WriteCounts::default());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            background: Condvar::new(),
            checkpointed: Condvar::new(),
            committer: Mutex::new(Committer {
                db,
                journal,
                cache,
                since_checkpoint: 0,
                oldest_unchecked: None,
                failed: false,
                stopped: false,
                unindexed: Unindexed::new(),
                imported: false,
                counts: counts.clone(),
            }),
            idle,
            answering: AtomicUsize::new(0),
            counts,
        });
        let background = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sessionstore-writer".into())
            .spawn(move || background.run_background())
            .map_err(|e| Error::io("start the writer thread for", path, e))?;
        Ok(Writer {
            shared,
            thread: Some(thread),
        })
    }

    /// Runs `op` inside the next commit and returns its result once that
    /// commit is done (on disk, when `durability` is durable).
    ///
    /// `op` must not write anything before it has decided to succeed: a
    /// refusal from it (see [`Error::is_refusal`]) leaves the rest of the
    /// batch to commit; any other error aborts the batch.
    pub fn write<T, F>(&self, durability: Durability, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTables<'_>) -> Result<T> + Send + 'static,
    {
        let slot = Slot::new();
        let job = Box::new(Pending {
            op: Some(op),
            result: None,
            slot: slot.clone(),
        });
        let mut leads = {
            let mut queue = lock(&self.shared.queue);
            queue.waiting.push_back((job, durability == Durability::Durable));
            !std::mem::replace(&mut queue.leading, true)
        };
        loop {
            if leads {
                self.shared.lead();
            }
            match slot.wait() {
                Ok(result) => return result,
                Err(()) => leads = true,
            }
        }
    }

    /// Fills in the commits, batch requests and checkpoints of `counters`.
    pub fn count(&self, counters: &mut StoreCounters) {
        let counts = &self.shared.counts;
        counters.commits = counts.commits.load(Ordering::Relaxed);
        counters.batch_requests = counts.batch_requests.load(Ordering::Relaxed);
        counters.checkpoints = counts.checkpoints.load(Ordering::Relaxed);
    }

    /// Runs `op` with the database to itself, between two commits, after
    /// a checkpoint: the database holds everything durably, the journal is
    /// empty, and every message an import wrote is indexed by its id. When
    /// that checkpoint fails, so does this, and `op` does not run: it may
    /// write the database past the journal (an import) or replace the file
    /// and wipe the journal (compact), and the journal still holds
    /// acknowledged writes the database holds only in memory.
    pub fn maintain<T, F>(&self, op: F) -> Result<T>
    where
        F: FnOnce(&mut Database) -> Result<T>,
    {
        self.maintain_with(false, |db, unindexed| {
            index_now(db, unindexed)?;
            op(db)
        })
    }

    /// As [`Writer::maintain`], for an import: `op` also gets the entries
    /// of the messages the import wrote without indexing them, to add to
    /// (`maintain` indexes them before it runs). Every durable
    /// commit, a checkpoint's included, adds those left first: the file
    /// never holds a message its id does not map. And the next batch of
    /// writes after it commits durably rather than journal a record that
    /// depends on what the import wrote: whatever writes go on beside an
    /// import, a crash never replays one over a state without the import's
    /// batches it read.
    pub fn maintain_importing<T, F>(&self, op: F) -> Result<T>
    where
        F: FnOnce(&mut Database, &mut Unindexed) -> Result<T>,
    {
        self.maintain_with(true, op)
    }

    /// [`Writer::maintain`] and [`Writer::maintain_importing`] (`importing`).
    fn maintain_with<T, F>(&self, importing: bool, op: F) -> Result<T>
    where
        F: FnOnce(&mut Database, &mut Unindexed) -> Result<T>,
    {
        self.shared
            .with_committer(|committer| {
                committer.checkpoint()?;
                let result = match committer.db.write() {
                    Ok(mut db) => op(&mut db, &mut committer.unindexed),
                    Err(_) => Err(Error::WriterStopped),
                };
                committer.imported |= importing;
                // Maintenance may have rewritten anything: the file too.
                committer.cache.clear();
                committer.journal.forget_announcement();
                result
            })
            .unwrap_or(Err(Error::WriterStopped))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        lock(&self.shared.queue).closing = true;
        self.shared.background.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn committer(&self) -> Result<MutexGuard<'_, Committer>> {
        self.committer.lock().map_err(|_| Error::WriterStopped)
    }

    /// Runs `f` with the committer to itself; `None` when the writer has
    /// stopped, or when `f` panicked (a write or a checkpoint on a damaged
    /// page), which stops it. A panic never leaves the queue without a
    /// leader, nor a checkpoint marked under way.
    fn with_committer<T>(&self, f: impl FnOnce(&mut Committer) -> T) -> Option<T> {
        let mut committer = self.committer().ok()?;
        if committer.stopped {
            return None;
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut committer))) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::error!("the store's writer panicked; it stops");
                committer.stopped = true;
                None
            }
        }
    }

    /// Up to `room` requests queued since the batch began, to join it; while
    /// none is queued, waits for one as long as callers of an earlier batch
    /// are still being answered.
    fn late_jobs(&self, room: usize) -> Vec<(Box<dyn Job>, bool)> {
        loop {
            {
                let mut queue = lock(&self.queue);
                if room == 0 || !queue.waiting.is_empty() {
                    let n = queue.waiting.len().min(room);
                    return queue.waiting.drain(..n).collect();
                }
            }
            if self.answering.load(Ordering::Acquire) == 0 {
                return Vec::new();
            }
            std::thread::yield_now();
        }
    }

    /// Commits the requests queued now and those that join while it runs,
    /// hands the lead to the oldest request queued since (or gives it up),
    /// then answers them.
    fn lead(&self) {
        let queued: Vec<(Box<dyn Job>, bool)> = {
            let mut queue = lock(&self.queue);
            while queue.checkpointing {
                queue = wait(&self.checkpointed, queue);
            }
            let n = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..n).collect()
        };
        // Unanswered jobs (the writer stopped, or a panic) answer
        // `WriterStopped` as they drop (see `Pending`).
        let committed = self.with_committer(|committer| {
            let late_jobs = &mut |room| self.late_jobs(room);
            let (jobs, outcome) = committer.commit_batch(queued, late_jobs);
            if let Ok(true) = outcome {
                committer
                    .counts
                    .batch_requests
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                committer.counts.commits.fetch_add(1, Ordering::Relaxed);
            }
            let outcome = outcome.map(drop);
            if committer.failed {
                // A journal failure: what redb holds (every commit
                // answered Ok) becomes durable, and the writer stops.
                committer.checkpoint_logged();
                committer.stopped = true;
            }
            let answers = (jobs, outcome);
            (answers, committer.checkpoint_due(), committer.checkpoint_at())
        });
        let mut queue = lock(&self.queue);
        let mut wake = false;
        let mut answers = None;
        if let Some(((jobs, outcome), due, checkpoint_at)) = committed {
            let ok = outcome.is_ok();
            answers = Some(Answers::new(jobs, outcome, &self.answering));
            if ok && queue.idle_failed {
                queue.idle_failed = false;
                wake = true;
            }
            if due && !queue.checkpointing {
                queue.checkpointing = true;
                wake = true;
            }
            if checkpoint_at.is_some() && queue.checkpoint_at.is_none() {
                queue.checkpoint_at = checkpoint_at;
                wake = true;
            }
            wake |= self.idle.due();
        }
        match queue.waiting.front() {
            Some((next, _)) => next.lead(),
            None => queue.leading = false,
        }
        drop(queue);
        if let Some(answers) = answers {
            answers.give();
        }
        if wake {
            self.background.notify_one();
        }
    }

    /// The background thread: checkpoints when due, and the idle work when
    /// no request waits; at close, the last checkpoint.
    fn run_background(&self) {
        let mut queue = lock(&self.queue);
        loop {
            if queue.closing {
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
            queue = match queue.checkpoint_at {
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

/// The callers of a committed batch, to be answered, counted in
/// `Shared::answering` until they are, whatever happens (a panic while
/// answering must not leave a leader waiting for answers that never come).
struct Answers<'a> {
    jobs: std::vec::IntoIter<Box<dyn Job>>,
    outcome: Result<()>,
    answering: &'a AtomicUsize,
}

impl<'a> Answers<'a> {
    fn new(jobs: Vec<Box<dyn Job>>, outcome: Result<()>, answering: &'a AtomicUsize) -> Self {
        answering.fetch_add(jobs.len(), Ordering::AcqRel);
        Answers {
            jobs: jobs.into_iter(),
            outcome,
            answering,
        }
    }

    /// Answers each caller.
    fn give(mut self) {
        for job in self.jobs.by_ref() {
            job.finish(self.outcome.as_ref().err());
            self.answering.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Answers<'_> {
    /// Callers left unanswered (a panic while answering) answer
    /// [`Error::WriterStopped`] as their jobs drop (see `Pending`).
    fn drop(&mut self) {
        self.answering.fetch_sub(self.jobs.len(), Ordering::AcqRel);
    }
}

/// Adds `arrived` to the batch's `jobs`; whether one of them is durable.
fn take_in(jobs: &mut Vec<Box<dyn Job>>, arrived: Vec<(Box<dyn Job>, bool)>) -> bool {
    let mut durable = false;
    for (job, job_durable) in arrived {
        durable |= job_durable;
        jobs.push(job);
    }
    durable
}

/// Locks `mutex`; a panic elsewhere while it was held leaves its data
/// consistent here (queues and slots are changed in single steps).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` with `guard`, as [`lock`] does with a poisoned lock.
fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// A checkpoint (durable redb commit, then the journal starts over) follows
/// this many journal records, or half the largest journal allowed
/// (`StoreOptions::max_journal_bytes`),
const CHECKPOINT_RECORDS: u32 = 256;
/// or this long after the oldest record it would cover (in the crate's unit
/// tests, never within a test: they inspect the journal a checkpoint resets).
const CHECKPOINT_AGE: Duration = if cfg!(test) {
    Duration::from_secs(3600)
} else {
    Duration::from_millis(500)
};

/// The writer thread's state: the database, the journal, and how much the
/// journal holds that the database holds only non-durably.
struct Committer {
    db: Arc<RwLock<Database>>,
    journal: Journal,
    /// Follows every commit (see `cache.rs`).
    cache: Arc<MessageCache>,
    since_checkpoint: u32,
    oldest_unchecked: Option<Instant>,
    /// The journal could not be written: the writer stops.
    failed: bool,
    /// Stopped (after a journal failure or a panic): every write answers
    /// [`Error::WriterStopped`].
    stopped: bool,
    /// Entries of messages an import wrote without them (see `bulk.rs`),
    /// added before any durable commit.
    unindexed: Unindexed,
    /// An import wrote since the last durable commit, neither synced nor
    /// journaled: the next batch commits durably instead of journaling.
    imported: bool,
    counts: Arc<WriteCounts>,
}

/// `message_ids` entries (message id, (session, seq)) of messages an import
/// committed without them, neither synced nor journaled, to be added in id
/// order in larger runs (see [`Writer::maintain_importing`]).
pub(crate) type Unindexed = Vec<(u64, (u128, u64))>;

/// Adds the `unindexed` entries within `txn`, in id order. The caller
/// empties `unindexed` once `txn` is committed.
fn index_in(txn: &redb::WriteTransaction, unindexed: &mut Unindexed) -> Result<()> {
    if unindexed.is_empty() {
        return Ok(());
    }
    unindexed.sort_unstable_by_key(|&(id, _)| id);
    WriteTables::open_unlogged(txn).index_message_ids(unindexed)
}

/// Adds the `unindexed` entries in a commit of their own, neither synced
/// nor journaled, and empties `unindexed`.
fn index_now(db: &Database, unindexed: &mut Unindexed) -> Result<()> {
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
    fn commit_batch(
        &mut self,
        queued: Vec<(Box<dyn Job>, bool)>,
        more: &mut dyn FnMut(usize) -> Vec<(Box<dyn Job>, bool)>,
    ) -> (Vec<Box<dyn Job>>, Result<bool>) {
        let mut jobs = Vec::with_capacity(queued.len());
        let outcome = self.run_and_commit(&mut jobs, queued, more);
        (jobs, outcome)
    }

    /// One step of the idle work, in a relaxed commit of its own; false
    /// when it failed (logged).
    fn idle_step(&mut self, idle: &Arc<dyn IdleWork>) -> bool {
        let work = idle.clone();
        let slot = Slot::new();
        let job = Box::new(Pending {
            op: Some(move |tables: &mut WriteTables<'_>| work.step(tables)),
            result: None,
            slot: slot.clone(),
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

    fn run_and_commit(
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

    fn sync_journal(&mut self) -> Result<()> {
        self.journal.sync().inspect_err(|_| self.failed = true)
    }

    /// When the oldest record not yet checkpointed makes a checkpoint due.
    fn checkpoint_at(&self) -> Option<Instant> {
        self.oldest_unchecked.map(|oldest| oldest + CHECKPOINT_AGE)
    }

    fn checkpoint_due(&self) -> bool {
        self.since_checkpoint >= CHECKPOINT_RECORDS
            || self.journal.used() >= self.journal.max() / 2
            || self
                .oldest_unchecked
                .is_some_and(|oldest| oldest.elapsed() >= CHECKPOINT_AGE)
    }

    /// Makes everything committed so far durable in redb, and empties the
    /// journal. A failure leaves the journal as it is (still needed).
    fn checkpoint(&mut self) -> Result<()> {
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
    fn close(&mut self) {
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
        self.journal.shrink_to_smallest();
    }

    fn checkpoint_logged(&mut self) {
        if let Err(error) = self.checkpoint() {
            tracing::warn!(%error, "checkpoint failed; the journal keeps the writes");
            // Retry after another CHECKPOINT_AGE, not at once (a damaged
            // file fails every attempt: no busy loop).
            self.oldest_unchecked = Some(Instant::now());
        }
    }

    /// The database holds every record durably: the journal starts over,
    /// halved when it has long been larger than its rounds need.
    fn checkpointed(&mut self) {
        self.journal.reset();
        self.journal.shrink_if_oversize();
        self.since_checkpoint = 0;
        self.oldest_unchecked = None;
        self.counts.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sets a transaction's durability. A durable commit (a checkpoint: rare,
/// off the path of an acknowledgement) also saves redb's allocator state
/// (quick repair), so that an open after a crash need not walk the file.
pub(crate) fn set_durability(txn: &mut redb::WriteTransaction, durability: RedbDurability) -> Result<()> {
    txn.set_durability(durability)
        .map_err(|e| Error::Storage(Arc::new(e.into())))?;
    txn.set_quick_repair(matches!(durability, RedbDurability::Immediate));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::{Arc, Barrier};
    use std::thread::ThreadId;

    use crate::{Durability, Error, FileRole, NewMessage, SessionStore, StorageBackend, StorageFactory};

    fn store() -> (tempfile::TempDir, SessionStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_caller_alone_commits_in_its_own_thread() {
        let (_dir, store) = store();
        let caller = std::thread::current().id();
        let ran_in: ThreadId = store
            .redb()
            .write(Durability::Durable, |_| Ok(std::thread::current().id()))
            .unwrap();
        assert_eq!(ran_in, caller);
    }

    #[test]
    fn every_caller_of_many_threads_gets_its_own_answer() {
        let (_dir, store) = store();
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let answers: Vec<(usize, usize)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    scope.spawn(move || {
                        barrier.wait();
                        (0..50)
                            .map(|i| {
                                (
                                    t * 1000 + i,
                                    store
                                        .redb()
                                        .write(Durability::Durable, move |_| Ok(t * 1000 + i))
                                        .unwrap(),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(answers.len(), threads * 50);
        for (asked, answered) in answers {
            assert_eq!(asked, answered);
        }
    }

    #[test]
    fn a_request_queued_while_a_batch_runs_joins_that_batch() {
        let (_dir, store) = store();
        let (running, run) = std::sync::mpsc::channel();
        let leader = std::thread::current().id();
        std::thread::scope(|scope| {
            let store = &store;
            let late = scope.spawn(move || {
                run.recv().unwrap();
                store
                    .redb()
                    .write(Durability::Durable, |_| Ok(std::thread::current().id()))
                    .unwrap()
            });
            let first: ThreadId = store
                .redb()
                .write(Durability::Durable, move |_| {
                    running.send(()).unwrap();
                    // Time for the other caller to queue while this runs.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    Ok(std::thread::current().id())
                })
                .unwrap();
            assert_eq!(first, leader);
            // In a batch of its own, it would have led it in its own thread.
            assert_eq!(
                late.join().unwrap(),
                leader,
                "the late request was not in the batch"
            );
        });
    }

    #[test]
    fn a_panic_during_a_commit_stops_the_writer_without_hanging_a_caller() {
        let (_dir, store) = store();
        let id = store.create_session(None).unwrap();
        let panicked = store
            .redb()
            .write::<(), _>(Durability::Durable, |_| panic!("a damaged page"));
        assert!(matches!(panicked, Err(Error::WriterStopped)), "{panicked:?}");
        let later = store.add_message(id, NewMessage::user("after the panic"));
        assert!(matches!(later, Err(Error::WriterStopped)), "{later:?}");
        // What was committed before the panic is still there.
        assert!(store.get_session(id).unwrap().is_some());
    }

    /// Idle work that panics at its first step (as a write on a damaged
    /// page would), on the background thread.
    struct PanickingIdleWork;

    impl super::IdleWork for PanickingIdleWork {
        fn due(&self) -> bool {
            true
        }
        fn step(&self, _: &mut crate::engine::redb::tables::WriteTables<'_>) -> crate::Result<()> {
            panic!("a damaged page under the idle work")
        }
    }

    #[test]
    fn a_panic_on_the_background_thread_stops_the_writer_without_hanging_a_caller() {
        use crate::engine::redb::storage::{FileRole, FileStorage, StorageFactory};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut db = redb::Database::create(&path).unwrap();
        let journal_path = dir.path().join("s.redb-journal");
        let file = FileStorage.open(&journal_path, FileRole::Journal).unwrap();
        let journal = super::Journal::recover(file, None, journal_path, 64 << 10, true, &mut db).unwrap();
        let writer = super::Writer::start(
            &path,
            Arc::new(std::sync::RwLock::new(db)),
            journal,
            Arc::new(PanickingIdleWork),
            Arc::new(crate::engine::redb::cache::MessageCache::new(0)),
        )
        .unwrap();
        // The idle work runs as soon as nothing waits; writes keep coming
        // until they see the writer stopped (or the test times out).
        let answer = loop {
            match writer.write(super::Durability::Durable, |_| Ok(())) {
                Ok(()) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(error) => break error,
            }
        };
        assert!(matches!(answer, Error::WriterStopped), "{answer:?}");
        drop(writer);
    }

    /// Real files; the database's next `refused` syncs fail.
    #[derive(Clone, Default)]
    struct RefusedSyncs {
        refused: Arc<AtomicU32>,
    }

    #[derive(Debug)]
    struct RefusingSync {
        file: Box<dyn StorageBackend>,
        refused: Arc<AtomicU32>,
    }

    impl StorageFactory for RefusedSyncs {
        fn open(&self, path: &std::path::Path, role: FileRole) -> std::io::Result<Box<dyn StorageBackend>> {
            let file = crate::FileStorage.open(path, role)?;
            Ok(match role {
                FileRole::Database => Box::new(RefusingSync {
                    file,
                    refused: self.refused.clone(),
                }),
                _ => file,
            })
        }
    }

    impl StorageBackend for RefusingSync {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            let refuse = self.refused.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
            if refuse.is_ok() {
                return Err(std::io::Error::other("the test refuses this sync"));
            }
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.file.write(offset, data)
        }
    }

    /// Maintenance needs the database to hold every journal record durably
    /// (compact rewrites the file and wipes the journal): when the checkpoint
    /// before it fails, it fails too and changes nothing, and every write
    /// acknowledged before or after it survives a crash. (Compacting anyway
    /// swapped in a healthy file that took writes again, into a journal whose
    /// first blocks it had wiped: the next open lost them.) In this crate's
    /// tests no checkpoint comes by age, so the journal still holds the
    /// records when the compaction starts.
    #[test]
    fn compact_fails_when_its_checkpoint_fails_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let storage = RefusedSyncs::default();
        let options = crate::StoreOptions {
            storage: Arc::new(storage.clone()),
            ..crate::StoreOptions::default()
        };
        let store = SessionStore::open_with(&path, options).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        // Records over more than a block of the journal: about 3 KB each
        // that compression cannot shrink.
        let before: Vec<String> = (0..3)
            .map(|_| {
                (0..100)
                    .map(|_| uuid::Uuid::new_v4().simple().to_string())
                    .collect()
            })
            .collect();
        for content in &before {
            store.add_message(id, NewMessage::user(content)).unwrap();
        }
        // The checkpoint before the compaction fails: its sync is refused.
        storage.refused.store(1, SeqCst);
        assert!(
            store.compact(&mut |_, _| {}).is_err(),
            "compact without a checkpoint"
        );
        // redb refuses every commit after a failed one (`PreviousIo`) until the
        // store is opened again; an append that is acknowledged must last.
        let after = store.add_message(id, NewMessage::user("after"));
        // A crash now.
        let (_crashed, reopened) = store.reopened_after_a_crash();
        drop(store);
        let session = reopened.get_session(id).unwrap().unwrap();
        let messages: Vec<String> = session.messages.iter().map(|m| m.content.clone()).collect();
        let written: Vec<String> = before
            .into_iter()
            .chain(after.is_ok().then(|| "after".to_owned()))
            .collect();
        assert_eq!(messages.len(), written.len(), "acknowledged messages lost");
        assert!(messages == written, "other messages than those written");
        assert!(reopened.check(&mut |_, _| {}).unwrap().is_clean());
    }
}
