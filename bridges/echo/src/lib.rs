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

use bridgekit::ruma::events::room::message::MessageType;
use bridgekit::ruma::{RoomId, UserId};
use bridgekit::{
    Bridge, BridgeContext, BridgeError, MatrixEdit, MatrixMessage, MatrixRedaction, MessageMapping,
    Portal, PortalKey, RedactedTarget, RemoteContent, RemoteUser, async_trait,
};

use network::{RemoteEvent, RemoteMessage};

/// The echo bridge. Stateless: everything it remembers is in the framework's store.
#[derive(Debug, Default)]
pub struct EchoBridge;

#[async_trait]
impl Bridge for EchoBridge {
    /// Matrix → remote: a new message. The framework has already dropped the bridge's own
    /// echoes and turned commands (`!help`) in rooms that are not portals into answers.
    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        msg: MatrixMessage,
    ) -> Result<(), BridgeError> {
        let origin = &msg.origin;
        // Every room the bot is in is a chat of the echo network, keyed by its room ID.
        let key = PortalKey::new(origin.room_id.as_str());
        if origin.portal.is_none() {
            let portal = Portal::new(key.clone(), origin.room_id.clone());
            ctx.store().put_portal(&portal).await?;
        }
        let id = network::remote_id_for(&origin.event_id);
        let mapping =
            MessageMapping::new(origin.room_id.clone(), id.clone(), origin.event_id.clone())
                .with_sender(origin.sender.clone());
        ctx.store().insert_message(&mapping).await?;
        let body = match &msg.content.msgtype {
            MessageType::Text(text) => text.body.clone(),
            other => other.body().to_owned(),
        };
        let message = RemoteMessage {
            id,
            author: remote_user_for(ctx, &origin.sender),
            body,
            displayname_hint: origin.sender.to_string(),
        };
        deliver(ctx, &key, RemoteEvent::Message(message)).await
    }

    /// Matrix → remote: an edit of a bridged message.
    async fn handle_edit(&self, ctx: &BridgeContext, edit: MatrixEdit) -> Result<(), BridgeError> {
        let event = RemoteEvent::Edit {
            id: edit.target.remote_id,
            edit_id: network::remote_id_for(&edit.origin.event_id),
            author: remote_user_for(ctx, &edit.origin.sender),
            body: edit.new_content.msgtype.body().to_owned(),
        };
        deliver(ctx, &PortalKey::new(edit.origin.room_id.as_str()), event).await
    }

    /// Matrix → remote: a redaction becomes a deletion of the remote message.
    async fn handle_redaction(
        &self,
        ctx: &BridgeContext,
        redaction: MatrixRedaction,
    ) -> Result<(), BridgeError> {
        let RedactedTarget::Message(target) = redaction.target else {
            return Ok(()); // the echo network has no reactions
        };
        let event = RemoteEvent::Delete {
            id: target.remote_id,
            reason: redaction.reason,
        };
        deliver(
            ctx,
            &PortalKey::new(redaction.origin.room_id.as_str()),
            event,
        )
        .await
    }

    fn version(&self) -> String {
        format!("echo-bridge {}", env!("CARGO_PKG_VERSION"))
    }
}

/// Hands `event` to the network and bridges what the network says back.
async fn deliver(
    ctx: &BridgeContext,
    key: &PortalKey,
    event: RemoteEvent,
) -> Result<(), BridgeError> {
    for answer in network::deliver(event) {
        let room_id = RoomId::parse(&key.remote_id)?;
        let event = remote_to_matrix(ctx, &room_id, answer).await?;
        // Applied now, in order: the handler returns once the echo is in the room.
        ctx.apply_remote_event(key, event).await?;
    }
    Ok(())
}

/// Remote → Matrix: the network's event in the framework's terms.
async fn remote_to_matrix(
    ctx: &BridgeContext,
    room_id: &RoomId,
    event: RemoteEvent,
) -> Result<bridgekit::RemoteEvent, BridgeError> {
    Ok(match event {
        RemoteEvent::Message(message) => {
            let mut author = RemoteUser::new(&message.author);
            // The ghost's name, asked of the homeserver once: later it is in the store.
            let ghost = ctx.ghost_user_id(&message.author);
            if ctx
                .store()
                .ghost(&ghost)
                .await
                .map(|g| g.displayname.is_none())
                .unwrap_or(true)
            {
                let name = sender_displayname(ctx, &message.displayname_hint).await;
                author = author.with_displayname(format!("{name} (echo)"));
            }
            let content = RemoteContent::text(message.body);
            bridgekit::RemoteEvent::Message(bridgekit::RemoteMessage::new(
                message.id, author, content,
            ))
        }
        RemoteEvent::Edit {
            id,
            edit_id,
            author,
            body,
        } => bridgekit::RemoteEvent::Edit {
            target_id: id,
            edit_id,
            sender: RemoteUser::new(author),
            content: RemoteContent::text(body),
        },
        RemoteEvent::Delete { id, reason } => {
            // The echo's author deletes it (a ghost may redact its own events; the bot may
            // lack the power to redact anyone else's).
            let parts = ctx.store().message_parts(room_id, &id).await?;
            let author = parts
                .first()
                .and_then(|part| part.sender.as_deref())
                .and_then(|ghost| ctx.remote_user_of(ghost));
            bridgekit::RemoteEvent::Delete {
                target_id: id,
                sender: author.map(RemoteUser::new),
                reason,
            }
        }
    })
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
