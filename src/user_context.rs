//! State that follows a user: one context object per user, kept apart from
//! any session, merged as a session's context is, read with any of the
//! user's sessions (their `user_id` names it), removed by
//! [`SessionStore::erase_user`].

use redb::{ReadTransaction, ReadableTable};

use crate::encoding::{decode, encode, RecordKey};
use crate::error::{Error, Result};
use crate::json::{shallow_merge, JsonText};
use crate::store::{SessionStore, UserView};
use crate::tables::{self, WriteTables};

impl SessionStore {
    /// The context of `user`, a JSON object; `None` when none was ever set
    /// (or it was erased). It follows the user across sessions: read it
    /// with any of them, through the session's `user_id`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb"))?;
    /// let first = store.create_session(Some("ana"))?;
    /// store.update_user_context("ana", r#"{"preferred_language": "fr"}"#)?;
    /// store.update_user_context("ana", r#"{"favourite_publisher": "Oxford"}"#)?;
    /// // A later session of the same user reads the same state.
    /// let later = store.create_session(Some("ana"))?;
    /// let user = store.session_info(later)?.and_then(|s| s.user_id).expect("ana's");
    /// assert_eq!(
    ///     store.user_context(&user)?.expect("set").as_str(),
    ///     r#"{"preferred_language": "fr", "favourite_publisher": "Oxford"}"#
    /// );
    /// assert!(store.user_context("bob")?.is_none());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn user_context(&self, user: &str) -> Result<Option<JsonText>> {
        self.reading(|txn| {
            let table = txn.open_table(tables::USER_CONTEXTS)?;
            let Some(bytes) = table.get(user)? else {
                return Ok(None);
            };
            let text: String = decode(RecordKey::UserContext(user), bytes.value())?;
            Ok(Some(JsonText::trusted(text)))
        })
    }

    /// Shallow-merges `context` (a JSON object) into the context of `user`,
    /// as [`update_context`](Self::update_context) merges a session's
    /// (Python's `{**old, **new}`); the first update sets it. The user needs
    /// no session. Refused, writing nothing, when `context` is not a JSON
    /// object or is longer than
    /// [`StoreOptions::max_content_bytes`](crate::StoreOptions).
    pub fn update_user_context(&self, user: &str, context: &str) -> Result<()> {
        let update = user_context_update(context, self.options().max_content_bytes)?;
        let user = user.to_owned();
        self.write(move |tables| {
            let old = match tables.user_contexts.table()?.get(user.as_str())? {
                Some(bytes) => Some(JsonText::trusted(decode(
                    RecordKey::UserContext(&user),
                    bytes.value(),
                )?)),
                None => None,
            };
            let merged = shallow_merge(old.as_ref(), &update)?;
            let record = encode(RecordKey::UserContext(&user), &merged.into_string())?;
            tables.user_contexts.insert(user.as_str(), record.as_slice())
        })
    }
}

impl UserView<'_> {
    /// As [`SessionStore::user_context`], of this user.
    pub fn user_context(&self) -> Result<Option<JsonText>> {
        self.store.user_context(self.user)
    }

    /// As [`SessionStore::update_user_context`], of this user.
    pub fn update_user_context(&self, context: &str) -> Result<()> {
        self.store.update_user_context(self.user, context)
    }
}

/// `context` as an update of a user's context: a JSON object of at most
/// `limit` bytes.
pub(crate) fn user_context_update(context: &str, limit: usize) -> Result<JsonText> {
    if context.len() > limit {
        return Err(Error::invalid(
            "context",
            format!("{} bytes is over the limit of {limit} bytes", context.len()),
        ));
    }
    JsonText::object("context", context)
}

/// Removes the context of `user` (an erasure).
pub(crate) fn erase(tables: &mut WriteTables<'_>, user: &str) -> Result<()> {
    tables.user_contexts.remove(user).map(drop)
}

/// Every user context decodes and is a JSON object.
pub(crate) fn check(txn: &ReadTransaction) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let table = txn.open_table(tables::USER_CONTEXTS)?;
    for entry in table.range::<&str>(..)? {
        let (key, value) = entry?;
        let user = key.value();
        match decode::<String>(RecordKey::UserContext(user), value.value()) {
            Ok(text) => {
                if let Err(e) = JsonText::object("context", text) {
                    problems.push(format!("context of user {user:?}: {e}"));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use redb::Database;

    use super::*;

    /// `check()` reports a user context that is damaged or not an object.
    #[test]
    fn check_reports_damaged_user_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = SessionStore::open(&path).unwrap();
        store.update_user_context("ana", r#"{"lang": "fr"}"#).unwrap();
        store.update_user_context("bob", r#"{"lang": "de"}"#).unwrap();
        assert!(store.check(&mut |_, _| {}).unwrap().is_clean());
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(tables::USER_CONTEXTS).unwrap();
            let list = encode(RecordKey::UserContext("ana"), &"[1]".to_owned()).unwrap();
            table.insert("ana", list.as_slice()).unwrap();
            let moved = encode(RecordKey::UserContext("carl"), &"{}".to_owned()).unwrap();
            table.insert("bob", moved.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        let store = SessionStore::open(&path).unwrap();
        let problems = store.check(&mut |_, _| {}).unwrap().problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains(r#"context of user "ana""#), "{problems:?}");
        assert!(problems[1].contains("checksum mismatch"), "{problems:?}");
        assert!(store.user_context("bob").is_err());
    }
}
