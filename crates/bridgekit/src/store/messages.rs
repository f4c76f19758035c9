//! Remote message ↔ Matrix event mappings, unique in both directions.
//!
//! Edits, reactions, redactions and replies all need to answer "which Matrix event is remote
//! message X in this room" and "which remote message is event $Y". Both directions are
//! written in one sled transaction so they never disagree.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use serde::{Deserialize, Serialize};
use sled::{Transactional, transaction::ConflictableTransactionError};

use super::StoreError;

/// One bridged message: where it lives on each side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageMapping {
    /// The Matrix room (portal) the event is in.
    pub room_id: OwnedRoomId,
    /// The message's ID on the remote network, unique within the room.
    pub remote_id: String,
    /// The Matrix event that carries the message.
    pub event_id: OwnedEventId,
    /// The Matrix user who sent the event, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<OwnedUserId>,
}

impl MessageMapping {
    /// A mapping of `remote_id` in `room_id` to `event_id`.
    pub fn new(room_id: OwnedRoomId, remote_id: impl Into<String>, event_id: OwnedEventId) -> Self {
        Self {
            room_id,
            remote_id: remote_id.into(),
            event_id,
            sender: None,
        }
    }

    /// Records who sent the Matrix event.
    pub fn with_sender(mut self, sender: OwnedUserId) -> Self {
        self.sender = Some(sender);
        self
    }
}

/// Access to the message mappings; obtained from [`Store::messages`](super::Store::messages).
#[derive(Clone)]
pub struct Messages {
    by_event: sled::Tree,
    by_remote: sled::Tree,
}

fn remote_key(room_id: &RoomId, remote_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(room_id.as_str().len() + remote_id.len() + 1);
    key.extend_from_slice(room_id.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(remote_id.as_bytes());
    key
}

impl Messages {
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            by_event: db.open_tree("msg_by_event")?,
            by_remote: db.open_tree("msg_by_remote")?,
        })
    }

    /// Stores a mapping. Storing the same mapping twice is a no-op; mapping a remote ID or an
    /// event ID that is already mapped to something else is a [`StoreError::Conflict`].
    pub fn insert(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        let rkey = remote_key(&mapping.room_id, &mapping.remote_id);
        let ekey = mapping.event_id.as_str().as_bytes();
        let value = serde_json::to_vec(mapping).expect("mapping serializes");
        let result = (&self.by_event, &self.by_remote).transaction(|(by_event, by_remote)| {
            if let Some(existing) = by_remote.get(&rkey)?
                && existing != ekey
            {
                return Err(ConflictableTransactionError::Abort(format!(
                    "remote message {} in {} is already mapped to {}",
                    mapping.remote_id,
                    mapping.room_id,
                    String::from_utf8_lossy(&existing)
                )));
            }
            if let Some(existing) = by_event.get(ekey)?
                && existing != value.as_slice()
            {
                return Err(ConflictableTransactionError::Abort(format!(
                    "event {} is already mapped to another remote message",
                    mapping.event_id
                )));
            }
            by_remote.insert(rkey.as_slice(), ekey)?;
            by_event.insert(ekey, value.as_slice())?;
            Ok(())
        });
        result.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(msg) => StoreError::Conflict(msg),
            sled::transaction::TransactionError::Storage(e) => StoreError::Backend(e),
        })
    }

    /// The mapping of a Matrix event, if it was bridged.
    pub fn by_event(&self, event_id: &ruma::EventId) -> Result<Option<MessageMapping>, StoreError> {
        match self.by_event.get(event_id.as_str())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        tree: "msg_by_event",
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// The mapping of a remote message in a room, if it was bridged.
    pub fn by_remote(
        &self,
        room_id: &RoomId,
        remote_id: &str,
    ) -> Result<Option<MessageMapping>, StoreError> {
        match self.by_remote.get(remote_key(room_id, remote_id))? {
            None => Ok(None),
            Some(event_id) => {
                let event_id = std::str::from_utf8(&event_id).map_err(|e| StoreError::Corrupt {
                    tree: "msg_by_remote",
                    reason: e.to_string(),
                })?;
                let event_id = ruma::EventId::parse(event_id).map_err(|e| StoreError::Corrupt {
                    tree: "msg_by_remote",
                    reason: e.to_string(),
                })?;
                self.by_event(&event_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DEFAULT_CACHE_BYTES, Store};
    use ruma::{owned_event_id, owned_room_id};

    #[test]
    fn mapping_resolves_in_both_directions_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let room = owned_room_id!("!room:example.org");
        let mapping = MessageMapping::new(room.clone(), "r1", owned_event_id!("$ev1"));
        {
            let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
            store.messages().insert(&mapping).unwrap();
            store.messages().insert(&mapping).unwrap(); // idempotent
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(
            store.messages().by_remote(&room, "r1").unwrap(),
            Some(mapping.clone())
        );
        assert_eq!(
            store.messages().by_event(&mapping.event_id).unwrap(),
            Some(mapping)
        );
        assert_eq!(store.messages().by_remote(&room, "r2").unwrap(), None);
    }

    #[test]
    fn conflicting_mappings_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let room = owned_room_id!("!room:example.org");
        store
            .messages()
            .insert(&MessageMapping::new(
                room.clone(),
                "r1",
                owned_event_id!("$a"),
            ))
            .unwrap();
        let same_remote = MessageMapping::new(room.clone(), "r1", owned_event_id!("$b"));
        assert!(matches!(
            store.messages().insert(&same_remote),
            Err(StoreError::Conflict(_))
        ));
        let same_event = MessageMapping::new(room.clone(), "r2", owned_event_id!("$a"));
        assert!(matches!(
            store.messages().insert(&same_event),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.messages().by_remote(&room, "r2").unwrap(), None);
        assert_eq!(
            store.messages().by_event(&owned_event_id!("$b")).unwrap(),
            None
        );
        assert_eq!(
            store
                .messages()
                .by_remote(&room, "r1")
                .unwrap()
                .unwrap()
                .event_id,
            "$a"
        );
    }
}
