//! The `Bridge` trait: what a bridge implements. Everything has a default except handling
//! Matrix events, so a minimal bridge is one method; query and third-party hooks are
//! capabilities a bridge opts into by overriding them.
//!
//! The framework calls these after the homeserver's transaction is durably recorded and
//! acknowledged, in order within a room and concurrently across rooms. An error a handler
//! returns is logged with the event and reported to the room; it never makes the homeserver
//! resend anything. A [`RetryLater`](crate::RetryLater) error makes the framework hand the
//! event over again, later.

use std::collections::BTreeMap;

use ruma::api::appservice::event::push_events::v1::EphemeralData;
use ruma::events::{AnyTimelineEvent, AnyToDeviceEvent};
use ruma::serde::Raw;
use ruma::thirdparty::{Location, Protocol, User};
use ruma::{OwnedUserId, RoomAliasId, UserId};

use crate::context::BridgeContext;
use crate::incoming::{
    CommandCall, CommandHelp, MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction,
    MatrixRedaction, MatrixRoomChange, Sent, Unsupported,
};

/// The error type handlers return: anything that can be displayed and logged.
pub type BridgeError = Box<dyn std::error::Error + Send + Sync>;

/// A to-device event for one of the bridge's users (MSC4203).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ToDeviceEvent {
    /// The recipient: a ghost or the bot.
    pub to_user_id: OwnedUserId,
    /// The recipient's device, when the homeserver names one.
    pub to_device_id: Option<ruma::OwnedDeviceId>,
    /// The event as sent.
    pub event: Raw<AnyToDeviceEvent>,
}

/// A Matrix application-service bridge.
#[async_trait::async_trait]
pub trait Bridge: Send + Sync + 'static {
    /// Called once the store is open and the homeserver answered the startup ping, before any
    /// event is handed over. Connect to the remote network here.
    async fn start(&self, _ctx: &BridgeContext) -> Result<(), BridgeError> {
        Ok(())
    }

    /// Called on shutdown, after the last event was handed over.
    async fn stop(&self, _ctx: &BridgeContext) {}

    /// Every timeline event in a room the bridge sees, before it is sorted into the
    /// capabilities below. Events sent by the bridge's own users (the bot and the ghosts) are
    /// not handed over; invites of the bot are accepted by the framework first.
    ///
    /// The default looks up the portal and the bridged targets, then calls
    /// [`handle_message`](Bridge::handle_message), [`handle_edit`](Bridge::handle_edit), … .
    /// Override it only to see raw events.
    async fn handle_event(
        &self,
        ctx: &BridgeContext,
        event: AnyTimelineEvent,
    ) -> Result<(), BridgeError> {
        crate::incoming::resolve::hand_over(self, ctx, event).await
    }

    /// A message arrived in a room that is no portal (and is not a command): return the
    /// remote chat the room stands for to make it one — the framework records the portal
    /// before handing the message over. Default: `None`, the room stays a plain room (the
    /// message is still handed over, with no portal).
    async fn portal_for_room(
        &self,
        _ctx: &BridgeContext,
        _room_id: &ruma::RoomId,
    ) -> Result<Option<crate::ids::ChatId>, BridgeError> {
        Ok(None)
    }

    /// Required: a new message (text, notice, emote, media; maybe a reply or in a thread).
    /// Return what the network made of it ([`Sent::message`] with its remote ID): the
    /// framework records the mapping, so edits,
    /// replies, reactions and redactions of it find their target. Return
    /// [`RetryLater`](crate::RetryLater) for a failure that may pass.
    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        message: MatrixMessage,
    ) -> Result<Sent, BridgeError>;

    /// An edit of a bridged message. Unsupported unless overridden.
    async fn handle_edit(
        &self,
        _ctx: &BridgeContext,
        _edit: MatrixEdit,
    ) -> Result<(), BridgeError> {
        Err(Unsupported("edits").into())
    }

    /// A reaction to a bridged message; once it returns `Ok`, the framework records the
    /// reaction so its redaction finds it. Unsupported unless overridden.
    async fn handle_reaction(
        &self,
        _ctx: &BridgeContext,
        _reaction: MatrixReaction,
    ) -> Result<(), BridgeError> {
        Err(Unsupported("reactions").into())
    }

    /// A redaction of a bridged message or reaction; once it returns `Ok`, the framework
    /// forgets the mapping of what was redacted. Unsupported unless overridden.
    async fn handle_redaction(
        &self,
        _ctx: &BridgeContext,
        _redaction: MatrixRedaction,
    ) -> Result<(), BridgeError> {
        Err(Unsupported("deletions").into())
    }

    /// A membership change of a real user or a ghost. Ignored unless overridden.
    async fn handle_membership(
        &self,
        _ctx: &BridgeContext,
        _membership: MatrixMembership,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// A change of a room's name, topic or avatar. Ignored unless overridden.
    async fn handle_room_change(
        &self,
        _ctx: &BridgeContext,
        _change: MatrixRoomChange,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// Any other timeline event (other state, unknown types). Ignored unless overridden.
    async fn handle_other_event(
        &self,
        _ctx: &BridgeContext,
        _event: AnyTimelineEvent,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// The bridge's own management commands, listed by `help`.
    fn commands(&self) -> Vec<CommandHelp> {
        Vec::new()
    }

    /// Runs one of [`commands`](Bridge::commands) and returns the answer for the room.
    async fn handle_command(
        &self,
        ctx: &BridgeContext,
        _call: CommandCall,
    ) -> Result<String, BridgeError> {
        Err(format!(
            "unknown command; {}help lists them",
            ctx.options().command_prefix
        )
        .into())
    }

    /// The bridge's name and version, for `version`.
    fn version(&self) -> String {
        "a bridgekit bridge".into()
    }

    /// Typing, receipts and presence (when the registration asks for ephemeral events).
    async fn handle_ephemeral(
        &self,
        _ctx: &BridgeContext,
        _event: EphemeralData,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// A to-device event for one of the bridge's users.
    async fn handle_to_device(
        &self,
        _ctx: &BridgeContext,
        _event: ToDeviceEvent,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// The homeserver asks whether a user in the bridge's namespace exists. Return `true` after
    /// creating it (e.g. with [`Intent::ensure_registered`](crate::Intent::ensure_registered)).
    /// Default: no.
    async fn user_exists(
        &self,
        _ctx: &BridgeContext,
        _user_id: &UserId,
    ) -> Result<bool, BridgeError> {
        Ok(false)
    }

    /// The homeserver asks whether a room alias in the bridge's namespace exists. Return `true`
    /// after creating the room with that alias. Default: no.
    async fn room_alias_exists(
        &self,
        _ctx: &BridgeContext,
        _alias: &RoomAliasId,
    ) -> Result<bool, BridgeError> {
        Ok(false)
    }

    /// The ways a user can log in to the network. Empty (the default): the bridge has no
    /// per-user logins, and the login commands do not exist.
    fn login_flows(&self) -> Vec<crate::logins::LoginFlow> {
        Vec::new()
    }

    /// Starts a login by `flow` (one of [`login_flows`](Self::login_flows)) for `user`: the
    /// framework walks them through the process's steps.
    async fn start_login(
        &self,
        _ctx: &BridgeContext,
        _user: &UserId,
        _flow: &str,
    ) -> Result<Box<dyn crate::logins::LoginProcess>, BridgeError> {
        Err(Unsupported("logins").into())
    }

    /// Makes the network client of a login: right after the user logged in, and for every
    /// stored login at startup. The framework then calls its
    /// [`connect`](crate::logins::NetworkClient::connect).
    async fn load_login(
        &self,
        _ctx: &BridgeContext,
        _login: &crate::store::LoginRecord,
    ) -> Result<std::sync::Arc<dyn crate::logins::NetworkClient>, BridgeError> {
        Err(Unsupported("logins").into())
    }

    /// The third-party protocols this bridge serves; written into the registration file.
    fn protocols(&self) -> Vec<String> {
        Vec::new()
    }

    /// Metadata of one protocol from [`protocols`](Self::protocols). `None` answers 404.
    async fn thirdparty_protocol(
        &self,
        _ctx: &BridgeContext,
        _protocol: &str,
    ) -> Result<Option<Protocol>, BridgeError> {
        Ok(None)
    }

    /// Remote users matching `fields` (or the Matrix `userid` in `fields`), for `protocol` or
    /// for every protocol when `None`. Default: none.
    async fn thirdparty_users(
        &self,
        _ctx: &BridgeContext,
        _protocol: Option<&str>,
        _fields: &BTreeMap<String, String>,
    ) -> Result<Vec<User>, BridgeError> {
        Ok(Vec::new())
    }

    /// Remote locations (chats) matching `fields` (or the Matrix `alias` in `fields`), for
    /// `protocol` or for every protocol when `None`. Default: none.
    async fn thirdparty_locations(
        &self,
        _ctx: &BridgeContext,
        _protocol: Option<&str>,
        _fields: &BTreeMap<String, String>,
    ) -> Result<Vec<Location>, BridgeError> {
        Ok(Vec::new())
    }
}
