//! The rows of a [`Snapshot`] as JSON lines, for the streamed export.

use serde_json::json;

use crate::{Result, Snapshot};

/// Sends each session of `snapshot` as a line `{"session": {...}}`, each
/// followed by its messages, a line `{"message": {...}}` each, then the
/// rows of SQLite tables the store carries for the converter, a line
/// `{"extra_row": {"table", "rowid", "session", "values"}}` each; counts
/// sessions and messages in `counts`. Stops early, without error, when
/// `send` says the reader is gone.
pub(crate) fn write_lines(
    snapshot: &Snapshot,
    counts: &mut (u64, u64),
    send: &mut dyn FnMut(String) -> bool,
) -> Result<()> {
    for session in snapshot.sessions()? {
        let session = session?;
        let id = session.session_id;
        if !send(format!("{}\n", json!({ "session": session }))) {
            return Ok(());
        }
        counts.0 += 1;
        for message in snapshot.messages(id)? {
            if !send(format!("{}\n", json!({ "message": message? }))) {
                return Ok(());
            }
            counts.1 += 1;
        }
    }
    for row in snapshot.extra_rows()? {
        let row = row?;
        let line = json!({ "extra_row": {
            "table": row.table,
            "rowid": row.rowid,
            "session": row.session,
            "values": row.values,
        }});
        if !send(format!("{line}\n")) {
            return Ok(());
        }
    }
    Ok(())
}
