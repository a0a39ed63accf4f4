//! Reading a session to a token budget: the newest messages whose token
//! counts fit, in one reverse scan that stops where the budget does.

use std::sync::Arc;

use uuid::Uuid;

use crate::error::Result;
use crate::model::Message;
use crate::rules::budget::TokenRule;
use crate::rules::Access;
use crate::store::{SessionStore, UserView};

impl SessionStore {
    /// The newest messages of an active session whose costs (see
    /// [`TokenRule`]) add up to at most `budget`, oldest first; `None` when
    /// the session is missing or expired.
    ///
    /// The messages returned are the newest ones, without a gap: reading
    /// stops at the first message (from the newest back) that does not fit.
    /// A user message and the assistant reply right after it are taken
    /// together or not at all; a message is never cut. The read is one
    /// reverse scan of the session's messages that stops there: it decodes
    /// the messages it returns and at most the two (a user message and its
    /// reply) that did not fit.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb"))?;
    /// use sessionstore::{NewMessage, TokenRule};
    /// let id = store.create_session(Some("ana"))?;
    /// store.add_messages(id, vec![
    ///     NewMessage::user("books by Oxford").with_tokens(4),
    ///     NewMessage::assistant("Found 15 books").with_tokens(4),
    ///     NewMessage::user("only those after 1900").with_tokens(5),
    ///     NewMessage::assistant("Found 6 books").with_tokens(4),
    /// ])?;
    /// let fit = store.messages_within(id, 12, TokenRule::default())?.expect("active");
    /// let seqs: Vec<u64> = fit.iter().map(|m| m.seq).collect();
    /// assert_eq!(seqs, [2, 3]); // the pair before does not fit whole
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.engine().messages_within(id, budget, rule, Access::Any)
    }
}

impl UserView<'_> {
    /// As [`SessionStore::messages_within`], for this user's sessions only.
    pub fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.store
            .engine()
            .messages_within(id, budget, rule, self.access())
    }
}
