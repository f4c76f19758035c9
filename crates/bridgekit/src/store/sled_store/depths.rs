//! Queue depths kept as counters, for `/metrics`: sled's `len()` walks the whole tree (every
//! page through the cache), which a scrape must not do. Counted once at open, then kept by
//! the writes that add and remove entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Trees;

/// Entries in the outbox, the remote queue and the per-item inbox tree.
#[derive(Clone, Default)]
pub(super) struct Depths {
    pub(super) outbox: Counter,
    pub(super) remote: Counter,
    pub(super) inbox_items: Counter,
}

impl Depths {
    /// The depths as they are on disk (one walk of each queue, at open only).
    pub(super) fn count(trees: &Trees) -> Self {
        let depths = Self::default();
        depths.outbox.add(trees.outbox.len() as u64);
        depths.remote.add(trees.remote_queue.len() as u64);
        depths.inbox_items.add(trees.inbox.len() as u64);
        depths
    }
}

/// One depth, shared by every clone of the store.
#[derive(Clone, Default)]
pub(super) struct Counter(Arc<AtomicU64>);

impl Counter {
    pub(super) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one entry gone, if `removed` says one was there.
    pub(super) fn removed<T>(&self, removed: &Option<T>) {
        if removed.is_some() {
            let _ = self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
