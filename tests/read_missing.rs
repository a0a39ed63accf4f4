//! Issue 16, item 12: one convention for "missing". Every read of something
//! that may be missing answers `Ok(None)` (a missing session, an expired one
//! where the read is of an active session's messages, another user's one
//! through a `UserView`), and never an error; a write to a missing session
//! is `Err(Error::SessionNotFound)`.

mod common;

use common::temp_store;
use sessionstore::{NewMessage, Uuid};

/// Every read of `$caller` (a `SessionStore` or a `UserView`) on session
/// `$id` and message `$message`, rendered for comparison.
macro_rules! reads {
    ($caller:expr, $id:expr, $message:expr) => {
        [
            format!("{:?}", $caller.get_session($id)),
            format!("{:?}", $caller.get_recent_messages($id, 10)),
            format!("{:?}", $caller.messages_after($id, 0, 10)),
            format!("{:?}", $caller.messages_from($id, 0, 10)),
            format!("{:?}", $caller.messages_before($id, 5, 10)),
            format!("{:?}", $caller.get_message($message)),
            format!("{:?}", $caller.session_info($id)),
        ]
    };
}

fn assert_all_none(reads: &[String], what: &str) {
    for (n, read) in reads.iter().enumerate() {
        assert_eq!(read, "Ok(None)", "{what}: read {n} answers {read}");
    }
}

#[test]
fn reads_of_a_missing_session_or_message_answer_none() {
    let (_dir, store) = temp_store();
    let missing = Uuid::new_v4();
    assert_all_none(&reads!(store, missing, 42), "missing");
    assert_all_none(&reads!(store.for_user("ana"), missing, 42), "missing, user view");
}

#[test]
fn reads_of_another_users_session_answer_none() {
    let (_dir, store) = temp_store();
    let bobs = store.create_session(Some("bob")).unwrap();
    let message = store.add_message(bobs, NewMessage::user("bob's")).unwrap();
    assert_all_none(
        &reads!(store.for_user("ana"), bobs, message),
        "bob's, seen by ana",
    );
    let own = reads!(store.for_user("bob"), bobs, message);
    assert!(own.iter().all(|read| read.starts_with("Ok(Some(")), "{own:#?}");
}

#[test]
fn message_reads_of_an_expired_session_answer_none() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let message = store.add_message(id, NewMessage::user("old")).unwrap();
    store.expire_session(id).unwrap();
    for reads in [
        reads!(store, id, message),
        reads!(store.for_user("ana"), id, message),
    ] {
        // The session's messages are those of an active session only; the
        // session's own fields and a message by its id stay readable (an
        // expired session is kept until purged).
        assert_all_none(&reads[..5], "expired");
        assert!(reads[5].starts_with("Ok(Some(("), "get_message: {}", reads[5]);
        assert!(
            reads[6].contains("expired_at: Some("),
            "session_info: {}",
            reads[6]
        );
    }
}

#[test]
fn a_write_to_a_missing_session_is_session_not_found() {
    let (_dir, store) = temp_store();
    let missing = Uuid::new_v4();
    let error = store.add_message(missing, NewMessage::user("x")).unwrap_err();
    assert!(matches!(error, sessionstore::Error::SessionNotFound(id) if id == missing));
}
