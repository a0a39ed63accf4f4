//! The queue of write requests: a caller that finds no commit under way
//! leads one, taking every request waiting; the others wait in their slot
//! for their answer or the lead.

use super::*;

/// Most requests one commit takes.
pub(super) const MAX_BATCH: usize = 4096;
/// A write request waiting for a commit.
pub(super) trait Job: Send {
    /// Runs the request inside the batch's transaction. False when it failed
    /// in a way that may have left partial writes: the batch must not commit.
    fn run(&mut self, tables: &mut WriteTables<'_>) -> bool;
    /// Answers the caller once the batch's commit is decided.
    fn finish(self: Box<Self>, commit: Option<&Error>);
    /// Tells the caller, still waiting, that it leads the next commit;
    /// false when the caller waits in no thread (a request answered by
    /// [`Reply`]): the background thread leads instead.
    fn lead(&self) -> bool;
}
/// Where a waiting caller finds its answer, or its turn to lead.
pub(super) struct Slot<T> {
    pub(super) state: Mutex<SlotState<T>>,
    pub(super) changed: Condvar,
}
pub(super) enum SlotState<T> {
    Waiting,
    Lead,
    Done(Result<T>),
}
impl<T> Slot<T> {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::Waiting),
            changed: Condvar::new(),
        })
    }

    pub(super) fn set(&self, new: SlotState<T>) {
        let mut state = lock(&self.state);
        // An answer is final: a late hand-off never replaces it.
        if !matches!(*state, SlotState::Done(_)) {
            *state = new;
            self.changed.notify_one();
        }
    }

    /// Waits until answered (`Ok`) or handed the lead (`Err(())`).
    pub(super) fn wait(&self) -> std::result::Result<Result<T>, ()> {
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
/// How a request's caller gets its answer.
pub(super) trait Answer<T>: Send {
    /// Gives `result`; only the first one given counts.
    fn give(&mut self, result: Result<T>);
    /// As [`Job::lead`].
    fn lead(&self) -> bool;
}
/// A caller waiting in its slot, which may be handed the lead.
impl<T: Send> Answer<T> for Arc<Slot<T>> {
    fn give(&mut self, result: Result<T>) {
        self.set(SlotState::Done(result));
    }

    fn lead(&self) -> bool {
        self.set(SlotState::Lead);
        true
    }
}
/// A caller that does not wait (see [`Writer::submit`]): its reply, taken
/// when given.
impl<T> Answer<T> for Option<Reply<T>> {
    fn give(&mut self, result: Result<T>) {
        if let Some(reply) = self.take() {
            reply(result);
        }
    }

    fn lead(&self) -> bool {
        false
    }
}
pub(super) struct Pending<T, F, A: Answer<T>> {
    pub(super) op: Option<F>,
    pub(super) result: Option<Result<T>>,
    pub(super) answer: A,
}
impl<T, F, A> Job for Pending<T, F, A>
where
    T: Send,
    F: FnOnce(&mut WriteTables<'_>) -> Result<T> + Send,
    A: Answer<T>,
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
        self.answer.give(result);
    }

    fn lead(&self) -> bool {
        self.answer.lead()
    }
}
impl<T, F, A: Answer<T>> Drop for Pending<T, F, A> {
    /// A request dropped unanswered (a panic during its commit) answers
    /// [`Error::WriterStopped`], so that its caller never waits forever.
    fn drop(&mut self) {
        self.answer.give(Err(Error::WriterStopped));
    }
}
/// The requests waiting for a commit, and what the background thread is
/// asked to do. Locked briefly, never across I/O; a thread holding it never
/// takes the committer's lock.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) waiting: VecDeque<(Box<dyn Job>, bool)>,
    /// A leader is committing (or was handed the lead and is waking up).
    pub(super) leading: bool,
    /// When the oldest record the database holds only non-durably reaches
    /// [`CHECKPOINT_AGE`].
    pub(super) checkpoint_at: Option<Instant>,
    /// A checkpoint is due (records or bytes) or under way: the background
    /// thread does it, and no leader takes the committer until it is done
    /// (a caller in a loop of writes would otherwise always win the lock
    /// back, and pages freed since the last checkpoint, which only a
    /// checkpoint makes reusable, would pile up in the file).
    pub(super) checkpointing: bool,
    /// The idle work failed: retried after the next successful batch.
    pub(super) idle_failed: bool,
    /// When the background thread, waiting, wakes to look at idle work
    /// that becomes due with time (see `IdleWork::due_at`).
    pub(super) idle_wake_at: Option<Instant>,
    /// The lead was handed to a request whose caller waits in no thread:
    /// the background thread leads.
    pub(super) background_leads: bool,
    /// The store is closing: the background thread ends (no writer is left).
    pub(super) closing: bool,
}
impl Shared {
    pub(super) fn committer(&self) -> Result<MutexGuard<'_, Committer>> {
        self.committer.lock().map_err(|_| Error::WriterStopped)
    }

    /// Runs `f` with the committer to itself; `None` when the writer has
    /// stopped, or when `f` panicked (a write or a checkpoint on a damaged
    /// page), which stops it. A panic never leaves the queue without a
    /// leader, nor a checkpoint marked under way.
    pub(super) fn with_committer<T>(&self, f: impl FnOnce(&mut Committer) -> T) -> Option<T> {
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
    pub(super) fn late_jobs(&self, room: usize) -> Vec<(Box<dyn Job>, bool)> {
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
    pub(super) fn lead(&self) {
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
            // Idle work that will become due: wake the background thread
            // if it waits past then.
            if let Some(at) = self.idle.due_at() {
                wake |= queue.idle_wake_at.is_none_or(|waking| at < waking);
            }
        }
        match queue.waiting.front() {
            Some((next, _)) => {
                if !next.lead() {
                    queue.background_leads = true;
                    wake = true;
                }
            }
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
}
/// The callers of a committed batch, to be answered, counted in
/// `Shared::answering` until they are, whatever happens (a panic while
/// answering must not leave a leader waiting for answers that never come).
pub(super) struct Answers<'a> {
    pub(super) jobs: std::vec::IntoIter<Box<dyn Job>>,
    pub(super) outcome: Result<()>,
    pub(super) answering: &'a AtomicUsize,
}
impl<'a> Answers<'a> {
    pub(super) fn new(jobs: Vec<Box<dyn Job>>, outcome: Result<()>, answering: &'a AtomicUsize) -> Self {
        answering.fetch_add(jobs.len(), Ordering::AcqRel);
        Answers {
            jobs: jobs.into_iter(),
            outcome,
            answering,
        }
    }

    /// Answers each caller.
    pub(super) fn give(mut self) {
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
pub(super) fn take_in(jobs: &mut Vec<Box<dyn Job>>, arrived: Vec<(Box<dyn Job>, bool)>) -> bool {
    let mut durable = false;
    for (job, job_durable) in arrived {
        durable |= job_durable;
        jobs.push(job);
    }
    durable
}
/// Locks `mutex`; a panic elsewhere while it was held leaves its data
/// consistent here (queues and slots are changed in single steps).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
/// Waits on `condvar` with `guard`, as [`lock`] does with a poisoned lock.
pub(super) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}
