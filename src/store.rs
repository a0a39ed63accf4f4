//! [`SessionStore`]: the public API. Each call is forwarded to the store's
//! engine (`crate::engine`) with the caller's access and durability.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

#[cfg(feature = "postgres")]
use crate::engine::postgres::PgEngine;
use crate::engine::redb::hold::StoreHold;
use crate::engine::redb::store::RedbConfig;
use crate::engine::redb::{RedbEngine, RedbOptions};
#[cfg(feature = "tokio")]
use crate::engine::Reply;
use crate::engine::{Engine, MessagePage};
use crate::error::{Error, Result};
use crate::location::is_postgres_url;
use crate::model::{
    Durability, Erased, Message, NewMessage, Progress, Session, SessionCursor, SessionInfo, SessionPage,
    SessionSummary, Settings, Stats, StoreCounters,
};
use crate::rules::{Access, Append};

pub use crate::engine::redb::FORMAT_VERSION;

/// Settings for [`SessionStore::open_with`]: the model's, then the
/// engine's (`redb`).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Largest message content accepted, in bytes (default 64 MiB).
    pub max_content_bytes: usize,
    /// Durability of writes made through this handle (default durable).
    pub durability: Durability,
    /// Whether an open creates the store when there is none (default
    /// `true`): the file missing (its folders are created too), empty, or
    /// holding nothing but zeros where redb's header goes (a creation cut
    /// short).
    ///
    /// `false` opens an existing store only: the open fails with
    /// [`Error::NoStore`] and creates or changes no file, not even the
    /// journal. (Whether the file is missing is asked of the file system,
    /// whatever [`StoreOptions::storage`] is.)
    ///
    /// ```
    /// use sessionstore::{Error, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let existing = StoreOptions { create_if_missing: false, ..StoreOptions::default() };
    /// let error = SessionStore::open_with(&path, existing.clone()).unwrap_err();
    /// assert!(matches!(error, Error::NoStore { .. }), "{error}");
    /// assert!(!path.exists());
    /// // An empty file is no store either, and stays as it is.
    /// std::fs::write(&path, b"")?;
    /// let error = SessionStore::open_with(&path, existing.clone()).unwrap_err();
    /// assert!(error.to_string().contains("empty"), "{error}");
    /// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
    ///
    /// drop(SessionStore::open(&path)?);
    /// SessionStore::open_with(&path, existing)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub create_if_missing: bool,
    /// Opens the store to read it only (default `false`): no file is
    /// written, created or locked for writing, so a store whose files the
    /// process may only read (mode 0444, a read-only mount, another
    /// account's files) can be read. Every write is refused with
    /// [`Error::ReadOnly`].
    ///
    /// A store that was not closed cleanly is recovered in memory: redb's
    /// repair and the replay of its journal are kept in memory (the pages
    /// they rewrite: about the size of the journal's records, at most), and
    /// the reads see every acknowledged write; the files stay as they are,
    /// for the next open for writing to recover. As an open for writing,
    /// it refuses a crashed store whose journal is missing, cut short or
    /// another run's ([`Error::JournalLost`]). The file must exist. As an
    /// open for writing, it is refused while another process has the store
    /// open for writing ([`Error::InUse`]), and it holds off such an open
    /// while it lasts.
    ///
    /// ```
    /// use sessionstore::{Error, NewMessage, SessionStore, StoreOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let store = SessionStore::open(&path)?;
    /// let id = store.create_session(Some("ana"))?;
    /// store.add_message(id, NewMessage::user("hello"))?;
    /// drop(store);
    ///
    /// let options = StoreOptions { read_only: true, ..StoreOptions::default() };
    /// let store = SessionStore::open_with(&path, options)?;
    /// assert_eq!(store.get_session(id)?.unwrap().messages[0].content, "hello");
    /// let refused = store.add_message(id, NewMessage::user("more")).unwrap_err();
    /// assert!(matches!(refused, Error::ReadOnly { .. }));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub read_only: bool,
    /// Whether the store serves its HTTP API (see [`crate::server`]) on a
    /// local Unix socket while open (default `true` where the library is
    /// built with its feature `socket`, on by default; ignored without
    /// it). The socket, `<file>.sock` (see `SessionStore::socket_path`),
    /// has mode 0600 and serves only the process's own user and root,
    /// with full rights: the CLI, a cron job's cleanup, a backup reach the
    /// store while this process holds it. It is removed on close. A
    /// socket that cannot be made (a read-only folder, say) is logged and
    /// left out; the open goes on. A [`StoreOptions::read_only`] store
    /// serves none (it writes no file).
    pub serve_socket: bool,
    /// The redb engine's settings: its caches, files and journal.
    pub redb: RedbOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_content_bytes: 64 << 20,
            durability: Durability::Durable,
            create_if_missing: true,
            read_only: false,
            serve_socket: cfg!(feature = "socket"),
            redb: RedbOptions::default(),
        }
    }
}

impl StoreOptions {
    /// The settings every engine applies.
    fn settings(&self) -> Settings {
        Settings {
            max_content_bytes: self.max_content_bytes,
            durability: self.durability,
            create_if_missing: self.create_if_missing,
            read_only: self.read_only,
            serve_socket: self.serve_socket,
        }
    }
}

/// A store of chat sessions in one redb file.
///
/// Cheap to clone (clones share one file and one writer), `Send + Sync`.
/// The file is closed, after a final durable commit, when the last clone is
/// dropped.
///
/// ```
/// use sessionstore::{NewMessage, SessionStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SessionStore::open(dir.path().join("chat/sessions.redb")).unwrap();
///
/// let session = store.create_session(Some("user123")).unwrap();
/// store.add_message(session, NewMessage::user("Find books by Oxford")).unwrap();
/// store
///     .add_message(session, NewMessage::assistant("Found 15 books by Oxford University Press"))
///     .unwrap();
/// store
///     .update_context(session, r#"{"last_publisher": "Oxford", "last_result_count": 15}"#)
///     .unwrap();
///
/// let loaded = store.get_session(session).unwrap().expect("active session");
/// assert_eq!(loaded.messages.len(), 2);
/// assert_eq!(loaded.messages[1].content, "Found 15 books by Oxford University Press");
/// assert_eq!(store.list_user_sessions("user123", false).unwrap(), vec![session]);
/// ```
#[derive(Clone)]
pub struct SessionStore {
    /// The local socket, shared by the caller's handles only (the
    /// socket's own handle has `None`): the last of them to go stops it,
    /// before `engine` goes and the store closes.
    #[cfg(all(feature = "socket", unix))]
    socket: Option<Arc<crate::socket::LocalSocket>>,
    engine: Arc<dyn Engine>,
    durability: Durability,
    /// The same engine, for the unit tests of the redb engine.
    #[cfg(test)]
    redb: Option<RedbEngine>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("path", &self.path())
            .finish()
    }
}

impl SessionStore {
    /// Opens the store at `path`, creating its parent folders and the file
    /// when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the store at `path` to read it only: see
    /// [`StoreOptions::read_only`].
    ///
    /// ```
    /// use sessionstore::SessionStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let id = SessionStore::open(&path)?.create_session(None)?;
    /// let store = SessionStore::open_read_only(&path)?;
    /// assert!(store.get_session(id)?.is_some());
    /// assert!(store.create_session(None).unwrap_err().is_refusal());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let options = StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        };
        Self::open_with(path, options)
    }

    /// Opens the store with the given options.
    ///
    /// After a crash, the journal's records the database lacks are
    /// replayed. An open that cannot go on (the file is damaged, not a
    /// store, of another version, or in use; the store was not closed
    /// cleanly and its journal is missing, cut short or another run's:
    /// [`Error::JournalLost`]) changes no file: it fails the same way when
    /// tried again.
    ///
    /// With the feature `postgres`, a `postgres://` or `postgresql://` URL
    /// (given as the path) opens the store in that PostgreSQL database,
    /// creating its schema when missing (see `create_if_missing`).
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        #[cfg(not(feature = "postgres"))]
        if path.as_ref().to_str().is_some_and(is_postgres_url) {
            return Err(Error::invalid(
                "store location",
                "a PostgreSQL URL, but sessionstore was built without its `postgres` feature",
            ));
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = path.as_ref().to_str().filter(|p| is_postgres_url(p)) {
            let engine = PgEngine::connect(url, options.settings())?;
            return Ok(Self::serving(Arc::new(engine)));
        }
        let config = RedbConfig {
            settings: options.settings(),
            redb: options.redb,
        };
        let redb = RedbEngine::open(path.as_ref(), config)?;
        #[cfg(test)]
        let mut store = Self::serving(Arc::new(redb.clone()));
        #[cfg(test)]
        {
            store.redb = Some(redb);
        }
        #[cfg(not(test))]
        let store = Self::serving(Arc::new(redb));
        Ok(store)
    }

    /// A store on `engine`, opened: serving the local socket unless the
    /// options say not to or the store is read-only.
    fn serving(engine: Arc<dyn Engine>) -> Self {
        #[allow(unused_mut)]
        let mut store = SessionStore {
            #[cfg(all(feature = "socket", unix))]
            socket: None,
            durability: engine.settings().durability,
            #[cfg(test)]
            redb: None,
            engine,
        };
        #[cfg(all(feature = "socket", unix))]
        // A read-only store writes no file, the socket's included.
        if store.options().serve_socket && !store.options().read_only {
            match crate::socket::LocalSocket::start(store.clone()) {
                Ok(socket) => store.socket = Some(Arc::new(socket)),
                Err(e) => {
                    tracing::warn!(store = %store.path().display(), error = %e, "serving no local socket")
                }
            }
        }
        store
    }

    /// Holds the store file at `path` for a caller about to replace it (a
    /// conversion's `--force`), so that no store has it open meanwhile.
    /// Refused when a store has it open, as [`SessionStore::open`] is
    /// refused: [`Error::InUse`] (another process) or
    /// [`Error::AlreadyOpen`] (this one); while the hold lives, opening it
    /// is refused with [`Error::InUse`]. It only reads the file.
    ///
    /// A path where no file is, or a file no store could open as it is (not
    /// a store, damaged, left by a crash until an open applies its
    /// journal), is open nowhere: the hold then holds nothing.
    ///
    /// ```
    /// use sessionstore::{Error, SessionStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("sessions.redb");
    /// let store = SessionStore::open(&path)?;
    /// let refused = SessionStore::hold_for_replacement(&path).unwrap_err();
    /// assert!(matches!(refused, Error::AlreadyOpen { .. }));
    /// drop(store);
    /// let hold = SessionStore::hold_for_replacement(&path)?;
    /// assert!(matches!(SessionStore::open(&path), Err(Error::InUse { .. })));
    /// drop(hold);
    /// SessionStore::open(&path)?;
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn hold_for_replacement(path: impl AsRef<Path>) -> Result<StoreHold> {
        crate::engine::redb::hold::hold(path.as_ref())
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        self.engine.path()
    }

    /// A handle to the same store whose writes use `durability` instead of
    /// the store's default.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use sessionstore::{Durability, NewMessage, SessionStore};
    /// let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// let fast = store.with_durability(Durability::Relaxed);
    /// let id = fast.create_session(None).unwrap();
    /// fast.add_message(id, NewMessage::user("visible at once, on disk soon")).unwrap();
    /// assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 1);
    /// ```
    pub fn with_durability(&self, durability: Durability) -> Self {
        SessionStore {
            durability,
            ..self.clone()
        }
    }

    /// A view that reads and writes only `user`'s sessions; any other session
    /// answers exactly as a missing one.
    pub fn for_user<'a>(&'a self, user: &'a str) -> UserView<'a> {
        UserView { store: self, user }
    }

    /// Creates a session (a new UUID v4, context and metadata `{}`) and
    /// returns its id. `None` makes an anonymous session.
    pub fn create_session(&self, user_id: Option<&str>) -> Result<Uuid> {
        self.engine.create_session(user_id, self.durability)
    }

    /// The session with all its messages; `None` when missing or expired.
    pub fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        self.engine.get_session(id, Access::Any)
    }

    /// [`get_session`](Self::get_session) if the engine answers it without
    /// waiting (see `Engine::get_session_now`), for async callers.
    #[cfg(feature = "tokio")]
    pub(crate) fn get_session_now(&self, id: Uuid, access: Access<'_>) -> Option<Result<Option<Session>>> {
        self.engine.get_session_now(id, access)
    }

    /// The session's own fields, expired or not; `None` only when missing.
    pub fn session_info(&self, id: Uuid) -> Result<Option<SessionInfo>> {
        self.engine.session_info(id, Access::Any)
    }

    /// Appends a message; returns its global id. Refused when the session is
    /// missing or expired. Sets the session's `updated_at`.
    pub fn add_message(&self, id: Uuid, message: NewMessage) -> Result<u64> {
        self.append_one(id, Append::checked(None), message, Access::Any)
    }

    /// Appends a message only if it would get seq `expected_next_seq`;
    /// otherwise refuses with [`Error::SeqConflict`] and writes nothing.
    pub fn add_message_if(&self, id: Uuid, expected_next_seq: u64, message: NewMessage) -> Result<u64> {
        self.append_one(id, Append::checked(Some(expected_next_seq)), message, Access::Any)
    }

    /// Appends several messages in one commit, all or none (a user's turn
    /// and the reply to it); returns their global ids, in order. Refused as
    /// [`add_message`](Self::add_message) is, and when `messages` is empty
    /// ([`Error::InvalidInput`]: nothing to add, and the session is not
    /// touched).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None).unwrap();
    /// let ids = store
    ///     .add_messages(id, vec![NewMessage::user("books by Aldus"), NewMessage::assistant("Found 3 books")])
    ///     .unwrap();
    /// assert_eq!(ids.len(), 2);
    /// assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 2);
    /// ```
    pub fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
        self.append(id, Append::checked(None), messages, Access::Any)
    }

    /// As [`add_messages`](Self::add_messages), only if the first message
    /// would get seq `expected_next_seq`; otherwise refuses with
    /// [`Error::SeqConflict`] and writes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::{Error, NewMessage};
    /// let id = store.create_session(None).unwrap();
    /// store.add_messages_if(id, 0, vec![NewMessage::user("hi"), NewMessage::assistant("hello")]).unwrap();
    /// let late = store.add_messages_if(id, 0, vec![NewMessage::user("hi")]).unwrap_err();
    /// assert!(matches!(late, Error::SeqConflict { actual: 2, .. }));
    /// ```
    pub fn add_messages_if(
        &self,
        id: Uuid,
        expected_next_seq: u64,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.append(
            id,
            Append::checked(Some(expected_next_seq)),
            messages,
            Access::Any,
        )
    }

    /// As [`add_messages`](Self::add_messages) (or
    /// [`add_messages_if`](Self::add_messages_if) when
    /// `expected_next_seq` is given), remembering `key`, a text the caller
    /// chose for this append (1 to 255 bytes), in the same commit: a call
    /// again with the same session and key appends nothing and returns the
    /// ids the first call gave. A client that lost the answer (a dropped
    /// connection, a crash after the call) retries safely.
    ///
    /// A session remembers its keys for 24 hours, and its newest 64 of them
    /// (older ones are forgotten by its next idempotent append); deleting
    /// the session forgets them. The key is not checked against the
    /// messages: a different request under a remembered key gets the first
    /// one's ids too.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None).unwrap();
    /// let turn = || vec![NewMessage::user("books by Aldus"), NewMessage::assistant("Found 3 books")];
    /// let first = store.add_messages_idempotent(id, "turn-1", None, turn()).unwrap();
    /// let retry = store.add_messages_idempotent(id, "turn-1", None, turn()).unwrap();
    /// assert_eq!(first, retry);
    /// assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 2);
    /// ```
    pub fn add_messages_idempotent(
        &self,
        id: Uuid,
        key: &str,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.append(
            id,
            Append::idempotent(key, expected_next_seq)?,
            messages,
            Access::Any,
        )
    }

    /// Shallow-merges `context` (a JSON object) into the session's context,
    /// as Python's `{**old, **new}`; sets `updated_at`.
    pub fn update_context(&self, id: Uuid, context: &str) -> Result<()> {
        self.engine
            .update_context(id, context, Access::Any, self.durability)
    }

    /// Expires a session (soft delete: its data stays). Returns false when it
    /// was expired already. Refused when missing.
    pub fn expire_session(&self, id: Uuid) -> Result<bool> {
        self.engine.expire_session(id, Access::Any, self.durability)
    }

    /// Expires every active session not updated for `max_age`; returns how
    /// many. Their `expired_at` is the time of this call.
    ///
    /// Costs a count of the sessions it expires and one small commit: the
    /// expiry is recorded as an event that every read applies, and the
    /// sessions are rewritten as expired later, when the writer is idle
    /// (see `ARCHITECTURE.md`, lazy expiry).
    pub fn expire_old_sessions(&self, max_age: Duration) -> Result<u64> {
        self.engine.expire_old_sessions(max_age, self.durability)
    }

    /// As [`expire_old_sessions`](Self::expire_old_sessions), for a cleanup
    /// that shows its progress: calls `progress(expired, due)` once its one
    /// commit is done.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// store.create_session(None).unwrap();
    /// let mut seen = Vec::new();
    /// let expired = store
    ///     .expire_old_sessions_with_progress(std::time::Duration::ZERO, &mut |done, due| seen.push((done, due)))
    ///     .unwrap();
    /// assert_eq!((expired, seen), (1, vec![(1, 1)]));
    /// ```
    pub fn expire_old_sessions_with_progress(
        &self,
        max_age: Duration,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let expired = self.expire_old_sessions(max_age)?;
        progress(expired, expired);
        Ok(expired)
    }

    /// Deletes, with their messages, every session expired more than
    /// `older_than` ago; returns how many.
    pub fn purge_expired(&self, older_than: Duration) -> Result<u64> {
        self.engine.purge_expired(older_than, self.durability)
    }

    /// As [`purge_expired`](Self::purge_expired), in commits of at most 1,024
    /// sessions, calling `progress(deleted, due)` after each. A failure keeps
    /// the commits made before it.
    pub fn purge_expired_with_progress(&self, older_than: Duration, progress: Progress<'_>) -> Result<u64> {
        self.engine
            .purge_expired_with_progress(older_than, progress, self.durability)
    }

    /// Deletes a session, expired or not, with its messages and index
    /// entries; returns how many messages it held. Refused when missing.
    pub fn delete_session(&self, id: Uuid) -> Result<u64> {
        self.engine.delete_session(id, Access::Any, self.durability)
    }

    /// Deletes every session of `user`, active or expired, with all their
    /// messages, and the user's context (see
    /// [`user_context`](Self::user_context)): an erasure request. Returns
    /// what was removed.
    pub fn erase_user(&self, user: &str) -> Result<Erased> {
        self.engine.erase_user(user, self.durability)
    }

    /// Session ids of `user`, most recently updated first.
    pub fn list_user_sessions(&self, user: &str, include_expired: bool) -> Result<Vec<Uuid>> {
        self.engine.list_user_sessions(user, include_expired)
    }

    /// The user's active sessions for a sidebar, most recent first: title,
    /// message count, last activity.
    /// A `limit` of 0 gives an empty list, as SQL's `LIMIT 0` did.
    pub fn recent_sessions(&self, user: &str, limit: usize) -> Result<Vec<SessionSummary>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self.user_sessions_page(user, false, None, limit)?.sessions)
    }

    /// One page of `user`'s sessions, most recently updated first, starting
    /// after `cursor` (from the previous page's `next`). A `limit` of 0 is
    /// refused: an empty page could not say where the next one starts.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// for _ in 0..5 {
    ///     store.create_session(Some("ana")).unwrap();
    /// }
    /// let mut seen = 0;
    /// let mut cursor = None;
    /// loop {
    ///     let page = store.user_sessions_page("ana", false, cursor, 2).unwrap();
    ///     seen += page.sessions.len();
    ///     match page.next {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, 5);
    /// ```
    pub fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        self.engine
            .user_sessions_page(user, include_expired, after, limit)
    }

    /// [`user_sessions_page`](Self::user_sessions_page) if the engine
    /// answers it without waiting, for async callers.
    #[cfg(feature = "tokio")]
    pub(crate) fn user_sessions_page_now(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Option<Result<SessionPage>> {
        self.engine
            .user_sessions_page_now(user, include_expired, after, limit)
    }

    /// The last `n` messages of an active session, oldest first; reads only
    /// those. `None` when the session is missing or expired (a read: see
    /// the [crate docs](crate#missing-none-for-a-read-an-error-for-a-write)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::{NewMessage, Uuid};
    /// let id = store.create_session(None)?;
    /// for n in 0..5 {
    ///     store.add_message(id, NewMessage::user(format!("m{n}")))?;
    /// }
    /// let last = store.get_recent_messages(id, 2)?.expect("active session");
    /// assert_eq!((last[0].content.as_str(), last[1].content.as_str()), ("m3", "m4"));
    /// assert!(store.get_recent_messages(Uuid::new_v4(), 2)?.is_none());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn get_recent_messages(&self, id: Uuid, n: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.messages_before(id, u64::MAX, n)
    }

    /// Up to `limit` messages with seq greater than `seq`, oldest first;
    /// `None` when the session is missing or expired.
    pub fn messages_after(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.engine
            .page_messages(id, MessagePage::After(seq), limit, Access::Any)
    }

    /// Up to `limit` messages from seq `seq` on (that one included), oldest
    /// first: the first page when paging forward from the start; `None`
    /// when the session is missing or expired.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None).unwrap();
    /// for n in 0..5 {
    ///     store.add_message(id, NewMessage::user(format!("m{n}"))).unwrap();
    /// }
    /// let first = store.messages_from(id, 0, 2).unwrap().expect("active session");
    /// let next = store.messages_after(id, first[1].seq, 2).unwrap().expect("active session");
    /// assert_eq!(next[0].content, "m2");
    /// ```
    pub fn messages_from(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.engine
            .page_messages(id, MessagePage::From(seq), limit, Access::Any)
    }

    /// Up to `limit` messages with seq less than `seq`, the nearest ones,
    /// oldest first; `None` when the session is missing or expired.
    pub fn messages_before(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.engine
            .page_messages(id, MessagePage::Before(seq), limit, Access::Any)
    }

    /// A message by its global id, with the session it belongs to (expired
    /// or not, as [`session_info`](Self::session_info)); `None` when no
    /// message has that id (never given out, popped, or its session deleted).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(None)?;
    /// let message = store.add_message(id, NewMessage::user("hello"))?;
    /// let (session, found) = store.get_message(message)?.expect("stored");
    /// assert_eq!((session, found.content.as_str()), (id, "hello"));
    /// store.pop_last_message(id)?;
    /// assert!(store.get_message(message)?.is_none());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn get_message(&self, message_id: u64) -> Result<Option<(Uuid, Message)>> {
        self.engine.get_message(message_id, Access::Any)
    }

    /// Removes the last message of an active session (undo the last turn)
    /// and returns it; `None` when the session has none. Its id is never
    /// given out again.
    pub fn pop_last_message(&self, id: Uuid) -> Result<Option<Message>> {
        self.engine.pop_last_message(id, Access::Any, self.durability)
    }

    /// Active and expired sessions, messages, and the sizes of the file and
    /// of its journal.
    pub fn stats(&self) -> Result<Stats> {
        self.engine.stats()
    }

    /// What this store has done since it was opened: commits and their
    /// write requests, checkpoints, and the message cache's hits and
    /// misses (see [`StoreCounters`]). Reads counters kept in memory: no
    /// I/O, no lock. Clones of a store share its counters; a read-only
    /// store commits nothing.
    ///
    /// ```
    /// use sessionstore::{NewMessage, SessionStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = SessionStore::open(dir.path().join("s.redb"))?;
    /// let id = store.create_session(None)?;
    /// store.add_messages(id, vec![NewMessage::user("hi"), NewMessage::assistant("hello")])?;
    /// store.get_session(id)?; // read from the file, then kept
    /// store.get_session(id)?; // served from the message cache
    /// let counters = store.counters();
    /// // One thread writing: each call its own commit of one request.
    /// assert_eq!((counters.commits, counters.batch_requests), (2, 2));
    /// assert_eq!((counters.message_cache_misses, counters.message_cache_hits), (1, 1));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn counters(&self) -> StoreCounters {
        self.engine.counters()
    }

    /// The settings the store was opened with.
    #[cfg(feature = "server")]
    pub(crate) fn options(&self) -> &Settings {
        self.engine.settings()
    }

    /// The engine, for the other files of the public API.
    pub(crate) fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// The durability of this handle's writes.
    pub(crate) fn durability(&self) -> Durability {
        self.durability
    }

    /// Every append: all of `messages` in one commit, or none.
    pub(crate) fn append(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
    ) -> Result<Vec<u64>> {
        self.engine
            .add_messages(id, append, messages, access, self.durability)
    }

    /// Whether [`Self::submit_append`] returns at once (see
    /// `Engine::submits_writes`).
    #[cfg(feature = "tokio")]
    pub(crate) fn submits_writes(&self) -> bool {
        self.engine.submits_writes()
    }

    /// [`Self::append`], answered through `reply` (for async callers).
    #[cfg(feature = "tokio")]
    pub(crate) fn submit_append(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        reply: Reply<Vec<u64>>,
    ) {
        self.engine
            .submit_add_messages(id, append, messages, access, self.durability, reply)
    }

    /// An append of one message; its id.
    fn append_one(&self, id: Uuid, append: Append, message: NewMessage, access: Access<'_>) -> Result<u64> {
        let mut added = self.append(id, append, vec![message], access)?;
        added
            .pop()
            .ok_or_else(|| Error::invalid("messages", "none to add"))
    }
}

/// A [`SessionStore`] seen by one user: every call behaves as if other users'
/// sessions did not exist, and anonymous sessions are nobody's.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
/// let bobs = store.create_session(Some("bob")).unwrap();
/// let ana = store.for_user("ana");
/// assert!(ana.get_session(bobs).unwrap().is_none());
/// assert!(ana.add_message(bobs, sessionstore::NewMessage::user("hi")).unwrap_err().is_not_found());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct UserView<'a> {
    pub(crate) store: &'a SessionStore,
    pub(crate) user: &'a str,
}

impl UserView<'_> {
    pub(crate) fn access(&self) -> Access<'_> {
        Access::Owner(self.user)
    }

    /// Creates a session owned by this user.
    pub fn create_session(&self) -> Result<Uuid> {
        self.store.create_session(Some(self.user))
    }

    /// As [`SessionStore::get_session`], for this user's sessions only.
    pub fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        self.store.engine.get_session(id, self.access())
    }

    /// As [`SessionStore::add_message`], for this user's sessions only.
    pub fn add_message(&self, id: Uuid, message: NewMessage) -> Result<u64> {
        self.store
            .append_one(id, Append::checked(None), message, self.access())
    }

    /// As [`SessionStore::add_message_if`], for this user's sessions only.
    pub fn add_message_if(&self, id: Uuid, expected_next_seq: u64, message: NewMessage) -> Result<u64> {
        self.store.append_one(
            id,
            Append::checked(Some(expected_next_seq)),
            message,
            self.access(),
        )
    }

    /// As [`SessionStore::add_messages`], for this user's sessions only.
    pub fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
        self.store
            .append(id, Append::checked(None), messages, self.access())
    }

    /// As [`SessionStore::add_messages_if`], for this user's sessions only.
    pub fn add_messages_if(
        &self,
        id: Uuid,
        expected_next_seq: u64,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.store.append(
            id,
            Append::checked(Some(expected_next_seq)),
            messages,
            self.access(),
        )
    }

    /// As [`SessionStore::add_messages_idempotent`], for this user's
    /// sessions only.
    pub fn add_messages_idempotent(
        &self,
        id: Uuid,
        key: &str,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.store.append(
            id,
            Append::idempotent(key, expected_next_seq)?,
            messages,
            self.access(),
        )
    }

    /// As [`SessionStore::update_context`], for this user's sessions only.
    pub fn update_context(&self, id: Uuid, context: &str) -> Result<()> {
        self.store
            .engine
            .update_context(id, context, self.access(), self.store.durability)
    }

    /// As [`SessionStore::expire_session`], for this user's sessions only.
    pub fn expire_session(&self, id: Uuid) -> Result<bool> {
        self.store
            .engine
            .expire_session(id, self.access(), self.store.durability)
    }

    /// As [`SessionStore::delete_session`], for this user's sessions only.
    pub fn delete_session(&self, id: Uuid) -> Result<u64> {
        self.store
            .engine
            .delete_session(id, self.access(), self.store.durability)
    }

    /// As [`SessionStore::get_recent_messages`], for this user's sessions only.
    pub fn get_recent_messages(&self, id: Uuid, n: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .engine
            .page_messages(id, MessagePage::Before(u64::MAX), n, self.access())
    }

    /// As [`SessionStore::messages_after`], for this user's sessions only.
    pub fn messages_after(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .engine
            .page_messages(id, MessagePage::After(seq), limit, self.access())
    }

    /// As [`SessionStore::messages_from`], for this user's sessions only.
    pub fn messages_from(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .engine
            .page_messages(id, MessagePage::From(seq), limit, self.access())
    }

    /// As [`SessionStore::messages_before`], for this user's sessions only.
    pub fn messages_before(&self, id: Uuid, seq: u64, limit: u64) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .engine
            .page_messages(id, MessagePage::Before(seq), limit, self.access())
    }

    /// As [`SessionStore::get_message`], for this user's messages only.
    pub fn get_message(&self, message_id: u64) -> Result<Option<(Uuid, Message)>> {
        self.store.engine.get_message(message_id, self.access())
    }

    /// As [`SessionStore::pop_last_message`], for this user's sessions only.
    pub fn pop_last_message(&self, id: Uuid) -> Result<Option<Message>> {
        self.store
            .engine
            .pop_last_message(id, self.access(), self.store.durability)
    }

    /// This user's session ids, most recently updated first.
    pub fn list_sessions(&self, include_expired: bool) -> Result<Vec<Uuid>> {
        self.store.list_user_sessions(self.user, include_expired)
    }

    /// This user's active sessions for a sidebar.
    pub fn recent_sessions(&self, limit: usize) -> Result<Vec<SessionSummary>> {
        self.store.recent_sessions(self.user, limit)
    }

    /// As [`SessionStore::user_sessions_page`], for this user.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// let ana = store.for_user("ana");
    /// for _ in 0..3 {
    ///     ana.create_session().unwrap();
    /// }
    /// let first = ana.sessions_page(false, None, 2).unwrap();
    /// let rest = ana.sessions_page(false, first.next, 2).unwrap();
    /// assert_eq!((first.sessions.len(), rest.sessions.len(), rest.next), (2, 1, None));
    /// ```
    pub fn sessions_page(
        &self,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        self.store
            .user_sessions_page(self.user, include_expired, after, limit)
    }

    /// As [`SessionStore::session_info`] (expired sessions included), for
    /// this user's sessions only.
    pub fn session_info(&self, id: Uuid) -> Result<Option<SessionInfo>> {
        self.store.engine.session_info(id, self.access())
    }
}

#[cfg(test)]
impl SessionStore {
    /// The redb engine under this store.
    pub(crate) fn redb(&self) -> &RedbEngine {
        self.redb.as_ref().expect("a store on redb")
    }

    /// The store opened from a copy of its files as they are now, this one
    /// still open: what a crash would leave (the copy's folder beside it).
    pub(crate) fn reopened_after_a_crash(&self) -> (tempfile::TempDir, SessionStore) {
        let crashed = tempfile::tempdir().unwrap();
        let path = self.path();
        for file in std::iter::once(path.to_path_buf()).chain(SessionStore::files_beside(path)) {
            std::fs::copy(&file, crashed.path().join(file.file_name().unwrap())).unwrap();
        }
        let reopened = SessionStore::open(crashed.path().join(path.file_name().unwrap())).unwrap();
        (crashed, reopened)
    }
}
