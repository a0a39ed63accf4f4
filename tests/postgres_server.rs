//! The HTTP API over a PostgreSQL store whose server goes away: while the
//! database cannot be reached every call is answered 503 `unavailable`
//! (not 500 `internal`), and once it is back the same server answers
//! again, with nothing lost.
//!
//! Runs a PostgreSQL server of its own (`tests/common/pg_cluster.rs`),
//! killed and started again; skipped, saying so, on a machine without
//! PostgreSQL's server binaries.
#![cfg(all(feature = "postgres", feature = "server"))]

#[allow(dead_code)]
#[path = "common/pg_cluster.rs"]
mod pg_cluster;
mod server_support;

use serde_json::json;
use server_support::Server;
use sessionstore::server::ServerConfig;
use sessionstore::SessionStore;

#[test]
fn a_database_that_cannot_be_reached_is_503_unavailable() {
    let Some(mut cluster) = pg_cluster::PgCluster::start() else {
        let required = std::env::var("SESSIONSTORE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "SESSIONSTORE_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries"
        );
        return;
    };
    // A short connect timeout, so that a call made while the server is
    // gone fails at once.
    let url = format!("{}?connect_timeout=5", cluster.url());
    let store = SessionStore::open(&url).unwrap();
    let server = Server::serving(store, tempfile::tempdir().unwrap(), ServerConfig::default());
    let client = &server.client;
    let created = client.post("/v1/sessions", &json!({"user_id": "ana"}));
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["session_id"].as_str().unwrap().to_owned();
    let append = json!({"messages": [{"role": "user", "content": "hello"}]});
    let appended = client.post(&format!("/v1/sessions/{id}/messages"), &append);
    assert_eq!(appended.status, 201, "{}", appended.text());

    // The server killed: its connections reset, new ones refused.
    cluster.kill();
    for (method, path) in [
        ("GET", format!("/v1/sessions/{id}")),
        ("POST", format!("/v1/sessions/{id}/messages")),
        ("GET", "/v1/users/ana/sessions".to_owned()),
        ("POST", "/v1/sessions".to_owned()),
    ] {
        let body = if path.ends_with("/messages") {
            append.clone()
        } else {
            json!({"user_id": "ana"})
        };
        let reply = match method {
            "GET" => client.get(&path),
            _ => client.post(&path, &body),
        };
        assert_eq!(reply.status, 503, "{method} {path}: {}", reply.text());
        assert_eq!(reply.error_kind(), "unavailable", "{method} {path}");
        let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with("storage (postgres) unavailable"), "{message}");
    }

    // Back: the same server answers, and holds what it acknowledged.
    cluster.restart();
    let read = client.get(&format!("/v1/sessions/{id}"));
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["messages"].as_array().unwrap().len(), 1);
}
