//! How records are laid out in the redb tables: a one-byte record version,
//! the record as postcard (large records, candidate sets, compressed with
//! LZ4 under their own version), then a CRC-32 checksum, so that the layout
//! can change without guessing and damage is found, not read as data.
//!
//! The checksum covers the version byte, the body and the record's key
//! (its table and the key's fields, see [`RecordKey`]): a flipped bit in a
//! value, or in a key that makes a record answer for another one, fails
//! the decode with [`Error::CorruptRecord`] naming the table and the key.
//! redb checks its page checksums only when it repairs or checks a file,
//! not on a read; this check runs on every read.
//!
//! Decoding treats the bytes as untrusted: a bad record is an
//! [`Error::CorruptRecord`], never a panic, and lengths are checked against
//! the bytes present before anything is allocated.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::{ExtraColumns, ExtraValue, Message, Role, SessionInfo};
use crate::timestamp::{Timestamp, TimestampForm};

/// The version byte of a plain record: postcard. (Versions 1 and 2, the
/// layouts of store format 1, had no checksum; such stores are refused at
/// open with [`Error::UnsupportedVersion`].)
const RECORD_VERSION: u8 = 3;
/// The version byte of a compressed record: the length of its postcard
/// body (u32, little endian), then that body as an LZ4 block.
const RECORD_VERSION_LZ4: u8 = 4;
/// The version byte of raw bytes kept for the converter (`opaque`): the
/// bytes as given.
const RECORD_VERSION_BYTES: u8 = 5;
/// The checksum at the end of every value (CRC-32, little endian) over the
/// bytes before it and the record's key.
const CHECKSUM: usize = 4;
/// Records shorter than this are stored plain (LZ4 gains little on them);
/// longer ones are compressed when that saves at least an eighth.
const COMPRESS_FROM: usize = 512;

/// Which record a value is: its table and key, bound into its checksum, and
/// named by a decode error.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RecordKey<'a> {
    /// `sessions`: the session id.
    Session(u128),
    /// `messages`: session id and seq.
    Message(u128, u64),
    /// `extra_rows`: SQLite table and rowid.
    ExtraRow(&'a str, i64),
    /// `opaque`: the value's name.
    Opaque(&'a str),
    /// `expiry_events`: the event's cutoff.
    ExpiryEvent(i64),
    /// `idempotency_keys`: the session and the client's key.
    IdempotencyKey(u128, &'a str),
    /// `user_contexts`: the user.
    UserContext(&'a str),
}

impl RecordKey<'_> {
    /// The table the record lives in.
    pub(crate) fn table(&self) -> &'static str {
        match self {
            RecordKey::Session(_) => "sessions",
            RecordKey::Message(..) => "messages",
            RecordKey::ExtraRow(..) => "extra_rows",
            RecordKey::Opaque(_) => "opaque",
            RecordKey::ExpiryEvent(_) => "expiry_events",
            RecordKey::IdempotencyKey(..) => "idempotency_keys",
            RecordKey::UserContext(_) => "user_contexts",
        }
    }

    /// Adds the table and the key's fields to a checksum (the fixed-size
    /// keys of every read in one call).
    fn hash_into(&self, hasher: &mut crc32fast::Hasher) {
        match *self {
            RecordKey::Session(id) => {
                let mut key = [1u8; 17];
                key[1..].copy_from_slice(&id.to_le_bytes());
                hasher.update(&key);
            }
            RecordKey::Message(session, seq) => {
                let mut key = [2u8; 25];
                key[1..17].copy_from_slice(&session.to_le_bytes());
                key[17..].copy_from_slice(&seq.to_le_bytes());
                hasher.update(&key);
            }
            RecordKey::ExtraRow(table, rowid) => {
                hasher.update(&[3]);
                hasher.update(&(table.len() as u64).to_le_bytes());
                hasher.update(table.as_bytes());
                hasher.update(&rowid.to_le_bytes());
            }
            RecordKey::Opaque(name) => {
                hasher.update(&[4]);
                hasher.update(name.as_bytes());
            }
            RecordKey::ExpiryEvent(cutoff) => {
                let mut key = [5u8; 9];
                key[1..].copy_from_slice(&cutoff.to_le_bytes());
                hasher.update(&key);
            }
            RecordKey::IdempotencyKey(session, key) => {
                hasher.update(&[6]);
                hasher.update(&session.to_le_bytes());
                hasher.update(key.as_bytes());
            }
            RecordKey::UserContext(user) => {
                hasher.update(&[7]);
                hasher.update(user.as_bytes());
            }
        }
    }

    fn corrupt(&self, why: impl fmt::Display) -> Error {
        Error::CorruptRecord {
            table: self.table(),
            key: Some(self.to_string()),
            why: why.to_string(),
        }
    }
}

impl fmt::Display for RecordKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RecordKey::Session(id) => write!(f, "session {}", uuid::Uuid::from_u128(id)),
            RecordKey::Message(session, seq) => {
                write!(f, "message {seq} of session {}", uuid::Uuid::from_u128(session))
            }
            RecordKey::ExtraRow(table, rowid) => write!(f, "row {rowid} of {table:?}"),
            RecordKey::Opaque(name) => write!(f, "{name:?}"),
            RecordKey::ExpiryEvent(cutoff) => write!(f, "expiry event with cutoff {cutoff}"),
            RecordKey::IdempotencyKey(session, key) => {
                write!(
                    f,
                    "idempotency key {key:?} of session {}",
                    uuid::Uuid::from_u128(session)
                )
            }
            RecordKey::UserContext(user) => write!(f, "context of user {user:?}"),
        }
    }
}

/// A record encoded but not yet bound to its key (the bulk importer
/// encodes on a thread of its own, before the writer gives a message its
/// seq): its version byte and body, without the checksum.
pub(crate) struct Unsealed(Vec<u8>);

impl Unsealed {
    /// `version`, then what `write` adds.
    fn new(version: u8, capacity: usize, write: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<Self> {
        let mut bytes = Vec::with_capacity(1 + capacity + CHECKSUM);
        bytes.push(version);
        write(&mut bytes)?;
        Ok(Unsealed(bytes))
    }

    /// Raw bytes (an `opaque` value).
    pub(crate) fn bytes(payload: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(1 + payload.len() + CHECKSUM);
        bytes.push(RECORD_VERSION_BYTES);
        bytes.extend_from_slice(payload);
        Unsealed(bytes)
    }

    /// The value to store under `key`: the bytes and their checksum.
    pub(crate) fn seal(self, key: RecordKey<'_>) -> Vec<u8> {
        let mut bytes = self.0;
        let crc = checksum(&bytes, key);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }
}

/// The checksum of `bytes` (a value without its checksum) stored under `key`.
fn checksum(bytes: &[u8], key: RecordKey<'_>) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    key.hash_into(&mut hasher);
    hasher.finalize()
}

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
///
/// `tokens`, added after the first stores were written, is a trailing
/// field: a record without a count is written exactly as before (stores
/// written earlier read as records without one), and a count follows the
/// other fields as postcard's `Some(count)` (see [`Record::read_tail`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessageRecord {
    pub id: u64,
    pub role: Role,
    #[serde(deserialize_with = "text")]
    pub content: String,
    #[serde(deserialize_with = "optional_text")]
    pub query_plan: Option<String>,
    #[serde(deserialize_with = "optional_text")]
    pub candidate_set: Option<String>,
    pub timestamp: StoredTimestamp,
    pub extra: Vec<(String, ExtraValue)>,
    /// The caller's token count.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
}

/// A string of a record, checked as UTF-8 by `simdutf8` (64 bytes a step
/// where the CPU has AVX2, against 16 for the standard library's check:
/// the check was 12 % of a cold read of a session's messages). Postcard
/// writes a string as bytes with their length, so the bytes are borrowed
/// from the record and copied once, into a `String` of their exact size.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Utf8;
        impl serde::de::Visitor<'_> for Utf8 {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("UTF-8 text")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> std::result::Result<Text, E> {
                simdutf8::basic::from_utf8(bytes)
                    .map(|text| Text(text.to_owned()))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<Text, E> {
                Ok(Text(text.to_owned()))
            }
        }
        deserializer.deserialize_bytes(Utf8)
    }
}

fn text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<String, D::Error> {
    Text::deserialize(deserializer).map(|text| text.0)
}

fn optional_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    Option::<Text>::deserialize(deserializer).map(|text| text.map(|text| text.0))
}

/// A record the store decodes: its postcard body, then what may follow it.
pub(crate) trait Record: DeserializeOwned {
    /// Reads the bytes after the body: the fields added to the record
    /// since it was first written. None by default.
    fn read_tail(&mut self, tail: &[u8]) -> std::result::Result<(), String> {
        match tail.len() {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the record")),
        }
    }
}

impl Record for SessionRecord {}
impl Record for ExtraRowRecord {}
impl Record for StoredTimestamp {}
impl Record for String {}
impl Record for crate::engine::redb::tables::IdempotencyRecord {}

impl Record for MessageRecord {
    /// Nothing (a record written without a count, or before counts
    /// existed), or `Some(count)`: a `None` written out is refused, so
    /// that each message has one encoding.
    fn read_tail(&mut self, tail: &[u8]) -> std::result::Result<(), String> {
        if tail.is_empty() {
            return Ok(());
        }
        match postcard::take_from_bytes::<Option<u32>>(tail) {
            Ok((Some(tokens), [])) => {
                self.tokens = Some(tokens);
                Ok(())
            }
            Ok((Some(_), rest)) => Err(format!("{} bytes after the token count", rest.len())),
            Ok((None, _)) => Err("a token count that is not there".into()),
            Err(e) => Err(format!("token count: {e}")),
        }
    }
}

/// The value of the `extra_rows` table: a row of a SQLite table the store
/// carries without interpreting it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExtraRowRecord {
    /// The session the row belongs to, when it names one that exists.
    pub session: Option<u128>,
    pub values: Vec<ExtraValue>,
}

/// Encodes a record of `table`, not yet bound to its key: plain postcard,
/// or, when the record is large and compresses well (JSON candidate sets
/// do), postcard compressed with LZ4.
pub(crate) fn encode_unsealed<T: Serialize>(table: &'static str, record: &T) -> Result<Unsealed> {
    Encoder::default().encode(table, record)
}

/// Encodes records as [`encode_unsealed`] does, with its work buffers kept
/// from one record to the next (the bulk importer encodes millions): each
/// record then costs one allocation, of its exact size.
#[derive(Default)]
pub(crate) struct Encoder {
    plain: Vec<u8>,
    packed: Vec<u8>,
}

impl Encoder {
    pub(crate) fn encode<T: Serialize>(&mut self, table: &'static str, record: &T) -> Result<Unsealed> {
        self.plain.clear();
        postcard::to_io(record, &mut self.plain).map_err(|e| Error::corrupt_record(table, e))?;
        let body = self.plain.as_slice();
        if let (true, Ok(len)) = (body.len() >= COMPRESS_FROM, u32::try_from(body.len())) {
            let most = lz4_flex::block::get_maximum_output_size(body.len());
            if self.packed.len() < most {
                self.packed.resize(most, 0);
            }
            let packed = lz4_flex::block::compress_into(body, &mut self.packed)
                .map_err(|e| Error::corrupt_record(table, e))?;
            if packed + 4 <= body.len() - body.len() / 8 {
                return Unsealed::new(RECORD_VERSION_LZ4, 4 + packed, |out| {
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(&self.packed[..packed]);
                    Ok(())
                });
            }
        }
        Unsealed::new(RECORD_VERSION, body.len(), |out| {
            out.extend_from_slice(body);
            Ok(())
        })
    }
}

/// Encodes the record stored under `key`.
pub(crate) fn encode<T: Serialize>(key: RecordKey<'_>, record: &T) -> Result<Vec<u8>> {
    Ok(encode_unsealed(key.table(), record)?.seal(key))
}

/// The version and payload of the value stored under `key`, once its
/// checksum holds.
fn open_frame<'b>(key: RecordKey<'_>, bytes: &'b [u8]) -> Result<(u8, &'b [u8])> {
    let Some((unsealed, crc)) = bytes.split_last_chunk::<CHECKSUM>() else {
        return Err(key.corrupt(format!("a record of {} bytes is cut short", bytes.len())));
    };
    let Some((&version, payload)) = unsealed.split_first() else {
        return Err(key.corrupt(format!("a record of {} bytes is cut short", bytes.len())));
    };
    if !matches!(
        version,
        RECORD_VERSION | RECORD_VERSION_LZ4 | RECORD_VERSION_BYTES
    ) {
        return Err(key.corrupt(format!("unknown record version {version}")));
    }
    if checksum(unsealed, key) != u32::from_le_bytes(*crc) {
        return Err(key.corrupt("checksum mismatch: the record, or the key it is stored under, is damaged"));
    }
    Ok((version, payload))
}

/// `bytes`, a version byte then a payload, as a value stored under `key`
/// whose checksum holds: what damage that the checksum misses, or bytes
/// written so on purpose, look like to the decoder (the fuzzer's input).
pub(crate) fn with_checksum(key: RecordKey<'_>, bytes: &[u8]) -> Vec<u8> {
    Unsealed(bytes.to_vec()).seal(key)
}

/// Decodes the record stored under `key` (written by [`encode`]).
pub(crate) fn decode<T: Record>(key: RecordKey<'_>, bytes: &[u8]) -> Result<T> {
    Decoder::default().decode(key, bytes)
}

/// Decodes records as [`decode`] does, with the buffer a compressed record
/// is unpacked into kept from one record to the next: a scan of a
/// session's messages then allocates (and zero-fills) it once, not once
/// per message.
#[derive(Default)]
pub(crate) struct Decoder {
    unpacked: Vec<u8>,
}

impl Decoder {
    /// Decodes the record stored under `key`.
    pub(crate) fn decode<T: Record>(&mut self, key: RecordKey<'_>, bytes: &[u8]) -> Result<T> {
        match open_frame(key, bytes)? {
            (RECORD_VERSION, body) => decode_body(key, body),
            (RECORD_VERSION_LZ4, rest) => {
                let Some((len, packed)) = rest.split_first_chunk::<4>() else {
                    return Err(key.corrupt("compressed record cut short"));
                };
                let len = u32::from_le_bytes(*len) as usize;
                // LZ4 expands at most 255 times: a larger claim is damage, and
                // is refused before anything is allocated.
                if len > packed.len().saturating_mul(255) {
                    return Err(key.corrupt(format!(
                        "compressed record of {} bytes claims {len}",
                        packed.len()
                    )));
                }
                if self.unpacked.len() < len {
                    self.unpacked.resize(len, 0);
                }
                let body = &mut self.unpacked[..len];
                let written = lz4_flex::block::decompress_into(packed, body)
                    .map_err(|e| key.corrupt(format!("compressed record: {e}")))?;
                if written != len {
                    return Err(key.corrupt(format!("compressed record holds {written} bytes, not {len}")));
                }
                decode_body(key, body)
            }
            (version, _) => Err(key.corrupt(format!("record version {version} is not a record"))),
        }
    }
}

/// The raw bytes stored under `key` (written by [`Unsealed::bytes`]).
pub(crate) fn decode_bytes<'b>(key: RecordKey<'_>, bytes: &'b [u8]) -> Result<&'b [u8]> {
    match open_frame(key, bytes)? {
        (RECORD_VERSION_BYTES, payload) => Ok(payload),
        (version, _) => Err(key.corrupt(format!("record version {version} is not raw bytes"))),
    }
}

fn decode_body<T: Record>(key: RecordKey<'_>, body: &[u8]) -> Result<T> {
    let (mut record, rest) = postcard::take_from_bytes::<T>(body).map_err(|e| key.corrupt(e))?;
    record.read_tail(rest).map_err(|why| key.corrupt(why))?;
    Ok(record)
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
            tokens: message.tokens,
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
            tokens: self.tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: RecordKey<'static> = RecordKey::Message(0x1234_5678_9abc, 3);

    fn sample() -> MessageRecord {
        MessageRecord {
            id: 7,
            role: Role::Assistant,
            content: "a\0b 😀".into(),
            query_plan: None,
            candidate_set: Some(r#"{"total_count": 1}"#.into()),
            timestamp: (&Timestamp::parse("2026-01-13T09:41:07").unwrap()).into(),
            extra: vec![("phase".into(), ExtraValue::Real(0.25))],
            tokens: None,
        }
    }

    /// The message record as stores written before token counts hold it.
    #[derive(Serialize)]
    struct MessageBeforeTokens {
        id: u64,
        role: Role,
        content: String,
        query_plan: Option<String>,
        candidate_set: Option<String>,
        timestamp: StoredTimestamp,
        extra: Vec<(String, ExtraValue)>,
    }

    fn before_tokens() -> MessageBeforeTokens {
        let s = sample();
        MessageBeforeTokens {
            id: s.id,
            role: s.role,
            content: s.content,
            query_plan: s.query_plan,
            candidate_set: s.candidate_set,
            timestamp: s.timestamp,
            extra: s.extra,
        }
    }

    #[test]
    fn records_written_before_token_counts_read_without_one() {
        let old = encode(KEY, &before_tokens()).unwrap();
        assert_eq!(decode::<MessageRecord>(KEY, &old).unwrap(), sample());
        // A record without a count is written as before, byte for byte.
        assert_eq!(encode(KEY, &sample()).unwrap(), old);
    }

    #[test]
    fn a_token_count_follows_the_record_and_round_trips() {
        for tokens in [0, 1, 300, u32::MAX] {
            let counted = MessageRecord {
                tokens: Some(tokens),
                ..sample()
            };
            let bytes = encode(KEY, &counted).unwrap();
            assert_eq!(decode::<MessageRecord>(KEY, &bytes).unwrap(), counted);
            let large = MessageRecord {
                tokens: Some(tokens),
                ..large()
            };
            let bytes = encode(KEY, &large).unwrap();
            assert_eq!(bytes[0], RECORD_VERSION_LZ4);
            assert_eq!(decode::<MessageRecord>(KEY, &bytes).unwrap(), large);
        }
    }

    #[test]
    fn a_tail_that_is_not_one_token_count_is_refused() {
        let body = postcard::to_stdvec(&before_tokens()).unwrap();
        for (tail, why) in [
            (&[0u8][..], "a token count that is not there"),
            (&[1, 5, 0][..], "1 bytes after the token count"),
            (&[1][..], "token count"),
            (&[7][..], "token count"),
        ] {
            let mut bytes = vec![RECORD_VERSION];
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(tail);
            let err = decode::<MessageRecord>(KEY, &with_checksum(KEY, &bytes)).unwrap_err();
            assert!(err.to_string().contains(why), "{tail:?}: {err}");
        }
        // Other records take no tail at all.
        let mut bytes = vec![RECORD_VERSION];
        bytes.extend_from_slice(&postcard::to_stdvec(&sample().timestamp).unwrap());
        bytes.extend_from_slice(&[1, 5]);
        let key = RecordKey::ExpiryEvent(1);
        let err = decode::<StoredTimestamp>(key, &with_checksum(key, &bytes)).unwrap_err();
        assert!(err.to_string().contains("2 bytes after the record"), "{err}");
    }

    /// Text that is not UTF-8, behind a checksum that holds (written so on
    /// purpose), is an error naming the record, in every text field.
    #[test]
    fn text_that_is_not_utf8_is_an_error() {
        for field in 0..3 {
            let mut record = large();
            let bad = "\u{1}not UTF-8\u{1}";
            match field {
                0 => record.content = bad.into(),
                1 => record.query_plan = Some(bad.into()),
                _ => record.candidate_set = Some(format!("{bad}{}", "x".repeat(600))),
            }
            let mut body = postcard::to_stdvec(&record).unwrap();
            let at = body.windows(bad.len()).position(|w| w == bad.as_bytes()).unwrap();
            body[at] = 0xff;
            body[at + bad.len() - 1] = 0xc3;
            let mut bytes = vec![RECORD_VERSION];
            bytes.extend_from_slice(&body);
            let err = decode::<MessageRecord>(KEY, &with_checksum(KEY, &bytes)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("corrupt record in table messages, message 3"),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(KEY, &sample()).unwrap();
        let back: MessageRecord = decode(KEY, &bytes).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn the_checksum_is_crc32_of_version_body_and_key() {
        let bytes = encode(KEY, &sample()).unwrap();
        let (unsealed, crc) = bytes.split_at(bytes.len() - CHECKSUM);
        let mut covered = unsealed.to_vec();
        covered.push(2);
        covered.extend_from_slice(&0x1234_5678_9abc_u128.to_le_bytes());
        covered.extend_from_slice(&3u64.to_le_bytes());
        assert_eq!(crc, crc32fast::hash(&covered).to_le_bytes());
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
    fn one_decoder_decodes_records_of_every_size_in_turn() {
        // Its buffer, grown by the first record, is longer than the next
        // one's body: each record must read its own bytes only.
        let smaller = MessageRecord {
            candidate_set: Some(format!(
                r#"{{"candidates": [{}]}}"#,
                ["{\"record_id\": \"1\"}"; 40].join(", ")
            )),
            ..sample()
        };
        let records = [large(), smaller, sample(), large()];
        let mut decoder = Decoder::default();
        for record in records {
            let bytes = encode(KEY, &record).unwrap();
            let back: MessageRecord = decoder.decode(KEY, &bytes).unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn large_records_are_compressed_and_round_trip() {
        let bytes = encode(KEY, &large()).unwrap();
        assert_eq!(bytes[0], RECORD_VERSION_LZ4);
        let plain = postcard::to_stdvec(&large()).unwrap();
        assert!(
            bytes.len() * 4 < plain.len(),
            "{} of {}",
            bytes.len(),
            plain.len()
        );
        assert_eq!(decode::<MessageRecord>(KEY, &bytes).unwrap(), large());
        // Small ones stay plain.
        assert_eq!(encode(KEY, &sample()).unwrap()[0], RECORD_VERSION);
    }

    /// Every single bit flipped, anywhere in the value, is an error naming
    /// the table and the key.
    fn assert_every_flip_is_caught(bytes: &[u8]) {
        for bit in 0..bytes.len() * 8 {
            let mut hurt = bytes.to_vec();
            hurt[bit / 8] ^= 1 << (bit % 8);
            match decode::<MessageRecord>(KEY, &hurt) {
                Err(Error::CorruptRecord {
                    table: "messages",
                    key: Some(key),
                    ..
                }) => assert_eq!(key, "message 3 of session 00000000-0000-0000-0000-123456789abc"),
                other => panic!("bit {bit}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_flipped_bit_in_a_value_is_an_error_naming_table_and_key() {
        assert_every_flip_is_caught(&encode(KEY, &sample()).unwrap());
        assert_every_flip_is_caught(&encode(KEY, &large()).unwrap());
        let err = decode::<MessageRecord>(KEY, &{
            let mut hurt = encode(KEY, &sample()).unwrap();
            hurt[3] ^= 4;
            hurt
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "corrupt record in table messages, message 3 of session \
             00000000-0000-0000-0000-123456789abc: checksum mismatch: the record, or the key it \
             is stored under, is damaged"
        );
    }

    #[test]
    fn a_record_under_another_key_is_an_error() {
        let bytes = encode(KEY, &sample()).unwrap();
        for other in [
            RecordKey::Message(0x1234_5678_9abc, 4),
            RecordKey::Message(0x1234_5678_9abd, 3),
            RecordKey::Session(0x1234_5678_9abc),
        ] {
            let err = decode::<MessageRecord>(other, &bytes).unwrap_err();
            assert!(err.to_string().contains("checksum mismatch"), "{other}: {err}");
        }
        let row = encode(RecordKey::ExtraRow("ab", 1), &sample()).unwrap();
        assert!(decode::<MessageRecord>(RecordKey::ExtraRow("a", 1), &row).is_err());
        assert!(decode::<MessageRecord>(RecordKey::ExtraRow("ab", -1), &row).is_err());
    }

    #[test]
    fn a_record_sealed_after_encoding_equals_one_encoded_with_its_key() {
        let unsealed = encode_unsealed("messages", &large()).unwrap();
        assert_eq!(unsealed.seal(KEY), encode(KEY, &large()).unwrap());
    }

    #[test]
    fn raw_bytes_round_trip_and_are_checked() {
        let key = RecordKey::Opaque("schema");
        let bytes = Unsealed::bytes(b"{}").seal(key);
        assert_eq!(decode_bytes(key, &bytes).unwrap(), b"{}");
        assert!(decode_bytes(RecordKey::Opaque("schemb"), &bytes).is_err());
        assert!(decode::<MessageRecord>(key, &bytes).is_err());
        let record = encode(KEY, &sample()).unwrap();
        assert!(decode_bytes(KEY, &record).is_err());
    }

    #[test]
    fn damaged_compressed_records_are_errors() {
        let bytes = encode(KEY, &large()).unwrap();
        for len in 0..bytes.len() {
            assert!(decode::<MessageRecord>(KEY, &bytes[..len]).is_err(), "{len}");
        }
        // A length claim damaged behind a checksum that holds (written so on
        // purpose) is refused before anything is allocated.
        let reseal = |bytes: Vec<u8>| with_checksum(KEY, &bytes[..bytes.len() - CHECKSUM]);
        let mut huge = bytes.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode::<MessageRecord>(KEY, &reseal(huge)).unwrap_err();
        assert!(err.to_string().contains("claims"), "{err}");
        let mut short = bytes;
        let claimed = u32::from_le_bytes(short[1..5].try_into().unwrap());
        short[1..5].copy_from_slice(&(claimed - 1).to_le_bytes());
        assert!(decode::<MessageRecord>(KEY, &reseal(short)).is_err());
    }

    #[test]
    fn every_truncation_and_a_wrong_version_are_errors() {
        let bytes = encode(KEY, &sample()).unwrap();
        for len in 0..bytes.len() {
            assert!(decode::<MessageRecord>(KEY, &bytes[..len]).is_err(), "{len}");
        }
        for version in [1, 2, 9] {
            let mut other = bytes.clone();
            other[0] = version;
            let err = decode::<MessageRecord>(KEY, &other).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("unknown record version {version}")),
                "{err}"
            );
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(decode::<MessageRecord>(KEY, &longer).is_err());
    }
}
