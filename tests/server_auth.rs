//! Bearer tokens over a real connection: none, wrong, a user's token on
//! another user's data, an admin's; and the CLI that makes tokens and
//! refuses to serve beyond loopback without them.

#![cfg(feature = "server")]

mod server_support;

use serde_json::json;
use server_support::{Client, Server};
use sessionstore::server::{resolve_listen, Caller, ServerConfig, Tokens};

struct Setup {
    server: Server,
    admin: String,
    ana: String,
    bob: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let admin = Tokens::add(&file, &Caller::Admin).unwrap();
    let ana = Tokens::add(&file, &Caller::User("ana".into())).unwrap();
    let bob = Tokens::add(&file, &Caller::User("bob".into())).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    for token in [&admin, &ana, &bob] {
        assert!(!text.contains(token.as_str()), "the file holds hashes only");
    }
    let config = ServerConfig {
        tokens: Some(Tokens::load(&file).unwrap()),
        ..ServerConfig::default()
    };
    Setup {
        server: Server::start(config),
        admin,
        ana,
        bob,
    }
}

fn as_(client: &Client, token: &str) -> Client {
    client.with_token(Some(token))
}

#[test]
fn without_a_valid_token_only_health_and_the_document_answer() {
    let s = setup();
    let anonymous = &s.server.client;
    let wrong = anonymous.with_token(Some("sst_0000"));
    for client in [anonymous, &wrong] {
        for (method, path) in [
            ("POST", "/v1/sessions"),
            ("GET", "/v1/sessions/00000000-0000-4000-8000-000000000000"),
            ("GET", "/v1/users/ana/sessions"),
            ("GET", "/v1/admin/stats"),
            ("GET", "/metrics"),
        ] {
            let reply = client.call(method, path, Some(&json!({})));
            assert_eq!(
                (reply.status, reply.error_kind().as_str()),
                (401, "unauthorized"),
                "{method} {path}"
            );
        }
        assert_eq!(client.get("/v1/health").status, 200);
        assert_eq!(client.get("/v1/openapi.json").status, 200);
    }
    let not_bearer = anonymous.raw(
        "GET",
        "/v1/admin/stats",
        &[("Authorization", &format!("Basic {}", s.admin))],
        None,
    );
    assert_eq!(not_bearer.status, 401);
}

#[test]
fn a_user_token_sees_only_its_user() {
    let s = setup();
    let ana = as_(&s.server.client, &s.ana);
    let bob = as_(&s.server.client, &s.bob);

    // Sessions a user token creates are its user's; naming another is refused.
    let created = ana.post("/v1/sessions", &json!({}));
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["user_id"], "ana");
    let forged = ana.post("/v1/sessions", &json!({"user_id": "bob"}));
    assert_eq!((forged.status, forged.error_kind().as_str()), (403, "forbidden"));
    let id = created.json()["session_id"].as_str().unwrap().to_owned();
    let turn = json!({"messages": [{"role": "user", "content": "hi"}]});
    let ids = ana.post(&format!("/v1/sessions/{id}/messages"), &turn).json()["ids"].clone();
    let message_id = ids[0].as_u64().unwrap();

    // Bob gets 404 for all of Ana's session, as for a missing one.
    let missing = s
        .server
        .client
        .with_token(Some(&s.admin))
        .get("/v1/sessions/00000000-0000-4000-8000-000000000000");
    for (method, path, body) in [
        ("GET", format!("/v1/sessions/{id}"), None),
        ("GET", format!("/v1/sessions/{id}?last=1"), None),
        ("POST", format!("/v1/sessions/{id}/messages"), Some(&turn)),
        ("GET", format!("/v1/sessions/{id}/messages"), None),
        ("DELETE", format!("/v1/sessions/{id}/messages/last"), None),
        (
            "PATCH",
            format!("/v1/sessions/{id}/context"),
            Some(&json!({"a": 1})),
        ),
        ("POST", format!("/v1/sessions/{id}/expire"), Some(&json!({}))),
        ("DELETE", format!("/v1/sessions/{id}"), None),
        ("GET", format!("/v1/messages/{message_id}"), None),
    ] {
        let reply = bob.call(method, &path, body);
        assert_eq!(
            (reply.status, reply.error_kind().as_str()),
            (404, "not_found"),
            "{method} {path}"
        );
        if path.ends_with(&id) && method == "GET" {
            assert_eq!(
                reply.body, missing.body,
                "indistinguishable from a missing session"
            );
        }
    }
    // Another user's list and search, and every admin route, are forbidden.
    for (method, path) in [
        ("GET", "/v1/users/ana/sessions"),
        ("GET", "/v1/users/ana/search?q=books"),
        ("DELETE", "/v1/users/ana"),
        ("DELETE", "/v1/users/bob"),
        ("GET", "/v1/admin/stats"),
        ("POST", "/v1/admin/check"),
        ("POST", "/v1/admin/compact"),
        ("GET", "/v1/admin/snapshot"),
        ("GET", "/metrics"),
    ] {
        let reply = bob.call(method, path, Some(&json!({})));
        assert_eq!(
            (reply.status, reply.error_kind().as_str()),
            (403, "forbidden"),
            "{method} {path}"
        );
    }
    // Ana reads her own, and her list.
    assert_eq!(ana.get(&format!("/v1/sessions/{id}")).json()["message_count"], 1);
    assert_eq!(ana.get(&format!("/v1/messages/{message_id}")).status, 200);
    assert_eq!(
        ana.get("/v1/users/ana/sessions").json()["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Nothing of Bob's attempts changed her session.
    assert_eq!(s.server.message_count(&id), 1);
}

#[test]
fn an_admin_token_reaches_everything() {
    let s = setup();
    let admin = as_(&s.server.client, &s.admin);
    let ana = as_(&s.server.client, &s.ana);
    let id = ana.post("/v1/sessions", &json!({})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(admin.get(&format!("/v1/sessions/{id}")).status, 200);
    assert_eq!(admin.get("/v1/users/ana/sessions").status, 200);
    assert_eq!(admin.get("/v1/admin/stats").status, 200);
    assert_eq!(admin.get("/metrics").status, 200);
    assert_eq!(
        admin.call("DELETE", "/v1/users/ana", None).json(),
        json!({"sessions": 1, "messages": 0})
    );
}

#[test]
fn tokens_files_are_checked_and_made_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let token = Tokens::add(&file, &Caller::User("ana".into())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let tokens = Tokens::load(&file).unwrap();
    assert_eq!(tokens.caller(&token), Some(Caller::User("ana".into())));
    assert_eq!(tokens.caller("sst_wrong"), None);
    std::fs::write(&file, "# comment\n\nabc admin\n").unwrap();
    let error = Tokens::load(&file).unwrap_err().to_string();
    assert!(
        error.contains("line 3") && error.contains("64 hex digits"),
        "{error}"
    );
}

#[test]
fn without_tokens_only_loopback_is_served() {
    let open = ServerConfig::default();
    assert!(resolve_listen("127.0.0.1:8080", &open).is_ok());
    assert!(resolve_listen("[::1]:8080", &open).is_ok());
    let error = resolve_listen("0.0.0.0:8080", &open).unwrap_err();
    assert!(error.to_string().contains("not a loopback address"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    Tokens::add(&file, &Caller::Admin).unwrap();
    let guarded = ServerConfig {
        tokens: Some(Tokens::load(&file).unwrap()),
        ..ServerConfig::default()
    };
    assert!(resolve_listen("0.0.0.0:8080", &guarded).is_ok());
}

#[cfg(feature = "cli")]
#[test]
fn the_cli_adds_tokens_and_refuses_an_open_public_address() {
    use assert_cmd::Command;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    Command::cargo_bin("sessionstore")
        .unwrap()
        .args(["--db"])
        .arg(&db)
        .args(["chat-init"])
        .assert()
        .success();
    let added = Command::cargo_bin("sessionstore")
        .unwrap()
        .arg("--db")
        .arg(&db)
        .args(["token", "add", "--user", "ana"])
        .assert()
        .success();
    let token = String::from_utf8(added.get_output().stdout.clone()).unwrap();
    let token = token.trim();
    assert!(token.starts_with("sst_") && token.len() == 68, "{token}");
    let file = dir.path().join("s.redb.tokens");
    assert_eq!(
        Tokens::load(&file).unwrap().caller(token),
        Some(Caller::User("ana".into()))
    );
    Command::cargo_bin("sessionstore")
        .unwrap()
        .arg("--db")
        .arg(&db)
        .args(["token", "add"])
        .assert()
        .code(2);
    let refused = Command::cargo_bin("sessionstore")
        .unwrap()
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "0.0.0.0:0", "--tokens"])
        .arg(dir.path().join("none"))
        .assert()
        .code(1);
    let stderr = String::from_utf8(refused.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("tokens file"), "{stderr}");
    std::fs::remove_file(&file).unwrap();
    let refused = Command::cargo_bin("sessionstore")
        .unwrap()
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .assert()
        .code(1);
    let stderr = String::from_utf8(refused.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
