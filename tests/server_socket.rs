//! The local socket every store opened by the library serves: the same
//! API with full rights, mode 0600, only for the process's own user and
//! root, removed on close, a stale one replaced, long paths moved to a
//! short name.

#![cfg(all(feature = "socket", unix))]

mod server_support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use serde_json::json;
use server_support::walk::{bad_requests, every_route};
use server_support::{Client, Target};
use sessionstore::{SessionStore, StoreOptions};

fn client_of(path: &Path) -> Client {
    Client {
        target: Target::Unix(SessionStore::socket_path(path)),
        token: None,
    }
}

#[test]
fn every_route_answers_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = SessionStore::open(&path).unwrap();
    every_route(&client_of(&path), dir.path());
    drop(store);
}

#[test]
fn bad_requests_over_the_socket_get_their_status_and_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let options = StoreOptions {
        max_content_bytes: 1000,
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(&path, options).unwrap();
    // The socket's body limit: max_content_bytes plus 1 MiB.
    bad_requests(&client_of(&path), &store, 1000 + (1 << 20));
}

#[test]
fn the_socket_is_owner_only_and_goes_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let socket = SessionStore::socket_path(&path);
    assert_eq!(socket.file_name().unwrap(), "s.redb.sock");
    let store = SessionStore::open(&path).unwrap();
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // What the socket writes, the store holding the file sees at once.
    let client = client_of(&path);
    let id = client.post("/v1/sessions", &json!({"user_id": "ana"})).json()["session_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(store.get_session(id).unwrap().is_some());
    let clone = store.clone();
    drop(store);
    assert!(socket.exists(), "a clone keeps the store, and its socket, open");
    drop(clone);
    assert!(!socket.exists(), "removed on close");
    // Closed for good: the file opens again, with what the socket wrote.
    let reopened = SessionStore::open(&path).unwrap();
    assert!(reopened.get_session(id).unwrap().is_some());
}

#[test]
fn a_stale_socket_is_replaced_and_anything_else_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let socket = SessionStore::socket_path(&path);
    // A socket nobody serves, as a killed process leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_err());
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(client_of(&path).get("/v1/health").status, 200);
    drop(store);

    // A file of the user's that is no socket: kept, and no socket served.
    std::fs::write(&socket, "notes").unwrap();
    let store = SessionStore::open(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "notes");
    drop(store);
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "notes");
}

#[test]
fn a_path_too_long_for_a_socket_gets_a_short_one() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
    let path = deep.join("sessions.redb");
    let store = SessionStore::open(&path).unwrap();
    let socket = SessionStore::socket_path(&path);
    assert!(!socket.starts_with(&deep), "{}", socket.display());
    assert_eq!(client_of(&path).get("/v1/health").status, 200);
    drop(store);
    assert!(!socket.exists());
}

#[test]
fn serve_socket_false_serves_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let options = StoreOptions {
        serve_socket: false,
        ..StoreOptions::default()
    };
    let _store = SessionStore::open_with(&path, options).unwrap();
    assert!(!SessionStore::socket_path(&path).exists());
}

/// curl run as `uid`: its HTTP status on the socket, or its failure.
fn curl_as(uid: u32, socket: &Path) -> String {
    let output = Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ])
        .args([
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg("http://localhost/v1/health")
        .output()
        .expect("setpriv and curl");
    format!(
        "{} exit {:?}",
        String::from_utf8_lossy(&output.stdout),
        output.status.code()
    )
}

/// The peer check stands even when the file's mode would let anyone in.
#[test]
fn a_peer_of_another_user_is_refused_even_through_an_open_mode() {
    if current_uid() != 0 {
        eprintln!("needs root to act as another user; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("s.redb");
    let _store = SessionStore::open(&path).unwrap();
    let socket = SessionStore::socket_path(&path);
    assert_eq!(curl_as(0, &socket), "200 exit Some(0)");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = curl_as(65534, &socket);
    assert!(!refused.starts_with("200"), "{refused}");
    assert_eq!(curl_as(0, &socket), "200 exit Some(0)");
}

/// The user this test runs as, from the owner of a file it makes.
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().metadata().unwrap().uid()
}
