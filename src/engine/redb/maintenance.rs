//! Operator work on the whole file: the integrity check, consistent backups,
//! and compaction by rewriting into a fresh file.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableHandle,
};

use crate::engine::redb::encoding::{decode, ExtraRowRecord, MessageRecord, RecordKey, SessionRecord};
use crate::engine::redb::journal::journal_path;
use crate::engine::redb::search;
use crate::engine::redb::storage::FileRole;
use crate::engine::redb::store::RedbConfig;
use crate::engine::redb::store::{guard_panics, open_error, RedbEngine};
use crate::engine::redb::tables::{self, index_keys};
use crate::error::{Error, Result};
use crate::files::{self, NewFile};
use crate::model::{CheckReport, CompactReport, Progress};

/// Caps the problems listed, so that a badly damaged file gives a readable report.
const MAX_PROBLEMS: usize = 100;

impl RedbEngine {
    pub(crate) fn check(&self, progress: Progress<'_>) -> Result<CheckReport> {
        let path = self.path().to_path_buf();
        let storage = self.examine(move |db| {
            guard_panics(&path, || match db.check_integrity() {
                Ok(true) => Ok(None),
                Ok(false) => Ok(Some(
                    "redb page checksums failed; redb rolled back to the last good commit".to_owned(),
                )),
                Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why))) => {
                    Ok(Some(format!("redb found the file damaged: {why}")))
                }
                Err(redb::DatabaseError::TransactionInProgress) => Err(Error::SnapshotOpen {
                    path: path.clone(),
                    operation: "check",
                }),
                Err(other) => Err(other.into()),
            })
        })?;
        let mut report = self.reading(|txn| check_model(txn, progress))?;
        if let Some(problem) = storage {
            report.problems.insert(0, problem);
        }
        Ok(report)
    }

    pub(crate) fn backup_to(&self, dest: &Path, progress: Progress<'_>) -> Result<()> {
        if dest.symlink_metadata().is_ok() {
            return Err(destination_exists(dest));
        }
        let permissions = files::permissions_of(self.path())?;
        self.reading(|txn| {
            verify(txn, self.path(), "backup", &mut |done, total| {
                progress(done, 2 * total)
            })?;
            let new = NewFile::create(dest, permissions)?;
            write_copy_to(txn, new.path(), &mut |done, total| {
                progress(total + done, 2 * total)
            })?;
            if new.place_new(dest)? {
                Ok(())
            } else {
                Err(destination_exists(dest))
            }
        })
    }

    pub(crate) fn compact(&self, progress: Progress<'_>) -> Result<CompactReport> {
        let path = self.path().to_path_buf();
        let options = self.options().clone();
        // The progress callback lives on this thread; the rewrite runs on the
        // writer's. Report from here around it.
        let before = file_size(&path)?;
        let permissions = files::permissions_of(&path)?;
        progress(0, 1);
        let after = self.maintain(move |db| {
            verify(&db.begin_read()?, &path, "compact", &mut |_, _| {})?;
            // The rewritten file holds the search index whole and tidy
            // (no removed message in any segment): its size does not
            // depend on how far the idle writer got.
            search::index_everything(db)?;
            let txn = db.begin_read()?;
            let fresh = NewFile::create(&path, permissions)?;
            write_copy_to(&txn, fresh.path(), &mut |_, _| {})?;
            drop(txn);
            let (new_db, file) = options.open_database(fresh.path())?;
            file.release().map_err(|e| Error::io("write", fresh.path(), e))?;
            fresh.replace(&path)?;
            let old = std::mem::replace(db, new_db);
            drop(old);
            wipe_journal(&options, &path)?;
            file_size(&path)
        })?;
        progress(1, 1);
        Ok(CompactReport { before, after })
    }
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io("read the size of", path, e))?
        .len())
}

/// Overwrites the journal beside `database` with zeros. Maintenance runs
/// after a checkpoint, when the database holds every record the journal
/// does; without this, erased content would stay in the journal's bytes.
fn wipe_journal(options: &RedbConfig, database: &Path) -> Result<()> {
    let path = journal_path(database);
    let file = options
        .redb
        .storage
        .open(&path, FileRole::Journal)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file.len().map_err(|e| Error::io("read the size of", &path, e))?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64);
        file.write(at, &zeros[..n as usize])
            .map_err(|e| Error::io("wipe", &path, e))?;
        at += n;
    }
    file.sync_data().map_err(|e| Error::io("sync", &path, e))
}

fn destination_exists(dest: &Path) -> Error {
    Error::invalid("backup destination", format!("{} exists already", dest.display()))
}

/// Refuses `operation` (a copy of the store at `path`) when the checks of
/// [`SessionStore::check`] find a problem in `txn`: a copy would carry the
/// damage on, under fresh checksums.
fn verify(txn: &ReadTransaction, path: &Path, operation: &'static str, progress: Progress<'_>) -> Result<()> {
    let report = check_model(txn, progress)?;
    if report.is_clean() {
        return Ok(());
    }
    Err(Error::Damaged {
        path: path.to_path_buf(),
        operation,
        problems: report.problems,
    })
}

/// Copies every table of `txn` into the new, empty store file `temp`.
fn write_copy_to(txn: &ReadTransaction, temp: &Path, progress: Progress<'_>) -> Result<()> {
    let db = Database::create(temp).map_err(|e| open_error(temp, e))?;
    let total = tables::count(txn, tables::SESSIONS)?
        + tables::count(txn, tables::MESSAGES)?
        + tables::count(txn, tables::MESSAGE_IDS)?
        + tables::count(txn, tables::EXTRA_ROWS)?;
    let mut copier = Copier {
        txn,
        db: &db,
        done: 0,
        total,
        progress,
    };
    copier.copy(tables::META)?;
    copier.copy(tables::SESSIONS)?;
    copier.copy(tables::MESSAGES)?;
    copier.copy(tables::MESSAGE_IDS)?;
    copier.copy(tables::USER_ACTIVE)?;
    copier.copy(tables::USER_EXPIRED)?;
    copier.copy(tables::ACTIVE_BY_UPDATED)?;
    copier.copy(tables::EXPIRED_BY_TIME)?;
    copier.copy(tables::EXTRA_ROWS)?;
    copier.copy(tables::EXTRA_ROWS_BY_SESSION)?;
    copier.copy(tables::OPAQUE)?;
    copier.copy(tables::EXPIRY_EVENTS)?;
    copier.copy(tables::IDEMPOTENCY_KEYS)?;
    copier.copy(tables::FORKS)?;
    copier.copy(tables::FORK_PARENTS)?;
    copier.copy(tables::USER_CONTEXTS)?;
    copier.copy(tables::SEARCH_PENDING)?;
    copier.copy(tables::SEARCH_USER_NUMBERS)?;
    copier.copy(tables::SEARCH_STATS)?;
    copier.copy(tables::SEARCH_SEGMENTS)?;
    copier.copy(tables::SEARCH_TERMS)?;
    copier.copy(tables::SEARCH_TOMBSTONES)?;
    drop(db);
    Ok(())
}

struct Copier<'a, 'p> {
    txn: &'a ReadTransaction,
    db: &'a Database,
    done: u64,
    total: u64,
    progress: Progress<'p>,
}

impl Copier<'_, '_> {
    fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        definition: TableDefinition<K, V>,
    ) -> Result<()> {
        // A table the file never got (the expiry events of a file written
        // before they existed): nothing to copy.
        let Some(source) = tables::open_if_present(self.txn, definition)? else {
            return Ok(());
        };
        let write = self.db.begin_write()?;
        {
            let mut target = write.open_table(definition)?;
            for entry in source.range::<K::SelfType<'_>>(..)? {
                let (key, value) = entry?;
                target.insert(key.value(), value.value())?;
                self.done += 1;
                if self.done % 4096 == 0 {
                    (self.progress)(self.done.min(self.total), self.total);
                }
            }
        }
        write.commit()?;
        (self.progress)(self.done.min(self.total), self.total);
        Ok(())
    }
}

/// Every model rule, checked on one snapshot.
fn check_model(txn: &ReadTransaction, progress: Progress<'_>) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let problem = |report: &mut CheckReport, text: String| {
        if report.problems.len() < MAX_PROBLEMS {
            report.problems.push(text);
        }
    };
    let sessions = txn.open_table(tables::SESSIONS)?;
    let messages = txn.open_table(tables::MESSAGES)?;
    let message_ids = txn.open_table(tables::MESSAGE_IDS)?;
    let meta = txn.open_table(tables::META)?;
    let next_id = meta
        .get(tables::META_NEXT_MESSAGE_ID)?
        .and_then(|g| <[u8; 8]>::try_from(g.value()).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let total = sessions.len()?;

    let mut user_active = BTreeSet::new();
    let mut user_expired = BTreeSet::new();
    let mut active_by_updated = BTreeSet::new();
    let mut expired_by_time = BTreeSet::new();
    let mut session_keys = HashSet::new();
    let mut counted_messages = 0u64;
    for entry in sessions.range::<u128>(..)? {
        let (key, value) = entry?;
        let id = key.value();
        session_keys.insert(id);
        report.sessions += 1;
        let record: SessionRecord = match decode(RecordKey::Session(id), value.value()) {
            Ok(record) => record,
            Err(e) => {
                problem(&mut report, e.to_string());
                continue;
            }
        };
        let keys = index_keys(id, &record);
        let (expired, updated, expired_at) = keys.parts();
        if expired {
            expired_by_time.insert((expired_at, id));
            if let Some(user) = &record.user_id {
                user_expired.insert((user.clone(), updated, id));
            }
        } else {
            active_by_updated.insert((updated, id));
            if let Some(user) = &record.user_id {
                user_active.insert((user.clone(), updated, id));
            }
        }
        let mut expected_seq = 0u64;
        for entry in messages.range((id, 0)..=(id, u64::MAX))? {
            let (key, value) = entry?;
            let seq = key.value().1;
            if seq != expected_seq {
                problem(
                    &mut report,
                    format!(
                        "session {}: seq {seq} where {expected_seq} was due",
                        uuid::Uuid::from_u128(id)
                    ),
                );
            }
            expected_seq = seq + 1;
            counted_messages += 1;
            match decode::<MessageRecord>(RecordKey::Message(id, seq), value.value()) {
                Ok(message) => {
                    if message.id >= next_id {
                        problem(
                            &mut report,
                            format!("message {} is not below the next id {next_id}", message.id),
                        );
                    }
                    match message_ids.get(message.id)? {
                        Some(target) if target.value() == (id, seq) => {}
                        _ => problem(
                            &mut report,
                            format!("message {} is not mapped to its place", message.id),
                        ),
                    }
                }
                Err(e) => problem(&mut report, e.to_string()),
            }
        }
        if expected_seq != record.message_count {
            problem(
                &mut report,
                format!(
                    "session {}: holds {expected_seq} messages but counts {}",
                    uuid::Uuid::from_u128(id),
                    record.message_count
                ),
            );
        }
        if report.sessions % 1024 == 0 {
            progress(report.sessions, total);
        }
    }
    report.messages = counted_messages;
    if messages.len()? != counted_messages {
        problem(
            &mut report,
            format!(
                "{} messages belong to no session",
                messages.len()? - counted_messages
            ),
        );
    }
    if message_ids.len()? != counted_messages {
        problem(
            &mut report,
            format!(
                "message_ids has {} entries for {counted_messages} messages",
                message_ids.len()?
            ),
        );
    }

    compare_index(
        txn,
        tables::USER_ACTIVE,
        &user_active,
        &mut report,
        |(u, t, id)| (u.to_owned(), t, id),
    )?;
    compare_index(
        txn,
        tables::USER_EXPIRED,
        &user_expired,
        &mut report,
        |(u, t, id)| (u.to_owned(), t, id),
    )?;
    compare_index(
        txn,
        tables::ACTIVE_BY_UPDATED,
        &active_by_updated,
        &mut report,
        |k| k,
    )?;
    compare_index(txn, tables::EXPIRED_BY_TIME, &expired_by_time, &mut report, |k| k)?;
    for text in crate::engine::redb::expiry::check_events(txn)? {
        problem(&mut report, text);
    }

    let extra_rows = txn.open_table(tables::EXTRA_ROWS)?;
    let mut linked = BTreeSet::new();
    for entry in extra_rows.range::<(&str, i64)>(..)? {
        let (key, value) = entry?;
        let (table, rowid) = key.value();
        match decode::<ExtraRowRecord>(RecordKey::ExtraRow(table, rowid), value.value()) {
            Ok(ExtraRowRecord {
                session: Some(session),
                ..
            }) => {
                if !session_keys.contains(&session) {
                    problem(
                        &mut report,
                        format!("extra row {table}/{rowid} belongs to a missing session"),
                    );
                }
                linked.insert((session, table.to_owned(), rowid));
            }
            Ok(_) => {}
            Err(e) => problem(&mut report, e.to_string()),
        }
    }
    compare_index(
        txn,
        tables::EXTRA_ROWS_BY_SESSION,
        &linked,
        &mut report,
        |(s, t, r)| (s, t.to_owned(), r),
    )?;
    let idempotency_keys = txn.open_table(tables::IDEMPOTENCY_KEYS)?;
    for entry in idempotency_keys.range::<(u128, &str)>(..)? {
        let (key, value) = entry?;
        let (session, name) = key.value();
        let record = RecordKey::IdempotencyKey(session, name);
        if let Err(e) = decode::<tables::IdempotencyRecord>(record, value.value()) {
            problem(&mut report, e.to_string());
        } else if !session_keys.contains(&session) {
            problem(&mut report, format!("{record} belongs to a missing session"));
        }
    }
    for text in check_forks(txn, &session_keys)? {
        problem(&mut report, text);
    }
    for text in crate::engine::redb::user_context::check(txn)? {
        problem(&mut report, text);
    }
    for text in crate::engine::redb::search::check(txn)? {
        problem(&mut report, text);
    }
    progress(total, total);
    Ok(report)
}

/// The fork index: each entry of `forks` joins two sessions that exist and
/// is mirrored, exactly, by `fork_parents`.
fn check_forks(txn: &ReadTransaction, sessions: &HashSet<u128>) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let forks = txn.open_table(tables::FORKS)?;
    let parents = txn.open_table(tables::FORK_PARENTS)?;
    let mut mirrored = 0u64;
    for entry in forks.range::<(u128, u128)>(..)? {
        let (parent, fork) = entry?.0.value();
        let name = |id| uuid::Uuid::from_u128(id);
        if !sessions.contains(&parent) || !sessions.contains(&fork) {
            problems.push(format!(
                "fork entry {} -> {} names a missing session",
                name(parent),
                name(fork)
            ));
        }
        match parents.get(fork)?.map(|g| g.value()) {
            Some(found) if found == parent => mirrored += 1,
            _ => problems.push(format!(
                "fork {} has no parent entry for {}",
                name(fork),
                name(parent)
            )),
        }
    }
    if parents.len()? != mirrored {
        problems.push(format!(
            "fork_parents has {} entries for {mirrored} forks",
            parents.len()?
        ));
    }
    Ok(problems)
}

/// Checks that index table `definition` holds exactly `expected`.
fn compare_index<K, T>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, ()>,
    expected: &BTreeSet<T>,
    report: &mut CheckReport,
    owned: impl for<'a> Fn(K::SelfType<'a>) -> T,
) -> Result<()>
where
    K: redb::Key + 'static,
    T: Ord + std::fmt::Debug,
{
    let table = txn.open_table(definition)?;
    let mut found = 0u64;
    let mut stray = 0u64;
    for entry in table.range::<K::SelfType<'_>>(..)? {
        let (key, _) = entry?;
        found += 1;
        if !expected.contains(&owned(key.value())) {
            stray += 1;
        }
    }
    let missing = expected.len() as u64 - (found - stray);
    if (stray > 0 || missing > 0) && report.problems.len() < MAX_PROBLEMS {
        report.problems.push(format!(
            "index {} differs from its table: {stray} stray entries, {missing} missing",
            definition.name()
        ));
    }
    Ok(())
}
