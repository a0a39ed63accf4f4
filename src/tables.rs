//! The redb tables, typed, and the only code that writes them.
//!
//! Every index entry is derived from a session record by [`index_keys`], and
//! every session write goes through [`WriteTables::put_session`] or
//! [`WriteTables::remove_session`], which remove the old record's entries
//! and add the new one's: that is what keeps each index equal to its table.

use std::ops::Bound;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};

use crate::encoding::{decode, encode, ExtraRowRecord, MessageRecord, SessionRecord};
use crate::error::{Error, Result};

/// Store-wide values: format version, next message id.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Session id -> [`SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
/// (session id, seq) -> [`MessageRecord`].
pub(crate) const MESSAGES: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("messages");
/// Global message id -> (session id, seq).
pub(crate) const MESSAGE_IDS: TableDefinition<u64, (u128, u64)> = TableDefinition::new("message_ids");
/// (user, updated_at, session) for active sessions of a user.
pub(crate) const USER_ACTIVE: TableDefinition<(&str, i64, u128), ()> =
    TableDefinition::new("user_active_sessions");
/// (user, updated_at, session) for expired sessions of a user.
pub(crate) const USER_EXPIRED: TableDefinition<(&str, i64, u128), ()> =
    TableDefinition::new("user_expired_sessions");
/// (updated_at, session) for every active session: expiry by age.
pub(crate) const ACTIVE_BY_UPDATED: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("active_by_updated");
/// (expired_at, session) for every expired session: purge by age.
pub(crate) const EXPIRED_BY_TIME: TableDefinition<(i64, u128), ()> = TableDefinition::new("expired_by_time");
/// (SQLite table, rowid) -> [`ExtraRowRecord`]: rows the store carries for
/// the converter.
pub(crate) const EXTRA_ROWS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("extra_rows");
/// (session, SQLite table, rowid) for extra rows that belong to a session,
/// so that deleting the session deletes them (SQLite's ON DELETE CASCADE).
pub(crate) const EXTRA_ROWS_BY_SESSION: TableDefinition<(u128, &str, i64), ()> =
    TableDefinition::new("extra_rows_by_session");
/// Opaque named blobs the converter keeps (the SQLite schema, ...).
pub(crate) const OPAQUE: TableDefinition<&str, &[u8]> = TableDefinition::new("opaque");

pub(crate) const META_FORMAT_VERSION: &str = "format_version";
pub(crate) const META_NEXT_MESSAGE_ID: &str = "next_message_id";

/// Index entries a session record implies.
pub(crate) struct IndexKeys<'a> {
    user: Option<&'a str>,
    expired: bool,
    updated: i64,
    expired_at: i64,
    id: u128,
}

impl IndexKeys<'_> {
    /// (expired, updated_at, expired_at) for the checker.
    pub fn parts(&self) -> (bool, i64, i64) {
        (self.expired, self.updated, self.expired_at)
    }
}

pub(crate) fn index_keys(id: u128, record: &SessionRecord) -> IndexKeys<'_> {
    IndexKeys {
        user: record.user_id.as_deref(),
        expired: record.expired_at.is_some(),
        updated: record.updated_at.micros(),
        expired_at: record.expired_at.as_ref().map_or(0, |t| t.micros()),
        id,
    }
}

/// Every table, opened for writing in one transaction.
pub(crate) struct WriteTables<'txn> {
    meta: Table<'txn, &'static str, &'static [u8]>,
    pub sessions: Table<'txn, u128, &'static [u8]>,
    pub messages: Table<'txn, (u128, u64), &'static [u8]>,
    pub message_ids: Table<'txn, u64, (u128, u64)>,
    pub user_active: Table<'txn, (&'static str, i64, u128), ()>,
    pub user_expired: Table<'txn, (&'static str, i64, u128), ()>,
    pub active_by_updated: Table<'txn, (i64, u128), ()>,
    pub expired_by_time: Table<'txn, (i64, u128), ()>,
    pub extra_rows: Table<'txn, (&'static str, i64), &'static [u8]>,
    pub extra_by_session: Table<'txn, (u128, &'static str, i64), ()>,
    pub opaque: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> WriteTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(WriteTables {
            meta: txn.open_table(META)?,
            sessions: txn.open_table(SESSIONS)?,
            messages: txn.open_table(MESSAGES)?,
            message_ids: txn.open_table(MESSAGE_IDS)?,
            user_active: txn.open_table(USER_ACTIVE)?,
            user_expired: txn.open_table(USER_EXPIRED)?,
            active_by_updated: txn.open_table(ACTIVE_BY_UPDATED)?,
            expired_by_time: txn.open_table(EXPIRED_BY_TIME)?,
            extra_rows: txn.open_table(EXTRA_ROWS)?,
            extra_by_session: txn.open_table(EXTRA_ROWS_BY_SESSION)?,
            opaque: txn.open_table(OPAQUE)?,
        })
    }

    pub fn session(&self, id: u128) -> Result<Option<SessionRecord>> {
        session_record(&self.sessions, id)
    }

    fn add_index(&mut self, keys: &IndexKeys<'_>) -> Result<()> {
        if keys.expired {
            self.expired_by_time.insert((keys.expired_at, keys.id), ())?;
            if let Some(user) = keys.user {
                self.user_expired.insert((user, keys.updated, keys.id), ())?;
            }
        } else {
            self.active_by_updated.insert((keys.updated, keys.id), ())?;
            if let Some(user) = keys.user {
                self.user_active.insert((user, keys.updated, keys.id), ())?;
            }
        }
        Ok(())
    }

    fn remove_index(&mut self, keys: &IndexKeys<'_>) -> Result<()> {
        if keys.expired {
            self.expired_by_time.remove((keys.expired_at, keys.id))?;
            if let Some(user) = keys.user {
                self.user_expired.remove((user, keys.updated, keys.id))?;
            }
        } else {
            self.active_by_updated.remove((keys.updated, keys.id))?;
            if let Some(user) = keys.user {
                self.user_active.remove((user, keys.updated, keys.id))?;
            }
        }
        Ok(())
    }

    /// Writes a session record, replacing `old` (the record it had, if any)
    /// and its index entries.
    pub fn put_session(&mut self, id: u128, old: Option<&SessionRecord>, new: &SessionRecord) -> Result<()> {
        if let Some(old) = old {
            self.remove_index(&index_keys(id, old))?;
        }
        self.add_index(&index_keys(id, new))?;
        self.sessions.insert(id, encode("sessions", new)?.as_slice())?;
        Ok(())
    }

    /// The id the next message gets.
    pub fn next_message_id(&self) -> Result<u64> {
        next_message_id(&self.meta)
    }

    pub fn set_next_message_id(&mut self, next: u64) -> Result<()> {
        self.meta
            .insert(META_NEXT_MESSAGE_ID, next.to_le_bytes().as_slice())?;
        Ok(())
    }

    pub fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key, value)?;
        Ok(())
    }

    /// Stores a message at `seq` and maps its global id to it.
    pub fn put_message(&mut self, session: u128, seq: u64, record: &MessageRecord) -> Result<()> {
        self.messages
            .insert((session, seq), encode("messages", record)?.as_slice())?;
        self.message_ids.insert(record.id, (session, seq))?;
        Ok(())
    }

    /// Removes the message at `seq`; returns it.
    pub fn remove_message(&mut self, session: u128, seq: u64) -> Result<Option<MessageRecord>> {
        let Some(bytes) = self.messages.remove((session, seq))? else {
            return Ok(None);
        };
        let record: MessageRecord = decode("messages", bytes.value())?;
        drop(bytes);
        self.message_ids.remove(record.id)?;
        Ok(Some(record))
    }

    /// Removes a session, its index entries, its messages and the extra rows
    /// that belong to it. Returns how many messages it held.
    pub fn remove_session(&mut self, id: u128, record: &SessionRecord) -> Result<u64> {
        self.remove_index(&index_keys(id, record))?;
        self.sessions.remove(id)?;
        let mut ids = Vec::new();
        for entry in self
            .messages
            .extract_from_if((id, 0)..=(id, u64::MAX), |_, _| true)?
        {
            let (_, value) = entry?;
            let message: MessageRecord = decode("messages", value.value())?;
            ids.push(message.id);
        }
        for message_id in &ids {
            self.message_ids.remove(message_id)?;
        }
        let mut rows = Vec::new();
        let end = match id.checked_add(1) {
            Some(next) => Bound::Excluded((next, "", i64::MIN)),
            None => Bound::Unbounded,
        };
        let rows_of_session = self
            .extra_by_session
            .extract_from_if((Bound::Included((id, "", i64::MIN)), end), |_, _| true)?;
        for entry in rows_of_session {
            let (key, _) = entry?;
            let (_, table, rowid) = key.value();
            rows.push((table.to_owned(), rowid));
        }
        for (table, rowid) in &rows {
            self.extra_rows.remove((table.as_str(), *rowid))?;
        }
        Ok(ids.len() as u64)
    }

    /// Stores a row of a SQLite table the store does not interpret.
    pub fn put_extra_row(&mut self, table: &str, rowid: i64, record: &ExtraRowRecord) -> Result<()> {
        self.extra_rows
            .insert((table, rowid), encode("extra_rows", record)?.as_slice())?;
        if let Some(session) = record.session {
            self.extra_by_session.insert((session, table, rowid), ())?;
        }
        Ok(())
    }
}

/// The id the next message gets, from the `meta` table.
pub(crate) fn next_message_id(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    let guard = meta.get(META_NEXT_MESSAGE_ID)?;
    let bytes = guard.as_ref().map(|g| g.value()).unwrap_or(&[]);
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupt_record("meta", "next_message_id is not 8 bytes"))?;
    Ok(u64::from_le_bytes(array))
}

/// Checks that every table of the store present in the file has the key
/// and value types this build uses (a missing one is created on first write).
pub(crate) fn check_layout(txn: &ReadTransaction) -> std::result::Result<(), redb::TableError> {
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        txn: &ReadTransaction,
        definition: TableDefinition<K, V>,
    ) -> std::result::Result<(), redb::TableError> {
        match txn.open_table(definition) {
            Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
    table(txn, META)?;
    table(txn, SESSIONS)?;
    table(txn, MESSAGES)?;
    table(txn, MESSAGE_IDS)?;
    table(txn, USER_ACTIVE)?;
    table(txn, USER_EXPIRED)?;
    table(txn, ACTIVE_BY_UPDATED)?;
    table(txn, EXPIRED_BY_TIME)?;
    table(txn, EXTRA_ROWS)?;
    table(txn, EXTRA_ROWS_BY_SESSION)?;
    table(txn, OPAQUE)
}

/// Reads and decodes a session record.
pub(crate) fn session_record(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: u128,
) -> Result<Option<SessionRecord>> {
    match table.get(id)? {
        Some(bytes) => Ok(Some(decode("sessions", bytes.value())?)),
        None => Ok(None),
    }
}

/// Reads and decodes one message record.
pub(crate) fn message_record(
    table: &impl ReadableTable<(u128, u64), &'static [u8]>,
    session: u128,
    seq: u64,
) -> Result<Option<MessageRecord>> {
    match table.get((session, seq))? {
        Some(bytes) => Ok(Some(decode("messages", bytes.value())?)),
        None => Ok(None),
    }
}

/// Number of entries of a table in a read transaction.
pub(crate) fn count<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64> {
    Ok(txn.open_table(table)?.len()?)
}
