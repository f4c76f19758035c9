//! Per-key ordered queues: items with one key (a room, a user) are handled one after another,
//! in the order they were queued; different keys run concurrently. A key's worker task exists
//! only while the key has work, so idle rooms cost nothing. Used for inbound events (the
//! inbox), outbound sends (the outbox) and remote events (the remote queue, per portal).
//!
//! An operator may trade order for speed in busy rooms ([`Overlap`]): then up to `width`
//! items of one key that [`Overlap::may_overlap`] allows are handled at once (started in
//! order, finishing in any order); any other item waits until those are done and runs alone,
//! so an edit or redaction never overtakes the message it refers to.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Handles one item; the dispatcher awaits it before giving the key its next item (unless
/// both may overlap, see [`Overlap`]).
#[async_trait::async_trait]
pub(crate) trait ItemHandler<T>: Send + Sync + 'static {
    async fn handle(&self, item: T);
}

/// How many items of one key may be in hand at once, and which ones may.
#[derive(Clone, Copy)]
pub(crate) struct Overlap<T> {
    /// Items of one key in hand at once; 1 keeps strict order.
    pub width: usize,
    /// Whether an item may run alongside the key's other overlapping items.
    pub may_overlap: fn(&T) -> bool,
}

#[cfg(any(test, feature = "internals"))]
impl<T> Overlap<T> {
    /// One item per key at a time.
    pub(crate) fn strict() -> Self {
        Self {
            width: 1,
            may_overlap: |_| false,
        }
    }
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
    overlap: Overlap<T>,
}

impl<T: Send + 'static> KeyedQueue<T> {
    /// A queue whose items of one key overlap as `overlap` says (`Overlap::strict()`: never).
    pub(crate) fn new(
        handler: Arc<dyn ItemHandler<T>>,
        runtime: tokio::runtime::Handle,
        overlap: Overlap<T>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                queues: Mutex::default(),
                pending: Default::default(),
                handler,
                runtime,
                overlap,
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
    // Overlapping items in hand (only when the operator allowed a width above 1).
    let mut in_hand = tokio::task::JoinSet::new();
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(_) if !in_hand.is_empty() => {
                tokio::select! {
                    Some(item) = rx.recv() => item,
                    Some(_) = in_hand.join_next() => {
                        inner.pending.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            Err(_) => {
                // Looks empty: re-check under the lock so no item is queued to a worker that
                // is ending.
                let mut queues = inner.queues.lock().unwrap_or_else(|e| e.into_inner());
                match rx.try_recv() {
                    Ok(item) => item,
                    Err(_) => {
                        queues.remove(&key);
                        return;
                    }
                }
            }
        };
        if inner.overlap.width > 1 && (inner.overlap.may_overlap)(&item) {
            while in_hand.len() >= inner.overlap.width {
                in_hand.join_next().await;
                inner.pending.fetch_sub(1, Ordering::Relaxed);
            }
            let handler = inner.handler.clone();
            in_hand.spawn_on(async move { handler.handle(item).await }, &inner.runtime);
            continue;
        }
        // Runs alone: after everything before it.
        while in_hand.join_next().await.is_some() {
            inner.pending.fetch_sub(1, Ordering::Relaxed);
        }
        inner.handler.handle(item).await;
        inner.pending.fetch_sub(1, Ordering::Relaxed);
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
        let dispatcher = KeyedQueue::new(
            rec.clone(),
            tokio::runtime::Handle::current(),
            Overlap::strict(),
        );
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

    /// Items `(seq, queue, may overlap)`; records per queue what is in hand.
    #[derive(Default)]
    struct Overlapping {
        in_hand: Mutex<HashMap<String, Vec<u64>>>,
        done: Mutex<HashMap<String, Vec<u64>>>,
        widest: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ItemHandler<(u64, String, bool)> for Overlapping {
        async fn handle(&self, (seq, queue, overlaps): (u64, String, bool)) {
            {
                let mut in_hand = self.in_hand.lock().unwrap();
                let here = in_hand.entry(queue.clone()).or_default();
                if !overlaps {
                    assert!(here.is_empty(), "{seq} ran alongside {here:?}");
                }
                here.push(seq);
                self.widest
                    .fetch_max(here.len(), std::sync::atomic::Ordering::SeqCst);
                let done = self.done.lock().unwrap();
                let done = done.get(&queue).map(Vec::as_slice).unwrap_or(&[]);
                // Everything before `seq` that runs alone, and (for an item that runs alone)
                // everything before it at all, is finished.
                for s in (0..seq).filter(|s| s % 4 == seq % 4) {
                    if !overlaps || s % 5 == 0 {
                        assert!(done.contains(&s), "{seq} started before {s} finished");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1 + seq % 3)).await;
            self.in_hand
                .lock()
                .unwrap()
                .get_mut(&queue)
                .unwrap()
                .retain(|s| *s != seq);
            self.done
                .lock()
                .unwrap()
                .entry(queue)
                .or_default()
                .push(seq);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_items_share_a_key_up_to_the_width_and_the_rest_run_alone() {
        let rec = Arc::new(Overlapping::default());
        let overlap = Overlap {
            width: 3,
            may_overlap: |item: &(u64, String, bool)| item.2,
        };
        let dispatcher = KeyedQueue::new(rec.clone(), tokio::runtime::Handle::current(), overlap);
        for seq in 0..400u64 {
            // Queue `seq % 4`; every fifth item runs alone.
            let queue = format!("!{}", seq % 4);
            dispatcher.dispatch(&queue.clone(), (seq, queue, seq % 5 != 0));
        }
        for _ in 0..1000 {
            if dispatcher.pending() == 0 && dispatcher.active_queues() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(dispatcher.pending(), 0, "every item handled");
        assert_eq!(dispatcher.active_queues(), 0, "idle queues are dropped");
        let done = rec.done.lock().unwrap();
        assert_eq!(done.values().map(Vec::len).sum::<usize>(), 400);
        let widest = rec.widest.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            widest, 3,
            "items of one key overlap up to the width, never more"
        );
    }
}
