//! Issue 7, test 1: SIGKILL at random moments loses no acknowledged message.
//!
//! The test binary runs itself again as a child (the ignored test
//! `kill_child`, selected with `--exact`): several threads append messages
//! to several sessions and print each acknowledged message (session, id,
//! and the seed and length its content is made from) on its own flushed
//! line. The parent kills the child with SIGKILL (`Child::kill`) at a random
//! moment, some just as the store is opening (and repairing after the last
//! kill), the rest while it writes; then reopens the store and checks that
//! every acknowledged message is there byte for byte, seqs are dense, the
//! integrity check is clean and the store takes a write. Every other
//! reopen replays without the page check before it
//! (`StoreOptions::verify_after_crash` off).
//!
//! Each check reads the whole store, so a fresh store is started every
//! [`FRESH_EVERY`] kills (10 in the bounded run) to keep rounds short; every
//! kill is still checked in full, and each store's early kills land in its
//! open and the journal replay after the kill before. Stores alternate
//! between the default journal and the smallest one
//! (`RedbOptions::MIN_JOURNAL_BYTES`), where the 20 KB messages of
//! several threads make batches that do not fit and go to the database in
//! a durable commit.
//!
//! Bounded: 20 kills. Long: `SESSIONSTORE_LONG=1 cargo test --release
//! --test reliability_kill -- --nocapture` runs 1,000 (`SESSIONSTORE_CASES`
//! sets another count).

mod common;

use sessionstore::redb_engine::RedbOptions;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{assert_clean, cases, content, scale, seed, Rng};
use sessionstore::{NewMessage, SessionStore, StoreOptions, Uuid};

/// Tells the child test where the store is,
const CHILD_ENV: &str = "SESSIONSTORE_KILL_CHILD";
/// and the size of its journal.
const JOURNAL_ENV: &str = "SESSIONSTORE_KILL_JOURNAL";
/// A long run starts a fresh store after this many kills.
const FRESH_EVERY: usize = 100;
const USER: &str = "kill-test";
const SESSIONS: usize = 4;
const THREADS: u64 = 4;

/// A message the child acknowledged: where it is and how to rebuild it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Acked {
    session: Uuid,
    seed: u64,
    len: usize,
}

/// The child: opens the store, makes sure it has its sessions, then appends
/// from several threads until killed.
#[test]
#[ignore = "child process of the kill test; runs only with SESSIONSTORE_KILL_CHILD set"]
fn kill_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").expect("parent reads stdout");
        out.flush().expect("parent reads stdout");
    };
    let journal_bytes = std::env::var(JOURNAL_ENV)
        .expect("the parent gives the journal's size")
        .parse()
        .expect("a journal size");
    say("OPENING".into());
    let store = open(Path::new(&path), journal_bytes, true).expect("child opens the store");
    say("OPEN".into());
    let mut sessions = store.list_user_sessions(USER, false).expect("list sessions");
    while sessions.len() < SESSIONS {
        sessions.push(store.create_session(Some(USER)).expect("create session"));
    }
    let seed = std::process::id() as u64 ^ seed("kill child");
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (store, sessions) = (&store, &sessions);
            scope.spawn(move || {
                let mut rng = Rng::new(seed.wrapping_add(thread));
                loop {
                    let session = sessions[rng.below(SESSIONS as u64) as usize];
                    let seed = rng.next_u64();
                    let len = if rng.chance(3) {
                        20_000
                    } else {
                        rng.below(300) as usize
                    };
                    let id = store
                        .add_message(session, NewMessage::user(content(seed, len)))
                        .expect("append");
                    say(format!("A {session} {id} {seed} {len}"));
                }
            });
        }
    });
}

fn open(path: &Path, journal_bytes: u64, verify_after_crash: bool) -> sessionstore::Result<SessionStore> {
    let options = StoreOptions {
        redb: RedbOptions {
            max_journal_bytes: journal_bytes,
            verify_after_crash,
            ..RedbOptions::default()
        },
        ..StoreOptions::default()
    };
    SessionStore::open_with(path, options)
}

/// What the parent saw of one child's life.
struct Round {
    acked: Vec<(u64, Acked)>,
    opened: bool,
}

/// Runs one child and kills it: as soon as it starts opening the store when
/// `during_open`, else `after` once it has opened.
fn run_and_kill(path: &Path, journal_bytes: u64, during_open: bool, after: Duration) -> Round {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "kill_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .env(JOURNAL_ENV, journal_bytes.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // Only whole lines count: the kill may cut the last one.
        while stdout.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
            if lines.send(line.trim_end().to_owned()).is_err() {
                break;
            }
            line.clear();
        }
    });
    let mut seen = Vec::new();
    // The harness prints "test kill_child ... " before the child's first
    // line, so markers are matched at the end of a line.
    let mut wait_for = |marker: &str| loop {
        match received.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let found = line.ends_with(marker);
                seen.push(line);
                if found {
                    return true;
                }
            }
            Err(_) => return false,
        }
    };
    let marker = if during_open { "OPENING" } else { "OPEN" };
    assert!(wait_for(marker), "the child never printed {marker}");
    std::thread::sleep(after);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    reader.join().expect("reader");
    seen.extend(received.try_iter());
    let mut round = Round {
        acked: Vec::new(),
        opened: !during_open,
    };
    for line in seen {
        if line.ends_with("OPEN") {
            round.opened = true;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        if let ["A", session, id, seed, len] = parts[..] {
            round.acked.push((
                id.parse().expect("id"),
                Acked {
                    session: session.parse().expect("session"),
                    seed: seed.parse().expect("seed"),
                    len: len.parse().expect("len"),
                },
            ));
        }
    }
    round
}

/// Reopens the store (with the page check before a replay, or without)
/// and checks every acknowledged message, the seqs, the integrity check,
/// and that it takes a write (which becomes acknowledged).
fn verify(path: &Path, journal_bytes: u64, check: bool, acked: &mut HashMap<u64, Acked>, rng: &mut Rng) {
    let store = open(path, journal_bytes, check).expect("the store reopens after a kill");
    let mut by_session: HashMap<Uuid, Vec<u64>> = HashMap::new();
    for (id, a) in acked.iter() {
        by_session.entry(a.session).or_default().push(*id);
    }
    for (session, ids) in &by_session {
        let got = store
            .get_session(*session)
            .expect("read")
            .expect("a session with acknowledged messages");
        for (seq, message) in got.messages.iter().enumerate() {
            assert_eq!(message.seq, seq as u64, "seqs are dense");
        }
        assert_eq!(got.message_count, got.messages.len() as u64);
        let stored: HashMap<u64, &sessionstore::Message> =
            got.messages.iter().map(|m| (m.id, &**m)).collect();
        for id in ids {
            let a = acked[id];
            let message = stored
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged message {id} of session {session} is lost"));
            assert!(
                message.content == content(a.seed, a.len),
                "message {id} differs from what was acknowledged"
            );
        }
    }
    assert_clean(&store);
    if let Some(session) = by_session.keys().next().copied() {
        let (seed, len) = (rng.next_u64(), 10);
        let id = store
            .add_message(session, NewMessage::assistant(content(seed, len)))
            .expect("the store takes a write after a kill");
        acked.insert(id, Acked { session, seed, len });
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_message() {
    let kills = scale(20, cases(1000) as usize);
    let fresh_every = scale(10, FRESH_EVERY);
    let mut rng = Rng::new(seed("kill"));
    let dir = tempfile::tempdir().unwrap();
    let mut path = PathBuf::new();
    let mut journal_bytes = 0;
    let mut acked: HashMap<u64, Acked> = HashMap::new();
    let (mut during_open, mut while_writing, mut all_acked) = (0, 0, 0);
    for round in 0..kills {
        if round % fresh_every == 0 {
            let store = round / fresh_every;
            if store > 0 {
                for file in SessionStore::files_beside(&path).into_iter().chain([path]) {
                    std::fs::remove_file(file).expect("remove the last store");
                }
            }
            path = dir.path().join(format!("kill-{store}.redb"));
            journal_bytes = if store % 2 == 0 {
                StoreOptions::default().redb.max_journal_bytes
            } else {
                RedbOptions::MIN_JOURNAL_BYTES
            };
            all_acked += acked.len();
            acked.clear();
        }
        // Every fourth kill of a store lands as it opens; not its first,
        // which would cut the file's creation short (a known weakness, see
        // docs/reliability.md; the power-loss test covers it).
        let early = round % fresh_every % 4 == 3;
        let after = if early {
            Duration::from_micros(rng.below(3000))
        } else {
            rng.millis(250)
        };
        let result = run_and_kill(&path, journal_bytes, early, after);
        if result.opened {
            while_writing += 1;
        } else {
            during_open += 1;
        }
        for (id, a) in result.acked {
            assert!(
                acked.insert(id, a).is_none(),
                "round {round}: message id {id} given twice"
            );
        }
        verify(&path, journal_bytes, round % 2 == 1, &mut acked, &mut rng);
        if (round + 1) % 100 == 0 {
            eprintln!(
                "kill: {} kills survived, {} acknowledged messages",
                round + 1,
                all_acked + acked.len()
            );
        }
    }
    let all_acked = all_acked + acked.len();
    // A store of the bounded run opens in about a millisecond: its few
    // early kills may all come too late on a loaded machine. Over the long
    // run's 250, about 200 land in the open.
    assert!(
        during_open > 0 || kills < 100,
        "no kill landed while the store was opening"
    );
    assert!(
        all_acked > kills,
        "the children acknowledged too little to test anything"
    );
    eprintln!(
        "kill: {kills} SIGKILLs survived ({during_open} while opening, {while_writing} while writing) \
         in {} stores, {all_acked} acknowledged messages all present byte for byte",
        kills.div_ceil(fresh_every)
    );
}
