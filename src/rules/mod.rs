//! The rules of the data model that hold whatever the engine: plain
//! functions and values over the model's types, used by every engine. Never
//! imports an engine (`tests/architecture.rs`).

mod access;
pub(crate) mod append;
pub(crate) mod budget;
pub(crate) mod context;
pub(crate) mod expiry;
pub(crate) mod fork;
pub(crate) mod import;
pub(crate) mod message;
pub(crate) mod search;
pub(crate) mod title;

pub(crate) use access::Access;
pub(crate) use append::Append;
