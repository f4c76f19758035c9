//! Reactions keyed by (room, target message, sender, key), with the reverse index from the
//! `m.reaction` event, written together.

use ruma::{EventId, RoomId, UserId};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::keys::key;
use super::{SledStore, json, to_json, tx_result};
use crate::store::StoreError;
use crate::store::records::ReactionMapping;

fn reaction_key(room_id: &RoomId, target: &str, sender: &UserId, reaction: &str) -> Vec<u8> {
    key(&[room_id.as_str(), target, sender.as_str(), reaction])
}

fn key_of(r: &ReactionMapping) -> Vec<u8> {
    reaction_key(&r.room_id, &r.target_remote_id, &r.sender, &r.key)
}

impl SledStore {
    pub(super) fn insert_reaction_sync(
        &self,
        reaction: &ReactionMapping,
    ) -> Result<(), StoreError> {
        let rkey = key_of(reaction);
        let value = to_json(reaction);
        let ekey = reaction.event_id.as_str();
        let trees = (&self.trees.reactions, &self.trees.reaction_by_event);
        tx_result(trees.transaction(|(reactions, by_event)| {
            if let Some(existing) = reactions.get(&rkey)?
                && existing != value.as_slice()
            {
                return Err(ConflictableTransactionError::Abort(format!(
                    "{} already reacted with {:?} to {} in {}",
                    reaction.sender, reaction.key, reaction.target_remote_id, reaction.room_id
                )));
            }
            if let Some(existing) = by_event.get(ekey)?
                && existing != rkey.as_slice()
            {
                return Err(ConflictableTransactionError::Abort(format!(
                    "event {ekey} is already mapped to another reaction"
                )));
            }
            reactions.insert(rkey.as_slice(), value.as_slice())?;
            by_event.insert(ekey, rkey.as_slice())?;
            Ok(())
        }))
    }

    pub(super) fn reaction_sync(
        &self,
        room_id: &RoomId,
        target: &str,
        sender: &UserId,
        reaction: &str,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        self.trees
            .reactions
            .get(reaction_key(room_id, target, sender, reaction))?
            .map(|bytes| json("reactions", &bytes))
            .transpose()
    }

    pub(super) fn reaction_by_event_sync(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        match self.trees.reaction_by_event.get(event_id.as_str())? {
            None => Ok(None),
            Some(rkey) => self
                .trees
                .reactions
                .get(rkey)?
                .map(|bytes| json("reactions", &bytes))
                .transpose(),
        }
    }

    pub(super) fn delete_reaction_sync(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        let trees = (&self.trees.reactions, &self.trees.reaction_by_event);
        tx_result(trees.transaction(|(reactions, by_event)| {
            let Some(rkey) = by_event.remove(event_id.as_str())? else {
                return Ok(None);
            };
            let Some(bytes) = reactions.remove(rkey)? else {
                return Ok(None);
            };
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))
        }))
    }
}
