//! Expiry by age on redb, lazily.
//!
//! [`SessionStore::expire_old_sessions`] does not rewrite the sessions it
//! expires. It records an expiry event, cutoff -> when it ran, in the
//! `expiry_events` table, and only when the cutoff is above every earlier
//! one (the watermark). The lazy rule, applied by every read and write: a
//! session whose record is active and whose `updated_at` is below the
//! watermark is expired, since the `at` of the first event whose cutoff is
//! above its `updated_at`. That is what an eager expiry at each event would
//! have written, so nothing observable changes; the expiry costs a count of
//! the newly due sessions and one small commit.
//!
//! The writer expires the lazily expired sessions for good when it has
//! nothing else to do ([`ExpiryState`] is its idle work), a few at a time,
//! lowest `updated_at` first, and drops the events nothing refers to any
//! more, so the list of events stays short.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata};

use crate::engine::redb::encoding::{decode, encode, RecordKey, SessionRecord, StoredTimestamp};
use crate::engine::redb::tables::{self, WriteTables};
use crate::engine::redb::writer::IdleWork;
use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

/// The name errors give the events table.
const EVENTS: &str = "expiry_events";

/// Sessions the writer expires for good in one idle commit: about 20 µs
/// each, so that a write arriving meanwhile waits well under a millisecond.
const IDLE_STEP: usize = 32;

/// The watermark: the highest cutoff of the events, `i64::MIN` without any.
pub(crate) fn watermark(events: &impl ReadableTable<i64, &'static [u8]>) -> Result<i64> {
    Ok(events.last()?.map_or(i64::MIN, |(cutoff, _)| cutoff.value()))
}

/// When a session updated at `updated` (and active in its record) expired
/// under the lazy rule; `None` when it is active.
fn lazy_expired_at(
    events: &impl ReadableTable<i64, &'static [u8]>,
    updated: i64,
) -> Result<Option<StoredTimestamp>> {
    match events
        .range::<i64>((Bound::Excluded(updated), Bound::Unbounded))?
        .next()
    {
        Some(entry) => {
            let (cutoff, at) = entry?;
            Ok(Some(decode(RecordKey::ExpiryEvent(cutoff.value()), at.value())?))
        }
        None => Ok(None),
    }
}

/// When `record`'s session expired, by its own field or by the lazy rule.
pub(crate) fn expired_at(
    events: &impl ReadableTable<i64, &'static [u8]>,
    record: &SessionRecord,
) -> Result<Option<StoredTimestamp>> {
    match &record.expired_at {
        Some(at) => Ok(Some(at.clone())),
        None => lazy_expired_at(events, record.updated_at.micros()),
    }
}

/// The events, (cutoff, at), in cutoff order.
fn read_events(table: &impl ReadableTable<i64, &'static [u8]>) -> Result<Vec<(i64, StoredTimestamp)>> {
    let mut events = Vec::new();
    for entry in table.range::<i64>(..)? {
        let (cutoff, at) = entry?;
        let cutoff = cutoff.value();
        events.push((cutoff, decode(RecordKey::ExpiryEvent(cutoff), at.value())?));
    }
    Ok(events)
}

/// The `updated_at` ranges, [from, to), of the active records expired
/// lazily before `cutoff` (by events that ran before it).
fn lazy_ranges_expired_before(
    events: impl IntoIterator<Item = (i64, StoredTimestamp)>,
    cutoff: i64,
) -> Vec<(i64, i64)> {
    let mut from = i64::MIN;
    let mut ranges = Vec::new();
    for (event_cutoff, at) in events {
        if at.micros() < cutoff {
            ranges.push((from, event_cutoff));
        }
        from = event_cutoff;
    }
    ranges
}

/// The sessions of the first `limit` entries of a (time, session) index in
/// [from, to).
pub(crate) fn sessions_in(
    index: &impl ReadableTable<(i64, u128), ()>,
    (from, to): (i64, i64),
    limit: usize,
) -> Result<Vec<u128>> {
    let mut sessions = Vec::new();
    for entry in index.range((from, 0u128)..(to, 0u128))?.take(limit) {
        sessions.push(entry?.0.value().1);
    }
    Ok(sessions)
}

/// How many entries of a (time, session) index lie in [from, to).
fn count_in(index: &impl ReadableTable<(i64, u128), ()>, (from, to): (i64, i64)) -> Result<u64> {
    let mut count = 0;
    for entry in index.range((from, 0u128)..(to, 0u128))? {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// Expires every active session updated before `cutoff`: records an event
/// when that raises the watermark and some session is newly due. Returns
/// how many sessions it expired; reads only those.
pub(crate) fn expire_before(tables: &mut WriteTables<'_>, cutoff: i64, state: &ExpiryState) -> Result<u64> {
    let watermark = watermark(tables.expiry_events.table()?)?;
    if cutoff <= watermark {
        return Ok(0);
    }
    let due = count_in(tables.active_by_updated.table()?, (watermark, cutoff))?;
    if due > 0 {
        let at = StoredTimestamp::from(&Timestamp::now());
        tables
            .expiry_events
            .insert(cutoff, encode(RecordKey::ExpiryEvent(cutoff), &at)?.as_slice())?;
        state.ceiling.fetch_max(cutoff, Ordering::SeqCst);
        state.lazy.store(true, Ordering::SeqCst);
    }
    Ok(due)
}

/// Expires for good at most `limit` of the sessions expired lazily, lowest
/// `updated_at` first, and drops the events that then refer to nothing.
/// Says whether sessions expired lazily remain.
pub(crate) fn materialize(tables: &mut WriteTables<'_>, limit: usize) -> Result<bool> {
    let watermark = watermark(tables.expiry_events.table()?)?;
    for id in sessions_in(tables.active_by_updated.table()?, (i64::MIN, watermark), limit)? {
        let old = tables
            .session(id)?
            .ok_or_else(|| Error::corrupt_record("active_by_updated", "entry without a session"))?;
        let mut new = old.clone();
        new.expired_at = Some(
            lazy_expired_at(tables.expiry_events.table()?, old.updated_at.micros())?.ok_or_else(|| {
                Error::corrupt_record(EVENTS, "a session below the watermark without its event")
            })?,
        );
        tables.write_session(id, Some(&old), new)?;
    }
    drop_unused_events(tables)
}

/// Drops the events, from the first on, below whose cutoff no active
/// record is left: nothing refers to them. Says whether events remain (and
/// so sessions expired lazily).
fn drop_unused_events(tables: &mut WriteTables<'_>) -> Result<bool> {
    let oldest_active = tables
        .active_by_updated
        .table()?
        .first()?
        .map(|(key, _)| key.value().0);
    let mut unused = Vec::new();
    for entry in tables.expiry_events.table()?.range::<i64>(..)? {
        let cutoff = entry?.0.value();
        if oldest_active.is_some_and(|updated| updated < cutoff) {
            break;
        }
        unused.push(cutoff);
    }
    for cutoff in unused {
        tables.expiry_events.remove(cutoff)?;
    }
    Ok(!tables.expiry_events.table()?.is_empty()?)
}

/// Deletes, with their messages, at most `limit` sessions expired before
/// `cutoff`, for good or lazily; returns how many.
pub(crate) fn purge_before(tables: &mut WriteTables<'_>, cutoff: i64, limit: usize) -> Result<u64> {
    // (the index that names it, session): expired for good, then lazily.
    let mut due: Vec<(&'static str, u128)> =
        sessions_in(tables.expired_by_time.table()?, (i64::MIN, cutoff), limit)?
            .into_iter()
            .map(|id| ("expired_by_time", id))
            .collect();
    for range in lazy_ranges_expired_before(read_events(tables.expiry_events.table()?)?, cutoff) {
        let left = limit - due.len();
        let lazily = sessions_in(tables.active_by_updated.table()?, range, left)?;
        due.extend(lazily.into_iter().map(|id| ("active_by_updated", id)));
    }
    for &(index, id) in &due {
        let record = tables
            .session(id)?
            .ok_or_else(|| Error::corrupt_record(index, "entry without a session"))?;
        tables.remove_session(id, &record)?;
    }
    drop_unused_events(tables)?;
    Ok(due.len() as u64)
}

/// What the store keeps in memory of the lazy expiry.
#[derive(Debug)]
pub(crate) struct ExpiryState {
    /// At least the watermark of every committed state: raised before the
    /// commit of an event, never lowered. A record updated at or after it
    /// is active without a look at the events.
    ceiling: AtomicI64,
    /// Sessions expired lazily may exist: work for the idle writer.
    lazy: AtomicBool,
}

impl ExpiryState {
    /// The state of the store whose latest commit `txn` reads.
    pub fn load(txn: &ReadTransaction) -> Result<Self> {
        let watermark = match open_events(txn)? {
            Some(events) => watermark(&events)?,
            None => i64::MIN,
        };
        Ok(ExpiryState {
            ceiling: AtomicI64::new(watermark),
            lazy: AtomicBool::new(watermark != i64::MIN),
        })
    }

    /// The lazy rule over `txn`, which must have begun before this call.
    pub fn view<'t>(&self, txn: &'t ReadTransaction) -> Expiry<'t> {
        Expiry {
            txn,
            ceiling: self.ceiling.load(Ordering::SeqCst),
            events: None,
        }
    }
}

impl IdleWork for ExpiryState {
    fn due(&self) -> bool {
        self.lazy.load(Ordering::SeqCst)
    }

    fn step(&self, tables: &mut WriteTables<'_>) -> Result<()> {
        let result = materialize(tables, IDLE_STEP);
        if !matches!(result, Ok(true)) {
            self.lazy.store(false, Ordering::SeqCst);
        }
        result.map(drop)
    }
}

/// The expiry events; `None` in a file written before lazy expiry, not
/// written since.
fn open_events(txn: &ReadTransaction) -> Result<Option<ReadOnlyTable<i64, &'static [u8]>>> {
    tables::open_if_present(txn, tables::EXPIRY_EVENTS)
}

/// What is wrong with the events of `txn`'s state, one sentence each.
pub(crate) fn check_events(txn: &ReadTransaction) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if let Some(events) = open_events(txn)? {
        for entry in events.range::<i64>(..)? {
            let (cutoff, at) = entry?;
            let key = RecordKey::ExpiryEvent(cutoff.value());
            if let Err(e) = decode::<StoredTimestamp>(key, at.value()) {
                problems.push(e.to_string());
            }
        }
    }
    Ok(problems)
}

/// The lazy rule in a read transaction; opens the events only when a
/// record needs them.
pub(crate) struct Expiry<'t> {
    txn: &'t ReadTransaction,
    ceiling: i64,
    /// Opened on first use; the inner `None` when the file has no events table.
    events: Option<Option<ReadOnlyTable<i64, &'static [u8]>>>,
}

impl Expiry<'_> {
    fn events(&mut self) -> Result<Option<&ReadOnlyTable<i64, &'static [u8]>>> {
        if self.events.is_none() {
            self.events = Some(open_events(self.txn)?);
        }
        Ok(self.events.as_ref().and_then(Option::as_ref))
    }

    /// Gives `record` the `expired_at` the lazy rule gives it.
    pub fn apply(&mut self, record: &mut SessionRecord) -> Result<()> {
        let updated = record.updated_at.micros();
        if record.expired_at.is_some() || updated >= self.ceiling {
            return Ok(());
        }
        if let Some(events) = self.events()? {
            record.expired_at = lazy_expired_at(events, updated)?;
        }
        Ok(())
    }

    /// The watermark of this transaction's state.
    pub fn watermark(&mut self) -> Result<i64> {
        if self.ceiling == i64::MIN {
            return Ok(i64::MIN);
        }
        match self.events()? {
            Some(events) => watermark(events),
            None => Ok(i64::MIN),
        }
    }

    /// How many active records are expired lazily.
    pub fn lazily_expired(&mut self) -> Result<u64> {
        let watermark = self.watermark()?;
        if watermark == i64::MIN {
            return Ok(0);
        }
        count_in(
            &self.txn.open_table(tables::ACTIVE_BY_UPDATED)?,
            (i64::MIN, watermark),
        )
    }

    /// How many sessions expired before `cutoff`, for good or lazily.
    pub fn expired_before(&mut self, cutoff: i64) -> Result<u64> {
        let mut due = count_in(&self.txn.open_table(tables::EXPIRED_BY_TIME)?, (i64::MIN, cutoff))?;
        if self.ceiling == i64::MIN {
            return Ok(due);
        }
        let events = match self.events()? {
            Some(table) => read_events(table)?,
            None => return Ok(due),
        };
        let active = self.txn.open_table(tables::ACTIVE_BY_UPDATED)?;
        for range in lazy_ranges_expired_before(events, cutoff) {
            due += count_in(&active, range)?;
        }
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase};

    use super::{expire_before, materialize, purge_before, ExpiryState};
    use crate::engine::redb::encoding::{SessionRecord, StoredTimestamp};
    use crate::engine::redb::tables::{self, WriteTables};
    use crate::timestamp::{Timestamp, TimestampForm};

    fn at(micros: i64) -> StoredTimestamp {
        StoredTimestamp::from(&Timestamp::from_micros(micros, TimestampForm::Utc))
    }

    fn record(updated: i64) -> SessionRecord {
        SessionRecord {
            user_id: Some("ana".into()),
            created_at: at(updated),
            updated_at: at(updated),
            expired_at: None,
            context: None,
            metadata: None,
            message_count: 0,
            extra: Vec::new(),
            revision: 0,
        }
    }

    fn write<T>(db: &Database, f: impl FnOnce(&mut WriteTables<'_>) -> T) -> T {
        let txn = db.begin_write().unwrap();
        let out = f(&mut WriteTables::open(&txn));
        txn.commit().unwrap();
        out
    }

    /// Each session's `expired_at` as the reads see it, in id order.
    fn expiries(db: &Database, state: &ExpiryState) -> Vec<Option<i64>> {
        let txn = db.begin_read().unwrap();
        let sessions = txn.open_table(tables::SESSIONS).unwrap();
        let mut expiry = state.view(&txn);
        (0..6u128)
            .map(|id| {
                let mut record = tables::session_record(&sessions, id).unwrap().unwrap();
                expiry.apply(&mut record).unwrap();
                record.expired_at.map(|t| t.micros())
            })
            .collect()
    }

    fn events(db: &Database) -> usize {
        let txn = db.begin_read().unwrap();
        let events = txn.open_table(tables::EXPIRY_EVENTS).unwrap();
        events.range::<i64>(..).unwrap().count()
    }

    /// Sessions updated at 10, 20, ..., 60; session 5 expired by hand at 7.
    fn store() -> (tempfile::TempDir, Database, ExpiryState) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        write(&db, |tables| {
            for id in 0..6u128 {
                let mut new = record(10 * (id as i64 + 1));
                if id == 5 {
                    new.expired_at = Some(at(7));
                }
                tables.put_session(id, None, new).unwrap();
            }
        });
        let state = ExpiryState::load(&db.begin_read().unwrap()).unwrap();
        (dir, db, state)
    }

    #[test]
    fn sessions_expire_at_the_first_event_above_them_lazily_and_then_for_good() {
        let (_dir, db, state) = store();
        // Below 25: sessions 0 and 1; then below 45: session 2 and 3.
        assert_eq!(write(&db, |t| expire_before(t, 25, &state).unwrap()), 2);
        let first = expiries(&db, &state)[0].unwrap();
        assert_eq!(write(&db, |t| expire_before(t, 45, &state).unwrap()), 2);
        // A lower cutoff records nothing: those sessions are expired already.
        assert_eq!(write(&db, |t| expire_before(t, 30, &state).unwrap()), 0);
        assert_eq!(events(&db), 2);
        let lazy = expiries(&db, &state);
        let second = lazy[2].unwrap();
        assert!(second >= first);
        assert_eq!(
            lazy,
            [
                Some(first),
                Some(first),
                Some(second),
                Some(second),
                None,
                Some(7)
            ]
        );

        // One session at a time, lowest first: the reads never change, and
        // an event goes once nothing is left below its cutoff.
        let mut remaining = Vec::new();
        loop {
            let more = write(&db, |t| materialize(t, 1).unwrap());
            assert_eq!(expiries(&db, &state), lazy);
            remaining.push(events(&db));
            if !more {
                break;
            }
        }
        assert_eq!(remaining, [2, 1, 1, 0]);
        let txn = db.begin_read().unwrap();
        assert_eq!(tables::count(&txn, tables::ACTIVE_BY_UPDATED).unwrap(), 1);
        assert_eq!(tables::count(&txn, tables::EXPIRED_BY_TIME).unwrap(), 5);
    }

    #[test]
    fn purge_deletes_the_sessions_expired_lazily_before_its_cutoff() {
        let (_dir, db, state) = store();
        assert_eq!(write(&db, |t| expire_before(t, 25, &state).unwrap()), 2);
        let first = expiries(&db, &state)[0].unwrap();
        // Before the expiry ran: only session 5, expired by hand at 7.
        assert_eq!(write(&db, |t| purge_before(t, first, usize::MAX).unwrap()), 1);
        assert_eq!(events(&db), 1);
        assert_eq!(write(&db, |t| purge_before(t, first + 1, 1).unwrap()), 1);
        assert_eq!(write(&db, |t| purge_before(t, first + 1, 1).unwrap()), 1);
        // Nothing refers to the event any more.
        assert_eq!(events(&db), 0);
        let txn = db.begin_read().unwrap();
        assert_eq!(tables::count(&txn, tables::SESSIONS).unwrap(), 3);
    }

    #[test]
    fn an_active_record_written_below_the_watermark_stays_active() {
        let (_dir, db, state) = store();
        assert_eq!(write(&db, |t| expire_before(t, 45, &state).unwrap()), 4);
        let lazy = expiries(&db, &state);
        // Loaded data (a converted file) updated before the last cutoff.
        write(&db, |t| t.put_session(9, None, record(15)).unwrap());
        assert_eq!(events(&db), 0);
        assert_eq!(expiries(&db, &state), lazy);
        let txn = db.begin_read().unwrap();
        let sessions = txn.open_table(tables::SESSIONS).unwrap();
        let mut loaded = tables::session_record(&sessions, 9).unwrap().unwrap();
        state.view(&txn).apply(&mut loaded).unwrap();
        assert_eq!(loaded.expired_at, None);
    }
}
