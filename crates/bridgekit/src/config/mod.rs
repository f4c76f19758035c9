//! The bridge's YAML config, with an environment override for every key.
//!
//! Every key is looked up by its dotted name (`homeserver.url`); `BRIDGEKIT_HOMESERVER_URL`
//! overrides it. A missing, unknown or invalid key is an error that names the key, what it
//! is for, and how to fix it. Relative paths are relative to the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ruma::{OwnedServerName, ServerName};
use serde_norway::{Mapping, Value};

pub use crate::store::StoreLocation;

/// One config key: its name and what to tell an operator about it.
struct Key {
    name: &'static str,
    help: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "homeserver.url",
        help: "the homeserver's client-server URL, e.g. http://127.0.0.1:8008",
    },
    Key {
        name: "homeserver.server_name",
        help: "the homeserver's server name, the part after ':' in user IDs, e.g. example.org",
    },
    Key {
        name: "homeserver.startup_timeout_secs",
        help: "how long to wait for the homeserver at startup (default 60)",
    },
    Key {
        name: "homeserver.request_timeout_secs",
        help: "timeout of one request to the homeserver, in seconds (default 60)",
    },
    Key {
        name: "appservice.id",
        help: "the appservice ID, unique on the homeserver, e.g. echo",
    },
    Key {
        name: "appservice.listen",
        help: "host:port the bridge listens on for the homeserver, e.g. 127.0.0.1:29333",
    },
    Key {
        name: "appservice.url",
        help: "how the homeserver reaches the bridge (default http://<appservice.listen>)",
    },
    Key {
        name: "appservice.bot",
        help: "the bot user's localpart, e.g. echobot",
    },
    Key {
        name: "appservice.ghost_prefix",
        help: "localpart prefix of ghost users (default _<appservice.id>_)",
    },
    Key {
        name: "appservice.registration",
        help: "path of the registration file, e.g. registration.yaml",
    },
    Key {
        name: "store.path",
        help: "directory of the bridge's store, e.g. store",
    },
    Key {
        name: "store.cache_mb",
        help: "store page cache in MiB (default 16)",
    },
    Key {
        name: "store.postgres_url",
        help: "use PostgreSQL instead of store.path, e.g. postgresql://bridge@localhost/bridges",
    },
    Key {
        name: "store.postgres_schema",
        help: "the PostgreSQL schema of this bridge's tables (default: appservice.id)",
    },
    Key {
        name: "bridge.error_notices",
        help: "tell the room with a notice when a message could not be bridged (default true)",
    },
    Key {
        name: "bridge.message_status",
        help: "send com.beeper.message_send_status events for every bridged message (default false)",
    },
    Key {
        name: "bridge.send_deadline_secs",
        help: "how long a send the homeserver refuses for a reason that time cures (a ghost not yet in the room) is retried before it is given up and reported (default 600)",
    },
    Key {
        name: "bridge.handler_retry_secs",
        help: "how long a Matrix event whose remote send failed for a reason that may pass (the bridge answered RetryLater) is retried, holding its room, before it is reported as not bridged (default 900)",
    },
    Key {
        name: "bridge.command_prefix",
        help: "prefix of bot commands in rooms that are not portals (default !)",
    },
    Key {
        name: "network",
        help: "the bridge's own settings for its network, read by the bridge",
    },
    Key {
        name: "logging.level",
        help: "log filter, e.g. info or bridgekit=debug (default info; RUST_LOG wins)",
    },
];

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

/// The store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Which backend, and where.
    pub location: StoreLocation,
}

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
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            error_notices: true,
            message_status: false,
            command_prefix: "!".into(),
            send_deadline: Duration::from_secs(600),
            handler_retry: Duration::from_secs(900),
        }
    }
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

struct Source<'a> {
    root: Mapping,
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Source<'_> {
    fn spec(name: &str) -> &'static Key {
        KEYS.iter()
            .find(|k| k.name == name)
            .expect("key is declared in KEYS")
    }

    /// The key's value: the environment override, else the file's value as text.
    fn raw(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        if let Some(value) = (self.env)(&env_var_for(name)) {
            return Ok(Some(value));
        }
        let mut node = Some(&self.root);
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            let value = node.and_then(|m| m.get(part));
            if parts.peek().is_none() {
                return match value {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Number(n)) => Ok(Some(n.to_string())),
                    Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                    Some(other) => {
                        Err(self.invalid(name, &format!("{other:?}"), "expected a single value"))
                    }
                };
            }
            node = value.and_then(Value::as_mapping);
        }
        Ok(None)
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        match self.raw(name)? {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ConfigError::Missing {
                path: self.path.to_owned(),
                key: name,
                env: env_var_for(name),
                help: Self::spec(name).help,
            }),
        }
    }

    fn invalid(&self, name: &'static str, value: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: name,
            value: value.to_owned(),
            reason: reason.to_owned(),
            help: Self::spec(name).help,
        }
    }

    fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.raw(name)? {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| self.invalid(name, &v, "expected a whole number")),
        }
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name)?.as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(other) => Err(self.invalid(name, other, "expected true or false")),
        }
    }

    fn path_value(&self, name: &'static str) -> Result<PathBuf, ConfigError> {
        let value = PathBuf::from(self.required(name)?);
        let base = self.path.parent().unwrap_or(Path::new("."));
        Ok(if value.is_absolute() {
            value
        } else {
            base.join(value)
        })
    }

    /// Rejects keys that are not declared, so typos do not pass silently.
    fn check_unknown(&self) -> Result<(), ConfigError> {
        fn walk(prefix: &str, map: &Mapping, out: &mut Vec<String>) {
            for (k, v) in map {
                let k = k
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{k:?}"));
                let full = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                match v.as_mapping() {
                    Some(inner)
                        if KEYS
                            .iter()
                            .any(|key| key.name.starts_with(&format!("{full}."))) =>
                    {
                        walk(&full, inner, out)
                    }
                    _ => out.push(full),
                }
            }
        }
        let mut found = Vec::new();
        walk("", &self.root, &mut found);
        match found
            .into_iter()
            .find(|k| !KEYS.iter().any(|key| key.name == k))
        {
            None => Ok(()),
            Some(key) => Err(ConfigError::Unknown {
                path: self.path.to_owned(),
                key,
                known: KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

impl Config {
    /// The bridge's `network` section as `T` (`T::default()`-like errors name the section).
    pub fn network_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(&self.network).map_err(|e| ConfigError::Invalid {
            path: self.path.clone(),
            key: "network",
            value: "…".into(),
            reason: e.to_string(),
            help: "the bridge's own settings for its network, read by the bridge",
        })
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

        let url = src.required("homeserver.url")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(src.invalid(
                "homeserver.url",
                &url,
                "must start with http:// or https://",
            ));
        }
        let server_name = src.required("homeserver.server_name")?;
        let server_name = ServerName::parse(&server_name)
            .map_err(|e| src.invalid("homeserver.server_name", &server_name, &e.to_string()))?;

        let id = src.required("appservice.id")?;
        let listen_text = src.required("appservice.listen")?;
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            src.invalid(
                "appservice.listen",
                &listen_text,
                "expected host:port with an IP address, e.g. 127.0.0.1:29333",
            )
        })?;
        let as_url = match src.raw("appservice.url")? {
            Some(u) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(src.invalid(
                        "appservice.url",
                        &u,
                        "must start with http:// or https://",
                    ));
                }
                u.trim_end_matches('/').to_owned()
            }
            None if listen.ip().is_unspecified() => {
                return Err(src.invalid(
                    "appservice.listen",
                    &listen_text,
                    "listening on all interfaces, so the homeserver's URL for the bridge cannot be guessed: set appservice.url",
                ));
            }
            None => format!("http://{listen}"),
        };
        let bot = src.required("appservice.bot")?;
        if !is_localpart(&bot) {
            return Err(src.invalid(
                "appservice.bot",
                &bot,
                "a localpart may hold only a-z, 0-9, '.', '_', '=', '-' and '/'",
            ));
        }
        let ghost_prefix = src
            .raw("appservice.ghost_prefix")?
            .unwrap_or_else(|| format!("_{id}_"));
        if ghost_prefix.is_empty() || !is_localpart(&ghost_prefix) {
            return Err(src.invalid(
                "appservice.ghost_prefix",
                &ghost_prefix,
                "a non-empty localpart prefix of a-z, 0-9, '.', '_', '=', '-' and '/'",
            ));
        }
        if bot.starts_with(&ghost_prefix) {
            return Err(src.invalid(
                "appservice.bot",
                &bot,
                "the bot must not start with the ghost prefix, or it would be taken for a ghost",
            ));
        }
        let registration = src.path_value("appservice.registration")?;
        let location = match src.raw("store.postgres_url")? {
            Some(url) => {
                let schema = match src.raw("store.postgres_schema")? {
                    Some(schema) => schema,
                    None => id
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                        .to_ascii_lowercase(),
                };
                if !is_sql_identifier(&schema) {
                    return Err(src.invalid(
                        "store.postgres_schema",
                        &schema,
                        "use lowercase letters, digits and '_', starting with a letter or '_'",
                    ));
                }
                StoreLocation::Postgres { url, schema }
            }
            None => StoreLocation::Sled {
                path: src.path_value("store.path")?,
                cache_bytes: src.number("store.cache_mb", 16)? * 1024 * 1024,
            },
        };
        let startup = src.number("homeserver.startup_timeout_secs", 60)?;
        let request_timeout = src.number("homeserver.request_timeout_secs", 60)?.max(1);
        let log_level = src.raw("logging.level")?.unwrap_or_else(|| "info".into());

        Ok(Config {
            homeserver: HomeserverConfig {
                url: url.trim_end_matches('/').to_owned(),
                server_name,
                startup_timeout: Duration::from_secs(startup),
                request_timeout: Duration::from_secs(request_timeout),
            },
            appservice: AppserviceConfig {
                id,
                listen,
                url: as_url,
                bot,
                ghost_prefix,
                registration,
            },
            store: StoreConfig { location },
            bridge: BridgeOptions {
                error_notices: src.flag("bridge.error_notices", true)?,
                message_status: src.flag("bridge.message_status", false)?,
                command_prefix: src
                    .raw("bridge.command_prefix")?
                    .unwrap_or_else(|| "!".into()),
                send_deadline: Duration::from_secs(src.number("bridge.send_deadline_secs", 600)?),
                handler_retry: Duration::from_secs(src.number("bridge.handler_retry_secs", 900)?),
            },
            network: match src.root.get("network") {
                None => serde_json::Value::Null,
                Some(value) => serde_json::to_value(value)
                    .map_err(|e| src.invalid("network", "…", &e.to_string()))?,
            },
            log_level,
            path: path.to_owned(),
        })
    }
}

fn is_sql_identifier(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_localpart(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/'))
}

#[cfg(test)]
mod tests;
