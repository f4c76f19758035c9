//! From a parsed timeline event to the bridge's capability for it: look up the portal and
//! the bridged targets, then call the matching [`Bridge`] method.

use ruma::events::reaction::ReactionEvent;
use ruma::events::room::message::{MessageType, Relation, RoomMessageEvent};
use ruma::events::room::redaction::RoomRedactionEvent;
use ruma::events::{AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, StateEvent};
use ruma::{EventId, OwnedEventId};

use super::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixOrigin, MatrixReaction, MatrixRedaction,
    MatrixRoomChange, RedactedTarget, RoomChange,
};
use crate::bridge::{Bridge, BridgeError};
use crate::context::BridgeContext;
use crate::logins::route;

/// Whether an event is one the user expects to see bridged (and to hear about if it is not).
pub(crate) fn is_reportable(event: &AnyTimelineEvent) -> bool {
    matches!(
        event,
        AnyTimelineEvent::MessageLike(
            AnyMessageLikeEvent::RoomMessage(_)
                | AnyMessageLikeEvent::Reaction(_)
                | AnyMessageLikeEvent::RoomRedaction(_)
                | AnyMessageLikeEvent::RoomEncrypted(_)
        )
    )
}

async fn origin(
    ctx: &BridgeContext,
    event: &AnyTimelineEvent,
) -> Result<MatrixOrigin, BridgeError> {
    Ok(MatrixOrigin {
        room_id: event.room_id().to_owned(),
        event_id: event.event_id().to_owned(),
        sender: event.sender().to_owned(),
        portal: ctx.store().portal_by_room(event.room_id()).await?,
        timestamp: event.origin_server_ts(),
        decrypted: crate::inbox_handler::handling_decrypted(),
    })
}

async fn mapping(
    ctx: &BridgeContext,
    event_id: &EventId,
) -> Result<Option<crate::store::MessageMapping>, BridgeError> {
    Ok(ctx.store().message_by_event(event_id).await?)
}

/// Hands `event` to the capability that handles it. Events whose target was never bridged
/// (an edit of an unbridged message, say) are skipped: there is nothing to apply them to.
pub(crate) async fn hand_over<B: Bridge + ?Sized>(
    bridge: &B,
    ctx: &BridgeContext,
    event: AnyTimelineEvent,
) -> Result<(), BridgeError> {
    let origin = origin(ctx, &event).await?;
    if ctx.permissions().of(&origin.sender) == crate::logins::Permission::None {
        return skip("an event from a user the bridge may not serve", &origin);
    }
    match event {
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomEncrypted(_)) => {
            Err(super::EncryptedRoomUnsupported.into())
        }
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
            RoomMessageEvent::Original(msg),
        )) => {
            let mut content = msg.content;
            match content.relates_to.take() {
                Some(Relation::Replacement(replacement)) => {
                    let Some(target) = mapping(ctx, &replacement.event_id).await? else {
                        return skip("an edit of a message that was not bridged", &origin);
                    };
                    let handler = route::handler(bridge, ctx, &origin).await?;
                    let edit = MatrixEdit {
                        origin,
                        target,
                        new_content: replacement.new_content,
                    };
                    handler.edit(ctx, edit).await
                }
                relation => {
                    if origin.portal.is_none()
                        && let MessageType::Text(text) = &content.msgtype
                    {
                        let prefix = &ctx.options().command_prefix;
                        // While a login waits for an answer here, everything but `cancel`
                        // is the answer (a password may start with the prefix).
                        let answering = crate::logins::commands::awaits_answer(
                            ctx,
                            &origin.sender,
                            &origin.room_id,
                        ) && text.body.trim() != format!("{prefix}cancel");
                        if !answering && let Some(command) = text.body.strip_prefix(prefix.as_str())
                        {
                            return super::commands::run(bridge, ctx, origin, command).await;
                        }
                        if let Some(answer) = crate::logins::commands::answer(
                            ctx,
                            &origin.sender,
                            &origin.room_id,
                            &origin.event_id,
                            &text.body,
                        )
                        .await
                        {
                            return super::commands::reply(ctx, &origin.room_id, "login", answer)
                                .await;
                        }
                    }
                    if let Some(portal) = &origin.portal
                        && let MessageType::Text(text) = &content.msgtype
                        && let Some(word) =
                            text.body.trim().strip_prefix(&ctx.options().command_prefix)
                        && (word == "set-relay" || word == "unset-relay")
                    {
                        let answer = crate::logins::relay::command(
                            ctx,
                            &origin.sender,
                            &portal.key,
                            word == "set-relay",
                        )
                        .await;
                        return super::commands::reply(ctx, &origin.room_id, word, answer).await;
                    }
                    let mut origin = origin;
                    if origin.portal.is_none()
                        && let Some(chat) = bridge.portal_for_room(ctx, &origin.room_id).await?
                    {
                        super::books::record_portal(ctx, &mut origin, chat).await?;
                    }
                    let (reply_to, thread_root) = related(ctx, relation.as_ref()).await?;
                    content.relates_to = relation;
                    let message = MatrixMessage {
                        origin: origin.clone(),
                        content,
                        reply_to,
                        thread_root,
                    };
                    let sent = route::handler(bridge, ctx, &origin)
                        .await?
                        .message(ctx, message)
                        .await?;
                    Ok(super::books::record_sent(ctx, &origin, sent).await?)
                }
            }
        }
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::Reaction(ReactionEvent::Original(
            reaction,
        ))) => {
            let annotation = reaction.content.relates_to;
            let Some(target) = mapping(ctx, &annotation.event_id).await? else {
                return skip("a reaction to a message that was not bridged", &origin);
            };
            let handler = route::handler(bridge, ctx, &origin).await?;
            let reaction = MatrixReaction {
                origin: origin.clone(),
                target: target.clone(),
                key: annotation.key.clone(),
            };
            handler.reaction(ctx, reaction).await?;
            Ok(super::books::record_reaction(ctx, &origin, &target, &annotation.key).await?)
        }
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomRedaction(
            RoomRedactionEvent::Original(redaction),
        )) => {
            let Some(redacts) = redaction.content.redacts.or(redaction.redacts) else {
                return Ok(());
            };
            let target = match mapping(ctx, &redacts).await? {
                Some(message) => RedactedTarget::Message(message),
                None => match ctx.store().reaction_by_event(&redacts).await? {
                    Some(reaction) => RedactedTarget::Reaction(reaction),
                    None => return skip("a redaction of something that was not bridged", &origin),
                },
            };
            let handler = route::handler(bridge, ctx, &origin).await?;
            let redaction = MatrixRedaction {
                origin,
                target: target.clone(),
                reason: redaction.content.reason,
            };
            handler.redaction(ctx, redaction).await?;
            Ok(super::books::record_redaction(ctx, &target).await?)
        }
        AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(member))) => {
            let membership = MatrixMembership {
                remote_user: ctx.remote_user_behind(&member.state_key).await?,
                user_id: member.state_key,
                membership: member.content.membership,
                displayname: member.content.displayname,
                reason: member.content.reason,
                origin,
            };
            route::membership(bridge, ctx, membership).await
        }
        AnyTimelineEvent::State(AnyStateEvent::RoomName(StateEvent::Original(name))) => {
            let change = RoomChange::Name(name.content.name);
            route::handler(bridge, ctx, &origin)
                .await?
                .room_change(ctx, MatrixRoomChange { origin, change })
                .await
        }
        AnyTimelineEvent::State(AnyStateEvent::RoomTopic(StateEvent::Original(topic))) => {
            let change = RoomChange::Topic(topic.content.topic);
            route::handler(bridge, ctx, &origin)
                .await?
                .room_change(ctx, MatrixRoomChange { origin, change })
                .await
        }
        AnyTimelineEvent::State(AnyStateEvent::RoomAvatar(StateEvent::Original(avatar))) => {
            let change = RoomChange::Avatar(avatar.content.url);
            route::handler(bridge, ctx, &origin)
                .await?
                .room_change(ctx, MatrixRoomChange { origin, change })
                .await
        }
        other => bridge.handle_other_event(ctx, other).await,
    }
}

/// The bridged message replied to and the bridged thread root, from a message's relation.
async fn related(
    ctx: &BridgeContext,
    relation: Option<
        &Relation<ruma::events::room::message::RoomMessageEventContentWithoutRelation>,
    >,
) -> Result<
    (
        Option<crate::store::MessageMapping>,
        Option<crate::store::MessageMapping>,
    ),
    BridgeError,
> {
    let (reply, root): (Option<&OwnedEventId>, Option<&OwnedEventId>) = match relation {
        Some(Relation::Reply(reply)) => (Some(&reply.in_reply_to.event_id), None),
        Some(Relation::Thread(thread)) => (
            thread
                .in_reply_to
                .as_ref()
                .filter(|_| !thread.is_falling_back)
                .map(|r| &r.event_id),
            Some(&thread.event_id),
        ),
        _ => (None, None),
    };
    let reply = match reply {
        Some(id) => mapping(ctx, id).await?,
        None => None,
    };
    let root = match root {
        Some(id) => mapping(ctx, id).await?,
        None => None,
    };
    Ok((reply, root))
}

fn skip(what: &str, origin: &MatrixOrigin) -> Result<(), BridgeError> {
    tracing::debug!(event_id = %origin.event_id, room_id = %origin.room_id, "skipping {what}");
    Ok(())
}
