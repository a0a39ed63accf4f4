//! The `sessionstore` binary: every command, its output, its error paths.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use assert_cmd::assert::Assert;
use assert_cmd::cargo::cargo_bin_cmd;
use assert_cmd::prelude::OutputAssertExt;
use assert_cmd::Command;
use predicates::prelude::*;
use sessionstore::{NewMessage, SessionStore, Uuid};
use tempfile::TempDir;

/// A temporary folder and the store path inside it (not yet created).
struct Scene {
    dir: TempDir,
    db: PathBuf,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/chat/sessions.redb");
        Scene { dir, db }
    }

    /// The binary, pointed at this scene's store, with no stray environment.
    fn cli(&self) -> Command {
        let mut cmd = cargo_bin_cmd!("sessionstore");
        cmd.env_remove("SESSIONSTORE_DB").arg("--db").arg(&self.db);
        cmd
    }

    /// Runs `chat-init` and returns the new session's id.
    fn init(&self, user: Option<&str>) -> Uuid {
        let mut cmd = self.cli();
        cmd.arg("chat-init");
        if let Some(user) = user {
            cmd.args(["--user-id", user]);
        }
        let output = cmd.assert().success().get_output().stdout.clone();
        let text = String::from_utf8(output).unwrap();
        let id = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("Created session: ")
            .unwrap();
        id.parse().unwrap()
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Opens the store in this process (the binary must not be running).
    fn store(&self) -> SessionStore {
        SessionStore::open(&self.db).unwrap()
    }

    /// Runs the binary with `args`.
    fn run(&self, args: &[&str]) -> Assert {
        self.cli().args(args).assert()
    }

    /// Runs the binary with `args`, expects success, returns its stdout.
    fn stdout(&self, args: &[&str]) -> String {
        let output = self.run(args).success().get_output().stdout.clone();
        String::from_utf8(output).unwrap()
    }
}

fn s(id: Uuid) -> String {
    id.to_string()
}

#[test]
fn chat_init_prints_exactly_three_lines_and_creates_the_folders() {
    let scene = Scene::new();
    let output = scene.stdout(&["chat-init", "--user-id", "user123"]);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 3, "{output}");
    let id: Uuid = lines[0]
        .strip_prefix("Created session: ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lines[1], "User: user123");
    assert_eq!(lines[2], format!("Database: {}", scene.db.display()));
    let store = scene.store();
    assert_eq!(
        store.session_info(id).unwrap().unwrap().user_id.as_deref(),
        Some("user123")
    );
}

#[test]
fn chat_init_without_user_is_anonymous_and_db_comes_from_the_environment() {
    let scene = Scene::new();
    let output = cargo_bin_cmd!("sessionstore")
        .env("SESSIONSTORE_DB", &scene.db)
        .arg("chat-init")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let output = String::from_utf8(output).unwrap();
    assert!(output.contains("\nUser: anonymous\n"), "{output}");
    let id: Uuid = output.lines().next().unwrap()[17..].parse().unwrap();
    assert_eq!(scene.store().session_info(id).unwrap().unwrap().user_id, None);
}

#[test]
fn query_records_the_query_with_its_plan_and_the_reply_with_its_set() {
    let scene = Scene::new();
    let id = scene.init(Some("user123"));
    let plan = scene.file(
        "plan.json",
        r#"{"filters": [{"publisher": "Oxford"}, {"year": 1900}]}"#,
    );
    let set = r#"{"total_count": 15, "candidates": [{"id": 1}, {"id": 2}]}"#;
    scene
        .cli()
        .args(["query", "books by Oxford", "--session-id", &s(id), "--query-plan"])
        .arg(&plan)
        .args(["--candidate-set", "-"])
        .write_stdin(set)
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(format!("^Saved to session {id}: messages [0-9]+, [0-9]+\n$")).unwrap(),
        );

    let session = scene.store().get_session(id).unwrap().unwrap();
    assert_eq!(session.messages.len(), 2);
    let (query, reply) = (&session.messages[0], &session.messages[1]);
    assert_eq!(query.content, "books by Oxford");
    assert_eq!(
        query.query_plan.as_ref().unwrap().as_str(),
        std::fs::read_to_string(&plan).unwrap()
    );
    assert_eq!(reply.content, "Found 15 books matching your query");
    assert_eq!(reply.candidate_set.as_ref().unwrap().as_str(), set);
}

#[test]
fn query_without_total_count_counts_the_candidates_and_without_a_set_records_one_message() {
    let scene = Scene::new();
    let id = scene.init(None);
    let set = scene.file("set.json", r#"{"candidates": [1, 2, 3]}"#);
    scene
        .cli()
        .args(["query", "first", "--session-id", &s(id), "--candidate-set"])
        .arg(&set)
        .assert()
        .success();
    scene.run(&["query", "second", "--session-id", &s(id)]).success();
    let session = scene.store().get_session(id).unwrap().unwrap();
    let contents: Vec<&str> = session.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["first", "Found 3 books matching your query", "second"]);
    assert!(session.messages[2].query_plan.is_none());
}

/// The old CLI's `chat-history` (app/cli.py): the session's fields, then
/// each message followed by a blank line, `Results:` giving the candidate
/// set's `total_count` (15 here, of which 3 candidates came back).
#[test]
fn chat_history_prints_the_old_layout() {
    let scene = Scene::new();
    let id = scene.init(Some("user123"));
    let plan = scene.file("plan.json", r#"{"filters": [1, 2]}"#);
    let set = scene.file("set.json", r#"{"total_count": 15, "candidates": [1, 2, 3]}"#);
    scene
        .cli()
        .args(["query", "books by Oxford", "--session-id", &s(id), "--query-plan"])
        .arg(&plan)
        .arg("--candidate-set")
        .arg(&set)
        .assert()
        .success();
    let info = scene.store().get_session(id).unwrap().unwrap();
    let output = scene.stdout(&["chat-history", &s(id)]);
    let expected = format!(
        "Session: {id}\nUser: user123\nMessages: 2\nCreated: {}\nUpdated: {}\n\n--- Messages ---\n\n\
         1. [user] books by Oxford\n   QueryPlan: 2 filters\n   Time: {}\n\n\
         2. [assistant] Found 15 books matching your query\n   Results: 15 candidates\n   Time: {}\n\n",
        info.created_at, info.updated_at, info.messages[0].timestamp, info.messages[1].timestamp
    );
    assert_eq!(output, expected);
}

#[test]
fn chat_history_last_shows_only_the_last_messages_numbered_by_place() {
    let scene = Scene::new();
    let id = scene.init(None);
    {
        let store = scene.store();
        for n in 1..=5 {
            store
                .add_message(id, NewMessage::user(format!("turn {n}")))
                .unwrap();
        }
    }
    let output = scene.stdout(&["chat-history", &s(id), "--last", "2"]);
    assert!(output.contains("Messages: 5\n"), "{output}");
    assert!(output.contains("4. [user] turn 4\n"), "{output}");
    assert!(output.contains("5. [user] turn 5\n"), "{output}");
    assert!(!output.contains("turn 3"), "{output}");
}

#[test]
fn chat_history_json_is_the_session_for_scripts() {
    let scene = Scene::new();
    let id = scene.init(Some("ana"));
    {
        let store = scene.store();
        store.add_message(id, NewMessage::user("one")).unwrap();
        store.add_message(id, NewMessage::user("two")).unwrap();
    }
    let output = scene.stdout(&["chat-history", &s(id), "--json", "--last", "1"]);
    let json: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(json["session_id"], s(id));
    assert_eq!(json["user_id"], "ana");
    assert_eq!(json["message_count"], 2);
    assert_eq!(json["messages"].as_array().unwrap().len(), 1);
    assert_eq!(json["messages"][0]["content"], "two");
}

#[test]
fn an_unknown_session_is_not_found_everywhere() {
    let scene = Scene::new();
    scene.init(None);
    let unknown = s(Uuid::new_v4());
    for args in [
        vec!["chat-history", &unknown],
        vec!["chat-history", &unknown, "--last", "3"],
        vec!["query", "hi", "--session-id", &unknown],
        vec!["chat-expire", &unknown],
        vec!["chat-delete", &unknown],
        vec!["chat-delete", &unknown, "--yes"],
    ] {
        scene
            .run(&args)
            .code(1)
            .stdout("")
            .stderr(format!("error: session {unknown} not found\n"));
    }
}

#[test]
fn an_expired_session_is_refused_and_says_so() {
    let scene = Scene::new();
    let id = scene.init(None);
    scene
        .run(&["chat-expire", &s(id)])
        .success()
        .stdout(format!("Expired session {id}\n"));
    scene
        .run(&["chat-expire", &s(id)])
        .success()
        .stdout(format!("Session {id} was already expired\n"));
    let expired = predicate::str::starts_with(format!("error: session {id} is expired (since "));
    for args in [
        vec!["chat-history", &s(id)],
        vec!["chat-history", &s(id), "--last", "1"],
        vec!["query", "hi", "--session-id", &s(id)],
    ] {
        scene.cli().args(&args).assert().code(1).stderr(expired.clone());
    }
    assert_eq!(scene.store().session_info(id).unwrap().unwrap().message_count, 0);
}

#[test]
fn a_malformed_uuid_is_a_usage_error_naming_the_argument() {
    let scene = Scene::new();
    scene.init(None);
    scene
        .run(&["chat-history", "not-a-uuid"])
        .code(2)
        .stderr(predicate::str::contains("invalid value 'not-a-uuid' for '<ID>'"));
    scene
        .run(&["query", "hi", "--session-id", "1234"])
        .code(2)
        .stderr(predicate::str::contains("'--session-id <ID>'"));
}

#[test]
fn delete_and_erase_refuse_without_yes_and_say_what_they_removed_with_it() {
    let scene = Scene::new();
    let first = scene.init(Some("bob"));
    let second = scene.init(Some("bob"));
    scene
        .store()
        .add_message(first, NewMessage::user("hello"))
        .unwrap();

    scene
        .run(&["chat-delete", &s(first)])
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("add --yes").and(predicate::str::contains("1 message")));
    scene.run(&["chat-erase-user", "bob"]).code(1).stderr(
        predicate::str::contains("2 sessions with 1 message of user bob")
            .and(predicate::str::contains("add --yes")),
    );
    assert!(scene.store().get_session(first).unwrap().is_some());

    scene
        .run(&["chat-delete", &s(first), "--yes"])
        .success()
        .stdout(format!("Deleted session {first} and its 1 message\n"));
    assert!(scene.store().session_info(first).unwrap().is_none());

    scene
        .run(&["chat-erase-user", "bob", "--yes"])
        .success()
        .stdout("Erased user bob: 1 session and 0 messages deleted\n");
    assert!(scene.store().session_info(second).unwrap().is_none());
    scene
        .run(&["chat-erase-user", "bob", "--yes"])
        .code(1)
        .stderr("error: user bob has no sessions\n");
}

#[test]
fn an_unreadable_candidate_set_file_is_refused_and_nothing_is_written() {
    let scene = Scene::new();
    let id = scene.init(None);
    let missing = scene.dir.path().join("missing.json");
    scene
        .cli()
        .args(["query", "hi", "--session-id", &s(id), "--candidate-set"])
        .arg(&missing)
        .assert()
        .code(1)
        .stderr(
            predicate::str::starts_with(format!(
                "error: cannot read the candidate set from {}: ",
                missing.display()
            ))
            .and(predicate::str::ends_with("\n"))
            .and(predicate::str::contains("\n").count(1)),
        );
    assert_eq!(scene.store().session_info(id).unwrap().unwrap().message_count, 0);
}

#[test]
fn a_candidate_set_that_is_not_a_json_object_is_refused_and_nothing_is_written() {
    let scene = Scene::new();
    let id = scene.init(None);
    let plan = scene.file("plan.json", r#"{"filters": []}"#);
    for (name, text) in [("list.json", "[1, 2]"), ("broken.json", r#"{"total_count": "#)] {
        let set = scene.file(name, text);
        scene
            .cli()
            .args(["query", "hi", "--session-id", &s(id), "--query-plan"])
            .arg(&plan)
            .arg("--candidate-set")
            .arg(&set)
            .assert()
            .code(1)
            .stderr(predicate::str::starts_with(format!(
                "error: {}: invalid candidate_set: not ",
                set.display()
            )));
    }
    scene
        .cli()
        .args(["query", "hi", "--session-id", &s(id), "--query-plan", "-"])
        .write_stdin("nope")
        .assert()
        .code(1)
        .stderr("error: stdin: invalid query_plan: not a JSON object\n");
    assert_eq!(scene.store().session_info(id).unwrap().unwrap().message_count, 0);
}

/// Issue 16, item 5: an input file is read up to the store's content limit
/// (64 MiB) and refused past it; `/dev/zero` made the binary grow without
/// end. The binary runs under a 1 GiB address-space limit, so that a
/// regression fails here instead of taking the machine's memory.
#[test]
fn an_endless_input_file_is_refused_at_the_content_limit_and_nothing_is_written() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let scene = Scene::new();
    let id = scene.init(None);
    let limit = sessionstore::StoreOptions::default().max_content_bytes;
    let zero = || std::fs::File::open("/dev/zero").unwrap();
    for (option, file, stdin, what) in [
        (
            "--query-plan",
            "/dev/zero",
            Stdio::null(),
            "query plan from /dev/zero",
        ),
        (
            "--candidate-set",
            "/dev/zero",
            Stdio::null(),
            "candidate set from /dev/zero",
        ),
        (
            "--candidate-set",
            "-",
            Stdio::from(zero()),
            "candidate set from stdin",
        ),
    ] {
        let started = std::time::Instant::now();
        std::process::Command::new("sh")
            .args(["-c", "ulimit -v 1048576 && exec \"$0\" \"$@\""])
            .arg(assert_cmd::cargo::cargo_bin!("sessionstore"))
            .arg("--db")
            .arg(&scene.db)
            .args(["query", "hi", "--session-id", &s(id), option, file])
            .stdin(stdin)
            .assert()
            .code(1)
            .stdout("")
            .stderr(format!(
                "error: cannot read the {what}: over the limit of {limit} bytes\n"
            ));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(30), "{what}: {took:?}");
    }
    assert_eq!(scene.store().session_info(id).unwrap().unwrap().message_count, 0);
}

#[test]
fn both_inputs_from_stdin_is_a_usage_error() {
    let scene = Scene::new();
    let id = scene.init(None);
    scene
        .cli()
        .args(["query", "hi", "--session-id", &s(id)])
        .args(["--query-plan", "-", "--candidate-set", "-"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot both read stdin"));
}

#[test]
fn a_file_held_by_a_process_without_socket_is_refused_with_what_to_do() {
    let scene = Scene::new();
    let id = scene.init(None);
    let options = sessionstore::StoreOptions {
        serve_socket: false,
        ..Default::default()
    };
    let held = SessionStore::open_with(&scene.db, options).unwrap();
    for args in [vec!["stats"], vec!["chat-history", &s(id)], vec!["chat-init"]] {
        scene.cli().args(&args).assert().code(1).stderr(format!(
            "error: {} is in use by another process, which serves no socket at {}: \
             stop it, or open the store with the socket on\n",
            scene.db.display(),
            SessionStore::socket_path(&scene.db).display()
        ));
    }
    drop(held);
    scene.cli().arg("stats").assert().success();
}

#[test]
fn a_missing_store_is_not_created_by_other_commands() {
    let scene = Scene::new();
    for args in [vec!["stats"], vec!["chat-sessions", "--user-id", "ana"]] {
        scene
            .run(&args)
            .code(1)
            .stderr(predicate::str::starts_with(format!(
                "error: no store at {}",
                scene.db.display()
            )));
    }
    assert!(!scene.db.exists());
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let scene = Scene::new();
    scene.init(None);
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    std::process::Command::new(assert_cmd::cargo::cargo_bin!("sessionstore"))
        .arg("--db")
        .arg(&scene.db)
        .arg("stats")
        .stdout(full)
        .assert()
        .code(1)
        .stderr(
            predicate::str::starts_with("error: cannot write to stdout: ")
                .and(predicate::str::contains("panicked").not()),
        );
}

/// The binary pointed at `scene`'s store, its stdout `stdout` (a file or a
/// pipe opened here), run with `args`.
fn run_with_stdout(scene: &Scene, stdout: impl Into<Stdio>, args: &[&str]) -> std::process::Output {
    std::process::Command::new(assert_cmd::cargo::cargo_bin!("sessionstore"))
        .env_remove("SESSIONSTORE_DB")
        .arg("--db")
        .arg(&scene.db)
        .args(args)
        .stdout(stdout)
        .output()
        .unwrap()
}

/// Issue 16, item 3: a command whose write was committed but whose stdout
/// then fails does not report failure (a retry would write twice): it
/// exits 3 and gives on stderr what it did, ids included.
#[test]
fn a_write_whose_stdout_fails_exits_3_and_names_what_it_wrote_on_stderr() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let scene = Scene::new();
    scene.init(Some("bob"));
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();

    let init = run_with_stdout(&scene, full(), &["chat-init", "--user-id", "ana"]);
    let stderr = String::from_utf8(init.stderr).unwrap();
    assert_eq!(init.status.code(), Some(3), "{stderr}");
    let sessions = scene.store().list_user_sessions("ana", true).unwrap();
    assert_eq!(sessions.len(), 1, "one session, written once");
    let id = sessions[0];
    assert!(
        stderr.starts_with("error: cannot write to stdout: ")
            && stderr.contains(&format!("Created session: {id}\n")),
        "{stderr}"
    );

    let set = scene.file("set.json", r#"{"total_count": 15, "candidates": [1]}"#);
    let query = run_with_stdout(
        &scene,
        full(),
        &[
            "query",
            "books",
            "--session-id",
            &s(id),
            "--candidate-set",
            set.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8(query.stderr).unwrap();
    assert_eq!(query.status.code(), Some(3), "{stderr}");
    let session = scene.store().get_session(id).unwrap().unwrap();
    assert_eq!(session.messages.len(), 2, "the turn, written once");
    let ids = format!("messages {}, {}", session.messages[0].id, session.messages[1].id);
    assert!(
        stderr.contains(&format!("Saved to session {id}: {ids}\n")),
        "{stderr}"
    );

    // A pipe closed before the id was read loses it the same way.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let closed = run_with_stdout(&scene, writer, &["chat-init", "--user-id", "cy"]);
    let stderr = String::from_utf8(closed.stderr).unwrap();
    assert_eq!(closed.status.code(), Some(3), "{stderr}");
    let cy = scene.store().list_user_sessions("cy", true).unwrap();
    assert!(
        cy.len() == 1 && stderr.contains(&format!("Created session: {}\n", cy[0])),
        "{stderr}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let scene = Scene::new();
    let id = scene.init(None);
    {
        let store = scene.store();
        let long = "x".repeat(64 << 10);
        for _ in 0..4 {
            store.add_message(id, NewMessage::user(long.clone())).unwrap();
        }
    }
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("sessionstore"))
        .arg("--db")
        .arg(&scene.db)
        .args(["chat-history", &s(id)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert!(output.status.success(), "{:?}", output.status);
}

#[test]
fn chat_cleanup_expires_idle_sessions_and_purges_old_expired_ones() {
    let scene = Scene::new();
    let a = scene.init(None);
    let b = scene.init(None);
    assert_eq!(
        scene.stdout(&["chat-cleanup", "--max-age-hours", "24"]),
        "Expired 0 sessions older than 24 hours\n"
    );
    assert_eq!(
        scene.stdout(&["chat-cleanup", "--max-age-hours", "0"]),
        "Expired 2 sessions older than 0 hours\n"
    );
    assert!(scene.store().session_info(a).unwrap().unwrap().is_expired());
    assert_eq!(
        scene.stdout(&[
            "chat-cleanup",
            "--max-age-hours",
            "0",
            "--purge-expired-days",
            "1"
        ]),
        "Expired 0 sessions older than 0 hours\nDeleted 0 sessions expired more than 1 days ago\n"
    );
    assert_eq!(
        scene.stdout(&[
            "chat-cleanup",
            "--max-age-hours",
            "0",
            "--purge-expired-days",
            "0"
        ]),
        "Expired 0 sessions older than 0 hours\nDeleted 2 sessions expired more than 0 days ago\n"
    );
    assert!(scene.store().session_info(b).unwrap().is_none());
}

#[test]
fn chat_sessions_lists_most_recent_first_with_title_count_and_activity() {
    let scene = Scene::new();
    let old = scene.init(Some("ana"));
    let new = scene.init(Some("ana"));
    let gone = scene.init(Some("ana"));
    {
        let store = scene.store();
        store
            .add_message(old, NewMessage::user("books by Oxford"))
            .unwrap();
        store
            .add_message(new, NewMessage::user("maps of Paris\nplease"))
            .unwrap();
        store.add_message(new, NewMessage::assistant("Found 2")).unwrap();
        store.expire_session(gone).unwrap();
    }
    let summaries = scene.store().recent_sessions("ana", 10).unwrap();
    let output = scene.stdout(&["chat-sessions", "--user-id", "ana"]);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{new}  {}    2 messages  maps of Paris please",
                summaries[0].last_activity
            ),
            format!(
                "{old}  {}     1 message  books by Oxford",
                summaries[1].last_activity
            ),
        ]
    );
    let limited = scene.stdout(&["chat-sessions", "--user-id", "ana", "--limit", "1"]);
    assert_eq!(limited.lines().count(), 1);
    assert!(limited.starts_with(&s(new)));
    let all = scene.stdout(&["chat-sessions", "--user-id", "ana", "--include-expired"]);
    assert_eq!(all.lines().count(), 3);
    assert!(all.contains(&format!("{gone}  ")) && all.contains("New conversation  [expired]"));
    assert_eq!(
        scene.stdout(&["chat-sessions", "--user-id", "nobody"]),
        "No active sessions for user nobody\n"
    );
}

#[test]
fn stats_counts_sessions_messages_and_size() {
    let scene = Scene::new();
    let id = scene.init(None);
    let other = scene.init(None);
    {
        let store = scene.store();
        store.add_message(id, NewMessage::user("a")).unwrap();
        store.add_message(id, NewMessage::user("b")).unwrap();
        store.expire_session(other).unwrap();
    }
    let size = std::fs::metadata(&scene.db).unwrap().len();
    let output = scene.stdout(&["stats"]);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines[..3],
        ["Active sessions: 1", "Expired sessions: 1", "Messages: 2"]
    );
    assert!(lines[3].starts_with("File size: ") && lines[3].ends_with(&format!(" ({size} bytes)")));
    let mut journal = scene.db.clone().into_os_string();
    journal.push("-journal");
    let journal_size = std::fs::metadata(&journal).unwrap().len();
    assert!(
        lines[4].starts_with("Journal size: ") && lines[4].ends_with(&format!(" ({journal_size} bytes)")),
        "{}",
        lines[4]
    );
    assert_eq!(lines.len(), 5);
}

#[test]
fn backup_writes_a_store_that_opens_with_the_same_sessions() {
    let scene = Scene::new();
    let id = scene.init(Some("ana"));
    scene
        .store()
        .add_message(id, NewMessage::user("keep me"))
        .unwrap();
    let dest = scene.dir.path().join("backup.redb");
    scene
        .cli()
        .arg("backup")
        .arg(&dest)
        .assert()
        .success()
        .stdout(predicate::str::starts_with(format!(
            "Backed up {} to {}: ",
            scene.db.display(),
            dest.display()
        )))
        .stderr("");
    let copy = SessionStore::open(&dest).unwrap();
    assert_eq!(
        copy.get_session(id).unwrap(),
        scene.store().get_session(id).unwrap()
    );
    drop(copy);
    scene
        .cli()
        .arg("backup")
        .arg(&dest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exists already"));
}

#[test]
fn check_gives_a_verdict_and_fails_on_a_damaged_index() {
    let scene = Scene::new();
    let id = scene.init(None);
    scene.cli().arg("check").assert().success().stdout(format!(
        "Clean: {}: no problems found (1 session, 0 messages read)\n",
        scene.db.display()
    ));

    // Break a rule behind the library's back: drop the session's expiry index entry.
    {
        let db = redb::Database::open(&scene.db).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let definition: redb::TableDefinition<(i64, u128), ()> =
                redb::TableDefinition::new("active_by_updated");
            let mut table = txn.open_table(definition).unwrap();
            let keys: Vec<(i64, u128)> = redb::ReadableTable::iter(&table)
                .unwrap()
                .map(|entry| entry.unwrap().0.value())
                .collect();
            assert_eq!(keys.len(), 1);
            assert_eq!(keys[0].1, id.as_u128());
            table.remove(keys[0]).unwrap();
        }
        txn.commit().unwrap();
    }
    scene
        .cli()
        .arg("check")
        .assert()
        .code(1)
        .stdout(
            predicate::str::starts_with(format!("NOT CLEAN: {}: 1 problem found", scene.db.display()))
                .and(predicate::str::contains("\n  - index active_by_updated differs")),
        )
        .stderr(format!(
            "error: {} failed the integrity check\n",
            scene.db.display()
        ));
}

#[test]
fn compact_prints_the_size_before_and_after() {
    let scene = Scene::new();
    let id = scene.init(None);
    let store = scene.store();
    // Text that does not compress: the store compresses large records.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    store.add_message(id, NewMessage::user(noise)).unwrap();
    // A session written after it keeps the freed megabyte inside the file
    // (redb trims free space only at the end of the file).
    let kept = store.create_session(None).unwrap();
    store.add_message(kept, NewMessage::user("kept")).unwrap();
    drop(store);
    scene.run(&["chat-delete", &s(id), "--yes"]).success();
    let output = scene.stdout(&["compact"]);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], format!("Compacted {}", scene.db.display()));
    let bytes = |line: &str| -> u64 {
        let inner = line.rsplit_once('(').unwrap().1;
        inner.strip_suffix(" bytes)").unwrap().parse().unwrap()
    };
    let (before, after) = (bytes(lines[1]), bytes(lines[2]));
    assert!(lines[1].starts_with("Before: ") && lines[2].starts_with("After: "));
    assert!(after < before, "{output}");
    // Closing the store commits once more, so the file may have grown a page since.
    assert!(std::fs::metadata(&scene.db).unwrap().len() < before);
    assert!(before > 1 << 20, "{output}");
}

#[test]
fn every_command_has_help_with_an_example() {
    for command in [
        "chat-init",
        "query",
        "chat-history",
        "chat-cleanup",
        "chat-sessions",
        "chat-expire",
        "chat-delete",
        "chat-erase-user",
        "stats",
        "backup",
        "check",
        "compact",
    ] {
        cargo_bin_cmd!("sessionstore")
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("Example")
                    .and(predicate::str::contains(format!("sessionstore {command}")))
                    .and(predicate::str::contains("--db <PATH>")),
            );
    }
}

/// On a terminal the long commands draw a progress bar on stderr; `script`
/// (util-linux, in every Debian base system) gives the binary a terminal.
#[cfg(target_os = "linux")]
#[test]
fn long_work_shows_a_progress_bar_on_a_terminal_only() {
    let scene = Scene::new();
    scene.init(None);
    let bin = assert_cmd::cargo::cargo_bin!("sessionstore");
    let command = format!("'{}' --db '{}' check", bin.display(), scene.db.display());
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("`script` runs the binary on a terminal");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("checking") && text.contains("1/1"), "{text}");
    assert!(text.contains("Clean: "), "{text}");

    scene.run(&["check"]).success().stderr("");
    scene
        .run(&[
            "chat-cleanup",
            "--max-age-hours",
            "0",
            "--purge-expired-days",
            "0",
        ])
        .success()
        .stderr("");
}

#[test]
fn chat_sessions_pages_through_many_sessions() {
    let scene = Scene::new();
    scene.init(Some("ana"));
    {
        let store = scene.store().with_durability(sessionstore::Durability::Relaxed);
        for _ in 0..249 {
            store.create_session(Some("ana")).unwrap();
        }
    }
    let all = scene.stdout(&["chat-sessions", "--user-id", "ana"]);
    let ids: std::collections::HashSet<&str> = all.lines().map(|line| &line[..36]).collect();
    assert_eq!(ids.len(), 250);
    let limited = scene.stdout(&["chat-sessions", "--user-id", "ana", "--limit", "120"]);
    assert_eq!(limited.lines().count(), 120);
    assert!(all.starts_with(&limited));
}

#[test]
fn a_file_that_is_not_a_store_is_refused_with_its_path() {
    let scene = Scene::new();
    std::fs::create_dir_all(scene.db.parent().unwrap()).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference-v1.db");
    std::fs::copy(fixture, &scene.db).unwrap();
    scene
        .run(&["stats"])
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "error: {}: not a usable sessionstore file",
            scene.db.display()
        )));
    assert_eq!(std::fs::read(&scene.db).unwrap(), std::fs::read(fixture).unwrap());
}
