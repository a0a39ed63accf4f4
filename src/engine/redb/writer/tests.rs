use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
#[cfg(feature = "tokio")]
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread::ThreadId;

use redb::StorageBackend;

use crate::engine::redb::storage::{FileRole, FileStorage, StorageFactory};
use crate::engine::redb::RedbOptions;
use crate::{Durability, Error, NewMessage, SessionStore, StoreOptions};

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

/// A writer of its own over a new database, with `idle` as its idle work.
fn writer(idle: Arc<dyn super::IdleWork>) -> (tempfile::TempDir, super::Writer) {
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
        idle,
        Arc::new(crate::engine::redb::cache::MessageCache::new(0)),
    )
    .unwrap();
    (dir, writer)
}

/// No idle work.
#[cfg(feature = "tokio")]
struct NoIdleWork;

#[cfg(feature = "tokio")]
impl super::IdleWork for NoIdleWork {
    fn due(&self) -> bool {
        false
    }
    fn step(&self, _: &mut crate::engine::redb::tables::WriteTables<'_>) -> crate::Result<()> {
        Ok(())
    }
}

/// What a submitted request answered: what it was asked, and its result.
#[cfg(feature = "tokio")]
type Answered<T> = (usize, crate::Result<T>);

/// Submits `op` as request `asked`, its answer sent to `answers`.
#[cfg(feature = "tokio")]
fn submit<T, F>(writer: &super::Writer, asked: usize, answers: &mpsc::Sender<Answered<T>>, op: F)
where
    T: Send + 'static,
    F: FnOnce(&mut crate::engine::redb::tables::WriteTables<'_>) -> crate::Result<T> + Send + 'static,
{
    let answers = answers.clone();
    let reply = Box::new(move |result| answers.send((asked, result)).unwrap());
    writer.submit(Durability::Durable, op, reply);
}

/// Requests submitted from many threads, none of which waits: each is
/// answered once, with its own result, and committed on a thread that is
/// not its caller's.
#[test]
#[cfg(feature = "tokio")]
fn submitted_requests_are_each_answered_once_off_their_callers_thread() {
    let (_dir, writer) = writer(Arc::new(NoIdleWork));
    let (answers, answered) = mpsc::channel();
    let threads = 8;
    let callers: Vec<ThreadId> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (writer, answers) = (&writer, answers.clone());
                scope.spawn(move || {
                    for i in 0..50 {
                        submit(writer, t * 1000 + i, &answers, move |_| {
                            Ok((t * 1000 + i, std::thread::current().id()))
                        });
                    }
                    std::thread::current().id()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(answers);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..threads * 50 {
        let (asked, result) = answered
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("every submitted request is answered");
        let (ran, thread) = result.unwrap();
        assert_eq!(asked, ran);
        assert!(!callers.contains(&thread), "a caller committed");
        assert!(seen.insert(asked), "request {asked} answered twice");
    }
    drop(writer);
    assert!(answered.recv().is_err(), "an answer more than the requests");
}

/// A submitted request whose batch fails is answered with the failure; one
/// that panics stops the writer and is answered `WriterStopped`, as is any
/// submitted after.
#[test]
#[cfg(feature = "tokio")]
fn submitted_requests_are_answered_when_the_writer_fails() {
    let (_dir, writer) = writer(Arc::new(NoIdleWork));
    let (answers, answered) = mpsc::channel();
    let wait = || answered.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    submit(&writer, 0, &answers, |_| -> crate::Result<()> {
        Err(Error::corrupt_record("messages", "the test's damaged record"))
    });
    let (_, failed) = wait();
    assert!(matches!(failed, Err(Error::CorruptRecord { .. })), "{failed:?}");
    submit(&writer, 1, &answers, |_| -> crate::Result<()> {
        panic!("a damaged page")
    });
    let (_, panicked) = wait();
    assert!(matches!(panicked, Err(Error::WriterStopped)), "{panicked:?}");
    submit(&writer, 2, &answers, |_| Ok(()));
    let (_, later) = wait();
    assert!(matches!(later, Err(Error::WriterStopped)), "{later:?}");
    drop(writer);
    drop(answers);
    assert!(answered.recv().is_err(), "an answer more than the requests");
}

#[test]
fn a_panic_on_the_background_thread_stops_the_writer_without_hanging_a_caller() {
    let (_dir, writer) = writer(Arc::new(PanickingIdleWork));
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
        let file = FileStorage.open(path, role)?;
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
    let options = StoreOptions {
        redb: RedbOptions {
            storage: Arc::new(storage.clone()),
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
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
