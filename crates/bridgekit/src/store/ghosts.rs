//! Ghost users: whether the homeserver knows them, which rooms they joined, and the profile
//! last set, so that nothing is registered, joined or re-sent twice.

use ruma::{RoomId, UserId};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// What the bridge remembers about one of its users.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GhostRecord {
    /// The homeserver has the account (registered, or it answered `M_USER_IN_USE`).
    pub registered: bool,
    /// The displayname last set by the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    /// The avatar last set by the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// Access to ghost records; obtained from [`Store::ghosts`](super::Store::ghosts).
#[derive(Clone)]
pub struct Ghosts {
    records: sled::Tree,
    joined: sled::Tree,
    room_profiles: sled::Tree,
}

/// A per-room displayname and avatar, as last set.
pub type RoomProfile = (Option<String>, Option<String>);

fn joined_key(user_id: &UserId, room_id: &RoomId) -> Vec<u8> {
    let mut key = Vec::with_capacity(user_id.as_str().len() + room_id.as_str().len() + 1);
    key.extend_from_slice(user_id.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(room_id.as_str().as_bytes());
    key
}

impl Ghosts {
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            records: db.open_tree("ghosts")?,
            joined: db.open_tree("ghost_joined")?,
            room_profiles: db.open_tree("ghost_room_profiles")?,
        })
    }

    /// The record of `user_id`; a default (unregistered) record if none was stored.
    pub fn get(&self, user_id: &UserId) -> Result<GhostRecord, StoreError> {
        match self.records.get(user_id.as_str())? {
            None => Ok(GhostRecord::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                tree: "ghosts",
                reason: e.to_string(),
            }),
        }
    }

    /// Applies `change` to the record of `user_id` atomically.
    pub fn update(
        &self,
        user_id: &UserId,
        change: impl Fn(&mut GhostRecord),
    ) -> Result<(), StoreError> {
        self.records.update_and_fetch(user_id.as_str(), |old| {
            let mut record: GhostRecord = old
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            change(&mut record);
            Some(serde_json::to_vec(&record).expect("record serializes"))
        })?;
        Ok(())
    }

    /// Whether `user_id` is known to have joined `room_id`.
    pub fn is_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<bool, StoreError> {
        Ok(self.joined.contains_key(joined_key(user_id, room_id))?)
    }

    /// The per-room profile last set for `user_id` in `room_id`.
    pub fn room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<RoomProfile, StoreError> {
        match self.room_profiles.get(joined_key(user_id, room_id))? {
            None => Ok((None, None)),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                tree: "ghost_room_profiles",
                reason: e.to_string(),
            }),
        }
    }

    /// Records the per-room profile set for `user_id` in `room_id`.
    pub fn set_room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        profile: RoomProfile,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&profile).expect("serializes");
        self.room_profiles
            .insert(joined_key(user_id, room_id), value)?;
        Ok(())
    }

    /// Records whether `user_id` is joined to `room_id`.
    pub fn set_joined(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        joined: bool,
    ) -> Result<(), StoreError> {
        let key = joined_key(user_id, room_id);
        if joined {
            self.joined.insert(key, &[])?;
        } else {
            self.joined.remove(key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{DEFAULT_CACHE_BYTES, Store};
    use ruma::{owned_room_id, owned_user_id};

    #[test]
    fn records_and_joins_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let ghost = owned_user_id!("@_echo_a:example.org");
        let room = owned_room_id!("!r:example.org");
        assert!(!store.ghosts().get(&ghost).unwrap().registered);
        store
            .ghosts()
            .update(&ghost, |r| r.registered = true)
            .unwrap();
        store
            .ghosts()
            .update(&ghost, |r| r.displayname = Some("A".into()))
            .unwrap();
        let record = store.ghosts().get(&ghost).unwrap();
        assert!(record.registered);
        assert_eq!(record.displayname.as_deref(), Some("A"));
        assert!(!store.ghosts().is_joined(&ghost, &room).unwrap());
        store.ghosts().set_joined(&ghost, &room, true).unwrap();
        assert!(store.ghosts().is_joined(&ghost, &room).unwrap());
        store.ghosts().set_joined(&ghost, &room, false).unwrap();
        assert!(!store.ghosts().is_joined(&ghost, &room).unwrap());
    }
}
