//! `homeserver.*`: the homeserver the bridge serves.

use std::time::Duration;

use ruma::{OwnedServerName, ServerName};

use super::ConfigError;
use super::key::{Key, Source, WithDefault, with_default};

const URL: Key = Key {
    name: "homeserver.url",
    help: "the homeserver's client-server URL, e.g. http://127.0.0.1:8008",
};
const SERVER_NAME: Key = Key {
    name: "homeserver.server_name",
    help: "the homeserver's server name, the part after ':' in user IDs, e.g. example.org",
};
const STARTUP_TIMEOUT_SECS: WithDefault<u64> = with_default!(
    "homeserver.startup_timeout_secs",
    "how long to wait for the homeserver at startup",
    60
);
const REQUEST_TIMEOUT_SECS: WithDefault<u64> = with_default!(
    "homeserver.request_timeout_secs",
    "timeout of one request to the homeserver, in seconds",
    60
);

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[
    &URL,
    &SERVER_NAME,
    &STARTUP_TIMEOUT_SECS.key,
    &REQUEST_TIMEOUT_SECS.key,
];

/// The homeserver the bridge serves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HomeserverConfig {
    /// Client-Server API base URL.
    pub url: String,
    /// The server name in user IDs.
    pub server_name: OwnedServerName,
    /// How long startup waits for the homeserver to answer.
    pub startup_timeout: Duration,
    /// Timeout of one request to the homeserver.
    pub request_timeout: Duration,
}

/// Where the homeserver is: `homeserver.url` and `homeserver.server_name`, read first; the
/// timeouts are read by [`Address::with_timeouts`] after the `appservice` and `store` sections.
pub(super) struct Address {
    url: String,
    server_name: OwnedServerName,
}

impl Address {
    pub(super) fn read(src: &Source<'_>) -> Result<Self, ConfigError> {
        let url = src.required(&URL)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(src.invalid(&URL, &url, "must start with http:// or https://"));
        }
        let server_name = src.required(&SERVER_NAME)?;
        let server_name = ServerName::parse(&server_name)
            .map_err(|e| src.invalid(&SERVER_NAME, &server_name, &e.to_string()))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            server_name,
        })
    }

    pub(super) fn with_timeouts(self, src: &Source<'_>) -> Result<HomeserverConfig, ConfigError> {
        let startup = src.number(&STARTUP_TIMEOUT_SECS)?;
        let request_timeout = src.number(&REQUEST_TIMEOUT_SECS)?.max(1);
        Ok(HomeserverConfig {
            url: self.url,
            server_name: self.server_name,
            startup_timeout: Duration::from_secs(startup),
            request_timeout: Duration::from_secs(request_timeout),
        })
    }
}
