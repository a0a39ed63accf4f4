//! The store a command works on: opened here when the file is free, or
//! reached through the socket of the process that holds it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionstore::client::{holder_gone, Opened};
use sessionstore::retrieval::{RetrievalExport, RetrievalFilter, RetrievalFormat};
use sessionstore::{
    CheckReport, CompactReport, Erased, Message, NewMessage, Progress, Result, SearchCursor, SearchPage,
    Session, SessionCursor, SessionInfo, SessionPage, Stats, StoreOptions, Uuid,
};

/// How long a file in use whose socket does not answer is tried again.
const SOCKET_WAIT: Duration = Duration::from_secs(2);

/// The store at a path, as this process reaches it.
pub struct Store {
    path: PathBuf,
    options: StoreOptions,
    reached: RefCell<Opened>,
}

/// The same call on either kind of store, made again on the store opened
/// again when the holder closed its socket meanwhile.
macro_rules! either {
    ($store:expr, |$local:ident| $on_local:expr, |$client:ident| $on_held:expr) => {
        $store.retrying(|reached| match reached {
            Opened::Local($local) => $on_local,
            Opened::Held($client) => $on_held,
        })
    };
    ($store:expr, $method:ident($($arg:expr),*)) => {
        either!($store, |store| store.$method($($arg.clone()),*), |client| client.$method($($arg.clone()),*))
    };
}

impl Store {
    /// Opens the store at `path` with `options`; when another process
    /// holds it, connects to its socket instead.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store> {
        let reached = Opened::open(path, &options, Instant::now(), SOCKET_WAIT)?;
        Ok(Store {
            path: path.to_path_buf(),
            options,
            reached: RefCell::new(reached),
        })
    }

    /// Makes `call`; when the holder closed its socket before answering,
    /// opens the store again and makes it again (the store may be free by
    /// then), until [`SOCKET_WAIT`] has passed.
    fn retrying<T>(&self, mut call: impl FnMut(&Opened) -> Result<T>) -> Result<T> {
        let started = Instant::now();
        loop {
            let result = call(&self.reached.borrow());
            match result {
                Err(error) if holder_gone(&error) && started.elapsed() < SOCKET_WAIT => {
                    *self.reached.borrow_mut() =
                        Opened::open(&self.path, &self.options, started, SOCKET_WAIT)?;
                }
                result => return result,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn create_session(&self, user_id: Option<&str>) -> Result<Uuid> {
        either!(self, create_session(user_id))
    }

    /// An append under an idempotency key of its own, so that a retry
    /// after the holder closed its socket appends once.
    pub fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
        let key = Uuid::new_v4().to_string();
        either!(self, add_messages_idempotent(id, key.as_str(), None, messages))
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

    pub fn search(
        &self,
        user: &str,
        query: &str,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        either!(self, search(user, query, after, limit))
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
        either!(
            self,
            |store| store.expire_old_sessions_with_progress(max_age, &mut *progress),
            |client| client.expire_old_sessions(max_age)
        )
    }

    pub fn purge_expired(&self, older_than: Duration, progress: Progress<'_>) -> Result<u64> {
        either!(
            self,
            |store| store.purge_expired_with_progress(older_than, &mut *progress),
            |client| client.purge_expired(older_than)
        )
    }

    pub fn backup_to(&self, dest: &Path, progress: Progress<'_>) -> Result<()> {
        either!(self, |store| store.backup_to(dest, &mut *progress), |client| {
            client.backup_to(dest)
        })
    }

    pub fn check(&self, progress: Progress<'_>) -> Result<CheckReport> {
        either!(self, |store| store.check(&mut *progress), |client| client.check())
    }

    pub fn compact(&self, progress: Progress<'_>) -> Result<CompactReport> {
        either!(self, |store| store.compact(&mut *progress), |client| client
            .compact())
    }

    pub fn fork_session(&self, id: Uuid, at_seq: u64) -> Result<Uuid> {
        either!(self, fork_session(id, at_seq))
    }

    /// Exports from the store; a held store is exported from a consistent
    /// copy its holder writes beside it (see `SocketClient::copy`).
    pub fn export_retrieval(
        &self,
        format: RetrievalFormat,
        filter: &RetrievalFilter,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<RetrievalExport> {
        either!(
            self,
            |store| store.export_retrieval(format, filter, dir, &mut *progress),
            |client| client
                .copy(self.options.clone())?
                .export_retrieval(format, filter, dir, &mut *progress)
        )
    }
}
