//! Errors from the homeserver, typed by Matrix `errcode` (ruma's [`ErrorKind`]).

use ruma::api::error::{ErrorBody, ErrorKind};

use crate::store::StoreError;

/// A failed Client-Server call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The homeserver refused the request with a Matrix error.
    #[error("homeserver answered {status} {errcode}: {message}")]
    Matrix {
        /// HTTP status.
        status: u16,
        /// The typed `errcode`.
        kind: ErrorKind,
        /// The `errcode` as sent.
        errcode: String,
        /// The homeserver's human-readable `error`.
        message: String,
    },
    /// The homeserver answered an error without a Matrix error body.
    #[error("homeserver answered {status}: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The homeserver could not be reached, and retrying did not help in time.
    #[error("could not reach the homeserver: {0}")]
    Network(String),
    /// The request could not be built (an invalid ID or content).
    #[error("could not build the request: {0}")]
    Request(String),
    /// The homeserver's success response could not be understood.
    #[error("unexpected homeserver response: {0}")]
    Response(String),
    /// A state event needs a power level the user lacks, and the bot cannot grant it.
    #[error(
        "{user_id} needs power level {needed} in {room_id} to send {event_type}, and the bot (level {bot_level}) cannot grant it: give the bot a power level of at least {needed} in that room"
    )]
    PowerLevel {
        /// The user that lacks power.
        user_id: ruma::OwnedUserId,
        /// The room.
        room_id: ruma::OwnedRoomId,
        /// The state event type.
        event_type: String,
        /// The level the event needs.
        needed: i64,
        /// The bot's own level.
        bot_level: i64,
    },
    /// The bridge may not act as this real Matrix user (double puppeting is off or was
    /// refused); a ghost stands in where one can.
    #[error("double puppeting of {user_id} is off")]
    DoublePuppetOff {
        /// The user.
        user_id: ruma::OwnedUserId,
    },
    /// The bridge is stopping; a queued send stays in the outbox and goes out after restart.
    #[error("the bridge is stopping; the send stays queued for the next start")]
    Stopped,
    /// The store failed while recording the call's effect.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClientError {
    pub(crate) fn from_ruma(error: ruma::api::error::Error) -> Self {
        let status = error.status_code.as_u16();
        match error.body {
            ErrorBody::Standard(body) => ClientError::Matrix {
                status,
                errcode: body.kind.errcode().to_string(),
                kind: body.kind,
                message: body.message,
            },
            ErrorBody::Json(json) => ClientError::Http {
                status,
                body: truncate(json.to_string()),
            },
            ErrorBody::NotJson { bytes, .. } => ClientError::Http {
                status,
                body: truncate(String::from_utf8_lossy(&bytes).into_owned()),
            },
        }
    }

    /// The HTTP status, when the homeserver answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Matrix { status, .. } | ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Matrix `errcode`, when the homeserver sent one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Matrix { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// The typed `errcode`, when the homeserver sent one.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            ClientError::Matrix { kind, .. } => Some(kind),
            _ => None,
        }
    }

    fn forbidden_because(&self, needle: &str) -> bool {
        matches!(self, ClientError::Matrix { status: 403, message, .. } if message.to_ascii_lowercase().contains(needle))
    }

    /// Worth retrying later: the homeserver was unreachable, failing (5xx) or rate limiting.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Network(_))
            || self.status().is_some_and(|s| s >= 500 || s == 429)
    }

    /// A 403 because the acting user's power level is too low.
    pub fn is_insufficient_power(&self) -> bool {
        self.forbidden_because("power level") || self.forbidden_because("user_level")
    }

    /// Synapse's answer to `?user_id=` of a ghost it has not registered yet.
    pub fn is_unregistered_user(&self) -> bool {
        self.forbidden_because("has not registered this user")
    }

    /// The homeserver will not let the bridge act as a real user: their access token is
    /// revoked (401), or the double-puppet appservice may not masquerade as them (403).
    pub fn is_puppet_refused(&self) -> bool {
        matches!(self, ClientError::DoublePuppetOff { .. })
            || self.status() == Some(401)
            || self.forbidden_because("masquerade")
            || self.is_unregistered_user()
    }

    /// The acting user is not (or not yet) in the room.
    pub fn is_not_in_room(&self) -> bool {
        self.forbidden_because("not in room") || self.forbidden_because("not joined")
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
