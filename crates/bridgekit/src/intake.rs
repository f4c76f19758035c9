//! Taking transactions in: one writer task records them in the store durably, then the HTTP
//! handler may answer 200 and the items go to the dispatcher.
//!
//! The writer drains every transaction waiting at once and records them with one flush
//! (group commit), so concurrent requests share the fsync. Running one writer also makes
//! deduplication race-free: a concurrent duplicate is recorded after the first and waits for
//! the same flush.

use tokio::sync::{mpsc, oneshot};

use crate::keyed_queue::KeyedQueue;
use std::sync::Arc;

use crate::store::Backend;
use crate::store::queues::{InboxItem, IncomingTransaction, Recorded, TRANSACTION_RECORDS_KEPT};

/// Most transactions recorded under one flush.
const MAX_GROUP: usize = 64;
/// Events acknowledged but not yet handled, beyond which a new transaction waits for room
/// (see [`Intake::room_for_more`]) and is refused with 503 if none comes: the homeserver keeps
/// it and retries, so a bridge stuck behind a homeserver outage (or a slow network) holds at
/// most this many in memory. 2,000 is a fifth of a second of echo at full speed here: enough
/// to keep the handlers busy while the next transaction arrives, short enough that an event
/// waits behind at most that much (echo p99 in the closed loop: ~1 s with 10,000, ~0.25 s
/// with 2,000, throughput unchanged; docs/store-memory.md).
pub const MAX_PENDING_EVENTS: usize = 2_000;
/// How long a transaction that finds the backlog full waits for room before the 503. A 503
/// costs more than waiting: Synapse retries after 2 s, then 4, 8… (it gives a request 60 s).
pub const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a waiting transaction looks at the backlog again.
const BACKLOG_POLL: std::time::Duration = std::time::Duration::from_millis(5);
/// Prune the transaction record after this many transactions.
const PRUNE_EVERY: u64 = 1024;

/// The outcome of taking in one transaction.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Intaken {
    /// Recorded; this many items were queued for the bridge.
    New(usize),
    /// A retry of a transaction already taken in.
    Duplicate,
}

struct Job {
    txn: IncomingTransaction,
    reply: oneshot::Sender<Result<Intaken, String>>,
}

/// The sending half of the writer.
#[derive(Clone)]
pub(crate) struct Intake {
    jobs: mpsc::UnboundedSender<Job>,
    dispatcher: KeyedQueue<(u64, InboxItem)>,
}

impl Intake {
    /// Starts the writer task. It ends when every `Intake` handle is dropped.
    pub(crate) fn start(store: Arc<dyn Backend>, dispatcher: KeyedQueue<(u64, InboxItem)>) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, dispatcher.clone(), rx));
        Self { jobs, dispatcher }
    }

    /// Events handed over and not yet handled.
    pub(crate) fn pending(&self) -> usize {
        self.dispatcher.pending()
    }

    /// Waits until fewer than [`MAX_PENDING_EVENTS`] events are pending, or [`BACKLOG_WAIT`]
    /// has passed; returns the backlog then. Polls: it runs only while the bridge is behind,
    /// and the hot path (handlers finishing items) stays a plain counter decrement.
    pub(crate) async fn room_for_more(&self) -> usize {
        let give_up = tokio::time::Instant::now() + BACKLOG_WAIT;
        loop {
            let pending = self.pending();
            if pending < MAX_PENDING_EVENTS || tokio::time::Instant::now() >= give_up {
                return pending;
            }
            tokio::time::sleep(BACKLOG_POLL).await;
        }
    }

    /// Records `txn` durably; resolves once it is flushed (or was already recorded).
    pub(crate) async fn submit(&self, txn: IncomingTransaction) -> Result<Intaken, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { txn, reply })
            .map_err(|_| "the intake writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the intake writer has stopped".to_owned())?
    }
}

async fn writer(
    store: Arc<dyn Backend>,
    dispatcher: KeyedQueue<(u64, InboxItem)>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut since_prune = 0u64;
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let txns: Vec<IncomingTransaction> = jobs
            .iter_mut()
            .map(|j| {
                std::mem::replace(
                    &mut j.txn,
                    IncomingTransaction {
                        key: Vec::new(),
                        items: Vec::new(),
                    },
                )
            })
            .collect();
        match store.record_transactions(&txns).await {
            Ok(outcomes) => {
                for ((job, txn), outcome) in jobs.drain(..).zip(txns).zip(outcomes) {
                    let answer = match outcome {
                        Recorded::New(seqs) => {
                            let n = seqs.len();
                            for (seq, item) in seqs.into_iter().zip(txn.items) {
                                dispatcher.dispatch(&item.queue.clone(), (seq, item));
                            }
                            since_prune += 1;
                            Intaken::New(n)
                        }
                        Recorded::Duplicate => Intaken::Duplicate,
                    };
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot record transactions; the homeserver will retry them");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(error.to_string()));
                }
            }
        }
        if since_prune >= PRUNE_EVERY {
            since_prune = 0;
            if let Err(error) = store
                .prune_transaction_records(TRANSACTION_RECORDS_KEPT)
                .await
            {
                tracing::warn!(%error, "could not prune the transaction record");
            }
        }
    }
}
