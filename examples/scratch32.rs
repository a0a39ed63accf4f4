#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;
use sessionstore::SessionStore;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let threads: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(32);
    let secs: u64 = std::env::args().nth(2).map(|a| a.parse().unwrap()).unwrap_or(6);
    let dir = tempfile::tempdir_in("target/bench-tmp").unwrap();
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let turns = common::conversation(5, 64);
    let elapsed = std::thread::scope(|scope| {
        for t in 0..threads {
            let (count, stop, turns, store) = (&count, &stop, &turns, &store);
            scope.spawn(move || {
                let id = store.create_session(Some("writer")).unwrap();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    store
                        .add_message(id, turns[i % turns.len()].to_new_message())
                        .unwrap();
                    i += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let at = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        at.elapsed()
    });
    println!(
        "{threads} threads: {:.0} msg/s",
        count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
    );
}
