//! The engine seam: what a storage engine does for [`SessionStore`]. The
//! public API (`store.rs` and its neighbours) checks nothing an engine
//! could get wrong by itself; it forwards each call to an [`Engine`], which
//! keeps the data and applies the rules of `crate::rules` inside its own
//! transactions.
//!
//! [`SessionStore`]: crate::SessionStore

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod redb;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::error::Result;
use crate::json::JsonText;
use crate::model::Durability;
use crate::model::{
    CheckReport, CompactReport, Erased, ExtraRow, Message, NewMessage, Progress, Session, SessionCursor,
    SessionInfo, SessionPage, Settings, Stats, StoreCounters,
};
use crate::rules::budget::TokenRule;
use crate::rules::search::{SearchCursor, SearchPage};
use crate::rules::{Access, Append};

/// How a write submitted without waiting is answered: called once, with
/// the write's result, from the thread that finished it.
pub(crate) type Reply<T> = Box<dyn FnOnce(Result<T>) + Send>;

/// Which messages of a session a page holds (see [`Engine::page_messages`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum MessagePage {
    /// From this seq on, that one included.
    From(u64),
    /// After this seq.
    After(u64),
    /// Before this seq, the nearest ones.
    Before(u64),
}

impl MessagePage {
    /// The seqs of the page of at most `limit` messages in a session of
    /// `count`.
    pub(crate) fn range(self, limit: u64, count: u64) -> std::ops::Range<u64> {
        match self {
            MessagePage::From(seq) => {
                let start = seq.min(count);
                start..start.saturating_add(limit).min(count)
            }
            MessagePage::After(seq) => {
                let start = seq.saturating_add(1).min(count);
                start..start.saturating_add(limit).min(count)
            }
            MessagePage::Before(seq) => {
                let end = seq.min(count);
                end.saturating_sub(limit)..end
            }
        }
    }
}

/// A storage engine: one method per operation of the store, each taking
/// the caller's [`Access`] where a user's view has it and the
/// [`Durability`] of the handle for writes, and answering the library's own
/// types.
///
/// What every engine guarantees (the conformance tests of `tests/` check
/// them on the public API):
/// - **a refusal writes nothing**: an `Err` from a write leaves the store as
///   it was, an open refused included;
/// - **`Ok` is durable** unless the write was made with
///   [`Durability::Relaxed`], which may lose the last writes to a crash but
///   never leaves a torn one;
/// - **ids never reused**: a message id, once given, is never given again,
///   popped or deleted or not; ids grow with each append;
/// - **dense seqs**: a session with `n` messages has them at seqs `0..n`;
///   an append takes `n` (or refuses with `Error::SeqConflict` when the
///   caller expected another), a pop removes `n - 1`;
/// - **missing**: a read of a missing session or message, an expired
///   session where the read wants an active one, or one that `access`
///   may not see, answers `Ok(None)`; a write to one is
///   `Err(Error::SessionNotFound)`;
/// - `Send + Sync`, no lock held across I/O it does not need; reads never
///   wait for writes.
pub(crate) trait Engine: Send + Sync + std::fmt::Debug {
    /// Where the store is: its file (redb), or what names the database.
    fn path(&self) -> &Path;
    /// The settings it was opened with.
    fn settings(&self) -> &Settings;

    // ---- sessions ----
    fn create_session(&self, user_id: Option<&str>, durability: Durability) -> Result<Uuid>;
    fn get_session(&self, id: Uuid, access: Access<'_>) -> Result<Option<Session>>;
    /// `get_session` if the engine can answer at once, waiting for no lock
    /// held across I/O and reading no message from the disk (an async
    /// worker calls it);
    /// `None` when it cannot, and the caller calls `get_session` where it
    /// may block. An engine that always needs to wait answers `None`.
    #[cfg(feature = "tokio")]
    fn get_session_now(&self, _id: Uuid, _access: Access<'_>) -> Option<Result<Option<Session>>> {
        None
    }
    fn session_info(&self, id: Uuid, access: Access<'_>) -> Result<Option<SessionInfo>>;
    fn update_context(
        &self,
        id: Uuid,
        context: &str,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<()>;
    fn expire_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<bool>;
    fn expire_old_sessions(&self, max_age: Duration, durability: Durability) -> Result<u64>;
    fn purge_expired(&self, older_than: Duration, durability: Durability) -> Result<u64>;
    fn purge_expired_with_progress(
        &self,
        older_than: Duration,
        progress: Progress<'_>,
        durability: Durability,
    ) -> Result<u64>;
    fn delete_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<u64>;
    fn erase_user(&self, user: &str, durability: Durability) -> Result<Erased>;
    fn list_user_sessions(&self, user: &str, include_expired: bool) -> Result<Vec<Uuid>>;
    fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage>;
    /// `user_sessions_page` if the engine can answer at once, as
    /// [`Engine::get_session_now`] does; `None` otherwise.
    #[cfg(feature = "tokio")]
    fn user_sessions_page_now(
        &self,
        _user: &str,
        _include_expired: bool,
        _after: Option<SessionCursor>,
        _limit: usize,
    ) -> Option<Result<SessionPage>> {
        None
    }
    fn fork_session(&self, id: Uuid, at_seq: u64, access: Access<'_>, durability: Durability)
        -> Result<Uuid>;
    fn forks(&self, id: Uuid, access: Access<'_>) -> Result<Option<Vec<SessionInfo>>>;

    // ---- messages ----
    /// Every append (`add_message*`): all of `messages` in one commit, or
    /// none; checked as `append` says.
    fn add_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Vec<u64>>;
    /// Whether [`Engine::submit_add_messages`] returns at once (the write
    /// runs on threads of the engine's own) rather than blocking.
    #[cfg(feature = "tokio")]
    fn submits_writes(&self) -> bool {
        false
    }
    /// `add_messages`, answered through `reply`: at once where the engine
    /// [`submits_writes`](Engine::submits_writes), the caller waiting for
    /// nothing; otherwise this blocks as `add_messages` does.
    #[cfg(feature = "tokio")]
    fn submit_add_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        durability: Durability,
        reply: Reply<Vec<u64>>,
    ) {
        reply(self.add_messages(id, append, messages, access, durability));
    }
    /// `get_recent_messages`, `messages_after`, `messages_from`,
    /// `messages_before`: up to `limit` messages of `page`, oldest first.
    fn page_messages(
        &self,
        id: Uuid,
        page: MessagePage,
        limit: u64,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>>;
    fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>>;
    fn get_message(&self, message_id: u64, access: Access<'_>) -> Result<Option<(Uuid, Message)>>;
    fn pop_last_message(
        &self,
        id: Uuid,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Option<Message>>;

    // ---- users ----
    fn user_context(&self, user: &str) -> Result<Option<JsonText>>;
    fn update_user_context(&self, user: &str, context: &str, durability: Durability) -> Result<()>;
    /// Full-text search over the messages of `user`'s active sessions:
    /// arguments checked by `rules::search::check`, hits ranked and paged
    /// by `rules::search` (`Tally`, `page`), exact at every instant: every
    /// write that adds or removes a message (append, fork, pop, deletion,
    /// purge, erasure, import) changes what a search finds in its own
    /// commit.
    fn search(
        &self,
        user: &str,
        query: &str,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage>;

    // ---- monitoring, maintenance, bulk ----
    fn stats(&self) -> Result<Stats>;
    fn counters(&self) -> StoreCounters;
    fn check(&self, progress: Progress<'_>) -> Result<CheckReport>;
    fn backup_to(&self, dest: &Path, progress: Progress<'_>) -> Result<()>;
    fn compact(&self, progress: Progress<'_>) -> Result<CompactReport>;
    fn snapshot(&self) -> Result<Box<dyn SnapshotSource>>;
    fn importer(&self) -> Box<dyn ImportSink>;
}

/// Rows an engine streams out of a snapshot.
pub(crate) type Rows<'a, T> = Box<dyn Iterator<Item = Result<T>> + 'a>;

/// What a [`Snapshot`](crate::Snapshot) reads: one consistent state of the
/// store, unaffected by later writes. Sessions are read with lazy expiry
/// applied.
pub(crate) trait SnapshotSource: Send + Sync {
    fn sessions(&self) -> Result<Rows<'_, SessionInfo>>;
    fn messages(&self, session: Uuid) -> Result<Rows<'_, Message>>;
    fn messages_by_id(&self) -> Result<Rows<'_, (Uuid, Message)>>;
    fn extra_rows(&self) -> Result<Rows<'_, ExtraRow>>;
    fn opaque(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn next_message_id(&self) -> Result<u64>;
    fn session_count(&self) -> Result<u64>;
    fn message_count(&self) -> Result<u64>;
    fn extra_row_count(&self) -> Result<u64>;
}

/// What an [`Importer`](crate::Importer) writes to: data loaded as it is
/// (ids, timestamps, extra rows), durable once `finish` returns.
pub(crate) trait ImportSink: Send {
    fn add_session(&mut self, session: SessionInfo) -> Result<()>;
    fn add_messages(&mut self, session: Uuid, messages: Vec<Message>) -> Result<()>;
    fn add_extra_row(&mut self, row: ExtraRow) -> Result<()>;
    fn set_opaque(&mut self, key: &str, value: Vec<u8>) -> Result<()>;
    fn raise_next_message_id(&mut self, next: u64);
    fn finish(self: Box<Self>) -> Result<()>;
}
