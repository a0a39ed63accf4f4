//! The limits of what a write may carry, and of what an idempotency key
//! is remembered for.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::NewMessage;

/// How long an idempotency key is remembered (24 hours).
pub(crate) const IDEMPOTENCY_KEY_MICROS: i64 = 24 * 3600 * 1_000_000;
/// How many idempotency keys a session keeps at most (the newest).
pub(crate) const IDEMPOTENCY_KEYS_PER_SESSION: usize = 64;

/// Refuses an append of no message, and one with a content longer than
/// `limit` bytes (`StoreOptions::max_content_bytes`).
pub(crate) fn check_append(messages: &[NewMessage], limit: usize) -> Result<()> {
    if messages.is_empty() {
        return Err(Error::invalid("messages", "none to add"));
    }
    if let Some(message) = messages.iter().find(|m| m.content.len() > limit) {
        return Err(Error::invalid(
            "content",
            format!(
                "{} bytes is over the limit of {limit} bytes",
                message.content.len()
            ),
        ));
    }
    Ok(())
}

/// `context` as an update of a user's context: a JSON object of at most
/// `limit` bytes.
pub(crate) fn user_context_update(context: &str, limit: usize) -> Result<JsonText> {
    if context.len() > limit {
        return Err(Error::invalid(
            "context",
            format!("{} bytes is over the limit of {limit} bytes", context.len()),
        ));
    }
    JsonText::object("context", context)
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
