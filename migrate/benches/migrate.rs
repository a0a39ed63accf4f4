//! The migrate benchmark: generates (or reuses) a fixtures-shaped
//! sessions.db of 1,000,000 messages, then times the release binary's
//! `import`, `export` and `verify` on it, printing messages per second and
//! each run's peak resident memory.
//!
//! ```text
//! cargo bench -p sessionstore-migrate --bench migrate
//! MIGRATE_BENCH_MESSAGES=200000 cargo bench -p sessionstore-migrate --bench migrate
//! ```
//!
//! Files go to `MIGRATE_BENCH_DIR` (default: cargo's target tmp folder);
//! the generated input is kept and reused. Before each timed command the
//! bench removes that command's earlier output and runs `sync`, untimed, so
//! neither deleting an old file nor an earlier phase's writeback is charged
//! to the command measured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sessionstore::SessionStore;
use sessionstore_migrate::generate::{generate, GenerateOptions, GENERATOR_VERSION};

const SEED: u64 = 1;

fn main() {
    let messages: u64 = std::env::var("MIGRATE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::var_os("MIGRATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("migrate-bench"));
    std::fs::create_dir_all(&dir).expect("create the benchmark folder");
    let source = dir.join(format!("sessions-{messages}-seed{SEED}-v{GENERATOR_VERSION}.db"));
    if !source.exists() {
        let started = Instant::now();
        let options = GenerateOptions {
            messages,
            seed: SEED,
            force: false,
        };
        let report = generate(&source, &options).expect("generate the input");
        println!(
            "generated {} sessions, {} messages in {:.1} s",
            report.sessions,
            report.messages,
            started.elapsed().as_secs_f64()
        );
    }
    println!("input: {} ({} MiB)", source.display(), size(&source) >> 20);
    let store = dir.join("sessions.redb");
    let back = dir.join("back.db");
    run("import", &[&source, &store], messages);
    println!("  store: {} MiB", size(&store) >> 20);
    run("export", &[&store, &back], messages);
    println!("  exported: {} MiB", size(&back) >> 20);
    run("verify", &[&source, &back], messages);
}

/// Runs one command of the release binary and prints its timing. The
/// command's output (the last of `files`) is removed first.
fn run(command: &str, files: &[&Path], messages: u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionstore-migrate"));
    child.arg(command).args(files);
    if command != "verify" {
        child.arg("--quiet");
        let output = files[files.len() - 1];
        for file in std::iter::once(output.to_path_buf()).chain(SessionStore::files_beside(output)) {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    panic!("remove {}: {e}", file.display())
                }
                _ => {}
            }
        }
    }
    let synced = Command::new("sync").status().expect("run sync");
    assert!(synced.success(), "sync failed");
    println!(
        "{command}: load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let started = Instant::now();
    let output = child.output().expect("run sessionstore-migrate");
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{command} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "{command}: {seconds:.2} s wall, {:.0} messages/s",
        messages as f64 / seconds
    );
    for line in stdout.lines() {
        println!("  {line}");
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
