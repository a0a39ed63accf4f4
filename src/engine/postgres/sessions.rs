//! Sessions: creation, reads, context, expiry of one, deletion, a user's
//! lists, forks and the per-user context.

use std::sync::Arc;

use uuid::Uuid;

use super::rows::{self, MESSAGE_COLUMNS, SESSION_COLUMNS};
use super::{delete_sessions, lock_session, lock_writable, search, PgEngine};
use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::{Durability, Erased, Session, SessionCursor, SessionInfo, SessionPage, SessionSummary};
use crate::rules::{context, fork, message, Access};
use crate::timestamp::Timestamp;

impl PgEngine {
    /// As `SessionStore::create_session`.
    pub(crate) fn create_session(&self, user_id: Option<&str>, durability: Durability) -> Result<Uuid> {
        if let Some(user) = user_id {
            rows::storable("user_id", user)?;
        }
        let id = Uuid::new_v4();
        let (now, micros) = rows::columns(&Timestamp::now());
        self.write(durability, |txn| {
            let inserted = txn.execute(
                "INSERT INTO chat_sessions
                     (session_id, user_id, created_at, updated_at, context, metadata,
                      created_micros, updated_micros)
                 VALUES ($1, $2, $3, $3, '{}', '{}', $4, $4)
                 ON CONFLICT (session_id) DO NOTHING",
                &[&id, &user_id, &now, &micros],
            )?;
            if inserted == 0 {
                return Err(Error::invalid("session_id", format!("{id} exists already")).into());
            }
            Ok(id)
        })
    }

    /// As `SessionStore::get_session`.
    pub(crate) fn get_session(&self, id: Uuid, access: Access<'_>) -> Result<Option<Session>> {
        self.read(|txn| {
            let Some(row) = txn.query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM chat_sessions s WHERE s.session_id = $1"),
                &[&id],
            )?
            else {
                return Ok(None);
            };
            let info = rows::session_info(&row)?;
            if !access.allows(info.user_id.as_deref()) || info.expired_at.is_some() {
                return Ok(None);
            }
            let messages = txn
                .query(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM chat_messages m
                         WHERE m.session_id = $1 AND m.seq < $2 ORDER BY m.seq"
                    ),
                    &[&id, &rows::bigint(info.message_count)],
                )?
                .iter()
                .map(|row| rows::message(row).map(Arc::new))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(Session { info, messages }))
        })
    }

    /// As `SessionStore::session_info`.
    pub(crate) fn session_info(&self, id: Uuid, access: Access<'_>) -> Result<Option<SessionInfo>> {
        self.read(|txn| {
            let row = txn.query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM chat_sessions s WHERE s.session_id = $1"),
                &[&id],
            )?;
            let info = row.as_ref().map(rows::session_info).transpose()?;
            Ok(info.filter(|info| access.allows(info.user_id.as_deref())))
        })
    }

    /// As `SessionStore::update_context`.
    pub(crate) fn update_context(
        &self,
        id: Uuid,
        context: &str,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<()> {
        let update = JsonText::object("context", context)?;
        self.write(durability, |txn| {
            let old = lock_writable(txn, id, access)?;
            let merged = context::merged(old.context.as_deref(), &update)?;
            let (now, micros) = rows::columns(&Timestamp::now());
            txn.execute(
                "UPDATE chat_sessions SET context = $2, updated_at = $3, updated_micros = $4,
                     revision = revision + 1
                 WHERE session_id = $1",
                &[&id, &merged.as_str(), &now, &micros],
            )?;
            Ok(())
        })
    }

    /// As `SessionStore::expire_session`.
    pub(crate) fn expire_session(
        &self,
        id: Uuid,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<bool> {
        self.write(durability, |txn| {
            if lock_session(txn, id, access)?.expired {
                return Ok(false);
            }
            let (now, micros) = rows::columns(&Timestamp::now());
            txn.execute(
                "UPDATE chat_sessions SET expired_at = $2, expired_micros = $3,
                     revision = revision + 1
                 WHERE session_id = $1",
                &[&id, &now, &micros],
            )?;
            Ok(true)
        })
    }

    /// As `SessionStore::delete_session`.
    pub(crate) fn delete_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<u64> {
        self.write(durability, |txn| {
            lock_session(txn, id, access)?;
            delete_sessions(txn, &[id])
        })
    }

    /// As `SessionStore::erase_user`.
    pub(crate) fn erase_user(&self, user: &str, durability: Durability) -> Result<Erased> {
        if !rows::nameable(user) {
            return Ok(Erased::default());
        }
        self.write(durability, |txn| {
            let ids: Vec<Uuid> = txn
                .query(
                    "SELECT session_id FROM chat_sessions WHERE user_id = $1
                     ORDER BY session_id FOR UPDATE",
                    &[&user],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let messages = delete_sessions(txn, &ids)?;
            txn.execute(
                "DELETE FROM sessionstore_user_contexts WHERE user_id = $1",
                &[&user],
            )?;
            Ok(Erased {
                sessions: ids.len() as u64,
                messages,
            })
        })
    }

    /// As `SessionStore::list_user_sessions`.
    pub(crate) fn list_user_sessions(&self, user: &str, include_expired: bool) -> Result<Vec<Uuid>> {
        if !rows::nameable(user) {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let ids = txn
                .query(
                    "SELECT session_id FROM chat_sessions
                     WHERE user_id = $1 AND ($2 OR expired_micros IS NULL)
                     ORDER BY updated_micros DESC, session_id DESC",
                    &[&user, &include_expired],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            Ok(ids)
        })
    }

    /// As `SessionStore::user_sessions_page`: most recently updated first,
    /// ties by session id (the order of redb's index), strictly after
    /// `after`.
    pub(crate) fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        if limit == 0 {
            return Err(Error::invalid("limit", "a page holds at least one session"));
        }
        if !rows::nameable(user) {
            return Ok(SessionPage {
                sessions: Vec::new(),
                next: None,
            });
        }
        let after_micros = after.map(|cursor| cursor.updated_micros);
        let after_session = after.map(|cursor| Uuid::from_u128(cursor.session));
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        self.read(|txn| {
            let found = txn.query(
                "SELECT s.session_id, s.updated_at, s.updated_micros, s.expired_micros IS NOT NULL,
                        s.message_count, s.title, s.title_exact
                 FROM chat_sessions s
                 WHERE s.user_id = $1 AND ($2 OR s.expired_micros IS NULL)
                   AND ($3::BIGINT IS NULL OR (s.updated_micros, s.session_id) < ($3, $4::UUID))
                 ORDER BY s.updated_micros DESC, s.session_id DESC
                 LIMIT $5",
                &[&user, &include_expired, &after_micros, &after_session, &fetch],
            )?;
            let mut sessions = Vec::with_capacity(found.len());
            let mut last = None;
            for row in found.iter().take(limit) {
                let session_id: Uuid = row.get(0);
                let updated_micros: i64 = row.get(2);
                sessions.push(SessionSummary {
                    session_id,
                    title: rows::title(row.get(5), row.get(6)),
                    message_count: rows::count(row.get(4)),
                    last_activity: rows::timestamp(row.get(1), updated_micros),
                    expired: row.get(3),
                });
                last = Some(SessionCursor {
                    updated_micros,
                    session: session_id.as_u128(),
                });
            }
            let next = if found.len() > limit { last } else { None };
            Ok(SessionPage { sessions, next })
        })
    }

    /// As `SessionStore::fork_session`: the fork's messages are copies
    /// under new ids from the sequence.
    pub(crate) fn fork_session(
        &self,
        id: Uuid,
        at_seq: u64,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Uuid> {
        let fork = Uuid::new_v4();
        let origin = JsonText::from_value(&serde_json::json!({
            "forked_from": {"session": id.to_string(), "at_seq": at_seq}
        }));
        self.write(durability, |txn| {
            let source = lock_writable(txn, id, access)?;
            fork::check_at_seq(id, at_seq, source.message_count)?;
            let metadata = context::merged(source.metadata.as_deref(), &origin)?;
            let (now, micros) = rows::columns(&Timestamp::now());
            // The parent's title, when its first user message is among
            // the messages the fork holds.
            let inserted = txn.execute(
                "INSERT INTO chat_sessions
                     (session_id, user_id, created_at, updated_at, context, metadata,
                      created_micros, updated_micros, message_count, title, title_exact, title_seq)
                 SELECT $1, p.user_id, $3, $3, p.context, $4, $5, $5, $6,
                        CASE WHEN p.title_seq < $6 THEN p.title END,
                        CASE WHEN p.title_seq < $6 THEN p.title_exact END,
                        CASE WHEN p.title_seq < $6 THEN p.title_seq END
                 FROM chat_sessions p WHERE p.session_id = $2
                 ON CONFLICT (session_id) DO NOTHING",
                &[
                    &fork,
                    &id,
                    &now,
                    &metadata.as_str(),
                    &micros,
                    &rows::bigint(at_seq),
                ],
            )?;
            if inserted == 0 {
                return Err(Error::invalid("session_id", format!("{fork} exists already")).into());
            }
            txn.execute(
                "INSERT INTO chat_messages
                     (session_id, seq, id, role, content, content_exact, query_plan,
                      candidate_set, timestamp, timestamp_micros, tokens, extra)
                 SELECT $2, seq, nextval('chat_messages_id_seq'), role, content, content_exact,
                        query_plan, candidate_set, timestamp, timestamp_micros, tokens, extra
                 FROM chat_messages WHERE session_id = $1 AND seq < $3 ORDER BY seq",
                &[&id, &fork, &rows::bigint(at_seq)],
            )?;
            search::recount(txn, "s.session_id = $1", &[&fork])?;
            txn.execute(
                "INSERT INTO sessionstore_forks (parent_id, fork_id) VALUES ($1, $2)",
                &[&id, &fork],
            )?;
            Ok(fork)
        })
    }

    /// As `SessionStore::forks`.
    pub(crate) fn forks(&self, id: Uuid, access: Access<'_>) -> Result<Option<Vec<SessionInfo>>> {
        self.read(|txn| {
            let parent = txn.query_opt("SELECT user_id FROM chat_sessions WHERE session_id = $1", &[&id])?;
            if !parent.is_some_and(|row| access.allows(row.get(0))) {
                return Ok(None);
            }
            let forks = txn
                .query(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessionstore_forks f
                         JOIN chat_sessions s ON s.session_id = f.fork_id
                         WHERE f.parent_id = $1
                         ORDER BY s.created_micros, s.session_id"
                    ),
                    &[&id],
                )?
                .iter()
                .map(rows::session_info)
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(forks))
        })
    }

    /// As `SessionStore::user_context`.
    pub(crate) fn user_context(&self, user: &str) -> Result<Option<JsonText>> {
        if !rows::nameable(user) {
            return Ok(None);
        }
        self.read(|txn| {
            let row = txn.query_opt(
                "SELECT context FROM sessionstore_user_contexts WHERE user_id = $1",
                &[&user],
            )?;
            Ok(row.map(|row| JsonText::trusted(row.get(0))))
        })
    }

    /// As `SessionStore::update_user_context`. The first update of a user
    /// inserts the row; two first updates at once both merge, the later
    /// one into the row the earlier one inserted.
    pub(crate) fn update_user_context(
        &self,
        user: &str,
        context: &str,
        durability: Durability,
    ) -> Result<()> {
        message::check_context_size(context, self.settings.max_content_bytes)?;
        let update = JsonText::object("context", context)?;
        rows::storable("user_id", user)?;
        self.write(durability, |txn| {
            let select = "SELECT context FROM sessionstore_user_contexts WHERE user_id = $1 FOR UPDATE";
            let old: Option<String> = match txn.query_opt(select, &[&user])? {
                Some(row) => Some(row.get(0)),
                None => {
                    let first = context::merged(None, &update)?;
                    let inserted = txn.execute(
                        "INSERT INTO sessionstore_user_contexts (user_id, context) VALUES ($1, $2)
                         ON CONFLICT (user_id) DO NOTHING",
                        &[&user, &first.as_str()],
                    )?;
                    if inserted == 1 {
                        return Ok(());
                    }
                    txn.query_opt(select, &[&user])?.map(|row| row.get(0))
                }
            };
            let merged = context::merged(old.as_deref(), &update)?;
            txn.execute(
                "UPDATE sessionstore_user_contexts SET context = $2 WHERE user_id = $1",
                &[&user, &merged.as_str()],
            )?;
            Ok(())
        })
    }
}
