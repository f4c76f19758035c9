//! Portals coming into being, and remote users changing their IDs.

use ruma::events::AnyInitialStateEvent;
use ruma::serde::Raw;
use serde_json::json;

use super::{ChatInfo, RemoteUser, apply};
use crate::bridge::BridgeError;
use crate::client::CreateRoom;
use crate::context::BridgeContext;
use crate::ids::RemoteUserId;
use crate::store::{Portal, PortalKey};

/// Creates the portal of `key` (room, ghosts, `m.bridge`, history, invites), or brings an
/// existing one up to date with `info`.
pub(super) async fn new_chat(
    ctx: &BridgeContext,
    key: &PortalKey,
    info: ChatInfo,
) -> Result<(), BridgeError> {
    let room_id = match ctx.store().portal_by_key(key).await? {
        Some(portal) => portal.room_id,
        None => {
            let mut room = CreateRoom::new().state(bridge_info(ctx, key, info.name.as_deref()));
            if let Some(name) = &info.name {
                room = room.name(name.clone());
            }
            if let Some(topic) = &info.topic {
                room = room.topic(topic.clone());
            }
            if info.is_direct {
                room = room.direct();
            }
            for (user, level) in &info.power {
                room = room.power(user.clone(), *level);
            }
            #[cfg(feature = "encryption")]
            let encrypted = ctx.options().encryption.default && ctx.encryption().is_some();
            #[cfg(feature = "encryption")]
            if encrypted {
                let event = format!(
                    r#"{{"type":"m.room.encryption","state_key":"","content":{}}}"#,
                    crate::encryption::DEFAULT_SETTINGS
                );
                room = room.state(Raw::from_json(
                    serde_json::value::RawValue::from_string(event).expect("valid JSON"),
                ));
            }
            let room_id = ctx.bot().create_room(room).await?;
            #[cfg(feature = "encryption")]
            if let (true, Some(encryption)) = (encrypted, ctx.encryption()) {
                encryption.created_encrypted(&room_id);
            }
            ctx.store()
                .put_portal(&Portal::new(key.clone(), room_id.clone()))
                .await?;
            tracing::info!(%room_id, chat = %key.remote_id, "portal created");
            room_id
        }
    };
    for member in &info.members {
        apply::ghost(ctx, member)
            .await?
            .ensure_joined(&room_id)
            .await?;
    }
    // History goes in before anyone is invited, so nobody is notified of old messages.
    for message in info.history {
        apply::message(ctx, &room_id, message).await?;
    }
    for user in &info.invite {
        let invited = ctx.bot().invite(&room_id, user).await;
        match invited {
            Ok(()) => {}
            // Already in the room (or already invited): nothing to do.
            Err(e) if e.status() == Some(403) && e.to_string().contains("already") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `m.bridge` (and its older `uk.half-shot.bridge` name), so clients can show where the room
/// is bridged to.
fn bridge_info(
    ctx: &BridgeContext,
    key: &PortalKey,
    name: Option<&str>,
) -> Raw<AnyInitialStateEvent> {
    let state_key = format!("bridgekit://{}/{}", ctx.appservice_id(), key.remote_id);
    let content = json!({
        "bridgebot": ctx.bot_user_id(),
        "protocol": {"id": ctx.appservice_id(), "displayname": ctx.appservice_id()},
        "channel": {"id": key.remote_id, "displayname": name.unwrap_or(&key.remote_id)},
    });
    let event = json!({"type": "m.bridge", "state_key": state_key, "content": content});
    Raw::from_json(serde_json::value::to_raw_value(&event).expect("JSON value serializes"))
}

/// The ghost that stood for `old_id` now stands for `user.id`, with `user`'s profile.
pub(super) async fn rename(
    ctx: &BridgeContext,
    old_id: &RemoteUserId,
    user: &RemoteUser,
) -> Result<(), BridgeError> {
    let intent = ctx.ghost_for_remote(old_id).await?;
    // A new ID someone else had before (a nick given up and taken): that ghost lets go of it.
    if let Some((previous, _)) = ctx.store().ghost_by_remote(&user.id).await?
        && previous != intent.user_id()
    {
        ctx.store()
            .update_ghost(&previous, &|g| g.remote_id = None)
            .await?;
    }
    let new_id = user.id.clone();
    ctx.store()
        .update_ghost(intent.user_id(), &move |g| {
            g.remote_id = Some(new_id.clone())
        })
        .await?;
    apply::ghost(ctx, user).await?;
    Ok(())
}
