//! Sending through the outbox: every message, state event and redaction a bridge asks for is
//! written to the store (flushed) before it is attempted, then sent by one worker per room, in
//! the order queued. Network errors, 5xx and 429 are retried until the homeserver takes the
//! event or the bridge stops (it then stays in the outbox for the next start, with the same
//! txnId). Other refusals end the send with a typed error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ruma::OwnedEventId;
use tokio::sync::{oneshot, watch};

use super::{ClientError, Intent};
use crate::context::{BridgeContext, Shared};
use crate::keyed_queue::{ItemHandler, KeyedQueue};
use crate::store::queues::OutboxEntry;
use crate::store::{Backend, MessageMapping};

/// When each entry still in the outbox was queued (or resumed, for a previous run's), by seq.
type QueuedAt = Arc<Mutex<std::collections::BTreeMap<u64, std::time::Instant>>>;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Option<OwnedEventId>, ClientError>>>>>;

/// A send that is durably queued; await its event ID with [`PendingSend::event_id`].
#[derive(Debug)]
pub struct PendingSend {
    rx: oneshot::Receiver<Result<Option<OwnedEventId>, ClientError>>,
}

impl PendingSend {
    /// Waits until the homeserver took the event. `Ok(None)` means it was already there (a
    /// reaction the homeserver calls a duplicate annotation).
    pub async fn event_id(self) -> Result<Option<OwnedEventId>, ClientError> {
        self.rx.await.map_err(|_| ClientError::Stopped)?
    }
}

/// The queue of outbound sends.
pub(crate) struct Outbox {
    dispatcher: KeyedQueue<(u64, OutboxEntry)>,
    waiters: Waiters,
    queued_at: QueuedAt,
    shutdown: watch::Sender<bool>,
}

impl Outbox {
    /// `width`: sends of plain messages in flight per room (`bridge.sends_in_flight_per_room`).
    pub(crate) fn new(ctx: Weak<Shared>, runtime: tokio::runtime::Handle, width: usize) -> Self {
        let waiters = Waiters::default();
        let queued_at = QueuedAt::default();
        let (shutdown, stopping) = watch::channel(false);
        let sender = Arc::new(Sender {
            ctx,
            waiters: waiters.clone(),
            queued_at: queued_at.clone(),
            stopping,
        });
        Self {
            dispatcher: KeyedQueue::new(sender, runtime, crate::room_order::outbox(width)),
            waiters,
            queued_at,
            shutdown,
        }
    }

    /// Writes `entry` durably and queues it behind the earlier sends to its room.
    pub(crate) async fn queue(
        &self,
        store: &dyn Backend,
        entry: OutboxEntry,
    ) -> Result<PendingSend, ClientError> {
        if *self.shutdown.borrow() {
            return Err(ClientError::Stopped);
        }
        let seq = store.outbox_push(&entry).await?;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(seq, tx);
        self.mark_queued(seq);
        let room = entry.room_id.to_string();
        self.dispatcher.dispatch(&room, (seq, entry));
        Ok(PendingSend { rx })
    }

    /// Queues what a previous run left in the outbox, oldest first.
    pub(crate) async fn resume(&self, store: &dyn Backend) -> Result<usize, ClientError> {
        let pending = store.outbox_pending().await?;
        let n = pending.len();
        for (seq, entry) in pending {
            self.mark_queued(seq);
            let room = entry.room_id.to_string();
            self.dispatcher.dispatch(&room, (seq, entry));
        }
        Ok(n)
    }

    /// Stops sending: in-flight attempts are abandoned and stay in the outbox.
    pub(crate) fn stop(&self) {
        let _ = self.shutdown.send(true);
        // Callers waiting for an event ID get `Stopped`; their sends stay in the outbox.
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Rooms with sends in flight.
    pub(crate) fn active_rooms(&self) -> usize {
        self.dispatcher.active_queues()
    }

    fn mark_queued(&self, seq: u64) {
        self.queued_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(seq, std::time::Instant::now());
    }

    /// How long the oldest send still in the outbox has waited (a previous run's sends count
    /// from this start).
    pub(crate) fn oldest_age(&self) -> Option<Duration> {
        // Sequence numbers grow with time, so the first entry is the oldest.
        let queued = self.queued_at.lock().unwrap_or_else(|e| e.into_inner());
        queued.first_key_value().map(|(_, at)| at.elapsed())
    }

    /// Resolves once [`stop`](Self::stop) is called.
    pub(crate) async fn stopped(&self) {
        let _ = self.shutdown.subscribe().wait_for(|s| *s).await;
    }

    /// True once [`stop`](Self::stop) was called.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether `entry` may skip the outbox: it is sent while handling an inbox item (which
    /// stays in the inbox until its handler returns, so a crash hands it over again), its
    /// transaction ID is derived from what it carries (so the repeat is deduplicated by the
    /// homeserver), and no earlier send to its room is still queued (so order holds).
    pub(crate) fn may_send_inline(&self, outgoing: &super::Outgoing) -> bool {
        outgoing.txn_id.is_some()
            && DURABLE_ORIGIN.try_with(|_| ()).is_ok()
            && !self.dispatcher.has_queue(outgoing.room_id.as_str())
    }

    /// Sends `entry` now, in the caller's task, retrying like the outbox worker; records the
    /// remote message's mapping when it is taken.
    pub(crate) async fn send_inline(
        &self,
        ctx: &BridgeContext,
        mut entry: OutboxEntry,
    ) -> Result<Option<OwnedEventId>, ClientError> {
        let result = seal_and_deliver(ctx, None, &mut entry, &self.shutdown.subscribe())
            .await
            .unwrap_or(Err(ClientError::Stopped))?;
        if let Some(mapping) = mapping_for(&entry, result.as_ref()) {
            ctx.store().insert_message(&mapping).await?;
        }
        Ok(result)
    }
}

tokio::task_local! {
    /// Set while the router handles an inbox item: sends made then are covered by that item.
    static DURABLE_ORIGIN: ();
}

/// Runs `handler` as the handling of an inbox item (see [`Outbox::may_send_inline`]).
pub(crate) async fn with_durable_origin<F: std::future::Future>(handler: F) -> F::Output {
    DURABLE_ORIGIN.scope((), handler).await
}

struct Sender {
    ctx: Weak<Shared>,
    waiters: Waiters,
    queued_at: QueuedAt,
    stopping: watch::Receiver<bool>,
}

/// How long one attempt may retry inside the client before the outbox takes over.
const ATTEMPT_BUDGET: Duration = Duration::from_secs(5);

/// Longest pause between attempts while the homeserver is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[async_trait::async_trait]
impl ItemHandler<(u64, OutboxEntry)> for Sender {
    async fn handle(&self, (seq, mut entry): (u64, OutboxEntry)) {
        let Some(shared) = self.ctx.upgrade() else {
            return;
        };
        let ctx = BridgeContext::from_shared(shared);
        let Some(result) = seal_and_deliver(&ctx, Some(seq), &mut entry, &self.stopping).await
        else {
            return; // stopping: the entry stays in the outbox
        };
        let mapping = mapping_for(&entry, result.as_ref().ok().and_then(Option::as_ref));
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq)
            .filter(|waiter| !waiter.is_closed());
        if let (Err(error), None) = (&result, &waiter) {
            // Nobody waits for this send (queued and left, or resumed after a restart): the
            // room hears that it was given up.
            crate::incoming::report_given_up(&ctx, &entry.room_id, &entry.sender, error).await;
        }
        if let Err(error) = ctx.backend().outbox_complete(seq, mapping.as_ref()).await {
            tracing::error!(%error, seq, "could not record a finished send");
        }
        self.queued_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
        if let Some(waiter) = waiter {
            let _ = waiter.send(result);
        }
    }
}

/// Encrypts `entry` for an encrypted room (writing the sealed entry back over queued send
/// `seq` before the first attempt), then [`deliver`]s it.
async fn seal_and_deliver(
    ctx: &BridgeContext,
    seq: Option<u64>,
    entry: &mut OutboxEntry,
    stopping: &watch::Receiver<bool>,
) -> Option<Result<Option<OwnedEventId>, ClientError>> {
    #[cfg(feature = "encryption")]
    match crate::encryption::seal_with_retries(ctx, entry, stopping.clone()).await? {
        Ok(false) => {}
        Ok(true) => {
            if let Some(seq) = seq
                && let Err(error) = ctx.backend().outbox_replace(seq, entry).await
            {
                // Sent anyway: a resend after a crash encrypts again under the same txnId,
                // which the homeserver answers with the first event.
                tracing::warn!(%error, seq, "could not store a sealed send");
            }
        }
        Err(error) => {
            metrics::counter!("bridgekit_outbox_failed_total").increment(1);
            tracing::error!(%error, room_id = %entry.room_id, "a send could not be encrypted; it is given up");
            return Some(Err(error));
        }
    }
    #[cfg(not(feature = "encryption"))]
    let _ = seq;
    deliver(ctx, entry, stopping.clone()).await
}

/// Attempts `entry` until the homeserver takes or refuses it; `None` once the bridge stops.
/// Logs and counts the outcome. A double puppet the homeserver refuses hands the entry to
/// its fallback ghost (`entry.sender` changes).
async fn deliver(
    ctx: &BridgeContext,
    entry: &mut OutboxEntry,
    mut stopping: watch::Receiver<bool>,
) -> Option<Result<Option<OwnedEventId>, ClientError>> {
    // Short in-call retries: longer outages are this loop's job, with a warning each time.
    let retry = super::RetryPolicy {
        max_elapsed: ATTEMPT_BUDGET,
        ..ctx.client().retry_policy().clone()
    };
    let mut intent = Intent::new(ctx.clone(), entry.sender.clone()).with_retry(retry.clone());
    let mut backoff = Duration::from_millis(500);
    let first_attempt = std::time::Instant::now();
    let deadline = ctx.options().send_deadline;
    let result = loop {
        if *stopping.borrow() {
            return None;
        }
        let attempt = tokio::select! {
            result = intent.perform(entry) => result,
            _ = stopping.wait_for(|s| *s) => return None,
        };
        match attempt {
            Err(e) if e.is_puppet_refused() && entry.fallback.is_some() => {
                crate::double_puppet::refused(ctx, &entry.sender, &e).await;
                let ghost = entry.fallback.take().expect("checked above");
                tracing::info!(user = %entry.sender, %ghost, room_id = %entry.room_id, "the homeserver refused the double puppet; the ghost sends instead");
                entry.sender = ghost;
                intent = Intent::new(ctx.clone(), entry.sender.clone()).with_retry(retry.clone());
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, room_id = %entry.room_id, retry_in_ms = backoff.as_millis() as u64, "send delayed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(super::jitter(backoff)) => {}
                    _ = stopping.wait_for(|s| *s) => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            // Synapse may go on answering "not in room" for seconds after it accepted the
            // ghost's join, longer under load (docs/homeserver-behaviour.md): time cures it,
            // so it is retried like an outage, up to `bridge.send_deadline_secs`.
            Err(e) if e.is_not_in_room() && first_attempt.elapsed() < deadline => {
                tracing::warn!(error = %e, room_id = %entry.room_id, sender = %entry.sender, retry_in_ms = backoff.as_millis() as u64, "send refused: the homeserver does not see the sender in the room yet; will join again and retry");
                tokio::select! {
                    _ = tokio::time::sleep(super::jitter(backoff)) => {}
                    _ = stopping.wait_for(|s| *s) => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => break other,
        }
    };
    match &result {
        Ok(_) => metrics::counter!("bridgekit_outbox_sent_total").increment(1),
        Err(error) => {
            metrics::counter!("bridgekit_outbox_failed_total").increment(1);
            tracing::error!(%error, room_id = %entry.room_id, sender = %entry.sender, "the homeserver refused a send; it is given up");
        }
    }
    Some(result)
}

/// The mapping a finished send of a remote message records.
fn mapping_for(entry: &OutboxEntry, event_id: Option<&OwnedEventId>) -> Option<MessageMapping> {
    match (event_id, &entry.remote_id) {
        (Some(event_id), Some(remote_id)) => Some(
            MessageMapping::new(entry.room_id.clone(), remote_id.clone(), event_id.clone())
                .with_sender(entry.sender.clone()),
        ),
        _ => None,
    }
}
