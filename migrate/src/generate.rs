//! A generator of sessions.db files shaped like the fixtures the old store
//! wrote, for benchmarks: deterministic for a seed.
//!
//! Conversations run side by side (their messages' ids interleave, as in a
//! deployment), a user turn carries a query plan and its assistant turn a
//! 1-4 KB candidate set; the first half of the messages have naive
//! timestamps and the second half aware ones (generation 1, then 2), so
//! sessions that span the change hold both; about one session in seven is
//! expired. The file has the generation-2 schema.

use std::path::Path;

use rusqlite::params;
use sessionstore::{Timestamp, TimestampForm};

use crate::error::{InFile, Result};
use crate::output::Output;
use crate::schema::SchemaChoice;
use crate::sqlite;

/// Changes whenever the generated content changes, so that saved files
/// are not mistaken for the current generator's.
pub const GENERATOR_VERSION: u32 = 2;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions {
    /// How many messages.
    pub messages: u64,
    /// The seed: the same seed and count give the same file.
    pub seed: u64,
    /// Replace an existing file.
    pub force: bool,
}

/// What was generated.
#[derive(Clone, Copy, Debug)]
pub struct GenerateReport {
    /// Sessions written.
    pub sessions: u64,
    /// Messages written.
    pub messages: u64,
}

/// The page size of the files the old store wrote (SQLite's default).
const OLD_STORE_PAGE_SIZE: u32 = 4096;
/// Conversations open at once.
const OPEN: usize = 32;
const PUBLISHERS: [&str; 6] = [
    "Oxford",
    "Cambridge",
    "Elzevir",
    "Plantin",
    "Estienne",
    "Aldus Manutius",
];
const WORDS: [&str; 16] = [
    "Latin",
    "printer",
    "astronomy",
    "vellum",
    "colophon",
    "binding",
    "Greek",
    "provenance",
    "imprint",
    "woodcut",
    "octavo",
    "folio",
    "quarto",
    "Hebrew",
    "catalogue",
    "edition",
];

struct Conversation {
    id: String,
    turns_left: u32,
    publisher: &'static str,
}

/// Writes a new sessions.db file at `path`.
pub fn generate(path: &Path, options: &GenerateOptions) -> Result<GenerateReport> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let output = Output::create(path, options.force)?;
    let conn = sqlite::open_output(output.path(), OLD_STORE_PAGE_SIZE)?;
    let objects = SchemaChoice::Upgraded.objects();
    conn.execute_batch("BEGIN").in_file(path)?;
    for object in objects.iter().filter(|o| o.kind == "table") {
        conn.execute_batch(&object.sql).in_file(path)?;
    }
    let mut add_session = conn
        .prepare(
            "INSERT INTO chat_sessions (session_id, user_id, created_at, updated_at, context, metadata, expired_at) \
             VALUES (?1, ?2, ?3, ?3, '{}', '{}', NULL)",
        )
        .in_file(path)?;
    let mut close_session = conn
        .prepare(
            "UPDATE chat_sessions SET updated_at = ?2, context = ?3, expired_at = ?4 WHERE session_id = ?1",
        )
        .in_file(path)?;
    let mut add_message = conn
        .prepare(
            "INSERT INTO chat_messages (session_id, role, content, query_plan, candidate_set, timestamp) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .in_file(path)?;

    let mut clock: i64 = 1_735_689_600_000_000; // 2025-01-01T00:00:00
    let mut now = |rng: &mut fastrand::Rng, written: u64| {
        clock += rng.i64(1..2_000_000);
        let micros = if rng.u8(..50) == 0 {
            clock - clock % 1_000_000
        } else {
            clock
        };
        let form = if written < options.messages / 2 {
            TimestampForm::Naive
        } else {
            TimestampForm::Utc
        };
        Timestamp::from_micros(micros, form).to_text().into_owned()
    };
    let mut open: Vec<Conversation> = Vec::with_capacity(OPEN);
    let mut report = GenerateReport {
        sessions: 0,
        messages: 0,
    };
    while report.messages < options.messages {
        if open.len() < OPEN {
            let conversation = Conversation {
                id: uuid_v4(&mut rng),
                turns_left: rng.u32(1..10),
                publisher: PUBLISHERS[rng.usize(..PUBLISHERS.len())],
            };
            let user = match rng.u8(..8) {
                0 => None,
                n => Some(format!("user{n}")),
            };
            add_session
                .execute(params![conversation.id, user, now(&mut rng, report.messages)])
                .in_file(path)?;
            report.sessions += 1;
            open.push(conversation);
            continue;
        }
        let index = rng.usize(..open.len());
        let conversation = &mut open[index];
        let query = format!("books by {} {}", conversation.publisher, words(&mut rng, 2..14));
        let plan = query_plan(&query, conversation.publisher);
        add_message
            .execute(params![
                conversation.id,
                "user",
                query,
                plan,
                None::<String>,
                now(&mut rng, report.messages)
            ])
            .in_file(path)?;
        let found = rng.u32(1..14);
        let reply = format!("Found {found} books. {}", words(&mut rng, 10..80));
        let candidates = candidate_set(&mut rng, &query, conversation.publisher, found);
        let at = now(&mut rng, report.messages + 1);
        add_message
            .execute(params![
                conversation.id,
                "assistant",
                reply,
                None::<String>,
                candidates,
                at
            ])
            .in_file(path)?;
        report.messages += 2;
        conversation.turns_left -= 1;
        if conversation.turns_left == 0 {
            let done = open.swap_remove(index);
            let context = format!(
                "{{\"last_publisher\": \"{}\", \"last_result_count\": {found}}}",
                done.publisher
            );
            let expired = (rng.u8(..7) == 0).then(|| now(&mut rng, report.messages));
            close_session
                .execute(params![done.id, at, context, expired])
                .in_file(path)?;
        }
    }
    drop((add_session, close_session, add_message));
    for object in objects.iter().filter(|o| o.kind != "table") {
        conn.execute_batch(&object.sql).in_file(path)?;
    }
    conn.execute_batch("COMMIT").in_file(path)?;
    conn.close().map_err(|(_, e)| e).in_file(path)?;
    output.commit(None)?;
    Ok(report)
}

/// A random version-4 UUID as Python's `str(uuid4())` writes it.
fn uuid_v4(rng: &mut fastrand::Rng) -> String {
    let mut bytes: [u8; 16] = std::array::from_fn(|_| rng.u8(..));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    sessionstore::Uuid::from_bytes(bytes).hyphenated().to_string()
}

fn words(rng: &mut fastrand::Rng, count: std::ops::Range<usize>) -> String {
    let n = rng.usize(count);
    let mut text = String::new();
    for i in 0..n {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    text
}

fn query_plan(query: &str, publisher: &str) -> String {
    format!(
        "{{\"version\": \"1.0\", \"query_text\": \"{query}\", \"filters\": [{{\"field\": \"publisher\", \"op\": \
         \"CONTAINS\", \"value\": \"{publisher}\", \"start\": null, \"end\": null, \"negate\": false, \
         \"confidence\": null, \"notes\": null}}], \"soft_filters\": [], \"limit\": null, \"debug\": {{}}}}"
    )
}

fn candidate_set(rng: &mut fastrand::Rng, query: &str, publisher: &str, found: u32) -> String {
    let mut text = format!(
        "{{\"query_text\": \"{query}\", \"plan_hash\": \"{:016x}{:016x}{:016x}{:016x}\", \"sql\": \"SELECT * FROM \
         records WHERE publisher_norm LIKE ?\", \"candidates\": [",
        rng.u64(..),
        rng.u64(..),
        rng.u64(..),
        rng.u64(..)
    );
    // 1 to 4 KB: a few hundred bytes per candidate.
    let shown = 2 + found.min(10);
    for i in 0..shown {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!(
            "{{\"record_id\": \"99{:012}\", \"match_rationale\": \"publisher matches {publisher}\", \"evidence\": \
             [{{\"field\": \"publisher_norm\", \"value\": \"{}\", \"operator\": \"LIKE\", \"matched_against\": \
             \"{publisher}\", \"source\": \"db.imprints.publisher_norm\", \"confidence\": 0.{:03}}}]}}",
            rng.u64(..1_000_000_000_000),
            publisher.to_lowercase(),
            rng.u32(..1000)
        ));
    }
    text.push_str(&format!("], \"total_count\": {found}}}"));
    text
}
