//! Full-text search over a user's messages: what a term is, the checks of
//! a search's arguments, BM25, the order of hits, cursors and snippets.
//! Every engine finds messages its own way and ranks them with these.
//!
//! Terms are the maximal runs of alphanumeric characters, lowercased; a run
//! longer than [`MAX_TERM_BYTES`] is not a term (it is neither indexed nor
//! searched). A message is found when it holds at least one of the query's
//! terms, and scores the sum of BM25's weight of each distinct query term
//! it holds. The statistics BM25 weighs by (how many messages, their
//! average length in terms, how many hold a term) count the messages that
//! hold at least one term in the user's stored sessions, expired ones
//! included until they are purged; hits come from active sessions only (a
//! search finds what a read can read).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::{Error, Result};

/// Longer runs of alphanumeric characters are not terms.
pub const MAX_TERM_BYTES: usize = 64;
/// A longer query is refused.
pub const MAX_QUERY_BYTES: usize = 1024;
/// A page holds at most this many hits.
pub const MAX_LIMIT: usize = 1000;

/// BM25's term-frequency saturation.
pub(crate) const K1: f64 = 1.2;
/// BM25's length normalisation.
pub(crate) const B: f64 = 0.75;
/// Characters of a snippet, the marks of cuts left out.
pub(crate) const SNIPPET_CHARS: usize = 120;
/// Characters a snippet shows before the first term found.
pub(crate) const SNIPPET_BEFORE: usize = 30;

/// The terms of `text`, each with the byte offset it starts at, in order.
pub(crate) fn tokens(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut start = None;
    let mut chars = text.char_indices().chain(std::iter::once((text.len(), ' ')));
    std::iter::from_fn(move || loop {
        let (at, c) = chars.next()?;
        match (start, c.is_alphanumeric()) {
            (None, true) => start = Some(at),
            (Some(from), false) => {
                start = None;
                if at - from <= MAX_TERM_BYTES {
                    return Some((from, text[from..at].to_lowercase()));
                }
            }
            _ => {}
        }
    })
}

/// The terms of a message: each with its frequency, and its length in
/// terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Terms {
    /// Term -> how many times the message holds it.
    pub counts: BTreeMap<String, u32>,
    /// How many terms the message holds, repeats included.
    pub length: u32,
}

impl Terms {
    pub(crate) fn of(content: &str) -> Self {
        let mut terms = Terms::default();
        for (_, term) in tokens(content) {
            *terms.counts.entry(term).or_insert(0) += 1;
            terms.length = terms.length.saturating_add(1);
        }
        terms
    }
}

/// Checks a search's arguments; the query's distinct terms, sorted.
/// Refused ([`Error::InvalidInput`]): `limit` 0 or above [`MAX_LIMIT`], a
/// query longer than [`MAX_QUERY_BYTES`] or holding no term.
pub(crate) fn check(query: &str, limit: usize) -> Result<Vec<String>> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::invalid(
            "limit",
            format!("{limit} hits a page: a page holds 1 to {MAX_LIMIT}"),
        ));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(Error::invalid(
            "query",
            format!("{} bytes: a query holds at most {MAX_QUERY_BYTES}", query.len()),
        ));
    }
    let mut terms: Vec<String> = tokens(query).map(|(_, term)| term).collect();
    terms.sort();
    terms.dedup();
    if terms.is_empty() {
        return Err(Error::invalid(
            "query",
            format!("{query:?} holds no word to search for"),
        ));
    }
    Ok(terms)
}

/// BM25 over one user's messages: `docs` messages holding at least one
/// term, `total_length` terms in them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bm25 {
    docs: u64,
    average: f64,
}

impl Bm25 {
    pub(crate) fn new(docs: u64, total_length: u64) -> Self {
        Bm25 {
            docs,
            average: total_length as f64 / docs.max(1) as f64,
        }
    }

    /// The weight of a term `holding` of the messages hold.
    pub(crate) fn idf(&self, holding: u64) -> f64 {
        let (n, df) = (self.docs as f64, holding as f64);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// What a term of weight `idf`, held `frequency` times by a message of
    /// `length` terms, adds to the message's score.
    pub(crate) fn term_score(&self, idf: f64, frequency: u32, length: u32) -> f64 {
        let tf = f64::from(frequency);
        let norm = K1 * (1.0 - B + B * f64::from(length) / self.average.max(f64::MIN_POSITIVE));
        idf * tf * (K1 + 1.0) / (tf + norm)
    }
}

/// One message found by a search, before it is read: its score and place.
/// Hits are ordered by [`Scored::ranking`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored {
    pub score: f64,
    pub session: u128,
    pub seq: u64,
}

impl Scored {
    /// The order of hits: score, best first, then session and seq.
    pub(crate) fn ranking(&self, other: &Scored) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.session.cmp(&other.session))
            .then(self.seq.cmp(&other.seq))
    }

    /// Whether it comes after `cursor` (it belongs to a later page).
    pub(crate) fn is_after(&self, cursor: Option<&SearchCursor>) -> bool {
        cursor.is_none_or(|cursor| cursor.0.ranking(self).is_lt())
    }
}

/// BM25's statistics and the query terms' postings over one user's
/// messages, gathered from wherever an engine keeps them, then scored.
#[derive(Debug)]
pub(crate) struct Tally<'q> {
    terms: &'q [String],
    docs: u64,
    total_length: u64,
    /// Per query term, how many messages hold it.
    holding: Vec<u64>,
    /// (session, seq) -> the message's postings of query terms.
    found: BTreeMap<(u128, u64), Found>,
}

/// A message's length and the query terms it holds, as (index in the
/// query's terms, frequency).
#[derive(Debug)]
struct Found {
    length: u32,
    postings: Vec<(usize, u32)>,
}

impl<'q> Tally<'q> {
    /// An empty tally for the query's `terms` (as [`check`] gives them).
    pub(crate) fn new(terms: &'q [String]) -> Self {
        Tally {
            terms,
            docs: 0,
            total_length: 0,
            holding: vec![0; terms.len()],
            found: BTreeMap::new(),
        }
    }

    /// Counts `docs` messages of `total_length` terms in the statistics
    /// (an index's stored counts), their postings added apart.
    pub(crate) fn count(&mut self, docs: u64, total_length: u64) {
        self.docs += docs;
        self.total_length += total_length;
    }

    /// The message at (session, seq), of `length` terms, holds query term
    /// `term` (its index in the query's terms) `frequency` times.
    pub(crate) fn posting(&mut self, term: usize, session: u128, seq: u64, frequency: u32, length: u32) {
        self.holding[term] += 1;
        let found = self.found.entry((session, seq)).or_insert(Found {
            length,
            postings: Vec::new(),
        });
        found.postings.push((term, frequency));
    }

    /// Counts a message read whole: in the statistics, and its postings.
    pub(crate) fn message(&mut self, session: u128, seq: u64, terms: &Terms) {
        if terms.length == 0 {
            return;
        }
        self.count(1, u64::from(terms.length));
        for (index, term) in self.terms.iter().enumerate() {
            if let Some(&frequency) = terms.counts.get(term) {
                self.posting(index, session, seq, frequency, terms.length);
            }
        }
    }

    /// The messages holding a query term, scored, after `cursor`, in the
    /// order of hits.
    pub(crate) fn ranked(self, cursor: Option<&SearchCursor>) -> Vec<Scored> {
        let bm25 = Bm25::new(self.docs, self.total_length);
        let idf: Vec<f64> = self.holding.iter().map(|&df| bm25.idf(df)).collect();
        let scored = self
            .found
            .into_iter()
            .map(|((session, seq), found)| Scored {
                score: found
                    .postings
                    .iter()
                    .map(|&(term, frequency)| bm25.term_score(idf[term], frequency, found.length))
                    .sum(),
                session,
                seq,
            })
            .collect();
        ranked(scored, cursor)
    }
}

/// The page of at most `limit` hits from `ranked` (in the order of hits):
/// `read` reads each, `None` when it is no hit (its session is not active).
pub(crate) fn page(
    ranked: Vec<Scored>,
    limit: usize,
    mut read: impl FnMut(Scored) -> Result<Option<SearchHit>>,
) -> Result<SearchPage> {
    let mut hits: Vec<SearchHit> = Vec::with_capacity(limit.min(ranked.len()));
    for candidate in ranked {
        let Some(hit) = read(candidate)? else {
            continue;
        };
        if hits.len() == limit {
            return Ok(SearchPage {
                next: hits.last().map(SearchHit::cursor),
                hits,
            });
        }
        hits.push(hit);
    }
    Ok(SearchPage { hits, next: None })
}

/// Keeps the candidates after `cursor`, in the order of hits.
pub(crate) fn ranked(mut candidates: Vec<Scored>, cursor: Option<&SearchCursor>) -> Vec<Scored> {
    candidates.retain(|hit| hit.is_after(cursor));
    candidates.sort_by(Scored::ranking);
    candidates
}

/// Up to [`SNIPPET_CHARS`] characters of `content` from a little before the
/// first of `terms` (sorted) it holds; `…` marks a cut; control characters
/// (line breaks, tabs) read as spaces.
pub(crate) fn snippet(content: &str, terms: &[String]) -> String {
    let first = tokens(content)
        .find(|(_, term)| terms.binary_search(term).is_ok())
        .map_or(0, |(at, _)| content[..at].chars().count());
    let start = first.saturating_sub(SNIPPET_BEFORE);
    let total = content.chars().count();
    let mut out: String = content
        .chars()
        .skip(start)
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if start > 0 {
        out.insert(0, '…');
    }
    if start + SNIPPET_CHARS < total {
        out.push('…');
    }
    out
}

/// One message found by [`SessionStore::search`](crate::SessionStore::search);
/// serialises to JSON as an object of these fields.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// The session it is in.
    pub session_id: Uuid,
    /// Its global id.
    pub message_id: u64,
    /// Its seq in the session.
    pub seq: u64,
    /// Its BM25 score: higher is better.
    pub score: f64,
    /// Up to 120 characters of its content, from a little before the first
    /// term searched for (`…` marks a cut; line breaks read as spaces).
    pub snippet: String,
}

impl SearchHit {
    /// Where the page after this hit starts.
    pub fn cursor(&self) -> SearchCursor {
        SearchCursor(Scored {
            score: self.score,
            session: self.session_id.as_u128(),
            seq: self.seq,
        })
    }
}

/// A position in a search's results, for paging (see
/// [`SessionStore::search`](crate::SessionStore::search)): the hits after
/// it. Renders as, and parses from, a short opaque text token.
///
/// ```
/// use sessionstore::{Error, SearchCursor};
/// assert!(matches!("nonsense".parse::<SearchCursor>(), Err(Error::InvalidInput { what: "cursor", .. })));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchCursor(pub(crate) Scored);

impl fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Scored { score, session, seq } = self.0;
        write!(f, "{:016x}.{session:032x}.{seq}", score.to_bits())
    }
}

impl FromStr for SearchCursor {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::invalid("cursor", format!("{text:?} is not a search cursor"));
        let mut parts = text.split('.');
        let (Some(score), Some(session), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let digits =
            |part: &str, width: usize| part.len() == width && part.bytes().all(|b| b.is_ascii_hexdigit());
        if !digits(score, 16) || !digits(session, 32) || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let score = f64::from_bits(u64::from_str_radix(score, 16).map_err(|_| bad())?);
        if score.is_nan() {
            return Err(bad());
        }
        Ok(SearchCursor(Scored {
            score,
            session: u128::from_str_radix(session, 16).map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        }))
    }
}

/// One page of search results.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchPage {
    /// The hits, best first.
    pub hits: Vec<SearchHit>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<SearchCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lowercased_alphanumeric_runs_and_long_ones_are_skipped() {
        let long = "x".repeat(MAX_TERM_BYTES + 1);
        let text = format!("Books, by OXFORD's 1900s-era Über-press; {long} ok");
        let terms: Vec<String> = tokens(&text).map(|(_, t)| t).collect();
        assert_eq!(
            terms,
            ["books", "by", "oxford", "s", "1900s", "era", "über", "press", "ok"]
        );
        let counted = Terms::of("a b a");
        assert_eq!((counted.counts["a"], counted.length), (2, 3));
    }

    #[test]
    fn snippets_start_a_little_before_the_first_term_and_mark_cuts() {
        let terms = ["needle".to_owned()];
        let text = format!("{}needle\n{}", "é, ".repeat(40), "z".repeat(200));
        let got = snippet(&text, &terms);
        assert!(
            got.starts_with(&format!("…{}needle z", "é, ".repeat(10))),
            "{got}"
        );
        assert!(got.ends_with('…'));
        assert_eq!(got.chars().count(), SNIPPET_CHARS + 2);
        assert_eq!(snippet("short needle", &terms), "short needle");
    }

    #[test]
    fn cursors_round_trip_as_text_and_bad_ones_are_refused() {
        let cursor = SearchCursor(Scored {
            score: 1.25,
            session: 7,
            seq: 3,
        });
        assert_eq!(cursor.to_string().parse::<SearchCursor>().unwrap(), cursor);
        let nan = format!("{:016x}.{:032x}.1", f64::NAN.to_bits(), 7);
        for bad in [
            "",
            "1.2",
            "x.1.1",
            "1.1.1.1",
            "3ff4000000000000.7.-1",
            "+3ff4000000000000.7.1",
            &nan,
        ] {
            let refused = bad.parse::<SearchCursor>();
            assert!(
                matches!(refused, Err(Error::InvalidInput { what: "cursor", .. })),
                "{bad}: {refused:?}"
            );
        }
    }

    #[test]
    fn arguments_are_checked() {
        assert_eq!(check("Oxford, oxford BOOKS", 1).unwrap(), ["books", "oxford"]);
        for (query, limit, field) in [
            ("books", 0, "limit"),
            ("books", MAX_LIMIT + 1, "limit"),
            ("  ,;! ", 10, "query"),
            (&"a ".repeat(MAX_QUERY_BYTES), 10, "query"),
        ] {
            let refused = check(query, limit);
            assert!(
                matches!(refused, Err(Error::InvalidInput { what, .. }) if what == field),
                "{query:?} {limit}: {refused:?}"
            );
        }
    }

    #[test]
    fn bm25_weighs_rare_terms_and_repeats_and_hits_follow_their_order() {
        let bm25 = Bm25::new(10, 100);
        assert!(bm25.idf(1) > bm25.idf(5));
        assert!(bm25.term_score(1.0, 2, 10) > bm25.term_score(1.0, 1, 10));
        assert!(bm25.term_score(1.0, 1, 5) > bm25.term_score(1.0, 1, 20));
        let hit = |score, session, seq| Scored { score, session, seq };
        let all = vec![hit(1.0, 2, 0), hit(2.0, 9, 9), hit(1.0, 1, 5), hit(1.0, 1, 4)];
        assert_eq!(
            ranked(all.clone(), None),
            [hit(2.0, 9, 9), hit(1.0, 1, 4), hit(1.0, 1, 5), hit(1.0, 2, 0)]
        );
        let after = SearchCursor(hit(1.0, 1, 4));
        assert_eq!(ranked(all, Some(&after)), [hit(1.0, 1, 5), hit(1.0, 2, 0)]);
    }
}
