//! Branching: a new session holding the first messages of another one
//! ("edit this message and regenerate", "branch in a new chat").

use uuid::Uuid;

use crate::error::Result;
use crate::model::SessionInfo;
use crate::rules::Access;
use crate::store::{SessionStore, UserView};

impl SessionStore {
    /// Creates a new session holding copies of the messages of session `id`
    /// before seq `at_seq` (all of them when `at_seq` is its message count),
    /// and returns its id.
    ///
    /// The fork has the same user and the context as it is now; its
    /// metadata is the source's with `{"forked_from": {"session": ID,
    /// "at_seq": N}}` merged in (as [`update_context`](Self::update_context)
    /// merges). The copies keep their role, content, JSON, timestamps and
    /// token counts, under new message ids. Refused when the session is
    /// missing or expired ([`Error::SessionNotFound`]) and when `at_seq` is
    /// past its message count ([`Error::InvalidInput`]).
    ///
    /// Costs one commit that writes `at_seq` message records and their
    /// `message_ids` entries: as many bytes as the messages kept (a fork of
    /// 10,000 messages of the benchmark's chat grows a compacted file by
    /// about as much as the 10,000 messages did, see `tests/fork.rs`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb"))?;
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(Some("ana"))?;
    /// store.add_message(id, NewMessage::user("books by Oxford"))?;
    /// store.add_message(id, NewMessage::assistant("Found 15 books"))?;
    /// // Regenerate the reply: branch before it.
    /// let fork = store.fork_session(id, 1)?;
    /// let branched = store.get_session(fork)?.expect("active");
    /// assert_eq!(branched.messages.len(), 1);
    /// assert_eq!(branched.user_id.as_deref(), Some("ana"));
    /// assert_eq!(
    ///     branched.metadata.as_ref().unwrap().as_str(),
    ///     format!(r#"{{"forked_from": {{"session": "{id}", "at_seq": 1}}}}"#)
    /// );
    /// let forks = store.forks(id)?.expect("exists");
    /// assert_eq!(forks[0].session_id, fork);
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn fork_session(&self, id: Uuid, at_seq: u64) -> Result<Uuid> {
        self.engine()
            .fork_session(id, at_seq, Access::Any, self.durability())
    }

    /// The sessions forked from session `id` that still exist, expired or
    /// not, oldest first; `None` when `id` is missing (expired, it still
    /// has its forks, as [`session_info`](Self::session_info) still has it).
    pub fn forks(&self, id: Uuid) -> Result<Option<Vec<SessionInfo>>> {
        self.engine().forks(id, Access::Any)
    }
}

impl UserView<'_> {
    /// As [`SessionStore::fork_session`], for this user's sessions only.
    pub fn fork_session(&self, id: Uuid, at_seq: u64) -> Result<Uuid> {
        self.store
            .engine()
            .fork_session(id, at_seq, self.access(), self.store.durability())
    }

    /// As [`SessionStore::forks`], for this user's sessions only.
    pub fn forks(&self, id: Uuid) -> Result<Option<Vec<SessionInfo>>> {
        self.store.engine().forks(id, self.access())
    }
}
