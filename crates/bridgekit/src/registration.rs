//! The appservice registration file: generating it for the homeserver, and reading the
//! tokens from it at startup.
//!
//! Generated files have random 64-character tokens, exclusive namespaces for the bot and the
//! ghosts (server name regex-escaped), `rate_limited: false`, ephemeral events on under both
//! the stable and the unstable flag, and mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// One namespace entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Namespace {
    /// Whether only this appservice may use matching IDs.
    pub exclusive: bool,
    /// POSIX regex over full IDs.
    pub regex: String,
}

/// The `namespaces` of a registration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Namespaces {
    /// User IDs.
    #[serde(default)]
    pub users: Vec<Namespace>,
    /// Room aliases.
    #[serde(default)]
    pub aliases: Vec<Namespace>,
    /// Room IDs.
    #[serde(default)]
    pub rooms: Vec<Namespace>,
}

/// A registration file (spec `definitions/registration.yaml` plus the keys Synapse reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Registration {
    /// The appservice ID.
    pub id: String,
    /// How the homeserver reaches the appservice; `None` means no traffic.
    pub url: Option<String>,
    /// Token the appservice uses towards the homeserver.
    pub as_token: String,
    /// Token the homeserver uses towards the appservice.
    pub hs_token: String,
    /// The bot's localpart.
    pub sender_localpart: String,
    /// Whether ghosts are rate-limited.
    #[serde(default)]
    pub rate_limited: Option<bool>,
    /// Third-party protocols served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// Ephemeral events (spec v1.13).
    #[serde(default)]
    pub receive_ephemeral: bool,
    /// Ephemeral events, the MSC2409 flag older Synapse reads.
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    pub push_ephemeral_unstable: bool,
    /// Device lists and one-time-key counts in transactions (MSC3202), for encryption.
    #[serde(
        default,
        rename = "org.matrix.msc3202",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub device_data: bool,
    /// The appservice manages its users' devices (MSC4190), for encryption.
    #[serde(
        default,
        rename = "io.element.msc4190",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub device_management: bool,
    /// The namespaces.
    pub namespaces: Namespaces,
}

/// What can go wrong with a registration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// Refusing to replace a registration the homeserver may already hold.
    #[error(
        "{path} already exists; its tokens may already be registered with the homeserver. Use --force to replace it (then restart the homeserver so it reads the new file)"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read or written.
    #[error("registration file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file is not a valid registration.
    #[error("registration file {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file does not match the config.
    #[error("registration file {path} does not match the config: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs and how to fix it.
        reason: String,
    },
}

/// Escapes regex metacharacters (POSIX ERE and PCRE alike).
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A random token of `len` characters from `[A-Za-z0-9]`, from the OS's CSPRNG.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the OS random source works");
        // 248 = 4 * 62: rejecting bytes above it keeps every character equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    out
}

impl Registration {
    /// A new registration for `config`, with fresh tokens.
    pub fn generate(config: &Config, protocols: Vec<String>) -> Self {
        let server = regex_escape(config.homeserver.server_name.as_str());
        let app = &config.appservice;
        Registration {
            id: app.id.clone(),
            url: Some(app.url.clone()),
            as_token: random_token(64),
            hs_token: random_token(64),
            sender_localpart: app.bot.clone(),
            rate_limited: Some(false),
            protocols,
            receive_ephemeral: true,
            push_ephemeral_unstable: true,
            device_data: config.bridge.encryption.allow,
            device_management: config.bridge.encryption.allow,
            namespaces: Namespaces {
                users: vec![
                    Namespace {
                        exclusive: true,
                        regex: format!("^@{}:{server}$", regex_escape(&app.bot)),
                    },
                    Namespace {
                        exclusive: true,
                        regex: format!("^@{}.*:{server}$", regex_escape(&app.ghost_prefix)),
                    },
                ],
                aliases: vec![Namespace {
                    exclusive: true,
                    regex: format!("^#{}.*:{server}$", regex_escape(&app.ghost_prefix)),
                }],
                rooms: vec![],
            },
        }
    }

    /// A double-puppet registration for `server_name` (as mautrix bridges use one): no URL,
    /// so the homeserver sends it nothing, and a non-exclusive namespace of every local user,
    /// so its token may act as any of them. `as_token` keeps the one the config names.
    pub fn double_puppet(server_name: &str, as_token: Option<String>) -> Self {
        Registration {
            id: "doublepuppet".into(),
            url: None,
            as_token: as_token.unwrap_or_else(|| random_token(64)),
            hs_token: random_token(64),
            sender_localpart: format!("doublepuppet_{}", random_token(12).to_lowercase()),
            rate_limited: Some(false),
            protocols: vec![],
            receive_ephemeral: false,
            push_ephemeral_unstable: false,
            device_data: false,
            device_management: false,
            namespaces: Namespaces {
                users: vec![Namespace {
                    exclusive: false,
                    regex: format!("@.*:{}", regex_escape(server_name)),
                }],
                aliases: vec![],
                rooms: vec![],
            },
        }
    }

    /// Writes the registration to `path` with mode 0600; refuses to replace a file unless
    /// `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), RegistrationError> {
        let io = |e: std::io::Error| RegistrationError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let yaml = serde_norway::to_string(self).expect("registration serializes");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                RegistrationError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io(e)
            }
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        file.write_all(b"# Appservice registration generated by bridgekit. Keep it secret: its tokens act as every ghost.\n")
            .and_then(|()| file.write_all(yaml.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(io)
    }

    /// Reads a registration file.
    pub fn load(path: &Path) -> Result<Self, RegistrationError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistrationError::Io {
            path: path.to_owned(),
            reason: format!("{e}; create it with the generate-registration command"),
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses a registration's YAML; `path` only names it in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, RegistrationError> {
        let reg: Registration =
            serde_norway::from_str(text).map_err(|e| RegistrationError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if reg.as_token.is_empty() || reg.hs_token.is_empty() {
            return Err(RegistrationError::Invalid {
                path: path.to_owned(),
                reason: "as_token and hs_token must not be empty".into(),
            });
        }
        Ok(reg)
    }

    /// Checks that the registration belongs to `config`, naming the fix when it does not.
    pub fn check_against(&self, config: &Config, path: &Path) -> Result<(), RegistrationError> {
        let mismatch = |reason: String| {
            Err(RegistrationError::Mismatch {
                path: path.to_owned(),
                reason,
            })
        };
        let app = &config.appservice;
        if self.id != app.id {
            return mismatch(format!(
                "its id is {:?} but appservice.id is {:?}; make them equal (or regenerate the file with --force and restart the homeserver)",
                self.id, app.id
            ));
        }
        if self.sender_localpart != app.bot {
            return mismatch(format!(
                "its sender_localpart is {:?} but appservice.bot is {:?}; make them equal",
                self.sender_localpart, app.bot
            ));
        }
        match &self.url {
            None => {
                return mismatch(format!(
                    "its url is null, so the homeserver will send the bridge nothing; set it to {}",
                    app.url
                ));
            }
            Some(url) if url.trim_end_matches('/') != app.url => {
                tracing::warn!(registration_url = %url, config_url = %app.url, "the registration's url differs from appservice.url; the homeserver uses the registration's");
            }
            Some(_) => {}
        }
        if config.bridge.encryption.allow {
            let missing: Vec<&str> = [
                (!(self.receive_ephemeral || self.push_ephemeral_unstable))
                    .then_some("receive_ephemeral: true"),
                (!self.device_data).then_some("org.matrix.msc3202: true"),
                (!self.device_management).then_some("io.element.msc4190: true"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !missing.is_empty() {
                return mismatch(format!(
                    "encryption.allow is set but it lacks {}; add that (or regenerate the file with --force) and restart the homeserver",
                    missing.join(" and ")
                ));
            }
        }
        let ghost = format!("@{}", app.ghost_prefix);
        if !self
            .namespaces
            .users
            .iter()
            .any(|ns| ns.regex.contains(&regex_escape(&ghost)) || ns.regex.contains(&ghost))
        {
            tracing::warn!(prefix = %app.ghost_prefix, "no user namespace in the registration mentions the ghost prefix; the homeserver may refuse ghosts");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let text = "homeserver: {url: 'http://127.0.0.1:8008', server_name: my.example.org}\n\
                    appservice: {id: echo, listen: '127.0.0.1:29333', bot: echobot, registration: reg.yaml}\n\
                    store: {path: store}\n";
        Config::parse(text, &dir.join("config.yaml"), &|_| None).unwrap()
    }

    #[test]
    fn generated_registration_is_spec_shaped_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let reg = Registration::generate(&config, vec!["echo".into()]);
        assert_eq!(reg.as_token.len(), 64);
        assert_ne!(reg.as_token, reg.hs_token);
        assert!(reg.as_token.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            reg.namespaces.users[0].regex,
            r"^@echobot:my\.example\.org$"
        );
        assert_eq!(
            reg.namespaces.users[1].regex,
            r"^@_echo_.*:my\.example\.org$"
        );
        assert!(reg.namespaces.users.iter().all(|n| n.exclusive));
        let path = config.appservice.registration.clone();
        reg.write(&path, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "rate_limited: false",
            "receive_ephemeral: true",
            "de.sorunome.msc2409.push_ephemeral: true",
            "sender_localpart: echobot",
        ] {
            assert!(text.contains(key), "missing {key} in\n{text}");
        }
        let again = Registration::generate(&config, vec![]);
        assert!(matches!(
            again.write(&path, false),
            Err(RegistrationError::Exists { .. })
        ));
        assert_eq!(
            Registration::load(&path).unwrap(),
            reg,
            "refused overwrite left the file alone"
        );
        again.write(&path, true).unwrap();
        assert_eq!(Registration::load(&path).unwrap().as_token, again.as_token);
    }

    #[test]
    fn mismatches_with_the_config_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let mut reg = Registration::generate(&config, vec![]);
        assert!(reg.check_against(&config, Path::new("r.yaml")).is_ok());
        reg.id = "other".into();
        let msg = reg
            .check_against(&config, Path::new("r.yaml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("appservice.id"), "{msg}");
        reg.id = "echo".into();
        reg.url = None;
        let msg = reg
            .check_against(&config, Path::new("r.yaml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("url is null"), "{msg}");
    }

    #[test]
    fn with_encryption_allowed_the_registration_asks_for_device_data_and_is_checked_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let plain = config(dir.path());
        let text = serde_norway::to_string(&Registration::generate(&plain, vec![])).unwrap();
        assert!(!text.contains("msc3202"), "{text}");
        let text = "homeserver: {url: 'http://127.0.0.1:8008', server_name: my.example.org}\n\
                    appservice: {id: echo, listen: '127.0.0.1:29333', bot: echobot, registration: reg.yaml}\n\
                    store: {path: store}\nencryption: {allow: true}\n";
        let encrypted = Config::parse(text, &dir.path().join("config.yaml"), &|_| None).unwrap();
        let reg = Registration::generate(&encrypted, vec![]);
        let text = serde_norway::to_string(&reg).unwrap();
        for key in ["org.matrix.msc3202: true", "io.element.msc4190: true"] {
            assert!(text.contains(key), "missing {key} in\n{text}");
        }
        assert!(reg.check_against(&encrypted, Path::new("r.yaml")).is_ok());
        let old = Registration::generate(&plain, vec![]);
        let msg = old
            .check_against(&encrypted, Path::new("r.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("org.matrix.msc3202: true and io.element.msc4190: true"),
            "{msg}"
        );
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(64), random_token(64));
        assert_eq!(random_token(7).len(), 7);
    }

    #[test]
    fn a_double_puppet_registration_may_act_as_every_local_user_and_gets_no_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doublepuppet.yaml");
        Registration::double_puppet("example.org", None)
            .write(&path, false)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        assert!(
            yaml["url"].is_null(),
            "no URL: the homeserver pushes nothing"
        );
        assert_eq!(yaml["namespaces"]["users"][0]["regex"], "@.*:example\\.org");
        assert_eq!(yaml["namespaces"]["users"][0]["exclusive"], false);
        assert_eq!(yaml["rate_limited"], false);
        let token = yaml["as_token"].as_str().unwrap();
        assert_eq!(token.len(), 64);
        // The token the config already names is kept, so file and config agree.
        let kept = Registration::double_puppet("example.org", Some("abc".into()));
        assert_eq!(kept.as_token, "abc");
        assert_ne!(kept.sender_localpart, "");
    }
}
