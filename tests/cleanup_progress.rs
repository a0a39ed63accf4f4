//! Cleanup with progress: many sessions expired in one commit, purged in
//! several, every one handled.

use std::time::Duration;

use sessionstore::{Durability, SessionStore};

#[test]
fn expiry_and_purge_with_progress_handle_every_session_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let fast = store.with_durability(Durability::Relaxed);
    for _ in 0..2500 {
        fast.create_session(Some("ana")).unwrap();
    }
    // Updated just now: not due at a day's age.
    let mut calls = Vec::new();
    let expired = store
        .expire_old_sessions_with_progress(Duration::from_secs(86_400), &mut |d, t| calls.push((d, t)))
        .unwrap();
    assert_eq!((expired, calls), (0, vec![(0, 0)]));

    let mut calls = Vec::new();
    let expired = store
        .expire_old_sessions_with_progress(Duration::ZERO, &mut |d, t| calls.push((d, t)))
        .unwrap();
    assert_eq!(expired, 2500);
    // One commit: the expiry is recorded, the sessions rewritten later.
    assert_eq!(calls, [(2500, 2500)]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.active_sessions, stats.expired_sessions), (0, 2500));

    let mut calls = Vec::new();
    let purged = store
        .purge_expired_with_progress(Duration::ZERO, &mut |d, t| calls.push((d, t)))
        .unwrap();
    assert_eq!(purged, 2500);
    assert_eq!(calls.last(), Some(&(2500, 2500)));
    assert_eq!(calls.len(), 3);
    assert!(store.list_user_sessions("ana", true).unwrap().is_empty());
    assert!(store.check(&mut |_, _| {}).unwrap().is_clean());
}
