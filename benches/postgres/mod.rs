//! The PostgreSQL engine beside redb and SQLite (issue 18): the report's
//! workloads where they apply, on a cluster of the bench's own
//! (`initdb` in /tmp, durable: fsync and synchronous commits on, the
//! defaults), the fleet line: 4 processes x 8 threads of durable
//! appends to one database, and search over a user's 100,000 messages.
//!
//! Each value lands in the PostgreSQL column of the line of the same name;
//! the fleet line is a note. Skipped, saying so, when this machine has no
//! PostgreSQL server binaries.

// The bench starts and stops its cluster; it never restarts it.
#[allow(dead_code)]
#[path = "../../tests/common/pg_cluster.rs"]
mod pg_cluster;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessionstore::{Durability, SessionStore, Timestamp, Uuid};

use crate::common::{conversation, imported_messages, imported_session, ss_session, BigStore, TARGET_USER};
use crate::{median_micros, percentile, throughput, Config};

/// The PostgreSQL figure of each workload measured, by the report's names.
pub type Figures = Vec<(&'static str, f64)>;

pub fn run(config: Config, notes: &mut Vec<String>) -> Figures {
    let Some(cluster) = pg_cluster::PgCluster::start() else {
        notes.push("\nPostgreSQL: SKIPPED, no server binaries on this machine.".into());
        return Vec::new();
    };
    let url = cluster.url();
    let mut figures = Vec::new();
    let at = Instant::now();
    figures.extend(reads(config, &url));
    figures.extend(appends(config, &url, notes));
    figures.extend(big_store(config, &url, notes));
    figures.extend(bytes(config, &url));
    figures.extend(search(config, &url, notes));
    notes.push(fleet(config, &url));
    notes.push(format!(
        "\nPostgreSQL: {}, a cluster of the bench's own on loopback TCP (fsync and synchronous_commit on), its stages {:.0} s.",
        server_version(&url),
        at.elapsed().as_secs_f64()
    ));
    figures
}

/// A new database on the cluster: its name and its URL.
fn fresh_database(url: &str) -> (String, String) {
    let name = format!("bench_{}", Uuid::new_v4().simple());
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create database");
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    let database_url = format!("{base}/{name}");
    (name, database_url)
}

/// A store in a database of its own on the cluster.
fn fresh_store(url: &str) -> SessionStore {
    SessionStore::open(fresh_database(url).1).expect("open the PostgreSQL store")
}

fn server_version(url: &str) -> String {
    postgres::Client::connect(url, postgres::NoTls)
        .and_then(|mut c| c.query_one("SHOW server_version", &[]))
        .map(|row| format!("PostgreSQL {}", row.get::<_, String>(0)))
        .unwrap_or_else(|_| "PostgreSQL".into())
}

fn reads(config: Config, url: &str) -> Figures {
    let store = fresh_store(url);
    let mut figures: Figures = [
        ("get_session_10", 10, config.pick(300, 3000)),
        ("get_session_100", 100, config.pick(200, 2000)),
        ("get_session_1000", 1000, config.pick(30, 300)),
    ]
    .into_iter()
    .map(|(workload, n, iterations)| {
        let id = ss_session(&store, n, n);
        let time = median_micros(iterations, || {
            assert_eq!(
                store
                    .get_session(id)
                    .expect("read")
                    .expect("active")
                    .messages
                    .len() as u64,
                n
            );
        });
        (workload, time)
    })
    .collect();
    let id = ss_session(&store, 1, 10_000);
    let time = median_micros(config.pick(500, 5000), || {
        assert_eq!(
            store
                .get_recent_messages(id, 10)
                .expect("read")
                .expect("active")
                .len(),
            10
        );
    });
    figures.push(("recent_10_of_10000", time));
    figures
}

fn appends(config: Config, url: &str, notes: &mut Vec<String>) -> Figures {
    let store = fresh_store(url);
    let id = store.create_session(Some("writer")).expect("create");
    let turns = conversation(3, 64);
    let iterations = config.pick(500, 3000);
    let mut times: Vec<Duration> = (0..iterations + iterations / 10)
        .map(|i| {
            let at = Instant::now();
            store
                .add_message(id, turns[i % turns.len()].to_new_message())
                .expect("add");
            at.elapsed()
        })
        .skip(iterations / 10)
        .collect();
    times.sort_unstable();
    notes.push(format!(
        "\nPostgreSQL add_message_1_thread (durable): p99 {:.0} µs.",
        percentile(&times, 0.99)
    ));
    let time = config.pick(Duration::from_millis(1500), Duration::from_secs(6));
    let threads = |n| {
        throughput(
            n,
            time,
            &store,
            |store, _| store.create_session(Some("writer")).expect("create").to_string(),
            |store, id, turn| {
                let id = Uuid::parse_str(id).expect("uuid");
                store.add_message(id, turn.to_new_message()).expect("add");
            },
        )
    };
    vec![
        ("add_message_1_thread", percentile(&times, 0.5)),
        ("add_message_8_threads", threads(8)),
        ("add_message_32_threads", threads(32)),
    ]
}

fn big_store(config: Config, url: &str, notes: &mut Vec<String>) -> Figures {
    let shape = BigStore {
        total: config.pick(20_000, 1_000_000),
        of_target: 1000,
    };
    let store = fresh_store(url);
    let at = Instant::now();
    shape.load_sessionstore(&store);
    notes.push(format!(
        "\nPostgreSQL big store: {} sessions loaded through the importer in {:.1} s.",
        shape.total,
        at.elapsed().as_secs_f64()
    ));
    let iterations = config.pick(50, 300);
    let list = median_micros(iterations, || {
        assert_eq!(
            store.list_user_sessions(TARGET_USER, false).expect("list").len(),
            1000
        );
    });
    let recent = median_micros(iterations, || {
        assert_eq!(store.recent_sessions(TARGET_USER, 10).expect("recent").len(), 10);
    });
    let at = Instant::now();
    let expired = store
        .expire_old_sessions(Duration::from_secs(24 * 3600))
        .expect("expire");
    assert_eq!(expired, shape.total / 100);
    vec![
        ("list_user_sessions", list),
        ("recent_sessions", recent),
        ("expire_1pct_of_1m", at.elapsed().as_secs_f64() * 1e3),
    ]
}

/// The database's size (`pg_database_size`: its tables, indexes, TOAST
/// and free space, as on disk) before and after sessions, then messages.
fn bytes(config: Config, url: &str) -> Figures {
    let sessions = config.pick(2_000, 200_000);
    let with_messages: u64 = config.pick(100, 2_500);
    let per_session = 20;
    let (database, database_url) = fresh_database(url);
    let store = SessionStore::open(database_url).expect("open the PostgreSQL store");
    let relaxed = store.with_durability(Durability::Relaxed);
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let mut size = || -> f64 {
        client.batch_execute("CHECKPOINT").expect("checkpoint");
        let row = client
            .query_one("SELECT pg_database_size($1)", &[&database])
            .expect("database size");
        row.get::<_, i64>(0) as f64
    };
    let empty = size();
    let ids: Vec<Uuid> = (0..sessions)
        .map(|_| relaxed.create_session(Some("sizer")).expect("create"))
        .collect();
    let with_sessions = size();
    for (n, id) in ids.iter().take(with_messages as usize).enumerate() {
        for turn in conversation(n as u64, per_session) {
            relaxed.add_message(*id, turn.to_new_message()).expect("add");
        }
    }
    let full = size();
    vec![
        (
            "bytes_per_message",
            (full - with_sessions) / (with_messages * per_session) as f64,
        ),
        ("bytes_per_session", (with_sessions - empty) / sessions as f64),
    ]
}

/// Search (issue 21), in the shape of the features stage's lines: one
/// user's 100 sessions (20 in a quick run) of the same 1,000 turns, loaded
/// through the importer; p50 and p99 over queries of one and two words
/// the turns hold, a page of 10 hits.
fn search(config: Config, url: &str, notes: &mut Vec<String>) -> Figures {
    let sessions = config.pick(20, 100);
    let turns = conversation(2121, 1_000);
    let store = fresh_store(url);
    let mut importer = store.importer();
    let mut next_id = 1;
    for _ in 0..sessions {
        let id = Uuid::new_v4();
        let at = Timestamp::now();
        importer
            .add_session(imported_session(id, "searcher".into(), &at))
            .expect("add session");
        let messages = imported_messages(&turns, &mut next_id, &at);
        importer.add_messages(id, messages).expect("add messages");
    }
    importer.finish().expect("finish");
    // Words of four letters or more of the first 200 turns.
    let words: Vec<&str> = turns[..200]
        .iter()
        .flat_map(|turn| turn.content.split(|c: char| !c.is_alphanumeric()))
        .filter(|word| word.len() > 3)
        .collect();
    let mut times: Vec<Duration> = (0..config.pick(200, 1000))
        .map(|i| {
            let first = words[(i * 7919) % words.len()];
            let query = match i % 2 {
                0 => first.to_owned(),
                _ => format!("{first} {}", words[(i * 104_729 + 13) % words.len()]),
            };
            let at = Instant::now();
            store.search("searcher", &query, None, 10).expect("search");
            at.elapsed()
        })
        .collect();
    times.sort_unstable();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let messages = sessions * 1_000;
    notes.push(format!(
        "\nPostgreSQL search over a user of {messages} messages (queries of one and two words, a page of 10): p50 {p50:.0} µs, p99 {p99:.0} µs."
    ));
    vec![
        (
            config.pick("search_20k_messages_p50", "search_100k_messages_p50"),
            p50,
        ),
        (
            config.pick("search_20k_messages_p99", "search_100k_messages_p99"),
            p99,
        ),
    ]
}

/// The fleet: the bench binary run as PROCESSES children, each appending
/// durable messages from THREADS threads for a while; messages per second
/// in all.
fn fleet(config: Config, url: &str) -> String {
    const PROCESSES: usize = 4;
    const THREADS: usize = 8;
    let location = fresh_database(url).1;
    let secs = config.pick(3, 10);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().expect("the bench binary"))
                .args([
                    "--fleet-child",
                    &location,
                    &THREADS.to_string(),
                    &secs.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a fleet child")
        })
        .collect();
    let total: f64 = children
        .into_iter()
        .map(|mut child| {
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("piped"))
                .read_line(&mut line)
                .expect("the child's count");
            assert!(child.wait().expect("reap").success(), "a fleet child failed");
            line.trim().parse::<f64>().expect("messages per second")
        })
        .sum();
    format!(
        "\nPostgreSQL fleet: {PROCESSES} processes x {THREADS} threads of durable appends (each thread its own session) to one database for {secs} s: {total:.0} messages/s in all."
    )
}

/// A fleet child: `THREADS` threads appending for `secs`; prints its
/// messages per second.
pub fn fleet_child(args: &[String]) {
    let [location, threads, secs] = args else {
        panic!("--fleet-child URL THREADS SECS");
    };
    let store = SessionStore::open(location).expect("open");
    let rate = throughput(
        threads.parse().expect("threads"),
        Duration::from_secs(secs.parse().expect("secs")),
        &store,
        |store, _| store.create_session(Some("fleet")).expect("create").to_string(),
        |store, id, turn| {
            let id = Uuid::parse_str(id).expect("uuid");
            store.add_message(id, turn.to_new_message()).expect("add");
        },
    );
    println!("{rate}");
}
