//! Reading the journal back: each offset as a record, zeros or damage; the
//! records after the database's durable lsn; the look for damage past
//! the end.

use super::*;

/// What lies at an offset of the journal.
pub(super) enum Slot {
    /// A whole record whose checksum holds.
    Record {
        lsn: u64,
        round: Round,
        payload: Vec<u8>,
        next: u64,
    },
    /// Zeros, or the end of the file.
    Empty,
    /// Bytes that are not a whole, valid record.
    Bad,
}
impl Journal {
    /// The records of the current round with lsn above `durable`, in order,
    /// and what the file starts with.
    /// `written`: the file's size before [`Journal::grow_to`] filled it.
    pub(super) fn read_after(&self, durable: u64, written: u64) -> Result<(Vec<Replayed>, Start)> {
        let mut records = Vec::new();
        let mut at = 0u64;
        let mut expected: Option<u64> = None;
        // The round of the record at byte 0, which the others must carry.
        let mut round: Option<Round> = None;
        // A round whose first record the database holds was wholly
        // checkpointed (a checkpoint starts the next round at byte 0): its
        // end needs no look for damage, which spares a clean open reading
        // the whole file.
        let mut checkpointed = false;
        let mut start = Start::Records;
        let check_end = |at, wanted, round, records: &Vec<_>, checkpointed| {
            if checkpointed && records.is_empty() {
                return Ok(());
            }
            self.check_end(at, wanted, round, durable, written, !records.is_empty())
        };
        loop {
            let wanted = expected.unwrap_or(durable + 1);
            let (lsn, payload, next) = match self.read_slot(at)? {
                Slot::Record {
                    lsn,
                    round: found,
                    payload,
                    next,
                } if round.is_none_or(|round| round == found) => {
                    round = Some(found);
                    (lsn, payload, next)
                }
                Slot::Empty if at == 0 => {
                    check_end(at, wanted, round, &records, checkpointed)?;
                    return Ok((records, Start::Zeros));
                }
                // A record of another round is where this one ends.
                Slot::Record { .. } | Slot::Empty | Slot::Bad => {
                    check_end(at, wanted, round, &records, checkpointed)?;
                    break;
                }
            };
            if at == 0 && lsn <= durable {
                checkpointed = true;
                if payload == CHECKPOINT_MARKER {
                    start = Start::Marker;
                }
            }
            match expected {
                Some(lsn_wanted) if lsn != lsn_wanted => {
                    check_end(at, wanted, round, &records, checkpointed)?;
                    break;
                }
                None if lsn > durable + 1 => {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        why: format!(
                            "the journal starts at record {lsn} but the database holds only up to \
                             {durable}: records are missing (is this the journal of another copy \
                             of the store?)"
                        ),
                    })
                }
                _ => {}
            }
            if lsn > durable {
                records.push((lsn, payload));
            }
            expected = Some(lsn + 1);
            at = next;
        }
        Ok((records, start))
    }

    /// The current round of the journal ended at `at`, where record `lsn`
    /// belonged (zeros, an invalid record, or a record of an earlier
    /// round). That is a torn tail, or the end of what was written, unless
    /// the file shows it was damaged:
    /// - the record there runs past the end of the file as it was found
    ///   (`written` bytes): the store writes records only inside a file
    ///   already filled to its size, so the file was cut short;
    /// - the file is shorter than the smallest journal the store makes, yet
    ///   holds records to replay (`replaying`): cut short too;
    /// - a valid record after `at`, newer than the database (`durable`),
    ///   says `lsn` had been synced before it was written: `lsn` was on
    ///   disk and was damaged afterwards, and the records after it hold
    ///   acknowledged writes.
    ///
    /// Then the open fails with [`Error::Corrupt`] rather than drop them.
    pub(super) fn check_end(
        &self,
        at: u64,
        lsn: u64,
        round: Option<Round>,
        durable: u64,
        written: u64,
        replaying: bool,
    ) -> Result<()> {
        let damaged = |why: String| {
            Err(Error::Corrupt {
                path: self.path.clone(),
                why: format!("{why}: acknowledged writes would be lost"),
            })
        };
        if lsn > durable {
            if let Some(header) = self.read_header(at)? {
                let end = at + header.record_len();
                if header.lsn == lsn && end > written {
                    return damaged(format!(
                        "journal record {lsn} (at byte {at}) runs to byte {end}, past the end of \
                         the file at byte {written}: the file was cut short (or the record's \
                         length damaged)"
                    ));
                }
            }
        }
        let smallest = crate::engine::redb::RedbOptions::MIN_JOURNAL_BYTES;
        if replaying && written < smallest {
            return damaged(format!(
                "the journal is {written} bytes long, shorter than the smallest the store \
                 writes ({smallest}), yet holds records to replay: the file was cut short"
            ));
        }
        if let Some((found, offset)) = self.find_synced_after(at + ALIGN, lsn, round, durable, written)? {
            return damaged(format!(
                "journal record {lsn} (at byte {at}) is damaged or missing, but record {found} (at \
                 byte {offset}) after it was written once {lsn} was on disk"
            ));
        }
        Ok(())
    }

    /// The first valid record from `start` on (up to `written`, or to the
    /// first MiB of zeros) that is newer than `durable`, was written once
    /// `lsn` was synced and belongs to `round` (the round being read, when
    /// its first record could be read): its lsn and offset.
    pub(super) fn find_synced_after(
        &self,
        start: u64,
        lsn: u64,
        round: Option<Round>,
        durable: u64,
        written: u64,
    ) -> Result<Option<(u64, u64)>> {
        pub(super) const CHUNK: u64 = 1 << 20;
        let end = written.min(self.capacity);
        // At most one record per header's worth of journal.
        let most_records = self.capacity / UNNUMBERED_HEADER as u64;
        let mut chunk = vec![0u8; (CHUNK as usize) + HEADER];
        let mut from = start;
        while from + HEADER as u64 <= end {
            let n = (end - from).min(CHUNK + HEADER as u64) as usize;
            self.file
                .read(from, &mut chunk[..n])
                .map_err(|e| self.io("read", e))?;
            let headers = n.saturating_sub(UNNUMBERED_HEADER - 1).min(CHUNK as usize);
            // A round is written from byte 0 on without gaps, so the
            // records damage hides follow it closely; a MiB of zeros is
            // the part of the file no round reached (a fresh journal is
            // all zeros, and is not read to its end on every open).
            if chunk[..n].iter().all(|&byte| byte == 0) {
                break;
            }
            for offset in (0..headers).step_by(ALIGN as usize) {
                let Some(header) = parse_header(&chunk[offset..n]) else {
                    continue;
                };
                // A cheap filter before the checksum reads the payload:
                // anything else is leftover bytes of other rounds.
                let found = header.lsn;
                if found <= durable || found < lsn || found > lsn.saturating_add(most_records) {
                    continue;
                }
                if header.synced < lsn || header.synced >= found {
                    continue;
                }
                if round.is_some_and(|round| round != header.round) {
                    continue;
                }
                let at = from + offset as u64;
                if at + header.record_len() > end {
                    continue;
                }
                if self.read_payload(at, &header)?.is_some() {
                    return Ok(Some((found, at)));
                }
            }
            from += CHUNK;
        }
        Ok(None)
    }

    /// What lies at `at`.
    pub(super) fn read_slot(&self, at: u64) -> Result<Slot> {
        let Some(header) = self.read_header(at)? else {
            return Ok(Slot::Empty);
        };
        let next = at + header.record_len();
        if next > self.capacity {
            return Ok(Slot::Bad);
        }
        Ok(match self.read_payload(at, &header)? {
            Some(payload) => Slot::Record {
                lsn: header.lsn,
                round: header.round,
                payload,
                next,
            },
            None => Slot::Bad,
        })
    }

    /// The header of a record at `at`; `None` for zeros, or too little of
    /// the file left for one.
    pub(super) fn read_header(&self, at: u64) -> Result<Option<Header>> {
        let room = self.capacity.saturating_sub(at).min(HEADER as u64) as usize;
        let mut bytes = [0u8; HEADER];
        if room >= UNNUMBERED_HEADER {
            self.file
                .read(at, &mut bytes[..room])
                .map_err(|e| self.io("read", e))?;
        }
        Ok(parse_header(&bytes[..room]))
    }

    /// The payload of the record `header` begins at `at`; `None` when its
    /// checksum fails.
    pub(super) fn read_payload(&self, at: u64, header: &Header) -> Result<Option<Vec<u8>>> {
        let mut payload = vec![0u8; header.len as usize];
        self.file
            .read(at + header.size() as u64, &mut payload)
            .map_err(|e| self.io("read", e))?;
        Ok(header.checks(&payload).then_some(payload))
    }
}
