//! # sessionstore-migrate
//!
//! Lossless conversion between the old Python store's `sessions.db` SQLite
//! files and sessionstore files, and a content comparison of any two of
//! them. The library ([`sessionstore`]) owns the data model and its rules;
//! this crate maps SQLite rows to and from the library's types.
//!
//! ```no_run
//! use std::path::Path;
//! use sessionstore_migrate::{export, import, verify, ExportOptions, ImportOptions};
//! let report = import(Path::new("sessions.db"), Path::new("sessions.redb"), &ImportOptions::default())?;
//! println!("{} sessions, {} messages", report.sessions, report.messages);
//! export(Path::new("sessions.redb"), Path::new("backup.db"), &ExportOptions::default())?;
//! assert!(verify(Path::new("sessions.db"), Path::new("backup.db"), 10)?.is_empty());
//! # Ok::<(), sessionstore_migrate::Error>(())
//! ```

#![deny(missing_docs)]

mod builtin_schema;
mod copy;
mod error;
mod export;
pub mod generate;
mod import;
mod location;
mod output;
mod progress;
mod read_ahead;
mod replace;
mod schema;
mod sqlite;
mod verify;

pub use error::{Error, Result};
pub use export::{export, ExportOptions, ExportReport};
pub use import::{import, ImportOptions, ImportReport};
pub use location::shown;
pub use schema::SchemaChoice;
pub use verify::{verify, Difference};

/// The process's peak resident memory in bytes (Linux: `VmHWM` of
/// `/proc/self/status`); `None` where that is not available.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
