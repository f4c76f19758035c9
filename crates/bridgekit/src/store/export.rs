//! Moving a store between backends: every record as a plain value, streamed in batches.
//!
//! `migrate-store` uses [`migrate`]: the source hands batches to the target, which writes
//! each batch in one transaction, so memory stays bounded however large the history is.

use async_trait::async_trait;
use ruma::{OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::queues::{InboxItem, OutboxEntry, RemoteItem};
use super::records::{GhostRecord, MessageMapping, Portal, ReactionMapping};
use super::users::{LoginRecord, PortalLogin, UserRecord};
use super::{Backend, StoreError};

/// How many records an export hands over at once.
pub const EXPORT_BATCH: usize = 1000;

/// One stored fact, independent of the backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Record {
    /// A message mapping.
    Message(MessageMapping),
    /// A reaction mapping.
    Reaction(ReactionMapping),
    /// A portal.
    Portal(Portal),
    /// A ghost's record.
    Ghost {
        /// The ghost.
        user_id: OwnedUserId,
        /// Its record.
        record: GhostRecord,
    },
    /// A ghost's membership.
    Joined {
        /// The ghost.
        user_id: OwnedUserId,
        /// The room it joined.
        room_id: OwnedRoomId,
    },
    /// A ghost's per-room profile.
    RoomProfile {
        /// The ghost.
        user_id: OwnedUserId,
        /// The room.
        room_id: OwnedRoomId,
        /// Displayname last set there.
        displayname: Option<String>,
        /// Avatar last set there.
        avatar_url: Option<String>,
    },
    /// A Matrix user of the bridge.
    User(UserRecord),
    /// A login of a Matrix user.
    Login(LoginRecord),
    /// A login's place in a portal.
    PortalLogin(PortalLogin),
    /// A bridge value.
    Value {
        /// Its namespace.
        namespace: String,
        /// Its key.
        key: String,
        /// The value.
        value: Value,
    },
    /// A transaction already taken in (for deduplication).
    Transaction {
        /// The deduplication key.
        key: Vec<u8>,
    },
    /// An acknowledged event not yet handled.
    Inbox(InboxItem),
    /// A send not yet done.
    Outbox(OutboxEntry),
    /// A remote event not yet applied.
    Remote(RemoteItem),
    /// The boot counter.
    Boot(u64),
    /// One entry of the bot device's encryption state.
    Crypto {
        /// Its key.
        key: String,
        /// Its value, as the crypto machine wrote it.
        value: Vec<u8>,
    },
}

/// Receives exported records.
#[async_trait]
pub trait RecordSink: Send {
    /// Takes one batch.
    async fn accept(&mut self, batch: Vec<Record>) -> Result<(), StoreError>;
}

/// Collects everything in memory (tests, small stores).
#[async_trait]
impl RecordSink for Vec<Record> {
    async fn accept(&mut self, batch: Vec<Record>) -> Result<(), StoreError> {
        self.extend(batch);
        Ok(())
    }
}

/// Counts what was moved, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Message mappings.
    pub messages: u64,
    /// Reaction mappings.
    pub reactions: u64,
    /// Portals.
    pub portals: u64,
    /// Ghost records.
    pub ghosts: u64,
    /// Logins.
    pub logins: u64,
    /// Everything else (users, logins' portals, memberships, profiles, values, queues,
    /// transaction records).
    pub other: u64,
}

struct Importer<'a> {
    target: &'a dyn Backend,
    report: MigrationReport,
}

#[async_trait]
impl RecordSink for Importer<'_> {
    async fn accept(&mut self, batch: Vec<Record>) -> Result<(), StoreError> {
        for record in &batch {
            let counter = match record {
                Record::Message(_) => &mut self.report.messages,
                Record::Reaction(_) => &mut self.report.reactions,
                Record::Portal(_) => &mut self.report.portals,
                Record::Ghost { .. } => &mut self.report.ghosts,
                Record::Login(_) => &mut self.report.logins,
                _ => &mut self.report.other,
            };
            *counter += 1;
        }
        self.target.import(&batch).await
    }
}

/// Copies every record of `source` into `target`, which must be empty, then flushes it.
pub async fn migrate(
    source: &dyn Backend,
    target: &dyn Backend,
) -> Result<MigrationReport, StoreError> {
    if !target.is_empty().await? {
        return Err(StoreError::TargetNotEmpty);
    }
    let mut importer = Importer {
        target,
        report: MigrationReport::default(),
    };
    source.export(&mut importer).await?;
    target.flush().await?;
    Ok(importer.report)
}
