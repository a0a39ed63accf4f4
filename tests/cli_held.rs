//! Issue 17 item 3: every CLI command works the same whether the store file
//! is free or held by another process (then through its local socket).
//!
//! The holder is this test binary run again as a child (the ignored test
//! `holder_child`, selected with `--exact`): it opens the store, says
//! `OPEN`, optionally appends durably to a session of its own, printing each
//! acknowledged id, and closes the store when its stdin closes.

mod holder;

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use holder::Holder;
use sessionstore::{NewMessage, SessionStore, Uuid};

#[test]
#[ignore = "child process of the held-store tests; runs only with SESSIONSTORE_HOLDER_STORE set"]
fn holder_child() {
    holder::child();
}

/// What a command printed and how it exited.
#[derive(Debug, PartialEq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The same outcome with each file size (`: 96.00 KiB (98304 bytes)`)
    /// masked: a file held open for a while has grown pages that a fresh
    /// open of its copy has not, so sizes are the files', not the path's.
    fn sizes_masked(mut self) -> Outcome {
        self.stdout = self
            .stdout
            .lines()
            .map(|line| match line.rfind(": ") {
                Some(at) if line.ends_with(" bytes)") => format!("{}: <size>\n", &line[..at]),
                _ => format!("{line}\n"),
            })
            .collect();
        self
    }
}

/// `text` with every timestamp (`2026-12-03T09:02:12.349709+00:00`) as
/// `<time>`.
fn times_masked(text: &str) -> String {
    let mut masked = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("+00:00") {
        let before = &rest[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_digit() || "-T:.".contains(c)))
            .map_or(0, |i| i + 1);
        masked.push_str(&before[..start]);
        masked.push_str(if at - start >= 19 {
            "<time>"
        } else {
            &before[start..]
        });
        if at - start < 19 {
            masked.push_str("+00:00");
        }
        rest = &rest[at + "+00:00".len()..];
    }
    masked.push_str(rest);
    masked
}

/// Runs `sessionstore --db s.redb ARGS` in `folder`.
fn run(folder: &Path, args: &[&str]) -> Outcome {
    let output = cargo_bin_cmd!("sessionstore")
        .env_remove("SESSIONSTORE_DB")
        .current_dir(folder)
        .args(["--db", "s.redb"])
        .args(args)
        .output()
        .expect("run the CLI");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// The seeded sessions: ana's live one (two messages, one with a query
/// plan), ana's expired one, bob's, carol's (to be deleted).
struct Seed {
    live: Uuid,
    expired: Uuid,
    bob: Uuid,
    carol: Uuid,
}

fn seed(path: &Path) -> Seed {
    let store = SessionStore::open(path).unwrap();
    let live = store.create_session(Some("ana")).unwrap();
    let plan = r#"{"filters": [{"field": "publisher",  "value": "Oxford"}]}"#;
    store
        .add_messages(
            live,
            vec![
                NewMessage::user("books by Oxford").with_query_plan(plan).unwrap(),
                NewMessage::assistant("Found 3 books matching your query"),
            ],
        )
        .unwrap();
    store
        .update_context(live, r#"{"last_publisher": "Oxford"}"#)
        .unwrap();
    let expired = store.create_session(Some("ana")).unwrap();
    store
        .add_message(expired, NewMessage::user("old question"))
        .unwrap();
    store.expire_session(expired).unwrap();
    let bob = store.create_session(Some("bob")).unwrap();
    store.add_message(bob, NewMessage::user("hello")).unwrap();
    let carol = store.create_session(Some("carol")).unwrap();
    store
        .add_message(carol, NewMessage::user("to be deleted"))
        .unwrap();
    Seed {
        live,
        expired,
        bob,
        carol,
    }
}

/// Two folders `held/` and `free/`, each with `s.redb`: the same store,
/// byte for byte (the second a copy of the first once closed).
fn twins(dir: &Path) -> (PathBuf, PathBuf, Seed) {
    let (held, free) = (dir.join("held"), dir.join("free"));
    std::fs::create_dir(&held).unwrap();
    std::fs::create_dir(&free).unwrap();
    let seeded = seed(&held.join("s.redb"));
    for name in ["s.redb", "s.redb-journal"] {
        std::fs::copy(held.join(name), free.join(name)).unwrap();
    }
    (held, free, seeded)
}

#[test]
fn every_command_prints_the_same_through_the_socket_as_on_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (held, free, s) = twins(dir.path());
    let ids = [s.live, s.expired, s.bob, s.carol].map(|id| id.to_string());
    let [live, expired, bob, carol] = ids.each_ref().map(String::as_str);
    let missing = Uuid::new_v4().to_string();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, r#"{"filters": []}"#).unwrap();
    let set = dir.path().join("set.json");
    std::fs::write(&set, r#"{"total_count": 2, "candidates": [1, 2]}"#).unwrap();
    let (plan, set) = (plan.to_str().unwrap(), set.to_str().unwrap());
    let commands: Vec<Vec<&str>> = vec![
        vec!["chat-history", live],
        vec!["chat-history", live, "--json"],
        vec!["chat-history", live, "--last", "1", "--json"],
        vec!["chat-history", expired],
        vec!["chat-history", &missing],
        vec!["chat-sessions", "--user-id", "ana"],
        vec!["chat-sessions", "--user-id", "ana", "--include-expired"],
        vec![
            "chat-sessions",
            "--user-id",
            "ana",
            "--include-expired",
            "--limit",
            "1",
        ],
        vec!["chat-sessions", "--user-id", "nobody"],
        vec!["chat-search", "--user-id", "ana", "oxford", "books"],
        vec!["chat-search", "--user-id", "ana", "books", "--limit", "1"],
        vec!["chat-search", "--user-id", "nobody", "books"],
        vec!["chat-search", "--user-id", "ana", "!?"],
        vec!["chat-search", "--user-id", "ana", "books", "--limit", "0"],
        vec!["stats"],
        vec!["check"],
        vec!["query", "more by Oxford", "--session-id", live],
        vec![
            "query",
            "and cheaper",
            "--session-id",
            live,
            "--query-plan",
            plan,
            "--candidate-set",
            set,
        ],
        vec!["query", "too late", "--session-id", expired],
        vec!["query", "nobody there", "--session-id", &missing],
        vec!["chat-history", live, "--json"],
        vec!["chat-expire", bob],
        vec!["chat-expire", bob],
        vec!["chat-expire", &missing],
        vec!["chat-delete", carol],
        vec!["chat-delete", carol, "--yes"],
        vec!["chat-delete", carol, "--yes"],
        vec!["chat-erase-user", "bob"],
        vec!["chat-erase-user", "bob", "--yes"],
        vec!["chat-erase-user", "bob", "--yes"],
        vec![
            "chat-cleanup",
            "--max-age-hours",
            "24",
            "--purge-expired-days",
            "0",
        ],
        vec!["chat-sessions", "--user-id", "ana", "--include-expired"],
        vec!["stats"],
        vec!["backup", "copy.redb"],
        vec!["backup", "copy.redb"],
        vec!["check"],
        vec!["compact"],
        vec!["stats"],
    ];
    let holder = Holder::start(&held.join("s.redb"), false, true);
    let through_socket: Vec<Outcome> = commands
        .iter()
        .map(|args| run(&held, args).sizes_masked())
        .collect();
    holder.stop();
    // The writes of the two runs happen at different times: from the first
    // one on, timestamps are compared masked.
    let first_write = commands.iter().position(|args| args[0] == "query").unwrap();
    for (i, (args, mut held_outcome)) in commands.iter().zip(through_socket).enumerate() {
        let mut free_outcome = run(&free, args).sizes_masked();
        if i >= first_write {
            for outcome in [&mut held_outcome, &mut free_outcome] {
                outcome.stdout = times_masked(&outcome.stdout);
                outcome.stderr = times_masked(&outcome.stderr);
            }
        }
        assert_eq!(
            held_outcome, free_outcome,
            "sessionstore {args:?}: held (left) and free (right) differ"
        );
    }
    // The held store's backup is the holder's copy of the same data.
    let copy = SessionStore::open(held.join("copy.redb")).unwrap();
    assert_eq!(copy.get_session(s.live).unwrap().unwrap().messages.len(), 5);
}

#[test]
fn a_holder_without_a_socket_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let id = seed(&path).live;
    let holder = Holder::start(&path, false, false);
    let socket = SessionStore::socket_path(&path);
    for args in [vec!["stats"], vec!["chat-history", &id.to_string()]] {
        let outcome = run(dir.path(), &args);
        assert_eq!(outcome.code, Some(1), "{args:?}: {outcome:?}");
        assert_eq!(
            outcome.stderr,
            format!(
                "error: s.redb is in use by another process, which serves no socket at {}: \
                 stop it, or open the store with the socket on\n",
                socket.display()
            ),
            "{args:?}"
        );
        assert_eq!(outcome.stdout, "");
    }
    holder.stop();
}

/// The old guide's flow, run while the chatbot (the holder) keeps writing.
#[test]
fn the_old_guides_flow_runs_while_the_holder_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    SessionStore::open(&path).unwrap();
    let holder = Holder::start(&path, true, true);
    // The holder is writing before the first command runs.
    let mut lines = Vec::new();
    while holder::acknowledged(&lines).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(10));
        lines.extend(holder.printed());
    }
    let folder = dir.path();
    let ok = |args: &[&str]| {
        let outcome = run(folder, args);
        assert_eq!(outcome.code, Some(0), "{args:?}: {outcome:?}");
        outcome.stdout
    };
    let created = ok(&["chat-init", "--user-id", "ana"]);
    let id = created
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("Created session: "))
        .expect("the new session's id")
        .to_owned();
    assert!(ok(&["query", "books by Oxford", "--session-id", &id])
        .starts_with(&format!("Saved to session {id}: messages ")));
    let history = ok(&["chat-history", &id]);
    assert!(history.contains("books by Oxford"), "{history}");
    ok(&[
        "chat-cleanup",
        "--max-age-hours",
        "24",
        "--purge-expired-days",
        "30",
    ]);
    let stats = ok(&["stats"]);
    assert!(stats.starts_with("Active sessions: 2\n"), "{stats}");
    ok(&["backup", "backup.redb"]);
    ok(&["check"]);
    lines.extend(holder.stop());
    let acked = holder::acknowledged(&lines);
    assert!(acked.len() > 10, "the holder wrote while the CLI ran: {acked:?}");
    let store = SessionStore::open(&path).unwrap();
    holder::assert_kept(&store, &acked);
    let mine = store.get_session(id.parse().unwrap()).unwrap().unwrap();
    assert_eq!(mine.messages.len(), 1);
    let backup = SessionStore::open(dir.path().join("backup.redb")).unwrap();
    assert!(backup.session_info(id.parse().unwrap()).unwrap().is_some());
}

#[test]
fn timestamps_are_masked_and_nothing_else() {
    assert_eq!(
        times_masked("at 2026-12-03T09:02:12.349709+00:00, 12+00:00 and \"2026-12-03T09:02:12+00:00\""),
        "at <time>, 12+00:00 and \"<time>\""
    );
}

/// Commands run at once on a free file: one opens it, the others reach it
/// through that one's socket, or open it once it is closed. Each query is
/// recorded once, and none is refused.
#[test]
fn twenty_queries_at_once_are_all_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let id = seed(&dir.path().join("s.redb")).bob.to_string();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sessionstore"));
            command
                .env_remove("SESSIONSTORE_DB")
                .current_dir(dir.path())
                .args([
                    "--db",
                    "s.redb",
                    "query",
                    &format!("query {i}"),
                    "--session-id",
                    &id,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    let mut contents: Vec<String> = store.get_session(id.parse().unwrap()).unwrap().unwrap().messages[1..]
        .iter()
        .map(|m| m.content.clone())
        .collect();
    contents.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("query {i}")).collect();
    expected.sort();
    assert_eq!(contents, expected);
}

/// `export-retrieval` on a held store exports the same events as on the
/// free file (from a copy the holder writes), and `chat-fork` on a held
/// store makes the fork in the holder's store.
#[test]
fn export_retrieval_and_chat_fork_work_on_a_held_store() {
    let dir = tempfile::tempdir().unwrap();
    let (held, free, s) = twins(dir.path());
    let set = r#"{"total_count": 2, "candidates": [{"record_id": "b1"}, {"record_id": "b2"}]}"#;
    for folder in [&held, &free] {
        std::fs::write(folder.join("set.json"), set).unwrap();
        let args = [
            "query",
            "cheaper ones",
            "--session-id",
            &s.live.to_string(),
            "--candidate-set",
            "set.json",
        ];
        assert_eq!(run(folder, &args).code, Some(0));
    }
    let holder = Holder::start(&held.join("s.redb"), false, true);
    let export = ["export-retrieval", "--format", "jsonl", "--out", "out"];
    let through_socket = run(&held, &export);
    let fork = run(&held, &["chat-fork", &s.live.to_string(), "--at", "2"]);
    holder.stop();
    let on_the_file = run(&free, &export);
    assert_eq!(through_socket, on_the_file);
    assert_eq!(through_socket.code, Some(0), "{through_socket:?}");
    let events =
        |folder: &Path| times_masked(&std::fs::read_to_string(folder.join("out/events.jsonl")).unwrap());
    assert_eq!(events(&held), events(&free));
    assert_eq!(events(&held).lines().count(), 1);
    // No copy is left beside the held store.
    let left: Vec<_> = std::fs::read_dir(&held)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".sessionstore-copy"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    assert_eq!(fork.code, Some(0), "{fork:?}");
    let forked: Uuid = fork
        .stdout
        .strip_prefix("Created session: ")
        .and_then(|rest| rest.trim().parse().ok())
        .expect("the fork's id");
    let store = SessionStore::open(held.join("s.redb")).unwrap();
    let messages = store.get_session(forked).unwrap().expect("the fork").messages;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].content, "books by Oxford");
    let forks = store.forks(s.live).unwrap().expect("the forked session");
    assert_eq!(
        forks.iter().map(|info| info.session_id).collect::<Vec<_>>(),
        [forked]
    );
}
