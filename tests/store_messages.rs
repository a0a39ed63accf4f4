//! Messages: appending, content edge cases, reading back in pages, lookup by
//! global id, undo, optimistic appends, roles, and JSON for callers.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{assert_clean, assert_invalid, assert_session_not_found, dump, temp_store};
use sessionstore::{Error, Message, NewMessage, Role, SessionStore, StoreOptions, Uuid};

/// A session holding `n` user messages `m0`, `m1`, ...; returns it and
/// their ids.
fn session_with(store: &SessionStore, n: u64) -> (Uuid, Vec<u64>) {
    let id = store.create_session(Some("ana")).unwrap();
    let ids = (0..n)
        .map(|k| store.add_message(id, NewMessage::user(format!("m{k}"))).unwrap())
        .collect();
    (id, ids)
}

fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[test]
fn messages_keep_order_roles_and_json_byte_for_byte() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("user123")).unwrap();
    let plan = "{ \"filters\" :[ {\"publisher\": \"Oxford\"} ],\n \"limit\": 15 }";
    let candidates = r#"{"total_count": 15, "candidates": [{"id": 1, "score": 0.5}]}"#;
    let first = store
        .add_message(
            id,
            NewMessage::user("Find books by Oxford")
                .with_query_plan(plan)
                .unwrap(),
        )
        .unwrap();
    let second = store
        .add_message(
            id,
            NewMessage::assistant("Found 15 books by Oxford University Press")
                .with_candidate_set(candidates)
                .unwrap(),
        )
        .unwrap();
    let third = store.add_message(id, NewMessage::system("be brief")).unwrap();
    assert!(first < second && second < third, "ids increase");

    let session = store.get_session(id).unwrap().unwrap();
    assert_eq!(session.message_count, 3);
    let m = &session.messages;
    assert_eq!(seqs(m), vec![0, 1, 2]);
    assert_eq!(
        m.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![first, second, third]
    );
    assert_eq!(
        m.iter().map(|m| m.role).collect::<Vec<_>>(),
        vec![Role::User, Role::Assistant, Role::System]
    );
    assert_eq!(
        m[0].query_plan.as_ref().unwrap().as_str(),
        plan,
        "kept exactly as given"
    );
    assert_eq!(m[0].candidate_set, None);
    assert_eq!(m[1].candidate_set.as_ref().unwrap().as_str(), candidates);
    assert!(m[0].timestamp.micros() <= m[1].timestamp.micros());
    assert!(m[0].timestamp.to_text().ends_with("+00:00"), "{}", m[0].timestamp);
}

#[test]
fn content_may_be_empty_huge_unicode_or_hold_nul() {
    let (dir, store) = temp_store();
    let mut user = "us\u{e9}r \u{1F600}\0\u{202E}";
    if common::testing_postgres() {
        // PostgreSQL's text cannot hold NUL: a user name with one is
        // refused, saying so, and the rest holds for a name without it.
        let refused = store.create_session(Some(user)).unwrap_err();
        assert!(matches!(refused, Error::InvalidInput { .. }), "{refused}");
        assert!(refused.to_string().contains("NUL"), "{refused}");
        user = "us\u{e9}r \u{1F600}\u{202E}";
    }
    let id = store.create_session(Some(user)).unwrap();
    let huge: String = "0123456789abcdef\u{e9}\u{1F600}\n"
        .chars()
        .cycle()
        .take(9 * 1024 * 1024)
        .collect();
    assert!(huge.len() > 10 * 1024 * 1024);
    let contents = [
        String::new(),
        huge,
        "\0".into(),
        "a\0b\0".into(),
        "\u{1F469}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{5BFF}\u{53F8} \u{0645}\u{0631}\u{062D}\u{0628}\u{0627} \u{FFFD}\r\n\t".into(),
    ];
    let plan = "{\"q\": \"\u{1F600}\\u0000\u{e9}\", \"\u{1F600}\": [\"\\ud83d\\ude00\"]}";
    for content in &contents {
        let message = NewMessage::user(content.clone()).with_query_plan(plan).unwrap();
        store.add_message(id, message).unwrap();
    }
    let check = |store: &SessionStore| {
        let session = store.get_session(id).unwrap().unwrap();
        assert_eq!(session.user_id.as_deref(), Some(user));
        for (message, content) in session.messages.iter().zip(&contents) {
            assert!(
                message.content == *content,
                "content of seq {} differs",
                message.seq
            );
            assert_eq!(message.query_plan.as_ref().unwrap().as_str(), plan);
        }
        assert_eq!(store.list_user_sessions(user, false).unwrap(), vec![id]);
        assert_eq!(store.recent_sessions(user, 1).unwrap()[0].title, "");
    };
    check(&store);
    drop(store);
    let store = SessionStore::open(dir.location()).unwrap();
    check(&store);
    assert_clean(&store);
}

#[test]
fn content_over_the_configured_limit_is_refused_saying_why() {
    let dir = common::Scratch::new();
    let options = StoreOptions {
        max_content_bytes: 1_000,
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(dir.location(), options).unwrap();
    let id = store.create_session(None).unwrap();
    store
        .add_message(id, NewMessage::user("x".repeat(1_000)))
        .unwrap();
    // 1,001 bytes in 501 characters: the limit is in bytes.
    let over = format!("{}\u{e9}", "x".repeat(999));
    assert_eq!(over.len(), 1_001);
    let before = dump(&store);
    let message = assert_invalid(store.add_message(id, NewMessage::user(over.clone())), "content");
    assert_eq!(
        message,
        "invalid content: 1001 bytes is over the limit of 1000 bytes"
    );
    assert_invalid(
        store.add_message_if(id, 1, NewMessage::user(over.clone())),
        "content",
    );
    assert_invalid(
        store.for_user("ana").add_message(id, NewMessage::user(over)),
        "content",
    );
    assert_eq!(dump(&store), before, "nothing written, no id used");
}

#[test]
fn roles_parse_only_the_three_names() {
    for role in [Role::User, Role::Assistant, Role::System] {
        assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        assert_eq!(role.to_string(), role.as_str());
    }
    for bad in ["User", "ASSISTANT", "", " user", "tool", "user\0"] {
        let message = assert_invalid(bad.parse::<Role>(), "role");
        assert_eq!(
            message,
            format!("invalid role: {bad:?} is not one of user, assistant, system")
        );
    }
}

#[test]
fn plans_and_candidate_sets_must_be_json_objects() {
    for bad in ["[]", "\"x\"", "42", "null", "{", "", "{\"a\": 1} trailing"] {
        assert_invalid(NewMessage::user("q").with_query_plan(bad), "query_plan");
        assert_invalid(
            NewMessage::assistant("a").with_candidate_set(bad),
            "candidate_set",
        );
    }
    let plan = NewMessage::user("q").with_query_plan("  {}  ").unwrap();
    assert_eq!(plan.query_plan.unwrap().as_str(), "  {}  ");
}

#[test]
fn get_recent_messages_reads_the_last_n_oldest_first() {
    let (_dir, store) = temp_store();
    let (id, _) = session_with(&store, 10);
    assert!(store.get_recent_messages(id, 0).unwrap().unwrap().is_empty());
    assert_eq!(
        seqs(&store.get_recent_messages(id, 3).unwrap().unwrap()),
        vec![7, 8, 9]
    );
    assert_eq!(
        store.get_recent_messages(id, 3).unwrap().unwrap()[0].content,
        "m7"
    );
    assert_eq!(store.get_recent_messages(id, 100).unwrap().unwrap().len(), 10);
    assert_eq!(
        store.get_recent_messages(id, u64::MAX).unwrap().unwrap().len(),
        10
    );

    let empty = store.create_session(None).unwrap();
    assert!(store.get_recent_messages(empty, 5).unwrap().unwrap().is_empty());
    let missing = Uuid::new_v4();
    assert!(store.get_recent_messages(missing, 5).unwrap().is_none());
    store.expire_session(id).unwrap();
    assert!(store.get_recent_messages(id, 5).unwrap().is_none());
    assert!(store.messages_after(id, 0, 5).unwrap().is_none());
    assert!(store.messages_before(id, 5, 5).unwrap().is_none());
    assert!(store.messages_from(id, 0, 5).unwrap().is_none());
}

#[test]
fn messages_page_forward_and_backward_through_a_long_history() {
    let (_dir, store) = temp_store();
    let (id, ids) = session_with(&store, 25);

    // Forward: the first page from seq 0, then after the last seq seen.
    let mut forward = store.messages_from(id, 0, 10).unwrap().unwrap();
    assert_eq!(seqs(&forward), (0..10).collect::<Vec<_>>());
    loop {
        let last = forward.last().unwrap().seq;
        let page = store.messages_after(id, last, 10).unwrap().unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() == 10 || page.last().unwrap().seq == 24);
        forward.extend(page);
    }
    assert_eq!(forward.iter().map(|m| m.id).collect::<Vec<_>>(), ids);

    // Backward: the newest page, then before the first seq seen.
    let mut backward = store.get_recent_messages(id, 10).unwrap().unwrap();
    while let Some(first) = backward.first().map(|m| m.seq) {
        let page = store.messages_before(id, first, 10).unwrap().unwrap();
        if page.is_empty() {
            break;
        }
        backward.splice(0..0, page);
    }
    assert_eq!(backward, forward);

    assert_eq!(
        seqs(&store.messages_after(id, 20, 100).unwrap().unwrap()),
        vec![21, 22, 23, 24]
    );
    assert!(store.messages_after(id, 24, 10).unwrap().unwrap().is_empty());
    assert!(store
        .messages_after(id, u64::MAX, 10)
        .unwrap()
        .unwrap()
        .is_empty());
    assert!(store.messages_after(id, 3, 0).unwrap().unwrap().is_empty());
    assert_eq!(
        seqs(&store.messages_before(id, 3, 100).unwrap().unwrap()),
        vec![0, 1, 2]
    );
    assert!(store.messages_before(id, 0, 10).unwrap().unwrap().is_empty());
    assert_eq!(
        seqs(&store.messages_before(id, u64::MAX, 2).unwrap().unwrap()),
        vec![23, 24]
    );
    assert_eq!(
        seqs(&store.messages_from(id, 23, 100).unwrap().unwrap()),
        vec![23, 24]
    );
    assert!(store.messages_from(id, 25, 10).unwrap().unwrap().is_empty());
}

#[test]
fn get_message_finds_any_message_by_its_global_id() {
    let (_dir, store) = temp_store();
    let (a, a_ids) = session_with(&store, 3);
    let (b, b_ids) = session_with(&store, 2);
    for (seq, id) in a_ids.iter().enumerate() {
        let (session, message) = store.get_message(*id).unwrap().unwrap();
        assert_eq!((session, message.seq, message.id), (a, seq as u64, *id));
        assert_eq!(message.content, format!("m{seq}"));
    }
    assert_eq!(store.get_message(b_ids[1]).unwrap().unwrap().0, b);
    let all: HashSet<u64> = a_ids.iter().chain(&b_ids).copied().collect();
    assert_eq!(all.len(), 5, "ids are global");
    for missing in [0, *all.iter().max().unwrap() + 1, u64::MAX] {
        assert!(store.get_message(missing).unwrap().is_none());
    }
}

#[test]
fn pop_last_message_undoes_a_turn_and_never_reuses_its_id() {
    let (dir, store) = temp_store();
    let (id, ids) = session_with(&store, 3);
    let updated = store.session_info(id).unwrap().unwrap().updated_at;
    std::thread::sleep(std::time::Duration::from_millis(2));

    let popped = store.pop_last_message(id).unwrap().unwrap();
    assert_eq!(
        (popped.id, popped.seq, popped.content.as_str()),
        (ids[2], 2, "m2")
    );
    let info = store.session_info(id).unwrap().unwrap();
    assert_eq!(info.message_count, 2);
    assert!(info.updated_at.micros() > updated.micros());
    assert!(store.get_message(ids[2]).unwrap().is_none());

    let retry = store.add_message(id, NewMessage::user("m2 again")).unwrap();
    assert!(retry > ids[2], "the popped id is not given again");
    let session = store.get_session(id).unwrap().unwrap();
    assert_eq!(seqs(&session.messages), vec![0, 1, 2], "seq stays dense");

    // Pop the newest id of the store, reopen: still not reused.
    assert_eq!(store.pop_last_message(id).unwrap().unwrap().id, retry);
    drop(store);
    let store = SessionStore::open(dir.location()).unwrap();
    assert!(store.add_message(id, NewMessage::user("after reopen")).unwrap() > retry);

    // Pop everything, then once more.
    for _ in 0..3 {
        assert!(store.pop_last_message(id).unwrap().is_some());
    }
    assert_eq!(store.pop_last_message(id).unwrap(), None);
    assert_eq!(store.get_session(id).unwrap().unwrap().message_count, 0);
    let next = store.add_message(id, NewMessage::user("fresh start")).unwrap();
    assert_eq!(store.get_message(next).unwrap().unwrap().1.seq, 0);
    let missing = Uuid::new_v4();
    assert_session_not_found(store.pop_last_message(missing), missing);
    assert_clean(&store);
}

#[test]
fn add_message_if_refuses_a_stale_seq_distinctly_and_writes_nothing() {
    let (_dir, store) = temp_store();
    let (id, ids) = session_with(&store, 2);
    let added = store
        .add_message_if(id, 2, NewMessage::assistant("in turn"))
        .unwrap();
    assert_eq!(added, ids[1] + 1);

    let before = dump(&store);
    for stale in [0, 2, 4, u64::MAX] {
        let error = store
            .add_message_if(id, stale, NewMessage::assistant("late"))
            .unwrap_err();
        match &error {
            Error::SeqConflict {
                session,
                expected,
                actual,
            } => assert_eq!((*session, *expected, *actual), (id, stale, 3)),
            other => panic!("expected SeqConflict, got {other:?}"),
        }
        assert!(!error.is_not_found());
        assert!(error.is_refusal());
        assert_eq!(
            error.to_string(),
            format!("session {id}: expected next seq {stale}, but it is 3 (another writer got there first)")
        );
    }
    assert_eq!(dump(&store), before, "nothing written, no id used");
    assert_eq!(
        store.add_message_if(id, 3, NewMessage::user("next")).unwrap(),
        added + 1
    );

    let missing = Uuid::new_v4();
    assert_session_not_found(store.add_message_if(missing, 0, NewMessage::user("x")), missing);
}

#[test]
fn add_message_if_lets_exactly_one_of_two_racing_writers_in() {
    let (_dir, store) = temp_store();
    let (id, _) = session_with(&store, 1);
    for round in 1..=20u64 {
        let results: Vec<_> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..2)
                .map(|n| {
                    let store = &store;
                    scope.spawn(move || {
                        store.add_message_if(id, round, NewMessage::assistant(format!("{round}/{n}")))
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(Error::SeqConflict { expected, actual, .. }) if *expected == round && *actual == round + 1))
            .count();
        assert_eq!((wins, conflicts), (1, 1), "round {round}: {results:?}");
    }
    assert_eq!(store.get_session(id).unwrap().unwrap().message_count, 21);
}

#[test]
fn messages_and_sessions_serialise_to_json_for_callers() {
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    store
        .update_context(id, r#"{"last_publisher": "Oxford"}"#)
        .unwrap();
    store
        .add_message(
            id,
            NewMessage::assistant("Found \u{1F600}\0")
                .with_query_plan(r#"{"filters": [{"publisher": "Oxford"}]}"#)
                .unwrap()
                .with_candidate_set(r#"{"total_count": 15}"#)
                .unwrap(),
        )
        .unwrap();
    let session = store.get_session(id).unwrap().unwrap();
    let message = &session.messages[0];

    let json = serde_json::to_value(message).unwrap();
    assert_eq!(json["role"], "assistant");
    assert_eq!(json["content"], "Found \u{1F600}\0");
    assert_eq!(
        json["query_plan"]["filters"][0]["publisher"], "Oxford",
        "an object, not a string"
    );
    assert_eq!(json["candidate_set"]["total_count"], 15);
    assert_eq!(json["timestamp"], message.timestamp.to_text().as_ref());
    assert_eq!(json["id"], message.id);
    assert_eq!(json["seq"], 0);
    // Through a serde_json::Value the JSON text is re-rendered; through
    // text it is kept byte for byte.
    let back: Message = serde_json::from_value(json).unwrap();
    assert_eq!(
        back.query_plan.unwrap().to_value().unwrap(),
        message.query_plan.as_ref().unwrap().to_value().unwrap()
    );
    let text = serde_json::to_string(message).unwrap();
    assert!(
        text.contains(r#""query_plan":{"filters": [{"publisher": "Oxford"}]}"#),
        "{text}"
    );
    assert_eq!(&serde_json::from_str::<Message>(&text).unwrap(), &**message);

    let json = serde_json::to_value(&session).unwrap();
    assert_eq!(json["session_id"], id.to_string());
    assert_eq!(json["user_id"], serde_json::Value::Null);
    assert_eq!(json["context"]["last_publisher"], "Oxford");
    assert_eq!(json["metadata"], serde_json::json!({}));
    assert_eq!(json["created_at"], session.created_at.to_text().as_ref());
    assert_eq!(json["expired_at"], serde_json::Value::Null);
    assert_eq!(json["message_count"], 1);
    assert_eq!(json["messages"][0]["candidate_set"]["total_count"], 15);
    let text = serde_json::to_string(&session).unwrap();
    assert_eq!(
        serde_json::from_str::<sessionstore::Session>(&text).unwrap(),
        session
    );
}

#[test]
fn add_messages_writes_a_whole_turn_or_nothing() {
    let dir = common::Scratch::new();
    let options = StoreOptions {
        max_content_bytes: 100,
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(dir.location(), options).unwrap();
    let (id, first) = session_with(&store, 1);

    let ids = store
        .add_messages(
            id,
            vec![
                NewMessage::user("books by Aldus"),
                NewMessage::assistant("Found 3 books matching your query")
                    .with_candidate_set(r#"{"total_count": 3}"#)
                    .unwrap(),
            ],
        )
        .unwrap();
    assert_eq!(ids, vec![first[0] + 1, first[0] + 2]);
    let session = store.get_session(id).unwrap().unwrap();
    assert_eq!(seqs(&session.messages), vec![0, 1, 2]);
    assert_eq!(session.messages[2].role, Role::Assistant);
    assert_eq!(session.messages[1].timestamp, session.messages[2].timestamp);

    // One message over the limit refuses the whole turn.
    let before = dump(&store);
    assert_invalid(
        store.add_messages(
            id,
            vec![NewMessage::user("fine"), NewMessage::assistant("x".repeat(101))],
        ),
        "content",
    );
    // An empty turn is refused: it would only touch updated_at.
    assert_invalid(store.add_messages(id, Vec::new()), "messages");
    // Another user's session answers as a missing one, for the whole turn.
    assert_session_not_found(
        store
            .for_user("bob")
            .add_messages(id, vec![NewMessage::user("hi")]),
        id,
    );
    assert_eq!(dump(&store), before, "nothing written, no id used");
    // An expired session refuses it too.
    let (expired, _) = session_with(&store, 0);
    store.expire_session(expired).unwrap();
    let before_expired = dump(&store);
    assert_session_not_found(
        store.add_messages(expired, vec![NewMessage::user("late")]),
        expired,
    );
    assert_eq!(dump(&store), before_expired, "nothing written, no id used");
    assert_clean(&store);
}
