//! The rules of the data model that hold whatever the engine: plain
//! functions and values over the model's types, used by every engine. Never
//! imports an engine (`tests/architecture.rs`).

mod access;
mod append;

pub(crate) use access::Access;
pub(crate) use append::Append;
