//! `network`: the bridge's own section, kept whole as JSON for the bridge to read.

use std::path::Path;

use super::ConfigError;
use super::key::{Key, Source};

const NETWORK: Key = Key {
    name: "network",
    help: "the bridge's own settings for its network, read by the bridge",
};

/// This section's keys.
pub(super) const KEYS: &[&Key] = &[&NETWORK];

/// The `network` section as JSON; `Null` when absent.
pub(super) fn read(src: &Source<'_>) -> Result<serde_json::Value, ConfigError> {
    match src.root.get(NETWORK.name) {
        None => Ok(serde_json::Value::Null),
        Some(value) => {
            serde_json::to_value(value).map_err(|e| src.invalid(&NETWORK, "…", &e.to_string()))
        }
    }
}

/// The section as `T`; an error names the section.
pub(super) fn read_as<T: serde::de::DeserializeOwned>(
    network: &serde_json::Value,
    path: &Path,
) -> Result<T, ConfigError> {
    T::deserialize(network).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        key: NETWORK.name,
        value: "…".into(),
        reason: e.to_string(),
        help: NETWORK.help,
    })
}
