//! One login's connection to the remote network ([`NetworkClient`]), and what it is given to
//! work with ([`LoginContext`]): the bridge's context, which login it is, and how to report
//! its state.

use std::ops::Deref;

use ruma::{MilliSecondsSinceUnixEpoch, OwnedUserId, UserId};

use crate::bridge::BridgeError;
use crate::context::BridgeContext;
use crate::ids::LoginId;
use crate::incoming::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRedaction, MatrixRoomChange,
    Sent, Unsupported,
};
use crate::remote::RemoteEvent;

use super::contacts::{Contact, OpenedChat};
use crate::store::{LoginRecord, LoginState, PortalKey, PortalLogin, StoreError};

/// A logged-in remote account: the bridge makes one per login
/// ([`Bridge::load_login`](crate::Bridge::load_login)) and the framework drives it. Matrix
/// events its user sends in a portal the login is in ([`LoginContext::join_portal`]) come
/// here instead of to the bridge's own handlers; only
/// [`handle_message`](Self::handle_message) is required.
#[async_trait::async_trait]
pub trait NetworkClient: Send + Sync + 'static {
    /// Connects to the network and keeps the connection up, reporting each change with
    /// [`LoginContext::set_state`]. Return once connecting has started; reconnect by
    /// yourself after a drop, pausing with [`LoginContext::reconnect_delay`].
    async fn connect(&self, login: &LoginContext) -> Result<(), BridgeError>;

    /// Closes the connection (the bridge stops, or the user logs out).
    async fn disconnect(&self);

    /// The user logs out: end the session on the network too, if it has one. Default:
    /// disconnect.
    async fn logout(&self, _login: &LoginContext) {
        self.disconnect().await
    }

    /// A message of this login's user in a portal the login is in. Return what the network
    /// made of it, as [`Bridge::handle_message`](crate::Bridge::handle_message) does.
    async fn handle_message(
        &self,
        login: &LoginContext,
        message: MatrixMessage,
    ) -> Result<Sent, BridgeError>;

    /// An edit. Unsupported unless overridden.
    async fn handle_edit(
        &self,
        _login: &LoginContext,
        _edit: MatrixEdit,
    ) -> Result<(), BridgeError> {
        Err(Unsupported("edits").into())
    }

    /// A reaction. Unsupported unless overridden.
    async fn handle_reaction(
        &self,
        _login: &LoginContext,
        _reaction: MatrixReaction,
    ) -> Result<(), BridgeError> {
        Err(Unsupported("reactions").into())
    }

    /// A redaction. Unsupported unless overridden.
    async fn handle_redaction(
        &self,
        _login: &LoginContext,
        _redaction: MatrixRedaction,
    ) -> Result<(), BridgeError> {
        Err(Unsupported("deletions").into())
    }

    /// A membership change of this login's user in a portal (they joined or left the room).
    /// Ignored unless overridden.
    async fn handle_membership(
        &self,
        _login: &LoginContext,
        _membership: MatrixMembership,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// A room name, topic or avatar change by this login's user. Ignored unless overridden.
    async fn handle_room_change(
        &self,
        _login: &LoginContext,
        _change: MatrixRoomChange,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// The person an identifier the user typed names (a username, a phone number), if the
    /// network knows them. Unsupported unless overridden.
    async fn resolve_identifier(
        &self,
        _login: &LoginContext,
        _identifier: &str,
    ) -> Result<Option<Contact>, BridgeError> {
        Err(Unsupported("user lookups").into())
    }

    /// The login's contacts. Unsupported unless overridden.
    async fn contacts(&self, _login: &LoginContext) -> Result<Vec<Contact>, BridgeError> {
        Err(Unsupported("contact lists").into())
    }

    /// People on the network matching `query`. Unsupported unless overridden.
    async fn search_users(
        &self,
        _login: &LoginContext,
        _query: &str,
    ) -> Result<Vec<Contact>, BridgeError> {
        Err(Unsupported("user searches").into())
    }

    /// Opens (or finds) the direct chat with `contact` on the network. Unsupported unless
    /// overridden.
    async fn create_dm(
        &self,
        _login: &LoginContext,
        _contact: &Contact,
    ) -> Result<OpenedChat, BridgeError> {
        Err(Unsupported("new direct chats").into())
    }

    /// Creates a group chat named `name` with `participants` on the network. Unsupported
    /// unless overridden.
    async fn create_group(
        &self,
        _login: &LoginContext,
        _name: Option<&str>,
        _participants: &[crate::ids::RemoteUserId],
    ) -> Result<OpenedChat, BridgeError> {
        Err(Unsupported("new group chats").into())
    }
}

/// What a [`NetworkClient`] works with: the bridge's context (it derefs to
/// [`BridgeContext`]), which login it is, and the calls that keep the login's books.
#[derive(Clone, Debug)]
pub struct LoginContext {
    ctx: BridgeContext,
    id: LoginId,
    user_id: OwnedUserId,
}

impl Deref for LoginContext {
    type Target = BridgeContext;

    fn deref(&self) -> &BridgeContext {
        &self.ctx
    }
}

impl LoginContext {
    pub(crate) fn new(ctx: BridgeContext, id: LoginId, user_id: OwnedUserId) -> Self {
        Self { ctx, id, user_id }
    }

    /// The bridge's context.
    pub fn bridge(&self) -> &BridgeContext {
        &self.ctx
    }

    /// This login's ID.
    pub fn login_id(&self) -> &LoginId {
        &self.id
    }

    /// The Matrix user it belongs to.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The login's stored record (remote account, state, the bridge's metadata).
    pub async fn record(&self) -> Result<LoginRecord, BridgeError> {
        self.store()
            .login(&self.id)
            .await?
            .ok_or_else(|| format!("login {} was logged out", self.id).into())
    }

    /// Replaces the bridge's metadata of the login (a refreshed session token, say).
    pub async fn set_metadata(&self, metadata: &impl serde::Serialize) -> Result<(), BridgeError> {
        let mut record = self.record().await?;
        record.set_metadata(metadata)?;
        Ok(self.store().put_login(&record).await?)
    }

    /// Reports the login's state. It is stored (so it survives restarts), counted in the
    /// `bridgekit_logins` gauge, and a change the user must act on (bad credentials, logged
    /// out, an error) is told to them once in their management room, not on every flap.
    pub async fn set_state(
        &self,
        state: LoginState,
        reason: Option<String>,
    ) -> Result<(), BridgeError> {
        let mut record = self.record().await?;
        let changed = record.state != state;
        if !changed && record.state_reason == reason {
            return Ok(());
        }
        record.state = state;
        record.state_reason = reason.clone();
        record.state_since = Some(MilliSecondsSinceUnixEpoch::now());
        self.store().put_login(&record).await?;
        self.ctx.logins().set_state(&self.id, state);
        tracing::info!(login = %self.id, user = %self.user_id, %state, reason = reason.as_deref().unwrap_or(""), "login state");
        if changed && state.needs_user() {
            let what = match state {
                LoginState::BadCredentials => "the network refused your credentials",
                LoginState::LoggedOut => "the network logged you out",
                _ => "it stopped working",
            };
            let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
            let prefix = &self.options().command_prefix;
            let text = format!(
                "Your login {} needs you: {what}{reason}. Log in again with `{prefix}relogin {}`.",
                self.id, self.id
            );
            super::commands::tell_user(&self.ctx, &self.user_id, &text).await?;
        }
        Ok(())
    }

    /// Records that the login takes part in `portal`: its user's Matrix events there come to
    /// this login's client.
    pub async fn join_portal(&self, portal: &PortalKey) -> Result<(), StoreError> {
        let link = PortalLogin::new(portal.clone(), self.id.clone(), self.user_id.clone());
        self.store().put_portal_login(&link).await
    }

    /// Records that the login left `portal`.
    pub async fn leave_portal(&self, portal: &PortalKey) -> Result<(), StoreError> {
        self.store().remove_portal_login(portal, &self.id).await
    }

    /// Queues a remote event this login received for `portal`, recording that the login is
    /// in it. When several logins receive the same message of a shared chat, it is bridged
    /// once: applying is idempotent by remote message ID.
    pub async fn remote_event(
        &self,
        portal: &PortalKey,
        event: RemoteEvent,
    ) -> Result<(), BridgeError> {
        self.join_portal(portal).await?;
        Ok(self.ctx.remote_event(portal, event).await?)
    }

    /// Waits until this login may send its next message to the network: each login sends
    /// at most `bridge.remote_sends_per_second` on average (twice that in a burst), so one
    /// busy user cannot get the bridge's connections flood-limited or banned.
    pub async fn throttle(&self) {
        let rate = self.options().remote_sends_per_second;
        self.ctx.logins().pace(&self.id, rate).wait().await
    }

    /// How long to wait before reconnect attempt `attempt` (0 for the first): exponential
    /// from 1 s to 5 min with full jitter, so a network outage does not bring every login
    /// back at the same instant.
    pub fn reconnect_delay(&self, attempt: u32) -> std::time::Duration {
        super::backoff::reconnect_delay(attempt)
    }
}
