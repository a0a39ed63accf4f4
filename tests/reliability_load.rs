//! Issue 7, test 7: 32 threads of mixed operations for a fixed time.
//!
//! Each thread owns one user's sessions and keeps a model of them, so every
//! read of its own data is compared exactly; all threads also append to a
//! few shared sessions, with and without `add_message_if`. At the end: no
//! call failed, seqs are dense, every acknowledged message is there byte for
//! byte, the integrity check (indexes equal to their tables) is clean, and
//! the store's counts equal what the threads did, before and after a reopen.
//!
//! Bounded: 3 seconds. Long: `SESSIONSTORE_LONG=1 cargo test --release
//! --test reliability_load -- --nocapture` runs 5 minutes.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{assert_clean, content, scale, seed, Rng};
use sessionstore::{Durability, Error, NewMessage, SessionStore, Uuid};

const THREADS: u64 = 32;
const SHARED_SESSIONS: usize = 4;

/// A message as the thread that added it knows it: id, and how to rebuild
/// its content.
#[derive(Clone, Copy, Debug)]
struct Acked {
    id: u64,
    seed: u64,
    len: usize,
}

impl Acked {
    fn content(&self) -> String {
        content(self.seed, self.len)
    }
}

#[derive(Default)]
struct OwnSession {
    expired: bool,
    messages: Vec<Acked>,
}

/// What one thread did, for the final count.
#[derive(Default)]
struct Outcome {
    operations: u64,
    own: HashMap<Uuid, OwnSession>,
    shared: Vec<(Uuid, Acked)>,
    seq_conflicts: u64,
}

fn new_message(rng: &mut Rng) -> (NewMessage, u64, usize) {
    let seed = rng.next_u64();
    let len = if rng.chance(2) {
        10_000
    } else {
        rng.below(200) as usize
    };
    let message = match rng.below(3) {
        0 => NewMessage::user(content(seed, len)),
        1 => NewMessage::assistant(content(seed, len)),
        _ => NewMessage::system(content(seed, len)),
    };
    (message, seed, len)
}

fn ok<T>(what: &str, result: Result<T, Error>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed under load: {e}"))
}

fn worker(store: SessionStore, shared: &[Uuid], thread: u64, seed: u64, until: Instant) -> Outcome {
    let store = if thread % 2 == 1 {
        store.with_durability(Durability::Relaxed)
    } else {
        store
    };
    let user = format!("user-{thread}");
    let view = store.for_user(&user);
    let mut rng = Rng::new(seed);
    let mut out = Outcome::default();
    while Instant::now() < until {
        out.operations += 1;
        let active: Vec<Uuid> = out
            .own
            .iter()
            .filter(|(_, s)| !s.expired)
            .map(|(id, _)| *id)
            .collect();
        let pick = |rng: &mut Rng| active[rng.below(active.len() as u64) as usize];
        match rng.below(100) {
            _ if active.is_empty() => {
                out.own
                    .insert(ok("create", view.create_session()), OwnSession::default());
            }
            0..=4 => {
                out.own
                    .insert(ok("create", view.create_session()), OwnSession::default());
            }
            5..=29 => {
                let id = pick(&mut rng);
                let (message, seed, len) = new_message(&mut rng);
                let message_id = ok("add_message", view.add_message(id, message));
                let session = out.own.get_mut(&id).expect("own session");
                session.messages.push(Acked {
                    id: message_id,
                    seed,
                    len,
                });
            }
            30..=44 => {
                let id = shared[rng.below(shared.len() as u64) as usize];
                let (message, seed, len) = new_message(&mut rng);
                let message_id = ok("add_message (shared)", store.add_message(id, message));
                out.shared.push((
                    id,
                    Acked {
                        id: message_id,
                        seed,
                        len,
                    },
                ));
            }
            45..=54 => {
                let id = shared[rng.below(shared.len() as u64) as usize];
                let count = ok("session_info", store.session_info(id))
                    .expect("shared session")
                    .message_count;
                let (message, seed, len) = new_message(&mut rng);
                match store.add_message_if(id, count, message) {
                    Ok(message_id) => out.shared.push((
                        id,
                        Acked {
                            id: message_id,
                            seed,
                            len,
                        },
                    )),
                    Err(Error::SeqConflict { expected, actual, .. }) => {
                        assert_eq!(expected, count);
                        assert!(actual > count, "a conflict must mean another writer went first");
                        out.seq_conflicts += 1;
                    }
                    Err(e) => panic!("add_message_if failed under load: {e}"),
                }
            }
            55..=59 => {
                let id = pick(&mut rng);
                let context = format!(r#"{{"turn": {}, "thread": {thread}}}"#, rng.below(1000));
                ok("update_context", view.update_context(id, &context));
            }
            60..=69 => {
                let id = pick(&mut rng);
                let session = ok("get_session", view.get_session(id)).expect("own active session");
                assert_same(&session.messages, &out.own[&id].messages);
            }
            70..=74 => {
                let id = pick(&mut rng);
                let popped = ok("pop_last_message", view.pop_last_message(id));
                let expected = out.own.get_mut(&id).expect("own session").messages.pop();
                match (popped, expected) {
                    (None, None) => {}
                    (Some(message), Some(acked)) => {
                        assert_eq!(message.id, acked.id);
                        assert_eq!(message.content, acked.content());
                    }
                    (got, want) => panic!("pop_last_message gave {got:?}, the model {want:?}"),
                }
            }
            75..=77 => {
                let id = pick(&mut rng);
                assert!(ok("expire_session", view.expire_session(id)));
                out.own.get_mut(&id).expect("own session").expired = true;
            }
            78..=80 => {
                let ids: Vec<Uuid> = out.own.keys().copied().collect();
                let id = ids[rng.below(ids.len() as u64) as usize];
                let removed = ok("delete_session", view.delete_session(id));
                let session = out.own.remove(&id).expect("own session");
                assert_eq!(removed, session.messages.len() as u64);
            }
            81..=85 => {
                let id = pick(&mut rng);
                if let Some(acked) = out.own[&id].messages.last().copied() {
                    let (session, message) =
                        ok("get_message", view.get_message(acked.id)).expect("an acknowledged message");
                    assert_eq!(session, id);
                    assert_eq!(message.content, acked.content());
                }
            }
            86..=90 => {
                let mut listed = ok("list_sessions", view.list_sessions(false));
                let mut expected = active.clone();
                listed.sort();
                expected.sort();
                assert_eq!(listed, expected);
                let recent = ok("recent_sessions", view.recent_sessions(usize::MAX));
                assert_eq!(recent.len(), active.len());
            }
            91..=94 => {
                ok("stats", store.stats());
            }
            _ => {
                let expired = ok(
                    "expire_old_sessions",
                    store.expire_old_sessions(Duration::from_secs(3600)),
                );
                assert_eq!(expired, 0, "nothing is an hour old");
            }
        }
    }
    out
}

fn assert_same(messages: &[Arc<sessionstore::Message>], acked: &[Acked]) {
    assert_eq!(messages.len(), acked.len(), "message count");
    for (seq, (message, acked)) in messages.iter().zip(acked).enumerate() {
        assert_eq!(message.seq, seq as u64, "seqs are dense");
        assert_eq!(message.id, acked.id);
        assert_eq!(
            message.content,
            acked.content(),
            "message {} byte for byte",
            acked.id
        );
    }
}

/// Compares the whole store with what the threads did.
fn verify(store: &SessionStore, outcomes: &[Outcome], shared: &[Uuid]) {
    assert_clean(store);
    let mut messages = 0u64;
    let mut active = SHARED_SESSIONS as u64;
    let mut expired = 0u64;
    for out in outcomes {
        for (id, session) in &out.own {
            messages += session.messages.len() as u64;
            if session.expired {
                expired += 1;
                let info = store.session_info(*id).unwrap().expect("expired session kept");
                assert!(info.is_expired());
                assert_eq!(info.message_count, session.messages.len() as u64);
            } else {
                active += 1;
                let got = store.get_session(*id).unwrap().expect("active session");
                assert_same(&got.messages, &session.messages);
            }
        }
    }
    let mut by_session: HashMap<Uuid, HashMap<u64, Acked>> = HashMap::new();
    for (session, acked) in outcomes.iter().flat_map(|o| &o.shared) {
        by_session.entry(*session).or_default().insert(acked.id, *acked);
    }
    for id in shared {
        let got = store.get_session(*id).unwrap().expect("shared session");
        let acked = by_session.remove(id).unwrap_or_default();
        assert_eq!(
            got.messages.len(),
            acked.len(),
            "shared session {id}: every add counted once"
        );
        for (seq, message) in got.messages.iter().enumerate() {
            assert_eq!(message.seq, seq as u64, "seqs are dense");
            let a = acked.get(&message.id).expect("a message no thread added");
            assert_eq!(message.content, a.content());
        }
        messages += got.messages.len() as u64;
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.messages, messages, "messages counted");
    assert_eq!(stats.active_sessions, active, "active sessions counted");
    assert_eq!(stats.expired_sessions, expired, "expired sessions counted");
}

#[test]
fn thirty_two_threads_of_mixed_operations_lose_and_break_nothing() {
    let seed = seed("load");
    let seconds = scale(3, 300);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.redb");
    let store = SessionStore::open(&path).unwrap();
    let shared: Vec<Uuid> = (0..SHARED_SESSIONS)
        .map(|_| store.create_session(None).unwrap())
        .collect();
    let barrier = Barrier::new(THREADS as usize);
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = store.clone();
                let (shared, barrier) = (&shared, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let until = Instant::now() + Duration::from_secs(seconds);
                    worker(
                        store,
                        shared,
                        thread,
                        seed ^ thread.wrapping_mul(0x9E37_79B9),
                        until,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    verify(&store, &outcomes, &shared);
    drop(store);
    let store = SessionStore::open(&path).unwrap();
    verify(&store, &outcomes, &shared);
    let operations: u64 = outcomes.iter().map(|o| o.operations).sum();
    let conflicts: u64 = outcomes.iter().map(|o| o.seq_conflicts).sum();
    let stats = store.stats().unwrap();
    eprintln!(
        "load: {THREADS} threads, {seconds} s, {operations} operations, {conflicts} seq conflicts, \
         {} messages and {} sessions at the end, nothing lost",
        stats.messages,
        stats.active_sessions + stats.expired_sessions
    );
}
