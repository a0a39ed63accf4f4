//! The rules of the data model that hold whatever the engine: plain
//! functions and values over the model's types, used by every engine. Never
//! imports an engine (`tests/architecture.rs`).

mod access;
mod append;
mod budget;
mod limits;
mod titles;

pub(crate) use access::Access;
pub(crate) use append::Append;
pub(crate) use budget::newest_within;
pub(crate) use limits::{
    check_append, check_fork_point, user_context_update, IDEMPOTENCY_KEYS_PER_SESSION, IDEMPOTENCY_KEY_MICROS,
};
pub(crate) use titles::{title_of, NO_TITLE};
