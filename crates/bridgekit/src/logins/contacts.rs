//! Starting new chats from a login: the people it can reach and the chats it can open, as a
//! login manager's "new chat" screen asks for them (the provisioning API's `contacts`,
//! `search_users`, `resolve_identifier`, `create_dm` and `create_group`).

use serde::{Deserialize, Serialize};

use crate::remote::{ChatInfo, RemoteUser};
use crate::store::PortalKey;

/// Someone a login can reach on the network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Contact {
    /// Who they are (their ghost shows this profile).
    pub user: RemoteUser,
    /// Other ways to name them, as URIs (`tel:+123…`, `mailto:…`, `irc:nick`).
    pub identifiers: Vec<String>,
    /// Their direct chat with the login, when there is one.
    pub direct_chat: Option<PortalKey>,
}

impl Contact {
    /// A contact known by `user` alone.
    pub fn new(user: RemoteUser) -> Self {
        Self {
            user,
            identifiers: Vec::new(),
            direct_chat: None,
        }
    }

    /// Adds an identifier URI.
    pub fn with_identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifiers.push(identifier.into());
        self
    }

    /// Names their direct chat with the login.
    pub fn with_direct_chat(mut self, chat: PortalKey) -> Self {
        self.direct_chat = Some(chat);
        self
    }
}

/// A chat the network opened at the login's request: the framework makes (or finds) its
/// portal and invites the login's user.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OpenedChat {
    /// The chat's portal key.
    pub key: PortalKey,
    /// Its name, members and so on (the login's user is invited by the framework).
    pub info: ChatInfo,
}

impl OpenedChat {
    /// The chat `key`, described by `info`.
    pub fn new(key: PortalKey, info: ChatInfo) -> Self {
        Self { key, info }
    }
}
