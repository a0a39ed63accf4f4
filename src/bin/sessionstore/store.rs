//! The store a command works on: opened here when the file is free, or
//! reached through the socket of the process that holds it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sessionstore::client::SocketClient;
use sessionstore::{
    CheckReport, CompactReport, Erased, Error, Message, NewMessage, Progress, Result, Session, SessionCursor,
    SessionInfo, SessionPage, SessionStore, Stats, Uuid,
};

/// A store opened by this process, or one another process holds.
pub enum Store {
    /// The file was free: opened here.
    Local(SessionStore),
    /// The file is in use: its holder answers through its socket.
    Held(SocketClient),
}

/// The same call on either kind of store.
macro_rules! either {
    ($store:expr, $method:ident($($arg:expr),*)) => {
        match $store {
            Store::Local(store) => store.$method($($arg),*),
            Store::Held(client) => client.$method($($arg),*),
        }
    };
}

impl Store {
    /// Opens (or creates) the store at `path`; when another process holds
    /// it, connects to its socket instead.
    pub fn open(path: &Path) -> Result<Store> {
        match SessionStore::open(path) {
            Ok(store) => Ok(Store::Local(store)),
            Err(Error::InUse { .. }) => Ok(Store::Held(SocketClient::connect(path)?)),
            Err(error) => Err(error),
        }
    }

    pub fn path(&self) -> &Path {
        either!(self, path())
    }

    pub fn create_session(&self, user_id: Option<&str>) -> Result<Uuid> {
        either!(self, create_session(user_id))
    }

    pub fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
        either!(self, add_messages(id, messages))
    }

    pub fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        either!(self, get_session(id))
    }

    pub fn session_info(&self, id: Uuid) -> Result<Option<SessionInfo>> {
        either!(self, session_info(id))
    }

    pub fn get_recent_messages(&self, id: Uuid, n: u64) -> Result<Option<Vec<Arc<Message>>>> {
        either!(self, get_recent_messages(id, n))
    }

    pub fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        cursor: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        either!(self, user_sessions_page(user, include_expired, cursor, limit))
    }

    pub fn expire_session(&self, id: Uuid) -> Result<bool> {
        either!(self, expire_session(id))
    }

    pub fn delete_session(&self, id: Uuid) -> Result<u64> {
        either!(self, delete_session(id))
    }

    pub fn erase_user(&self, user: &str) -> Result<Erased> {
        either!(self, erase_user(user))
    }

    pub fn stats(&self) -> Result<Stats> {
        either!(self, stats())
    }

    /// Progress is shown for a store opened here only.
    pub fn expire_old_sessions(&self, max_age: Duration, progress: Progress<'_>) -> Result<u64> {
        match self {
            Store::Local(store) => store.expire_old_sessions_with_progress(max_age, progress),
            Store::Held(client) => client.expire_old_sessions(max_age),
        }
    }

    pub fn purge_expired(&self, older_than: Duration, progress: Progress<'_>) -> Result<u64> {
        match self {
            Store::Local(store) => store.purge_expired_with_progress(older_than, progress),
            Store::Held(client) => client.purge_expired(older_than),
        }
    }

    pub fn backup_to(&self, dest: &Path, progress: Progress<'_>) -> Result<()> {
        match self {
            Store::Local(store) => store.backup_to(dest, progress),
            Store::Held(client) => client.backup_to(dest),
        }
    }

    pub fn check(&self, progress: Progress<'_>) -> Result<CheckReport> {
        match self {
            Store::Local(store) => store.check(progress),
            Store::Held(client) => client.check(),
        }
    }

    pub fn compact(&self, progress: Progress<'_>) -> Result<CompactReport> {
        match self {
            Store::Local(store) => store.compact(progress),
            Store::Held(client) => client.compact(),
        }
    }
}
