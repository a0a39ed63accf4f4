//! `SessionStore::counters`: commits and the write requests they carried,
//! checkpoints, and the message cache's hits and misses, as the store does
//! them.

mod common;

use common::{store_path, temp_store};
use sessionstore::redb_engine::RedbOptions;
use sessionstore::{NewMessage, SessionStore, StoreCounters, StoreOptions, Uuid};

#[test]
fn one_thread_writing_commits_each_call_and_a_read_again_is_a_hit() {
    let (_dir, store) = temp_store();
    assert_eq!(store.counters(), StoreCounters::default(), "all zero at open");
    let id = store.create_session(Some("ana")).unwrap();
    let appends = 10;
    for i in 0..appends {
        store.add_message(id, NewMessage::user(format!("q{i}"))).unwrap();
    }
    let written = store.counters();
    // One caller: each call waits for its commit, so no batch holds two.
    assert_eq!(written.batch_requests, appends + 1);
    assert_eq!(written.commits, appends + 1);

    // A refusal alone writes nothing: no commit, no request counted.
    assert!(store
        .add_message(Uuid::new_v4(), NewMessage::user("lost"))
        .is_err());
    assert_eq!(store.counters(), written);

    assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 10);
    let read = store.counters();
    assert_eq!((read.message_cache_misses, read.message_cache_hits), (1, 0));
    store.get_session(id).unwrap().unwrap();
    let again = store.counters();
    assert_eq!((again.message_cache_misses, again.message_cache_hits), (1, 1));

    // The writer carries the entry over the chatbot's own append: a hit.
    store.add_message(id, NewMessage::assistant("a")).unwrap();
    store.get_session(id).unwrap().unwrap();
    let after = store.counters();
    assert_eq!((after.message_cache_misses, after.message_cache_hits), (1, 2));
    assert_eq!((after.commits, after.batch_requests), (appends + 2, appends + 2));

    // A session without messages reads none: neither a hit nor a miss.
    let empty = store.create_session(None).unwrap();
    store.get_session(empty).unwrap().unwrap();
    let counters = store.counters();
    assert_eq!(
        (counters.message_cache_misses, counters.message_cache_hits),
        (1, 2)
    );
    // Clones count together.
    assert_eq!(store.clone().counters(), counters);
}

#[test]
fn concurrent_writers_count_every_request_once() {
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    let (threads, each) = (8, 50);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..each {
                    store
                        .add_message(id, NewMessage::user(format!("{t}.{i}")))
                        .unwrap();
                }
            });
        }
    });
    let counters = store.counters();
    assert_eq!(counters.batch_requests, threads * each + 1);
    assert!(
        (1..=counters.batch_requests).contains(&counters.commits),
        "{counters:?}"
    );
}

#[test]
fn a_checkpoint_counts_before_maintenance_runs() {
    let (_dir, store) = temp_store();
    assert_eq!(store.counters().checkpoints, 0);
    let id = store.create_session(None).unwrap();
    store.add_message(id, NewMessage::user("q")).unwrap();
    // Compaction needs everything durable first: a checkpoint (its own, or
    // one by age that came before it).
    store.compact(&mut |_, _| {}).unwrap();
    assert!(store.counters().checkpoints >= 1, "{:?}", store.counters());
}

#[test]
fn without_a_message_cache_every_read_is_a_miss_and_a_read_only_store_commits_nothing() {
    let (dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    store.add_message(id, NewMessage::user("q")).unwrap();
    drop(store);
    let options = StoreOptions {
        redb: RedbOptions {
            message_cache_bytes: 0,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    };
    let uncached = SessionStore::open_with(store_path(&dir), options).unwrap();
    uncached.get_session(id).unwrap().unwrap();
    uncached.get_session(id).unwrap().unwrap();
    let counters = uncached.counters();
    assert_eq!(
        (counters.message_cache_misses, counters.message_cache_hits),
        (2, 0)
    );
    drop(uncached);

    let read_only = SessionStore::open_read_only(store_path(&dir)).unwrap();
    read_only.get_session(id).unwrap().unwrap();
    read_only.get_session(id).unwrap().unwrap();
    assert_eq!(
        read_only.counters(),
        StoreCounters {
            message_cache_hits: 1,
            message_cache_misses: 1,
            ..StoreCounters::default()
        }
    );
}
