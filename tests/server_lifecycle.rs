//! `sessionstore serve` as a real process: it serves, stops on SIGTERM
//! with exit 0, leaves the store closed with every acknowledged write, and
//! logs neither tokens nor message content.

#![cfg(all(feature = "server", feature = "cli", unix))]

mod server_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use server_support::{Client, Target};
use sessionstore::server::{Caller, Tokens};
use sessionstore::SessionStore;

#[test]
fn serve_stops_on_sigterm_keeping_every_write_and_logs_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let tokens = dir.path().join("tokens");
    let token = Tokens::add(&tokens, &Caller::Admin).unwrap();
    drop(SessionStore::open(&db).unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_sessionstore"))
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--tokens"])
        .arg(&tokens)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = Client {
        target: Target::Tcp(format!("127.0.0.1:{port}").parse().unwrap()),
        token: Some(token.clone()),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = client.post("/v1/sessions", &json!({"user_id": "ana"})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = "SECRET-CONTENT-4711";
    let appended = client.post(
        &format!("/v1/sessions/{id}/messages"),
        &json!({"messages": [{"role": "user", "content": secret}]}),
    );
    assert_eq!(appended.status, 201);
    // The store's own socket serves this (second) process while the server
    // holds the file, with full rights and no token.
    let socket = SessionStore::socket_path(&db);
    let local = Client {
        target: Target::Unix(socket.clone()),
        token: None,
    };
    assert_eq!(
        local.get(&format!("/v1/sessions/{id}")).json()["message_count"],
        1
    );
    assert_eq!(local.get("/v1/admin/stats").json()["messages"], 1);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("stopped"), "{log}");
    assert!(
        log.contains("/v1/sessions/{id}/messages"),
        "requests are logged by route: {log}"
    );
    assert!(!log.contains(secret) && !log.contains(&token), "{log}");
    assert!(!socket.exists(), "the socket goes with the store");

    let store = SessionStore::open(&db).unwrap();
    let session = store.get_session(id.parse().unwrap()).unwrap().unwrap();
    assert_eq!(session.messages[0].content, secret);
}

#[test]
fn the_socket_a_killed_holder_left_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    drop(SessionStore::open(&db).unwrap());
    let socket = SessionStore::socket_path(&db);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionstore"))
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the holder never served its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(socket.exists(), "SIGKILL leaves the socket behind");
    let store = SessionStore::open(&db).unwrap();
    let local = Client {
        target: Target::Unix(socket.clone()),
        token: None,
    };
    assert_eq!(local.get("/v1/health").status, 200);
    drop(store);
    assert!(!socket.exists());
}
