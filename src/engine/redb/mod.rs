//! The redb engine: one store file with its write-ahead journal beside it.
//! The only code that names redb (`tests/architecture.rs`).

pub(crate) mod budget;
pub(crate) mod bulk;
pub(crate) mod cache;
pub(crate) mod encoding;
pub(crate) mod expiry;
pub(crate) mod fork;
pub(crate) mod hold;
pub(crate) mod journal;
pub(crate) mod maintenance;
pub(crate) mod open_files;
pub(crate) mod options;
pub(crate) mod search;
pub(crate) mod storage;
pub(crate) mod store;
pub(crate) mod tables;
pub(crate) mod user_context;
pub(crate) mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub use self::options::RedbOptions;
pub(crate) use self::store::RedbEngine;
pub use self::store::FORMAT_VERSION;
#[cfg(feature = "tokio")]
use crate::engine::Reply;
use crate::engine::{Engine, ImportSink, MessagePage, SnapshotSource};
use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::{
    CheckReport, CompactReport, Durability, Erased, Message, NewMessage, Progress, Session, SessionCursor,
    SessionInfo, SessionPage, Settings, Stats, StoreCounters,
};
use crate::rules::budget::TokenRule;
use crate::rules::search::{SearchCursor, SearchPage};
use crate::rules::{Access, Append};
pub use ::redb::{BackendError, StorageBackend};

/// Each operation is written in the file of its concern (`store.rs`,
/// `fork.rs`, `budget.rs`, ...) as a method of [`RedbEngine`] of the same
/// name; this routes the seam's calls to them.
impl Engine for RedbEngine {
    fn path(&self) -> &Path {
        RedbEngine::path(self)
    }
    fn settings(&self) -> &Settings {
        &RedbEngine::options(self).settings
    }
    fn create_session(&self, user_id: Option<&str>, durability: Durability) -> Result<Uuid> {
        RedbEngine::create_session(self, user_id, durability)
    }
    fn get_session(&self, id: Uuid, access: Access<'_>) -> Result<Option<Session>> {
        RedbEngine::get_session(self, id, access)
    }
    #[cfg(feature = "tokio")]
    fn get_session_now(&self, id: Uuid, access: Access<'_>) -> Option<Result<Option<Session>>> {
        RedbEngine::get_session_now(self, id, access)
    }
    fn session_info(&self, id: Uuid, access: Access<'_>) -> Result<Option<SessionInfo>> {
        RedbEngine::session_info(self, id, access)
    }
    fn update_context(
        &self,
        id: Uuid,
        context: &str,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<()> {
        RedbEngine::update_context(self, id, context, access, durability)
    }
    fn expire_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<bool> {
        RedbEngine::expire_session(self, id, access, durability)
    }
    fn expire_old_sessions(&self, max_age: Duration, durability: Durability) -> Result<u64> {
        RedbEngine::expire_old_sessions(self, max_age, durability)
    }
    fn purge_expired(&self, older_than: Duration, durability: Durability) -> Result<u64> {
        RedbEngine::purge_expired(self, older_than, durability)
    }
    fn purge_expired_with_progress(
        &self,
        older_than: Duration,
        progress: Progress<'_>,
        durability: Durability,
    ) -> Result<u64> {
        RedbEngine::purge_expired_with_progress(self, older_than, progress, durability)
    }
    fn delete_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<u64> {
        RedbEngine::delete_session(self, id, access, durability)
    }
    fn erase_user(&self, user: &str, durability: Durability) -> Result<Erased> {
        RedbEngine::erase_user(self, user, durability)
    }
    fn list_user_sessions(&self, user: &str, include_expired: bool) -> Result<Vec<Uuid>> {
        RedbEngine::list_user_sessions(self, user, include_expired)
    }
    fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        RedbEngine::user_sessions_page(self, user, include_expired, after, limit)
    }
    #[cfg(feature = "tokio")]
    fn user_sessions_page_now(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Option<Result<SessionPage>> {
        RedbEngine::user_sessions_page_now(self, user, include_expired, after, limit)
    }
    fn fork_session(
        &self,
        id: Uuid,
        at_seq: u64,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Uuid> {
        RedbEngine::fork_session(self, id, at_seq, access, durability)
    }
    fn forks(&self, id: Uuid, access: Access<'_>) -> Result<Option<Vec<SessionInfo>>> {
        RedbEngine::forks(self, id, access)
    }
    fn add_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Vec<u64>> {
        RedbEngine::add_messages(self, id, append, messages, access, durability)
    }
    #[cfg(feature = "tokio")]
    fn submits_writes(&self) -> bool {
        true
    }
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
        RedbEngine::submit_add_messages(self, id, append, messages, access, durability, reply)
    }
    fn page_messages(
        &self,
        id: Uuid,
        page: MessagePage,
        limit: u64,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        RedbEngine::page_messages(self, id, page, limit, access)
    }
    fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        RedbEngine::messages_within(self, id, budget, rule, access)
    }
    fn get_message(&self, message_id: u64, access: Access<'_>) -> Result<Option<(Uuid, Message)>> {
        RedbEngine::get_message(self, message_id, access)
    }
    fn pop_last_message(
        &self,
        id: Uuid,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Option<Message>> {
        RedbEngine::pop_last_message(self, id, access, durability)
    }
    fn user_context(&self, user: &str) -> Result<Option<JsonText>> {
        RedbEngine::user_context(self, user)
    }
    fn update_user_context(&self, user: &str, context: &str, durability: Durability) -> Result<()> {
        RedbEngine::update_user_context(self, user, context, durability)
    }
    fn search(
        &self,
        user: &str,
        query: &str,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        RedbEngine::search(self, user, query, after, limit)
    }
    fn stats(&self) -> Result<Stats> {
        RedbEngine::stats(self)
    }
    fn counters(&self) -> StoreCounters {
        RedbEngine::counters(self)
    }
    fn check(&self, progress: Progress<'_>) -> Result<CheckReport> {
        RedbEngine::check(self, progress)
    }
    fn backup_to(&self, dest: &Path, progress: Progress<'_>) -> Result<()> {
        RedbEngine::backup_to(self, dest, progress)
    }
    fn compact(&self, progress: Progress<'_>) -> Result<CompactReport> {
        RedbEngine::compact(self, progress)
    }
    fn snapshot(&self) -> Result<Box<dyn SnapshotSource>> {
        Ok(Box::new(RedbEngine::snapshot(self)?))
    }
    fn importer(&self) -> Box<dyn ImportSink> {
        Box::new(RedbEngine::importer(self))
    }
}

/// A redb error as the library's [`Error::Storage`].
pub(crate) fn storage_error(error: impl Into<::redb::Error>) -> Error {
    Error::Storage {
        engine: "redb",
        source: Arc::new(error.into()),
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(error: $t) -> Self {
                storage_error(error)
            }
        }
    )*};
}
from_redb!(
    ::redb::Error,
    ::redb::StorageError,
    ::redb::TableError,
    ::redb::TransactionError,
    ::redb::CommitError,
    ::redb::CompactionError,
    ::redb::DatabaseError
);
