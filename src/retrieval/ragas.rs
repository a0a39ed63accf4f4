//! RAGAS-style samples for answer evaluation: `ragas.jsonl`.

use serde::Serialize;

use super::files::Outputs;
use super::{FormatWriter, RetrievalEvent};
use crate::error::Result;

pub const SAMPLES: &str = "ragas.jsonl";

/// One line: the fields of a RAGAS `SingleTurnSample`.
#[derive(Serialize)]
struct Sample<'a> {
    user_input: &'a str,
    retrieved_context_ids: Vec<&'a str>,
    retrieved_contexts: Vec<String>,
    response: &'a str,
}

pub struct Writer;

impl FormatWriter for Writer {
    fn event(&mut self, files: &mut Outputs, event: &RetrievalEvent<'_>) -> Result<()> {
        files.json_line(
            0,
            &Sample {
                user_input: &event.query.content,
                retrieved_context_ids: event.candidates.iter().map(|c| c.record_id.as_str()).collect(),
                retrieved_contexts: event
                    .candidates
                    .iter()
                    .map(|c| match &c.title {
                        Some(title) => format!("{title}\n{}", c.rationale_text),
                        None => c.rationale_text.clone(),
                    })
                    .collect(),
                response: &event.reply.content,
            },
        )
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "ragas": {
                "line_order": "the events' order; line n is the n-th event",
                "retrieved_contexts": "per candidate, in rank order: its title (when it has one), its match_rationale, then each evidence item as `name: value; ...`, one a line"
            }
        })
    }
}
