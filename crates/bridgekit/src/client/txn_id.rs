//! Client transaction IDs for sends.
//!
//! Synapse deduplicates appservice sends by (appservice, request path), not by ghost
//! (docs/homeserver-behaviour.md §2): two ghosts reusing an ID in one room silently lose a message. So every ID
//! is unique across the whole appservice and across restarts — `bk<boot>.<counter>`, where
//! the boot number is kept in the store — and a retry of one send reuses its ID.
//! [`TxnIds::derived`] makes an ID from a stable seed (e.g. a remote message ID), so a send
//! repeated after a crash is recognised by the homeserver as the same send.

use std::sync::atomic::{AtomicU64, Ordering};

use ruma::OwnedTransactionId;

use crate::hash::fnv1a64;

/// Issues client transaction IDs.
#[derive(Debug)]
pub struct TxnIds {
    prefix: String,
    counter: AtomicU64,
}

impl TxnIds {
    /// IDs for the process start number `boot` (see [`Store`](crate::Store)).
    pub fn new(boot: u64) -> Self {
        Self {
            prefix: format!("bk{boot}"),
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh ID, never issued before by this appservice.
    pub fn next(&self) -> OwnedTransactionId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.prefix).into()
    }

    /// The same ID for the same seed, every time: 128 bits of two independent hashes.
    pub fn derived(seed: &[&str]) -> OwnedTransactionId {
        let parts = || seed.iter().map(|s| s.as_bytes());
        let a = fnv1a64(parts());
        let b = fnv1a64(std::iter::once(b"bridgekit".as_slice()).chain(parts()));
        format!("bkd.{a:016x}{b:016x}").into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_within_and_across_boots() {
        let mut seen = HashSet::new();
        for boot in 1..=3 {
            let ids = TxnIds::new(boot);
            for _ in 0..1000 {
                assert!(seen.insert(ids.next()), "duplicate txn id");
            }
        }
    }

    #[test]
    fn derived_ids_are_stable_and_seed_sensitive() {
        assert_eq!(
            TxnIds::derived(&["!r", "m1"]),
            TxnIds::derived(&["!r", "m1"])
        );
        assert_ne!(
            TxnIds::derived(&["!r", "m1"]),
            TxnIds::derived(&["!r", "m2"])
        );
        assert_ne!(
            TxnIds::derived(&["!r", "m1"]),
            TxnIds::derived(&["!rm", "1"])
        );
    }
}
