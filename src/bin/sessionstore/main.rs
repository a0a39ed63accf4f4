//! `sessionstore`: the command line over the sessionstore library.
//!
//! It parses arguments (args.rs), calls the library (commands.rs) and prints
//! (output.rs); every rule about the data lives in the library.
//!
//! Exit codes:
//!
//! - 0: done.
//! - 1: not found, refused or failed (stderr says what and why).
//! - 2: usage (bad arguments); nothing was written.
//! - 3: done, but stdout failed (full disk, closed pipe): the command's
//!   write happened, and stderr carries what it would have printed (the
//!   new session's id, the saved messages' ids, ...). Do not run it again.
//!
//! Errors are one line on stderr, `error: <what and why>` (with exit code 3,
//! followed by the lines stdout did not take).

mod args;
mod commands;
mod output;
mod store;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system's malloc: `sessionstore serve` spends a
/// third less CPU an append (glibc's malloc coalesced the writer's 4 KiB
/// pages and the request buffers freed across threads; see
/// docs/benchmarks.md, the server section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Why a command did not finish.
#[derive(Debug)]
pub enum Failure {
    /// Not found or refused; the text says what and why.
    Refused(String),
    /// The library refused or failed.
    Store(sessionstore::Error),
    /// Writing to stdout failed (a broken pipe ends the command quietly).
    Stdout(io::Error),
    /// Writing to stdout failed after the command wrote to the store: what
    /// it printed, to be told on stderr instead.
    StdoutAfterWrite {
        /// Why stdout failed.
        error: io::Error,
        /// Every line the command printed.
        printed: Vec<String>,
    },
}

/// The exit code of a command that did its work but could not print it.
const DONE_BUT_STDOUT_FAILED: u8 = 3;

impl From<sessionstore::Error> for Failure {
    fn from(error: sessionstore::Error) -> Self {
        Failure::Store(error)
    }
}

impl Failure {
    /// Reports the failure on stderr and gives the exit code.
    fn report(self) -> ExitCode {
        let message = match self {
            Failure::Stdout(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                return ExitCode::SUCCESS;
            }
            Failure::Stdout(error) => format!("cannot write to stdout: {error}"),
            Failure::StdoutAfterWrite { error, printed } => {
                // Nothing is left to tell if stderr itself is gone.
                let _ = write!(
                    io::stderr(),
                    "error: cannot write to stdout: {error}\n\
                     the command was done (do not run it again); its output:\n{}",
                    printed.iter().map(|line| format!("{line}\n")).collect::<String>()
                );
                return ExitCode::from(DONE_BUT_STDOUT_FAILED);
            }
            Failure::Refused(message) => message,
            Failure::Store(error) => error.to_string(),
        };
        // Nothing is left to tell if stderr itself is gone.
        let _ = writeln!(io::stderr(), "error: {message}");
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
