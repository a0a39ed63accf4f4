//! State that follows a user: one context object per user, kept apart from
//! any session, merged as a session's context is, read with any of the
//! user's sessions (their `user_id` names it), removed by
//! [`SessionStore::erase_user`].

use crate::error::Result;
use crate::json::JsonText;
use crate::store::{SessionStore, UserView};

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
        self.engine().user_context(user)
    }

    /// Shallow-merges `context` (a JSON object) into the context of `user`,
    /// as [`update_context`](Self::update_context) merges a session's
    /// (Python's `{**old, **new}`); the first update sets it. The user needs
    /// no session. Refused, writing nothing, when `context` is not a JSON
    /// object or is longer than
    /// [`StoreOptions::max_content_bytes`](crate::StoreOptions).
    pub fn update_user_context(&self, user: &str, context: &str) -> Result<()> {
        self.engine()
            .update_user_context(user, context, self.durability())
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
