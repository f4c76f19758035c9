//! The IRC bridge's `network` section of the config.

use serde::Deserialize;

/// Where the IRC network is and how the relay appears on it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `host:port` of the IRC server (plain TCP).
    pub server: String,
    /// The relay's nick (Matrix users speak through it as `<name> text`).
    #[serde(default = "default_nick")]
    pub nick: String,
    /// The relay's server password, when the server needs one.
    #[serde(default)]
    pub password: Option<String>,
    /// Channels bridged from the start (a portal room is created for each).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Matrix users invited to every portal the bridge creates on its own.
    #[serde(default)]
    pub invite: Vec<bridgekit::ruma::OwnedUserId>,
    /// Puppet mode: Matrix users may `login` with their own nick and speak as themselves.
    #[serde(default)]
    pub puppets: bool,
    /// Whether the login asks users for the server password.
    #[serde(default)]
    pub ask_password: bool,
}

fn default_nick() -> String {
    "matrix".into()
}
