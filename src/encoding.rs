//! How records are laid out in the redb tables: postcard, behind a one-byte
//! record version, so that the layout can change without guessing; large
//! records (candidate sets) compressed with LZ4 under their own version.
//!
//! Decoding treats the bytes as untrusted: a bad record is an
//! [`Error::CorruptRecord`], never a panic, and lengths are checked against
//! the bytes present before anything is allocated.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::{ExtraColumns, ExtraValue, Message, Role, SessionInfo};
use crate::timestamp::{Timestamp, TimestampForm};

/// The version byte of a plain record: postcard.
const RECORD_VERSION: u8 = 1;
/// The version byte of a compressed record: the length of its postcard
/// body (u32, little endian), then that body as an LZ4 block.
const RECORD_VERSION_LZ4: u8 = 2;
/// Records shorter than this are stored plain (LZ4 gains little on them);
/// longer ones are compressed when that saves at least an eighth.
const COMPRESS_FROM: usize = 512;

/// A timestamp as stored: instant and text form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredTimestamp {
    micros: i64,
    form: StoredForm,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum StoredForm {
    Naive,
    Utc,
    Verbatim(String),
}

impl StoredTimestamp {
    pub(crate) fn micros(&self) -> i64 {
        self.micros
    }
}

impl From<&Timestamp> for StoredTimestamp {
    fn from(ts: &Timestamp) -> Self {
        let form = match ts.form() {
            TimestampForm::Naive => StoredForm::Naive,
            TimestampForm::Utc => StoredForm::Utc,
            TimestampForm::Verbatim(text) => StoredForm::Verbatim(text.to_string()),
        };
        StoredTimestamp {
            micros: ts.micros(),
            form,
        }
    }
}

impl From<StoredTimestamp> for Timestamp {
    fn from(ts: StoredTimestamp) -> Self {
        let form = match ts.form {
            StoredForm::Naive => TimestampForm::Naive,
            StoredForm::Utc => TimestampForm::Utc,
            StoredForm::Verbatim(text) => TimestampForm::Verbatim(text.into()),
        };
        Timestamp::from_micros(ts.micros, form)
    }
}

/// The value of the `sessions` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub user_id: Option<String>,
    pub created_at: StoredTimestamp,
    pub updated_at: StoredTimestamp,
    pub expired_at: Option<StoredTimestamp>,
    pub context: Option<String>,
    pub metadata: Option<String>,
    /// Messages held, which is also the next message's seq.
    pub message_count: u64,
    pub extra: Vec<(String, ExtraValue)>,
    /// Bumped by every write of the record (see `WriteTables::put_session`):
    /// a session's messages at one revision never change, which is what
    /// the message cache (`cache.rs`) relies on.
    pub revision: u64,
}

/// The value of the `messages` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessageRecord {
    pub id: u64,
    pub role: Role,
    pub content: String,
    pub query_plan: Option<String>,
    pub candidate_set: Option<String>,
    pub timestamp: StoredTimestamp,
    pub extra: Vec<(String, ExtraValue)>,
}

/// The value of the `extra_rows` table: a row of a SQLite table the store
/// carries without interpreting it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExtraRowRecord {
    /// The session the row belongs to, when it names one that exists.
    pub session: Option<u128>,
    pub values: Vec<ExtraValue>,
}

/// Encodes a record behind its version byte: plain postcard, or, when the
/// record is large and compresses well (JSON candidate sets do), postcard
/// compressed with LZ4.
pub(crate) fn encode<T: Serialize>(table: &'static str, record: &T) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_VERSION];
    postcard::to_io(record, &mut out).map_err(|e| Error::corrupt_record(table, e))?;
    let body = &out[1..];
    if body.len() < COMPRESS_FROM {
        return Ok(out);
    }
    let Ok(len) = u32::try_from(body.len()) else {
        return Ok(out);
    };
    let packed = lz4_flex::block::compress(body);
    if packed.len() + 4 > body.len() - body.len() / 8 {
        return Ok(out);
    }
    let mut compressed = Vec::with_capacity(5 + packed.len());
    compressed.push(RECORD_VERSION_LZ4);
    compressed.extend_from_slice(&len.to_le_bytes());
    compressed.extend_from_slice(&packed);
    Ok(compressed)
}

/// Decodes a record written by [`encode`] (either version).
pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => decode_body(table, body),
        Some((&RECORD_VERSION_LZ4, rest)) => {
            let Some((len, packed)) = rest.split_first_chunk::<4>() else {
                return Err(Error::corrupt_record(table, "compressed record cut short"));
            };
            let len = u32::from_le_bytes(*len) as usize;
            // LZ4 expands at most 255 times: a larger claim is damage, and is
            // refused before anything is allocated.
            if len > packed.len().saturating_mul(255) {
                return Err(Error::corrupt_record(
                    table,
                    format!("compressed record of {} bytes claims {len}", packed.len()),
                ));
            }
            let mut body = vec![0u8; len];
            let written = lz4_flex::block::decompress_into(packed, &mut body)
                .map_err(|e| Error::corrupt_record(table, format!("compressed record: {e}")))?;
            if written != len {
                return Err(Error::corrupt_record(
                    table,
                    format!("compressed record holds {written} bytes, not {len}"),
                ));
            }
            decode_body(table, &body)
        }
        Some((version, _)) => Err(Error::corrupt_record(
            table,
            format!("unknown record version {version}"),
        )),
        None => Err(Error::corrupt_record(table, "empty record")),
    }
}

fn decode_body<T: DeserializeOwned>(table: &'static str, body: &[u8]) -> Result<T> {
    let (record, rest) = postcard::take_from_bytes(body).map_err(|e| Error::corrupt_record(table, e))?;
    if rest.is_empty() {
        Ok(record)
    } else {
        Err(Error::corrupt_record(
            table,
            format!("{} bytes after the record", rest.len()),
        ))
    }
}

fn extra_to_map(extra: Vec<(String, ExtraValue)>) -> ExtraColumns {
    extra.into_iter().collect()
}

fn extra_from_map(extra: &ExtraColumns) -> Vec<(String, ExtraValue)> {
    extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl SessionRecord {
    pub(crate) fn into_info(self, session_id: uuid::Uuid) -> SessionInfo {
        SessionInfo {
            session_id,
            user_id: self.user_id,
            created_at: self.created_at.into(),
            updated_at: self.updated_at.into(),
            expired_at: self.expired_at.map(Into::into),
            context: self.context.map(JsonText::trusted),
            metadata: self.metadata.map(JsonText::trusted),
            message_count: self.message_count,
            extra: extra_to_map(self.extra),
        }
    }

    pub(crate) fn from_info(info: &SessionInfo) -> Self {
        SessionRecord {
            user_id: info.user_id.clone(),
            created_at: (&info.created_at).into(),
            updated_at: (&info.updated_at).into(),
            expired_at: info.expired_at.as_ref().map(Into::into),
            context: info.context.as_ref().map(|j| j.as_str().to_owned()),
            metadata: info.metadata.as_ref().map(|j| j.as_str().to_owned()),
            message_count: info.message_count,
            extra: extra_from_map(&info.extra),
            revision: 0,
        }
    }
}

impl MessageRecord {
    pub(crate) fn from_message(message: Message) -> Self {
        MessageRecord {
            id: message.id,
            role: message.role,
            content: message.content,
            query_plan: message.query_plan.map(JsonText::into_string),
            candidate_set: message.candidate_set.map(JsonText::into_string),
            timestamp: (&message.timestamp).into(),
            extra: extra_from_map(&message.extra),
        }
    }

    pub(crate) fn into_message(self, seq: u64) -> Message {
        Message {
            id: self.id,
            seq,
            role: self.role,
            content: self.content,
            query_plan: self.query_plan.map(JsonText::trusted),
            candidate_set: self.candidate_set.map(JsonText::trusted),
            timestamp: self.timestamp.into(),
            extra: extra_to_map(self.extra),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MessageRecord {
        MessageRecord {
            id: 7,
            role: Role::Assistant,
            content: "a\0b 😀".into(),
            query_plan: None,
            candidate_set: Some(r#"{"total_count": 1}"#.into()),
            timestamp: (&Timestamp::parse("2026-01-13T09:41:07").unwrap()).into(),
            extra: vec![("phase".into(), ExtraValue::Real(0.25))],
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode("messages", &sample()).unwrap();
        let back: MessageRecord = decode("messages", &bytes).unwrap();
        assert_eq!(back, sample());
    }

    fn large() -> MessageRecord {
        let candidate =
            r#"{"record_id": "99462434555331", "match_rationale": "publisher matches Cambridge"}"#;
        MessageRecord {
            candidate_set: Some(format!(r#"{{"candidates": [{}]}}"#, [candidate; 30].join(", "))),
            ..sample()
        }
    }

    #[test]
    fn large_records_are_compressed_and_round_trip() {
        let bytes = encode("messages", &large()).unwrap();
        assert_eq!(bytes[0], RECORD_VERSION_LZ4);
        let mut plain = vec![RECORD_VERSION];
        postcard::to_io(&large(), &mut plain).unwrap();
        assert!(
            bytes.len() * 4 < plain.len(),
            "{} of {}",
            bytes.len(),
            plain.len()
        );
        assert_eq!(decode::<MessageRecord>("messages", &bytes).unwrap(), large());
        // Records written plain (all of them before compression) still read.
        assert_eq!(decode::<MessageRecord>("messages", &plain).unwrap(), large());
        // Small ones stay plain.
        assert_eq!(encode("messages", &sample()).unwrap()[0], RECORD_VERSION);
    }

    #[test]
    fn damaged_compressed_records_are_errors() {
        let bytes = encode("messages", &large()).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode::<MessageRecord>("messages", &bytes[..len]).is_err(),
                "{len}"
            );
        }
        let mut huge = bytes.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode::<MessageRecord>("messages", &huge).unwrap_err();
        assert!(err.to_string().contains("claims"), "{err}");
        let mut short = bytes;
        let claimed = u32::from_le_bytes(short[1..5].try_into().unwrap());
        short[1..5].copy_from_slice(&(claimed - 1).to_le_bytes());
        assert!(decode::<MessageRecord>("messages", &short).is_err());
    }

    #[test]
    fn every_truncation_and_a_wrong_version_are_errors() {
        let bytes = encode("messages", &sample()).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode::<MessageRecord>("messages", &bytes[..len]).is_err(),
                "{len}"
            );
        }
        let mut other = bytes.clone();
        other[0] = 9;
        let err = decode::<MessageRecord>("messages", &other).unwrap_err();
        assert!(err.to_string().contains("unknown record version 9"), "{err}");
        let mut longer = bytes;
        longer.push(0);
        assert!(decode::<MessageRecord>("messages", &longer).is_err());
    }
}
