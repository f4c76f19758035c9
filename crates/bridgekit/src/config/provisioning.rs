//! `provisioning.*`: the provisioning API for login managers (off unless a secret is set).

use std::path::PathBuf;

use super::ConfigError;
use super::key::{Key, Source};

const SHARED_SECRET: Key = Key {
    name: "provisioning.shared_secret",
    help: "secret a login manager sends as `Authorization: Bearer …` (with `?user_id=`) to the provisioning API under /_matrix/provision/v3; `generate`: a random one kept in provisioning.secret next to the config; unset, the API is off",
};

/// The file a generated secret is kept in, next to the config.
const SECRET_FILE: &str = "provisioning.secret";

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[&SHARED_SECRET];

/// The provisioning API's settings.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ProvisioningConfig {
    /// The shared secret; `None`: the API is off (unless one is generated).
    pub shared_secret: Option<String>,
    /// With `shared_secret: generate`: the file the generated secret is kept in.
    pub secret_file: Option<PathBuf>,
}

impl ProvisioningConfig {
    /// The secret to use: the configured one, or the generated one (made and written to
    /// [`secret_file`](Self::secret_file), mode 0600, on first use; read back afterwards).
    pub fn resolve_secret(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.secret_file else {
            return Ok(self.shared_secret.clone());
        };
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().len() >= 16 => return Ok(Some(text.trim().to_owned())),
            Ok(_) => {
                return Err(format!(
                    "{} holds no usable secret (at least 16 characters): delete it to get a new one",
                    path.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        let secret = crate::registration::random_token(64);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(path).and_then(|mut file| {
            std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())
        });
        written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "generated the provisioning API's shared secret");
        Ok(Some(secret))
    }
}

pub(super) fn read(src: &Source<'_>) -> Result<ProvisioningConfig, ConfigError> {
    let shared_secret = src.raw(&SHARED_SECRET)?.filter(|s| !s.trim().is_empty());
    if shared_secret.as_deref().map(str::trim) == Some("generate") {
        let dir = src.path.parent().unwrap_or(std::path::Path::new("."));
        return Ok(ProvisioningConfig {
            shared_secret: None,
            secret_file: Some(dir.join(SECRET_FILE)),
        });
    }
    if let Some(secret) = &shared_secret
        && secret.len() < 16
    {
        return Err(src.invalid(
            &SHARED_SECRET,
            "…",
            "use at least 16 characters (e.g. `openssl rand -hex 32`), or `generate`",
        ));
    }
    Ok(ProvisioningConfig {
        shared_secret,
        secret_file: None,
    })
}
