//! `bridge.*`: how the framework reports on and talks to users.

use std::time::Duration;

use super::ConfigError;
use serde_norway::Value;

use super::key::{Key, Source, WithDefault, with_default};
use crate::logins::{Permission, Permissions};

const ERROR_NOTICES: WithDefault<bool> = with_default!(
    "bridge.error_notices",
    "tell the room with a notice when a message could not be bridged",
    true
);
const MESSAGE_STATUS: WithDefault<bool> = with_default!(
    "bridge.message_status",
    "send com.beeper.message_send_status events for every bridged message",
    false
);
const SEND_DEADLINE_SECS: WithDefault<u64> = with_default!(
    "bridge.send_deadline_secs",
    "how long a send the homeserver refuses for a reason that time cures (a ghost not yet in the room) is retried before it is given up and reported",
    600
);
const HANDLER_RETRY_SECS: WithDefault<u64> = with_default!(
    "bridge.handler_retry_secs",
    "how long a Matrix event whose remote send failed for a reason that may pass (the bridge answered RetryLater) is retried, holding its room, before it is reported as not bridged",
    900
);
const COMMAND_PREFIX: WithDefault<&str> = with_default!(
    "bridge.command_prefix",
    "prefix of bot commands in rooms that are not portals",
    "!"
);
const PERMISSIONS: Key = Key {
    name: "bridge.permissions",
    help: "who may do what: a map from `*`, a server name or a user ID to none, relay, commands, user (may log in) or admin (default: the homeserver's own users user, everyone else commands)",
};
const LOGIN_TIMEOUT_SECS: WithDefault<u64> = with_default!(
    "bridge.login_timeout_secs",
    "how long a login in progress waits for the user or the network before it is cancelled",
    600
);
const REMOTE_SENDS_PER_SECOND: WithDefault<u64> = with_default!(
    "bridge.remote_sends_per_second",
    "how many messages a second one login sends to the remote network on average (bursts of twice that)",
    5
);
const SENDS_IN_FLIGHT_PER_ROOM: WithDefault<u64> = with_default!(
    "bridge.sends_in_flight_per_room",
    "how many plain messages of one room are handled and sent at once: 1 keeps strict order; more lets a busy room drain up to that many times faster, but messages sent close together may then appear in another order (replies, edits, reactions, redactions and state events still wait for everything before them)",
    1
);
const KICK_ON_LOGOUT: WithDefault<bool> = with_default!(
    "bridge.kick_on_logout",
    "on logout, remove the user from the portals their login was in",
    false
);

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[
    &ERROR_NOTICES.key,
    &MESSAGE_STATUS.key,
    &SEND_DEADLINE_SECS.key,
    &HANDLER_RETRY_SECS.key,
    &COMMAND_PREFIX.key,
    &PERMISSIONS,
    &LOGIN_TIMEOUT_SECS.key,
    &REMOTE_SENDS_PER_SECOND.key,
    &SENDS_IN_FLIGHT_PER_ROOM.key,
    &KICK_ON_LOGOUT.key,
];

/// How the framework reports on and talks to users (`bridge.*`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BridgeOptions {
    /// Send a notice to the room when a Matrix event could not be bridged.
    pub error_notices: bool,
    /// Send `com.beeper.message_send_status` events for bridged messages.
    pub message_status: bool,
    /// Prefix of bot commands in management rooms.
    pub command_prefix: String,
    /// How long a send refused for a reason that time cures (a ghost the homeserver does not
    /// see in the room yet, right after its join) is retried before it is given up.
    pub send_deadline: Duration,
    /// How long a Matrix event whose handler answered [`RetryLater`](crate::RetryLater) is
    /// retried before it is reported as not bridged.
    pub handler_retry: Duration,
    /// Who may do what.
    pub permissions: Permissions,
    /// How long a login in progress may wait for the user or the network.
    pub login_timeout: Duration,
    /// How many messages a second one login sends to its network on average.
    pub remote_sends_per_second: f64,
    /// How many plain messages of one room are handled and sent at once (1: strict order).
    pub sends_in_flight_per_room: usize,
    /// Whether logging out removes the user from their login's portals.
    pub kick_on_logout: bool,
    /// Relay mode (`relay.*`).
    pub relay: super::RelayOptions,
    /// Double puppeting (`double_puppet.*`).
    pub double_puppet: super::DoublePuppetOptions,
    /// End-to-bridge encryption (`encryption.*`).
    pub encryption: super::EncryptionOptions,
}

impl Default for BridgeOptions {
    /// The keys' defaults, as when none is set.
    fn default() -> Self {
        Self {
            error_notices: ERROR_NOTICES.default,
            message_status: MESSAGE_STATUS.default,
            command_prefix: COMMAND_PREFIX.default.into(),
            send_deadline: Duration::from_secs(SEND_DEADLINE_SECS.default),
            handler_retry: Duration::from_secs(HANDLER_RETRY_SECS.default),
            permissions: Permissions::default_for("localhost"),
            login_timeout: Duration::from_secs(LOGIN_TIMEOUT_SECS.default),
            remote_sends_per_second: REMOTE_SENDS_PER_SECOND.default as f64,
            sends_in_flight_per_room: SENDS_IN_FLIGHT_PER_ROOM.default as usize,
            kick_on_logout: KICK_ON_LOGOUT.default,
            relay: super::RelayOptions::default(),
            double_puppet: super::DoublePuppetOptions::default(),
            encryption: super::EncryptionOptions::default(),
        }
    }
}

/// `bridge.permissions`, or the default for the homeserver `server_name`.
fn permissions(src: &Source<'_>, server_name: &str) -> Result<Permissions, ConfigError> {
    let value = src
        .root
        .get("bridge")
        .and_then(Value::as_mapping)
        .and_then(|b| b.get("permissions"));
    let map = match value {
        None | Some(Value::Null) => return Ok(Permissions::default_for(server_name)),
        Some(Value::Mapping(map)) => map,
        Some(other) => {
            return Err(src.invalid(
                &PERMISSIONS,
                &format!("{other:?}"),
                "expected a map such as {'*': relay, 'example.org': user}",
            ));
        }
    };
    let mut rules = Vec::new();
    for (who, level) in map {
        let (Some(who), Some(level_text)) = (who.as_str(), level.as_str()) else {
            return Err(src.invalid(
                &PERMISSIONS,
                &format!("{who:?}: {level:?}"),
                "expected text: level",
            ));
        };
        let shown = format!("{who}: {level_text}");
        let level = Permission::parse(level_text).ok_or_else(|| {
            src.invalid(
                &PERMISSIONS,
                &shown,
                "levels are none, relay, commands, user and admin",
            )
        })?;
        let valid_who = who == "*"
            || (who.starts_with('@') && ruma::UserId::parse(who).is_ok())
            || ruma::ServerName::parse(who).is_ok();
        if !valid_who {
            return Err(src.invalid(
                &PERMISSIONS,
                &shown,
                "name `*`, a server name (example.org) or a user ID (@alice:example.org)",
            ));
        }
        rules.push((who.to_owned(), level));
    }
    Ok(Permissions::from_rules(rules))
}

/// Most plain messages of one room in hand at once: beyond this a room gains nothing (the
/// homeserver serializes a room's events) and only order is lost.
const MAX_SENDS_IN_FLIGHT: u64 = 64;

fn sends_in_flight(src: &Source<'_>) -> Result<usize, ConfigError> {
    let n = src.number(&SENDS_IN_FLIGHT_PER_ROOM)?;
    if !(1..=MAX_SENDS_IN_FLIGHT).contains(&n) {
        return Err(src.invalid(
            &SENDS_IN_FLIGHT_PER_ROOM.key,
            &n.to_string(),
            &format!("expected 1 (strict order) to {MAX_SENDS_IN_FLIGHT}"),
        ));
    }
    Ok(n as usize)
}

pub(super) fn read(src: &Source<'_>, server_name: &str) -> Result<BridgeOptions, ConfigError> {
    Ok(BridgeOptions {
        error_notices: src.flag(&ERROR_NOTICES)?,
        message_status: src.flag(&MESSAGE_STATUS)?,
        command_prefix: src.text(&COMMAND_PREFIX)?,
        send_deadline: Duration::from_secs(src.number(&SEND_DEADLINE_SECS)?),
        handler_retry: Duration::from_secs(src.number(&HANDLER_RETRY_SECS)?),
        permissions: permissions(src, server_name)?,
        login_timeout: Duration::from_secs(src.number(&LOGIN_TIMEOUT_SECS)?),
        remote_sends_per_second: src.number(&REMOTE_SENDS_PER_SECOND)?.max(1) as f64,
        sends_in_flight_per_room: sends_in_flight(src)?,
        kick_on_logout: src.flag(&KICK_ON_LOGOUT)?,
        relay: super::RelayOptions::default(),
        double_puppet: super::DoublePuppetOptions::default(),
        encryption: super::EncryptionOptions::default(),
    })
}
