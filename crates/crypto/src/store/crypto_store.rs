//! The crypto store trait: reads from memory, writes saved first (see the module above).

use std::collections::HashMap;

use async_trait::async_trait;
use matrix_sdk_common::cross_process_lock::CrossProcessLockGeneration;
use matrix_sdk_crypto::olm::{
    InboundGroupSession, OlmMessageHash, OutboundGroupSession, PrivateCrossSigningIdentity,
    SenderDataType, Session,
};
use matrix_sdk_crypto::store::types::{
    BackupKeys, Changes, DehydratedDeviceKey, PendingChanges, RoomKeyCounts, RoomKeyWithheldEntry,
    RoomPendingKeyBundleDetails, RoomSettings, StoredRoomKeyBundleData, TrackedUser,
};
use matrix_sdk_crypto::store::{CryptoStore, CryptoStoreError};
use matrix_sdk_crypto::vodozemac::Curve25519PublicKey;
use matrix_sdk_crypto::{Account, DeviceData, GossipRequest, SecretInfo, UserIdentityData};
use ruma::events::secret::request::SecretName;
use ruma::{DeviceId, OwnedDeviceId, RoomId, TransactionId, UserId};
use zeroize::Zeroizing;

use super::{Batch, PersistentStore, key, never};

#[async_trait]
impl CryptoStore for PersistentStore {
    type Error = CryptoStoreError;

    async fn load_account(&self) -> Result<Option<Account>, Self::Error> {
        self.memory.load_account().await.map_err(never)
    }

    async fn load_identity(&self) -> Result<Option<PrivateCrossSigningIdentity>, Self::Error> {
        self.memory.load_identity().await.map_err(never)
    }

    async fn save_changes(&self, changes: Changes) -> Result<(), Self::Error> {
        let _guard = self.write_lock.lock().await;
        let mut batch = Batch::default();
        if let Some(identity) = &changes.private_identity {
            batch
                .puts
                .push((key("identity", &[]), self.seal(&identity.pickle().await)));
        }
        for s in &changes.sessions {
            let pickle = s.pickle().await;
            batch.puts.push((
                key("session", &[&pickle.sender_key.to_base64(), s.session_id()]),
                self.seal(&pickle),
            ));
        }
        self.inbound_puts(&changes.inbound_group_sessions, &mut batch)
            .await;
        for s in &changes.outbound_group_sessions {
            batch.puts.push((
                key("outbound", &[s.room_id().as_str()]),
                self.seal(&s.pickle().await),
            ));
        }
        for d in changes.devices.new.iter().chain(&changes.devices.changed) {
            batch.puts.push((
                key("device", &[d.user_id().as_str(), d.device_id().as_str()]),
                self.seal(d),
            ));
        }
        for d in &changes.devices.deleted {
            batch.deletes.push(key(
                "device",
                &[d.user_id().as_str(), d.device_id().as_str()],
            ));
        }
        for i in changes
            .identities
            .new
            .iter()
            .chain(&changes.identities.changed)
        {
            batch
                .puts
                .push((key("user", &[i.user_id().as_str()]), self.seal(i)));
        }
        for h in &changes.message_hashes {
            batch
                .puts
                .push((key("hash", &[&h.sender_key, &h.hash]), self.seal(h)));
        }
        for r in &changes.key_requests {
            batch
                .puts
                .push((key("request", &[r.request_id.as_str()]), self.seal(r)));
        }
        for (room, sessions) in &changes.withheld_session_info {
            for (session, entry) in sessions {
                batch
                    .puts
                    .push((key("withheld", &[room.as_str(), session]), self.seal(entry)));
            }
        }
        for (room, settings) in &changes.room_settings {
            batch
                .puts
                .push((key("room", &[room.as_str()]), self.seal(settings)));
        }
        self.write(batch).await?;
        self.memory.save_changes(changes).await.map_err(never)
    }

    async fn save_pending_changes(&self, changes: PendingChanges) -> Result<(), Self::Error> {
        let _guard = self.write_lock.lock().await;
        if let Some(account) = &changes.account {
            let batch = Batch {
                puts: vec![(key("account", &[]), self.seal(&account.pickle()))],
                deletes: Vec::new(),
            };
            self.write(batch).await?;
        }
        self.memory
            .save_pending_changes(changes)
            .await
            .map_err(never)
    }

    async fn save_inbound_group_sessions(
        &self,
        sessions: Vec<InboundGroupSession>,
        backed_up_to_version: Option<&str>,
    ) -> Result<(), Self::Error> {
        let _guard = self.write_lock.lock().await;
        let mut batch = Batch::default();
        self.inbound_puts(&sessions, &mut batch).await;
        self.write(batch).await?;
        self.memory
            .save_inbound_group_sessions(sessions, backed_up_to_version)
            .await
            .map_err(never)
    }

    async fn get_sessions(&self, sender_key: &str) -> Result<Option<Vec<Session>>, Self::Error> {
        self.memory.get_sessions(sender_key).await.map_err(never)
    }

    async fn get_inbound_group_session(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<InboundGroupSession>, Self::Error> {
        self.memory
            .get_inbound_group_session(room_id, session_id)
            .await
            .map_err(never)
    }

    async fn get_withheld_info(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<RoomKeyWithheldEntry>, Self::Error> {
        self.memory
            .get_withheld_info(room_id, session_id)
            .await
            .map_err(never)
    }

    async fn get_withheld_sessions_by_room_id(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<RoomKeyWithheldEntry>, Self::Error> {
        self.memory
            .get_withheld_sessions_by_room_id(room_id)
            .await
            .map_err(never)
    }

    async fn get_inbound_group_sessions(&self) -> Result<Vec<InboundGroupSession>, Self::Error> {
        self.memory
            .get_inbound_group_sessions()
            .await
            .map_err(never)
    }

    async fn inbound_group_session_counts(
        &self,
        backup_version: Option<&str>,
    ) -> Result<RoomKeyCounts, Self::Error> {
        self.memory
            .inbound_group_session_counts(backup_version)
            .await
            .map_err(never)
    }

    async fn get_inbound_group_sessions_by_room_id(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<InboundGroupSession>, Self::Error> {
        self.memory
            .get_inbound_group_sessions_by_room_id(room_id)
            .await
            .map_err(never)
    }

    async fn get_inbound_group_sessions_for_device_batch(
        &self,
        curve_key: Curve25519PublicKey,
        sender_data_type: SenderDataType,
        after_session_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>, Self::Error> {
        self.memory
            .get_inbound_group_sessions_for_device_batch(
                curve_key,
                sender_data_type,
                after_session_id,
                limit,
            )
            .await
            .map_err(never)
    }

    async fn inbound_group_sessions_for_backup(
        &self,
        backup_version: &str,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>, Self::Error> {
        self.memory
            .inbound_group_sessions_for_backup(backup_version, limit)
            .await
            .map_err(never)
    }

    async fn mark_inbound_group_sessions_as_backed_up(
        &self,
        backup_version: &str,
        room_and_session_ids: &[(&RoomId, &str)],
    ) -> Result<(), Self::Error> {
        self.memory
            .mark_inbound_group_sessions_as_backed_up(backup_version, room_and_session_ids)
            .await
            .map_err(never)
    }

    async fn reset_backup_state(&self) -> Result<(), Self::Error> {
        self.memory.reset_backup_state().await.map_err(never)
    }

    async fn load_backup_keys(&self) -> Result<BackupKeys, Self::Error> {
        self.memory.load_backup_keys().await.map_err(never)
    }

    async fn load_dehydrated_device_pickle_key(
        &self,
    ) -> Result<Option<DehydratedDeviceKey>, Self::Error> {
        self.memory
            .load_dehydrated_device_pickle_key()
            .await
            .map_err(never)
    }

    async fn delete_dehydrated_device_pickle_key(&self) -> Result<(), Self::Error> {
        self.memory
            .delete_dehydrated_device_pickle_key()
            .await
            .map_err(never)
    }

    async fn get_outbound_group_session(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<OutboundGroupSession>, Self::Error> {
        self.memory
            .get_outbound_group_session(room_id)
            .await
            .map_err(never)
    }

    async fn load_tracked_users(&self) -> Result<Vec<TrackedUser>, Self::Error> {
        self.memory.load_tracked_users().await.map_err(never)
    }

    async fn save_tracked_users(&self, users: &[(&UserId, bool)]) -> Result<(), Self::Error> {
        let _guard = self.write_lock.lock().await;
        let mut batch = Batch::default();
        for (user, dirty) in users {
            let tracked = TrackedUser {
                user_id: (*user).to_owned(),
                dirty: *dirty,
            };
            batch
                .puts
                .push((key("tracked", &[user.as_str()]), self.seal(&tracked)));
        }
        self.write(batch).await?;
        self.memory.save_tracked_users(users).await.map_err(never)
    }

    async fn get_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Option<DeviceData>, Self::Error> {
        self.memory
            .get_device(user_id, device_id)
            .await
            .map_err(never)
    }

    async fn get_user_devices(
        &self,
        user_id: &UserId,
    ) -> Result<HashMap<OwnedDeviceId, DeviceData>, Self::Error> {
        self.memory.get_user_devices(user_id).await.map_err(never)
    }

    async fn get_own_device(&self) -> Result<DeviceData, Self::Error> {
        self.memory.get_own_device().await.map_err(never)
    }

    async fn get_user_identity(
        &self,
        user_id: &UserId,
    ) -> Result<Option<UserIdentityData>, Self::Error> {
        self.memory.get_user_identity(user_id).await.map_err(never)
    }

    async fn is_message_known(&self, message_hash: &OlmMessageHash) -> Result<bool, Self::Error> {
        self.memory
            .is_message_known(message_hash)
            .await
            .map_err(never)
    }

    async fn get_outgoing_secret_requests(
        &self,
        request_id: &TransactionId,
    ) -> Result<Option<GossipRequest>, Self::Error> {
        self.memory
            .get_outgoing_secret_requests(request_id)
            .await
            .map_err(never)
    }

    async fn get_secret_request_by_info(
        &self,
        secret_info: &SecretInfo,
    ) -> Result<Option<GossipRequest>, Self::Error> {
        self.memory
            .get_secret_request_by_info(secret_info)
            .await
            .map_err(never)
    }

    async fn get_unsent_secret_requests(&self) -> Result<Vec<GossipRequest>, Self::Error> {
        self.memory
            .get_unsent_secret_requests()
            .await
            .map_err(never)
    }

    async fn delete_outgoing_secret_requests(
        &self,
        request_id: &TransactionId,
    ) -> Result<(), Self::Error> {
        let _guard = self.write_lock.lock().await;
        self.write(Batch {
            puts: Vec::new(),
            deletes: vec![key("request", &[request_id.as_str()])],
        })
        .await?;
        self.memory
            .delete_outgoing_secret_requests(request_id)
            .await
            .map_err(never)
    }

    async fn get_secrets_from_inbox(
        &self,
        secret_name: &SecretName,
    ) -> Result<Vec<Zeroizing<String>>, Self::Error> {
        self.memory
            .get_secrets_from_inbox(secret_name)
            .await
            .map_err(never)
    }

    async fn delete_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<(), Self::Error> {
        self.memory
            .delete_secrets_from_inbox(secret_name)
            .await
            .map_err(never)
    }

    async fn get_room_settings(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomSettings>, Self::Error> {
        self.memory.get_room_settings(room_id).await.map_err(never)
    }

    async fn get_received_room_key_bundle_data(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<StoredRoomKeyBundleData>, Self::Error> {
        self.memory
            .get_received_room_key_bundle_data(room_id, user_id)
            .await
            .map_err(never)
    }

    async fn get_pending_key_bundle_details_for_room(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomPendingKeyBundleDetails>, Self::Error> {
        self.memory
            .get_pending_key_bundle_details_for_room(room_id)
            .await
            .map_err(never)
    }

    async fn get_all_rooms_pending_key_bundles(
        &self,
    ) -> Result<Vec<RoomPendingKeyBundleDetails>, Self::Error> {
        self.memory
            .get_all_rooms_pending_key_bundles()
            .await
            .map_err(never)
    }

    async fn has_downloaded_all_room_keys(&self, room_id: &RoomId) -> Result<bool, Self::Error> {
        self.memory
            .has_downloaded_all_room_keys(room_id)
            .await
            .map_err(never)
    }

    async fn get_custom_value(&self, key_name: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        self.memory.get_custom_value(key_name).await.map_err(never)
    }

    async fn set_custom_value(&self, key_name: &str, value: Vec<u8>) -> Result<(), Self::Error> {
        let _guard = self.write_lock.lock().await;
        self.write(Batch {
            puts: vec![(key("custom", &[key_name]), self.seal(&value))],
            deletes: Vec::new(),
        })
        .await?;
        self.memory
            .set_custom_value(key_name, value)
            .await
            .map_err(never)
    }

    async fn remove_custom_value(&self, key_name: &str) -> Result<(), Self::Error> {
        let _guard = self.write_lock.lock().await;
        self.write(Batch {
            puts: Vec::new(),
            deletes: vec![key("custom", &[key_name])],
        })
        .await?;
        self.memory
            .remove_custom_value(key_name)
            .await
            .map_err(never)
    }

    async fn try_take_leased_lock(
        &self,
        lease_duration_ms: u32,
        key_name: &str,
        holder: &str,
    ) -> Result<Option<CrossProcessLockGeneration>, Self::Error> {
        // One bridge process owns its store (the runtime refuses a second), so the lease
        // is a process-local one.
        self.memory
            .try_take_leased_lock(lease_duration_ms, key_name, holder)
            .await
            .map_err(never)
    }

    async fn next_batch_token(&self) -> Result<Option<String>, Self::Error> {
        self.memory.next_batch_token().await.map_err(never)
    }

    async fn close(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn reopen(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn get_size(&self) -> Result<Option<usize>, Self::Error> {
        Ok(None)
    }
}
