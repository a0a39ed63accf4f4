//! Each command: call the library, print what it did.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use sessionstore::retrieval::{RetrievalFilter, RetrievalFormat};
use sessionstore::{query, Error, NewMessage, Session, SessionInfo, StoreOptions, Uuid};

use crate::args::{Cli, Command};
use crate::output::{self, say, Output};
use crate::store::Store;
use crate::Failure;

/// Sessions read per page by the commands that walk a user's sessions.
const PAGE: usize = 100;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let mut out = Output::stdout(cli.command.writes());
    let result = dispatch(&mut out, cli);
    let flushed = out.finish();
    result.and(flushed)
}

fn dispatch(out: &mut Output, cli: Cli) -> Result<(), Failure> {
    let db = cli.db.as_path();
    match cli.command {
        Command::ChatInit { user_id } => chat_init(out, db, user_id.as_deref())?,
        Command::Query {
            text,
            session_id,
            query_plan,
            candidate_set,
        } => record_query(
            out,
            db,
            session_id,
            text,
            query_plan.as_deref(),
            candidate_set.as_deref(),
        )?,
        Command::ChatHistory {
            session_id,
            last,
            json,
        } => chat_history(out, &open_to_read(db)?, session_id, last, json)?,
        Command::ChatCleanup {
            max_age_hours,
            purge_expired_days,
        } => chat_cleanup(out, &open(db)?, max_age_hours, purge_expired_days)?,
        Command::ChatSessions {
            user_id,
            include_expired,
            limit,
        } => chat_sessions(out, &open_to_read(db)?, &user_id, include_expired, limit)?,
        Command::ChatSearch { user_id, text, limit } => {
            chat_search(out, &open_to_read(db)?, &user_id, &text.join(" "), limit)?
        }
        Command::ChatExpire { session_id } => chat_expire(out, &open(db)?, session_id)?,
        Command::ChatDelete { session_id, yes } => chat_delete(out, &open(db)?, session_id, yes)?,
        Command::ChatEraseUser { user_id, yes } => chat_erase_user(out, &open(db)?, &user_id, yes)?,
        Command::Stats => stats(out, &open_to_read(db)?)?,
        Command::Backup { dest } => backup(out, &open_to_read(db)?, &dest)?,
        Command::Check => check(out, &open_to_read(db)?)?,
        Command::ChatFork { session_id, at } => chat_fork(out, &open(db)?, session_id, at)?,
        Command::Compact => compact(out, &open(db)?)?,
        Command::ExportRetrieval {
            format,
            out: dir,
            user,
            session,
            since,
            until,
            active_only,
        } => {
            let filter = RetrievalFilter {
                user,
                session,
                since,
                until,
                active_only,
            };
            export_retrieval(out, &open(db)?, format, &filter, &dir)?
        }
        #[cfg(feature = "server")]
        Command::Serve { listen, tokens } => serve(db, &listen, tokens)?,
        #[cfg(feature = "server")]
        Command::Token(crate::args::TokenCommand::Add {
            user,
            admin: _,
            tokens,
        }) => token_add(out, db, user, tokens)?,
    }
    Ok(())
}

/// The tokens file of `db` when none is given: `<db>.tokens`.
#[cfg(feature = "server")]
fn tokens_beside(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".tokens");
    name.into()
}

#[cfg(feature = "server")]
fn serve(db: &Path, listen: &str, tokens: Option<std::path::PathBuf>) -> Result<(), Failure> {
    use sessionstore::server::{ServerConfig, Tokens};
    let tokens = tokens.or_else(|| Some(tokens_beside(db)).filter(|path| path.exists()));
    let config = ServerConfig {
        tokens: tokens.as_deref().map(Tokens::load).transpose()?,
        ..ServerConfig::default()
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let store = sessionstore::SessionStore::open_with(db, existing()).map_err(|error| no_store(db, error))?;
    sessionstore::server::run(store, listen, config)?;
    Ok(())
}

#[cfg(feature = "server")]
fn token_add(
    out: &mut Output,
    db: &Path,
    user: Option<String>,
    tokens: Option<std::path::PathBuf>,
) -> Result<(), Failure> {
    use sessionstore::server::{Caller, Tokens};
    let path = tokens.unwrap_or_else(|| tokens_beside(db));
    let caller = user.map_or(Caller::Admin, Caller::User);
    let token = Tokens::add(&path, &caller)?;
    say!(out, "{token}");
    Ok(())
}

/// The options of every command but `chat-init`: an existing store only.
fn existing() -> StoreOptions {
    StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    }
}

/// A refusal to open `db` as a failure, saying how to make a store when
/// there is none.
fn no_store(db: &Path, error: Error) -> Failure {
    match error {
        Error::NoStore { why, .. } => Failure::Refused(format!(
            "no store at {}: {why}; create one with `sessionstore chat-init` or give --db",
            db.display()
        )),
        other => other.into(),
    }
}

/// Opens an existing store, or reaches it through the socket of the process
/// holding it; only `chat-init` creates one.
fn open(db: &Path) -> Result<Store, Failure> {
    Store::open(db, existing()).map_err(|error| no_store(db, error))
}

/// As [`open`], to read: read-only when this process may not write the
/// store's files (their mode, a read-only mount).
fn open_to_read(db: &Path) -> Result<Store, Failure> {
    match Store::open(db, existing()) {
        Err(error) if error.is_not_writable() => Store::open(
            db,
            StoreOptions {
                read_only: true,
                ..existing()
            },
        ),
        opened => opened,
    }
    .map_err(|error| no_store(db, error))
}

/// Why session `id` cannot be used: expired (and since when), or missing.
fn unusable(store: &Store, id: Uuid) -> Failure {
    match store.session_info(id) {
        Ok(Some(SessionInfo {
            expired_at: Some(at), ..
        })) => Failure::Refused(format!("session {id} is expired (since {at})")),
        Ok(_) => Failure::Store(sessionstore::Error::SessionNotFound(id)),
        Err(error) => Failure::Store(error),
    }
}

/// Turns "not found" refusals about `id` into the precise reason.
fn explain(store: &Store, id: Uuid, error: sessionstore::Error) -> Failure {
    if error.is_not_found() {
        unusable(store, id)
    } else {
        Failure::Store(error)
    }
}

fn chat_init(out: &mut Output, db: &Path, user_id: Option<&str>) -> Result<(), Failure> {
    let store = Store::open(db, StoreOptions::default())?;
    let id = store.create_session(user_id)?;
    say!(out, "Created session: {id}");
    say!(out, "User: {}", output::user(user_id));
    say!(out, "Database: {}", db.display());
    Ok(())
}

fn chat_fork(out: &mut Output, store: &Store, id: Uuid, at: u64) -> Result<(), Failure> {
    let fork = store.fork_session(id, at).map_err(|e| explain(store, id, e))?;
    say!(out, "Created session: {fork}");
    Ok(())
}

/// `-`, the name that means stdin.
fn is_stdin(path: &Path) -> bool {
    path == Path::new("-")
}

/// An input's name in messages.
fn input_name(path: &Path) -> String {
    if is_stdin(path) {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads a JSON input file, `-` meaning stdin, up to the store's content
/// limit: a larger one (`/dev/zero` never ends) is refused once the limit
/// is passed, having taken no more memory than that.
fn read_input(path: &Path, what: &str) -> Result<String, Failure> {
    let limit = StoreOptions::default().max_content_bytes;
    let refuse =
        |why: String| Failure::Refused(format!("cannot read the {what} from {}: {why}", input_name(path)));
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let read = if is_stdin(path) {
        std::io::stdin().lock().take(cap).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(cap).read_to_end(&mut bytes))
    };
    read.map_err(|e| refuse(e.to_string()))?;
    if bytes.len() > limit {
        return Err(refuse(format!("over the limit of {limit} bytes")));
    }
    String::from_utf8(bytes).map_err(|e| refuse(format!("not UTF-8 text: {e}")))
}

/// Says which input a refused value came from.
fn in_file(path: &Path) -> impl Fn(sessionstore::Error) -> Failure + '_ {
    move |error| Failure::Refused(format!("{}: {error}", input_name(path)))
}

fn record_query(
    out: &mut Output,
    db: &Path,
    id: Uuid,
    text: String,
    plan_file: Option<&Path>,
    set_file: Option<&Path>,
) -> Result<(), Failure> {
    if plan_file.is_some_and(is_stdin) && set_file.is_some_and(is_stdin) {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--query-plan and --candidate-set cannot both read stdin (`-`)",
            )
            .exit();
    }
    // Read and check every input before writing anything.
    let mut user_message = NewMessage::user(text);
    if let Some(file) = plan_file {
        user_message = user_message
            .with_query_plan(read_input(file, "query plan")?)
            .map_err(in_file(file))?;
    }
    let reply = match set_file {
        Some(file) => Some(query::results_reply(read_input(file, "candidate set")?).map_err(in_file(file))?),
        None => None,
    };
    let store = open(db)?;
    // The query and its reply land in one commit: both or neither.
    let turn = std::iter::once(user_message).chain(reply).collect();
    let saved = store.add_messages(id, turn).map_err(|e| explain(&store, id, e))?;
    let saved: Vec<String> = saved.iter().map(u64::to_string).collect();
    say!(out, "Saved to session {id}: messages {}", saved.join(", "));
    Ok(())
}

fn chat_history(
    out: &mut Output,
    store: &Store,
    id: Uuid,
    last: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let session = match last {
        None => store.get_session(id)?.ok_or_else(|| unusable(store, id))?,
        Some(n) => {
            let info = store.session_info(id)?.ok_or_else(|| unusable(store, id))?;
            let messages = store
                .get_recent_messages(id, n)?
                .ok_or_else(|| unusable(store, id))?;
            Session { info, messages }
        }
    };
    if json {
        let text = serde_json::to_string_pretty(&session)
            .map_err(|e| Failure::Refused(format!("cannot render session {id} as JSON: {e}")))?;
        say!(out, "{text}");
        return Ok(());
    }
    output::history(out, &session.info, &session.messages)
}

fn chat_cleanup(
    out: &mut Output,
    store: &Store,
    max_age_hours: u64,
    purge_expired_days: Option<u64>,
) -> Result<(), Failure> {
    let bar = output::progress_bar("expiring idle sessions");
    let expired = store.expire_old_sessions(hours(max_age_hours), &mut output::advance(&bar))?;
    let purged = match purge_expired_days {
        Some(days) => {
            bar.reset();
            bar.set_message("purging expired sessions");
            let older_than = hours(days.saturating_mul(24));
            let purged = store.purge_expired(older_than, &mut output::advance(&bar))?;
            Some((days, purged))
        }
        None => None,
    };
    bar.finish_and_clear();
    say!(out, "Expired {expired} sessions older than {max_age_hours} hours");
    if let Some((days, purged)) = purged {
        say!(out, "Deleted {purged} sessions expired more than {days} days ago");
    }
    Ok(())
}

fn hours(hours: u64) -> Duration {
    Duration::from_secs(hours.saturating_mul(3600))
}

/// Up to `limit` hits, a page at a time, one line each (a `limit` of 0
/// is the library's refusal).
fn chat_search(
    out: &mut Output,
    store: &Store,
    user: &str,
    query: &str,
    limit: usize,
) -> Result<(), Failure> {
    let mut left = limit;
    let mut cursor = None;
    let mut found = 0u64;
    loop {
        let page = store.search(user, query, cursor, left.min(PAGE))?;
        for hit in &page.hits {
            output::search_line(out, hit)?;
        }
        found += page.hits.len() as u64;
        left -= page.hits.len();
        match page.next {
            Some(next) if left > 0 => cursor = Some(next),
            _ => break,
        }
    }
    if found == 0 {
        say!(out, "No messages found for user {user}");
    }
    Ok(())
}

fn chat_sessions(
    out: &mut Output,
    store: &Store,
    user: &str,
    include_expired: bool,
    limit: Option<usize>,
) -> Result<(), Failure> {
    let mut left = limit.unwrap_or(usize::MAX);
    let mut cursor = None;
    let mut listed = 0u64;
    while left > 0 {
        let page = store.user_sessions_page(user, include_expired, cursor, left.min(PAGE))?;
        for summary in &page.sessions {
            output::session_line(out, summary)?;
        }
        listed += page.sessions.len() as u64;
        left -= page.sessions.len();
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if listed == 0 {
        let which = if include_expired {
            "sessions"
        } else {
            "active sessions"
        };
        say!(out, "No {which} for user {user}");
    }
    Ok(())
}

fn chat_expire(out: &mut Output, store: &Store, id: Uuid) -> Result<(), Failure> {
    if store.expire_session(id)? {
        say!(out, "Expired session {id}");
    } else {
        say!(out, "Session {id} was already expired");
    }
    Ok(())
}

fn chat_delete(out: &mut Output, store: &Store, id: Uuid, yes: bool) -> Result<(), Failure> {
    if !yes {
        let info = store
            .session_info(id)?
            .ok_or(sessionstore::Error::SessionNotFound(id))?;
        let state = if info.is_expired() { "expired" } else { "active" };
        return Err(Failure::Refused(format!(
            "not deleted: session {id} ({state}, {}) would be removed for good; add --yes to confirm",
            output::count(info.message_count, "message")
        )));
    }
    let messages = store.delete_session(id)?;
    say!(
        out,
        "Deleted session {id} and its {}",
        output::count(messages, "message")
    );
    Ok(())
}

fn chat_erase_user(out: &mut Output, store: &Store, user: &str, yes: bool) -> Result<(), Failure> {
    if !yes {
        let (sessions, messages) = user_totals(store, user)?;
        if sessions == 0 {
            return Err(Failure::Refused(format!("user {user} has no sessions")));
        }
        return Err(Failure::Refused(format!(
            "not erased: {} with {} of user {user} would be removed for good; add --yes to confirm",
            output::count(sessions, "session"),
            output::count(messages, "message")
        )));
    }
    let erased = store.erase_user(user)?;
    if erased.sessions == 0 {
        return Err(Failure::Refused(format!("user {user} has no sessions")));
    }
    say!(
        out,
        "Erased user {user}: {} and {} deleted",
        output::count(erased.sessions, "session"),
        output::count(erased.messages, "message")
    );
    Ok(())
}

/// How many sessions, active or expired, and messages `user` has.
fn user_totals(store: &Store, user: &str) -> Result<(u64, u64), Failure> {
    let (mut sessions, mut messages) = (0, 0);
    let mut cursor = None;
    loop {
        let page = store.user_sessions_page(user, true, cursor, PAGE)?;
        sessions += page.sessions.len() as u64;
        messages += page.sessions.iter().map(|s| s.message_count).sum::<u64>();
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok((sessions, messages)),
        }
    }
}

fn stats(out: &mut Output, store: &Store) -> Result<(), Failure> {
    let stats = store.stats()?;
    say!(out, "Active sessions: {}", stats.active_sessions);
    say!(out, "Expired sessions: {}", stats.expired_sessions);
    say!(out, "Messages: {}", stats.messages);
    say!(out, "File size: {}", output::size(stats.file_size));
    say!(out, "Journal size: {}", output::size(stats.journal_size));
    Ok(())
}

fn backup(out: &mut Output, store: &Store, dest: &Path) -> Result<(), Failure> {
    let bar = output::progress_bar("backing up");
    store.backup_to(dest, &mut output::advance(&bar))?;
    bar.finish_and_clear();
    let size = std::fs::metadata(dest)
        .map(|m| output::size(m.len()))
        .unwrap_or_else(|e| format!("size unknown: {e}"));
    say!(
        out,
        "Backed up {} to {}: {size}",
        store.path().display(),
        dest.display()
    );
    Ok(())
}

fn check(out: &mut Output, store: &Store) -> Result<(), Failure> {
    let bar = output::progress_bar("checking");
    let report = store.check(&mut output::advance(&bar))?;
    bar.finish_and_clear();
    let path = store.path().display();
    let read = format!(
        "{}, {} read",
        output::count(report.sessions, "session"),
        output::count(report.messages, "message")
    );
    if report.is_clean() {
        say!(out, "Clean: {path}: no problems found ({read})");
        return Ok(());
    }
    say!(
        out,
        "NOT CLEAN: {path}: {} found ({read})",
        output::count(report.problems.len() as u64, "problem")
    );
    for problem in &report.problems {
        say!(out, "  - {problem}");
    }
    Err(Failure::Refused(format!("{path} failed the integrity check")))
}

fn compact(out: &mut Output, store: &Store) -> Result<(), Failure> {
    let bar = output::progress_bar("compacting");
    let report = store.compact(&mut output::advance(&bar))?;
    bar.finish_and_clear();
    say!(out, "Compacted {}", store.path().display());
    say!(out, "Before: {}", output::size(report.before));
    say!(out, "After: {}", output::size(report.after));
    Ok(())
}

fn export_retrieval(
    out: &mut Output,
    store: &Store,
    format: RetrievalFormat,
    filter: &RetrievalFilter,
    dir: &Path,
) -> Result<(), Failure> {
    let bar = output::progress_bar("exporting retrieval");
    let export = store.export_retrieval(format, filter, dir, &mut output::advance(&bar))?;
    bar.finish_and_clear();
    let skipped: u64 = export.counts.skipped.values().sum();
    say!(
        out,
        "Exported {} ({}) as {format} to {}; {} skipped (reasons in manifest.json)",
        output::count(export.counts.events, "retrieval event"),
        output::count(export.counts.candidates, "candidate"),
        dir.display(),
        output::count(skipped, "message")
    );
    Ok(())
}
