//! Remote → Matrix: one call per thing that happened on the remote network.
//!
//! A bridge describes the event in the remote network's terms (remote message IDs, remote
//! user IDs, a [`PortalKey`]); the framework resolves them through the store, acts as the
//! right ghost, and sends through the outbox. [`BridgeContext::remote_event`] stores the
//! event before it returns (so the bridge may acknowledge it to its network), and events for
//! one portal are applied in the order they were given, also across a crash; portals proceed
//! concurrently. Ghost-level changes (a profile, a rename) are [`GhostEvent`]s, not portal
//! events.
//!
//! Applying is idempotent where the network's IDs allow: a message whose remote ID is
//! already mapped is skipped, and sends use transaction IDs derived from remote IDs, so
//! applying the same event again after a crash changes nothing.

mod apply;
mod chat;
mod queue;

use ruma::{MilliSecondsSinceUnixEpoch, OwnedMxcUri, OwnedUserId};
use serde::{Deserialize, Serialize};

pub(crate) use queue::RemoteQueue;

use crate::bridge::BridgeError;
use crate::context::BridgeContext;
use crate::ids::{MessageId, RemoteTxnId, RemoteUserId};
use crate::store::PortalKey;

/// A user of the remote network, as the bridge knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteUser {
    /// Their stable ID on the network.
    pub id: RemoteUserId,
    /// The name to show, if known; the ghost's displayname follows it.
    pub displayname: Option<String>,
    /// Their avatar, already uploaded, if any.
    pub avatar: Option<OwnedMxcUri>,
}

impl RemoteUser {
    /// A user known by ID only.
    pub fn new(id: RemoteUserId) -> Self {
        Self {
            id,
            displayname: None,
            avatar: None,
        }
    }

    /// Sets the name to show.
    pub fn with_displayname(mut self, name: impl Into<String>) -> Self {
        self.displayname = Some(name.into());
        self
    }

    /// Sets the avatar (already uploaded).
    pub fn with_avatar(mut self, avatar: OwnedMxcUri) -> Self {
        self.avatar = Some(avatar);
        self
    }
}

/// What a remote message says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteContent {
    /// Plain or formatted text (`html` is the formatted body).
    Text {
        /// Plain text.
        body: String,
        /// HTML, if the network formats.
        #[serde(default)]
        html: Option<String>,
    },
    /// A notice (automated or low-priority text).
    Notice {
        /// Plain text.
        body: String,
        /// HTML, if the network formats.
        #[serde(default)]
        html: Option<String>,
    },
    /// An emote (`/me waves`), without the sender's name.
    Emote {
        /// Plain text.
        body: String,
        /// HTML, if the network formats.
        #[serde(default)]
        html: Option<String>,
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
    /// A file already on the homeserver (or a Matrix message carried by reference): sent as
    /// `msgtype` with the `mxc://` URI, nothing uploaded.
    MediaRef {
        /// The Matrix msgtype: `m.image`, `m.file`, `m.video` or `m.audio`.
        msgtype: String,
        /// The file name or caption.
        body: String,
        /// Where the file is.
        url: OwnedMxcUri,
        /// Its MIME type, if known.
        mimetype: Option<String>,
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

    /// A plain notice.
    pub fn notice(body: impl Into<String>) -> Self {
        Self::Notice {
            body: body.into(),
            html: None,
        }
    }

    /// A plain emote.
    pub fn emote(body: impl Into<String>) -> Self {
        Self::Emote {
            body: body.into(),
            html: None,
        }
    }
}

/// A message on the remote network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteMessage {
    /// Its ID on the network, unique within the chat.
    pub id: MessageId,
    /// Who wrote it.
    pub sender: RemoteUser,
    /// What it says.
    pub content: RemoteContent,
    /// The remote message it replies to.
    pub reply_to: Option<MessageId>,
    /// When it was written; set for history, so Matrix shows the original time.
    pub timestamp: Option<MilliSecondsSinceUnixEpoch>,
    /// The transaction ID the bridge sent it with, when it came from Matrix (see
    /// [`MatrixMessage::txn_id`](crate::MatrixMessage::txn_id)): the framework recognises
    /// the network's echo of a bridged message and does not bridge it twice.
    #[serde(default)]
    pub txn_id: Option<RemoteTxnId>,
}

impl RemoteMessage {
    /// A message `id` from `sender` saying `content`.
    pub fn new(id: MessageId, sender: RemoteUser, content: RemoteContent) -> Self {
        Self {
            id,
            sender,
            content,
            reply_to: None,
            timestamp: None,
            txn_id: None,
        }
    }

    /// Marks it as a reply to remote message `id`.
    pub fn reply_to(mut self, id: MessageId) -> Self {
        self.reply_to = Some(id);
        self
    }

    /// Sets the original time.
    pub fn at(mut self, timestamp: MilliSecondsSinceUnixEpoch) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// The transaction ID the network reported it with (its echo of a message the bridge
    /// sent).
    pub fn with_txn_id(mut self, txn_id: RemoteTxnId) -> Self {
        self.txn_id = Some(txn_id);
        self
    }
}

/// A remote chat, for creating its portal.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteEvent {
    /// A new message.
    Message(RemoteMessage),
    /// An edit of an earlier message.
    Edit {
        /// The edited message.
        target_id: MessageId,
        /// The edit's own ID (or any ID unique per edit), for idempotency.
        edit_id: MessageId,
        /// Who edited.
        sender: RemoteUser,
        /// The new content.
        content: RemoteContent,
    },
    /// A reaction.
    Reaction {
        /// The message reacted to.
        target_id: MessageId,
        /// Who reacted.
        sender: RemoteUser,
        /// The key, usually an emoji.
        key: String,
    },
    /// A reaction taken back.
    ReactionRemoved {
        /// The message it was on.
        target_id: MessageId,
        /// Who had reacted.
        sender: RemoteUser,
        /// The key.
        key: String,
    },
    /// A message deleted.
    Delete {
        /// The deleted message (every part of it is redacted).
        target_id: MessageId,
        /// Who deleted it: when unknown, its author's ghost redacts it; when someone else,
        /// the bot does.
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
        up_to: MessageId,
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
    /// Earlier messages, oldest first (already-bridged ones are skipped, so this resumes).
    Backfill(Vec<RemoteMessage>),
}

/// Something that happened to a remote user, whatever chat they are in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GhostEvent {
    /// Their profile changed: the ghost's displayname and avatar follow.
    Profile(RemoteUser),
    /// They are now known by another ID (an IRC nick change, say): the same ghost goes on
    /// standing for them under the new ID.
    Renamed {
        /// The old ID.
        old_id: RemoteUserId,
        /// The new ID and profile.
        user: RemoteUser,
    },
}

impl BridgeContext {
    /// Queues `event` for `portal`, behind that portal's earlier events, and returns once it
    /// is durably stored: the bridge may acknowledge it to its network right after. It is
    /// applied in order per portal, also after a crash; one that cannot be applied is told
    /// to the portal's room (`bridge.error_notices`) and counted, not only logged. Use
    /// [`apply_remote_event`](Self::apply_remote_event) to apply now and see the outcome.
    pub async fn remote_event(
        &self,
        portal: &PortalKey,
        event: RemoteEvent,
    ) -> Result<(), crate::StoreError> {
        self.remote_queue()
            .push(self.backend(), portal.clone(), event)
            .await
    }

    /// Applies `event` to `portal` now and says how it went. The caller keeps the order.
    pub async fn apply_remote_event(
        &self,
        portal: &PortalKey,
        event: RemoteEvent,
    ) -> Result<(), BridgeError> {
        apply::apply(self, portal, event).await
    }

    /// Applies a change of a remote user (profile, rename) to their ghost now. The caller
    /// keeps the order (apply a rename before the renamed user's next message).
    pub async fn apply_ghost_event(&self, event: GhostEvent) -> Result<(), BridgeError> {
        match event {
            GhostEvent::Profile(user) => apply::ghost(self, &user).await.map(drop),
            GhostEvent::Renamed { old_id, user } => chat::rename(self, &old_id, &user).await,
        }
    }
}
