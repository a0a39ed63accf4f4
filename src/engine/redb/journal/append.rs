//! Appending records: whole blocks from the start of the block the journal
//! ends in, through the page cache or past it; sync and retract.

use super::*;

impl Journal {
    /// The lsn the next record gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// True when records were appended since the last [`Journal::reset`].
    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Bytes appended since the last [`Journal::reset`].
    pub fn used(&self) -> u64 {
        self.end
    }

    /// Appends `payload` as record [`Journal::next_lsn`]; with `sync`, returns
    /// once it is on disk. The caller made room for it ([`Journal::make_room`]).
    pub fn append(&mut self, payload: &[u8], sync: bool) -> Result<u64> {
        let lsn = self.next_lsn;
        let record = record(lsn, self.synced, self.round, payload)?;
        // Past the page cache only when no record written through it waits
        // for this sync: the kernel would write those pages out before the
        // direct write (one more trip to the disk), where one sync of them
        // all is enough.
        self.write_blocks(&record, sync && !self.unsynced)
            .map_err(|e| self.io("append to", e))?;
        self.last_start = Some(self.end);
        self.marked = false;
        self.end += record.len() as u64;
        self.next_lsn += 1;
        self.unsynced = true;
        if sync {
            self.sync()?;
        }
        Ok(lsn)
    }

    /// Writes `record` at `end` as whole blocks (see the module's
    /// documentation): past the page cache when `direct` is asked and the
    /// file was opened for it, else through the storage backend. Keeps
    /// [`Journal::tail`] for the next append; `end` is left to the caller.
    pub(super) fn write_blocks(&mut self, record: &[u8], direct: bool) -> std::io::Result<()> {
        let start = self.end - self.tail.len() as u64;
        let used = self.tail.len() + record.len();
        let mut len = used.div_ceil(BLOCK) * BLOCK;
        if start + len as u64 > self.capacity {
            // The file ends inside the last block (a journal size that is
            // not a multiple of it): the bytes alone, through the backend.
            len = used;
        }
        // Direct I/O wants the buffer aligned too: a block more than needed,
        // used from its first aligned byte.
        if self.blocks.len() < len + BLOCK {
            self.blocks.resize(len + BLOCK, 0);
        }
        let at = self.blocks.as_ptr().align_offset(BLOCK).min(BLOCK);
        let blocks = &mut self.blocks[at..at + len];
        blocks[..self.tail.len()].copy_from_slice(&self.tail);
        blocks[self.tail.len()..used].copy_from_slice(record);
        blocks[used..].fill(0);
        let whole = at < BLOCK && len % BLOCK == 0;
        let direct_write = self
            .direct
            .as_ref()
            .filter(|_| direct && whole)
            .map(|file| write_direct(file, blocks, start));
        match direct_write {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                // Direct writes refused (a file system that opened the file
                // so but wants larger blocks, or a failing disk): the
                // backend's write, and its sync, say whether this one
                // reaches the disk.
                tracing::warn!(path = %self.path.display(), %error, "a direct write failed; the journal goes through the page cache from now on");
                self.direct = None;
                self.file.write(start, blocks)?;
            }
            None => self.file.write(start, blocks)?,
        }
        let kept = used % BLOCK;
        self.tail.clear();
        self.tail.extend_from_slice(&blocks[used - kept..used]);
        Ok(())
    }

    /// The lsn of the last record appended (or replayed).
    pub(super) fn last_appended(&self) -> u64 {
        self.next_lsn - 1
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file.sync_data().map_err(|e| self.io("sync", e))?;
            self.unsynced = false;
            self.synced = self.last_appended();
        }
        Ok(())
    }

    /// Undoes the last append (its commit failed): its header is zeroed and
    /// synced, so that it never replays.
    pub fn retract(&mut self) -> Result<()> {
        let Some(start) = self.last_start.take() else {
            return Ok(());
        };
        self.file
            .write(start, &[0u8; HEADER])
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io("retract a record of", e))?;
        self.end = start;
        self.next_lsn -= 1;
        // What the block `start` lies in holds before it, read back (a
        // retraction is rare: a commit failed).
        let block_start = start - start % BLOCK as u64;
        let mut tail = vec![0u8; (start - block_start) as usize];
        self.file
            .read(block_start, &mut tail)
            .map_err(|e| self.io("read back", e))?;
        self.tail = tail;
        Ok(())
    }
}
/// Writes `bytes` at `offset` of a file opened for direct I/O.
#[cfg(unix)]
pub(super) fn write_direct(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}
/// Direct I/O is offered on Linux only (see
/// [`StorageFactory::open_direct`](crate::redb_engine::StorageFactory::open_direct)).
#[cfg(not(unix))]
pub(super) fn write_direct(_file: &std::fs::File, _bytes: &[u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}
