//! Many processes, one PostgreSQL database (issue 18, items 3 and 5).
//!
//! - The fleet: 4 processes x 8 threads append to the same sessions, some
//!   plainly, some with `add_message_if` (conflicts expected), some with
//!   idempotency keys that every process sends (each key appends once).
//!   Then: seqs dense, every acknowledged message present, ids unique.
//! - The server killed: the same fleet, appending with a key of its own
//!   for each message and retrying on errors, while the test SIGKILLs the
//!   server (postmaster and backends) and starts it again. Then: every
//!   acknowledged message present once, seqs dense.
//!
//! The fleet runs on the server of `SESSIONSTORE_TEST_POSTGRES_URL` (set by
//! `.ci/postgres`); the kill test on a server of its own (`initdb`). Bounded
//! here; `SESSIONSTORE_LONG=1` runs them longer (docs/reliability.md).
#![cfg(feature = "postgres")]

mod common;
#[path = "common/pg_cluster.rs"]
mod pg_cluster;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{scale, Rng};
use sessionstore::{Error, NewMessage, SessionStore, Uuid};

const PROCESSES: usize = 4;
const THREADS: u64 = 8;
const SESSIONS: usize = 16;
const CHILD_ENV: &str = "SESSIONSTORE_FLEET_CHILD";

/// What a child does with each append.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Plain appends, `add_message_if` and keys shared by every process.
    Mixed,
    /// A key of its own for each message, retried until acknowledged.
    RetryEach,
}

/// One child: appends from THREADS threads, printing each acknowledgement.
#[test]
#[ignore = "child process of the fleet tests; runs only with SESSIONSTORE_FLEET_CHILD set"]
fn fleet_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("the parent sets {name}"));
    let sessions: Vec<Uuid> = var("FLEET_SESSIONS")
        .split(',')
        .map(|s| s.parse().expect("a session id"))
        .collect();
    let process: u64 = var("FLEET_PROCESS").parse().expect("a number");
    let appends: u64 = var("FLEET_APPENDS").parse().expect("a number");
    let mode = match var("FLEET_MODE").as_str() {
        "mixed" => Mode::Mixed,
        _ => Mode::RetryEach,
    };
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").expect("the parent reads stdout");
        out.flush().expect("the parent reads stdout");
    };
    let store = open_retrying(&url);
    say("READY".into());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (store, sessions, say) = (&store, &sessions, &say);
            scope.spawn(move || {
                let mut rng = Rng::new(process * 1_000 + thread);
                for i in 0..appends {
                    let session = sessions[rng.below(sessions.len() as u64) as usize];
                    let tag = format!("p{process}-t{thread}-{i}");
                    match mode {
                        Mode::RetryEach => {
                            let ids = retry(say, || {
                                store.add_messages_idempotent(
                                    session,
                                    &tag,
                                    None,
                                    vec![NewMessage::user(tag.clone())],
                                )
                            });
                            say(format!("A {session} {} {tag}", ids[0]));
                        }
                        Mode::Mixed => match i % 4 {
                            0 | 1 => {
                                let id = store
                                    .add_message(session, NewMessage::user(tag.clone()))
                                    .expect("append");
                                say(format!("A {session} {id} {tag}"));
                            }
                            2 => {
                                let next = store
                                    .session_info(session)
                                    .expect("read")
                                    .expect("active")
                                    .message_count;
                                match store.add_message_if(session, next, NewMessage::user(tag.clone())) {
                                    Ok(id) => say(format!("A {session} {id} {tag}")),
                                    Err(Error::SeqConflict { actual, .. }) => {
                                        assert!(
                                            actual > next,
                                            "a conflict reports a later seq: {actual} after {next}"
                                        );
                                        say(format!("C {session}"));
                                    }
                                    Err(e) => panic!("add_message_if: {e}"),
                                }
                            }
                            _ => {
                                // Every process and thread sends the same keys.
                                let key = format!("shared-{}", i / 4 % 24);
                                let ids = store
                                    .add_messages_idempotent(
                                        session,
                                        &key,
                                        None,
                                        vec![NewMessage::user(format!("{key}@{session}"))],
                                    )
                                    .expect("idempotent append");
                                say(format!("I {session} {key} {}", ids[0]));
                            }
                        },
                    }
                }
            });
        }
    });
    say("DONE".into());
}

/// `call` until it succeeds, printing each error (the server may be down).
fn retry<T>(say: &impl Fn(String), mut call: impl FnMut() -> sessionstore::Result<T>) -> T {
    for _ in 0..600 {
        match call() {
            Ok(value) => return value,
            Err(e) => {
                say(format!("E {}", e.to_string().replace('\n', " ")));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    panic!("no success in 60 s of retries");
}

fn open_retrying(url: &str) -> SessionStore {
    retry(&|_| {}, || SessionStore::open(url))
}

/// What the children printed.
#[derive(Default)]
struct Seen {
    /// session -> (id, tag) of each acknowledged plain or keyed append.
    acked: HashMap<Uuid, Vec<(u64, String)>>,
    /// (session, shared key) -> the ids each answer gave.
    shared: HashMap<(Uuid, String), HashSet<u64>>,
    conflicts: usize,
    errors: Vec<String>,
}

impl Seen {
    fn read(&mut self, line: &str) {
        let mut words = line.split(' ');
        match words.next() {
            Some("A") => {
                let session = words.next().unwrap().parse().unwrap();
                let id = words.next().unwrap().parse().unwrap();
                let tag = words.next().unwrap().to_owned();
                self.acked.entry(session).or_default().push((id, tag));
            }
            Some("I") => {
                let session = words.next().unwrap().parse().unwrap();
                let key = words.next().unwrap().to_owned();
                let id = words.next().unwrap().parse().unwrap();
                self.shared.entry((session, key)).or_default().insert(id);
            }
            Some("C") => self.conflicts += 1,
            Some("E") => self.errors.push(line[2..].to_owned()),
            _ => {}
        }
    }
}

/// Runs the fleet against `url`; `during` runs in the parent once every
/// child is ready (the kill test kills the server there).
fn run_fleet(url: &str, sessions: &[Uuid], mode: Mode, appends: u64, during: impl FnOnce()) -> Seen {
    let list: Vec<String> = sessions.iter().map(Uuid::to_string).collect();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|process| {
            Command::new(std::env::current_exe().expect("the test binary"))
                .args([
                    "fleet_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, url)
                .env("FLEET_SESSIONS", list.join(","))
                .env("FLEET_PROCESS", process.to_string())
                .env("FLEET_APPENDS", appends.to_string())
                .env("FLEET_MODE", if mode == Mode::Mixed { "mixed" } else { "retry" })
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start a child")
        })
        .collect();
    let readers: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let stdout = BufReader::new(child.stdout.take().expect("piped"));
            std::thread::spawn(move || {
                stdout
                    .lines()
                    .map(|l| l.expect("a line"))
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    // The children open the store within a second or two; the kill lands
    // while they append.
    std::thread::sleep(Duration::from_millis(1_500));
    during();
    let mut seen = Seen::default();
    for (child, reader) in children.iter_mut().zip(readers) {
        let lines = reader.join().expect("a reader");
        assert!(child.wait().expect("reap a child").success(), "a child failed");
        assert!(
            lines.iter().any(|l| l.ends_with("DONE")),
            "a child did not finish: {:?}",
            lines.last()
        );
        for line in &lines {
            // The harness prints "test fleet_child ... " before the first line.
            let line = line.split_once("... ").map_or(line.as_str(), |(_, rest)| rest);
            seen.read(line);
        }
    }
    seen
}

/// Every session's seqs dense and its ids unique; every acknowledged
/// append present, once, with its text. Returns the messages counted.
fn check_fleet(store: &SessionStore, sessions: &[Uuid], seen: &Seen) -> usize {
    let mut all_ids = HashSet::new();
    let mut total = 0;
    for &session in sessions {
        let stored = store.get_session(session).expect("read").expect("active");
        assert_eq!(stored.messages.len() as u64, stored.message_count);
        let mut by_id = BTreeMap::new();
        for (seq, message) in stored.messages.iter().enumerate() {
            assert_eq!(message.seq, seq as u64, "seqs dense in {session}");
            assert!(all_ids.insert(message.id), "id {} given twice", message.id);
            by_id.insert(message.id, message.content.as_str());
        }
        let mut contents: HashMap<&str, usize> = HashMap::new();
        for message in &stored.messages {
            *contents.entry(message.content.as_str()).or_default() += 1;
        }
        for (id, tag) in seen.acked.get(&session).into_iter().flatten() {
            assert_eq!(
                by_id.get(id),
                Some(&tag.as_str()),
                "acknowledged {tag} ({id}) in {session}"
            );
            assert_eq!(contents[tag.as_str()], 1, "{tag} appended once");
        }
        total += stored.messages.len();
    }
    for ((session, key), ids) in &seen.shared {
        assert_eq!(
            ids.len(),
            1,
            "every answer for key {key} of {session} gives the same id: {ids:?}"
        );
        let stored = store.get_session(*session).expect("read").expect("active");
        let text = format!("{key}@{session}");
        assert_eq!(
            stored.messages.iter().filter(|m| m.content == text).count(),
            1,
            "key {key} appended once in {session}"
        );
    }
    total
}

fn new_sessions(store: &SessionStore) -> Vec<Uuid> {
    (0..SESSIONS)
        .map(|_| store.create_session(Some("fleet")).expect("create"))
        .collect()
}

#[test]
fn a_fleet_of_processes_keeps_seqs_dense_and_every_guarantee() {
    let Some(scratch) = common::Scratch::on_postgres() else {
        return;
    };
    let url = scratch.location().to_str().expect("a URL").to_owned();
    let store = SessionStore::open(&url).expect("open");
    let sessions = new_sessions(&store);
    let seen = run_fleet(&url, &sessions, Mode::Mixed, scale(40, 1_000), || {});
    let total = check_fleet(&store, &sessions, &seen);
    let acked: usize = seen.acked.values().map(Vec::len).sum();
    assert!(total >= acked, "{total} stored, {acked} acknowledged");
    assert!(
        seen.conflicts > 0,
        "add_message_if met no conflict: the fleet did not race"
    );
    eprintln!(
        "fleet: {total} messages, {acked} acknowledged plain, {} conflicts, {} shared keys",
        seen.conflicts,
        seen.shared.len()
    );
}

#[test]
fn a_killed_server_loses_no_acknowledged_append() {
    let Some(mut cluster) = pg_cluster::PgCluster::start() else {
        assert!(
            std::env::var("SESSIONSTORE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "SESSIONSTORE_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries"
        );
        return;
    };
    let url = cluster.url();
    let sessions = {
        let store = SessionStore::open(&url).expect("open");
        new_sessions(&store)
    };
    let kills = scale(1, 5);
    let seen = run_fleet(&url, &sessions, Mode::RetryEach, scale(60, 600), || {
        for _ in 0..kills {
            cluster.kill();
            std::thread::sleep(Duration::from_millis(300));
            cluster.restart();
            std::thread::sleep(Duration::from_millis(700));
        }
    });
    let store = SessionStore::open(&url).expect("open after the kills");
    let total = check_fleet(&store, &sessions, &seen);
    assert!(
        !seen.errors.is_empty(),
        "the kill cut no request: it landed after the fleet ended"
    );
    eprintln!(
        "server killed {kills} time(s): {total} messages, all acknowledged present; {} errors retried, e.g. {:?}",
        seen.errors.len(),
        seen.errors.first()
    );
}
