//! The per-user context on redb: the `user_contexts` table.

use redb::{ReadTransaction, ReadableTable};

use crate::engine::redb::encoding::{decode, encode, RecordKey};
use crate::engine::redb::store::RedbEngine;
use crate::engine::redb::tables::{self, WriteTables};
use crate::error::Result;
use crate::json::JsonText;
use crate::model::Durability;
use crate::rules::{context, message};

impl RedbEngine {
    pub(crate) fn user_context(&self, user: &str) -> Result<Option<JsonText>> {
        self.reading(|txn| {
            let table = txn.open_table(tables::USER_CONTEXTS)?;
            let Some(bytes) = table.get(user)? else {
                return Ok(None);
            };
            let text: String = decode(RecordKey::UserContext(user), bytes.value())?;
            Ok(Some(JsonText::trusted(text)))
        })
    }

    pub(crate) fn update_user_context(
        &self,
        user: &str,
        context: &str,
        durability: Durability,
    ) -> Result<()> {
        message::check_context_size(context, self.options().settings.max_content_bytes)?;
        let update = JsonText::object("context", context)?;
        let user = user.to_owned();
        self.write(durability, move |tables| {
            let old: Option<String> = match tables.user_contexts.table()?.get(user.as_str())? {
                Some(bytes) => Some(decode(RecordKey::UserContext(&user), bytes.value())?),
                None => None,
            };
            let merged = context::merged(old.as_deref(), &update)?;
            let record = encode(RecordKey::UserContext(&user), &merged.into_string())?;
            tables.user_contexts.insert(user.as_str(), record.as_slice())
        })
    }
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
    use crate::SessionStore;

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
