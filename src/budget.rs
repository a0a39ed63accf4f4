//! Reading a session to a token budget: the newest messages whose token
//! counts fit, in one reverse scan that stops where the budget does.

use std::num::NonZeroU32;
use std::sync::Arc;

use uuid::Uuid;

use crate::encoding::{decode, MessageRecord, RecordKey};
use crate::error::Result;
use crate::model::{Message, Role};
use crate::store::{Access, SessionStore, UserView};
use crate::tables;

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
        self.messages_within_as(id, budget, rule, Access::Any)
    }

    fn messages_within_as(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.reading(|txn| {
            let Some(record) = self.active_session(txn, id, access)? else {
                return Ok(None);
            };
            let session = id.as_u128();
            let table = txn.open_table(tables::MESSAGES)?;
            let mut newest_first = table.range((session, 0)..(session, record.message_count))?.rev();
            let next = || -> Result<Option<Message>> {
                let Some(entry) = newest_first.next() else {
                    return Ok(None);
                };
                let (key, value) = entry?;
                let seq = key.value().1;
                let record: MessageRecord = decode(RecordKey::Message(session, seq), value.value())?;
                Ok(Some(record.into_message(seq)))
            };
            let taken = newest_within(budget, rule, next)?;
            Ok(Some(taken.into_iter().map(Arc::new).collect()))
        })
    }
}

/// The newest messages whose costs add up to at most `budget`, oldest
/// first, from `next`, which gives a session's messages newest first (see
/// [`SessionStore::messages_within`]): takes a user message and the reply
/// after it together, and stops at the first that does not fit, reading
/// at most the two that did not.
pub(crate) fn newest_within(
    budget: u64,
    rule: TokenRule,
    mut next: impl FnMut() -> Result<Option<Message>>,
) -> Result<Vec<Message>> {
    let mut left = budget;
    let mut taken = Vec::new();
    let mut waiting = None;
    loop {
        let Some(message) = waiting.take().map_or_else(&mut next, |m| Ok(Some(m)))? else {
            break;
        };
        let mut cost = rule.cost(&message);
        if cost > left {
            break;
        }
        let mut unit = vec![message];
        if unit[0].role == Role::Assistant {
            match next()? {
                Some(before) if before.role == Role::User => {
                    cost = cost.saturating_add(rule.cost(&before));
                    if cost > left {
                        break;
                    }
                    unit.push(before);
                }
                other => waiting = other,
            }
        }
        left -= cost;
        taken.extend(unit);
    }
    taken.reverse();
    Ok(taken)
}

impl UserView<'_> {
    /// As [`SessionStore::messages_within`], for this user's sessions only.
    pub fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.store.messages_within_as(id, budget, rule, self.access())
    }
}

#[cfg(test)]
mod tests {
    use redb::Database;

    use super::*;
    use crate::model::NewMessage;

    /// Messages older than the budget reaches are not read: damage in them
    /// does not fail the read, as it fails a read of the whole session.
    #[test]
    fn the_scan_stops_where_the_budget_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = SessionStore::open(&path).unwrap();
        let id = store.create_session(None).unwrap();
        for n in 0..10 {
            store
                .add_message(id, NewMessage::user(format!("m{n}")).with_tokens(1))
                .unwrap();
        }
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut messages = txn.open_table(tables::MESSAGES).unwrap();
            for seq in 0..5 {
                messages
                    .insert((id.as_u128(), seq), b"damaged".as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        let store = SessionStore::open(&path).unwrap();
        assert!(store.get_session(id).is_err());
        // Seqs 9..=6 fit; seq 5 is read to find that it does not.
        let fit = store
            .messages_within(id, 4, TokenRule::default())
            .unwrap()
            .unwrap();
        assert_eq!(fit.iter().map(|m| m.seq).collect::<Vec<_>>(), [6, 7, 8, 9]);
        assert!(store.messages_within(id, 5, TokenRule::default()).is_err());
    }
}
