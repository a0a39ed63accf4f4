//! `cargo bench --bench report [-- --quick] [-- --json FILE]`: every
//! workload of issue 6 on sessionstore and on the SQLite store, in one
//! process, printed as a markdown table (and written as JSON with --json).
//!
//! `--quick` runs smaller stores and fewer iterations (a smoke run, under
//! three minutes); the full run loads 1,000,000 sessions and 1 GB stores.
//! `--only get_session,open` runs only the named stages (get_session, cold,
//! populated, recent_messages, add_message, threads, big_store, bytes,
//! open, features, postgres), for profiling. The postgres stage (with `--features
//! postgres`) runs last and fills the PostgreSQL column of the lines it
//! measures.
//! Files go to a temporary folder under `BENCH_DIR` when set (else the
//! system's temporary folder): put it on the disk you mean to measure.

mod cold;
mod common;
mod features;
#[cfg(feature = "postgres")]
mod postgres;

use sessionstore::redb_engine::RedbOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{conversation, sql_session, ss_session, BatchedSqlite, BigStore, Sqlite, Turn, TARGET_USER};
use sessionstore::{Durability, SessionStore, StoreOptions, Timestamp, TimestampForm, Uuid};

#[derive(Clone, Copy)]
struct Config {
    quick: bool,
}

impl Config {
    fn pick<T>(self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Lower,
    Higher,
}

/// One stage of the run: its rows, and notes printed under the table.
type Workload = fn(Config, &mut Vec<String>) -> Vec<Row>;

struct Row {
    workload: &'static str,
    unit: &'static str,
    sessionstore: f64,
    sqlite: f64,
    /// The plain redb store of `cold/minimal.rs`, where it applies.
    floor: Option<f64>,
    /// The PostgreSQL engine (`postgres/mod.rs`), where it applies.
    postgres: Option<f64>,
    better: Better,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.sessionstore / self.sqlite
    }

    /// How many times better sessionstore is (above 1: it leads).
    fn lead(&self) -> f64 {
        match self.better {
            Better::Lower => self.sqlite / self.sessionstore,
            Better::Higher => self.sessionstore / self.sqlite,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        return child(&args[at + 1..]);
    }
    #[cfg(feature = "postgres")]
    if let Some(at) = args.iter().position(|a| a == "--fleet-child") {
        return postgres::fleet_child(&args[at + 1..]);
    }
    let config = Config {
        quick: args.iter().any(|a| a == "--quick"),
    };
    let json = args
        .iter()
        .position(|a| a == "--json")
        .map(|at| PathBuf::from(args.get(at + 1).expect("--json needs a file")));
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let stages: [(&str, Workload); 10] = [
        ("get_session", get_session),
        ("cold", cold::get_session_cold),
        ("populated", cold::populated),
        ("recent_messages", recent_messages),
        ("add_message", add_message_one_thread),
        ("threads", add_message_threads),
        ("big_store", big_store),
        ("bytes", bytes_on_disk),
        ("open", open_times),
        ("features", features::features),
    ];
    let only: Vec<&str> = args
        .iter()
        .position(|a| a == "--only")
        .map(|at| {
            args.get(at + 1)
                .expect("--only needs stage names")
                .split(',')
                .collect()
        })
        .unwrap_or_default();
    for (name, stage) in stages {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let at = Instant::now();
        eprintln!("running {name}...");
        rows.extend(stage(config, &mut notes));
        eprintln!("  {name}: {:.1} s", at.elapsed().as_secs_f64());
    }
    #[cfg(not(feature = "postgres"))]
    notes.push(
        "\nPostgreSQL: not measured (run with `--features postgres` for its column and the fleet line)."
            .into(),
    );
    #[cfg(feature = "postgres")]
    if only.is_empty() || only.contains(&"postgres") {
        let at = Instant::now();
        eprintln!("running postgres...");
        for (workload, value) in postgres::run(config, &mut notes) {
            if let Some(row) = rows.iter_mut().find(|row| row.workload == workload) {
                row.postgres = Some(value);
            }
        }
        eprintln!("  postgres: {:.1} s", at.elapsed().as_secs_f64());
    }
    print_table(&rows);
    for note in &notes {
        println!("{note}");
    }
    println!(
        "\n{} run, {:.0} s in all.",
        config.pick("quick", "full"),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = json {
        write_json(&path, &rows);
    }
}

fn print_table(rows: &[Row]) {
    println!("| workload | unit | sessionstore | SQLite | ratio | sessionstore leads by | plain redb | sessionstore / plain redb | PostgreSQL engine |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let (floor, over_floor) = match row.floor {
            Some(floor) => (number(floor), format!("{:.2}x", row.sessionstore / floor)),
            None => (String::new(), String::new()),
        };
        let postgres = row.postgres.map(number).unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.2}x | {floor} | {over_floor} | {postgres} |",
            row.workload,
            row.unit,
            number(row.sessionstore),
            number(row.sqlite),
            row.ratio(),
            row.lead()
        );
    }
}

fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn write_json(path: &Path, rows: &[Row]) {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "workload": row.workload,
                "unit": row.unit,
                "sessionstore": row.sessionstore,
                "sqlite": row.sqlite,
                "plain_redb": row.floor,
                "postgres": row.postgres,
                "ratio": row.ratio(),
                "better": match row.better { Better::Lower => "lower", Better::Higher => "higher" },
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "rows": rows })).expect("json");
    std::fs::write(path, text + "\n").expect("write the JSON file");
}

// ---- timing ---------------------------------------------------------------

/// Latencies of `iterations` calls, after a tenth as many unmeasured ones.
fn latencies(iterations: usize, mut call: impl FnMut()) -> Vec<Duration> {
    for _ in 0..iterations / 10 + 1 {
        call();
    }
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let at = Instant::now();
            call();
            at.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at].as_secs_f64() * 1e6
}

/// The middle value of `values` (not empty).
fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

fn median_micros(iterations: usize, call: impl FnMut()) -> f64 {
    percentile(&latencies(iterations, call), 0.5)
}

fn micros_row(workload: &'static str, sessionstore: f64, sqlite: f64) -> Row {
    Row {
        workload,
        unit: "µs (median)",
        sessionstore,
        sqlite,
        floor: None,
        postgres: None,
        better: Better::Lower,
    }
}

fn millis_row(workload: &'static str, sessionstore: Duration, sqlite: Duration) -> Row {
    Row {
        workload,
        unit: "ms",
        sessionstore: sessionstore.as_secs_f64() * 1e3,
        sqlite: sqlite.as_secs_f64() * 1e3,
        floor: None,
        postgres: None,
        better: Better::Lower,
    }
}

// ---- workloads --------------------------------------------------------------

/// A store with the default options, and one with the message cache off
/// (every read decodes and copies, as SQLite does), in `dir`.
fn warm_and_cold_stores(dir: &Path) -> (SessionStore, SessionStore) {
    let warm = SessionStore::open(dir.join("s.redb")).expect("open");
    let options = StoreOptions {
        redb: RedbOptions {
            message_cache_bytes: 0,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    };
    let cold = SessionStore::open_with(dir.join("cold.redb"), options).expect("open");
    (warm, cold)
}

/// The note on the reads with the message cache off.
fn cold_note(lines: &[String]) -> String {
    format!(
        "\nWith the message cache off (`message_cache_bytes: 0`: every read decodes and copies): {}.",
        lines.join("; ")
    )
}

/// A read of session `id`, which holds `n` messages.
fn read_session(store: &SessionStore, id: Uuid, n: u64) -> impl FnMut() + '_ {
    move || {
        let session = store.get_session(id).expect("read").expect("active");
        assert_eq!(session.messages.len() as u64, n);
    }
}

fn get_session(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let dir = common::scratch();
    let (store, cold) = warm_and_cold_stores(dir.path());
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let mut cold_lines = Vec::new();
    let rows = [
        ("get_session_10", 10, config.pick(300, 3000)),
        ("get_session_100", 100, config.pick(200, 2000)),
        ("get_session_1000", 1000, config.pick(30, 300)),
    ]
    .into_iter()
    .map(|(workload, n, iterations)| {
        let ss = ss_session(&store, n, n);
        let ss_cold = ss_session(&cold, n, n);
        let sq = sql_session(&sqlite, n, n);
        let ss_time = median_micros(iterations, read_session(&store, ss, n));
        let cold_time = median_micros(iterations, read_session(&cold, ss_cold, n));
        let sq_time = median_micros(iterations, || {
            let session = sqlite.get_session(&sq).expect("active");
            assert_eq!(session.messages.len() as u64, n);
        });
        cold_lines.push(format!(
            "{workload} {} µs ({:.2}x)",
            number(cold_time),
            sq_time / cold_time
        ));
        micros_row(workload, ss_time, sq_time)
    })
    .collect();
    notes.push(cold_note(&cold_lines));
    rows
}

fn recent_messages(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let dir = common::scratch();
    let (store, cold) = warm_and_cold_stores(dir.path());
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let ss = ss_session(&store, 1, 10_000);
    let ss_cold = ss_session(&cold, 1, 10_000);
    let sq = sql_session(&sqlite, 1, 10_000);
    let iterations = config.pick(500, 5000);
    let read = |store: &SessionStore, id| {
        assert_eq!(
            store
                .get_recent_messages(id, 10)
                .expect("read")
                .expect("active session")
                .len(),
            10
        )
    };
    let ss_time = median_micros(iterations, || read(&store, ss));
    let cold_time = median_micros(iterations, || read(&cold, ss_cold));
    let sq_time = median_micros(iterations, || {
        assert_eq!(sqlite.get_recent_messages(&sq, 10).len(), 10);
    });
    notes.push(cold_note(&[format!(
        "recent_10_of_10000 {} µs ({:.2}x)",
        number(cold_time),
        sq_time / cold_time
    )]));
    vec![micros_row("recent_10_of_10000", ss_time, sq_time)]
}

fn add_message_one_thread(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let turns = conversation(3, 64);
    let ss = store.create_session(Some("writer")).expect("create");
    let sq = sqlite.create_session(Some("writer"));
    // The two sides take turns, so that both see the same disk (a shared
    // machine's fsync times drift).
    let iterations = config.pick(1000, 5000);
    let (mut ss_times, mut sq_times) = (Vec::new(), Vec::new());
    for i in 0..iterations + iterations / 10 {
        let turn = &turns[i % turns.len()];
        let at = Instant::now();
        store.add_message(ss, turn.to_new_message()).expect("add");
        let ss_time = at.elapsed();
        let at = Instant::now();
        sqlite.add_message(&sq, turn);
        let sq_time = at.elapsed();
        if i >= iterations / 10 {
            ss_times.push(ss_time);
            sq_times.push(sq_time);
        }
    }
    ss_times.sort_unstable();
    sq_times.sort_unstable();
    notes.push(format!(
        "\nadd_message_1_thread (durable): p99 {:.0} µs against SQLite's {:.0} µs; p99.9 {:.0} µs against {:.0} µs.",
        percentile(&ss_times, 0.99),
        percentile(&sq_times, 0.99),
        percentile(&ss_times, 0.999),
        percentile(&sq_times, 0.999),
    ));
    vec![micros_row(
        "add_message_1_thread",
        percentile(&ss_times, 0.5),
        percentile(&sq_times, 0.5),
    )]
}

/// Messages per second from `threads` threads, each appending durable
/// messages to its own session for `time`.
fn throughput<S: Sync>(
    threads: usize,
    time: Duration,
    shared: &S,
    session: impl Fn(&S, usize) -> String + Sync,
    add: impl Fn(&S, &str, &Turn) + Sync,
) -> f64 {
    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let turns = conversation(5, 64);
    let elapsed = std::thread::scope(|scope| {
        for t in 0..threads {
            let (count, stop, turns, session, add) = (&count, &stop, &turns, &session, &add);
            scope.spawn(move || {
                let id = session(shared, t);
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    add(shared, &id, &turns[i % turns.len()]);
                    i += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let at = Instant::now();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        at.elapsed()
    });
    count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

fn add_message_threads(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let time = config.pick(Duration::from_millis(1500), Duration::from_secs(6));
    let run_ss = |threads| {
        let dir = common::scratch();
        let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
        throughput(
            threads,
            time,
            &store,
            |store, _| store.create_session(Some("writer")).expect("create").to_string(),
            |store, id, turn| {
                let id = Uuid::parse_str(id).expect("uuid");
                store.add_message(id, turn.to_new_message()).expect("add");
            },
        )
    };
    let run_sqlite = |threads| {
        let dir = common::scratch();
        let path = dir.path().join("s.db");
        drop(Sqlite::open(&path, Durability::Durable));
        throughput(
            threads,
            time,
            &path,
            |path, _| {
                let sqlite = Sqlite::open(path, Durability::Durable);
                sqlite.create_session(Some("writer"))
            },
            |path, id, turn| {
                // One connection per thread, opened once.
                thread_local! {
                    static CONNECTION: std::cell::RefCell<Option<Sqlite>> = const { std::cell::RefCell::new(None) };
                }
                CONNECTION.with(|cell| {
                    let mut cell = cell.borrow_mut();
                    let sqlite = cell.get_or_insert_with(|| Sqlite::open(path, Durability::Durable));
                    sqlite.add_message(id, turn);
                });
            },
        )
    };
    let run_batched = |threads| {
        let dir = common::scratch();
        let path = dir.path().join("s.db");
        let sessions = Sqlite::open(&path, Durability::Durable);
        let ids: Vec<String> = (0..threads)
            .map(|_| sessions.create_session(Some("writer")))
            .collect();
        let batched = BatchedSqlite::open(&path);
        throughput(
            threads,
            time,
            &batched,
            |_, t| ids[t].clone(),
            |batched, id, turn| {
                batched.add_message(id, turn);
            },
        )
    };
    let row = |workload, sessionstore, sqlite| Row {
        workload,
        unit: "messages/s",
        sessionstore,
        sqlite,
        floor: None,
        postgres: None,
        better: Better::Higher,
    };
    // Durable writes move with the disk from minute to minute: each line
    // runs three times, the sides taking turns, and gives its median.
    let runs: Vec<[f64; 5]> = (0..3)
        .map(|_| {
            [
                run_ss(8),
                run_sqlite(8),
                run_ss(32),
                run_sqlite(32),
                run_batched(32),
            ]
        })
        .collect();
    let middle = |i: usize| median(runs.iter().map(|run| run[i]).collect());
    let list = |i: usize| {
        runs.iter()
            .map(|run| format!("{:.0}", run[i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    notes.push(format!(
        "\nDurable appends from threads, messages/s of each of the three turns: 8 threads {} against {}; \
         32 threads {} against {}, batched SQLite {}.",
        list(0),
        list(1),
        list(2),
        list(3),
        list(4)
    ));
    vec![
        row("add_message_8_threads", middle(0), middle(1)),
        row("add_message_32_threads", middle(2), middle(3)),
        row("add_message_32_threads_vs_batched", middle(2), middle(4)),
    ]
}

fn big_store(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let shape = BigStore {
        total: config.pick(20_000, 1_000_000),
        of_target: 1000,
    };
    let dir = common::scratch();
    let at = Instant::now();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    shape.load_sessionstore(&store);
    let ss_load = at.elapsed();
    let at = Instant::now();
    let path = dir.path().join("s.db");
    shape.load_sqlite(&path);
    let sq_load = at.elapsed();
    notes.push(format!(
        "\nBig store: {} sessions ({} of the listed user), loaded in {:.1} s (sessionstore importer) and {:.1} s (SQLite, one transaction).",
        shape.total,
        shape.of_target,
        ss_load.as_secs_f64(),
        sq_load.as_secs_f64()
    ));
    let sqlite = Sqlite::open(&path, Durability::Durable);
    let iterations = config.pick(50, 300);
    let list = micros_row(
        "list_user_sessions",
        median_micros(iterations, || {
            assert_eq!(
                store.list_user_sessions(TARGET_USER, false).expect("list").len(),
                1000
            );
        }),
        median_micros(iterations, || {
            assert_eq!(sqlite.list_user_sessions(TARGET_USER).len(), 1000);
        }),
    );
    let recent = micros_row(
        "recent_sessions",
        median_micros(iterations, || {
            assert_eq!(store.recent_sessions(TARGET_USER, 10).expect("recent").len(), 10);
        }),
        median_micros(iterations, || {
            assert_eq!(sqlite.recent_sessions(TARGET_USER, 10).len(), 10);
        }),
    );
    let due = (shape.total / 100) as usize;
    let day = Duration::from_secs(24 * 3600);
    let at = Instant::now();
    assert_eq!(store.expire_old_sessions(day).expect("expire") as usize, due);
    let ss_expire = at.elapsed();
    let at = Instant::now();
    assert_eq!(sqlite.expire_old_sessions(day), due);
    let sq_expire = at.elapsed();
    vec![
        list,
        recent,
        millis_row("expire_1pct_of_1m", ss_expire, sq_expire),
    ]
}

/// Bytes the file takes on disk (its allocated blocks, what `du` counts),
/// and its length. redb grows its file with `set_len` ahead of use: the
/// part not yet written is a hole that takes no disk space.
fn file_size(path: &Path) -> (f64, f64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or((0.0, 0.0), |m| ((m.blocks() * 512) as f64, m.len() as f64))
}

/// What every file of a store takes, summed: sessionstore's database and
/// journal (`ss_size`), SQLite's database, WAL and shared memory
/// (`sq_size`).
fn ss_size(path: &Path) -> (f64, f64) {
    let files = std::iter::once(path.to_path_buf()).chain(SessionStore::files_beside(path));
    sum_sizes(files)
}

fn sq_size(path: &Path) -> (f64, f64) {
    let files = ["", "-wal", "-shm"].map(|end| PathBuf::from(format!("{}{end}", path.display())));
    sum_sizes(files)
}

fn sum_sizes(files: impl IntoIterator<Item = PathBuf>) -> (f64, f64) {
    files
        .into_iter()
        .map(|f| file_size(&f))
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

fn bytes_on_disk(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    // Sessions are small: many of them, for a size neither the file's growth
    // steps nor the pages a store keeps free between two checkpoints (a few
    // MB, whatever its size) blur; messages go to the first of them.
    let sessions = config.pick(2_000, 200_000);
    let with_messages: u64 = config.pick(100, 2_500);
    let per_session = 20;
    let dir = common::scratch();
    let ss_path = dir.path().join("s.redb");
    let sq_path = dir.path().join("s.db");
    // Sessions first (each side's file without messages), then messages.
    let store = SessionStore::open(&ss_path).expect("open");
    let relaxed = store.with_durability(Durability::Relaxed);
    let sqlite = Sqlite::open(&sq_path, Durability::Relaxed);
    sqlite.checkpoint();
    let (ss_empty, sq_empty) = (ss_size(&ss_path), sq_size(&sq_path));
    let ss_ids: Vec<Uuid> = (0..sessions)
        .map(|_| relaxed.create_session(Some("sizer")).expect("create"))
        .collect();
    let sq_ids: Vec<String> = (0..sessions)
        .map(|_| sqlite.create_session(Some("sizer")))
        .collect();
    drop((relaxed, store));
    sqlite.checkpoint();
    let (ss_sessions, sq_sessions) = (ss_size(&ss_path), sq_size(&sq_path));
    let store = SessionStore::open(&ss_path).expect("open");
    let relaxed = store.with_durability(Durability::Relaxed);
    let mut payload = 0usize;
    for (n, (ss, sq)) in ss_ids
        .iter()
        .zip(&sq_ids)
        .take(with_messages as usize)
        .enumerate()
    {
        for turn in conversation(n as u64, per_session) {
            payload += turn.content.len()
                + turn.query_plan.as_ref().map_or(0, String::len)
                + turn.candidate_set.as_ref().map_or(0, String::len);
            relaxed.add_message(*ss, turn.to_new_message()).expect("add");
            sqlite.add_message(sq, &turn);
        }
    }
    drop((relaxed, store));
    sqlite.checkpoint();
    let (ss_full, sq_full) = (ss_size(&ss_path), sq_size(&sq_path));
    let journal = SessionStore::files_beside(&ss_path).remove(0);
    let journal_kib = std::fs::metadata(&journal).map_or(0, |m| m.len()) >> 10;
    let messages = (with_messages * per_session) as f64;
    let compacted = SessionStore::open(&ss_path)
        .and_then(|store| store.compact(&mut |_, _| {}))
        .expect("compact");
    notes.push(format!(
        "\nBytes: the sessionstore file compacts from {} to {} bytes long ({:.0} bytes on disk).",
        compacted.before,
        compacted.after,
        file_size(&ss_path).0
    ));
    let sessions = sessions as f64;
    notes.push(format!(
        "\nBytes: {} sessions, {} messages (in {with_messages} of them) of {:.0} bytes of text and JSON on average; files taking {:.1} MB on disk (sessionstore: {:.1} MB long, the rest a hole redb reserved; its journal, {} KiB once closed, counted) and {:.1} MB (SQLite, after a checkpoint; its WAL and shared memory files counted). The rows count bytes on disk of every file (allocated blocks, as `du`); an empty store takes {:.0} KB (sessionstore) and {:.0} KB (SQLite).",
        sessions,
        messages,
        payload as f64 / messages,
        ss_full.0 / 1e6,
        ss_full.1 / 1e6,
        journal_kib,
        sq_full.0 / 1e6,
        ss_empty.0 / 1e3,
        sq_empty.0 / 1e3,
    ));
    let row = |workload, sessionstore, sqlite| Row {
        workload,
        unit: "bytes",
        sessionstore,
        sqlite,
        floor: None,
        postgres: None,
        better: Better::Lower,
    };
    vec![
        row(
            "bytes_per_message",
            (ss_full.0 - ss_sessions.0) / messages,
            (sq_full.0 - sq_sessions.0) / messages,
        ),
        // Every byte of a store holding only sessions, the files of an
        // empty store included, over its sessions: what `du` shows.
        row(
            "bytes_per_session",
            ss_sessions.0 / sessions,
            sq_sessions.0 / sessions,
        ),
    ]
}

/// Loads about `bytes` of conversations (sessions of 20 messages) into both
/// stores; returns two sessions of each (the middle one and the first).
fn load_bytes(bytes: u64, ss_path: &Path, sq_path: &Path) -> [(Uuid, String); 2] {
    let per_session = 20;
    let turns = conversation(11, per_session);
    let session_bytes: u64 = turns
        .iter()
        .map(|t| {
            (t.content.len()
                + t.query_plan.as_ref().map_or(0, String::len)
                + t.candidate_set.as_ref().map_or(0, String::len)) as u64
        })
        .sum();
    let sessions = bytes / session_bytes + 1;
    let store = SessionStore::open(ss_path).expect("open");
    let mut importer = store.importer();
    let mut next_id = 1;
    let now = Timestamp::now();
    let ids: Vec<Uuid> = (0..sessions).map(|i| Uuid::from_u128(i as u128 + 1)).collect();
    for id in &ids {
        importer
            .add_session(common::imported_session(
                *id,
                format!("user-{}", id.as_u128() % 1000),
                &now,
            ))
            .expect("add session");
        let messages = common::imported_messages(
            &turns,
            &mut next_id,
            &Timestamp::from_micros(now.micros(), TimestampForm::Utc),
        );
        importer.add_messages(*id, messages).expect("add messages");
    }
    importer.finish().expect("finish");
    drop(store);
    let sqlite = Sqlite::open(sq_path, Durability::Relaxed);
    sqlite
        .connection()
        .execute_batch("PRAGMA synchronous=OFF;")
        .expect("pragma");
    let txn = sqlite.connection().unchecked_transaction().expect("begin");
    let sq_ids: Vec<String> = ids
        .iter()
        .map(|id| {
            let id = id.to_string();
            txn.execute(
                "INSERT INTO chat_sessions (session_id, user_id, created_at, updated_at) VALUES (?1, 'u', 'now', 'now')",
                [&id],
            )
            .expect("insert session");
            for turn in &turns {
                txn.execute(
                    "INSERT INTO chat_messages (session_id, role, content, query_plan, candidate_set, timestamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    rusqlite::params![id, turn.role.as_str(), turn.content, turn.query_plan, turn.candidate_set, "2026-11-24T00:00:00+00:00"],
                )
                .expect("insert message");
            }
            id
        })
        .collect();
    txn.commit().expect("commit");
    sqlite.checkpoint();
    [
        (ids[ids.len() / 2], sq_ids[sq_ids.len() / 2].clone()),
        (ids[0], sq_ids[0].clone()),
    ]
}

fn open_times(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let bytes = config.pick(32u64 << 20, 1 << 30);
    let dir = common::scratch();
    let ss_path = dir.path().join("s.redb");
    let sq_path = dir.path().join("s.db");
    // The session read at each open keeps its 20 messages on both sides:
    // the killed writers append to another one.
    let [(ss_id, sq_id), (ss_written, sq_written)] = load_bytes(bytes, &ss_path, &sq_path);
    notes.push(format!(
        "\nOpen: stores of {:.0} MB (sessionstore) and {:.0} MB (SQLite); open = open the file and read one session of 20 messages.",
        file_size(&ss_path).1 / 1e6,
        file_size(&sq_path).1 / 1e6
    ));
    let open_ss_with = |options: StoreOptions| {
        let at = Instant::now();
        let store = SessionStore::open_with(&ss_path, options).expect("open");
        store.get_session(ss_id).expect("read").expect("active");
        let time = at.elapsed();
        drop(store);
        time
    };
    let open_ss = || open_ss_with(StoreOptions::default());
    let open_sq = || {
        let at = Instant::now();
        let sqlite = Sqlite::open(&sq_path, Durability::Durable);
        sqlite.get_session(&sq_id).expect("active");
        at.elapsed()
    };
    let runs = 5;
    let clean = millis_row(
        "open_clean",
        median((0..runs).map(|_| open_ss()).collect()),
        median((0..runs).map(|_| open_sq()).collect()),
    );
    // A kill lands at a random point of the writer's cycle (one that
    // follows a checkpoint leaves nothing to replay): the median of three.
    let after_kills = |side: &str, path: &Path, session: &str, open: &dyn Fn() -> Duration| {
        median(
            (0..3)
                .map(|_| {
                    kill_writer(side, path, session);
                    open()
                })
                .collect(),
        )
    };
    let ss_written = ss_written.to_string();
    let ss_after_kill = after_kills("sessionstore", &ss_path, &ss_written, &open_ss);
    // The same without the page check before the replay
    // (`StoreOptions::verify_after_crash`): not one of the lines,
    // the other side of a trade the default makes the safe way.
    let unverified = || {
        open_ss_with(StoreOptions {
            redb: RedbOptions {
                verify_after_crash: false,
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        })
    };
    let ss_after_kill_unverified = after_kills("sessionstore", &ss_path, &ss_written, &unverified);
    let sq_after_kill = after_kills("sqlite", &sq_path, &sq_written, &open_sq);
    vec![
        clean,
        millis_row("open_after_kill", ss_after_kill, sq_after_kill),
        millis_row(
            "open_after_kill_unverified",
            ss_after_kill_unverified,
            sq_after_kill,
        ),
    ]
}

/// Runs a child process appending durable messages to `session` of the
/// store at `path`, and kills it (SIGKILL) in the middle of its writes.
fn kill_writer(side: &str, path: &Path, session: &str) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--child", side])
        .arg(path)
        .arg(session)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("read the child");
    assert_eq!(ready.trim(), "writing");
    std::thread::sleep(Duration::from_millis(700));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

/// The child of [`kill_writer`]: appends until killed.
fn child(args: &[String]) {
    let [side, path, session] = args else {
        panic!("--child SIDE PATH SESSION");
    };
    let path = Path::new(path);
    let turns = conversation(13, 64);
    let mut out = std::io::stdout();
    match side.as_str() {
        "sessionstore" => {
            let store = Arc::new(SessionStore::open(path).expect("open"));
            let id = Uuid::parse_str(session).expect("uuid");
            store.add_message(id, turns[0].to_new_message()).expect("add");
            writeln!(out, "writing")
                .and_then(|()| out.flush())
                .expect("stdout");
            for i in 1.. {
                store
                    .add_message(id, turns[i % turns.len()].to_new_message())
                    .expect("add");
            }
        }
        _ => {
            let sqlite = Sqlite::open(path, Durability::Durable);
            sqlite.add_message(session, &turns[0]);
            writeln!(out, "writing")
                .and_then(|()| out.flush())
                .expect("stdout");
            for i in 1.. {
                sqlite.add_message(session, &turns[i % turns.len()]);
            }
        }
    }
}
