//! Criterion benches of issue 6's workloads, sessionstore beside SQLite:
//! `cargo bench --bench workloads [-- FILTER]`. The side-by-side table of
//! every workload (with the 1,000,000-session and 1 GB stores, the bytes on
//! disk and the opens after a kill) is `cargo bench --bench report`.

mod common;

use std::time::Duration;

use common::{conversation, sql_session, ss_session, BatchedSqlite, BigStore, Sqlite, TARGET_USER};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use sessionstore::{Durability, SessionStore};

fn get_session(c: &mut Criterion) {
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let mut group = c.benchmark_group("get_session");
    for n in [10, 100, 1000] {
        let ss = ss_session(&store, n, n);
        let sq = sql_session(&sqlite, n, n);
        group.bench_with_input(BenchmarkId::new("sessionstore", n), &ss, |b, id| {
            b.iter(|| store.get_session(*id).expect("read").expect("active"))
        });
        group.bench_with_input(BenchmarkId::new("sqlite", n), &sq, |b, id| {
            b.iter(|| sqlite.get_session(id).expect("active"))
        });
    }
}

fn recent_messages(c: &mut Criterion) {
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let ss = ss_session(&store, 1, 10_000);
    let sq = sql_session(&sqlite, 1, 10_000);
    let mut group = c.benchmark_group("recent_10_of_10000");
    group.bench_function("sessionstore", |b| {
        b.iter(|| store.get_recent_messages(ss, 10).expect("read"))
    });
    group.bench_function("sqlite", |b| b.iter(|| sqlite.get_recent_messages(&sq, 10)));
}

fn add_message(c: &mut Criterion) {
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let batched = BatchedSqlite::open(&dir.path().join("b.db"));
    let batched_session = sqlite_session(&dir.path().join("b.db"));
    let turns = conversation(3, 64);
    let ss = store.create_session(Some("writer")).expect("create");
    let sq = sqlite.create_session(Some("writer"));
    let mut group = c.benchmark_group("add_message_1_thread");
    group.sample_size(30).measurement_time(Duration::from_secs(4));
    let mut i = 0;
    group.bench_function("sessionstore", |b| {
        b.iter(|| {
            i += 1;
            store
                .add_message(ss, turns[i % turns.len()].to_new_message())
                .expect("add")
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            i += 1;
            sqlite.add_message(&sq, &turns[i % turns.len()])
        })
    });
    group.bench_function("sqlite_batched", |b| {
        b.iter(|| {
            i += 1;
            batched.add_message(&batched_session, &turns[i % turns.len()])
        })
    });
}

fn sqlite_session(path: &std::path::Path) -> String {
    Sqlite::open(path, Durability::Durable).create_session(Some("writer"))
}

/// The concurrent workloads as criterion sees them: the time for 8 or 32
/// threads to append 32 durable messages each, on sessionstore, on SQLite
/// the old store's way (a connection per thread, a transaction per message)
/// and on SQLite behind the batching writer.
fn add_message_threads(c: &mut Criterion) {
    for threads in [8, 32] {
        let dir = common::scratch();
        let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
        let path = dir.path().join("s.db");
        let sessions: Vec<String> = (0..threads).map(|_| sqlite_session(&path)).collect();
        let batched_path = dir.path().join("b.db");
        let batched_sessions: Vec<String> = (0..threads).map(|_| sqlite_session(&batched_path)).collect();
        let batched = BatchedSqlite::open(&batched_path);
        let ss_sessions: Vec<_> = (0..threads)
            .map(|_| store.create_session(Some("writer")).expect("create"))
            .collect();
        let turns = conversation(5, 32);
        let mut group = c.benchmark_group(format!("add_message_{threads}_threads_x32"));
        group.sample_size(10).measurement_time(Duration::from_secs(8));
        group.bench_function("sessionstore", |b| {
            b.iter(|| {
                in_threads(&ss_sessions, |id| {
                    for turn in &turns {
                        store.add_message(*id, turn.to_new_message()).expect("add");
                    }
                })
            })
        });
        group.bench_function("sqlite", |b| {
            b.iter(|| {
                in_threads(&sessions, |id| {
                    let sqlite = Sqlite::open(&path, Durability::Durable);
                    for turn in &turns {
                        sqlite.add_message(id, turn);
                    }
                })
            })
        });
        group.bench_function("sqlite_batched", |b| {
            b.iter(|| {
                in_threads(&batched_sessions, |id| {
                    for turn in &turns {
                        batched.add_message(id, turn);
                    }
                })
            })
        });
    }
}

/// Runs `append` for each session, each in a thread of its own, all at
/// once; returns when every one is done.
fn in_threads<I: Sync>(sessions: &[I], append: impl Fn(&I) + Sync) {
    std::thread::scope(|scope| {
        for id in sessions {
            let append = &append;
            scope.spawn(move || append(id));
        }
    })
}

fn user_sessions_and_expiry(c: &mut Criterion) {
    let shape = BigStore {
        total: 20_000,
        of_target: 1000,
    };
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    shape.load_sessionstore(&store);
    let path = dir.path().join("s.db");
    shape.load_sqlite(&path);
    let sqlite = Sqlite::open(&path, Durability::Durable);
    let mut group = c.benchmark_group("user_sessions_in_20000");
    group.bench_function("list_user_sessions/sessionstore", |b| {
        b.iter(|| store.list_user_sessions(TARGET_USER, false).expect("list"))
    });
    group.bench_function("list_user_sessions/sqlite", |b| {
        b.iter(|| sqlite.list_user_sessions(TARGET_USER))
    });
    group.bench_function("recent_sessions/sessionstore", |b| {
        b.iter(|| store.recent_sessions(TARGET_USER, 10).expect("recent"))
    });
    group.bench_function("recent_sessions/sqlite", |b| {
        b.iter(|| sqlite.recent_sessions(TARGET_USER, 10))
    });
    group.finish();
    drop((store, sqlite));

    // Expiry changes the store: each iteration works on a fresh copy.
    let mut group = c.benchmark_group("expire_1pct_of_20000");
    group.sample_size(10);
    let day = Duration::from_secs(24 * 3600);
    group.bench_function("sessionstore", |b| {
        b.iter_batched(
            || {
                let (copy, path) = copy_of(&dir.path().join("s.redb"));
                (copy, SessionStore::open(path).expect("open"))
            },
            |(copy, store)| {
                store.expire_old_sessions(day).expect("expire");
                (copy, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("sqlite", |b| {
        b.iter_batched(
            || {
                let (copy, path) = copy_of(&path);
                (copy, Sqlite::open(&path, Durability::Durable))
            },
            |(copy, sqlite)| {
                sqlite.expire_old_sessions(day);
                (copy, sqlite)
            },
            BatchSize::PerIteration,
        )
    });
}

/// A copy of the store file at `path` (and of its journal, if any) in a
/// new folder.
fn copy_of(path: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = common::scratch();
    let name = path.file_name().expect("a file").to_string_lossy().into_owned();
    for file in [name.clone(), format!("{name}-journal")] {
        let from = path.with_file_name(&file);
        if from.exists() {
            std::fs::copy(&from, dir.path().join(&file)).expect("copy");
        }
    }
    let copy = dir.path().join(name);
    (dir, copy)
}

fn open_clean(c: &mut Criterion) {
    let dir = common::scratch();
    let ss_path = dir.path().join("s.redb");
    let sq_path = dir.path().join("s.db");
    let id = ss_session(&SessionStore::open(&ss_path).expect("open"), 1, 1000);
    let sq = sql_session(&Sqlite::open(&sq_path, Durability::Durable), 1, 1000);
    let mut group = c.benchmark_group("open_clean");
    group.bench_function("sessionstore", |b| {
        b.iter(|| {
            let store = SessionStore::open(&ss_path).expect("open");
            store.get_session(id).expect("read").expect("active")
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            Sqlite::open(&sq_path, Durability::Durable)
                .get_session(&sq)
                .expect("active")
        })
    });
}

criterion_group!(
    benches,
    get_session,
    recent_messages,
    add_message,
    add_message_threads,
    user_sessions_and_expiry,
    open_clean
);
criterion_main!(benches);
