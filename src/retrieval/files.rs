//! The files of one export, written beside their names and renamed into
//! place together once complete and on disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};

/// The manifest's name; it is renamed into place last.
pub const MANIFEST: &str = "manifest.json";

/// The permission bits of the store file, which every output gets.
pub fn mode_of(store: &Path) -> Result<u32> {
    let metadata = std::fs::metadata(store).map_err(|e| Error::io("read the permissions of", store, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(metadata.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        Ok(if metadata.permissions().readonly() {
            0o444
        } else {
            0o644
        })
    }
}

/// One output: its final name and the temporary file written meanwhile.
struct Output {
    path: PathBuf,
    temp: PathBuf,
    writer: BufWriter<File>,
}

/// The outputs of an export; the temporary files are removed unless
/// [`Outputs::commit`] placed them.
pub struct Outputs {
    dir: PathBuf,
    mode: u32,
    outputs: Vec<Output>,
}

/// Tells apart the temporary files of exports running at once in one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl Outputs {
    /// Opens a temporary file beside each of `names` in `dir`.
    pub fn create(dir: &Path, names: &[&str], mode: u32) -> Result<Self> {
        let mut outputs = Outputs {
            dir: dir.to_path_buf(),
            mode,
            outputs: Vec::with_capacity(names.len() + 1),
        };
        for name in names {
            outputs.open(name)?;
        }
        Ok(outputs)
    }

    fn open(&mut self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        let temp = self.dir.join(format!(
            ".{name}.{}-{}.tmp",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, self.mode);
        // A file left by a process of the same id that died: never data.
        let _ = std::fs::remove_file(&temp);
        let file = options.open(&temp).map_err(|e| Error::io("create", &temp, e))?;
        // The mode given at creation is reduced by the umask; set it whole.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(self.mode))
                .map_err(|e| Error::io("set the permissions of", &temp, e))?;
        }
        self.outputs.push(Output {
            path,
            temp,
            writer: BufWriter::with_capacity(1 << 16, file),
        });
        Ok(())
    }

    /// Appends `text` to output `index` (the place of its name in `create`).
    pub fn text(&mut self, index: usize, text: &str) -> Result<()> {
        let output = &mut self.outputs[index];
        output
            .writer
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("write", &output.temp, e))
    }

    /// Appends `value` as one line of JSON to output `index`.
    pub fn json_line(&mut self, index: usize, value: &impl Serialize) -> Result<()> {
        let output = &mut self.outputs[index];
        serde_json::to_writer(&mut output.writer, value)
            .map_err(std::io::Error::from)
            .and_then(|()| output.writer.write_all(b"\n"))
            .map_err(|e| Error::io("write", &output.temp, e))
    }

    /// Writes `manifest` to `manifest.json`, makes every file durable, then
    /// renames each into place, the manifest last. The paths placed.
    pub fn commit(mut self, manifest: &impl Serialize) -> Result<Vec<PathBuf>> {
        self.open(MANIFEST)?;
        let last = self.outputs.len() - 1;
        let output = &mut self.outputs[last];
        serde_json::to_writer_pretty(&mut output.writer, manifest)
            .map_err(std::io::Error::from)
            .and_then(|()| output.writer.write_all(b"\n"))
            .map_err(|e| Error::io("write", &output.temp, e))?;
        for output in &mut self.outputs {
            output
                .writer
                .flush()
                .and_then(|()| output.writer.get_ref().sync_all())
                .map_err(|e| Error::io("write", &output.temp, e))?;
        }
        // A folder in the way would stop a rename halfway through the set.
        if let Some(output) = self.outputs.iter().find(|o| o.path.is_dir()) {
            return Err(Error::io(
                "replace",
                &output.path,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "a folder has the export's name"),
            ));
        }
        let mut placed = Vec::with_capacity(self.outputs.len());
        // Taken one at a time: on a failure, the drop removes the rest.
        while !self.outputs.is_empty() {
            let output = self.outputs.remove(0);
            if let Err(e) = std::fs::rename(&output.temp, &output.path) {
                let _ = std::fs::remove_file(&output.temp);
                return Err(Error::io("rename the export onto", &output.path, e));
            }
            placed.push(output.path);
        }
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| Error::io("sync folder", &self.dir, e))?;
        Ok(placed)
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for output in &self.outputs {
            let _ = std::fs::remove_file(&output.temp);
        }
    }
}
