//! Portals: remote chat (and receiver) ↔ Matrix room, unique both ways.

use ruma::RoomId;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::keys::key;
use super::{SledStore, json, to_json, tx_result};
use crate::store::StoreError;
use crate::store::records::{Portal, PortalKey};

pub(super) fn portal_key(key_: &PortalKey) -> Vec<u8> {
    key(&[&key_.remote_id, key_.receiver.as_deref().unwrap_or("")])
}

impl SledStore {
    pub(super) fn put_portal_sync(&self, portal: &Portal) -> Result<(), StoreError> {
        let pkey = portal_key(&portal.key);
        let value = to_json(portal);
        let room = portal.room_id.as_str();
        let trees = (&self.trees.portals, &self.trees.portal_by_room);
        tx_result(trees.transaction(|(portals, by_room)| {
            if let Some(owner) = by_room.get(room)?
                && owner != pkey.as_slice()
            {
                return Err(ConflictableTransactionError::Abort(format!(
                    "room {room} is already the portal of another chat"
                )));
            }
            // A chat moving to a new room frees its old room.
            if let Some(old) = portals.get(&pkey)? {
                let old: Portal = serde_json::from_slice(&old)
                    .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
                if old.room_id != portal.room_id {
                    by_room.remove(old.room_id.as_str())?;
                }
            }
            portals.insert(pkey.as_slice(), value.as_slice())?;
            by_room.insert(room, pkey.as_slice())?;
            Ok(())
        }))
    }

    pub(super) fn portal_by_key_sync(
        &self,
        key_: &PortalKey,
    ) -> Result<Option<Portal>, StoreError> {
        self.trees
            .portals
            .get(portal_key(key_))?
            .map(|bytes| json("portals", &bytes))
            .transpose()
    }

    pub(super) fn portal_by_room_sync(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<Portal>, StoreError> {
        match self.trees.portal_by_room.get(room_id.as_str())? {
            None => Ok(None),
            Some(pkey) => self
                .trees
                .portals
                .get(pkey)?
                .map(|bytes| json("portals", &bytes))
                .transpose(),
        }
    }

    pub(super) fn delete_portal_sync(
        &self,
        key_: &PortalKey,
    ) -> Result<Option<Portal>, StoreError> {
        let pkey = portal_key(key_);
        let trees = (&self.trees.portals, &self.trees.portal_by_room);
        tx_result(trees.transaction(|(portals, by_room)| {
            let Some(bytes) = portals.remove(pkey.as_slice())? else {
                return Ok(None);
            };
            let portal: Portal = serde_json::from_slice(&bytes)
                .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
            by_room.remove(portal.room_id.as_str())?;
            Ok(Some(portal))
        }))
    }

    pub(super) fn portals_sync(&self) -> Result<Vec<Portal>, StoreError> {
        self.trees
            .portals
            .iter()
            .map(|entry| json("portals", &entry?.1))
            .collect()
    }
}
