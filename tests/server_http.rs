//! The HTTP API over a real loopback connection: every route, and every
//! kind of bad request answered with its status and a JSON error.

#![cfg(feature = "server")]

mod server_support;

use serde_json::json;
use server_support::walk::{bad_requests, every_route};
use server_support::{send, Server};
use sessionstore::server::ServerConfig;
use sessionstore::{ExtraRow, ExtraValue, StoreOptions};

#[test]
fn every_route_answers_over_tcp() {
    let server = Server::start(ServerConfig::default());
    every_route(&server.client, server.dir.path());
}

#[test]
fn bad_requests_get_their_status_and_a_json_error() {
    let options = StoreOptions {
        max_content_bytes: 1000,
        ..StoreOptions::default()
    };
    let config = ServerConfig {
        max_body_bytes: Some(64 << 10),
        ..ServerConfig::default()
    };
    let server = Server::start_with(config, options);
    bad_requests(&server.client, &server.store, 70_000);
}

/// A fork answers the new session, holding the messages before `at_seq`;
/// past the end is a 422 naming the field, another user's session a 404.
#[test]
fn a_session_forks_over_http() {
    let server = Server::start(ServerConfig::default());
    let client = &server.client;
    let created = client.post("/v1/sessions", &json!({"user_id": "ana"})).json();
    let id = created["session_id"].as_str().unwrap().to_owned();
    let turns = json!({"messages": [
        {"role": "user", "content": "books by Oxford"},
        {"role": "assistant", "content": "Found 15 books"},
        {"role": "user", "content": "and by Aldus"}
    ]});
    assert_eq!(
        client.post(&format!("/v1/sessions/{id}/messages"), &turns).status,
        201
    );
    let forked = client.post(&format!("/v1/sessions/{id}/fork"), &json!({"at_seq": 2}));
    assert_eq!(forked.status, 201, "{}", forked.text());
    let fork = forked.json();
    assert_ne!(fork["session_id"].as_str(), Some(id.as_str()));
    assert_eq!(fork["user_id"], "ana");
    let contents: Vec<&str> = fork["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["books by Oxford", "Found 15 books"]);
    let past = client.post(&format!("/v1/sessions/{id}/fork"), &json!({"at_seq": 9}));
    assert_eq!(past.status, 422, "{}", past.text());
    let missing = client.post(
        "/v1/sessions/00000000-0000-4000-8000-000000000000/fork",
        &json!({"at_seq": 0}),
    );
    assert_eq!(missing.error_kind(), "not_found");
}

/// Every path and method the OpenAPI document lists is served, and the
/// document lists every route: a request to each reaches its handler (no
/// `no_route`, no 405), and the list is exactly the routes this API has.
#[test]
fn the_openapi_document_matches_the_routes() {
    let server = Server::start(ServerConfig::default());
    let document = server.client.get("/v1/openapi.json").json();
    let mut listed = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            listed.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    listed.sort();
    let expected = [
        "DELETE /v1/sessions/{id}",
        "DELETE /v1/sessions/{id}/messages/last",
        "DELETE /v1/users/{user}",
        "GET /metrics",
        "GET /v1/admin/sessions/{id}",
        "GET /v1/admin/snapshot",
        "GET /v1/admin/stats",
        "GET /v1/health",
        "GET /v1/messages/{id}",
        "GET /v1/openapi.json",
        "GET /v1/sessions/{id}",
        "GET /v1/sessions/{id}/messages",
        "GET /v1/users/{user}/search",
        "GET /v1/users/{user}/sessions",
        "PATCH /v1/sessions/{id}/context",
        "POST /v1/admin/backup",
        "POST /v1/admin/check",
        "POST /v1/admin/compact",
        "POST /v1/admin/expire",
        "POST /v1/admin/purge",
        "POST /v1/sessions",
        "POST /v1/sessions/{id}/expire",
        "POST /v1/sessions/{id}/fork",
        "POST /v1/sessions/{id}/messages",
    ];
    assert_eq!(listed, expected);
    for route in &listed {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace(
                "{id}",
                if path.starts_with("/v1/messages") {
                    "1"
                } else {
                    "00000000-0000-4000-8000-000000000000"
                },
            )
            .replace("{user}", "nobody");
        // A body the route does not want is ignored; one it wants is
        // incomplete: either way the handler answers, not the fallbacks.
        let reply = send(&server.client.target, method, &path, &[], Some(b"{}"));
        let kind = (reply.status >= 400).then(|| reply.error_kind());
        assert!(
            reply.status != 405 && kind.as_deref() != Some("no_route"),
            "{route}: {} {}",
            reply.status,
            reply.text()
        );
    }
}

/// The export carries what a converted file holds beside sessions and
/// messages: the rows of the SQLite tables the store keeps as they were.
#[test]
fn the_export_carries_the_extra_rows() {
    let server = Server::start(ServerConfig::default());
    let mut importer = server.store.importer();
    importer
        .add_extra_row(ExtraRow {
            table: "user_goals".into(),
            rowid: 7,
            session: None,
            values: vec![ExtraValue::Integer(3), ExtraValue::Text("read more".into())],
        })
        .unwrap();
    importer.finish().unwrap();
    let text = server.client.get("/v1/admin/snapshot").text();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines[0],
        json!({"extra_row": {"table": "user_goals", "rowid": 7, "session": null,
                             "values": [{"Integer": 3}, {"Text": "read more"}]}})
    );
    assert_eq!(
        lines[1],
        json!({"end": {"sessions": 0, "messages": 0, "next_message_id": 1}})
    );
}

#[test]
fn a_user_route_that_takes_too_long_answers_503_timeout() {
    let config = ServerConfig {
        request_timeout: std::time::Duration::ZERO,
        ..ServerConfig::default()
    };
    let server = Server::start(config);
    let reply = server.client.post("/v1/sessions", &json!({}));
    assert_eq!((reply.status, reply.error_kind().as_str()), (503, "timeout"));
    // The operator's routes have no limit.
    assert_eq!(server.client.get("/v1/admin/stats").status, 200);
}

/// The value of the unlabelled series `name` in Prometheus `text`, which
/// must declare it a counter.
fn counter(text: &str, name: &str) -> u64 {
    assert!(
        text.contains(&format!("# TYPE {name} counter\n")),
        "{name} is no counter: {text}"
    );
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line.parse().unwrap()
}

#[test]
fn metrics_count_commits_their_requests_checkpoints_and_cache_reads() {
    let server = Server::start(ServerConfig::default());
    let client = &server.client;
    let id = client.post("/v1/sessions", &json!({"user_id": "ana"})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let turn = json!({"messages": [
        {"role": "user", "content": "books by Aldus"},
        {"role": "assistant", "content": "Found 3 books"},
    ]});
    assert_eq!(
        client.post(&format!("/v1/sessions/{id}/messages"), &turn).status,
        201
    );
    let one = json!({"messages": [{"role": "user", "content": "and in Latin?"}]});
    assert_eq!(
        client.post(&format!("/v1/sessions/{id}/messages"), &one).status,
        201
    );
    for _ in 0..2 {
        assert_eq!(client.get(&format!("/v1/sessions/{id}")).status, 200);
    }

    let text = client.get("/metrics").text();
    // One client, one request at a time: three commits of one request
    // each (the session, the turn of two messages, the third message).
    assert_eq!(counter(&text, "sessionstore_commits_total"), 3);
    assert_eq!(counter(&text, "sessionstore_batch_requests_total"), 3);
    assert_eq!(counter(&text, "sessionstore_message_cache_misses_total"), 1);
    assert_eq!(counter(&text, "sessionstore_message_cache_hits_total"), 1);
    // Present and a counter; whether one ran yet depends on time (one
    // comes 500 ms after the first record).
    counter(&text, "sessionstore_checkpoints_total");
    assert_eq!(server.store.counters().batch_requests, 3);
}
