//! Criterion benches of issue 6's workloads, sessionstore beside SQLite:
//! `cargo bench --bench workloads [-- FILTER]`. The side-by-side table of
//! every workload (with the 1,000,000-session and 1 GB stores, the bytes on
//! disk, and the opens after a real kill) is `cargo bench --bench report`.

mod common;

use sessionstore::redb_engine::RedbOptions;
use std::time::Duration;

use common::{conversation, sql_session, ss_session, BatchedSqlite, BigStore, Sqlite, TARGET_USER};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use sessionstore::{Durability, SessionStore, StoreOptions};

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
        b.iter(|| {
            store
                .get_recent_messages(ss, 10)
                .expect("read")
                .expect("active session")
        })
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

/// A copy of the store file at `path` and of the files beside it named
/// after it (sessionstore's journal; SQLite's `-wal` and `-shm`) in a new
/// folder, synced. Taken while the store is open, it is what a kill leaves.
fn copy_of(path: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = common::scratch();
    let name = path.file_name().expect("a file").to_string_lossy().into_owned();
    let folder = path.parent().expect("a folder");
    for entry in std::fs::read_dir(folder).expect("list the folder") {
        let file = entry
            .expect("a folder entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if file == name || file.starts_with(&format!("{name}-")) {
            let to = dir.path().join(&file);
            std::fs::copy(folder.join(&file), &to).expect("copy");
            // On disk, as a killed store's files are by the time it
            // reopens: a sync in the timed open must not write the copy.
            std::fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .expect("sync the copy");
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

/// The open after a kill, each iteration on a fresh copy of files taken
/// while the store was open with writes not yet checkpointed (what a kill
/// leaves: the tests' crash images are made the same way): 2,000 sessions
/// of 20 messages, closed, reopened, then 100 durable appends to another
/// session. The open and a read of one session are timed; sessionstore's
/// open replays its journal (and checks every page first, by default),
/// SQLite's recovers its WAL.
fn open_after_kill(c: &mut Criterion) {
    let dir = common::scratch();
    let turns = conversation(13, 100);
    let ss_path = dir.path().join("s.redb");
    let ss_read = {
        let store = SessionStore::open(&ss_path).expect("open");
        let read = ss_session(&store, 1, 20);
        for seed in 2..2_000 {
            ss_session(&store, seed, 20);
        }
        read
    };
    // A checkpoint follows 500 ms after a record at the latest: the copy
    // must come before it, which a stalled machine may miss; then again.
    let ss_image = (0..5)
        .find_map(|_| {
            let store = SessionStore::open(&ss_path).expect("open");
            let written = store.create_session(Some("writer")).expect("create");
            for turn in &turns {
                store.add_message(written, turn.to_new_message()).expect("add");
            }
            let image = copy_of(&ss_path);
            drop(store);
            only_in_journal(&image.1, written).then_some(image)
        })
        .expect("a copy taken before the checkpoint");
    let sq_path = dir.path().join("s.db");
    let sq_read = {
        let sqlite = Sqlite::open(&sq_path, Durability::Durable);
        let read = sql_session(&sqlite, 1, 20);
        for seed in 2..2_000 {
            sql_session(&sqlite, seed, 20);
        }
        read
    };
    // Reopened, the WAL is empty; 100 appends stay under SQLite's
    // automatic checkpoint (1,000 pages).
    let sq_image = {
        let sqlite = Sqlite::open(&sq_path, Durability::Durable);
        let written = sqlite.create_session(Some("writer"));
        for turn in &turns {
            sqlite.add_message(&written, turn);
        }
        copy_of(&sq_path)
    };
    let mut group = c.benchmark_group("open_after_kill");
    group.sample_size(20);
    for (name, verify_after_crash) in [("sessionstore", true), ("sessionstore_unverified", false)] {
        let options = StoreOptions {
            redb: RedbOptions {
                verify_after_crash,
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || copy_of(&ss_image.1),
                |(copy, path)| {
                    let store = SessionStore::open_with(path, options.clone()).expect("open");
                    store.get_session(ss_read).expect("read").expect("active");
                    (copy, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.bench_function("sqlite", |b| {
        b.iter_batched(
            || copy_of(&sq_image.1),
            |(copy, path)| {
                let sqlite = Sqlite::open(&path, Durability::Durable);
                sqlite.get_session(&sq_read).expect("active");
                (copy, sqlite)
            },
            BatchSize::PerIteration,
        )
    });
}

/// Whether the store file of the copy at `path` lacks `session`'s last
/// messages: only its journal holds them, and an open replays them.
fn only_in_journal(path: &std::path::Path, session: sessionstore::Uuid) -> bool {
    let (copy, path) = copy_of(path);
    for file in SessionStore::files_beside(&path) {
        std::fs::remove_file(file).expect("remove the journal");
    }
    let store = SessionStore::open(&path).expect("open");
    let found = store.get_session(session).expect("read");
    drop((store, copy));
    found.is_none_or(|s| s.messages.len() < 100)
}

criterion_group!(
    benches,
    get_session,
    recent_messages,
    add_message,
    add_message_threads,
    user_sessions_and_expiry,
    open_clean,
    open_after_kill
);
criterion_main!(benches);
