//! The bot's device: one Olm account, its Megolm sessions, and the requests that keep them in
//! step with the homeserver.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use matrix_sdk_common::deserialized_responses::ProcessedToDeviceEvent;
use matrix_sdk_crypto::types::events::room::encrypted::EncryptedEvent;
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, OutgoingRequest};
use matrix_sdk_crypto::{
    CollectStrategy, DecryptionSettings, EncryptionSettings, EncryptionSyncChanges, MegolmError,
    OlmMachine, TrustRequirement,
};
use ruma::api::client::sync::sync_events::DeviceLists;
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedRoomId, OwnedUserId, UInt};

use crate::store::{KeyValue, PersistentStore};
use crate::transport::{self, Addressing, Transport};
use crate::{CryptoError, PickleKey};

/// Most rounds of requests one flush sends.
const FLUSH_ROUNDS: usize = 3;

/// What the machine needs to start.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MachineConfig {
    /// The homeserver's client API base URL.
    pub homeserver: String,
    /// The appservice token every request is made with.
    pub as_token: String,
    /// The bot's user ID.
    pub user_id: String,
    /// The bot's device ID (created beforehand, MSC4190).
    pub device_id: String,
    /// `encryption.pickle_key`, when the state is encrypted at rest.
    pub pickle_key: Option<String>,
}

impl MachineConfig {
    /// A configuration with the state stored in plain JSON.
    pub fn new(homeserver: &str, as_token: &str, user_id: &str, device_id: &str) -> Self {
        Self {
            homeserver: homeserver.to_owned(),
            as_token: as_token.to_owned(),
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            pickle_key: None,
        }
    }

    /// Encrypts the state at rest with this passphrase.
    pub fn with_pickle_key(mut self, key: Option<String>) -> Self {
        self.pickle_key = key;
        self
    }
}

/// What one transaction brought for the bot's device (MSC2409/MSC4203/MSC3202). Build it
/// with `..Default::default()`: fields may be added.
#[derive(Debug, Default)]
pub struct SyncChanges {
    /// To-device events for the bot's device, as JSON.
    pub to_device: Vec<String>,
    /// Users whose device lists changed.
    pub changed: Vec<String>,
    /// Users who no longer share an encrypted room with the bot.
    pub left: Vec<String>,
    /// The device's unclaimed one-time keys per algorithm, when the transaction said.
    pub one_time_key_counts: Option<BTreeMap<String, u64>>,
    /// The algorithms with an unused fallback key, when the transaction said.
    pub unused_fallback_key_types: Option<Vec<String>>,
}

/// A decrypted room event.
#[derive(Debug)]
#[non_exhaustive]
pub struct Decrypted {
    /// The event as the sender wrote it (type and content of the plaintext, with the encrypted
    /// event's ID, sender, room and timestamp), as JSON.
    pub json: String,
    /// The sender's device, as the session says.
    pub sender_device: Option<String>,
}

/// Why an event could not be decrypted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The room key has not arrived (or the sender withheld it).
    #[error("the room key for this message has not arrived{}", .withheld.as_ref().map(|c| format!(" (the sender withheld it: {c})")).unwrap_or_default())]
    MissingKey {
        /// The sender's withheld code, if it sent one.
        withheld: Option<String>,
    },
    /// The event is malformed or the ciphertext does not decrypt.
    #[error("the message cannot be decrypted: {0}")]
    Undecryptable(String),
    /// The machine failed (its store, say).
    #[error(transparent)]
    Machine(#[from] CryptoError),
}

/// The bot's device and its Olm/Megolm state.
pub struct Machine {
    olm: OlmMachine,
    http: Arc<dyn Transport>,
    addressing: Addressing,
    /// One sender of the machine's requests at a time: two would upload the same keys twice.
    flush_lock: tokio::sync::Mutex<()>,
    /// Woken when room keys arrive, for decryptions waiting on one.
    keys_arrived: tokio::sync::Notify,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("user_id", &self.addressing.user_id)
            .field("device_id", &self.addressing.device_id)
            .finish_non_exhaustive()
    }
}

fn store_error(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Store(e.to_string())
}

impl Machine {
    /// Opens the device's state from `kv` (creating the Olm account on first use), uploads
    /// its keys, and cross-signs the device with the bot's own cross-signing identity.
    pub async fn open(
        config: MachineConfig,
        kv: Arc<dyn KeyValue>,
        http: Arc<dyn Transport>,
    ) -> Result<Self, CryptoError> {
        let user_id = OwnedUserId::try_from(config.user_id.as_str())
            .map_err(|e| CryptoError::Config(format!("bot user ID: {e}")))?;
        let device_id = OwnedDeviceId::from(config.device_id.as_str());
        let pickle_key = config.pickle_key.as_deref().map(PickleKey::from_passphrase);
        let store = PersistentStore::open(kv, pickle_key)
            .await
            .map_err(store_error)?;
        let olm = OlmMachine::with_store(&user_id, &device_id, store, None)
            .await
            .map_err(|e| match e {
                matrix_sdk_crypto::CryptoStoreError::MismatchedAccount { expected, got } => {
                    CryptoError::Config(format!(
                        "the store holds the crypto state of {} device {}, not {} device {}: a store serves one bridge",
                        expected.0, expected.1, got.0, got.1
                    ))
                }
                e => store_error(e),
            })?;
        let machine = Self {
            olm,
            http,
            addressing: Addressing::new(config.homeserver, config.as_token, user_id, device_id),
            flush_lock: tokio::sync::Mutex::new(()),
            keys_arrived: tokio::sync::Notify::new(),
        };
        machine.flush().await?;
        machine.cross_sign().await?;
        Ok(machine)
    }

    /// The device's Ed25519 and Curve25519 keys, unpadded base64.
    pub fn identity_keys(&self) -> (String, String) {
        let keys = self.olm.identity_keys();
        (keys.ed25519.to_base64(), keys.curve25519.to_base64())
    }

    /// The device ID.
    pub fn device_id(&self) -> &str {
        self.addressing.device_id.as_str()
    }

    async fn cross_sign(&self) -> Result<(), CryptoError> {
        if self.olm.cross_signing_status().await.is_complete() {
            return Ok(());
        }
        let requests = self
            .olm
            .bootstrap_cross_signing(false)
            .await
            .map_err(store_error)?;
        if let Some(upload) = requests.upload_keys_req {
            self.send(&upload).await?;
        }
        let signing =
            transport::signing_keys_to_http(&requests.upload_signing_keys_req, &self.addressing)?;
        self.exchange(signing).await?;
        let signatures =
            transport::signatures_to_http(&requests.upload_signatures_req, &self.addressing)?;
        self.exchange(signatures).await?;
        tracing::info!(device_id = %self.addressing.device_id, "the bot's device is cross-signed");
        Ok(())
    }

    async fn exchange(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, CryptoError> {
        let path = request.uri().path().to_owned();
        tracing::trace!(%path, "crypto request");
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| CryptoError::Request(format!("{path}: {e}")))?;
        tracing::trace!(%path, status = response.status().as_u16(), "crypto request answered");
        transport::check_status(&response).map_err(|e| e.at(&path))?;
        Ok(response)
    }

    async fn send(&self, request: &OutgoingRequest) -> Result<(), CryptoError> {
        self.send_parts(request.request_id(), request.request())
            .await
    }

    async fn send_parts(
        &self,
        id: &ruma::TransactionId,
        request: &AnyOutgoingRequest,
    ) -> Result<(), CryptoError> {
        let http_request = transport::to_http(request, &self.addressing)?;
        let response = self.exchange(http_request).await?;
        let parsed = transport::parse(request, response)?;
        self.olm
            .mark_request_as_sent(id, parsed.as_incoming())
            .await
            .map_err(store_error)
    }

    /// Sends every request the machine has waiting (key uploads, key queries, key claims,
    /// to-device messages), one at a time.
    pub async fn flush(&self) -> Result<(), CryptoError> {
        let _guard = self.flush_lock.lock().await;
        tracing::trace!("flushing the machine's requests");
        // A key query's answer can make the machine want more (a to-device message after
        // it), so a few rounds; never more, so an answer that leaves the machine asking the
        // same again cannot spin here (what is left goes with the next flush).
        for _ in 0..FLUSH_ROUNDS {
            let requests = self.olm.outgoing_requests().await.map_err(store_error)?;
            if requests.is_empty() {
                return Ok(());
            }
            for request in &requests {
                self.send(request).await?;
            }
        }
        Ok(())
    }

    /// Feeds one transaction's device data to the machine, then sends what it asks for.
    /// Answers the decrypted to-device events (as JSON), for the bridge to see.
    pub async fn receive(&self, changes: SyncChanges) -> Result<Vec<String>, CryptoError> {
        tracing::debug!(
            to_device = changes.to_device.len(),
            changed = changes.changed.len(),
            one_time_keys = ?changes.one_time_key_counts,
            "receiving device data"
        );
        let to_device_events = changes
            .to_device
            .into_iter()
            .filter_map(|json| serde_json::value::RawValue::from_string(json).ok())
            .map(Raw::from_json)
            .collect();
        let mut lists = DeviceLists::new();
        lists.changed = parse_users(&changes.changed);
        lists.left = parse_users(&changes.left);
        // Synapse leaves out an algorithm whose keys ran out (`{}`, not a zero count), which
        // the machine would read as "no news" and never upload more.
        let counts: BTreeMap<OneTimeKeyAlgorithm, UInt> = changes
            .one_time_key_counts
            .map(|mut counts| {
                counts.entry("signed_curve25519".to_owned()).or_insert(0);
                counts
            })
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (OneTimeKeyAlgorithm::from(k), UInt::new_saturating(v)))
            .collect();
        let fallback: Option<Vec<OneTimeKeyAlgorithm>> = changes
            .unused_fallback_key_types
            .map(|types| types.into_iter().map(OneTimeKeyAlgorithm::from).collect());
        let (events, room_keys) = self
            .olm
            .receive_sync_changes(
                EncryptionSyncChanges {
                    to_device_events,
                    changed_devices: &lists,
                    one_time_keys_counts: &counts,
                    unused_fallback_keys: fallback.as_deref(),
                    next_batch_token: None,
                },
                &decryption_settings(),
            )
            .await
            .map_err(|e| CryptoError::Store(e.to_string()))?;
        if !room_keys.is_empty() {
            self.keys_arrived.notify_waiters();
        }
        tracing::debug!(
            room_keys = room_keys.len(),
            "received device data; flushing"
        );
        self.flush().await?;
        Ok(events
            .into_iter()
            .filter_map(|e| match e {
                ProcessedToDeviceEvent::Decrypted { raw, .. } => Some(raw.json().get().to_owned()),
                ProcessedToDeviceEvent::PlainText(raw) => Some(raw.json().get().to_owned()),
                _ => None,
            })
            .collect())
    }

    /// Decrypts a room event (`m.room.encrypted`, as JSON). When its room key has not arrived,
    /// asks the sender's other devices for it and waits up to `wait` for it.
    pub async fn decrypt(
        &self,
        room_id: &str,
        event_json: &str,
        wait: Duration,
    ) -> Result<Decrypted, DecryptError> {
        let room = OwnedRoomId::try_from(room_id)
            .map_err(|e| DecryptError::Undecryptable(format!("room ID: {e}")))?;
        let raw: Raw<EncryptedEvent> =
            serde_json::value::RawValue::from_string(event_json.to_owned())
                .map(Raw::from_json)
                .map_err(|e| DecryptError::Undecryptable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut asked = false;
        loop {
            // Registered before trying, so a key arriving in between is not missed.
            let arrived = self.keys_arrived.notified();
            match self
                .olm
                .decrypt_room_event(&raw, &room, &decryption_settings())
                .await
            {
                Ok(event) => {
                    return Ok(Decrypted {
                        json: event.event.json().get().to_owned(),
                        sender_device: event
                            .encryption_info
                            .sender_device
                            .as_ref()
                            .map(|d| d.to_string()),
                    });
                }
                Err(MegolmError::MissingRoomKey(withheld)) => {
                    tracing::debug!(%room, asked, "waiting for a room key");
                    if withheld.is_some() || tokio::time::Instant::now() >= deadline {
                        return Err(DecryptError::MissingKey {
                            withheld: withheld.map(|c| c.to_string()),
                        });
                    }
                    if !asked {
                        asked = true;
                        self.request_key(&room, &raw).await;
                    }
                    let _ = tokio::time::timeout_at(deadline, arrived).await;
                }
                Err(MegolmError::Store(e)) => return Err(DecryptError::Machine(store_error(e))),
                Err(e) => return Err(DecryptError::Undecryptable(e.to_string())),
            }
        }
    }

    async fn request_key(&self, room: &OwnedRoomId, raw: &Raw<EncryptedEvent>) {
        match self.olm.request_room_key(raw, room).await {
            Ok((cancel, request)) => {
                for r in cancel.iter().chain(std::iter::once(&request)) {
                    if let Err(error) = self.send(r).await {
                        tracing::warn!(%error, %room, "could not ask for a missing room key");
                    }
                }
            }
            Err(error) => tracing::debug!(%error, %room, "no room key request for this event"),
        }
    }

    /// Encrypts a message for `room_id`: makes sure every device of `members` (the room's
    /// joined and invited users, the bridge's own left out) holds the room's current Megolm
    /// session, then answers the `m.room.encrypted` content as JSON. The session's new index
    /// is saved before this returns.
    ///
    /// `settings` is the room's `m.room.encryption` content (algorithm and rotation).
    pub async fn encrypt(
        &self,
        room_id: &str,
        settings: &str,
        members: &[String],
        event_type: &str,
        content: &str,
    ) -> Result<String, CryptoError> {
        let room = OwnedRoomId::try_from(room_id)
            .map_err(|e| CryptoError::Config(format!("room ID: {e}")))?;
        let settings: RoomEncryptionEventContent = serde_json::from_str(settings)
            .map_err(|e| CryptoError::Config(format!("the room's m.room.encryption: {e}")))?;
        let users = parse_users(members);
        self.olm
            .update_tracked_users(users.iter().map(std::ops::Deref::deref))
            .await
            .map_err(store_error)?;
        tracing::trace!(%room, "encrypt: users tracked");
        self.flush().await?; // key queries for users new or changed
        tracing::trace!(%room, "encrypt: keys queried");
        if let Some((id, claim)) = self
            .olm
            .get_missing_sessions(users.iter().map(std::ops::Deref::deref))
            .await
            .map_err(store_error)?
        {
            self.send_parts(&id, &AnyOutgoingRequest::KeysClaim(claim))
                .await?;
        }
        tracing::trace!(%room, "encrypt: sessions claimed");
        let shares = self
            .olm
            .share_room_key(
                &room,
                users.iter().map(std::ops::Deref::deref),
                EncryptionSettings::new(
                    settings,
                    HistoryVisibility::Shared,
                    CollectStrategy::AllDevices,
                ),
            )
            .await
            .map_err(store_error)?;
        for share in shares {
            self.send_parts(
                &share.txn_id,
                &AnyOutgoingRequest::ToDeviceRequest((*share).clone()),
            )
            .await?;
        }
        tracing::trace!(%room, "encrypt: room key shared");
        let content = serde_json::value::RawValue::from_string(content.to_owned())
            .map(Raw::from_json)
            .map_err(|e| CryptoError::Config(format!("content is not JSON: {e}")))?;
        let encrypted = self
            .olm
            .encrypt_room_event_raw(&room, event_type, &content)
            .await
            .map_err(store_error)?;
        Ok(encrypted.content.json().get().to_owned())
    }
}

fn parse_users(users: &[String]) -> Vec<OwnedUserId> {
    users
        .iter()
        .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
        .collect()
}

fn decryption_settings() -> DecryptionSettings {
    // A bridge serves whoever is in the room: their devices need not be verified.
    DecryptionSettings {
        sender_device_trust_requirement: TrustRequirement::Untrusted,
    }
}

/// The machine's futures must be `Send`: bridgekit runs them on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(m: &Machine) {
    fn send<T: Send>(_: T) {}
    send(m.encrypt("", "", &[], "", ""));
    send(m.decrypt("", "", Duration::ZERO));
    send(m.receive(SyncChanges::default()));
    send(m.flush());
}
