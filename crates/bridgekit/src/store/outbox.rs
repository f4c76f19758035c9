//! The outbox: sends the bridge asked for, written (and flushed) before they are attempted,
//! removed once the homeserver has them. A homeserver outage only delays them; a crash
//! resumes them at the next start with the same transaction ID.

use ruma::{OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{MessageMapping, Store, StoreError, decode_u64};

/// What to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
// Externally tagged: `RawValue` cannot pass through the buffering that internally tagged or
// flattened enums use.
#[serde(rename_all = "snake_case")]
pub(crate) enum OutboxOp {
    /// `PUT /rooms/{room}/send/{type}/{txnId}`.
    Message {
        event_type: String,
        content: Box<RawValue>,
    },
    /// `PUT /rooms/{room}/state/{type}/{stateKey}`.
    State {
        event_type: String,
        state_key: String,
        content: Box<RawValue>,
    },
    /// `PUT /rooms/{room}/redact/{eventId}/{txnId}`.
    Redaction {
        event_id: OwnedEventId,
        reason: Option<String>,
    },
}

/// One queued send.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OutboxEntry {
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub txn_id: OwnedTransactionId,
    pub op: OutboxOp,
    /// `?ts=` for bridged history (appservices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The remote message this event carries: its mapping is stored when the event ID arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
}

impl Store {
    /// Appends `entry` durably and returns its sequence number.
    pub(crate) async fn outbox_push(&self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        let seq = self.generate_id()?;
        let value = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            tree: "outbox",
            reason: e.to_string(),
        })?;
        self.outbox.insert(seq.to_be_bytes(), value)?;
        self.flush_async().await?;
        Ok(seq)
    }

    /// Every send not yet done, oldest first.
    pub(crate) fn outbox_pending(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.outbox
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                let parsed = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    tree: "outbox",
                    reason: e.to_string(),
                })?;
                Ok((decode_u64(&key), parsed))
            })
            .collect()
    }

    /// Marks a send done: stores its mapping (if it carries a remote message), then removes
    /// it. If a crash falls between the two, the send is repeated with the same txnId and the
    /// homeserver answers with the same event, so the mapping insert is a no-op.
    pub(crate) fn outbox_complete(
        &self,
        seq: u64,
        mapping: Option<&MessageMapping>,
    ) -> Result<(), StoreError> {
        if let Some(mapping) = mapping {
            self.messages().insert(mapping)?;
        }
        self.outbox.remove(seq.to_be_bytes())?;
        Ok(())
    }

    /// How many sends wait.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_CACHE_BYTES;
    use ruma::{owned_room_id, owned_user_id};

    #[tokio::test]
    async fn entries_survive_reopen_in_order_until_completed() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |n: u32| OutboxEntry {
            room_id: owned_room_id!("!r:x"),
            sender: owned_user_id!("@_g:x"),
            txn_id: format!("t{n}").into(),
            op: OutboxOp::Message {
                event_type: "m.room.message".into(),
                content: RawValue::from_string(format!(r#"{{"body":"{n}"}}"#)).unwrap(),
            },
            timestamp: None,
            remote_id: Some(format!("r{n}")),
        };
        let first = {
            let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
            let first = store.outbox_push(&entry(1)).await.unwrap();
            store.outbox_push(&entry(2)).await.unwrap();
            first
        };
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let pending = store.outbox_pending().unwrap();
        let txns: Vec<String> = pending.iter().map(|(_, e)| e.txn_id.to_string()).collect();
        assert_eq!(txns, ["t1", "t2"]);
        let mapping = MessageMapping::new(owned_room_id!("!r:x"), "r1", "$e1".try_into().unwrap());
        store.outbox_complete(first, Some(&mapping)).unwrap();
        assert_eq!(store.outbox_len(), 1);
        assert_eq!(
            store.messages().by_remote(&mapping.room_id, "r1").unwrap(),
            Some(mapping)
        );
    }
}
