//! Whole-store transfer: a consistent [`Snapshot`] to read everything from,
//! and an [`Importer`] that loads sessions and messages with their ids,
//! timestamps and extra data as they are (what the SQLite converter and
//! backups need).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};
use uuid::Uuid;

use crate::engine::redb::encoding::{
    decode, decode_bytes, Decoder, Encoder, ExtraRowRecord, MessageRecord, RecordKey, SessionRecord, Unsealed,
};
use crate::engine::redb::expiry::{self, ExpiryState};
use crate::engine::redb::store::{guard_panics, RedbEngine};
use crate::engine::redb::tables;
use crate::engine::redb::writer;
use crate::engine::{ImportSink, Rows, SnapshotSource};
use crate::error::{Error, Result};
use crate::model::ExtraRow;
use crate::model::{Message, SessionInfo};
use crate::rules;

/// A [`Snapshot`](crate::Snapshot) of a redb store: one read transaction.
pub(crate) struct RedbSnapshot {
    txn: ReadTransaction,
    /// The lazy expiry rule, applied to the sessions read.
    expiry: Arc<ExpiryState>,
    /// The store file, named by the errors of damaged pages.
    path: PathBuf,
}

impl RedbEngine {
    pub(crate) fn snapshot(&self) -> Result<RedbSnapshot> {
        Ok(RedbSnapshot {
            txn: self.read()?,
            expiry: self.expiry_state(),
            path: self.path().to_path_buf(),
        })
    }

    pub(crate) fn importer(&self) -> RedbImporter {
        RedbImporter {
            store: self.clone(),
            pending: Batch::default(),
            pending_bytes: 0,
            feeder: None,
            index_every: PENDING_IDS,
        }
    }
}

impl RedbSnapshot {
    /// `entries` with the storage engine's panics on damaged pages turned
    /// into an error, after which it ends (redb 4.6 panics on some).
    fn guarded<'a, T: 'a>(
        &'a self,
        mut entries: impl Iterator<Item = Result<T>> + 'a,
    ) -> impl Iterator<Item = Result<T>> + 'a {
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let mut returned = false;
            let next = guard_panics(&self.path, || {
                let next = entries.next().transpose();
                returned = true;
                next
            });
            failed = !returned;
            next.transpose()
        })
    }
}

impl SnapshotSource for RedbSnapshot {
    fn sessions(&self) -> Result<Rows<'_, SessionInfo>> {
        let table = self.txn.open_table(tables::SESSIONS)?;
        let range = guard_panics(&self.path, || Ok(table.range::<u128>(..)?))?;
        let mut expiry = self.expiry.view(&self.txn);
        Ok(Box::new(self.guarded(range.map(move |entry| {
            let (key, value) = entry?;
            let id = key.value();
            let mut record: SessionRecord = decode(RecordKey::Session(id), value.value())?;
            expiry.apply(&mut record)?;
            Ok(record.into_info(Uuid::from_u128(id)))
        }))))
    }

    fn messages(&self, session: Uuid) -> Result<Rows<'_, Message>> {
        let table = self.txn.open_table(tables::MESSAGES)?;
        let session = session.as_u128();
        let range = guard_panics(
            &self.path,
            || Ok(table.range((session, 0)..=(session, u64::MAX))?),
        )?;
        let mut decoder = Decoder::default();
        Ok(Box::new(self.guarded(range.map(move |entry| {
            let (key, value) = entry?;
            let seq = key.value().1;
            let record: MessageRecord = decoder.decode(RecordKey::Message(session, seq), value.value())?;
            Ok(record.into_message(seq))
        }))))
    }

    fn messages_by_id(&self) -> Result<Rows<'_, (Uuid, Message)>> {
        let ids = self.txn.open_table(tables::MESSAGE_IDS)?;
        let messages = self.txn.open_table(tables::MESSAGES)?;
        let range = guard_panics(&self.path, || Ok(ids.range::<u64>(..)?))?;
        Ok(Box::new(self.guarded(range.map(move |entry| {
            let (id, place) = entry?;
            let (session, seq) = place.value();
            let record = tables::message_record(&messages, session, seq)?.ok_or_else(|| {
                Error::corrupt_record("message_ids", format!("message {} has no record", id.value()))
            })?;
            Ok((Uuid::from_u128(session), record.into_message(seq)))
        }))))
    }

    fn extra_rows(&self) -> Result<Rows<'_, ExtraRow>> {
        let table = self.txn.open_table(tables::EXTRA_ROWS)?;
        let range = guard_panics(&self.path, || Ok(table.range::<(&str, i64)>(..)?))?;
        Ok(Box::new(self.guarded(range.map(|entry| {
            let (key, value) = entry?;
            let (table, rowid) = key.value();
            let record: ExtraRowRecord = decode(RecordKey::ExtraRow(table, rowid), value.value())?;
            Ok(ExtraRow {
                table: table.to_owned(),
                rowid,
                session: record.session.map(Uuid::from_u128),
                values: record.values,
            })
        }))))
    }

    fn opaque(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let table = self.txn.open_table(tables::OPAQUE)?;
        match table.get(key)? {
            Some(value) => Ok(Some(
                decode_bytes(RecordKey::Opaque(key), value.value())?.to_vec(),
            )),
            None => Ok(None),
        }
    }

    fn next_message_id(&self) -> Result<u64> {
        let table = self.txn.open_table(tables::META)?;
        let guard = table.get(tables::META_NEXT_MESSAGE_ID)?;
        let bytes = guard.as_ref().map(|g| g.value()).unwrap_or(&[]);
        let array: [u8; 8] = bytes
            .try_into()
            .map_err(|_| Error::corrupt_record("meta", "next_message_id is not 8 bytes"))?;
        Ok(u64::from_le_bytes(array))
    }

    fn session_count(&self) -> Result<u64> {
        tables::count(&self.txn, tables::SESSIONS)
    }

    fn message_count(&self) -> Result<u64> {
        tables::count(&self.txn, tables::MESSAGE_IDS)
    }

    fn extra_row_count(&self) -> Result<u64> {
        tables::count(&self.txn, tables::EXTRA_ROWS)
    }
}

/// A message's id and its encoded record.
type EncodedMessage = (u64, Unsealed);

/// What one commit loads: messages as given (`M` = [`Message`]), then, on
/// the feeder's thread, encoded (`M` = [`EncodedMessage`]).
struct Batch<M> {
    sessions: Vec<SessionInfo>,
    /// Messages by session, in seq order.
    messages: Vec<(Uuid, Vec<M>)>,
    extra_rows: Vec<ExtraRow>,
    opaque: Vec<(String, Vec<u8>)>,
    next_message_id: Option<u64>,
}

impl<M> Default for Batch<M> {
    fn default() -> Self {
        Batch {
            sessions: Vec::new(),
            messages: Vec::new(),
            extra_rows: Vec::new(),
            opaque: Vec::new(),
            next_message_id: None,
        }
    }
}

impl Batch<Message> {
    /// The batch with its messages encoded (on the feeder's encoding
    /// thread: the caller's only reads and checks).
    fn encode(self) -> Result<Batch<EncodedMessage>> {
        let mut encoder = Encoder::default();
        let mut messages = Vec::with_capacity(self.messages.len());
        for (session, list) in self.messages {
            let mut encoded = Vec::with_capacity(list.len());
            for message in list {
                let id = message.id;
                encoded.push((
                    id,
                    encoder.encode("messages", &MessageRecord::from_message(message))?,
                ));
            }
            messages.push((session, encoded));
        }
        Ok(Batch {
            sessions: self.sessions,
            messages,
            extra_rows: self.extra_rows,
            opaque: self.opaque,
            next_message_id: self.next_message_id,
        })
    }
}

/// Flush after this many bytes of pending data. At most four batches
/// exist at once (one being filled, one queued, one being encoded, one
/// being written).
const FLUSH_BYTES: usize = 16 << 20;

/// An [`Importer`](crate::Importer) into a redb store.
pub(crate) struct RedbImporter {
    store: RedbEngine,
    pending: Batch<Message>,
    pending_bytes: usize,
    feeder: Option<Feeder>,
    /// How many `message_ids` entries wait before they are indexed.
    index_every: usize,
}

/// The threads that take full batches from the caller, so that it fills
/// the next batch meanwhile: one encodes each batch, the other writes the
/// batch encoded before (two stages, so that two cores share the work).
struct Feeder {
    batches: std::sync::mpsc::SyncSender<Batch<Message>>,
    encoder: std::thread::JoinHandle<()>,
    writer: std::thread::JoinHandle<Result<()>>,
}

impl Feeder {
    fn start(store: RedbEngine, index_every: usize) -> Result<Self> {
        let (batches, to_encode) = std::sync::mpsc::sync_channel::<Batch<Message>>(1);
        // Handed over, not queued (see FLUSH_BYTES).
        let (encoded, to_write) = std::sync::mpsc::sync_channel::<Result<Batch<EncodedMessage>>>(0);
        let start_error = |e| Error::io("start the importer threads for", store.path(), e);
        let writer = std::thread::Builder::new()
            .name("sessionstore-importer".into())
            .spawn({
                let store = store.clone();
                move || feed(&store, to_write, index_every)
            })
            .map_err(start_error)?;
        let encoder = std::thread::Builder::new()
            .name("sessionstore-encoder".into())
            .spawn(move || {
                for batch in to_encode {
                    let failed = {
                        let batch = batch.encode();
                        let failed = batch.is_err();
                        // The writer stopped at an error: it reports it.
                        encoded.send(batch).is_err() || failed
                    };
                    if failed {
                        return;
                    }
                }
            })
            .map_err(start_error)?;
        Ok(Feeder {
            batches,
            encoder,
            writer,
        })
    }

    /// Waits for every batch sent to be written; the first error if any.
    fn stop(self) -> Result<()> {
        drop(self.batches);
        let encoded = self.encoder.join();
        let written = self.writer.join().unwrap_or(Err(Error::WriterStopped));
        written.and(encoded.map_err(|_| Error::WriterStopped))
    }
}

/// Writes each batch received, then the `message_ids` entries still
/// pending; after a refused batch, only those entries (so that every
/// message committed is indexed), and the batch's error.
fn feed(
    store: &RedbEngine,
    receiver: std::sync::mpsc::Receiver<Result<Batch<EncodedMessage>>>,
    index_every: usize,
) -> Result<()> {
    let mut ids = PendingIds::default();
    for batch in receiver {
        let (written, waiting) = match batch {
            Ok(batch) => {
                let (back, written, waiting) = store.maintain_importing(move |db, unindexed| {
                    let written = write_unjournaled(db, batch, &mut ids, unindexed);
                    Ok((ids, written, unindexed.len()))
                })?;
                ids = back;
                (written, waiting)
            }
            Err(error) => (Err(error), 0),
        };
        // Maintenance adds the entries waiting before it runs.
        if written.is_err() || waiting >= index_every {
            ids = store.maintain(move |_| {
                ids.clear();
                Ok(ids)
            })?;
        }
        written?;
    }
    store.maintain(|_| Ok(()))
}

/// The ids of the messages written but not yet indexed, and of the batch
/// being checked: an id loaded twice is refused. Their `message_ids`
/// entries wait in the writer ([`writer::Unindexed`]), added to the table
/// in id order, [`PENDING_IDS`] at a time (the importer's `index_every`),
/// or before any durable commit. Ids of an import arrive in session order,
/// scattered over the id space: inserted batch by batch they would rewrite
/// most of the table's pages each time.
type PendingIds = HashSet<u64>;

/// Entries kept before they are indexed: 32 MiB of entries plus the set of
/// their ids.
const PENDING_IDS: usize = 1 << 20;

/// Writes one batch in its own redb transaction, neither synced nor
/// journaled; a refused batch writes nothing.
fn write_unjournaled(
    db: &mut redb::Database,
    batch: Batch<EncodedMessage>,
    ids: &mut PendingIds,
    unindexed: &mut writer::Unindexed,
) -> Result<()> {
    let before = unindexed.len();
    let written = unjournaled(db, |tables| apply(tables, batch, ids, unindexed));
    if written.is_err() {
        // Nothing of the batch was committed: none of its entries either.
        unindexed.truncate(before);
    }
    written
}

/// Runs `write` in a redb transaction of its own, neither synced nor
/// journaled, and commits it unless `write` fails.
fn unjournaled(
    db: &mut redb::Database,
    write: impl FnOnce(&mut tables::WriteTables<'_>) -> Result<()>,
) -> Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::None)
        .map_err(crate::engine::redb::storage_error)?;
    {
        let mut tables = tables::WriteTables::open_unlogged(&txn);
        write(&mut tables)?;
    }
    txn.commit()?;
    Ok(())
}

/// Makes every commit so far durable.
fn sync(db: &mut redb::Database) -> Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(crate::engine::redb::storage_error)?;
    txn.commit()?;
    Ok(())
}

impl ImportSink for RedbImporter {
    fn add_session(&mut self, session: SessionInfo) -> Result<()> {
        self.pending_bytes += 256;
        self.pending.sessions.push(session);
        self.flush_if_full()
    }

    fn add_messages(&mut self, session: Uuid, mut messages: Vec<Message>) -> Result<()> {
        rules::import::order_for_seqs(&mut messages);
        self.pending_bytes += messages.iter().map(message_bytes).sum::<usize>();
        self.pending.messages.push((session, messages));
        self.flush_if_full()
    }

    fn add_extra_row(&mut self, row: ExtraRow) -> Result<()> {
        self.pending_bytes += 64 + row.values.len() * 16;
        self.pending.extra_rows.push(row);
        self.flush_if_full()
    }

    fn set_opaque(&mut self, key: &str, value: Vec<u8>) -> Result<()> {
        self.pending_bytes += value.len();
        self.pending.opaque.push((key.to_owned(), value));
        self.flush_if_full()
    }

    fn raise_next_message_id(&mut self, next: u64) {
        let current = self.pending.next_message_id.unwrap_or(0);
        self.pending.next_message_id = Some(current.max(next));
    }

    /// Commits what is pending, durably, and ends the import. Returns the
    /// first error of any batch.
    fn finish(mut self: Box<Self>) -> Result<()> {
        self.flush()?;
        if let Some(feeder) = self.feeder.take() {
            feeder.stop()?;
        }
        self.store.maintain(sync)?;
        // The messages loaded wait for the search index.
        let txn = self.store.read()?;
        self.store.search_indexer().recount(&txn)
    }
}

impl RedbImporter {
    fn flush_if_full(&mut self) -> Result<()> {
        if self.pending_bytes >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the pending batch to the feeder; an error of an earlier batch
    /// comes back here.
    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let feeder = match self.feeder.take() {
            Some(feeder) => feeder,
            None => Feeder::start(self.store.clone(), self.index_every)?,
        };
        match feeder.batches.send(batch) {
            Ok(()) => {
                self.feeder = Some(feeder);
                Ok(())
            }
            // The feeder stopped at an error: that error.
            Err(_) => feeder.stop().and(Err(Error::WriterStopped)),
        }
    }
}

/// What a message holds, roughly, for the batch's accounting.
fn message_bytes(message: &Message) -> usize {
    let json = |j: &Option<crate::JsonText>| j.as_ref().map_or(0, |j| j.as_str().len());
    64 + message.content.len() + json(&message.query_plan) + json(&message.candidate_set)
}

fn apply(
    tables: &mut tables::WriteTables<'_>,
    batch: Batch<EncodedMessage>,
    ids: &mut PendingIds,
    unindexed: &mut writer::Unindexed,
) -> Result<()> {
    // Check everything first: a refusal must leave the store untouched.
    // The sessions of this batch, each with the count of the messages it
    // gets in the batch: a session of this batch is written once.
    let mut new_counts: HashMap<u128, u64> = HashMap::with_capacity(batch.sessions.len());
    for session in &batch.sessions {
        let key = session.session_id.as_u128();
        if tables.session(key)?.is_some() || new_counts.insert(key, 0).is_some() {
            return Err(Error::invalid(
                "session_id",
                format!("session {} is loaded twice", session.session_id),
            ));
        }
    }
    // Before the first entries are indexed, the table holds only what the
    // store held before the import: usually nothing to look up.
    let indexed = !tables.message_ids.table()?.is_empty()?;
    for (session, messages) in &batch.messages {
        let key = session.as_u128();
        if !new_counts.contains_key(&key) && tables.session(key)?.is_none() {
            return Err(Error::SessionNotFound(*session));
        }
        for &(id, _) in messages {
            if !ids.insert(id) || (indexed && tables.message_ids.table()?.get(id)?.is_some()) {
                return Err(Error::invalid(
                    "message id",
                    format!("message {id} is loaded twice"),
                ));
            }
        }
    }
    for row in &batch.extra_rows {
        if let Some(session) = row.session {
            let key = session.as_u128();
            if !new_counts.contains_key(&key) && tables.session(key)?.is_none() {
                return Err(Error::SessionNotFound(session));
            }
        }
    }
    let mut next_id = tables.next_message_id()?;
    let users: HashMap<u128, Option<&str>> = batch
        .sessions
        .iter()
        .map(|s| (s.session_id.as_u128(), s.user_id.as_deref()))
        .collect();
    for (session, messages) in batch.messages {
        let key = session.as_u128();
        let (mut seq, old) = match new_counts.get(&key) {
            Some(&count) => (count, None),
            None => {
                let old = tables.session(key)?.ok_or(Error::SessionNotFound(session))?;
                (old.message_count, Some(old))
            }
        };
        let user = match &old {
            Some(old) => old.user_id.as_deref(),
            None => users.get(&key).copied().flatten(),
        };
        for (id, record) in messages {
            next_id = next_id.max(id.saturating_add(1));
            tables.put_encoded_message(key, seq, user, record)?;
            unindexed.push((id, (key, seq)));
            seq += 1;
        }
        match old {
            Some(old) => {
                let mut new = old.clone();
                new.expired_at = expiry::expired_at(tables.expiry_events.table()?, &old)?;
                new.message_count = seq;
                tables.put_session(key, Some(&old), new)?;
            }
            None => {
                new_counts.insert(key, seq);
            }
        }
    }
    for session in &batch.sessions {
        let key = session.session_id.as_u128();
        let mut record = SessionRecord::from_info(session);
        record.message_count = new_counts.get(&key).copied().unwrap_or(0);
        tables.put_session(key, None, record)?;
    }
    for row in batch.extra_rows {
        let record = ExtraRowRecord {
            session: row.session.map(|s| s.as_u128()),
            values: row.values,
        };
        tables.put_extra_row(&row.table, row.rowid, &record)?;
    }
    for (key, value) in batch.opaque {
        let value = Unsealed::bytes(&value).seal(RecordKey::Opaque(&key));
        tables.opaque.insert(key.as_str(), value.as_slice())?;
    }
    if let Some(next) = batch.next_message_id {
        next_id = next_id.max(next);
    }
    tables.set_next_message_id(next_id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::redb::RedbOptions;
    use crate::model::Role;
    use crate::{NewMessage, SessionStore, StoreOptions, Timestamp, TimestampForm};

    fn session(id: Uuid) -> SessionInfo {
        let at = Timestamp::from_micros(1_700_000_000_000_000, TimestampForm::Utc);
        SessionInfo {
            session_id: id,
            user_id: Some("ana".into()),
            created_at: at.clone(),
            updated_at: at,
            expired_at: None,
            context: None,
            metadata: None,
            message_count: 0,
            extra: Default::default(),
        }
    }

    fn message(id: u64) -> Message {
        Message {
            id,
            seq: 0,
            role: Role::User,
            content: format!("message {id}"),
            query_plan: None,
            candidate_set: None,
            timestamp: Timestamp::from_micros(1_700_000_000_000_000 + id as i64, TimestampForm::Naive),
            extra: Default::default(),
            tokens: None,
        }
    }

    fn store() -> (tempfile::TempDir, SessionStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
        (dir, store)
    }

    /// An importer that indexes message ids every `index_every` entries.
    fn importer(store: &SessionStore, index_every: usize) -> RedbImporter {
        RedbImporter {
            index_every,
            ..store.redb().importer()
        }
    }

    fn assert_clean(store: &SessionStore) {
        let report = store.check(&mut |_, _| {}).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    }

    /// Ids scattered over batches, indexed in runs of three: every message
    /// is found by its id, and the store checks clean.
    #[test]
    fn ids_indexed_in_sorted_runs_find_every_message() {
        let (_dir, store) = store();
        let mut importer = importer(&store, 3);
        let sessions = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
        let ids: [&[u64]; 3] = [&[9, 1, 5], &[8, 2], &[7, 3, 6, 4]];
        for (session, ids) in sessions.iter().zip(ids) {
            importer.add_session(self::session(*session)).unwrap();
            importer
                .add_messages(*session, ids.iter().map(|&id| message(id)).collect())
                .unwrap();
            importer.flush().unwrap();
        }
        Box::new(importer).finish().unwrap();
        for (session, ids) in sessions.iter().zip(ids) {
            for &id in ids {
                let (found, message) = store.get_message(id).unwrap().unwrap();
                assert_eq!((found, message.content), (*session, format!("message {id}")));
            }
        }
        assert_eq!(store.snapshot().unwrap().message_count().unwrap(), 9);
        assert_clean(&store);
        // The next id given is above every id loaded.
        let id = store.create_session(None).unwrap();
        assert_eq!(store.add_message(id, NewMessage::user("next")).unwrap(), 10);
    }

    /// An id loaded twice is refused whether its first copy waits to be
    /// indexed, is indexed already, or was in the store before; what was
    /// committed before the refusal is indexed and consistent.
    #[test]
    fn a_duplicate_id_is_refused_pending_indexed_or_older() {
        let (_dir, store) = store();
        let existing = store.create_session(None).unwrap();
        let older = store.add_message(existing, NewMessage::user("before")).unwrap();
        for (index_every, duplicate) in [(100, 5), (1, 5), (100, older)] {
            let (_dir, store) = if duplicate == older {
                (tempfile::tempdir().unwrap(), store.clone())
            } else {
                self::store()
            };
            let mut importer = importer(&store, index_every);
            let first = Uuid::new_v4();
            importer.add_session(session(first)).unwrap();
            importer
                .add_messages(first, vec![message(5), message(6)])
                .unwrap();
            importer.flush().unwrap();
            let second = Uuid::new_v4();
            importer.add_session(session(second)).unwrap();
            importer.add_messages(second, vec![message(duplicate)]).unwrap();
            let refused = importer.flush().and_then(|()| Box::new(importer).finish());
            let message = refused.unwrap_err().to_string();
            assert!(
                message.contains(&format!("message {duplicate} is loaded twice")),
                "{message}"
            );
            assert_eq!(store.get_message(5).unwrap().unwrap().0, first);
            assert!(store.get_session(second).unwrap().is_none());
            assert_clean(&store);
        }
    }

    /// An importer holding one session with messages 1 and 2, and that
    /// batch as its thread writes it: committed neither synced nor
    /// journaled, the ids' entries waiting.
    fn one_batch_written(store: &SessionStore) -> Uuid {
        let mut importer = importer(store, 1000);
        let imported = Uuid::from_u128(1);
        importer.add_session(session(imported)).unwrap();
        importer
            .add_messages(imported, vec![message(1), message(2)])
            .unwrap();
        let batch = std::mem::take(&mut importer.pending).encode().unwrap();
        let mut ids = PendingIds::default();
        store
            .redb()
            .maintain_importing(move |db, unindexed| write_unjournaled(db, batch, &mut ids, unindexed))
            .unwrap();
        assert!(store.get_message(1).unwrap().is_none(), "not indexed yet");
        imported
    }

    /// Writes beside an import make checkpoints, which make what the import
    /// wrote durable: each adds the entries of the ids first, so that a
    /// crash then leaves a store that checks clean.
    #[test]
    fn a_checkpoint_during_an_import_indexes_what_it_makes_durable() {
        let (_dir, store) = store();
        let imported = one_batch_written(&store);
        let live = store.create_session(Some("live")).unwrap();
        store
            .add_message(live, NewMessage::user("beside the import"))
            .unwrap();
        // A checkpoint (maintenance starts with one), then a crash.
        store.redb().maintain(|_| Ok(())).unwrap();
        let (_crashed, reopened) = store.reopened_after_a_crash();
        assert_clean(&reopened);
        assert_eq!(reopened.get_message(2).unwrap().unwrap().0, imported);
        assert_eq!(reopened.get_session(live).unwrap().unwrap().messages.len(), 1);
    }

    /// A write to a session an import just loaded, before the import's
    /// batch is durable, commits durably instead of journaling a record
    /// that a crash would replay over a state without that batch.
    #[test]
    fn a_write_over_an_import_batch_not_yet_durable_survives_a_crash_whole() {
        let (_dir, store) = store();
        let imported = one_batch_written(&store);
        store
            .add_message(imported, NewMessage::user("after the import"))
            .unwrap();
        let (_crashed, reopened) = store.reopened_after_a_crash();
        assert_clean(&reopened);
        let session = reopened.get_session(imported).unwrap().unwrap();
        let contents: Vec<&str> = session.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["message 1", "message 2", "after the import"]);
    }

    /// A write too big for the journal is committed durably at once: that
    /// commit too adds the entries first.
    #[test]
    fn a_write_too_big_for_the_journal_during_an_import_indexes_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let options = StoreOptions {
            redb: RedbOptions {
                max_journal_bytes: RedbOptions::MIN_JOURNAL_BYTES,
                ..RedbOptions::default()
            },
            ..StoreOptions::default()
        };
        let store = SessionStore::open_with(&path, options).unwrap();
        let imported = one_batch_written(&store);
        let live = store.create_session(Some("live")).unwrap();
        // About 96 KB that compression cannot shrink below the journal's
        // 64 KiB.
        let big: String = (0..3_000).map(|_| Uuid::new_v4().simple().to_string()).collect();
        store.add_message(live, NewMessage::user(big)).unwrap();
        let (_crashed, reopened) = store.reopened_after_a_crash();
        assert_clean(&reopened);
        assert_eq!(reopened.get_message(2).unwrap().unwrap().0, imported);
    }

    /// Maintenance during an import (compact copies the store) first adds
    /// the entries the import left waiting.
    #[test]
    fn maintenance_during_an_import_indexes_what_it_wrote() {
        let (_dir, store) = store();
        let imported = one_batch_written(&store);
        store.compact(&mut |_, _| {}).unwrap();
        assert_clean(&store);
        assert_eq!(store.get_message(1).unwrap().unwrap().0, imported);
    }
}
