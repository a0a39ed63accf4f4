//! Expiry by age is lazy (an event every read applies, the sessions
//! rewritten later): each path must see exactly what an eager expiry wrote.

mod common;

use std::time::Duration;

use common::{aged_session, assert_clean, assert_session_not_found, hours, temp_store};
use sessionstore::{NewMessage, SessionStore, Timestamp, Uuid};

fn expired_at(store: &SessionStore, id: Uuid) -> Option<i64> {
    let info = store.session_info(id).unwrap().expect("session exists");
    info.expired_at.map(|t| t.micros())
}

#[test]
fn a_session_expires_at_the_time_of_the_expiry_that_covered_it() {
    let (dir, store) = temp_store();
    let oldest = aged_session(&store, Some("ana"), hours(72), None);
    let older = aged_session(&store, Some("ana"), hours(30), None);
    let fresh = store.create_session(Some("ana")).unwrap();

    let before = Timestamp::now().micros();
    assert_eq!(store.expire_old_sessions(hours(48)).unwrap(), 1);
    let after = Timestamp::now().micros();
    let first = expired_at(&store, oldest).expect("expired");
    assert!((before..=after).contains(&first));
    assert_eq!(expired_at(&store, older), None);
    // A lower or equal cutoff finds nothing newly due.
    assert_eq!(store.expire_old_sessions(hours(48)).unwrap(), 0);
    assert_eq!(store.expire_old_sessions(hours(60)).unwrap(), 0);

    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(store.expire_old_sessions(hours(24)).unwrap(), 1);
    let second = expired_at(&store, older).expect("expired");
    assert!(second > first);
    assert_eq!(expired_at(&store, oldest), Some(first));

    // Every way of reading agrees.
    let snapshot = store.snapshot().unwrap();
    let from_snapshot: Vec<_> = snapshot
        .sessions()
        .unwrap()
        .map(|info| {
            let info = info.unwrap();
            (info.session_id, info.expired_at.map(|t| t.micros()))
        })
        .collect();
    drop(snapshot);
    for (id, at) in from_snapshot {
        assert_eq!(at, expired_at(&store, id));
    }
    let stats = store.stats().unwrap();
    assert_eq!((stats.active_sessions, stats.expired_sessions), (1, 2));
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), [fresh]);
    assert_eq!(
        store.list_user_sessions("ana", true).unwrap(),
        [fresh, older, oldest]
    );
    let recent = store.recent_sessions("ana", 10).unwrap();
    assert_eq!(recent.iter().map(|s| s.session_id).collect::<Vec<_>>(), [fresh]);
    let page = store.user_sessions_page("ana", true, None, 10).unwrap();
    let flags: Vec<_> = page.sessions.iter().map(|s| s.expired).collect();
    assert_eq!(flags, [false, true, true]);
    // Paging the active sessions from a cursor below the watermark.
    let first_page = store.user_sessions_page("ana", true, None, 2).unwrap();
    let rest = store
        .user_sessions_page("ana", false, first_page.next, 2)
        .unwrap();
    assert!(rest.sessions.is_empty() && rest.next.is_none());
    assert_clean(&store);

    drop(store);
    let store = SessionStore::open(dir.location()).unwrap();
    assert_eq!(expired_at(&store, oldest), Some(first));
    assert_eq!(expired_at(&store, older), Some(second));
    assert_eq!(expired_at(&store, fresh), None);
    assert_clean(&store);
}

#[test]
fn a_session_expired_by_age_refuses_writes_and_reads_as_expired() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    store.add_message(id, NewMessage::user("hello")).unwrap();
    store
        .add_message(id, NewMessage::assistant("Found 3 books"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(store.expire_old_sessions(Duration::ZERO).unwrap(), 1);

    assert!(store.get_session(id).unwrap().is_none());
    assert!(store.for_user("ana").get_session(id).unwrap().is_none());
    assert_session_not_found(store.add_message(id, NewMessage::user("again")), id);
    assert_session_not_found(store.add_message_if(id, 2, NewMessage::user("again")), id);
    assert_session_not_found(store.add_messages(id, vec![NewMessage::user("again")]), id);
    assert_session_not_found(store.update_context(id, r#"{"k": 1}"#), id);
    assert_session_not_found(store.pop_last_message(id), id);
    assert!(store.get_recent_messages(id, 10).unwrap().is_none());
    assert_session_not_found(
        store.for_user("ana").add_message(id, NewMessage::user("again")),
        id,
    );
    assert!(!store.expire_session(id).unwrap());
    assert!(!store.for_user("ana").expire_session(id).unwrap());
    let info = store.session_info(id).unwrap().unwrap();
    assert_eq!(info.message_count, 2);
    assert!(info.is_expired());
    assert_clean(&store);

    assert_eq!(store.delete_session(id).unwrap(), 2);
    assert!(store.session_info(id).unwrap().is_none());
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.expired_sessions, stats.messages),
        (0, 0, 0)
    );
    assert_clean(&store);
}

#[test]
fn purge_deletes_sessions_expired_by_age_once_they_are_old_enough() {
    let (_dir, store) = temp_store();
    let old = aged_session(&store, Some("ana"), hours(72), None);
    let by_hand = aged_session(&store, Some("ana"), hours(72), Some(hours(100)));
    let kept = store.create_session(Some("ana")).unwrap();
    assert_eq!(store.expire_old_sessions(hours(48)).unwrap(), 1);
    // Expired just now: not an hour ago. The one expired by hand was.
    assert_eq!(store.purge_expired(hours(1)).unwrap(), 1);
    assert!(store.session_info(by_hand).unwrap().is_none());
    assert!(store.session_info(old).unwrap().is_some());

    std::thread::sleep(Duration::from_millis(2));
    let mut calls = Vec::new();
    let purged = store
        .purge_expired_with_progress(Duration::ZERO, &mut |done, due| calls.push((done, due)))
        .unwrap();
    assert_eq!((purged, calls), (1, vec![(1, 1)]));
    assert!(store.session_info(old).unwrap().is_none());
    assert_eq!(store.list_user_sessions("ana", true).unwrap(), [kept]);
    assert_eq!(store.purge_expired(Duration::ZERO).unwrap(), 0);
    assert_clean(&store);
}

#[test]
fn old_data_loaded_after_an_expiry_stays_active_until_the_next_one() {
    let (_dir, store) = temp_store();
    let expired = aged_session(&store, Some("ana"), hours(72), None);
    assert_eq!(store.expire_old_sessions(hours(48)).unwrap(), 1);
    let at = expired_at(&store, expired);
    assert!(at.is_some());

    // As with the old store's UPDATE: a session loaded later is untouched
    // by an expiry that ran before it.
    let loaded = aged_session(&store, Some("ana"), hours(60), None);
    assert!(store.get_session(loaded).unwrap().is_some());
    store.add_message(loaded, NewMessage::user("still here")).unwrap();
    assert_eq!(expired_at(&store, expired), at);
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), [loaded]);
    assert_clean(&store);

    let old = aged_session(&store, Some("ana"), hours(60), None);
    assert_eq!(store.expire_old_sessions(hours(48)).unwrap(), 1);
    assert!(store.get_session(old).unwrap().is_none());
    assert!(store.get_session(loaded).unwrap().is_some());
    assert_clean(&store);
}

#[test]
fn many_sessions_expired_by_age_stay_expired_while_the_writer_rewrites_them() {
    let (dir, store) = temp_store();
    let fast = store.with_durability(sessionstore::Durability::Relaxed);
    let ids: Vec<_> = (0..600)
        .map(|_| fast.create_session(Some("ana")).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(store.expire_old_sessions(Duration::ZERO).unwrap(), 600);
    let fresh = store.create_session(Some("ana")).unwrap();
    let at = expired_at(&store, ids[0]).unwrap();
    // Writes go on meanwhile; every read sees the same expiry throughout.
    for (n, id) in ids.iter().enumerate().step_by(7) {
        store
            .add_message(fresh, NewMessage::user(format!("m{n}")))
            .unwrap();
        assert_eq!(expired_at(&store, *id), Some(at));
        let stats = store.stats().unwrap();
        assert_eq!((stats.active_sessions, stats.expired_sessions), (1, 600));
    }
    assert_clean(&store);
    drop((fast, store));
    let store = SessionStore::open(dir.location()).unwrap();
    assert!(ids.iter().all(|id| expired_at(&store, *id) == Some(at)));
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), [fresh]);
    assert_clean(&store);
}
