//! The retrieval exports (issue 20) of the fixtures' conversations, written
//! by the old Python store: the events against the SQLite rows themselves,
//! and the TREC files and manifests against golden copies
//! (tests/golden/retrieval/; `UPDATE_GOLDEN=1` rewrites them).

mod common;

use std::path::{Path, PathBuf};

use common::{UPGRADED, V1};
use rusqlite::Connection;
use serde_json::Value;
use sessionstore::retrieval::{RetrievalFilter, RetrievalFormat};
use sessionstore::SessionStore;
use sessionstore_migrate::{import, ImportOptions};

/// The fixture converted into a store in `dir`.
fn store_of(fixture: &str, dir: &Path) -> SessionStore {
    let path = dir.join("sessions.redb");
    import(Path::new(fixture), &path, &ImportOptions::default()).unwrap();
    SessionStore::open(&path).unwrap()
}

fn export(store: &SessionStore, format: RetrievalFormat, out: &Path) {
    store
        .export_retrieval(format, &RetrievalFilter::default(), out, &mut |_, _| {})
        .unwrap();
}

/// An event as read straight from the SQLite rows: an assistant row with
/// a candidate set, after a user row of its session (sessions by id, rows
/// by id): (reply id, query text, query plan, candidates, total_count,
/// reply text, session expired).
type Expected = (i64, String, Value, Value, Value, String, bool);

fn expected_events(fixture: &str) -> Vec<Expected> {
    let conn = Connection::open(fixture).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT m.session_id, m.id, m.role, m.content, m.query_plan, m.candidate_set, s.expired_at IS NOT NULL \
             FROM chat_messages m JOIN chat_sessions s USING (session_id) ORDER BY m.session_id, m.id",
        )
        .unwrap();
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, bool>(6)?,
            ))
        })
        .unwrap();
    let mut events = Vec::new();
    let mut last_user: Option<(String, String, Value)> = None;
    for row in rows {
        let (session, id, role, content, plan, set, expired) = row.unwrap();
        if last_user.as_ref().is_some_and(|(s, _, _)| *s != session) {
            last_user = None;
        }
        match (role.as_str(), set) {
            ("assistant", Some(set)) => {
                let set: Value = serde_json::from_str(&set).unwrap();
                let (_, query, plan) = last_user.clone().expect("every fixture reply follows a query");
                events.push((
                    id,
                    query,
                    plan,
                    set["candidates"].clone(),
                    set["total_count"].clone(),
                    content,
                    expired,
                ));
            }
            ("user", _) => {
                let plan = plan.map_or(Value::Null, |p| serde_json::from_str(&p).unwrap());
                last_user = Some((session, content, plan));
            }
            _ => {}
        }
    }
    events
}

#[test]
fn fixture_events_are_the_sqlite_rows_replies_and_queries() {
    for fixture in [V1, UPGRADED] {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(fixture, dir.path());
        let out = dir.path().join("jsonl");
        export(&store, RetrievalFormat::Jsonl, &out);
        let exported: Vec<Expected> = std::fs::read_to_string(out.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|line| {
                let e: Value = serde_json::from_str(line).unwrap();
                (
                    e["message_id"].as_i64().unwrap(),
                    e["query"].as_str().unwrap().to_owned(),
                    e["query_plan"].clone(),
                    e["candidates"].clone(),
                    e["total_count"].clone(),
                    e["reply"].as_str().unwrap().to_owned(),
                    e["session_expired"].as_bool().unwrap(),
                )
            })
            .collect();
        let expected = expected_events(fixture);
        assert!(expected.len() > 150, "{fixture}: {} events", expected.len());
        assert_eq!(exported.len(), expected.len(), "{fixture}");
        for (got, want) in exported.iter().zip(&expected) {
            assert_eq!(got, want, "{fixture}: event {}", want.0);
        }
    }
}

fn golden_dir(fixture: &str) -> PathBuf {
    let name = Path::new(fixture)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/retrieval")
        .join(name)
}

/// A manifest with what differs from run to run (the store's path, the
/// snapshot's time) replaced by a fixed word.
fn stable_manifest(path: &Path) -> String {
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    manifest["store"] = "STORE".into();
    manifest["snapshot_time"] = "SNAPSHOT_TIME".into();
    serde_json::to_string_pretty(&manifest).unwrap() + "\n"
}

#[test]
fn fixture_trec_files_and_manifests_match_the_golden_copies() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for fixture in [V1, UPGRADED] {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(fixture, dir.path());
        let golden = golden_dir(fixture);
        let mut files = Vec::new();
        for format in [
            RetrievalFormat::Jsonl,
            RetrievalFormat::Trec,
            RetrievalFormat::Beir,
            RetrievalFormat::Ragas,
        ] {
            let out = dir.path().join(format.as_str());
            export(&store, format, &out);
            files.push((
                format!("{format}-manifest.json"),
                stable_manifest(&out.join("manifest.json")),
            ));
        }
        for name in ["run.trec", "topics.tsv"] {
            files.push((
                name.to_owned(),
                std::fs::read_to_string(dir.path().join("trec").join(name)).unwrap(),
            ));
        }
        for (name, text) in files {
            let path = golden.join(&name);
            if update {
                std::fs::create_dir_all(&golden).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
            assert!(text == want, "{} differs from the golden copy", path.display());
        }
    }
}
