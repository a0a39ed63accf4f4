//! The PostgreSQL server killed (SIGKILL, no shutdown) while threads
//! append durably, then started again: every acknowledged append is
//! there, whole, at dense seqs, none twice; the appends that failed
//! during the crash were retried under their idempotency keys.
//!
//! Needs the crash script `.ci/postgres` provides
//! (`SESSIONSTORE_TEST_POSTGRES_CRASH`); runs in its own test binary,
//! since it stops the server under every connection:
//! `.ci/postgres run -- cargo test --features postgres --test postgres_crash`.
#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sessionstore::{Error, NewMessage, Uuid};

mod postgres_support;
use postgres_support::Schema;

const THREADS: usize = 8;
const SESSIONS: usize = 4;

#[test]
fn acknowledged_appends_survive_a_server_crash() {
    let Some(schema) = Schema::fresh() else { return };
    let Ok(crash) = std::env::var("SESSIONSTORE_TEST_POSTGRES_CRASH") else {
        let required = std::env::var("SESSIONSTORE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "SESSIONSTORE_TEST_POSTGRES_CRASH is not set: run under .ci/postgres"
        );
        eprintln!("SKIPPED the crash of PostgreSQL: SESSIONSTORE_TEST_POSTGRES_CRASH is not set");
        return;
    };
    let engine = Arc::new(schema.store());
    let sessions: Arc<Vec<Uuid>> = Arc::new(
        (0..SESSIONS)
            .map(|_| engine.create_session(None).unwrap())
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (engine, sessions, stop) = (engine.clone(), sessions.clone(), stop.clone());
            thread::spawn(move || {
                // key -> (session, ids) of every acknowledged append.
                let mut acknowledged = BTreeMap::new();
                let mut failures = 0;
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let session = sessions[(t + n) % SESSIONS];
                    let key = format!("{t}-{n}");
                    let turn = || vec![NewMessage::user(key.clone()), NewMessage::assistant(key.clone())];
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let ids = loop {
                        match engine.add_messages_idempotent(session, &key, None, turn()) {
                            Ok(ids) => break ids,
                            Err(
                                Error::Unavailable {
                                    engine: "postgres", ..
                                }
                                | Error::Storage {
                                    engine: "postgres", ..
                                },
                            ) if Instant::now() < deadline => {
                                failures += 1;
                                thread::sleep(Duration::from_millis(50));
                            }
                            Err(e) => panic!("append {key}: {e}"),
                        }
                    };
                    acknowledged.insert(key, (session, ids));
                }
                (acknowledged, failures)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new(&crash).status().unwrap();
    assert!(status.success(), "{crash} failed");
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = BTreeMap::new();
    let mut failures = 0;
    for writer in writers {
        let (acks, failed) = writer.join().unwrap();
        acknowledged.extend(acks);
        failures += failed;
    }
    assert!(failures > 0, "no append saw the crash");

    let mut turns = 0;
    for &session in sessions.iter() {
        let messages = engine.get_session(session).unwrap().unwrap().messages;
        assert_eq!(messages.len() % 2, 0);
        for (n, pair) in messages.chunks(2).enumerate() {
            assert_eq!((pair[0].seq, pair[1].seq), (2 * n as u64, 2 * n as u64 + 1));
            let key = &pair[0].content;
            assert_eq!(&pair[1].content, key, "a turn was split");
            let (owner, ids) = acknowledged
                .get(key)
                .unwrap_or_else(|| panic!("{key} was never acknowledged"));
            assert_eq!(
                (*owner, ids.as_slice()),
                (session, [pair[0].id, pair[1].id].as_slice())
            );
        }
        turns += messages.len() / 2;
    }
    assert_eq!(
        turns,
        acknowledged.len(),
        "acknowledged turns lost or stored twice"
    );
    assert!(engine.check(&mut |_, _| {}).unwrap().is_clean());
}
