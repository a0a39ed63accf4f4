//! Messages: appends (checked, conditional, idempotent), pages, one by
//! id, undo, and the newest within a token budget.

use std::collections::VecDeque;
use std::sync::Arc;

use postgres::Transaction;
use uuid::Uuid;

use super::connection::{server_error, Step};
use super::rows::{self, TitleColumns, MESSAGE_COLUMNS};
use super::{active_count, lock_session, lock_writable, search, PgEngine};
use crate::engine::MessagePage;
use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::{Durability, Message, NewMessage};
use crate::rules::append::{IDEMPOTENCY_KEYS_PER_SESSION, IDEMPOTENCY_KEY_MICROS};
use crate::rules::budget::{self, TokenRule};
use crate::rules::{message, Access, Append};
use crate::timestamp::Timestamp;

/// Messages a read of a token budget fetches at a time, newest first.
const BUDGET_BATCH: i32 = 32;

impl PgEngine {
    /// Appends `messages` in one transaction, all or none, under the lock
    /// of the session's row: checks, in redb's order, that the session is
    /// there for `access`, answers a remembered idempotency key, refuses an
    /// expired session and a seq conflict, then numbers the messages from
    /// the session's count.
    pub(crate) fn add_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Vec<u64>> {
        message::check_new(&messages, self.settings.max_content_bytes)?;
        let key = append.idempotency_key.as_deref();
        if let Some(key) = key {
            rows::storable("idempotency_key", key)?;
        }
        self.write(durability, |txn| {
            let session = lock_session(txn, id, access)?;
            if let Some(key) = key {
                let remembered = txn.query_opt(
                    "SELECT ids FROM sessionstore_idempotency_keys WHERE session_id = $1 AND key = $2",
                    &[&id, &key],
                )?;
                if let Some(row) = remembered {
                    let ids: Vec<i64> = row.get(0);
                    return Ok(ids.into_iter().map(rows::count).collect());
                }
            }
            if session.expired {
                return Err(Error::SessionNotFound(id).into());
            }
            append.check_seq(id, session.message_count)?;
            let now = Timestamp::now();
            let ids = insert_messages(txn, id, session.message_count, &messages, &now)?;
            let (text, micros) = rows::columns(&now);
            let title = TitleColumns::first_user(
                session.message_count,
                messages.iter().map(|m| (m.role, m.content.as_str())),
            );
            let (title, title_exact, title_seq) = TitleColumns::params(title.as_ref());
            txn.execute(
                &format!(
                    "UPDATE chat_sessions SET message_count = $2, updated_at = $3, updated_micros = $4,
                         revision = revision + 1, {}, {}
                     WHERE session_id = $1",
                    rows::set_title_if_none(5, 6, 7),
                    search::appended(8)
                ),
                &[
                    &id,
                    &rows::bigint(session.message_count + ids.len() as u64),
                    &text,
                    &micros,
                    &title,
                    &title_exact,
                    &title_seq,
                    &rows::bigint(session.message_count),
                ],
            )?;
            if let Some(key) = key {
                remember_key(txn, id, key, &ids, micros)?;
            }
            Ok(ids.into_iter().map(rows::count).collect())
        })
    }

    /// As `SessionStore::get_recent_messages`, `messages_after`,
    /// `messages_from` and `messages_before`: up to `limit` messages of
    /// `page`, oldest first.
    pub(crate) fn page_messages(
        &self,
        id: Uuid,
        page: MessagePage,
        limit: u64,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.read(|txn| {
            let Some(count) = active_count(txn, id, access)? else {
                return Ok(None);
            };
            let seqs = page.range(limit, count);
            if seqs.is_empty() {
                return Ok(Some(Vec::new()));
            }
            let messages = txn
                .query(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM chat_messages m
                         WHERE m.session_id = $1 AND m.seq >= $2 AND m.seq < $3 ORDER BY m.seq"
                    ),
                    &[&id, &rows::bigint(seqs.start), &rows::bigint(seqs.end)],
                )?
                .iter()
                .map(|row| rows::message(row).map(Arc::new))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(messages))
        })
    }

    /// As `SessionStore::get_message`: found whether its session is active
    /// or expired.
    pub(crate) fn get_message(&self, message_id: u64, access: Access<'_>) -> Result<Option<(Uuid, Message)>> {
        let Ok(message_id) = i64::try_from(message_id) else {
            return Ok(None);
        };
        self.read(|txn| {
            let row = txn.query_opt(
                &format!(
                    "SELECT {MESSAGE_COLUMNS}, m.session_id, s.user_id FROM chat_messages m
                     JOIN chat_sessions s ON s.session_id = m.session_id
                     WHERE m.id = $1"
                ),
                &[&message_id],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            let user: Option<&str> = row.get(12);
            if !access.allows(user) {
                return Ok(None);
            }
            Ok(Some((row.get(11), rows::message(&row)?)))
        })
    }

    /// As `SessionStore::pop_last_message`: the id is never given again
    /// (the sequence only grows).
    pub(crate) fn pop_last_message(
        &self,
        id: Uuid,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Option<Message>> {
        self.write(durability, |txn| {
            let session = lock_writable(txn, id, access)?;
            let Some(seq) = session.message_count.checked_sub(1) else {
                return Ok(None);
            };
            let row = txn
                .query_opt(
                    &format!(
                        "DELETE FROM chat_messages m WHERE m.session_id = $1 AND m.seq = $2
                         RETURNING {MESSAGE_COLUMNS}, m.search_length"
                    ),
                    &[&id, &rows::bigint(seq)],
                )?
                .ok_or_else(|| {
                    Error::corrupt_record("chat_messages", "message count beyond the last message")
                })?;
            let (now, micros) = rows::columns(&Timestamp::now());
            // The message removed was the session's first user message
            // when its seq is the title's: none is left then.
            txn.execute(
                "UPDATE chat_sessions SET message_count = $2, updated_at = $3, updated_micros = $4,
                     revision = revision + 1,
                     title = CASE WHEN title_seq = $2 THEN NULL ELSE title END,
                     title_exact = CASE WHEN title_seq = $2 THEN NULL ELSE title_exact END,
                     title_seq = NULLIF(title_seq, $2),
                     search_docs = search_docs - ($5::BIGINT > 0)::INT, search_words = search_words - $5::BIGINT
                 WHERE session_id = $1",
                &[
                    &id,
                    &rows::bigint(seq),
                    &now,
                    &micros,
                    &i64::from(row.get::<_, i32>(11)),
                ],
            )?;
            Ok(Some(rows::message(&row)?))
        })
    }

    /// As `SessionStore::messages_within`: fetches the session's messages
    /// newest first, a few at a time, until the budget stops.
    pub(crate) fn messages_within(
        &self,
        id: Uuid,
        budget: u64,
        rule: TokenRule,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.read(|txn| {
            let Some(count) = active_count(txn, id, access)? else {
                return Ok(None);
            };
            let newest_first = txn.bind(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM chat_messages m
                     WHERE m.session_id = $1 AND m.seq < $2 ORDER BY m.seq DESC"
                ),
                &[&id, &rows::bigint(count)],
            )?;
            let mut fetched = VecDeque::new();
            let mut exhausted = false;
            let next = || -> Result<Option<Message>> {
                if fetched.is_empty() && !exhausted {
                    let batch = txn
                        .query_portal(&newest_first, BUDGET_BATCH)
                        .map_err(|e| server_error("read", &e))?;
                    exhausted = batch.len() < BUDGET_BATCH as usize;
                    fetched.extend(batch);
                }
                fetched.pop_front().map(|row| rows::message(&row)).transpose()
            };
            let taken = budget::within(next, budget, rule)?;
            Ok(Some(taken.into_iter().map(Arc::new).collect()))
        })
    }
}

/// Inserts `messages` at seqs `first_seq..` of session `id`, each with the
/// next id of the sequence; returns their ids, in order.
fn insert_messages(
    txn: &mut Transaction<'_>,
    id: Uuid,
    first_seq: u64,
    messages: &[NewMessage],
    now: &Timestamp,
) -> Step<Vec<i64>> {
    let (text, micros) = rows::columns(now);
    let insert = txn.prepare(
        "INSERT INTO chat_messages
             (session_id, seq, id, role, content, content_exact, query_plan, candidate_set,
              timestamp, timestamp_micros, tokens)
         VALUES ($1, $2, nextval('chat_messages_id_seq'), $3, $4, $5, $6, $7, $8, $9, $10)
         RETURNING id",
    )?;
    let mut ids = Vec::with_capacity(messages.len());
    for (seq, message) in (first_seq..).zip(messages) {
        let (content, exact) = rows::content_columns(&message.content);
        let row = txn.query_one(
            &insert,
            &[
                &id,
                &rows::bigint(seq),
                &message.role.as_str(),
                &content.as_ref(),
                &exact,
                &message.query_plan.as_ref().map(JsonText::as_str),
                &message.candidate_set.as_ref().map(JsonText::as_str),
                &text,
                &micros,
                &message.tokens.map(i64::from),
            ],
        )?;
        ids.push(row.get(0));
    }
    Ok(ids)
}

/// Remembers what the idempotent append under `key` gave, and forgets the
/// session's keys older than 24 hours and all but its newest 64 (as the
/// redb engine does: newest by creation, ties by key in byte order).
fn remember_key(txn: &mut Transaction<'_>, id: Uuid, key: &str, ids: &[i64], now: i64) -> Step<()> {
    txn.execute(
        "INSERT INTO sessionstore_idempotency_keys (session_id, key, created_micros, ids)
         VALUES ($1, $2, $3, $4)",
        &[&id, &key, &now, &ids],
    )?;
    let kept = i64::try_from(IDEMPOTENCY_KEYS_PER_SESSION).unwrap_or(i64::MAX);
    txn.execute(
        "DELETE FROM sessionstore_idempotency_keys
         WHERE session_id = $1 AND key <> $2
           AND (created_micros < $3::BIGINT - $4::BIGINT OR key NOT IN (
               SELECT key FROM sessionstore_idempotency_keys WHERE session_id = $1
               ORDER BY created_micros DESC, key COLLATE \"C\" LIMIT $5))",
        &[&id, &key, &now, &IDEMPOTENCY_KEY_MICROS, &kept],
    )?;
    Ok(())
}
