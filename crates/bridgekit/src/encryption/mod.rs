//! End-to-bridge encryption (feature `encryption`, config `encryption.*`): one bot device
//! decrypts what users send in encrypted rooms before the bridge sees it, and the outbox
//! encrypts what the bridge sends there. Ghosts have no devices: they send with the bot's
//! Megolm sessions, as the peers' bridges do. A bridge author writes nothing for it.
//!
//! The Olm/Megolm machine lives in the `bridgekit-crypto` crate; this module connects it to
//! the store, the client, the inbox and the outbox.

mod adapters;
mod check;
mod inbound;
mod outbound;
mod rooms;

use std::sync::Arc;

use bridgekit_crypto::{Machine, MachineConfig};
use ruma::OwnedDeviceId;

use crate::context::BridgeContext;

pub(crate) use check::HomeserverSupport;
pub(crate) use inbound::EncryptionRequired;
pub(crate) use outbound::seal_with_retries;

/// Where the bot's device ID is kept (chosen once, at the first start with encryption).
const DEVICE_NAMESPACE: &str = "bridgekit.encryption";

/// The bot's device and what the framework knows of encrypted rooms.
pub(crate) struct Encryption {
    machine: Machine,
    rooms: rooms::Rooms,
    options: crate::config::EncryptionOptions,
}

impl Encryption {
    /// Creates (or finds) the bot's device, opens its keys from the store, uploads and
    /// cross-signs them.
    pub(crate) async fn start(
        ctx: &BridgeContext,
        options: &crate::config::EncryptionOptions,
    ) -> Result<Self, String> {
        let device_id = device_id(ctx).await?;
        ctx.bot()
            .create_device(device_id.clone(), Some("bridgekit bridge"))
            .await
            .map_err(|e| {
                format!(
                    "cannot create the bot's device {device_id} (PUT /devices, MSC4190): {e}; the homeserver must support appservice device management (Synapse 1.141 or later, or io.element.msc4190: true in the registration)"
                )
            })?;
        let client = ctx.client();
        let config = MachineConfig::new(
            client.base_url(),
            client.as_token(),
            ctx.bot_user_id().as_str(),
            device_id.as_str(),
        )
        .with_pickle_key(options.pickle_key.clone());
        let machine = Machine::open(
            config,
            Arc::new(adapters::StoreState(ctx.backend_arc())),
            Arc::new(adapters::ClientTransport(client.clone())),
        )
        .await
        .map_err(|e| format!("cannot start the bot's encryption device: {e}"))?;
        let (ed25519, curve25519) = machine.identity_keys();
        tracing::info!(%device_id, %ed25519, %curve25519, "encryption on: the bot's device is ready");
        Ok(Self {
            machine,
            rooms: rooms::Rooms::default(),
            options: options.clone(),
        })
    }

    /// The bot's device ID.
    pub(crate) fn device_id(&self) -> &str {
        self.machine.device_id()
    }

    /// Whether `room_id` is known to be encrypted.
    pub(crate) fn is_encrypted(&self, room_id: &ruma::RoomId) -> bool {
        matches!(self.rooms.known(room_id), Some(Some(_)))
    }

    /// A room the bridge created with encryption on.
    pub(crate) fn created_encrypted(&self, room_id: &ruma::RoomId) {
        self.rooms
            .set_encrypted(room_id, DEFAULT_SETTINGS.to_owned());
    }
}

/// The `m.room.encryption` content of rooms the bridge creates encrypted.
pub(crate) const DEFAULT_SETTINGS: &str = r#"{"algorithm":"m.megolm.v1.aes-sha2"}"#;

async fn device_id(ctx: &BridgeContext) -> Result<OwnedDeviceId, String> {
    let store = ctx.store();
    let saved = store
        .value(DEVICE_NAMESPACE, "device_id")
        .await
        .map_err(|e| e.to_string())?;
    if let Some(id) = saved.as_ref().and_then(|v| v.as_str()) {
        return Ok(id.into());
    }
    let id = format!("BK{}", crate::registration::random_token(8).to_uppercase());
    store
        .set_value(
            DEVICE_NAMESPACE,
            "device_id",
            Some(&serde_json::Value::String(id.clone())),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(id.into())
}
