//! A store closed and opened again keeps its data and accepts writes.

mod common;

use sessionstore::{NewMessage, SessionStore};

#[test]
fn a_reopened_store_keeps_its_sessions_and_takes_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    let first = store.add_message(id, NewMessage::user("before")).unwrap();
    drop(store);

    let store = SessionStore::open(&path).unwrap();
    let second = store.add_message(id, NewMessage::user("after")).unwrap();
    assert!(second > first);
    assert_eq!(common::contents(&store, id), ["before", "after"]);
}
