//! Acting as one user of the appservice: the bot or a ghost.
//!
//! An intent registers its ghost on first use (`inhibit_login: true`, `M_USER_IN_USE` counts as
//! success), joins rooms before sending (inviting itself through the bot when it cannot join
//! directly), and remembers both in the store so it does neither twice.

use std::time::Duration;

use ruma::api::client::{
    account::register::{self, LoginType},
    membership::{invite_user, join_room_by_id},
    message::send_message_event,
    profile::{get_display_name, set_display_name},
    redact::redact_event,
};
use ruma::api::error::ErrorKind;
use ruma::events::{AnyMessageLikeEventContent, MessageLikeEventContent, MessageLikeEventType};
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId, TransactionId, UserId};

use super::{ClientError, Endpoint};
use crate::context::BridgeContext;

/// How often a send is retried while the homeserver still says the user is not in the room
/// right after a join (traps.md 10).
const NOT_IN_ROOM_RETRIES: u32 = 5;

/// One user of the appservice, ready to act.
#[derive(Clone, Debug)]
pub struct Intent {
    ctx: BridgeContext,
    user_id: OwnedUserId,
}

impl Intent {
    pub(crate) fn new(ctx: BridgeContext, user_id: OwnedUserId) -> Self {
        Self { ctx, user_id }
    }

    /// The user this intent acts as.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    fn is_bot(&self) -> bool {
        self.user_id == self.ctx.shared.bot
    }

    async fn call<R: Endpoint>(&self, request: R) -> Result<R::IncomingResponse, ClientError> {
        let user = (!self.is_bot()).then_some(&*self.user_id);
        self.ctx.client().execute(request, user).await
    }

    /// Registers the ghost with the homeserver unless the store knows it already is.
    pub async fn ensure_registered(&self) -> Result<(), ClientError> {
        if self.is_bot() || self.ctx.store().ghosts().get(&self.user_id)?.registered {
            return Ok(());
        }
        self.register().await
    }

    async fn register(&self) -> Result<(), ClientError> {
        let mut request = register::v3::Request::new();
        request.username = Some(self.user_id.localpart().to_owned());
        request.login_type = Some(LoginType::ApplicationService);
        request.inhibit_login = true;
        match self.ctx.client().execute(request, None).await {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), Some(ErrorKind::UserInUse)) => {}
            Err(e) => return Err(e),
        }
        self.ctx
            .store()
            .ghosts()
            .update(&self.user_id, |r| r.registered = true)?;
        tracing::debug!(user_id = %self.user_id, "registered ghost");
        Ok(())
    }

    /// Joins `room_id` (by invite or because the room is public).
    pub async fn join(&self, room_id: &RoomId) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        self.call(join_room_by_id::v3::Request::new(room_id.to_owned()))
            .await?;
        self.ctx
            .store()
            .ghosts()
            .set_joined(&self.user_id, room_id, true)?;
        Ok(())
    }

    /// Makes sure the user is in `room_id`: joins, and if that is refused, has the bot invite
    /// it and joins again.
    pub async fn ensure_joined(&self, room_id: &RoomId) -> Result<(), ClientError> {
        if self
            .ctx
            .store()
            .ghosts()
            .is_joined(&self.user_id, room_id)?
        {
            return Ok(());
        }
        match self.join(room_id).await {
            Err(e) if e.status() == Some(403) && !self.is_bot() => {
                tracing::debug!(user_id = %self.user_id, %room_id, "join refused; inviting through the bot");
                self.ctx.bot().invite(room_id, &self.user_id).await?;
                self.join(room_id).await
            }
            other => other,
        }
    }

    /// Invites `user_id` to `room_id`.
    pub async fn invite(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), ClientError> {
        let recipient = invite_user::v3::InviteUserId::new(user_id.to_owned());
        self.call(invite_user::v3::Request::new(
            room_id.to_owned(),
            recipient.into(),
        ))
        .await?;
        Ok(())
    }

    /// Sends a message-like event with a fresh transaction ID.
    pub async fn send<C: MessageLikeEventContent>(
        &self,
        room_id: &RoomId,
        content: &C,
    ) -> Result<OwnedEventId, ClientError> {
        self.send_with_txn_id(room_id, content, &self.ctx.txn_ids().next())
            .await
    }

    /// Sends a message-like event with the given transaction ID: sending again with the same ID
    /// (e.g. after a crash) gives the same event instead of a duplicate, while the homeserver
    /// remembers the ID.
    pub async fn send_with_txn_id<C: MessageLikeEventContent>(
        &self,
        room_id: &RoomId,
        content: &C,
        txn_id: &TransactionId,
    ) -> Result<OwnedEventId, ClientError> {
        let json = serde_json::value::to_raw_value(content)
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let body = Raw::<AnyMessageLikeEventContent>::from_json(json);
        self.send_raw(room_id, content.event_type(), body, txn_id)
            .await
    }

    /// Sends event content the bridge has as raw JSON.
    pub async fn send_raw(
        &self,
        room_id: &RoomId,
        event_type: MessageLikeEventType,
        body: Raw<AnyMessageLikeEventContent>,
        txn_id: &TransactionId,
    ) -> Result<OwnedEventId, ClientError> {
        let request = send_message_event::v3::Request::new_raw(
            room_id.to_owned(),
            txn_id.to_owned(),
            event_type,
            body,
        );
        Ok(self.call_in_room(room_id, request).await?.event_id)
    }

    /// Redacts `event_id`, with an optional reason.
    pub async fn redact(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, ClientError> {
        self.redact_with_txn_id(room_id, event_id, reason, &self.ctx.txn_ids().next())
            .await
    }

    /// [`redact`](Self::redact) with a chosen transaction ID.
    pub async fn redact_with_txn_id(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<&str>,
        txn_id: &TransactionId,
    ) -> Result<OwnedEventId, ClientError> {
        let mut request = redact_event::v3::Request::new(
            room_id.to_owned(),
            event_id.to_owned(),
            txn_id.to_owned(),
        );
        request.reason = reason.map(str::to_owned);
        Ok(self.call_in_room(room_id, request).await?.event_id)
    }

    /// Sets the user's global displayname, unless it is already the one last set.
    pub async fn set_displayname(&self, displayname: &str) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        let store = self.ctx.store().ghosts();
        if store.get(&self.user_id)?.displayname.as_deref() == Some(displayname) {
            return Ok(());
        }
        // The generic profile-field endpoint is stable only since v1.16; this one works everywhere.
        #[allow(deprecated)]
        let request =
            set_display_name::v3::Request::new(self.user_id.clone(), Some(displayname.to_owned()));
        self.call(request).await?;
        store.update(&self.user_id, |r| {
            r.displayname = Some(displayname.to_owned())
        })?;
        Ok(())
    }

    /// The global displayname of any user, as this user sees it (`None` if unset).
    pub async fn displayname_of(&self, user_id: &UserId) -> Result<Option<String>, ClientError> {
        // As with `set_displayname`: the generic profile-field endpoint is stable only since v1.16.
        #[allow(deprecated)]
        let request = get_display_name::v3::Request::new(user_id.to_owned());
        Ok(self.call(request).await?.displayname)
    }

    /// Runs a room call as a member: registers and joins first, re-registers once if the
    /// homeserver forgot the ghost, and re-joins if it says the user is not in the room.
    async fn call_in_room<R: Endpoint + Clone>(
        &self,
        room_id: &RoomId,
        request: R,
    ) -> Result<R::IncomingResponse, ClientError> {
        self.ensure_registered().await?;
        self.ensure_joined(room_id).await?;
        let mut reregistered = false;
        let mut attempt = 0;
        loop {
            match self.call(request.clone()).await {
                Err(e) if e.is_unregistered_user() && !reregistered => {
                    reregistered = true;
                    self.register().await?;
                }
                Err(e) if e.is_not_in_room() && attempt < NOT_IN_ROOM_RETRIES => {
                    attempt += 1;
                    self.ctx
                        .store()
                        .ghosts()
                        .set_joined(&self.user_id, room_id, false)?;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    self.ensure_joined(room_id).await?;
                }
                other => return other,
            }
        }
    }
}
