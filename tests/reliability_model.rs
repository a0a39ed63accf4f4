//! Issue 7, test 4: model-based property test.
//!
//! proptest draws sequences of every operation (create, add, add_message_if,
//! update_context, expire, expire_old_sessions and purge_expired with an
//! age of zero or an hour, delete, erase_user, pop_last_message,
//! get_session, get_message, list, reopen), made by the operator or by one of two users through
//! `for_user`, on existing, deleted or missing sessions. Each result is
//! compared with an in-memory model, where a user's call on a session that
//! is not theirs must answer as for a missing one; after the sequence the
//! whole store is compared with the model, and the integrity check must be
//! clean. The store runs on the simulated disk of `tests/common/disk.rs`.
//!
//! Bounded: 64 sequences. Long: `SESSIONSTORE_LONG=1 cargo test --release
//! --test reliability_model` runs 100,000.

mod common;

use sessionstore::redb_engine::RedbOptions;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::disk::SimDisk;
use common::{assert_clean, cases, scale};
use proptest::prelude::*;
use sessionstore::{Durability, Erased, Error, NewMessage, Role, SessionStore, StoreOptions, Uuid};

const USERS: [&str; 2] = ["ana", "bob"];

#[derive(Clone, Copy, Debug)]
enum Who {
    Operator,
    User(usize),
}

/// Which session a call names: one created before (by index, wrapping),
/// or one that never existed.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Created(usize),
    Missing,
}

#[derive(Clone, Debug)]
enum Op {
    Create(Who),
    Add(Who, Pick, Role, String),
    AddIf(Who, Pick, i8, String),
    Context(Who, Pick, u8, u8),
    Expire(Who, Pick),
    ExpireOld(bool),
    Purge(bool),
    Delete(Who, Pick),
    Erase(usize),
    Pop(Who, Pick),
    Get(Who, Pick),
    GetMessage(Who, u64),
    List(usize, bool),
    Reopen,
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![Just(Who::Operator), (0..USERS.len()).prop_map(Who::User)]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![9 => (0..16usize).prop_map(Pick::Created), 1 => Just(Pick::Missing)]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::User), Just(Role::Assistant), Just(Role::System)]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,20}", Just(String::new()), "\\PC{0,300}"]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => who().prop_map(Op::Create),
        6 => (who(), pick(), role(), text()).prop_map(|(w, p, r, t)| Op::Add(w, p, r, t)),
        2 => (who(), pick(), -1i8..=1, text()).prop_map(|(w, p, d, t)| Op::AddIf(w, p, d, t)),
        2 => (who(), pick(), 0u8..4, any::<u8>()).prop_map(|(w, p, k, v)| Op::Context(w, p, k, v)),
        1 => (who(), pick()).prop_map(|(w, p)| Op::Expire(w, p)),
        1 => any::<bool>().prop_map(Op::ExpireOld),
        1 => any::<bool>().prop_map(Op::Purge),
        1 => (who(), pick()).prop_map(|(w, p)| Op::Delete(w, p)),
        1 => (0..USERS.len()).prop_map(Op::Erase),
        2 => (who(), pick()).prop_map(|(w, p)| Op::Pop(w, p)),
        3 => (who(), pick()).prop_map(|(w, p)| Op::Get(w, p)),
        2 => (who(), 0u64..40).prop_map(|(w, m)| Op::GetMessage(w, m)),
        2 => (0..USERS.len(), any::<bool>()).prop_map(|(u, e)| Op::List(u, e)),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Debug, Default)]
struct ModelSession {
    user: Option<String>,
    expired: bool,
    context: serde_json::Map<String, serde_json::Value>,
    /// (id, role, content), seq order.
    messages: Vec<(u64, Role, String)>,
}

#[derive(Debug)]
struct Model {
    /// Every session ever created, by creation order.
    created: Vec<Uuid>,
    live: BTreeMap<Uuid, ModelSession>,
    next_id: u64,
}

impl Model {
    fn id(&self, pick: Pick, missing: Uuid) -> Uuid {
        match pick {
            Pick::Created(i) if !self.created.is_empty() => self.created[i % self.created.len()],
            _ => missing,
        }
    }

    /// The session as `who` may see it (expired or not).
    fn visible(&self, who: Who, id: Uuid) -> Option<&ModelSession> {
        self.live.get(&id).filter(|s| match who {
            Who::Operator => true,
            Who::User(u) => s.user.as_deref() == Some(USERS[u]),
        })
    }

    fn writable(&self, who: Who, id: Uuid) -> bool {
        self.visible(who, id).is_some_and(|s| !s.expired)
    }
}

/// The store as one caller sees it.
fn call<T>(store: &SessionStore, who: Who, op: impl FnOnce(Caller<'_>) -> T) -> T {
    match who {
        Who::Operator => op(Caller::Operator(store)),
        Who::User(u) => op(Caller::User(store.for_user(USERS[u]))),
    }
}

enum Caller<'a> {
    Operator(&'a SessionStore),
    User(sessionstore::UserView<'a>),
}

macro_rules! both {
    ($caller:expr, $method:ident ( $($arg:expr),* )) => {
        match $caller {
            Caller::Operator(s) => s.$method($($arg),*),
            Caller::User(v) => v.$method($($arg),*),
        }
    };
}

fn not_found<T: std::fmt::Debug>(result: Result<T, Error>, id: Uuid) -> Result<(), TestCaseError> {
    match result {
        Err(Error::SessionNotFound(found)) if found == id => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "expected SessionNotFound({id}), got {other:?}"
        ))),
    }
}

/// Opens the store on a simulated disk with the smallest journal: the same
/// semantics, without writing 32 MiB of journal for each of 100,000 runs.
fn open(path: &std::path::Path, disk: &SimDisk, durability: Durability) -> SessionStore {
    SessionStore::open_with(
        path,
        StoreOptions {
            durability,
            redb: RedbOptions {
                cache_bytes: 4 << 20,
                storage: Arc::new(disk.clone()),
                max_journal_bytes: RedbOptions::MIN_JOURNAL_BYTES,
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        },
    )
    .expect("open")
}

fn run(ops: Vec<Op>, relaxed: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.redb");
    let durability = if relaxed {
        Durability::Relaxed
    } else {
        Durability::Durable
    };
    let disk = SimDisk::default();
    let mut store = open(&path, &disk, durability);
    let mut model = Model {
        created: Vec::new(),
        live: BTreeMap::new(),
        next_id: 1,
    };
    let missing = Uuid::new_v4();
    for op in ops {
        match op {
            Op::Create(who) => {
                let id = match who {
                    Who::Operator => store.create_session(None),
                    Who::User(u) => store.for_user(USERS[u]).create_session(),
                }
                .expect("create");
                let user = match who {
                    Who::Operator => None,
                    Who::User(u) => Some(USERS[u].to_owned()),
                };
                model.created.push(id);
                model.live.insert(
                    id,
                    ModelSession {
                        user,
                        ..ModelSession::default()
                    },
                );
            }
            Op::Add(who, pick, role, text) => {
                let id = model.id(pick, missing);
                let result = call(&store, who, |c| {
                    both!(c, add_message(id, NewMessage::new(role, text.clone())))
                });
                if model.writable(who, id) {
                    prop_assert_eq!(result.expect("add"), model.next_id);
                    let session = model.live.get_mut(&id).expect("live");
                    session.messages.push((model.next_id, role, text));
                    model.next_id += 1;
                } else {
                    not_found(result, id)?;
                }
            }
            Op::AddIf(who, pick, delta, text) => {
                let id = model.id(pick, missing);
                let count = model.live.get(&id).map_or(0, |s| s.messages.len() as u64);
                let expected = count.saturating_add_signed(delta.into());
                let result = call(&store, who, |c| {
                    both!(c, add_message_if(id, expected, NewMessage::user(text.clone())))
                });
                if !model.writable(who, id) {
                    not_found(result, id)?;
                } else if expected != count {
                    match result {
                        Err(Error::SeqConflict {
                            expected: e, actual, ..
                        }) => {
                            prop_assert_eq!((e, actual), (expected, count));
                        }
                        other => prop_assert!(false, "expected a seq conflict, got {:?}", other),
                    }
                } else {
                    prop_assert_eq!(result.expect("add_if"), model.next_id);
                    let session = model.live.get_mut(&id).expect("live");
                    session.messages.push((model.next_id, Role::User, text));
                    model.next_id += 1;
                }
            }
            Op::Context(who, pick, key, value) => {
                let id = model.id(pick, missing);
                let json = format!(r#"{{"k{key}": {value}}}"#);
                let result = call(&store, who, |c| both!(c, update_context(id, &json)));
                if model.writable(who, id) {
                    result.expect("update_context");
                    let session = model.live.get_mut(&id).expect("live");
                    session.context.insert(format!("k{key}"), value.into());
                } else {
                    not_found(result, id)?;
                }
            }
            Op::Expire(who, pick) => {
                let id = model.id(pick, missing);
                let result = call(&store, who, |c| both!(c, expire_session(id)));
                if model.visible(who, id).is_some() {
                    let session = model.live.get_mut(&id).expect("live");
                    prop_assert_eq!(result.expect("expire"), !session.expired);
                    session.expired = true;
                } else {
                    not_found(result, id)?;
                }
            }
            Op::ExpireOld(zero) => {
                let expected = if zero {
                    // Everything is older than now once a millisecond has passed.
                    std::thread::sleep(Duration::from_millis(2));
                    let mut n = 0;
                    for session in model.live.values_mut().filter(|s| !s.expired) {
                        session.expired = true;
                        n += 1;
                    }
                    n
                } else {
                    0
                };
                let age = if zero {
                    Duration::ZERO
                } else {
                    Duration::from_secs(3600)
                };
                prop_assert_eq!(store.expire_old_sessions(age).expect("expire_old"), expected);
            }
            Op::Purge(zero) => {
                let (age, expected) = if zero {
                    // Every expiry so far is older than now once a millisecond has passed.
                    std::thread::sleep(Duration::from_millis(2));
                    let before = model.live.len();
                    model.live.retain(|_, s| !s.expired);
                    (Duration::ZERO, (before - model.live.len()) as u64)
                } else {
                    (Duration::from_secs(3600), 0)
                };
                prop_assert_eq!(store.purge_expired(age).expect("purge"), expected);
            }
            Op::Delete(who, pick) => {
                let id = model.id(pick, missing);
                let result = call(&store, who, |c| both!(c, delete_session(id)));
                if model.visible(who, id).is_some() {
                    let session = model.live.remove(&id).expect("live");
                    prop_assert_eq!(result.expect("delete"), session.messages.len() as u64);
                } else {
                    not_found(result, id)?;
                }
            }
            Op::Erase(u) => {
                let mut expected = Erased::default();
                model.live.retain(|_, s| {
                    let erase = s.user.as_deref() == Some(USERS[u]);
                    if erase {
                        expected.sessions += 1;
                        expected.messages += s.messages.len() as u64;
                    }
                    !erase
                });
                prop_assert_eq!(store.erase_user(USERS[u]).expect("erase"), expected);
            }
            Op::Pop(who, pick) => {
                let id = model.id(pick, missing);
                let result = call(&store, who, |c| both!(c, pop_last_message(id)));
                if model.writable(who, id) {
                    let popped = model.live.get_mut(&id).expect("live").messages.pop();
                    let got = result.expect("pop").map(|m| (m.id, m.role, m.content));
                    prop_assert_eq!(got, popped);
                } else {
                    not_found(result, id)?;
                }
            }
            Op::Get(who, pick) => {
                let id = model.id(pick, missing);
                let got = call(&store, who, |c| both!(c, get_session(id))).expect("get");
                match model.visible(who, id).filter(|s| !s.expired) {
                    Some(session) => {
                        let got = got.expect("an active session");
                        let messages: Vec<_> = got
                            .messages
                            .iter()
                            .map(|m| (m.id, m.role, m.content.clone()))
                            .collect();
                        prop_assert_eq!(&messages, &session.messages);
                        for (seq, m) in got.messages.iter().enumerate() {
                            prop_assert_eq!(m.seq, seq as u64);
                        }
                        let context: serde_json::Value =
                            serde_json::from_str(got.context.as_ref().expect("context").as_str()).unwrap();
                        prop_assert_eq!(context, serde_json::Value::Object(session.context.clone()));
                    }
                    None => prop_assert!(got.is_none(), "{:?} sees {} it must not", who, id),
                }
            }
            Op::GetMessage(who, message) => {
                let result = call(&store, who, |c| both!(c, get_message(message)));
                let found = model.live.iter().find_map(|(id, s)| {
                    s.messages
                        .iter()
                        .position(|m| m.0 == message)
                        .map(|seq| (*id, seq, s.messages[seq].clone()))
                });
                match found.filter(|(id, _, _)| model.visible(who, *id).is_some()) {
                    Some((id, seq, (_, role, content))) => {
                        let (session, got) = result.expect("get_message").expect("found");
                        prop_assert_eq!(
                            (session, got.seq, got.role, got.content),
                            (id, seq as u64, role, content)
                        );
                    }
                    None => prop_assert!(matches!(result, Ok(None)), "{:?}", result),
                }
            }
            Op::List(u, include_expired) => {
                let mut got = store
                    .for_user(USERS[u])
                    .list_sessions(include_expired)
                    .expect("list");
                got.sort();
                let expected: Vec<Uuid> = model
                    .live
                    .iter()
                    .filter(|(_, s)| s.user.as_deref() == Some(USERS[u]) && (include_expired || !s.expired))
                    .map(|(id, _)| *id)
                    .collect();
                prop_assert_eq!(got, expected);
            }
            Op::Reopen => {
                drop(store);
                store = open(&path, &disk, durability);
            }
        }
    }
    // The whole store against the model.
    let snapshot = store.snapshot().expect("snapshot");
    prop_assert_eq!(snapshot.session_count().unwrap(), model.live.len() as u64);
    for (id, session) in &model.live {
        let info = store.session_info(*id).unwrap().expect("live session");
        prop_assert_eq!(&info.user_id, &session.user);
        prop_assert_eq!(info.is_expired(), session.expired);
        prop_assert_eq!(info.message_count, session.messages.len() as u64);
        let messages: Vec<_> = snapshot
            .messages(*id)
            .unwrap()
            .map(|m| m.map(|m| (m.id, m.role, m.content)).unwrap())
            .collect();
        prop_assert_eq!(&messages, &session.messages);
    }
    let messages: u64 = model.live.values().map(|s| s.messages.len() as u64).sum();
    prop_assert_eq!(snapshot.message_count().unwrap(), messages);
    for info in snapshot.sessions().unwrap() {
        let info = info.unwrap();
        prop_assert_eq!(info.is_expired(), model.live[&info.session_id].expired);
    }
    // The integrity check needs no read transaction open.
    drop(snapshot);
    assert_clean(&store);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: scale(64, cases(100_000) as u32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_operation_matches_the_model(ops in prop::collection::vec(op(), 1..40), relaxed in any::<bool>()) {
        run(ops, relaxed)?;
    }
}
