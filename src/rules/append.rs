//! Appends: how one is checked (expected seq, idempotency key), and where
//! its messages go (dense seqs, ids never reused).

use std::ops::Range;

use uuid::Uuid;

use crate::error::{Error, Result};

/// How long an idempotency key is remembered (24 hours).
pub(crate) const IDEMPOTENCY_KEY_MICROS: i64 = 24 * 3600 * 1_000_000;
/// How many idempotency keys a session keeps at most (the newest).
pub(crate) const IDEMPOTENCY_KEYS_PER_SESSION: usize = 64;

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

    /// Refuses the append with [`Error::SeqConflict`] when the caller
    /// expected its first message at another seq than `count`, the
    /// session's message count.
    pub(crate) fn check_seq(&self, session: Uuid, count: u64) -> Result<()> {
        match self.expected_next_seq {
            Some(expected) if expected != count => Err(Error::SeqConflict {
                session,
                expected,
                actual: count,
            }),
            _ => Ok(()),
        }
    }
}

/// Where an append of `n` messages goes, in a session holding `count`
/// messages when the next unused id is `next_id`: seqs from `count` on,
/// without a gap, and ids from `next_id` on; the session's count and the
/// next id after it are the ends of the ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) seqs: Range<u64>,
    pub(crate) ids: Range<u64>,
}

pub(crate) fn place(count: u64, next_id: u64, n: usize) -> Placement {
    let n = n as u64;
    Placement {
        seqs: count..count + n,
        ids: next_id..next_id + n,
    }
}
