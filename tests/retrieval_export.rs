//! `export-retrieval` (issue 20): the events a store's query log holds, in
//! each format, read back as files by the CLI, by the library, and by real
//! evaluation tools (tests/retrieval_tools/).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;
use sessionstore::retrieval::{RetrievalFilter, RetrievalFormat};
use sessionstore::{query, NewMessage, SessionStore, Uuid};

/// A candidate set shaped as the old store's retriever wrote it (see
/// tests/fixtures and benches/common), records `ids` in rank order.
fn set(publisher: &str, ids: &[&str]) -> String {
    let candidates: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"record_id": "{id}", "match_rationale": "publisher matches {publisher}", "evidence": [{{"field": "publisher_norm", "value": "{}", "operator": "LIKE", "matched_against": "{publisher}", "source": "db.imprints.publisher_norm", "confidence": 0.5}}]}}"#,
                publisher.to_lowercase()
            )
        })
        .collect();
    format!(
        r#"{{"query_text": "books by {publisher}", "plan_hash": "abc", "sql": "SELECT * FROM records WHERE publisher_norm LIKE ?", "candidates": [{}], "total_count": {}}}"#,
        candidates.join(", "),
        ids.len()
    )
}

fn plan(publisher: &str) -> String {
    format!(
        r#"{{"version": "1.0", "query_text": "books by {publisher}", "filters": [{{"field": "publisher", "op": "CONTAINS", "value": "{publisher}"}}]}}"#
    )
}

/// A query with its plan and the reply carrying `set`.
fn turn(store: &SessionStore, session: Uuid, text: &str, publisher: &str, set: String) {
    let query = NewMessage::user(text).with_query_plan(plan(publisher)).unwrap();
    store
        .add_messages(session, vec![query, query::results_reply(set).unwrap()])
        .unwrap();
}

/// The sessions of the tests: which ids and texts they hold.
struct Fixture {
    ana: Uuid,
    ana_later: Uuid,
    bo_expired: Uuid,
}

/// Events of three users' sessions, one expired, and five messages with a
/// candidate set that is not an event (one per skip reason, two of them
/// another application's shapes).
fn fill(store: &SessionStore) -> Fixture {
    let ana = store.create_session(Some("ana")).unwrap();
    turn(
        store,
        ana,
        "books by Oxford",
        "Oxford",
        set("Oxford", &["r1", "r2", "r3"]),
    );
    turn(store, ana, "and\tin\nLatin?", "Oxford", set("Oxford", &["r2"]));
    // Another application's shapes: skipped, counted.
    store
        .add_messages(
            ana,
            vec![
                NewMessage::user("other app"),
                NewMessage::assistant("x")
                    .with_candidate_set(r#"{"results": ["r1"]}"#)
                    .unwrap(),
                NewMessage::assistant("y")
                    .with_candidate_set(r#"{"candidates": [{"id": "r1"}]}"#)
                    .unwrap(),
                NewMessage::user("a set on a user message")
                    .with_candidate_set(set("Oxford", &["r1"]))
                    .unwrap(),
            ],
        )
        .unwrap();
    let ana_later = store.create_session(Some("ana")).unwrap();
    store
        .add_message(
            ana_later,
            NewMessage::assistant("a reply before any query")
                .with_candidate_set(set("Aldus", &["r9"]))
                .unwrap(),
        )
        .unwrap();
    // Own scores, strictly decreasing; a record id repeated; an integer id.
    turn(
        store,
        ana_later,
        "books by Aldus",
        "Aldus",
        r#"{"candidates": [{"record_id": "r4", "score": 0.9}, {"record_id": 7, "score": 0.5}, {"record_id": "r4", "score": 0.1}], "total_count": 40}"#.to_owned(),
    );
    let bo_expired = store.create_session(Some("bo")).unwrap();
    turn(
        store,
        bo_expired,
        "books by Plantin",
        "Plantin",
        set("Plantin", &[]),
    );
    store.expire_session(bo_expired).unwrap();
    let anonymous = store.create_session(None).unwrap();
    turn(
        store,
        anonymous,
        "books by Estienne",
        "Estienne",
        set("Estienne", &["r5", "r1"]),
    );
    Fixture {
        ana,
        ana_later,
        bo_expired,
    }
}

fn store_in(dir: &Path) -> SessionStore {
    SessionStore::open(dir.join("sessions.redb")).unwrap()
}

/// A store filled by [`fill`], in a temporary folder.
fn filled() -> (tempfile::TempDir, SessionStore, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let fixture = fill(&store);
    (dir, store, fixture)
}

/// Only the events of `session`.
fn only(session: Uuid) -> RetrievalFilter {
    RetrievalFilter {
        session: Some(session),
        ..RetrievalFilter::default()
    }
}

/// The lines of a JSONL file.
fn json_lines(path: &Path) -> Vec<Value> {
    read(path)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&read(&dir.join("manifest.json"))).unwrap()
}

fn export(store: &SessionStore, format: RetrievalFormat, filter: &RetrievalFilter, out: &Path) {
    store
        .export_retrieval(format, filter, out, &mut |_, _| {})
        .unwrap();
}

/// The query texts of the events an export with `filter` takes.
fn queries(store: &SessionStore, filter: &RetrievalFilter) -> Vec<String> {
    let mut texts = Vec::new();
    store
        .snapshot()
        .unwrap()
        .retrieval_events(filter, &mut |_, _| {}, &mut |event| {
            texts.push(event.query.content.clone());
            Ok(())
        })
        .unwrap();
    texts.sort();
    texts
}

#[test]
fn cli_writes_each_format_and_counts_what_it_skipped() {
    let (dir, store, _) = filled();
    drop(store);
    let db = dir.path().join("sessions.redb");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let formats: [(&str, &[&str]); 4] = [
        ("jsonl", &["events.jsonl"]),
        ("trec", &["run.trec", "topics.tsv"]),
        ("beir", &["queries.jsonl", "corpus.jsonl"]),
        ("ragas", &["ragas.jsonl"]),
    ];
    for (format, files) in formats {
        let out = dir.path().join(format);
        // A relative --db: the manifest names the store by its full path.
        let assert = cargo_bin_cmd!("sessionstore")
            .current_dir(dir.path())
            .args([
                "--db",
                "sessions.redb",
                "export-retrieval",
                "--format",
                format,
                "--out",
            ])
            .arg(&out)
            .assert()
            .success();
        let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
        assert_eq!(
            stdout,
            format!(
                "Exported 5 retrieval events (9 candidates) as {format} to {}; 4 messages skipped (reasons in manifest.json)\n",
                out.display()
            )
        );
        let mut listed: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        listed.sort();
        let mut expected: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        expected.push("manifest.json".into());
        expected.sort();
        assert_eq!(listed, expected, "only the export's files, no temporary one");
        #[cfg(unix)]
        for file in &expected {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{file} has the store's mode");
        }
        let manifest = manifest(&out);
        assert_eq!(manifest["format"], format);
        assert_eq!(manifest["schema"], "sessionstore.retrieval/1");
        assert_eq!(manifest["store"], db.canonicalize().unwrap().to_str().unwrap());
        assert_eq!(manifest["counts"]["events"], 5);
        let skipped: BTreeMap<String, u64> =
            serde_json::from_value(manifest["counts"]["skipped"].clone()).unwrap();
        assert_eq!(
            skipped,
            BTreeMap::from([
                ("candidate_set_not_on_an_assistant_message".to_owned(), 1),
                ("candidate_without_usable_record_id".to_owned(), 1),
                ("no_candidates_array".to_owned(), 1),
                ("no_user_message_before_the_reply".to_owned(), 1),
            ])
        );
        assert!(manifest["snapshot_time"].as_str().unwrap().ends_with("+00:00"));
    }
    let run = read(&dir.path().join("trec/run.trec"));
    assert!(run.lines().all(|line| line.split(' ').count() == 6), "{run}");
    let topics = read(&dir.path().join("trec/topics.tsv"));
    assert!(
        topics.lines().any(|line| line.ends_with("\tand in Latin?")),
        "{topics}"
    );
    assert_eq!(topics.lines().count(), 5);
}

#[test]
fn filters_take_user_session_time_and_activity() {
    let (dir, store, fixture) = filled();
    let all = RetrievalFilter::default();
    assert_eq!(
        queries(&store, &all),
        [
            "and\tin\nLatin?",
            "books by Aldus",
            "books by Estienne",
            "books by Oxford",
            "books by Plantin"
        ]
    );
    let user = |user: &str| RetrievalFilter {
        user: Some(user.into()),
        ..RetrievalFilter::default()
    };
    assert_eq!(
        queries(&store, &user("ana")),
        ["and\tin\nLatin?", "books by Aldus", "books by Oxford"]
    );
    assert_eq!(queries(&store, &user("bo")), ["books by Plantin"]);
    let active = RetrievalFilter {
        active_only: true,
        ..user("bo")
    };
    assert!(
        queries(&store, &active).is_empty(),
        "bo's only session is expired"
    );
    assert_eq!(queries(&store, &only(fixture.ana_later)), ["books by Aldus"]);
    // Since is inclusive, until exclusive, both on the reply's time.
    let messages = store.get_session(fixture.ana).unwrap().unwrap().messages;
    let second_reply = messages[3].timestamp.clone();
    let since = RetrievalFilter {
        since: Some(second_reply.clone()),
        ..only(fixture.ana)
    };
    assert_eq!(queries(&store, &since), ["and\tin\nLatin?"]);
    let until = RetrievalFilter {
        until: Some(second_reply),
        ..only(fixture.ana)
    };
    assert_eq!(queries(&store, &until), ["books by Oxford"]);
    let out = dir.path().join("out");
    export(&store, RetrievalFormat::Jsonl, &user("bo"), &out);
    let manifest = manifest(&out);
    assert_eq!(manifest["filters"]["user"], "bo");
    let line = &json_lines(&out.join("events.jsonl"))[0];
    assert_eq!(line["session_id"], fixture.bo_expired.to_string());
    assert_eq!(line["session_expired"], true);
}

#[test]
fn jsonl_keeps_each_candidate_as_stored_with_the_query_and_reply() {
    let (dir, store, fixture) = filled();
    let out = dir.path().join("out");
    export(&store, RetrievalFormat::Jsonl, &only(fixture.ana), &out);
    let text = read(&out.join("events.jsonl"));
    let lines = json_lines(&out.join("events.jsonl"));
    assert_eq!(lines.len(), 2);
    let messages = store.get_session(fixture.ana).unwrap().unwrap().messages;
    let first = &lines[0];
    assert_eq!(first["schema"], "sessionstore.retrieval/1");
    assert_eq!(first["user_id"], "ana");
    assert_eq!(first["turn"], 1);
    assert_eq!(first["message_id"], messages[1].id);
    assert_eq!(first["query_message_id"], messages[0].id);
    assert_eq!(first["query"], "books by Oxford");
    assert_eq!(first["query_plan"]["filters"][0]["value"], "Oxford");
    assert_eq!(first["reply"], "Found 3 books matching your query");
    assert_eq!(first["total_count"], 3);
    assert_eq!(first["candidate_set"]["plan_hash"], "abc");
    let stored: Value = serde_json::from_str(messages[1].candidate_set.as_ref().unwrap().as_str()).unwrap();
    assert_eq!(first["candidates"], stored["candidates"]);
    // Byte for byte: the stored text of each candidate is in the line.
    assert!(text.contains(r#"{"record_id": "r1", "match_rationale": "publisher matches Oxford""#));
    assert_eq!(lines[1]["turn"], 2);
    assert_eq!(lines[1]["query"], "and\tin\nLatin?");
}

#[test]
fn trec_scores_strictly_decrease_from_the_candidates_or_from_rank() {
    let (dir, store, fixture) = filled();
    let out = dir.path().join("out");
    export(&store, RetrievalFormat::Trec, &only(fixture.ana_later), &out);
    let reply = store.get_session(fixture.ana_later).unwrap().unwrap().messages[2].id;
    // Own scores; the repeated r4 keeps its first place only.
    assert_eq!(
        read(&out.join("run.trec")),
        format!("{reply} Q0 r4 1 0.9 sessionstore\n{reply} Q0 7 2 0.5 sessionstore\n")
    );
    let trec = &manifest(&out)["trec"];
    assert_eq!(trec["events_scored_by_candidates"], 1);
    assert_eq!(trec["repeated_candidates_dropped"], 1);

    export(&store, RetrievalFormat::Trec, &only(fixture.ana), &out);
    let messages = store.get_session(fixture.ana).unwrap().unwrap().messages;
    let (first, second) = (messages[1].id, messages[3].id);
    assert_eq!(
        read(&out.join("run.trec")),
        format!(
            "{first} Q0 r1 1 3 sessionstore\n{first} Q0 r2 2 2 sessionstore\n{first} Q0 r3 3 1 sessionstore\n\
             {second} Q0 r2 1 1 sessionstore\n"
        )
    );
    assert_eq!(
        read(&out.join("topics.tsv")),
        format!("{first}\tbooks by Oxford\n{second}\tand in Latin?\n")
    );
    assert_eq!(manifest(&out)["trec"]["events_scored_by_rank"], 2);
}

#[test]
fn beir_corpus_holds_each_record_once() {
    let (dir, store, _) = filled();
    let out = dir.path().join("out");
    export(&store, RetrievalFormat::Beir, &RetrievalFilter::default(), &out);
    let corpus = json_lines(&out.join("corpus.jsonl"));
    let mut ids: Vec<&str> = corpus.iter().map(|r| r["_id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["7", "r1", "r2", "r3", "r4", "r5"]);
    let r5 = corpus.iter().find(|r| r["_id"] == "r5").unwrap();
    assert_eq!(r5["title"], "");
    assert_eq!(
        r5["text"],
        "publisher matches Estienne\nfield: publisher_norm; value: estienne; operator: LIKE; \
         matched_against: Estienne; source: db.imprints.publisher_norm; confidence: 0.5"
    );
    assert_eq!(manifest(&out)["beir"]["corpus_records"], 6);
    assert_eq!(read(&out.join("queries.jsonl")).lines().count(), 5);
}

#[test]
fn ragas_samples_carry_the_contexts_and_the_response() {
    let (dir, store, fixture) = filled();
    let out = dir.path().join("out");
    export(&store, RetrievalFormat::Ragas, &only(fixture.ana), &out);
    let first = &json_lines(&out.join("ragas.jsonl"))[0];
    assert_eq!(first["user_input"], "books by Oxford");
    assert_eq!(
        first["retrieved_context_ids"],
        serde_json::json!(["r1", "r2", "r3"])
    );
    assert_eq!(first["retrieved_contexts"].as_array().unwrap().len(), 3);
    assert!(first["retrieved_contexts"][0]
        .as_str()
        .unwrap()
        .starts_with("publisher matches Oxford\nfield: publisher_norm"));
    assert_eq!(first["response"], "Found 3 books matching your query");
}

#[test]
fn an_export_reads_one_snapshot_while_writes_go_on() {
    let (dir, store, fixture) = filled();
    let out = dir.path().join("out");
    let mut wrote = false;
    let export = store
        .export_retrieval(
            RetrievalFormat::Jsonl,
            &RetrievalFilter::default(),
            &out,
            &mut |_, _| {
                // A turn committed after the snapshot began is not in it.
                if !wrote {
                    turn(
                        &store,
                        fixture.ana,
                        "books by Cambridge",
                        "Cambridge",
                        set("Cambridge", &["r8"]),
                    );
                    wrote = true;
                }
            },
        )
        .unwrap();
    assert!(wrote);
    assert_eq!(export.counts.events, 5);
    assert!(!read(&out.join("events.jsonl")).contains("Cambridge"));
    assert_eq!(queries(&store, &RetrievalFilter::default()).len(), 6);
}

#[test]
fn a_failed_export_changes_no_file() {
    let (dir, store, _) = filled();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("topics.tsv/in the way")).unwrap();
    std::fs::write(out.join("run.trec"), "an earlier run\n").unwrap();
    let error = store
        .export_retrieval(
            RetrievalFormat::Trec,
            &RetrievalFilter::default(),
            &out,
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(error.to_string().contains("topics.tsv"), "{error}");
    assert_eq!(read(&out.join("run.trec")), "an earlier run\n");
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["run.trec", "topics.tsv"], "no temporary file left");

    // The CLI says what and where, and writes nothing either.
    let db = dir.path().join("sessions.redb");
    drop(store);
    let assert = cargo_bin_cmd!("sessionstore")
        .arg("--db")
        .arg(&db)
        .args(["export-retrieval", "--format", "trec", "--out"])
        .arg(&out)
        .assert()
        .failure();
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.starts_with("error: replace ") && stderr.contains("topics.tsv"),
        "{stderr}"
    );
    assert_eq!(read(&out.join("run.trec")), "an earlier run\n");
}

/// Reads every format back with the evaluation tools of
/// tests/retrieval_tools/requirements.txt (ir_measures, ir_datasets,
/// beir's loader, ragas), in the virtual environment whose python
/// `SESSIONSTORE_EVAL_PYTHON` names; `.ci/run` makes one.
#[test]
fn evaluation_tools_read_every_format() {
    let Some(python) = std::env::var_os("SESSIONSTORE_EVAL_PYTHON") else {
        let how = "SESSIONSTORE_EVAL_PYTHON is not set. To run this test: python3 -m venv /tmp/evalvenv && \
                   /tmp/evalvenv/bin/pip install -r tests/retrieval_tools/requirements.txt && \
                   /tmp/evalvenv/bin/pip install --no-deps -r tests/retrieval_tools/requirements-nodeps.txt && \
                   SESSIONSTORE_EVAL_PYTHON=/tmp/evalvenv/bin/python cargo test --test retrieval_export";
        assert!(std::env::var_os("CI").is_none(), "{how}");
        eprintln!("skipped: {how}");
        return;
    };
    let (dir, store, _) = filled();
    let root = dir.path().join("exports");
    for format in [
        RetrievalFormat::Jsonl,
        RetrievalFormat::Trec,
        RetrievalFormat::Beir,
        RetrievalFormat::Ragas,
    ] {
        export(
            &store,
            format,
            &RetrievalFilter::default(),
            &root.join(format.as_str()),
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/retrieval_tools/check_exports.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(&root)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", Path::new(&python).display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check_exports.py failed:\n{stdout}\n{stderr}"
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["events"], 5);
    assert_eq!(summary["trec"]["P@1"], 1.0);
    assert_eq!(summary["beir"]["corpus"], 6);
    assert_eq!(summary["ragas"]["samples"], 5);
}
