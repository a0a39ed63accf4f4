//! The message cache: the decoded messages of sessions read lately, shared
//! (`Arc<Message>`) with every caller, so that reading a session again costs
//! neither decompression nor copying.
//!
//! An entry holds the last messages of one session (seqs `start..` up to
//! its message count) as they are at one revision of its record
//! ([`SessionRecord::revision`](crate::engine::redb::encoding::SessionRecord)). A reader
//! serves it only when the record it reads in its own read transaction has
//! that revision: a session's messages at one revision never change, and
//! its revision grows with every write while it exists.
//!
//! A session that is deleted and comes back (the importer can load one with
//! the same id) starts over at revision 0. Its old entry is removed after
//! the deleting commit, and a reader that began before that commit cannot
//! add it back: the [`Ticket`] it took before beginning no longer matches.
//!
//! The writer keeps entries current: after a commit it applies what the
//! commit did to each session's messages ([`Edit`]) to the entry of the
//! revision written over, so that a chatbot's read after its own append is
//! a hit too. Anything it cannot describe drops the entry.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Result;
use crate::model::{ExtraValue, Message, Role, StoreCounters};
use crate::timestamp::TimestampForm;

/// What a write did to a session's messages, from the revision of its record
/// it wrote over to the next.
pub(crate) enum Edit {
    /// Nothing: the session's own fields or context changed.
    Kept,
    /// These were appended, in seq order.
    Appended(Vec<Arc<Message>>),
    /// The last one was removed.
    Popped,
    /// Not said: the entry is dropped.
    Unknown,
    /// The session was deleted.
    Removed,
}

/// One write of a session record.
struct Note {
    session: u128,
    /// The revision written over; `None` for a new session.
    from: Option<u64>,
    edit: Edit,
}

/// The session writes of one transaction, in order, for
/// [`MessageCache::apply`] once it has committed.
#[derive(Default)]
pub(crate) struct Notes(Vec<Note>);

impl Notes {
    /// `session`'s record was written over revision `from` (`None`: created).
    pub fn written(&mut self, session: u128, from: Option<u64>) {
        self.0.push(Note {
            session,
            from,
            edit: Edit::Unknown,
        });
    }

    /// `session` was deleted.
    pub fn removed(&mut self, session: u128) {
        self.0.push(Note {
            session,
            from: None,
            edit: Edit::Removed,
        });
    }

    /// Says what the last write, which must be of `session`, did to its
    /// messages. Ignored otherwise (the entry is then dropped).
    pub fn describe_last(&mut self, session: u128, edit: Edit) {
        if let Some(last) = self.0.last_mut() {
            if last.session == session && matches!(last.edit, Edit::Unknown) {
                last.edit = edit;
            }
        }
    }
}

/// Taken before a read transaction begins; an entry read in it is kept
/// only if no session was deleted since (see the module's comment).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    removals: u64,
}

/// Decoded messages of sessions read lately, within a budget of bytes.
pub(crate) struct MessageCache {
    budget: usize,
    state: Mutex<State>,
    /// Sessions removed from the cache by deletion so far; changed only
    /// with `state` locked.
    removals: AtomicU64,
    /// Reads served wholly from the cache, and reads that read the table.
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct State {
    entries: HashMap<u128, Entry>,
    /// The bytes of every entry.
    bytes: usize,
    /// Ticks at each use: an entry's last use orders the eviction.
    clock: u64,
}

struct Entry {
    revision: u64,
    /// The seq of `messages[0]`: the entry holds `start..` up to the
    /// session's message count at `revision`.
    start: u64,
    messages: Vec<Arc<Message>>,
    bytes: usize,
    used: u64,
}

impl Entry {
    fn end(&self) -> u64 {
        self.start + self.messages.len() as u64
    }

    /// Applies `edit`, made over this entry's revision; false when the
    /// entry cannot follow it and must go.
    fn follow(&mut self, edit: Edit) -> bool {
        match edit {
            Edit::Kept => {}
            Edit::Appended(messages) => {
                for message in messages {
                    if message.seq != self.end() {
                        return false;
                    }
                    self.bytes += message_bytes(&message);
                    self.messages.push(message);
                }
            }
            Edit::Popped => match self.messages.pop() {
                Some(message) if !self.messages.is_empty() => self.bytes -= message_bytes(&message),
                _ => return false,
            },
            Edit::Unknown | Edit::Removed => return false,
        }
        self.revision += 1;
        true
    }
}

impl MessageCache {
    /// A cache of at most `budget` bytes of messages; 0 disables it.
    pub fn new(budget: usize) -> Self {
        MessageCache {
            budget,
            state: Mutex::new(State::default()),
            removals: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Fills in the hits and misses of `counters`.
    pub fn count(&self, counters: &mut StoreCounters) {
        counters.message_cache_hits = self.hits.load(Ordering::Relaxed);
        counters.message_cache_misses = self.misses.load(Ordering::Relaxed);
    }

    /// Take before beginning the read transaction whose messages may be
    /// kept.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            removals: self.removals.load(Ordering::SeqCst),
        }
    }

    /// The messages `seqs` of `session` at `revision`, when it holds
    /// `count` messages. Those the cache lacks are read with `read`, and
    /// kept when they run to the session's last message.
    pub fn messages(
        &self,
        ticket: Ticket,
        session: u128,
        revision: u64,
        count: u64,
        seqs: Range<u64>,
        read: impl FnOnce(Range<u64>) -> Result<Vec<Message>>,
    ) -> Result<Vec<Arc<Message>>> {
        let shared = |messages: Vec<Message>| messages.into_iter().map(Arc::new).collect::<Vec<_>>();
        if seqs.is_empty() {
            return read(seqs).map(shared);
        }
        if self.budget == 0 {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return read(seqs).map(shared);
        }
        let (cached, missing) = self.lookup(session, revision, count, seqs.clone());
        if missing.is_empty() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(cached);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut messages = shared(read(missing.clone())?);
        // Fewer than the record counts (a damaged file): served as read,
        // never kept.
        let complete = messages.len() as u64 == missing.end - missing.start;
        messages.extend(cached);
        if complete && seqs.end == count {
            self.keep(ticket, session, revision, seqs.start, &messages);
        }
        Ok(messages)
    }

    /// The messages `seqs` of `session` at `revision`, when it holds
    /// `count` messages, if the cache holds them all (a hit); else `None`,
    /// counting nothing: the caller reads them with [`Self::messages`].
    #[cfg(feature = "tokio")]
    pub fn held(
        &self,
        session: u128,
        revision: u64,
        count: u64,
        seqs: Range<u64>,
    ) -> Option<Vec<Arc<Message>>> {
        if seqs.is_empty() {
            return Some(Vec::new());
        }
        let (cached, missing) = self.lookup(session, revision, count, seqs);
        if !missing.is_empty() {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(cached)
    }

    /// `f` of the content of the first user message of `session` at
    /// `revision`, when it holds `count` messages (`None`: it has none),
    /// if the cache holds the session's messages from the first up to
    /// that one; else `None`. Counts nothing: a listing's title, not a read.
    pub fn first_user_message<R>(
        &self,
        session: u128,
        revision: u64,
        count: u64,
        f: impl FnOnce(Option<&str>) -> R,
    ) -> Option<R> {
        let state = self.state();
        let entry = state.entries.get(&session)?;
        if entry.revision != revision || entry.end() != count || entry.start != 0 {
            return None;
        }
        let first = entry.messages.iter().find(|message| message.role == Role::User);
        Some(f(first.map(|message| message.content.as_str())))
    }

    /// The end of `seqs` the cache holds (`session` at `revision`, of
    /// `count` messages), and the seqs before them it lacks.
    fn lookup(
        &self,
        session: u128,
        revision: u64,
        count: u64,
        seqs: Range<u64>,
    ) -> (Vec<Arc<Message>>, Range<u64>) {
        let mut cached = Vec::new();
        let mut missing = seqs.clone();
        if self.budget == 0 {
            return (cached, missing);
        }
        let mut state = self.state();
        let tick = state.tick();
        if let Some(entry) = state.entries.get_mut(&session) {
            if entry.revision == revision && entry.end() == count && seqs.end <= count {
                entry.used = tick;
                let first = seqs.start.max(entry.start);
                if first < seqs.end {
                    let at = (first - entry.start) as usize..(seqs.end - entry.start) as usize;
                    cached.extend_from_slice(&entry.messages[at]);
                    missing.end = first;
                }
            }
        }
        (cached, missing)
    }

    /// Keeps `messages` (seqs `start..`, the last of the session at
    /// `revision`) unless a deletion happened since `ticket`, or the cache
    /// holds as much or more of a later revision.
    fn keep(&self, ticket: Ticket, session: u128, revision: u64, start: u64, messages: &[Arc<Message>]) {
        let bytes: usize = messages.iter().map(|m| message_bytes(m)).sum();
        if bytes > self.budget {
            return;
        }
        let mut state = self.state();
        if ticket.removals != self.removals.load(Ordering::SeqCst) {
            return;
        }
        if let Some(entry) = state.entries.get(&session) {
            if entry.revision > revision || (entry.revision == revision && entry.start <= start) {
                return;
            }
        }
        let used = state.tick();
        let entry = Entry {
            revision,
            start,
            messages: messages.to_vec(),
            bytes,
            used,
        };
        state.bytes += bytes;
        if let Some(old) = state.entries.insert(session, entry) {
            state.bytes -= old.bytes;
        }
        state.evict(self.budget);
    }

    /// Brings the entries up to date with a transaction that has committed.
    pub fn apply(&self, notes: Notes) {
        if self.budget == 0 || notes.0.is_empty() {
            return;
        }
        let mut state = self.state();
        for note in notes.0 {
            if let Edit::Removed = note.edit {
                self.removals.fetch_add(1, Ordering::SeqCst);
                state.remove(note.session);
                continue;
            }
            let Some(entry) = state.entries.get_mut(&note.session) else {
                continue;
            };
            let keep = match note.from {
                // Read after this commit by a reader quicker than us.
                Some(from) if entry.revision > from => true,
                Some(from) if entry.revision == from => {
                    let before = entry.bytes;
                    let kept = entry.follow(note.edit);
                    let after = entry.bytes;
                    state.bytes = state.bytes + after - before;
                    kept
                }
                _ => false,
            };
            if !keep {
                state.remove(note.session);
            }
        }
        state.evict(self.budget);
    }

    /// Forgets everything (after maintenance, which may rewrite the file).
    pub fn clear(&self) {
        let mut state = self.state();
        self.removals.fetch_add(1, Ordering::SeqCst);
        state.entries.clear();
        state.bytes = 0;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; if something did, the
        // counts could be off: start over empty.
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            *state = State::default();
            self.state.clear_poison();
            state
        })
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.state().bytes
    }
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, session: u128) {
        if let Some(entry) = self.entries.remove(&session) {
            self.bytes -= entry.bytes;
        }
    }

    /// Over `budget`, drops the entries used least lately until an eighth of
    /// it is free (so that eviction runs once per many insertions).
    fn evict(&mut self, budget: usize) {
        if self.bytes <= budget {
            return;
        }
        let target = budget - budget / 8;
        let mut by_use: Vec<(u64, u128)> = self.entries.iter().map(|(k, e)| (e.used, *k)).collect();
        by_use.sort_unstable();
        for (_, session) in by_use {
            if self.bytes <= target {
                break;
            }
            self.remove(session);
        }
    }
}

/// What a message costs the cache, in bytes: its own size, its shared
/// header and slot, and the text it owns.
fn message_bytes(message: &Message) -> usize {
    let json = |j: &Option<crate::json::JsonText>| j.as_ref().map_or(0, |j| j.as_str().len());
    let extra: usize = message
        .extra
        .iter()
        .map(|(name, value)| {
            64 + name.len()
                + match value {
                    ExtraValue::Text(text) => text.len(),
                    ExtraValue::Blob(bytes) => bytes.len(),
                    ExtraValue::Null | ExtraValue::Integer(_) | ExtraValue::Real(_) => 0,
                }
        })
        .sum();
    let verbatim = match message.timestamp.form() {
        TimestampForm::Verbatim(text) => text.len(),
        TimestampForm::Naive | TimestampForm::Utc => 0,
    };
    std::mem::size_of::<Message>()
        + 3 * std::mem::size_of::<usize>()
        + message.content.len()
        + json(&message.query_plan)
        + json(&message.candidate_set)
        + verbatim
        + extra
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::model::Role;
    use crate::timestamp::Timestamp;

    fn message(seq: u64, text: &str) -> Message {
        Message {
            id: 100 + seq,
            seq,
            role: Role::User,
            content: text.to_owned(),
            query_plan: None,
            candidate_set: None,
            timestamp: Timestamp::now(),
            extra: Default::default(),
            tokens: None,
        }
    }

    /// Session 1's messages, as the table holds them at every revision of
    /// the tests: `m0`, `m1`, ...
    fn table(seqs: Range<u64>) -> Vec<Message> {
        seqs.map(|seq| message(seq, &format!("m{seq}"))).collect()
    }

    /// Reads through the cache, counting the messages read from the table.
    fn read(
        cache: &MessageCache,
        revision: u64,
        count: u64,
        seqs: Range<u64>,
        from_table: &Cell<u64>,
    ) -> Vec<u64> {
        let ticket = cache.ticket();
        cache
            .messages(ticket, 1, revision, count, seqs, |seqs| {
                from_table.set(from_table.get() + seqs.end - seqs.start);
                Ok(table(seqs))
            })
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect()
    }

    #[test]
    fn a_second_read_of_the_same_revision_is_a_hit_and_another_revision_a_miss() {
        let cache = MessageCache::new(1 << 20);
        let from_table = Cell::new(0);
        assert_eq!(read(&cache, 3, 4, 0..4, &from_table), [0, 1, 2, 3]);
        assert_eq!(from_table.get(), 4);
        assert_eq!(read(&cache, 3, 4, 0..4, &from_table), [0, 1, 2, 3]);
        assert_eq!(read(&cache, 3, 4, 1..3, &from_table), [1, 2]);
        assert_eq!(from_table.get(), 4, "hits read nothing");
        // Seqs past the count are not the cache's to answer (nor a panic).
        assert_eq!(read(&cache, 3, 4, 2..6, &from_table), [2, 3, 4, 5]);
        from_table.set(4);
        assert_eq!(read(&cache, 4, 4, 0..4, &from_table), [0, 1, 2, 3]);
        assert_eq!(from_table.get(), 8, "another revision is read again");
        // A read that does not run to the end is served but not kept.
        assert_eq!(read(&cache, 5, 4, 0..2, &from_table), [0, 1]);
        assert_eq!(read(&cache, 5, 4, 0..2, &from_table), [0, 1]);
        assert_eq!(from_table.get(), 12);
    }

    #[test]
    fn a_longer_read_reads_only_what_the_entry_lacks() {
        let cache = MessageCache::new(1 << 20);
        let from_table = Cell::new(0);
        assert_eq!(read(&cache, 0, 10, 7..10, &from_table), [7, 8, 9]);
        assert_eq!(
            read(&cache, 0, 10, 0..10, &from_table),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(from_table.get(), 3 + 7);
        assert_eq!(read(&cache, 0, 10, 0..10, &from_table).len(), 10);
        assert_eq!(from_table.get(), 10);
    }

    #[test]
    fn the_writer_carries_entries_to_the_next_revision() {
        let cache = MessageCache::new(1 << 20);
        let from_table = Cell::new(0);
        read(&cache, 0, 3, 0..3, &from_table);
        let mut notes = Notes::default();
        notes.written(1, Some(0));
        notes.describe_last(1, Edit::Appended(vec![Arc::new(message(3, "m3"))]));
        notes.written(1, Some(1));
        notes.describe_last(1, Edit::Kept);
        notes.written(1, Some(2));
        notes.describe_last(1, Edit::Appended(vec![Arc::new(message(4, "m4"))]));
        notes.written(1, Some(3));
        notes.describe_last(1, Edit::Popped);
        cache.apply(notes);
        assert_eq!(read(&cache, 4, 4, 0..4, &from_table), [0, 1, 2, 3]);
        assert_eq!(
            from_table.get(),
            3,
            "revision 4 served from the entry of revision 0"
        );

        // A write not described drops the entry.
        let mut notes = Notes::default();
        notes.written(1, Some(4));
        cache.apply(notes);
        assert_eq!(cache.bytes(), 0);
        // So does an append that does not follow the entry's last message.
        read(&cache, 5, 4, 0..4, &from_table);
        let mut notes = Notes::default();
        notes.written(1, Some(5));
        notes.describe_last(1, Edit::Appended(vec![Arc::new(message(7, "m7"))]));
        cache.apply(notes);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_deletion_removes_the_entry_and_stops_readers_that_began_before_it() {
        let cache = MessageCache::new(1 << 20);
        let from_table = Cell::new(0);
        read(&cache, 0, 2, 0..2, &from_table);
        let shared = cache
            .messages(cache.ticket(), 1, 0, 2, 0..2, |_| unreachable!("a hit"))
            .unwrap();
        assert_eq!(Arc::strong_count(&shared[0]), 2, "the cache holds it");
        let before = cache.ticket();
        let mut notes = Notes::default();
        notes.removed(1);
        cache.apply(notes);
        assert_eq!(
            Arc::strong_count(&shared[0]),
            1,
            "erased content is gone from the cache"
        );
        assert_eq!(cache.bytes(), 0);
        // A reader that began before the deletion does not keep what it read.
        cache
            .messages(before, 1, 0, 2, 0..2, |seqs| Ok(table(seqs)))
            .unwrap();
        assert_eq!(cache.bytes(), 0);
        read(&cache, 0, 2, 0..2, &from_table);
        assert!(cache.bytes() > 0);
    }

    /// `held` and `first_user_message` answer only from an entry of the
    /// session at the revision and count asked; `held` counts a hit, the
    /// title nothing.
    #[test]
    #[cfg(feature = "tokio")]
    fn held_messages_and_the_first_user_message_come_only_from_an_exact_entry() {
        let cache = MessageCache::new(1 << 20);
        let fill = |session: u128, seqs: Range<u64>| {
            cache
                .messages(cache.ticket(), session, 3, 4, seqs, |seqs| {
                    Ok(seqs
                        .map(|seq| Message {
                            role: if seq == 0 { Role::Assistant } else { Role::User },
                            ..message(seq, &format!("m{seq}"))
                        })
                        .collect())
                })
                .unwrap()
        };
        fill(1, 0..4);
        fill(2, 2..4);
        let seqs = |messages: Option<Vec<Arc<Message>>>| {
            messages.map(|m| m.iter().map(|m| m.seq).collect::<Vec<_>>())
        };
        let mut counters = StoreCounters::default();
        cache.count(&mut counters);
        let hits = counters.message_cache_hits;
        assert_eq!(seqs(cache.held(1, 3, 4, 1..4)), Some(vec![1, 2, 3]));
        assert_eq!(seqs(cache.held(2, 3, 4, 2..4)), Some(vec![2, 3]));
        assert_eq!(seqs(cache.held(1, 3, 4, 4..4)), Some(vec![]));
        assert_eq!(seqs(cache.held(2, 3, 4, 1..4)), None, "seq 1 is not held");
        assert_eq!(seqs(cache.held(1, 4, 4, 0..4)), None, "another revision");
        assert_eq!(seqs(cache.held(1, 3, 5, 0..4)), None, "another count");
        assert_eq!(seqs(cache.held(9, 3, 4, 0..4)), None, "another session");
        cache.count(&mut counters);
        assert_eq!(counters.message_cache_hits - hits, 2, "the two non-empty hits");
        let first =
            |session, revision| cache.first_user_message(session, revision, 4, |c| c.map(str::to_owned));
        assert_eq!(first(1, 3), Some(Some("m1".to_owned())), "the first user message");
        assert_eq!(first(1, 2), None, "another revision");
        assert_eq!(first(2, 3), None, "the entry lacks the first messages");
        cache.count(&mut counters);
        assert_eq!(counters.message_cache_hits - hits, 2, "titles count nothing");
    }

    #[test]
    fn eviction_keeps_the_budget_and_drops_the_least_used_first() {
        let one = message_bytes(&message(0, "m0")) * 4;
        let cache = MessageCache::new(one * 3 + one / 2);
        let keep = |session: u128| {
            cache
                .messages(cache.ticket(), session, 0, 4, 0..4, |seqs| Ok(table(seqs)))
                .unwrap()
        };
        for session in 1..=3 {
            keep(session);
        }
        keep(1);
        keep(4);
        assert!(
            cache.bytes() <= cache.budget,
            "{} of {}",
            cache.bytes(),
            cache.budget
        );
        let state = cache.state();
        let mut held: Vec<u128> = state.entries.keys().copied().collect();
        held.sort_unstable();
        assert_eq!(held, [1, 3, 4], "2 was used least lately (1 read again after it)");
        drop(state);
        // An entry larger than the budget is not kept.
        cache
            .messages(cache.ticket(), 5, 0, 20, 0..20, |seqs| Ok(table(seqs)))
            .unwrap();
        assert!(!cache.state().entries.contains_key(&5));
        // A budget of 0 keeps nothing.
        let off = MessageCache::new(0);
        off.messages(off.ticket(), 1, 0, 4, 0..4, |seqs| Ok(table(seqs)))
            .unwrap();
        assert_eq!(off.bytes(), 0);
    }
}
