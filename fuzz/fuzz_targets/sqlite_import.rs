//! The SQLite import on any file given as `sessions.db`: an error or a
//! store, never a panic.
#![no_main]

use sessionstore_migrate::{import, ImportOptions};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let dir = tempfile::tempdir().expect("temporary folder");
    let source = dir.path().join("sessions.db");
    std::fs::write(&source, bytes).expect("write the input");
    let options = ImportOptions {
        carry_invalid_rows: bytes.first().is_some_and(|b| b % 2 == 1),
        ..ImportOptions::default()
    };
    let _ = import(&source, &dir.path().join("out.redb"), &options);
});
