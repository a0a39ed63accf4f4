//! Full-text search over a user's history: the messages of the user's
//! active sessions, ranked by BM25, paged, each hit with its session,
//! message, score and a snippet. What a term is and how hits rank are the
//! rules of `rules/search.rs`, shared by every engine; each engine keeps
//! its index exact through every write.

use crate::error::Result;
use crate::rules::search::{SearchCursor, SearchPage};
use crate::store::{SessionStore, UserView};

impl SessionStore {
    /// Searches the messages of `user`'s active sessions for `query`,
    /// ranked by BM25 (a message holding more of the query's terms, or
    /// rarer ones, ranks first); one page of at most `limit` hits, starting
    /// after `after` (the previous page's `next`).
    ///
    /// Terms are runs of letters and digits, matched whole and without
    /// case (`Oxford's` holds `oxford` and `s`). Refused
    /// ([`Error::InvalidInput`](crate::Error::InvalidInput), naming
    /// `limit` or `query`) when `limit` is 0 or above 1000, when `query`
    /// is longer than 1024 bytes or holds no term. Messages of sessions
    /// without a user are never searched; an expired session's messages
    /// are not found.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb"))?;
    /// use sessionstore::NewMessage;
    /// let id = store.create_session(Some("ana"))?;
    /// store.add_message(id, NewMessage::user("books by Oxford University Press"))?;
    /// store.add_message(id, NewMessage::assistant("Found 15 books"))?;
    /// let page = store.search("ana", "oxford books", None, 10)?;
    /// assert_eq!(page.hits.len(), 2);
    /// assert_eq!(page.hits[0].seq, 0); // holds both terms
    /// assert_eq!(page.hits[0].snippet, "books by Oxford University Press");
    /// // One hit a page: the cursor leads to the next.
    /// let first = store.search("ana", "oxford books", None, 1)?;
    /// let second = store.search("ana", "oxford books", first.next, 1)?;
    /// assert_eq!(second.hits, page.hits[1..]);
    /// assert!(store.search("bob", "oxford", None, 10)?.hits.is_empty());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn search(
        &self,
        user: &str,
        query: &str,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        self.engine().search(user, query, after, limit)
    }
}

impl UserView<'_> {
    /// As [`SessionStore::search`], over this user's messages.
    pub fn search(&self, query: &str, after: Option<SearchCursor>, limit: usize) -> Result<SearchPage> {
        self.store.search(self.user, query, after, limit)
    }
}
