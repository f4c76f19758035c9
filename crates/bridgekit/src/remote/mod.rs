//! Remote → Matrix: one call per thing that happened on the remote network.
//!
//! A bridge describes the event in the remote network's terms (remote message IDs, remote
//! user IDs, a [`PortalKey`]); the framework resolves them through the store, acts as the
//! right ghost, and sends through the outbox. Events for one portal are applied in the order
//! they were given ([`BridgeContext::remote_event`]); portals proceed concurrently.
//!
//! Applying is idempotent where the network's IDs allow: a message whose remote ID is
//! already mapped is skipped, and sends use transaction IDs derived from remote IDs, so
//! handing the same event over again after a crash changes nothing.

mod apply;
mod chat;
mod queue;

use ruma::{OwnedMxcUri, OwnedUserId};

pub(crate) use queue::RemoteQueue;

use crate::bridge::BridgeError;
use crate::context::BridgeContext;
use crate::store::PortalKey;

/// A user of the remote network, as the bridge knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteUser {
    /// Their stable ID on the network.
    pub id: String,
    /// The name to show, if known; the ghost's displayname follows it.
    pub displayname: Option<String>,
    /// Their avatar, already uploaded, if any.
    pub avatar: Option<OwnedMxcUri>,
}

impl RemoteUser {
    /// A user known by ID only.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            displayname: None,
            avatar: None,
        }
    }

    /// Sets the name to show.
    pub fn with_displayname(mut self, name: impl Into<String>) -> Self {
        self.displayname = Some(name.into());
        self
    }
}

/// What a remote message says.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RemoteContent {
    /// Plain or formatted text (`html` is the formatted body).
    Text {
        /// Plain text.
        body: String,
        /// HTML, if the network formats.
        html: Option<String>,
    },
    /// A notice (automated or low-priority text).
    Notice {
        /// Plain text.
        body: String,
    },
    /// An emote (`/me waves`), without the sender's name.
    Emote {
        /// Plain text.
        body: String,
    },
    /// A file; images are shown inline.
    Media {
        /// The file name or caption.
        body: String,
        /// The bytes, uploaded to the homeserver by the framework.
        data: Vec<u8>,
        /// Its MIME type.
        mimetype: String,
    },
}

impl RemoteContent {
    /// Plain text.
    pub fn text(body: impl Into<String>) -> Self {
        Self::Text {
            body: body.into(),
            html: None,
        }
    }
}

/// A message on the remote network.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RemoteMessage {
    /// Its ID on the network, unique within the chat.
    pub id: String,
    /// Who wrote it.
    pub sender: RemoteUser,
    /// What it says.
    pub content: RemoteContent,
    /// The remote message it replies to.
    pub reply_to: Option<String>,
    /// When it was written (ms since the epoch); set for history, so Matrix shows the
    /// original time.
    pub timestamp: Option<u64>,
}

impl RemoteMessage {
    /// A message `id` from `sender` saying `content`.
    pub fn new(id: impl Into<String>, sender: RemoteUser, content: RemoteContent) -> Self {
        Self {
            id: id.into(),
            sender,
            content,
            reply_to: None,
            timestamp: None,
        }
    }

    /// Marks it as a reply to remote message `id`.
    pub fn reply_to(mut self, id: impl Into<String>) -> Self {
        self.reply_to = Some(id.into());
        self
    }

    /// Sets the original time (ms since the epoch).
    pub fn at(mut self, millis: u64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// A remote chat, for creating its portal.
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub struct ChatInfo {
    /// The room name.
    pub name: Option<String>,
    /// The room topic.
    pub topic: Option<String>,
    /// Remote members, joined as ghosts.
    pub members: Vec<RemoteUser>,
    /// Matrix users to invite (after the history is in, so nobody is notified of it).
    pub invite: Vec<OwnedUserId>,
    /// Power levels to grant in the new room (the bot keeps its own).
    pub power: Vec<(OwnedUserId, i64)>,
    /// A direct chat (`is_direct` on the invites).
    pub is_direct: bool,
    /// Earlier messages to bridge first, oldest first, with their original times.
    pub history: Vec<RemoteMessage>,
}

/// Something that happened on the remote network, in one portal.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RemoteEvent {
    /// A new message.
    Message(RemoteMessage),
    /// An edit of an earlier message.
    Edit {
        /// The edited message.
        target_id: String,
        /// The edit's own ID (or any ID unique per edit), for idempotency.
        edit_id: String,
        /// Who edited.
        sender: RemoteUser,
        /// The new content.
        content: RemoteContent,
    },
    /// A reaction.
    Reaction {
        /// The message reacted to.
        target_id: String,
        /// Who reacted.
        sender: RemoteUser,
        /// The key, usually an emoji.
        key: String,
    },
    /// A reaction taken back.
    ReactionRemoved {
        /// The message it was on.
        target_id: String,
        /// Who had reacted.
        sender: RemoteUser,
        /// The key.
        key: String,
    },
    /// A message deleted.
    Delete {
        /// The deleted message (every part of it is redacted).
        target_id: String,
        /// Who deleted it (the bot redacts when unknown or not its author).
        sender: Option<RemoteUser>,
        /// Why.
        reason: Option<String>,
    },
    /// Typing started or stopped.
    Typing {
        /// Who.
        sender: RemoteUser,
        /// Started (true) or stopped.
        typing: bool,
    },
    /// A user read up to a message.
    ReadMarker {
        /// Who.
        sender: RemoteUser,
        /// The last message read.
        up_to: String,
    },
    /// A user joined the chat.
    MemberJoined(RemoteUser),
    /// A user left, or was removed.
    MemberLeft {
        /// Who left.
        user: RemoteUser,
        /// Why, if said.
        reason: Option<String>,
        /// Who removed them, for kicks.
        kicked_by: Option<RemoteUser>,
    },
    /// The chat's name or topic changed.
    ChatInfoChanged {
        /// The new name.
        name: Option<String>,
        /// The new topic.
        topic: Option<String>,
        /// Who changed it (the bot applies it when unknown).
        sender: Option<RemoteUser>,
    },
    /// A chat to bridge: creates the portal room if there is none (members, power levels,
    /// `m.bridge`, history, then invites), else applies the info to it.
    NewChat(ChatInfo),
    /// A user's profile changed.
    GhostProfile(RemoteUser),
    /// A user is now known by another ID (an IRC nick change, say): the same ghost goes on
    /// standing for them under the new ID.
    GhostRenamed {
        /// The old ID.
        old_id: String,
        /// The new ID and profile.
        user: RemoteUser,
    },
    /// Earlier messages, oldest first (already-bridged ones are skipped, so this resumes).
    Backfill(Vec<RemoteMessage>),
}

impl BridgeContext {
    /// Queues `event` for `portal`, behind that portal's earlier events; returns at once.
    /// Failures are logged (use [`apply_remote_event`](Self::apply_remote_event) to see them).
    pub fn remote_event(&self, portal: &PortalKey, event: RemoteEvent) {
        self.shared.remote.push(portal.clone(), event);
    }

    /// Applies `event` to `portal` now and says how it went. The caller keeps the order.
    pub async fn apply_remote_event(
        &self,
        portal: &PortalKey,
        event: RemoteEvent,
    ) -> Result<(), BridgeError> {
        apply::apply(self, portal, event).await
    }
}
