//! `appservice.*`: the appservice's identity and listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::ConfigError;
use super::key::{Key, Source};

const ID: Key = Key {
    name: "appservice.id",
    help: "the appservice ID, unique on the homeserver, e.g. echo",
};
const LISTEN: Key = Key {
    name: "appservice.listen",
    help: "host:port the bridge listens on for the homeserver, e.g. 127.0.0.1:29333",
};
/// Default: `http://<appservice.listen>`, unless that listens on all interfaces.
const URL: Key = Key {
    name: "appservice.url",
    help: "how the homeserver reaches the bridge (default http://<appservice.listen>)",
};
const BOT: Key = Key {
    name: "appservice.bot",
    help: "the bot user's localpart, e.g. echobot",
};
/// Default: `_<appservice.id>_`.
const GHOST_PREFIX: Key = Key {
    name: "appservice.ghost_prefix",
    help: "localpart prefix of ghost users (default _<appservice.id>_)",
};
const REGISTRATION: Key = Key {
    name: "appservice.registration",
    help: "path of the registration file, e.g. registration.yaml",
};

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[&ID, &LISTEN, &URL, &BOT, &GHOST_PREFIX, &REGISTRATION];

/// The appservice's identity and listener.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AppserviceConfig {
    /// The registration's `id`.
    pub id: String,
    /// Where to listen for the homeserver.
    pub listen: SocketAddr,
    /// How the homeserver reaches the bridge (the registration's `url`).
    pub url: String,
    /// The bot's localpart (the registration's `sender_localpart`).
    pub bot: String,
    /// Localpart prefix of ghosts.
    pub ghost_prefix: String,
    /// Path of the registration file.
    pub registration: PathBuf,
}

pub(super) fn read(src: &Source<'_>) -> Result<AppserviceConfig, ConfigError> {
    let id = src.required(&ID)?;
    let listen_text = src.required(&LISTEN)?;
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        src.invalid(
            &LISTEN,
            &listen_text,
            "expected host:port with an IP address, e.g. 127.0.0.1:29333",
        )
    })?;
    let url = match src.raw(&URL)? {
        Some(u) => {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(src.invalid(&URL, &u, "must start with http:// or https://"));
            }
            u.trim_end_matches('/').to_owned()
        }
        None if listen.ip().is_unspecified() => {
            return Err(src.invalid(
                &LISTEN,
                &listen_text,
                "listening on all interfaces, so the homeserver's URL for the bridge cannot be guessed: set appservice.url",
            ));
        }
        None => format!("http://{listen}"),
    };
    let bot = src.required(&BOT)?;
    if !is_localpart(&bot) {
        return Err(src.invalid(
            &BOT,
            &bot,
            "a localpart may hold only a-z, 0-9, '.', '_', '=', '-' and '/'",
        ));
    }
    let ghost_prefix = src.raw(&GHOST_PREFIX)?.unwrap_or_else(|| format!("_{id}_"));
    if ghost_prefix.is_empty() || !is_localpart(&ghost_prefix) {
        return Err(src.invalid(
            &GHOST_PREFIX,
            &ghost_prefix,
            "a non-empty localpart prefix of a-z, 0-9, '.', '_', '=', '-' and '/'",
        ));
    }
    if bot.starts_with(&ghost_prefix) {
        return Err(src.invalid(
            &BOT,
            &bot,
            "the bot must not start with the ghost prefix, or it would be taken for a ghost",
        ));
    }
    let registration = src.path_value(&REGISTRATION)?;
    Ok(AppserviceConfig {
        id,
        listen,
        url,
        bot,
        ghost_prefix,
        registration,
    })
}

fn is_localpart(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/'))
}
