//! `gen-sessions-db`: writes a sessions.db file shaped like the fixtures,
//! for benchmarks (deterministic for a seed).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sessionstore_migrate::generate::{generate, GenerateOptions};

#[derive(Parser)]
#[command(about = "Write a sessions.db file shaped like the old store's, for benchmarks")]
struct Cli {
    /// The SQLite file to write.
    dest: PathBuf,
    /// How many messages.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// The random seed: the same seed and count give the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replace DEST if it exists.
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = GenerateOptions {
        messages: cli.messages,
        seed: cli.seed,
        force: cli.force,
    };
    match generate(&cli.dest, &options) {
        Ok(report) => {
            println!(
                "wrote {} sessions and {} messages to {}",
                report.sessions,
                report.messages,
                cli.dest.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
