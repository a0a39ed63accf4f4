//! The index's writes: a user's number and statistics, a segment of
//! pending messages, the removal of an indexed message (a tombstone), the
//! tidying of a user's segments (rewrites that drop removed messages,
//! merges) and erasure.

use std::collections::{BTreeMap, HashMap};

use redb::ReadableTable;

use super::segment::{self, Doc, Posting};
use crate::engine::redb::tables::{self, WriteTables};
use crate::error::{Error, Result};
use crate::rules::search::Terms;

/// Segments merge this many at a time,
pub(super) const FANIN: usize = 8;
/// those of one tier (a tier spans a factor of [`FANIN`] in messages),
/// and only into a segment of at most this many messages: merging into,
/// or rewriting, one such segment takes a few milliseconds (messages of
/// 5 to 65 words, about 40 distinct), so no idle commit holds the writer
/// long. A user's history of n messages lies in about n / 2,000
/// segments, 7 at most in each smaller tier.
pub(super) const MAX_SEGMENT_DOCS: usize = 4096;

/// A user's row of `search_stats`: BM25's statistics of the live indexed
/// messages, and the number the next segment gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Stats {
    pub docs: u64,
    pub length: u64,
    pub next_segment: u64,
}

pub(super) fn stats(table: &impl ReadableTable<u64, (u64, u64, u64)>, user: u64) -> Result<Stats> {
    Ok(table.get(user)?.map_or(Stats::default(), |g| {
        let (docs, length, next_segment) = g.value();
        Stats {
            docs,
            length,
            next_segment,
        }
    }))
}

fn put_stats(tables: &mut WriteTables<'_>, user: u64, stats: Stats) -> Result<()> {
    tables
        .search_stats
        .insert(user, (stats.docs, stats.length, stats.next_segment))
}

/// The user's number, if the index has given one.
pub(super) fn user_number(tables: &mut WriteTables<'_>, user: &str) -> Result<Option<u64>> {
    Ok(tables.search_user_numbers.table()?.get(user)?.map(|g| g.value()))
}

/// The user's number, given now if the user has none: one past the
/// highest in use (a number freed by erasure is free of every key).
fn number_or_new(tables: &mut WriteTables<'_>, user: &str) -> Result<u64> {
    if let Some(number) = user_number(tables, user)? {
        return Ok(number);
    }
    let last = tables.search_stats.table()?.last()?.map(|(key, _)| key.value());
    let number = last.map_or(Ok(0), |last| {
        last.checked_add(1)
            .ok_or_else(|| Error::corrupt_record("search_stats", "no user number left"))
    })?;
    tables.search_user_numbers.insert(user, number)?;
    put_stats(tables, number, Stats::default())?;
    Ok(number)
}

/// The tombstones of a user: (session, seq) -> the segment number below
/// which the message's copies are removed.
pub(super) type Tombstones = HashMap<(u128, u64), u64>;

pub(super) fn tombstones(table: &impl ReadableTable<(u64, u128, u64), u64>, user: u64) -> Result<Tombstones> {
    let mut found = Tombstones::new();
    for entry in table.range((user, 0, 0)..=(user, u128::MAX, u64::MAX))? {
        let (key, value) = entry?;
        let (_, session, seq) = key.value();
        found.insert((session, seq), value.value());
    }
    Ok(found)
}

/// Whether the copy of `doc` in segment `segment` is removed.
pub(super) fn is_dead(tombstones: &Tombstones, doc: &Doc, segment: u64) -> bool {
    tombstones
        .get(&(doc.session, doc.seq))
        .is_some_and(|&below| segment < below)
}

/// Removes an indexed message of user `user` of `length` terms: a
/// tombstone (its copies in the segments written so far are dead), and
/// its share of the statistics.
pub(super) fn remove_indexed(
    tables: &mut WriteTables<'_>,
    user: u64,
    session: u128,
    seq: u64,
    length: u32,
) -> Result<()> {
    let mut stats = stats(tables.search_stats.table()?, user)?;
    stats.docs = stats.docs.saturating_sub(1);
    stats.length = stats.length.saturating_sub(u64::from(length));
    put_stats(tables, user, stats)?;
    tables
        .search_tombstones
        .insert((user, session, seq), stats.next_segment)
}

/// A segment being built: its messages in (session, seq) order, and each
/// term's postings.
#[derive(Default)]
struct Builder {
    docs: Vec<Doc>,
    postings: BTreeMap<String, Vec<Posting>>,
}

impl Builder {
    /// Writes the segment as the user's next one (nothing when it holds no
    /// message).
    fn write(self, tables: &mut WriteTables<'_>, user: u64, stats: &mut Stats) -> Result<()> {
        if self.docs.is_empty() {
            return Ok(());
        }
        let number = stats.next_segment;
        let header = segment::encode_header(user, number, &self.docs);
        tables.search_segments.insert((user, number), header.as_slice())?;
        for (term, postings) in &self.postings {
            let bytes = segment::encode_postings(user, number, term, postings);
            tables
                .search_terms
                .insert((user, number, term.as_str()), bytes.as_slice())?;
        }
        stats.next_segment = number
            .checked_add(1)
            .ok_or_else(|| Error::corrupt_record("search_stats", "no segment number left"))?;
        Ok(())
    }
}

/// What an indexing step did.
pub(super) struct Indexed {
    /// Pending messages taken.
    pub messages: usize,
    /// Whether some remain that the step could have taken.
    pub more: bool,
    /// Whether it left out users below its minimum.
    pub left_out: bool,
    /// The numbers of the users it wrote a segment for.
    pub users: Vec<u64>,
}

/// Pending entries an indexing step reads at most while it leaves out
/// users below its minimum (more when its limit is higher): a step under
/// load costs a bounded scan however many users wait.
const SCAN_LIMIT: usize = 4096;

/// Indexes pending messages: at most `limit`, and no more once their
/// contents reach `bytes`; one new segment for each user among them,
/// leaving out the users with fewer than `min_per_user` pending (those
/// the scan saw: a segment of a message or two would cost about what one
/// entry a term cost, and a search reads pending messages whole anyway).
pub(super) fn index_pending(
    tables: &mut WriteTables<'_>,
    limit: usize,
    bytes: usize,
    min_per_user: usize,
) -> Result<Indexed> {
    let mut taken: Vec<(String, u128, u64)> = Vec::new();
    let mut run: Vec<(String, u128, u64)> = Vec::new();
    let (mut scanned, mut left_out, mut stopped) = (0usize, false, false);
    for entry in tables.search_pending.table()?.range::<(&str, u128, u64)>(..)? {
        if taken.len() + run.len() >= limit || scanned >= SCAN_LIMIT.max(limit) {
            stopped = true;
            break;
        }
        scanned += 1;
        let (key, _) = entry?;
        let (user, session, seq) = key.value();
        if run.first().is_some_and(|(last, _, _)| last != user) {
            left_out |= take_run(&mut taken, &mut run, min_per_user);
        }
        run.push((user.to_owned(), session, seq));
    }
    left_out |= take_run(&mut taken, &mut run, min_per_user);
    taken.truncate(limit);
    let mut read = 0usize;
    let mut groups: Vec<(String, Vec<(Doc, Terms)>)> = Vec::new();
    let mut count = 0;
    for (user, session, seq) in &taken {
        if read >= bytes {
            break;
        }
        count += 1;
        let message = tables::message_record(tables.messages.table()?, *session, *seq)?.ok_or_else(|| {
            Error::corrupt_record("search_pending", "an entry of a message that is not there")
        })?;
        read += message.content.len();
        tables.search_pending.remove((user.as_str(), *session, *seq))?;
        let terms = Terms::of(&message.content);
        if terms.length == 0 {
            continue;
        }
        let doc = Doc {
            session: *session,
            seq: *seq,
            length: terms.length,
        };
        match groups.last_mut() {
            Some((last, docs)) if last == user => docs.push((doc, terms)),
            _ => groups.push((user.clone(), vec![(doc, terms)])),
        }
    }
    let mut users = Vec::with_capacity(groups.len());
    for (user, docs) in groups {
        let number = number_or_new(tables, &user)?;
        let mut stats = stats(tables.search_stats.table()?, number)?;
        let mut builder = Builder::default();
        for (place, (doc, terms)) in docs.into_iter().enumerate() {
            stats.docs += 1;
            stats.length += u64::from(doc.length);
            builder.docs.push(doc);
            for (term, frequency) in terms.counts {
                builder
                    .postings
                    .entry(term)
                    .or_default()
                    .push((place as u32, frequency));
            }
        }
        builder.write(tables, number, &mut stats)?;
        put_stats(tables, number, stats)?;
        users.push(number);
    }
    let more = count < taken.len() || (stopped && count > 0);
    Ok(Indexed {
        messages: count,
        more,
        left_out,
        users,
    })
}

/// Moves a user's run of pending entries into `taken` when it holds at
/// least `min_per_user`; whether it was left out.
fn take_run(
    taken: &mut Vec<(String, u128, u64)>,
    run: &mut Vec<(String, u128, u64)>,
    min_per_user: usize,
) -> bool {
    let left_out = !run.is_empty() && run.len() < min_per_user;
    if left_out {
        run.clear();
    } else {
        taken.append(run);
    }
    left_out
}

/// The segments of a user, each as `read` gives it from its number and
/// header.
fn segments<T>(
    tables: &mut WriteTables<'_>,
    user: u64,
    read: impl Fn(u64, u64, &[u8]) -> Result<T>,
) -> Result<Vec<(u64, T)>> {
    let mut found = Vec::new();
    for entry in tables
        .search_segments
        .table()?
        .range((user, 0)..=(user, u64::MAX))?
    {
        let (key, value) = entry?;
        let number = key.value().1;
        found.push((number, read(user, number, value.value())?));
    }
    Ok(found)
}

/// The tier of a segment of `docs` messages: segments of one tier merge.
fn tier(docs: usize) -> u32 {
    docs.max(1).ilog2() / FANIN.ilog2()
}

/// One piece of tidying of a user's segments, the first due of: rewriting
/// a segment that holds removed messages without them; dropping the
/// tombstones once no segment holds a removed copy; merging [`FANIN`]
/// segments of the lowest tier that has as many, when the result holds
/// at most [`MAX_SEGMENT_DOCS`] messages. Whether it did something
/// (another piece may be due).
pub(super) fn tidy(tables: &mut WriteTables<'_>, user: u64) -> Result<bool> {
    let tombstones = tombstones(tables.search_tombstones.table()?, user)?;
    if !tombstones.is_empty() {
        let all = segments(tables, user, segment::decode_header)?;
        let holding = all
            .iter()
            .position(|(number, docs)| docs.iter().any(|doc| is_dead(&tombstones, doc, *number)));
        match holding {
            Some(index) => merge(tables, user, &all[index..=index], &tombstones)?,
            None => {
                for (session, seq) in tombstones.keys() {
                    tables.search_tombstones.remove((user, *session, *seq))?;
                }
            }
        }
        return Ok(true);
    }
    let mut tiers: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
    for (number, docs) in segments(tables, user, segment::header_docs)? {
        tiers.entry(tier(docs)).or_default().push((number, docs));
    }
    for members in tiers.values_mut() {
        if members.len() < FANIN {
            continue;
        }
        members.sort_by_key(|&(_, docs)| docs);
        let chosen = &members[..FANIN];
        if chosen.iter().map(|&(_, docs)| docs).sum::<usize>() > MAX_SEGMENT_DOCS {
            break;
        }
        let mut inputs = Vec::with_capacity(FANIN);
        for &(number, _) in chosen {
            let value = tables.search_segments.table()?.get((user, number))?;
            let value = value.ok_or_else(|| Error::corrupt_record("search_segments", "a segment gone"))?;
            inputs.push((number, segment::decode_header(user, number, value.value())?));
        }
        merge(tables, user, &inputs, &tombstones)?;
        return Ok(true);
    }
    Ok(false)
}

/// Replaces segments `inputs` of a user by one new segment holding their
/// live messages (none when all are removed).
fn merge(
    tables: &mut WriteTables<'_>,
    user: u64,
    inputs: &[(u64, Vec<Doc>)],
    tombstones: &Tombstones,
) -> Result<()> {
    let mut live: Vec<(Doc, usize, usize)> = Vec::new();
    for (input, (number, docs)) in inputs.iter().enumerate() {
        for (place, doc) in docs.iter().enumerate() {
            if !is_dead(tombstones, doc, *number) {
                live.push((*doc, input, place));
            }
        }
    }
    live.sort_by_key(|(doc, _, _)| (doc.session, doc.seq));
    if live
        .windows(2)
        .any(|pair| (pair[0].0.session, pair[0].0.seq) == (pair[1].0.session, pair[1].0.seq))
    {
        return Err(Error::corrupt_record(
            "search_segments",
            format!("a message live in two segments of user number {user}"),
        ));
    }
    let mut places: Vec<Vec<Option<u32>>> = inputs.iter().map(|(_, docs)| vec![None; docs.len()]).collect();
    for (new, (_, input, place)) in live.iter().enumerate() {
        places[*input][*place] = Some(new as u32);
    }
    let mut builder = Builder {
        docs: live.iter().map(|(doc, _, _)| *doc).collect(),
        postings: BTreeMap::new(),
    };
    for ((number, docs), places) in inputs.iter().zip(&places) {
        let mut terms = Vec::new();
        for entry in tables.search_terms.table()?.range((user, *number, "")..)? {
            let (key, value) = entry?;
            let (owner, segment, term) = key.value();
            if (owner, segment) != (user, *number) {
                break;
            }
            let postings = builder.postings.entry(term.to_owned()).or_default();
            segment::decode_postings(
                user,
                *number,
                term,
                value.value(),
                docs.len(),
                |(place, frequency)| {
                    if let Some(new) = places[place as usize] {
                        postings.push((new, frequency));
                    }
                },
            )?;
            terms.push(term.to_owned());
        }
        for term in &terms {
            tables.search_terms.remove((user, *number, term.as_str()))?;
        }
        tables.search_segments.remove((user, *number))?;
    }
    builder.postings.retain(|_, postings| !postings.is_empty());
    for postings in builder.postings.values_mut() {
        postings.sort_unstable();
    }
    let mut stats = stats(tables.search_stats.table()?, user)?;
    builder.write(tables, user, &mut stats)?;
    put_stats(tables, user, stats)
}

/// Removes every entry of `user` from the index: pending ones, segments,
/// tombstones, statistics and number (the erasure of a user, whose
/// messages go in the same commit).
pub(super) fn erase(tables: &mut WriteTables<'_>, user: &str) -> Result<()> {
    let mut pending = Vec::new();
    for entry in tables
        .search_pending
        .table()?
        .range((user, 0, 0)..=(user, u128::MAX, u64::MAX))?
    {
        let (_, session, seq) = entry?.0.value();
        pending.push((session, seq));
    }
    for (session, seq) in pending {
        tables.search_pending.remove((user, session, seq))?;
    }
    let Some(number) = user_number(tables, user)? else {
        return Ok(());
    };
    let mut terms = Vec::new();
    for entry in tables.search_terms.table()?.range((number, 0, "")..)? {
        let (key, _) = entry?;
        let (owner, segment, term) = key.value();
        if owner != number {
            break;
        }
        terms.push((segment, term.to_owned()));
    }
    for (segment, term) in &terms {
        tables.search_terms.remove((number, *segment, term.as_str()))?;
    }
    let mut segments = Vec::new();
    for entry in tables
        .search_segments
        .table()?
        .range((number, 0)..=(number, u64::MAX))?
    {
        segments.push(entry?.0.value().1);
    }
    for segment in segments {
        tables.search_segments.remove((number, segment))?;
    }
    for (session, seq) in tombstones(tables.search_tombstones.table()?, number)?.into_keys() {
        tables.search_tombstones.remove((number, session, seq))?;
    }
    tables.search_stats.remove(number)?;
    tables.search_user_numbers.remove(user)?;
    Ok(())
}
