//! Remote message part ↔ Matrix event mappings, unique in both directions, written in one
//! transaction so the two directions never disagree.

use ruma::{EventId, RoomId};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::keys::key;
use super::{SledStore, corrupt, json, to_json, tx_result};
use crate::store::StoreError;
use crate::store::records::MessageMapping;

fn remote_key(room_id: &RoomId, remote_id: &str, part: &str) -> Vec<u8> {
    key(&[room_id.as_str(), remote_id, part])
}

/// Inserts `mapping` inside a transaction over (`msg_by_event`, `msg_by_remote`); aborts
/// with a message when either side is mapped to something else.
pub(super) fn insert_in(
    by_event: &TransactionalTree,
    by_remote: &TransactionalTree,
    mapping: &MessageMapping,
) -> Result<(), ConflictableTransactionError<String>> {
    let rkey = remote_key(&mapping.room_id, &mapping.remote_id, &mapping.part);
    let ekey = mapping.event_id.as_str().as_bytes();
    let value = to_json(mapping);
    if let Some(existing) = by_remote.get(&rkey)?
        && existing != ekey
    {
        return Err(ConflictableTransactionError::Abort(format!(
            "remote message {} (part {:?}) in {} is already mapped to {}",
            mapping.remote_id,
            mapping.part,
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
    by_remote.insert(rkey, ekey)?;
    by_event.insert(ekey, value)?;
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<MessageMapping, StoreError> {
    json("msg_by_event", bytes)
}

impl SledStore {
    fn message_trees(&self) -> (&Tree, &Tree) {
        (&self.trees.msg_by_event, &self.trees.msg_by_remote)
    }

    pub(super) fn insert_message_sync(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        tx_result(
            self.message_trees()
                .transaction(|(by_event, by_remote)| insert_in(by_event, by_remote, mapping)),
        )
    }

    pub(super) fn message_by_event_sync(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        self.trees
            .msg_by_event
            .get(event_id.as_str())?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    pub(super) fn message_by_remote_sync(
        &self,
        room_id: &RoomId,
        remote_id: &str,
        part: &str,
    ) -> Result<Option<MessageMapping>, StoreError> {
        match self
            .trees
            .msg_by_remote
            .get(remote_key(room_id, remote_id, part))?
        {
            None => Ok(None),
            Some(event_id) => self.message_by_event_sync(&parse_event_id(&event_id)?),
        }
    }

    pub(super) fn message_parts_sync(
        &self,
        room_id: &RoomId,
        remote_id: &str,
    ) -> Result<Vec<MessageMapping>, StoreError> {
        let prefix = key(&[room_id.as_str(), remote_id]);
        let mut out = Vec::new();
        for entry in self.trees.msg_by_remote.scan_prefix(prefix) {
            let (_, event_id) = entry?;
            if let Some(mapping) = self.message_by_event_sync(&parse_event_id(&event_id)?)? {
                out.push(mapping);
            }
        }
        Ok(out)
    }

    pub(super) fn delete_message_sync(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        tx_result(self.message_trees().transaction(|(by_event, by_remote)| {
            let Some(bytes) = by_event.remove(event_id.as_str())? else {
                return Ok(None);
            };
            let mapping: MessageMapping = serde_json::from_slice(&bytes)
                .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
            by_remote.remove(remote_key(
                &mapping.room_id,
                &mapping.remote_id,
                &mapping.part,
            ))?;
            Ok(Some(mapping))
        }))
    }
}

fn parse_event_id(bytes: &[u8]) -> Result<ruma::OwnedEventId, StoreError> {
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt("msg_by_remote", e))?;
    EventId::parse(text).map_err(|e| corrupt("msg_by_remote", e))
}
