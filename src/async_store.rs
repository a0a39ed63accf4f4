//! [`AsyncSessionStore`]: the store's API for tokio programs. Every call
//! runs the blocking call of the same name on tokio's blocking pool, so an
//! async worker never waits on a commit's `fdatasync` or a redb read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::Erased;
use crate::model::{CheckReport, CompactReport};
use crate::model::{
    Message, NewMessage, Session, SessionCursor, SessionInfo, SessionPage, SessionSummary, Stats,
};
use crate::rules::search::{SearchCursor, SearchPage};
use crate::store::SessionStore;

/// A [`SessionStore`] for async code: the same calls, under the same names,
/// each run on tokio's blocking pool ([`tokio::task::spawn_blocking`]).
///
/// Cheap to clone (clones share the store); needs a tokio runtime.
///
/// ```
/// use sessionstore::{AsyncSessionStore, NewMessage, SessionStore};
/// # let dir = tempfile::tempdir().unwrap();
/// # let runtime = tokio::runtime::Runtime::new().unwrap();
/// # runtime.block_on(async {
/// let store = AsyncSessionStore::new(SessionStore::open(dir.path().join("s.redb"))?);
/// let id = store.create_session(Some("ana".into())).await?;
/// store.add_message(id, NewMessage::user("books by Aldus")).await?;
/// let session = store.get_session(id).await?.expect("active");
/// assert_eq!(session.messages.len(), 1);
/// let ana = store.for_user("ana");
/// assert_eq!(ana.list_sessions(false).await?, vec![id]);
/// # Ok::<(), sessionstore::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct AsyncSessionStore {
    store: SessionStore,
}

/// Runs `f` on tokio's blocking pool. A panic inside goes on in the caller;
/// a runtime shutting down answers [`Error::WriterStopped`].
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::WriterStopped),
    }
}

/// Async methods that run the blocking method of the same name with the
/// same (owned) arguments.
macro_rules! same_calls {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        $(#[$doc])*
        pub async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
            self.run(move |store| store.$name($($arg),*)).await
        }
    )*};
}

impl AsyncSessionStore {
    /// The async form of `store`.
    pub fn new(store: SessionStore) -> Self {
        AsyncSessionStore { store }
    }

    /// The blocking store beneath.
    pub fn blocking(&self) -> &SessionStore {
        &self.store
    }

    /// A view that reads and writes only `user`'s sessions (see
    /// [`SessionStore::for_user`]).
    pub fn for_user(&self, user: impl Into<String>) -> AsyncUserView {
        AsyncUserView {
            store: self.store.clone(),
            user: Arc::from(user.into()),
        }
    }

    /// Runs `f` on the blocking store, on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&SessionStore) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        blocking(move || f(&store)).await
    }

    /// As [`SessionStore::create_session`].
    pub async fn create_session(&self, user_id: Option<String>) -> Result<Uuid> {
        self.run(move |store| store.create_session(user_id.as_deref()))
            .await
    }

    /// As [`SessionStore::add_messages_idempotent`].
    pub async fn add_messages_idempotent(
        &self,
        id: Uuid,
        key: String,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.run(move |store| store.add_messages_idempotent(id, &key, expected_next_seq, messages))
            .await
    }

    /// As [`SessionStore::update_context`].
    pub async fn update_context(&self, id: Uuid, context: String) -> Result<()> {
        self.run(move |store| store.update_context(id, &context)).await
    }

    /// As [`SessionStore::erase_user`].
    pub async fn erase_user(&self, user: String) -> Result<Erased> {
        self.run(move |store| store.erase_user(&user)).await
    }

    /// As [`SessionStore::list_user_sessions`].
    pub async fn list_user_sessions(&self, user: String, include_expired: bool) -> Result<Vec<Uuid>> {
        self.run(move |store| store.list_user_sessions(&user, include_expired))
            .await
    }

    /// As [`SessionStore::recent_sessions`].
    pub async fn recent_sessions(&self, user: String, limit: usize) -> Result<Vec<SessionSummary>> {
        self.run(move |store| store.recent_sessions(&user, limit)).await
    }

    /// As [`SessionStore::user_sessions_page`].
    pub async fn user_sessions_page(
        &self,
        user: String,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        self.run(move |store| store.user_sessions_page(&user, include_expired, after, limit))
            .await
    }

    /// As [`SessionStore::search`].
    pub async fn search(
        &self,
        user: String,
        query: String,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        self.run(move |store| store.search(&user, &query, after, limit))
            .await
    }

    /// As [`SessionStore::check`], without progress.
    pub async fn check(&self) -> Result<CheckReport> {
        self.run(|store| store.check(&mut |_, _| {})).await
    }

    /// As [`SessionStore::backup_to`], without progress.
    pub async fn backup_to(&self, dest: PathBuf) -> Result<()> {
        self.run(move |store| store.backup_to(&dest, &mut |_, _| {}))
            .await
    }

    /// As [`SessionStore::compact`], without progress.
    pub async fn compact(&self) -> Result<CompactReport> {
        self.run(|store| store.compact(&mut |_, _| {})).await
    }

    same_calls! {
        /// As [`SessionStore::get_session`].
        fn get_session(id: Uuid) -> Option<Session>;
        /// As [`SessionStore::session_info`].
        fn session_info(id: Uuid) -> Option<SessionInfo>;
        /// As [`SessionStore::add_message`].
        fn add_message(id: Uuid, message: NewMessage) -> u64;
        /// As [`SessionStore::add_message_if`].
        fn add_message_if(id: Uuid, expected_next_seq: u64, message: NewMessage) -> u64;
        /// As [`SessionStore::add_messages`].
        fn add_messages(id: Uuid, messages: Vec<NewMessage>) -> Vec<u64>;
        /// As [`SessionStore::add_messages_if`].
        fn add_messages_if(id: Uuid, expected_next_seq: u64, messages: Vec<NewMessage>) -> Vec<u64>;
        /// As [`SessionStore::expire_session`].
        fn expire_session(id: Uuid) -> bool;
        /// As [`SessionStore::fork_session`].
        fn fork_session(id: Uuid, at_seq: u64) -> Uuid;
        /// As [`SessionStore::expire_old_sessions`].
        fn expire_old_sessions(max_age: Duration) -> u64;
        /// As [`SessionStore::purge_expired`].
        fn purge_expired(older_than: Duration) -> u64;
        /// As [`SessionStore::delete_session`].
        fn delete_session(id: Uuid) -> u64;
        /// As [`SessionStore::get_recent_messages`].
        fn get_recent_messages(id: Uuid, n: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`SessionStore::messages_after`].
        fn messages_after(id: Uuid, seq: u64, limit: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`SessionStore::messages_from`].
        fn messages_from(id: Uuid, seq: u64, limit: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`SessionStore::messages_before`].
        fn messages_before(id: Uuid, seq: u64, limit: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`SessionStore::get_message`].
        fn get_message(message_id: u64) -> Option<(Uuid, Message)>;
        /// As [`SessionStore::pop_last_message`].
        fn pop_last_message(id: Uuid) -> Option<Message>;
        /// As [`SessionStore::stats`].
        fn stats() -> Stats;
    }
}

/// [`UserView`](crate::UserView) for async code: the calls of one user,
/// each on tokio's blocking pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AsyncUserView {
    store: SessionStore,
    user: Arc<str>,
}

impl AsyncUserView {
    /// The user this view acts as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Runs `f` on the blocking view, on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&crate::UserView<'_>) -> Result<T> + Send + 'static,
    {
        let (store, user) = (self.store.clone(), self.user.clone());
        blocking(move || f(&store.for_user(&user))).await
    }

    /// As [`UserView::create_session`](crate::UserView::create_session).
    pub async fn create_session(&self) -> Result<Uuid> {
        self.run(|view| view.create_session()).await
    }

    /// As [`UserView::add_messages_idempotent`](crate::UserView::add_messages_idempotent).
    pub async fn add_messages_idempotent(
        &self,
        id: Uuid,
        key: String,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.run(move |view| view.add_messages_idempotent(id, &key, expected_next_seq, messages))
            .await
    }

    /// As [`UserView::update_context`](crate::UserView::update_context).
    pub async fn update_context(&self, id: Uuid, context: String) -> Result<()> {
        self.run(move |view| view.update_context(id, &context)).await
    }

    /// As [`UserView::search`](crate::UserView::search).
    pub async fn search(
        &self,
        query: String,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        self.run(move |view| view.search(&query, after, limit)).await
    }

    same_calls! {
        /// As [`UserView::get_session`](crate::UserView::get_session).
        fn get_session(id: Uuid) -> Option<Session>;
        /// As [`UserView::session_info`](crate::UserView::session_info).
        fn session_info(id: Uuid) -> Option<SessionInfo>;
        /// As [`UserView::add_message`](crate::UserView::add_message).
        fn add_message(id: Uuid, message: NewMessage) -> u64;
        /// As [`UserView::add_message_if`](crate::UserView::add_message_if).
        fn add_message_if(id: Uuid, expected_next_seq: u64, message: NewMessage) -> u64;
        /// As [`UserView::add_messages`](crate::UserView::add_messages).
        fn add_messages(id: Uuid, messages: Vec<NewMessage>) -> Vec<u64>;
        /// As [`UserView::add_messages_if`](crate::UserView::add_messages_if).
        fn add_messages_if(id: Uuid, expected_next_seq: u64, messages: Vec<NewMessage>) -> Vec<u64>;
        /// As [`UserView::expire_session`](crate::UserView::expire_session).
        fn expire_session(id: Uuid) -> bool;
        /// As [`UserView::fork_session`](crate::UserView::fork_session).
        fn fork_session(id: Uuid, at_seq: u64) -> Uuid;
        /// As [`UserView::delete_session`](crate::UserView::delete_session).
        fn delete_session(id: Uuid) -> u64;
        /// As [`UserView::get_recent_messages`](crate::UserView::get_recent_messages).
        fn get_recent_messages(id: Uuid, n: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`UserView::messages_after`](crate::UserView::messages_after).
        fn messages_after(id: Uuid, seq: u64, limit: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`UserView::messages_from`](crate::UserView::messages_from).
        fn messages_from(id: Uuid, seq: u64, limit: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`UserView::messages_before`](crate::UserView::messages_before).
        fn messages_before(id: Uuid, seq: u64, limit: u64) -> Option<Vec<Arc<Message>>>;
        /// As [`UserView::get_message`](crate::UserView::get_message).
        fn get_message(message_id: u64) -> Option<(Uuid, Message)>;
        /// As [`UserView::pop_last_message`](crate::UserView::pop_last_message).
        fn pop_last_message(id: Uuid) -> Option<Message>;
        /// As [`UserView::list_sessions`](crate::UserView::list_sessions).
        fn list_sessions(include_expired: bool) -> Vec<Uuid>;
        /// As [`UserView::recent_sessions`](crate::UserView::recent_sessions).
        fn recent_sessions(limit: usize) -> Vec<SessionSummary>;
        /// As [`UserView::sessions_page`](crate::UserView::sessions_page).
        fn sessions_page(include_expired: bool, after: Option<SessionCursor>, limit: usize) -> SessionPage;
    }
}
