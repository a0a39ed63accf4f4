//! State that follows the user: a per-user context object, merged as a
//! session's context is, read with any of the user's sessions, erased by
//! `erase_user`, checked by `check()`.

mod common;

use common::{assert_clean, assert_invalid, temp_store};
use sessionstore::{SessionStore, StoreOptions};

fn context(store: &SessionStore, user: &str) -> Option<String> {
    store.user_context(user).unwrap().map(|c| c.as_str().to_owned())
}

#[test]
fn updates_merge_shallowly_like_the_session_context() {
    let (_dir, store) = temp_store();
    assert_eq!(context(&store, "ana"), None);
    store
        .update_user_context("ana", r#"{"lang": "fr", "n": 1}"#)
        .unwrap();
    store
        .update_user_context("ana", r#"{"n": 2, "tags": {"a": 1}}"#)
        .unwrap();
    assert_eq!(
        context(&store, "ana").unwrap(),
        r#"{"lang": "fr", "n": 2, "tags": {"a": 1}}"#
    );
    // The same merge as a session's context, byte for byte.
    let id = store.create_session(Some("ana")).unwrap();
    store.update_context(id, r#"{"lang": "fr", "n": 1}"#).unwrap();
    store.update_context(id, r#"{"n": 2, "tags": {"a": 1}}"#).unwrap();
    let session = store.session_info(id).unwrap().unwrap().context.unwrap();
    assert_eq!(context(&store, "ana").unwrap(), session.as_str());
    assert_clean(&store);
}

#[test]
fn it_is_the_users_whatever_the_session_and_others_do_not_see_it() {
    let (_dir, store) = temp_store();
    let first = store.create_session(Some("ana")).unwrap();
    store
        .for_user("ana")
        .update_user_context(r#"{"lang": "fr"}"#)
        .unwrap();
    let second = store.create_session(Some("ana")).unwrap();
    for id in [first, second] {
        let user = store.session_info(id).unwrap().unwrap().user_id.unwrap();
        assert_eq!(context(&store, &user).unwrap(), r#"{"lang": "fr"}"#);
    }
    assert_eq!(
        store.for_user("ana").user_context().unwrap().unwrap().as_str(),
        r#"{"lang": "fr"}"#
    );
    assert!(store.for_user("bob").user_context().unwrap().is_none());
    assert!(store.user_context("").unwrap().is_none());
    // Deleting or expiring a session leaves it.
    store.delete_session(first).unwrap();
    store.expire_session(second).unwrap();
    assert!(context(&store, "ana").is_some());
}

#[test]
fn bad_updates_are_refused_and_change_nothing() {
    let dir = common::Scratch::new();
    let options = StoreOptions {
        max_content_bytes: 64,
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(dir.location(), options).unwrap();
    store.update_user_context("ana", r#"{"lang": "fr"}"#).unwrap();
    assert_invalid(store.update_user_context("ana", "[1, 2]"), "context");
    assert_invalid(store.update_user_context("ana", "{"), "context");
    let long = format!(r#"{{"x": "{}"}}"#, "y".repeat(64));
    let message = assert_invalid(store.update_user_context("ana", &long), "context");
    assert!(message.contains("over the limit of 64 bytes"), "{message}");
    assert_eq!(context(&store, "ana").unwrap(), r#"{"lang": "fr"}"#);
}

#[test]
fn erase_user_removes_it_and_only_it() {
    let (_dir, store) = temp_store();
    store.create_session(Some("ana")).unwrap();
    store.update_user_context("ana", r#"{"lang": "fr"}"#).unwrap();
    store.update_user_context("bob", r#"{"lang": "de"}"#).unwrap();
    // A user without sessions is erased too.
    store.update_user_context("carl", r#"{"lang": "it"}"#).unwrap();
    store.erase_user("ana").unwrap();
    store.erase_user("carl").unwrap();
    assert_eq!(context(&store, "ana"), None);
    assert_eq!(context(&store, "carl"), None);
    assert_eq!(context(&store, "bob").unwrap(), r#"{"lang": "de"}"#);
    assert_clean(&store);
}

#[test]
fn it_survives_a_reopen_a_compaction_and_a_backup() {
    let (dir, store) = temp_store();
    store.update_user_context("ana", r#"{"lang": "fr"}"#).unwrap();
    drop(store);
    let store = SessionStore::open(dir.location()).unwrap();
    assert_eq!(context(&store, "ana").unwrap(), r#"{"lang": "fr"}"#);
    if common::redb_only("compaction and file backups") {
        return;
    }
    store.compact(&mut |_, _| {}).unwrap();
    assert_eq!(context(&store, "ana").unwrap(), r#"{"lang": "fr"}"#);
    let copy = dir.path().join("copy.redb");
    store.backup_to(&copy, &mut |_, _| {}).unwrap();
    drop(store);
    let copied = SessionStore::open(&copy).unwrap();
    assert_eq!(context(&copied, "ana").unwrap(), r#"{"lang": "fr"}"#);
    assert_clean(&copied);
}
