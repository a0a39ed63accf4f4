//! Reading a session to a token budget: the newest messages whose token
//! counts fit, in one reverse scan that stops where the budget does.

use std::num::NonZeroU32;
use std::sync::Arc;

use uuid::Uuid;

use crate::error::Result;
use crate::model::Message;
use crate::rules::Access;
use crate::store::{SessionStore, UserView};

/// How [`SessionStore::messages_within`] costs a message that carries no
/// token count ([`Message::tokens`] is `None`); a message with a count
/// costs its count, whatever the rule.
///
/// ```
/// use sessionstore::{Message, TokenRule};
/// # let message = |content: &str| -> Message {
/// #     serde_json::from_value(serde_json::json!({
/// #         "id": 1, "seq": 0, "role": "user", "content": content,
/// #         "query_plan": null, "candidate_set": null, "timestamp": "2026-01-13T09:41:07"
/// #     })).unwrap()
/// # };
/// assert_eq!(TokenRule::default().cost(&message("hello")), 2); // 5 bytes, 4 to a token, rounded up
/// assert_eq!(TokenRule::Estimate(|m| m.content.chars().count() as u64).cost(&message("héllo")), 5);
/// ```
#[derive(Clone, Copy, Debug)]
pub enum TokenRule {
    /// The content's length in bytes divided by this, rounded up (an empty
    /// message costs 0). The default is 4 bytes to a token.
    BytesPerToken(NonZeroU32),
    /// The caller's own estimate.
    Estimate(fn(&Message) -> u64),
}

impl Default for TokenRule {
    fn default() -> Self {
        TokenRule::BytesPerToken(NonZeroU32::new(4).expect("4 is not zero"))
    }
}

impl TokenRule {
    /// What `message` costs: its token count when it has one, else this rule.
    pub fn cost(&self, message: &Message) -> u64 {
        match (message.tokens, self) {
            (Some(tokens), _) => u64::from(tokens),
            (None, TokenRule::BytesPerToken(per)) => {
                (message.content.len() as u64).div_ceil(u64::from(per.get()))
            }
            (None, TokenRule::Estimate(estimate)) => estimate(message),
        }
    }
}

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
