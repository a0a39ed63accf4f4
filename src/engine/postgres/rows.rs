//! Rows of the schema to the model's types and back: timestamps as their
//! text and instant, counts as `BIGINT`, extra columns as postcard, content
//! holding NUL characters (which PostgreSQL's `TEXT` cannot hold) as bytes.

use std::borrow::Cow;

use postgres::Row;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::{ExtraColumns, ExtraValue, Message, Role, SessionInfo};
use crate::rules::title;
use crate::timestamp::{Timestamp, TimestampForm};

/// The columns [`session_info`] reads, in its order.
pub(crate) const SESSION_COLUMNS: &str = "s.session_id, s.user_id, s.created_at, s.created_micros, \
     s.updated_at, s.updated_micros, s.expired_at, s.expired_micros, s.context, s.metadata, \
     s.message_count, s.extra";

/// The columns [`message`] reads, in its order.
pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.seq, m.role, m.content, m.content_exact, \
     m.query_plan, m.candidate_set, m.timestamp, m.timestamp_micros, m.extra, m.tokens";

/// A session row (read with [`SESSION_COLUMNS`] from `chat_sessions s`).
pub(crate) fn session_info(row: &Row) -> Result<SessionInfo> {
    let session_id: Uuid = row.get(0);
    let corrupt = |why: String| Error::CorruptRecord {
        table: "chat_sessions",
        key: Some(format!("session {session_id}")),
        why,
    };
    let expired_at = match (row.get::<_, Option<String>>(6), row.get::<_, Option<i64>>(7)) {
        (Some(text), Some(micros)) => Some(timestamp(text, micros)),
        (None, None) => None,
        _ => return Err(corrupt("expired_at and expired_micros disagree".into())),
    };
    Ok(SessionInfo {
        session_id,
        user_id: row.get(1),
        created_at: timestamp(row.get(2), row.get(3)),
        updated_at: timestamp(row.get(4), row.get(5)),
        expired_at,
        context: row.get::<_, Option<String>>(8).map(JsonText::trusted),
        metadata: row.get::<_, Option<String>>(9).map(JsonText::trusted),
        message_count: count(row.get(10)),
        extra: extra(row.get(11)).map_err(corrupt)?,
    })
}

/// A message row (read with [`MESSAGE_COLUMNS`] from `chat_messages m`).
pub(crate) fn message(row: &Row) -> Result<Message> {
    let seq = count(row.get(1));
    let corrupt = |why: String| Error::CorruptRecord {
        table: "chat_messages",
        key: Some(format!("message {seq}")),
        why,
    };
    let role: String = row.get(2);
    let content = match row.get::<_, Option<Vec<u8>>>(4) {
        Some(bytes) => String::from_utf8(bytes).map_err(|e| corrupt(format!("content_exact: {e}")))?,
        None => row.get(3),
    };
    let tokens = row
        .get::<_, Option<i64>>(10)
        .map(|n| u32::try_from(n).map_err(|_| corrupt(format!("token count {n}"))))
        .transpose()?;
    Ok(Message {
        id: count(row.get(0)),
        seq,
        role: role.parse().map_err(|e: Error| corrupt(e.to_string()))?,
        content,
        query_plan: row.get::<_, Option<String>>(5).map(JsonText::trusted),
        candidate_set: row.get::<_, Option<String>>(6).map(JsonText::trusted),
        timestamp: timestamp(row.get(7), row.get(8)),
        extra: extra(row.get(9)).map_err(corrupt)?,
        tokens,
    })
}

/// The timestamp stored as `text` and `micros`: exactly the text, and the
/// instant.
pub(crate) fn timestamp(text: String, micros: i64) -> Timestamp {
    match Timestamp::parse(&text) {
        Ok(parsed) if parsed.micros() == micros => parsed,
        _ => Timestamp::from_micros(micros, TimestampForm::Verbatim(text.into())),
    }
}

/// The content as `chat_messages` stores it: the text (each NUL character
/// as U+FFFD, which `TEXT` can hold), and its exact bytes when that
/// changed it.
pub(crate) fn content_columns(content: &str) -> (Cow<'_, str>, Option<&[u8]>) {
    if content.contains('\0') {
        (
            Cow::Owned(content.replace('\0', "\u{fffd}")),
            Some(content.as_bytes()),
        )
    } else {
        (Cow::Borrowed(content), None)
    }
}

/// Text stored as `text` and, when it holds a NUL character, its exact
/// bytes in `exact` (see [`content_columns`]); bytes that are not UTF-8
/// are read as U+FFFD.
pub(crate) fn exact_text(text: String, exact: Option<Vec<u8>>) -> String {
    match exact {
        Some(bytes) => {
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        }
        None => text,
    }
}

/// A session's title as its row keeps it: `title` (the text),
/// `title_exact` (its exact bytes when it holds a NUL character) and
/// `title_seq` (the seq of the first user message it comes from); all
/// three `NULL` while the session has no user message.
pub(crate) struct TitleColumns {
    pub(crate) text: String,
    pub(crate) exact: Option<Vec<u8>>,
    pub(crate) seq: i64,
}

impl TitleColumns {
    /// The title of a first user message `content` at `seq`.
    pub(crate) fn of(seq: u64, content: &str) -> Self {
        let title = title::title(Some(content));
        let (text, exact) = content_columns(&title);
        TitleColumns {
            text: text.into_owned(),
            exact: exact.map(<[u8]>::to_vec),
            seq: bigint(seq),
        }
    }

    /// The title of the first user message of `messages` (role and
    /// content, in seq order, from `first_seq` on), if they hold one.
    pub(crate) fn first_user<'a>(
        first_seq: u64,
        messages: impl IntoIterator<Item = (Role, &'a str)>,
    ) -> Option<Self> {
        (first_seq..)
            .zip(messages)
            .find(|(_, (role, _))| *role == Role::User)
            .map(|(seq, (_, content))| TitleColumns::of(seq, content))
    }

    /// The title columns as parameters: `title`, `title_exact`, `title_seq`.
    pub(crate) fn params(this: Option<&Self>) -> (Option<&str>, Option<&[u8]>, Option<i64>) {
        match this {
            Some(t) => (Some(&t.text), t.exact.as_deref(), Some(t.seq)),
            None => (None, None, None),
        }
    }
}

/// The title a list shows for the columns `title` and `title_exact`.
pub(crate) fn title(text: Option<String>, exact: Option<Vec<u8>>) -> String {
    match text {
        Some(text) => exact_text(text, exact),
        None => title::title(None),
    }
}

/// Sets the title columns of the session row being updated to `$title`,
/// `$title_exact`, `$title_seq` (the numbers given) when it has none yet:
/// an append's, whose parameters are the first user message it adds.
pub(crate) fn set_title_if_none(title: u8, exact: u8, seq: u8) -> String {
    format!(
        "title = CASE WHEN title_seq IS NULL THEN ${title}::TEXT ELSE title END,
         title_exact = CASE WHEN title_seq IS NULL THEN ${exact}::BYTEA ELSE title_exact END,
         title_seq = COALESCE(title_seq, ${seq}::BIGINT)"
    )
}

/// Whether `text` can be stored in (so found in) a `TEXT` column: a
/// user with a NUL character in the name owns nothing.
pub(crate) fn nameable(text: &str) -> bool {
    !text.contains('\0')
}

/// Refuses text a `TEXT` column cannot hold (a NUL character).
pub(crate) fn storable(what: &'static str, text: &str) -> Result<()> {
    if !nameable(text) {
        return Err(Error::invalid(
            what,
            "holds a NUL character, which PostgreSQL cannot store in text",
        ));
    }
    Ok(())
}

/// Extra columns as stored: postcard of the (name, value) list, `NULL`
/// when there are none (only converted rows have them).
fn extra(bytes: Option<Vec<u8>>) -> std::result::Result<ExtraColumns, String> {
    let Some(bytes) = bytes else {
        return Ok(ExtraColumns::new());
    };
    let list: Vec<(String, ExtraValue)> =
        postcard::from_bytes(&bytes).map_err(|e| format!("extra columns: {e}"))?;
    Ok(list.into_iter().collect())
}

/// A count or seq read from a `BIGINT` (never negative as written).
pub(crate) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A count or seq as a `BIGINT`; beyond the largest one, the largest one
/// (a seq that far is past every session's end all the same).
pub(crate) fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A timestamp as its two columns.
pub(crate) fn columns(ts: &Timestamp) -> (String, i64) {
    (ts.to_text().into_owned(), ts.micros())
}
