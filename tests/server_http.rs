//! The HTTP API over a real loopback connection: every route, and every
//! kind of bad request answered with its status and a JSON error.

#![cfg(feature = "server")]

mod server_support;

use serde_json::json;
use server_support::walk::every_route;
use server_support::{send, Server};
use sessionstore::server::ServerConfig;
use sessionstore::StoreOptions;

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
    let client = &server.client;
    let id = client.post("/v1/sessions", &json!({"user_id": "ana"})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let messages = format!("/v1/sessions/{id}/messages");
    let missing = "/v1/sessions/00000000-0000-4000-8000-000000000000";

    let cases: Vec<(&str, u16, &str, server_support::Reply)> = vec![
        (
            "malformed JSON",
            400,
            "bad_request",
            client.raw("POST", &messages, &[], Some(b"{\"messages\": [")),
        ),
        (
            "not JSON at all",
            400,
            "bad_request",
            client.raw("POST", "/v1/sessions", &[], Some(b"hello")),
        ),
        (
            "no JSON content type",
            415,
            "unsupported_media_type",
            client.raw(
                "POST",
                "/v1/sessions",
                &[("Content-Type", "text/plain")],
                Some(b"{}"),
            ),
        ),
        (
            // serde_json calls a number where an enum is due a syntax error.
            "a role of the wrong type",
            400,
            "bad_request",
            client.post(&messages, &json!({"messages": [{"role": 5, "content": "x"}]})),
        ),
        (
            "an unknown role",
            422,
            "invalid_input",
            client.post(
                &messages,
                &json!({"messages": [{"role": "robot", "content": "x"}]}),
            ),
        ),
        (
            "no messages field",
            422,
            "invalid_input",
            client.post(&messages, &json!({})),
        ),
        (
            "an empty list",
            422,
            "invalid_input",
            client.post(&messages, &json!({"messages": []})),
        ),
        (
            "an unknown field",
            422,
            "invalid_input",
            client.post(&messages, &json!({"messages": [], "extra": 1})),
        ),
        (
            "a query plan that is no object",
            422,
            "invalid_input",
            client.post(
                &messages,
                &json!({"messages": [{"role": "user", "content": "x", "query_plan": [1]}]}),
            ),
        ),
        (
            "a content over max_content_bytes",
            413,
            "payload_too_large",
            client.post(
                &messages,
                &json!({"messages": [{"role": "user", "content": "x".repeat(1001)}]}),
            ),
        ),
        (
            "a body over the limit",
            413,
            "payload_too_large",
            client.raw(
                "POST",
                &messages,
                &[],
                Some(format!("{{\"messages\": [{}]}}", " ".repeat(70_000)).as_bytes()),
            ),
        ),
        (
            "a stale expected_next_seq",
            409,
            "seq_conflict",
            client.post(
                &messages,
                &json!({"messages": [{"role": "user", "content": "x"}], "expected_next_seq": 7}),
            ),
        ),
        (
            "an invalid UUID",
            400,
            "bad_request",
            client.get("/v1/sessions/not-a-uuid"),
        ),
        (
            "an invalid message id",
            400,
            "bad_request",
            client.get("/v1/messages/-3"),
        ),
        ("a missing session", 404, "not_found", client.get(missing)),
        (
            "a missing message",
            404,
            "not_found",
            client.get("/v1/messages/999999"),
        ),
        (
            "append to a missing session",
            404,
            "not_found",
            client.post(
                &format!("{missing}/messages"),
                &json!({"messages": [{"role": "user", "content": "x"}]}),
            ),
        ),
        (
            "a limit that is no number",
            400,
            "bad_request",
            client.get(&format!("{messages}?limit=abc")),
        ),
        (
            "a limit of 0",
            422,
            "invalid_input",
            client.get(&format!("{messages}?limit=0")),
        ),
        (
            "after and before",
            422,
            "invalid_input",
            client.get(&format!("{messages}?after=1&before=2")),
        ),
        (
            "a bad cursor",
            422,
            "invalid_input",
            client.get("/v1/users/ana/sessions?cursor=zzz"),
        ),
        (
            "a context that is no object",
            422,
            "invalid_input",
            client.call(
                "PATCH",
                &format!("/v1/sessions/{id}/context"),
                Some(&json!([1, 2])),
            ),
        ),
        (
            "an unknown route",
            404,
            "no_route",
            client.get("/v1/nothing/here"),
        ),
        ("the root", 404, "no_route", client.get("/")),
        (
            "an unknown method",
            405,
            "method_not_allowed",
            client.call("PUT", "/v1/health", None),
        ),
        (
            "a method the route lacks",
            405,
            "method_not_allowed",
            client.call("PATCH", &messages, None),
        ),
        (
            "a bad idempotency key",
            422,
            "invalid_input",
            client.raw(
                "POST",
                &messages,
                &[("Idempotency-Key", &"k".repeat(300))],
                Some(br#"{"messages": [{"role": "user", "content": "x"}]}"#),
            ),
        ),
        (
            "negative seconds",
            422,
            "invalid_input",
            client.post("/v1/admin/expire", &json!({"max_age_seconds": -1})),
        ),
    ];
    for (what, status, kind, reply) in cases {
        assert_eq!(
            (reply.status, reply.error_kind().as_str()),
            (status, kind),
            "{what}: {}",
            reply.text()
        );
    }
    let conflict = client.post(
        &messages,
        &json!({"messages": [{"role": "user", "content": "x"}], "expected_next_seq": 7}),
    );
    assert_eq!(conflict.json()["error"]["actual_next_seq"], 0);
    // The message names the field at fault.
    let wrong_type = client.post(&messages, &json!({"messages": [{"role": "user", "content": 5}]}));
    assert_eq!(wrong_type.status, 422);
    assert!(
        wrong_type.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content"),
        "{}",
        wrong_type.text()
    );
    let wrong_role = client.post(&messages, &json!({"messages": [{"role": 5, "content": "x"}]}));
    assert!(
        wrong_role.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].role"),
        "{}",
        wrong_role.text()
    );
    // Nothing refused was written.
    assert_eq!(server.message_count(&id), 0);
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
        "GET /v1/admin/snapshot",
        "GET /v1/admin/stats",
        "GET /v1/health",
        "GET /v1/messages/{id}",
        "GET /v1/openapi.json",
        "GET /v1/sessions/{id}",
        "GET /v1/sessions/{id}/messages",
        "GET /v1/users/{user}/sessions",
        "PATCH /v1/sessions/{id}/context",
        "POST /v1/admin/backup",
        "POST /v1/admin/check",
        "POST /v1/admin/compact",
        "POST /v1/admin/expire",
        "POST /v1/admin/purge",
        "POST /v1/sessions",
        "POST /v1/sessions/{id}/expire",
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
