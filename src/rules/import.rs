//! Loading data as it is (the converter's importer).

use crate::model::Message;

/// Puts the messages loaded into one session in the order they take seqs
/// in: by timestamp, then by id (the old store read a session's messages
/// `ORDER BY timestamp, id`).
pub(crate) fn order_for_seqs(messages: &mut [Message]) {
    messages.sort_by_key(|m| (m.timestamp.micros(), m.id));
}
