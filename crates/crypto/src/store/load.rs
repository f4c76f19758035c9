//! Reading the saved image back into the memory store at start.

use std::collections::HashMap;
use std::sync::Arc;

use matrix_sdk_crypto::Account;
use matrix_sdk_crypto::olm::{
    InboundGroupSession, OutboundGroupSession, PickledAccount, PickledCrossSigningIdentity,
    PickledInboundGroupSession, PickledOutboundGroupSession, PickledSession,
    PrivateCrossSigningIdentity, Session,
};
use matrix_sdk_crypto::store::types::{Changes, PendingChanges, RoomKeyWithheldEntry, TrackedUser};
use matrix_sdk_crypto::store::{CryptoStore, CryptoStoreError};
use ruma::UserId;

use super::{PersistentStore, SEP, backend, corrupt};

impl PersistentStore {
    /// Loads every saved entry, by kind; a new machine has none.
    pub(super) async fn load(&self) -> Result<(), CryptoStoreError> {
        let entries = self.kv.load_all().await.map_err(backend)?;
        let mut by_kind: HashMap<&str, Vec<(&str, &[u8])>> = HashMap::new();
        for (k, v) in &entries {
            let kind = k.split(SEP).next().unwrap_or_default();
            by_kind.entry(kind).or_default().push((k, v));
        }
        let take = |kind: &str| by_kind.get(kind).cloned().unwrap_or_default();
        let Some((k, v)) = take("account").into_iter().next() else {
            return Ok(()); // a new machine: nothing saved yet
        };
        let pickle: PickledAccount = self.open_value(k, v)?;
        let account = Account::from_pickle(pickle).map_err(|e| corrupt(k, e))?;
        let own_keys = account.device_keys();
        let device_id = account.device_id().to_owned();
        let identity_keys = Arc::new(account.identity_keys());
        self.memory
            .save_pending_changes(PendingChanges {
                account: Some(account),
            })
            .await
            .unwrap_or_else(|e| match e {});

        let mut changes = Changes::default();
        if let Some((k, v)) = take("identity").into_iter().next() {
            let pickle: PickledCrossSigningIdentity = self.open_value(k, v)?;
            changes.private_identity =
                Some(PrivateCrossSigningIdentity::from_pickle(pickle).map_err(|e| corrupt(k, e))?);
        }
        for (k, v) in take("session") {
            let pickle: PickledSession = self.open_value(k, v)?;
            changes
                .sessions
                .push(Session::from_pickle(own_keys.clone(), pickle).map_err(|e| corrupt(k, e))?);
        }
        for (k, v) in take("outbound") {
            let pickle: PickledOutboundGroupSession = self.open_value(k, v)?;
            changes.outbound_group_sessions.push(
                OutboundGroupSession::from_pickle(device_id.clone(), identity_keys.clone(), pickle)
                    .map_err(|e| corrupt(k, e))?,
            );
        }
        for (k, v) in take("device") {
            changes.devices.new.push(self.open_value(k, v)?);
        }
        for (k, v) in take("user") {
            changes.identities.new.push(self.open_value(k, v)?);
        }
        for (k, v) in take("hash") {
            changes.message_hashes.push(self.open_value(k, v)?);
        }
        for (k, v) in take("request") {
            changes.key_requests.push(self.open_value(k, v)?);
        }
        for (k, v) in take("withheld") {
            let entry: RoomKeyWithheldEntry = self.open_value(k, v)?;
            let mut parts = k.split(SEP).skip(1);
            let (Some(room), Some(session)) = (parts.next(), parts.next()) else {
                return Err(corrupt(k, "key without room and session"));
            };
            let room = ruma::OwnedRoomId::try_from(room).map_err(|e| corrupt(k, e))?;
            changes
                .withheld_session_info
                .entry(room)
                .or_default()
                .insert(session.to_owned(), entry);
        }
        for (k, v) in take("room") {
            let room = k.split(SEP).nth(1).unwrap_or_default();
            let room = ruma::OwnedRoomId::try_from(room).map_err(|e| corrupt(k, e))?;
            changes.room_settings.insert(room, self.open_value(k, v)?);
        }
        self.memory
            .save_changes(changes)
            .await
            .unwrap_or_else(|e| match e {});

        let mut inbound = Vec::new();
        for (k, v) in take("inbound") {
            let pickle: PickledInboundGroupSession = self.open_value(k, v)?;
            inbound.push(InboundGroupSession::from_pickle(pickle).map_err(|e| corrupt(k, e))?);
        }
        self.memory
            .save_inbound_group_sessions(inbound, None)
            .await
            .unwrap_or_else(|e| match e {});

        let mut tracked = Vec::new();
        for (k, v) in take("tracked") {
            let user: TrackedUser = self.open_value(k, v)?;
            tracked.push(user);
        }
        let refs: Vec<(&UserId, bool)> = tracked.iter().map(|t| (&*t.user_id, t.dirty)).collect();
        self.memory
            .save_tracked_users(&refs)
            .await
            .unwrap_or_else(|e| match e {});

        for (k, v) in take("custom") {
            let name = k.split_once(SEP).map(|(_, n)| n).unwrap_or_default();
            let value: Vec<u8> = self.open_value(k, v)?;
            self.memory
                .set_custom_value(name, value)
                .await
                .unwrap_or_else(|e| match e {});
        }
        Ok(())
    }
}
