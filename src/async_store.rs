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
use crate::rules::{Access, Append};
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

/// An append: where the engine submits writes, handed to its writer, the
/// caller awaiting the reply (no thread waits for the commit); else run on
/// tokio's blocking pool.
async fn append(
    store: &SessionStore,
    id: Uuid,
    append: Append,
    messages: Vec<NewMessage>,
    access: Access<'_>,
) -> Result<Vec<u64>> {
    if !store.submits_writes() {
        let (store, access) = (store.clone(), access.to_owned());
        return blocking(move || store.append(id, append, messages, access.borrow())).await;
    }
    let (sender, answer) = tokio::sync::oneshot::channel();
    let reply = Box::new(move |result| {
        // The caller may have gone (its future dropped): the write stands.
        let _ = sender.send(result);
    });
    store.submit_append(id, append, messages, access, reply);
    answer.await.unwrap_or(Err(Error::WriterStopped))
}

/// The id of an append of one message.
fn one(ids: Result<Vec<u64>>) -> Result<u64> {
    ids?.pop()
        .ok_or_else(|| Error::invalid("messages", "none to add"))
}

/// The appends of `$owner` (`SessionStore` or `UserView`), each through
/// [`append`] with the caller's `self.access()`.
macro_rules! append_calls {
    ($owner:literal) => {
        #[doc = concat!("As [`", $owner, "::add_message`](crate::", $owner, "::add_message).")]
        pub async fn add_message(&self, id: Uuid, message: NewMessage) -> Result<u64> {
            one(append(&self.store, id, Append::checked(None), vec![message], self.access()).await)
        }

        #[doc = concat!("As [`", $owner, "::add_message_if`](crate::", $owner, "::add_message_if).")]
        pub async fn add_message_if(&self, id: Uuid, expected_next_seq: u64, message: NewMessage) -> Result<u64> {
            let checked = Append::checked(Some(expected_next_seq));
            one(append(&self.store, id, checked, vec![message], self.access()).await)
        }

        #[doc = concat!("As [`", $owner, "::add_messages`](crate::", $owner, "::add_messages).")]
        pub async fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
            append(&self.store, id, Append::checked(None), messages, self.access()).await
        }

        #[doc = concat!("As [`", $owner, "::add_messages_if`](crate::", $owner, "::add_messages_if).")]
        pub async fn add_messages_if(
            &self,
            id: Uuid,
            expected_next_seq: u64,
            messages: Vec<NewMessage>,
        ) -> Result<Vec<u64>> {
            let checked = Append::checked(Some(expected_next_seq));
            append(&self.store, id, checked, messages, self.access()).await
        }

        #[doc = concat!(
            "As [`", $owner, "::add_messages_idempotent`](crate::", $owner, "::add_messages_idempotent)."
        )]
        pub async fn add_messages_idempotent(
            &self,
            id: Uuid,
            key: String,
            expected_next_seq: Option<u64>,
            messages: Vec<NewMessage>,
        ) -> Result<Vec<u64>> {
            let idempotent = Append::idempotent(&key, expected_next_seq)?;
            append(&self.store, id, idempotent, messages, self.access()).await
        }
    };
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

    fn access(&self) -> Access<'_> {
        Access::Any
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

    append_calls!("SessionStore");

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

    /// As [`SessionStore::user_sessions_page`]; answered on the calling
    /// worker when the store can without waiting (every title from the
    /// message cache, no maintenance holding the database), else on the
    /// blocking pool.
    pub async fn user_sessions_page(
        &self,
        user: String,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        if let Some(page) = self
            .store
            .user_sessions_page_now(&user, include_expired, after, limit)
        {
            return page;
        }
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

    /// As [`SessionStore::get_session`]; answered on the calling worker when
    /// the store can without waiting (the session's messages in the message
    /// cache, no maintenance holding the database), else on the blocking pool.
    pub async fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        match self.store.get_session_now(id, self.access()) {
            Some(answer) => answer,
            None => self.run(move |store| store.get_session(id)).await,
        }
    }

    same_calls! {
        /// As [`SessionStore::session_info`].
        fn session_info(id: Uuid) -> Option<SessionInfo>;
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

    fn access(&self) -> Access<'_> {
        Access::Owner(&self.user)
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

    append_calls!("UserView");

    /// As [`UserView::sessions_page`](crate::UserView::sessions_page),
    /// answered as [`AsyncSessionStore::user_sessions_page`] is.
    pub async fn sessions_page(
        &self,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        let (store, user) = (&self.store, &self.user);
        if let Some(page) = store.user_sessions_page_now(user, include_expired, after, limit) {
            return page;
        }
        self.run(move |view| view.sessions_page(include_expired, after, limit))
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

    /// As [`UserView::get_session`](crate::UserView::get_session), answered
    /// as [`AsyncSessionStore::get_session`] is.
    pub async fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        match self.store.get_session_now(id, self.access()) {
            Some(answer) => answer,
            None => self.run(move |view| view.get_session(id)).await,
        }
    }

    same_calls! {
        /// As [`UserView::session_info`](crate::UserView::session_info).
        fn session_info(id: Uuid) -> Option<SessionInfo>;
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
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A store holding one session of three messages, read once (its
    /// messages are in the message cache).
    fn store_with_a_read_session() -> (tempfile::TempDir, AsyncSessionStore, Uuid) {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        for n in 0..3 {
            store.add_message(id, NewMessage::user(format!("m{n}"))).unwrap();
        }
        store.get_session(id).unwrap().unwrap();
        (dir, AsyncSessionStore::new(store), id)
    }

    fn one_worker(blocking_threads: usize) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(blocking_threads)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The one thread of the blocking pool is taken: a read of a session
    /// the cache holds is answered all the same, on the worker.
    #[test]
    fn a_cached_read_needs_no_blocking_thread() {
        let (_dir, store, id) = store_with_a_read_session();
        let runtime = one_worker(1);
        let (release, released) = mpsc::channel::<()>();
        runtime.block_on(async {
            let taken = tokio::task::spawn_blocking(move || released.recv_timeout(Duration::from_secs(10)));
            let read = tokio::time::timeout(Duration::from_secs(2), store.get_session(id)).await;
            let view = store.for_user("ana");
            let read_as_ana = tokio::time::timeout(Duration::from_secs(2), view.get_session(id)).await;
            let listed = tokio::time::timeout(
                Duration::from_secs(2),
                store.user_sessions_page("ana".into(), false, None, 10),
            )
            .await;
            let listed_by_ana =
                tokio::time::timeout(Duration::from_secs(2), view.sessions_page(false, None, 10)).await;
            release.send(()).unwrap();
            taken.await.unwrap().unwrap();
            for page in [listed, listed_by_ana] {
                let page = page.expect("listed without the blocking pool").unwrap();
                let titles: Vec<&str> = page.sessions.iter().map(|s| s.title.as_str()).collect();
                assert_eq!(titles, ["m0"]);
            }
            let session = read
                .expect("answered without the blocking pool")
                .unwrap()
                .unwrap();
            assert_eq!(session.messages.len(), 3);
            let session = read_as_ana
                .expect("answered without the blocking pool")
                .unwrap()
                .unwrap();
            assert_eq!(session.messages.len(), 3);
        });
        let bob = store.for_user("bob");
        assert!(one_worker(1).block_on(bob.get_session(id)).unwrap().is_none());
    }

    /// The one thread of the blocking pool is taken: appends are answered
    /// all the same (submitted to the writer, committed on its threads),
    /// durably, an idempotent retry once.
    #[test]
    fn an_async_append_needs_no_blocking_thread_and_is_durable() {
        let (_dir, store, id) = store_with_a_read_session();
        let runtime = one_worker(1);
        let (release, released) = mpsc::channel::<()>();
        let ana = store.for_user("ana");
        let appended = runtime.block_on(async {
            let taken = tokio::task::spawn_blocking(move || released.recv_timeout(Duration::from_secs(10)));
            let appends = async {
                let one = store.add_message(id, NewMessage::user("one")).await?;
                let two = ana.add_message_if(id, 4, NewMessage::assistant("two")).await?;
                let key = "retried".to_owned();
                let first = store
                    .add_messages_idempotent(id, key.clone(), None, vec![NewMessage::user("three")])
                    .await?;
                let retry = ana
                    .add_messages_idempotent(id, key, None, vec![NewMessage::user("three")])
                    .await?;
                assert_eq!(first, retry);
                let late = store.add_messages_if(id, 3, vec![NewMessage::user("late")]).await;
                assert!(matches!(late, Err(Error::SeqConflict { .. })), "{late:?}");
                let bob = store.for_user("bob").add_message(id, NewMessage::user("x")).await;
                assert!(bob.unwrap_err().is_not_found());
                Ok::<_, Error>(vec![one, two, first[0]])
            };
            let appended = tokio::time::timeout(Duration::from_secs(5), appends).await;
            release.send(()).unwrap();
            taken.await.unwrap().unwrap();
            appended.expect("answered without the blocking pool").unwrap()
        });
        let (_crashed, reopened) = store.blocking().reopened_after_a_crash();
        let session = reopened.get_session(id).unwrap().unwrap();
        let contents: Vec<&str> = session.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["m0", "m1", "m2", "one", "two", "three"]);
        let ids: Vec<u64> = session.messages[3..].iter().map(|m| m.id).collect();
        assert_eq!(ids, appended);
    }

    /// While maintenance holds the database, a read waits for it on the
    /// blocking pool: the worker goes on running other tasks, and the read
    /// answers once the database is free.
    #[test]
    fn a_read_during_maintenance_waits_off_the_worker() {
        let (_dir, store, id) = store_with_a_read_session();
        let (holding, held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let maintenance = {
            let blocking = store.blocking().clone();
            std::thread::spawn(move || {
                blocking.redb().maintain(move |_| {
                    holding.send(()).unwrap();
                    // Without the fallback the worker is stuck in the read,
                    // and nobody releases: the timeout ends the hold.
                    let _ = released.recv_timeout(Duration::from_secs(3));
                    Ok(())
                })
            })
        };
        held.recv().unwrap();
        one_worker(4).block_on(async {
            let read = tokio::spawn({
                let store = store.clone();
                async move { store.get_session(id).await }
            });
            let listed = tokio::spawn({
                let store = store.clone();
                async move { store.user_sessions_page("ana".into(), false, None, 10).await }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !read.is_finished(),
                "a read while maintenance holds the database waits"
            );
            assert!(!listed.is_finished(), "so does a listing");
            release.send(()).unwrap();
            assert_eq!(listed.await.unwrap().unwrap().sessions.len(), 1);
            let session = read.await.unwrap().unwrap().unwrap();
            assert_eq!(session.messages.len(), 3);
        });
        maintenance.join().unwrap().unwrap();
    }
}
