//! Expiry and purge by age.

use std::time::Duration;

use crate::timestamp::Timestamp;

/// The instant, in microseconds, `age` before now: sessions updated
/// (expiry) or expired (purge) strictly before it are due. An age past
/// the representable range reaches back to the earliest instant.
pub(crate) fn cutoff(age: Duration) -> i64 {
    let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
    Timestamp::now().micros().saturating_sub(age)
}
