//! Hooks into the framework's hot path for the benchmarks in `benches/` (not public API:
//! hidden from the docs and free to change).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::keyed_queue::{ItemHandler, KeyedQueue};
use crate::store::queues::IncomingTransaction;

/// Parses a transaction body as `PUT /transactions/{txnId}` does: the inbox items to record
/// (with their deduplication key), or why the body was refused.
pub fn parse_transaction(txn_id: &str, body: &[u8]) -> Result<IncomingTransaction, String> {
    crate::appservice::transaction::parse_transaction(txn_id, body)
        .map(|parsed| parsed.incoming)
        .map_err(|e| format!("{e:?}"))
}

/// The per-room dispatcher with a handler that only counts: measures queueing, per-key
/// ordering and task hand-off.
pub struct CountingDispatcher {
    dispatcher: KeyedQueue<u64>,
    counter: Arc<Counter>,
}

struct Counter {
    handled: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
}

#[async_trait::async_trait]
impl ItemHandler<u64> for Counter {
    async fn handle(&self, _item: u64) {
        let n = self.handled.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }
}

impl CountingDispatcher {
    /// On the current Tokio runtime.
    pub fn new() -> Self {
        let counter = Arc::new(Counter {
            handled: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            done: Notify::new(),
        });
        Self {
            dispatcher: KeyedQueue::new(
                counter.clone(),
                tokio::runtime::Handle::current(),
                crate::keyed_queue::Overlap::strict(),
            ),
            counter,
        }
    }

    /// Queues `items` items round-robin over `keys` (pre-built key strings) and waits until
    /// every one was handled.
    pub async fn run(&self, keys: &[String], items: usize) {
        let already = self.counter.handled.load(Ordering::Acquire);
        self.counter
            .target
            .store(already + items, Ordering::Release);
        for i in 0..items {
            self.dispatcher.dispatch(&keys[i % keys.len()], i as u64);
        }
        while self.counter.handled.load(Ordering::Acquire) < already + items {
            self.counter.done.notified().await;
        }
    }
}

impl Default for CountingDispatcher {
    fn default() -> Self {
        Self::new()
    }
}
