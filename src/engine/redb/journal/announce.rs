//! What the database says durably of its journal (`journal_outstanding`):
//! the round that may hold records it lacks.

use super::*;

/// What the database says durably of the journal (see [`Journal::announce`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Announced {
    /// Nothing: it needs no journal.
    Nothing,
    /// That the current round may hold records it lacks: records may be
    /// appended.
    Current,
    /// Maybe another round (maintenance may have replaced the file, a crash
    /// left one): the next record needs an announcement first.
    Unknown,
}
/// The database's entry that says its journal may hold records it lacks:
/// written by a durable commit before a round's first record, absent once
/// the store closed cleanly. A table of its own, which copies of the store
/// (backups, compaction) leave out: a copy needs no journal.
pub(super) const OUTSTANDING: TableDefinition<&str, &[u8]> = TableDefinition::new("journal_outstanding");
/// Its one key: the round (u64) and the journal's length (u64) then.
pub(super) const OUTSTANDING_ROUND: &str = "round";
/// The round the database says may hold records it lacks, and the journal's
/// length when it said so (the file is never shorter while it may).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Outstanding {
    pub(super) round: u64,
    pub(super) len: u64,
}
impl Journal {
    /// True when the database says durably that the current round may hold
    /// records it lacks: only then may one be appended.
    pub fn is_announced(&self) -> bool {
        self.announced == Announced::Current
    }

    /// Says durably, in a commit of its own, that the current round may
    /// hold records the database lacks, and the journal's length: from then
    /// on, until the store closes cleanly, an open refuses to go on without
    /// the journal as it is ([`Journal::inspect`]).
    pub fn announce(&mut self, db: &Database) -> Result<()> {
        let mut txn = db.begin_write()?;
        set_durability(&mut txn, RedbDurability::Immediate)?;
        let (round, len) = (self.round, self.capacity);
        write_outstanding(&txn, Some(Outstanding { round, len }))?;
        txn.commit()?;
        self.announced = Announced::Current;
        Ok(())
    }

    /// Writes into `txn`, a durable commit after which the journal starts
    /// over ([`Journal::reset`]), that the next round may hold records.
    ///
    /// Until that reset, what the database says is not known: a commit that
    /// fails (a failed sync) may still have reached the disk, and the
    /// current round's next record then needs an announcement of its own.
    ///
    /// The length said is the one the journal will have once reset (halved
    /// when long oversize, see [`Journal::shrink_if_oversize`]): a shrink
    /// after the commit must not make the journal shorter than the
    /// database says it is.
    pub fn announce_next(&mut self, txn: &WriteTransaction) -> Result<()> {
        self.announced = Announced::Unknown;
        write_outstanding(
            txn,
            Some(Outstanding {
                round: self.upcoming,
                len: self.capacity_after_reset(),
            }),
        )
    }

    /// True when the database may say the journal holds records it lacks.
    pub fn is_needed(&self) -> bool {
        self.announced != Announced::Nothing
    }

    /// Writes into `txn`, the durable commit that closes the store, that the
    /// database needs the journal no more: it holds every record.
    pub fn withdraw(&self, txn: &WriteTransaction) -> Result<()> {
        write_outstanding(txn, None)
    }

    /// Maintenance may have replaced the database: what it says of the
    /// journal is not known, and the next record needs an announcement.
    pub fn forget_announcement(&mut self) {
        self.announced = Announced::Unknown;
    }
}
/// What `db` says durably of its journal: the round that may hold records
/// it lacks, if any.
pub(super) fn outstanding(db: &Database) -> Result<Option<Outstanding>> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let Some(table) = crate::engine::redb::tables::open_if_present(&txn, OUTSTANDING)? else {
        return Ok(None);
    };
    let Some(value) = table.get(OUTSTANDING_ROUND)? else {
        return Ok(None);
    };
    let bytes: [u8; 16] = value
        .value()
        .try_into()
        .map_err(|_| Error::corrupt_record("journal_outstanding", "the round entry is not 16 bytes"))?;
    let [round, len] =
        [&bytes[..8], &bytes[8..]].map(|half| u64::from_le_bytes(half.try_into().unwrap_or_default()));
    Ok(Some(Outstanding { round, len }))
}
/// Writes into `txn` what the database says of its journal (`None`:
/// nothing, the table removed).
pub(super) fn write_outstanding(txn: &WriteTransaction, outstanding: Option<Outstanding>) -> Result<()> {
    let Some(Outstanding { round, len }) = outstanding else {
        txn.delete_table(OUTSTANDING)?;
        return Ok(());
    };
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&round.to_le_bytes());
    value[8..].copy_from_slice(&len.to_le_bytes());
    txn.open_table(OUTSTANDING)?
        .insert(OUTSTANDING_ROUND, value.as_slice())?;
    Ok(())
}
