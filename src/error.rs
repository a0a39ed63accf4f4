//! The one error type of the library.
//!
//! Every variant says what went wrong and where; the storage variants keep the
//! underlying engine or I/O error as their source.

use std::path::PathBuf;

/// Everything that can go wrong in a [`SessionStore`](crate::SessionStore) call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write to a session that is missing, expired, or another user's
    /// (ownership-checked calls answer the same for all three). A read
    /// answers `Ok(None)` instead: see the
    /// [crate docs](crate#missing-none-for-a-read-an-error-for-a-write).
    #[error("session {0} not found")]
    SessionNotFound(uuid::Uuid),

    /// `add_message_if` was told the next seq would be `expected`, but another
    /// writer got there first and the session is at `actual`.
    #[error("session {session}: expected next seq {expected}, but it is {actual} (another writer got there first)")]
    SeqConflict {
        /// The session written to.
        session: uuid::Uuid,
        /// The seq the caller expected the new message to get.
        expected: u64,
        /// The seq the next message would actually get.
        actual: u64,
    },

    /// A value the caller gave breaks a rule of the data model.
    #[error("invalid {what}: {why}")]
    InvalidInput {
        /// Which value (for example `role`, `context`, `content`).
        what: &'static str,
        /// Why it is refused.
        why: String,
    },

    /// The file is held open by another process.
    #[error("{path} is in use by another process")]
    InUse {
        /// The store file.
        path: PathBuf,
    },

    /// The file is open already in this process, through another
    /// [`SessionStore`](crate::SessionStore): share that one (clones of a
    /// store share its file and its writer) instead of opening the file
    /// again.
    #[error("{path} is already open in this process; use a clone of the SessionStore that holds it")]
    AlreadyOpen {
        /// The store file.
        path: PathBuf,
    },

    /// The store was not closed cleanly, and the journal beside it, which
    /// holds writes the database lacks, is missing, cut short, or the
    /// journal of another run of the store: opening without it would lose
    /// acknowledged writes. Nothing was changed (every open refuses the
    /// same way); put the journal back and open again.
    #[error("{path}: {why}: acknowledged writes would be lost (nothing was changed; restore the journal and open again)")]
    JournalLost {
        /// The journal file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },

    /// The store was opened read-only ([`StoreOptions::read_only`](crate::StoreOptions::read_only)):
    /// every write is refused, and nothing is written to any file.
    #[error("{path} is open read-only: writes are refused")]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },

    /// There is no store at the path, and the open was not to create one
    /// (see [`StoreOptions::create_if_missing`](crate::StoreOptions::create_if_missing)):
    /// the file is missing, empty, or holds nothing but zeros. No file
    /// was created or changed.
    #[error("{path}: no store there: {why}")]
    NoStore {
        /// The store file.
        path: PathBuf,
        /// What was found instead.
        why: &'static str,
    },

    /// The file is held open by another process that serves no local
    /// socket (it opened the store with `StoreOptions::serve_socket` off, or
    /// is of a version without one), so nothing can reach the store while
    /// it runs.
    #[error("{path} is in use by another process, which serves no socket at {socket}: stop it, or open the store with the socket on")]
    InUseNoSocket {
        /// The store file.
        path: PathBuf,
        /// Where its socket would be.
        socket: PathBuf,
    },

    /// The process holding the store closed its socket during a call made
    /// through it (it is closing the store, or it died): the call may or
    /// may not have been done. Open the store again (it may be free now)
    /// and retry; an append retried with the same idempotency key
    /// (`add_messages_idempotent`) is done once.
    #[error("{path}: the process holding it closed its socket {socket} during the call: {why}")]
    HolderGone {
        /// The store file.
        path: PathBuf,
        /// Its socket.
        socket: PathBuf,
        /// What the connection said.
        why: String,
    },

    /// The process holding the store refused or failed a call made through
    /// its socket (see `client::SocketClient`); `message` is its error's
    /// text.
    #[error("{message}")]
    Remote {
        /// The HTTP status answered.
        status: u16,
        /// The API's error kind (`invalid_input`, `unavailable`, ...).
        kind: String,
        /// What and why, as the holder's library said it.
        message: String,
    },

    /// The file is not a sessionstore file, or is damaged.
    #[error("{path}: not a usable sessionstore file: {why}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What was found wrong.
        why: String,
    },

    /// A record inside the store is damaged: its checksum fails (a flipped
    /// bit in the record or in its key), or it does not decode.
    #[error("corrupt record in table {table}{}: {why}", key.as_ref().map(|k| format!(", {k}")).unwrap_or_default())]
    CorruptRecord {
        /// The table holding the record.
        table: &'static str,
        /// The record's key (`message 3 of session <uuid>`, ...), when the
        /// record has one.
        key: Option<String>,
        /// What is wrong with it.
        why: String,
    },

    /// The file was written by a newer (or unknown) format version.
    #[error("{path}: store format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The store file.
        path: PathBuf,
        /// The version the file declares.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`create folder`, `read size of`, ...).
        action: &'static str,
        /// The path acted on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },

    /// The storage engine failed (I/O error while reading or committing, a
    /// full disk, ...). Nothing of the failed call was committed, unless the
    /// failure came after its write reached the disk: a failed sync, a
    /// failed shrink of the file after a commit, or a journal record that
    /// could not be withdrawn. Then the write may be found, whole, after a
    /// reopen.
    #[error("storage ({engine}): {source}")]
    Storage {
        /// The engine that failed: `redb`, `postgres`.
        engine: &'static str,
        /// The engine's own error.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },

    /// The storage could not be reached: a database server that is down,
    /// refuses connections, or lost the connection during the call (a
    /// network failure, a restart). A store file never answers this. Nothing
    /// of the call was committed, unless the loss came during its commit;
    /// retrying once the server is back is safe (an append retried with its
    /// idempotency key is done once). The HTTP API answers it with 503 and
    /// the kind `unavailable`.
    ///
    /// ```
    /// # #[cfg(feature = "postgres")] {
    /// use sessionstore::{Error, SessionStore};
    /// // Nothing listens on port 1.
    /// let down = SessionStore::open("postgres://ana@127.0.0.1:1/chat?connect_timeout=2").unwrap_err();
    /// assert!(matches!(down, Error::Unavailable { engine: "postgres", .. }), "{down}");
    /// # }
    /// ```
    #[error("storage ({engine}) unavailable: {source}")]
    Unavailable {
        /// The engine that could not reach its storage: `postgres`.
        engine: &'static str,
        /// The engine's own error.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },

    /// The operation belongs to another storage engine than the store's
    /// (a redb file's `compact` or `backup_to` on a store opened from a
    /// `postgres://` URL): nothing was done; `why` says what to use instead.
    #[error("{operation} is not supported by the {engine} engine: {why}")]
    NotSupported {
        /// What was asked (`"compact"`, `"backup"`, ...).
        operation: &'static str,
        /// The store's engine (`"PostgreSQL"`).
        engine: &'static str,
        /// Why, and what does it instead.
        why: &'static str,
    },

    /// Another request committed in the same batch failed with a storage
    /// error, so nothing of this call was committed; it may be retried.
    #[error("not committed: another write in the same commit failed")]
    BatchAborted,

    /// [`SessionStore::check`](crate::SessionStore::check) verifies every
    /// page, which redb allows only while no read is open: a
    /// [`Snapshot`](crate::Snapshot) of the store is still alive. Drop it
    /// and call again.
    #[error("{path}: {operation} cannot run while a Snapshot of the store is open; drop it first")]
    SnapshotOpen {
        /// The store file.
        path: PathBuf,
        /// What was asked (`"check"`).
        operation: &'static str,
    },

    /// [`backup_to`](crate::SessionStore::backup_to) or
    /// [`compact`](crate::SessionStore::compact) found what
    /// [`check`](crate::SessionStore::check) reports (a damaged record, a
    /// broken rule) and copied nothing: the store is as it was, and no file
    /// was written.
    #[error("{path}: {operation} refused, the store is damaged: {}", listed(problems))]
    Damaged {
        /// The store file.
        path: PathBuf,
        /// What was refused (`"backup"`, `"compact"`).
        operation: &'static str,
        /// What the check found, one sentence each.
        problems: Vec<String>,
    },

    /// The store's writer has stopped after an earlier failure; reopen the store.
    #[error("the store's writer has stopped; reopen the store")]
    WriterStopped,
}

/// The first problems of `problems`, and how many more there are.
fn listed(problems: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = problems[..problems.len().min(SHOWN)].join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!(
            "; and {} more (check lists them)",
            problems.len() - SHOWN
        ));
    }
    text
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        Error::InvalidInput {
            what,
            why: why.into(),
        }
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source: std::sync::Arc::new(source),
        }
    }

    pub(crate) fn corrupt_record(table: &'static str, why: impl std::fmt::Display) -> Self {
        Error::CorruptRecord {
            table,
            key: None,
            why: why.to_string(),
        }
    }

    /// True for the errors that refuse a request before it writes anything:
    /// the store is unchanged and healthy.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::SessionNotFound(_)
                | Error::SeqConflict { .. }
                | Error::InvalidInput { .. }
                | Error::ReadOnly { .. }
                | Error::NotSupported { .. }
        )
    }

    /// True when a file of the store may not be written by this process
    /// (permission denied, a read-only file system): it may still be read,
    /// opened read-only
    /// ([`SessionStore::open_read_only`](crate::SessionStore::open_read_only)).
    ///
    /// ```
    /// use sessionstore::{Error, SessionStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s.redb");
    /// # drop(SessionStore::open(&path)?);
    /// let store = match SessionStore::open(&path) {
    ///     Err(error) if error.is_not_writable() => SessionStore::open_read_only(&path)?,
    ///     opened => opened?,
    /// };
    /// # Ok::<(), Error>(())
    /// ```
    pub fn is_not_writable(&self) -> bool {
        use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
        matches!(self, Error::Io { source, .. } if matches!(source.kind(), PermissionDenied | ReadOnlyFilesystem))
    }

    /// True for the errors that mean "nothing there for you to write to": a
    /// missing, expired or foreign session.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::SessionNotFound(_))
    }
}
