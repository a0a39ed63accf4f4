//! Reading a session to a token budget: `messages_within`, with counts set
//! by the caller, messages without one costed by a rule, user/assistant
//! pairs kept whole.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;

use common::{assert_clean, temp_store};
use sessionstore::{Message, NewMessage, SessionStore, StoreOptions, TokenRule, Uuid};

fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A session of `turns` user/assistant pairs, every message counted `tokens`.
fn turns(store: &SessionStore, turns: u64, tokens: u32) -> Uuid {
    let id = store.create_session(Some("ana")).unwrap();
    for n in 0..turns {
        store
            .add_messages(
                id,
                vec![
                    NewMessage::user(format!("question {n}")).with_tokens(tokens),
                    NewMessage::assistant(format!("answer {n}")).with_tokens(tokens),
                ],
            )
            .unwrap();
    }
    id
}

fn within(store: &SessionStore, id: Uuid, budget: u64) -> Vec<u64> {
    seqs(
        &store
            .messages_within(id, budget, TokenRule::default())
            .unwrap()
            .expect("active"),
    )
}

#[test]
fn token_counts_are_stored_and_read_back() {
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    store
        .add_message(id, NewMessage::user("counted").with_tokens(7))
        .unwrap();
    store.add_message(id, NewMessage::user("not counted")).unwrap();
    let session = store.get_session(id).unwrap().unwrap();
    assert_eq!(session.messages[0].tokens, Some(7));
    assert_eq!(session.messages[1].tokens, None);
    let (_, message) = store.get_message(session.messages[0].id).unwrap().unwrap();
    assert_eq!(message.tokens, Some(7));
    let json = serde_json::to_string(&*session.messages[0]).unwrap();
    assert!(json.contains(r#""tokens":7"#), "{json}");
    assert!(!serde_json::to_string(&*session.messages[1])
        .unwrap()
        .contains("tokens"));
    assert_clean(&store);
}

#[test]
fn token_counts_survive_a_reopen() {
    let (dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    store
        .add_message(id, NewMessage::user("counted").with_tokens(u32::MAX))
        .unwrap();
    drop(store);
    let store = SessionStore::open_with(dir.location(), StoreOptions::default()).unwrap();
    let session = store.get_session(id).unwrap().unwrap();
    assert_eq!(session.messages[0].tokens, Some(u32::MAX));
    assert_clean(&store);
}

#[test]
fn the_newest_messages_that_fit_are_returned_oldest_first() {
    let (_dir, store) = temp_store();
    let id = turns(&store, 5, 10);
    assert_eq!(within(&store, id, 100), (0..10).collect::<Vec<_>>());
    assert_eq!(within(&store, id, 1000), (0..10).collect::<Vec<_>>());
    assert_eq!(within(&store, id, 40), [6, 7, 8, 9]);
    assert_eq!(within(&store, id, 20), [8, 9]);
}

#[test]
fn a_budget_of_zero_returns_nothing_but_messages_that_cost_nothing() {
    let (_dir, store) = temp_store();
    let id = turns(&store, 2, 1);
    assert!(within(&store, id, 0).is_empty());
    store
        .add_message(id, NewMessage::user("").with_tokens(0))
        .unwrap();
    store.add_message(id, NewMessage::user("")).unwrap();
    assert_eq!(within(&store, id, 0), [4, 5]);
}

#[test]
fn one_message_over_the_budget_is_never_cut_and_stops_the_read() {
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    store
        .add_message(id, NewMessage::system("small").with_tokens(1))
        .unwrap();
    store
        .add_message(id, NewMessage::system("x".repeat(100_000)))
        .unwrap();
    // 100,000 bytes cost 25,000 tokens by the default rule.
    assert!(within(&store, id, 24_999).is_empty());
    assert_eq!(within(&store, id, 25_000), [1]);
    assert_eq!(within(&store, id, 25_001), [0, 1]);
}

#[test]
fn a_user_message_and_the_reply_after_it_are_taken_together_or_not_at_all() {
    let (_dir, store) = temp_store();
    let id = turns(&store, 3, 10);
    // The last reply alone would fit in 15; its question would not.
    assert!(within(&store, id, 15).is_empty());
    // One pair fits in 35, the pair before it does not: nothing of it.
    assert_eq!(within(&store, id, 35), [4, 5]);
    assert_eq!(within(&store, id, 40), [2, 3, 4, 5]);
    // A user message at the end, awaiting its reply, stands alone.
    store
        .add_message(id, NewMessage::user("and then?").with_tokens(10))
        .unwrap();
    assert_eq!(within(&store, id, 15), [6]);
    assert_eq!(within(&store, id, 29), [6]);
    assert_eq!(within(&store, id, 30), [4, 5, 6]);
}

#[test]
fn a_reply_after_a_system_message_or_another_reply_stands_alone() {
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    store
        .add_messages(
            id,
            vec![
                NewMessage::user("q").with_tokens(10),
                NewMessage::system("note").with_tokens(1),
                NewMessage::assistant("a").with_tokens(1),
                NewMessage::assistant("more").with_tokens(1),
            ],
        )
        .unwrap();
    assert_eq!(within(&store, id, 1), [3]);
    assert_eq!(within(&store, id, 3), [1, 2, 3]);
    assert_eq!(within(&store, id, 12), [1, 2, 3]);
    assert_eq!(within(&store, id, 13), [0, 1, 2, 3]);
}

#[test]
fn messages_without_a_count_are_costed_by_the_callers_rule() {
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    store.add_message(id, NewMessage::user("12345678")).unwrap(); // 8 bytes
    store.add_message(id, NewMessage::user("123456789")).unwrap(); // 9 bytes
    let by = |rule: TokenRule, budget| seqs(&store.messages_within(id, budget, rule).unwrap().unwrap());
    // Default: 4 bytes to a token, rounded up: 2 and 3.
    assert_eq!(by(TokenRule::default(), 4), [1]);
    assert_eq!(by(TokenRule::default(), 5), [0, 1]);
    let per_byte = TokenRule::BytesPerToken(NonZeroU32::new(1).unwrap());
    assert_eq!(by(per_byte, 16), [1]);
    assert_eq!(by(per_byte, 17), [0, 1]);
    let flat = TokenRule::Estimate(|_| 100);
    assert_eq!(by(flat, 199), [1]);
    assert_eq!(by(flat, 200), [0, 1]);
}

#[test]
fn missing_expired_and_other_users_sessions_read_as_none() {
    let (_dir, store) = temp_store();
    let id = turns(&store, 1, 1);
    assert!(store
        .messages_within(Uuid::new_v4(), 10, TokenRule::default())
        .unwrap()
        .is_none());
    assert!(store
        .for_user("bob")
        .messages_within(id, 10, TokenRule::default())
        .unwrap()
        .is_none());
    assert_eq!(
        seqs(
            &store
                .for_user("ana")
                .messages_within(id, 10, TokenRule::default())
                .unwrap()
                .unwrap()
        ),
        [0, 1]
    );
    store.expire_session(id).unwrap();
    assert!(store
        .messages_within(id, 10, TokenRule::default())
        .unwrap()
        .is_none());
}

#[test]
fn an_empty_session_gives_an_empty_list() {
    let (_dir, store) = temp_store();
    let id = store.create_session(None).unwrap();
    assert!(within(&store, id, 100).is_empty());
}
