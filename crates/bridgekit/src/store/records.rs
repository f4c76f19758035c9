//! What the store remembers for bridges: portals, ghosts, message and reaction mappings.
//!
//! These are plain values; every backend stores them the same way, so a store can be moved
//! between backends record by record (see [`export`](super::export)).

use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::StoreError;
use crate::ids::{ChatId, LoginId, MessageId, PartId, RemoteUserId};

/// One bridged message part: where it lives on each side.
///
/// Unique in both directions: a remote message part maps to one event in its room, and an
/// event to one remote message part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageMapping {
    /// The Matrix room (portal) the event is in.
    pub room_id: OwnedRoomId,
    /// The message's ID on the remote network, unique within the room.
    pub remote_id: MessageId,
    /// Which part of the remote message (a caption and its image, say); empty for the only
    /// part.
    #[serde(default, skip_serializing_if = "PartId::is_only")]
    pub part: PartId,
    /// The Matrix event that carries the part.
    pub event_id: OwnedEventId,
    /// The Matrix user who sent the event, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<OwnedUserId>,
    /// When the message was sent, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<MilliSecondsSinceUnixEpoch>,
}

impl MessageMapping {
    /// A mapping of `remote_id` in `room_id` to `event_id`.
    pub fn new(room_id: OwnedRoomId, remote_id: MessageId, event_id: OwnedEventId) -> Self {
        Self {
            room_id,
            remote_id,
            part: PartId::only(),
            event_id,
            sender: None,
            timestamp: None,
        }
    }

    /// Names the part of a multi-part remote message.
    pub fn with_part(mut self, part: PartId) -> Self {
        self.part = part;
        self
    }

    /// Records who sent the Matrix event.
    pub fn with_sender(mut self, sender: OwnedUserId) -> Self {
        self.sender = Some(sender);
        self
    }

    /// Records when the message was sent.
    pub fn with_timestamp(mut self, timestamp: MilliSecondsSinceUnixEpoch) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// One bridged reaction, keyed by the message it targets, who reacted and the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReactionMapping {
    /// The portal room.
    pub room_id: OwnedRoomId,
    /// The remote ID of the message reacted to.
    pub target_remote_id: MessageId,
    /// Who reacted, as a Matrix user (a ghost for remote users).
    pub sender: OwnedUserId,
    /// The reaction key, usually an emoji.
    pub key: String,
    /// The `m.reaction` event.
    pub event_id: OwnedEventId,
    /// The reaction's own ID on the remote network, on networks where reactions are messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<MessageId>,
}

impl ReactionMapping {
    /// `sender` reacted to remote message `target_remote_id` with `key`, as event `event_id`.
    pub fn new(
        room_id: OwnedRoomId,
        target_remote_id: MessageId,
        sender: OwnedUserId,
        key: impl Into<String>,
        event_id: OwnedEventId,
    ) -> Self {
        Self {
            room_id,
            target_remote_id,
            sender,
            key: key.into(),
            event_id,
            remote_id: None,
        }
    }

    /// Records the reaction's remote ID.
    pub fn with_remote_id(mut self, remote_id: MessageId) -> Self {
        self.remote_id = Some(remote_id);
        self
    }
}

/// Which remote chat a portal is: its ID, and for chats that look different to each login
/// (direct messages), the login whose view it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PortalKey {
    /// The chat's ID on the remote network.
    pub remote_id: ChatId,
    /// The login whose view of the chat this is, for per-login chats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<LoginId>,
}

impl PortalKey {
    /// A chat everyone sees the same.
    pub fn new(remote_id: ChatId) -> Self {
        Self {
            remote_id,
            receiver: None,
        }
    }

    /// A chat as the login `receiver` sees it (a direct message, say).
    pub fn with_receiver(mut self, receiver: LoginId) -> Self {
        self.receiver = Some(receiver);
        self
    }
}

/// A remote chat bridged to a Matrix room. Unique in both directions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Portal {
    /// The remote chat.
    pub key: PortalKey,
    /// The Matrix room.
    pub room_id: OwnedRoomId,
    /// Whatever the bridge keeps about the chat (see [`Portal::metadata_as`]).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

impl Portal {
    /// A portal with no metadata.
    pub fn new(key: PortalKey, room_id: OwnedRoomId) -> Self {
        Self {
            key,
            room_id,
            metadata: Value::Null,
        }
    }

    /// Attaches the bridge's own metadata, typed by the bridge.
    pub fn with_metadata(mut self, metadata: &impl Serialize) -> Result<Self, StoreError> {
        self.metadata = to_value(metadata)?;
        Ok(self)
    }

    /// The bridge's metadata as `T`; `None` when there is none.
    pub fn metadata_as<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        from_value(&self.metadata)
    }
}

/// What the bridge remembers about one of its users.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GhostRecord {
    /// The remote user this ghost stands for, when the bridge recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<RemoteUserId>,
    /// The homeserver has the account (registered, or it answered `M_USER_IN_USE`).
    pub registered: bool,
    /// The displayname last set by the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    /// The avatar last set by the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Whatever the bridge keeps about the user (see [`GhostRecord::metadata_as`]).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

impl GhostRecord {
    /// The bridge's metadata as `T`; `None` when there is none.
    pub fn metadata_as<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        from_value(&self.metadata)
    }

    /// Replaces the bridge's metadata.
    pub fn set_metadata(&mut self, metadata: &impl Serialize) -> Result<(), StoreError> {
        self.metadata = to_value(metadata)?;
        Ok(())
    }
}

/// A per-room displayname and avatar, as last set.
pub type RoomProfile = (Option<String>, Option<String>);

pub(crate) fn to_value(value: &impl Serialize) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Encode(e.to_string()))
}

pub(crate) fn from_value<T: DeserializeOwned>(value: &Value) -> Result<Option<T>, StoreError> {
    if value.is_null() {
        return Ok(None);
    }
    T::deserialize(value)
        .map(Some)
        .map_err(|e| StoreError::Encode(e.to_string()))
}
