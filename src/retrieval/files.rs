//! The files of one export, written beside their names and renamed into
//! place together once complete and on disk.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::{make_folder, MadeFolders, NewFile};

/// The manifest's name; it is renamed into place last.
pub const MANIFEST: &str = "manifest.json";

/// One output: its final name and the temporary file written meanwhile.
struct Output {
    path: PathBuf,
    new: NewFile,
    writer: BufWriter<File>,
}

/// The outputs of an export; the temporary files are removed unless
/// [`Outputs::commit`] placed them.
pub struct Outputs {
    dir: PathBuf,
    permissions: Permissions,
    outputs: Vec<Output>,
    /// The folders made for the export: dropped after the outputs (their
    /// temporary files gone), so a failed export leaves none behind.
    folders: MadeFolders,
}

impl Outputs {
    /// Opens a temporary file beside each of `names` in `dir`, with
    /// `permissions` (the store file's), through [`NewFile`]: named so that
    /// an export killed midway leaves files the next one removes.
    pub fn create(dir: &Path, names: &[&str], permissions: Permissions) -> Result<Self> {
        let folders = make_folder(dir).map_err(|e| Error::io("create folder", dir, e))?;
        let mut outputs = Outputs {
            dir: dir.to_path_buf(),
            permissions,
            outputs: Vec::with_capacity(names.len() + 1),
            folders,
        };
        for name in names {
            outputs.open(name)?;
        }
        Ok(outputs)
    }

    fn open(&mut self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        let new = NewFile::create(&path, self.permissions.clone())?;
        let file = OpenOptions::new()
            .write(true)
            .open(new.path())
            .map_err(|e| Error::io("open", new.path(), e))?;
        self.outputs.push(Output {
            path,
            new,
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
            .map_err(|e| Error::io("write", output.new.path(), e))
    }

    /// Appends `value` as one line of JSON to output `index`.
    pub fn json_line(&mut self, index: usize, value: &impl Serialize) -> Result<()> {
        let output = &mut self.outputs[index];
        serde_json::to_writer(&mut output.writer, value)
            .map_err(std::io::Error::from)
            .and_then(|()| output.writer.write_all(b"\n"))
            .map_err(|e| Error::io("write", output.new.path(), e))
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
            .map_err(|e| Error::io("write", output.new.path(), e))?;
        for output in &mut self.outputs {
            output
                .writer
                .flush()
                .map_err(|e| Error::io("write", output.new.path(), e))?;
        }
        // A folder in the way would stop the renames halfway through the set.
        if let Some(output) = self.outputs.iter().find(|o| o.path.is_dir()) {
            return Err(Error::io(
                "replace",
                &output.path,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "a folder has the export's name"),
            ));
        }
        let mut placed = Vec::with_capacity(self.outputs.len());
        // Taken one at a time: on a failure, the drop of the rest removes them.
        for output in self.outputs {
            output.new.replace(&output.path)?;
            placed.push(output.path);
        }
        self.folders
            .keep()
            .map_err(|e| Error::io("sync the folder of", &self.dir, e))?;
        Ok(placed)
    }
}
