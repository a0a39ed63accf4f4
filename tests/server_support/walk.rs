//! One walk through every route, over any target.

use serde_json::{json, Value};

use sessionstore::SessionStore;

use super::{Client, Reply};

/// Walks every route once as an admin, checking what each answers.
pub fn every_route(client: &Client, backup_dir: &std::path::Path) {
    assert_eq!(client.get("/v1/health").json(), json!({"status": "ok"}));

    let created = client.post("/v1/sessions", &json!({"user_id": "ana"}));
    assert_eq!(created.status, 201, "{}", created.text());
    let session = created.json();
    assert_eq!(session["user_id"], "ana");
    assert_eq!(session["messages"], json!([]));
    let id = session["session_id"].as_str().unwrap().to_owned();

    let turn = json!({"messages": [
        {"role": "user", "content": "books by Oxford", "query_plan": {"filters": [1, 2]}},
        {"role": "assistant", "content": "Found 15 books", "candidate_set": {"total_count": 15}}
    ]});
    let appended = client.post(&format!("/v1/sessions/{id}/messages"), &turn);
    assert_eq!(appended.status, 201, "{}", appended.text());
    let ids: Vec<u64> = serde_json::from_value(appended.json()["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    let checked = client.post(
        &format!("/v1/sessions/{id}/messages"),
        &json!({"messages": [{"role": "user", "content": "and by Aldus"}], "expected_next_seq": 2}),
    );
    assert_eq!(checked.status, 201, "{}", checked.text());

    let full = client.get(&format!("/v1/sessions/{id}")).json();
    assert_eq!(full["message_count"], 3);
    assert_eq!(full["messages"][0]["query_plan"], json!({"filters": [1, 2]}));
    let last = client.get(&format!("/v1/sessions/{id}?last=1")).json();
    assert_eq!(last["messages"].as_array().unwrap().len(), 1);
    assert_eq!(last["messages"][0]["content"], "and by Aldus");

    let after = client
        .get(&format!("/v1/sessions/{id}/messages?after=0&limit=1"))
        .json();
    assert_eq!(after["messages"][0]["seq"], 1);
    let before = client.get(&format!("/v1/sessions/{id}/messages?before=2")).json();
    assert_eq!(before["messages"].as_array().unwrap().len(), 2);
    let from_start = client.get(&format!("/v1/sessions/{id}/messages")).json();
    assert_eq!(from_start["messages"].as_array().unwrap().len(), 3);

    let message = client.get(&format!("/v1/messages/{}", ids[1])).json();
    assert_eq!(message["session_id"], id.as_str());
    assert_eq!(message["message"]["content"], "Found 15 books");

    let context = client.call(
        "PATCH",
        &format!("/v1/sessions/{id}/context"),
        Some(&json!({"a": 1})),
    );
    assert_eq!(context.status, 200, "{}", context.text());
    let merged = client.call(
        "PATCH",
        &format!("/v1/sessions/{id}/context"),
        Some(&json!({"b": 2})),
    );
    assert_eq!(merged.json(), json!({"context": {"a": 1, "b": 2}}));

    let popped = client.call("DELETE", &format!("/v1/sessions/{id}/messages/last"), None);
    assert_eq!(popped.json()["message"]["content"], "and by Aldus");

    for _ in 0..2 {
        assert_eq!(
            client.post("/v1/sessions", &json!({"user_id": "ana"})).status,
            201
        );
    }
    let page = client.get("/v1/users/ana/sessions?limit=2").json();
    assert_eq!(page["sessions"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = client
        .get(&format!("/v1/users/ana/sessions?limit=2&cursor={cursor}"))
        .json();
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(rest["sessions"][0]["title"], "books by Oxford");
    assert_eq!(rest["sessions"][0]["message_count"], 2);

    // Search: hits ranked, one a page here, the cursor to the next.
    let first = client.get("/v1/users/ana/search?q=BOOKS%20oxford&limit=1").json();
    assert_eq!(first["hits"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["hits"][0]["session_id"], id.as_str());
    assert_eq!(first["hits"][0]["seq"], 0);
    assert_eq!(first["hits"][0]["message_id"], ids[0]);
    assert_eq!(first["hits"][0]["snippet"], "books by Oxford");
    assert!(first["hits"][0]["score"].as_f64().unwrap() > 0.0);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = client
        .get(&format!(
            "/v1/users/ana/search?q=BOOKS%20oxford&limit=1&cursor={cursor}"
        ))
        .json();
    assert_eq!(second["hits"][0]["snippet"], "Found 15 books");
    assert_eq!(second["next_cursor"], Value::Null);
    let nobody = client.get("/v1/users/nobody/search?q=books").json();
    assert_eq!(nobody, json!({"hits": [], "next_cursor": null}));

    let expired = client.post(&format!("/v1/sessions/{id}/expire"), &json!({}));
    assert_eq!(expired.json(), json!({"expired": true}));
    assert_eq!(
        client.get(&format!("/v1/sessions/{id}")).error_kind(),
        "not_found"
    );
    let listed = client.get("/v1/users/ana/sessions?include_expired=true").json();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 3);

    let stats = client.get("/v1/admin/stats").json();
    assert_eq!(
        (
            stats["active_sessions"].clone(),
            stats["expired_sessions"].clone()
        ),
        (json!(2), json!(1))
    );
    let check = client.post("/v1/admin/check", &json!({})).json();
    assert_eq!(check["clean"], true, "{check}");
    let dest = backup_dir.join("copy.redb");
    let backup = client.post("/v1/admin/backup", &json!({"path": dest}));
    assert_eq!(backup.status, 201, "{}", backup.text());
    assert!(dest.exists());
    let again = client.post("/v1/admin/backup", &json!({"path": dest}));
    assert_eq!(
        (again.status, again.error_kind()),
        (422, "invalid_input".to_owned())
    );
    // A "folder" that is a file: the destination cannot be made.
    let nowhere = json!({"path": dest.join("inside/copy.redb")});
    let nowhere = client.post("/v1/admin/backup", &nowhere);
    assert_eq!(nowhere.status, 422, "{}", nowhere.text());
    let compact = client.post("/v1/admin/compact", &json!({})).json();
    assert!(compact["after"].as_u64().unwrap() > 0, "{compact}");

    let snapshot = client.get("/v1/admin/snapshot");
    assert_eq!(snapshot.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = snapshot
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.last().unwrap(),
        &json!({"end": {"sessions": 3, "messages": 2, "next_message_id": 4}})
    );
    assert_eq!(lines.iter().filter(|l| l.get("message").is_some()).count(), 2);

    let purge = client
        .post("/v1/admin/purge", &json!({"older_than_seconds": 0}))
        .json();
    assert_eq!(purge, json!({"purged": 1}));
    let expire = client
        .post("/v1/admin/expire", &json!({"max_age_seconds": 0}))
        .json();
    assert_eq!(expire, json!({"expired": 2}));

    let other = client.post("/v1/sessions", &json!({})).json();
    let other = other["session_id"].as_str().unwrap().to_owned();
    let deleted = client.call("DELETE", &format!("/v1/sessions/{other}"), None);
    assert_eq!(deleted.json(), json!({"deleted_messages": 0}));
    let erased = client.call("DELETE", "/v1/users/ana", None).json();
    assert_eq!(erased, json!({"sessions": 2, "messages": 0}));

    let metrics = client.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains(r#"sessionstore_http_requests_total{method="POST",route="/v1/sessions/{id}/messages",status="201"} 2"#),
        "{text}"
    );
    assert!(text.contains("sessionstore_messages 0"), "{text}");
    assert!(
        text.contains("sessionstore_http_request_duration_seconds_bucket"),
        "{text}"
    );

    let document = client.get("/v1/openapi.json").json();
    assert!(document["paths"]["/v1/sessions/{id}/messages"]["post"].is_object());
}

/// Sends every kind of bad request to a server over a store whose
/// `max_content_bytes` is 1000 and whose body limit is under
/// `over_body_limit` bytes: each gets its status and a JSON error, and
/// nothing refused is written to `store`.
pub fn bad_requests(client: &Client, store: &SessionStore, over_body_limit: usize) {
    let id = client.post("/v1/sessions", &json!({"user_id": "ana"})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let messages = format!("/v1/sessions/{id}/messages");
    let missing = "/v1/sessions/00000000-0000-4000-8000-000000000000";

    let cases: Vec<(&str, u16, &str, Reply)> = vec![
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
                Some(format!("{{\"messages\": [{}]}}", " ".repeat(over_body_limit)).as_bytes()),
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
            "a search without a word",
            422,
            "invalid_input",
            client.get("/v1/users/ana/search?q=%20%2C"),
        ),
        (
            "a search without q",
            422,
            "invalid_input",
            client.get("/v1/users/ana/search"),
        ),
        (
            "a search with a bad cursor",
            422,
            "invalid_input",
            client.get("/v1/users/ana/search?q=x&cursor=zzz"),
        ),
        (
            "a search of 0 hits a page",
            422,
            "invalid_input",
            client.get("/v1/users/ana/search?q=x&limit=0"),
        ),
        (
            "a search of too many hits a page",
            422,
            "invalid_input",
            client.get("/v1/users/ana/search?q=x&limit=1001"),
        ),
        (
            "a search limit that is no number",
            400,
            "bad_request",
            client.get("/v1/users/ana/search?q=x&limit=-1"),
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
    // A search's refusal names its field.
    for (path, field) in [
        ("/v1/users/ana/search?q=%21", "q"),
        ("/v1/users/ana/search?q=x&cursor=zzz", "cursor"),
        ("/v1/users/ana/search?q=x&limit=0", "limit"),
    ] {
        assert_eq!(client.get(path).json()["error"]["field"], field, "{path}");
    }
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
    assert_eq!(
        store
            .get_session(id.parse().unwrap())
            .unwrap()
            .unwrap()
            .messages
            .len(),
        0
    );
}
