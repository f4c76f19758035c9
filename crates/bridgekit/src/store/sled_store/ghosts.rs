//! Ghost users: registration, remote ID, the profile last set (globally and per room) and
//! the rooms joined, so that nothing is registered, joined or re-sent twice.

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::keys::{key, parts};
use super::{SledStore, corrupt, json, to_json, tx_result};
use crate::store::StoreError;
use crate::store::records::{GhostRecord, RoomProfile};

fn member_key(user_id: &UserId, room_id: &RoomId) -> Vec<u8> {
    key(&[user_id.as_str(), room_id.as_str()])
}

impl SledStore {
    pub(super) fn ghost_sync(&self, user_id: &UserId) -> Result<GhostRecord, StoreError> {
        match self.trees.ghosts.get(user_id.as_str())? {
            None => Ok(GhostRecord::default()),
            Some(bytes) => json("ghosts", &bytes),
        }
    }

    pub(super) fn update_ghost_sync(
        &self,
        user_id: &UserId,
        change: &(dyn for<'r> Fn(&'r mut GhostRecord) + Send + Sync),
    ) -> Result<GhostRecord, StoreError> {
        let user = user_id.as_str();
        let trees = (&self.trees.ghosts, &self.trees.ghost_by_remote);
        tx_result(trees.transaction(|(ghosts, by_remote)| {
            let old: GhostRecord = match ghosts.get(user)? {
                None => GhostRecord::default(),
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?,
            };
            let mut new = old.clone();
            change(&mut new);
            if new.remote_id != old.remote_id {
                if let Some(remote) = &new.remote_id
                    && let Some(owner) = by_remote.get(remote.as_str())?
                    && owner != user.as_bytes()
                {
                    return Err(ConflictableTransactionError::Abort(format!(
                        "remote user {remote} already has the ghost {}",
                        String::from_utf8_lossy(&owner)
                    )));
                }
                if let Some(remote) = &old.remote_id {
                    by_remote.remove(remote.as_str())?;
                }
                if let Some(remote) = &new.remote_id {
                    by_remote.insert(remote.as_str(), user)?;
                }
            }
            ghosts.insert(user, to_json(&new))?;
            Ok(new)
        }))
    }

    pub(super) fn ghost_by_remote_sync(
        &self,
        remote_id: &str,
    ) -> Result<Option<(OwnedUserId, GhostRecord)>, StoreError> {
        let Some(user) = self.trees.ghost_by_remote.get(remote_id)? else {
            return Ok(None);
        };
        let user = std::str::from_utf8(&user).map_err(|e| corrupt("ghost_by_remote", e))?;
        let user = UserId::parse(user).map_err(|e| corrupt("ghost_by_remote", e))?;
        let record = self.ghost_sync(&user)?;
        Ok(Some((user, record)))
    }

    pub(super) fn set_joined_sync(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        joined: bool,
    ) -> Result<(), StoreError> {
        let key = member_key(user_id, room_id);
        if joined {
            self.trees.ghost_joined.insert(key, &[])?;
        } else {
            self.trees.ghost_joined.remove(key)?;
        }
        Ok(())
    }

    pub(super) fn is_joined_sync(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .trees
            .ghost_joined
            .contains_key(member_key(user_id, room_id))?)
    }

    pub(super) fn joined_rooms_sync(
        &self,
        user_id: &UserId,
    ) -> Result<Vec<OwnedRoomId>, StoreError> {
        let mut rooms = Vec::new();
        for entry in self
            .trees
            .ghost_joined
            .scan_prefix(key(&[user_id.as_str()]))
        {
            let (k, _) = entry?;
            let room = parts(&k)
                .and_then(|p| p.into_iter().nth(1))
                .ok_or_else(|| corrupt("ghost_joined", "malformed key"))?;
            rooms.push(RoomId::parse(room).map_err(|e| corrupt("ghost_joined", e))?);
        }
        Ok(rooms)
    }

    pub(super) fn room_profile_sync(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<RoomProfile, StoreError> {
        match self
            .trees
            .ghost_room_profiles
            .get(member_key(user_id, room_id))?
        {
            None => Ok((None, None)),
            Some(bytes) => json("ghost_room_profiles", &bytes),
        }
    }

    pub(super) fn set_room_profile_sync(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        profile: &RoomProfile,
    ) -> Result<(), StoreError> {
        self.trees
            .ghost_room_profiles
            .insert(member_key(user_id, room_id), to_json(profile))?;
        Ok(())
    }
}
