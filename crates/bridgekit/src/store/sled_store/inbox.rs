//! The inbox: homeserver events that were acknowledged but not yet handled, plus the record
//! of transactions already taken in.
//!
//! A transaction is answered `200` only after its events are in the inbox and flushed, so a
//! crash after the answer loses nothing: the next start hands the inbox to the bridge again.
//!
//! A transaction's items are written as one record (`inbox_batches`), not one per event: the
//! hot path then writes two keys per transaction instead of two per event. Which items were
//! handled is a bitmap per batch, kept in memory and written lazily (`inbox_done`); once every
//! item is handled the batch is removed. A crash hands over again the items whose handling was
//! not yet written, as it did before with per-item removals that were not flushed either.
//! Items in the `inbox` tree (one per event, from stores written before, or imported) are still
//! read and completed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sled::{Batch, Transactional, transaction::ConflictableTransactionError};

use super::SledStore;
use super::journal::{Journal, JournalRecord};
use super::keys::decode_u64;
use crate::store::StoreError;
use crate::store::queues::{InboxItem, IncomingTransaction, Recorded};

/// Marks an item sequence number as (batch << INDEX_BITS | index) rather than a key of the
/// per-item tree.
pub(super) const BATCHED: u64 = 1 << 63;
const INDEX_BITS: u32 = 20;
/// Most items one batch can hold (a transaction of more is split over several batches).
const MAX_BATCH_ITEMS: usize = 1 << INDEX_BITS;
/// Handled-item bitmaps are written at most this often (and at every flush).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Which items of each open batch are handled, by batch number.
#[derive(Default)]
pub(super) struct Progress {
    batches: HashMap<u64, BatchProgress>,
    last_written: Option<Instant>,
}

struct BatchProgress {
    done: Vec<u8>,
    remaining: usize,
    dirty: bool,
}

impl BatchProgress {
    fn new(items: usize) -> Self {
        Self {
            done: vec![0; items.div_ceil(8)],
            remaining: items,
            dirty: false,
        }
    }

    fn is_done(&self, index: usize) -> bool {
        self.done
            .get(index / 8)
            .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }
}

pub(super) type SharedProgress = std::sync::Arc<Mutex<Progress>>;

pub(super) fn encode_batch(items: &[InboxItem]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        4 + items
            .iter()
            .map(|i| 7 + i.queue.len() + i.json.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for item in items {
        let encoded = item.encode();
        out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        out.extend_from_slice(&encoded);
    }
    out
}

fn decode_batch(bytes: &[u8]) -> Result<Vec<InboxItem>, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        tree: "inbox_batches",
        reason: reason.to_owned(),
    };
    let read_u32 = |at: usize| -> Result<usize, StoreError> {
        let b = bytes
            .get(at..at + 4)
            .ok_or_else(|| corrupt("short batch"))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = read_u32(0)?;
    let mut items = Vec::with_capacity(count.min(MAX_BATCH_ITEMS));
    let mut at = 4;
    for _ in 0..count {
        let len = read_u32(at)?;
        let item = bytes
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| corrupt("short item"))?;
        items.push(InboxItem::decode(item)?);
        at += 4 + len;
    }
    Ok(items)
}

impl SledStore {
    /// Records a batch of transactions atomically, skipping those already recorded. Returns
    /// one outcome per transaction, in order, and whether they are durable already: they are
    /// when the intake journal took them (see the `journal` module); otherwise the caller
    /// flushes.
    pub(super) fn record_transactions_journaled(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<(Vec<Recorded>, bool), StoreError> {
        // Held throughout, so a concurrent copy of a transaction is seen as a duplicate.
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if journal.wants_reset()
            && let Err(error) = self.reset_journal(&mut journal)
        {
            tracing::warn!(%error, "cannot empty the intake journal; flushing the store instead");
        }
        let mut outcomes = Vec::with_capacity(txns.len());
        let mut records = Vec::new();
        let mut opened = Vec::new();
        let mut in_batch: HashSet<&[u8]> = HashSet::new();
        for txn in txns {
            if in_batch.contains(txn.key.as_slice()) || self.trees.txns.contains_key(&txn.key)? {
                outcomes.push(Recorded::Duplicate);
                continue;
            }
            in_batch.insert(&txn.key);
            let record_seq = self.db.generate_id()?;
            let mut seqs = Vec::with_capacity(txn.items.len());
            let mut batches = Vec::new();
            for chunk in txn.items.chunks(MAX_BATCH_ITEMS) {
                let batch = self.db.generate_id()?;
                batches.push((batch, encode_batch(chunk)));
                seqs.extend((0..chunk.len() as u64).map(|i| BATCHED | batch << INDEX_BITS | i));
                opened.push((batch, chunk.len()));
            }
            records.push(JournalRecord {
                record_seq,
                key: txn.key.clone(),
                batches,
            });
            outcomes.push(Recorded::New(seqs));
        }
        // A duplicate's first copy is durable when the journal is usable: it was journaled,
        // or flushed by the reset that made the journal usable again.
        let mut durable = journal.is_usable();
        if !records.is_empty()
            && durable
            && let Err(error) = journal.append(&records)
        {
            tracing::warn!(%error, journal = %journal.path().display(),
                "cannot write the intake journal; flushing the store instead");
            durable = false;
        }
        // One sled transaction even when journaled: plain inserts into the three trees
        // were measured not to survive a SIGKILL in order (a transaction's key came back
        // without its batch: sled recovers no prefix across trees), and the replay trusts
        // the key.
        let applied = self.apply_records(&records);
        if let Err(error) = applied {
            // The journal may hold what sled refused; keep it from taking more until sled
            // has flushed everything (the next reset).
            journal.mark_broken();
            return Err(error);
        }
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        for (batch, items) in opened {
            progress.batches.insert(batch, BatchProgress::new(items));
        }
        Ok((outcomes, durable))
    }

    /// Writes transactions to the trees, all in one sled transaction.
    fn apply_records(&self, records: &[JournalRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let (mut inbox, mut keys, mut order) =
            (Batch::default(), Batch::default(), Batch::default());
        for record in records {
            keys.insert(record.key.as_slice(), &record.record_seq.to_be_bytes());
            order.insert(&record.record_seq.to_be_bytes(), record.key.as_slice());
            for (batch, bytes) in &record.batches {
                inbox.insert(&batch.to_be_bytes(), bytes.as_slice());
            }
        }
        (
            &self.trees.inbox_batches,
            &self.trees.txns,
            &self.trees.txn_order,
        )
            .transaction(|(i, t, o)| {
                i.apply_batch(&inbox)?;
                t.apply_batch(&keys)?;
                o.apply_batch(&order)?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
                sled::transaction::TransactionError::Abort(()) => unreachable!("never aborted"),
            })
    }

    /// Flushes sled durably, then empties the journal (everything in it is in sled now).
    fn reset_journal(&self, journal: &mut Journal) -> Result<(), StoreError> {
        self.flush_blocking()?;
        journal.reset().map_err(|e| {
            StoreError::Io(format!(
                "cannot empty the intake journal {}: {e}",
                journal.path().display()
            ))
        })
    }

    /// At open: writes to the trees what the journal holds and sled lost (a crash after the
    /// acknowledgement, before sled's own flush), then empties the journal. Returns how many
    /// transactions came back.
    pub(super) fn replay_journal(&self, found: Vec<JournalRecord>) -> Result<usize, StoreError> {
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if found.is_empty() && !journal.wants_reset() {
            return Ok(0); // nothing to flush for (a flush at open costs megabytes of RSS)
        }
        let mut lost = Vec::new();
        for record in found {
            if !self.trees.txns.contains_key(&record.key)? {
                lost.push(record);
            }
        }
        self.apply_records(&lost)?;
        self.reset_journal(&mut journal)?;
        Ok(lost.len())
    }

    /// Every item still waiting, oldest first. Loads the handled-item bitmaps.
    pub(super) fn pending_items_sync(&self) -> Result<Vec<(u64, InboxItem)>, StoreError> {
        let mut pending = self
            .trees
            .inbox
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok((decode_u64(&key), InboxItem::decode(&value)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        for entry in self.trees.inbox_done.iter() {
            let (key, _) = entry?;
            if !self.trees.inbox_batches.contains_key(&key)? {
                self.trees.inbox_done.remove(key)?; // its batch finished just before a crash
            }
        }
        for entry in self.trees.inbox_batches.iter() {
            let (key, value) = entry?;
            let batch = decode_u64(&key);
            let items = decode_batch(&value)?;
            let state = progress.batches.entry(batch).or_insert_with(|| {
                let mut state = BatchProgress::new(items.len());
                if let Ok(Some(done)) = self.trees.inbox_done.get(key) {
                    let n = done.len().min(state.done.len());
                    state.done[..n].copy_from_slice(&done[..n]);
                    state.remaining = (0..items.len()).filter(|i| !state.is_done(*i)).count();
                }
                state
            });
            for (index, item) in items.into_iter().enumerate() {
                if !state.is_done(index) {
                    pending.push((BATCHED | batch << INDEX_BITS | index as u64, item));
                }
            }
        }
        Ok(pending)
    }

    /// Marks a handled item. Not flushed: if a crash loses it, the item is handed to the
    /// bridge again, and sends derived from it reuse their transaction IDs.
    pub(super) fn complete_item_sync(&self, seq: u64) -> Result<(), StoreError> {
        if seq & BATCHED == 0 {
            let removed = self.trees.inbox.remove(seq.to_be_bytes())?;
            self.depths.inbox_items.removed(&removed);
            return Ok(());
        }
        let batch = (seq & !BATCHED) >> INDEX_BITS;
        let index = (seq & (MAX_BATCH_ITEMS as u64 - 1)) as usize;
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = progress.batches.get_mut(&batch) else {
            return Ok(()); // already finished
        };
        if state.is_done(index) || index / 8 >= state.done.len() {
            return Ok(());
        }
        state.done[index / 8] |= 1 << (index % 8);
        state.remaining -= 1;
        state.dirty = true;
        if state.remaining == 0 {
            progress.batches.remove(&batch);
            // Batch first: a bitmap left behind by a crash here is dropped at the next start.
            let key = batch.to_be_bytes();
            self.trees.inbox_batches.remove(key)?;
            self.trees.inbox_done.remove(key)?;
        }
        let due = progress
            .last_written
            .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
        if due {
            self.write_progress(&mut progress)?;
        }
        Ok(())
    }

    /// Writes the bitmaps that changed since they were last written.
    pub(super) fn write_progress_now(&self) -> Result<(), StoreError> {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        self.write_progress(&mut progress)
    }

    fn write_progress(&self, progress: &mut Progress) -> Result<(), StoreError> {
        progress.last_written = Some(Instant::now());
        // One insert each, not a sled batch: a batch costs two log writes, and bitmaps need
        // no atomicity between them.
        for (number, state) in progress.batches.iter_mut().filter(|(_, s)| s.dirty) {
            state.dirty = false;
            self.trees
                .inbox_done
                .insert(number.to_be_bytes(), state.done.as_slice())?;
        }
        Ok(())
    }

    /// Items acknowledged and not yet handled.
    pub(super) fn inbox_depth(&self) -> u64 {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        self.depths.inbox_items.get()
            + progress
                .batches
                .values()
                .map(|b| b.remaining as u64)
                .sum::<u64>()
    }

    /// Drops the oldest transaction records beyond `keep`.
    pub(super) fn prune_transaction_records_sync(&self, keep: u64) -> Result<u64, StoreError> {
        // The journal is emptied first, so it never holds a transaction whose record is
        // pruned (its replay would take that transaction in again).
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        self.reset_journal(&mut journal)?;
        drop(journal);
        // A walk of at most `keep` + 1024 small records, once every 1024 transactions.
        let excess = (self.trees.txn_order.len() as u64).saturating_sub(keep);
        let mut removed = 0u64;
        for entry in self.trees.txn_order.iter().take(excess as usize) {
            let (seq, key) = entry?;
            self.trees.txns.remove(key)?;
            self.trees.txn_order.remove(seq)?;
            removed += 1;
        }
        Ok(removed)
    }
}
