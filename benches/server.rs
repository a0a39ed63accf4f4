//! `cargo bench --bench server`: sessionstore's HTTP API against Redis,
//! side by side in one run, on loopback with 64 keep-alive connections a
//! side (one per worker task on a tokio runtime), for four lines:
//!
//! 1. reading a session of 20 messages, spread over 1,000 sessions;
//! 2. durable appends of one message;
//! 3. listing a user's sessions for a sidebar (20 at most);
//! 4. durable appends of one message to sessions without a user, which the
//!    search index leaves out (on Redis: without the user index's `ZADD`).
//!
//! sessionstore: `sessionstore::server::serve` (the router of `sessionstore
//! serve`) in this process on a tokio runtime of its own, on TCP 127.0.0.1,
//! over a store opened with the default options (durable appends).
//!
//! Redis: Debian's `redis-server`, started here in a temporary folder with
//! `--appendonly yes --appendfsync always --save ""`, used the way the
//! OpenAI Agents SDK's `RedisSession` does: a list of JSON items per session
//! (`RPUSH`, read with `LRANGE 0 -1`), a hash of metadata per session, each
//! append one `MULTI`/`EXEC` of `HSET` (session_id, created_at, updated_at),
//! `RPUSH`, `HSET updated_at`, plus the `ZADD` of a user index (the SDK has
//! none; a sidebar needs one): the sidebar is `ZREVRANGE 0 19` and one
//! pipeline of `HMGET title updated_at` and `LLEN` per session. Without
//! `redis-server` the Redis side is skipped, loudly.
//!
//! Both sides hold the same data: 1,000 sessions of 20 messages (200 bytes
//! to 2 KB of text each) over 100 users, and 1,000 sessions without a user
//! holding the same messages. The lines run in turn (those named in
//! `SESSIONSTORE_BENCH_LINES`, e.g. `append,anonymous-append`, when set), each first
//! on sessionstore, then on Redis: a warm-up (a fifth of the measured time,
//! at least a second), then `SESSIONSTORE_BENCH_SECS` seconds (default 10)
//! measured. Only successful answers count; any error answer fails the run.
//! The table (requests per second, p50 and p99, and the share of each
//! measured window in which the machine had threads waiting for a CPU) is
//! printed and written to `target/server-bench.md`. Files go under `BENCH_DIR` when set (else the
//! system's temporary folder): put it on the disk you mean to measure.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Rng;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use serde::Deserialize;
use sessionstore::server::ServerConfig;
use sessionstore::{Durability, NewMessage, Role, SessionStore, StoreCounters, Uuid};

/// Connections (and worker tasks) a side.
const CONNECTIONS: usize = 64;
const SESSIONS: usize = 1_000;
const MESSAGES_PER_SESSION: usize = 20;
const USERS: usize = 100;
/// The page size of the sidebar.
const SIDEBAR: usize = 20;
/// Messages the appends draw from.
const APPEND_POOL: usize = 512;
/// `RedisSession`'s default `key_prefix`.
const REDIS_PREFIX: &str = "agents:session";

type Outcome<T> = std::result::Result<T, String>;

/// The allocator `sessionstore serve` runs with (see its `main.rs`): the
/// server measured here is that one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// ---- data ---------------------------------------------------------------

const WORDS: [&str; 48] = [
    "the",
    "library",
    "catalogue",
    "holds",
    "several",
    "editions",
    "of",
    "this",
    "novel",
    "printed",
    "in",
    "London",
    "and",
    "Oxford",
    "between",
    "1890",
    "1925",
    "with",
    "illustrations",
    "by",
    "a",
    "local",
    "engraver",
    "most",
    "copies",
    "are",
    "bound",
    "cloth",
    "one",
    "signed",
    "author",
    "you",
    "could",
    "narrow",
    "search",
    "publisher",
    "subject",
    "year",
    "place",
    "first",
    "edition",
    "reprints",
    "later",
    "translated",
    "into",
    "French",
    "German",
    "scholars",
];

/// A message: its role, its text, and the JSON item both sides are sent.
struct Message {
    role: Role,
    content: String,
    /// `{"role": ..., "content": ...}`: the item `RedisSession` stores, and
    /// the element of an append's `messages`.
    item: String,
}

impl Message {
    /// Text of 200 bytes to 2 KB, in sentences of varied words.
    fn new(rng: &mut Rng, role: Role) -> Message {
        let target = 200 + rng.below(1_800) as usize;
        let mut content = String::with_capacity(target + 64);
        while content.len() < target {
            let words = 6 + rng.below(12);
            for i in 0..words {
                let word = WORDS[rng.below(WORDS.len() as u64) as usize];
                if i == 0 {
                    let mut chars = word.chars();
                    content.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                    content.push_str(chars.as_str());
                } else {
                    content.push(' ');
                    content.push_str(word);
                }
            }
            content.push_str(". ");
        }
        let item = serde_json::json!({"role": role.as_str(), "content": content.trim_end()}).to_string();
        Message {
            role,
            content: content.trim_end().to_owned(),
            item,
        }
    }

    fn copy(&self) -> Message {
        Message {
            role: self.role,
            content: self.content.clone(),
            item: self.item.clone(),
        }
    }

    fn to_new_message(&self) -> NewMessage {
        NewMessage::new(self.role, self.content.clone())
    }
}

/// The sidebar title sessionstore gives: the first user message, cut to 47
/// characters and `...` when over 50.
fn title(first_user_message: &str) -> String {
    if first_user_message.chars().count() > 50 {
        let cut: String = first_user_message.chars().take(47).collect();
        format!("{cut}...")
    } else {
        first_user_message.to_owned()
    }
}

struct Session {
    id: Uuid,
    /// `None`: a session without a user, which the search index leaves out.
    user: Option<usize>,
    messages: Vec<Message>,
}

impl Session {
    fn redis_key(&self) -> String {
        format!("{REDIS_PREFIX}:{}", self.id)
    }
}

fn redis_messages_key(session_key: &str) -> String {
    format!("{session_key}:messages")
}

fn user_name(user: usize) -> String {
    format!("user-{user:03}")
}

/// The user index the sidebar reads (a sorted set by last activity).
fn redis_user_key(user: &str) -> String {
    format!("agents:user:{user}:sessions")
}

/// What both sides hold, and what the appends add.
struct Data {
    sessions: Vec<Session>,
    /// As many sessions without a user, holding the same messages.
    anonymous: Vec<Session>,
    appends: Vec<Message>,
}

/// Loads the sessions into the store (relaxed: loading is not measured) and
/// answers them with the ids the store gave.
fn load_sessionstore(store: &SessionStore, rng: &mut Rng) -> sessionstore::Result<Data> {
    let relaxed = store.with_durability(Durability::Relaxed);
    let mut sessions = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let user = i % USERS;
        let messages: Vec<Message> = (0..MESSAGES_PER_SESSION)
            .map(|j| Message::new(rng, if j % 2 == 0 { Role::User } else { Role::Assistant }))
            .collect();
        let id = relaxed.create_session(Some(&user_name(user)))?;
        relaxed.add_messages(id, messages.iter().map(Message::to_new_message).collect())?;
        sessions.push(Session {
            id,
            user: Some(user),
            messages,
        });
    }
    let mut anonymous = Vec::with_capacity(SESSIONS);
    for session in &sessions {
        let id = relaxed.create_session(None)?;
        relaxed.add_messages(id, session.messages.iter().map(Message::to_new_message).collect())?;
        let messages = session.messages.iter().map(Message::copy).collect();
        anonymous.push(Session {
            id,
            user: None,
            messages,
        });
    }
    let appends = (0..APPEND_POOL)
        .map(|i| Message::new(rng, if i % 2 == 0 { Role::User } else { Role::Assistant }))
        .collect();
    Ok(Data {
        sessions,
        anonymous,
        appends,
    })
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The same sessions in Redis, as `RedisSession.add_items` leaves them,
/// with the title a sidebar shows and the user index (of the sessions with
/// a user).
async fn load_redis(client: &redis::Client, data: &Data) -> Outcome<()> {
    let mut connection = redis_connection(client).await?;
    let now = unix_now();
    for chunk in data.sessions.chunks(50).chain(data.anonymous.chunks(50)) {
        let mut pipe = redis::pipe();
        for session in chunk {
            let key = session.redis_key();
            let items: Vec<&str> = session.messages.iter().map(|m| m.item.as_str()).collect();
            let first_user = session.messages.iter().find(|m| m.role == Role::User);
            pipe.cmd("HSET")
                .arg(&key)
                .arg("session_id")
                .arg(session.id.to_string())
                .arg("created_at")
                .arg(now.as_secs())
                .arg("updated_at")
                .arg(now.as_secs())
                .arg("title")
                .arg(title(first_user.map_or("", |m| m.content.as_str())));
            pipe.cmd("RPUSH").arg(redis_messages_key(&key)).arg(items);
            if let Some(user) = session.user {
                pipe.cmd("ZADD")
                    .arg(redis_user_key(&user_name(user)))
                    .arg(now.as_secs_f64())
                    .arg(session.id.to_string());
            }
        }
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|e| format!("loading Redis: {e}"))?;
    }
    Ok(())
}

// ---- the two servers ------------------------------------------------------

/// sessionstore's API served on 127.0.0.1 by its own runtime, until dropped.
struct SessionstoreServer {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    runtime: tokio::runtime::Runtime,
}

impl SessionstoreServer {
    fn start(store: SessionStore) -> Outcome<SessionstoreServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-server")
            .build()
            .map_err(|e| format!("server runtime: {e}"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("bind 127.0.0.1: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(sessionstore::server::serve(
            store,
            listener,
            ServerConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(SessionstoreServer {
            address,
            stop: Some(stop),
            served: Some(served),
            runtime,
        })
    }
}

impl Drop for SessionstoreServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = self.runtime.block_on(served);
        }
    }
}

/// A `redis-server` child, killed when dropped.
struct RedisServer {
    child: Child,
    client: redis::Client,
    version: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` with AOF and `appendfsync always`; `None` when
    /// it is not installed.
    fn start() -> Outcome<Option<RedisServer>> {
        let version = match Command::new("redis-server").arg("--version").output() {
            Ok(output) => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("redis-server --version: {e}")),
        };
        let dir = common::scratch();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start redis-server: {e}"))?;
        let info = redis::ConnectionAddr::Tcp("127.0.0.1".to_owned(), port);
        let info = redis::IntoConnectionInfo::into_connection_info(info)
            .map_err(|e| e.to_string())?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let mut server = RedisServer {
            child,
            client,
            version,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pong(port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("redis-server exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(server))
    }
}

/// Whether a Redis answers PING on `port`.
fn pong(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the clients ----------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Line {
    Read,
    Append,
    List,
    /// Appends to sessions without a user: what an append costs without
    /// the search index (Redis: the same, without the user index).
    AnonymousAppend,
}

impl Line {
    /// The order they run in: the appends without a user before those with
    /// one, whose messages the search index is still indexing afterwards.
    const ALL: [Line; 4] = [Line::Read, Line::AnonymousAppend, Line::Append, Line::List];

    fn name(self) -> &'static str {
        match self {
            Line::Read => "read a 20-message session",
            Line::Append => "durable append (1 message)",
            Line::List => "list a user's sessions (limit 20)",
            Line::AnonymousAppend => "durable append, session without a user",
        }
    }

    /// Its name in `SESSIONSTORE_BENCH_LINES`.
    fn key(self) -> &'static str {
        match self {
            Line::Read => "read",
            Line::Append => "append",
            Line::List => "list",
            Line::AnonymousAppend => "anonymous-append",
        }
    }
}

#[derive(Clone)]
enum Target {
    Sessionstore(SocketAddr),
    Redis(redis::Client),
}

enum Connection {
    Http(SendRequest<Full<Bytes>>),
    Redis(redis::aio::MultiplexedConnection),
}

async fn redis_connection(client: &redis::Client) -> Outcome<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("connect to Redis: {e}"))
}

async fn connect(target: &Target) -> Outcome<Connection> {
    match target {
        Target::Sessionstore(address) => {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect to {address}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(async move {
                // Its failures show in the requests.
                let _ = connection.await;
            });
            Ok(Connection::Http(sender))
        }
        Target::Redis(client) => Ok(Connection::Redis(redis_connection(client).await?)),
    }
}

#[derive(Deserialize)]
struct SessionAnswer {
    messages: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct AppendAnswer {
    ids: Vec<u64>,
}

#[derive(Deserialize)]
struct SidebarAnswer {
    sessions: Vec<IgnoredAny>,
}

/// Sends one request; answers the body when the status is `expected`.
async fn http(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    body: Option<String>,
    expected: StatusCode,
) -> Outcome<Bytes> {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(HOST, "127.0.0.1");
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    sender
        .ready()
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{method} {path}: reading the body: {e}"))?
        .to_bytes();
    if status != expected {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        return Err(format!("{method} {path}: {status}: {shown}"));
    }
    Ok(bytes)
}

fn parse<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Outcome<T> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what}: the answer does not parse: {e}"))
}

fn expect_count(what: &str, got: usize, expected: usize) -> Outcome<()> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: {got} items, expected {expected}"))
    }
}

/// One request of `line`, its session or user drawn from `rng`.
async fn request(connection: &mut Connection, line: Line, data: &Data, rng: &mut Rng) -> Outcome<()> {
    let sessions = match line {
        Line::AnonymousAppend => &data.anonymous,
        Line::Read | Line::Append | Line::List => &data.sessions,
    };
    let session = &sessions[rng.below(SESSIONS as u64) as usize];
    let sessions_per_user = SESSIONS / USERS;
    let user = session.user.map(user_name).unwrap_or_default();
    match (connection, line) {
        (Connection::Http(sender), Line::Read) => {
            let path = format!("/v1/sessions/{}", session.id);
            let body = http(sender, Method::GET, &path, None, StatusCode::OK).await?;
            let answer: SessionAnswer = parse(&path, &body)?;
            expect_count(&path, answer.messages.len(), MESSAGES_PER_SESSION)
        }
        (Connection::Http(sender), Line::Append | Line::AnonymousAppend) => {
            let message = &data.appends[rng.below(APPEND_POOL as u64) as usize];
            let path = format!("/v1/sessions/{}/messages", session.id);
            let body = format!("{{\"messages\":[{}]}}", message.item);
            let answer = http(sender, Method::POST, &path, Some(body), StatusCode::CREATED).await?;
            let answer: AppendAnswer = parse(&path, &answer)?;
            expect_count(&path, answer.ids.len(), 1)
        }
        (Connection::Http(sender), Line::List) => {
            let path = format!("/v1/users/{user}/sessions?limit={SIDEBAR}");
            let body = http(sender, Method::GET, &path, None, StatusCode::OK).await?;
            let answer: SidebarAnswer = parse(&path, &body)?;
            expect_count(&path, answer.sessions.len(), sessions_per_user.min(SIDEBAR))
        }
        (Connection::Redis(connection), Line::Read) => {
            // RedisSession.get_items(): LRANGE, then json.loads of each item.
            let key = redis_messages_key(&session.redis_key());
            let items: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(connection)
                .await
                .map_err(|e| format!("LRANGE {key}: {e}"))?;
            for item in &items {
                parse::<IgnoredAny>(&key, item)?;
            }
            expect_count(&key, items.len(), MESSAGES_PER_SESSION)
        }
        (Connection::Redis(connection), Line::Append | Line::AnonymousAppend) => {
            // RedisSession.add_items(): one MULTI/EXEC pipeline, plus the
            // user index of a session with a user.
            let message = &data.appends[rng.below(APPEND_POOL as u64) as usize];
            let key = session.redis_key();
            let now = unix_now();
            let id = session.id.to_string();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("HSET")
                .arg(&key)
                .arg("session_id")
                .arg(&id)
                .arg("created_at")
                .arg(now.as_secs())
                .arg("updated_at")
                .arg(now.as_secs())
                .cmd("RPUSH")
                .arg(redis_messages_key(&key))
                .arg(&message.item)
                .cmd("HSET")
                .arg(&key)
                .arg("updated_at")
                .arg(now.as_secs());
            if session.user.is_some() {
                pipe.cmd("ZADD")
                    .arg(redis_user_key(&user))
                    .arg(now.as_secs_f64())
                    .arg(&id);
            }
            pipe.query_async::<()>(connection)
                .await
                .map_err(|e| format!("append to {key}: {e}"))
        }
        (Connection::Redis(connection), Line::List) => {
            // The sidebar: the user's latest sessions, then title, last
            // activity and count of each in one pipeline.
            let user_key = redis_user_key(&user);
            let ids: Vec<String> = redis::cmd("ZREVRANGE")
                .arg(&user_key)
                .arg(0)
                .arg(SIDEBAR as isize - 1)
                .query_async(connection)
                .await
                .map_err(|e| format!("ZREVRANGE {user_key}: {e}"))?;
            let mut pipe = redis::pipe();
            for id in &ids {
                let key = format!("{REDIS_PREFIX}:{id}");
                pipe.cmd("HMGET").arg(&key).arg("title").arg("updated_at");
                pipe.cmd("LLEN").arg(redis_messages_key(&key));
            }
            let answers: Vec<redis::Value> = pipe
                .query_async(connection)
                .await
                .map_err(|e| format!("the sidebar of {user_key}: {e}"))?;
            for pair in answers.chunks(2) {
                let complete = matches!(
                    pair,
                    [redis::Value::Array(fields), redis::Value::Int(count)]
                        if *count > 0 && fields.iter().all(|f| !matches!(f, redis::Value::Nil))
                );
                if !complete {
                    return Err(format!(
                        "the sidebar of {user_key}: a session without its metadata"
                    ));
                }
            }
            expect_count(&user_key, ids.len(), sessions_per_user.min(SIDEBAR))
        }
    }
}

// ---- measuring --------------------------------------------------------------

/// What one line measured on one side.
struct Measured {
    requests_per_second: f64,
    /// Latencies of the measured requests, sorted, in microseconds.
    latencies: Vec<u32>,
    /// The CPUs (in cores) that programs other than this one and Redis
    /// used during the measured time: the machine was shared when above 0.
    others_cpu: Option<f64>,
    /// CPU time per answered request, in microseconds, of the serving
    /// side: the server's threads (its runtime, blocking pool and the
    /// store's writer), or redis-server with its children.
    server_cpu_micros: Option<f64>,
}

impl Measured {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        f64::from(self.latencies[rank.clamp(1, self.latencies.len()) - 1]) / 1000.0
    }
}

/// How long each line runs, and the process whose CPU is Redis's.
#[derive(Clone, Copy)]
struct Timing {
    warm_up: Duration,
    measured: Duration,
    redis_pid: Option<u32>,
}

/// Runs `line` against `target` from [`CONNECTIONS`] workers: warm-up,
/// then the measured time; every error fails it.
async fn run_line(target: Target, line: Line, data: Arc<Data>, timing: Timing) -> Outcome<Measured> {
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        connections.push(connect(&target).await?);
    }
    let from = Instant::now() + timing.warm_up;
    let until = from + timing.measured;
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(worker, mut connection)| {
            let data = data.clone();
            // The same draws on both sides.
            let mut rng = Rng::new(1 + worker as u64 + 1_000 * line as u64);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(64 * 1024);
                loop {
                    let began = Instant::now();
                    if began >= until {
                        return Ok::<_, String>(latencies);
                    }
                    request(&mut connection, line, &data, &mut rng).await?;
                    let ended = Instant::now();
                    if began >= from && ended <= until {
                        latencies.push(u32::try_from((ended - began).as_micros()).unwrap_or(u32::MAX));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep_until(from.into()).await;
    let before = CpuTicks::now(timing.redis_pid);
    tokio::time::sleep_until(until.into()).await;
    let after = CpuTicks::now(timing.redis_pid);
    let others_cpu = before
        .as_ref()
        .zip(after.as_ref())
        .map(|(before, after)| after.others_since(before) / timing.measured.as_secs_f64());
    let serving = |ticks: &CpuTicks| match target {
        Target::Sessionstore(_) => ticks.server,
        Target::Redis(_) => ticks.redis,
    };
    let served = before
        .as_ref()
        .zip(after.as_ref())
        .map(|(before, after)| serving(after).saturating_sub(serving(before)) as f64 / TICKS_PER_SECOND);
    let mut latencies = Vec::new();
    for worker in workers {
        let worker = worker.await.map_err(|e| format!("a worker failed: {e}"))?;
        latencies.extend(worker?);
    }
    latencies.sort_unstable();
    let server_cpu_micros = served.map(|seconds| seconds * 1e6 / latencies.len().max(1) as f64);
    Ok(Measured {
        requests_per_second: latencies.len() as f64 / timing.measured.as_secs_f64(),
        latencies,
        others_cpu,
        server_cpu_micros,
    })
}

/// What the store counted during a line (warm-up included): the group
/// commits of the appends, the message cache's hits of the reads.
fn counters_note(line: Line, before: &StoreCounters, after: &StoreCounters) -> String {
    let commits = after.commits - before.commits;
    let requests = after.batch_requests - before.batch_requests;
    let hits = after.message_cache_hits - before.message_cache_hits;
    let misses = after.message_cache_misses - before.message_cache_misses;
    let checkpoints = after.checkpoints - before.checkpoints;
    match line {
        Line::Append | Line::AnonymousAppend => format!(
            "{}: sessionstore made {commits} group commits of {requests} appends ({:.1} a commit), {checkpoints} checkpoints",
            line.name(),
            requests as f64 / commits.max(1) as f64
        ),
        Line::Read | Line::List => format!(
            "{}: sessionstore's message cache: {hits} hits, {misses} misses",
            line.name()
        ),
    }
}

/// How often Redis rewrote its AOF during the run (it does so when the
/// file doubles, from 64 MB: during the appends).
async fn aof_rewrites(client: &redis::Client) -> Outcome<String> {
    let mut connection = redis_connection(client).await?;
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut connection)
        .await
        .map_err(|e| format!("INFO persistence: {e}"))?;
    let rewrites = info
        .lines()
        .find_map(|line| line.strip_prefix("aof_rewrites:"))
        .unwrap_or("unknown")
        .trim();
    Ok(format!("Redis rewrote its AOF {rewrites} times during the run"))
}

/// Clock ticks in a second in `/proc` (Linux's `USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time so far, in clock ticks: the time the machine's processes ran
/// (user and system, not interrupts), and that of this process, of Redis
/// with the children it forks (AOF rewrites), and of the kernel's threads
/// (which serve the two sides' sockets and syncs as much as anyone's).
struct CpuTicks {
    machine: u64,
    ours: u64,
    /// The server's threads in this process (see [`SERVER_THREADS`]).
    server: u64,
    /// redis-server's, with its children that ended.
    redis: u64,
}

/// The names (as `/proc` cuts them, 15 bytes) of the threads that serve
/// the HTTP API: the server's runtime and blocking pool, the store's writer.
const SERVER_THREADS: [&str; 2] = ["bench-server", "sessionstore-wr"];

/// The flag of a kernel thread in `/proc/PID/stat` (`PF_KTHREAD`).
const KERNEL_THREAD: u64 = 0x0020_0000;

impl CpuTicks {
    /// `None` where `/proc` does not tell (not Linux).
    fn now(redis_pid: Option<u32>) -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // The first line: "cpu user nice system idle ...".
        let machine = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(3)
            .map(|field| field.parse::<u64>().unwrap_or(0))
            .sum();
        let (mut ours, mut redis) = (0, 0);
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(process) = ProcessTicks::read(&pid.to_string()) else {
                continue;
            };
            let kernel = process.flags & KERNEL_THREAD != 0;
            if Some(pid) == redis_pid {
                // With its children that ended (AOF rewrites).
                ours += process.own + process.children;
                redis = process.own + process.children;
            } else if kernel || Some(process.parent) == redis_pid {
                ours += process.own;
            }
        }
        let mut server = 0;
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let task = entry.path();
            let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if SERVER_THREADS
                .iter()
                .any(|prefix| name.trim_end().starts_with(prefix))
            {
                let tid = format!("self/task/{}", entry.file_name().to_string_lossy());
                server += ProcessTicks::read(&tid).map_or(0, |thread| thread.own);
            }
        }
        Some(CpuTicks {
            machine,
            ours: ours + ProcessTicks::read("self")?.own,
            server,
            redis,
        })
    }

    /// Seconds of CPU the machine's other programs used since `before`.
    fn others_since(&self, before: &CpuTicks) -> f64 {
        let machine = self.machine.saturating_sub(before.machine);
        let ours = self.ours.saturating_sub(before.ours);
        machine.saturating_sub(ours) as f64 / TICKS_PER_SECOND
    }
}

/// A process's CPU times (`/proc/PID/stat`), in clock ticks.
struct ProcessTicks {
    /// User and system time of its threads.
    own: u64,
    /// That of its children that ended and were waited for.
    children: u64,
    flags: u64,
    parent: u32,
}

impl ProcessTicks {
    fn read(pid: &str) -> Option<ProcessTicks> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command's name, in parentheses: the state (field 3),
        // the parent (4), ..., flags (9), ..., utime (14), stime (15),
        // cutime (16) and cstime (17).
        let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(ProcessTicks {
            own: field(14)? + field(15)?,
            children: field(16)? + field(17)?,
            flags: field(9)?,
            parent: u32::try_from(field(4)?).ok()?,
        })
    }
}

fn seconds_from_env() -> Outcome<u64> {
    match std::env::var("SESSIONSTORE_BENCH_SECS") {
        Err(_) => Ok(10),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "SESSIONSTORE_BENCH_SECS={text:?}: expected a whole number of seconds, at least 1"
            )),
        },
    }
}

/// The lines `SESSIONSTORE_BENCH_LINES` names (comma-separated keys, see
/// [`Line::key`]), in the bench's order; all of them when it is not set.
fn lines_from_env() -> Outcome<Vec<Line>> {
    let Ok(text) = std::env::var("SESSIONSTORE_BENCH_LINES") else {
        return Ok(Line::ALL.to_vec());
    };
    let keys: Vec<&str> = text.split(',').map(str::trim).collect();
    if let Some(unknown) = keys
        .iter()
        .find(|k| !Line::ALL.iter().any(|line| line.key() == **k))
    {
        let known: Vec<&str> = Line::ALL.iter().map(|line| line.key()).collect();
        return Err(format!(
            "SESSIONSTORE_BENCH_LINES: no line {unknown:?} (the lines: {})",
            known.join(", ")
        ));
    }
    Ok(Line::ALL
        .into_iter()
        .filter(|line| keys.contains(&line.key()))
        .collect())
}

fn report_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("server-bench.md")
}

fn table(rows: &[(Line, Measured, Option<Measured>)]) -> String {
    let mut out = String::from(
        "| line | sessionstore req/s | Redis req/s | ratio (ours/Redis) | sessionstore p50 ms | Redis p50 ms | sessionstore p99 ms | Redis p99 ms | others' CPU, cores (ours / Redis) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (line, ours, redis) in rows {
        let (redis_rps, ratio, redis_p50, redis_p99) = match redis {
            Some(r) => (
                format!("{:.0}", r.requests_per_second),
                format!("{:.2}", ours.requests_per_second / r.requests_per_second),
                format!("{:.2}", r.percentile_ms(50.0)),
                format!("{:.2}", r.percentile_ms(99.0)),
            ),
            None => ("skipped".into(), "n/a".into(), "skipped".into(), "skipped".into()),
        };
        let others = |m: &Measured| {
            m.others_cpu
                .map_or("n/a".to_owned(), |cores| format!("{cores:.2}"))
        };
        let redis_others = redis.as_ref().map_or("skipped".to_owned(), others);
        out.push_str(&format!(
            "| {} | {:.0} | {redis_rps} | {ratio} | {:.2} | {redis_p50} | {:.2} | {redis_p99} | {} / {redis_others} |\n",
            line.name(),
            ours.requests_per_second,
            ours.percentile_ms(50.0),
            ours.percentile_ms(99.0),
            others(ours),
        ));
    }
    out
}

fn main() -> Outcome<()> {
    let measured = Duration::from_secs(seconds_from_env()?);
    let redis = RedisServer::start()?;
    let timing = Timing {
        warm_up: (measured / 5).max(Duration::from_secs(1)),
        measured,
        redis_pid: redis.as_ref().map(|r| r.child.id()),
    };
    if redis.is_none() {
        eprintln!("\n!!! redis-server is not installed: the Redis side is SKIPPED (apt-get install -y redis-server) !!!\n");
    }

    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("bench.redb")).map_err(|e| e.to_string())?;
    let loaded = Instant::now();
    let data = Arc::new(load_sessionstore(&store, &mut Rng::new(17)).map_err(|e| e.to_string())?);
    let observed = store.clone();
    let server = SessionstoreServer::start(store)?;
    let clients = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
        .map_err(|e| format!("client runtime: {e}"))?;
    if let Some(redis) = &redis {
        clients.block_on(load_redis(&redis.client, &data))?;
    }
    eprintln!(
        "loaded {SESSIONS} sessions x {MESSAGES_PER_SESSION} messages over {USERS} users, and as many without a user, into {} in {:.1} s; \
         {CONNECTIONS} connections a side, {} s warm-up + {} s measured per line and side",
        if redis.is_some() { "sessionstore and Redis" } else { "sessionstore" },
        loaded.elapsed().as_secs_f64(),
        timing.warm_up.as_secs(),
        timing.measured.as_secs()
    );

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for line in lines_from_env()? {
        eprintln!("{}: sessionstore...", line.name());
        let before = observed.counters();
        let ours = clients.block_on(run_line(
            Target::Sessionstore(server.address),
            line,
            data.clone(),
            timing,
        ))?;
        notes.push(counters_note(line, &before, &observed.counters()));
        let theirs = match &redis {
            Some(redis) => {
                eprintln!("{}: Redis...", line.name());
                Some(clients.block_on(run_line(
                    Target::Redis(redis.client.clone()),
                    line,
                    data.clone(),
                    timing,
                ))?)
            }
            None => None,
        };
        rows.push((line, ours, theirs));
    }
    for (line, ours, theirs) in &rows {
        let micros = |m: &Measured| {
            m.server_cpu_micros
                .map_or("n/a".to_owned(), |us| format!("{us:.0}"))
        };
        let redis_micros = theirs.as_ref().map_or("skipped".to_owned(), micros);
        notes.push(format!(
            "{}: CPU a request of the serving side, µs: sessionstore's server threads {}, redis-server {redis_micros}",
            line.name(),
            micros(ours),
        ));
    }
    if let Some(redis) = &redis {
        notes.push(clients.block_on(aof_rewrites(&redis.client))?);
    }
    drop(clients);
    drop(server);

    let mut report = table(&rows);
    report.push('\n');
    for note in notes {
        report.push_str(&format!("- {note}\n"));
    }
    match &redis {
        Some(redis) => report.push_str(&format!(
            "- Redis: {} with --appendonly yes --appendfsync always --save \"\"\n",
            redis.version
        )),
        None => report.push_str("- Redis: SKIPPED (redis-server is not installed)\n"),
    }
    println!("{report}");
    let path = report_path();
    std::fs::write(&path, &report).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    if redis.is_none() {
        eprintln!("\n!!! the Redis side was SKIPPED: redis-server is not installed !!!");
    }
    Ok(())
}
