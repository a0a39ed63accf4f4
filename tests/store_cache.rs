//! The message cache (`StoreOptions::message_cache_bytes`): a read again
//! hands out the same messages, the writer's own appends keep them current,
//! deleted and popped messages leave it, and under concurrent writers and
//! readers no read ever sees a session other than one the writer committed.

mod common;

use sessionstore::redb_engine::RedbOptions;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_clean, seed, store_path, temp_store, Rng};
use sessionstore::{Durability, Message, NewMessage, SessionStore, StoreOptions, Timestamp, Uuid};

fn contents(messages: &[Arc<Message>]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

#[test]
fn a_read_again_hands_out_the_same_messages_and_follows_the_chatbots_own_writes() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    store
        .add_messages(id, vec![NewMessage::user("q1"), NewMessage::assistant("a1")])
        .unwrap();
    let first = store.get_session(id).unwrap().unwrap().messages;
    let again = store.get_session(id).unwrap().unwrap().messages;
    assert!(Arc::ptr_eq(&first[0], &again[0]), "the second read is a hit");

    // The next turn: append, new context, read. The writer carried the
    // entry over both commits: the old messages are the same ones.
    store
        .add_messages(id, vec![NewMessage::user("q2"), NewMessage::assistant("a2")])
        .unwrap();
    store
        .update_context(id, r#"{"last_publisher": "Oxford"}"#)
        .unwrap();
    let next = store.get_session(id).unwrap().unwrap();
    assert_eq!(contents(&next.messages), ["q1", "a1", "q2", "a2"]);
    assert_eq!(
        next.context.as_ref().unwrap().as_str(),
        r#"{"last_publisher": "Oxford"}"#
    );
    assert!(Arc::ptr_eq(&first[1], &next.messages[1]));
    let recent = store.get_recent_messages(id, 2).unwrap().unwrap();
    assert_eq!(contents(&recent), ["q2", "a2"]);
    assert!(Arc::ptr_eq(&recent[1], &next.messages[3]));

    // Undo: the entry follows the pop too.
    let popped = store.pop_last_message(id).unwrap().unwrap();
    assert_eq!(popped.content, "a2");
    let undone = store.get_session(id).unwrap().unwrap();
    assert_eq!(contents(&undone.messages), ["q1", "a1", "q2"]);
    assert!(Arc::ptr_eq(&undone.messages[2], &next.messages[2]));
    let retried = store.add_message(id, NewMessage::assistant("a2, again")).unwrap();
    let after = store.get_session(id).unwrap().unwrap();
    assert_eq!(contents(&after.messages), ["q1", "a1", "q2", "a2, again"]);
    assert_eq!(after.messages[3].id, retried);
    assert_clean(&store);
}

#[test]
fn with_a_budget_of_zero_nothing_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        redb: RedbOptions {
            message_cache_bytes: 0,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(store_path(&dir), options).unwrap();
    let id = store.create_session(None).unwrap();
    store.add_message(id, NewMessage::user("hi")).unwrap();
    let first = store.get_session(id).unwrap().unwrap().messages;
    let again = store.get_session(id).unwrap().unwrap().messages;
    assert_eq!(first, again);
    assert!(!Arc::ptr_eq(&first[0], &again[0]));
    assert_eq!(Arc::strong_count(&first[0]), 1);
}

#[test]
fn deleted_erased_purged_and_popped_messages_leave_the_cache() {
    let (_dir, store) = temp_store();
    let session = |user: &str| {
        let id = store.create_session(Some(user)).unwrap();
        store
            .add_messages(
                id,
                vec![NewMessage::user("secret"), NewMessage::assistant("reply")],
            )
            .unwrap();
        let held = store.get_session(id).unwrap().unwrap().messages;
        assert_eq!(Arc::strong_count(&held[0]), 2, "the cache holds them");
        (id, held)
    };
    let only_ours = |held: &[Arc<Message>]| held.iter().all(|m| Arc::strong_count(m) == 1);

    let (deleted, held) = session("ana");
    store.delete_session(deleted).unwrap();
    assert!(only_ours(&held), "delete_session");

    let (_, held) = session("bob");
    store.erase_user("bob").unwrap();
    assert!(only_ours(&held), "erase_user");

    let (purged, held) = session("cy");
    store.expire_session(purged).unwrap();
    store.purge_expired(Duration::ZERO).unwrap();
    assert!(only_ours(&held), "purge_expired");

    let (popped, held) = session("dee");
    store.pop_last_message(popped).unwrap();
    assert_eq!(Arc::strong_count(&held[1]), 1, "the popped message");
    assert_eq!(Arc::strong_count(&held[0]), 2, "the one before stays cached");
}

/// What one writer committed: for each `updated_at` of its session, the
/// message ids the session then held.
type History = HashMap<i64, Vec<u64>>;

/// One writer per session appends, pops, changes the context, and now and
/// then deletes the session and loads it again under the same id (its
/// revisions start over); readers meanwhile. Every session a reader got is
/// one a writer committed: the messages the writer left with that
/// `updated_at`, never those of another revision.
fn readers_see_only_committed_sessions(message_cache_bytes: usize) {
    let mut rng = Rng::new(seed("readers_see_only_committed_sessions"));
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        durability: Durability::Relaxed,
        redb: RedbOptions {
            message_cache_bytes,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(store_path(&dir), options).unwrap();
    let ids: Vec<Uuid> = (0..2)
        .map(|_| store.create_session(Some("ana")).unwrap())
        .collect();
    let seeds: Vec<u64> = ids.iter().map(|_| rng.next_u64()).collect();
    let done = AtomicBool::new(false);
    // (session, updated_at, ids) of every full read; (session, ids) of every recent read.
    let seen = Mutex::new((Vec::new(), Vec::new()));
    let histories: Vec<History> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let (mut full, mut recent) = (Vec::new(), Vec::new());
                    while !done.load(Ordering::Relaxed) {
                        for &id in &ids {
                            if let Some(session) = store.get_session(id).unwrap() {
                                assert_eq!(session.messages.len() as u64, session.message_count);
                                let ids: Vec<u64> = session.messages.iter().map(|m| m.id).collect();
                                full.push((id, session.updated_at.micros(), ids));
                            }
                            if let Some(messages) = store.get_recent_messages(id, 3).unwrap() {
                                recent.push((id, messages.iter().map(|m| m.id).collect::<Vec<_>>()));
                            }
                        }
                    }
                    let mut seen = seen.lock().unwrap();
                    seen.0.extend(full);
                    seen.1.extend(recent);
                })
            })
            .collect();
        let writers: Vec<_> = ids
            .iter()
            .zip(&seeds)
            .map(|(&id, &seed)| {
                let store = &store;
                scope.spawn(move || write_a_while(store, id, Rng::new(seed)))
            })
            .collect();
        let histories = writers.into_iter().map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
        histories
    });
    let (full, recent) = seen.into_inner().unwrap();
    assert!(full.len() > 10, "only {} reads", full.len());
    for (id, updated, got) in &full {
        let history = &histories[ids.iter().position(|i| i == id).unwrap()];
        let committed = history
            .get(updated)
            .unwrap_or_else(|| panic!("{id}: a session updated at {updated} was never committed"));
        assert_eq!(got, committed, "{id} at {updated}");
    }
    for (id, got) in &recent {
        let history = &histories[ids.iter().position(|i| i == id).unwrap()];
        assert!(
            history
                .values()
                .any(|ids| ids.ends_with(got) && got.len() == ids.len().min(3)),
            "{id}: recent messages {got:?} were never the last ones"
        );
    }
    assert_clean(&store);
}

/// One writer's turns on session `id`; returns what it committed.
fn write_a_while(store: &SessionStore, id: Uuid, mut rng: Rng) -> History {
    let mut history = History::new();
    let mut serial = 0;
    let record = |store: &SessionStore, history: &mut History| {
        let session = store.get_session(id).unwrap().unwrap();
        let updated = session.updated_at.micros();
        history.insert(updated, session.messages.iter().map(|m| m.id).collect());
        // The next commit gets a later updated_at.
        while Timestamp::now().micros() <= updated {
            std::hint::spin_loop();
        }
    };
    record(store, &mut history);
    for turn in 0..150 {
        match rng.next_u64() % 8 {
            0..=3 => {
                let turns = (0..1 + rng.next_u64() % 2)
                    .map(|_| {
                        serial += 1;
                        NewMessage::user(format!("{id}/{serial}"))
                    })
                    .collect();
                store.add_messages(id, turns).unwrap();
            }
            4 | 5 => {
                store.pop_last_message(id).unwrap();
            }
            6 => store
                .update_context(id, &format!(r#"{{"turn": {turn}}}"#))
                .unwrap(),
            _ => reload(store, id, &mut rng),
        }
        record(store, &mut history);
    }
    history
}

/// Deletes the session and loads it again, same id, with its first messages.
fn reload(store: &SessionStore, id: Uuid, rng: &mut Rng) {
    let snapshot = store.snapshot().unwrap();
    let mut info = store.session_info(id).unwrap().unwrap();
    let messages: Vec<Message> = snapshot.messages(id).unwrap().map(Result::unwrap).collect();
    drop(snapshot);
    let keep = (rng.next_u64() % (messages.len() as u64 + 1)) as usize;
    store.delete_session(id).unwrap();
    info.updated_at = Timestamp::now();
    let mut importer = store.importer();
    importer.add_session(info).unwrap();
    importer.add_messages(id, messages[..keep].to_vec()).unwrap();
    importer.finish().unwrap();
}

#[test]
fn readers_see_only_committed_sessions_with_the_default_budget() {
    readers_see_only_committed_sessions(StoreOptions::default().redb.message_cache_bytes);
}

#[test]
fn readers_see_only_committed_sessions_with_a_budget_that_evicts() {
    readers_see_only_committed_sessions(16 << 10);
}

/// A sidebar's titles come from the message cache when it holds the
/// session (read lately): they follow appends and undos as the messages
/// do, and equal those of a store that reads them from the file.
#[test]
fn titles_from_the_cache_follow_appends_and_undos() {
    let (dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let titles = |store: &SessionStore| -> Vec<String> {
        let page = store.user_sessions_page("ana", false, None, 10).unwrap();
        page.sessions.into_iter().map(|s| s.title).collect()
    };
    store
        .add_message(id, NewMessage::assistant("Hello, what are you looking for?"))
        .unwrap();
    store.get_session(id).unwrap().unwrap();
    assert_eq!(titles(&store), ["New conversation"]);
    store
        .add_message(
            id,
            NewMessage::user("books by Aldus Manutius printed in Venice before 1500"),
        )
        .unwrap();
    assert_eq!(
        titles(&store),
        ["books by Aldus Manutius printed in Venice befor..."]
    );
    store.pop_last_message(id).unwrap().unwrap();
    assert_eq!(
        titles(&store),
        ["New conversation"],
        "the undo took the title's message"
    );
    store.add_message(id, NewMessage::user("maps")).unwrap();
    store.add_message(id, NewMessage::user("atlases")).unwrap();
    assert_eq!(titles(&store), ["maps"]);
    let path = store.path().to_path_buf();
    drop(store);
    let reopened = SessionStore::open(&path).unwrap();
    assert_eq!(titles(&reopened), ["maps"], "read from the file");
    drop(dir);
}
