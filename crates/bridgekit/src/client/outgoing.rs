//! What a bridge asks to send: a message-like event, a state event or a redaction, with
//! optional backfill timestamp, chosen transaction ID and the remote message it carries.

use ruma::events::{MessageLikeEventContent, StateEventContent};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedTransactionId, RoomId};
use serde_json::value::RawValue;

use super::ClientError;
use crate::ids::MessageId;
use crate::store::queues::OutboxOp;

/// A send, built in one expression: `Outgoing::message(&room, &content)?.remote_id(id)`.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub(crate) room_id: OwnedRoomId,
    pub(crate) op: OutboxOp,
    pub(crate) txn_id: Option<OwnedTransactionId>,
    pub(crate) timestamp: Option<MilliSecondsSinceUnixEpoch>,
    pub(crate) remote_id: Option<MessageId>,
}

fn raw(content: &impl serde::Serialize) -> Result<Box<RawValue>, ClientError> {
    serde_json::value::to_raw_value(content).map_err(|e| ClientError::Request(e.to_string()))
}

impl Outgoing {
    fn new(room_id: &RoomId, op: OutboxOp) -> Self {
        Self {
            room_id: room_id.to_owned(),
            op,
            txn_id: None,
            timestamp: None,
            remote_id: None,
        }
    }

    /// A message-like event (text, media, edit, reaction, …).
    pub fn message<C: MessageLikeEventContent>(
        room_id: &RoomId,
        content: &C,
    ) -> Result<Self, ClientError> {
        let op = OutboxOp::Message {
            event_type: content.event_type().to_string(),
            content: raw(content)?,
        };
        Ok(Self::new(room_id, op))
    }

    /// A message-like event of any type, from raw JSON content.
    pub fn raw_message(room_id: &RoomId, event_type: &str, content: Box<RawValue>) -> Self {
        Self::new(
            room_id,
            OutboxOp::Message {
                event_type: event_type.to_owned(),
                content,
            },
        )
    }

    /// A state event; `state_key` may be empty.
    pub fn state<C: StateEventContent>(
        room_id: &RoomId,
        state_key: &str,
        content: &C,
    ) -> Result<Self, ClientError> {
        let op = OutboxOp::State {
            event_type: content.event_type().to_string(),
            state_key: state_key.to_owned(),
            content: raw(content)?,
        };
        Ok(Self::new(room_id, op))
    }

    /// A state event of any type, from raw JSON content.
    pub fn raw_state(
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        content: Box<RawValue>,
    ) -> Self {
        let op = OutboxOp::State {
            event_type: event_type.to_owned(),
            state_key: state_key.to_owned(),
            content,
        };
        Self::new(room_id, op)
    }

    /// A redaction of `event_id`.
    pub fn redaction(room_id: &RoomId, event_id: &EventId, reason: Option<&str>) -> Self {
        Self::new(
            room_id,
            OutboxOp::Redaction {
                event_id: event_id.to_owned(),
                reason: reason.map(str::to_owned),
            },
        )
    }

    /// Uses this transaction ID (e.g. [`TxnIds::derived`](super::TxnIds::derived)) instead of a
    /// fresh one.
    pub fn txn_id(mut self, txn_id: OwnedTransactionId) -> Self {
        self.txn_id = Some(txn_id);
        self
    }

    /// Backdates the event (`?ts=`, for bridging history; only appservices may).
    pub fn timestamp(mut self, timestamp: MilliSecondsSinceUnixEpoch) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// The remote message this event carries: the mapping is stored when the event ID arrives.
    pub fn remote_id(mut self, remote_id: MessageId) -> Self {
        self.remote_id = Some(remote_id);
        self
    }
}
