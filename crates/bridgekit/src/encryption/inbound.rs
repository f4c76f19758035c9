//! What comes in for encryption: to-device events and device data go to the machine, room
//! events that turn encryption on or change the members update the room caches, and
//! `m.room.encrypted` events are opened before the bridge sees them.

use std::collections::BTreeMap;

use bridgekit_crypto::{DecryptError, SyncChanges};
use ruma::events::{AnyStateEvent, AnyTimelineEvent};

use super::Encryption;
use crate::context::BridgeContext;

/// A value per user, per device, as MSC3202 sends key counts.
type PerDevice<T> = BTreeMap<String, BTreeMap<String, T>>;

/// An encrypted message the bridge could not open: reported to the room (a notice replying
/// to it, a failed message status) like any event that was not bridged.
#[derive(Debug, thiserror::Error)]
#[error(
    "the bridge could not decrypt this message ({0}); it was not bridged. If it keeps happening, leave and rejoin the room or start a new encrypted session"
)]
pub(crate) struct Undecryptable(pub String);

/// A message in an unencrypted room while `encryption.require` is set.
#[derive(Debug, thiserror::Error)]
#[error(
    "this bridge only works in encrypted rooms: the message was not bridged. Turn on encryption in the room's settings"
)]
pub(crate) struct EncryptionRequired;

impl Encryption {
    /// A to-device event for the bot's device goes to the machine; `false` for any other
    /// device's (a bridge may handle those itself).
    pub(crate) async fn to_device(
        &self,
        ctx: &BridgeContext,
        to_user: &ruma::UserId,
        to_device: Option<&ruma::DeviceId>,
        json: &str,
    ) -> Option<Result<(), String>> {
        if to_user != ctx.bot_user_id() || to_device.is_some_and(|d| d.as_str() != self.device_id())
        {
            return None;
        }
        let changes = SyncChanges {
            to_device: vec![json.to_owned()],
            ..Default::default()
        };
        Some(
            self.machine
                .receive(changes)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    }

    /// A transaction's device lists and the bot device's key counts.
    pub(crate) async fn device_data(&self, ctx: &BridgeContext, json: &str) -> Result<(), String> {
        #[derive(serde::Deserialize, Default)]
        struct Lists {
            #[serde(default)]
            changed: Vec<String>,
            #[serde(default)]
            left: Vec<String>,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            #[serde(default)]
            device_lists: Option<Lists>,
            #[serde(default)]
            one_time_keys: Option<PerDevice<BTreeMap<String, u64>>>,
            #[serde(default)]
            fallback_keys: Option<PerDevice<Vec<String>>>,
        }
        let data: Data = serde_json::from_str(json).map_err(|e| format!("device data: {e}"))?;
        let bot = ctx.bot_user_id().as_str();
        let device = self.device_id();
        let lists = data.device_lists.unwrap_or_default();
        let changes = SyncChanges {
            changed: lists.changed,
            left: lists.left,
            one_time_key_counts: data
                .one_time_keys
                .and_then(|mut users| users.remove(bot)?.remove(device)),
            unused_fallback_key_types: data
                .fallback_keys
                .and_then(|mut users| users.remove(bot)?.remove(device)),
            ..Default::default()
        };
        self.machine
            .receive(changes)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Keeps the room caches current with what happened in the room.
    pub(crate) fn observe(&self, event: &AnyTimelineEvent, json: &str) {
        match event {
            AnyTimelineEvent::State(AnyStateEvent::RoomEncryption(e)) => {
                #[derive(serde::Deserialize)]
                struct Content<'a> {
                    #[serde(borrow)]
                    content: &'a serde_json::value::RawValue,
                }
                if let Ok(c) = serde_json::from_str::<Content<'_>>(json) {
                    self.rooms
                        .set_encrypted(e.room_id(), c.content.get().to_owned());
                }
            }
            AnyTimelineEvent::State(AnyStateEvent::RoomMember(m)) => {
                self.rooms.members_changed(m.room_id());
            }
            _ => {}
        }
    }

    /// Opens an `m.room.encrypted` event; waits up to `encryption.key_wait_secs` for a room
    /// key that has not arrived. Answers the decrypted event's JSON.
    pub(crate) async fn decrypt(
        &self,
        room_id: &ruma::RoomId,
        json: &str,
    ) -> Result<String, Undecryptable> {
        let started = std::time::Instant::now();
        let result = self
            .machine
            .decrypt(room_id.as_str(), json, self.options.key_wait)
            .await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::histogram!("bridgekit_decrypt_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(decrypted) => Ok(decrypted.json),
            Err(DecryptError::MissingKey { .. }) => Err(Undecryptable(format!(
                "its room key did not arrive within {} s",
                self.options.key_wait.as_secs()
            ))),
            Err(e) => Err(Undecryptable(e.to_string())),
        }
    }
}
