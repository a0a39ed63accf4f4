//! The token budget of `messages_within`: which of a session's newest
//! messages fit.

use std::num::NonZeroU32;

use crate::error::Result;
use crate::model::{Message, Role};

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

/// The newest messages whose costs under `rule` add up to at most
/// `budget`, oldest first, read from `newest_first` (the session's
/// messages from the last back; `None` past the first): stops at the first
/// that does not fit, taking a user message and the assistant reply right
/// after it together or not at all; reads at most the two past the last
/// taken.
pub(crate) fn within(
    mut newest_first: impl FnMut() -> Result<Option<Message>>,
    budget: u64,
    rule: TokenRule,
) -> Result<Vec<Message>> {
    let mut left = budget;
    let mut taken = Vec::new();
    let mut waiting = None;
    loop {
        let Some(message) = waiting.take().map_or_else(&mut newest_first, |m| Ok(Some(m)))? else {
            break;
        };
        let mut cost = rule.cost(&message);
        if cost > left {
            break;
        }
        let mut unit = vec![message];
        if unit[0].role == Role::Assistant {
            match newest_first()? {
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
