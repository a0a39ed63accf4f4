//! Connections to the server: a small pool of blocking clients, and the
//! transaction runner that retries serialization failures and deadlocks.
//!
//! The pool is a `Mutex<Vec<Client>>` of idle clients and a count of the
//! clients handed out, bounded by [`MAX_CONNECTIONS`]: a caller takes an
//! idle client (or connects a new one while under the bound, or waits) and
//! gives it back when its call is done; a client whose connection broke is
//! dropped instead. The lock is held only to take or give back a client,
//! never across a query.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, IsolationLevel, NoTls, Transaction};

use crate::error::{Error, Result};
use crate::location::redacted_location;
use crate::model::Durability;

/// Most connections one store holds at once.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// Attempts of a transaction that the server aborted as a serialization
/// failure or a deadlock (SQLSTATE 40001, 40P01), the first included.
const ATTEMPTS: u32 = 12;
/// The wait before the second attempt; doubled for each later one (with a
/// random part), up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Why a transaction's body stopped: the server's error (retried when it
/// is a serialization failure or a deadlock), or the store's own refusal.
pub(crate) enum Failure {
    Server(postgres::Error),
    Store(Error),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Server(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

/// The result of a transaction's body.
pub(crate) type Step<T> = std::result::Result<T, Failure>;

/// The pool of connections to one database.
pub(crate) struct Pool {
    config: Config,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    /// Clients handed out and not given back.
    busy: usize,
}

impl Pool {
    /// Parses `url` and connects once, so that a wrong URL, an unreachable
    /// server or a refused login fails the open.
    pub(crate) fn connect(url: &str) -> Result<(Pool, Client)> {
        let config: Config = url
            .parse()
            .map_err(|e| Error::invalid("database URL", format!("{}: {e}", redacted_location(url))))?;
        let client = config
            .connect(NoTls)
            .map_err(|e| server_error("connect to", &e))?;
        let pool = Pool {
            config,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                busy: 1,
            }),
            freed: Condvar::new(),
        };
        Ok((pool, client))
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle client, or a new connection while under the bound, or the
    /// first one given back.
    fn take(&self) -> Result<Client> {
        let mut state = self.lock();
        loop {
            if let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    continue;
                }
                state.busy += 1;
                return Ok(client);
            }
            if state.busy < MAX_CONNECTIONS {
                state.busy += 1;
                drop(state);
                return self.config.connect(NoTls).map_err(|e| {
                    self.lock().busy -= 1;
                    self.freed.notify_one();
                    server_error("connect to", &e)
                });
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// A connection of its own, outside the pool's bound: a snapshot or an
    /// import holds one for its life.
    pub(crate) fn dedicated(&self) -> Result<Client> {
        self.config
            .connect(NoTls)
            .map_err(|e| server_error("connect to", &e))
    }

    /// Gives `client` back; one whose connection broke is dropped.
    pub(crate) fn give_back(&self, client: Client) {
        let mut state = self.lock();
        state.busy -= 1;
        if !client.is_closed() {
            state.idle.push(client);
        }
        drop(state);
        self.freed.notify_one();
    }

    /// Runs `body` in a read-committed transaction that it may lock rows
    /// in (`SELECT ... FOR UPDATE`), commits it (without waiting for the
    /// server's WAL flush when `durability` is relaxed), and retries it
    /// on a serialization failure or a deadlock.
    pub(crate) fn write<T>(
        &self,
        durability: Durability,
        mut body: impl FnMut(&mut Transaction<'_>) -> Step<T>,
    ) -> Result<T> {
        self.run("write", |client| {
            let mut txn = client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .map_err(Begin)?;
            if durability == Durability::Relaxed {
                txn.batch_execute("SET LOCAL synchronous_commit TO OFF")?;
            }
            let value = body(&mut txn)?;
            txn.commit()?;
            Ok(value)
        })
    }

    /// Runs `body` in a read-only transaction on one snapshot (repeatable
    /// read), retried as [`write`](Self::write) is.
    pub(crate) fn read<T>(&self, mut body: impl FnMut(&mut Transaction<'_>) -> Step<T>) -> Result<T> {
        self.run("read", |client| {
            let mut txn = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(Begin)?;
            let value = body(&mut txn)?;
            txn.commit()?;
            Ok(value)
        })
    }

    /// Runs `attempt` on a pooled client until it succeeds, is refused, or
    /// fails with an error a retry cannot help.
    fn run<T>(
        &self,
        action: &'static str,
        mut attempt: impl FnMut(&mut Client) -> std::result::Result<T, Attempt>,
    ) -> Result<T> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            let outcome = attempt(&mut Lease::new(self, self.take()?));
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(Attempt::Failed(Failure::Store(refusal))) => return Err(refusal),
                // An idle connection the server closed meanwhile: nothing
                // was sent, so a new connection is safe.
                Err(Attempt::Begin(Begin(e))) if connection_lost(&e) && tries < ATTEMPTS => continue,
                Err(Attempt::Begin(Begin(e)) | Attempt::Failed(Failure::Server(e))) => e,
            };
            if !is_retryable(&error) || tries >= ATTEMPTS {
                return Err(server_error(action, &error));
            }
            std::thread::sleep(backoff + jitter(backoff));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A client taken from the pool, given back when dropped (after a panic
/// of the caller's body too, so the pool never shrinks).
struct Lease<'p> {
    pool: &'p Pool,
    client: Option<Client>,
}

impl<'p> Lease<'p> {
    fn new(pool: &'p Pool, client: Client) -> Self {
        Lease {
            pool,
            client: Some(client),
        }
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a lease holds its client until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a lease holds its client until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.give_back(client);
        }
    }
}

/// The error of a transaction's `BEGIN`: nothing of the call was sent.
struct Begin(postgres::Error);

/// How one attempt of a transaction ended.
enum Attempt {
    Begin(Begin),
    Failed(Failure),
}

impl From<Begin> for Attempt {
    fn from(e: Begin) -> Self {
        Attempt::Begin(e)
    }
}

impl From<Failure> for Attempt {
    fn from(f: Failure) -> Self {
        Attempt::Failed(f)
    }
}

impl From<postgres::Error> for Attempt {
    fn from(e: postgres::Error) -> Self {
        Attempt::Failed(Failure::Server(e))
    }
}

/// A serialization failure or a deadlock: the server rolled the
/// transaction back, and running it again is safe.
fn is_retryable(error: &postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Up to `span` more, drawn at random, so that writers that collided do
/// not collide again.
fn jitter(span: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(random % nanos)
}

/// The connection broke, or the server ended it (a connection exception,
/// SQLSTATE class 08, or an operator intervention, 57P0x: the server shut
/// down, or `pg_terminate_backend`).
fn connection_lost(error: &postgres::Error) -> bool {
    error.is_closed()
        || error
            .code()
            .is_some_and(|code| code.code().starts_with("08") || code.code().starts_with("57P0"))
}

/// The server could not be reached or the connection broke: an error of
/// the connection ([`connection_lost`]), or of the socket under it (a
/// refused connection, a reset, a timeout), rather than the server's
/// answer to what was asked.
fn unreachable(error: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    connection_lost(error)
}

/// What the database server answered, or why it could not be reached: the
/// source of an [`Error::Storage`] or [`Error::Unavailable`] of the
/// PostgreSQL engine.
#[derive(Debug)]
pub(crate) struct ServerError {
    /// What was being done (`connect to`, `read`, `write`, ...).
    action: &'static str,
    /// The SQLSTATE the server answered, when it answered one.
    code: Option<String>,
    why: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.action, self.why)?;
        match &self.code {
            Some(code) => write!(f, " (SQLSTATE {code})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ServerError {}

/// The PostgreSQL engine's error for `error`, raised while doing `action`:
/// [`Error::Unavailable`] when the server could not be reached or the
/// connection broke, else [`Error::Storage`].
pub(crate) fn server_error(action: &'static str, error: &postgres::Error) -> Error {
    let code = error.code().map(|code| code.code().to_owned());
    let why = if connection_lost(error) {
        format!(
            "the connection to the server was lost ({error}): nothing of the call was committed, \
             unless the loss came during its commit; retrying is safe (an append retried with its \
             idempotency key is done once)"
        )
    } else {
        match error.as_db_error() {
            Some(db) => db.to_string(),
            None => error.to_string(),
        }
    };
    let source = std::sync::Arc::new(ServerError { action, code, why });
    if unreachable(error) {
        Error::Unavailable {
            engine: "postgres",
            source,
        }
    } else {
        Error::Storage {
            engine: "postgres",
            source,
        }
    }
}
