//! Sessions: create, get, context, expiry, listing, paging, deletion,
//! erasure, purge, stats and background expiry.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{aged_session, assert_clean, assert_invalid, assert_session_not_found, dump, hours, temp_store};
use sessionstore::{Durability, Erased, NewMessage, SessionCursor, SessionStore, Uuid};

/// Lets the clock move on, so that the next write gets a later
/// `updated_at` than the last one (the order tests compare them).
fn tick() {
    std::thread::sleep(Duration::from_millis(1));
}

#[test]
fn create_session_anonymous_and_empty_user_are_distinct() {
    let (_dir, store) = temp_store();
    let anonymous = store.create_session(None).unwrap();
    let empty = store.create_session(Some("")).unwrap();
    let named = store.create_session(Some("user123")).unwrap();
    assert_eq!(HashSet::from([anonymous, empty, named]).len(), 3);
    assert_eq!(anonymous.get_version_num(), 4, "uuid4 like the old store");

    let info = store.session_info(anonymous).unwrap().unwrap();
    assert_eq!(info.user_id, None);
    assert_eq!(
        store.session_info(empty).unwrap().unwrap().user_id.as_deref(),
        Some("")
    );
    assert_eq!(
        store.session_info(named).unwrap().unwrap().user_id.as_deref(),
        Some("user123")
    );

    let session = store.get_session(anonymous).unwrap().unwrap();
    assert_eq!(session.context.as_ref().unwrap().as_str(), "{}");
    assert_eq!(session.metadata.as_ref().unwrap().as_str(), "{}");
    assert_eq!(session.created_at, session.updated_at);
    assert_eq!(session.expired_at, None);
    assert_eq!(session.message_count, 0);
    assert!(session.messages.is_empty());

    assert_eq!(store.list_user_sessions("", true).unwrap(), vec![empty]);
    assert_eq!(store.list_user_sessions("user123", true).unwrap(), vec![named]);
    // The "" user sees its own session, never the anonymous one.
    let nobody = store.for_user("");
    assert!(nobody.get_session(empty).unwrap().is_some());
    assert!(nobody.get_session(anonymous).unwrap().is_none());
    assert_clean(&store);
}

#[test]
fn get_session_is_none_when_missing_or_expired() {
    let (_dir, store) = temp_store();
    assert!(store.get_session(Uuid::new_v4()).unwrap().is_none());
    assert!(store.session_info(Uuid::new_v4()).unwrap().is_none());

    let id = store.create_session(Some("ana")).unwrap();
    store.add_message(id, NewMessage::user("hi")).unwrap();
    assert!(store.expire_session(id).unwrap());
    assert!(store.get_session(id).unwrap().is_none());
    // Soft delete: the data stays and is visible to the operator.
    let info = store.session_info(id).unwrap().unwrap();
    assert!(info.is_expired());
    assert!(info.expired_at.as_ref().unwrap().micros() >= info.updated_at.micros());
    assert_eq!(info.message_count, 1);
    // Expiring twice says so; expiring a missing session is refused.
    assert!(!store.expire_session(id).unwrap());
    let missing = Uuid::new_v4();
    assert_session_not_found(store.expire_session(missing), missing);
    assert_clean(&store);
}

#[test]
fn add_message_is_refused_when_missing_or_expired_and_writes_nothing() {
    let (_dir, store) = temp_store();
    let missing = Uuid::new_v4();
    let error = store.add_message(missing, NewMessage::user("hi")).unwrap_err();
    assert_eq!(error.to_string(), format!("session {missing} not found"));
    assert!(error.is_not_found());

    let id = store.create_session(None).unwrap();
    store.add_message(id, NewMessage::user("before")).unwrap();
    store.expire_session(id).unwrap();
    let before = dump(&store);
    assert_session_not_found(store.add_message(id, NewMessage::user("after")), id);
    assert_session_not_found(store.update_context(id, r#"{"a": 1}"#), id);
    assert_session_not_found(store.pop_last_message(id), id);
    assert_session_not_found(store.add_message_if(id, 1, NewMessage::user("x")), id);
    assert_eq!(dump(&store), before, "a refused call changes nothing");
}

#[test]
fn add_message_sets_updated_at_to_the_message_time() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let created = store.session_info(id).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(2));
    store.add_message(id, NewMessage::user("hello")).unwrap();
    let session = store.get_session(id).unwrap().unwrap();
    assert!(session.updated_at.micros() > created.updated_at.micros());
    assert_eq!(session.created_at, created.created_at, "created_at never moves");
    assert_eq!(
        session.updated_at.micros(),
        session.messages[0].timestamp.micros()
    );
}

#[test]
fn update_context_is_a_shallow_merge_in_python_order() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    let before = store.session_info(id).unwrap().unwrap().updated_at;
    std::thread::sleep(Duration::from_millis(2));
    store
        .update_context(id, r#"{"last_publisher":"Oxford","nested":{"x":1,"y":2},"n":1}"#)
        .unwrap();
    store
        .update_context(
            id,
            r#"{"extra": [1, 2], "nested": {"z": 3}, "last_publisher": "MIT"}"#,
        )
        .unwrap();
    let info = store.session_info(id).unwrap().unwrap();
    // Old keys keep their place, new ones come last, nested values are
    // replaced whole, and the text is what Python's json.dumps writes.
    assert_eq!(
        info.context.unwrap().as_str(),
        r#"{"last_publisher": "MIT", "nested": {"z": 3}, "n": 1, "extra": [1, 2]}"#
    );
    assert!(info.updated_at.micros() > before.micros());

    // An empty object changes nothing but the time.
    store.update_context(id, "{}").unwrap();
    assert_eq!(
        store.session_info(id).unwrap().unwrap().context.unwrap().as_str(),
        r#"{"last_publisher": "MIT", "nested": {"z": 3}, "n": 1, "extra": [1, 2]}"#
    );
}

#[test]
fn update_context_keeps_unicode_and_nul_and_refuses_non_objects() {
    let (_dir, store) = temp_store();
    let id = store.create_session(Some("ana")).unwrap();
    store
        .update_context(id, "{\"caf\u{e9}\": \"\u{1F600} a\\u0000b\", \"k\": null}")
        .unwrap();
    let context = store.session_info(id).unwrap().unwrap().context.unwrap();
    assert_eq!(
        context.as_str(),
        r#"{"caf\u00e9": "\ud83d\ude00 a\u0000b", "k": null}"#,
        "json.dumps escapes non-ASCII and control characters"
    );
    let value = context.to_value().unwrap();
    assert_eq!(value["caf\u{e9}"], "\u{1F600} a\0b");

    let before = dump(&store);
    for bad in [
        "[1, 2]",
        "1",
        "\"text\"",
        "null",
        "",
        "not json",
        "{\"a\": }",
        "{} {}",
    ] {
        let message = assert_invalid(store.update_context(id, bad), "context");
        assert!(message.starts_with("invalid context: "), "{message}");
    }
    assert_eq!(dump(&store), before, "a refused context changes nothing");

    // Numbers are kept as written, whatever their size (as Python keeps
    // integers), also in the keys the update does not touch.
    store
        .update_context(id, r#"{"big": 123456789012345678901234567890, "far": 1e400}"#)
        .unwrap();
    store
        .update_context(id, r#"{"k": -18446744073709551617}"#)
        .unwrap();
    assert_eq!(
        store.session_info(id).unwrap().unwrap().context.unwrap().as_str(),
        r#"{"caf\u00e9": "\ud83d\ude00 a\u0000b", "k": -18446744073709551617, "big": 123456789012345678901234567890, "far": 1e400}"#
    );
    let missing = Uuid::new_v4();
    assert_session_not_found(store.update_context(missing, "{}"), missing);
}

#[test]
fn expire_old_sessions_expires_only_the_due_ones() {
    let (_dir, store) = temp_store();
    let old: Vec<Uuid> = (0..3)
        .map(|_| aged_session(&store, Some("ana"), hours(48), None))
        .collect();
    let old_expired = aged_session(&store, Some("ana"), hours(72), Some(hours(30)));
    let just_under = aged_session(&store, None, hours(23), None);
    let fresh = store.create_session(Some("ana")).unwrap();
    let expired_at_before = store.session_info(old_expired).unwrap().unwrap().expired_at;

    assert_eq!(store.expire_old_sessions(hours(24)).unwrap(), 3);
    for id in &old {
        assert!(store.get_session(*id).unwrap().is_none());
        assert!(store.session_info(*id).unwrap().unwrap().is_expired());
    }
    assert!(store.get_session(fresh).unwrap().is_some());
    assert!(store.get_session(just_under).unwrap().is_some());
    assert_eq!(
        store.session_info(old_expired).unwrap().unwrap().expired_at,
        expired_at_before,
        "an expired session is not expired again"
    );
    assert_eq!(
        store.expire_old_sessions(hours(24)).unwrap(),
        0,
        "nothing left due"
    );
    let stats = store.stats().unwrap();
    assert_eq!((stats.active_sessions, stats.expired_sessions), (2, 4));
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), vec![fresh]);
    assert_clean(&store);
}

#[test]
fn list_user_sessions_is_most_recently_updated_first() {
    let (_dir, store) = temp_store();
    let a = store.create_session(Some("ana")).unwrap();
    tick();
    let b = store.create_session(Some("ana")).unwrap();
    tick();
    let c = store.create_session(Some("ana")).unwrap();
    store.create_session(Some("bob")).unwrap();
    store.create_session(None).unwrap();
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), vec![c, b, a]);

    tick();
    store
        .add_message(a, NewMessage::user("a message moves it up"))
        .unwrap();
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), vec![a, c, b]);
    tick();
    store.update_context(b, r#"{"so": "does a context"}"#).unwrap();
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), vec![b, a, c]);

    store.expire_session(a).unwrap();
    assert_eq!(store.list_user_sessions("ana", false).unwrap(), vec![b, c]);
    assert_eq!(store.list_user_sessions("ana", true).unwrap(), vec![b, a, c]);
    assert!(store.list_user_sessions("nobody", true).unwrap().is_empty());
    assert!(
        store.list_user_sessions("an", true).unwrap().is_empty(),
        "no prefix match"
    );
}

#[test]
fn recent_sessions_give_the_old_sidebar() {
    let (_dir, store) = temp_store();
    let user = "ana";
    let empty = store.create_session(Some(user)).unwrap();
    tick();
    let assistant_first = store.create_session(Some(user)).unwrap();
    store
        .add_message(assistant_first, NewMessage::assistant("Welcome back"))
        .unwrap();
    store
        .add_message(assistant_first, NewMessage::user("hello"))
        .unwrap();
    store
        .add_message(assistant_first, NewMessage::user("second"))
        .unwrap();
    tick();
    let fifty = store.create_session(Some(user)).unwrap();
    store
        .add_message(fifty, NewMessage::user("x".repeat(50)))
        .unwrap();
    tick();
    let long = store.create_session(Some(user)).unwrap();
    store.add_message(long, NewMessage::user("y".repeat(51))).unwrap();
    tick();
    let emoji = store.create_session(Some(user)).unwrap();
    store
        .add_message(emoji, NewMessage::user("\u{1F600}".repeat(60)))
        .unwrap();
    let expired = store.create_session(Some(user)).unwrap();
    store.expire_session(expired).unwrap();

    let recent = store.recent_sessions(user, 10).unwrap();
    let ids: Vec<Uuid> = recent.iter().map(|s| s.session_id).collect();
    assert_eq!(ids, vec![emoji, long, fifty, assistant_first, empty]);
    let titles: Vec<&str> = recent.iter().map(|s| s.title.as_str()).collect();
    let emoji_title = format!("{}...", "\u{1F600}".repeat(47));
    let long_title = format!("{}...", "y".repeat(47));
    let fifty_title = "x".repeat(50);
    assert_eq!(
        titles,
        vec![
            emoji_title.as_str(),
            long_title.as_str(),
            fifty_title.as_str(),
            "hello",
            "New conversation"
        ]
    );
    let counts: Vec<u64> = recent.iter().map(|s| s.message_count).collect();
    assert_eq!(counts, vec![1, 1, 1, 3, 0]);
    for summary in &recent {
        let info = store.session_info(summary.session_id).unwrap().unwrap();
        assert_eq!(summary.last_activity, info.updated_at);
        assert!(!summary.expired);
    }
    assert_eq!(store.recent_sessions(user, 2).unwrap(), recent[..2].to_vec());
    assert!(store.recent_sessions(user, 0).unwrap().is_empty());
    assert!(store.recent_sessions("bob", 5).unwrap().is_empty());
}

/// A user with thousands of sessions, some sharing an update time, some
/// expired: paging visits each once, in the order of the full list.
#[test]
fn user_sessions_page_visits_thousands_of_sessions_once_in_order() {
    let (_dir, store) = temp_store();
    let user = "heavy \u{1F600} user";
    let mut importer = store.importer();
    let now = sessionstore::Timestamp::now().micros();
    let mut all = Vec::new();
    for n in 0..2_500i64 {
        let id = Uuid::new_v4();
        // Groups of five share an update time, to exercise the tie-break.
        let updated =
            sessionstore::Timestamp::from_micros(now - (n / 5) * 1_000, sessionstore::TimestampForm::Utc);
        importer
            .add_session(sessionstore::SessionInfo {
                session_id: id,
                user_id: Some(user.to_owned()),
                created_at: updated.clone(),
                updated_at: updated.clone(),
                expired_at: (n % 10 == 3).then(|| updated.clone()),
                context: None,
                metadata: None,
                message_count: 0,
                extra: Default::default(),
            })
            .unwrap();
        all.push(id);
    }
    importer.finish().unwrap();
    store.create_session(Some("other")).unwrap();

    for include_expired in [false, true] {
        let full = store.list_user_sessions(user, include_expired).unwrap();
        assert_eq!(full.len(), if include_expired { 2_500 } else { 2_250 });
        // The order is (updated_at, id), newest first.
        let mut expected: Vec<(i64, Uuid)> = full
            .iter()
            .map(|id| (store.session_info(*id).unwrap().unwrap().updated_at.micros(), *id))
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(full, expected.iter().map(|(_, id)| *id).collect::<Vec<_>>());

        for page_size in [7, 100, 2_249, 2_500] {
            let mut seen = Vec::new();
            let mut cursor: Option<SessionCursor> = None;
            loop {
                let page = store
                    .user_sessions_page(user, include_expired, cursor, page_size)
                    .unwrap();
                assert!(page.sessions.len() <= page_size);
                assert!(page.sessions.iter().all(|s| include_expired || !s.expired));
                seen.extend(page.sessions.iter().map(|s| s.session_id));
                match page.next {
                    Some(next) => {
                        assert_eq!(page.sessions.len(), page_size, "only the last page is short");
                        let text = next.to_string();
                        let parsed: SessionCursor = text.parse().unwrap();
                        assert_eq!(parsed, next, "cursor round-trips through {text:?}");
                        cursor = Some(parsed);
                    }
                    None => break,
                }
            }
            assert_eq!(
                seen, full,
                "page size {page_size}, include_expired {include_expired}"
            );
        }
    }
    let visible: HashSet<Uuid> = store
        .list_user_sessions(user, true)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(visible, all.into_iter().collect());
}

#[test]
fn user_sessions_page_refuses_bad_cursors_and_zero_limits() {
    let (_dir, store) = temp_store();
    for _ in 0..3 {
        store.create_session(Some("ana")).unwrap();
    }
    for bad in ["", "abc", "12", "12.zz", ".0", "1.2.3"] {
        let message = assert_invalid(bad.parse::<SessionCursor>(), "cursor");
        assert!(message.contains(&format!("{bad:?}")), "{message}");
    }
    assert_invalid(store.user_sessions_page("ana", false, None, 0), "limit");

    // A cursor stays valid after its session is deleted.
    let first = store.user_sessions_page("ana", false, None, 1).unwrap();
    store.delete_session(first.sessions[0].session_id).unwrap();
    let rest = store.user_sessions_page("ana", false, first.next, 10).unwrap();
    assert_eq!(rest.sessions.len(), 2);
    assert_eq!(rest.next, None);
}

#[test]
fn delete_session_removes_it_and_its_messages_for_good() {
    let (_dir, store) = temp_store();
    let keep = store.create_session(Some("ana")).unwrap();
    let kept_message = store.add_message(keep, NewMessage::user("stays")).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    let ids: Vec<u64> = (0..5)
        .map(|n| store.add_message(id, NewMessage::user(format!("m{n}"))).unwrap())
        .collect();
    let expired = store.create_session(None).unwrap();
    store.add_message(expired, NewMessage::user("old")).unwrap();
    store.expire_session(expired).unwrap();

    assert_eq!(store.delete_session(id).unwrap(), 5);
    assert!(store.session_info(id).unwrap().is_none());
    for message_id in ids {
        assert!(store.get_message(message_id).unwrap().is_none());
    }
    assert_eq!(store.list_user_sessions("ana", true).unwrap(), vec![keep]);
    assert_session_not_found(store.delete_session(id), id);
    assert_eq!(
        store.delete_session(expired).unwrap(),
        1,
        "expired sessions can be deleted"
    );

    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.expired_sessions, stats.messages),
        (1, 0, 1)
    );
    assert_eq!(store.get_message(kept_message).unwrap().unwrap().0, keep);
    assert_clean(&store);
}

#[test]
fn erase_user_leaves_no_trace() {
    let (_dir, store) = temp_store();
    let mut ana_messages = Vec::new();
    let mut ana_sessions = Vec::new();
    for n in 0..3 {
        let id = store.create_session(Some("ana")).unwrap();
        for k in 0..4 {
            ana_messages.push(
                store
                    .add_message(id, NewMessage::user(format!("{n}/{k}")))
                    .unwrap(),
            );
        }
        ana_sessions.push(id);
    }
    store.expire_session(ana_sessions[1]).unwrap();
    let bob = store.create_session(Some("bob")).unwrap();
    let bob_message = store.add_message(bob, NewMessage::user("bob's")).unwrap();
    let anonymous = store.create_session(None).unwrap();
    store
        .add_message(anonymous, NewMessage::user("nobody's"))
        .unwrap();
    let empty_user = store.create_session(Some("")).unwrap();
    let prefix_user = store.create_session(Some("ana2")).unwrap();
    let before = store.stats().unwrap();

    assert_eq!(
        store.erase_user("ana").unwrap(),
        Erased {
            sessions: 3,
            messages: 12
        }
    );
    for id in &ana_messages {
        assert!(store.get_message(*id).unwrap().is_none());
    }
    for id in &ana_sessions {
        assert!(store.session_info(*id).unwrap().is_none());
    }
    assert!(store.list_user_sessions("ana", true).unwrap().is_empty());
    assert!(store.recent_sessions("ana", 10).unwrap().is_empty());
    let (sessions, _) = dump(&store);
    assert!(sessions
        .iter()
        .all(|(info, _)| info.user_id.as_deref() != Some("ana")));
    assert_eq!(sessions.len(), 4);
    let after = store.stats().unwrap();
    assert_eq!(after.active_sessions, before.active_sessions - 2);
    assert_eq!(after.expired_sessions, before.expired_sessions - 1);
    assert_eq!(after.messages, before.messages - 12);
    assert_clean(&store);

    // Others are untouched; erasing again finds nothing.
    assert_eq!(store.get_message(bob_message).unwrap().unwrap().0, bob);
    assert!(store.get_session(anonymous).unwrap().is_some());
    assert_eq!(store.list_user_sessions("ana2", true).unwrap(), vec![prefix_user]);
    assert_eq!(store.erase_user("ana").unwrap(), Erased::default());
    // The "" user is a user; anonymous sessions are nobody's.
    assert_eq!(store.erase_user("").unwrap().sessions, 1);
    assert!(store.session_info(empty_user).unwrap().is_none());
    assert!(store.session_info(anonymous).unwrap().is_some());
    assert_clean(&store);
}

#[test]
fn purge_expired_deletes_only_sessions_expired_long_enough() {
    let (_dir, store) = temp_store();
    let long_expired = aged_session(&store, Some("ana"), hours(100), Some(hours(48)));
    let recently_expired = aged_session(&store, Some("ana"), hours(100), Some(hours(1)));
    let old_but_active = aged_session(&store, Some("ana"), hours(100), None);
    let with_messages = store.create_session(None).unwrap();
    let message = store.add_message(with_messages, NewMessage::user("x")).unwrap();
    store.expire_session(with_messages).unwrap();

    assert_eq!(store.purge_expired(hours(24)).unwrap(), 1);
    assert!(store.session_info(long_expired).unwrap().is_none());
    assert!(store.session_info(recently_expired).unwrap().is_some());
    assert!(store.session_info(old_but_active).unwrap().is_some());
    assert_eq!(store.purge_expired(hours(24)).unwrap(), 0);

    // Zero age purges every expired session, messages included.
    assert_eq!(store.purge_expired(Duration::ZERO).unwrap(), 2);
    assert!(store.get_message(message).unwrap().is_none());
    assert_eq!(
        store.list_user_sessions("ana", true).unwrap(),
        vec![old_but_active]
    );
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.expired_sessions, stats.messages),
        (1, 0, 0)
    );
    assert_clean(&store);
}

#[test]
fn stats_count_active_expired_messages_and_file_size() {
    let (dir, store) = temp_store();
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.expired_sessions, stats.messages),
        (0, 0, 0)
    );
    let a = store.create_session(Some("ana")).unwrap();
    let b = store.create_session(None).unwrap();
    store.create_session(Some("")).unwrap();
    for n in 0..4 {
        store.add_message(a, NewMessage::user(format!("{n}"))).unwrap();
    }
    store.add_message(b, NewMessage::assistant("b")).unwrap();
    store.expire_session(b).unwrap();
    store.pop_last_message(a).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.expired_sessions, stats.messages),
        (2, 1, 4)
    );
    if common::redb_only("stats: the sizes of the store's files") {
        return;
    }
    assert_eq!(stats.file_size, common::file_len(&common::store_path(&dir)));
    assert!(stats.file_size > 0);
    let journal = common::store_path(&dir).with_file_name("sessions.redb-journal");
    assert_eq!(stats.journal_size, common::file_len(&journal));
    assert!(stats.journal_size > 0);
}

#[test]
fn background_expiry_expires_old_sessions_until_dropped() {
    let (_dir, store) = temp_store();
    let old = aged_session(&store, Some("ana"), hours(48), None);
    let fresh = store.create_session(Some("ana")).unwrap();
    let expiry = store
        .spawn_background_expiry(hours(24), Duration::from_millis(10))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.get_session(old).unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "background expiry never ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(expiry);
    assert!(store.get_session(fresh).unwrap().is_some());
    // Once dropped it is gone: a newly due session stays active.
    let later = aged_session(&store, Some("ana"), hours(48), None);
    std::thread::sleep(Duration::from_millis(50));
    assert!(store.get_session(later).unwrap().is_some());
}

/// Every call of a user's view on another user's session, or on an
/// anonymous one, answers exactly as on a session that does not exist.
#[test]
fn user_view_treats_foreign_sessions_as_missing() {
    let (_dir, store) = temp_store();
    let ana = store.for_user("ana");
    let own = ana.create_session().unwrap();
    let own_message = ana.add_message(own, NewMessage::user("mine")).unwrap();
    assert_eq!(
        store.session_info(own).unwrap().unwrap().user_id.as_deref(),
        Some("ana")
    );

    for owner in [Some("bob"), None, Some("")] {
        let foreign = store.create_session(owner).unwrap();
        let message = store.add_message(foreign, NewMessage::user("secret")).unwrap();
        store.update_context(foreign, r#"{"k": 1}"#).unwrap();
        let before = dump(&store);
        let answers = |id: Uuid, message: u64| {
            vec![
                format!("{:?}", ana.get_session(id)),
                format!("{:?}", ana.session_info(id)),
                format!("{:?}", ana.add_message(id, NewMessage::user("x"))),
                format!("{:?}", ana.add_message_if(id, 1, NewMessage::user("x"))),
                format!("{:?}", ana.update_context(id, r#"{"a": 1}"#)),
                format!("{:?}", ana.get_recent_messages(id, 5)),
                format!("{:?}", ana.messages_after(id, 0, 5)),
                format!("{:?}", ana.messages_before(id, 5, 5)),
                format!("{:?}", ana.messages_from(id, 0, 5)),
                format!("{:?}", ana.get_message(message)),
                format!("{:?}", ana.pop_last_message(id)),
                format!("{:?}", ana.expire_session(id)),
                format!("{:?}", ana.delete_session(id)),
            ]
        };
        let on_foreign = answers(foreign, message);
        assert_eq!(dump(&store), before, "{owner:?}: the view changed nothing");
        assert!(!ana.list_sessions(true).unwrap().contains(&foreign));
        assert!(ana
            .recent_sessions(10)
            .unwrap()
            .iter()
            .all(|s| s.session_id != foreign));
        let page = ana.sessions_page(true, None, 10).unwrap();
        assert_eq!(
            page.sessions.iter().map(|s| s.session_id).collect::<Vec<_>>(),
            vec![own]
        );
        // The same session, now truly missing.
        store.delete_session(foreign).unwrap();
        assert_eq!(on_foreign, answers(foreign, message), "{owner:?}");
        assert!(on_foreign[0].contains("Ok(None)"));
        assert!(on_foreign[1].contains("Ok(None)"));
        assert!(on_foreign[2].contains("SessionNotFound"));
        assert!(on_foreign[5..=9].iter().all(|read| read == "Ok(None)"));
    }

    // The owner gets everything.
    assert_eq!(ana.get_session(own).unwrap().unwrap().messages.len(), 1);
    assert_eq!(ana.get_message(own_message).unwrap().unwrap().0, own);
    ana.update_context(own, r#"{"a": 1}"#).unwrap();
    assert_eq!(
        ana.add_message_if(own, 1, NewMessage::assistant("reply"))
            .unwrap(),
        own_message + 4
    );
    assert_eq!(
        ana.get_recent_messages(own, 1).unwrap().unwrap()[0].content,
        "reply"
    );
    assert_eq!(ana.messages_after(own, 0, 5).unwrap().unwrap().len(), 1);
    assert_eq!(
        ana.messages_before(own, 1, 5).unwrap().unwrap()[0].content,
        "mine"
    );
    assert_eq!(ana.pop_last_message(own).unwrap().unwrap().content, "reply");
    assert_eq!(ana.list_sessions(false).unwrap(), vec![own]);
    assert_eq!(ana.recent_sessions(5).unwrap()[0].title, "mine");
    assert!(ana.expire_session(own).unwrap());
    assert!(ana.get_session(own).unwrap().is_none());
    assert_eq!(ana.list_sessions(true).unwrap(), vec![own]);
    assert!(ana.session_info(own).unwrap().unwrap().is_expired());
    assert_eq!(ana.delete_session(own).unwrap(), 1);
    assert_clean(&store);
}

#[test]
fn store_handles_are_send_sync_and_cheap_to_clone() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<SessionStore>();
    let (_dir, store) = temp_store();
    let relaxed = store.with_durability(Durability::Relaxed);
    let id = relaxed.create_session(Some("ana")).unwrap();
    let clone = store.clone();
    assert!(clone.get_session(id).unwrap().is_some());
    assert_eq!(clone.path(), store.path());
}
