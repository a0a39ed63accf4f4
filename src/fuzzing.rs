//! Entry points for the fuzz targets in `fuzz/` (and the test that replays
//! their corpus): the private record decoder, reached the way the store
//! reaches it. Not part of the API.

use crate::engine::redb::encoding::{
    decode, with_checksum, ExtraRowRecord, MessageRecord, RecordKey, SessionRecord,
};

/// Decodes `bytes` (a record version byte, then the record's body) as each
/// kind of record the store keeps, as a read does, and builds and renders
/// the public values from what decodes. Returns how many kinds decoded.
/// Never panics, whatever the bytes.
///
/// Each kind gets the bytes with a checksum that holds for its key, so that
/// the fuzzer reaches the decoder behind the checksum: random bytes almost
/// never pass it, but damage may by chance, and bytes written on purpose do.
pub fn decode_record(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    let session = RecordKey::Session(1);
    if let Ok(record) = decode::<SessionRecord>(session, &with_checksum(session, bytes)) {
        let info = record.into_info(uuid::Uuid::nil());
        let _ = (info.created_at.to_text(), info.updated_at.instant());
        let _ = info.expired_at.map(|t| t.to_text().into_owned());
        decoded += 1;
    }
    let message = RecordKey::Message(1, 0);
    if let Ok(record) = decode::<MessageRecord>(message, &with_checksum(message, bytes)) {
        let message = record.into_message(0);
        let _ = (message.timestamp.to_text(), message.timestamp.instant());
        decoded += 1;
    }
    let row = RecordKey::ExtraRow("t", 1);
    if decode::<ExtraRowRecord>(row, &with_checksum(row, bytes)).is_ok() {
        decoded += 1;
    }
    decoded
}
