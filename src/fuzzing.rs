//! Entry points for the fuzz targets in `fuzz/` (and the test that replays
//! their corpus): the private record decoder, reached the way the store
//! reaches it. Not part of the API.

use crate::encoding::{decode, ExtraRowRecord, MessageRecord, SessionRecord};

/// Decodes `bytes` as each kind of record the store keeps, as a read does,
/// and builds and renders the public values from what decodes. Returns how
/// many kinds decoded. Never panics, whatever the bytes.
pub fn decode_record(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    if let Ok(record) = decode::<SessionRecord>("sessions", bytes) {
        let info = record.into_info(uuid::Uuid::nil());
        let _ = (info.created_at.to_text(), info.updated_at.instant());
        let _ = info.expired_at.map(|t| t.to_text().into_owned());
        decoded += 1;
    }
    if let Ok(record) = decode::<MessageRecord>("messages", bytes) {
        let message = record.into_message(0);
        let _ = (message.timestamp.to_text(), message.timestamp.instant());
        decoded += 1;
    }
    if decode::<ExtraRowRecord>("extra_rows", bytes).is_ok() {
        decoded += 1;
    }
    decoded
}
