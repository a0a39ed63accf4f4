//! The one writer: a thread that takes every waiting write request, runs them
//! in one redb transaction, commits once, and then answers them all (group
//! commit). The commit policy lives here and nowhere else.
//!
//! A commit appends the batch's changes to the journal (synced when a
//! request of the batch is durable) and then commits to redb without a sync
//! (`Durability::None`); a checkpoint, a durable redb commit, follows every
//! [`CHECKPOINT_RECORDS`] records, half the journal's bytes or
//! [`CHECKPOINT_AGE`], after which the journal starts over (see
//! `journal.rs`). Closing ends with a checkpoint.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Durability as RedbDurability};

use crate::cache::MessageCache;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::tables::WriteTables;

/// How long a write must survive before its call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Ok is returned once the data is on disk (fsync'd). The default.
    #[default]
    Durable,
    /// Ok is returned once the data is visible to readers; it reaches the
    /// disk with the next durable commit, or when the store is closed. A crash
    /// may lose it.
    Relaxed,
}

/// Most requests one commit takes.
const MAX_BATCH: usize = 4096;

/// A write request waiting for the writer.
trait Job: Send {
    /// Runs the request inside the batch's transaction. False when it failed
    /// in a way that may have left partial writes: the batch must not commit.
    fn run(&mut self, tables: &mut WriteTables<'_>) -> bool;
    /// Answers the caller once the batch's commit is decided.
    fn finish(self: Box<Self>, commit: Option<&Error>);
}

struct Pending<T, F> {
    op: Option<F>,
    result: Option<Result<T>>,
    reply: SyncSender<Result<T>>,
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

    fn finish(self: Box<Self>, commit: Option<&Error>) {
        let result = match (commit, self.result) {
            (None, Some(result)) => result,
            (Some(_), Some(Err(own))) if !own.is_refusal() => Err(own),
            (Some(error), _) => Err(error.clone()),
            (None, None) => Err(Error::WriterStopped),
        };
        let _ = self.reply.send(result);
    }
}

/// Work the writer does when no request waits, in small commits of its own
/// (relaxed: the work must change nothing a reader can observe, so that
/// losing it in a crash loses nothing).
pub(crate) trait IdleWork: Send + Sync {
    /// True while there is work to do.
    fn due(&self) -> bool;
    /// Does one small piece of it inside a commit.
    fn step(&self, tables: &mut WriteTables<'_>) -> Result<()>;
}

type Maintenance = Box<dyn FnOnce(&mut Database) + Send>;

enum Request {
    Write { job: Box<dyn Job>, durable: bool },
    Maintain(Maintenance),
}

/// The handle callers use to reach the writer thread.
pub(crate) struct Writer {
    requests: Option<Sender<Request>>,
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
        let (requests, receiver) = mpsc::channel();
        let committer = Committer {
            db,
            journal,
            cache,
            since_checkpoint: 0,
            oldest_unchecked: None,
            failed: false,
        };
        let thread = std::thread::Builder::new()
            .name("sessionstore-writer".into())
            .spawn(move || run(committer, receiver, idle))
            .map_err(|e| Error::io("start the writer thread for", path, e))?;
        Ok(Writer {
            requests: Some(requests),
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
        let (reply, answer) = mpsc::sync_channel::<Result<T>>(1);
        let job = Box::new(Pending {
            op: Some(op),
            result: None,
            reply,
        });
        self.send(Request::Write {
            job,
            durable: durability == Durability::Durable,
        })?;
        answer.recv().map_err(|_| Error::WriterStopped)?
    }

    /// Runs `op` with the database to itself, between two commits, after
    /// a checkpoint: the database holds everything durably, the journal is
    /// empty.
    pub fn maintain<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Database) -> Result<T> + Send + 'static,
    {
        let (reply, answer): (SyncSender<Result<T>>, _) = mpsc::sync_channel(1);
        self.send(Request::Maintain(Box::new(move |db| {
            let _ = reply.send(op(db));
        })))?;
        answer.recv().map_err(|_| Error::WriterStopped)?
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests
            .as_ref()
            .ok_or(Error::WriterStopped)?
            .send(request)
            .map_err(|_| Error::WriterStopped)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A checkpoint (durable redb commit, then the journal starts over) follows
/// this many journal records, or half the journal's bytes,
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
}

fn run(mut committer: Committer, requests: Receiver<Request>, idle: Arc<dyn IdleWork>) {
    let mut pending: Option<Request> = None;
    // Set when idle work failed: retried after the next successful batch.
    let mut idle_failed = false;
    loop {
        if pending.is_none() && !idle_failed && idle.due() {
            match requests.try_recv() {
                Ok(request) => pending = Some(request),
                Err(TryRecvError::Empty) => {
                    idle_failed = !committer.idle_step(&idle);
                    if committer.failed {
                        break;
                    }
                    if committer.checkpoint_due() {
                        committer.checkpoint_logged();
                    }
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        let first = match pending.take() {
            Some(request) => request,
            None => match committer.oldest_unchecked {
                None => match requests.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
                Some(oldest) => {
                    let wait = (oldest + CHECKPOINT_AGE).saturating_duration_since(Instant::now());
                    match requests.recv_timeout(wait) {
                        Ok(request) => request,
                        Err(RecvTimeoutError::Timeout) => {
                            committer.checkpoint_logged();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            },
        };
        let first = match first {
            Request::Maintain(op) => {
                committer.checkpoint_logged();
                match committer.db.write() {
                    Ok(mut guard) => op(&mut guard),
                    Err(_) => return,
                }
                // Maintenance may have rewritten anything.
                committer.cache.clear();
                continue;
            }
            Request::Write { job, durable } => (job, durable),
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(Request::Write { job, durable }) => batch.push((job, durable)),
                Ok(maintenance) => {
                    pending = Some(maintenance);
                    break;
                }
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(|(_, durable)| *durable);
        let jobs = batch.into_iter().map(|(job, _)| job).collect();
        idle_failed &= committer.commit_batch(jobs, durable).is_err();
        if committer.failed {
            break;
        }
        if committer.checkpoint_due() {
            committer.checkpoint_logged();
        }
    }
    // Closing, or stopping after a journal failure: what redb holds (every
    // commit that was answered Ok) becomes durable.
    committer.checkpoint_logged();
}

impl Committer {
    /// Runs the jobs of one batch in one transaction, commits, and answers
    /// each; the commit's outcome.
    fn commit_batch(&mut self, mut jobs: Vec<Box<dyn Job>>, durable: bool) -> Result<()> {
        let outcome = self.run_and_commit(&mut jobs, durable);
        for job in jobs {
            job.finish(outcome.as_ref().err());
        }
        outcome
    }

    /// One step of the idle work, in a relaxed commit of its own; false
    /// when it failed (logged).
    fn idle_step(&mut self, idle: &Arc<dyn IdleWork>) -> bool {
        let work = idle.clone();
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Box::new(Pending {
            op: Some(move |tables: &mut WriteTables<'_>| work.step(tables)),
            result: None,
            reply,
        });
        let committed = self.commit_batch(vec![job], false);
        match committed.and_then(|()| answer.try_recv().unwrap_or(Err(Error::WriterStopped))) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "the writer's idle work failed; retried after the next write");
                false
            }
        }
    }

    fn run_and_commit(&mut self, jobs: &mut [Box<dyn Job>], durable: bool) -> Result<()> {
        let lock = self.db.clone();
        let db = lock.read().map_err(|_| Error::WriterStopped)?;
        let mut txn = db.begin_write()?;
        let (changes, notes, journaled) = {
            let mut tables = WriteTables::open(&txn)?;
            for job in jobs.iter_mut() {
                if !job.run(&mut tables) {
                    return Err(Error::BatchAborted);
                }
            }
            let changes = tables.take_changes();
            let journaled = self.journal.fits(changes.len());
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
            return Ok(());
        }
        if !journaled {
            // Too big for what is left of the journal: commit it durably to
            // redb, which then holds everything and the journal starts over.
            set_durability(&mut txn, RedbDurability::Immediate)?;
            txn.commit()?;
            self.cache.apply(notes);
            self.checkpointed();
            return Ok(());
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
        Ok(())
    }

    fn sync_journal(&mut self) -> Result<()> {
        self.journal.sync().inspect_err(|_| self.failed = true)
    }

    fn checkpoint_due(&self) -> bool {
        self.since_checkpoint >= CHECKPOINT_RECORDS
            || self.journal.used() >= self.journal.capacity() / 2
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
        txn.commit()?;
        drop(db);
        self.checkpointed();
        Ok(())
    }

    fn checkpoint_logged(&mut self) {
        if let Err(error) = self.checkpoint() {
            tracing::warn!(%error, "checkpoint failed; the journal keeps the writes");
            // Retry after another CHECKPOINT_AGE, not at once (a damaged
            // file fails every attempt: no busy loop).
            self.oldest_unchecked = Some(Instant::now());
        }
    }

    fn checkpointed(&mut self) {
        self.journal.reset();
        self.since_checkpoint = 0;
        self.oldest_unchecked = None;
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
