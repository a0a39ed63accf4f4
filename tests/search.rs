//! Search over a user's history (issue 21, item 4): BM25-ranked hits with
//! session, message, snippet and score, paged, and exact through every
//! write that adds or removes a message. Conformance tests: they run on
//! each engine (`SESSIONSTORE_TEST_ENGINE=postgres`), so they use plain
//! words only (engines tokenise punctuation their own way) and compare
//! orders, never scores across engines.

mod common;

use std::time::Duration;

use common::{aged_session, assert_clean, assert_invalid, hours, temp_store};
use sessionstore::{Message, NewMessage, Role, SearchCursor, SessionInfo, SessionStore, Timestamp, Uuid};

/// (session, seq) of every hit of `query` for `user`, best first, read
/// two hits a page.
fn found(store: &SessionStore, user: &str, query: &str) -> Vec<(Uuid, u64)> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.search(user, query, cursor, 2).unwrap();
        all.extend(page.hits.iter().map(|h| (h.session_id, h.seq)));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// [`found`], in (session, seq) order.
fn found_sorted(store: &SessionStore, user: &str, query: &str) -> Vec<(Uuid, u64)> {
    let mut all = found(store, user, query);
    all.sort();
    all
}

fn sorted(mut places: Vec<(Uuid, u64)>) -> Vec<(Uuid, u64)> {
    places.sort();
    places
}

/// A message as the importer takes it.
fn loaded(id: u64, seq: u64, content: &str) -> Message {
    Message {
        id,
        seq,
        role: Role::User,
        content: content.into(),
        query_plan: None,
        candidate_set: None,
        timestamp: Timestamp::now(),
        extra: Default::default(),
        tokens: None,
    }
}

#[test]
fn hits_are_ranked_by_bm25_with_session_message_snippet_and_score() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let ids = store
        .add_messages(
            id,
            vec![
                NewMessage::user("books by Oxford University Press"),
                NewMessage::assistant("Found fifteen books by Oxford University Press and Oxford has more"),
                NewMessage::user("something else entirely"),
            ],
        )
        .unwrap();
    let page = store.search("ana", "Oxford", None, 10).unwrap();
    assert_eq!(page.next, None);
    let hits: Vec<_> = page
        .hits
        .iter()
        .map(|h| (h.session_id, h.message_id, h.seq))
        .collect();
    // Seq 1 holds the term twice: it ranks first despite its length.
    assert_eq!(hits, [(id, ids[1], 1), (id, ids[0], 0)]);
    assert!(page.hits[0].score > page.hits[1].score && page.hits[1].score > 0.0);
    assert_eq!(page.hits[1].snippet, "books by Oxford University Press");
    // Terms are matched whole and without case; a missing term adds nothing.
    assert_eq!(found(&store, "ana", "OXFORD zebra"), [(id, 1), (id, 0)]);
    assert!(found(&store, "ana", "oxf").is_empty());
    assert_clean(&store);
}

#[test]
fn more_query_terms_and_rarer_terms_rank_first() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    for text in [
        "common rare",
        "common",
        "common",
        "common other",
        "common rare other",
    ] {
        store.add_message(id, NewMessage::user(text)).unwrap();
    }
    let seqs: Vec<u64> = found(&store, "ana", "common rare other")
        .into_iter()
        .map(|(_, seq)| seq)
        .collect();
    // All three terms first; then the two holding two terms ("rare" and
    // "other" are equally rare: equal scores, in seq order); then the
    // three holding only the common one.
    assert_eq!(seqs[0], 4);
    assert_eq!(&seqs[1..3], [0, 3]);
    assert_eq!(seqs.len(), 5);
    // A rarer term weighs more than a common one, at equal length.
    let id = store.create_session(Some("bob")).unwrap();
    for text in ["plain unique", "plain words", "plain words", "plain words"] {
        store.add_message(id, NewMessage::user(text)).unwrap();
    }
    assert_eq!(found(&store, "bob", "unique words")[0], (id, 0));
}

#[test]
fn snippets_start_near_the_first_term_and_mark_cuts() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let long = format!("{} needle\nthen {}", "lead ".repeat(40), "tail ".repeat(60));
    store.add_message(id, NewMessage::user(long)).unwrap();
    let hit = &store.search("ana", "needle", None, 1).unwrap().hits[0];
    assert!(
        hit.snippet.starts_with('…') && hit.snippet.ends_with('…'),
        "{:?}",
        hit.snippet
    );
    assert!(hit.snippet.contains("needle then tail"), "{:?}", hit.snippet);
    assert_eq!(hit.snippet.chars().count(), 122);
}

#[test]
fn pages_follow_each_other_without_gap_or_repeat() {
    let (_dir, store) = temp_store();
    let mut expected = Vec::new();
    for _ in 0..3 {
        let id = store.create_session(Some("ana")).unwrap();
        for n in 0..5 {
            store
                .add_message(id, NewMessage::user(format!("word {}", "pad ".repeat(n))))
                .unwrap();
            expected.push((id, n as u64));
        }
    }
    let all = found(&store, "ana", "word");
    assert_eq!(sorted(all.clone()), sorted(expected));
    // Shorter messages first: one hit a page gives the same order.
    let mut one_by_one = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.search("ana", "word", cursor, 1).unwrap();
        one_by_one.extend(page.hits.iter().map(|h| (h.session_id, h.seq)));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(one_by_one, all);
    // A cursor renders as text and reads back.
    let page = store.search("ana", "word", None, 4).unwrap();
    let text = page.next.unwrap().to_string();
    let again = store
        .search("ana", "word", Some(text.parse::<SearchCursor>().unwrap()), 4)
        .unwrap();
    assert_eq!(again, store.search("ana", "word", page.next, 4).unwrap());
}

#[test]
fn only_the_users_sessions_are_searched() {
    let (_dir, store) = temp_store();
    let ana = store.create_session(Some("ana")).unwrap();
    let bob = store.create_session(Some("bob")).unwrap();
    let nobody = store.create_session(None).unwrap();
    for id in [ana, bob, nobody] {
        store.add_message(id, NewMessage::user("shared word")).unwrap();
    }
    assert_eq!(found(&store, "ana", "shared"), [(ana, 0)]);
    assert_eq!(
        store.for_user("bob").search("word", None, 5).unwrap().hits[0].session_id,
        bob
    );
    assert!(found(&store, "carl", "shared").is_empty());
    assert_clean(&store);
}

#[test]
fn appends_are_found_at_once() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    for n in 0..20u64 {
        store
            .add_message(id, NewMessage::user(format!("step number{n} of the walk")))
            .unwrap();
        assert_eq!(found(&store, "ana", &format!("number{n}")), [(id, n)]);
        assert_eq!(found(&store, "ana", "walk").len() as u64, n + 1);
    }
    assert_clean(&store);
}

#[test]
fn undo_deletion_erasure_and_purge_leave_nothing_to_find() {
    let (_dir, store) = temp_store();
    let a = store.create_session(Some("ana")).unwrap();
    let b = store.create_session(Some("ana")).unwrap();
    let c = store.create_session(Some("ana")).unwrap();
    let other = store.create_session(Some("bob")).unwrap();
    for id in [a, b, c, other] {
        store.add_message(id, NewMessage::user("secret plans")).unwrap();
        store
            .add_message(id, NewMessage::assistant("noted secret"))
            .unwrap();
    }
    store.pop_last_message(a).unwrap();
    assert_eq!(found_sorted(&store, "ana", "noted"), sorted(vec![(b, 1), (c, 1)]));
    assert_clean(&store);
    store.delete_session(b).unwrap();
    assert_eq!(
        found_sorted(&store, "ana", "secret"),
        sorted(vec![(a, 0), (c, 0), (c, 1)])
    );
    assert_clean(&store);
    store.expire_session(c).unwrap();
    assert_eq!(found(&store, "ana", "secret"), [(a, 0)]);
    store.purge_expired(Duration::ZERO).unwrap();
    assert_eq!(found(&store, "ana", "secret"), [(a, 0)]);
    assert_clean(&store);
    store.erase_user("ana").unwrap();
    assert!(found(&store, "ana", "secret").is_empty());
    assert_eq!(found_sorted(&store, "bob", "secret"), [(other, 0), (other, 1)]);
    assert_clean(&store);
    // What is left after the removals is found as before, and new writes too.
    let again = store.create_session(Some("ana")).unwrap();
    store
        .add_message(again, NewMessage::user("secret again"))
        .unwrap();
    assert_eq!(found(&store, "ana", "secret"), [(again, 0)]);
    assert_clean(&store);
}

#[test]
fn expired_sessions_are_not_searched_eagerly_or_lazily() {
    let (_dir, store) = temp_store();
    let kept = store.create_session(Some("ana")).unwrap();
    let expired = store.create_session(Some("ana")).unwrap();
    for id in [kept, expired] {
        store.add_message(id, NewMessage::user("history")).unwrap();
    }
    store.expire_session(expired).unwrap();
    assert_eq!(found(&store, "ana", "history"), [(kept, 0)]);
    // Lazily expired by age (no session is rewritten).
    let old = aged_session(&store, Some("ana"), hours(48), None);
    let mut importer = store.importer();
    importer
        .add_messages(old, vec![loaded(9_000, 0, "history of old")])
        .unwrap();
    importer.finish().unwrap();
    assert_eq!(found(&store, "ana", "old"), [(old, 0)]);
    assert_clean(&store);
    store.expire_old_sessions(hours(24)).unwrap();
    assert!(found(&store, "ana", "old").is_empty());
    assert_eq!(found(&store, "ana", "history"), [(kept, 0)]);
    assert_clean(&store);
}

#[test]
fn forks_and_imports_are_found() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    store.add_message(id, NewMessage::user("branch me")).unwrap();
    store
        .add_message(id, NewMessage::assistant("branch reply"))
        .unwrap();
    let fork = store.fork_session(id, 1).unwrap();
    assert_eq!(
        found_sorted(&store, "ana", "branch"),
        sorted(vec![(id, 0), (id, 1), (fork, 0)])
    );
    let fork_hit = store
        .search("ana", "me", None, 10)
        .unwrap()
        .hits
        .into_iter()
        .find(|h| h.session_id == fork)
        .expect("the fork's copy is found");
    // The copy has its own id, and belongs to the fork.
    let (session, message) = store.get_message(fork_hit.message_id).unwrap().unwrap();
    assert_eq!((session, message.seq), (fork, 0));
    // Popped in the fork, still found in its source.
    store.pop_last_message(fork).unwrap();
    assert_eq!(found(&store, "ana", "me"), [(id, 0)]);
    assert_clean(&store);

    let imported = Uuid::new_v4();
    let mut importer = store.importer();
    importer
        .add_session(SessionInfo {
            session_id: imported,
            user_id: Some("ana".into()),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            expired_at: None,
            context: None,
            metadata: None,
            message_count: 0,
            extra: Default::default(),
        })
        .unwrap();
    importer
        .add_messages(
            imported,
            vec![
                loaded(50_000, 0, "imported branch"),
                loaded(50_001, 1, "imported leaf"),
            ],
        )
        .unwrap();
    importer.finish().unwrap();
    assert_eq!(
        found_sorted(&store, "ana", "imported"),
        [(imported, 0), (imported, 1)]
    );
    assert_eq!(found(&store, "ana", "leaf"), [(imported, 1)]);
    assert_clean(&store);
}

#[test]
fn bad_searches_are_refused() {
    let (_dir, store) = temp_store();
    assert_invalid(store.search("ana", "word", None, 0), "limit");
    assert_invalid(store.search("ana", "word", None, 1001), "limit");
    assert_invalid(store.search("ana", " ,;! ", None, 5), "query");
    assert_invalid(store.search("ana", "", None, 5), "query");
    assert_invalid(store.search("ana", &"word ".repeat(300), None, 5), "query");
    assert_invalid("nonsense".parse::<SearchCursor>(), "cursor");
}
