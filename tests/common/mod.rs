//! Helpers shared by the reliability tests (`tests/reliability_*.rs`).
//!
//! Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use sessionstore::SessionStore;

/// True when the long runs were asked for (`SESSIONSTORE_LONG=1`).
pub fn long_run() -> bool {
    std::env::var_os("SESSIONSTORE_LONG").is_some_and(|v| v != "0" && !v.is_empty())
}

/// `short` in `cargo test`, `long` under `SESSIONSTORE_LONG=1`.
pub fn scale<T>(short: T, long: T) -> T {
    if long_run() {
        long
    } else {
        short
    }
}

/// The seed of a run: `SESSIONSTORE_SEED` when given (to replay a failure),
/// else the clock. Printed so that a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SESSIONSTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: SESSIONSTORE_SEED={seed}");
    seed
}

/// A small deterministic generator (SplitMix64): the tests must replay
/// from a printed seed, and need nothing more.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

/// Message content made from `seed`, `len` characters long: ASCII, accents,
/// emoji and NUL, so that a test can rebuild it and compare byte for byte.
pub fn content(seed: u64, len: usize) -> String {
    const PIECES: [&str; 8] = ["a", "Z", " ", "é", "😀", "\0", "\n", "語"];
    let mut rng = Rng::new(seed);
    (0..len).map(|_| PIECES[rng.below(8) as usize]).collect()
}

/// Asserts the integrity check finds nothing wrong.
pub fn assert_clean(store: &SessionStore) {
    let report = store.check(&mut |_, _| {}).expect("check runs");
    assert!(report.is_clean(), "check found problems: {:#?}", report.problems);
}
