//! [`RedbEngine`]: the store's operations on redb. Reads run on the caller's
//! thread in their own read transaction; writes go to the writer (see
//! `writer.rs`).

use std::ops::Bound;
use std::path::{Path, PathBuf};
#[cfg(feature = "tokio")]
use std::sync::TryLockError;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use uuid::Uuid;

use crate::engine::redb::cache::{Edit, MessageCache, Ticket};
use crate::engine::redb::encoding::{
    decode, Decoder, MessageRecord, RecordKey, SessionRecord, StoredTimestamp,
};
use crate::engine::redb::expiry::{self, Expiry, ExpiryState};
use crate::engine::redb::journal::{journal_path, Journal};
use crate::engine::redb::options::RedbOptions;
use crate::engine::redb::search::{self, SearchIndexer};
use crate::engine::redb::storage::{DatabaseFile, FileRole};
use crate::engine::redb::tables::{self, IdempotencyRecord, WriteTables};
use crate::engine::redb::writer::{IdleWork, Writer};
use crate::engine::MessagePage;
#[cfg(feature = "tokio")]
use crate::engine::Reply;
use crate::error::{Error, Result};
use crate::json::JsonText;
use crate::model::Erased;
use crate::model::Progress;
use crate::model::{
    Durability, Message, NewMessage, Role, Session, SessionCursor, SessionInfo, SessionPage, SessionSummary,
    Settings, Stats, StoreCounters,
};
use crate::rules::expiry as expiry_rule;
use crate::rules::{append, context, message, title, Access, Append};
use crate::timestamp::Timestamp;

/// The store file format this build reads and writes.
///
/// Version 2 gave every record a checksum over its bytes and its key, and
/// session records a revision; files of version 1 (records without them)
/// are refused with [`Error::UnsupportedVersion`]. Version 3 keeps the
/// search index in segments: a file of version 2 is upgraded at its open
/// (its index rebuilt), and a build reading version 2 refuses the file
/// afterwards instead of leaving the segments behind its writes.
pub const FORMAT_VERSION: u32 = 3;

/// The older version an open upgrades (see [`FORMAT_VERSION`]).
const UPGRADED_FORMAT_VERSION: u32 = 2;

/// What the redb engine opens with: the model's settings and its own.
#[derive(Clone, Debug)]
pub(crate) struct RedbConfig {
    pub(crate) settings: Settings,
    pub(crate) redb: RedbOptions,
}

impl RedbConfig {
    /// Refuses settings the store cannot work with.
    fn validate(&self) -> Result<()> {
        let range = RedbOptions::MIN_JOURNAL_BYTES..=RedbOptions::MAX_JOURNAL_BYTES;
        if !range.contains(&self.redb.max_journal_bytes) {
            return Err(Error::invalid(
                "max_journal_bytes",
                format!(
                    "{} bytes is outside {}..={} (64 KiB to 1 GiB)",
                    self.redb.max_journal_bytes,
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(())
    }

    /// Opens the redb database at `path` through [`StoreOptions::storage`],
    /// creating it when missing or empty if
    /// [`StoreOptions::create_if_missing`], its writes held (see
    /// [`DatabaseFile`]): the caller releases them once it has decided to
    /// go on. Read-only: the file must exist, and is never written.
    ///
    /// A file whose creation was cut short (the process killed while redb
    /// wrote its first header, which gets its magic number last) holds
    /// nothing: it is created again instead of being refused as corrupt
    /// (or refused as no store, when the open may not create one or is
    /// read-only).
    pub(crate) fn open_database(&self, path: &Path) -> Result<(Database, DatabaseFile)> {
        if !self.settings.create_if_missing {
            self.refuse_no_file(path)?;
        }
        match self.open_database_once(path) {
            Err(Error::Corrupt { .. }) if self.is_unfinished_creation(path)? => {
                if !self.settings.create_if_missing || self.settings.read_only {
                    return Err(no_store(
                        path,
                        "the file holds nothing but zeros (at most the header of a creation cut short)",
                    ));
                }
                tracing::warn!(path = %path.display(), "the store's creation was cut short; creating it again");
                self.clear(path)?;
                self.open_database_once(path)
            }
            other => other,
        }
    }

    /// Fails with [`Error::NoStore`] when `path` is missing or empty,
    /// before anything opens it: redb would make a store of it.
    fn refuse_no_file(&self, path: &Path) -> Result<()> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_store(path, "no such file")),
            Err(e) => Err(Error::io("read the size of", path, e)),
            Ok(_) => {
                let len = self
                    .open_backend(path)?
                    .len()
                    .map_err(|e| Error::io("read the size of", path, e))?;
                if len == 0 {
                    return Err(no_store(path, "the file is empty"));
                }
                Ok(())
            }
        }
    }

    fn open_database_once(&self, path: &Path) -> Result<(Database, DatabaseFile)> {
        let backend = self.open_backend(path)?;
        let file = if self.settings.read_only {
            DatabaseFile::read_only(backend)
        } else {
            DatabaseFile::opening(backend)
        }
        .map_err(|e| Error::io("open", path, e))?;
        let db = redb::Builder::new()
            .set_cache_size(self.redb.cache_bytes)
            .create_with_backend(file.clone())
            .map_err(|e| open_error(path, e))?;
        Ok((db, file))
    }

    /// The journal at `path` opened to be read only; `None` when there is
    /// none.
    fn look_at_journal(&self, path: &Path) -> Result<Option<Box<dyn redb::StorageBackend>>> {
        match self.redb.storage.open_read_only(path, FileRole::Journal) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open", path, e)),
        }
    }

    /// The database file as the open uses it: to read only when
    /// [`StoreOptions::read_only`].
    fn open_backend(&self, path: &Path) -> Result<Box<dyn redb::StorageBackend>> {
        if self.settings.read_only {
            self.redb.storage.open_read_only(path, FileRole::Database)
        } else {
            self.redb.storage.open(path, FileRole::Database)
        }
        .map_err(|e| Error::io("open", path, e))
    }

    /// Whether the file at `path` is what a creation cut short leaves: no
    /// magic number (zeros in its place), and nothing but zeros after the
    /// header redb writes first.
    fn is_unfinished_creation(&self, path: &Path) -> Result<bool> {
        /// redb's magic number, and its header, are this long.
        const MAGIC_BYTES: u64 = 9;
        const HEADER_BYTES: u64 = 320;
        /// A new redb file is far smaller: a larger one was never that.
        const LARGEST: u64 = 16 << 20;
        let backend = self.open_backend(path)?;
        let io = |e: std::io::Error| Error::io("read", path, e);
        let len = backend.len().map_err(io)?;
        if len == 0 || len > LARGEST {
            return Ok(false);
        }
        let mut chunk = vec![0u8; 64 << 10];
        let mut at = 0;
        while at < len {
            let n = chunk.len().min((len - at) as usize);
            backend.read(at, &mut chunk[..n]).map_err(io)?;
            let stray = chunk[..n].iter().enumerate().any(|(i, &byte)| {
                let offset = at + i as u64;
                byte != 0 && !(MAGIC_BYTES..HEADER_BYTES).contains(&offset)
            });
            if stray {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    /// Empties the file at `path`, a creation cut short.
    fn clear(&self, path: &Path) -> Result<()> {
        let backend = self.open_backend(path)?;
        let io = |e: std::io::Error| Error::io("clear the unfinished", path, e);
        backend.set_len(0).map_err(io)?;
        backend.sync_data().map_err(io)
    }
}

/// [`Error::NoStore`] for `path`.
fn no_store(path: &Path, why: &'static str) -> Error {
    Error::NoStore {
        path: path.to_path_buf(),
        why,
    }
}

struct Inner {
    path: PathBuf,
    db: Arc<RwLock<Database>>,
    /// `None` when the store is read-only.
    writer: Option<Writer>,
    options: RedbConfig,
    expiry: Arc<ExpiryState>,
    search: Arc<SearchIndexer>,
    cache: Arc<MessageCache>,
    /// Marks the file held by this process; last, so that it is released
    /// once the file is closed.
    _held: crate::engine::redb::open_files::Held,
}

/// The redb engine: one store file, its journal beside it, one writer.
/// Cheap to clone (clones share the file and the writer).
#[derive(Clone)]
pub(crate) struct RedbEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedbEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbEngine")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl RedbEngine {
    /// Opens (or creates) the store file at `path`; see
    /// [`SessionStore::open_with`](crate::SessionStore::open_with).
    pub(crate) fn open(path: &Path, options: RedbConfig) -> Result<Self> {
        let path = path.to_path_buf();
        options.validate()?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) =
            parent.filter(|_| options.settings.create_if_missing && !options.settings.read_only)
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create folder", parent, e))?;
        }
        let (db, journal, expiry, search, held) = guard_panics(&path, || {
            let (mut db, file) = options.open_database(&path)?;
            let held = crate::engine::redb::open_files::hold(&path);
            initialise(&path, &db)?;
            let journal_path = journal_path(&path);
            let recovery = Journal::inspect(
                options.look_at_journal(&journal_path)?,
                journal_path.clone(),
                options.redb.verify_after_crash,
                &mut db,
            )?;
            let journal = if options.settings.read_only {
                recovery.replay_in_memory(&mut db, tables::replay_batches)?;
                None
            } else {
                let journal_file = options
                    .redb
                    .storage
                    .open(&journal_path, FileRole::Journal)
                    .map_err(|e| Error::io("open", &journal_path, e))?;
                let direct = options.redb.storage.open_direct(&journal_path);
                // Decided: what the open wrote reaches the file.
                file.release().map_err(|e| Error::io("write", &path, e))?;
                Some(recovery.open_journal(
                    journal_file,
                    direct,
                    options.redb.max_journal_bytes,
                    &mut db,
                    tables::replay_batches,
                )?)
            };
            search::upgrade(&db)?;
            let expiry = Arc::new(ExpiryState::load(&db.begin_read()?)?);
            let search = Arc::new(SearchIndexer::load(&db.begin_read()?)?);
            Ok((db, journal, expiry, search, held))
        })?;
        let db = Arc::new(RwLock::new(db));
        let cache = Arc::new(MessageCache::new(options.redb.message_cache_bytes));
        let writer = journal
            .map(|journal| {
                let idle: Vec<Arc<dyn IdleWork>> = vec![expiry.clone(), search.clone()];
                Writer::start(&path, db.clone(), journal, Arc::new(idle), cache.clone())
            })
            .transpose()?;
        Ok(RedbEngine {
            inner: Arc::new(Inner {
                path,
                db,
                writer,
                options,
                expiry,
                search,
                cache,
                _held: held,
            }),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a fresh read transaction, with the storage engine's
    /// panics on damaged pages turned into [`Error::Corrupt`].
    pub(crate) fn reading<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        guard_panics(&self.inner.path, || f(&self.read()?))
    }

    /// As [`reading`](Self::reading), with a ticket of the message cache
    /// taken before the transaction begins (see [`Self::session_messages`]).
    fn reading_messages<T>(&self, f: impl FnOnce(&ReadTransaction, Ticket) -> Result<T>) -> Result<T> {
        let ticket = self.inner.cache.ticket();
        self.reading(|txn| f(txn, ticket))
    }

    /// The messages `seqs` of session `id`, whose record `txn` holds is
    /// `record`: from the message cache when it has them at the record's
    /// revision, else read (and kept when they end the session).
    fn session_messages(
        &self,
        txn: &ReadTransaction,
        ticket: Ticket,
        id: Uuid,
        record: &SessionRecord,
        seqs: std::ops::Range<u64>,
    ) -> Result<Vec<Arc<Message>>> {
        let key = id.as_u128();
        self.inner
            .cache
            .messages(ticket, key, record.revision, record.message_count, seqs, |seqs| {
                read_messages(txn, key, seqs)
            })
    }

    /// A read transaction if one begins without waiting for the
    /// database's lock (maintenance holds it); `None` otherwise.
    #[cfg(feature = "tokio")]
    fn read_now(&self) -> Option<Result<ReadTransaction>> {
        match self.inner.db.try_read() {
            Ok(db) => Some(db.begin_read().map_err(Error::from)),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(_)) => Some(Err(Error::WriterStopped)),
        }
    }

    pub(crate) fn read(&self) -> Result<ReadTransaction> {
        let db = self.inner.db.read().map_err(|_| Error::WriterStopped)?;
        Ok(db.begin_read()?)
    }

    pub(crate) fn write<T, F>(&self, durability: Durability, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTables<'_>) -> Result<T> + Send + 'static,
    {
        self.writer()?.write(durability, op)
    }

    /// The writer; [`Error::ReadOnly`] when the store is read-only.
    fn writer(&self) -> Result<&Writer> {
        self.inner.writer.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.inner.path.clone(),
        })
    }

    /// The search index's idle work, told by writes that queue messages.
    pub(crate) fn search_indexer(&self) -> Arc<SearchIndexer> {
        self.inner.search.clone()
    }

    pub(crate) fn expiry_state(&self) -> Arc<ExpiryState> {
        self.inner.expiry.clone()
    }

    /// The lazy expiry rule over `txn`, which must have begun before.
    pub(crate) fn expiry<'t>(&self, txn: &'t ReadTransaction) -> Expiry<'t> {
        self.inner.expiry.view(txn)
    }

    pub(crate) fn options(&self) -> &RedbConfig {
        &self.inner.options
    }

    pub(crate) fn maintain<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Database) -> Result<T> + Send + 'static,
    {
        self.writer()?.maintain(op)
    }

    /// Runs `op` with the database to itself, as [`SessionStore::maintain`]
    /// does; in a read-only store too, whose writes stay in memory (`op`
    /// may only examine the database: redb's integrity check).
    pub(crate) fn examine<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Database) -> Result<T> + Send + 'static,
    {
        if self.inner.writer.is_some() {
            return self.maintain(op);
        }
        let mut db = self.inner.db.write().map_err(|_| Error::WriterStopped)?;
        op(&mut db)
    }

    pub(crate) fn maintain_importing<T, F>(&self, op: F) -> Result<T>
    where
        F: FnOnce(&mut Database, &mut crate::engine::redb::writer::Unindexed) -> Result<T>,
    {
        self.writer()?.maintain_importing(op)
    }

    // ---- sessions -------------------------------------------------------

    pub(crate) fn create_session(&self, user_id: Option<&str>, durability: Durability) -> Result<Uuid> {
        let id = Uuid::new_v4();
        let now = StoredTimestamp::from(&Timestamp::now());
        let record = SessionRecord {
            user_id: user_id.map(str::to_owned),
            created_at: now.clone(),
            updated_at: now,
            expired_at: None,
            context: Some("{}".into()),
            metadata: Some("{}".into()),
            message_count: 0,
            extra: Vec::new(),
            revision: 0,
        };
        self.write(durability, move |tables| {
            let key = id.as_u128();
            if tables.session(key)?.is_some() {
                return Err(Error::invalid("session_id", format!("{id} exists already")));
            }
            tables.put_session(key, None, record)
        })?;
        Ok(id)
    }

    pub(crate) fn get_session(&self, id: Uuid, access: Access<'_>) -> Result<Option<Session>> {
        self.reading_messages(|txn, ticket| {
            let Some(record) = self.active_session(txn, id, access)? else {
                return Ok(None);
            };
            let messages = self.session_messages(txn, ticket, id, &record, 0..record.message_count)?;
            Ok(Some(Session {
                info: record.into_info(id),
                messages,
            }))
        })
    }

    /// [`Self::get_session`] when it answers without waiting: the
    /// database free (no maintenance holds it) and the session's messages
    /// in the message cache at its record's revision, or the session
    /// missing. `None` otherwise, having waited for nothing and read no
    /// message.
    #[cfg(feature = "tokio")]
    pub(crate) fn get_session_now(&self, id: Uuid, access: Access<'_>) -> Option<Result<Option<Session>>> {
        let txn = self.read_now()?;
        let answer = guard_panics(&self.inner.path, || {
            let txn = txn?;
            let Some(record) = self.active_session(&txn, id, access)? else {
                return Ok(Some(None));
            };
            let cache = &self.inner.cache;
            let held = cache.held(
                id.as_u128(),
                record.revision,
                record.message_count,
                0..record.message_count,
            );
            Ok(held.map(|messages| {
                Some(Session {
                    info: record.into_info(id),
                    messages,
                })
            }))
        });
        answer.transpose()
    }

    pub(crate) fn session_info(&self, id: Uuid, access: Access<'_>) -> Result<Option<SessionInfo>> {
        self.reading(|txn| {
            let sessions = txn.open_table(tables::SESSIONS)?;
            let Some(mut record) = tables::session_record(&sessions, id.as_u128())?
                .filter(|r| access.allows(r.user_id.as_deref()))
            else {
                return Ok(None);
            };
            self.expiry(txn).apply(&mut record)?;
            Ok(Some(record.into_info(id)))
        })
    }

    /// Appends messages in one commit: all of them or none. Returns their ids.
    pub(crate) fn add_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Vec<u64>> {
        let op = self.append_op(id, append, messages, access)?;
        self.write(durability, op)
    }

    /// As [`Self::add_messages`], answered through `reply` from the
    /// writer's threads; the caller waits for nothing.
    #[cfg(feature = "tokio")]
    pub(crate) fn submit_add_messages(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
        durability: Durability,
        reply: Reply<Vec<u64>>,
    ) {
        match self
            .writer()
            .and_then(|writer| Ok((writer, self.append_op(id, append, messages, access)?)))
        {
            Ok((writer, op)) => writer.submit(durability, op, reply),
            Err(refused) => reply(Err(refused)),
        }
    }

    /// The write of an append, once its messages are checked.
    fn append_op(
        &self,
        id: Uuid,
        append: Append,
        messages: Vec<NewMessage>,
        access: Access<'_>,
    ) -> Result<impl FnOnce(&mut WriteTables<'_>) -> Result<Vec<u64>> + Send + 'static> {
        message::check_new(&messages, self.inner.options.settings.max_content_bytes)?;
        let access = access.to_owned();
        let search = self.search_indexer();
        Ok(move |tables: &mut WriteTables<'_>| {
            let key = id.as_u128();
            let visible = visible_session(tables, id, access.borrow())?;
            if let Some(idempotency_key) = &append.idempotency_key {
                if let Some(remembered) = tables.idempotency_key(key, idempotency_key)? {
                    return Ok(remembered.ids);
                }
            }
            let old = active_in_write(tables, id, visible)?;
            append.check_seq(id, old.message_count)?;
            let now = Timestamp::now();
            let place = append::place(old.message_count, tables.next_message_id()?, messages.len());
            let mut added = Vec::with_capacity(messages.len());
            for ((seq, message_id), message) in place.seqs.clone().zip(place.ids.clone()).zip(messages) {
                let record = MessageRecord {
                    id: message_id,
                    role: message.role,
                    content: message.content,
                    query_plan: message.query_plan.map(JsonText::into_string),
                    candidate_set: message.candidate_set.map(JsonText::into_string),
                    timestamp: (&now).into(),
                    extra: Vec::new(),
                    tokens: message.tokens,
                };
                tables.put_message(key, seq, old.user_id.as_deref(), &record)?;
                added.push(Arc::new(record.into_message(seq)));
            }
            if old.user_id.is_some() {
                search.queued(place.seqs.end - place.seqs.start);
            }
            let mut new = old.clone();
            new.message_count = place.seqs.end;
            new.updated_at = (&now).into();
            tables.set_next_message_id(place.ids.end)?;
            tables.put_session(key, Some(&old), new)?;
            let ids: Vec<u64> = added.iter().map(|m| m.id).collect();
            tables.describe_last_write(key, Edit::Appended(added));
            if let Some(idempotency_key) = &append.idempotency_key {
                let record = IdempotencyRecord {
                    created_micros: now.micros(),
                    ids: ids.clone(),
                };
                tables.remember_idempotency_key(key, idempotency_key, &record)?;
            }
            Ok(ids)
        })
    }

    pub(crate) fn update_context(
        &self,
        id: Uuid,
        context: &str,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<()> {
        let update = JsonText::object("context", context)?;
        let access = access.to_owned();
        self.write(durability, move |tables| {
            let old = writable_session(tables, id, access.borrow())?;
            let merged = context::merged(old.context.as_deref(), &update)?;
            let mut new = old.clone();
            new.context = Some(merged.into_string());
            new.updated_at = (&Timestamp::now()).into();
            tables.put_session(id.as_u128(), Some(&old), new)?;
            tables.describe_last_write(id.as_u128(), Edit::Kept);
            Ok(())
        })
    }

    pub(crate) fn expire_session(
        &self,
        id: Uuid,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<bool> {
        let access = access.to_owned();
        self.write(durability, move |tables| {
            let old = visible_session(tables, id, access.borrow())?;
            if expiry::expired_at(tables.expiry_events.table()?, &old)?.is_some() {
                return Ok(false);
            }
            let mut new = old.clone();
            new.expired_at = Some((&Timestamp::now()).into());
            tables.put_session(id.as_u128(), Some(&old), new)?;
            Ok(true)
        })
    }

    pub(crate) fn expire_old_sessions(&self, max_age: Duration, durability: Durability) -> Result<u64> {
        let cutoff = expiry_rule::cutoff(max_age);
        let state = self.inner.expiry.clone();
        self.write(durability, move |tables| {
            expiry::expire_before(tables, cutoff, &state)
        })
    }

    pub(crate) fn purge_expired(&self, older_than: Duration, durability: Durability) -> Result<u64> {
        let cutoff = expiry_rule::cutoff(older_than);
        self.write(durability, move |tables| {
            expiry::purge_before(tables, cutoff, usize::MAX)
        })
    }

    pub(crate) fn purge_expired_with_progress(
        &self,
        older_than: Duration,
        progress: Progress<'_>,
        durability: Durability,
    ) -> Result<u64> {
        let cutoff = expiry_rule::cutoff(older_than);
        let due = self.reading(|txn| self.expiry(txn).expired_before(cutoff))?;
        let mut done = 0;
        loop {
            let handled = self.write(durability, move |tables| {
                expiry::purge_before(tables, cutoff, BATCH)
            })?;
            done += handled;
            progress(done, due.max(done));
            if handled < BATCH as u64 {
                return Ok(done);
            }
        }
    }

    pub(crate) fn delete_session(&self, id: Uuid, access: Access<'_>, durability: Durability) -> Result<u64> {
        let access = access.to_owned();
        self.write(durability, move |tables| {
            let record = visible_session(tables, id, access.borrow())?;
            tables.remove_session(id.as_u128(), &record)
        })
    }

    pub(crate) fn erase_user(&self, user: &str, durability: Durability) -> Result<Erased> {
        let user = user.to_owned();
        self.write(durability, move |tables| {
            let mut ids = Vec::new();
            for index in [&mut tables.user_active, &mut tables.user_expired] {
                for entry in index.table()?.range(user_range(&user))? {
                    ids.push(entry?.0.value().2);
                }
            }
            // The user's whole index goes first: the removals below then
            // find no index entry to forget one by one.
            search::erase(tables, &user)?;
            let mut erased = Erased::default();
            for key in ids {
                let record = tables.session(key)?.ok_or_else(|| {
                    Error::corrupt_record("user_active_sessions", "entry without a session")
                })?;
                erased.messages += tables.remove_session(key, &record)?;
                erased.sessions += 1;
            }
            crate::engine::redb::user_context::erase(tables, &user)?;
            Ok(erased)
        })
    }

    pub(crate) fn list_user_sessions(&self, user: &str, include_expired: bool) -> Result<Vec<Uuid>> {
        self.reading(|txn| {
            let ids = self.user_session_keys(txn, user, include_expired, None, usize::MAX)?;
            Ok(ids.into_iter().map(|(_, id)| Uuid::from_u128(id)).collect())
        })
    }

    pub(crate) fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        self.reading(|txn| {
            let (records, next) = self.page_records(txn, user, include_expired, after, limit)?;
            let messages_table = txn.open_table(tables::MESSAGES)?;
            let mut sessions = Vec::with_capacity(records.len());
            for (key, record) in records {
                let title = match self.cached_title(key, &record) {
                    Some(title) => title,
                    None => session_title(&messages_table, key, record.message_count)?,
                };
                sessions.push(summary(key, record, title));
            }
            Ok(SessionPage { sessions, next })
        })
    }

    /// [`Self::user_sessions_page`] when it answers without waiting: the
    /// database free (no maintenance holds it) and every title in the
    /// message cache. `None` otherwise, having waited for nothing and read
    /// no message.
    #[cfg(feature = "tokio")]
    pub(crate) fn user_sessions_page_now(
        &self,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Option<Result<SessionPage>> {
        let txn = self.read_now()?;
        let answer = guard_panics(&self.inner.path, || {
            let (records, next) = self.page_records(&txn?, user, include_expired, after, limit)?;
            let sessions = records.into_iter().map(|(key, record)| {
                let title = self.cached_title(key, &record)?;
                Some(summary(key, record, title))
            });
            Ok(sessions
                .collect::<Option<Vec<_>>>()
                .map(|sessions| SessionPage { sessions, next }))
        });
        answer.transpose()
    }

    /// The records of a page of `user`'s sessions, and the cursor of the
    /// next page.
    fn page_records(
        &self,
        txn: &ReadTransaction,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<(Vec<Listed>, Option<SessionCursor>)> {
        if limit == 0 {
            return Err(Error::invalid("limit", "a page holds at least one session"));
        }
        let mut keys = self.user_session_keys(txn, user, include_expired, after, limit.saturating_add(1))?;
        let next = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().map(|&(updated_micros, session)| SessionCursor {
                updated_micros,
                session,
            })
        } else {
            None
        };
        let sessions_table = txn.open_table(tables::SESSIONS)?;
        let mut expiry = self.expiry(txn);
        let mut records = Vec::with_capacity(keys.len());
        for (_, key) in keys {
            let mut record = tables::session_record(&sessions_table, key)?
                .ok_or_else(|| Error::corrupt_record("user_active_sessions", "entry without a session"))?;
            expiry.apply(&mut record)?;
            records.push((key, record));
        }
        Ok((records, next))
    }

    /// The title of session `key` from its messages in the message cache,
    /// if it holds them at `record`'s revision.
    fn cached_title(&self, key: u128, record: &SessionRecord) -> Option<String> {
        let cache = &self.inner.cache;
        cache.first_user_message(key, record.revision, record.message_count, title::title)
    }

    // ---- messages -------------------------------------------------------

    pub(crate) fn page_messages(
        &self,
        id: Uuid,
        page: MessagePage,
        limit: u64,
        access: Access<'_>,
    ) -> Result<Option<Vec<Arc<Message>>>> {
        self.reading_messages(|txn, ticket| {
            let Some(record) = self.active_session(txn, id, access)? else {
                return Ok(None);
            };
            let range = page.range(limit, record.message_count);
            self.session_messages(txn, ticket, id, &record, range).map(Some)
        })
    }

    pub(crate) fn get_message(&self, message_id: u64, access: Access<'_>) -> Result<Option<(Uuid, Message)>> {
        self.reading(|txn| {
            let ids = txn.open_table(tables::MESSAGE_IDS)?;
            let Some((session, seq)) = ids.get(message_id)?.map(|g| g.value()) else {
                return Ok(None);
            };
            if let Access::Owner(_) = access {
                let sessions = txn.open_table(tables::SESSIONS)?;
                let owned = tables::session_record(&sessions, session)?
                    .is_some_and(|r| access.allows(r.user_id.as_deref()));
                if !owned {
                    return Ok(None);
                }
            }
            let messages = txn.open_table(tables::MESSAGES)?;
            let record = tables::message_record(&messages, session, seq)?
                .ok_or_else(|| Error::corrupt_record("message_ids", "entry without a message"))?;
            Ok(Some((Uuid::from_u128(session), record.into_message(seq))))
        })
    }

    pub(crate) fn pop_last_message(
        &self,
        id: Uuid,
        access: Access<'_>,
        durability: Durability,
    ) -> Result<Option<Message>> {
        let access = access.to_owned();
        self.write(durability, move |tables| {
            let old = writable_session(tables, id, access.borrow())?;
            let Some(seq) = old.message_count.checked_sub(1) else {
                return Ok(None);
            };
            let key = id.as_u128();
            let record = tables
                .remove_message(key, seq, old.user_id.as_deref())?
                .ok_or_else(|| Error::corrupt_record("messages", "message count beyond the last message"))?;
            let mut new = old.clone();
            new.message_count = seq;
            new.updated_at = (&Timestamp::now()).into();
            tables.put_session(key, Some(&old), new)?;
            tables.describe_last_write(key, Edit::Popped);
            Ok(Some(record.into_message(seq)))
        })
    }

    /// The active session `id`, if `access` may see it.
    pub(crate) fn active_session(
        &self,
        txn: &ReadTransaction,
        id: Uuid,
        access: Access<'_>,
    ) -> Result<Option<SessionRecord>> {
        let sessions = txn.open_table(tables::SESSIONS)?;
        let Some(mut record) =
            tables::session_record(&sessions, id.as_u128())?.filter(|r| access.allows(r.user_id.as_deref()))
        else {
            return Ok(None);
        };
        self.expiry(txn).apply(&mut record)?;
        Ok(record.expired_at.is_none().then_some(record))
    }

    /// (updated_at, session) of a user's sessions, newest first, strictly
    /// after `after`, at most `limit`. The active ones are the entries of
    /// the active index from the expiry watermark on.
    fn user_session_keys(
        &self,
        txn: &ReadTransaction,
        user: &str,
        include_expired: bool,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<Vec<UserKey>> {
        let from = if include_expired {
            i64::MIN
        } else {
            self.expiry(txn).watermark()?
        };
        let lower = (user, from, 0u128);
        let upper = match after {
            Some(c) if (c.updated_micros, c.session) <= (from, 0) => return Ok(Vec::new()),
            Some(c) => Bound::Excluded((user, c.updated_micros, c.session)),
            None => Bound::Included((user, i64::MAX, u128::MAX)),
        };
        let range = (Bound::Included(lower), upper);
        let read = |definition| -> Result<Vec<UserKey>> {
            let table = txn.open_table(definition)?;
            let mut keys = Vec::new();
            for entry in table.range::<(&str, i64, u128)>(range)?.rev().take(limit) {
                let (key, _) = entry?;
                let (_, updated, session) = key.value();
                keys.push((updated, session));
            }
            Ok(keys)
        };
        let mut keys = read(tables::USER_ACTIVE)?;
        if include_expired {
            keys.extend(read(tables::USER_EXPIRED)?);
            keys.sort_unstable_by(|a, b| b.cmp(a));
            keys.truncate(limit);
        }
        Ok(keys)
    }

    // ---- monitoring -----------------------------------------------------

    pub(crate) fn stats(&self) -> Result<Stats> {
        self.reading(|txn| {
            let size_of = |path: &Path| {
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .map_err(|e| Error::io("read the size of", path, e))
            };
            let file_size = size_of(&self.inner.path)?;
            let journal_size = size_of(&journal_path(&self.inner.path))?;
            let lazily_expired = self.expiry(txn).lazily_expired()?;
            Ok(Stats {
                active_sessions: tables::count(txn, tables::ACTIVE_BY_UPDATED)? - lazily_expired,
                expired_sessions: tables::count(txn, tables::EXPIRED_BY_TIME)? + lazily_expired,
                messages: tables::count(txn, tables::MESSAGE_IDS)?,
                file_size,
                journal_size,
            })
        })
    }

    pub(crate) fn counters(&self) -> StoreCounters {
        let mut counters = StoreCounters::default();
        if let Some(writer) = &self.inner.writer {
            writer.count(&mut counters);
        }
        self.inner.cache.count(&mut counters);
        counters
    }
}

// ---- helpers ------------------------------------------------------------

pub(crate) fn open_error(path: &Path, error: redb::DatabaseError) -> Error {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen if crate::engine::redb::open_files::is_held(path) => {
            Error::AlreadyOpen {
                path: path.to_path_buf(),
            }
        }
        redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse {
            path: path.to_path_buf(),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => match io.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => Error::Corrupt {
                path: path.to_path_buf(),
                why: io.to_string(),
            },
            _ => Error::io("open", path, io),
        },
        other => Error::Corrupt {
            path: path.to_path_buf(),
            why: other.to_string(),
        },
    }
}

/// Runs `f`, turning a panic inside it into [`Error::Corrupt`] about `path`.
///
/// redb 4.6 panics (`unreachable!`) on some damaged pages instead of
/// returning an error; the store promises an error on any file.
pub(crate) fn guard_panics<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("the storage engine failed on a damaged page ({what})"),
        })
    })
}

/// Creates the tables of a new file, or checks the format of an existing one.
fn initialise(path: &Path, db: &Database) -> Result<()> {
    let corrupt = |why: String| Error::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let txn = db.begin_read()?;
    if txn.list_tables()?.next().is_none() && txn.list_multimap_tables()?.next().is_none() {
        drop(txn);
        let txn = db.begin_write()?;
        {
            let mut tables = WriteTables::open(&txn);
            tables.open_all()?;
            tables.set_meta(tables::META_FORMAT_VERSION, &FORMAT_VERSION.to_le_bytes())?;
            tables.set_meta(tables::META_SEARCH_INDEX, &[search::INDEX_VERSION])?;
            tables.set_next_message_id(1)?;
        }
        txn.commit()?;
        return Ok(());
    }
    let not_ours = || corrupt("a redb file, but not a sessionstore file (no format version)".into());
    let meta = match txn.open_table(tables::META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Err(not_ours()),
        Err(redb::TableError::Storage(e)) => return Err(e.into()),
        Err(e) => return Err(corrupt(e.to_string())),
    };
    let version = meta.get(tables::META_FORMAT_VERSION)?.ok_or_else(not_ours)?;
    let version: [u8; 4] = version
        .value()
        .try_into()
        .map_err(|_| corrupt("format version is not 4 bytes".into()))?;
    let found = u32::from_le_bytes(version);
    if found != FORMAT_VERSION && found != UPGRADED_FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    tables::next_message_id(&meta).map_err(|e| corrupt(e.to_string()))?;
    let complete = tables::check_layout(&txn)?;
    if !complete {
        // Tables are opened as used: a file must have every one before.
        drop((meta, txn));
        let txn = db.begin_write()?;
        WriteTables::open(&txn).open_all()?;
        txn.commit()?;
    }
    Ok(())
}

/// Sessions one commit of a cleanup with progress handles.
const BATCH: usize = 1024;

/// The active session `id` inside a write, or the refusal.
pub(crate) fn writable_session(
    tables: &mut WriteTables<'_>,
    id: Uuid,
    access: Access<'_>,
) -> Result<SessionRecord> {
    let record = visible_session(tables, id, access)?;
    active_in_write(tables, id, record)
}

/// `record`, the session `id` read inside a write, if it is active.
fn active_in_write(tables: &mut WriteTables<'_>, id: Uuid, record: SessionRecord) -> Result<SessionRecord> {
    if expiry::expired_at(tables.expiry_events.table()?, &record)?.is_some() {
        return Err(Error::SessionNotFound(id));
    }
    Ok(record)
}

/// The session `id`, expired or not, inside a write, if `access` may see it.
fn visible_session(tables: &mut WriteTables<'_>, id: Uuid, access: Access<'_>) -> Result<SessionRecord> {
    tables
        .session(id.as_u128())?
        .filter(|r| access.allows(r.user_id.as_deref()))
        .ok_or(Error::SessionNotFound(id))
}

fn read_messages(txn: &ReadTransaction, session: u128, seqs: std::ops::Range<u64>) -> Result<Vec<Message>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let table = txn.open_table(tables::MESSAGES)?;
    let mut messages = Vec::with_capacity((seqs.end - seqs.start).min(4096) as usize);
    let mut decoder = Decoder::default();
    for entry in table.range((session, seqs.start)..(session, seqs.end))? {
        let (key, value) = entry?;
        let seq = key.value().1;
        let record: MessageRecord = decoder.decode(RecordKey::Message(session, seq), value.value())?;
        messages.push(record.into_message(seq));
    }
    Ok(messages)
}

/// The session's title (see [`title::title`]): read up to its first user
/// message.
/// A sidebar's line for session `key`.
fn summary(key: u128, record: SessionRecord, title: String) -> SessionSummary {
    SessionSummary {
        session_id: Uuid::from_u128(key),
        title,
        message_count: record.message_count,
        last_activity: record.updated_at.into(),
        expired: record.expired_at.is_some(),
    }
}

fn session_title(
    messages: &impl ReadableTable<(u128, u64), &'static [u8]>,
    session: u128,
    count: u64,
) -> Result<String> {
    for entry in messages.range((session, 0)..(session, count))? {
        let (key, value) = entry?;
        let record: MessageRecord = decode(RecordKey::Message(session, key.value().1), value.value())?;
        if record.role == Role::User {
            return Ok(title::title(Some(&record.content)));
        }
    }
    Ok(title::title(None))
}

type UserKey = (i64, u128);

/// A listed session: its key and record.
type Listed = (u128, SessionRecord);

fn user_range(user: &str) -> std::ops::RangeInclusive<(&str, i64, u128)> {
    (user, i64::MIN, 0)..=(user, i64::MAX, u128::MAX)
}
