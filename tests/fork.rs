//! Branching: `fork_session` copies a session's first messages into a new
//! session of the same user, says where it came from, and is listed among
//! the source's forks until either is deleted.

mod common;

use std::time::Instant;

use common::{assert_clean, assert_invalid, assert_session_not_found, contents, temp_store};
use sessionstore::{Durability, NewMessage, SessionStore, Uuid};

fn chat(store: &SessionStore, user: Option<&str>, n: u64) -> Uuid {
    let id = store.create_session(user).unwrap();
    for k in 0..n {
        let message = if k % 2 == 0 {
            NewMessage::user(format!("q{k}")).with_tokens(3)
        } else {
            NewMessage::assistant(format!("a{k}"))
                .with_candidate_set(format!(r#"{{"total_count": {k}}}"#))
                .unwrap()
        };
        store.add_message(id, message).unwrap();
    }
    id
}

#[test]
fn a_fork_holds_copies_of_the_messages_before_at_seq_under_new_ids() {
    let (_dir, store) = temp_store();
    let id = chat(&store, Some("ana"), 5);
    store
        .update_context(id, r#"{"last_publisher": "Oxford"}"#)
        .unwrap();
    let fork = store.fork_session(id, 3).unwrap();
    let source = store.get_session(id).unwrap().unwrap();
    let copy = store.get_session(fork).unwrap().unwrap();
    assert_eq!(contents(&store, fork), ["q0", "a1", "q2"]);
    assert_eq!(copy.user_id.as_deref(), Some("ana"));
    assert_eq!(copy.context, source.context);
    assert_eq!(copy.message_count, 3);
    for (original, copied) in source.messages.iter().zip(&copy.messages) {
        assert_ne!(original.id, copied.id);
        assert!(copied.id > source.messages[4].id, "ids are never reused");
        assert_eq!(
            (
                original.seq,
                original.role,
                &original.content,
                &original.candidate_set
            ),
            (copied.seq, copied.role, &copied.content, &copied.candidate_set)
        );
        assert_eq!(
            (&original.timestamp, original.tokens),
            (&copied.timestamp, copied.tokens)
        );
        assert_eq!(store.get_message(copied.id).unwrap().unwrap().0, fork);
    }
    assert_eq!(
        copy.metadata.as_ref().unwrap().as_str(),
        format!(r#"{{"forked_from": {{"session": "{id}", "at_seq": 3}}}}"#)
    );
    // The source is unchanged, and both grow on their own.
    assert_eq!(store.get_session(id).unwrap().unwrap(), source);
    store
        .add_message(fork, NewMessage::assistant("another answer"))
        .unwrap();
    assert_eq!(contents(&store, fork).len(), 4);
    assert_eq!(contents(&store, id).len(), 5);
    assert_clean(&store);
}

#[test]
fn a_fork_at_zero_is_empty_and_at_the_count_holds_everything() {
    let (_dir, store) = temp_store();
    let id = chat(&store, None, 4);
    let empty = store.fork_session(id, 0).unwrap();
    assert!(contents(&store, empty).is_empty());
    let whole = store.fork_session(id, 4).unwrap();
    assert_eq!(contents(&store, whole), contents(&store, id));
    assert_eq!(store.session_info(whole).unwrap().unwrap().user_id, None);
    assert_clean(&store);
}

#[test]
fn a_fork_past_the_end_or_of_a_missing_or_expired_session_is_refused_and_writes_nothing() {
    let (_dir, store) = temp_store();
    let id = chat(&store, Some("ana"), 2);
    let before = common::dump(&store);
    let message = assert_invalid(store.fork_session(id, 3), "at_seq");
    assert!(message.contains("holds 2 messages"), "{message}");
    let unknown = Uuid::new_v4();
    assert_session_not_found(store.fork_session(unknown, 0), unknown);
    assert_session_not_found(store.for_user("bob").fork_session(id, 1), id);
    store.expire_session(id).unwrap();
    let before_expired = common::dump(&store);
    assert_session_not_found(store.fork_session(id, 1), id);
    assert_eq!(common::dump(&store), before_expired);
    assert_eq!(before.1, before_expired.1, "no message id was taken");
    assert_clean(&store);
}

#[test]
fn metadata_of_the_source_is_kept_and_forked_from_is_merged_in() {
    let (_dir, store) = temp_store();
    let id = chat(&store, None, 2);
    let first = store.fork_session(id, 2).unwrap();
    let second = store.fork_session(first, 1).unwrap();
    assert_eq!(
        store
            .session_info(second)
            .unwrap()
            .unwrap()
            .metadata
            .unwrap()
            .as_str(),
        format!(r#"{{"forked_from": {{"session": "{first}", "at_seq": 1}}}}"#)
    );
}

#[test]
fn forks_are_listed_oldest_first_and_leave_the_list_when_deleted() {
    let (_dir, store) = temp_store();
    let id = chat(&store, Some("ana"), 3);
    let a = store.fork_session(id, 1).unwrap();
    let b = store.fork_session(id, 2).unwrap();
    let c = store.fork_session(a, 0).unwrap();
    let listed = |id| -> Vec<Uuid> {
        store
            .forks(id)
            .unwrap()
            .unwrap()
            .iter()
            .map(|f| f.session_id)
            .collect()
    };
    assert_eq!(listed(id), [a, b]);
    assert_eq!(listed(a), [c]);
    assert!(listed(c).is_empty());
    assert!(store.forks(Uuid::new_v4()).unwrap().is_none());
    assert!(store.for_user("bob").forks(id).unwrap().is_none());
    assert_eq!(store.for_user("ana").forks(id).unwrap().unwrap().len(), 2);
    // An expired fork is still listed, as expired.
    store.expire_session(b).unwrap();
    let forks = store.forks(id).unwrap().unwrap();
    assert!(forks[1].is_expired());
    // Deleting a fork removes it from the list; deleting a parent removes
    // its entries, and its forks live on.
    store.delete_session(b).unwrap();
    assert_eq!(listed(id), [a]);
    store.delete_session(a).unwrap();
    assert!(listed(id).is_empty());
    assert!(contents(&store, c).is_empty());
    assert_clean(&store);
}

#[test]
fn erasure_and_purge_leave_no_fork_entry() {
    let (_dir, store) = temp_store();
    let id = chat(&store, Some("ana"), 3);
    let fork = store.fork_session(id, 2).unwrap();
    let other = chat(&store, Some("bob"), 1);
    let bobs = store.fork_session(other, 1).unwrap();
    store.erase_user("ana").unwrap();
    assert!(store.session_info(fork).unwrap().is_none());
    assert_clean(&store);
    store.expire_session(bobs).unwrap();
    store.purge_expired(std::time::Duration::ZERO).unwrap();
    assert!(store.forks(other).unwrap().unwrap().is_empty());
    assert_clean(&store);
}

#[test]
fn forks_survive_a_reopen_and_a_compaction() {
    let (dir, store) = temp_store();
    let id = chat(&store, None, 2);
    let fork = store.fork_session(id, 1).unwrap();
    drop(store);
    let store = SessionStore::open(dir.location()).unwrap();
    assert_eq!(store.forks(id).unwrap().unwrap()[0].session_id, fork);
    if !common::redb_only("compaction") {
        store.compact(&mut |_, _| {}).unwrap();
        assert_eq!(store.forks(id).unwrap().unwrap()[0].session_id, fork);
    }
    assert_clean(&store);
}

/// What a fork of a 10,000-message session costs: the bytes it adds to a
/// compacted file, against what the 10,000 messages themselves took.
/// Prints the numbers (run with `--nocapture`).
#[test]
fn a_fork_of_ten_thousand_messages_costs_about_what_the_messages_do() {
    if common::redb_only("the size of a compacted file") {
        return;
    }
    let (_dir, store) = temp_store();
    let size = |store: &SessionStore| {
        store.compact(&mut |_, _| {}).unwrap();
        store.stats().unwrap().file_size
    };
    let empty = size(&store);
    // No user: what the copies of the messages cost, without the search
    // index a user's messages also get (postings of the copies' terms,
    // about what the source's take).
    let id = store.create_session(None).unwrap();
    let relaxed = store.with_durability(Durability::Relaxed);
    for turn in 0..5_000 {
        relaxed
            .add_messages(
                id,
                vec![
                    NewMessage::user(format!("books by publisher {turn} printed before 1900")),
                    NewMessage::assistant(format!(
                        "Found {turn} books by that publisher. The first ones are listed below; \
                         ask me to narrow them by year, subject or place of publication."
                    ))
                    .with_candidate_set(format!(r#"{{"total_count": {turn}, "candidates": []}}"#))
                    .unwrap(),
                ],
            )
            .unwrap();
    }
    let with_session = size(&store);
    let started = Instant::now();
    let fork = store.fork_session(id, 10_000).unwrap();
    let took = started.elapsed();
    let with_fork = size(&store);
    let (messages, copy) = (with_session - empty, with_fork - with_session);
    println!(
        "fork of 10,000 messages: {copy} bytes ({:.0} per message) in {took:?}; \
         the messages took {messages} bytes",
        copy as f64 / 10_000.0
    );
    assert_eq!(store.session_info(fork).unwrap().unwrap().message_count, 10_000);
    assert!(copy <= messages + messages / 5, "{copy} > {messages} + 20%");
    assert_clean(&store);
}
