//! Acting as one user of the appservice: the bot or a ghost.
//!
//! An intent registers its ghost on first use (`inhibit_login: true`, `M_USER_IN_USE` counts as
//! success), joins rooms before sending (inviting itself through the bot when it cannot join
//! directly), raises its power level through the bot when a state event needs it, and
//! remembers registration and joins in the store. Sends go through the durable outbox.
//! More calls live in the sibling modules (`membership`, `rooms`, `profile`, `media`,
//! `signals`, `devices`).

use std::time::Duration;

use ruma::api::client::{
    account::register::{self, LoginType},
    message::send_message_event,
    redact::redact_event,
    state::{get_state_event_for_key, send_state_event},
};
use ruma::api::error::ErrorKind;
use ruma::events::reaction::ReactionEventContent;
use ruma::events::relation::Annotation;
use ruma::events::{MessageLikeEventContent, StateEventContent};
use ruma::serde::Raw;
use ruma::{EventId, OwnedDeviceId, OwnedEventId, OwnedUserId, RoomId, TransactionId, UserId};

use super::{ClientError, Endpoint, Outgoing, PendingSend, RetryPolicy};
use crate::context::BridgeContext;
use crate::store::queues::{OutboxEntry, OutboxOp};

/// How often a send is retried while the homeserver still says the user is not in the room
/// right after a join (docs/homeserver-behaviour.md §3); longer waits are the outbox's.
const NOT_IN_ROOM_RETRIES: u32 = 5;

/// One user of the appservice, ready to act.
#[derive(Clone, Debug)]
pub struct Intent {
    pub(crate) ctx: BridgeContext,
    user_id: OwnedUserId,
    device_id: Option<OwnedDeviceId>,
    retry: Option<RetryPolicy>,
    /// For a double puppet: the ghost that sends instead when the homeserver refuses.
    fallback: Option<OwnedUserId>,
}

impl Intent {
    pub(crate) fn new(ctx: BridgeContext, user_id: OwnedUserId) -> Self {
        Self {
            ctx,
            user_id,
            device_id: None,
            retry: None,
            fallback: None,
        }
    }

    /// Acts as the real Matrix user `user_id` (double puppeting), with `fallback` sending
    /// queued events instead if the homeserver refuses.
    pub(crate) fn puppet(ctx: BridgeContext, user_id: OwnedUserId, fallback: OwnedUserId) -> Self {
        Self {
            fallback: Some(fallback),
            ..Self::new(ctx, user_id)
        }
    }

    /// Whether this acts as a real Matrix user rather than the bot or a ghost.
    pub(crate) fn is_puppet(&self) -> bool {
        !self.ctx.is_own_user(&self.user_id)
    }

    /// The user this intent acts as.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The same user acting on one of its devices (device masquerading, for bridges that run
    /// devices; the device must exist). Applies to direct calls, not to queued sends.
    pub fn with_device(&self, device_id: OwnedDeviceId) -> Self {
        Self {
            device_id: Some(device_id),
            ..self.clone()
        }
    }

    /// The same user with its own retry budget per call.
    pub(crate) fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    pub(crate) fn is_bot(&self) -> bool {
        self.user_id == self.ctx.bot_user_id()
    }

    /// Sends any request as this user (the bot sends without `?user_id=`).
    pub(crate) async fn call<R: Endpoint>(
        &self,
        request: R,
    ) -> Result<R::IncomingResponse, ClientError> {
        let user = (!self.is_bot()).then_some(&*self.user_id);
        let client = self.ctx.client();
        let retry = self.retry.as_ref().unwrap_or(client.retry_policy());
        if self.is_puppet() {
            use crate::double_puppet::PuppetAuth;
            return match crate::double_puppet::auth(&self.ctx, &self.user_id).await? {
                PuppetAuth::Appservice(token) => {
                    client
                        .execute_with_token(request, &token, user, retry)
                        .await
                }
                PuppetAuth::AccessToken(token) => {
                    client
                        .execute_with_token(request, &token, None, retry)
                        .await
                }
            };
        }
        client
            .execute_as(request, user, self.device_id.as_deref(), retry)
            .await
    }

    // ----- registration -----

    /// Registers the ghost with the homeserver unless the store knows it already is.
    pub async fn ensure_registered(&self) -> Result<(), ClientError> {
        if self.is_bot()
            || self.is_puppet()
            || self.ctx.store().ghost(&self.user_id).await?.registered
        {
            return Ok(());
        }
        self.register().await
    }

    pub(crate) async fn register(&self) -> Result<(), ClientError> {
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
            .update_ghost(&self.user_id, &|r| r.registered = true)
            .await?;
        tracing::debug!(user_id = %self.user_id, "registered ghost");
        Ok(())
    }

    // ----- sending, through the outbox -----

    /// Queues a send durably and returns once it is in the outbox.
    pub async fn queue(&self, outgoing: Outgoing) -> Result<PendingSend, ClientError> {
        let entry = self.entry_for(outgoing);
        self.ctx.outbox().queue(self.ctx.backend(), entry).await
    }

    /// Queues a send and waits for its event ID (`None` only for a duplicate reaction).
    ///
    /// While the bridge handles a homeserver event, a send with a chosen transaction ID skips
    /// the outbox and goes out at once: the event stays in the inbox until its handler
    /// returns, so a crash repeats the send with the same transaction ID instead of losing it.
    pub async fn submit(&self, outgoing: Outgoing) -> Result<Option<OwnedEventId>, ClientError> {
        let outbox = self.ctx.outbox();
        if outbox.may_send_inline(&outgoing) {
            let entry = self.entry_for(outgoing);
            return outbox.send_inline(&self.ctx, entry).await;
        }
        self.queue(outgoing).await?.event_id().await
    }

    fn entry_for(&self, outgoing: Outgoing) -> OutboxEntry {
        let mut op = outgoing.op;
        if self.is_puppet() {
            match &mut op {
                OutboxOp::Message { content, .. } => {
                    *content = crate::double_puppet::mark(&self.ctx, content);
                }
                OutboxOp::Redaction { event_id, .. } => self.ctx.puppets().redacting(event_id),
                OutboxOp::State { .. } => {}
            }
        }
        OutboxEntry {
            room_id: outgoing.room_id,
            sender: self.user_id.clone(),
            txn_id: outgoing.txn_id.unwrap_or_else(|| self.ctx.txn_ids().next()),
            op,
            timestamp: outgoing.timestamp,
            remote_id: outgoing.remote_id,
            fallback: self.fallback.clone(),
        }
    }

    async fn submit_expecting_event(
        &self,
        outgoing: Outgoing,
    ) -> Result<OwnedEventId, ClientError> {
        self.submit(outgoing)
            .await?
            .ok_or_else(|| ClientError::Response("no event ID returned".into()))
    }

    /// Sends a message-like event and waits for its event ID.
    pub async fn send<C: MessageLikeEventContent>(
        &self,
        room_id: &RoomId,
        content: &C,
    ) -> Result<OwnedEventId, ClientError> {
        self.submit_expecting_event(Outgoing::message(room_id, content)?)
            .await
    }

    /// Sends with the given transaction ID: a repeat (e.g. after a crash) gives the same event.
    pub async fn send_with_txn_id<C: MessageLikeEventContent>(
        &self,
        room_id: &RoomId,
        content: &C,
        txn_id: &TransactionId,
    ) -> Result<OwnedEventId, ClientError> {
        self.submit_expecting_event(Outgoing::message(room_id, content)?.txn_id(txn_id.to_owned()))
            .await
    }

    /// Sets a state event (the state key may be empty) and waits for its event ID. If the user
    /// lacks the power level, the bot raises it when it can.
    pub async fn send_state<C: StateEventContent>(
        &self,
        room_id: &RoomId,
        state_key: &str,
        content: &C,
    ) -> Result<OwnedEventId, ClientError> {
        self.submit_expecting_event(Outgoing::state(room_id, state_key, content)?)
            .await
    }

    /// Redacts `event_id`, with an optional reason.
    pub async fn redact(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, ClientError> {
        self.submit_expecting_event(Outgoing::redaction(room_id, event_id, reason))
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
        self.submit_expecting_event(
            Outgoing::redaction(room_id, event_id, reason).txn_id(txn_id.to_owned()),
        )
        .await
    }

    /// Reacts to `event_id` with `key`. A reaction the homeserver already has
    /// (`M_DUPLICATE_ANNOTATION`) counts as success and gives `None`.
    pub async fn react(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        key: &str,
    ) -> Result<Option<OwnedEventId>, ClientError> {
        let content =
            ReactionEventContent::new(Annotation::new(event_id.to_owned(), key.to_owned()));
        self.submit(Outgoing::message(room_id, &content)?).await
    }

    /// Carries out one outbox entry (called by the outbox worker).
    pub(crate) async fn perform(
        &self,
        entry: &OutboxEntry,
    ) -> Result<Option<OwnedEventId>, ClientError> {
        let room = entry.room_id.clone();
        let ts = entry.timestamp;
        match &entry.op {
            OutboxOp::Message {
                event_type,
                content,
            } => {
                let mut request = send_message_event::v3::Request::new_raw(
                    room.clone(),
                    entry.txn_id.clone(),
                    event_type.as_str().into(),
                    Raw::from_json(content.clone()),
                );
                request.timestamp = ts;
                match self.call_in_room(&room, request).await {
                    Ok(response) => Ok(Some(response.event_id)),
                    Err(e) if e.errcode() == Some("M_DUPLICATE_ANNOTATION") => Ok(None),
                    Err(e) => Err(e),
                }
            }
            OutboxOp::State {
                event_type,
                state_key,
                content,
            } => {
                let mut request = send_state_event::v3::Request::new_raw(
                    room.clone(),
                    event_type.as_str().into(),
                    state_key.clone(),
                    Raw::from_json(content.clone()),
                );
                request.timestamp = ts;
                match self.call_in_room(&room, request.clone()).await {
                    Err(e) if e.is_insufficient_power() && !self.is_bot() => {
                        self.raise_power(&room, event_type).await?;
                        Ok(Some(self.call_in_room(&room, request).await?.event_id))
                    }
                    other => Ok(Some(other?.event_id)),
                }
            }
            OutboxOp::Redaction { event_id, reason } => {
                let mut request = redact_event::v3::Request::new(
                    room.clone(),
                    event_id.clone(),
                    entry.txn_id.clone(),
                );
                request.reason = reason.clone();
                Ok(Some(self.call_in_room(&room, request).await?.event_id))
            }
        }
    }

    /// Gives this user the power level `event_type` needs, as the bot; a clear error if the
    /// bot itself lacks the power.
    async fn raise_power(&self, room_id: &RoomId, event_type: &str) -> Result<(), ClientError> {
        let bot = self.ctx.bot();
        let request = get_state_event_for_key::v3::Request::new(
            room_id.to_owned(),
            "m.room.power_levels".into(),
            String::new(),
        );
        let current = bot.call(request).await?.event_or_content;
        let mut levels: serde_json::Value = serde_json::from_str(current.get())
            .map_err(|e| ClientError::Response(e.to_string()))?;
        let level = |v: &serde_json::Value, default: i64| v.as_i64().unwrap_or(default);
        let state_default = level(&levels["state_default"], 50);
        let needed = level(&levels["events"][event_type], state_default);
        let bot_level = level(
            &levels["users"][bot.user_id().as_str()],
            level(&levels["users_default"], 0),
        );
        let to_change = level(&levels["events"]["m.room.power_levels"], state_default);
        // In room v12 the creator has infinite power and is not listed: treat an unlisted bot
        // that created the room as able. The homeserver has the final word either way.
        if bot_level < needed.max(to_change)
            && levels["users"].get(bot.user_id().as_str()).is_some()
        {
            return Err(ClientError::PowerLevel {
                user_id: self.user_id.clone(),
                room_id: room_id.to_owned(),
                event_type: event_type.to_owned(),
                needed,
                bot_level,
            });
        }
        if !levels["users"].is_object() {
            levels["users"] = serde_json::json!({});
        }
        levels["users"][self.user_id.as_str()] = needed.into();
        let content = serde_json::value::to_raw_value(&levels)
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let request = send_state_event::v3::Request::new_raw(
            room_id.to_owned(),
            "m.room.power_levels".into(),
            String::new(),
            Raw::from_json(content),
        );
        match bot.call(request).await {
            Ok(_) => {
                tracing::info!(user_id = %self.user_id, %room_id, needed, "raised a ghost's power level for a state event");
                Ok(())
            }
            Err(e) if e.status() == Some(403) => Err(ClientError::PowerLevel {
                user_id: self.user_id.clone(),
                room_id: room_id.to_owned(),
                event_type: event_type.to_owned(),
                needed,
                bot_level,
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs a room call as a member: registers and joins first, re-registers once if the
    /// homeserver forgot the ghost, and re-joins if it says the user is not in the room.
    pub(crate) async fn call_in_room<R: Endpoint + Clone>(
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
                Err(e) if e.is_unregistered_user() && !reregistered && !self.is_puppet() => {
                    reregistered = true;
                    self.register().await?;
                }
                Err(e) if e.is_not_in_room() && attempt < NOT_IN_ROOM_RETRIES => {
                    attempt += 1;
                    tracing::info!(user_id = %self.user_id, %room_id, attempt, "the homeserver does not see the user in the room yet; joining again and merging the room's extremities");
                    self.ctx
                        .store()
                        .set_joined(&self.user_id, room_id, false)
                        .await?;
                    self.ctx.bot().nudge_room(room_id).await;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    self.ensure_joined(room_id).await?;
                }
                other => return other,
            }
        }
    }

    /// Sends an empty `org.matrix.dummy_event` (hidden by clients), as Synapse itself does to
    /// merge a room's forward extremities: while a room has more than ten, a ghost's accepted
    /// join can stay outside the state new events are checked against, and its sends are
    /// refused "not in room" until something merges them (docs/homeserver-behaviour.md §3).
    /// Failures are only logged: this is a cure, not a send anyone waits for.
    pub(crate) async fn nudge_room(&self, room_id: &RoomId) {
        let request = send_message_event::v3::Request::new_raw(
            room_id.to_owned(),
            self.ctx.txn_ids().next(),
            "org.matrix.dummy_event".into(),
            Raw::from_json(
                serde_json::value::to_raw_value(&serde_json::json!({})).expect("{} serializes"),
            ),
        );
        if let Err(error) = self.call(request).await {
            tracing::debug!(%error, %room_id, "could not send a dummy event to merge the room's extremities");
        }
    }
}
