//! Applying one remote event: resolve remote IDs through the store, act as the right ghost.

use ruma::RoomId;
use ruma::events::relation::{InReplyTo, Reply};
use ruma::events::room::message::{
    FileMessageEventContent, ImageMessageEventContent, MessageType, Relation, ReplacementMetadata,
    RoomMessageEventContent,
};
use ruma::events::room::name::RoomNameEventContent;
use ruma::events::room::topic::RoomTopicEventContent;

use super::{RemoteContent, RemoteEvent, RemoteMessage, RemoteUser, chat};
use crate::bridge::BridgeError;
use crate::client::{Intent, Outgoing, TxnIds};
use crate::context::BridgeContext;
use crate::ids::MessageId;
use crate::store::{MessageMapping, PortalKey, ReactionMapping};

/// How long a remote "typing" lasts unless renewed.
const TYPING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) async fn apply(
    ctx: &BridgeContext,
    key: &PortalKey,
    event: RemoteEvent,
) -> Result<(), BridgeError> {
    if let RemoteEvent::NewChat(info) = event {
        return chat::new_chat(ctx, key, info).await;
    }
    let portal = ctx
        .store()
        .portal_by_key(key)
        .await?
        .ok_or_else(|| format!("no portal for remote chat {:?}", key.remote_id))?;
    let room = portal.room_id.as_ref();
    match event {
        RemoteEvent::Message(msg) => message(ctx, room, msg).await,
        RemoteEvent::Backfill(messages) => {
            for msg in messages {
                message(ctx, room, msg).await?;
            }
            Ok(())
        }
        RemoteEvent::Edit {
            target_id,
            edit_id,
            sender,
            content,
        } => {
            let Some(target) = first_part(ctx, room, &target_id).await? else {
                return Ok(());
            };
            let ghost = ghost(ctx, &sender).await?;
            let content = message_content(&ghost, content)
                .await?
                .make_replacement(ReplacementMetadata::new(target.event_id, None));
            let intent = crate::double_puppet::author(ctx, &sender.id, ghost).await?;
            let txn =
                TxnIds::derived(&[room.as_str(), target_id.as_str(), "edit", edit_id.as_str()]);
            intent.send_with_txn_id(room, &content, &txn).await?;
            Ok(())
        }
        RemoteEvent::Reaction {
            target_id,
            sender,
            key: reaction_key,
        } => {
            let Some(target) = first_part(ctx, room, &target_id).await? else {
                return Ok(());
            };
            let intent = author(ctx, &sender).await?;
            let known = ctx
                .store()
                .reaction(room, &target_id, intent.user_id(), &reaction_key)
                .await?;
            if known.is_some() {
                return Ok(());
            }
            if let Some(event_id) = intent.react(room, &target.event_id, &reaction_key).await? {
                let mapping = ReactionMapping::new(
                    room.to_owned(),
                    target_id,
                    intent.user_id().to_owned(),
                    reaction_key,
                    event_id,
                );
                ctx.store().insert_reaction(&mapping).await?;
            }
            Ok(())
        }
        RemoteEvent::ReactionRemoved {
            target_id,
            sender,
            key: reaction_key,
        } => {
            // Sent as the user (double puppeting) or as the ghost: whichever has it.
            let ghost = ctx.ghost_for_remote(&sender.id).await?;
            let puppet = crate::double_puppet::author(ctx, &sender.id, ghost.clone()).await?;
            let mut found = None;
            for intent in [puppet, ghost] {
                if let Some(reaction) = ctx
                    .store()
                    .reaction(room, &target_id, intent.user_id(), &reaction_key)
                    .await?
                {
                    found = Some((intent, reaction));
                    break;
                }
            }
            let Some((intent, reaction)) = found else {
                return Ok(());
            };
            let txn = TxnIds::derived(&[room.as_str(), reaction.event_id.as_str(), "unreact"]);
            intent
                .redact_with_txn_id(room, &reaction.event_id, None, &txn)
                .await?;
            ctx.store().delete_reaction(&reaction.event_id).await?;
            Ok(())
        }
        RemoteEvent::Delete {
            target_id,
            sender,
            reason,
        } => {
            let deleter = match &sender {
                Some(user) => {
                    let ghost = ctx.ghost_for_remote(&user.id).await?;
                    Some(crate::double_puppet::author(ctx, &user.id, ghost).await?)
                }
                None => None,
            };
            for part in ctx.store().message_parts(room, &target_id).await? {
                // Its author redacts it (a user may always redact their own events): its
                // ghost, or the real user when the bridge may act as them (else the bot);
                // a deletion by someone else is the bot's.
                let author = part.sender.as_deref().map(|s| match ctx.intent_for(s) {
                    Some(own) => own,
                    None => Intent::puppet(ctx.clone(), s.to_owned(), ctx.bot_user_id().to_owned()),
                });
                let intent = match (&deleter, author) {
                    (Some(d), Some(a)) if d.user_id() == a.user_id() => a,
                    (None, Some(a)) => a,
                    _ => ctx.bot(),
                };
                let txn = TxnIds::derived(&[room.as_str(), part.event_id.as_str(), "delete"]);
                intent
                    .redact_with_txn_id(room, &part.event_id, reason.as_deref(), &txn)
                    .await?;
                ctx.store().delete_message(&part.event_id).await?;
            }
            Ok(())
        }
        RemoteEvent::Typing { sender, typing } => {
            let signal = Signal::Typing(typing.then_some(TYPING_TIMEOUT));
            signal_as_author(ctx, room, &sender, signal).await
        }
        RemoteEvent::ReadMarker { sender, up_to } => {
            let Some(target) = first_part(ctx, room, &up_to).await? else {
                return Ok(());
            };
            let signal = Signal::Read(target.event_id);
            signal_as_author(ctx, room, &sender, signal).await
        }
        RemoteEvent::MemberJoined(user) => {
            ghost(ctx, &user).await?.ensure_joined(room).await?;
            Ok(())
        }
        RemoteEvent::MemberLeft {
            user,
            reason,
            kicked_by,
        } => {
            let intent = ctx.ghost_for_remote(&user.id).await?;
            if !ctx.store().is_joined(intent.user_id(), room).await? {
                return Ok(());
            }
            match kicked_by {
                // The bot carries out kicks: it has the power; the reason names the kicker.
                Some(kicker) => {
                    let who = kicker.displayname.unwrap_or(kicker.id.into_string());
                    let reason = match reason {
                        Some(r) => format!("kicked by {who}: {r}"),
                        None => format!("kicked by {who}"),
                    };
                    ctx.bot()
                        .kick(room, intent.user_id(), Some(&reason))
                        .await?;
                }
                None => intent.leave(room, reason.as_deref()).await?,
            }
            Ok(())
        }
        RemoteEvent::ChatInfoChanged {
            name,
            topic,
            sender,
        } => {
            let intent = match &sender {
                Some(user) => ghost(ctx, user).await?,
                None => ctx.bot(),
            };
            if let Some(name) = name {
                intent
                    .send_state(room, "", &RoomNameEventContent::new(name))
                    .await?;
            }
            if let Some(topic) = topic {
                intent
                    .send_state(room, "", &RoomTopicEventContent::new(topic))
                    .await?;
            }
            Ok(())
        }
        RemoteEvent::NewChat(_) => unreachable!("handled above"),
    }
}

/// The ghost of `user`, registered, with its profile brought up to date (only changes are
/// sent).
pub(super) async fn ghost(ctx: &BridgeContext, user: &RemoteUser) -> Result<Intent, BridgeError> {
    let intent = ctx.ghost_for_remote(&user.id).await?;
    if let Some(name) = &user.displayname {
        intent.set_displayname(name).await?;
    }
    if let Some(avatar) = &user.avatar {
        intent.set_avatar(avatar).await?;
    }
    Ok(intent)
}

/// Who acts for what `user` did: the Matrix user behind it when double puppeted, else its
/// ghost (with its profile brought up to date either way).
async fn author(ctx: &BridgeContext, user: &RemoteUser) -> Result<Intent, BridgeError> {
    let ghost = ghost(ctx, user).await?;
    Ok(crate::double_puppet::author(ctx, &user.id, ghost).await?)
}

/// A signal sent directly (not queued): typing or a read receipt.
enum Signal {
    Typing(Option<std::time::Duration>),
    Read(ruma::OwnedEventId),
}

impl Signal {
    async fn send(&self, intent: &Intent, room: &RoomId) -> Result<(), crate::client::ClientError> {
        intent.ensure_joined(room).await?;
        match self {
            Signal::Typing(timeout) => intent.typing(room, *timeout).await,
            Signal::Read(event_id) => intent.read_receipt(room, event_id).await,
        }
    }
}

/// Sends `signal` as `user`'s author; when that is a double puppet the homeserver refuses,
/// puppeting stops and the ghost sends it.
async fn signal_as_author(
    ctx: &BridgeContext,
    room: &RoomId,
    user: &RemoteUser,
    signal: Signal,
) -> Result<(), BridgeError> {
    let intent = author(ctx, user).await?;
    match signal.send(&intent, room).await {
        Err(e) if intent.is_puppet() && e.is_puppet_refused() => {
            crate::double_puppet::refused(ctx, intent.user_id(), &e).await;
            let ghost = ctx.ghost_for_remote(&user.id).await?;
            Ok(signal.send(&ghost, room).await?)
        }
        other => Ok(other?),
    }
}

/// Sends a remote message as its author, unless it is already bridged.
pub(super) async fn message(
    ctx: &BridgeContext,
    room: &RoomId,
    msg: RemoteMessage,
) -> Result<(), BridgeError> {
    if first_part(ctx, room, &msg.id).await?.is_some() {
        return Ok(());
    }
    if let Some(txn_id) = &msg.txn_id
        && let Some(origin) = crate::incoming::echo_origin(txn_id)
    {
        // The network's echo of a message bridged from Matrix: the original is the Matrix
        // side of it. Its handler may not have returned the remote ID yet; this records it.
        let mut mapping = MessageMapping::new(room.to_owned(), msg.id.clone(), origin);
        if let Some(ts) = msg.timestamp {
            mapping = mapping.with_timestamp(ts);
        }
        crate::incoming::record_mapping(ctx, &mapping).await?;
        return Ok(());
    }
    let ghost = ghost(ctx, &msg.sender).await?;
    let mut content = message_content(&ghost, msg.content).await?;
    let intent = crate::double_puppet::author(ctx, &msg.sender.id, ghost).await?;
    if let Some(reply) = &msg.reply_to
        && let Some(target) = first_part(ctx, room, reply).await?
    {
        content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(target.event_id))));
    }
    let mut outgoing = Outgoing::message(room, &content)?
        .txn_id(TxnIds::derived(&[room.as_str(), msg.id.as_str()]))
        .remote_id(msg.id);
    if let Some(ts) = msg.timestamp {
        outgoing = outgoing.timestamp(ts);
    }
    intent.submit(outgoing).await?;
    Ok(())
}

async fn message_content(
    intent: &Intent,
    content: RemoteContent,
) -> Result<RoomMessageEventContent, BridgeError> {
    Ok(match content {
        RemoteContent::Text {
            body,
            html: Some(html),
        } => RoomMessageEventContent::text_html(body, html),
        RemoteContent::Text { body, html: None } => RoomMessageEventContent::text_plain(body),
        RemoteContent::Notice {
            body,
            html: Some(html),
        } => RoomMessageEventContent::notice_html(body, html),
        RemoteContent::Notice { body, html: None } => RoomMessageEventContent::notice_plain(body),
        RemoteContent::Emote {
            body,
            html: Some(html),
        } => RoomMessageEventContent::emote_html(body, html),
        RemoteContent::Emote { body, html: None } => RoomMessageEventContent::emote_plain(body),
        RemoteContent::MediaRef {
            msgtype,
            body,
            url,
            mimetype,
        } => media_by_reference(&msgtype, body, url, mimetype)?,
        RemoteContent::Media {
            body,
            data,
            mimetype,
        } => {
            let uri = intent.upload(data, &mimetype, Some(&body)).await?;
            let msgtype = if mimetype.starts_with("image/") {
                MessageType::Image(ImageMessageEventContent::plain(body, uri))
            } else {
                MessageType::File(FileMessageEventContent::plain(body, uri))
            };
            RoomMessageEventContent::new(msgtype)
        }
    })
}

/// The first (or only) part of a remote message in `room`, if it was bridged: one lookup,
/// since parts come ordered and the only part's empty ID sorts first.
async fn first_part(
    ctx: &BridgeContext,
    room: &RoomId,
    id: &MessageId,
) -> Result<Option<MessageMapping>, BridgeError> {
    Ok(ctx
        .store()
        .message_parts(room, id)
        .await?
        .into_iter()
        .next())
}

/// A message whose file is already on the homeserver, as the msgtype it names.
fn media_by_reference(
    msgtype: &str,
    body: String,
    url: ruma::OwnedMxcUri,
    mimetype: Option<String>,
) -> Result<RoomMessageEventContent, BridgeError> {
    use ruma::events::room::message::{AudioMessageEventContent, VideoMessageEventContent};
    let msgtype = match msgtype {
        "m.image" => {
            let mut c = ImageMessageEventContent::plain(body, url);
            if let Some(m) = mimetype {
                c.info = Some(Box::new(ruma::events::room::ImageInfo::new()));
                if let Some(i) = c.info.as_mut() {
                    i.mimetype = Some(m);
                }
            }
            MessageType::Image(c)
        }
        "m.video" => {
            let mut c = VideoMessageEventContent::plain(body, url);
            if let Some(m) = mimetype {
                let mut info = ruma::events::room::message::VideoInfo::new();
                info.mimetype = Some(m);
                c.info = Some(Box::new(info));
            }
            MessageType::Video(c)
        }
        "m.audio" => {
            let mut c = AudioMessageEventContent::plain(body, url);
            if let Some(m) = mimetype {
                let mut info = ruma::events::room::message::AudioInfo::new();
                info.mimetype = Some(m);
                c.info = Some(Box::new(info));
            }
            MessageType::Audio(c)
        }
        "m.file" => {
            let mut c = FileMessageEventContent::plain(body, url);
            if let Some(m) = mimetype {
                let mut info = ruma::events::room::message::FileInfo::new();
                info.mimetype = Some(m);
                c.info = Some(Box::new(info));
            }
            MessageType::File(c)
        }
        other => {
            return Err(format!(
                "media by reference needs m.image, m.file, m.video or m.audio, not {other}"
            )
            .into());
        }
    };
    Ok(RoomMessageEventContent::new(msgtype))
}
