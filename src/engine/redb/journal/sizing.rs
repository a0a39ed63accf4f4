//! The journal's size: grown by doubling when a record does not fit, halved
//! after long oversize, cut to the smallest at close.

use super::*;

impl Journal {
    /// Zero-fills the file, `len` bytes long, to `size` when shorter; its
    /// size.
    pub(super) fn grow_to(&self, size: u64, len: u64) -> Result<u64> {
        if len >= size {
            return Ok(len);
        }
        let zeros = vec![0u8; (size - len).min(1 << 20) as usize];
        let mut at = len;
        while at < size {
            let n = (size - at).min(zeros.len() as u64);
            self.file
                .write(at, &zeros[..n as usize])
                .map_err(|e| self.io("fill", e))?;
            at += n;
        }
        self.file.sync_data().map_err(|e| self.io("sync", e))?;
        Ok(size)
    }

    /// Cuts the file to `size` when longer. Only while the journal is
    /// empty (replayed, or reset after a checkpoint): the database then
    /// holds every record durably, and the records cut off are never
    /// needed. No record is written past `size` from then on, even when
    /// the cut fails.
    pub(super) fn cut_to(&mut self, size: u64) -> Result<()> {
        if self.capacity > size {
            self.capacity = size;
            self.file.set_len(size).map_err(|e| self.io("shrink", e))?;
            self.file.sync_data().map_err(|e| self.io("sync", e))?;
        }
        Ok(())
    }

    /// True when a record of `payload_len` bytes fits in what is left,
    /// once the file is grown to make room for it: doubled as often as it
    /// takes, up to the largest size allowed, zero-filled and synced
    /// before any record is written there. A failed growth is logged and
    /// leaves the journal as it was: the record does not fit.
    pub fn make_room(&mut self, payload_len: usize) -> bool {
        if u32::try_from(payload_len).is_err() {
            return false;
        }
        let needed = self.end + padded(HEADER + payload_len);
        if needed <= self.capacity {
            return true;
        }
        if needed > self.max {
            return false;
        }
        let mut size = self
            .capacity
            .max(crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES);
        while size < needed {
            size = size.saturating_mul(2);
        }
        let size = size.min(self.max);
        match self.grow_to(size, self.capacity) {
            Ok(size) => {
                self.capacity = size;
                // The growth's sync made every record appended so far
                // durable as well.
                self.unsynced = false;
                self.synced = self.last_appended();
                true
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "the journal could not grow; the batch is committed to the database instead");
                false
            }
        }
    }

    /// Halves the journal, emptied by a checkpoint, when [`SHRINK_AFTER`]
    /// rounds in a row used at most a quarter of it. A failed cut is
    /// logged: the journal goes on, no larger than before.
    pub fn shrink_if_oversize(&mut self) {
        if self.quiet_rounds >= SHRINK_AFTER {
            self.quiet_rounds = 0;
            self.shrink_to((self.capacity / 2).max(crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES));
        }
    }

    /// The store closes, its last commit holding every record durably and
    /// saying the database needs the journal no more: cuts the journal to
    /// the smallest size (a store at rest takes little room) and marks its
    /// start checkpointed (see [`Journal::mark_checkpointed`]), unless it
    /// is marked already. The next open then reads the marker and nothing
    /// after it, where it would read whatever record of the last round
    /// lies at the start (a batch as large as the journal, or one the cut
    /// ran through, which has it look for damage through the whole file).
    /// A failure is logged: the next open reads further, no harm done.
    pub fn close_cleanly(&mut self) {
        if let Err(error) = self.cut_to(crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES) {
            tracing::warn!(path = %self.path.display(), %error, "the journal could not be made smaller");
        }
        if !self.marked {
            if let Err(error) = self.mark_checkpointed() {
                tracing::warn!(path = %self.path.display(), %error, "the journal's start could not be marked");
            }
        }
    }

    pub(super) fn shrink_to(&mut self, size: u64) {
        if !self.is_empty() {
            return;
        }
        if let Err(error) = self.cut_to(size) {
            tracing::warn!(path = %self.path.display(), %error, "the journal could not be made smaller");
        }
    }

    /// The size the journal may grow to.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Whether this round leaves the journal oversize: larger than the
    /// smallest size, and using at most a quarter of it.
    pub(super) fn round_is_oversize(&self) -> bool {
        self.capacity > crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES && self.end <= self.capacity / 4
    }

    /// The journal's size once [`Journal::reset`] and
    /// [`Journal::shrink_if_oversize`] have run (if the cut succeeds).
    pub(super) fn capacity_after_reset(&self) -> u64 {
        let quiet = if self.round_is_oversize() {
            self.quiet_rounds + 1
        } else {
            0
        };
        if quiet >= SHRINK_AFTER {
            (self.capacity / 2).max(crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES)
        } else {
            self.capacity
        }
    }
}
/// Rounds in a row that use at most a quarter of the journal before it is
/// halved (see [`Journal::shrink_if_oversize`]): about 16 s of a light
/// load, whose checkpoints come every 500 ms.
pub(super) const SHRINK_AFTER: u32 = 32;
