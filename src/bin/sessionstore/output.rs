//! Printing: stdout that reports its errors instead of panicking, progress
//! bars on stderr, and the layouts of the old store's commands.

use std::io::{self, BufWriter, IsTerminal, StdoutLock, Write};
use std::sync::Arc;

use indicatif::{HumanBytes, ProgressBar, ProgressFinish, ProgressStyle};
use sessionstore::{Message, SearchHit, SessionInfo, SessionSummary};

use crate::Failure;

/// Buffered stdout; a write error becomes a [`Failure::Stdout`], or, for a
/// command that writes to the store, a [`Failure::StdoutAfterWrite`] that
/// carries every line the command printed.
pub struct Output {
    stdout: BufWriter<StdoutLock<'static>>,
    /// The lines printed so far, kept when the command writes to the store:
    /// they say what it did, and go to stderr if stdout fails.
    printed: Option<Vec<String>>,
    /// The first error of stdout, when `printed` is kept.
    failed: Option<io::Error>,
}

/// `say!(out, "format", args...)`: one line on stdout, or return the failure.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))?
    };
}
pub(crate) use say;

impl Output {
    /// Stdout for a command; `writes` when the command changes the store
    /// (or writes a file), so that a failing stdout cannot hide what it did.
    pub fn stdout(writes: bool) -> Self {
        Output {
            stdout: BufWriter::new(io::stdout().lock()),
            printed: writes.then(Vec::new),
            failed: None,
        }
    }

    pub fn line(&mut self, text: std::fmt::Arguments<'_>) -> Result<(), Failure> {
        let Some(printed) = &mut self.printed else {
            return writeln!(self.stdout, "{text}").map_err(Failure::Stdout);
        };
        // What is done is done: keep every line, whatever stdout does.
        let line = text.to_string();
        if self.failed.is_none() {
            self.failed = writeln!(self.stdout, "{line}").err();
        }
        printed.push(line);
        Ok(())
    }

    /// Writes out what is buffered; call once at the end.
    pub fn finish(mut self) -> Result<(), Failure> {
        let flushed = self.stdout.flush();
        let error = match (self.failed.take(), flushed) {
            (Some(error), _) | (None, Err(error)) => error,
            (None, Ok(())) => return Ok(()),
        };
        Err(match self.printed.take() {
            Some(printed) => Failure::StdoutAfterWrite { error, printed },
            None => Failure::Stdout(error),
        })
    }
}

/// A progress bar on stderr labelled `what`; hidden when stderr is not a
/// terminal, so scripts and cron jobs get no noise. It clears itself when
/// dropped, so an error line does not follow a half-drawn bar.
pub fn progress_bar(what: &'static str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0).with_finish(ProgressFinish::AndClear);
    let style = ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} ({eta})")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what);
    bar
}

/// The library's progress callback, moving `bar`.
pub fn advance(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}

/// `n thing` or `n things`.
pub fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A size as `1.50 MiB (1572864 bytes)`.
pub fn size(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", HumanBytes(bytes))
}

/// The old store's user line: the user id, or `anonymous`.
pub fn user(user_id: Option<&str>) -> &str {
    user_id.unwrap_or("anonymous")
}

/// The old `chat-history` layout: the session's fields, then its messages
/// numbered from 1 by their place in the session, each followed by a blank
/// line; `Results:` is the candidate set's `total_count`.
pub fn history(out: &mut Output, info: &SessionInfo, messages: &[Arc<Message>]) -> Result<(), Failure> {
    say!(out, "Session: {}", info.session_id);
    say!(out, "User: {}", user(info.user_id.as_deref()));
    say!(out, "Messages: {}", info.message_count);
    say!(out, "Created: {}", info.created_at);
    say!(out, "Updated: {}", info.updated_at);
    say!(out, "");
    say!(out, "--- Messages ---");
    say!(out, "");
    for message in messages {
        say!(out, "{}. [{}] {}", message.seq + 1, message.role, message.content);
        if message.query_plan.is_some() {
            say!(
                out,
                "   QueryPlan: {} filters",
                message.filter_count().unwrap_or(0)
            );
        }
        if message.candidate_set.is_some() {
            say!(
                out,
                "   Results: {} candidates",
                message.result_count().unwrap_or(0)
            );
        }
        say!(out, "   Time: {}", message.timestamp);
        say!(out, "");
    }
    Ok(())
}

/// One line of `chat-search`: session, seq, score, snippet.
pub fn search_line(out: &mut Output, hit: &SearchHit) -> Result<(), Failure> {
    say!(
        out,
        "{}  {:>5}  {:>7.3}  {}",
        hit.session_id,
        hit.seq,
        hit.score,
        hit.snippet
    );
    Ok(())
}

/// One line of `chat-sessions`: id, last activity, message count, title.
pub fn session_line(out: &mut Output, summary: &SessionSummary) -> Result<(), Failure> {
    let title: String = summary
        .title
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    say!(
        out,
        "{}  {}  {:>12}  {}{}",
        summary.session_id,
        summary.last_activity,
        count(summary.message_count, "message"),
        title,
        if summary.expired { "  [expired]" } else { "" }
    );
    Ok(())
}
