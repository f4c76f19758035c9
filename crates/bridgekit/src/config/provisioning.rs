//! `provisioning.*`: the provisioning API for login managers (off unless a secret is set).

use super::ConfigError;
use super::key::{Key, Source};

const SHARED_SECRET: Key = Key {
    name: "provisioning.shared_secret",
    help: "secret a login manager sends as `Authorization: Bearer …` (with `?user_id=`) to the provisioning API under /_matrix/provision/v3; unset, the API is off",
};

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[&SHARED_SECRET];

/// The provisioning API's settings.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ProvisioningConfig {
    /// The shared secret; `None`: the API is off.
    pub shared_secret: Option<String>,
}

pub(super) fn read(src: &Source<'_>) -> Result<ProvisioningConfig, ConfigError> {
    let shared_secret = src.raw(&SHARED_SECRET)?.filter(|s| !s.trim().is_empty());
    if let Some(secret) = &shared_secret
        && secret.len() < 16
    {
        return Err(src.invalid(
            &SHARED_SECRET,
            "…",
            "use at least 16 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(ProvisioningConfig { shared_secret })
}
