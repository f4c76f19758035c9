//! The remote queue: events a bridge handed over from its network, written (and flushed)
//! before `remote_event` returns, removed once applied. A crash resumes them in order.

use super::keys::decode_u64;
use super::{SledStore, json, to_json};
use crate::store::StoreError;
use crate::store::queues::RemoteItem;

impl SledStore {
    /// Appends `item` (not yet flushed) and returns its sequence number.
    pub(super) fn remote_append(&self, item: &RemoteItem) -> Result<u64, StoreError> {
        let seq = self.db.generate_id()?;
        self.trees
            .remote_queue
            .insert(seq.to_be_bytes(), to_json(item))?;
        self.depths.remote.add(1);
        Ok(seq)
    }

    pub(super) fn remote_pending_sync(&self) -> Result<Vec<(u64, RemoteItem)>, StoreError> {
        self.trees
            .remote_queue
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok((decode_u64(&key), json("remote_queue", &value)?))
            })
            .collect()
    }

    pub(super) fn remote_complete_sync(&self, seq: u64) -> Result<(), StoreError> {
        let removed = self.trees.remote_queue.remove(seq.to_be_bytes())?;
        self.depths.remote.removed(&removed);
        Ok(())
    }
}
