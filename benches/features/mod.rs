//! Issue 21's lines: a fork of a 10,000-message session, `messages_within`
//! on one, search over a user with 100,000 messages (p50 and p99), and the
//! durable append with search on. Each beside what the old SQLite store
//! would do for it: copy the rows in one transaction, read the newest rows
//! until the budget is spent, an FTS5 index (kept by triggers) ranked by
//! its bm25.

use std::time::Instant;

use rusqlite::{params, Connection};
use sessionstore::{Durability, SessionStore, TokenRule, Uuid};

use crate::common::{self, conversation, sql_session, ss_session, Sqlite, Turn};
use crate::{median, micros_row, millis_row, percentile, Better, Config, Row};

/// The user whose history is searched.
const SEARCHER: &str = "searcher";
/// The token budget of `messages_within`: about the last 20 messages.
const BUDGET: u64 = 4_000;

pub fn features(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let mut rows = fork_and_budget(config, notes);
    rows.extend(search(config, notes));
    rows.extend(append_with_search(config, notes));
    rows
}

/// A fork of a 10,000-message session (durable), and `messages_within` on
/// one.
fn fork_and_budget(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    let ss = ss_session(&store, 21, 10_000);
    let sq = sql_session(&sqlite, 21, 10_000);
    let rounds = config.pick(3, 7);
    let (mut ss_forks, mut sq_forks) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let at = Instant::now();
        store.fork_session(ss, 10_000).expect("fork");
        ss_forks.push(at.elapsed());
        let at = Instant::now();
        sql_fork(sqlite.connection(), &sq);
        sq_forks.push(at.elapsed());
    }
    let (ss_fork, sq_fork) = (median(ss_forks), median(sq_forks));
    notes.push(format!(
        "\nfork_10k_messages: one durable commit copying 10,000 messages (records, id entries, \
         pending search entries); SQLite copies the rows with one INSERT ... SELECT. Median of {rounds}."
    ));

    let iterations = config.pick(200, 1000);
    let (mut ss_times, mut sq_times) = (Vec::new(), Vec::new());
    let mut kept = 0;
    for i in 0..iterations + iterations / 10 {
        let at = Instant::now();
        let messages = store
            .messages_within(ss, BUDGET, TokenRule::default())
            .expect("read")
            .expect("active");
        let ss_time = at.elapsed();
        let at = Instant::now();
        let rows = sql_within(sqlite.connection(), &sq, BUDGET);
        let sq_time = at.elapsed();
        if i >= iterations / 10 {
            ss_times.push(ss_time);
            sq_times.push(sq_time);
        }
        kept = messages.len();
        assert!(rows > 0);
    }
    ss_times.sort_unstable();
    sq_times.sort_unstable();
    notes.push(format!(
        "\nmessages_within_10k: a budget of {BUDGET} tokens (bytes / 4) keeps the newest {kept} of 10,000 \
         messages; SQLite reads the newest rows until the budget is spent."
    ));
    vec![
        millis_row("fork_10k_messages", ss_fork, sq_fork),
        micros_row(
            "messages_within_10k",
            percentile(&ss_times, 0.5),
            percentile(&sq_times, 0.5),
        ),
    ]
}

/// What the old store would do for a fork: the session row, then every
/// message copied, in one transaction.
fn sql_fork(conn: &Connection, from: &str) {
    let txn = conn.unchecked_transaction().expect("begin");
    let id = Uuid::new_v4().to_string();
    txn.execute(
        "INSERT INTO chat_sessions (session_id, user_id, created_at, updated_at, context, metadata) \
         SELECT ?1, user_id, created_at, updated_at, context, metadata FROM chat_sessions WHERE session_id = ?2",
        params![id, from],
    )
    .expect("copy session");
    txn.execute(
        "INSERT INTO chat_messages (session_id, role, content, query_plan, candidate_set, timestamp) \
         SELECT ?1, role, content, query_plan, candidate_set, timestamp FROM chat_messages \
         WHERE session_id = ?2 ORDER BY id",
        params![id, from],
    )
    .expect("copy messages");
    txn.commit().expect("commit");
}

/// The newest messages of `id` whose bytes / 4 fit in `budget`, read
/// newest first; how many.
fn sql_within(conn: &Connection, id: &str, budget: u64) -> usize {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, role, content, query_plan, candidate_set, timestamp FROM chat_messages \
             WHERE session_id = ?1 ORDER BY timestamp DESC, id DESC",
        )
        .expect("prepare");
    let mut rows = statement.query([id]).expect("query");
    let (mut spent, mut kept) = (0u64, Vec::new());
    while let Some(row) = rows.next().expect("row") {
        let content: String = row.get(2).expect("content");
        let cost = (content.len() as u64).div_ceil(4);
        if spent + cost > budget {
            break;
        }
        spent += cost;
        let plan: Option<String> = row.get(3).expect("plan");
        let set: Option<String> = row.get(4).expect("set");
        kept.push((row.get::<_, i64>(0).expect("id"), content, plan, set));
    }
    kept.len()
}

/// Search over a user with 100,000 messages (100 sessions of 1,000), the
/// index caught up (a compaction indexes what is pending), ten hits a
/// query; p50 and p99 over queries of one and two words.
fn search(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Relaxed);
    sqlite.connection().execute_batch(FTS).expect("the FTS5 index");
    let (sessions, per_session) = config.pick((20, 1_000), (100, 1_000));
    let turns = conversation(2121, per_session);
    let relaxed = store.with_durability(Durability::Relaxed);
    let load = Instant::now();
    for _ in 0..sessions {
        let id = relaxed.create_session(Some(SEARCHER)).expect("create");
        for chunk in turns.chunks(100) {
            relaxed
                .add_messages(id, chunk.iter().map(Turn::to_new_message).collect())
                .expect("add");
        }
    }
    let loaded = load.elapsed();
    let compact = Instant::now();
    store.compact(&mut |_, _| {}).expect("compact");
    let compacted = compact.elapsed();
    let txn = sqlite.connection().unchecked_transaction().expect("begin");
    for _ in 0..sessions {
        let id = Uuid::new_v4().to_string();
        txn.execute(
            "INSERT INTO chat_sessions (session_id, user_id, created_at, updated_at, context, metadata) \
             VALUES (?1, ?2, '2026-01-01T00:00:00', '2026-01-01T00:00:00', '{}', '{}')",
            params![id, SEARCHER],
        )
        .expect("session");
        for turn in &turns {
            txn.execute(
                "INSERT INTO chat_messages (session_id, role, content, query_plan, candidate_set, timestamp) \
                 VALUES (?1, ?2, ?3, ?4, ?5, '2026-01-01T00:00:00')",
                params![id, turn.role.as_str(), turn.content, turn.query_plan, turn.candidate_set],
            )
            .expect("message");
        }
    }
    txn.commit().expect("commit");
    // Queries: words the messages hold (publishers, the random words of
    // the turns), one or two a query.
    let words: Vec<String> = turns
        .iter()
        .take(200)
        .flat_map(|turn| {
            turn.content
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|word| word.chars().filter(|c| c.is_alphanumeric()).collect::<String>())
        .filter(|word| word.len() > 3)
        .collect();
    let queries: Vec<String> = (0..config.pick(200, 1000))
        .map(|i| {
            let first = &words[(i * 7919) % words.len()];
            if i % 2 == 0 {
                first.clone()
            } else {
                format!("{first} {}", words[(i * 104_729 + 13) % words.len()])
            }
        })
        .collect();
    let (mut ss_times, mut sq_times) = (Vec::new(), Vec::new());
    let mut hits = 0;
    for (i, query) in queries.iter().enumerate() {
        let at = Instant::now();
        let page = store.search(SEARCHER, query, None, 10).expect("search");
        let ss_time = at.elapsed();
        let at = Instant::now();
        let found = sql_search(sqlite.connection(), query);
        let sq_time = at.elapsed();
        if i >= queries.len() / 10 {
            ss_times.push(ss_time);
            sq_times.push(sq_time);
        }
        hits += page.hits.len();
        assert!(found <= 10);
    }
    ss_times.sort_unstable();
    sq_times.sort_unstable();
    let messages = sessions * per_session as usize;
    notes.push(format!(
        "\nsearch_{}k_messages: one user, {sessions} sessions of {per_session} messages; queries of one or \
         two words the messages hold, 10 hits a page ({:.1} on average); the index caught up (loading \
         with relaxed appends took {:.1} s, the compaction that indexes what was pending {:.1} s). \
         SQLite: an FTS5 table over the content kept by triggers, ranked by bm25(), joined to the \
         user's sessions.",
        messages / 1000,
        hits as f64 / queries.len() as f64,
        loaded.as_secs_f64(),
        compacted.as_secs_f64(),
    ));
    let row = |workload, unit, p| Row {
        workload,
        unit,
        sessionstore: percentile(&ss_times, p),
        sqlite: percentile(&sq_times, p),
        floor: None,
        postgres: None,
        better: Better::Lower,
    };
    vec![
        row(
            if config.quick {
                "search_20k_messages_p50"
            } else {
                "search_100k_messages_p50"
            },
            "µs (median)",
            0.5,
        ),
        row(
            if config.quick {
                "search_20k_messages_p99"
            } else {
                "search_100k_messages_p99"
            },
            "µs (p99)",
            0.99,
        ),
    ]
}

/// The old store's schema plus a full-text index of the content, kept by
/// triggers: what SQLite needs to answer a search.
const FTS: &str = "
CREATE VIRTUAL TABLE IF NOT EXISTS chat_messages_fts USING fts5(content, content='chat_messages', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS chat_messages_fts_insert AFTER INSERT ON chat_messages BEGIN
  INSERT INTO chat_messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS chat_messages_fts_delete AFTER DELETE ON chat_messages BEGIN
  INSERT INTO chat_messages_fts(chat_messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
";

/// Ten hits of `query` (its words ORed) among the searcher's messages,
/// best first, with a snippet; how many.
fn sql_search(conn: &Connection, query: &str) -> usize {
    let expression = query
        .split_whitespace()
        .map(|word| format!("\"{word}\""))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut statement = conn
        .prepare_cached(
            "SELECT m.session_id, m.id, bm25(chat_messages_fts) AS score, \
             snippet(chat_messages_fts, 0, '', '', '…', 20) \
             FROM chat_messages_fts JOIN chat_messages m ON m.id = chat_messages_fts.rowid \
             JOIN chat_sessions s ON s.session_id = m.session_id \
             WHERE chat_messages_fts MATCH ?1 AND s.user_id = ?2 AND s.expired_at IS NULL \
             ORDER BY score LIMIT 10",
        )
        .expect("prepare");
    let rows = statement
        .query_map(params![expression, SEARCHER], |row| row.get::<_, String>(3))
        .expect("query");
    let snippets: Vec<String> = rows.map(|row| row.expect("row")).collect();
    snippets.len()
}

/// The durable append with search on (a session with a user: the append
/// writes a pending entry, the idle writer indexes it right after) and off
/// (a session without a user), in alternate blocks of appends back to back
/// (so that the idle work after an append with search on delays the next
/// one, as it does a chatbot appending without pause), beside SQLite's
/// append with its FTS5 triggers.
fn append_with_search(config: Config, notes: &mut Vec<String>) -> Vec<Row> {
    let dir = common::scratch();
    let store = SessionStore::open(dir.path().join("s.redb")).expect("open");
    let sqlite = Sqlite::open(&dir.path().join("s.db"), Durability::Durable);
    sqlite.connection().execute_batch(FTS).expect("the FTS5 index");
    let turns = conversation(3, 64);
    let on = store.create_session(Some("writer")).expect("create");
    let off = store.create_session(None).expect("create");
    let sq = sqlite.create_session(Some("writer"));
    let iterations = config.pick(1000, 5000);
    let (mut on_times, mut off_times, mut sq_times) = (Vec::new(), Vec::new(), Vec::new());
    const BLOCK: usize = 50;
    for block in 0..(iterations + iterations / 10) / BLOCK {
        let warm = block * BLOCK < iterations / 10;
        for (session, times) in [(on, &mut on_times), (off, &mut off_times)] {
            for i in 0..BLOCK {
                let turn = &turns[i % turns.len()];
                let at = Instant::now();
                store.add_message(session, turn.to_new_message()).expect("add");
                if !warm {
                    times.push(at.elapsed());
                }
            }
        }
        for i in 0..BLOCK {
            let at = Instant::now();
            sqlite.add_message(&sq, &turns[i % turns.len()]);
            if !warm {
                sq_times.push(at.elapsed());
            }
        }
    }
    for times in [&mut on_times, &mut off_times, &mut sq_times] {
        times.sort_unstable();
    }
    let (on_p50, off_p50) = (percentile(&on_times, 0.5), percentile(&off_times, 0.5));
    notes.push(format!(
        "\nadd_message_1_thread_search_on (durable, a session with a user, beside SQLite with FTS5 \
         triggers): p50 {on_p50:.0} µs; the same appends to a session without a user (no search \
         entry) {off_p50:.0} µs, in alternate blocks of {BLOCK}: search adds {:.0} µs at the median; p99 {:.0} µs on, \
         {:.0} µs off, SQLite {:.0} µs.",
        on_p50 - off_p50,
        percentile(&on_times, 0.99),
        percentile(&off_times, 0.99),
        percentile(&sq_times, 0.99),
    ));
    vec![micros_row(
        "add_message_1_thread_search_on",
        on_p50,
        percentile(&sq_times, 0.5),
    )]
}
