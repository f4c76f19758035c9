//! The bridge's YAML config, with an environment override for every key.
//!
//! Every key is looked up by its dotted name (`homeserver.url`); `BRIDGEKIT_HOMESERVER_URL`
//! overrides it. A missing, unknown or invalid key is an error that names the key, what it
//! is for, and how to fix it. Relative paths are relative to the config file.
//!
//! Each section has its module, which defines its keys (name, help, default) next to the code
//! that parses them: `homeserver`, `appservice`, `store`, `bridge`, `provisioning`, `relay`, `double_puppet`,
//! `encryption`, `network`, `logging`.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

mod appservice;
mod bridge;
mod double_puppet;
mod encryption;
mod homeserver;
mod key;
mod logging;
mod network;
mod provisioning;
mod relay;
mod store;

pub use self::appservice::AppserviceConfig;
pub use self::bridge::BridgeOptions;
pub use self::double_puppet::DoublePuppetOptions;
pub use self::encryption::EncryptionOptions;
pub use self::homeserver::HomeserverConfig;
pub use self::provisioning::ProvisioningConfig;
pub use self::relay::RelayOptions;
pub use self::store::StoreConfig;
pub use crate::store::StoreLocation;

use self::key::{Key, Source};

/// Every key, in README order.
const KEYS: &[&[&Key]] = &[
    homeserver::KEYS,
    appservice::KEYS,
    store::KEYS,
    bridge::KEYS,
    provisioning::KEYS,
    relay::KEYS,
    double_puppet::KEYS,
    encryption::KEYS,
    network::KEYS,
    logging::KEYS,
];

/// Every key the config reads, in README order.
fn keys() -> impl Iterator<Item = &'static Key> {
    KEYS.iter().flat_map(|section| section.iter().copied())
}

/// What is wrong with a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Unreadable {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file is not YAML of the right shape.
    #[error("config file {path} is not valid YAML: {reason}")]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A required key is missing.
    #[error("config {path}: missing key `{key}` ({help}); add it to the file or set {env}")]
    Missing {
        /// The config file.
        path: PathBuf,
        /// The dotted key.
        key: &'static str,
        /// The override variable.
        env: String,
        /// What the key is for.
        help: &'static str,
    },
    /// A key has a value that cannot work.
    #[error("config {path}: `{key}` = {value:?} is invalid: {reason} ({help})")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The dotted key.
        key: &'static str,
        /// The value found.
        value: String,
        /// Why it is wrong.
        reason: String,
        /// What the key is for.
        help: &'static str,
    },
    /// A key the bridge does not know (often a typo).
    #[error("config {path}: unknown key `{key}`; known keys are: {known}")]
    Unknown {
        /// The config file.
        path: PathBuf,
        /// The dotted key found.
        key: String,
        /// The keys that exist.
        known: String,
    },
}

/// A loaded, validated config.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// `homeserver.*`
    pub homeserver: HomeserverConfig,
    /// `appservice.*`
    pub appservice: AppserviceConfig,
    /// `store.*`
    pub store: StoreConfig,
    /// `bridge.*`
    pub bridge: BridgeOptions,
    /// `provisioning.*`
    pub provisioning: ProvisioningConfig,
    /// `network`: the bridge's own section, as JSON (see [`Config::network_as`]).
    pub network: serde_json::Value,
    /// `logging.level`
    pub log_level: String,
    /// The file it was read from.
    pub path: PathBuf,
}

/// The environment variable that overrides `key`.
pub fn env_var_for(key: &str) -> String {
    format!("BRIDGEKIT_{}", key.replace('.', "_").to_ascii_uppercase())
}

impl Config {
    /// The bridge's `network` section as `T` (`T::default()`-like errors name the section).
    pub fn network_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        network::read_as(&self.network, &self.path)
    }

    /// Reads and validates the config at `path`, applying `BRIDGEKIT_*` overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`load`](Self::load) with an explicit environment (for tests and embedding).
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: path.to_owned(),
            reason: format!("{e} (create it from the example config, or pass --config PATH)"),
        })?;
        Self::parse(&text, path, env)
    }

    /// Parses config text; `path` is used for messages and to resolve relative paths.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let root = match serde_norway::from_str::<Value>(text) {
            Ok(Value::Mapping(m)) => m,
            Ok(Value::Null) => Mapping::new(),
            Ok(_) => {
                return Err(ConfigError::Syntax {
                    path: path.to_owned(),
                    reason: "the top level must be a mapping of keys".into(),
                });
            }
            Err(e) => {
                return Err(ConfigError::Syntax {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        let src = Source { root, path, env };
        src.check_unknown()?;

        // The sections are read in this order, so that of several faults the same one is
        // reported first as always: the homeserver's timeouts come after the store.
        let address = homeserver::Address::read(&src)?;
        let appservice = appservice::read(&src)?;
        let store = store::read(&src, &appservice.id)?;
        let homeserver = address.with_timeouts(&src)?;
        let log_level = logging::read(&src)?;
        let mut bridge = bridge::read(&src, homeserver.server_name.as_str())?;
        let provisioning = provisioning::read(&src)?;
        bridge.relay = relay::read(&src)?;
        bridge.double_puppet = double_puppet::read(&src, homeserver.server_name.as_str())?;
        bridge.encryption = encryption::read(&src)?;
        let network = network::read(&src)?;

        Ok(Config {
            homeserver,
            appservice,
            store,
            bridge,
            provisioning,
            network,
            log_level,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
