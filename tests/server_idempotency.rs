//! Idempotent appends in the library: the key is stored in the append's
//! own commit, a retry returns the first ids, keys are bounded and go with
//! their session.

use sessionstore::{Error, NewMessage, SessionStore};

#[cfg(feature = "server")]
mod server_support;

fn turn(text: &str) -> Vec<NewMessage> {
    vec![NewMessage::user(text), NewMessage::assistant("Found 3 books")]
}

#[test]
fn a_retry_with_the_same_key_appends_once_even_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    let first = store.add_messages_idempotent(id, "k1", None, turn("a")).unwrap();
    drop(store);
    let store = SessionStore::open(&path).unwrap();
    // The retry carries the expected seq of the first attempt: the key
    // answers before the seq is compared.
    let retry = store
        .add_messages_idempotent(id, "k1", Some(0), turn("a"))
        .unwrap();
    assert_eq!(first, retry);
    assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 2);
    let other = store
        .add_messages_idempotent(id, "k2", Some(2), turn("b"))
        .unwrap();
    assert_ne!(other, first);
    assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 4);
    assert!(store.check(&mut |_, _| {}).unwrap().is_clean());
}

#[test]
fn keys_belong_to_their_session_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let a = store.create_session(Some("ana")).unwrap();
    let b = store.create_session(Some("bob")).unwrap();
    let in_a = store.add_messages_idempotent(a, "same", None, turn("a")).unwrap();
    let in_b = store.add_messages_idempotent(b, "same", None, turn("b")).unwrap();
    assert_ne!(in_a, in_b);
    let bob = store.for_user("bob");
    let refused = bob
        .add_messages_idempotent(a, "same", None, turn("x"))
        .unwrap_err();
    assert!(matches!(refused, Error::SessionNotFound(_)), "{refused:?}");
}

#[test]
fn bad_keys_are_refused_and_a_conflict_stores_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let id = store.create_session(None).unwrap();
    for key in [String::new(), "k".repeat(256)] {
        let error = store
            .add_messages_idempotent(id, &key, None, turn("a"))
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidInput {
                    what: "idempotency_key",
                    ..
                }
            ),
            "{error:?}"
        );
    }
    let conflict = store
        .add_messages_idempotent(id, "k", Some(5), turn("a"))
        .unwrap_err();
    assert!(
        matches!(conflict, Error::SeqConflict { actual: 0, .. }),
        "{conflict:?}"
    );
    // Nothing was remembered: the same key now appends.
    assert_eq!(
        store
            .add_messages_idempotent(id, "k", Some(0), turn("a"))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_session_keeps_its_newest_64_keys_and_deleting_it_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(None).unwrap();
    let first = store
        .add_messages_idempotent(id, "key-0", None, vec![NewMessage::user("0")])
        .unwrap();
    for n in 1..=64 {
        store
            .add_messages_idempotent(id, &format!("key-{n}"), None, vec![NewMessage::user("n")])
            .unwrap();
    }
    // key-0 is the 65th newest: forgotten, so the same key appends again.
    let again = store
        .add_messages_idempotent(id, "key-0", None, vec![NewMessage::user("0")])
        .unwrap();
    assert_ne!(first, again);
    // key-64 is remembered still.
    let kept = store
        .add_messages_idempotent(id, "key-64", None, vec![NewMessage::user("n")])
        .unwrap();
    assert_eq!(store.get_message(kept[0]).unwrap().unwrap().0, id);
    assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 66);
    store.delete_session(id).unwrap();
    assert!(store.check(&mut |_, _| {}).unwrap().is_clean());
    let report = store.compact(&mut |_, _| {}).unwrap();
    assert!(report.after > 0);
    assert!(store.check(&mut |_, _| {}).unwrap().is_clean());
}

/// Over HTTP: a client whose connection drops after sending its append
/// retries with the same `Idempotency-Key` and gets the first attempt's
/// ids; the messages are there once.
#[cfg(feature = "server")]
mod over_http {
    use super::server_support::{send_and_drop, Server};
    use serde_json::json;
    use sessionstore::server::ServerConfig;

    fn turn() -> Vec<u8> {
        serde_json::to_vec(&json!({"messages": [
            {"role": "user", "content": "books by Aldus"},
            {"role": "assistant", "content": "Found 3 books"}
        ]}))
        .unwrap()
    }

    /// The messages of `session`'s first commit, once they are there.
    fn wait_for_messages(store: &sessionstore::SessionStore, session: sessionstore::Uuid) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.get_session(session).unwrap().unwrap().messages.len() < 2 {
            assert!(std::time::Instant::now() < deadline, "the append never committed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_retry_after_a_connection_dropped_after_the_commit_appends_once() {
        let server = Server::start(ServerConfig::default());
        let client = &server.client;
        let id = client.post("/v1/sessions", &json!({})).json()["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let session: sessionstore::Uuid = id.parse().unwrap();
        let path = format!("/v1/sessions/{id}/messages");
        let key = [("Idempotency-Key", "turn-7f3a")];
        // The connection drops once the append has committed, its answer
        // unread: the client cannot know it succeeded.
        send_and_drop(&client.target, "POST", &path, &key, &turn(), || {
            wait_for_messages(&server.store, session)
        });
        let retry = client.raw("POST", &path, &key, Some(&turn()));
        assert_eq!(retry.status, 201, "{}", retry.text());
        let stored = server.store.get_session(session).unwrap().unwrap();
        assert_eq!(stored.messages.len(), 2, "appended once");
        let first: Vec<u64> = stored.messages.iter().map(|m| m.id).collect();
        assert_eq!(retry.json()["ids"], json!(first));
        // Without the key the same body appends again.
        assert_eq!(client.raw("POST", &path, &[], Some(&turn())).status, 201);
        assert_eq!(
            server.store.get_session(session).unwrap().unwrap().messages.len(),
            4
        );
    }
}
