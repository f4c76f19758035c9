//! Per-key ordered queues: items with one key (a room, a user) are handled one after another,
//! in the order they were queued; different keys run concurrently. A key's worker task exists
//! only while the key has work, so idle rooms cost nothing. Used for inbound events (the
//! inbox), outbound sends (the outbox) and remote events (the remote queue, per portal).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Handles one item; the dispatcher awaits it before giving the key its next item.
#[async_trait::async_trait]
pub(crate) trait ItemHandler<T>: Send + Sync + 'static {
    async fn handle(&self, item: T);
}

/// Routes items to per-key workers.
pub(crate) struct KeyedQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for KeyedQueue<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    queues: Mutex<HashMap<String, UnboundedSender<T>>>,
    /// Items queued and not yet handled, across all keys.
    pending: std::sync::atomic::AtomicUsize,
    handler: Arc<dyn ItemHandler<T>>,
    runtime: tokio::runtime::Handle,
}

impl<T: Send + 'static> KeyedQueue<T> {
    pub(crate) fn new(handler: Arc<dyn ItemHandler<T>>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            inner: Arc::new(Inner {
                queues: Mutex::default(),
                pending: Default::default(),
                handler,
                runtime,
            }),
        }
    }

    /// Queues an item behind the earlier items with the same key. Never blocks.
    pub(crate) fn dispatch(&self, key: &str, item: T) {
        self.inner.pending.fetch_add(1, Ordering::Relaxed);
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = queues.get(key) {
            // The worker removes its sender under this lock before it ends, so a sender found
            // here always has a live receiver.
            let _ = tx.send(item);
            return;
        }
        let (tx, rx) = unbounded_channel();
        let key = key.to_owned();
        let _ = tx.send(item);
        queues.insert(key.clone(), tx);
        let inner = self.inner.clone();
        self.inner.runtime.spawn(worker(inner, key, rx));
    }

    /// Items queued and not yet handled.
    pub(crate) fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Relaxed)
    }

    /// Whether `key` has items queued or in hand.
    pub(crate) fn has_queue(&self, key: &str) -> bool {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    /// Number of queues that currently have work.
    pub(crate) fn active_queues(&self) -> usize {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

async fn worker<T: Send + 'static>(
    inner: Arc<Inner<T>>,
    key: String,
    mut rx: UnboundedReceiver<T>,
) {
    loop {
        while let Ok(item) = rx.try_recv() {
            inner.handler.handle(item).await;
            inner.pending.fetch_sub(1, Ordering::Relaxed);
        }
        // Looks empty: re-check under the lock so no item is queued to a worker that is ending.
        let mut queues = inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        match rx.try_recv() {
            Ok(item) => {
                drop(queues);
                inner.handler.handle(item).await;
                inner.pending.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) => {
                queues.remove(&key);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Recorder {
        seen: Mutex<Vec<(String, u64)>>,
        running: Mutex<HashMap<String, bool>>,
        overlap: std::sync::atomic::AtomicUsize,
        max_overlap: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ItemHandler<(u64, String)> for Recorder {
        async fn handle(&self, (seq, queue): (u64, String)) {
            use std::sync::atomic::Ordering::SeqCst;
            {
                let mut running = self.running.lock().unwrap();
                assert!(
                    !running.get(&queue).copied().unwrap_or(false),
                    "two items of one queue at once"
                );
                running.insert(queue.clone(), true);
            }
            let now = self.overlap.fetch_add(1, SeqCst) + 1;
            self.max_overlap.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(if seq.is_multiple_of(3) {
                3
            } else {
                1
            }))
            .await;
            self.overlap.fetch_sub(1, SeqCst);
            self.running.lock().unwrap().insert(queue.clone(), false);
            self.seen.lock().unwrap().push((queue, seq));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_keep_their_order_per_queue_and_queues_run_concurrently() {
        let rec = Arc::new(Recorder {
            seen: Mutex::default(),
            running: Mutex::default(),
            overlap: 0.into(),
            max_overlap: 0.into(),
        });
        let dispatcher = KeyedQueue::new(rec.clone(), tokio::runtime::Handle::current());
        let rooms = ["!a", "!b", "!c", "!d"];
        for seq in 0..200u64 {
            let queue = rooms[(seq * 7 % 4) as usize].to_owned();
            dispatcher.dispatch(&queue.clone(), (seq, queue));
            if seq.is_multiple_of(50) {
                tokio::time::sleep(Duration::from_millis(20)).await; // let queues drain and end
            }
        }
        for _ in 0..500 {
            if rec.seen.lock().unwrap().len() == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = rec.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 200, "every item handled exactly once");
        for room in rooms {
            let seqs: Vec<u64> = seen
                .iter()
                .filter(|(q, _)| q == room)
                .map(|(_, s)| *s)
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{room} out of order: {seqs:?}"
            );
        }
        assert!(
            rec.max_overlap.load(std::sync::atomic::Ordering::SeqCst) > 1,
            "rooms never ran concurrently"
        );
        for _ in 0..100 {
            if dispatcher.active_queues() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(dispatcher.active_queues(), 0, "idle queues are dropped");
    }
}
