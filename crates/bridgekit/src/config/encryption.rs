//! `encryption.*`: end-to-bridge encryption — the bot's device decrypts what users send in
//! encrypted rooms and encrypts everything the bridge sends there.

use super::ConfigError;
use super::key::{Key, Source, WithDefault, with_default};

const ALLOW: WithDefault<bool> = with_default!(
    "encryption.allow",
    "let the bridge work in encrypted rooms (needs the homeserver's experimental_features msc2409_to_device_messages_enabled and msc3202_transaction_extensions, and a registration from generate-registration with encryption allowed)",
    false
);
const DEFAULT: WithDefault<bool> = with_default!(
    "encryption.default",
    "create portal rooms encrypted (needs encryption.allow)",
    false
);
const REQUIRE: WithDefault<bool> = with_default!(
    "encryption.require",
    "refuse to bridge messages in unencrypted rooms (needs encryption.allow)",
    false
);
const PICKLE_KEY: Key = Key {
    name: "encryption.pickle_key",
    help: "passphrase the device's keys are encrypted with in the store; unset, they are stored as plain JSON (protect the store); it cannot be added or changed later without resetting the device",
};
const KEY_WAIT: WithDefault<u64> = with_default!(
    "encryption.key_wait_secs",
    "how long an encrypted message waits for its room key before it is reported as undecryptable",
    20
);

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[
    &ALLOW.key,
    &DEFAULT.key,
    &REQUIRE.key,
    &PICKLE_KEY,
    &KEY_WAIT.key,
];

/// End-to-bridge encryption's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EncryptionOptions {
    /// The bridge works in encrypted rooms.
    pub allow: bool,
    /// Portals the bridge creates are encrypted.
    pub default: bool,
    /// Unencrypted rooms are refused.
    pub require: bool,
    /// Encrypts the device's state at rest.
    pub pickle_key: Option<String>,
    /// How long a message waits for its room key.
    pub key_wait: std::time::Duration,
}

impl Default for EncryptionOptions {
    fn default() -> Self {
        Self {
            allow: ALLOW.default,
            default: DEFAULT.default,
            require: REQUIRE.default,
            pickle_key: None,
            key_wait: std::time::Duration::from_secs(KEY_WAIT.default),
        }
    }
}

pub(super) fn read(src: &Source<'_>) -> Result<EncryptionOptions, ConfigError> {
    let allow = src.flag(&ALLOW)?;
    for key in [&DEFAULT, &REQUIRE] {
        if src.flag(key)? && !allow {
            return Err(src.invalid(&key.key, "true", "set encryption.allow: true as well"));
        }
    }
    let pickle_key = src.raw(&PICKLE_KEY)?.filter(|k| !k.trim().is_empty());
    if let Some(k) = &pickle_key
        && k.len() < 16
    {
        return Err(src.invalid(
            &PICKLE_KEY,
            "…",
            "use at least 16 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(EncryptionOptions {
        allow,
        default: src.flag(&DEFAULT)?,
        require: src.flag(&REQUIRE)?,
        pickle_key,
        key_wait: std::time::Duration::from_secs(src.number(&KEY_WAIT)?),
    })
}
