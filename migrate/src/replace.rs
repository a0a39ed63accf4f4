//! What an output must not replace: its own input, or a store in use.

use std::path::Path;

use sessionstore::{SessionStore, StoreHold};

use crate::error::{Error, InFile, Result};

/// Refuses an output `dest` that is the input `source` itself, by any path
/// (a symlink, a hard link, `./`): the same file, not the same name.
pub(crate) fn refuse_same_file(source: &Path, dest: &Path) -> Result<()> {
    let (Ok(input), Ok(output)) = (std::fs::metadata(source), std::fs::metadata(dest)) else {
        // One of them is not there: they cannot be one file.
        return Ok(());
    };
    if same_file(&input, &output, source, dest) {
        return Err(Error::SameFile {
            input: source.to_path_buf(),
            output: dest.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Holds `dest` until the output replaces it, refusing one a store has open
/// (a running chatbot), "in use by another process", as every command
/// refuses a store in use.
pub(crate) fn hold_destination(dest: &Path) -> Result<StoreHold> {
    SessionStore::hold_for_replacement(dest).in_file(dest)
}
