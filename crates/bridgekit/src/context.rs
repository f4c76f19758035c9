//! What a bridge's code holds on to: the store, the homeserver client, and intents for the bot
//! and the ghosts. Cheap to clone.

use std::sync::Arc;

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};

use crate::client::{HomeserverClient, Intent, Outbox, TxnIds};
use crate::ids::{RemoteUserId, escape_localpart, unescape_localpart};
use crate::store::{Backend, Store};

/// The bridge's handle on the framework.
#[derive(Clone)]
pub struct BridgeContext {
    shared: Arc<Shared>,
}

/// What the context shares: its parts and the outbox, which needs a handle back to them.
pub(crate) struct Shared {
    pub parts: Parts,
    pub outbox: Outbox,
    pub remote: crate::remote::RemoteQueue,
    pub logins: crate::logins::registry::Registry,
    pub puppets: crate::double_puppet::Puppets,
    /// The bot's encryption device, once started (`encryption.allow`).
    #[cfg(feature = "encryption")]
    pub encryption: std::sync::OnceLock<Arc<crate::encryption::Encryption>>,
    /// What transactions show of the homeserver's encryption support.
    #[cfg(feature = "encryption")]
    pub support: crate::encryption::HomeserverSupport,
}

/// What the context is made of, before the outbox is attached.
pub(crate) struct Parts {
    pub client: HomeserverClient,
    pub store: Arc<dyn Backend>,
    pub bot: OwnedUserId,
    pub server_name: OwnedServerName,
    pub ghost_prefix: String,
    pub txn_ids: TxnIds,
    pub appservice_id: String,
    pub options: crate::config::BridgeOptions,
    pub network: serde_json::Value,
}

impl std::fmt::Debug for BridgeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeContext")
            .field("bot", &self.shared.parts.bot)
            .finish_non_exhaustive()
    }
}

impl BridgeContext {
    pub(crate) fn new(parts: Parts, runtime: tokio::runtime::Handle) -> Self {
        let width = parts.options.sends_in_flight_per_room;
        let shared = Arc::new_cyclic(|weak| Shared {
            parts,
            outbox: Outbox::new(weak.clone(), runtime.clone(), width),
            remote: crate::remote::RemoteQueue::new(weak.clone(), runtime, width),
            logins: crate::logins::registry::Registry::default(),
            puppets: crate::double_puppet::Puppets::default(),
            #[cfg(feature = "encryption")]
            encryption: std::sync::OnceLock::new(),
            #[cfg(feature = "encryption")]
            support: Default::default(),
        });
        Self { shared }
    }

    /// The context a framework task holds weakly (the outbox, the remote queue).
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A handle that does not keep the context (and its store) alive, for tasks that may
    /// outlive the bridge's run.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    /// The outbox: sends waiting for the homeserver.
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.shared.outbox
    }

    /// The logins running in this process.
    pub(crate) fn logins(&self) -> &crate::logins::registry::Registry {
        &self.shared.logins
    }

    /// Double puppeting's state.
    pub(crate) fn puppets(&self) -> &crate::double_puppet::Puppets {
        &self.shared.puppets
    }

    /// Who may do what (`bridge.permissions`).
    pub fn permissions(&self) -> &crate::logins::Permissions {
        &self.shared.parts.options.permissions
    }

    /// The durable queue of remote events.
    pub(crate) fn remote_queue(&self) -> &crate::remote::RemoteQueue {
        &self.shared.remote
    }

    /// The bridge's durable store (message mappings, ghosts, …).
    pub fn store(&self) -> &dyn Store {
        &*self.shared.parts.store
    }

    /// The whole backend, queues included: for the framework only.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.shared.parts.store
    }

    /// The backend, shared (for the crypto machine's state).
    #[cfg(feature = "encryption")]
    pub(crate) fn backend_arc(&self) -> Arc<dyn Backend> {
        self.shared.parts.store.clone()
    }

    /// The bot's encryption device, when `encryption.allow` started one.
    #[cfg(feature = "encryption")]
    pub(crate) fn encryption(&self) -> Option<&Arc<crate::encryption::Encryption>> {
        self.shared.encryption.get()
    }

    /// Where the runtime puts the started device.
    #[cfg(feature = "encryption")]
    pub(crate) fn shared_encryption(
        &self,
    ) -> &std::sync::OnceLock<Arc<crate::encryption::Encryption>> {
        &self.shared.encryption
    }

    /// What transactions show of the homeserver's encryption support.
    #[cfg(feature = "encryption")]
    pub(crate) fn homeserver_support(&self) -> &crate::encryption::HomeserverSupport {
        &self.shared.support
    }

    /// Whether the bridge knows `room_id` to be encrypted: events a handler gets from it were
    /// decrypted by the framework, and what the bridge sends there is encrypted.
    pub fn is_encrypted_room(&self, room_id: &ruma::RoomId) -> bool {
        #[cfg(feature = "encryption")]
        if let Some(encryption) = self.encryption() {
            return encryption.is_encrypted(room_id);
        }
        let _ = room_id;
        false
    }

    /// How much work waits in the framework's queues and how big the store is (what
    /// `/metrics` reports), for health checks and tests.
    pub async fn queue_stats(&self) -> Result<crate::store::StoreStats, crate::StoreError> {
        self.backend().stats().await
    }

    /// The appservice ID (the registration's `id`).
    pub fn appservice_id(&self) -> &str {
        &self.shared.parts.appservice_id
    }

    /// How the framework reports outcomes and takes commands (`bridge.*` in the config).
    pub fn options(&self) -> &crate::config::BridgeOptions {
        &self.shared.parts.options
    }

    /// The bridge's own `network` section of the config, as `T`.
    pub fn network_config<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::BridgeError> {
        Ok(T::deserialize(&self.shared.parts.network)
            .map_err(|e| format!("config section `network`: {e}"))?)
    }

    /// The ghost standing for `remote_user`: the one recorded for it in the store (it may
    /// have been renamed, see [`crate::GhostEvent::Renamed`]), else the one its ID
    /// names, which is then recorded.
    pub async fn ghost_for_remote(
        &self,
        remote_user: &RemoteUserId,
    ) -> Result<Intent, crate::StoreError> {
        if let Some((user_id, _)) = self.store().ghost_by_remote(remote_user).await? {
            return Ok(Intent::new(self.clone(), user_id));
        }
        let user_id = self.ghost_user_id(remote_user);
        let remote = remote_user.clone();
        let recorded = self
            .store()
            .update_ghost(&user_id, &move |g| {
                if g.remote_id.is_none() {
                    g.remote_id = Some(remote.clone());
                }
            })
            .await;
        match recorded {
            Ok(_) | Err(crate::StoreError::Conflict(_)) => Ok(Intent::new(self.clone(), user_id)),
            Err(other) => Err(other),
        }
    }

    /// The raw homeserver client, for calls the intents do not wrap.
    pub fn client(&self) -> &HomeserverClient {
        &self.shared.parts.client
    }

    /// Client transaction IDs, unique across the appservice and across restarts.
    pub fn txn_ids(&self) -> &TxnIds {
        &self.shared.parts.txn_ids
    }

    /// The homeserver's server name.
    pub fn server_name(&self) -> &ServerName {
        &self.shared.parts.server_name
    }

    /// The bridge bot's user ID (the registration's `sender_localpart`).
    pub fn bot_user_id(&self) -> &UserId {
        &self.shared.parts.bot
    }

    /// Acts as the bridge bot.
    pub fn bot(&self) -> Intent {
        Intent::new(self.clone(), self.shared.parts.bot.clone())
    }

    /// The Matrix user ID of the ghost for the remote user `remote_user`.
    pub fn ghost_user_id(&self, remote_user: &RemoteUserId) -> OwnedUserId {
        let localpart = format!(
            "{}{}",
            self.shared.parts.ghost_prefix,
            escape_localpart(remote_user.as_str())
        );
        UserId::parse(format!("@{localpart}:{}", self.shared.parts.server_name))
            .expect("escaped localparts and a validated server name make a valid user ID")
    }

    /// Acts as the ghost of the remote user `remote_user` (registered on first use).
    pub fn ghost(&self, remote_user: &RemoteUserId) -> Intent {
        Intent::new(self.clone(), self.ghost_user_id(remote_user))
    }

    /// Acts as `user_id` if it is the bot or a ghost; `None` for anyone else.
    pub fn intent_for(&self, user_id: &UserId) -> Option<Intent> {
        self.is_own_user(user_id)
            .then(|| Intent::new(self.clone(), user_id.to_owned()))
    }

    /// The remote user a ghost stands for now: the one recorded for it (it follows
    /// [`crate::GhostEvent::Renamed`]), else the one its user ID names; `None` if
    /// `user_id` is not a ghost.
    pub async fn remote_user_behind(
        &self,
        user_id: &UserId,
    ) -> Result<Option<RemoteUserId>, crate::StoreError> {
        let Some(named) = self.remote_user_of(user_id) else {
            return Ok(None);
        };
        Ok(Some(
            self.store()
                .ghost(user_id)
                .await?
                .remote_id
                .unwrap_or(named),
        ))
    }

    /// The remote user a ghost's user ID names (decoded from its localpart, so it does not
    /// follow renames: see [`remote_user_behind`](Self::remote_user_behind)), or `None` if
    /// `user_id` is not a ghost.
    pub fn remote_user_of(&self, user_id: &UserId) -> Option<RemoteUserId> {
        if user_id.server_name() != self.shared.parts.server_name {
            return None;
        }
        let remote = unescape_localpart(
            user_id
                .localpart()
                .strip_prefix(&self.shared.parts.ghost_prefix)?,
        )?;
        RemoteUserId::new(remote).ok()
    }

    /// Whether `user_id` is the bot or one of the ghosts: events they send are the bridge's own
    /// echoes and are not handed to the bridge.
    pub fn is_own_user(&self, user_id: &UserId) -> bool {
        user_id == self.shared.parts.bot
            || (user_id.server_name() == self.shared.parts.server_name
                && user_id
                    .localpart()
                    .starts_with(&self.shared.parts.ghost_prefix))
    }
}
