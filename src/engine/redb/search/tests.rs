use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};
use uuid::Uuid;

use super::build;
use super::segment::{self, Doc};
use super::*;
use crate::model::{Durability, NewMessage};
use crate::rules::search::{check as check_query, Tally};
use crate::SessionStore;

/// A store whose index changes only by the tests' own steps.
fn paused_store(dir: &tempfile::TempDir) -> SessionStore {
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    store.redb().search_indexer().pause();
    store
}

fn problems(store: &SessionStore) -> Vec<String> {
    store.check(&mut |_, _| {}).unwrap().problems
}

/// Entries of each search table: pending, user numbers, stats, segments,
/// terms, tombstones.
fn sizes(store: &SessionStore) -> [u64; 6] {
    store
        .redb()
        .reading(|txn| {
            Ok([
                txn.open_table(tables::SEARCH_PENDING)?.len()?,
                txn.open_table(tables::SEARCH_USER_NUMBERS)?.len()?,
                txn.open_table(tables::SEARCH_STATS)?.len()?,
                txn.open_table(tables::SEARCH_SEGMENTS)?.len()?,
                txn.open_table(tables::SEARCH_TERMS)?.len()?,
                txn.open_table(tables::SEARCH_TOMBSTONES)?.len()?,
            ])
        })
        .unwrap()
}

/// Indexes every pending message now, one segment a user, as one step of
/// the idle work would.
fn index_all(store: &SessionStore) {
    store
        .redb()
        .write(Durability::Relaxed, |tables| {
            build::index_pending(tables, usize::MAX, usize::MAX, 1).map(drop)
        })
        .unwrap();
}

/// A step under load leaves out the users with fewer pending messages
/// than its minimum (one segment for the user with many), and says so;
/// a step of minimum one (the quiet store's) takes them. Each is found
/// throughout, pending or indexed.
#[test]
fn a_step_under_load_indexes_only_users_with_a_batch_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = paused_store(&dir);
    let ana = store.create_session(Some("ana")).unwrap();
    let bob = store.create_session(Some("bob")).unwrap();
    for n in 0..40 {
        store
            .add_message(ana, NewMessage::user(format!("busy {n}")))
            .unwrap();
    }
    for n in 0..3 {
        store
            .add_message(bob, NewMessage::user(format!("busy {n}")))
            .unwrap();
    }
    let step = |min: usize| {
        store
            .redb()
            .write(Durability::Relaxed, move |tables| {
                build::index_pending(tables, 128, usize::MAX, min).map(|i| (i.messages, i.more, i.left_out))
            })
            .unwrap()
    };
    assert_eq!(step(32), (40, false, true));
    assert_eq!(
        (sizes(&store)[0], sizes(&store)[3]),
        (3, 1),
        "bob's 3 left pending"
    );
    assert_eq!(hits(&store, "bob", "busy").len(), 3);
    assert_eq!(hits(&store, "ana", "busy").len(), 40);
    assert_eq!(step(1), (3, false, false));
    assert_eq!((sizes(&store)[0], sizes(&store)[3]), (0, 2));
    assert_eq!(hits(&store, "bob", "busy").len(), 3);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
}

/// Tidies every user's segments until nothing is left to do: one step a
/// commit, as the idle work does.
fn tidy_all(store: &SessionStore) {
    loop {
        let did = store
            .redb()
            .write(Durability::Relaxed, |tables| {
                let mut users = Vec::new();
                for entry in tables.search_stats.table()?.range::<u64>(..)? {
                    users.push(entry?.0.value());
                }
                let mut did = false;
                for user in users {
                    did |= build::tidy(tables, user)?;
                }
                Ok(did)
            })
            .unwrap();
        if !did {
            return;
        }
    }
}

fn hits(store: &SessionStore, user: &str, query: &str) -> Vec<(Uuid, u64)> {
    let page = store.search(user, query, None, 100).unwrap();
    page.hits.iter().map(|h| (h.session_id, h.seq)).collect()
}

/// Every hit of `query` for `user`: (session, seq, score), best first.
fn scored(store: &SessionStore, user: &str, query: &str) -> Vec<(Uuid, u64, f64)> {
    let page = store.search(user, query, None, 1000).unwrap();
    page.hits.iter().map(|h| (h.session_id, h.seq, h.score)).collect()
}

/// An append writes a pending entry, not postings; the idle writer
/// moves it into a segment soon after, with no call to wait for.
#[test]
fn the_idle_writer_indexes_what_appends_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    let anonymous = store.create_session(None).unwrap();
    store
        .add_message(anonymous, NewMessage::user("never searched"))
        .unwrap();
    assert_eq!(sizes(&store), [0; 6]);
    for n in 0..40 {
        store
            .add_message(id, NewMessage::user(format!("word{n} shared shared")))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while sizes(&store)[0] > 0 {
        assert!(
            Instant::now() < deadline,
            "pending entries left: {:?}",
            sizes(&store)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let [_, numbers, stats, segments, terms, tombstones] = sizes(&store);
    assert_eq!((numbers, stats, tombstones), (1, 1, 0));
    // 41 distinct terms, in one segment or a few.
    assert!((1..=40).contains(&segments), "{segments} segments");
    assert!(terms >= 41 && terms <= 41 * segments, "{terms} postings");
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    assert_eq!(hits(&store, "ana", "word7"), [(id, 7)]);
    assert_eq!(hits(&store, "ana", "shared").len(), 40);
}

/// Indexed or pending, a message is unfindable once popped, deleted,
/// purged or erased, in the removal's commit; what is pending and what
/// is indexed score alike; tidying then leaves no removed copy nor
/// tombstone, and an erasure no key of the user in any search table.
#[test]
fn removals_leave_no_entry_whether_indexed_or_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = paused_store(&dir);
    let sessions: Vec<Uuid> = (0..4)
        .map(|_| store.create_session(Some("ana")).unwrap())
        .collect();
    for &id in &sessions {
        store
            .add_messages(
                id,
                vec![
                    NewMessage::user("alpha beta"),
                    NewMessage::assistant("beta gamma gamma"),
                ],
            )
            .unwrap();
    }
    let before = store.search("ana", "gamma beta", None, 100).unwrap();
    index_all(&store);
    assert_eq!(sizes(&store)[0], 0);
    assert_eq!(store.search("ana", "gamma beta", None, 100).unwrap(), before);
    store.pop_last_message(sessions[0]).unwrap();
    store.delete_session(sessions[1]).unwrap();
    store.expire_session(sessions[2]).unwrap();
    store.purge_expired(Duration::ZERO).unwrap();
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    let mut left = hits(&store, "ana", "beta");
    left.sort();
    let mut expected = vec![(sessions[0], 0), (sessions[3], 0), (sessions[3], 1)];
    expected.sort();
    assert_eq!(left, expected);
    assert!(hits(&store, "ana", "gamma")
        .iter()
        .all(|hit| hit.0 == sessions[3]));
    tidy_all(&store);
    assert_eq!(sizes(&store)[5], 0, "no tombstone left");
    assert_eq!(indexed_docs(&store), 3, "removed messages rewritten out");
    assert_eq!(left, {
        let mut again = hits(&store, "ana", "beta");
        again.sort();
        again
    });
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    // Queued again and erased while pending, or indexed: nothing left.
    store.add_message(sessions[0], NewMessage::user("delta")).unwrap();
    store.pop_last_message(sessions[3]).unwrap();
    store.erase_user("ana").unwrap();
    assert_eq!(sizes(&store), [0; 6]);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    // A pending entry is removed instead of a tombstone, in one commit.
    let id = store.create_session(Some("bob")).unwrap();
    store.add_message(id, NewMessage::user("epsilon")).unwrap();
    index_all(&store);
    let (id, user) = (id.as_u128(), "bob");
    store
        .redb()
        .write(Durability::Relaxed, move |tables| {
            queue(tables, Some(user), id, 1)?;
            forget(tables, Some(user), id, 1, "epsilon")
        })
        .unwrap();
    assert_eq!(sizes(&store), [0, 1, 1, 1, 1, 0]);
}

/// A seq popped, then appended again, is found once: with the old copy
/// indexed and the new one pending, both indexed, and after tidying.
#[test]
fn a_seq_popped_then_appended_again_is_found_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = paused_store(&dir);
    let id = store.create_session(Some("ana")).unwrap();
    store.add_message(id, NewMessage::user("keep alpha")).unwrap();
    store.add_message(id, NewMessage::user("alpha first")).unwrap();
    index_all(&store);
    store.pop_last_message(id).unwrap();
    assert_eq!(hits(&store, "ana", "first"), []);
    store.add_message(id, NewMessage::user("alpha again")).unwrap();
    let once = vec![(id, 0), (id, 1)];
    let sorted = |mut found: Vec<(Uuid, u64)>| {
        found.sort();
        found
    };
    assert_eq!(sorted(hits(&store, "ana", "alpha")), once);
    index_all(&store);
    assert_eq!(sorted(hits(&store, "ana", "alpha")), once);
    assert_eq!(hits(&store, "ana", "first"), []);
    assert_eq!(hits(&store, "ana", "again"), [(id, 1)]);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    // Popped again: the tombstone now covers the second copy too.
    store.pop_last_message(id).unwrap();
    assert_eq!(hits(&store, "ana", "alpha"), [(id, 0)]);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    tidy_all(&store);
    assert_eq!(hits(&store, "ana", "alpha"), [(id, 0)]);
    assert_eq!(sizes(&store)[5], 0);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
}

/// Merges keep every search's results (hits, scores, order) and leave
/// fewer segments.
#[test]
fn merges_keep_every_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = paused_store(&dir);
    let sessions: Vec<Uuid> = (0..3)
        .map(|_| store.create_session(Some("ana")).unwrap())
        .collect();
    let words = ["red", "green", "blue", "cyan", "gold"];
    for round in 0..20usize {
        for (n, &id) in sessions.iter().enumerate() {
            let text = format!(
                "{} {} {}",
                words[round % 5],
                words[(round + n) % 5],
                words[(round * 3 + n) % 5]
            );
            store.add_message(id, NewMessage::user(text)).unwrap();
        }
        index_all(&store);
        if round == 7 {
            store.pop_last_message(sessions[1]).unwrap();
        }
    }
    let queries = ["red", "green blue", "cyan gold red", "blue"];
    let before: Vec<_> = queries.iter().map(|q| scored(&store, "ana", q)).collect();
    let segments = sizes(&store)[3];
    tidy_all(&store);
    let after: Vec<_> = queries.iter().map(|q| scored(&store, "ana", q)).collect();
    assert_eq!(before, after);
    assert!(sizes(&store)[3] < segments, "{} of {segments}", sizes(&store)[3]);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
}

/// Bytes of a header and a postings value written directly.
fn segment_entries(user: u64, number: u64, docs: &[Doc], term: &str) -> (Vec<u8>, Vec<u8>) {
    let header = segment::encode_header(user, number, docs);
    let places: Vec<(u32, u32)> = (0..docs.len() as u32).map(|place| (place, 1)).collect();
    (header, segment::encode_postings(user, number, term, &places))
}

/// `check()` finds an index that differs from the messages: a segment's
/// message that is not there, a message both pending and indexed, a
/// pending entry of another user's message, wrong statistics, a damaged
/// segment header, damaged postings.
#[test]
fn check_reports_an_index_that_differs_from_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = SessionStore::open(&path).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    store.add_message(id, NewMessage::user("indexed words")).unwrap();
    store.add_message(id, NewMessage::user("more words")).unwrap();
    index_all(&store);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    drop(store);
    let key = id.as_u128();
    let cases = [
        ("a segment's message that is not there", "search_segments differs"),
        ("a message both pending and indexed", "search_segments differs"),
        ("a pending entry of another user's message", "search_pending"),
        ("wrong statistics", "search_stats"),
        ("a damaged segment header", "search_segments: "),
        ("damaged postings", "search_terms: "),
    ];
    for (n, (damage, reported)) in cases.into_iter().enumerate() {
        let copy = dir.path().join(format!("damaged{n}.redb"));
        std::fs::copy(&path, &copy).unwrap();
        let db = Database::open(&copy).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut segments = txn.open_table(tables::SEARCH_SEGMENTS).unwrap();
            let mut terms = txn.open_table(tables::SEARCH_TERMS).unwrap();
            let mut pending = txn.open_table(tables::SEARCH_PENDING).unwrap();
            let mut stats = txn.open_table(tables::SEARCH_STATS).unwrap();
            match n {
                0 => {
                    let ghost = [Doc {
                        session: key,
                        seq: 9,
                        length: 1,
                    }];
                    let (header, postings) = segment_entries(0, 7, &ghost, "ghost");
                    segments.insert((0, 7), header.as_slice()).unwrap();
                    terms.insert((0, 7, "ghost"), postings.as_slice()).unwrap();
                }
                1 => drop(pending.insert(("ana", key, 0), ()).unwrap()),
                2 => drop(pending.insert(("bob", key, 1), ()).unwrap()),
                3 => drop(stats.insert(0, (2, 5, 1)).unwrap()),
                4 => {
                    let mut header = segments.get((0, 0)).unwrap().unwrap().value().to_vec();
                    header[1] ^= 4;
                    segments.insert((0, 0), header.as_slice()).unwrap();
                }
                _ => {
                    let postings = terms.get((0, 0, "words")).unwrap().unwrap().value().to_vec();
                    terms
                        .insert((0, 0, "words"), &postings[..postings.len() - 1])
                        .unwrap();
                }
            }
        }
        txn.commit().unwrap();
        drop(db);
        let store = SessionStore::open(&copy).unwrap();
        store.redb().search_indexer().pause();
        let found = problems(&store);
        assert!(!found.is_empty(), "{damage}: not reported");
        assert!(found[0].starts_with(reported), "{damage}: {found:?}");
        if n >= 4 {
            // A search refuses the damaged segment rather than guess.
            let refused = store.search("ana", "words", None, 10);
            assert!(
                matches!(refused, Err(crate::Error::CorruptRecord { .. })),
                "{damage}: {refused:?}"
            );
        }
    }
}

/// What a crash leaves (the files copied while the store is open, the
/// journal holding appends, indexing, removals and tidying) opens with an
/// exact index.
#[test]
fn a_crash_leaves_each_message_indexed_or_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = paused_store(&dir);
    let id = store.create_session(Some("ana")).unwrap();
    for n in 0..30 {
        store
            .add_message(id, NewMessage::user(format!("term{n} common")))
            .unwrap();
        if n % 3 == 0 {
            index_all(&store);
        }
        if n == 10 {
            store.pop_last_message(id).unwrap();
        }
        if n == 20 {
            tidy_all(&store);
        }
    }
    let (_crashed, reopened) = store.reopened_after_a_crash();
    assert!(problems(&reopened).is_empty(), "{:?}", problems(&reopened));
    assert_eq!(hits(&reopened, "ana", "common").len(), 29);
    assert!(hits(&reopened, "ana", "term10").is_empty());
    assert_eq!(hits(&reopened, "ana", "term29"), [(id, 28)]);
    assert_eq!(
        scored(&reopened, "ana", "common term5"),
        scored(&store, "ana", "common term5")
    );
}

/// Writes `store`'s file at `path` back to a file with the first index
/// (`v1`: its postings and statistics tables, mark 1) or with none
/// (written before search: no index table, no mark).
fn downgrade(path: &std::path::Path, v1: bool) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(tables::SEARCH_USER_NUMBERS).unwrap();
    txn.delete_table(tables::SEARCH_SEGMENTS).unwrap();
    txn.delete_table(tables::SEARCH_TERMS).unwrap();
    txn.delete_table(tables::SEARCH_TOMBSTONES).unwrap();
    txn.delete_table(tables::SEARCH_STATS).unwrap();
    let mut meta = txn.open_table(tables::META).unwrap();
    meta.insert(tables::META_FORMAT_VERSION, 2u32.to_le_bytes().as_slice())
        .unwrap();
    if v1 {
        // The first index held the first message, one entry a term.
        let session = txn
            .open_table(tables::SEARCH_PENDING)
            .unwrap()
            .first()
            .unwrap()
            .map(|(key, _)| key.value().1)
            .unwrap();
        let mut pending = txn.open_table(tables::SEARCH_PENDING).unwrap();
        pending.remove(("ana", session, 0)).unwrap();
        let mut postings = txn.open_table(tables::SEARCH_POSTINGS_V1).unwrap();
        for term in ["written", "before", "the", "index"] {
            postings.insert(("ana", term, session, 0), (1, 4)).unwrap();
        }
        txn.open_table(tables::SEARCH_USERS_V1)
            .unwrap()
            .insert("ana", (1, 4))
            .unwrap();
        meta.insert(tables::META_SEARCH_INDEX, [1u8].as_slice()).unwrap();
    } else {
        txn.delete_table(tables::SEARCH_PENDING).unwrap();
        meta.remove(tables::META_SEARCH_INDEX).unwrap();
    }
    drop(meta);
    txn.commit().unwrap();
}

/// A file written before search (no index tables, no mark), or with the
/// first index (one entry a term and message, mark 1), gets every message
/// of a user's session queued at its open, once, the old tables dropped
/// and the format version raised.
#[test]
fn a_store_written_before_search_or_with_the_first_index_is_upgraded_at_its_open() {
    for v1 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = SessionStore::open(&path).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        store
            .add_message(id, NewMessage::user("written before the index"))
            .unwrap();
        store.add_message(id, NewMessage::user("and after")).unwrap();
        let anonymous = store.create_session(None).unwrap();
        store.add_message(anonymous, NewMessage::user("before")).unwrap();
        drop(store);
        downgrade(&path, v1);
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(hits(&store, "ana", "before"), [(id, 0)], "v1: {v1}");
        assert_eq!(hits(&store, "ana", "after"), [(id, 1)], "v1: {v1}");
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
        index_all(&store);
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_owned()).collect();
        assert!(
            !names
                .iter()
                .any(|n| n == "search_postings" || n == "search_users"),
            "{names:?}"
        );
        let mark = txn.open_table(tables::META).unwrap();
        assert_eq!(mark.get(tables::META_SEARCH_INDEX).unwrap().unwrap().value(), [2]);
        // A build of the first index (format 2) now refuses the file.
        assert_eq!(
            mark.get(tables::META_FORMAT_VERSION).unwrap().unwrap().value(),
            3u32.to_le_bytes()
        );
        drop((mark, txn, db));
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(hits(&store, "ana", "index"), [(id, 0)]);
        assert_eq!(sizes(&store)[0], 0, "queued once");
        assert!(problems(&store).is_empty(), "{:?}", problems(&store));
    }
}

/// How many messages the segments hold, dead copies included.
fn indexed_docs(store: &SessionStore) -> usize {
    store
        .redb()
        .reading(|txn| {
            let mut docs = 0;
            for entry in txn.open_table(tables::SEARCH_SEGMENTS)?.range::<(u64, u64)>(..)? {
                let (key, value) = entry?;
                let (user, number) = key.value();
                docs += segment::decode_header(user, number, value.value())?.len();
            }
            Ok(docs)
        })
        .unwrap()
}

/// Compaction leaves every message indexed, and no removed copy nor
/// tombstone.
#[test]
fn compaction_indexes_and_tidies_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = paused_store(&dir);
    let id = store.create_session(Some("ana")).unwrap();
    store.add_message(id, NewMessage::user("one two")).unwrap();
    store.add_message(id, NewMessage::user("two three")).unwrap();
    index_all(&store);
    store.pop_last_message(id).unwrap();
    store.add_message(id, NewMessage::user("four")).unwrap();
    store.compact(&mut |_, _| {}).unwrap();
    let [pending, _, _, _, _, tombstones] = sizes(&store);
    assert_eq!((pending, tombstones), (0, 0));
    assert_eq!(indexed_docs(&store), 2, "the popped message rewritten out");
    assert_eq!(hits(&store, "ana", "two"), [(id, 0)]);
    assert!(problems(&store).is_empty(), "{:?}", problems(&store));
}

/// One operation of the model test.
#[derive(Clone, Debug)]
enum Op {
    /// Appends words (indexes into [`WORDS`]) to session `session` of user
    /// `user`, creating it if it is not there.
    Append {
        user: usize,
        session: usize,
        words: Vec<usize>,
    },
    Pop {
        user: usize,
        session: usize,
    },
    Delete {
        user: usize,
        session: usize,
    },
    Erase {
        user: usize,
    },
    /// One indexing step of at most that many messages.
    Index(usize),
    /// One tidying step of every user.
    Tidy,
}

const WORDS: [&str; 6] = ["ash", "birch", "cedar", "elm", "fir", "oak"];
const USERS: [&str; 2] = ["ana", "bob"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..3usize, proptest::collection::vec(0..6usize, 0..5))
            .prop_map(|(user, session, words)| Op::Append { user, session, words }),
        2 => (0..2usize, 0..3usize).prop_map(|(user, session)| Op::Pop { user, session }),
        1 => (0..2usize, 0..3usize).prop_map(|(user, session)| Op::Delete { user, session }),
        1 => (0..2usize).prop_map(|user| Op::Erase { user }),
        3 => (1..6usize).prop_map(Op::Index),
        2 => Just(Op::Tidy),
    ]
}

/// The hits BM25 gives over `messages`, (session, seq) -> content, every
/// message read whole: (session, seq, score), best first.
fn oracle(messages: &BTreeMap<(Uuid, u64), String>, query: &str) -> Vec<(Uuid, u64, f64)> {
    let terms = check_query(query, 1000).unwrap();
    let mut tally = Tally::new(&terms);
    for ((session, seq), content) in messages {
        tally.message(session.as_u128(), *seq, &Terms::of(content));
    }
    tally
        .ranked(None)
        .into_iter()
        .map(|hit| (Uuid::from_u128(hit.session), hit.seq, hit.score))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The engine's search equals BM25 over every stored message, read
    /// whole, after any appends, pops, deletions and erasures, with the
    /// index's steps at any point; `check()` finds
    /// the index exact throughout.
    #[test]
    fn search_equals_bm25_over_the_messages(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let store = paused_store(&dir);
        // Per user and session slot: the session, its messages' contents.
        let mut sessions: BTreeMap<(usize, usize), (Uuid, Vec<String>)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append { user, session, words } => {
                    let text: Vec<&str> = words.iter().map(|&w| WORDS[w]).collect();
                    let text = format!("{}.", text.join(" "));
                    let entry = sessions.entry((user, session)).or_insert_with(|| {
                        (store.create_session(Some(USERS[user])).unwrap(), Vec::new())
                    });
                    store.add_message(entry.0, NewMessage::user(text.clone())).unwrap();
                    entry.1.push(text);
                }
                Op::Pop { user, session } => {
                    if let Some((id, messages)) = sessions.get_mut(&(user, session)) {
                        store.pop_last_message(*id).unwrap();
                        messages.pop();
                    }
                }
                Op::Delete { user, session } => {
                    if let Some((id, _)) = sessions.remove(&(user, session)) {
                        store.delete_session(id).unwrap();
                    }
                }
                Op::Erase { user } => {
                    store.erase_user(USERS[user]).unwrap();
                    sessions.retain(|(owner, _), _| *owner != user);
                }
                Op::Index(limit) => {
                    store
                        .redb()
                        .write(Durability::Relaxed, move |tables| {
                            build::index_pending(tables, limit, usize::MAX, 1 + limit % 3).map(drop)
                        })
                        .unwrap();
                }
                Op::Tidy => {
                    store
                        .redb()
                        .write(Durability::Relaxed, |tables| {
                            for user in 0..4 {
                                build::tidy(tables, user)?;
                            }
                            Ok(())
                        })
                        .unwrap();
                }
            }
            for (user, name) in USERS.iter().enumerate() {
                let messages: BTreeMap<(Uuid, u64), String> = sessions
                    .iter()
                    .filter(|((owner, _), _)| *owner == user)
                    .flat_map(|(_, (id, messages))| {
                        messages.iter().enumerate().map(|(seq, m)| ((*id, seq as u64), m.clone()))
                    })
                    .collect();
                for query in ["ash", "birch oak", "cedar elm fir"] {
                    prop_assert_eq!(scored(&store, name, query), oracle(&messages, query));
                }
            }
        }
        let found = problems(&store);
        prop_assert!(found.is_empty(), "{:?}", found);
    }
}
