//! TREC: `run.trec` (`qid Q0 docid rank score tag`) and `topics.tsv`
//! (`qid<TAB>text`).

use std::collections::HashSet;

use super::files::Outputs;
use super::{Candidate, FormatWriter, RetrievalEvent};
use crate::error::Result;

pub const RUN: &str = "run.trec";
pub const TOPICS: &str = "topics.tsv";

/// The run's tag (its last column).
const TAG: &str = "sessionstore";

#[derive(Default)]
pub struct Writer {
    /// Events whose candidates' own scores were written.
    scored_by_candidates: u64,
    /// Events whose scores were derived from rank.
    scored_by_rank: u64,
    /// Candidates left out for repeating a record id of their event.
    repeated_dropped: u64,
}

/// The candidates' own scores, when every one has a finite `score` and
/// they strictly decrease in rank order (`None` for no candidates).
fn scores(candidates: &[&Candidate]) -> Option<Vec<f64>> {
    let own: Option<Vec<f64>> = candidates
        .iter()
        .map(|c| c.score.filter(|s| s.is_finite()))
        .collect();
    own.filter(|own| !own.is_empty() && own.windows(2).all(|pair| pair[0] > pair[1]))
}

impl FormatWriter for Writer {
    fn event(&mut self, files: &mut Outputs, event: &RetrievalEvent<'_>) -> Result<()> {
        let qid = event.query_id();
        files.text(1, &format!("{qid}\t{}\n", event.query_line()))?;
        // A run holds a document once per query: the first (best) place counts.
        let mut seen = HashSet::new();
        let kept: Vec<&Candidate> = event
            .candidates
            .iter()
            .filter(|c| seen.insert(c.record_id.as_str()))
            .collect();
        self.repeated_dropped += (event.candidates.len() - kept.len()) as u64;
        let own = scores(&kept);
        match own {
            Some(_) => self.scored_by_candidates += 1,
            None => self.scored_by_rank += 1,
        }
        let count = kept.len();
        let mut lines = String::new();
        for (place, candidate) in kept.iter().enumerate() {
            let score = match &own {
                Some(own) => own[place].to_string(),
                None => (count - place).to_string(),
            };
            lines.push_str(&format!(
                "{qid} Q0 {} {} {score} {TAG}\n",
                candidate.record_id,
                place + 1
            ));
        }
        files.text(0, &lines)
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "trec": {
                "tag": TAG,
                "rank": "the candidate's place in its set, from 1, repeated record ids left out",
                "score": "the candidates' own `score` where every candidate of the event has a finite one and they strictly decrease in rank order; otherwise derived from rank: the number of candidates minus rank plus one",
                "events_scored_by_candidates": self.scored_by_candidates,
                "events_scored_by_rank": self.scored_by_rank,
                "repeated_candidates_dropped": self.repeated_dropped,
                "topics": "qid, a tab, the user's message with control characters made spaces"
            }
        })
    }
}
