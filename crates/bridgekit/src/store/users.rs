//! What the store remembers about the bridge's Matrix users and their remote logins: who
//! they are (their management room), each login (its remote account, profile, state and the
//! bridge's metadata), and which logins are in which portal.
//!
//! A Matrix user may have several logins; a login belongs to one Matrix user, and a remote
//! account is logged in once (its [`LoginId`] is unique in the bridge).

use ruma::{MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::StoreError;
use super::records::{PortalKey, from_value, to_value};
use crate::ids::{LoginId, RemoteUserId};

/// A Matrix user of the bridge (someone who talked to the bot or logged in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserRecord {
    /// The Matrix user.
    pub user_id: OwnedUserId,
    /// Their room with the bot, where login notices and command answers go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_room: Option<OwnedRoomId>,
    /// Double puppeting: the bridge acts as this user for what their own remote account
    /// does. `None`: off (the user's remote messages come from a ghost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_puppet: Option<DoublePuppet>,
}

/// How the bridge acts as a Matrix user (double puppeting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DoublePuppet {
    /// The user's own access token, when they gave one (`login-matrix`); without it the
    /// homeserver's double-puppet secret (`double_puppet.secrets`) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Why the homeserver refused to let the bridge act as the user, once it did: puppeting
    /// is stopped until the user turns it on again, and a ghost stands in meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl DoublePuppet {
    /// Puppeting with the homeserver's secret.
    pub fn with_secret() -> Self {
        Self {
            access_token: None,
            stopped: None,
        }
    }

    /// Puppeting with the user's own access token.
    pub fn with_access_token(token: impl Into<String>) -> Self {
        Self {
            access_token: Some(token.into()),
            stopped: None,
        }
    }

    /// Whether the bridge acts as the user now.
    pub fn is_active(&self) -> bool {
        self.stopped.is_none()
    }
}

impl UserRecord {
    /// A user with no management room yet.
    pub fn new(user_id: OwnedUserId) -> Self {
        Self {
            user_id,
            management_room: None,
            double_puppet: None,
        }
    }
}

/// Where a login stands with its remote network, as its network client reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LoginState {
    /// Just made or loaded; not connecting yet.
    Starting,
    /// Connecting to the network.
    Connecting,
    /// Connected and bridging.
    Connected,
    /// The connection dropped; the client is reconnecting by itself.
    TransientDisconnect,
    /// The network refused the credentials: the user must log in again.
    BadCredentials,
    /// The network ended the session (or the user logged out elsewhere): the user must log
    /// in again.
    LoggedOut,
    /// Something else went wrong; the client will not recover by itself.
    UnknownError,
}

impl LoginState {
    /// Every state, in the order above (for the gauge).
    pub const ALL: [LoginState; 7] = [
        LoginState::Starting,
        LoginState::Connecting,
        LoginState::Connected,
        LoginState::TransientDisconnect,
        LoginState::BadCredentials,
        LoginState::LoggedOut,
        LoginState::UnknownError,
    ];

    /// The state's name, as stored and as the `state` label of the gauge.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginState::Starting => "starting",
            LoginState::Connecting => "connecting",
            LoginState::Connected => "connected",
            LoginState::TransientDisconnect => "transient_disconnect",
            LoginState::BadCredentials => "bad_credentials",
            LoginState::LoggedOut => "logged_out",
            LoginState::UnknownError => "unknown_error",
        }
    }

    /// Whether the user must act (log in again) for the login to work: such a change is told
    /// to the user once.
    pub fn needs_user(self) -> bool {
        matches!(
            self,
            LoginState::BadCredentials | LoginState::LoggedOut | LoginState::UnknownError
        )
    }
}

impl std::fmt::Display for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One remote account a Matrix user logged into.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoginRecord {
    /// The login's ID, unique in the bridge (usually the remote account's ID).
    pub id: LoginId,
    /// The Matrix user it belongs to.
    pub user_id: OwnedUserId,
    /// The remote account's user ID, as its messages name their sender.
    pub remote_id: RemoteUserId,
    /// The remote account's display name, when the network tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
    /// The state last reported.
    pub state: LoginState,
    /// Why, for states other than connected (the network's words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<MilliSecondsSinceUnixEpoch>,
    /// Whatever the bridge keeps about the login: its session, tokens, the server it is on
    /// (see [`LoginRecord::metadata_as`]).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

impl LoginRecord {
    /// A new login of `user_id` as the remote account `remote_id`, in state
    /// [`LoginState::Starting`].
    pub fn new(id: LoginId, user_id: OwnedUserId, remote_id: RemoteUserId) -> Self {
        Self {
            id,
            user_id,
            remote_id,
            remote_name: None,
            state: LoginState::Starting,
            state_reason: None,
            state_since: None,
            metadata: Value::Null,
        }
    }

    /// Records the remote account's display name.
    pub fn with_remote_name(mut self, name: impl Into<String>) -> Self {
        self.remote_name = Some(name.into());
        self
    }

    /// Attaches the bridge's own metadata, typed by the bridge.
    pub fn with_metadata(mut self, metadata: &impl Serialize) -> Result<Self, StoreError> {
        self.metadata = to_value(metadata)?;
        Ok(self)
    }

    /// The bridge's metadata as `T`; `None` when there is none.
    pub fn metadata_as<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        from_value(&self.metadata)
    }

    /// Replaces the bridge's metadata.
    pub fn set_metadata(&mut self, metadata: &impl Serialize) -> Result<(), StoreError> {
        self.metadata = to_value(metadata)?;
        Ok(())
    }
}

/// A login's place in a portal: the chat is one the login takes part in, so Matrix events of
/// its user there go out through it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PortalLogin {
    /// The portal.
    pub portal: PortalKey,
    /// The login.
    pub login_id: LoginId,
    /// The login's Matrix user.
    pub user_id: OwnedUserId,
    /// Whether this is the login its user prefers in the portal (when several of theirs are
    /// in it).
    #[serde(default)]
    pub preferred: bool,
}

impl PortalLogin {
    /// `login` of `user_id` is in `portal`, not preferred.
    pub fn new(portal: PortalKey, login_id: LoginId, user_id: OwnedUserId) -> Self {
        Self {
            portal,
            login_id,
            user_id,
            preferred: false,
        }
    }

    /// Marks it as its user's preferred login in the portal.
    pub fn preferred(mut self) -> Self {
        self.preferred = true;
        self
    }
}
