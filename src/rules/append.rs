//! How an append is checked.

use crate::error::{Error, Result};

/// How an append is checked: the seq its first message must get, the
/// idempotency key it is remembered under.
#[derive(Clone, Debug)]
pub(crate) struct Append {
    pub(crate) expected_next_seq: Option<u64>,
    pub(crate) idempotency_key: Option<String>,
}

impl Append {
    pub(crate) fn checked(expected_next_seq: Option<u64>) -> Self {
        Append {
            expected_next_seq,
            idempotency_key: None,
        }
    }

    /// Refuses an empty key and one over 255 bytes.
    pub(crate) fn idempotent(key: &str, expected_next_seq: Option<u64>) -> Result<Self> {
        if key.is_empty() || key.len() > 255 {
            return Err(Error::invalid(
                "idempotency_key",
                format!("{} bytes is not within 1..=255", key.len()),
            ));
        }
        Ok(Append {
            expected_next_seq,
            idempotency_key: Some(key.to_owned()),
        })
    }
}
