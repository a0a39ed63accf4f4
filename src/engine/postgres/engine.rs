//! [`Engine`] for [`PgEngine`]: each operation forwarded to the method of
//! the same name (in `sessions.rs`, `messages.rs`, `maintenance.rs`); the
//! bulk paths of the converter refused until it reads and writes
//! PostgreSQL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{not_supported, PgEngine};
use crate::engine::{Engine, ImportSink, MessagePage, SnapshotSource};
use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::{
    CheckReport, CompactReport, Durability, Erased, ExtraRow, Message, NewMessage, Progress, Session,
    SessionCursor, SessionInfo, SessionPage, Settings, Stats, StoreCounters,
};
use crate::rules::budget::TokenRule;
use crate::rules::{Access, Append};

/// Why `snapshot` and `importer` are refused.
const NO_BULK: &str = "the converter's snapshot and import read and write redb files only; \
     copy a database with the server's tools (pg_dump)";

impl Engine for PgEngine {
    fn path(&self) -> &Path {
        &self.path
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn create_session(&self, user_id: Option<&str>, durability: Durability) -> Result<Uuid> {
        PgEngine::create_session(self, user_id, durability)
    }

    fn get_session(&self, id: Uuid, access: Access<'_>) -> Result<Option<Session>> {
        PgEngine::get_session(self, id, access)
    }

    fn session_info(&self, id: Uuid, access: Access<'_>) -> Result<Option<SessionInfo>> {
        PgEngine::session_info(self, id, access)
    }

    fn update_context(
        &self,
        id: Uuid,
        context: &str,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<()> {
        PgEngine::update_context(self, id, context, access, durability)
    }

    fn expire_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<bool> {
        PgEngine::expire_session(self, id, access, durability)
    }

    fn expire_old_sessions(&self, max_age: Duration, durability: Durability) -> Result<u64> {
        PgEngine::expire_old_sessions(self, max_age, durability)
    }

    fn purge_expired(&self, older_than: Duration, durability: Durability) -> Result<u64> {
        PgEngine::purge_expired(self, older_than, durability)
    }

    fn purge_expired_with_progress(
        &self,
        older_than: Duration,
        progress: Progress<'_>,
        durability: Durability,
    ) -> Result<u64> {
        PgEngine::purge_expired_with_progress(self, older_than, progress, durability)
    }

    fn delete_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<u64> {
        PgEngine::delete_session(self, id, access, durability)
    }

    fn erase_user(&self, user: &str, durability: Durability) -> Result<Erased> {
        PgEngine::erase_user(self, user, durability)
    }

    fn list_user_sessions(&self, user: &str, include_expired: bool) -> Result<Vec<Uuid>> {
        PgEngine::list_user_sessions(self, user, include_expired)
    }

    fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        PgEngine::user_sessions_page(self, user, include_expired, after, limit)
    }

    fn fork_session(
        &self,
        id: Uuid,
        at_seq: u64,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Uuid> {
        PgEngine::fork_session(self, id, at_seq, access, durability)
    }

    fn forks(&self, id: Uuid, access: Access<'_>) -> Result<Option<Vec<SessionInfo>>> {
        PgEngine::forks(self, id, access)
    }

    fn add_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Vec<u64>> {
        PgEngine::add_messages(self, id, append, messages, access, durability)
    }

    fn page_messages(
        &self,
        id: Uuid,
        page: MessagePage,
        limit: u64,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        PgEngine::page_messages(self, id, page, limit, access)
    }

    fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        PgEngine::messages_within(self, id, budget, rule, access)
    }

    fn get_message(&self, message_id: u64, access: Access<'_>) -> Result<Option<(Uuid, Message)>> {
        PgEngine::get_message(self, message_id, access)
    }

    fn pop_last_message(
        &self,
        id: Uuid,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Option<Message>> {
        PgEngine::pop_last_message(self, id, access, durability)
    }

    fn user_context(&self, user: &str) -> Result<Option<JsonText>> {
        PgEngine::user_context(self, user)
    }

    fn update_user_context(&self, user: &str, context: &str, durability: Durability) -> Result<()> {
        PgEngine::update_user_context(self, user, context, durability)
    }

    fn stats(&self) -> Result<Stats> {
        PgEngine::stats(self)
    }

    fn counters(&self) -> StoreCounters {
        PgEngine::counters(self)
    }

    fn check(&self, progress: Progress<'_>) -> Result<CheckReport> {
        PgEngine::check(self, progress)
    }

    fn backup_to(&self, dest: &Path, progress: Progress<'_>) -> Result<()> {
        PgEngine::backup_to(self, dest, progress)
    }

    fn compact(&self, progress: Progress<'_>) -> Result<CompactReport> {
        PgEngine::compact(self, progress)
    }

    fn snapshot(&self) -> Result<Box<dyn SnapshotSource>> {
        Err(not_supported("snapshot", NO_BULK))
    }

    fn importer(&self) -> Box<dyn ImportSink> {
        Box::new(RefusedImport)
    }
}

/// The importer of a PostgreSQL store: refuses every row, writing nothing.
struct RefusedImport;

fn refused() -> Error {
    not_supported("import", NO_BULK)
}

impl ImportSink for RefusedImport {
    fn add_session(&mut self, _session: SessionInfo) -> Result<()> {
        Err(refused())
    }

    fn add_messages(&mut self, _session: Uuid, _messages: Vec<Message>) -> Result<()> {
        Err(refused())
    }

    fn add_extra_row(&mut self, _row: ExtraRow) -> Result<()> {
        Err(refused())
    }

    fn set_opaque(&mut self, _key: &str, _value: Vec<u8>) -> Result<()> {
        Err(refused())
    }

    fn raise_next_message_id(&mut self, _next: u64) {}

    fn finish(self: Box<Self>) -> Result<()> {
        Err(refused())
    }
}
