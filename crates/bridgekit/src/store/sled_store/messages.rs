//! Remote message part ↔ Matrix event mappings, unique in both directions.
//!
//! Not a sled transaction: each sled transaction rolls the log buffer twice (two disk writes),
//! which made mapping inserts the most expensive part of the hot path. Instead, writers of
//! mappings take one lock (the store belongs to one process), and the two keys are written in
//! an order that a crash can only leave harmless: the reverse key (`msg_by_remote`) first, the
//! mapping (`msg_by_event`) last, and the reverse way on delete. A reverse key whose mapping
//! does not point back is stale; reads ignore it and writes replace it.

use ruma::{EventId, RoomId};

use super::keys::key;
use super::{SledStore, corrupt, json, to_json};
use crate::store::StoreError;
use crate::store::records::MessageMapping;

fn remote_key(room_id: &RoomId, remote_id: &str, part: &str) -> Vec<u8> {
    key(&[room_id.as_str(), remote_id, part])
}

fn decode(bytes: &[u8]) -> Result<MessageMapping, StoreError> {
    json("msg_by_event", bytes)
}

fn is_for(mapping: &MessageMapping, room_id: &RoomId, remote_id: &str, part: &str) -> bool {
    mapping.room_id == room_id && mapping.remote_id == remote_id && mapping.part == part
}

impl SledStore {
    /// Inserts `mapping`; [`StoreError::Conflict`] (changing nothing) when either side is
    /// mapped to something else. Inserting the same mapping again is a no-op.
    pub(super) fn insert_message_sync(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        let _writer = self
            .mapping_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let t = &self.trees;
        let rkey = remote_key(&mapping.room_id, &mapping.remote_id, &mapping.part);
        let ekey = mapping.event_id.as_str().as_bytes();
        let value = to_json(mapping);
        // Claim the reverse key: usually free (one compare-and-swap); taken by this same
        // event (a repeat); or left by a crash, pointing at a mapping that is not its own.
        let claimed =
            match t
                .msg_by_remote
                .compare_and_swap(&rkey, None as Option<&[u8]>, Some(ekey))?
            {
                Ok(()) => true,
                Err(taken) => {
                    let existing = taken.current.unwrap_or_default();
                    if existing != ekey {
                        if let Some(other) = t.msg_by_event.get(&existing)?
                            && is_for(
                                &decode(&other)?,
                                &mapping.room_id,
                                &mapping.remote_id,
                                &mapping.part,
                            )
                        {
                            return Err(StoreError::Conflict(format!(
                                "remote message {} (part {:?}) in {} is already mapped to {}",
                                mapping.remote_id,
                                mapping.part,
                                mapping.room_id,
                                String::from_utf8_lossy(&existing)
                            )));
                        }
                        t.msg_by_remote.insert(&rkey, ekey)?; // replaces a stale key
                    }
                    false
                }
            };
        match t.msg_by_event.compare_and_swap(
            ekey,
            None as Option<&[u8]>,
            Some(value.as_slice()),
        )? {
            Ok(()) => Ok(()),
            Err(taken) if taken.current.as_deref() == Some(value.as_slice()) => Ok(()),
            Err(_) => {
                if claimed {
                    t.msg_by_remote.remove(&rkey)?; // undo: the event belongs to another
                }
                Err(StoreError::Conflict(format!(
                    "event {} is already mapped to another remote message",
                    mapping.event_id
                )))
            }
        }
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
            Some(event_id) => Ok(self
                .message_by_event_sync(&parse_event_id(&event_id)?)?
                .filter(|m| is_for(m, room_id, remote_id, part))),
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
            if let Some(mapping) = self.message_by_event_sync(&parse_event_id(&event_id)?)?
                && mapping.room_id == room_id
                && mapping.remote_id == remote_id
            {
                out.push(mapping);
            }
        }
        Ok(out)
    }

    pub(super) fn delete_message_sync(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        let _writer = self
            .mapping_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(bytes) = self.trees.msg_by_event.remove(event_id.as_str())? else {
            return Ok(None);
        };
        let mapping = decode(&bytes)?;
        let rkey = remote_key(&mapping.room_id, &mapping.remote_id, &mapping.part);
        let _ = self.trees.msg_by_remote.compare_and_swap(
            rkey,
            Some(event_id.as_str().as_bytes()),
            None as Option<&[u8]>,
        )?;
        Ok(Some(mapping))
    }
}

fn parse_event_id(bytes: &[u8]) -> Result<ruma::OwnedEventId, StoreError> {
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt("msg_by_remote", e))?;
    EventId::parse(text).map_err(|e| corrupt("msg_by_remote", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_CACHE_BYTES;
    use ruma::{event_id, room_id};

    #[test]
    fn a_reverse_key_left_by_a_crash_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let room = room_id!("!r:example.org");
        // What a crash between the two writes of an insert leaves: the reverse key only.
        store
            .trees
            .msg_by_remote
            .insert(remote_key(room, "r1", ""), "$e1".as_bytes())
            .unwrap();
        assert_eq!(store.message_by_remote_sync(room, "r1", "").unwrap(), None);

        // The event goes to another remote message: r1's stale key must not resolve to it.
        let r2 = MessageMapping::new(
            room.to_owned(),
            crate::ids::MessageId::from_static("r2"),
            event_id!("$e1").to_owned(),
        );
        store.insert_message_sync(&r2).unwrap();
        assert_eq!(store.message_by_remote_sync(room, "r1", "").unwrap(), None);
        assert!(store.message_parts_sync(room, "r1").unwrap().is_empty());
        assert_eq!(
            store.message_by_remote_sync(room, "r2", "").unwrap(),
            Some(r2)
        );

        // And r1 can be mapped afresh.
        let r1 = MessageMapping::new(
            room.to_owned(),
            crate::ids::MessageId::from_static("r1"),
            event_id!("$e9").to_owned(),
        );
        store.insert_message_sync(&r1).unwrap();
        assert_eq!(
            store.message_by_remote_sync(room, "r1", "").unwrap(),
            Some(r1)
        );
    }
}
