//! `sessionstore`: the command line over the sessionstore library.
//!
//! It parses arguments (args.rs), calls the library (commands.rs) and prints
//! (output.rs); every rule about the data lives in the library.
//!
//! Exit codes: 0 done, 1 not found, refused or failed, 2 usage. Errors are one
//! line on stderr, `error: <what and why>`.

mod args;
mod commands;
mod output;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

/// Why a command did not finish.
#[derive(Debug)]
pub enum Failure {
    /// Not found or refused; the text says what and why.
    Refused(String),
    /// The library refused or failed.
    Store(sessionstore::Error),
    /// Writing to stdout failed (a broken pipe ends the command quietly).
    Stdout(io::Error),
}

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
