//! The outbox: sends the bridge asked for, written (and flushed) before they are attempted,
//! removed once the homeserver has them. A homeserver outage only delays them; a crash
//! resumes them at the next start with the same transaction ID.

use super::keys::decode_u64;
use super::{SledStore, json, to_json};
use crate::store::StoreError;
use crate::store::queues::OutboxEntry;
use crate::store::records::MessageMapping;

impl SledStore {
    /// Appends `entry` (not yet flushed) and returns its sequence number.
    pub(super) fn outbox_append(&self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        let seq = self.db.generate_id()?;
        self.trees
            .outbox
            .insert(seq.to_be_bytes(), to_json(entry))?;
        self.depths.outbox.add(1);
        Ok(seq)
    }

    pub(super) fn outbox_pending_sync(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.trees
            .outbox
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok((decode_u64(&key), json("outbox", &value)?))
            })
            .collect()
    }

    /// Stores the mapping a send produced, then removes the send. If a crash comes between
    /// the two, the send is repeated with the same txnId, the homeserver answers with the same
    /// event, and the mapping insert is a no-op.
    pub(super) fn outbox_complete_sync(
        &self,
        seq: u64,
        mapping: Option<&MessageMapping>,
    ) -> Result<(), StoreError> {
        let stored = match mapping {
            Some(mapping) => self.messages.insert(mapping),
            None => Ok(()),
        };
        // The send is done whatever the mapping says; keeping it would repeat it forever.
        let removed = self.trees.outbox.remove(seq.to_be_bytes())?;
        self.depths.outbox.removed(&removed);
        stored
    }
}
