//! Many threads at once: no message lost or duplicated, seqs dense, ids
//! unique, readers always see a consistent session.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{assert_clean, temp_store};
use sessionstore::{Error, Message, NewMessage, SessionStore, Uuid};

const THREADS: usize = 16;
const PER_THREAD: usize = 200;

/// Asserts that `id` holds exactly `contents` (in any interleaving) with
/// seqs 0..n, and that each writer's messages are in the order it wrote
/// them. Returns the message ids.
fn assert_complete(store: &SessionStore, id: Uuid, contents: &HashSet<String>) -> Vec<u64> {
    let session = store.get_session(id).unwrap().unwrap();
    assert_eq!(session.message_count, contents.len() as u64);
    let seqs: Vec<u64> = session.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (0..contents.len() as u64).collect::<Vec<_>>(), "seqs dense");
    let found: HashSet<String> = session.messages.iter().map(|m| m.content.clone()).collect();
    assert_eq!(found.len(), session.messages.len(), "no duplicate");
    assert_eq!(&found, contents, "no loss");
    assert_per_writer_order(&session.messages);
    session.messages.iter().map(|m| m.id).collect()
}

/// Contents are `writer/k`: each writer's k must increase with seq and id.
fn assert_per_writer_order(messages: &[Arc<Message>]) {
    let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
    for message in messages {
        let (writer, k) = message.content.split_once('/').unwrap();
        let k: u64 = k.parse().unwrap();
        if let Some((previous_k, previous_id)) = last.insert(writer, (k, message.id)) {
            assert!(
                k > previous_k && message.id > previous_id,
                "{writer}: {k} after {previous_k}"
            );
        }
    }
}

#[test]
fn sixteen_threads_appending_to_one_session_lose_and_duplicate_nothing() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let done = AtomicBool::new(false);
    let returned: Vec<u64> = std::thread::scope(|scope| {
        // A reader meanwhile: every read is a consistent prefix.
        let reader = scope.spawn(|| {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let session = store.get_session(id).unwrap().unwrap();
                assert_eq!(session.messages.len() as u64, session.message_count);
                assert!(session
                    .messages
                    .iter()
                    .enumerate()
                    .all(|(i, m)| m.seq == i as u64));
                reads += 1;
            }
            reads
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|k| {
                            store
                                .add_message(id, NewMessage::user(format!("t{t}/{k}")))
                                .unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let ids = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        ids
    });

    let expected: HashSet<String> = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |k| format!("t{t}/{k}")))
        .collect();
    let stored = assert_complete(&store, id, &expected);
    let unique: HashSet<u64> = returned.iter().copied().collect();
    assert_eq!(unique.len(), THREADS * PER_THREAD, "ids unique");
    assert_eq!(
        unique,
        stored.iter().copied().collect(),
        "the ids returned are the ids stored"
    );
    assert_eq!(store.stats().unwrap().messages, (THREADS * PER_THREAD) as u64);
    assert_clean(&store);
}

#[test]
fn sixteen_threads_appending_to_many_sessions_lose_and_duplicate_nothing() {
    const SESSIONS: usize = 8;
    let (_dir, store) = temp_store();
    let sessions: Vec<Uuid> = (0..SESSIONS)
        .map(|n| store.create_session(Some(&format!("user{}", n % 3))).unwrap())
        .collect();
    let ids: Vec<u64> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, sessions) = (&store, &sessions);
                scope.spawn(move || {
                    // Each thread walks the sessions from its own starting point,
                    // and also creates (and fills) a session of its own.
                    let own = store.create_session(Some(&format!("writer{t}"))).unwrap();
                    let mut ids = Vec::new();
                    for k in 0..PER_THREAD / 2 {
                        let session = sessions[(t + k) % SESSIONS];
                        ids.push(
                            store
                                .add_message(session, NewMessage::user(format!("t{t}/{k}")))
                                .unwrap(),
                        );
                        ids.push(
                            store
                                .add_message(own, NewMessage::assistant(format!("own/{k}")))
                                .unwrap(),
                        );
                    }
                    ids
                })
            })
            .collect();
        writers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "ids unique");

    let mut expected: Vec<HashSet<String>> = vec![HashSet::new(); SESSIONS];
    for t in 0..THREADS {
        for k in 0..PER_THREAD / 2 {
            expected[(t + k) % SESSIONS].insert(format!("t{t}/{k}"));
        }
    }
    let mut total = 0;
    for (session, contents) in sessions.iter().zip(&expected) {
        total += assert_complete(&store, *session, contents).len();
    }
    let own_contents: HashSet<String> = (0..PER_THREAD / 2).map(|k| format!("own/{k}")).collect();
    for t in 0..THREADS {
        let own = store.list_user_sessions(&format!("writer{t}"), false).unwrap();
        assert_eq!(own.len(), 1);
        total += assert_complete(&store, own[0], &own_contents).len();
    }
    assert_eq!(total, ids.len());
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.messages),
        ((SESSIONS + THREADS) as u64, ids.len() as u64)
    );
    assert_clean(&store);
}

/// Optimistic appends under contention: every writer retries on a
/// conflict, and in the end each turn landed exactly once.
#[test]
fn racing_conditional_appends_retry_until_each_lands_once() {
    const TURNS: usize = 20;
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    let conflicts: usize = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    let mut conflicts = 0;
                    for k in 0..TURNS {
                        loop {
                            let next = store.get_session(id).unwrap().unwrap().message_count;
                            match store.add_message_if(id, next, NewMessage::user(format!("t{t}/{k}"))) {
                                Ok(_) => break,
                                Err(Error::SeqConflict { expected, actual, .. }) => {
                                    assert_eq!(expected, next);
                                    assert!(actual > next);
                                    conflicts += 1;
                                }
                                Err(other) => panic!("{other}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let expected: HashSet<String> = (0..THREADS)
        .flat_map(|t| (0..TURNS).map(move |k| format!("t{t}/{k}")))
        .collect();
    assert_complete(&store, id, &expected);
    eprintln!("{conflicts} conflicts retried");
    assert_clean(&store);
}

/// Threads creating, expiring, deleting and listing sessions of one user
/// at once keep the user index exact.
#[test]
fn concurrent_session_lifecycles_keep_the_indexes_exact() {
    let (_dir, store) = temp_store();
    let kept: Vec<Uuid> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    let mut kept = Vec::new();
                    for k in 0..12 {
                        let id = store.create_session(Some("shared")).unwrap();
                        store
                            .add_message(id, NewMessage::user(format!("t{t}/{k}")))
                            .unwrap();
                        match k % 4 {
                            0 => {
                                store.expire_session(id).unwrap();
                            }
                            1 => {
                                store.delete_session(id).unwrap();
                            }
                            2 => {
                                store.update_context(id, &format!("{{\"t\": {t}}}")).unwrap();
                                kept.push(id);
                            }
                            _ => kept.push(id),
                        }
                        let listed = store.list_user_sessions("shared", false).unwrap();
                        assert!(kept.iter().all(|own| listed.contains(own)));
                    }
                    kept
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let listed: HashSet<Uuid> = store
        .list_user_sessions("shared", false)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, kept.into_iter().collect());
    assert_eq!(
        store.list_user_sessions("shared", true).unwrap().len(),
        THREADS * 9
    );
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.expired_sessions),
        ((THREADS * 6) as u64, (THREADS * 3) as u64)
    );
    assert_clean(&store);
}
