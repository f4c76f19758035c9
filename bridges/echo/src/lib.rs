//! The echo bridge: the template for writing a bridge with bridgekit.
//!
//! Its "remote network" lives in this process ([`network`]): a message a Matrix user sends
//! becomes a remote message, and the network answers with an echo of it from the remote
//! counterpart of that user, which the bridge posts back into the room as a ghost. The mapping
//! remote message ↔ Matrix event is stored, so editing the original edits the echo and
//! redacting the original redacts the echo.
//!
//! It uses only bridgekit's public API.

pub mod network;

use bridgekit::ruma::events::room::message::{
    OriginalRoomMessageEvent, Relation, ReplacementMetadata, RoomMessageEventContent,
};
use bridgekit::ruma::events::room::redaction::{OriginalRoomRedactionEvent, RoomRedactionEvent};
use bridgekit::ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent};
use bridgekit::ruma::{OwnedRoomId, RoomId, UserId};
use bridgekit::{
    Bridge, BridgeContext, BridgeError, MessageMapping, Outgoing, TxnIds, async_trait,
};

use network::{RemoteEvent, RemoteMessage};

/// The echo bridge. Stateless: everything it remembers is in the framework's store.
#[derive(Debug, Default)]
pub struct EchoBridge;

#[async_trait]
impl Bridge for EchoBridge {
    async fn handle_event(
        &self,
        ctx: &BridgeContext,
        event: AnyTimelineEvent,
    ) -> Result<(), BridgeError> {
        let AnyTimelineEvent::MessageLike(event) = event else {
            return Ok(());
        };
        let remote_event = match event {
            AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(msg)) => {
                matrix_message(ctx, msg).await?
            }
            AnyMessageLikeEvent::RoomRedaction(RoomRedactionEvent::Original(redaction)) => {
                matrix_redaction(ctx, &redaction).await?
            }
            _ => None,
        };
        // The remote network answers; its answer comes back into Matrix.
        if let Some((room_id, remote_event)) = remote_event {
            for answer in network::deliver(remote_event) {
                remote_to_matrix(ctx, &room_id, answer).await?;
            }
        }
        Ok(())
    }
}

/// Matrix → remote: a new message or an edit, translated to the remote network's terms.
async fn matrix_message(
    ctx: &BridgeContext,
    msg: OriginalRoomMessageEvent,
) -> Result<Option<(OwnedRoomId, RemoteEvent)>, BridgeError> {
    let author = remote_user_for(ctx, &msg.sender);
    if let Some(Relation::Replacement(replacement)) = &msg.content.relates_to {
        // An edit: which remote message does the edited event carry?
        let Some(original) = ctx.store().message_by_event(&replacement.event_id).await? else {
            return Ok(None);
        };
        let edit = RemoteEvent::Edit {
            id: original.remote_id,
            edit_id: network::remote_id_for(&msg.event_id),
            author,
            body: replacement.new_content.msgtype.body().to_owned(),
        };
        return Ok(Some((msg.room_id, edit)));
    }
    let id = network::remote_id_for(&msg.event_id);
    let mapping = MessageMapping::new(msg.room_id.clone(), id.clone(), msg.event_id.clone())
        .with_sender(msg.sender.clone());
    ctx.store().insert_message(&mapping).await?;
    let message = RemoteMessage {
        id,
        author,
        body: msg.content.body().to_owned(),
        displayname_hint: msg.sender.to_string(),
    };
    Ok(Some((msg.room_id, RemoteEvent::Message(message))))
}

/// Matrix → remote: a redaction becomes a deletion of the remote message.
async fn matrix_redaction(
    ctx: &BridgeContext,
    redaction: &OriginalRoomRedactionEvent,
) -> Result<Option<(OwnedRoomId, RemoteEvent)>, BridgeError> {
    let Some(target) = redaction
        .content
        .redacts
        .as_ref()
        .or(redaction.redacts.as_ref())
    else {
        return Ok(None);
    };
    let Some(original) = ctx.store().message_by_event(target).await? else {
        return Ok(None);
    };
    let reason = redaction.content.reason.clone();
    Ok(Some((
        redaction.room_id.clone(),
        RemoteEvent::Delete {
            id: original.remote_id,
            reason,
        },
    )))
}

/// Remote → Matrix: post what the remote network said, as the ghost of its author.
async fn remote_to_matrix(
    ctx: &BridgeContext,
    room_id: &RoomId,
    event: RemoteEvent,
) -> Result<(), BridgeError> {
    match event {
        RemoteEvent::Message(message) => {
            if ctx
                .store()
                .message_by_remote(room_id, &message.id, "")
                .await?
                .is_some()
            {
                return Ok(()); // already bridged (the event was handed over again after a restart)
            }
            let ghost = ctx.ghost(&message.author);
            if ctx
                .store()
                .ghost(ghost.user_id())
                .await?
                .displayname
                .is_none()
            {
                let name = sender_displayname(ctx, &message.displayname_hint).await;
                ghost.set_displayname(&format!("{name} (echo)")).await?;
            }
            let content = RoomMessageEventContent::text_plain(message.body);
            // A send ID derived from the remote message: a repeat after a crash is the same send.
            let txn_id = TxnIds::derived(&[room_id.as_str(), &message.id]);
            // Durable before it is attempted; the framework stores remote ID → event ID on arrival.
            let outgoing = Outgoing::message(room_id, &content)?
                .txn_id(txn_id)
                .remote_id(message.id);
            ghost.submit(outgoing).await?;
        }
        RemoteEvent::Edit {
            id,
            edit_id,
            author,
            body,
        } => {
            let Some(target) = ctx.store().message_by_remote(room_id, &id, "").await? else {
                return Ok(());
            };
            let ghost = ctx.ghost(&author);
            // `make_replacement` puts the text in `m.new_content` and adds the "* " fallback body.
            let content = RoomMessageEventContent::text_plain(body)
                .make_replacement(ReplacementMetadata::new(target.event_id, None));
            let txn_id = TxnIds::derived(&[room_id.as_str(), &edit_id]);
            ghost.send_with_txn_id(room_id, &content, &txn_id).await?;
        }
        RemoteEvent::Delete { id, reason } => {
            let Some(target) = ctx.store().message_by_remote(room_id, &id, "").await? else {
                return Ok(());
            };
            // The echo's own sender redacts it; the bot if the sender is not ours.
            let intent = target
                .sender
                .as_deref()
                .and_then(|s| ctx.intent_for(s))
                .unwrap_or_else(|| ctx.bot());
            let txn_id = TxnIds::derived(&[room_id.as_str(), &id, "delete"]);
            intent
                .redact_with_txn_id(room_id, &target.event_id, reason.as_deref(), &txn_id)
                .await?;
        }
    }
    Ok(())
}

/// The Matrix sender's displayname, or its localpart when it has none. Asked once per ghost:
/// later messages find the ghost's name in the store.
async fn sender_displayname(ctx: &BridgeContext, sender: &str) -> String {
    let Ok(sender) = UserId::parse(sender) else {
        return sender.to_owned();
    };
    match ctx.bot().displayname_of(&sender).await {
        Ok(Some(name)) => name,
        _ => sender.localpart().to_owned(),
    }
}

/// The remote user standing for a Matrix user: the localpart for local users, the whole ID
/// for users of other servers (so two Alices never share a ghost).
fn remote_user_for(ctx: &BridgeContext, user_id: &UserId) -> String {
    if user_id.server_name() == ctx.server_name() {
        user_id.localpart().to_owned()
    } else {
        user_id.as_str().to_owned()
    }
}
