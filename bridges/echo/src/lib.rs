//! The echo bridge: the template for writing a bridge with bridgekit.
//!
//! Its "remote network" lives in this process ([`network`]): a message a Matrix user sends
//! becomes a post there, and the network answers with an echo of it from the poster's
//! counterpart, which the bridge shows in the room as a ghost — text, notices, emotes,
//! formatting and files as they came. The framework keeps the books: the handler returns the
//! post's ID, so editing or redacting the original edits or redacts the echo.
//!
//! It uses only bridgekit's public API.

pub mod network;

use bridgekit::ruma::{RoomId, UserId};
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatId, MatrixEdit, MatrixMessage, MatrixRedaction,
    MessageId, PortalKey, RedactedTarget, RemoteEvent, RemoteMessage, RemoteUser, RemoteUserId,
    Sent, async_trait,
};

use network::{Body, Happening, Post};

/// The echo bridge. Stateless: everything it remembers is in the framework's store.
#[derive(Debug, Default)]
pub struct EchoBridge;

#[async_trait]
impl Bridge for EchoBridge {
    /// Every room the bot is in is a chat of the echo network, named by its room ID.
    async fn portal_for_room(
        &self,
        _ctx: &BridgeContext,
        room_id: &RoomId,
    ) -> Result<Option<ChatId>, BridgeError> {
        Ok(Some(ChatId::new(room_id.as_str())?))
    }

    /// Matrix → remote: a new message becomes a post; the framework records its ID.
    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        msg: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        let origin = &msg.origin;
        let post = Post {
            id: network::id_for(&origin.event_id),
            author: network::author_for(ctx.server_name(), &origin.sender),
            body: Body::of(&msg.content.msgtype),
            author_hint: origin.sender.to_string(),
        };
        let id = MessageId::new(&post.id)?;
        deliver(ctx, &origin.room_id, Happening::Posted(post)).await?;
        Ok(Sent::message(id))
    }

    /// Matrix → remote: an edit of a bridged message.
    async fn handle_edit(&self, ctx: &BridgeContext, edit: MatrixEdit) -> Result<(), BridgeError> {
        let happening = Happening::Edited {
            id: edit.target.remote_id.into_string(),
            edit_id: network::id_for(&edit.origin.event_id),
            author: network::author_for(ctx.server_name(), &edit.origin.sender),
            body: Body::of(&edit.new_content.msgtype),
        };
        deliver(ctx, &edit.origin.room_id, happening).await
    }

    /// Matrix → remote: a redaction takes the post down.
    async fn handle_redaction(
        &self,
        ctx: &BridgeContext,
        redaction: MatrixRedaction,
    ) -> Result<(), BridgeError> {
        let RedactedTarget::Message(target) = redaction.target else {
            return Ok(()); // the echo network has no reactions
        };
        let happening = Happening::Deleted {
            id: target.remote_id.into_string(),
            reason: redaction.reason,
        };
        deliver(ctx, &redaction.origin.room_id, happening).await
    }

    fn version(&self) -> String {
        format!("echo-bridge {}", env!("CARGO_PKG_VERSION"))
    }
}

/// Hands `happening` to the network and bridges what the network says back, in order: the
/// handler returns once the echo is in the room.
async fn deliver(
    ctx: &BridgeContext,
    room: &RoomId,
    happening: Happening,
) -> Result<(), BridgeError> {
    let portal = PortalKey::new(ChatId::new(room.as_str())?);
    for answer in network::deliver(happening) {
        let event = to_matrix(ctx, answer).await?;
        ctx.apply_remote_event(&portal, event).await?;
    }
    Ok(())
}

/// Remote → Matrix: the network's happening in the framework's terms.
async fn to_matrix(ctx: &BridgeContext, happening: Happening) -> Result<RemoteEvent, BridgeError> {
    Ok(match happening {
        Happening::Posted(post) => {
            let author = RemoteUserId::new(post.author)?;
            let mut sender = RemoteUser::new(author.clone());
            // The ghost's name, asked of the homeserver once: later it is in the store.
            let ghost = ctx.ghost_user_id(&author);
            if ctx.store().ghost(&ghost).await?.displayname.is_none() {
                let name = sender_displayname(ctx, &post.author_hint).await;
                sender = sender.with_displayname(format!("{name} (echo)"));
            }
            RemoteEvent::Message(RemoteMessage::new(
                MessageId::new(post.id)?,
                sender,
                post.body.into_content(),
            ))
        }
        Happening::Edited {
            id,
            edit_id,
            author,
            body,
        } => RemoteEvent::Edit {
            target_id: MessageId::new(id)?,
            edit_id: MessageId::new(edit_id)?,
            sender: RemoteUser::new(RemoteUserId::new(author)?),
            content: body.into_content(),
        },
        // With no sender named, the echo's own ghost redacts it (the bot may lack the power).
        Happening::Deleted { id, reason } => RemoteEvent::Delete {
            target_id: MessageId::new(id)?,
            sender: None,
            reason,
        },
    })
}

/// The Matrix sender's displayname, or its localpart when it has none.
async fn sender_displayname(ctx: &BridgeContext, sender: &str) -> String {
    let Ok(sender) = UserId::parse(sender) else {
        return sender.to_owned();
    };
    match ctx.bot().displayname_of(&sender).await {
        Ok(Some(name)) => name,
        _ => sender.localpart().to_owned(),
    }
}
