//! Hands inbox items to the bridge: parses them into ruma types, does what the framework
//! does on its own (accepting the bot's invites, dropping the bridge's own echoes), calls the
//! bridge, and removes the item from the inbox once handled.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "encryption")]
use ruma::events::AnyMessageLikeEvent;
use ruma::events::room::member::MembershipState;
use ruma::events::{AnyStateEvent, AnyTimelineEvent};

use crate::bridge::{Bridge, ToDeviceEvent};
use crate::context::BridgeContext;
use crate::keyed_queue::ItemHandler;
use crate::store::queues::{InboxItem, ItemKind};

/// Longest pause between attempts of an event whose handler asked to retry later.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

pub(crate) struct InboxHandler {
    pub bridge: Arc<dyn Bridge>,
    pub ctx: BridgeContext,
    /// Becomes true once the bridge has started; items wait for it (they are already durable).
    pub started: tokio::sync::watch::Receiver<bool>,
    /// Rooms whose first event waits to be retried: shutdown does not wait for them (the
    /// event stays in the inbox for the next run).
    pub waiting_to_retry: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl ItemHandler<(u64, InboxItem)> for InboxHandler {
    async fn handle(&self, (seq, item): (u64, InboxItem)) {
        if !*self.started.borrow() {
            let _ = self.started.clone().wait_for(|started| *started).await;
        }
        tracing::trace!(seq, queue = %item.queue, json = %head(&item.json), "inbox item");
        let started = std::time::Instant::now();
        let kind = match item.kind {
            ItemKind::Timeline => "timeline",
            ItemKind::Ephemeral => "ephemeral",
            ItemKind::ToDevice => "to_device",
            ItemKind::DeviceData => "device_data",
        };
        let ok = crate::client::with_durable_origin(async {
            match item.kind {
                ItemKind::Timeline => self.timeline(&item.json).await,
                ItemKind::Ephemeral => self.ephemeral(&item.json).await,
                ItemKind::ToDevice => self.to_device(&item.json).await,
                ItemKind::DeviceData => self.device_data(&item.json).await,
            }
        })
        .await;
        metrics::histogram!("bridgekit_handler_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        if !ok {
            metrics::counter!("bridgekit_handler_errors_total", "kind" => kind).increment(1);
        }
        if self.ctx.outbox().is_stopping() {
            // The shutdown may have cut its sends short (and a bridge may have ignored the
            // error): it is handed over again at the next start.
            return;
        }
        if let Err(error) = self.ctx.backend().complete_item(seq).await {
            tracing::error!(%error, seq, "could not mark an inbox item handled; it will be handed over again after a restart");
        }
    }
}

impl InboxHandler {
    /// Each of these returns false when the event could not be parsed or the bridge failed.
    async fn timeline(&self, json: &str) -> bool {
        let Some(event) = parse_event(json) else {
            return false;
        };
        #[cfg(feature = "encryption")]
        if let Some(encryption) = self.ctx.encryption() {
            encryption.observe(&event, json);
            if let AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomEncrypted(_)) = &event
                && !self.ctx.is_own_user(event.sender())
            {
                let (room_id, event_id) = (event.room_id().to_owned(), event.event_id().to_owned());
                return match encryption.decrypt(&room_id, json).await {
                    Ok(plain) => match parse_event(&plain) {
                        Some(event) => {
                            DECRYPTED
                                .scope((), self.timeline_event(event, &plain))
                                .await
                        }
                        None => false,
                    },
                    Err(undecryptable) => {
                        tracing::warn!(error = %undecryptable, %event_id, "an encrypted message could not be decrypted");
                        let outcome = Err(undecryptable.into());
                        crate::incoming::outcome_report(&self.ctx, &room_id, &event_id, &outcome)
                            .await;
                        false
                    }
                };
            }
        }
        self.timeline_event(event, json).await
    }

    /// A parsed (and, in an encrypted room, decrypted) timeline event.
    async fn timeline_event(&self, event: AnyTimelineEvent, json: &str) -> bool {
        let event_id = event.event_id().to_owned();
        tracing::trace!(%event_id, room_id = %event.room_id(), event_type = %event.event_type(), "handling a timeline event");
        if let AnyTimelineEvent::State(AnyStateEvent::RoomMember(member)) = &event
            && member.state_key() == self.ctx.bot_user_id()
            && *member.membership() == MembershipState::Invite
        {
            match self.ctx.bot().join(member.room_id()).await {
                Ok(()) => {
                    tracing::info!(room_id = %member.room_id(), inviter = %member.sender(), "bot accepted an invite")
                }
                Err(error) => {
                    tracing::warn!(%error, room_id = %member.room_id(), "bot could not accept an invite")
                }
            }
        }
        if self.ctx.is_own_user(event.sender())
            || crate::double_puppet::is_own_echo(&self.ctx, json, &event)
        {
            return true;
        }
        let reportable = crate::incoming::resolve::is_reportable(&event);
        let room_id = event.room_id().to_owned();
        #[cfg(feature = "encryption")]
        if reportable
            && self.ctx.options().encryption.require
            && !self.ctx.is_encrypted_room(&room_id)
        {
            let outcome = Err(crate::encryption::EncryptionRequired.into());
            crate::incoming::outcome_report(&self.ctx, &room_id, &event_id, &outcome).await;
            return false;
        }
        let Some(outcome) = self.handle_with_retries(event).await else {
            return false; // stopping: the item stays in the inbox for the next start
        };
        match &outcome {
            Err(error)
                if error
                    .downcast_ref::<crate::incoming::Unsupported>()
                    .is_some() =>
            {
                tracing::debug!(%error, %event_id, "the bridge does not support this event");
            }
            Err(error) => tracing::warn!(%error, %event_id, "bridge failed to handle an event"),
            Ok(()) => {}
        }
        if reportable {
            crate::incoming::outcome_report(&self.ctx, &room_id, &event_id, &outcome).await;
        }
        outcome.is_ok()
    }

    /// Hands `event` to the bridge; a [`RetryLater`](crate::RetryLater) answer is retried with
    /// backoff (the room's later events wait, so order holds) until it succeeds, fails
    /// otherwise, or `bridge.handler_retry_secs` runs out. `None` when the bridge stops.
    async fn handle_with_retries(
        &self,
        event: AnyTimelineEvent,
    ) -> Option<Result<(), crate::BridgeError>> {
        let limit = self.ctx.options().handler_retry;
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_secs(1);
        loop {
            let outcome = self.bridge.handle_event(&self.ctx, event.clone()).await;
            let retry =
                matches!(&outcome, Err(e) if e.downcast_ref::<crate::RetryLater>().is_some());
            if !retry || started.elapsed() >= limit {
                return Some(outcome);
            }
            if let Err(error) = &outcome {
                tracing::warn!(%error, event_id = %event.event_id(), retry_in_ms = backoff.as_millis() as u64, "the bridge could not carry out an event for now; it stays in the inbox and is retried");
            }
            metrics::counter!("bridgekit_handler_retries_total").increment(1);
            let outbox = self.ctx.outbox();
            let waiting = &self.waiting_to_retry;
            waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let stopped = tokio::select! {
                _ = tokio::time::sleep(crate::client::jitter(backoff)) => false,
                _ = outbox.stopped() => true,
            };
            waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            if stopped {
                return None;
            }
            backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
        }
    }

    async fn ephemeral(&self, json: &str) -> bool {
        match serde_json::from_str(json) {
            Ok(event) => match self.bridge.handle_ephemeral(&self.ctx, event).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "bridge failed to handle an ephemeral event");
                    false
                }
            },
            Err(error) => {
                tracing::warn!(%error, event = %head(json), "skipping an unparsable ephemeral event");
                false
            }
        }
    }

    async fn to_device(&self, json: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Target {
            to_user_id: ruma::OwnedUserId,
            to_device_id: Option<ruma::OwnedDeviceId>,
        }
        match serde_json::from_str::<Target>(json) {
            Ok(target) => {
                #[cfg(feature = "encryption")]
                if let Some(encryption) = self.ctx.encryption()
                    && let Some(result) = encryption
                        .to_device(
                            &self.ctx,
                            &target.to_user_id,
                            target.to_device_id.as_deref(),
                            json,
                        )
                        .await
                {
                    return match result {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::warn!(%error, "the encryption device could not take a to-device event");
                            false
                        }
                    };
                }
                let event = ToDeviceEvent {
                    to_user_id: target.to_user_id,
                    to_device_id: target.to_device_id,
                    event: ruma::serde::Raw::from_json(
                        serde_json::value::RawValue::from_string(json.to_owned())
                            .expect("came from JSON"),
                    ),
                };
                match self.bridge.handle_to_device(&self.ctx, event).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(%error, "bridge failed to handle a to-device event");
                        false
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "skipping a to-device event without a valid to_user_id");
                false
            }
        }
    }
}

impl InboxHandler {
    /// A transaction's device lists and key counts: for the encryption device, if any.
    async fn device_data(&self, json: &str) -> bool {
        #[cfg(feature = "encryption")]
        if let Some(encryption) = self.ctx.encryption() {
            return match encryption.device_data(&self.ctx, json).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "the encryption device could not take device data");
                    false
                }
            };
        }
        let _ = json;
        true
    }
}

tokio::task_local! {
    /// Set while the event being handled is one the framework decrypted.
    static DECRYPTED: ();
}

/// Whether the event being handled came encrypted (see [`crate::MatrixOrigin::decrypted`]).
pub(crate) fn handling_decrypted() -> bool {
    DECRYPTED.try_with(|_| ()).is_ok()
}

fn parse_event(json: &str) -> Option<AnyTimelineEvent> {
    match serde_json::from_str(json) {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::warn!(%error, event = %head(json), "skipping an event that does not parse as a Matrix event");
            None
        }
    }
}

fn head(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
