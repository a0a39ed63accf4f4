//! A journal record's layout: header, checksum, padding; the round it
//! belongs to.

use super::*;

/// A record's header: `len`, `crc32`, `lsn`, `synced`, `round`.
pub(super) const HEADER: usize = 32;
/// The header of a record written before rounds were numbered: no `round`.
pub(super) const UNNUMBERED_HEADER: usize = 24;
/// Set in `len` of a record whose header carries its round.
pub(super) const ROUND_FLAG: u32 = 1 << 31;
/// A record's round; `None` for a record written before rounds were
/// numbered.
pub(super) type Round = Option<u64>;
/// Records start at multiples of this.
pub(super) const ALIGN: u64 = 8;
/// A record to replay: its lsn and payload.
pub(super) type Replayed = (u64, Vec<u8>);
/// The payload of the record [`Journal::mark_checkpointed`] writes.
pub(super) const CHECKPOINT_MARKER: &[u8] = b"checkpointed";
/// What a journal starts with, as an open finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// Zeros (no record, no marker), or no file.
    Zeros,
    /// The checkpoint marker (see [`Journal::mark_checkpointed`]) of a
    /// round the database holds.
    Marker,
    /// Anything else: a record, or damage.
    Records,
}
/// Record `lsn` of `round` holding `payload`, padded to a multiple of
/// [`ALIGN`].
pub(super) fn record(lsn: u64, synced: u64, round: u64, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| len & ROUND_FLAG == 0)
        .ok_or_else(|| Error::invalid("journal record", "over 2 GiB"))?;
    let size = padded(HEADER + payload.len());
    let mut record = Vec::with_capacity(size as usize);
    record.extend_from_slice(&(len | ROUND_FLAG).to_le_bytes());
    record.extend_from_slice(&checksum(len, lsn, synced, Some(round), payload).to_le_bytes());
    record.extend_from_slice(&lsn.to_le_bytes());
    record.extend_from_slice(&synced.to_le_bytes());
    record.extend_from_slice(&round.to_le_bytes());
    record.extend_from_slice(payload);
    record.resize(size as usize, 0);
    Ok(record)
}
/// A new round's number: drawn at random, so that no other round, of this
/// process or of one before it, has it.
pub(super) fn new_round() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}
/// A record's checksum: over its header's fields as written (`len` with
/// [`ROUND_FLAG`] when it has a round) and its payload.
pub(super) fn checksum(len: u32, lsn: u64, synced: u64, round: Round, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let flag = if round.is_some() { ROUND_FLAG } else { 0 };
    hasher.update(&(len | flag).to_le_bytes());
    hasher.update(&lsn.to_le_bytes());
    hasher.update(&synced.to_le_bytes());
    if let Some(round) = round {
        hasher.update(&round.to_le_bytes());
    }
    hasher.update(payload);
    hasher.finalize()
}
/// A record's header as read.
pub(super) struct Header {
    /// The payload's length.
    pub(super) len: u32,
    pub(super) crc: u32,
    pub(super) lsn: u64,
    pub(super) synced: u64,
    pub(super) round: Round,
}
impl Header {
    /// The header's own length.
    pub(super) fn size(&self) -> usize {
        match self.round {
            Some(_) => HEADER,
            None => UNNUMBERED_HEADER,
        }
    }

    /// The whole record's length, padding included.
    pub(super) fn record_len(&self) -> u64 {
        padded(self.size() + self.len as usize)
    }

    /// True when `payload` is the one this header's checksum was made over.
    pub(super) fn checks(&self, payload: &[u8]) -> bool {
        checksum(self.len, self.lsn, self.synced, self.round, payload) == self.crc
    }
}
/// The header at the start of `bytes`; `None` for zeros (no record) or
/// fewer bytes than the header takes.
pub(super) fn parse_header(bytes: &[u8]) -> Option<Header> {
    let (fixed, rest) = bytes.split_first_chunk::<UNNUMBERED_HEADER>()?;
    let [l0, l1, l2, l3, c0, c1, c2, c3, n0, n1, n2, n3, n4, n5, n6, n7, synced @ ..] = *fixed;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len == 0 {
        return None;
    }
    let round = match len & ROUND_FLAG {
        0 => None,
        _ => Some(u64::from_le_bytes(*rest.first_chunk::<8>()?)),
    };
    Some(Header {
        len: len & !ROUND_FLAG,
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
        lsn: u64::from_le_bytes([n0, n1, n2, n3, n4, n5, n6, n7]),
        synced: u64::from_le_bytes(synced),
        round,
    })
}
/// `size` rounded up to a multiple of [`ALIGN`].
pub(super) fn padded(size: usize) -> u64 {
    (size as u64).div_ceil(ALIGN) * ALIGN
}
