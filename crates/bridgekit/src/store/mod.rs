//! Everything bridgekit and a bridge must remember across restarts, split by who may use it:
//!
//! - [`Store`], what a bridge reads and writes through
//!   [`BridgeContext::store`](crate::BridgeContext::store): portals, ghosts, message and
//!   reaction mappings, the bridge's own values;
//! - [`Queues`], the framework's own: the transaction record and the inbox of acknowledged
//!   homeserver events, the outbox, the remote queue, the boot counter, the gauges;
//! - [`Transfer`], moving every record between backends.
//!
//! A backend implements all three ([`Backend`]). Two do:
//! - [`SledStore`]: embedded, one directory, nothing to install; the default.
//! - [`PostgresStore`](postgres::PostgresStore) (feature `postgres`, on by default): for
//!   several bridges in one database, or a bridge with a large history.
//!
//! Both keep the same promises, checked by one shared test suite: multi-key updates are
//! atomic (a mapping and its reverse never disagree), writes the homeserver relies on are
//! durable before they are acknowledged, an older schema is upgraded on open and a newer
//! one refused, and a store another running bridge holds is refused instead of shared.
//! [`export`] moves every record from one backend to the other.

pub mod export;
mod ext;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod queues;
pub mod records;
pub mod sled_store;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::ids::{LoginId, MessageId, PartId, RemoteUserId};
use serde_json::Value;

pub use export::{Record, RecordSink};
pub use ext::StoreExt;
pub use queues::{InboxItem, IncomingTransaction, OutboxEntry, Recorded, RemoteItem};
pub use records::{GhostRecord, MessageMapping, Portal, PortalKey, ReactionMapping, RoomProfile};
pub use sled_store::SledStore;
pub use users::{DoublePuppet, LoginRecord, LoginState, PortalLogin, UserRecord};

/// Version of the record layout written by this build, shared by every backend. Bumped when
/// an encoding changes; each backend upgrades older layouts on open.
pub const SCHEMA_VERSION: u64 = 8;

/// Default sled page cache: sled's own default (1 GiB) is sized for a database server,
/// not for a sidecar next to a homeserver.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Everything that can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the store.
    #[error(
        "the store at {location} is in use by another process (is another copy of this bridge running?); stop it or point the store elsewhere"
    )]
    Locked {
        /// The store directory or database schema.
        location: String,
    },
    /// The lock that kept other copies of the bridge out was lost (its database connection
    /// closed): a standby may hold the store now, so this process must stop.
    #[error(
        "lost the lock on the store at {location} (its database connection closed); stopping so that only one copy of this bridge runs"
    )]
    LockLost {
        /// The database schema.
        location: String,
    },
    /// The store was written by a newer bridgekit.
    #[error(
        "the store at {location} has schema version {found}, newer than this build understands ({supported}); run the newer bridge version or restore a backup"
    )]
    TooNew {
        /// The store directory or database schema.
        location: String,
        /// Version found.
        found: u64,
        /// Highest version this build understands.
        supported: u64,
    },
    /// A uniqueness rule would be broken (e.g. a remote ID already mapped to another event).
    #[error("store conflict: {0}")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt store entry in {tree}: {reason}")]
    Corrupt {
        /// The tree or table holding the entry.
        tree: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A bridge's metadata could not be converted to or from its type.
    #[error("cannot convert bridge metadata: {0}")]
    Encode(String),
    /// Writes could not be made durable (disk full, I/O error).
    #[error("could not write the store to disk: {0}")]
    Flush(String),
    /// The store could not be reached or opened (bad URL, server down, no permission).
    #[error("cannot open the store: {0}")]
    Open(String),
    /// The embedded database failed (I/O, disk full, …).
    #[error("store I/O error: {0}")]
    Io(String),
    /// The database server failed or refused a statement.
    #[error("database error: {0}")]
    Database(String),
    /// [`export::migrate`] was pointed at a store that already holds records.
    #[error("the target store is not empty; migrate into a new, empty store")]
    TargetNotEmpty,
}

/// sled's errors become [`StoreError::Io`], so no backend's type is in the public API.
#[doc(hidden)]
impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        StoreError::Io(error.to_string())
    }
}

/// Gauges an operator watches: how much work waits and how big the store is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Homeserver events acknowledged and not yet handled.
    pub inbox_depth: u64,
    /// Sends queued and not yet done.
    pub outbox_depth: u64,
    /// Remote events handed over and not yet applied.
    pub remote_depth: u64,
    /// Bytes on disk, where the backend can tell.
    pub bytes: Option<u64>,
}

/// What a bridge remembers: message and reaction mappings, portals, ghosts and its own
/// values. Every backend keeps the same promises (see the module docs).
///
/// Bridges reach it through [`BridgeContext::store`](crate::BridgeContext::store); typed
/// metadata helpers are in [`StoreExt`]. The framework's own queues are [`Queues`], and
/// moving between backends is [`Transfer`]: a backend implements all three ([`Backend`]).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Which backend this is (`"sled"`, `"postgres"`), for logs.
    fn backend(&self) -> &'static str;

    // ---- messages ----

    /// Stores a mapping. Storing the same mapping again is a no-op; mapping a remote part or
    /// an event that is already mapped to something else is a [`StoreError::Conflict`].
    async fn insert_message(&self, mapping: &MessageMapping) -> Result<(), StoreError>;
    /// The mapping of a Matrix event, if it was bridged.
    async fn message_by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError>;
    /// The mapping of one part of a remote message in a room ([`PartId::only`] for the only
    /// part).
    async fn message_by_remote(
        &self,
        room_id: &RoomId,
        remote_id: &MessageId,
        part: &PartId,
    ) -> Result<Option<MessageMapping>, StoreError>;
    /// Every part of a remote message in a room, ordered by part.
    async fn message_parts(
        &self,
        room_id: &RoomId,
        remote_id: &MessageId,
    ) -> Result<Vec<MessageMapping>, StoreError>;
    /// Forgets the mapping of an event (both directions); returns what was removed.
    async fn delete_message(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError>;

    // ---- reactions ----

    /// Stores a reaction. The same reaction again is a no-op; another event for the same
    /// (room, target, sender, key), or the same event for another key, is a conflict.
    async fn insert_reaction(&self, reaction: &ReactionMapping) -> Result<(), StoreError>;
    /// The reaction `sender` gave to remote message `target_remote_id` with `key`.
    async fn reaction(
        &self,
        room_id: &RoomId,
        target_remote_id: &MessageId,
        sender: &UserId,
        key: &str,
    ) -> Result<Option<ReactionMapping>, StoreError>;
    /// The reaction carried by an `m.reaction` event.
    async fn reaction_by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError>;
    /// Forgets a reaction; returns what was removed.
    async fn delete_reaction(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError>;

    // ---- portals ----

    /// Stores or updates a portal. A room already bridged to another chat is a conflict.
    async fn put_portal(&self, portal: &Portal) -> Result<(), StoreError>;
    /// The portal of a remote chat.
    async fn portal_by_key(&self, key: &PortalKey) -> Result<Option<Portal>, StoreError>;
    /// The portal bridged to a Matrix room.
    async fn portal_by_room(&self, room_id: &RoomId) -> Result<Option<Portal>, StoreError>;
    /// Forgets a portal; returns what was removed.
    async fn delete_portal(&self, key: &PortalKey) -> Result<Option<Portal>, StoreError>;
    /// Every portal, ordered by key.
    async fn portals(&self) -> Result<Vec<Portal>, StoreError>;

    // ---- ghosts ----

    /// The record of `user_id`; a default (unregistered) record if none was stored.
    async fn ghost(&self, user_id: &UserId) -> Result<GhostRecord, StoreError>;
    /// Applies `change` to the record of `user_id` atomically and returns the result. A
    /// remote ID already recorded for another ghost is a conflict.
    async fn update_ghost(
        &self,
        user_id: &UserId,
        change: &(dyn for<'r> Fn(&'r mut GhostRecord) + Send + Sync),
    ) -> Result<GhostRecord, StoreError>;
    /// The ghost recorded for a remote user.
    async fn ghost_by_remote(
        &self,
        remote_id: &RemoteUserId,
    ) -> Result<Option<(OwnedUserId, GhostRecord)>, StoreError>;
    /// Records whether `user_id` is joined to `room_id`.
    async fn set_joined(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        joined: bool,
    ) -> Result<(), StoreError>;
    /// Whether `user_id` is known to have joined `room_id`.
    async fn is_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<bool, StoreError>;
    /// The rooms `user_id` is known to have joined, ordered.
    async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>, StoreError>;
    /// The per-room profile last set for `user_id` in `room_id`.
    async fn room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<RoomProfile, StoreError>;
    /// Records the per-room profile set for `user_id` in `room_id`.
    async fn set_room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        profile: &RoomProfile,
    ) -> Result<(), StoreError>;

    // ---- users and logins ----

    /// The record of a Matrix user of the bridge, if one was stored.
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Stores or replaces a user's record.
    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Stores or replaces a login. A login ID that belongs to another Matrix user is a
    /// [`StoreError::Conflict`] (a remote account is logged in once).
    async fn put_login(&self, login: &LoginRecord) -> Result<(), StoreError>;
    /// A login by its ID.
    async fn login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError>;
    /// The logins of a Matrix user, ordered by ID.
    async fn logins_of(&self, user_id: &UserId) -> Result<Vec<LoginRecord>, StoreError>;
    /// Every login, ordered by ID (to reconnect them at startup).
    async fn all_logins(&self) -> Result<Vec<LoginRecord>, StoreError>;
    /// Forgets a login and its places in portals; returns what was removed.
    async fn delete_login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError>;
    /// Records that a login is in a portal (replacing what was recorded for the pair). A
    /// preferred one takes the preference from its user's other logins in the portal.
    async fn put_portal_login(&self, link: &PortalLogin) -> Result<(), StoreError>;
    /// Records that a login is no longer in a portal.
    async fn remove_portal_login(
        &self,
        portal: &PortalKey,
        login_id: &LoginId,
    ) -> Result<(), StoreError>;
    /// The logins in a portal, ordered by login ID.
    async fn portal_logins(&self, portal: &PortalKey) -> Result<Vec<PortalLogin>, StoreError>;
    /// The portals a login is in, ordered by portal key.
    async fn login_portals(&self, login_id: &LoginId) -> Result<Vec<PortalLogin>, StoreError>;

    // ---- the bridge's own values ----

    /// A value the bridge stored under `namespace` and `key` (typed access: [`StoreExt`]).
    async fn value(&self, namespace: &str, key: &str) -> Result<Option<Value>, StoreError>;
    /// Stores a value, or removes it with `None`.
    async fn set_value(
        &self,
        namespace: &str,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(), StoreError>;
}

/// The framework's queues and counters: the transaction record and inbox, the outbox, the
/// remote queue, the boot counter and the gauges. Backends implement it; bridges never see
/// it (a bridge cannot complete an inbox item or drop a queued send by mistake).
#[async_trait]
pub trait Queues: Send + Sync + 'static {
    /// Counts this process start (durably); makes client transaction IDs unique.
    async fn next_boot(&self) -> Result<u64, StoreError>;
    /// Records a batch of transactions atomically and durably, skipping those recorded
    /// before (and repeats within the batch). Returns one outcome per transaction, in order.
    async fn record_transactions(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<Vec<Recorded>, StoreError>;
    /// Every inbox item still waiting, oldest first.
    async fn pending_items(&self) -> Result<Vec<(u64, InboxItem)>, StoreError>;
    /// Removes a handled inbox item. Need not be durable at once: an item whose removal is
    /// lost is handed to the bridge again.
    async fn complete_item(&self, seq: u64) -> Result<(), StoreError>;
    /// Keeps the newest `keep` transaction records and drops the rest; returns how many went.
    async fn prune_transaction_records(&self, keep: u64) -> Result<u64, StoreError>;
    /// Appends a send durably and returns its sequence number.
    async fn outbox_push(&self, entry: &OutboxEntry) -> Result<u64, StoreError>;
    /// Every send not yet done, oldest first.
    async fn outbox_pending(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError>;
    /// Rewrites queued send `seq` durably (its content sealed for an encrypted room before
    /// its first attempt, so every retry sends the same bytes).
    async fn outbox_replace(&self, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// Marks a send done and stores the mapping it produced, atomically.
    async fn outbox_complete(
        &self,
        seq: u64,
        mapping: Option<&MessageMapping>,
    ) -> Result<(), StoreError>;
    /// Appends a remote event durably and returns its sequence number.
    async fn remote_push(&self, item: &RemoteItem) -> Result<u64, StoreError>;
    /// Every remote event not yet applied, oldest first.
    async fn remote_pending(&self) -> Result<Vec<(u64, RemoteItem)>, StoreError>;
    /// Removes an applied remote event. Need not be durable at once: an event whose removal
    /// is lost is applied again, which changes nothing (applying is idempotent by remote ID).
    async fn remote_complete(&self, seq: u64) -> Result<(), StoreError>;
    /// Queue depths and size, for metrics.
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Makes everything written so far durable.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Completes when this process lost its exclusive hold on the store and must stop (a
    /// standby may have taken over). Stores held by a file lock or not shared never complete.
    async fn lock_lost(&self) -> StoreError {
        std::future::pending().await
    }
}

/// Moving every record between backends (`migrate-store`, [`export::migrate`]).
#[async_trait]
pub trait Transfer: Send + Sync + 'static {
    /// Whether the store holds no records at all (the boot counter aside).
    async fn is_empty(&self) -> Result<bool, StoreError>;
    /// Hands every record to `sink`, in batches, queues in their order.
    async fn export(&self, sink: &mut dyn RecordSink) -> Result<(), StoreError>;
    /// Writes exported records; queue items are appended in the order given.
    async fn import(&self, records: &[Record]) -> Result<(), StoreError>;
}

/// The bot device's end-to-bridge encryption state, as the crypto machine keeps it: opaque
/// entries under string keys, changed in atomic batches.
#[async_trait]
pub trait CryptoState: Send + Sync + 'static {
    /// Every entry (read once, at start).
    async fn crypto_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Sets `puts` and removes `deletes` together or not at all, durably before it returns.
    async fn apply_crypto(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StoreError>;
}

/// A whole store backend: what bridges use, the framework's queues, transfer and crypto
/// state. Implement [`Store`], [`Queues`], [`Transfer`] and [`CryptoState`] and this comes for
/// free; run a bridge on it with [`run_with_store`](crate::run_with_store).
pub trait Backend: Store + Queues + Transfer + CryptoState {}

impl<T: Store + Queues + Transfer + CryptoState> Backend for T {}

/// Where the store lives, as the operator configured it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// A sled directory and its page cache size.
    Sled {
        /// The directory.
        path: PathBuf,
        /// Page cache in bytes.
        cache_bytes: u64,
    },
    /// A PostgreSQL database and the schema this bridge keeps its tables in.
    Postgres {
        /// A libpq-style connection string or `postgresql://` URL.
        url: String,
        /// The schema (created if missing).
        schema: String,
    },
}

impl std::fmt::Display for StoreLocation {
    /// Never shows the connection string: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sled { path, .. } => write!(f, "sled store {}", path.display()),
            StoreLocation::Postgres { schema, .. } => {
                write!(f, "PostgreSQL schema {schema:?}")
            }
        }
    }
}

/// Opens the store at `location` as a hot standby: while another copy of the bridge holds
/// it, waits for that copy to stop. Only PostgreSQL can be shared between machines; a sled
/// store is opened as by [`open`].
pub async fn open_standby(location: &StoreLocation) -> Result<Arc<dyn Backend>, StoreError> {
    match location {
        #[cfg(feature = "postgres")]
        StoreLocation::Postgres { url, schema } => Ok(Arc::new(
            postgres::PostgresStore::open_standby(url, schema).await?,
        )),
        _ => open(location).await,
    }
}

/// Opens the store at `location`.
pub async fn open(location: &StoreLocation) -> Result<Arc<dyn Backend>, StoreError> {
    match location {
        StoreLocation::Sled { path, cache_bytes } => {
            let path = path.clone();
            let cache_bytes = *cache_bytes;
            let store = tokio::task::spawn_blocking(move || SledStore::open(&path, cache_bytes))
                .await
                .map_err(|e| StoreError::Open(e.to_string()))??;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreLocation::Postgres { url, schema } => {
            Ok(Arc::new(postgres::PostgresStore::open(url, schema).await?))
        }
        #[cfg(not(feature = "postgres"))]
        StoreLocation::Postgres { .. } => Err(StoreError::Open(
            "this build has no PostgreSQL support (cargo feature `postgres`)".into(),
        )),
    }
}
