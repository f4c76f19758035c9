//! Matrix → remote: the events a bridge is told about, already resolved by the framework.
//!
//! Before a handler runs, the framework has looked up what it needs: the portal of the room,
//! the remote message an edit, reaction, reply, thread or redaction points at, and whether
//! the sender is one of the bridge's own users (those events never arrive). Each capability
//! is a default method on [`Bridge`](crate::Bridge); a bridge overrides the ones its network
//! supports, and the framework reports the rest to the user as unsupported.

mod books;
mod commands;
mod outcome;
pub(crate) mod resolve;

use ruma::events::room::member::MembershipState;
use ruma::events::room::message::{
    RoomMessageEventContent, RoomMessageEventContentWithoutRelation,
};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedMxcUri, OwnedRoomId, OwnedUserId};

use crate::store::{MessageMapping, Portal, ReactionMapping};

pub use books::Sent;
pub(crate) use books::{echo_origin, record_mapping};
pub use commands::{CommandCall, CommandHelp};
pub(crate) use outcome::{report as outcome_report, report_given_up, report_remote_failure};

/// Where and from whom a Matrix event came.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MatrixOrigin {
    /// The room.
    pub room_id: OwnedRoomId,
    /// The event.
    pub event_id: OwnedEventId,
    /// The (real, non-bridged) Matrix user who sent it.
    pub sender: OwnedUserId,
    /// The portal bridged to the room, if the room is one.
    pub portal: Option<Portal>,
    /// When the homeserver received it.
    pub timestamp: MilliSecondsSinceUnixEpoch,
    /// It came encrypted (`m.room.encrypted`) and the framework decrypted it
    /// (`encryption.allow`); what you get is the plaintext event.
    pub decrypted: bool,
}

/// A new message: text, notice, emote, media, possibly a reply or in a thread.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MatrixMessage {
    /// Where it came from.
    pub origin: MatrixOrigin,
    /// What it says (`content.msgtype` tells text, notice, emote, image, file, …).
    pub content: RoomMessageEventContent,
    /// The bridged message it replies to, if any (and if it was bridged).
    pub reply_to: Option<MessageMapping>,
    /// The bridged root of the thread it is in, if any.
    pub thread_root: Option<MessageMapping>,
}

impl MatrixMessage {
    /// The transaction ID to send this message to the network with, where the network takes
    /// one: when the network reports the message back carrying it
    /// ([`RemoteMessage::with_txn_id`](crate::RemoteMessage::with_txn_id)), the framework maps
    /// the echo to this event instead of bridging it again — whether the echo comes before or
    /// after the handler returns.
    pub fn txn_id(&self) -> crate::ids::RemoteTxnId {
        books::txn_id_for(&self.origin.event_id)
    }
}

/// An edit (`m.replace`) of a bridged message.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MatrixEdit {
    /// Where it came from.
    pub origin: MatrixOrigin,
    /// The bridged message it edits.
    pub target: MessageMapping,
    /// The new content.
    pub new_content: RoomMessageEventContentWithoutRelation,
}

/// A reaction (`m.annotation`) to a bridged message.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MatrixReaction {
    /// Where it came from.
    pub origin: MatrixOrigin,
    /// The bridged message reacted to.
    pub target: MessageMapping,
    /// The key, usually an emoji.
    pub key: String,
}

/// What a redaction removes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RedactedTarget {
    /// A bridged message.
    Message(MessageMapping),
    /// A bridged reaction.
    Reaction(ReactionMapping),
}

/// A redaction of a bridged message or reaction.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MatrixRedaction {
    /// Where it came from.
    pub origin: MatrixOrigin,
    /// What it removes.
    pub target: RedactedTarget,
    /// Why, if the sender said.
    pub reason: Option<String>,
}

/// A membership change of a real user or of a ghost (invite, join, leave, kick, ban).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MatrixMembership {
    /// Where it came from (`sender` is who made the change).
    pub origin: MatrixOrigin,
    /// Whose membership changed.
    pub user_id: OwnedUserId,
    /// The new membership.
    pub membership: MembershipState,
    /// The ghost's remote user, when `user_id` is a ghost (a Matrix user inviting or kicking
    /// someone from the remote network).
    pub remote_user: Option<crate::ids::RemoteUserId>,
    /// The member's displayname in the room.
    pub displayname: Option<String>,
    /// The reason given, for kicks, bans and leaves.
    pub reason: Option<String>,
}

/// A change of the room's name, topic or avatar.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RoomChange {
    /// `m.room.name`.
    Name(String),
    /// `m.room.topic`.
    Topic(String),
    /// `m.room.avatar`; `None` removes it.
    Avatar(Option<OwnedMxcUri>),
}

/// A room metadata change.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MatrixRoomChange {
    /// Where it came from.
    pub origin: MatrixOrigin,
    /// What changed.
    pub change: RoomChange,
}

/// Returned by capabilities a bridge does not implement; the framework tells the user
/// instead of logging an error.
#[derive(Debug, thiserror::Error)]
#[error("{0} are not supported by this bridge")]
pub struct Unsupported(pub &'static str);

/// What an encrypted message in a room of the bridge gets while the bridge cannot decrypt:
/// reported to the room (a notice replying to it, `bridge.error_notices`; a failed message
/// status, `bridge.message_status`) instead of silence.
#[derive(Debug, thiserror::Error)]
#[error(
    "this bridge does not support encrypted rooms: it cannot read messages here. Write in a room without encryption, or ask the bridge's operator for encryption support"
)]
pub struct EncryptedRoomUnsupported;

/// Returned by a timeline handler (a message, edit, reaction, redaction, membership or room
/// change) when the remote side failed for a reason that may pass (the network is down, a
/// rate limit): the event stays in the inbox and is handed over again with backoff, holding
/// the room's later events so order is kept, until it succeeds or `bridge.handler_retry_secs`
/// runs out (counted from this process's first attempt), when it is reported as not
/// bridged. A crash meanwhile loses nothing: the event is handed over again at the next
/// start. Commands, ephemeral and to-device handlers do not retry.
///
/// ```
/// # use bridgekit::{BridgeError, RetryLater};
/// # fn send() -> Result<(), std::io::Error> { Ok(()) }
/// # fn f() -> Result<(), BridgeError> {
/// send().map_err(RetryLater::new)?;
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("temporary failure: {0}")]
pub struct RetryLater(pub crate::BridgeError);

impl RetryLater {
    /// Wraps the error that made the attempt fail.
    pub fn new(error: impl Into<crate::BridgeError>) -> Self {
        Self(error.into())
    }
}
