//! A bridge wrapped so the test gets its [`BridgeContext`]: every method is handed to the
//! bridge under test unchanged; `start` also keeps the context.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bridgekit::incoming::{
    CommandCall, CommandHelp, MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction,
    MatrixRedaction, MatrixRoomChange, Sent,
};
use bridgekit::logins::{LoginFlow, LoginProcess, NetworkClient};
use bridgekit::ruma::api::appservice::event::push_events::v1::EphemeralData;
use bridgekit::ruma::events::AnyTimelineEvent;
use bridgekit::ruma::thirdparty::{Location, Protocol, User};
use bridgekit::ruma::{RoomAliasId, RoomId, UserId};
use bridgekit::store::LoginRecord;
use bridgekit::{Bridge, BridgeContext, BridgeError, ChatId, ToDeviceEvent, async_trait};

/// Where the running bridge's context is kept for the test.
pub(crate) type ContextSlot = Arc<Mutex<Option<BridgeContext>>>;

/// `B`, with its context kept in `slot` when it starts.
pub(crate) struct Captured<B> {
    pub bridge: B,
    pub slot: ContextSlot,
}

#[async_trait]
impl<B: Bridge> Bridge for Captured<B> {
    async fn start(&self, ctx: &BridgeContext) -> Result<(), BridgeError> {
        *self.slot.lock().unwrap() = Some(ctx.clone());
        self.bridge.start(ctx).await
    }

    async fn stop(&self, ctx: &BridgeContext) {
        self.bridge.stop(ctx).await
    }

    async fn handle_event(
        &self,
        ctx: &BridgeContext,
        event: AnyTimelineEvent,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_event(ctx, event).await
    }

    async fn portal_for_room(
        &self,
        ctx: &BridgeContext,
        room_id: &RoomId,
    ) -> Result<Option<ChatId>, BridgeError> {
        self.bridge.portal_for_room(ctx, room_id).await
    }

    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        message: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        self.bridge.handle_message(ctx, message).await
    }

    async fn handle_edit(&self, ctx: &BridgeContext, edit: MatrixEdit) -> Result<(), BridgeError> {
        self.bridge.handle_edit(ctx, edit).await
    }

    async fn handle_reaction(
        &self,
        ctx: &BridgeContext,
        reaction: MatrixReaction,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_reaction(ctx, reaction).await
    }

    async fn handle_redaction(
        &self,
        ctx: &BridgeContext,
        redaction: MatrixRedaction,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_redaction(ctx, redaction).await
    }

    async fn handle_membership(
        &self,
        ctx: &BridgeContext,
        membership: MatrixMembership,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_membership(ctx, membership).await
    }

    async fn handle_room_change(
        &self,
        ctx: &BridgeContext,
        change: MatrixRoomChange,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_room_change(ctx, change).await
    }

    async fn handle_other_event(
        &self,
        ctx: &BridgeContext,
        event: AnyTimelineEvent,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_other_event(ctx, event).await
    }

    fn commands(&self) -> Vec<CommandHelp> {
        self.bridge.commands()
    }

    async fn handle_command(
        &self,
        ctx: &BridgeContext,
        call: CommandCall,
    ) -> Result<String, BridgeError> {
        self.bridge.handle_command(ctx, call).await
    }

    fn version(&self) -> String {
        self.bridge.version()
    }

    async fn handle_ephemeral(
        &self,
        ctx: &BridgeContext,
        event: EphemeralData,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_ephemeral(ctx, event).await
    }

    async fn handle_to_device(
        &self,
        ctx: &BridgeContext,
        event: ToDeviceEvent,
    ) -> Result<(), BridgeError> {
        self.bridge.handle_to_device(ctx, event).await
    }

    async fn user_exists(
        &self,
        ctx: &BridgeContext,
        user_id: &UserId,
    ) -> Result<bool, BridgeError> {
        self.bridge.user_exists(ctx, user_id).await
    }

    async fn room_alias_exists(
        &self,
        ctx: &BridgeContext,
        alias: &RoomAliasId,
    ) -> Result<bool, BridgeError> {
        self.bridge.room_alias_exists(ctx, alias).await
    }

    fn login_flows(&self) -> Vec<LoginFlow> {
        self.bridge.login_flows()
    }

    async fn start_login(
        &self,
        ctx: &BridgeContext,
        user: &UserId,
        flow: &str,
    ) -> Result<Box<dyn LoginProcess>, BridgeError> {
        self.bridge.start_login(ctx, user, flow).await
    }

    async fn load_login(
        &self,
        ctx: &BridgeContext,
        login: &LoginRecord,
    ) -> Result<Arc<dyn NetworkClient>, BridgeError> {
        self.bridge.load_login(ctx, login).await
    }

    fn protocols(&self) -> Vec<String> {
        self.bridge.protocols()
    }

    async fn thirdparty_protocol(
        &self,
        ctx: &BridgeContext,
        protocol: &str,
    ) -> Result<Option<Protocol>, BridgeError> {
        self.bridge.thirdparty_protocol(ctx, protocol).await
    }

    async fn thirdparty_users(
        &self,
        ctx: &BridgeContext,
        protocol: Option<&str>,
        fields: &BTreeMap<String, String>,
    ) -> Result<Vec<User>, BridgeError> {
        self.bridge.thirdparty_users(ctx, protocol, fields).await
    }

    async fn thirdparty_locations(
        &self,
        ctx: &BridgeContext,
        protocol: Option<&str>,
        fields: &BTreeMap<String, String>,
    ) -> Result<Vec<Location>, BridgeError> {
        self.bridge
            .thirdparty_locations(ctx, protocol, fields)
            .await
    }
}
