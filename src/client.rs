//! The client of a store's local socket (feature `client`): the calls of a
//! store that another process holds, made through the socket it serves
//! (see [`SessionStore::socket_path`]), answering the library's own types.
//!
//! [`SocketClient`] has the names and the answers of the
//! [`SessionStore`] calls it offers: a program (the `sessionstore` CLI, a
//! cron job) that finds the file in use ([`Error::InUse`]) connects and
//! carries on as if it had opened the store. The holder applies every rule;
//! its refusals come back as the same errors: a write to a missing, expired
//! or foreign session is [`Error::SessionNotFound`], a read of one
//! `Ok(None)`, anything else [`Error::Remote`] with the holder's message.
//!
//! Each call is one HTTP/1.1 request on a new connection, run to its end
//! on a tokio runtime of the calling thread.
//!
//! ```
//! use sessionstore::client::SocketClient;
//! use sessionstore::{Error, NewMessage, SessionStore};
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("s.redb");
//! let holder = SessionStore::open(&path)?; // the chatbot, say
//! let id = holder.create_session(Some("ana"))?;
//!
//! // Anyone else: the file is in use, so go through its socket (here, in
//! // the holder's own process, `AlreadyOpen`; in another, `InUse`).
//! assert!(matches!(SessionStore::open(&path), Err(Error::AlreadyOpen { .. })));
//! let client = SocketClient::connect(&path)?;
//! client.add_messages(id, vec![NewMessage::user("hello")])?;
//! assert_eq!(holder.get_session(id)?.unwrap().messages.len(), 1);
//! assert_eq!(client.stats()?.messages, 1);
//! # Ok::<(), sessionstore::Error>(())
//! ```

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::{
    CheckReport, CompactReport, Erased, Error, Message, NewMessage, Result, SearchCursor, SearchHit,
    SearchPage, Session, SessionCursor, SessionInfo, SessionPage, SessionStore, SessionSummary, Stats,
    StoreOptions, Uuid,
};
use std::sync::Arc;

/// A connection to the store another process holds, through its socket.
#[derive(Debug)]
pub struct SocketClient {
    /// The store file.
    path: PathBuf,
    /// Its socket.
    socket: PathBuf,
    runtime: tokio::runtime::Runtime,
}

/// A store as a process reaches it: opened here when the file is free,
/// else through the socket of the process that holds it.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sessionstore::client::Opened;
/// use sessionstore::{SessionStore, StoreOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("s.redb");
/// let options = StoreOptions::default();
/// let wait = Duration::from_secs(2);
/// let first = Opened::open(&path, &options, Instant::now(), wait)?;
/// assert!(matches!(first, Opened::Local(_)));
/// let second = Opened::open(&path, &options, Instant::now(), wait)?;
/// assert!(matches!(second, Opened::Held(_)));
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Debug)]
pub enum Opened {
    /// The file was free: opened by this process.
    Local(SessionStore),
    /// The file is in use: its holder answers through its socket.
    Held(SocketClient),
}

impl Opened {
    /// Opens the store at `path` with `options`;
    /// when another process (or another handle in this one) holds it, connects
    /// to its socket instead.
    ///
    /// A holder serves its socket from just after its open to just before
    /// its close: one found between (a short-lived command starting or
    /// ending, say) is asked again, every 5 ms, until `wait` has passed
    /// since `started`; then the last refusal is answered
    /// ([`Error::InUseNoSocket`] for a holder that serves no socket).
    pub fn open(path: &Path, options: &StoreOptions, started: Instant, wait: Duration) -> Result<Opened> {
        loop {
            let refused = match SessionStore::open_with(path, options.clone()) {
                Ok(store) => return Ok(Opened::Local(store)),
                Err(Error::InUse { .. } | Error::AlreadyOpen { .. }) => match SocketClient::connect(path) {
                    Ok(client) => return Ok(Opened::Held(client)),
                    Err(error) => error,
                },
                Err(error) => return Err(error),
            };
            if started.elapsed() >= wait {
                return Err(refused);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether `error` says that the holder stopped serving its socket (it is
/// closing the store): open the store again and retry (appends with an
/// idempotency key).
pub fn holder_gone(error: &Error) -> bool {
    matches!(error, Error::InUseNoSocket { .. } | Error::HolderGone { .. })
}

/// A consistent copy of a store another process holds, written by the
/// holder (a backup) into a new folder beside the store and opened here
/// (without a socket): for the reads the API does not serve (a
/// conversion, say). Dereferences to the copy's [`SessionStore`]; the
/// folder and the copy are removed when it is dropped.
#[derive(Debug)]
pub struct HeldCopy {
    store: Option<SessionStore>,
    folder: PathBuf,
}

impl std::ops::Deref for HeldCopy {
    type Target = SessionStore;
    fn deref(&self) -> &SessionStore {
        self.store.as_ref().expect("the copy is open until dropped")
    }
}

impl Drop for HeldCopy {
    fn drop(&mut self) {
        drop(self.store.take());
        if let Err(e) = std::fs::remove_dir_all(&self.folder) {
            tracing::warn!(folder = %self.folder.display(), error = %e, "removing the copy of a held store");
        }
    }
}

/// The error body of the API: `{"error": {"kind", "message", ...}}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    kind: String,
    message: String,
}

/// An answer of the holder: its status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl SocketClient {
    /// Connects to the socket of the store at `path` (the store's own path,
    /// not the socket's). Refused with [`Error::InUseNoSocket`] when no
    /// process serves it: the file is held by a process that serves no
    /// socket, or by none.
    pub fn connect(path: impl AsRef<Path>) -> Result<SocketClient> {
        let path = path.as_ref().to_path_buf();
        let socket = SessionStore::socket_path(&path);
        if UnixStream::connect(&socket).is_err() {
            return Err(Error::InUseNoSocket { path, socket });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("start a runtime to reach", &socket, e))?;
        Ok(SocketClient {
            path,
            socket,
            runtime,
        })
    }

    /// The store file's path, as given to [`connect`](Self::connect).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request (with an `Idempotency-Key` when given) and reads
    /// the whole answer.
    fn send(&self, method: Method, target: &str, body: Option<String>, key: Option<&str>) -> Result<Answer> {
        let failed = |e: &dyn std::fmt::Display| Error::HolderGone {
            path: self.path.clone(),
            socket: self.socket.clone(),
            why: e.to_string(),
        };
        let body = body.unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, "localhost");
        if !body.is_empty() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| failed(&e))?;
        self.runtime.block_on(async {
            // The holder stopped serving since `connect`.
            let stream =
                tokio::net::UnixStream::connect(&self.socket)
                    .await
                    .map_err(|_| Error::InUseNoSocket {
                        path: self.path.clone(),
                        socket: self.socket.clone(),
                    })?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| failed(&e))?;
            let driver = tokio::spawn(connection);
            let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(&e))?
                .to_bytes();
            driver.abort();
            Ok(Answer { status, body })
        })
    }

    /// Sends a request; a success's body read as `T`, an error answer as
    /// the error it reports.
    fn call<T: DeserializeOwned>(&self, method: Method, target: &str, body: Option<String>) -> Result<T> {
        let answer = self.send(method, target, body, None)?;
        if !answer.status.is_success() {
            return Err(self.error(&answer));
        }
        self.parse(&answer)
    }

    /// As [`call`](Self::call), with `None` for a 404 `not_found`.
    fn read<T: DeserializeOwned>(&self, target: &str) -> Result<Option<T>> {
        let answer = self.send(Method::GET, target, None, None)?;
        match self.error_of(&answer) {
            None => self.parse(&answer).map(Some),
            Some(Error::Remote { kind, .. }) if kind == "not_found" => Ok(None),
            Some(error) => Err(error),
        }
    }

    /// As [`call`](Self::call), a 404 `not_found` being
    /// [`Error::SessionNotFound`] of `id`.
    fn write<T: DeserializeOwned>(
        &self,
        id: Uuid,
        method: Method,
        target: &str,
        body: Option<String>,
        key: Option<&str>,
    ) -> Result<T> {
        let answer = self.send(method, target, body, key)?;
        match self.error_of(&answer) {
            None => self.parse(&answer),
            Some(Error::Remote { kind, .. }) if kind == "not_found" => Err(Error::SessionNotFound(id)),
            Some(error) => Err(error),
        }
    }

    fn parse<T: DeserializeOwned>(&self, answer: &Answer) -> Result<T> {
        serde_json::from_slice(&answer.body).map_err(|e| Error::Remote {
            status: answer.status.as_u16(),
            kind: "bad_answer".to_owned(),
            message: format!(
                "the store's socket {} answered what this client cannot read: {e}",
                self.socket.display()
            ),
        })
    }

    fn error_of(&self, answer: &Answer) -> Option<Error> {
        (!answer.status.is_success()).then(|| self.error(answer))
    }

    /// The error an answer reports.
    fn error(&self, answer: &Answer) -> Error {
        let status = answer.status.as_u16();
        match serde_json::from_slice::<ErrorAnswer>(&answer.body) {
            Ok(ErrorAnswer { error }) => Error::Remote {
                status,
                kind: error.kind,
                message: error.message,
            },
            Err(_) => Error::Remote {
                status,
                kind: "bad_answer".to_owned(),
                message: format!(
                    "the store's socket {} answered {}: {}",
                    self.socket.display(),
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ),
            },
        }
    }

    /// As [`SessionStore::create_session`].
    pub fn create_session(&self, user_id: Option<&str>) -> Result<Uuid> {
        let session: Session = self.call(
            Method::POST,
            "/v1/sessions",
            Some(json!({ "user_id": user_id }).to_string()),
        )?;
        Ok(session.info.session_id)
    }

    /// As [`SessionStore::add_messages`]: one commit for the list.
    pub fn add_messages(&self, id: Uuid, messages: Vec<NewMessage>) -> Result<Vec<u64>> {
        self.append(id, None, None, messages)
    }

    /// As [`SessionStore::add_messages_idempotent`]: a retry with the same
    /// `key` (after [`Error::HolderGone`], say) appends nothing and answers
    /// the first ids.
    pub fn add_messages_idempotent(
        &self,
        id: Uuid,
        key: &str,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        self.append(id, Some(key), expected_next_seq, messages)
    }

    fn append(
        &self,
        id: Uuid,
        key: Option<&str>,
        expected_next_seq: Option<u64>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>> {
        #[derive(Deserialize)]
        struct Ids {
            ids: Vec<u64>,
        }
        #[derive(Serialize)]
        struct Append<'a> {
            messages: Vec<MessageBody<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            expected_next_seq: Option<u64>,
        }
        let messages = messages.iter().map(MessageBody::of).collect::<Result<_>>()?;
        let body = serde_json::to_string(&Append {
            messages,
            expected_next_seq,
        })
        .map_err(|e| Error::invalid("messages", e.to_string()))?;
        let target = format!("/v1/sessions/{id}/messages");
        let ids: Ids = self.write(id, Method::POST, &target, Some(body), key)?;
        Ok(ids.ids)
    }

    /// As [`SessionStore::get_session`].
    pub fn get_session(&self, id: Uuid) -> Result<Option<Session>> {
        self.read(&format!("/v1/sessions/{id}"))
    }

    /// As [`SessionStore::session_info`]: expired sessions too.
    pub fn session_info(&self, id: Uuid) -> Result<Option<SessionInfo>> {
        self.read(&format!("/v1/admin/sessions/{id}"))
    }

    /// As [`SessionStore::get_recent_messages`].
    pub fn get_recent_messages(&self, id: Uuid, n: u64) -> Result<Option<Vec<Arc<Message>>>> {
        let session: Option<Session> = self.read(&format!("/v1/sessions/{id}?last={n}"))?;
        Ok(session.map(|s| s.messages))
    }

    /// As [`SessionStore::expire_old_sessions`].
    pub fn expire_old_sessions(&self, max_age: Duration) -> Result<u64> {
        #[derive(Deserialize)]
        struct Expired {
            expired: u64,
        }
        let body = json!({ "max_age_seconds": max_age.as_secs() }).to_string();
        let answer: Expired = self.call(Method::POST, "/v1/admin/expire", Some(body))?;
        Ok(answer.expired)
    }

    /// As [`SessionStore::purge_expired`].
    pub fn purge_expired(&self, older_than: Duration) -> Result<u64> {
        #[derive(Deserialize)]
        struct Purged {
            purged: u64,
        }
        let body = json!({ "older_than_seconds": older_than.as_secs() }).to_string();
        let answer: Purged = self.call(Method::POST, "/v1/admin/purge", Some(body))?;
        Ok(answer.purged)
    }

    /// As [`SessionStore::user_sessions_page`].
    pub fn user_sessions_page(
        &self,
        user: &str,
        include_expired: bool,
        cursor: Option<SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage> {
        #[derive(Deserialize)]
        struct Page {
            sessions: Vec<SessionSummary>,
            next_cursor: Option<String>,
        }
        let mut target = format!(
            "/v1/users/{}/sessions?include_expired={include_expired}&limit={limit}",
            encode(user)
        );
        if let Some(cursor) = cursor {
            target.push_str(&format!("&cursor={}", encode(&cursor.to_string())));
        }
        let page: Page = self.call(Method::GET, &target, None)?;
        Ok(SessionPage {
            sessions: page.sessions,
            next: page.next_cursor.map(|text| text.parse()).transpose()?,
        })
    }

    /// As [`SessionStore::search`].
    pub fn search(
        &self,
        user: &str,
        query: &str,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage> {
        #[derive(Deserialize)]
        struct Page {
            hits: Vec<SearchHit>,
            next_cursor: Option<String>,
        }
        let mut target = format!(
            "/v1/users/{}/search?q={}&limit={limit}",
            encode(user),
            encode(query)
        );
        if let Some(cursor) = after {
            target.push_str(&format!("&cursor={}", encode(&cursor.to_string())));
        }
        let page: Page = self.call(Method::GET, &target, None)?;
        Ok(SearchPage {
            hits: page.hits,
            next: page.next_cursor.map(|text| text.parse()).transpose()?,
        })
    }

    /// As [`SessionStore::expire_session`].
    pub fn expire_session(&self, id: Uuid) -> Result<bool> {
        #[derive(Deserialize)]
        struct Expired {
            expired: bool,
        }
        let answer: Expired =
            self.write(id, Method::POST, &format!("/v1/sessions/{id}/expire"), None, None)?;
        Ok(answer.expired)
    }

    /// As [`SessionStore::fork_session`].
    pub fn fork_session(&self, id: Uuid, at_seq: u64) -> Result<Uuid> {
        #[derive(Deserialize)]
        struct Forked {
            session_id: Uuid,
        }
        let body = serde_json::json!({ "at_seq": at_seq }).to_string();
        let answer: Forked = self.write(
            id,
            Method::POST,
            &format!("/v1/sessions/{id}/fork"),
            Some(body),
            None,
        )?;
        Ok(answer.session_id)
    }

    /// As [`SessionStore::delete_session`].
    pub fn delete_session(&self, id: Uuid) -> Result<u64> {
        #[derive(Deserialize)]
        struct Deleted {
            deleted_messages: u64,
        }
        let answer: Deleted = self.write(id, Method::DELETE, &format!("/v1/sessions/{id}"), None, None)?;
        Ok(answer.deleted_messages)
    }

    /// As [`SessionStore::erase_user`].
    pub fn erase_user(&self, user: &str) -> Result<Erased> {
        #[derive(Deserialize)]
        struct Answer {
            sessions: u64,
            messages: u64,
        }
        let answer: Answer = self.call(Method::DELETE, &format!("/v1/users/{}", encode(user)), None)?;
        Ok(Erased {
            sessions: answer.sessions,
            messages: answer.messages,
        })
    }

    /// As [`SessionStore::stats`].
    pub fn stats(&self) -> Result<Stats> {
        self.call(Method::GET, "/v1/admin/stats", None)
    }

    /// As [`SessionStore::backup_to`]: the holder writes the copy; `dest`
    /// is made absolute here, where it was given, and the holder's errors
    /// name it as given.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        let absolute =
            std::path::absolute(dest).map_err(|e| Error::io("find the absolute path of", dest, e))?;
        let Some(text) = absolute.to_str() else {
            return Err(Error::invalid("path", format!("{} is not UTF-8", dest.display())));
        };
        let body = json!({ "path": text }).to_string();
        match self.call::<Value>(Method::POST, "/v1/admin/backup", Some(body)) {
            Ok(_) => Ok(()),
            Err(Error::Remote {
                status,
                kind,
                message,
            }) => Err(Error::Remote {
                status,
                kind,
                message: message.replace(text, &dest.display().to_string()),
            }),
            Err(error) => Err(error),
        }
    }

    /// A consistent copy of the store, opened with `options` (its socket
    /// off): the holder writes it into a new folder beside the store
    /// (`.sessionstore-copy-<random>`, mode 0700), removed with the copy
    /// when the [`HeldCopy`] is dropped, or at once if this fails.
    ///
    /// ```
    /// use sessionstore::client::SocketClient;
    /// use sessionstore::{SessionStore, StoreOptions};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let holder = SessionStore::open(&path)?;
    /// holder.create_session(Some("ana"))?;
    /// let copy = SocketClient::connect(&path)?.copy(StoreOptions::default())?;
    /// assert_eq!(copy.snapshot()?.session_count()?, 1);
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn copy(&self, options: StoreOptions) -> Result<HeldCopy> {
        use std::os::unix::fs::DirBuilderExt;
        let beside = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let folder = beside.join(format!(".sessionstore-copy-{}", Uuid::new_v4().simple()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&folder)
            .map_err(|e| Error::io("make a folder for a copy of the store in", beside, e))?;
        let mut copy = HeldCopy { store: None, folder };
        let file = copy.folder.join("copy.redb");
        self.backup_to(&file)?;
        let options = StoreOptions {
            serve_socket: false,
            ..options
        };
        copy.store = Some(SessionStore::open_with(&file, options)?);
        Ok(copy)
    }

    /// As [`SessionStore::check`].
    pub fn check(&self) -> Result<CheckReport> {
        #[derive(Deserialize)]
        struct Report {
            sessions: u64,
            messages: u64,
            problems: Vec<String>,
        }
        let report: Report = self.call(Method::POST, "/v1/admin/check", None)?;
        Ok(CheckReport {
            sessions: report.sessions,
            messages: report.messages,
            problems: report.problems,
        })
    }

    /// As [`SessionStore::compact`].
    pub fn compact(&self) -> Result<CompactReport> {
        #[derive(Deserialize)]
        struct Report {
            before: u64,
            after: u64,
        }
        let report: Report = self.call(Method::POST, "/v1/admin/compact", None)?;
        Ok(CompactReport {
            before: report.before,
            after: report.after,
        })
    }
}

/// A message as the append route takes it, its JSON objects as their
/// exact text.
#[derive(Serialize)]
struct MessageBody<'a> {
    role: crate::Role,
    content: &'a str,
    query_plan: Option<Box<RawValue>>,
    candidate_set: Option<Box<RawValue>>,
}

impl<'a> MessageBody<'a> {
    fn of(message: &'a NewMessage) -> Result<Self> {
        let raw = |what: &'static str, text: &Option<crate::JsonText>| {
            text.as_ref()
                .map(|text| RawValue::from_string(text.as_str().to_owned()))
                .transpose()
                .map_err(|e| Error::invalid(what, e.to_string()))
        };
        Ok(MessageBody {
            role: message.role,
            content: &message.content,
            query_plan: raw("query_plan", &message.query_plan)?,
            candidate_set: raw("candidate_set", &message.candidate_set)?,
        })
    }
}

/// `text` as one segment of a URL's path or a query value: every byte but
/// the unreserved ones percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_but_the_unreserved_is_encoded() {
        assert_eq!(encode("ana-1_~."), "ana-1_~.");
        assert_eq!(encode("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
    }
}
