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
//! `journal/`). Checkpoints and the idle work (see [`IdleWork`]) run on a
//! background thread, off the path of an acknowledgement. Closing ends with
//! a checkpoint.
//!
//! By concern: `queue.rs` (requests, their slots, the lead handed on),
//! `commit.rs` (a batch's transaction, journal record and commit),
//! `background.rs` (checkpoints, idle work, the close).
//!
//! A request submitted without a waiting caller ([`Writer::submit`], an
//! async caller's) is answered through a callback; it cannot lead, so
//! when the lead would fall to it, the background thread leads instead.

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
use crate::engine::Reply;
use crate::error::{Error, Result};
use crate::model::{Durability, StoreCounters};

mod background;
mod commit;
mod queue;
#[cfg(test)]
mod tests;
pub(crate) use background::IdleWork;
use commit::*;
pub(crate) use commit::{set_durability, Unindexed};
use queue::*;

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
            answer: slot.clone(),
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

    /// As [`Writer::write`], without waiting: `reply` gets the answer, once,
    /// from the thread that answers the batch (the one that committed it).
    /// When no commit is under way, the background thread leads one: the
    /// calling thread never commits, so an async worker may call this.
    #[cfg(feature = "tokio")]
    pub fn submit<T, F>(&self, durability: Durability, op: F, reply: Reply<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTables<'_>) -> Result<T> + Send + 'static,
    {
        let job = Box::new(Pending {
            op: Some(op),
            result: None,
            answer: Some(reply),
        });
        let wake = {
            let mut queue = lock(&self.shared.queue);
            queue.waiting.push_back((job, durability == Durability::Durable));
            let idle = !std::mem::replace(&mut queue.leading, true);
            queue.background_leads |= idle;
            idle
        };
        if wake {
            self.shared.background.notify_one();
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
