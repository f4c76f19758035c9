//! The inbox: homeserver events that were acknowledged but not yet handled, plus the record
//! of transactions already taken in.
//!
//! A transaction is answered `200` only after its events are in the inbox and flushed, so a
//! crash after the answer loses nothing: the next start hands the inbox to the bridge again.
//! An item leaves the inbox once the bridge has handled it.

use std::collections::HashSet;

use sled::{Batch, Transactional, transaction::ConflictableTransactionError};

use super::SledStore;
use super::keys::decode_u64;
use crate::store::StoreError;
use crate::store::queues::{InboxItem, IncomingTransaction, Recorded};

impl SledStore {
    /// Records a batch of transactions atomically, skipping those already recorded; the
    /// caller flushes once for the whole batch. Returns one outcome per transaction, in order.
    pub(super) fn record_transactions_unflushed(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut outcomes = Vec::with_capacity(txns.len());
        let (mut inbox, mut records, mut order) =
            (Batch::default(), Batch::default(), Batch::default());
        let mut in_batch: HashSet<&[u8]> = HashSet::new();
        for txn in txns {
            if in_batch.contains(txn.key.as_slice()) || self.trees.txns.contains_key(&txn.key)? {
                outcomes.push(Recorded::Duplicate);
                continue;
            }
            in_batch.insert(&txn.key);
            let record_seq = self.db.generate_id()?;
            records.insert(txn.key.as_slice(), &record_seq.to_be_bytes());
            order.insert(&record_seq.to_be_bytes(), txn.key.as_slice());
            let mut seqs = Vec::with_capacity(txn.items.len());
            for item in &txn.items {
                let seq = self.db.generate_id()?;
                inbox.insert(&seq.to_be_bytes(), item.encode());
                seqs.push(seq);
            }
            outcomes.push(Recorded::New(seqs));
        }
        if !in_batch.is_empty() {
            (&self.trees.inbox, &self.trees.txns, &self.trees.txn_order)
                .transaction(|(i, t, o)| {
                    i.apply_batch(&inbox)?;
                    t.apply_batch(&records)?;
                    o.apply_batch(&order)?;
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(|e| match e {
                    sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                    sled::transaction::TransactionError::Abort(()) => unreachable!("never aborted"),
                })?;
        }
        Ok(outcomes)
    }

    /// Every item still waiting, oldest first.
    pub(super) fn pending_items_sync(&self) -> Result<Vec<(u64, InboxItem)>, StoreError> {
        self.trees
            .inbox
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok((decode_u64(&key), InboxItem::decode(&value)?))
            })
            .collect()
    }

    /// Removes a handled item. Not flushed: if a crash loses the removal, the item is handed
    /// to the bridge again, and sends derived from it reuse their transaction IDs.
    pub(super) fn complete_item_sync(&self, seq: u64) -> Result<(), StoreError> {
        self.trees.inbox.remove(seq.to_be_bytes())?;
        Ok(())
    }

    /// Drops the oldest transaction records beyond `keep`.
    pub(super) fn prune_transaction_records_sync(&self, keep: u64) -> Result<u64, StoreError> {
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
