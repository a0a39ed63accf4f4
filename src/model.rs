//! The data model: sessions, messages, roles, and the values the store keeps
//! for the SQLite converter without interpreting them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::timestamp::Timestamp;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person chatting.
    User,
    /// The chatbot.
    Assistant,
    /// Instructions to the chatbot.
    System,
}

impl Role {
    /// The role as the old store wrote it: `user`, `assistant` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "system" => Ok(Role::System),
            other => Err(Error::invalid(
                "role",
                format!("{other:?} is not one of user, assistant, system"),
            )),
        }
    }
}

/// A value of a SQLite column or table the store carries without
/// interpreting it (the generation-2 `phase` column, `user_goals` rows, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExtraValue {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// Extra columns of a row, by column name.
pub type ExtraColumns = BTreeMap<String, ExtraValue>;

/// A message to add to a session.
///
/// ```
/// use sessionstore::{NewMessage, Role};
/// let m = NewMessage::user("books by Oxford")
///     .with_query_plan(r#"{"filters": []}"#)
///     .unwrap();
/// assert_eq!(m.role, Role::User);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text; may be empty and may hold any Unicode, NUL included.
    pub content: String,
    /// The query plan, a JSON object.
    pub query_plan: Option<JsonText>,
    /// The candidate set, a JSON object.
    pub candidate_set: Option<JsonText>,
    /// Its length in tokens, as the caller's tokenizer counts it (see
    /// [`SessionStore::messages_within`](crate::SessionStore::messages_within)).
    pub tokens: Option<u32>,
}

impl NewMessage {
    /// A message with the given role and content.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        NewMessage {
            role,
            content: content.into(),
            query_plan: None,
            candidate_set: None,
            tokens: None,
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// Attaches a query plan; refuses text that is not a JSON object.
    pub fn with_query_plan(mut self, json: impl Into<String>) -> Result<Self> {
        self.query_plan = Some(JsonText::object("query_plan", json)?);
        Ok(self)
    }

    /// Attaches a candidate set; refuses text that is not a JSON object.
    pub fn with_candidate_set(mut self, json: impl Into<String>) -> Result<Self> {
        self.candidate_set = Some(JsonText::object("candidate_set", json)?);
        Ok(self)
    }

    /// Attaches its token count (the caller knows the model's tokenizer).
    ///
    /// ```
    /// use sessionstore::NewMessage;
    /// assert_eq!(NewMessage::user("hello").with_tokens(2).tokens, Some(2));
    /// ```
    pub fn with_tokens(mut self, tokens: u32) -> Self {
        self.tokens = Some(tokens);
        self
    }
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Global id, unique across sessions and never reused (the old store's
    /// `chat_messages.id`).
    pub id: u64,
    /// Position in its session, counting from 0, dense.
    pub seq: u64,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// The query plan, exactly as given.
    pub query_plan: Option<JsonText>,
    /// The candidate set, exactly as given.
    pub candidate_set: Option<JsonText>,
    /// When it was added.
    pub timestamp: Timestamp,
    /// Columns of a converted SQLite row that the store does not interpret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: ExtraColumns,
    /// Its length in tokens, when the caller gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
}

/// A session's own fields, without its messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id (a UUID v4 for sessions the store creates).
    pub session_id: Uuid,
    /// The owner; `None` for anonymous sessions. `Some("")` is a user.
    pub user_id: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a message or the context last changed.
    pub updated_at: Timestamp,
    /// When it was expired; `None` while active.
    pub expired_at: Option<Timestamp>,
    /// Carry-forward state, a JSON object (`None` only in converted files
    /// that had NULL).
    pub context: Option<JsonText>,
    /// Free-form metadata, a JSON object (or `None`, as for context).
    pub metadata: Option<JsonText>,
    /// How many messages it holds (the next message's seq).
    pub message_count: u64,
    /// Columns of a converted SQLite row that the store does not interpret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: ExtraColumns,
}

impl SessionInfo {
    /// True once the session is expired.
    pub fn is_expired(&self) -> bool {
        self.expired_at.is_some()
    }
}

/// A session with all its messages, in seq order.
///
/// In JSON its own fields and `messages` sit side by side in one object.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
/// let id = store.create_session(Some("ana")).unwrap();
/// store.update_context(id, r#"{"last_publisher": "Oxford"}"#).unwrap();
/// let session = store.get_session(id).unwrap().unwrap();
/// let json = serde_json::to_string(&session).unwrap();
/// assert!(json.contains(r#""context":{"last_publisher": "Oxford"}"#));
/// let back: sessionstore::Session = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, session);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "SessionJson")]
pub struct Session {
    /// The session's own fields.
    #[serde(flatten)]
    pub info: SessionInfo,
    /// Its messages, seq 0 first. Shared with the store's message cache
    /// (see [`RedbOptions::message_cache_bytes`](crate::StoreOptions)):
    /// reading a session again hands out the same messages.
    pub messages: Vec<Arc<Message>>,
}

/// [`Session`] as read from JSON. serde's `flatten` buffers values, which
/// would lose the exact text of the JSON objects; this reads them in place.
#[derive(Deserialize)]
struct SessionJson {
    session_id: Uuid,
    user_id: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    expired_at: Option<Timestamp>,
    context: Option<JsonText>,
    metadata: Option<JsonText>,
    message_count: u64,
    #[serde(default)]
    extra: ExtraColumns,
    messages: Vec<Arc<Message>>,
}

impl From<SessionJson> for Session {
    fn from(json: SessionJson) -> Self {
        Session {
            info: SessionInfo {
                session_id: json.session_id,
                user_id: json.user_id,
                created_at: json.created_at,
                updated_at: json.updated_at,
                expired_at: json.expired_at,
                context: json.context,
                metadata: json.metadata,
                message_count: json.message_count,
                extra: json.extra,
            },
            messages: json.messages,
        }
    }
}

impl std::ops::Deref for Session {
    type Target = SessionInfo;
    fn deref(&self) -> &SessionInfo {
        &self.info
    }
}

/// One line of a user's session list (the old store's sidebar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The session.
    pub session_id: Uuid,
    /// The first user message, cut to 47 characters and `...` when over
    /// 50; `New conversation` when there is none.
    pub title: String,
    /// How many messages it holds.
    pub message_count: u64,
    /// Its `updated_at`.
    pub last_activity: Timestamp,
    /// Whether it is expired.
    pub expired: bool,
}

/// A position in a user's session list, for paging (see
/// [`SessionStore::user_sessions_page`](crate::SessionStore::user_sessions_page)).
///
/// Renders as, and parses from, a short opaque text token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionCursor {
    pub(crate) updated_micros: i64,
    pub(crate) session: u128,
}

impl fmt::Display for SessionCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:032x}", self.updated_micros, self.session)
    }
}

impl FromStr for SessionCursor {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::invalid("cursor", format!("{text:?} is not a session cursor"));
        let (micros, session) = text.split_once('.').ok_or_else(bad)?;
        Ok(SessionCursor {
            updated_micros: micros.parse().map_err(|_| bad())?,
            session: u128::from_str_radix(session, 16).map_err(|_| bad())?,
        })
    }
}

/// One page of a user's sessions.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionPage {
    /// The sessions, most recently updated first.
    pub sessions: Vec<SessionSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<SessionCursor>,
}

/// Counts for monitoring (what the old guide's SQL gave).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Sessions not expired.
    pub active_sessions: u64,
    /// Sessions expired but not deleted.
    pub expired_sessions: u64,
    /// Messages in all sessions.
    pub messages: u64,
    /// Size of the store file in bytes.
    pub file_size: u64,
    /// Size of its write-ahead journal (`<store>-journal`, see
    /// `RedbOptions::max_journal_bytes`) in bytes: the store takes
    /// `file_size + journal_size` on disk.
    pub journal_size: u64,
}

/// What the store has done since it was opened, for monitoring: counts
/// that only grow, kept in memory by this process (another process's opens
/// of the file count apart), all zero at open. See
/// [`SessionStore::counters`](crate::SessionStore::counters).
///
/// Each count is exact; counts read together may be a commit apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounters {
    /// Commits of callers' writes: each a batch of the write requests
    /// waiting together (group commit). Batches that wrote nothing (only
    /// refusals) are not commits; nor is the store's own background work.
    pub commits: u64,
    /// Write requests in those commits (a call that writes, such as
    /// `add_message` or `add_messages`, is one request):
    /// `batch_requests / commits` is the mean batch size.
    pub batch_requests: u64,
    /// Checkpoints: durable commits of everything written so far, after
    /// which the journal starts over.
    pub checkpoints: u64,
    /// Reads of a session's messages served wholly from the message cache
    /// (see `RedbOptions::message_cache_bytes`).
    pub message_cache_hits: u64,
    /// Reads of a session's messages that read the file, wholly or in part
    /// (every such read when the cache is disabled).
    pub message_cache_misses: u64,
}

/// How long a write must survive before its call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Ok is returned once the data is on disk (fsync'd). The default.
    #[default]
    Durable,
    /// Ok is returned once the data is visible to readers; it reaches the
    /// disk with the next durable commit, or when the store is closed. A crash
    /// may lose it.
    Relaxed,
}

/// The settings of [`StoreOptions`](crate::StoreOptions) every engine
/// applies, whatever it is.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) max_content_bytes: usize,
    pub(crate) durability: Durability,
    pub(crate) create_if_missing: bool,
    pub(crate) read_only: bool,
    /// Read where the library serves a socket (feature `socket`, Unix).
    #[cfg_attr(not(all(feature = "socket", unix)), allow(dead_code))]
    pub(crate) serve_socket: bool,
}

/// What [`SessionStore::erase_user`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Sessions deleted.
    pub sessions: u64,
    /// Messages deleted.
    pub messages: u64,
}

/// A row of a SQLite table the store carries without interpreting it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraRow {
    /// The SQLite table it came from.
    pub table: String,
    /// Its rowid (or position) there.
    pub rowid: i64,
    /// The session it belongs to: deleting that session deletes the row.
    pub session: Option<Uuid>,
    /// Its column values, in the table's column order.
    pub values: Vec<ExtraValue>,
}

/// Called as work advances: (entries done, entries in all).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// What [`SessionStore::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Sessions read.
    pub sessions: u64,
    /// Messages read.
    pub messages: u64,
    /// Every rule found broken, one sentence each; empty when clean.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when no rule is broken.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Sizes of the file around [`SessionStore::compact`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactReport {
    /// Bytes before.
    pub before: u64,
    /// Bytes after.
    pub after: u64,
}
