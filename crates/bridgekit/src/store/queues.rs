//! The framework's own queues, as every backend stores them: the inbox of acknowledged
//! homeserver events, the record of transactions taken in, and the outbox of sends.
//!
//! Bridges never touch these; they are public so that a backend can live outside this crate.

use ruma::{OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::StoreError;

/// How many transaction records are kept for deduplication. Synapse retries an unanswered
/// transaction within minutes (its backoff caps at 512 s), one at a time, so a few thousand
/// records cover every retry by a wide margin.
pub const TRANSACTION_RECORDS_KEPT: u64 = 16_384;

/// What an inbox item carries, which decides how it is dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A room event from `events`.
    Timeline = 0,
    /// An EDU from `ephemeral` (typing, receipts, presence).
    Ephemeral = 1,
    /// A to-device message.
    ToDevice = 2,
    /// A transaction's device lists and key counts (MSC3202), for the bot's device.
    DeviceData = 3,
}

impl ItemKind {
    /// The kind stored as `code` (see `ItemKind as u8`).
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Timeline),
            1 => Some(Self::Ephemeral),
            2 => Some(Self::ToDevice),
            3 => Some(Self::DeviceData),
            _ => None,
        }
    }
}

/// One event waiting to be handled, in the order it must be handled within its queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Which part of the transaction it came from.
    pub kind: ItemKind,
    /// The ordering key: a room ID, or a user ID for presence and to-device.
    pub queue: String,
    /// The event exactly as the homeserver sent it.
    pub json: String,
}

impl InboxItem {
    /// A compact binary form: kind, queue length, queue, JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.queue.len() + self.json.len());
        out.push(self.kind as u8);
        out.extend_from_slice(&(self.queue.len() as u16).to_be_bytes());
        out.extend_from_slice(self.queue.as_bytes());
        out.extend_from_slice(self.json.as_bytes());
        out
    }

    /// Reads what [`InboxItem::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            tree: "inbox",
            reason: reason.to_owned(),
        };
        let kind = bytes
            .first()
            .and_then(|code| ItemKind::from_code(*code))
            .ok_or_else(|| corrupt("unknown item kind"))?;
        let len = bytes.get(1..3).ok_or_else(|| corrupt("short item"))?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let queue = bytes
            .get(3..3 + len)
            .ok_or_else(|| corrupt("short queue key"))?;
        let json = &bytes[3 + len..];
        Ok(InboxItem {
            kind,
            queue: String::from_utf8(queue.to_vec())
                .map_err(|_| corrupt("queue key is not UTF-8"))?,
            json: String::from_utf8(json.to_vec()).map_err(|_| corrupt("event is not UTF-8"))?,
        })
    }
}

/// A transaction to take in: its deduplication key and its items.
#[derive(Debug)]
pub struct IncomingTransaction {
    /// Identifies the transaction across retries (txnId plus a digest of its events).
    pub key: Vec<u8>,
    /// Its events, in order.
    pub items: Vec<InboxItem>,
}

/// The result of recording one transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// New: its items got these inbox sequence numbers.
    New(Vec<u64>),
    /// Already taken in earlier (a retry): nothing was written.
    Duplicate,
}

/// What a queued send does.
#[derive(Clone, Debug, Serialize, Deserialize)]
// Externally tagged: `RawValue` cannot pass through the buffering that internally tagged or
// flattened enums use.
#[serde(rename_all = "snake_case")]
pub enum OutboxOp {
    /// `PUT /rooms/{room}/send/{type}/{txnId}`.
    Message {
        /// The event type.
        event_type: String,
        /// The event content, as it will be sent.
        content: Box<RawValue>,
    },
    /// `PUT /rooms/{room}/state/{type}/{stateKey}`.
    State {
        /// The event type.
        event_type: String,
        /// The state key.
        state_key: String,
        /// The event content, as it will be sent.
        content: Box<RawValue>,
    },
    /// `PUT /rooms/{room}/redact/{eventId}/{txnId}`.
    Redaction {
        /// The event to redact.
        event_id: OwnedEventId,
        /// Why, shown to users.
        reason: Option<String>,
    },
}

/// One queued send.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Where it goes.
    pub room_id: OwnedRoomId,
    /// Who sends it (the bot or a ghost).
    pub sender: OwnedUserId,
    /// The client transaction ID, kept across retries and restarts.
    pub txn_id: OwnedTransactionId,
    /// What it does.
    pub op: OutboxOp,
    /// `?ts=` for bridged history (appservices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<ruma::MilliSecondsSinceUnixEpoch>,
    /// The remote message this event carries: its mapping is stored when the event ID arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<crate::ids::MessageId>,
    /// When `sender` is a real user the bridge acts as (double puppeting): the ghost that
    /// sends instead if the homeserver refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<OwnedUserId>,
}

/// A remote event a bridge handed over with
/// [`BridgeContext::remote_event`](crate::BridgeContext::remote_event), kept until it is
/// applied, so the bridge may acknowledge it to its network at once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteItem {
    /// The portal it happened in.
    pub portal: crate::store::PortalKey,
    /// The [`RemoteEvent`](crate::RemoteEvent), as JSON.
    pub event: Box<RawValue>,
}
