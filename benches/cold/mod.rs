//! Issue 19's lines: where the message cache does not help. Reads with the
//! cache off, the first read after reopening a store whose pages were
//! evicted from the page cache, a durable append into a store already
//! holding 100,000 messages, and the bytes a clean open reads. Each beside
//! SQLite and, as a third side, the floor: a plain redb store
//! (`minimal.rs`).

mod minimal;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sessionstore::redb_engine::RedbOptions;
use sessionstore::{Durability, SessionStore, StoreOptions, Uuid};

use crate::common::{self, conversation, sql_session, ss_session, Sqlite, Turn};
use crate::{median, median_micros, percentile, Better, Config, Row};
use minimal::MinimalRedb;

/// The options of a store whose message cache is off: every read decodes.
fn cache_off() -> StoreOptions {
    StoreOptions {
        redb: RedbOptions {
            message_cache_bytes: 0,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    }
}

fn three_sides(workload: &'static str, unit: &'static str, ss: f64, sq: f64, floor: f64) -> Row {
    Row {
        workload,
        unit,
        sessionstore: ss,
        sqlite: sq,
        floor: Some(floor),
        postgres: None,
        better: Better::Lower,
    }
}

/// `get_session_*_cold`: a session of 10, 100 and 1,000 messages read with
/// the message cache off, the sides taking turns.
pub fn get_session_cold(config: Config, _notes: &mut Vec<String>) -> Vec<Row> {
    let dir = common::scratch();
    let store = SessionStore::open_with(dir.path().join("s.redb"), cache_off()).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let floor = MinimalRedb::open(&dir.path().join("m.redb"));
    [
        ("get_session_10_cold", 10, config.pick(300, 3000)),
        ("get_session_100_cold", 100, config.pick(200, 2000)),
        ("get_session_1000_cold", 1000, config.pick(30, 300)),
    ]
    .into_iter()
    .map(|(workload, n, iterations)| {
        let ss = ss_session(&store, n, n);
        let sq = sql_session(&sqlite, n, n);
        let fl = floor.load_session(&conversation(n, n));
        let ss_time = median_micros(iterations, || {
            let session = store.get_session(ss).expect("read").expect("active");
            assert_eq!(session.messages.len() as u64, n);
        });
        let sq_time = median_micros(iterations, || {
            assert_eq!(sqlite.get_session(&sq).expect("active").messages.len() as u64, n);
        });
        let floor_time = median_micros(iterations, || {
            assert_eq!(floor.get_session(fl).len() as u64, n);
        });
        three_sides(workload, "µs (median)", ss_time, sq_time, floor_time)
    })
    .collect()
}

/// Drops the pages of `paths` from the page cache (after writing back the
/// dirty ones, which `POSIX_FADV_DONTNEED` would keep): the next read of
/// them goes to the disk, as after a reboot or under memory pressure.
fn evict(paths: &[PathBuf]) {
    for path in paths {
        let Ok(file) = File::open(path) else { continue };
        file.sync_all().expect("sync before eviction");
        // SAFETY: a valid descriptor, owned by `file` for the call.
        let status = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(status, 0, "posix_fadvise on {}", path.display());
    }
}

/// The files each side keeps.
fn ss_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    files.extend(SessionStore::files_beside(path));
    files
}

fn sq_files(path: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|end| PathBuf::from(format!("{}{end}", path.display())))
        .collect()
}

/// Bytes this process has read (`rchar` of /proc/self/io: every read and
/// pread, page cache hits included) and the number of read calls.
fn reads_so_far() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .expect("an io counter")
    };
    (field("rchar:"), field("syscr:"))
}

/// Reads done by `f`: bytes and calls.
fn reads_of(f: impl FnOnce()) -> (u64, u64) {
    let before = reads_so_far();
    f();
    let after = reads_so_far();
    (after.0 - before.0, after.1 - before.1)
}

/// A store of each side holding `sessions` sessions of 100 messages.
struct Populated {
    dir: tempfile::TempDir,
    ss: Vec<Uuid>,
    sq: Vec<String>,
    floor: Vec<Uuid>,
}

impl Populated {
    fn load(sessions: u64) -> Populated {
        let dir = common::scratch();
        let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
        let relaxed = store.with_durability(Durability::Relaxed);
        let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Relaxed);
        let floor = MinimalRedb::open(&dir.path().join("m.redb"));
        let (mut ss, mut sq, mut fl) = (Vec::new(), Vec::new(), Vec::new());
        for n in 0..sessions {
            let turns = conversation(1_000 + n, 100);
            let id = relaxed.create_session(Some("reader")).expect("create");
            relaxed
                .add_messages(id, turns.iter().map(Turn::to_new_message).collect())
                .expect("add");
            ss.push(id);
            sq.push(sql_session(&sqlite, 1_000 + n, 100));
            fl.push(floor.load_session(&turns));
        }
        sqlite.checkpoint();
        Populated {
            dir,
            ss,
            sq,
            floor: fl,
        }
    }

    fn ss_path(&self) -> PathBuf {
        self.dir.path().join("s.redb")
    }

    fn sq_path(&self) -> PathBuf {
        self.dir.path().join("s.db")
    }

    fn floor_path(&self) -> PathBuf {
        self.dir.path().join("m.redb")
    }
}

/// `first_read_after_reopen_100`, `open_reads`, `add_message_populated`:
/// in stores of 100,000 messages (1,000 sessions of 100; 10,000 messages in
/// a quick run).
pub fn populated(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let sessions = config.pick(100, 1_000);
    let at = Instant::now();
    let stores = Populated::load(sessions);
    notes.push(format!(
        "\nPopulated stores: {} sessions of 100 messages on each side, loaded in {:.0} s.",
        sessions,
        at.elapsed().as_secs_f64()
    ));
    let mut rows = first_reads(config, &stores, notes);
    rows.extend(appends(config, &stores, notes));
    rows
}

fn first_reads(config: Config, stores: &Populated, notes: &mut Vec<String>) -> Vec<Row> {
    let runs = config.pick(5, 9);
    let (ss_path, sq_path, fl_path) = (stores.ss_path(), stores.sq_path(), stores.floor_path());
    let (mut ss_times, mut sq_times, mut fl_times) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ss_reads, mut sq_reads, mut fl_reads) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let pick = (run * 7_919) % stores.ss.len();
        evict(&ss_files(&ss_path));
        let mut store = None;
        ss_reads.push(reads_of(|| {
            store = Some(SessionStore::open(&ss_path).expect("open"))
        }));
        let store = store.expect("opened");
        let at = Instant::now();
        assert_eq!(
            store
                .get_session(stores.ss[pick])
                .expect("read")
                .expect("active")
                .messages
                .len(),
            100
        );
        ss_times.push(at.elapsed().as_secs_f64() * 1e6);
        drop(store);

        evict(&sq_files(&sq_path));
        let mut sqlite = None;
        sq_reads.push(reads_of(|| {
            sqlite = Some(Sqlite::open(&sq_path, Durability::Durable))
        }));
        let sqlite = sqlite.expect("opened");
        let at = Instant::now();
        assert_eq!(
            sqlite
                .get_session(&stores.sq[pick])
                .expect("active")
                .messages
                .len(),
            100
        );
        sq_times.push(at.elapsed().as_secs_f64() * 1e6);
        drop(sqlite);

        evict(std::slice::from_ref(&fl_path));
        let mut floor = None;
        fl_reads.push(reads_of(|| floor = Some(MinimalRedb::open(&fl_path))));
        let floor = floor.expect("opened");
        let at = Instant::now();
        assert_eq!(floor.get_session(stores.floor[pick]).len(), 100);
        fl_times.push(at.elapsed().as_secs_f64() * 1e6);
    }
    let kib = |reads: &[(u64, u64)]| median(reads.iter().map(|r| r.0 as f64 / 1024.0).collect());
    let calls = |reads: &[(u64, u64)]| median(reads.iter().map(|r| r.1).collect());
    notes.push(format!(
        "\nA clean open read {:.0} KiB in {} read calls (sessionstore), {:.0} KiB in {} (SQLite: open and its pragmas), {:.0} KiB in {} (plain redb); `rchar` and `syscr` of /proc/self/io, page cache hits included.",
        kib(&ss_reads),
        calls(&ss_reads),
        kib(&sq_reads),
        calls(&sq_reads),
        kib(&fl_reads),
        calls(&fl_reads),
    ));
    vec![
        three_sides(
            "first_read_after_reopen_100",
            "µs (median)",
            median(ss_times),
            median(sq_times),
            median(fl_times),
        ),
        three_sides(
            "open_reads",
            "KiB",
            kib(&ss_reads),
            kib(&sq_reads),
            kib(&fl_reads),
        ),
    ]
}

fn appends(config: Config, stores: &Populated, notes: &mut Vec<String>) -> Vec<Row> {
    let store = SessionStore::open(stores.ss_path()).expect("open");
    let sqlite = Sqlite::open(&stores.sq_path(), Durability::Durable);
    let floor = MinimalRedb::open(&stores.floor_path());
    let turns = conversation(5, 64);
    let iterations = config.pick(500, 3000);
    let (mut ss_times, mut sq_times, mut fl_times) = (Vec::new(), Vec::new(), Vec::new());
    // The sides take turns, each append to a session of the populated
    // store, so that all three see the same disk.
    for i in 0..iterations + iterations / 10 {
        let turn = &turns[i % turns.len()];
        let pick = (i * 31) % stores.ss.len();
        let at = Instant::now();
        store
            .add_message(stores.ss[pick], turn.to_new_message())
            .expect("add");
        let ss_time = at.elapsed();
        let at = Instant::now();
        sqlite.add_message(&stores.sq[pick], turn);
        let sq_time = at.elapsed();
        let at = Instant::now();
        floor.add_message(stores.floor[pick], turn);
        let fl_time = at.elapsed();
        if i >= iterations / 10 {
            ss_times.push(ss_time);
            sq_times.push(sq_time);
            fl_times.push(fl_time);
        }
    }
    for times in [&mut ss_times, &mut sq_times, &mut fl_times] {
        times.sort_unstable();
    }
    let p99 = three_sides(
        "add_message_populated_p99",
        "µs",
        percentile(&ss_times, 0.99),
        percentile(&sq_times, 0.99),
        percentile(&fl_times, 0.99),
    );
    notes.push(format!(
        "\nadd_message_populated: one thread, durable, each append to one of the populated sessions; plain redb commits each append durably (its p99 {:.0} µs).",
        percentile(&fl_times, 0.99)
    ));
    vec![
        three_sides(
            "add_message_populated",
            "µs (median)",
            percentile(&ss_times, 0.5),
            percentile(&sq_times, 0.5),
            percentile(&fl_times, 0.5),
        ),
        p99,
    ]
}
