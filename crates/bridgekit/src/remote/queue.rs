//! The remote queue: events a bridge hands over with [`BridgeContext::remote_event`] are
//! written to the store first (so the bridge may acknowledge them to its network at once),
//! then applied by one worker per portal, in the order given, and removed once applied. After
//! a crash the queue resumes in order; applying again changes nothing (messages already
//! mapped are skipped, sends use transaction IDs derived from remote IDs).

use std::sync::{Arc, Weak};

use super::{RemoteEvent, apply};
use crate::context::{BridgeContext, Shared};
use crate::keyed_queue::{ItemHandler, KeyedQueue};
use crate::store::queues::RemoteItem;
use crate::store::{Backend, PortalKey, StoreError};

type Queued = (u64, PortalKey, RemoteEvent);

/// The queue [`BridgeContext::remote_event`] feeds.
pub(crate) struct RemoteQueue {
    dispatcher: KeyedQueue<Queued>,
}

struct Applier {
    ctx: Weak<Shared>,
}

#[async_trait::async_trait]
impl ItemHandler<Queued> for Applier {
    async fn handle(&self, (seq, key, event): Queued) {
        let Some(shared) = self.ctx.upgrade() else {
            return;
        };
        let ctx = BridgeContext::from_shared(shared);
        // Like an inbox item, the event stays queued until applied, so its sends may go out
        // at once with their derived transaction IDs.
        let outcome = crate::client::with_durable_origin(apply::apply(&ctx, &key, event)).await;
        if ctx.outbox().is_stopping() {
            return; // cut short by the shutdown: applied again at the next start
        }
        if let Err(error) = outcome {
            tracing::warn!(%error, chat = %key.remote_id, "could not apply a remote event");
            crate::incoming::report_remote_failure(&ctx, &key, &*error).await;
        }
        if let Err(error) = ctx.backend().remote_complete(seq).await {
            tracing::error!(%error, seq, "could not mark a remote event applied; it is applied again after a restart");
        }
    }
}

impl RemoteQueue {
    /// `width`: plain messages of one portal applied at once (`bridge.sends_in_flight_per_room`).
    pub(crate) fn new(ctx: Weak<Shared>, runtime: tokio::runtime::Handle, width: usize) -> Self {
        Self {
            dispatcher: KeyedQueue::new(
                Arc::new(Applier { ctx }),
                runtime,
                crate::room_order::remote(width),
            ),
        }
    }

    /// Stores `event` durably, then queues it behind its portal's earlier events.
    pub(crate) async fn push(
        &self,
        store: &dyn Backend,
        key: PortalKey,
        event: RemoteEvent,
    ) -> Result<(), StoreError> {
        let json = serde_json::value::to_raw_value(&event)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let item = RemoteItem {
            portal: key.clone(),
            event: json,
        };
        let seq = store.remote_push(&item).await?;
        self.dispatcher.dispatch(&queue_of(&key), (seq, key, event));
        Ok(())
    }

    /// Queues what a previous run handed over and did not apply, oldest first. An entry
    /// that no longer decodes is dropped with an error (it fails alone).
    pub(crate) async fn resume(&self, store: &dyn Backend) -> Result<usize, StoreError> {
        let pending = store.remote_pending().await?;
        let n = pending.len();
        for (seq, item) in pending {
            match serde_json::from_str::<RemoteEvent>(item.event.get()) {
                Ok(event) => {
                    self.dispatcher
                        .dispatch(&queue_of(&item.portal), (seq, item.portal, event));
                }
                Err(error) => {
                    tracing::error!(%error, seq, "dropping a queued remote event that does not decode");
                    store.remote_complete(seq).await?;
                }
            }
        }
        Ok(n)
    }

    /// Portals with events still being applied.
    pub(crate) fn active(&self) -> usize {
        self.dispatcher.active_queues()
    }
}

fn queue_of(key: &PortalKey) -> String {
    format!(
        "{}\u{0}{}",
        key.remote_id,
        key.receiver.as_deref().unwrap_or("")
    )
}
