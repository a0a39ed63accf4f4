//! Expiry by age, purge, monitoring, the model check, and the refusals of
//! what belongs to redb's files (backup, compaction).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use uuid::Uuid;

use super::schema::TABLES;
use super::{delete_sessions, not_supported, rows, search, PgEngine};
use crate::error::Result;
use crate::model::{CheckReport, CompactReport, Durability, Progress, Stats, StoreCounters};
use crate::rules::expiry;
use crate::timestamp::Timestamp;

/// Sessions one commit of a purge with progress deletes at most (as redb).
const PURGE_BATCH: i64 = 1024;
/// Problems of one kind a check lists at most.
const LISTED: i64 = 100;

impl PgEngine {
    /// As `SessionStore::expire_old_sessions`: one `UPDATE` sets
    /// `expired_at` of every due session to now (what redb's lazy expiry
    /// shows).
    pub(crate) fn expire_old_sessions(&self, max_age: Duration, durability: Durability) -> Result<u64> {
        let cutoff = expiry::cutoff(max_age);
        let (now, micros) = rows::columns(&Timestamp::now());
        self.write(durability, |txn| {
            Ok(txn.execute(
                "UPDATE chat_sessions SET expired_at = $2, expired_micros = $3,
                     revision = revision + 1
                 WHERE expired_micros IS NULL AND updated_micros < $1",
                &[&cutoff, &now, &micros],
            )?)
        })
    }

    /// As `SessionStore::purge_expired`: one transaction.
    pub(crate) fn purge_expired(&self, older_than: Duration, durability: Durability) -> Result<u64> {
        self.purge(expiry::cutoff(older_than), None, durability)
    }

    /// As `SessionStore::purge_expired_with_progress`: transactions of at
    /// most 1,024 sessions, `progress(deleted, due)` after each.
    pub(crate) fn purge_expired_with_progress(
        &self,
        older_than: Duration,
        progress: Progress<'_>,
        durability: Durability,
    ) -> Result<u64> {
        let cutoff = expiry::cutoff(older_than);
        let due: i64 = self.read(|txn| {
            Ok(txn
                .query_one(
                    "SELECT COUNT(*) FROM chat_sessions WHERE expired_micros < $1",
                    &[&cutoff],
                )?
                .get(0))
        })?;
        let due = rows::count(due);
        let mut done = 0;
        loop {
            let handled = self.purge(cutoff, Some(PURGE_BATCH), durability)?;
            done += handled;
            progress(done, due.max(done));
            if handled < PURGE_BATCH as u64 {
                return Ok(done);
            }
        }
    }

    /// Deletes up to `limit` sessions expired before `cutoff` (all when
    /// `None`); returns how many.
    fn purge(&self, cutoff: i64, limit: Option<i64>, durability: Durability) -> Result<u64> {
        self.write(durability, |txn| {
            let ids: Vec<Uuid> = txn
                .query(
                    "SELECT session_id FROM chat_sessions WHERE expired_micros < $1
                     ORDER BY expired_micros, session_id LIMIT $2 FOR UPDATE",
                    &[&cutoff, &limit],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            delete_sessions(txn, &ids)?;
            Ok(ids.len() as u64)
        })
    }

    /// As `SessionStore::stats`: `file_size` is what the store's tables
    /// and their indexes take in the database (`pg_total_relation_size`);
    /// `journal_size` is 0 (the server's write-ahead log is its own).
    pub(crate) fn stats(&self) -> Result<Stats> {
        self.read(|txn| {
            let row = txn.query_one(
                &format!(
                    "SELECT
                         (SELECT COUNT(*) FROM chat_sessions WHERE expired_micros IS NULL),
                         (SELECT COUNT(*) FROM chat_sessions WHERE expired_micros IS NOT NULL),
                         (SELECT COUNT(*) FROM chat_messages),
                         (SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(name))), 0)::BIGINT
                          FROM unnest(ARRAY[{TABLES}]) AS name)"
                ),
                &[],
            )?;
            Ok(Stats {
                active_sessions: rows::count(row.get(0)),
                expired_sessions: rows::count(row.get(1)),
                messages: rows::count(row.get(2)),
                file_size: rows::count(row.get(3)),
                journal_size: 0,
            })
        })
    }

    /// As `SessionStore::counters`: the commits of this handle's writes,
    /// each one request; no checkpoints, no message cache.
    pub(crate) fn counters(&self) -> StoreCounters {
        let commits = self.commits.load(Ordering::Relaxed);
        StoreCounters {
            commits,
            batch_requests: commits,
            ..StoreCounters::default()
        }
    }

    /// As `SessionStore::check`, mapped to what a database holds: the
    /// server keeps its own pages' checksums, so the check is of the
    /// model's rules: each session's messages at seqs `0..message_count`
    /// exactly, its title's seq that of its first user message, every
    /// message, idempotency key and fork entry belonging to a session,
    /// message ids unique and below the sequence's next value, each
    /// session's search counts what its messages give.
    pub(crate) fn check(&self, progress: Progress<'_>) -> Result<CheckReport> {
        let report = self.read(|txn| {
            let counts = txn.query_one(
                "SELECT (SELECT COUNT(*) FROM chat_sessions), (SELECT COUNT(*) FROM chat_messages)",
                &[],
            )?;
            let mut problems = Vec::new();
            for row in txn.query(
                "SELECT s.session_id, s.message_count, COUNT(m.seq), COALESCE(MAX(m.seq), -1)
                 FROM chat_sessions s LEFT JOIN chat_messages m ON m.session_id = s.session_id
                 GROUP BY s.session_id, s.message_count
                 HAVING COUNT(m.seq) <> s.message_count OR COALESCE(MAX(m.seq), -1) <> s.message_count - 1
                 LIMIT $1",
                &[&LISTED],
            )? {
                let (id, count, held, last): (Uuid, i64, i64, i64) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                problems.push(format!(
                    "session {id}: message_count {count}, but it holds {held} messages, the last at seq {last}"
                ));
            }
            for row in txn.query(
                "SELECT s.session_id, s.title_seq, t.seq FROM chat_sessions s
                 LEFT JOIN LATERAL (
                     SELECT m.seq FROM chat_messages m
                     WHERE m.session_id = s.session_id AND m.role = 'user'
                     ORDER BY m.seq LIMIT 1
                 ) t ON true
                 WHERE s.title_seq IS DISTINCT FROM t.seq OR (s.title IS NULL) <> (s.title_seq IS NULL)
                 LIMIT $1",
                &[&LISTED],
            )? {
                let (id, title, first): (Uuid, Option<i64>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
                let shown = |seq: Option<i64>| seq.map_or("none".to_owned(), |seq| format!("seq {seq}"));
                problems.push(format!(
                    "session {id}: its title is of the message at {}, but its first user message is at {}",
                    shown(title),
                    shown(first)
                ));
            }
            for wrong in search::differences(txn, LISTED)? {
                problems.push(format!(
                    "session {}: its search counts are {} messages holding words and {} words, \
                     but its messages give {} and {}",
                    wrong.session, wrong.stored.0, wrong.stored.1, wrong.counted.0, wrong.counted.1
                ));
            }
            let orphans = [
                ("chat_messages", "messages"),
                ("sessionstore_idempotency_keys", "idempotency keys"),
            ];
            for (table, what) in orphans {
                let row = txn.query_one(
                    &format!(
                        "SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS
                         (SELECT 1 FROM chat_sessions s WHERE s.session_id = t.session_id)"
                    ),
                    &[],
                )?;
                let n: i64 = row.get(0);
                if n > 0 {
                    problems.push(format!("{n} {what} of sessions that do not exist"));
                }
            }
            let dangling: i64 = txn
                .query_one(
                    "SELECT COUNT(*) FROM sessionstore_forks f WHERE NOT EXISTS
                     (SELECT 1 FROM chat_sessions s WHERE s.session_id = f.parent_id)
                     OR NOT EXISTS (SELECT 1 FROM chat_sessions s WHERE s.session_id = f.fork_id)",
                    &[],
                )?
                .get(0);
            if dangling > 0 {
                problems.push(format!("{dangling} fork entries naming a session that does not exist"));
            }
            for row in txn.query(
                "SELECT id, COUNT(*) FROM chat_messages GROUP BY id HAVING COUNT(*) > 1 LIMIT $1",
                &[&LISTED],
            )? {
                let (id, n): (i64, i64) = (row.get(0), row.get(1));
                problems.push(format!("message id {id} is held by {n} messages"));
            }
            let beyond: Option<i64> = txn
                .query_opt(
                    "SELECT MAX(id) FROM chat_messages
                     HAVING MAX(id) > (SELECT last_value FROM chat_messages_id_seq)",
                    &[],
                )?
                .and_then(|row| row.get(0));
            if let Some(id) = beyond {
                problems.push(format!(
                    "message id {id} is beyond chat_messages_id_seq: it would be given again"
                ));
            }
            Ok(CheckReport {
                sessions: rows::count(counts.get(0)),
                messages: rows::count(counts.get(1)),
                problems,
            })
        })?;
        progress(report.sessions, report.sessions);
        Ok(report)
    }

    /// `SessionStore::backup_to`: refused, the server's own tools copy a
    /// database.
    pub(crate) fn backup_to(&self, _dest: &Path, _progress: Progress<'_>) -> Result<()> {
        Err(not_supported(
            "backup",
            "a database is copied by the server's tools (pg_dump, or a base backup with pg_basebackup)",
        ))
    }

    /// `SessionStore::compact`: refused, the server reclaims space itself.
    pub(crate) fn compact(&self, _progress: Progress<'_>) -> Result<CompactReport> {
        Err(not_supported(
            "compact",
            "the server reclaims the space of deleted rows itself (autovacuum; VACUUM FULL to give it back)",
        ))
    }
}
