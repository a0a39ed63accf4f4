//! `sessionstore-migrate`: converts sessions.db SQLite files to and from
//! sessionstore files, and compares any two of them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sessionstore_migrate::{
    export, import, peak_memory_bytes, shown, verify, ExportOptions, ImportOptions, SchemaChoice,
};

#[derive(Parser)]
#[command(
    version,
    about = "Convert sessions.db SQLite files to and from sessionstore stores (files or PostgreSQL databases), losslessly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a store (a file or a PostgreSQL database) from a sessions.db
    /// SQLite file, or copy a store into another.
    Import {
        /// The sessions.db SQLite file, a store file, or a store's
        /// `postgres://` URL (all read only).
        source: PathBuf,
        /// The store file to write, or a `postgres://` URL of a database
        /// holding no sessions.
        dest: PathBuf,
        /// Replace DEST if it exists; refused when DEST is SOURCE itself
        /// (by any path or link), or a store a running process has open.
        /// A database DEST that holds sessions is loaded into instead (an
        /// id it holds already is refused).
        #[arg(long)]
        force: bool,
        /// Carry rows the store cannot hold (messages of a missing session,
        /// rows breaking a rule of the data model) uninterpreted instead of
        /// stopping: kept in the store file, invisible to its API, written
        /// back by export. Each is reported.
        #[arg(long)]
        carry_invalid_rows: bool,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Make a sessions.db SQLite file from a store (a file or a PostgreSQL
    /// database).
    Export {
        /// The store file, or a store's `postgres://` URL.
        source: PathBuf,
        /// The SQLite file to write.
        dest: PathBuf,
        /// The schema to write: `upgraded` (generation 2, both generations
        /// of the old store open it) or `documented` (generation 1 only).
        /// Default: the schema of the file the store was imported from,
        /// exactly; `upgraded` for a store made by the library.
        #[arg(long, value_enum)]
        schema: Option<SchemaArg>,
        /// Replace DEST if it exists; refused when DEST is SOURCE itself
        /// (by any path or link), or a store a running process has open.
        #[arg(long)]
        force: bool,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Compare two stores (SQLite files, store files or `postgres://`
    /// URLs, in any mix) by content; exit 0 when equal, 1 with the first
    /// differences otherwise.
    Verify {
        /// The first (called A in the report).
        a: PathBuf,
        /// The second (called B in the report).
        b: PathBuf,
        /// How many differences to show at most.
        #[arg(long, default_value_t = 20)]
        max_differences: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaArg {
    Documented,
    Upgraded,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> sessionstore_migrate::Result<ExitCode> {
    match command {
        Command::Import {
            source,
            dest,
            force,
            carry_invalid_rows,
            quiet,
        } => {
            let options = ImportOptions {
                force,
                carry_invalid_rows,
                progress: !quiet,
            };
            let report = import(&source, &dest, &options)?;
            println!(
                "imported {} sessions, {} messages and {} rows of other tables from {} into {}",
                report.sessions,
                report.messages,
                report.extra_rows,
                shown(&source).display(),
                shown(&dest).display()
            );
            if report.carried > 0 {
                println!(
                    "carried {} rows uninterpreted (--carry-invalid-rows):",
                    report.carried
                );
                for example in &report.carried_examples {
                    println!("  {example}");
                }
            }
            print_speed(report.messages, report.elapsed);
        }
        Command::Export {
            source,
            dest,
            schema,
            force,
            quiet,
        } => {
            let options = ExportOptions {
                force,
                schema: schema.map(|s| match s {
                    SchemaArg::Documented => SchemaChoice::Documented,
                    SchemaArg::Upgraded => SchemaChoice::Upgraded,
                }),
                progress: !quiet,
            };
            let report = export(&source, &dest, &options)?;
            println!(
                "exported {} sessions, {} messages and {} rows of other tables from {} into {} ({} schema)",
                report.sessions,
                report.messages,
                report.extra_rows,
                shown(&source).display(),
                dest.display(),
                report.schema
            );
            print_speed(report.messages, report.elapsed);
        }
        Command::Verify {
            a,
            b,
            max_differences,
        } => {
            let started = std::time::Instant::now();
            let differences = verify(&a, &b, max_differences.max(1))?;
            if differences.is_empty() {
                println!(
                    "equal: {} and {} hold the same content",
                    shown(&a).display(),
                    shown(&b).display()
                );
                println!("{:.2} s{}", started.elapsed().as_secs_f64(), peak_memory());
            } else {
                println!(
                    "A = {}, B = {}: they differ",
                    shown(&a).display(),
                    shown(&b).display()
                );
                for difference in &differences {
                    println!("  {difference}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_speed(messages: u64, elapsed: std::time::Duration) {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        messages as f64 / seconds
    } else {
        0.0
    };
    println!("{seconds:.2} s, {rate:.0} messages/s{}", peak_memory());
}

/// `, peak memory N MiB` where the platform tells.
fn peak_memory() -> String {
    peak_memory_bytes()
        .map(|b| format!(", peak memory {} MiB", b >> 20))
        .unwrap_or_default()
}
