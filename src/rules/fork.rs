//! Branching a session.

use uuid::Uuid;

use crate::error::{Error, Result};

/// Refuses a fork of session `id`, which holds `count` messages, at a seq
/// past its end.
pub(crate) fn check_at_seq(id: Uuid, at_seq: u64, count: u64) -> Result<()> {
    if at_seq > count {
        return Err(Error::invalid(
            "at_seq",
            format!("{at_seq} is past the end of session {id}, which holds {count} messages"),
        ));
    }
    Ok(())
}
