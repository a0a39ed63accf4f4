//! Branching: a new session holding the first messages of another one
//! ("edit this message and regenerate", "branch in a new chat").
//!
//! A fork copies the messages it keeps, under new ids: each copy costs
//! what the original costs (its record and its `message_ids` entry).
//! Sharing them would need every read of a message to follow an
//! indirection, and `pop_last_message`, deletion and erasure to count the
//! sessions that share it; a copy keeps each session's messages its own.

use uuid::Uuid;

use crate::encoding::{SessionRecord, StoredTimestamp};
use crate::error::{Error, Result};
use crate::json::{shallow_merge, JsonText};
use crate::model::SessionInfo;
use crate::store::{writable_session, Access, SessionStore, UserView};
use crate::tables;
use crate::timestamp::Timestamp;

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
        self.fork_session_as(id, at_seq, Access::Any)
    }

    fn fork_session_as(&self, id: Uuid, at_seq: u64, access: Access<'_>) -> Result<Uuid> {
        let fork = Uuid::new_v4();
        let origin = JsonText::from_value(&serde_json::json!({
            "forked_from": {"session": id.to_string(), "at_seq": at_seq}
        }));
        let access = access.to_owned();
        self.write(move |tables| {
            let source = writable_session(tables, id, access.borrow())?;
            check_fork_point(id, at_seq, source.message_count)?;
            let (parent, key) = (id.as_u128(), fork.as_u128());
            if tables.session(key)?.is_some() {
                return Err(Error::invalid("session_id", format!("{fork} exists already")));
            }
            let first_id = tables.next_message_id()?;
            for seq in 0..at_seq {
                let mut message =
                    tables::message_record(tables.messages.table()?, parent, seq)?.ok_or_else(|| {
                        Error::corrupt_record("messages", "message count beyond the last message")
                    })?;
                message.id = first_id + seq;
                tables.put_message(key, seq, &message)?;
            }
            tables.set_next_message_id(first_id + at_seq)?;
            let metadata = shallow_merge(source.metadata.clone().map(JsonText::trusted).as_ref(), &origin)?;
            let now = StoredTimestamp::from(&Timestamp::now());
            let record = SessionRecord {
                user_id: source.user_id.clone(),
                created_at: now.clone(),
                updated_at: now,
                expired_at: None,
                context: source.context.clone(),
                metadata: Some(metadata.into_string()),
                message_count: at_seq,
                extra: Vec::new(),
                revision: 0,
            };
            tables.put_session(key, None, record)?;
            tables.add_fork(parent, key)
        })?;
        Ok(fork)
    }

    /// The sessions forked from session `id` that still exist, expired or
    /// not, oldest first; `None` when `id` is missing (expired, it still
    /// has its forks, as [`session_info`](Self::session_info) still has it).
    pub fn forks(&self, id: Uuid) -> Result<Option<Vec<SessionInfo>>> {
        self.forks_as(id, Access::Any)
    }

    fn forks_as(&self, id: Uuid, access: Access<'_>) -> Result<Option<Vec<SessionInfo>>> {
        self.reading(|txn| {
            let sessions = txn.open_table(tables::SESSIONS)?;
            let parent = id.as_u128();
            if !tables::session_record(&sessions, parent)?.is_some_and(|r| access.allows(&r)) {
                return Ok(None);
            }
            let forks = txn.open_table(tables::FORKS)?;
            let mut expiry = self.expiry(txn);
            let mut infos = Vec::new();
            for entry in forks.range((parent, 0)..=(parent, u128::MAX))? {
                let key = entry?.0.value().1;
                let mut record = tables::session_record(&sessions, key)?
                    .ok_or_else(|| Error::corrupt_record("forks", "entry without a session"))?;
                expiry.apply(&mut record)?;
                infos.push(record.into_info(Uuid::from_u128(key)));
            }
            infos.sort_by_key(|info| (info.created_at.micros(), info.session_id));
            Ok(Some(infos))
        })
    }
}

/// Refuses a fork of session `id`, which holds `count` messages, past its
/// end.
pub(crate) fn check_fork_point(id: Uuid, at_seq: u64, count: u64) -> Result<()> {
    if at_seq > count {
        return Err(Error::invalid(
            "at_seq",
            format!("{at_seq} is past the end of session {id}, which holds {count} messages"),
        ));
    }
    Ok(())
}

impl UserView<'_> {
    /// As [`SessionStore::fork_session`], for this user's sessions only.
    pub fn fork_session(&self, id: Uuid, at_seq: u64) -> Result<Uuid> {
        self.store.fork_session_as(id, at_seq, self.access())
    }

    /// As [`SessionStore::forks`], for this user's sessions only.
    pub fn forks(&self, id: Uuid) -> Result<Option<Vec<SessionInfo>>> {
        self.store.forks_as(id, self.access())
    }
}
