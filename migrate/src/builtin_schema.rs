//! The two schemas of the old store, as its own schema scripts left them in
//! `sqlite_master` (copied from the fixtures the Python store wrote).

use crate::schema::BuiltinObject;

/// `chat_sessions` as generation 1 created it.
const SESSIONS_DOCUMENTED: BuiltinObject = BuiltinObject {
    kind: "table",
    name: "chat_sessions",
    table: "chat_sessions",
    sql: r#"CREATE TABLE chat_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT,
    created_at TEXT NOT NULL,  -- ISO datetime
    updated_at TEXT NOT NULL,  -- ISO datetime
    context TEXT,              -- JSON-serialized dict
    metadata TEXT,             -- JSON-serialized dict
    expired_at TEXT,           -- NULL if active, ISO datetime if expired
    UNIQUE(session_id)
)"#,
};

/// `chat_sessions` after generation 2 added `phase` in place.
const SESSIONS_UPGRADED: BuiltinObject = BuiltinObject {
    kind: "table",
    name: "chat_sessions",
    table: "chat_sessions",
    sql: r#"CREATE TABLE chat_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT,
    created_at TEXT NOT NULL,  -- ISO datetime
    updated_at TEXT NOT NULL,  -- ISO datetime
    context TEXT,              -- JSON-serialized dict
    metadata TEXT,             -- JSON-serialized dict
    expired_at TEXT, phase TEXT DEFAULT 'query_definition',           -- NULL if active, ISO datetime if expired
    UNIQUE(session_id)
)"#,
};

/// `idx_sessions_user_id`, in both generations.
const USER_ID_INDEX: BuiltinObject = BuiltinObject {
    kind: "index",
    name: "idx_sessions_user_id",
    table: "chat_sessions",
    sql: r#"CREATE INDEX idx_sessions_user_id
ON chat_sessions(user_id)"#,
};

/// `idx_sessions_expired`, in both generations.
const EXPIRED_INDEX: BuiltinObject = BuiltinObject {
    kind: "index",
    name: "idx_sessions_expired",
    table: "chat_sessions",
    sql: r#"CREATE INDEX idx_sessions_expired
ON chat_sessions(expired_at)"#,
};

/// `chat_messages`, in both generations.
const MESSAGES_TABLE: BuiltinObject = BuiltinObject {
    kind: "table",
    name: "chat_messages",
    table: "chat_messages",
    sql: r#"CREATE TABLE chat_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK(role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    query_plan TEXT,          -- JSON-serialized QueryPlan
    candidate_set TEXT,        -- JSON-serialized CandidateSet
    timestamp TEXT NOT NULL,   -- ISO datetime
    FOREIGN KEY (session_id) REFERENCES chat_sessions(session_id) ON DELETE CASCADE
)"#,
};

/// `idx_messages_session`, in both generations.
const MESSAGES_SESSION_INDEX: BuiltinObject = BuiltinObject {
    kind: "index",
    name: "idx_messages_session",
    table: "chat_messages",
    sql: r#"CREATE INDEX idx_messages_session
ON chat_messages(session_id, timestamp)"#,
};

/// `idx_messages_timestamp`, in both generations.
const MESSAGES_TIMESTAMP_INDEX: BuiltinObject = BuiltinObject {
    kind: "index",
    name: "idx_messages_timestamp",
    table: "chat_messages",
    sql: r#"CREATE INDEX idx_messages_timestamp
ON chat_messages(timestamp DESC)"#,
};

/// Generation 1: the documented schema.
pub(crate) const DOCUMENTED: &[BuiltinObject] = &[
    SESSIONS_DOCUMENTED,
    USER_ID_INDEX,
    EXPIRED_INDEX,
    MESSAGES_TABLE,
    MESSAGES_SESSION_INDEX,
    MESSAGES_TIMESTAMP_INDEX,
];

/// Generation 2: generation 1 upgraded in place (`phase` column, three more tables).
pub(crate) const UPGRADED: &[BuiltinObject] = &[
    SESSIONS_UPGRADED,
    USER_ID_INDEX,
    EXPIRED_INDEX,
    MESSAGES_TABLE,
    MESSAGES_SESSION_INDEX,
    MESSAGES_TIMESTAMP_INDEX,
    BuiltinObject {
        kind: "table",
        name: "active_subgroups",
        table: "active_subgroups",
        sql: r#"CREATE TABLE active_subgroups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL UNIQUE,  -- One active subgroup per session
    defining_query TEXT NOT NULL,      -- Original query that created this subgroup
    filter_summary TEXT NOT NULL,      -- Natural language summary of filters
    record_ids TEXT NOT NULL,          -- JSON array of MMS IDs in subgroup
    candidate_count INTEGER NOT NULL,  -- Number of records in subgroup
    candidate_set TEXT,                -- JSON-serialized full CandidateSet (optional, may be large)
    created_at TEXT NOT NULL,          -- ISO datetime
    FOREIGN KEY (session_id) REFERENCES chat_sessions(session_id) ON DELETE CASCADE
)"#,
    },
    BuiltinObject {
        kind: "index",
        name: "idx_subgroups_session",
        table: "active_subgroups",
        sql: r#"CREATE INDEX idx_subgroups_session
ON active_subgroups(session_id)"#,
    },
    BuiltinObject {
        kind: "table",
        name: "user_goals",
        table: "user_goals",
        sql: r#"CREATE TABLE user_goals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    goal_type TEXT NOT NULL,           -- 'find_specific', 'analyze_corpus', 'compare', 'discover'
    description TEXT NOT NULL,         -- Natural language goal description
    elicited_at TEXT NOT NULL,         -- ISO datetime
    FOREIGN KEY (session_id) REFERENCES chat_sessions(session_id) ON DELETE CASCADE
)"#,
    },
    BuiltinObject {
        kind: "index",
        name: "idx_goals_session",
        table: "user_goals",
        sql: r#"CREATE INDEX idx_goals_session
ON user_goals(session_id)"#,
    },
    BuiltinObject {
        kind: "index",
        name: "idx_sessions_phase",
        table: "chat_sessions",
        sql: r#"CREATE INDEX idx_sessions_phase
ON chat_sessions(phase)"#,
    },
    BuiltinObject {
        kind: "table",
        name: "feedback_reports",
        table: "feedback_reports",
        sql: r#"CREATE TABLE feedback_reports (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    message_id INTEGER,
    kind TEXT NOT NULL CHECK(kind IN ('message','general')),
    user_id TEXT,
    comment TEXT,
    payload_path TEXT NOT NULL,
    github_issue_url TEXT,
    github_issue_number INTEGER,
    sync_status TEXT NOT NULL DEFAULT 'pending'
        CHECK(sync_status IN ('pending','synced')),
    created_at TEXT NOT NULL
)"#,
    },
    BuiltinObject {
        kind: "index",
        name: "idx_feedback_sync",
        table: "feedback_reports",
        sql: r#"CREATE INDEX idx_feedback_sync ON feedback_reports(sync_status)"#,
    },
];
