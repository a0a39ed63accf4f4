//! Issue 7, test 8: isolation and erasure.
//!
//! - Through every ownership-checked call of `for_user`, another user's
//!   session (active or expired), an anonymous one and a missing one answer
//!   exactly alike, and none of those calls changes anything.
//! - After `erase_user` and `compact`, the erased user's content (unique
//!   marker strings in messages, context, query plans, the user id itself)
//!   appears nowhere in the bytes of any file in the store's folder, while
//!   another user's marker still does.
//! - No message content reaches the log at info level or above, whatever
//!   the store does (background expiry, erasure, compaction, the check).
//!
//! All bounded; they run in full in `cargo test`.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{dump, temp_store};
use sessionstore::{NewMessage, SessionStore, UserView, Uuid};

/// Every ownership-checked call of `view` on session `id` and message
/// `message`, rendered with the ids blanked out, in an order that deletes
/// last.
fn observe(view: &UserView<'_>, id: Uuid, message: u64) -> Vec<String> {
    let blank = |text: String| {
        text.replace(&id.to_string(), "<session>")
            .replace(&message.to_string(), "<message>")
    };
    let calls: Vec<String> = vec![
        format!("{:?}", view.get_session(id)),
        format!("{:?}", view.session_info(id)),
        format!("{:?}", view.get_recent_messages(id, 10)),
        format!("{:?}", view.messages_after(id, 0, 10)),
        format!("{:?}", view.messages_from(id, 0, 10)),
        format!("{:?}", view.messages_before(id, 5, 10)),
        format!("{:?}", view.get_message(message)),
        format!("{:?}", view.add_message(id, NewMessage::user("intruder"))),
        format!("{:?}", view.add_message_if(id, 2, NewMessage::user("intruder"))),
        format!("{:?}", view.update_context(id, r#"{"intruder": true}"#)),
        format!("{:?}", view.pop_last_message(id)),
        format!("{:?}", view.expire_session(id)),
        format!("{:?}", view.delete_session(id)),
    ];
    calls.into_iter().map(blank).collect()
}

#[test]
fn another_users_session_is_indistinguishable_from_a_missing_one() {
    let (_dir, store) = temp_store();
    let ana = store.for_user("ana");
    let bob = store.for_user("bob");
    let active = ana.create_session().unwrap();
    let first = ana
        .add_message(active, NewMessage::user("ana's question"))
        .unwrap();
    ana.add_message(active, NewMessage::assistant("ana's answer"))
        .unwrap();
    let expired = ana.create_session().unwrap();
    let expired_message = ana.add_message(expired, NewMessage::user("old")).unwrap();
    ana.expire_session(expired).unwrap();
    let anonymous = store.create_session(None).unwrap();
    let anonymous_message = store
        .add_message(anonymous, NewMessage::user("nobody's"))
        .unwrap();
    let bobs = bob.create_session().unwrap();
    let bobs_message = bob.add_message(bobs, NewMessage::user("bob's")).unwrap();

    let before = dump(&store);
    let missing = observe(&bob, Uuid::new_v4(), 999_999);
    assert!(
        missing.iter().any(|r| r.contains("SessionNotFound(<session>)")),
        "a missing session is refused as not found: {missing:#?}"
    );
    for (id, message, what) in [
        (active, first, "ana's active session"),
        (expired, expired_message, "ana's expired session"),
        (anonymous, anonymous_message, "an anonymous session"),
    ] {
        assert_eq!(observe(&bob, id, message), missing, "bob on {what}");
    }
    assert_eq!(dump(&store), before, "refused calls changed nothing");
    for include_expired in [false, true] {
        assert_eq!(bob.list_sessions(include_expired).unwrap(), vec![bobs]);
        let page = bob.sessions_page(include_expired, None, 100).unwrap();
        let ids: Vec<Uuid> = page.sessions.iter().map(|s| s.session_id).collect();
        assert_eq!(ids, vec![bobs]);
    }
    let recent: Vec<Uuid> = bob
        .recent_sessions(100)
        .unwrap()
        .iter()
        .map(|s| s.session_id)
        .collect();
    assert_eq!(recent, vec![bobs]);
    // The same calls on bob's own session do reach it (the observation can
    // tell the difference).
    assert_ne!(observe(&bob, bobs, bobs_message), missing);
}

/// Every file in `dir` (the store, its journal, anything beside them).
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        } else if path.is_dir() {
            files.extend(all_bytes(&path));
        }
    }
    files
}

/// The files of `dir` whose bytes hold `marker`.
fn files_holding(dir: &Path, marker: &str) -> Vec<String> {
    all_bytes(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()))
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn erased_content_is_in_no_file_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(dir.path().join("store/sessions.redb")).unwrap();
    let erased_user = format!("erased-user-{}", Uuid::new_v4().simple());
    let erased = format!("ERASED-{}", Uuid::new_v4().simple());
    let kept = format!("KEPT-{}", Uuid::new_v4().simple());
    for (user, marker) in [(erased_user.as_str(), &erased), ("bob", &kept)] {
        for round in 0..3 {
            let id = store.create_session(Some(user)).unwrap();
            for n in 0..20 {
                let message = NewMessage::user(format!("{marker} turn {n} {}", "x".repeat(n * 50)))
                    .with_query_plan(format!(r#"{{"filter": "{marker}"}}"#))
                    .unwrap();
                store.add_message(id, message).unwrap();
            }
            store
                .update_context(id, &format!(r#"{{"last": "{marker}"}}"#))
                .unwrap();
            if round == 1 {
                store.expire_session(id).unwrap();
            }
        }
    }
    let store_dir = dir.path().join("store");
    assert!(
        !files_holding(&store_dir, &erased).is_empty(),
        "the marker is written before erasure"
    );

    let removed = store.erase_user(&erased_user).unwrap();
    assert_eq!((removed.sessions, removed.messages), (3, 60));
    store.compact(&mut |_, _| {}).unwrap();
    for marker in [&erased, &erased_user] {
        assert_eq!(
            files_holding(&store_dir, marker),
            Vec::<String>::new(),
            "erased {marker} is still in these files after erase_user and compact"
        );
    }
    assert!(
        !files_holding(&store_dir, &kept).is_empty(),
        "bob's data is still there"
    );
    drop(store);
    for marker in [&erased, &erased_user] {
        assert_eq!(
            files_holding(&store_dir, marker),
            Vec::<String>::new(),
            "{marker} after close"
        );
    }
}

/// A log sink for the whole test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn message_content_never_reaches_the_log_at_info_or_above() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");

    let marker = format!("SECRET-{}", Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    let store = SessionStore::open(&path).unwrap();
    let user = format!("user-{marker}");
    let id = store.create_session(Some(&user)).unwrap();
    for n in 0..10 {
        store
            .add_message(id, NewMessage::user(format!("{marker} {n}")))
            .unwrap();
    }
    store
        .update_context(id, &format!(r#"{{"topic": "{marker}"}}"#))
        .unwrap();
    let other = store.create_session(Some(&user)).unwrap();
    store
        .add_message(other, NewMessage::user(marker.clone()))
        .unwrap();
    let refused = store.add_message_if(id, 0, NewMessage::user(marker.clone()));
    assert!(refused.is_err());
    {
        let _expiry = store
            .spawn_background_expiry(Duration::ZERO, Duration::from_millis(5))
            .unwrap();
        while store.get_session(id).unwrap().is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    store.check(&mut |_, _| {}).unwrap();
    store.compact(&mut |_, _| {}).unwrap();
    store.erase_user(&user).unwrap();
    drop(store);
    SessionStore::open(&path).unwrap();

    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("background expiry"),
        "the capture works: the expiry's info line is there:\n{log}"
    );
    assert!(!log.contains(&marker), "message content in the log:\n{log}");
}
