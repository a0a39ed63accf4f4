//! Issue 16, item 2: replacing a file refuses what it must not replace.
//!
//! - `import --force` (or `export --force`) over a store another process
//!   holds (a running chatbot) is refused as every command refuses a held
//!   store, "in use by another process", and changes no byte of the store
//!   or of the source.
//! - `import` / `export` whose DEST is SRC itself (the same path, a
//!   symlink, a hard link, a `./` path) are refused, `--force` or not, and
//!   change nothing.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{broken_copy, files_in, V1};
use sessionstore::{NewMessage, SessionStore};

/// The bytes of every file in `dir`, by name (a socket, the holder's
/// `<store>.sock`, holds none).
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::fs::FileTypeExt;
    files_in(dir)
        .into_iter()
        .filter(|name| !std::fs::metadata(dir.join(name)).unwrap().file_type().is_socket())
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Runs the binary in `dir` with `args`; its exit code and stderr.
fn migrate_in(dir: &Path, args: &[&OsStr]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sessionstore-migrate"))
        .current_dir(dir)
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8(output.stderr).unwrap())
}

#[test]
fn import_or_export_force_over_a_store_held_by_another_process_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = broken_copy(V1, dir.path(), "sessions.db", "");
    let other_store = dir.path().join("other.redb");
    drop(SessionStore::open(&other_store).unwrap());
    let dest = dir.path().join("sessions.redb");
    // The chatbot: this process, holding the store, with an acknowledged write.
    let chatbot = SessionStore::open(&dest).unwrap();
    let id = chatbot.create_session(Some("ana")).unwrap();
    chatbot.add_message(id, NewMessage::user("acknowledged")).unwrap();
    // Let its background checkpoint run, so that the files stay still.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = contents(dir.path());

    for (command, source) in [("import", &sqlite), ("export", &other_store)] {
        let args = [
            OsStr::new(command),
            source.as_os_str(),
            dest.as_os_str(),
            OsStr::new("--force"),
        ];
        let (code, stderr) = migrate_in(dir.path(), &args);
        assert_eq!(code, Some(1), "{command}: {stderr}");
        let expected = format!("{} is in use by another process", dest.display());
        assert!(
            stderr.starts_with("error: ") && stderr.contains(&expected),
            "{command}: {stderr}"
        );
        assert_eq!(
            contents(dir.path()),
            before,
            "{command}: no file changed, none added"
        );
    }
    assert_eq!(chatbot.get_session(id).unwrap().unwrap().messages.len(), 1);
}

/// Runs `command SOURCE DEST --force` in `source`'s folder with DEST
/// spelled as SOURCE's own path, a symlink to it, a hard link to it and a
/// `./` path to it; asserts each is refused and changes no file.
fn assert_refused_onto_its_own_source(command: &str, source: &Path) {
    let dir = source.parent().unwrap();
    let symlink = dir.join("symlink");
    std::os::unix::fs::symlink(source, &symlink).unwrap();
    let hard_link = dir.join("hard-link");
    std::fs::hard_link(source, &hard_link).unwrap();
    let dot = Path::new(".").join(source.file_name().unwrap());
    for dest in [source.to_path_buf(), symlink, hard_link, dot] {
        let before = contents(dir);
        let args = [
            OsStr::new(command),
            source.as_os_str(),
            dest.as_os_str(),
            OsStr::new("--force"),
        ];
        let (code, stderr) = migrate_in(dir, &args);
        assert_eq!(code, Some(1), "{}: {stderr}", dest.display());
        let expected = format!(
            "error: {} is the same file as {}: ",
            dest.display(),
            source.display()
        );
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert_eq!(contents(dir), before, "{}", dest.display());
    }
}

#[test]
fn import_onto_its_own_source_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = broken_copy(V1, dir.path(), "sessions.db", "");
    assert_refused_onto_its_own_source("import", &source);
}

#[test]
fn export_onto_its_own_source_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("sessions.redb");
    {
        let store = SessionStore::open(&source).unwrap();
        let id = store.create_session(Some("ana")).unwrap();
        store.add_message(id, NewMessage::user("keep me")).unwrap();
    }
    assert_refused_onto_its_own_source("export", &source);
    assert_eq!(SessionStore::open(&source).unwrap().stats().unwrap().messages, 1);
}
