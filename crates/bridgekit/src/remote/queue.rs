//! Per-portal ordering of remote events: one worker per portal with work, in arrival order.

use std::sync::{Arc, Weak};

use super::{RemoteEvent, apply};
use crate::context::{BridgeContext, Shared};
use crate::dispatch::{Dispatcher, ItemHandler};
use crate::store::PortalKey;

/// The queue [`BridgeContext::remote_event`] feeds.
pub(crate) struct RemoteQueue {
    dispatcher: Dispatcher<(PortalKey, RemoteEvent)>,
}

struct Applier {
    ctx: Weak<Shared>,
}

#[async_trait::async_trait]
impl ItemHandler<(PortalKey, RemoteEvent)> for Applier {
    async fn handle(&self, (key, event): (PortalKey, RemoteEvent)) {
        let Some(shared) = self.ctx.upgrade() else {
            return;
        };
        let ctx = BridgeContext { shared };
        if let Err(error) = apply::apply(&ctx, &key, event).await {
            tracing::warn!(%error, chat = %key.remote_id, "could not apply a remote event");
        }
    }
}

impl RemoteQueue {
    pub(crate) fn new(ctx: Weak<Shared>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            dispatcher: Dispatcher::new(Arc::new(Applier { ctx }), runtime),
        }
    }

    pub(crate) fn push(&self, key: PortalKey, event: RemoteEvent) {
        let queue = format!(
            "{}\u{0}{}",
            key.remote_id,
            key.receiver.as_deref().unwrap_or("")
        );
        self.dispatcher.dispatch(&queue, (key, event));
    }

    /// Portals with events still being applied.
    pub(crate) fn active(&self) -> usize {
        self.dispatcher.active_queues()
    }
}
