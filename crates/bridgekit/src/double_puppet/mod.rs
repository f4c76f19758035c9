//! Double puppeting: what a user's own remote account does (a message from their phone, a
//! reaction, a read marker) appears in Matrix from their own Matrix account instead of a
//! ghost.
//!
//! The bridge acts as the user with the token of a second appservice registration whose
//! user namespace covers them (`double_puppet.secrets`, turned on at each login), or with an
//! access token the user gives (`login-matrix`). What it sends as them carries
//! `fi.mau.double_puppet_source` (as mautrix bridges mark it), so when the homeserver hands
//! the event back it is known as the bridge's own and never bridged back to the network.
//! When the homeserver refuses the token (revoked, or the registration gone), puppeting
//! stops, the user is told once in their management room, and the ghost sends instead —
//! also the send that was refused.

pub(crate) mod commands;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ruma::api::client::account::whoami;
use ruma::events::AnyTimelineEvent;
use ruma::{EventId, OwnedEventId, OwnedUserId, UserId};

use crate::client::{ClientError, Intent};
use crate::context::BridgeContext;
use crate::ids::RemoteUserId;
use crate::store::{DoublePuppet, UserRecord};

/// The key marking content the bridge sent as a double puppet (its value: the appservice ID).
pub(crate) const SOURCE_KEY: &str = "fi.mau.double_puppet_source";

/// How the bridge authenticates as a real user.
#[derive(Clone)]
pub(crate) enum PuppetAuth {
    /// The double-puppet appservice's token, with `?user_id=`.
    Appservice(Arc<str>),
    /// The user's own access token.
    AccessToken(Arc<str>),
}

/// Double puppeting's state in this process. Lives in the bridge's context.
#[derive(Default)]
pub(crate) struct Puppets {
    /// Each user's way to act as them (`None`: off), read from the store on first use.
    auth: Mutex<HashMap<OwnedUserId, Option<PuppetAuth>>>,
    /// Whose remote account each running login is.
    by_remote: Mutex<HashMap<RemoteUserId, OwnedUserId>>,
    /// Events being redacted as a puppet: their redaction, handed back, is the bridge's own.
    redacting: Mutex<HashSet<OwnedEventId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Puppets {
    /// `remote` is the account of `user`'s running login.
    pub(crate) fn remember_login(&self, remote: RemoteUserId, user: OwnedUserId) {
        lock(&self.by_remote).insert(remote, user);
    }

    /// The login of remote account `remote` stopped.
    pub(crate) fn forget_login(&self, remote: &RemoteUserId) {
        lock(&self.by_remote).remove(remote);
    }

    /// The Matrix user whose running login is the remote account `remote`.
    fn owner_of(&self, remote: &RemoteUserId) -> Option<OwnedUserId> {
        lock(&self.by_remote).get(remote).cloned()
    }

    /// Forgets what is known of `user`'s puppeting (it changed in the store).
    fn invalidate(&self, user: &UserId) {
        lock(&self.auth).remove(user);
    }

    /// Notes that `event` is being redacted as a puppet.
    pub(crate) fn redacting(&self, event: &EventId) {
        lock(&self.redacting).insert(event.to_owned());
    }
}

/// How to act as `user` now; [`ClientError::DoublePuppetOff`] when the bridge may not.
pub(crate) async fn auth(ctx: &BridgeContext, user: &UserId) -> Result<PuppetAuth, ClientError> {
    let cached = lock(&ctx.puppets().auth).get(user).cloned();
    let auth = match cached {
        Some(auth) => auth,
        None => {
            let record = ctx.store().user(user).await?;
            let auth = record
                .and_then(|r| r.double_puppet)
                .filter(DoublePuppet::is_active)
                .and_then(|p| match p.access_token {
                    Some(token) => Some(PuppetAuth::AccessToken(token.into())),
                    None => secret(ctx).map(PuppetAuth::Appservice),
                });
            lock(&ctx.puppets().auth).insert(user.to_owned(), auth.clone());
            auth
        }
    };
    auth.ok_or_else(|| ClientError::DoublePuppetOff {
        user_id: user.to_owned(),
    })
}

fn secret(ctx: &BridgeContext) -> Option<Arc<str>> {
    ctx.options()
        .double_puppet
        .as_token
        .as_deref()
        .map(Arc::from)
}

/// Who sends what the remote user `remote` did: the Matrix user behind it, acting as
/// themselves, when it is their login's own account and they are double puppeted (with
/// `ghost` standing in if the homeserver refuses); else `ghost`.
pub(crate) async fn author(
    ctx: &BridgeContext,
    remote: &RemoteUserId,
    ghost: Intent,
) -> Result<Intent, ClientError> {
    let Some(user) = ctx.puppets().owner_of(remote) else {
        return Ok(ghost);
    };
    match auth(ctx, &user).await {
        Ok(_) => Ok(Intent::puppet(
            ctx.clone(),
            user,
            ghost.user_id().to_owned(),
        )),
        Err(ClientError::DoublePuppetOff { .. }) => Ok(ghost),
        Err(other) => Err(other),
    }
}

/// Whether `event`, as the homeserver hands it to the bridge, is one the bridge sent as a
/// double puppet: it is not bridged back to the network.
pub(crate) fn is_own_echo(ctx: &BridgeContext, json: &str, event: &AnyTimelineEvent) -> bool {
    use ruma::events::AnyMessageLikeEvent;
    if let AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomRedaction(
        ruma::events::room::redaction::RoomRedactionEvent::Original(redaction),
    )) = event
        && let Some(target) = redaction
            .content
            .redacts
            .as_ref()
            .or(redaction.redacts.as_ref())
        && lock(&ctx.puppets().redacting).remove(target)
    {
        return true;
    }
    if !json.contains(SOURCE_KEY) {
        return false;
    }
    let source = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["content"][SOURCE_KEY].as_str().map(str::to_owned));
    source.as_deref() == Some(ctx.appservice_id())
}

/// Adds the double-puppet mark to message content.
pub(crate) fn mark(
    ctx: &BridgeContext,
    content: &serde_json::value::RawValue,
) -> Box<serde_json::value::RawValue> {
    let mut value: serde_json::Value =
        serde_json::from_str(content.get()).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert(SOURCE_KEY.into(), ctx.appservice_id().into());
    }
    serde_json::value::to_raw_value(&value).unwrap_or_else(|_| content.to_owned())
}

/// The homeserver refused to let the bridge act as `user` (`error`): puppeting stops, and
/// the user hears it once.
pub(crate) async fn refused(ctx: &BridgeContext, user: &UserId, error: &ClientError) {
    if matches!(error, ClientError::DoublePuppetOff { .. }) {
        return; // already stopped
    }
    let reason = error.to_string();
    let stopped = async {
        let mut record = ctx
            .store()
            .user(user)
            .await?
            .unwrap_or_else(|| UserRecord::new(user.to_owned()));
        let Some(puppet) = record.double_puppet.as_mut().filter(|p| p.is_active()) else {
            return Ok::<bool, crate::StoreError>(false);
        };
        puppet.stopped = Some(reason.clone());
        ctx.store().put_user(&record).await?;
        Ok(true)
    }
    .await;
    ctx.puppets().invalidate(user);
    lock(&ctx.puppets().auth).insert(user.to_owned(), None);
    match stopped {
        Ok(true) => {
            tracing::warn!(%user, %reason, "double puppeting stopped: the homeserver refused the token");
            let prefix = &ctx.options().command_prefix;
            let text = format!(
                "Double puppeting stopped: the homeserver refused to let the bridge act as you ({reason}). What your remote account does now appears from a ghost. `{prefix}login-matrix <access token>` turns it on again."
            );
            tell_queued(ctx, user, &text).await;
        }
        Ok(false) => {}
        Err(error) => {
            tracing::error!(%error, %user, "could not record that double puppeting stopped")
        }
    }
}

/// Queues a notice to `user`'s management room without waiting for it: this runs inside a
/// send, and the notice is another.
async fn tell_queued(ctx: &BridgeContext, user: &UserId, text: &str) {
    let room = match ctx.store().user(user).await {
        Ok(Some(UserRecord {
            management_room: Some(room),
            ..
        })) => room,
        _ => {
            tracing::warn!(%user, text, "no management room to tell the user");
            return;
        }
    };
    let content = ruma::events::room::message::RoomMessageEventContent::notice_plain(text);
    let queued = match crate::client::Outgoing::message(&room, &content) {
        Ok(outgoing) => ctx.bot().queue(outgoing).await.map(drop),
        Err(error) => Err(error),
    };
    if let Err(error) = queued {
        tracing::warn!(%error, %user, "could not tell the user that double puppeting stopped");
    }
}

/// Checks with the homeserver that `auth` acts as `user`.
async fn verify(ctx: &BridgeContext, user: &UserId, auth: &PuppetAuth) -> Result<(), ClientError> {
    let request = whoami::v3::Request::new();
    let retry = ctx.client().retry_policy();
    let answer = match auth {
        PuppetAuth::Appservice(token) => {
            ctx.client()
                .execute_with_token(request, token, Some(user), retry)
                .await?
        }
        PuppetAuth::AccessToken(token) => {
            ctx.client()
                .execute_with_token(request, token, None, retry)
                .await?
        }
    };
    if answer.user_id != user {
        return Err(ClientError::Response(format!(
            "the token belongs to {}, not to {user}",
            answer.user_id
        )));
    }
    Ok(())
}

/// Turns double puppeting on for `user` with `puppet` after checking it with the homeserver.
pub(crate) async fn enable(
    ctx: &BridgeContext,
    user: &UserId,
    puppet: DoublePuppet,
) -> Result<(), crate::BridgeError> {
    let auth = match &puppet.access_token {
        Some(token) => PuppetAuth::AccessToken(token.as_str().into()),
        None => PuppetAuth::Appservice(
            secret(ctx).ok_or("double_puppet.secrets has no secret for this homeserver")?,
        ),
    };
    verify(ctx, user, &auth).await?;
    let mut record = ctx
        .store()
        .user(user)
        .await?
        .unwrap_or_else(|| UserRecord::new(user.to_owned()));
    record.double_puppet = Some(puppet);
    ctx.store().put_user(&record).await?;
    lock(&ctx.puppets().auth).insert(user.to_owned(), Some(auth));
    Ok(())
}

/// Turns double puppeting off for `user`; whether it was on.
pub(crate) async fn disable(
    ctx: &BridgeContext,
    user: &UserId,
) -> Result<bool, crate::BridgeError> {
    let Some(mut record) = ctx.store().user(user).await? else {
        return Ok(false);
    };
    let was_on = record.double_puppet.take().is_some_and(|p| p.is_active());
    ctx.store().put_user(&record).await?;
    ctx.puppets().invalidate(user);
    Ok(was_on)
}

/// After `user` logged in: with the homeserver's secret configured, puppeting goes on
/// unless it already is. Says so in a sentence for the login's answer (or why it could not).
pub(crate) async fn on_login(ctx: &BridgeContext, user: &UserId) -> Option<String> {
    secret(ctx)?;
    if auth(ctx, user).await.is_ok() {
        return None;
    }
    match enable(ctx, user, DoublePuppet::with_secret()).await {
        Ok(()) => Some("What you do from elsewhere on your remote account appears as you in Matrix (double puppeting).".into()),
        Err(error) => {
            tracing::warn!(%error, %user, "automatic double puppeting failed");
            Some(format!("Double puppeting could not be turned on: {error}."))
        }
    }
}

/// Redacts a message that held a secret: as its sender when the bridge may act as them (a
/// user may always redact their own message), else as the bot.
pub(crate) async fn redact_secret(
    ctx: &BridgeContext,
    sender: &UserId,
    room: &ruma::RoomId,
    event_id: &EventId,
) -> Result<(), ClientError> {
    if auth(ctx, sender).await.is_ok() {
        let puppet = Intent::puppet(ctx.clone(), sender.to_owned(), ctx.bot_user_id().to_owned());
        ctx.puppets().redacting(event_id);
        if puppet
            .redact(room, event_id, Some("a secret"))
            .await
            .is_ok()
        {
            return Ok(());
        }
    }
    ctx.bot()
        .redact(room, event_id, Some("a secret"))
        .await
        .map(drop)
}
