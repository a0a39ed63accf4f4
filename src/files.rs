//! Files written whole (a backup, a compacted store, a converted file):
//! made under a temporary name beside their destination with the
//! permissions of the file they come from, synced, and put in place by one
//! rename or link, after which the folder is synced. A replaced file keeps
//! its owner where the process may set it.
//!
//! A temporary file is named `<destination>.sessionstore-tmp-<pid>`, so that
//! a run killed midway leaves a file the next run writing the same
//! destination recognises and removes: one whose process has ended (or,
//! with this process's pid, one no call of this process is writing: a
//! container may give every run the same pid). Processes are looked up in
//! this process's pid namespace: runs in two containers that write the same
//! destination in a shared folder must not overlap. A folder made for a
//! destination gets the permissions `mkdir -p` gives (the umask's).
//!
//! ```
//! use sessionstore::files::{permissions_of, NewFile};
//! # let dir = tempfile::tempdir().unwrap();
//! let source = dir.path().join("notes.txt");
//! std::fs::write(&source, "draft").unwrap();
//! let dest = dir.path().join("copies/notes.txt");
//! // The folder is made when missing.
//! let new = NewFile::create(&dest, permissions_of(&source)?)?;
//! std::fs::write(new.path(), "final").unwrap();
//! new.replace(&dest)?;
//! assert_eq!(std::fs::read_to_string(&dest).unwrap(), "final");
//! assert_eq!(
//!     std::fs::metadata(&dest).unwrap().permissions(),
//!     std::fs::metadata(&source).unwrap().permissions()
//! );
//! # Ok::<(), sessionstore::Error>(())
//! ```

use std::collections::HashSet;
use std::fs::{File, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};

/// What a temporary file's name adds to its destination's, before the pid.
const TEMPORARY: &str = ".sessionstore-tmp-";

/// The temporary files of this process that are being written (a thread's
/// run is not a killed run's, though it has the same pid).
static WRITING: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// The permissions of the file at `source`, for a file written from it.
pub fn permissions_of(source: &Path) -> Result<Permissions> {
    Ok(std::fs::metadata(source)
        .map_err(|e| Error::io("read the permissions of", source, e))?
        .permissions())
}

/// Gives the file at `path` the owner and group of `replaced`, which it is
/// about to replace, when `replaced` exists and the process may (root may;
/// a refusal, `EPERM`, leaves the file as it is).
pub fn keep_owner(path: &Path, replaced: &Path) -> Result<()> {
    let owner = match std::fs::metadata(replaced) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read the owner of", replaced, e)),
    };
    take_owner(path, &owner).map_err(|e| Error::io("give the owner of the replaced file to", path, e))
}

/// Gives the file at `path` the owner and group of the file `of` describes,
/// where the process may.
fn take_owner(path: &Path, of: &std::fs::Metadata) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match std::os::unix::fs::chown(path, Some(of.uid()), Some(of.gid())) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, of);
        Ok(())
    }
}

/// A file being written under a temporary name beside its destination;
/// dropped before it is put in place, it is removed.
#[derive(Debug)]
pub struct NewFile {
    path: PathBuf,
    /// Dropped after the file is removed.
    folders: MadeFolders,
}

impl NewFile {
    /// Makes the empty temporary file for `dest`, with `permissions`
    /// (whatever the process's umask), making `dest`'s folder when missing.
    /// First removes the temporary files that runs which have ended left
    /// for `dest`. Refused while another call of this process writes
    /// `dest`.
    pub fn create(dest: &Path, permissions: Permissions) -> Result<NewFile> {
        let folder = folder_of(dest);
        let folders = make_folder(folder).map_err(|e| Error::io("create folder", folder, e))?;
        remove_ended(dest)?;
        let path = temporary_path(dest, std::process::id());
        let file = {
            // Held while this process's temporary file is looked at and
            // made: a thread's live run is told from an ended run of an
            // earlier process with the same pid (a container's, say).
            let mut writing = WRITING.lock().unwrap_or_else(PoisonError::into_inner);
            let writing = writing.get_or_insert_with(HashSet::new);
            if writing.contains(&path) {
                return Err(Error::invalid(
                    "destination",
                    format!("{} is being written by another call already", dest.display()),
                ));
            }
            remove_if_present(&path)?;
            let file = private_options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::io("create a temporary file beside", dest, e))?;
            writing.insert(path.clone());
            file
        };
        let new = NewFile { path, folders };
        file.set_permissions(permissions)
            .map_err(|e| Error::io("set the permissions of", &new.path, e))?;
        Ok(new)
    }

    /// The temporary file to write.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the file and renames it over `dest` (replaced if there, and
    /// then its owner kept, see [`keep_owner`]), then syncs the folder.
    pub fn replace(mut self, dest: &Path) -> Result<()> {
        self.sync()?;
        keep_owner(&self.path, dest)?;
        std::fs::rename(&self.path, dest).map_err(|e| Error::io("rename the finished file to", dest, e))?;
        self.placed(dest)
    }

    /// Syncs the file and gives it the name `dest` unless a file has that
    /// name (then returns false and places nothing): a hard link fails
    /// rather than replace a file made meanwhile (where links are not
    /// supported, a rename after a last look); then syncs the folder.
    pub fn place_new(mut self, dest: &Path) -> Result<bool> {
        self.sync()?;
        match std::fs::hard_link(&self.path, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(_) if dest.symlink_metadata().is_ok() => return Ok(false),
            Err(_) => std::fs::rename(&self.path, dest)
                .map_err(|e| Error::io("rename the finished file to", dest, e))?,
        }
        self.placed(dest)?;
        Ok(true)
    }

    /// Makes the name `dest` durable: syncs its folder, and keeps the
    /// folders made for it.
    fn placed(&mut self, dest: &Path) -> Result<()> {
        let folder = folder_of(dest);
        File::open(folder)
            .and_then(|dir| dir.sync_all())
            .and_then(|()| std::mem::take(&mut self.folders).keep())
            .map_err(|e| Error::io("sync folder", folder, e))
    }

    fn sync(&self) -> Result<()> {
        File::open(&self.path)
            .and_then(|file| file.sync_all())
            .map_err(|e| Error::io("sync", &self.path, e))
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        // Gone already once renamed into place.
        let _ = std::fs::remove_file(&self.path);
        if let Some(writing) = WRITING.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            writing.remove(&self.path);
        }
    }
}

/// Folders [`make_folder`] made: removed again (those left empty) when
/// dropped, unless kept.
#[derive(Debug, Default)]
#[must_use]
pub struct MadeFolders(Vec<PathBuf>);

/// Makes `folder` and its missing parents, with the permissions `mkdir -p`
/// gives; the folders made are removed again if the result is dropped
/// without [`MadeFolders::keep`] (a refusal leaves no folder behind).
pub fn make_folder(folder: &Path) -> std::io::Result<MadeFolders> {
    let mut missing = Vec::new();
    let mut at = Some(folder);
    while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty() && d.symlink_metadata().is_err()) {
        missing.push(dir.to_path_buf());
        at = dir.parent();
    }
    let made = MadeFolders(missing);
    std::fs::create_dir_all(folder)?;
    Ok(made)
}

impl MadeFolders {
    /// Keeps the folders, durably: syncs the folder each was made in.
    pub fn keep(mut self) -> std::io::Result<()> {
        for dir in std::mem::take(&mut self.0).iter().rev() {
            File::open(folder_of(dir))?.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for MadeFolders {
    fn drop(&mut self) {
        // Deepest first; one holding anything stays.
        for dir in &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Opens the file at `path` for a store, creating it when missing; one
/// created with a `source` (a journal: its database) gets the permissions
/// of `source`, so that it is as private as the conversations in it, and
/// its owner where the process may (root opening a chatbot's store leaves a
/// journal the chatbot can open).
pub(crate) fn open_store_file(path: &Path, source: Option<&Path>) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if let Some(source) = source {
        match options.open(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            opened => return opened,
        }
        // Without a source beside it (a journal opened on its own), it is
        // created as any other file.
        let database = match std::fs::metadata(source) {
            Ok(database) => Some(database),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(database) = database {
            match private_options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(file) => {
                    take_owner(path, &database)?;
                    return file.set_permissions(database.permissions()).map(|()| file);
                }
                // Made meanwhile, by another open: opened below.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    options.create(true).truncate(false).open(path)
}

/// Options that create a file readable by its owner only (until its
/// permissions are set).
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// The folder `path` is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn temporary_path(dest: &Path, pid: u32) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!("{TEMPORARY}{pid}"));
    dest.with_file_name(name)
}

/// Removes the temporary files for `dest` of other processes that have
/// ended.
fn remove_ended(dest: &Path) -> Result<()> {
    let Some(name) = dest.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let prefix = format!("{name}{TEMPORARY}");
    let folder = folder_of(dest);
    let entries = std::fs::read_dir(folder).map_err(|e| Error::io("list", folder, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", folder, e))?;
        let file_name = entry.file_name();
        let pid = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !process_lives(pid)) {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes the temporary file at `path`, which no run is writing.
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "removed the temporary file of a run that ended");
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove the temporary file of an ended run", path, e)),
    }
}

/// Whether process `pid` exists (it may be another user's). Where that
/// cannot be asked, every process is taken to live: nothing is removed.
fn process_lives(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let found = unsafe { libc::kill(pid, 0) } == 0;
        found || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_this_process_writes_is_refused_to_a_second_call_and_its_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("copy.redb");
        let source = dir.path().join("source");
        std::fs::write(&source, "").unwrap();
        let permissions = permissions_of(&source).unwrap();
        let first = NewFile::create(&dest, permissions.clone()).unwrap();
        std::fs::write(first.path(), "being written").unwrap();
        let second = NewFile::create(&dest, permissions.clone()).unwrap_err();
        assert!(
            second.to_string().contains("being written by another call"),
            "{second}"
        );
        assert_eq!(std::fs::read_to_string(first.path()).unwrap(), "being written");
        let temporary = first.path().to_path_buf();
        drop(first);
        assert!(!temporary.exists(), "an abandoned temporary file is removed");
        let again = NewFile::create(&dest, permissions).unwrap();
        assert!(again.place_new(&dest).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn the_folders_made_for_a_file_never_placed_are_removed_and_kept_once_placed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b/copy.redb");
        let permissions = permissions_of(dir.path()).unwrap();
        let abandoned = NewFile::create(&dest, permissions.clone()).unwrap();
        assert!(dest.parent().unwrap().is_dir());
        drop(abandoned);
        assert!(!dir.path().join("a").exists());

        let placed = NewFile::create(&dest, permissions).unwrap();
        placed.replace(&dest).unwrap();
        assert!(dest.is_file());
    }
}
