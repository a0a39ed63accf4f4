//! Issue 7, tests 2 and 3: power loss and I/O faults, on a simulated disk
//! (`tests/common/disk.rs`) that the store opens every one of its files
//! through (`StoreOptions::storage`).
//!
//! A scripted workload (creates, appends of small and page-sized messages,
//! context updates, undo, expiry, deletion, erasure, and appends that grow
//! the journal) runs once on a healthy
//! disk, recording the store's state after each step. Then:
//!
//! - power loss: for every sync k of that run, the power is cut as sync k is
//!   called, keeping none, all, or a random part of the unsynced writes; the
//!   files left are reopened: the state must be the one after the last
//!   acknowledged step or, for the step in flight, the one after it (each
//!   commit all or nothing), the integrity check clean, the store writable;
//!   the same again on a store reopened after a clean close, whose open
//!   leaves redb's last sync for the file's next write;
//! - faults: for every N, the Nth write, set_len or sync fails with EIO or
//!   ENOSPC, once or from then on: no panic in any thread, the call in
//!   flight returns an error, and the store reopened (from what was written,
//!   and from what was synced) holds exactly the acknowledged steps.
//!
//! Both run in full in `cargo test`; `SESSIONSTORE_LONG=1` adds more random
//! variants of the partial power cut per sync.

mod common;

use sessionstore::redb_engine::{FileRole, RedbOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use common::disk::{Call, Fault, Files, Keep, SimDisk, EIO, ENOSPC};
use common::{assert_clean, content, scale, seed, Rng};
use sessionstore::{Durability, Error, NewMessage, Result, SessionStore, StoreOptions, Uuid};

const USERS: usize = 5;

/// One step of the scripted workload; sessions are named by their user.
#[derive(Clone, Copy, Debug)]
enum Step {
    Create(usize),
    Add(usize, usize),
    Context(usize, u64),
    Pop(usize),
    Expire(usize),
    Delete(usize),
    Erase(usize),
    ExpireAll,
}

fn script() -> Vec<Step> {
    use Step::*;
    let mut steps = vec![
        Create(0),
        Create(1),
        Add(0, 10),
        Add(1, 0),
        Create(2),
        Add(2, 300),
    ];
    steps.extend([
        Add(0, 5000),
        // With the one of 140,000 below, larger than the journal a store
        // starts with: it grows.
        Add(2, 70_000),
        Context(0, 1),
        Add(1, 70),
        Create(3),
        Add(3, 20),
        Add(3, 30),
    ]);
    steps.extend([
        Pop(1),
        Add(2, 12),
        Context(2, 2),
        Expire(2),
        Add(0, 9000),
        Delete(3),
    ]);
    steps.extend([Add(1, 40), Create(4), Add(4, 1), Add(4, 2), Erase(1), Add(0, 3)]);
    steps.extend([Context(4, 3), Pop(0), Add(4, 100), Add(4, 140_000), ExpireAll]);
    steps
}

fn user(u: usize) -> String {
    format!("user-{u}")
}

/// Runs one step. `sessions` maps users to the session the script made.
fn run(store: &SessionStore, sessions: &mut BTreeMap<usize, Uuid>, step: Step, index: usize) -> Result<()> {
    let session = |u: usize| sessions.get(&u).copied().expect("the script creates before use");
    match step {
        Step::Create(u) => {
            let id = store.create_session(Some(&user(u)))?;
            sessions.insert(u, id);
        }
        Step::Add(u, len) => {
            store.add_message(session(u), NewMessage::user(content(index as u64, len)))?;
        }
        Step::Context(u, n) => store.update_context(session(u), &format!(r#"{{"step": {n}}}"#))?,
        Step::Pop(u) => {
            store.pop_last_message(session(u))?;
        }
        Step::Expire(u) => {
            store.expire_session(session(u))?;
        }
        Step::Delete(u) => {
            store.delete_session(session(u))?;
        }
        Step::Erase(u) => {
            store.erase_user(&user(u))?;
        }
        Step::ExpireAll => {
            // Everything is older than now once a millisecond has passed.
            std::thread::sleep(Duration::from_millis(2));
            store.expire_old_sessions(Duration::ZERO)?;
        }
    }
    Ok(())
}

/// The state of a store that the script can change, without the random
/// session ids and the clock: per user, each session's expiry, context and
/// messages; and the next message id.
type Digest = (
    BTreeMap<String, Vec<(bool, Option<String>, Vec<(u64, u64, String)>)>>,
    u64,
);

fn digest(store: &SessionStore) -> Result<Digest> {
    let snapshot = store.snapshot()?;
    let mut users = BTreeMap::new();
    for u in 0..USERS {
        let mut sessions = Vec::new();
        for id in store.list_user_sessions(&user(u), true)? {
            let info = store.session_info(id)?.expect("listed session");
            let messages = snapshot
                .messages(id)?
                .map(|m| m.map(|m| (m.id, m.seq, m.content)))
                .collect::<Result<Vec<_>>>()?;
            assert_eq!(messages.len() as u64, info.message_count, "count of {id}");
            sessions.push((
                info.is_expired(),
                info.context.map(|c| c.as_str().to_owned()),
                messages,
            ));
        }
        users.insert(user(u), sessions);
    }
    Ok((users, snapshot.next_message_id()?))
}

fn path(dir: &Path) -> PathBuf {
    dir.join("store.redb")
}

fn options(disk: &SimDisk) -> StoreOptions {
    StoreOptions {
        redb: RedbOptions {
            storage: Arc::new(disk.clone()),
            cache_bytes: 1 << 20,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    }
}

/// What a run of the script on a disk did.
struct Outcome {
    /// Steps acknowledged (Ok), in order from the first; `None` when the
    /// open itself failed.
    acked: Option<usize>,
    /// The error of the call that failed, if one did.
    error: Option<sessionstore::Error>,
}

/// Opens a store on `disk` and runs the script until a call fails.
/// `after_each` sees the store after each acknowledged step.
fn run_script(dir: &Path, disk: &SimDisk, after_each: impl FnMut(&SessionStore)) -> Outcome {
    run_steps(dir, disk, &script(), after_each)
}

/// Opens a store on `disk` (each user's first session, if the store has
/// one, is the one `steps` name) and runs `steps` until a call fails.
fn run_steps(
    dir: &Path,
    disk: &SimDisk,
    steps: &[Step],
    mut after_each: impl FnMut(&SessionStore),
) -> Outcome {
    let store = match SessionStore::open_with(path(dir), options(disk)) {
        Ok(store) => store,
        Err(error) => {
            return Outcome {
                acked: None,
                error: Some(error),
            }
        }
    };
    after_each(&store);
    let mut sessions = BTreeMap::new();
    for u in 0..USERS {
        match store.list_user_sessions(&user(u), true) {
            Ok(ids) => sessions.extend(ids.first().map(|&id| (u, id))),
            Err(error) => {
                return Outcome {
                    acked: Some(0),
                    error: Some(error),
                }
            }
        }
    }
    for (index, &step) in steps.iter().enumerate() {
        if let Err(error) = run(&store, &mut sessions, step, index) {
            return Outcome {
                acked: Some(index),
                error: Some(error),
            };
        }
        after_each(&store);
    }
    Outcome {
        acked: Some(steps.len()),
        error: None,
    }
}

/// The healthy run: the state after open (index 0) and after each step.
struct Reference {
    states: Vec<Digest>,
    syncs: u64,
    mutations: u64,
    files: usize,
    /// The sizes the journal had after the open and after each step.
    journal_sizes: Vec<u64>,
}

/// The healthy run of the script on a new store.
fn reference() -> Reference {
    let dir = tempfile::tempdir().unwrap();
    reference_after(dir.path(), &Files::new(), &script())
}

/// The healthy run of `steps` on a disk holding `files` (in `dir`): the
/// state once opened (index 0) and after each step.
fn reference_after(dir: &Path, files: &Files, steps: &[Step]) -> Reference {
    let healthy = SimDisk::with_files(files.clone());
    let mut states = Vec::new();
    let mut journal_sizes = Vec::new();
    let journal = SessionStore::files_beside(&path(dir)).remove(0);
    let outcome = run_steps(dir, &healthy, steps, |store| {
        states.push(digest(store).expect("digest"));
        journal_sizes.push(healthy.written()[&journal].len());
    });
    assert!(outcome.error.is_none(), "healthy run failed: {:?}", outcome.error);
    Reference {
        states,
        syncs: healthy.syncs(),
        mutations: healthy.mutations(),
        files: healthy.paths().len(),
        journal_sizes,
    }
}

/// Opens the files left on a fresh, healthy disk: the state must be one of
/// `allowed` (indexes into the reference states), the check clean, and the
/// store must take a write. Every other reopen replays without the page
/// check before it (`StoreOptions::verify_after_crash` off).
fn reopen_and_verify(dir: &Path, files: Files, reference: &Reference, allowed: &[usize], case: &str) {
    let disk = SimDisk::with_files(files);
    let verify_after_crash = REOPENS.fetch_add(1, Ordering::SeqCst) % 2 == 0;
    let case = &format!("{case} (verify_after_crash: {verify_after_crash})");
    let options = StoreOptions {
        redb: RedbOptions {
            verify_after_crash,
            ..options(&disk).redb
        },
        ..options(&disk)
    };
    let store = match SessionStore::open_with(path(dir), options) {
        Ok(store) => store,
        // redb writes its magic number last when it creates a file: a file
        // whose creation was cut short is refused, clearly, and held nothing.
        Err(Error::Corrupt { why, .. }) if allowed == [0] && why.contains("magic number mismatch") => {
            INTERRUPTED_CREATIONS.fetch_add(1, Ordering::SeqCst);
            return;
        }
        Err(e) => panic!("{case}: the store does not reopen: {e}"),
    };
    let state = digest(&store).unwrap_or_else(|e| panic!("{case}: reading after reopen failed: {e}"));
    let matched = allowed.iter().find(|&&i| reference.states.get(i) == Some(&state));
    assert!(
        matched.is_some(),
        "{case}: the state after reopening is not the one after {allowed:?} acknowledged steps \
         but after {:?}",
        reference.states.iter().position(|s| *s == state)
    );
    assert_clean(&store);
    let id = store
        .create_session(Some("after"))
        .unwrap_or_else(|e| panic!("{case}: no write after reopening: {e}"));
    store
        .add_message(id, NewMessage::user("after the reopen"))
        .unwrap_or_else(|e| panic!("{case}: no write after reopening: {e}"));
}

/// Counts panics in every thread (the store's writer thread included, where
/// a panic would otherwise surface only as a stopped writer).
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Reopens so far, to alternate the check before a replay.
static REOPENS: AtomicU64 = AtomicU64::new(0);

/// Reopens refused because the file's creation was cut short.
static INTERRUPTED_CREATIONS: AtomicU64 = AtomicU64::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// The steps whose state may be found after a failure with `acked` steps
/// acknowledged: reference index 0 is the freshly opened store, index i+1
/// the state after step i.
fn all_or_nothing(acked: Option<usize>) -> Vec<usize> {
    match acked {
        None => vec![0],
        Some(n) => vec![n, n + 1],
    }
}

/// Runs `steps` on a disk holding `files` (in `dir`), the power cut as
/// each sync k of the healthy run (`reference`) is called, keeping none,
/// all, or a random part (`random_variants` of them) of the unsynced
/// writes, and reopens what each cut left ([`reopen_and_verify`]). The
/// number of cuts.
fn cut_power_at_every_sync(
    dir: &Path,
    files: &Files,
    steps: &[Step],
    reference: &Reference,
    random_variants: u64,
    rng: &mut Rng,
) -> u64 {
    let mut cuts = 0u64;
    for k in 0..reference.syncs {
        let mut keeps = vec![Keep::Nothing, Keep::Everything];
        keeps.extend((0..random_variants).map(|_| Keep::Part(rng.next_u64())));
        for keep in keeps {
            let case = format!("power cut at sync {k} keeping {keep:?}");
            let disk = SimDisk::with_files(files.clone());
            disk.crash_at_sync(k, keep);
            let outcome = run_steps(dir, &disk, steps, |_| {});
            let Some(files) = disk.crashed() else {
                // Session ids are random, so the trees, and the number of
                // syncs, vary a little from run to run.
                assert!(
                    k + 8 > reference.syncs,
                    "{case}: far fewer syncs than the healthy run"
                );
                continue;
            };
            // A cut while the store closes, after the last step, fails no call.
            assert!(
                outcome.error.is_some() || outcome.acked == Some(steps.len()),
                "{case}: the call in flight did not fail"
            );
            reopen_and_verify(dir, files, reference, &all_or_nothing(outcome.acked), &case);
            cuts += 1;
        }
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
    cuts
}

#[test]
fn power_loss_at_every_sync_keeps_each_commit_whole() {
    count_panics();
    let reference = reference();
    let mut rng = Rng::new(seed("power loss"));
    let random_variants = scale(2, 20);
    let dir = tempfile::tempdir().unwrap();
    let cuts = cut_power_at_every_sync(
        dir.path(),
        &Files::new(),
        &script(),
        &reference,
        random_variants,
        &mut rng,
    );
    assert!(reference.syncs > script().len() as u64, "each durable step syncs");
    let mut grown = reference.journal_sizes.clone();
    grown.dedup();
    assert!(grown.len() >= 2, "the journal did not grow: {grown:?}");
    eprintln!(
        "power loss: {} syncs x {} variants = {cuts} power cuts over {} files, every commit whole, \
         nothing acknowledged lost",
        reference.syncs,
        2 + random_variants,
        reference.files
    );
}

/// Files of a store that the first steps of the script made, then closed.
fn closed_store(dir: &Path) -> Files {
    let disk = SimDisk::default();
    let steps = [Step::Create(0), Step::Create(1), Step::Add(0, 3)];
    let outcome = run_steps(dir, &disk, &steps, |_| {});
    assert!(outcome.error.is_none(), "healthy run failed: {:?}", outcome.error);
    disk.synced()
}

/// What runs on the store of [`closed_store`] once reopened.
const AFTER_REOPEN: [Step; 3] = [Step::Add(0, 10), Step::Add(1, 5000), Step::Context(0, 7)];

/// An open of a cleanly closed store puts off the sync of the header redb
/// writes while opening until the file's next write (`DatabaseFile` in
/// `src/storage.rs`): the open syncs nothing of the database, and that sync
/// comes before anything else is written to it.
#[test]
fn a_clean_open_syncs_the_database_only_before_its_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SimDisk::with_files(closed_store(dir.path()));
    let store = SessionStore::open_with(path(dir.path()), options(&disk)).unwrap();
    let at_open = disk.calls(FileRole::Database);
    assert!(
        at_open.contains(&Call::Write),
        "redb writes its header while opening: {at_open:?}"
    );
    assert!(
        !at_open.contains(&Call::Sync),
        "the open synced the database: {at_open:?}"
    );
    let id = store.list_user_sessions(&user(0), false).unwrap()[0];
    store.add_message(id, NewMessage::user("after the open")).unwrap();
    // Closing writes the database (its last checkpoint, then redb's header).
    drop(store);
    let calls = disk.calls(FileRole::Database);
    assert!(calls[at_open.len()..].contains(&Call::Write), "{calls:?}");
    assert_eq!(
        calls.get(at_open.len()),
        Some(&Call::Sync),
        "the first call on the database after the open must be the sync kept back: {calls:?}"
    );
    let reopened = SimDisk::with_files(disk.synced());
    let store = SessionStore::open_with(path(dir.path()), options(&reopened)).unwrap();
    assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 2);
    assert_clean(&store);
}

/// As [`power_loss_at_every_sync_keeps_each_commit_whole`], on a store
/// reopened after a clean close: the sync the open keeps back (above) is
/// among those cut.
#[test]
fn power_loss_after_a_clean_reopen_keeps_each_commit_whole() {
    count_panics();
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_store(dir.path());
    let reference = reference_after(dir.path(), &closed, &AFTER_REOPEN);
    let mut rng = Rng::new(seed("power loss after a reopen"));
    let cuts = cut_power_at_every_sync(
        dir.path(),
        &closed,
        &AFTER_REOPEN,
        &reference,
        scale(4, 20),
        &mut rng,
    );
    assert!(cuts > 2 * AFTER_REOPEN.len() as u64, "only {cuts} power cuts");
    eprintln!("power loss after a clean reopen: {cuts} power cuts, every commit whole");
}

/// Files a power loss leaves in a store whose last writes were relaxed:
/// two sessions made durably, then appends that wait for no sync (a
/// journal record each, none on disk yet), the power cut at the next sync
/// keeping a random part of what was written (whole records, torn ones,
/// later ones without the ones before).
fn crashed_store(dir: &Path, seed: u64) -> Files {
    let disk = SimDisk::default();
    let store = SessionStore::open_with(path(dir), options(&disk)).expect("open");
    let id = store.create_session(Some(&user(0))).expect("create");
    store.create_session(Some(&user(1))).expect("create");
    let relaxed = store.with_durability(Durability::Relaxed);
    for i in 0..12 {
        relaxed
            .add_message(id, NewMessage::user(content(i, 40 + 700 * (i as usize % 3))))
            .expect("relaxed append");
    }
    disk.crash_at_sync(disk.syncs(), Keep::Part(seed));
    // The sync cut is this append's, or a checkpoint's that came first:
    // either way the append fails.
    let cut = store.add_message(id, NewMessage::user("cut"));
    assert!(cut.is_err(), "an append acknowledged after the power cut");
    drop((relaxed, store));
    disk.crashed().expect("the power was cut")
}

/// As [`power_loss_at_every_sync_keeps_each_commit_whole`], on a store
/// that a power loss left with records to replay and records past a torn
/// one that must never replay: the power is cut again at every sync after
/// the reopen, its replay's own included, and each reopen must find the
/// state after the first reopen and the steps acknowledged since.
#[test]
fn power_loss_after_a_crashed_reopen_keeps_each_commit_whole() {
    count_panics();
    let mut rng = Rng::new(seed("power loss after a crashed reopen"));
    let mut cuts = 0;
    let images = scale(3, 200);
    for _ in 0..images {
        let dir = tempfile::tempdir().unwrap();
        let crashed = crashed_store(dir.path(), rng.next_u64());
        let reference = reference_after(dir.path(), &crashed, &AFTER_REOPEN);
        cuts += cut_power_at_every_sync(
            dir.path(),
            &crashed,
            &AFTER_REOPEN,
            &reference,
            scale(2, 8),
            &mut rng,
        );
    }
    assert!(
        cuts > images * AFTER_REOPEN.len() as u64,
        "only {cuts} power cuts"
    );
    eprintln!(
        "power loss after a crashed reopen: {images} crashed stores, {cuts} power cuts, every commit whole"
    );
}

#[test]
fn every_failed_write_set_len_or_sync_is_an_error_and_loses_nothing() {
    count_panics();
    let reference = reference();
    let (mut runs, mut injected) = (0u64, 0u64);
    for at in 0..reference.mutations {
        // cargo test: EIO once and ENOSPC forever at every call; long: both
        // errors both ways.
        let variants = scale(
            vec![(EIO, false), (ENOSPC, true)],
            vec![(EIO, false), (EIO, true), (ENOSPC, false), (ENOSPC, true)],
        );
        for (errno, forever) in variants {
            let dir = tempfile::tempdir().unwrap();
            let disk = SimDisk::default();
            disk.inject(Fault { at, errno, forever });
            let mut journal_syncs_at_ack = 0;
            let outcome = run_script(dir.path(), &disk, |_| journal_syncs_at_ack = disk.journal_syncs());
            let case = format!(
                "errno {errno} at call {at} ({:?}), forever: {forever}, after {:?} steps",
                disk.first_fault(),
                outcome.acked
            );
            if disk.faults_injected() == 0 {
                // Session ids are random, so the trees, and the number
                // of calls, vary a little from run to run.
                assert!(
                    at + 64 > reference.mutations,
                    "{case}: far fewer calls than the healthy run"
                );
                continue;
            }
            // A failure while the store closes, after the last step, fails no call.
            assert!(
                outcome.error.is_some() || outcome.acked == Some(script().len()),
                "{case}: the failed call returned Ok"
            );
            injected += disk.faults_injected();
            runs += 1;
            // A failed write or growth of a file leaves the commit in
            // flight out. But the call fails and its commit may still be
            // found, whole, when the failure came after the commit was
            // written: a failed sync; redb's shrink of the file after a
            // durable commit; or, with every call failing from then on,
            // a journal record synced that could not be withdrawn when
            // the database refused the batch (it replays on reopening).
            let journal_synced = disk.journal_syncs() > journal_syncs_at_ack;
            let allowed = match (outcome.acked, disk.first_fault()) {
                (None, _) => vec![0],
                (Some(n), Some(Call::Sync | Call::Shrink)) => vec![n, n + 1],
                (Some(n), _) if forever && journal_synced => vec![n, n + 1],
                (Some(n), _) => vec![n],
            };
            reopen_and_verify(
                dir.path(),
                disk.written(),
                &reference,
                &allowed,
                &format!("{case}, reopened"),
            );
            reopen_and_verify(
                dir.path(),
                disk.synced(),
                &reference,
                &allowed,
                &format!("{case}, power lost after it"),
            );
        }
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
    eprintln!(
        "faults: {} calls x {} variants of EIO/ENOSPC, once/forever = {runs} runs, {injected} faults injected, \
         every failure an error, state equal to the last acknowledged step",
        reference.mutations,
        scale(2, 4)
    );
}
