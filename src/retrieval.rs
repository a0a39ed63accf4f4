//! Retrieval evaluation exports: the query log the store keeps, read as
//! runs for evaluation tools.
//!
//! A *retrieval event* is an assistant message carrying a candidate set
//! (the records a retriever returned, in rank order), joined with the user
//! message it answers (the last user message before it in its session) and
//! that message's query plan. [`Snapshot::retrieval_events`] streams the
//! events of one consistent snapshot; [`SessionStore::export_retrieval`]
//! writes them in one of the [`RetrievalFormat`]s, with a `manifest.json`.
//!
//! Besides [`query`](crate::query), this is the only module that reads
//! inside candidate sets and query plans. A candidate set is used when it
//! is a JSON object whose `candidates` is an array of objects each with a
//! `record_id` (a string, or an integer written as its decimal text) that
//! is not empty and holds no whitespace or control character (TREC run
//! files split on whitespace). Other messages with a candidate set are
//! skipped and counted by [`SkipReason`], never an error.
//!
//! Events come in a fixed order: sessions by id, then messages by seq.

mod beir;
mod files;
mod jsonl;
mod ragas;
mod trec;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::bulk::Snapshot;
use crate::error::{Error, Result};
use crate::model::Progress;
use crate::model::{Message, Role, SessionInfo};
use crate::store::SessionStore;
use crate::timestamp::Timestamp;

/// The version of the native JSONL schema and of the manifest.
pub const SCHEMA: &str = "sessionstore.retrieval/1";

/// Which events an export takes. Every filter given must hold.
///
/// ```
/// use sessionstore::retrieval::RetrievalFilter;
/// let filter = RetrievalFilter {
///     user: Some("user123".into()),
///     active_only: true,
///     ..RetrievalFilter::default()
/// };
/// assert!(filter.session.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetrievalFilter {
    /// Only the sessions of this user (anonymous sessions never match).
    pub user: Option<String>,
    /// Only this session.
    pub session: Option<Uuid>,
    /// Only replies at or after this instant.
    pub since: Option<Timestamp>,
    /// Only replies before this instant.
    pub until: Option<Timestamp>,
    /// Leave out expired sessions (by default they are included: their
    /// queries happened).
    pub active_only: bool,
}

impl RetrievalFilter {
    fn takes_session(&self, session: &SessionInfo) -> bool {
        self.session.is_none_or(|id| id == session.session_id)
            && self
                .user
                .as_deref()
                .is_none_or(|user| session.user_id.as_deref() == Some(user))
            && !(self.active_only && session.is_expired())
    }

    fn takes_time(&self, at: &Timestamp) -> bool {
        self.since
            .as_ref()
            .is_none_or(|since| at.micros() >= since.micros())
            && self
                .until
                .as_ref()
                .is_none_or(|until| at.micros() < until.micros())
    }
}

/// Why a message with a candidate set is not an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// The candidate set is on a user or system message.
    NotFromAssistant,
    /// The candidate set has no `candidates` array.
    NoCandidates,
    /// A candidate is not an object, or has no usable `record_id`.
    CandidateWithoutRecordId,
    /// No user message comes before the reply in its session.
    NoQuery,
}

impl SkipReason {
    /// The reason's name in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotFromAssistant => "candidate_set_not_on_an_assistant_message",
            SkipReason::NoCandidates => "no_candidates_array",
            SkipReason::CandidateWithoutRecordId => "candidate_without_usable_record_id",
            SkipReason::NoQuery => "no_user_message_before_the_reply",
        }
    }
}

/// One candidate of an event, in rank order.
#[derive(Debug)]
pub struct Candidate {
    /// Its place in the candidate set, from 1.
    pub rank: u64,
    /// Its `record_id`.
    pub record_id: String,
    /// Its `title`, when it has a string one.
    pub title: Option<String>,
    /// Its `score`, when it has a numeric one.
    pub score: Option<f64>,
    /// Its `match_rationale` and `evidence` as text, one line each.
    pub rationale_text: String,
    stored: Box<RawValue>,
}

impl Candidate {
    /// The candidate's JSON object, exactly as stored.
    pub fn stored(&self) -> &str {
        self.stored.get()
    }
}

/// An assistant message with a usable candidate set, and the query it answers.
#[derive(Debug)]
pub struct RetrievalEvent<'a> {
    /// The session both messages belong to.
    pub session: &'a SessionInfo,
    /// The user message answered: its content is the query text, its
    /// `query_plan` the plan.
    pub query: &'a Message,
    /// Which query of its session this is, from 1 (the count of user
    /// messages up to `query`).
    pub turn: u64,
    /// The assistant message carrying the candidate set.
    pub reply: &'a Message,
    /// The candidates in rank order.
    pub candidates: Vec<Candidate>,
    /// The set's `total_count`, when it is a non-negative integer.
    pub total_count: Option<u64>,
    /// The set's fields other than `candidates` and `total_count`, as stored.
    other_fields: Vec<(String, Box<RawValue>)>,
}

impl RetrievalEvent<'_> {
    /// The query id every format uses: the reply's message id.
    pub fn query_id(&self) -> String {
        self.reply.id.to_string()
    }

    /// The query text with tabs, line breaks and other control characters
    /// made spaces: safe in one line of a TSV or a TREC topics file.
    pub fn query_line(&self) -> String {
        one_line(&self.query.content)
    }
}

/// `text` with every control character a space.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What a pass over the events read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanCounts {
    /// Messages read (of the sessions the filter takes).
    pub messages_read: u64,
    /// Events given to the visitor.
    pub events: u64,
    /// Candidates in those events.
    pub candidates: u64,
    /// Messages with a candidate set that are not events, by reason
    /// (only those the session and time filters take).
    pub skipped: BTreeMap<SkipReason, u64>,
}

impl Snapshot {
    /// Streams the retrieval events the filter takes to `visit`, sessions
    /// by id, then messages by seq; the first error `visit` returns ends
    /// the pass. Memory holds one session's record and a few messages at a
    /// time. `progress` gets (messages passed, messages in the snapshot).
    ///
    /// ```
    /// use sessionstore::{query, retrieval::RetrievalFilter, NewMessage, SessionStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// let id = store.create_session(Some("ana")).unwrap();
    /// let set = r#"{"total_count": 1, "candidates": [{"record_id": "99", "match_rationale": "publisher matches Oxford"}]}"#;
    /// store.add_messages(id, vec![NewMessage::user("books by Oxford"), query::results_reply(set).unwrap()]).unwrap();
    /// let mut seen = Vec::new();
    /// let counts = store.snapshot().unwrap().retrieval_events(&RetrievalFilter::default(), &mut |_, _| {}, &mut |event| {
    ///     seen.push((event.query.content.clone(), event.candidates[0].record_id.clone()));
    ///     Ok(())
    /// }).unwrap();
    /// assert_eq!(seen, [("books by Oxford".to_owned(), "99".to_owned())]);
    /// assert_eq!(counts.events, 1);
    /// ```
    pub fn retrieval_events(
        &self,
        filter: &RetrievalFilter,
        progress: Progress<'_>,
        visit: &mut dyn FnMut(&RetrievalEvent<'_>) -> Result<()>,
    ) -> Result<ScanCounts> {
        let total = self.message_count()?;
        let mut passed = 0u64;
        let mut counts = ScanCounts::default();
        progress(0, total);
        for session in self.sessions()? {
            let session = session?;
            if filter.takes_session(&session) {
                scan_session(self, &session, filter, &mut counts, visit)?;
            }
            passed += session.message_count;
            progress(passed.min(total), total);
        }
        Ok(counts)
    }
}

fn scan_session(
    snapshot: &Snapshot,
    session: &SessionInfo,
    filter: &RetrievalFilter,
    counts: &mut ScanCounts,
    visit: &mut dyn FnMut(&RetrievalEvent<'_>) -> Result<()>,
) -> Result<()> {
    let mut query: Option<Message> = None;
    let mut turn = 0u64;
    for message in snapshot.messages(session.session_id)? {
        let message = message?;
        counts.messages_read += 1;
        let skipped = match (&message.candidate_set, message.role) {
            (None, _) => None,
            _ if !filter.takes_time(&message.timestamp) => None,
            (Some(_), Role::User | Role::System) => Some(SkipReason::NotFromAssistant),
            (Some(set), Role::Assistant) => match (read_set(set.as_str()), &query) {
                (Err(reason), _) => Some(reason),
                (Ok(_), None) => Some(SkipReason::NoQuery),
                (Ok(set), Some(query)) => {
                    counts.events += 1;
                    counts.candidates += set.candidates.len() as u64;
                    visit(&RetrievalEvent {
                        session,
                        query,
                        turn,
                        reply: &message,
                        candidates: set.candidates,
                        total_count: set.total_count,
                        other_fields: set.other_fields,
                    })?;
                    None
                }
            },
        };
        if let Some(reason) = skipped {
            *counts.skipped.entry(reason).or_default() += 1;
        }
        if message.role == Role::User {
            turn += 1;
            query = Some(message);
        }
    }
    Ok(())
}

/// A candidate set's fields as the export reads them.
struct CandidateSet {
    candidates: Vec<Candidate>,
    total_count: Option<u64>,
    other_fields: Vec<(String, Box<RawValue>)>,
}

/// Reads a candidate set; the reason it is not usable otherwise.
fn read_set(text: &str) -> std::result::Result<CandidateSet, SkipReason> {
    let fields = object_fields(text).ok_or(SkipReason::NoCandidates)?;
    let mut candidates = None;
    let mut total_count = None;
    let mut other_fields = Vec::new();
    for (name, value) in fields {
        match name.as_str() {
            "candidates" => candidates = Some(value),
            "total_count" => total_count = serde_json::from_str::<u64>(value.get()).ok(),
            _ => other_fields.push((name, value)),
        }
    }
    let list = candidates
        .and_then(|list| serde_json::from_str::<Vec<Box<RawValue>>>(list.get()).ok())
        .ok_or(SkipReason::NoCandidates)?;
    let candidates = list
        .into_iter()
        .zip(1..)
        .map(|(stored, rank)| read_candidate(stored, rank))
        .collect::<Option<Vec<_>>>()
        .ok_or(SkipReason::CandidateWithoutRecordId)?;
    Ok(CandidateSet {
        candidates,
        total_count,
        other_fields,
    })
}

fn read_candidate(stored: Box<RawValue>, rank: u64) -> Option<Candidate> {
    let fields = object_fields(stored.get())?;
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.get());
    let record_id = record_id(field("record_id")?)?;
    let title = field("title").and_then(|v| serde_json::from_str::<String>(v).ok());
    let score = field("score").and_then(|v| serde_json::from_str::<f64>(v).ok());
    let mut lines = Vec::new();
    if let Some(rationale) = field("match_rationale").filter(|v| *v != "null") {
        lines.push(value_text(rationale));
    }
    if let Some(evidence) = field("evidence").and_then(|v| serde_json::from_str::<Vec<Box<RawValue>>>(v).ok())
    {
        lines.extend(evidence.iter().map(|item| evidence_text(item.get())));
    }
    lines.retain(|line| !line.is_empty());
    Some(Candidate {
        rank,
        record_id,
        title,
        score,
        rationale_text: lines.join("\n"),
        stored,
    })
}

/// A usable record id: a string or an integer, not empty, with no
/// whitespace or control character.
fn record_id(text: &str) -> Option<String> {
    let id = serde_json::from_str::<String>(text)
        .ok()
        .or_else(|| serde_json::from_str::<i64>(text).ok().map(|n| n.to_string()))?;
    let usable = !id.is_empty() && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    usable.then_some(id)
}

/// A JSON value as text: a string as itself, anything else as JSON.
fn value_text(text: &str) -> String {
    serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned())
}

/// One evidence item as `name: value; ...` (null fields left out), or the
/// item as text when it is not an object.
fn evidence_text(text: &str) -> String {
    match object_fields(text) {
        Some(fields) => fields
            .iter()
            .filter(|(_, value)| value.get() != "null")
            .map(|(name, value)| format!("{name}: {}", value_text(value.get())))
            .collect::<Vec<_>>()
            .join("; "),
        None => value_text(text),
    }
}

/// The fields of a JSON object in their stored order, values as stored;
/// `None` when `text` is not an object.
fn object_fields(text: &str) -> Option<Vec<(String, Box<RawValue>)>> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(String, Box<RawValue>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(field) = map.next_entry()? {
                fields.push(field);
            }
            Ok(fields)
        }
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let fields = (&mut reader).deserialize_map(Fields).ok()?;
    reader.end().ok()?;
    Some(fields)
}

/// The formats [`SessionStore::export_retrieval`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalFormat {
    /// `events.jsonl`: one line per event in the native schema ([`SCHEMA`]).
    Jsonl,
    /// `run.trec` (`qid Q0 docid rank score tag`) and `topics.tsv` (`qid<TAB>text`).
    Trec,
    /// `queries.jsonl` and `corpus.jsonl` (the distinct records seen) in BEIR's layout.
    Beir,
    /// `ragas.jsonl`: `user_input`, `retrieved_context_ids`, `retrieved_contexts`, `response`.
    Ragas,
}

impl RetrievalFormat {
    /// The format's name: `jsonl`, `trec`, `beir` or `ragas`.
    pub fn as_str(self) -> &'static str {
        match self {
            RetrievalFormat::Jsonl => "jsonl",
            RetrievalFormat::Trec => "trec",
            RetrievalFormat::Beir => "beir",
            RetrievalFormat::Ragas => "ragas",
        }
    }
}

impl fmt::Display for RetrievalFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RetrievalFormat {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "jsonl" => Ok(RetrievalFormat::Jsonl),
            "trec" => Ok(RetrievalFormat::Trec),
            "beir" => Ok(RetrievalFormat::Beir),
            "ragas" => Ok(RetrievalFormat::Ragas),
            other => Err(Error::invalid(
                "retrieval format",
                format!("{other:?} is not one of jsonl, trec, beir, ragas"),
            )),
        }
    }
}

/// What [`SessionStore::export_retrieval`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievalExport {
    /// The files written, `manifest.json` last.
    pub files: Vec<PathBuf>,
    /// What the pass read.
    pub counts: ScanCounts,
}

/// A format's writer: its files, one event at a time.
trait FormatWriter {
    fn event(&mut self, files: &mut files::Outputs, event: &RetrievalEvent<'_>) -> Result<()>;
    /// What the manifest says of this format beyond the common fields.
    fn details(&self) -> serde_json::Value;
}

impl SessionStore {
    /// Writes the retrieval events the filter takes, from one consistent
    /// snapshot, into the folder `dir` (created if missing) in `format`,
    /// with a `manifest.json` (format, schema, filters, counts, store, time
    /// of the snapshot). Each file is written beside its name and renamed
    /// over it only once every file is complete and on disk, `manifest.json`
    /// last: a failure leaves the files that were there. Files get the
    /// store file's permissions. `progress` gets (messages passed, messages
    /// in the snapshot).
    ///
    /// ```
    /// use sessionstore::{query, retrieval::{RetrievalFilter, RetrievalFormat}, NewMessage, SessionStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// let id = store.create_session(Some("ana")).unwrap();
    /// let set = r#"{"total_count": 1, "candidates": [{"record_id": "99"}]}"#;
    /// store.add_messages(id, vec![NewMessage::user("books by Oxford"), query::results_reply(set).unwrap()]).unwrap();
    /// let out = dir.path().join("eval");
    /// let export = store.export_retrieval(RetrievalFormat::Trec, &RetrievalFilter::default(), &out, &mut |_, _| {}).unwrap();
    /// assert_eq!(export.counts.events, 1);
    /// let run = std::fs::read_to_string(out.join("run.trec")).unwrap();
    /// assert_eq!(run, "2 Q0 99 1 1 sessionstore\n");
    /// assert!(out.join("manifest.json").exists());
    /// ```
    pub fn export_retrieval(
        &self,
        format: RetrievalFormat,
        filter: &RetrievalFilter,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<RetrievalExport> {
        let snapshot = self.snapshot()?;
        let snapshot_time = Timestamp::now();
        let permissions = crate::files::permissions_of(self.path())?;
        // The manifest names the store wherever the export is read from.
        let store = std::fs::canonicalize(self.path()).unwrap_or_else(|_| self.path().to_path_buf());
        let names: &[&str] = match format {
            RetrievalFormat::Jsonl => &[jsonl::EVENTS],
            RetrievalFormat::Trec => &[trec::RUN, trec::TOPICS],
            RetrievalFormat::Beir => &[beir::QUERIES, beir::CORPUS],
            RetrievalFormat::Ragas => &[ragas::SAMPLES],
        };
        let mut outputs = files::Outputs::create(dir, names, permissions)?;
        let mut writer: Box<dyn FormatWriter> = match format {
            RetrievalFormat::Jsonl => Box::new(jsonl::Writer),
            RetrievalFormat::Trec => Box::new(trec::Writer::default()),
            RetrievalFormat::Beir => Box::new(beir::Writer::default()),
            RetrievalFormat::Ragas => Box::new(ragas::Writer),
        };
        let counts =
            snapshot.retrieval_events(filter, progress, &mut |event| writer.event(&mut outputs, event))?;
        let manifest = Manifest {
            schema: SCHEMA,
            format: format.as_str(),
            files: names,
            store: &store,
            snapshot_time: &snapshot_time,
            order: "sessions by id, then messages by seq",
            query_id: "the message id of the assistant message carrying the candidate set",
            filters: ManifestFilters {
                user: filter.user.as_deref(),
                session: filter.session,
                since: filter.since.as_ref(),
                until: filter.until.as_ref(),
                active_only: filter.active_only,
            },
            counts: ManifestCounts {
                messages_read: counts.messages_read,
                events: counts.events,
                candidates: counts.candidates,
                skipped: counts
                    .skipped
                    .iter()
                    .map(|(reason, n)| (reason.as_str(), *n))
                    .collect(),
            },
            details: writer.details(),
        };
        let files = outputs.commit(&manifest)?;
        Ok(RetrievalExport { files, counts })
    }
}

/// `manifest.json`.
#[derive(Serialize)]
struct Manifest<'a> {
    schema: &'static str,
    format: &'static str,
    files: &'a [&'a str],
    store: &'a Path,
    snapshot_time: &'a Timestamp,
    order: &'static str,
    query_id: &'static str,
    filters: ManifestFilters<'a>,
    counts: ManifestCounts,
    #[serde(flatten)]
    details: serde_json::Value,
}

#[derive(Serialize)]
struct ManifestFilters<'a> {
    user: Option<&'a str>,
    session: Option<Uuid>,
    since: Option<&'a Timestamp>,
    until: Option<&'a Timestamp>,
    active_only: bool,
}

#[derive(Serialize)]
struct ManifestCounts {
    messages_read: u64,
    events: u64,
    candidates: u64,
    skipped: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_without_usable_fields_is_skipped_with_its_reason() {
        let reason = |text: &str| read_set(text).err();
        assert_eq!(reason(r#"{"results": []}"#), Some(SkipReason::NoCandidates));
        assert_eq!(
            reason(r#"{"candidates": {"a": 1}}"#),
            Some(SkipReason::NoCandidates)
        );
        assert_eq!(
            reason(r#"{"candidates": [{"id": "1"}]}"#),
            Some(SkipReason::CandidateWithoutRecordId)
        );
        assert_eq!(
            reason(r#"{"candidates": [{"record_id": "a b"}]}"#),
            Some(SkipReason::CandidateWithoutRecordId)
        );
        assert_eq!(
            reason(r#"{"candidates": [{"record_id": ""}]}"#),
            Some(SkipReason::CandidateWithoutRecordId)
        );
        assert_eq!(
            reason(r#"{"candidates": [7]}"#),
            Some(SkipReason::CandidateWithoutRecordId)
        );
        assert_eq!(reason(r#"{"candidates": []}"#), None);
    }

    #[test]
    fn candidates_keep_their_stored_text_and_read_their_fields() {
        let set = read_set(
            r#"{"plan_hash": "h", "candidates": [{"record_id": 12, "title": "T", "score": 0.5,
                "match_rationale": "publisher matches Oxford",
                "evidence": [{"field": "publisher_norm", "value": "oxford", "confidence": 1e-300, "error": null}]}],
                "total_count": 15}"#,
        )
        .unwrap();
        assert_eq!(set.total_count, Some(15));
        assert_eq!(set.other_fields.len(), 1);
        let candidate = &set.candidates[0];
        assert_eq!(candidate.record_id, "12");
        assert_eq!(candidate.rank, 1);
        assert_eq!(candidate.title.as_deref(), Some("T"));
        assert_eq!(candidate.score, Some(0.5));
        assert!(candidate.stored().contains("1e-300"), "{}", candidate.stored());
        assert_eq!(
            candidate.rationale_text,
            "publisher matches Oxford\nfield: publisher_norm; value: oxford; confidence: 1e-300"
        );
        let bare =
            read_set(r#"{"candidates": [{"record_id": "1", "match_rationale": null, "evidence": null}]}"#)
                .unwrap();
        assert_eq!(bare.candidates[0].rationale_text, "");
    }

    #[test]
    fn query_lines_hold_no_control_character() {
        assert_eq!(one_line("a\tb\nc\r\u{0}d"), "a b c  d");
    }
}
