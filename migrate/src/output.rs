//! Output files: written under a temporary name beside the destination and
//! renamed into place only when complete and synced.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use sessionstore::files;
use tempfile::TempPath;

use crate::error::{Error, InFile, Result};

/// A file being written; dropped without [`Output::commit`], it is removed
/// with the files beside it.
pub(crate) struct Output {
    /// Syncs the temporary file while it is written, if started; first, so
    /// that it stops before the file is removed.
    writeback: Option<Writeback>,
    dest: PathBuf,
    temp: TempPath,
    force: bool,
    /// Files written beside the temporary file (a store's journal), and
    /// where each goes beside the destination.
    beside: Beside,
    /// The folders made for the destination; last, so that they are
    /// removed (when not committed) after the files in them.
    folders: files::MadeFolders,
}

/// Files beside the temporary file; removed when dropped before the commit.
struct Beside(Vec<(PathBuf, PathBuf)>);

impl Output {
    /// Refuses an existing `dest` unless `force`; makes the temporary file
    /// (`DEST.tmp-XXXXXX`) in the same folder, so the rename is atomic,
    /// making the folder when missing (removed again unless committed).
    pub fn create(dest: &Path, force: bool) -> Result<Self> {
        if !force && dest.symlink_metadata().is_ok() {
            return Err(Error::DestinationExists {
                path: dest.to_path_buf(),
            });
        }
        let folder = match dest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let folders = files::make_folder(folder).map_err(|e| Error::io("create folder", folder, e))?;
        let name = dest
            .file_name()
            .ok_or_else(|| Error::io("write", dest, std::io::Error::other("not a file name")))?;
        let mut prefix = name.to_os_string();
        prefix.push(".tmp-");
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(folder)
            .map_err(|e| Error::io("create a temporary file in", folder, e))?
            .into_temp_path();
        Ok(Output {
            writeback: None,
            dest: dest.to_path_buf(),
            temp,
            force,
            beside: Beside(Vec::new()),
            folders,
        })
    }

    /// Starts syncing the temporary file on a thread of its own while it
    /// is written (what its writer leaves in the page cache goes to disk
    /// alongside the work, not all in the final sync; RocksDB's
    /// `bytes_per_sync` does the same). The final sync in
    /// [`Output::commit`] still makes the whole file durable; an error met
    /// by an early sync fails the commit.
    pub fn write_back_early(&mut self) -> Result<()> {
        if self.writeback.is_none() {
            self.writeback = Some(Writeback::start(&self.temp)?);
        }
        Ok(())
    }

    /// Declares the files a writer keeps beside its file, as `files_beside`
    /// names them for any path: they move to the destination with it.
    pub fn with_files_beside(mut self, files_beside: fn(&Path) -> Vec<PathBuf>) -> Self {
        self.beside = Beside(
            files_beside(&self.temp)
                .into_iter()
                .zip(files_beside(&self.dest))
                .collect(),
        );
        self
    }

    /// The temporary file to write.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Gives the file, and the files beside it, the permissions of
    /// `source`, if given (conversation data is kept as private as it was),
    /// plus the owner's read and write (else they stay readable by their
    /// owner only), and the owner of the file they replace, if any, where
    /// the process may (see [`sessionstore::files::keep_owner`]); syncs it
    /// and renames it to the destination (refusing a destination that
    /// appeared meanwhile, unless `force`), then syncs the folder so the
    /// rename itself is durable.
    pub fn commit(mut self, source: Option<&Path>) -> Result<()> {
        if let Some(writeback) = self.writeback.take() {
            writeback.finish(&self.temp)?;
        }
        let written =
            std::iter::once(&*self.temp).chain(self.beside.0.iter().map(|(temp, _)| temp.as_path()));
        let written: Vec<&Path> = written.filter(|file| file.exists()).collect();
        if let Some(source) = source {
            let mut permissions = files::permissions_of(source).in_file(source)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                permissions.set_mode(permissions.mode() | 0o600);
            }
            #[cfg(not(unix))]
            permissions.set_readonly(false);
            for file in &written {
                std::fs::set_permissions(file, permissions.clone())
                    .map_err(|e| Error::io("set the permissions of", file, e))?;
            }
        }
        for file in written {
            files::keep_owner(file, &self.dest).in_file(&self.dest)?;
        }
        let file = std::fs::File::open(&self.temp).map_err(|e| Error::io("open", &self.temp, e))?;
        file.sync_all().map_err(|e| Error::io("sync", &self.temp, e))?;
        drop(file);
        // A file left beside an earlier destination must not pair with the
        // new one, even for a moment.
        for (_, dest) in &self.beside.0 {
            remove_if_present(dest)?;
        }
        let renamed = if self.force {
            self.temp.persist(&self.dest)
        } else {
            self.temp.persist_noclobber(&self.dest)
        };
        renamed.map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => Error::DestinationExists {
                path: self.dest.clone(),
            },
            _ => Error::io("rename the finished file to", &self.dest, e.error),
        })?;
        for (temp, dest) in std::mem::take(&mut self.beside.0) {
            if temp.exists() {
                std::fs::rename(&temp, &dest)
                    .map_err(|e| Error::io("rename the finished file to", &dest, e))?;
            }
        }
        if let Some(folder) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            let folder = std::fs::File::open(folder).map_err(|e| Error::io("open", folder, e))?;
            folder.sync_all().map_err(|e| Error::io("sync", &self.dest, e))?;
        }
        std::mem::take(&mut self.folders)
            .keep()
            .map_err(|e| Error::io("sync the folders made for", &self.dest, e))?;
        Ok(())
    }
}

/// How long the early writeback waits after a sync before the next.
const WRITEBACK_PAUSE: Duration = Duration::from_millis(200);

/// A thread that syncs a file again and again until stopped.
struct Writeback {
    /// Dropping it stops the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Writeback {
    fn start(path: &Path) -> Result<Self> {
        // Opened for writing: some systems sync only files open for it.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || loop {
                match stopped.recv_timeout(WRITEBACK_PAUSE) {
                    Err(mpsc::RecvTimeoutError::Timeout) => file.sync_data()?,
                    _ => return Ok(()),
                }
            })
            .map_err(|e| Error::io("start the writeback of", path, e))?;
        Ok(Writeback {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread; the error of its first failed sync, if any (the
    /// system may report a failed write to one sync only).
    fn finish(mut self, path: &Path) -> Result<()> {
        match self.join() {
            Some(Ok(Err(e))) => Err(Error::io("sync", path, e)),
            Some(Err(_)) => Err(Error::io(
                "sync",
                path,
                std::io::Error::other("the writeback thread stopped"),
            )),
            _ => Ok(()),
        }
    }

    /// Stops the thread and waits for it (once); how it ended.
    fn join(&mut self) -> Option<std::thread::Result<std::io::Result<()>>> {
        self.stop.take();
        self.thread.take().map(JoinHandle::join)
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.join();
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        for (temp, _) in &self.0 {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Writes `chunks` of 1 MiB to the output's temporary file, pausing
    /// long enough between them for the early writeback to sync.
    fn write(output: &Output, chunks: u8) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(output.path())
            .unwrap();
        for chunk in 0..chunks {
            file.write_all(&[chunk; 1 << 20]).unwrap();
            std::thread::sleep(WRITEBACK_PAUSE / 2);
        }
    }

    #[test]
    fn a_file_written_back_early_is_whole_at_its_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.db");
        let mut output = Output::create(&dest, false).unwrap();
        output.write_back_early().unwrap();
        write(&output, 6);
        output.commit(None).unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        assert_eq!(bytes.len(), 6 << 20);
        assert!(bytes
            .chunks(1 << 20)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_written_back_early_and_abandoned_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.db");
        let mut output = Output::create(&dest, false).unwrap();
        output.write_back_early().unwrap();
        write(&output, 3);
        drop(output);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
