//! [`Engine`] for [`PgEngine`]: each operation forwarded to the method of
//! the same name (in `sessions.rs`, `messages.rs`, `maintenance.rs`), the
//! converter's snapshot and importer to `bulk.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::bulk::{PgImporter, PgSnapshot};
use super::PgEngine;
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

    fn search(
        &self,
        user: &str,
        query: &str,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        PgEngine::search(self, user, query, after, limit)
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
        Ok(Box::new(PgSnapshot::begin(self.pool.dedicated()?)?))
    }

    fn importer(&self) -> Box<dyn ImportSink> {
        let client = if self.settings.read_only {
            Err(Error::ReadOnly {
                path: self.path.clone(),
            })
        } else {
            self.pool.dedicated()
        };
        Box::new(PgImporter::begin(client))
    }
}
