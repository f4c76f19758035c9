//! Ephemeral signals: typing, read receipts, presence, and to-device messages.

use std::collections::BTreeMap;
use std::time::Duration;

use ruma::api::client::{
    presence::set_presence,
    receipt::create_receipt::{self, v3::ReceiptType},
    to_device::send_event_to_device,
    typing::create_typing_event::{
        self,
        v3::{Typing, TypingInfo},
    },
};
use ruma::events::AnyToDeviceEventContent;
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{EventId, OwnedUserId, RoomId};

use super::{ClientError, Intent};

/// To-device messages: per user, per device (or [`DeviceIdOrAllDevices::AllDevices`], `*`).
pub type ToDeviceMessages =
    BTreeMap<OwnedUserId, BTreeMap<DeviceIdOrAllDevices, Raw<AnyToDeviceEventContent>>>;

impl Intent {
    /// Shows the user typing in `room_id` for `timeout`, or stops it with `None`.
    pub async fn typing(
        &self,
        room_id: &RoomId,
        timeout: Option<Duration>,
    ) -> Result<(), ClientError> {
        let state = timeout.map_or(Typing::No, |t| Typing::Yes(TypingInfo::new(t)));
        let request = create_typing_event::v3::Request::new(
            self.user_id().to_owned(),
            room_id.to_owned(),
            state,
        );
        self.call_in_room(room_id, request).await?;
        Ok(())
    }

    /// Marks `event_id` as read by the user.
    pub async fn read_receipt(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(), ClientError> {
        let request = create_receipt::v3::Request::new(
            room_id.to_owned(),
            ReceiptType::Read,
            event_id.to_owned(),
        );
        self.call_in_room(room_id, request).await?;
        Ok(())
    }

    /// Sets the user's presence.
    pub async fn set_presence(
        &self,
        presence: PresenceState,
        status_msg: Option<&str>,
    ) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        let mut request = set_presence::v3::Request::new(self.user_id().to_owned(), presence);
        request.status_msg = status_msg.map(str::to_owned);
        self.call(request).await?;
        Ok(())
    }

    /// Sends to-device messages of `event_type` (with a fresh transaction ID, reused on retry).
    pub async fn send_to_device(
        &self,
        event_type: &str,
        messages: ToDeviceMessages,
    ) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        let request = send_event_to_device::v3::Request::new_raw(
            event_type.into(),
            self.ctx.txn_ids().next(),
            messages,
        );
        self.call(request).await?;
        Ok(())
    }
}
