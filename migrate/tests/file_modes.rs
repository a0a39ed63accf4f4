//! The files `import` and `export` write keep the mode of their source,
//! the store's journal included, and a replaced file keeps its owner
//! (issue 16, item 4); a missing destination folder is made, and removed
//! again when the conversion is refused (item 9).

mod common;

use std::ffi::OsStr;
use std::fs::Permissions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{migrate, V1};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

fn journal(store: &Path) -> std::path::PathBuf {
    sessionstore::SessionStore::files_beside(store).remove(0)
}

/// Runs `sessionstore-migrate` with `args` and `--quiet`; asserts success.
fn run(args: &[&OsStr]) {
    let output = migrate(&[args, &[OsStr::new("--quiet")]].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn import_and_export_keep_the_mode_of_their_source() {
    for source_mode in [0o600, 0o640] {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = dir.path().join("sessions.db");
        std::fs::copy(V1, &sqlite).unwrap();
        std::fs::set_permissions(&sqlite, Permissions::from_mode(source_mode)).unwrap();

        let store = dir.path().join("sessions.redb");
        run(&[OsStr::new("import"), sqlite.as_os_str(), store.as_os_str()]);
        assert_eq!(
            mode(&store),
            source_mode,
            "a store imported from a {source_mode:o} file"
        );
        assert_eq!(mode(&journal(&store)), source_mode, "its journal");

        let exported = dir.path().join("exported.db");
        run(&[OsStr::new("export"), store.as_os_str(), exported.as_os_str()]);
        assert_eq!(
            mode(&exported),
            source_mode,
            "a file exported from a {source_mode:o} store"
        );
    }
}

#[test]
fn a_file_replaced_with_force_keeps_its_owner_when_run_by_root() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::File::create(&probe).unwrap();
    if owner(&probe).0 != 0 {
        println!("skipped: only root may give a file to another user, which this test needs");
        return;
    }
    let sqlite = dir.path().join("sessions.db");
    std::fs::copy(V1, &sqlite).unwrap();
    std::fs::set_permissions(&sqlite, Permissions::from_mode(0o600)).unwrap();
    let store = dir.path().join("sessions.redb");
    run(&[OsStr::new("import"), sqlite.as_os_str(), store.as_os_str()]);
    let exported = dir.path().join("exported.db");
    run(&[OsStr::new("export"), store.as_os_str(), exported.as_os_str()]);

    // The chatbot's account (`nobody`) owns the files the cron job replaces.
    for file in [&store, &journal(&store), &exported] {
        std::os::unix::fs::chown(file, Some(65534), Some(65534)).unwrap();
    }
    let force = OsStr::new("--force");
    run(&[OsStr::new("import"), sqlite.as_os_str(), store.as_os_str(), force]);
    assert_eq!(
        owner(&store),
        (65534, 65534),
        "the store replaced by import --force"
    );
    assert_eq!(owner(&journal(&store)), (65534, 65534), "its journal");
    assert_eq!(mode(&store), 0o600);
    run(&[
        OsStr::new("export"),
        store.as_os_str(),
        exported.as_os_str(),
        force,
    ]);
    assert_eq!(
        owner(&exported),
        (65534, 65534),
        "the file replaced by export --force"
    );
    assert_eq!(mode(&exported), 0o600);
}

#[test]
fn export_into_a_missing_folder_makes_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sessions.redb");
    run(&[OsStr::new("import"), OsStr::new(V1), store.as_os_str()]);
    // The README's line: `export data/chat/sessions.redb backups/sessions-DATE.db`.
    let exported = dir.path().join("backups/sessions-20261203.db");
    run(&[OsStr::new("export"), store.as_os_str(), exported.as_os_str()]);
    assert_eq!(common::dump(&exported), common::dump(Path::new(V1)));
}

#[test]
fn a_refused_import_leaves_no_folder_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let bad = common::broken_copy(
        V1,
        dir.path(),
        "role.db",
        "PRAGMA ignore_check_constraints = ON; UPDATE chat_messages SET role = 'robot' WHERE id = 9;",
    );
    let store = dir.path().join("new/chat/sessions.redb");
    let output = migrate(&[OsStr::new("import"), bad.as_os_str(), store.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("robot"));
    assert!(
        !dir.path().join("new").exists(),
        "the folders made for the store stay"
    );
}
