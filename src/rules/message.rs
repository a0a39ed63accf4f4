//! What a new message must be, and the messages an append makes.

use crate::error::{Error, Result};
use crate::model::NewMessage;

/// Refuses an append of no message, and one whose content is over `limit`
/// bytes ([`StoreOptions::max_content_bytes`](crate::StoreOptions)).
pub(crate) fn check_new(messages: &[NewMessage], limit: usize) -> Result<()> {
    if messages.is_empty() {
        return Err(Error::invalid("messages", "none to add"));
    }
    if let Some(message) = messages.iter().find(|m| m.content.len() > limit) {
        return Err(too_long("content", message.content.len(), limit));
    }
    Ok(())
}

/// Refuses a context (a session's or a user's) over `limit` bytes.
pub(crate) fn check_context_size(context: &str, limit: usize) -> Result<()> {
    if context.len() > limit {
        return Err(too_long("context", context.len(), limit));
    }
    Ok(())
}

fn too_long(field: &'static str, len: usize, limit: usize) -> Error {
    Error::invalid(field, format!("{len} bytes is over the limit of {limit} bytes"))
}
