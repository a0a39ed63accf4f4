//! A store copied into another (file or database, in any mix), through the
//! library's [`Snapshot`](sessionstore::Snapshot) and
//! [`Importer`](sessionstore::Importer): sessions in id order, each with its
//! messages (one session's messages held at a time), then the rows of other
//! tables and what the converter keeps (the SQLite schema and sequence), so
//! that an export of the copy gives the same file as one of the original.

use std::path::Path;

use sessionstore::SessionStore;

use crate::error::{InFile, Result};
use crate::import::{ImportOptions, ImportReport};
use crate::progress::Progress;
use crate::schema::{SCHEMA_KEY, SEQUENCE_KEY};

/// Copies everything of `from` (named `source` in messages) into `into`
/// (named `dest`).
pub(crate) fn copy(
    from: &SessionStore,
    source: &Path,
    into: &SessionStore,
    dest: &Path,
    options: &ImportOptions,
) -> Result<ImportReport> {
    let snapshot = from.snapshot().in_file(source)?;
    let progress = Progress::new(options.progress);
    let session_bar = progress.table("sessions", snapshot.session_count().in_file(source)?);
    let message_bar = progress.table("messages", snapshot.message_count().in_file(source)?);
    let extra_bar = progress.table("other tables", snapshot.extra_row_count().in_file(source)?);
    let mut importer = into.importer();
    let mut report = ImportReport::default();
    for session in snapshot.sessions().in_file(source)? {
        let session = session.in_file(source)?;
        let id = session.session_id;
        let messages = snapshot
            .messages(id)
            .in_file(source)?
            .collect::<sessionstore::Result<Vec<_>>>()
            .in_file(source)?;
        report.sessions += 1;
        report.messages += messages.len() as u64;
        session_bar.inc(1);
        message_bar.inc(messages.len() as u64);
        importer.add_session(session).in_file(dest)?;
        importer.add_messages(id, messages).in_file(dest)?;
    }
    for row in snapshot.extra_rows().in_file(source)? {
        importer.add_extra_row(row.in_file(source)?).in_file(dest)?;
        report.extra_rows += 1;
        extra_bar.inc(1);
    }
    for key in [SCHEMA_KEY, SEQUENCE_KEY] {
        if let Some(value) = snapshot.opaque(key).in_file(source)? {
            importer.set_opaque(key, value).in_file(dest)?;
        }
    }
    importer.raise_next_message_id(snapshot.next_message_id().in_file(source)?);
    importer.finish().in_file(dest)?;
    session_bar.finish();
    message_bar.finish();
    extra_bar.finish();
    Ok(report)
}
