//! For the HTTP tests: a server on a loopback port (or a client of a
//! store's local socket), and a plain HTTP/1.1 client over real sockets
//! that can also drop a connection midway.

#![allow(dead_code)]

pub mod walk;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use serde_json::Value;
use sessionstore::server::ServerConfig;
use sessionstore::{SessionStore, StoreOptions};

/// Where requests go.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix(PathBuf),
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {}: not JSON ({e}): {:?}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error's kind, after checking the error shape: a JSON body
    /// `{"error": {"kind", "message"}}` with a JSON content type.
    pub fn error_kind(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        let json = self.json();
        let error = &json["error"];
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
        error["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("no kind: {json}"))
            .to_owned()
    }
}

fn connect(target: &Target) -> Box<dyn ReadWrite> {
    match target {
        Target::Tcp(addr) => Box::new(TcpStream::connect(addr).unwrap()),
        #[cfg(unix)]
        Target::Unix(path) => Box::new(std::os::unix::net::UnixStream::connect(path).unwrap()),
    }
}

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The bytes of a request.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Sends a request and reads the whole answer.
pub fn send(
    target: &Target,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut stream = connect(target);
    stream
        .write_all(&request_bytes(method, path, headers, body))
        .unwrap();
    let mut raw = Vec::new();
    // The server may answer (413) and close before reading a huge body.
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

/// Sends a request, waits for `before_drop`, then drops the connection
/// without reading the answer.
pub fn send_and_drop(
    target: &Target,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    before_drop: impl FnOnce(),
) {
    let mut stream = connect(target);
    stream
        .write_all(&request_bytes(method, path, headers, Some(body)))
        .unwrap();
    before_drop();
    drop(stream);
}

pub fn parse(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A client of one target, with an optional bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    pub target: Target,
    pub token: Option<String>,
}

impl Client {
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            target: self.target.clone(),
            token: token.map(str::to_owned),
        }
    }

    fn auth(&self) -> Vec<(&str, String)> {
        self.token
            .iter()
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .collect()
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        self.raw(method, path, &[], body.as_deref())
    }

    pub fn raw(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let auth = self.auth();
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
        headers.extend_from_slice(extra);
        send(&self.target, method, path, &headers, body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(body))
    }
}

/// A server over a store in a temporary folder, on a loopback port, in a
/// runtime of its own; stopped (gracefully) when dropped.
pub struct Server {
    pub client: Client,
    pub store: SessionStore,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(config: ServerConfig) -> Server {
        Self::start_with(config, StoreOptions::default())
    }

    pub fn start_with(config: ServerConfig, options: StoreOptions) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open_with(dir.path().join("s.redb"), options).unwrap();
        Self::serving(store, dir, config)
    }

    /// A server over `store` (a database's, say), keeping `dir` for the
    /// test's files.
    pub fn serving(store: SessionStore, dir: tempfile::TempDir, config: ServerConfig) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = store.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                sessionstore::server::serve(served, listener, config, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            client: Client {
                target: Target::Tcp(addr),
                token: None,
            },
            store,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Server {
    /// Tells the server to stop: it stops accepting and finishes the
    /// requests in flight (the thread ends when they are done).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the server has stopped.
    pub fn join(&mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    /// How many messages the active session `id` holds, read directly.
    pub fn message_count(&self, id: &str) -> usize {
        let session = self.store.get_session(id.parse().unwrap()).unwrap();
        session.expect("an active session").messages.len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
