//! The one writer: a thread that takes every waiting write request, runs them
//! in one redb transaction, commits once, and then answers them all (group
//! commit). The commit policy lives here and nowhere else.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use redb::{Database, Durability as RedbDurability};

use crate::error::{Error, Result};
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
    pub fn start(db: Arc<RwLock<Database>>) -> Result<Self> {
        let (requests, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sessionstore-writer".into())
            .spawn(move || run(db, receiver))
            .map_err(|e| Error::io("start the writer thread for", std::path::Path::new("store"), e))?;
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

    /// Runs `op` with the database to itself, between two commits.
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

fn run(db: Arc<RwLock<Database>>, requests: Receiver<Request>) {
    // True while a relaxed commit has not yet been followed by a durable one.
    let mut unsynced = false;
    let mut pending: Option<Request> = None;
    loop {
        let first = match pending.take() {
            Some(request) => request,
            None => match requests.recv() {
                Ok(request) => request,
                Err(_) => break,
            },
        };
        let first = match first {
            Request::Maintain(op) => {
                match db.write() {
                    Ok(mut guard) => op(&mut guard),
                    Err(_) => return,
                }
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
        if commit_batch(&db, jobs, durable).is_ok() {
            unsynced = !durable;
        }
    }
    if unsynced {
        let _ = commit_batch(&db, Vec::new(), true);
    }
}

/// Runs the jobs of one batch in one transaction, commits, and answers each.
fn commit_batch(db: &RwLock<Database>, mut jobs: Vec<Box<dyn Job>>, durable: bool) -> Result<()> {
    let outcome = run_and_commit(db, &mut jobs, durable);
    let error = outcome.as_ref().err();
    for job in jobs {
        job.finish(error);
    }
    outcome
}

fn run_and_commit(db: &RwLock<Database>, jobs: &mut [Box<dyn Job>], durable: bool) -> Result<()> {
    let mut txn = db.read().map_err(|_| Error::WriterStopped)?.begin_write()?;
    txn.set_durability(if durable {
        RedbDurability::Immediate
    } else {
        RedbDurability::None
    })
    .map_err(|e| Error::Storage(Arc::new(e.into())))?;
    {
        let mut tables = WriteTables::open(&txn)?;
        for job in jobs.iter_mut() {
            if !job.run(&mut tables) {
                return Err(Error::BatchAborted);
            }
        }
    }
    txn.commit()?;
    Ok(())
}
