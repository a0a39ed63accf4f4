//! The command line, as clap derive definitions: every flag is documented
//! where it is defined, and `--help` shows that text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sessionstore::retrieval::RetrievalFormat;
use sessionstore::{Timestamp, Uuid};

/// Chat sessions in one redb file: the old store's commands, plus backup,
/// check and compact.
#[derive(Debug, Parser)]
#[command(name = "sessionstore", version, propagate_version = true)]
#[command(after_help = "Example:\n  sessionstore chat-init --user-id user123\n  \
                        sessionstore --db /srv/chat/sessions.redb stats")]
pub struct Cli {
    /// The store file. Created (with its folders) only by chat-init; every
    /// other command needs it to exist.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SESSIONSTORE_DB",
        default_value = "data/chat/sessions.redb"
    )]
    pub db: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a session and print its id.
    #[command(after_help = "Example:\n  sessionstore chat-init --user-id user123\n\n\
                            Prints exactly three lines:\n  Created session: <uuid>\n  \
                            User: user123\n  Database: data/chat/sessions.redb")]
    ChatInit {
        /// The session's owner; anonymous when left out.
        #[arg(long, value_name = "U")]
        user_id: Option<String>,
    },

    /// Record a query (and, given a candidate set, the reply) in a session.
    ///
    /// Running the query belongs to the caller; this records it: the user's
    /// text with its query plan, then, when a candidate set is given, the
    /// assistant's reply `Found N books matching your query` carrying it.
    #[command(after_help = "Example:\n  \
                            sessionstore query \"books by Oxford\" --session-id 550e8400-e29b-41d4-a716-446655440000 \\\n    \
                            --query-plan plan.json --candidate-set results.json\n  \
                            ./run_query.sh \"books by Oxford\" | sessionstore query \"books by Oxford\" \\\n    \
                            --session-id 550e8400-e29b-41d4-a716-446655440000 --candidate-set -")]
    Query {
        /// The user's query text.
        text: String,
        /// The session to record in (must be active).
        #[arg(long, value_name = "ID")]
        session_id: Uuid,
        /// A file holding the query plan, a JSON object; `-` reads stdin.
        #[arg(long, value_name = "FILE")]
        query_plan: Option<PathBuf>,
        /// A file holding the candidate set, a JSON object; `-` reads stdin.
        /// N in the reply is its `total_count`, else the length of its
        /// `candidates`.
        #[arg(long, value_name = "FILE")]
        candidate_set: Option<PathBuf>,
    },

    /// Show a session and its messages.
    #[command(after_help = "Example:\n  \
                            sessionstore chat-history 550e8400-e29b-41d4-a716-446655440000 --last 10\n  \
                            sessionstore chat-history 550e8400-e29b-41d4-a716-446655440000 --json | jq .context")]
    ChatHistory {
        /// The session (must be active).
        #[arg(value_name = "ID")]
        session_id: Uuid,
        /// Only the last N messages (reads only those).
        #[arg(long, value_name = "N")]
        last: Option<u64>,
        /// Print the session as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },

    /// Expire sessions left idle too long, and optionally delete old expired ones.
    #[command(after_help = "Example (a nightly cron job):\n  \
                            0 2 * * * sessionstore chat-cleanup --max-age-hours 24 --purge-expired-days 90 \
                            --db /srv/chat/sessions.redb")]
    ChatCleanup {
        /// Expire every active session not updated for this many hours.
        #[arg(long, value_name = "H")]
        max_age_hours: u64,
        /// Also delete for good, with their messages, the sessions expired
        /// more than this many days ago.
        #[arg(long, value_name = "D")]
        purge_expired_days: Option<u64>,
    },

    /// List a user's sessions, most recent first: id, last activity,
    /// message count, title.
    #[command(after_help = "Example:\n  sessionstore chat-sessions --user-id user123 --limit 5")]
    ChatSessions {
        /// Whose sessions.
        #[arg(long, value_name = "U")]
        user_id: String,
        /// Also list expired sessions (marked `[expired]`).
        #[arg(long)]
        include_expired: bool,
        /// At most N sessions; all when left out.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },

    /// Search a user's messages (active sessions), best first: one line a
    /// hit, with its session, seq, score and a snippet.
    #[command(
        after_help = "Example:\n  sessionstore chat-search --user-id user123 oxford books --limit 5\n\n\
                            Prints one line a hit:\n  <session> <seq> <score> <snippet>"
    )]
    ChatSearch {
        /// Whose messages.
        #[arg(long, value_name = "U")]
        user_id: String,
        /// The words to search for (several arguments are joined by spaces).
        #[arg(value_name = "TEXT", required = true, num_args = 1..)]
        text: Vec<String>,
        /// At most N hits.
        #[arg(long, value_name = "N", default_value_t = 10)]
        limit: usize,
    },

    /// Expire a session (soft delete: its data stays until purged).
    #[command(after_help = "Example:\n  sessionstore chat-expire 550e8400-e29b-41d4-a716-446655440000")]
    ChatExpire {
        /// The session.
        #[arg(value_name = "ID")]
        session_id: Uuid,
    },

    /// Delete a session and its messages for good (needs --yes).
    #[command(
        after_help = "Example:\n  sessionstore chat-delete 550e8400-e29b-41d4-a716-446655440000 --yes"
    )]
    ChatDelete {
        /// The session, active or expired.
        #[arg(value_name = "ID")]
        session_id: Uuid,
        /// Confirm the deletion; without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },

    /// Delete every session of a user, with their messages (an erasure
    /// request; needs --yes).
    #[command(after_help = "Example:\n  sessionstore chat-erase-user user123 --yes")]
    ChatEraseUser {
        /// Whose sessions.
        #[arg(value_name = "U")]
        user_id: String,
        /// Confirm the erasure; without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },

    /// Branch a session: a new session (same user, same context) holding
    /// copies of its messages before seq SEQ; prints the new session's id.
    #[command(after_help = "Example (regenerate the reply at seq 3 in a new chat):\n  \
                            sessionstore chat-fork 550e8400-e29b-41d4-a716-446655440000 --at 3\n\n\
                            Prints one line:\n  Created session: <uuid>")]
    ChatFork {
        /// The session to branch (must be active).
        #[arg(value_name = "ID")]
        session_id: Uuid,
        /// Keep the messages before this seq (0 keeps none; the message
        /// count keeps them all).
        #[arg(long, value_name = "SEQ")]
        at: u64,
    },

    /// Count active and expired sessions and messages, and give the file size.
    #[command(after_help = "Example:\n  sessionstore stats")]
    Stats,

    /// Write a consistent copy of the store to a new file while it stays in use.
    #[command(after_help = "Example:\n  \
                            sessionstore backup data/chat/sessions_backup_$(date +%Y%m%d).redb")]
    Backup {
        /// The copy to write; refused if it exists.
        #[arg(value_name = "DEST")]
        dest: PathBuf,
    },

    /// Check the file's integrity; exits 1 when it is not clean.
    #[command(after_help = "Example:\n  sessionstore check && echo clean")]
    Check,

    /// Rewrite the file to hold only live data, and print its size before and after.
    #[command(
        after_help = "Example:\n  sessionstore chat-cleanup --max-age-hours 24 --purge-expired-days 30 \
                            && sessionstore compact"
    )]
    Compact,

    /// Export what the chatbot retrieved (each reply carrying a candidate
    /// set, with the query it answers) for retrieval evaluation tools, from
    /// one consistent snapshot, and print a summary line.
    ///
    /// Writes into DIR, with a manifest.json: jsonl: events.jsonl; trec:
    /// run.trec and topics.tsv; beir: queries.jsonl and corpus.jsonl;
    /// ragas: ragas.jsonl. Expired sessions are included unless
    /// --active-only; replies whose candidate set lacks the fields are
    /// skipped and counted in the manifest.
    #[command(after_help = "Example:\n  \
                            sessionstore export-retrieval --format trec --out eval/ --since 2026-11-01T00:00:00\n  \
                            ir_measures qrels.txt eval/run.trec nDCG@10")]
    ExportRetrieval {
        /// jsonl, trec, beir or ragas.
        #[arg(long, value_name = "FORMAT")]
        format: RetrievalFormat,
        /// The folder to write into (created if missing; the files named
        /// above are replaced whole, only once all are written).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only this user's sessions.
        #[arg(long, value_name = "U")]
        user: Option<String>,
        /// Only this session.
        #[arg(long, value_name = "ID")]
        session: Option<Uuid>,
        /// Only replies at or after this ISO 8601 time (naive times are UTC).
        #[arg(long, value_name = "T")]
        since: Option<Timestamp>,
        /// Only replies before this ISO 8601 time (naive times are UTC).
        #[arg(long, value_name = "T")]
        until: Option<Timestamp>,
        /// Leave out expired sessions.
        #[arg(long)]
        active_only: bool,
    },

    /// Serve the store's HTTP API until SIGINT or SIGTERM.
    ///
    /// Without tokens it listens only on loopback (every request is an
    /// admin's); with them, every route but /v1/health and
    /// /v1/openapi.json needs `Authorization: Bearer <token>`.
    #[cfg(feature = "server")]
    #[command(after_help = "Example:\n  sessionstore token add --admin\n  \
                            sessionstore serve --listen 0.0.0.0:8080 --tokens data/chat/sessions.redb.tokens")]
    Serve {
        /// The address and port to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: String,
        /// The tokens file (hashes only, see `token add`); by default
        /// `<db>.tokens` when it exists.
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },

    /// Manage the bearer tokens `serve` accepts.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Token(TokenCommand),
}

impl Command {
    /// Whether the command writes: to the store, or (`backup`, `export-retrieval`) new files.
    pub fn writes(&self) -> bool {
        match self {
            Command::ChatInit { .. }
            | Command::Query { .. }
            | Command::ChatCleanup { .. }
            | Command::ChatExpire { .. }
            | Command::ChatDelete { .. }
            | Command::ChatEraseUser { .. }
            | Command::ChatFork { .. }
            | Command::Backup { .. }
            | Command::Compact
            | Command::ExportRetrieval { .. } => true,
            #[cfg(feature = "server")]
            Command::Serve { .. } | Command::Token(_) => true,
            Command::ChatHistory { .. }
            | Command::ChatSessions { .. }
            | Command::ChatSearch { .. }
            | Command::Stats
            | Command::Check => false,
        }
    }
}

/// The subcommands of `token`.
#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new random token, store its hash, and print it: the only
    /// time it is shown.
    #[command(
        after_help = "Example:\n  sessionstore token add --user user123\n  sessionstore token add --admin"
    )]
    Add {
        /// Bind the token to this user: it sees only this user's sessions.
        #[arg(
            long,
            value_name = "U",
            required_unless_present = "admin",
            conflicts_with = "admin"
        )]
        user: Option<String>,
        /// Make an admin token: every session and the admin routes.
        #[arg(long)]
        admin: bool,
        /// The tokens file to add to (created with mode 0600); by default
        /// `<db>.tokens`.
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
}
