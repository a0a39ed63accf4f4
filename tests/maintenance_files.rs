//! The files `backup` and `compact` write: the store's mode, the owner of a
//! replaced file, no temporary left behind by a killed run, a destination
//! folder made when missing, and no copy of a damaged store (issue 16,
//! items 4, 8, 9 and 10).

mod common;

use std::fs::Permissions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use assert_cmd::cargo::cargo_bin_cmd;
use sessionstore::{Error, NewMessage, SessionStore, Uuid};

use common::assert_clean;

/// A message content found once in the store file, to damage its record.
const MARKED: &str = "the record of this message gets one byte flipped";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// A store at `path` whose database file has `mode`: the file is made
/// empty with that mode first, and the store created in it.
fn store_with_mode(path: &Path, mode: u32) -> (SessionStore, Uuid) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path).unwrap();
    std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    let store = SessionStore::open(path).unwrap();
    let id = store.create_session(Some("ana")).unwrap();
    for i in 0..20 {
        store
            .add_message(id, NewMessage::user(format!("message {i}")))
            .unwrap();
    }
    (store, id)
}

/// The files in `dir`, by name, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn backup_compact_and_the_journal_keep_the_mode_of_the_store() {
    for store_mode in [0o600, 0o640] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        let (store, id) = store_with_mode(&path, store_mode);
        let journal = SessionStore::files_beside(&path).remove(0);
        assert_eq!(
            mode(&journal),
            store_mode,
            "the journal of a {store_mode:o} store"
        );

        let backup = dir.path().join("backup.redb");
        store.backup_to(&backup, &mut |_, _| {}).unwrap();
        assert_eq!(mode(&backup), store_mode, "a backup of a {store_mode:o} store");

        store.compact(&mut |_, _| {}).unwrap();
        assert_eq!(mode(&path), store_mode, "a {store_mode:o} store after compact");
        assert_eq!(mode(&journal), store_mode);
        assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 20);
        drop(store);

        // The backup, opened, gets a journal of its own mode.
        let opened = SessionStore::open(&backup).unwrap();
        assert_clean(&opened);
        assert_eq!(mode(&SessionStore::files_beside(&backup)[0]), store_mode);
    }
}

#[test]
fn compact_run_by_root_keeps_the_owner_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::File::create(&probe).unwrap();
    if std::fs::metadata(&probe).unwrap().uid() != 0 {
        println!("skipped: only root may give a file to another user, which this test needs");
        return;
    }
    // The chatbot's account, `nobody`, owns the store; root opens it first.
    let path = dir.path().join("sessions.redb");
    std::fs::File::create(&path).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let (store, id) = store_with_mode(&path, 0o600);
    let journal = SessionStore::files_beside(&path).remove(0);
    let meta = std::fs::metadata(&journal).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "the journal root made");
    store.compact(&mut |_, _| {}).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "the owner after compact"
    );
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(store.get_session(id).unwrap().unwrap().messages.len(), 20);

    // The CLI's compact, as a root cron job runs it.
    drop(store);
    cargo_bin_cmd!("sessionstore")
        .arg("--db")
        .arg(&path)
        .arg("compact")
        .assert()
        .success();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65534, 0o600)
    );
}

/// The pid of a process that has ended.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    child.id()
}

/// A process that lives until killed.
struct Live(Child);

impl Live {
    fn start() -> Self {
        Live(Command::new("sleep").arg("600").spawn().unwrap())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The temporary file a run with `pid` writing `dest` uses.
fn temporary(dest: &Path, pid: u32) -> PathBuf {
    let mut name = dest.file_name().unwrap().to_os_string();
    name.push(format!(".sessionstore-tmp-{pid}"));
    dest.with_file_name(name)
}

#[test]
fn a_killed_runs_temporary_is_removed_by_the_next_run_and_a_live_runs_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    let backup = dir.path().join("backup.redb");
    let (store, _) = store_with_mode(&path, 0o600);
    let live = Live::start();
    let dead = dead_pid();
    let mut left = Vec::new();
    let mut kept = Vec::new();
    for dest in [&path, &backup] {
        left.push(temporary(dest, dead));
        kept.push(temporary(dest, live.0.id()));
    }
    // A run of an earlier process with this pid (a container's runs may all
    // get the same), which no call of this one writes.
    left.push(temporary(&backup, std::process::id()));
    // Names a run never gives its temporary files.
    kept.push(dir.path().join("sessions.redb.sessionstore-tmp-x1"));
    kept.push(dir.path().join("other.redb.sessionstore-tmp-1"));
    for file in left.iter().chain(&kept) {
        std::fs::write(file, vec![7u8; 1 << 20]).unwrap();
    }

    store.compact(&mut |_, _| {}).unwrap();
    assert!(
        !left[0].exists(),
        "a dead run's temporary beside the store is removed"
    );
    assert!(left[1].exists(), "compact looks only beside the store");
    store.backup_to(&backup, &mut |_, _| {}).unwrap();
    assert!(
        !left[1].exists(),
        "a dead run's temporary beside the backup is removed"
    );
    for file in &kept {
        assert_eq!(
            std::fs::metadata(file).unwrap().len(),
            1 << 20,
            "{} kept",
            file.display()
        );
    }
}

#[test]
fn backup_into_a_missing_folder_makes_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    drop(store_with_mode(&path, 0o600));
    let dest = dir.path().join("backups/daily/sessions_backup.redb");
    cargo_bin_cmd!("sessionstore")
        .arg("--db")
        .arg(&path)
        .arg("backup")
        .arg(&dest)
        .assert()
        .success()
        .stdout(predicates::str::contains("Backed up"));
    assert_eq!(mode(&dest), 0o600);
    assert_eq!(names(dest.parent().unwrap()), ["sessions_backup.redb"]);
    assert_clean(&SessionStore::open(&dest).unwrap());
}

/// A closed store at `path` holding 50 messages, one of which (the
/// [`MARKED`] one) has a byte of its content flipped in the file.
fn damaged_store(path: &Path) {
    let (store, id) = store_with_mode(path, 0o600);
    store.add_message(id, NewMessage::user(MARKED)).unwrap();
    for i in 0..30 {
        store
            .add_message(id, NewMessage::assistant(format!("reply {i}")))
            .unwrap();
    }
    store.compact(&mut |_, _| {}).unwrap();
    drop(store);
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(MARKED.len())
        .position(|w| w == MARKED.as_bytes())
        .expect("the marked content is in the file");
    assert!(
        bytes[at + 1..]
            .windows(MARKED.len())
            .all(|w| w != MARKED.as_bytes()),
        "the marked content is in the file once"
    );
    bytes[at + 4] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Where the store file at `path` holds the [`MARKED`] content as
/// [`damaged_store`] damaged it.
fn flipped_marker(path: &Path) -> usize {
    let mut flipped = MARKED.as_bytes().to_vec();
    flipped[4] ^= 0x20;
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(flipped.len())
        .position(|w| w == flipped)
        .expect("the damaged record is in the file")
}

/// Asserts that a refusal names the damaged record.
fn assert_names_the_damage(message: &str) {
    assert!(message.contains("corrupt record in table messages"), "{message}");
    assert!(message.contains("message 20 of session"), "{message}");
}

#[test]
fn backup_and_compact_of_a_damaged_store_refuse_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    damaged_store(&path);
    let store = SessionStore::open(&path).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    let before = std::fs::read(&path).unwrap();
    let listed = names(dir.path());

    let backup = dir.path().join("backup.redb");
    let refused = store.backup_to(&backup, &mut |_, _| {}).unwrap_err();
    assert!(matches!(refused, Error::Damaged { .. }), "{refused:?}");
    assert_names_the_damage(&refused.to_string());
    assert!(!backup.exists());
    let elsewhere = dir.path().join("new/backup.redb");
    assert!(store.backup_to(&elsewhere, &mut |_, _| {}).is_err());
    assert!(!dir.path().join("new").exists(), "a refused backup made a folder");

    let refused = store.compact(&mut |_, _| {}).unwrap_err();
    assert!(matches!(refused, Error::Damaged { .. }), "{refused:?}");
    assert_names_the_damage(&refused.to_string());
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.ino(), inode, "compact swapped in another file");
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the store's bytes changed"
    );
    assert_eq!(names(dir.path()), listed, "files left beside the store");
}

#[test]
fn the_cli_refuses_to_back_up_or_compact_a_damaged_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    damaged_store(&path);
    let backup = dir.path().join("backup.redb");
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut cmd = cargo_bin_cmd!("sessionstore");
        cmd.arg("--db").arg(&path);
        for arg in args {
            cmd.arg(arg);
        }
        let output = cmd.output().unwrap();
        assert!(!output.status.success(), "exit 0 for {:?}", cmd);
        String::from_utf8(output.stderr).unwrap()
    };
    // Each open and close of the CLI commits (its header, its allocator):
    // the file is the same file, with the damaged record where it was.
    let inode = std::fs::metadata(&path).unwrap().ino();
    let damaged_at = flipped_marker(&path);

    assert_names_the_damage(&run(&[&"backup", &backup]));
    assert!(!backup.exists());
    assert_names_the_damage(&run(&[&"compact"]));
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        inode,
        "compact swapped in another file"
    );
    assert_eq!(flipped_marker(&path), damaged_at);
    assert_eq!(names(dir.path()), ["sessions.redb", "sessions.redb-journal"]);
}
