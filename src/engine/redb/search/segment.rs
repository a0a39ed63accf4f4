//! A segment's bytes: its header (the messages it holds) and each term's
//! postings, as unsigned LEB128 varints, delta coded, sealed by a CRC-32
//! over the bytes and the key they are stored under. The bytes are
//! untrusted on decode: a damaged value is [`Error::CorruptRecord`], never
//! a panic, and nothing is allocated beyond what its bytes can hold.
//!
//! Header, under (user number, segment): a format byte (1), the count of
//! sessions, each session's id (16 bytes, little-endian, increasing), the
//! count of messages, then per message, in (session, seq) order: the step
//! from the previous message's session (its place in the list of
//! sessions), its seq (the step from the previous seq in the same session,
//! at least 1), its length in terms. Postings, under (user number,
//! segment, term): their count, then per message holding the term, in
//! header order: the gap from the previous one's place (the first: its
//! place), the term's frequency.

use crate::error::{Error, Result};

/// The format byte of a header.
const HEADER_FORMAT: u8 = 1;
const CHECKSUM: usize = 4;

/// One message of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Doc {
    pub session: u128,
    pub seq: u64,
    /// Its length in terms (at least 1: messages holding no term are not
    /// indexed).
    pub length: u32,
}

/// (place of a message in its segment's header, term frequency).
pub(crate) type Posting = (u32, u32);

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// What was stored under a key, for checksums and errors.
pub(crate) enum Key<'a> {
    Header { user: u64, segment: u64 },
    Postings { user: u64, segment: u64, term: &'a str },
}

impl Key<'_> {
    fn checksum(&self, bytes: &[u8]) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(bytes);
        match self {
            Key::Header { user, segment } => {
                hasher.update(&user.to_le_bytes());
                hasher.update(&segment.to_le_bytes());
            }
            Key::Postings { user, segment, term } => {
                hasher.update(&user.to_le_bytes());
                hasher.update(&segment.to_le_bytes());
                hasher.update(term.as_bytes());
            }
        }
        hasher.finalize()
    }

    fn table(&self) -> &'static str {
        match self {
            Key::Header { .. } => "search_segments",
            Key::Postings { .. } => "search_terms",
        }
    }

    /// The error for a damaged value under this key.
    fn damaged(&self, why: &str) -> Error {
        let place = match self {
            Key::Header { user, segment } => format!("segment {segment} of user number {user}"),
            Key::Postings { user, segment, term } => {
                format!("postings of {term:?} in segment {segment} of user number {user}")
            }
        };
        Error::corrupt_record(self.table(), format!("{place}: {why}"))
    }

    fn seal(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        let crc = self.checksum(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// The bytes of `value` under the checksum, verified.
    fn open<'v>(&self, value: &'v [u8]) -> Result<Reader<'v, '_>> {
        let Some((bytes, crc)) = value.split_last_chunk::<CHECKSUM>() else {
            return Err(self.damaged("shorter than its checksum"));
        };
        if self.checksum(bytes) != u32::from_le_bytes(*crc) {
            return Err(self.damaged("its checksum does not match"));
        }
        Ok(Reader {
            bytes,
            at: 0,
            key: self,
        })
    }
}

struct Reader<'v, 'k> {
    bytes: &'v [u8],
    at: usize,
    key: &'k Key<'k>,
}

impl Reader<'_, '_> {
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| self.key.damaged("cut short"))?;
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.key.damaged("a number too large"))
    }

    fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.varint()?).map_err(|_| self.key.damaged("a number too large"))
    }

    /// A count of items of at least `least_bytes` bytes each, which the
    /// bytes left must be able to hold.
    fn count(&mut self, least_bytes: usize) -> Result<usize> {
        let count = self.varint()?;
        let left = (self.bytes.len() - self.at) as u64;
        if count.saturating_mul(least_bytes as u64) > left {
            return Err(self.key.damaged("a count beyond its bytes"));
        }
        Ok(count as usize)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.at + N;
        let bytes = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| self.key.damaged("cut short"))?;
        self.at = end;
        Ok(bytes.try_into().expect("N bytes"))
    }

    /// A header's format byte and list of sessions.
    fn sessions(&mut self) -> Result<Vec<u128>> {
        if self.array::<1>()? != [HEADER_FORMAT] {
            return Err(self.key.damaged("an unknown format"));
        }
        let count = self.count(16)?;
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            sessions.push(u128::from_le_bytes(self.array()?));
        }
        if sessions.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(self.key.damaged("sessions out of order"));
        }
        Ok(sessions)
    }

    fn end(&self) -> Result<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.key.damaged("bytes past its end"))
        }
    }
}

/// The header of segment `segment` of user `user`: `docs` in (session,
/// seq) order, each place once.
pub(crate) fn encode_header(user: u64, segment: u64, docs: &[Doc]) -> Vec<u8> {
    let mut sessions: Vec<u128> = docs.iter().map(|doc| doc.session).collect();
    sessions.dedup();
    let mut out = Vec::with_capacity(8 + sessions.len() * 16 + docs.len() * 4);
    out.push(HEADER_FORMAT);
    put_varint(&mut out, sessions.len() as u64);
    for session in &sessions {
        out.extend_from_slice(&session.to_le_bytes());
    }
    put_varint(&mut out, docs.len() as u64);
    let (mut place, mut previous) = (0usize, None::<&Doc>);
    for doc in docs {
        let step = match previous {
            Some(previous) if previous.session == doc.session => 0,
            Some(_) => 1,
            None => 0,
        };
        place += step;
        put_varint(&mut out, step as u64);
        let seq = match previous {
            Some(previous) if previous.session == doc.session => doc.seq - previous.seq,
            _ => doc.seq,
        };
        put_varint(&mut out, seq);
        put_varint(&mut out, u64::from(doc.length));
        previous = Some(doc);
    }
    debug_assert!(docs.is_empty() || place + 1 == sessions.len());
    Key::Header { user, segment }.seal(out)
}

/// How many messages a header lists (its checksum verified, its list
/// not read).
pub(crate) fn header_docs(user: u64, segment: u64, value: &[u8]) -> Result<usize> {
    let key = Key::Header { user, segment };
    let mut reader = key.open(value)?;
    reader.sessions()?;
    reader.count(3)
}

/// The messages of a header, as [`encode_header`] wrote them.
pub(crate) fn decode_header(user: u64, segment: u64, value: &[u8]) -> Result<Vec<Doc>> {
    let key = Key::Header { user, segment };
    let mut reader = key.open(value)?;
    let sessions = reader.sessions()?;
    let count = reader.count(3)?;
    let mut docs: Vec<Doc> = Vec::with_capacity(count);
    let mut place = 0usize;
    for index in 0..count {
        let step = reader.varint()?;
        let seq = reader.varint()?;
        let length = reader.u32()?;
        let doc = match docs.last() {
            Some(previous) if step == 0 => {
                if seq == 0 {
                    return Err(key.damaged("a message twice"));
                }
                let seq = previous
                    .seq
                    .checked_add(seq)
                    .ok_or_else(|| key.damaged("a seq too large"))?;
                Doc {
                    session: previous.session,
                    seq,
                    length,
                }
            }
            _ => {
                if (index == 0) != (step == 0) || step > 1 {
                    return Err(key.damaged("a session out of order"));
                }
                place += step as usize;
                let session = *sessions
                    .get(place)
                    .ok_or_else(|| key.damaged("a session beyond its list"))?;
                Doc { session, seq, length }
            }
        };
        if doc.length == 0 {
            return Err(key.damaged("a message of no term"));
        }
        docs.push(doc);
    }
    if sessions.len() != if docs.is_empty() { 0 } else { place + 1 } {
        return Err(key.damaged("a session of no message"));
    }
    reader.end()?;
    Ok(docs)
}

/// The postings of `term` in a segment, in place order, none twice.
pub(crate) fn encode_postings(user: u64, segment: u64, term: &str, postings: &[Posting]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + postings.len() * 2);
    put_varint(&mut out, postings.len() as u64);
    let mut next = 0u32;
    for &(place, frequency) in postings {
        put_varint(&mut out, u64::from(place - next));
        put_varint(&mut out, u64::from(frequency));
        next = place + 1;
    }
    Key::Postings { user, segment, term }.seal(out)
}

/// Calls `each` with the postings of `term` stored as `value` in a
/// segment of `docs` messages, in place order.
pub(crate) fn decode_postings(
    user: u64,
    segment: u64,
    term: &str,
    value: &[u8],
    docs: usize,
    mut each: impl FnMut(Posting),
) -> Result<()> {
    let key = Key::Postings { user, segment, term };
    let mut reader = key.open(value)?;
    let count = reader.count(2)?;
    if count == 0 || count > docs {
        return Err(key.damaged("a count of postings its segment cannot hold"));
    }
    let mut next = 0u64;
    for _ in 0..count {
        let place = next.saturating_add(reader.varint()?);
        let frequency = reader.u32()?;
        if place >= docs as u64 || frequency == 0 {
            return Err(key.damaged("a posting of no message of its segment"));
        }
        each((place as u32, frequency));
        next = place + 1;
    }
    reader.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<Doc> {
        vec![
            Doc {
                session: 3,
                seq: 0,
                length: 4,
            },
            Doc {
                session: 3,
                seq: 7,
                length: 1,
            },
            Doc {
                session: 9,
                seq: 2,
                length: 300,
            },
            Doc {
                session: u128::MAX,
                seq: u64::MAX,
                length: u32::MAX,
            },
        ]
    }

    #[test]
    fn headers_and_postings_round_trip() {
        let header = encode_header(5, 11, &docs());
        assert_eq!(decode_header(5, 11, &header).unwrap(), docs());
        assert_eq!(header_docs(5, 11, &header).unwrap(), 4);
        assert_eq!(decode_header(5, 11, &encode_header(5, 11, &[])).unwrap(), []);
        let postings = [(0, 1), (2, 9), (3, u32::MAX)];
        let bytes = encode_postings(5, 11, "word", &postings);
        let mut read = Vec::new();
        decode_postings(5, 11, "word", &bytes, 4, |p| read.push(p)).unwrap();
        assert_eq!(read, postings);
    }

    /// Every change of a byte, every cut, and the bytes of another key are
    /// refused as a damaged record, without a panic.
    #[test]
    fn damaged_bytes_are_refused() {
        let header = encode_header(5, 11, &docs());
        let postings = encode_postings(5, 11, "word", &[(0, 1), (3, 2)]);
        let corrupt = |r: Result<()>| matches!(r, Err(Error::CorruptRecord { .. }));
        for at in 0..header.len() {
            for flip in [1u8, 0x80, 0xff] {
                let mut bad = header.clone();
                bad[at] ^= flip;
                assert!(corrupt(decode_header(5, 11, &bad).map(drop)));
            }
            assert!(corrupt(decode_header(5, 11, &header[..at]).map(drop)));
        }
        assert!(corrupt(decode_header(5, 12, &header).map(drop)));
        for at in 0..postings.len() {
            let mut bad = postings.clone();
            bad[at] ^= 0x40;
            assert!(corrupt(decode_postings(5, 11, "word", &bad, 4, drop)));
        }
        assert!(corrupt(decode_postings(5, 11, "other", &postings, 4, drop)));
        // A place beyond the segment's messages, though checksummed.
        assert!(corrupt(decode_postings(5, 11, "word", &postings, 3, drop)));
    }

    /// Bytes crafted to pass the checksum with nonsense inside are refused
    /// too, and a huge count allocates nothing.
    #[test]
    fn sealed_nonsense_is_refused() {
        let key = Key::Header { user: 1, segment: 1 };
        let corrupt = |r: Result<Vec<Doc>>| matches!(r, Err(Error::CorruptRecord { .. }));
        let mut huge = vec![HEADER_FORMAT];
        put_varint(&mut huge, u64::MAX / 2);
        assert!(corrupt(decode_header(1, 1, &key.seal(huge))));
        let too_long = vec![
            HEADER_FORMAT,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
        ];
        assert!(corrupt(decode_header(1, 1, &key.seal(too_long))));
        // A second message of the same session at the same seq.
        let twice = vec![
            HEADER_FORMAT,
            1,
            7,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            2,
            0,
            4,
            1,
            0,
            0,
            1,
        ];
        assert!(corrupt(decode_header(1, 1, &key.seal(twice))));
    }
}
