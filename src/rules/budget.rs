//! The newest messages of a session within a token budget.

use crate::budget::TokenRule;
use crate::error::Result;
use crate::model::{Message, Role};

/// The newest messages whose costs add up to at most `budget`, oldest
/// first, from `next`, which gives a session's messages newest first (see
/// `SessionStore::messages_within`): a user message and the reply after it
/// are taken together or not at all, and reading stops at the first that
/// does not fit, having read at most the two that did not.
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
