//! Which handler carries a Matrix event: the sender's login in the portal (their preferred
//! one there, else their first), else the bridge's own handlers (a relay, or a refusal).

use std::sync::Arc;

use ruma::UserId;

use super::client::{LoginContext, NetworkClient};
use super::permissions::Permission;
use crate::bridge::{Bridge, BridgeError};
use crate::context::BridgeContext;
use crate::incoming::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixOrigin, MatrixReaction, MatrixRedaction,
    MatrixRoomChange, RetryLater, Sent,
};
use crate::store::LoginState;

/// Who handles one Matrix event.
pub(crate) enum Handler<'a, B: ?Sized> {
    /// The bridge's own handlers.
    Bridge(&'a B),
    /// A login's network client.
    Login(Arc<dyn NetworkClient>, LoginContext),
    /// The portal's relay login, for a user without one there (named `name`).
    Relay(Arc<dyn NetworkClient>, LoginContext, String),
}

/// The handler of an event from `origin.sender` in `origin.portal`. A sender whose login in
/// the portal is not running yet (the bridge is still reconnecting it) gets
/// [`RetryLater`]: the event waits for it rather than going out another way.
pub(crate) async fn handler<'a, B: Bridge + ?Sized>(
    bridge: &'a B,
    ctx: &BridgeContext,
    origin: &MatrixOrigin,
) -> Result<Handler<'a, B>, BridgeError> {
    let Some(portal) = &origin.portal else {
        return Ok(Handler::Bridge(bridge));
    };
    if bridge.login_flows().is_empty() {
        return Ok(Handler::Bridge(bridge));
    }
    let links = ctx.store().portal_logins(&portal.key).await?;
    let mine: Vec<_> = links
        .into_iter()
        .filter(|l| l.user_id == origin.sender)
        .collect();
    let Some(link) = mine.iter().find(|l| l.preferred).or(mine.first()) else {
        return relay_or_bridge(bridge, ctx, origin, &portal.key).await;
    };
    // Someone whose permission was lowered no longer acts through their login.
    if ctx.permissions().of(&origin.sender) < Permission::User {
        return Ok(Handler::Bridge(bridge));
    }
    let id = &link.login_id;
    let needs_user = |state: LoginState| -> BridgeError {
        format!(
            "your login {id} needs you ({state}); log in again with `{}relogin {id}`",
            ctx.options().command_prefix
        )
        .into()
    };
    match ctx.logins().client(id) {
        Some(_) if ctx.logins().state(id).is_some_and(LoginState::needs_user) => Err(needs_user(
            ctx.logins().state(id).unwrap_or(LoginState::UnknownError),
        )),
        Some(client) => Ok(Handler::Login(
            client,
            LoginContext::new(ctx.clone(), id.clone(), link.user_id.clone()),
        )),
        None => match ctx.store().login(id).await? {
            // A link left behind by a login that is gone.
            None => {
                ctx.store().remove_portal_login(&portal.key, id).await?;
                Ok(Handler::Bridge(bridge))
            }
            Some(record) if record.state.needs_user() => Err(needs_user(record.state)),
            // Still being reconnected: the event waits for it.
            Some(_) => Err(RetryLater::new(format!("your login {id} is not running yet")).into()),
        },
    }
}

/// The portal's relay, when relay mode is on and its relay login runs; else the bridge.
async fn relay_or_bridge<'a, B: Bridge + ?Sized>(
    bridge: &'a B,
    ctx: &BridgeContext,
    origin: &MatrixOrigin,
    portal: &crate::store::PortalKey,
) -> Result<Handler<'a, B>, BridgeError> {
    if !ctx.options().relay.enabled || ctx.permissions().of(&origin.sender) < Permission::Relay {
        return Ok(Handler::Bridge(bridge));
    }
    let Some(id) = super::relay::relay_of(ctx, portal).await? else {
        return Ok(Handler::Bridge(bridge));
    };
    let Some(record) = ctx.store().login(&id).await? else {
        // The relay logged out: the portal has no relay any more.
        super::relay::forget(ctx, portal).await?;
        return Ok(Handler::Bridge(bridge));
    };
    let Some(client) = ctx.logins().client(&id) else {
        return Err(RetryLater::new(format!("the relay login {id} is not running yet")).into());
    };
    let name = match ctx.bot().displayname_of(&origin.sender).await {
        Ok(Some(name)) => name,
        _ => origin.sender.localpart().to_owned(),
    };
    let login = LoginContext::new(ctx.clone(), id, record.user_id);
    Ok(Handler::Relay(client, login, name))
}

/// Refused through a relay (it would look like the relay's own), said to the room.
fn not_relayed(what: &'static str) -> BridgeError {
    format!("{what} cannot go through this room's relay (they would look like its own); log in to send them").into()
}

impl<B: Bridge + ?Sized> Handler<'_, B> {
    pub(crate) async fn message(
        &self,
        ctx: &BridgeContext,
        message: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        match self {
            Handler::Bridge(bridge) => bridge.handle_message(ctx, message).await,
            Handler::Login(client, login) => client.handle_message(login, message).await,
            Handler::Relay(client, login, name) => {
                let mut message = message;
                message.content.msgtype =
                    super::relay::format(&ctx.options().relay, name, &message.content.msgtype);
                client.handle_message(login, message).await
            }
        }
    }

    pub(crate) async fn edit(
        &self,
        ctx: &BridgeContext,
        edit: MatrixEdit,
    ) -> Result<(), BridgeError> {
        match self {
            Handler::Bridge(bridge) => bridge.handle_edit(ctx, edit).await,
            Handler::Login(client, login) => client.handle_edit(login, edit).await,
            Handler::Relay(client, login, name) => {
                let mut edit = edit;
                edit.new_content.msgtype =
                    super::relay::format(&ctx.options().relay, name, &edit.new_content.msgtype);
                client.handle_edit(login, edit).await
            }
        }
    }

    pub(crate) async fn reaction(
        &self,
        ctx: &BridgeContext,
        reaction: MatrixReaction,
    ) -> Result<(), BridgeError> {
        match self {
            Handler::Bridge(bridge) => bridge.handle_reaction(ctx, reaction).await,
            Handler::Login(client, login) => client.handle_reaction(login, reaction).await,
            Handler::Relay(..) => Err(not_relayed("reactions")),
        }
    }

    pub(crate) async fn redaction(
        &self,
        ctx: &BridgeContext,
        redaction: MatrixRedaction,
    ) -> Result<(), BridgeError> {
        match self {
            Handler::Bridge(bridge) => bridge.handle_redaction(ctx, redaction).await,
            Handler::Login(client, login) => client.handle_redaction(login, redaction).await,
            Handler::Relay(..) => Err(not_relayed("deletions")),
        }
    }

    pub(crate) async fn room_change(
        &self,
        ctx: &BridgeContext,
        change: MatrixRoomChange,
    ) -> Result<(), BridgeError> {
        match self {
            Handler::Bridge(bridge) => bridge.handle_room_change(ctx, change).await,
            Handler::Login(client, login) => client.handle_room_change(login, change).await,
            Handler::Relay(..) => Ok(()),
        }
    }
}

/// A membership change goes to every running login of the member (their connections follow
/// their rooms), and to the bridge's handler when the member has none.
pub(crate) async fn membership<B: Bridge + ?Sized>(
    bridge: &B,
    ctx: &BridgeContext,
    membership: MatrixMembership,
) -> Result<(), BridgeError> {
    let member: &UserId = &membership.user_id;
    if bridge.login_flows().is_empty() || ctx.is_own_user(member) {
        return bridge.handle_membership(ctx, membership).await;
    }
    let mut handled = false;
    for record in ctx.store().logins_of(member).await? {
        if let Some(client) = ctx.logins().client(&record.id) {
            let login = LoginContext::new(ctx.clone(), record.id, record.user_id);
            client.handle_membership(&login, membership.clone()).await?;
            handled = true;
        }
    }
    if handled {
        Ok(())
    } else {
        bridge.handle_membership(ctx, membership).await
    }
}
