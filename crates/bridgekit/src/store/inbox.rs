//! The inbox: homeserver events that were acknowledged but not yet handled, plus the record
//! of transactions already taken in.
//!
//! A transaction is answered `200` only after its events are in the inbox and flushed, so a
//! crash after the answer loses nothing: the next start hands the inbox to the bridge again.
//! An item leaves the inbox once the bridge has handled it.

use std::collections::HashSet;

use sled::{Batch, Transactional, transaction::ConflictableTransactionError};

use super::{Store, StoreError, decode_u64};

/// How many transaction records are kept for deduplication. Synapse retries an unanswered
/// transaction within minutes (its backoff caps at 512 s), one at a time, so a few thousand
/// records cover every retry by a wide margin.
pub const TRANSACTION_RECORDS_KEPT: u64 = 16_384;

/// What an inbox item carries, which decides how it is dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ItemKind {
    Timeline = 0,
    Ephemeral = 1,
    ToDevice = 2,
}

/// One event waiting to be handled, in the order it must be handled within its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InboxItem {
    pub kind: ItemKind,
    /// The ordering key: a room ID, or a user ID for presence and to-device.
    pub queue: String,
    /// The event exactly as the homeserver sent it.
    pub json: String,
}

impl InboxItem {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.queue.len() + self.json.len());
        out.push(self.kind as u8);
        out.extend_from_slice(&(self.queue.len() as u16).to_be_bytes());
        out.extend_from_slice(self.queue.as_bytes());
        out.extend_from_slice(self.json.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            tree: "inbox",
            reason: reason.to_owned(),
        };
        let kind = match bytes.first() {
            Some(0) => ItemKind::Timeline,
            Some(1) => ItemKind::Ephemeral,
            Some(2) => ItemKind::ToDevice,
            _ => return Err(corrupt("unknown item kind")),
        };
        let len = bytes.get(1..3).ok_or_else(|| corrupt("short item"))?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let queue = bytes
            .get(3..3 + len)
            .ok_or_else(|| corrupt("short queue key"))?;
        let json = &bytes[3 + len..];
        Ok(InboxItem {
            kind,
            queue: String::from_utf8(queue.to_vec())
                .map_err(|_| corrupt("queue key is not UTF-8"))?,
            json: String::from_utf8(json.to_vec()).map_err(|_| corrupt("event is not UTF-8"))?,
        })
    }
}

/// A transaction to take in: its deduplication key and its items.
#[derive(Debug)]
pub(crate) struct IncomingTransaction {
    pub key: Vec<u8>,
    pub items: Vec<InboxItem>,
}

/// The result of recording one transaction.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// New: its items got these inbox sequence numbers.
    New(Vec<u64>),
    /// Already taken in earlier (a retry): nothing was written.
    Duplicate,
}

impl Store {
    /// Records a batch of transactions atomically, skipping those already recorded, and
    /// flushes once for the whole batch. Returns one outcome per transaction, in order.
    pub(crate) fn record_transactions(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut outcomes = Vec::with_capacity(txns.len());
        let (mut inbox, mut records, mut order) =
            (Batch::default(), Batch::default(), Batch::default());
        let mut in_batch: HashSet<&[u8]> = HashSet::new();
        for txn in txns {
            if in_batch.contains(txn.key.as_slice()) || self.txns.contains_key(&txn.key)? {
                outcomes.push(Recorded::Duplicate);
                continue;
            }
            in_batch.insert(&txn.key);
            let record_seq = self.generate_id()?;
            records.insert(txn.key.as_slice(), &record_seq.to_be_bytes());
            order.insert(&record_seq.to_be_bytes(), txn.key.as_slice());
            let mut seqs = Vec::with_capacity(txn.items.len());
            for item in &txn.items {
                let seq = self.generate_id()?;
                inbox.insert(&seq.to_be_bytes(), item.encode());
                seqs.push(seq);
            }
            outcomes.push(Recorded::New(seqs));
        }
        if !in_batch.is_empty() {
            (&self.inbox, &self.txns, &self.txn_order)
                .transaction(|(i, t, o)| {
                    i.apply_batch(&inbox)?;
                    t.apply_batch(&records)?;
                    o.apply_batch(&order)?;
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(|e| match e {
                    sled::transaction::TransactionError::Storage(e) => StoreError::Backend(e),
                    sled::transaction::TransactionError::Abort(()) => unreachable!("never aborted"),
                })?;
            self.flush()?;
        }
        Ok(outcomes)
    }

    /// Every item still waiting, oldest first.
    pub(crate) fn pending_items(&self) -> Result<Vec<(u64, InboxItem)>, StoreError> {
        self.inbox
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok((decode_u64(&key), InboxItem::decode(&value)?))
            })
            .collect()
    }

    /// Removes a handled item. Not flushed: if a crash loses the removal, the item is handed
    /// to the bridge again, and sends derived from it reuse their transaction IDs.
    pub(crate) fn complete_item(&self, seq: u64) -> Result<(), StoreError> {
        self.inbox.remove(seq.to_be_bytes())?;
        Ok(())
    }

    /// Drops the oldest transaction records beyond [`TRANSACTION_RECORDS_KEPT`].
    pub(crate) fn prune_transaction_records(&self) -> Result<usize, StoreError> {
        let excess = (self.txn_order.len() as u64).saturating_sub(TRANSACTION_RECORDS_KEPT);
        let mut removed = 0;
        for entry in self.txn_order.iter().take(excess as usize) {
            let (seq, key) = entry?;
            self.txns.remove(key)?;
            self.txn_order.remove(seq)?;
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_CACHE_BYTES;

    fn item(queue: &str, json: &str) -> InboxItem {
        InboxItem {
            kind: ItemKind::Timeline,
            queue: queue.into(),
            json: json.into(),
        }
    }

    #[test]
    fn recorded_items_survive_reopen_until_completed() {
        let dir = tempfile::tempdir().unwrap();
        let seqs = {
            let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
            let txn = IncomingTransaction {
                key: b"1".to_vec(),
                items: vec![item("!a", "{}"), item("!b", "[1]")],
            };
            match store.record_transactions(&[txn]).unwrap().remove(0) {
                Recorded::New(seqs) => seqs,
                other => panic!("{other:?}"),
            }
        };
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let pending = store.pending_items().unwrap();
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
        assert_eq!(pending[1].1, item("!b", "[1]"));
        store.complete_item(seqs[0]).unwrap();
        assert_eq!(store.pending_items().unwrap().len(), 1);
    }

    #[test]
    fn a_transaction_is_recorded_once_even_within_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let txn = || IncomingTransaction {
            key: b"k".to_vec(),
            items: vec![item("!a", "{}")],
        };
        let out = store.record_transactions(&[txn(), txn()]).unwrap();
        assert!(matches!(out[0], Recorded::New(_)));
        assert_eq!(out[1], Recorded::Duplicate);
        assert_eq!(
            store.record_transactions(&[txn()]).unwrap(),
            vec![Recorded::Duplicate]
        );
        assert_eq!(store.pending_items().unwrap().len(), 1);
    }

    #[test]
    fn pruning_keeps_the_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let total = TRANSACTION_RECORDS_KEPT + 3;
        let txns: Vec<_> = (0..total)
            .map(|i| IncomingTransaction {
                key: i.to_string().into_bytes(),
                items: vec![],
            })
            .collect();
        store.record_transactions(&txns).unwrap();
        assert_eq!(store.prune_transaction_records().unwrap(), 3);
        assert!(!store.txns.contains_key(b"0").unwrap());
        assert!(store.txns.contains_key(b"3").unwrap());
        assert!(store.txns.contains_key((total - 1).to_string()).unwrap());
    }
}
