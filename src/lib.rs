//! # sessionstore
//!
//! An embedded store for chatbot conversations: sessions, their messages and
//! the carry-forward context of a multi-turn chat, in one
//! [redb](https://docs.rs/redb) file inside the chatbot's own binary.
//!
//! It keeps the data model and every operation of the Python store it
//! replaces (which kept the same data in SQLite), and adds what that store
//! lacked: paging, undo, optimistic appends, ownership-checked access,
//! hard deletion and erasure, group commit under many threads.
//!
//! ```
//! use sessionstore::{NewMessage, SessionStore};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data/chat/sessions.redb");
//! let store = SessionStore::open(&path)?;
//! let id = store.create_session(Some("user123"))?;
//! let first = store.add_message(id, NewMessage::user("books by Oxford"))?;
//! let reply = NewMessage::assistant("Found 15 books by Oxford University Press")
//!     .with_candidate_set(r#"{"total_count": 15, "candidates": []}"#)?;
//! store.add_message(id, reply)?;
//! let session = store.get_session(id)?.expect("active");
//! assert_eq!(session.messages[0].id, first);
//! assert_eq!(session.messages[1].seq, 1);
//! # Ok::<(), sessionstore::Error>(())
//! ```
//!
//! ## Missing: `None` for a read, an error for a write
//!
//! One convention holds across the API. A read of something that may be
//! missing answers `Ok(None)`: [`SessionStore::get_session`],
//! [`SessionStore::session_info`], [`SessionStore::get_recent_messages`],
//! [`SessionStore::messages_after`] / [`messages_from`](SessionStore::messages_from) /
//! [`messages_before`](SessionStore::messages_before) and
//! [`SessionStore::get_message`], and the same calls of a [`UserView`],
//! where another user's session is missing too. An `Err` from a read is
//! always a failure of the store (I/O, damage), never "not there". A write
//! to a session that is missing, expired or another user's is
//! `Err(Error::SessionNotFound)`: nothing could be written, and the caller
//! must know.
//!
//! ```
//! use sessionstore::{Error, NewMessage, SessionStore, Uuid};
//! # let dir = tempfile::tempdir().unwrap();
//! # let store = SessionStore::open(dir.path().join("sessions.redb"))?;
//! let unknown = Uuid::new_v4();
//! assert!(store.get_session(unknown)?.is_none());
//! assert!(store.get_recent_messages(unknown, 10)?.is_none());
//! assert!(store.get_message(12345)?.is_none());
//! let write = store.add_message(unknown, NewMessage::user("hello"));
//! assert!(matches!(write, Err(Error::SessionNotFound(id)) if id == unknown));
//! # Ok::<(), sessionstore::Error>(())
//! ```

#![deny(missing_docs)]

#[cfg(feature = "tokio")]
mod async_store;
mod budget;
mod bulk;
#[cfg(all(feature = "client", unix))]
pub mod client;
mod engine;
mod error;
mod expiry;
pub mod files;
mod fork;
#[doc(hidden)]
pub mod fuzzing;
mod json;
mod location;
mod maintenance;
mod model;
pub mod query;
pub mod retrieval;
mod rules;
mod search;
#[cfg(feature = "server")]
pub mod server;
#[cfg(all(feature = "socket", unix))]
mod socket;
mod store;
mod timestamp;
mod user_context;

#[cfg(feature = "tokio")]
pub use async_store::{AsyncSessionStore, AsyncUserView};
pub use bulk::{Importer, Snapshot};
pub use engine::redb::hold::StoreHold;
pub use error::{Error, Result};
pub use expiry::BackgroundExpiry;
pub use json::JsonText;
pub use location::{is_postgres_url, redacted_location};
pub mod redb_engine {
    //! The redb engine's settings ([`RedbOptions`], in
    //! [`StoreOptions::redb`](crate::StoreOptions)) and the storage it
    //! writes through: [`StorageFactory`] opens every file (tests wrap it
    //! to cut power or inject faults).
    pub use crate::engine::redb::storage::{FileRole, FileStorage, StorageFactory};
    pub use crate::engine::redb::{BackendError, RedbOptions, StorageBackend};
}
pub use model::{
    CheckReport, CompactReport, Durability, Erased, ExtraColumns, ExtraRow, ExtraValue, Message, NewMessage,
    Progress, Role, Session, SessionCursor, SessionInfo, SessionPage, SessionSummary, Stats, StoreCounters,
};
pub use rules::budget::TokenRule;
pub use rules::search::{SearchCursor, SearchHit, SearchPage};
#[cfg(all(feature = "socket", unix))]
pub use socket::MAX_SOCKET_PATH;
pub use store::{SessionStore, StoreOptions, UserView, FORMAT_VERSION};
pub use timestamp::{Timestamp, TimestampError, TimestampForm};
pub use uuid::Uuid;

/// The README's examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
