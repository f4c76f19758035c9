//! The framework keeps the books: after a Matrix → remote handler succeeds, what it did on
//! the remote side is recorded here — the portal of a room the bridge adopts, the message
//! mapping, a bridged reaction, a deletion — so no bridge writes a mapping by hand.

use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId};

use super::{MatrixOrigin, RedactedTarget};
use crate::context::BridgeContext;
use crate::ids::{ChatId, MessageId, PartId, RemoteTxnId};
use crate::store::{MessageMapping, Portal, PortalKey, ReactionMapping, StoreError};

/// What [`Bridge::handle_message`](crate::Bridge::handle_message) did on the remote network;
/// the framework records it.
///
/// ```
/// # use bridgekit::{Sent, MessageId};
/// # fn f(id: MessageId, at: bridgekit::ruma::MilliSecondsSinceUnixEpoch) -> Sent {
/// Sent::message(id).at(at)
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// The remote message's ID; `None` when the network reports it later with its echo (see
    /// [`Sent::pending`]).
    pub id: Option<MessageId>,
    /// Which part of the remote message the Matrix event became (empty: the only part).
    pub part: PartId,
    /// When the network says it was sent; the Matrix event's time when `None`.
    pub timestamp: Option<MilliSecondsSinceUnixEpoch>,
}

impl Sent {
    /// The network took the message and gave it `id`.
    pub fn message(id: MessageId) -> Self {
        Self {
            id: Some(id),
            ..Self::default()
        }
    }

    /// The network took the message but gives its ID only when it reports it back: pass
    /// [`MatrixMessage::txn_id`](crate::MatrixMessage::txn_id) with it, and the framework maps
    /// the echo ([`RemoteMessage::with_txn_id`](crate::RemoteMessage::with_txn_id)) to this
    /// event instead of bridging it again. Also right for messages with no remote counterpart.
    pub fn pending() -> Self {
        Self::default()
    }

    /// The Matrix event became this part of the remote message.
    pub fn part(mut self, part: PartId) -> Self {
        self.part = part;
        self
    }

    /// The network's time for the message.
    pub fn at(mut self, timestamp: MilliSecondsSinceUnixEpoch) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// The transaction ID for the network when a message from Matrix event `event_id` is sent.
pub(crate) fn txn_id_for(event_id: &ruma::EventId) -> RemoteTxnId {
    RemoteTxnId::new(event_id.as_str()).expect("an event ID is neither empty nor holds a NUL")
}

/// The Matrix event a transaction ID from [`txn_id_for`] stands for.
pub(crate) fn echo_origin(txn_id: &RemoteTxnId) -> Option<OwnedEventId> {
    OwnedEventId::try_from(txn_id.as_str()).ok()
}

/// Stores `mapping`; the same remote message already mapped to the same event (recorded from
/// the network's echo before the handler returned) is not a conflict.
pub(crate) async fn record_mapping(
    ctx: &BridgeContext,
    mapping: &MessageMapping,
) -> Result<(), StoreError> {
    match ctx.store().insert_message(mapping).await {
        Err(StoreError::Conflict(reason)) => {
            let existing = ctx.store().message_by_event(&mapping.event_id).await?;
            match existing {
                Some(e) if e.remote_id == mapping.remote_id && e.part == mapping.part => Ok(()),
                _ => Err(StoreError::Conflict(reason)),
            }
        }
        other => other,
    }
}

/// Records that the room of `origin` is now the portal of `chat`
/// ([`Bridge::portal_for_room`](crate::Bridge::portal_for_room)).
pub(crate) async fn record_portal(
    ctx: &BridgeContext,
    origin: &mut MatrixOrigin,
    chat: ChatId,
) -> Result<(), StoreError> {
    let portal = Portal::new(PortalKey::new(chat), origin.room_id.clone());
    ctx.store().put_portal(&portal).await?;
    origin.portal = Some(portal);
    Ok(())
}

/// Records a handled Matrix message's mapping.
pub(crate) async fn record_sent(
    ctx: &BridgeContext,
    origin: &MatrixOrigin,
    sent: Sent,
) -> Result<(), StoreError> {
    if let Some(id) = sent.id {
        let mapping = MessageMapping::new(origin.room_id.clone(), id, origin.event_id.clone())
            .with_part(sent.part)
            .with_sender(origin.sender.clone())
            .with_timestamp(sent.timestamp.unwrap_or(origin.timestamp));
        record_mapping(ctx, &mapping).await?;
    }
    Ok(())
}

/// Records a reaction the network took, so a later redaction of it finds its target.
pub(crate) async fn record_reaction(
    ctx: &BridgeContext,
    origin: &MatrixOrigin,
    target: &MessageMapping,
    key: &str,
) -> Result<(), StoreError> {
    let reaction = ReactionMapping::new(
        origin.room_id.clone(),
        target.remote_id.clone(),
        origin.sender.clone(),
        key,
        origin.event_id.clone(),
    );
    ctx.store().insert_reaction(&reaction).await
}

/// Forgets what a redaction the network carried out removed.
pub(crate) async fn record_redaction(
    ctx: &BridgeContext,
    target: &RedactedTarget,
) -> Result<(), StoreError> {
    match target {
        RedactedTarget::Message(message) => {
            ctx.store().delete_message(&message.event_id).await?;
        }
        RedactedTarget::Reaction(reaction) => {
            ctx.store().delete_reaction(&reaction.event_id).await?;
        }
    }
    Ok(())
}
