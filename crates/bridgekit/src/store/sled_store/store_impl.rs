//! [`Store`] for [`SledStore`]: each call is a few microseconds of sled work done inline;
//! only flushes leave the task (to the shared flusher thread).

use crate::ids::{LoginId, MessageId, PartId, RemoteUserId};
use async_trait::async_trait;
use ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use super::SledStore;
use super::keys::decode_u64;
use crate::store::export::{Record, RecordSink};
use crate::store::queues::{InboxItem, IncomingTransaction, OutboxEntry, Recorded, RemoteItem};
use crate::store::records::{
    GhostRecord, MessageMapping, Portal, PortalKey, ReactionMapping, RoomProfile,
};
use crate::store::users::{LoginRecord, PortalLogin, UserRecord};
use crate::store::{Queues, Store, StoreError, StoreStats, Transfer};

#[async_trait]
impl Store for SledStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

    async fn insert_message(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        self.messages.insert(mapping)
    }
    async fn message_by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        self.messages.by_event(event_id)
    }
    async fn message_by_remote(
        &self,
        room_id: &RoomId,
        remote_id: &MessageId,
        part: &PartId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        self.messages
            .by_remote(room_id, remote_id.as_str(), part.as_str())
    }
    async fn message_parts(
        &self,
        room_id: &RoomId,
        remote_id: &MessageId,
    ) -> Result<Vec<MessageMapping>, StoreError> {
        self.messages.parts(room_id, remote_id.as_str())
    }
    async fn delete_message(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        self.messages.delete(event_id)
    }

    async fn insert_reaction(&self, reaction: &ReactionMapping) -> Result<(), StoreError> {
        self.insert_reaction_sync(reaction)
    }
    async fn reaction(
        &self,
        room_id: &RoomId,
        target_remote_id: &MessageId,
        sender: &UserId,
        key: &str,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        self.reaction_sync(room_id, target_remote_id.as_str(), sender, key)
    }
    async fn reaction_by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        self.reaction_by_event_sync(event_id)
    }
    async fn delete_reaction(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        self.delete_reaction_sync(event_id)
    }

    async fn put_portal(&self, portal: &Portal) -> Result<(), StoreError> {
        self.put_portal_sync(portal)
    }
    async fn portal_by_key(&self, key: &PortalKey) -> Result<Option<Portal>, StoreError> {
        self.portal_by_key_sync(key)
    }
    async fn portal_by_room(&self, room_id: &RoomId) -> Result<Option<Portal>, StoreError> {
        self.portal_by_room_sync(room_id)
    }
    async fn delete_portal(&self, key: &PortalKey) -> Result<Option<Portal>, StoreError> {
        self.delete_portal_sync(key)
    }
    async fn portals(&self) -> Result<Vec<Portal>, StoreError> {
        self.portals_sync()
    }

    async fn ghost(&self, user_id: &UserId) -> Result<GhostRecord, StoreError> {
        self.ghost_sync(user_id)
    }
    async fn update_ghost(
        &self,
        user_id: &UserId,
        change: &(dyn for<'r> Fn(&'r mut GhostRecord) + Send + Sync),
    ) -> Result<GhostRecord, StoreError> {
        self.update_ghost_sync(user_id, change)
    }
    async fn ghost_by_remote(
        &self,
        remote_id: &RemoteUserId,
    ) -> Result<Option<(OwnedUserId, GhostRecord)>, StoreError> {
        self.ghost_by_remote_sync(remote_id.as_str())
    }
    async fn set_joined(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        joined: bool,
    ) -> Result<(), StoreError> {
        self.set_joined_sync(user_id, room_id, joined)
    }
    async fn is_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<bool, StoreError> {
        self.is_joined_sync(user_id, room_id)
    }
    async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>, StoreError> {
        self.joined_rooms_sync(user_id)
    }
    async fn room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<RoomProfile, StoreError> {
        self.room_profile_sync(user_id, room_id)
    }
    async fn set_room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        profile: &RoomProfile,
    ) -> Result<(), StoreError> {
        self.set_room_profile_sync(user_id, room_id, profile)
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        self.user_sync(user_id)
    }
    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.put_user_sync(user)
    }
    /// Durable before it returns: a user who logged in must not have to again after a crash.
    async fn put_login(&self, login: &LoginRecord) -> Result<(), StoreError> {
        self.put_login_sync(login)?;
        self.flush_async().await
    }
    async fn login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError> {
        self.login_sync(id)
    }
    async fn logins_of(&self, user_id: &UserId) -> Result<Vec<LoginRecord>, StoreError> {
        self.logins_of_sync(user_id)
    }
    async fn all_logins(&self) -> Result<Vec<LoginRecord>, StoreError> {
        self.all_logins_sync()
    }
    async fn delete_login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError> {
        let removed = self.delete_login_sync(id)?;
        self.flush_async().await?;
        Ok(removed)
    }
    async fn put_portal_login(&self, link: &PortalLogin) -> Result<(), StoreError> {
        self.put_portal_login_sync(link)
    }
    async fn remove_portal_login(
        &self,
        portal: &PortalKey,
        login_id: &LoginId,
    ) -> Result<(), StoreError> {
        self.remove_portal_login_sync(portal, login_id)
    }
    async fn portal_logins(&self, portal: &PortalKey) -> Result<Vec<PortalLogin>, StoreError> {
        self.portal_logins_sync(portal)
    }
    async fn login_portals(&self, login_id: &LoginId) -> Result<Vec<PortalLogin>, StoreError> {
        self.login_portals_sync(login_id)
    }

    async fn value(&self, namespace: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.value_sync(namespace, key)
    }
    async fn set_value(
        &self,
        namespace: &str,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(), StoreError> {
        self.set_value_sync(namespace, key, value)
    }
}

#[async_trait]
impl Queues for SledStore {
    async fn next_boot(&self) -> Result<u64, StoreError> {
        let next = self
            .trees
            .meta
            .update_and_fetch("boot", |old| {
                let n = old.map(decode_u64).unwrap_or(0) + 1;
                Some(n.to_be_bytes().to_vec())
            })?
            .map(|v| decode_u64(&v))
            .unwrap_or(1);
        self.flush_async().await?;
        Ok(next)
    }
    async fn record_transactions(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<Vec<Recorded>, StoreError> {
        let (outcomes, durable) = self.record_transactions_journaled(txns)?;
        if !durable {
            // The journal could not take them (or, for duplicates only, their first copy
            // may be written but not yet durable): sled's own flush then.
            self.flush_async().await?;
        }
        Ok(outcomes)
    }
    async fn pending_items(&self) -> Result<Vec<(u64, InboxItem)>, StoreError> {
        self.pending_items_sync()
    }
    async fn complete_item(&self, seq: u64) -> Result<(), StoreError> {
        self.complete_item_sync(seq)
    }
    async fn prune_transaction_records(&self, keep: u64) -> Result<u64, StoreError> {
        self.prune_transaction_records_sync(keep)
    }
    async fn outbox_push(&self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        let seq = self.outbox_append(entry)?;
        self.flush_async().await?;
        Ok(seq)
    }
    async fn outbox_pending(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.outbox_pending_sync()
    }
    async fn outbox_replace(&self, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.trees
            .outbox
            .insert(seq.to_be_bytes(), super::to_json(entry))?;
        self.flush_async().await
    }
    async fn outbox_complete(
        &self,
        seq: u64,
        mapping: Option<&MessageMapping>,
    ) -> Result<(), StoreError> {
        self.outbox_complete_sync(seq, mapping)
    }
    async fn remote_push(&self, item: &RemoteItem) -> Result<u64, StoreError> {
        let seq = self.remote_append(item)?;
        self.flush_async().await?;
        Ok(seq)
    }
    async fn remote_pending(&self) -> Result<Vec<(u64, RemoteItem)>, StoreError> {
        self.remote_pending_sync()
    }
    async fn remote_complete(&self, seq: u64) -> Result<(), StoreError> {
        self.remote_complete_sync(seq)
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats {
            inbox_depth: self.inbox_depth(),
            outbox_depth: self.depths.outbox.get(),
            remote_depth: self.depths.remote.get(),
            bytes: Some(self.size_on_disk()),
        })
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_async().await
    }
}

#[async_trait]
impl Transfer for SledStore {
    async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.is_empty_sync())
    }
    async fn export(&self, sink: &mut dyn RecordSink) -> Result<(), StoreError> {
        self.export_all(sink).await
    }
    async fn import(&self, records: &[Record]) -> Result<(), StoreError> {
        self.import_sync(records)
    }
}
