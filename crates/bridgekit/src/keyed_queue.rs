//! Per-key ordered queues: items with one key (a room, a user) are handled one after another,
//! in the order they were queued; different keys run concurrently. A key's worker task exists
//! only while the key has work, so idle rooms cost nothing. Used for inbound events (the
//! inbox), outbound sends (the outbox) and remote events (the remote queue, per portal).
//!
//! An operator may trade order for speed in busy rooms ([`Overlap`]): then up to `width`
//! items of one key that [`Overlap::lane`] puts in a lane are handled at once (started in
//! order, finishing in any order), but never two of one lane (one sender's messages keep
//! their order); any other item waits until those are done and runs alone, so an edit or
//! redaction never overtakes the message it refers to.

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
    /// The lane of an item that may run alongside the key's items of other lanes (items of
    /// one lane, such as one sender's, still run one after another); `None` for an item
    /// that runs alone.
    pub lane: fn(&T) -> Option<u64>,
}

#[cfg(any(test, feature = "internals"))]
impl<T> Overlap<T> {
    /// One item per key at a time.
    pub(crate) fn strict() -> Self {
        Self {
            width: 1,
            lane: |_| None,
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
    // Overlapping items in hand, each answering its lane when done (only when the operator
    // allowed a width above 1), and the lanes they hold.
    let mut in_hand = tokio::task::JoinSet::new();
    let mut lanes: Vec<(tokio::task::Id, u64)> = Vec::new();
    type Done = Option<Result<(tokio::task::Id, ()), tokio::task::JoinError>>;
    let finished = |done: Done, lanes: &mut Vec<(tokio::task::Id, u64)>| {
        let id = match done {
            Some(Ok((id, ()))) => id,
            Some(Err(e)) => e.id(),
            None => return,
        };
        lanes.retain(|(task, _)| *task != id);
        inner.pending.fetch_sub(1, Ordering::Relaxed);
    };
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(_) if !in_hand.is_empty() => {
                tokio::select! {
                    Some(item) = rx.recv() => item,
                    done = in_hand.join_next_with_id() => {
                        finished(done, &mut lanes);
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
        if let Some(lane) = (inner.overlap.width > 1)
            .then(|| (inner.overlap.lane)(&item))
            .flatten()
        {
            // After the lane's earlier item, and within the width.
            while in_hand.len() >= inner.overlap.width || lanes.iter().any(|(_, l)| *l == lane) {
                let done = in_hand.join_next_with_id().await;
                finished(done, &mut lanes);
            }
            let handler = inner.handler.clone();
            let task = in_hand.spawn_on(async move { handler.handle(item).await }, &inner.runtime);
            lanes.push((task.id(), lane));
            continue;
        }
        // Runs alone: after everything before it.
        while let Some(done) = in_hand.join_next_with_id().await {
            finished(Some(done), &mut lanes);
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
            lane: |item: &(u64, String, bool)| item.2.then_some(item.0),
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

    /// Items `(seq, queue, lane)`; records what each lane of each queue has in hand.
    #[derive(Default)]
    struct Lanes {
        in_hand: Mutex<HashMap<(String, u64), u64>>,
        order: Mutex<HashMap<(String, u64), Vec<u64>>>,
        in_queue: Mutex<HashMap<String, usize>>,
        widest: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ItemHandler<(u64, String, u64)> for Lanes {
        async fn handle(&self, (seq, queue, lane): (u64, String, u64)) {
            let key = (queue.clone(), lane);
            if let Some(other) = self.in_hand.lock().unwrap().insert(key.clone(), seq) {
                panic!("{seq} ran alongside {other} of its lane");
            }
            let width = {
                let mut in_queue = self.in_queue.lock().unwrap();
                let n = in_queue.entry(queue.clone()).or_default();
                *n += 1;
                *n
            };
            self.widest
                .fetch_max(width, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5 + (seq * 7) % 3)).await;
            *self.in_queue.lock().unwrap().get_mut(&queue).unwrap() -= 1;
            self.in_hand.lock().unwrap().remove(&key);
            self.order.lock().unwrap().entry(key).or_default().push(seq);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_of_one_lane_keep_their_order_while_lanes_overlap() {
        let rec = Arc::new(Lanes::default());
        let overlap = Overlap {
            width: 8,
            lane: |item: &(u64, String, u64)| Some(item.2),
        };
        let dispatcher = KeyedQueue::new(rec.clone(), tokio::runtime::Handle::current(), overlap);
        for seq in 0..600u64 {
            // Two queues, five senders (lanes) in each.
            let queue = format!("!{}", seq % 2);
            dispatcher.dispatch(&queue.clone(), (seq, queue, seq / 2 % 5));
        }
        for _ in 0..1000 {
            if dispatcher.pending() == 0 && dispatcher.active_queues() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(dispatcher.pending(), 0, "every item handled");
        let order = rec.order.lock().unwrap();
        assert_eq!(order.len(), 10);
        assert_eq!(order.values().map(Vec::len).sum::<usize>(), 600);
        for (lane, seqs) in order.iter() {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "lane {lane:?} out of order: {seqs:?}"
            );
        }
        let widest = rec.widest.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(widest, 5, "one item per lane at a time, every lane at once");
    }
}
