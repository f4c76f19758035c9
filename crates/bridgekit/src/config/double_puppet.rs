//! `double_puppet.*`: acting as the bridge's Matrix users for what their own remote accounts
//! do, with a second appservice registration's token (as mautrix bridges configure it) or
//! with an access token a user gives.

use serde_norway::Value;

use super::ConfigError;
use super::key::{Key, Source, WithDefault, with_default};

const SECRETS: Key = Key {
    name: "double_puppet.secrets",
    help: "a map from a server name to `as_token:<token>`, the as_token of a second appservice registration whose user namespace covers that server's users (`generate-registration --double-puppet` writes one); the environment override is the map in YAML, `{example.org: 'as_token:…'}`",
};
const ALLOW_MANUAL: WithDefault<bool> = with_default!(
    "double_puppet.allow_manual",
    "let a user turn double puppeting on with their own access token (`login-matrix <token>`)",
    true
);

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[&SECRETS, &ALLOW_MANUAL.key];

/// Double puppeting's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DoublePuppetOptions {
    /// The double-puppet appservice token for the bridge's own homeserver's users, if set.
    pub as_token: Option<String>,
    /// Whether users may give their own access token.
    pub allow_manual: bool,
}

impl Default for DoublePuppetOptions {
    fn default() -> Self {
        Self {
            as_token: None,
            allow_manual: ALLOW_MANUAL.default,
        }
    }
}

impl DoublePuppetOptions {
    /// Whether double puppeting can happen at all.
    pub fn is_available(&self) -> bool {
        self.as_token.is_some() || self.allow_manual
    }
}

pub(super) fn read(
    src: &Source<'_>,
    server_name: &str,
) -> Result<DoublePuppetOptions, ConfigError> {
    Ok(DoublePuppetOptions {
        as_token: secret(src, server_name)?,
        allow_manual: src.flag(&ALLOW_MANUAL)?,
    })
}

/// The `as_token:` secret for `server_name` from `double_puppet.secrets`.
fn secret(src: &Source<'_>, server_name: &str) -> Result<Option<String>, ConfigError> {
    let from_env = (src.env)(&super::env_var_for(SECRETS.name));
    let value = match &from_env {
        Some(text) => serde_norway::from_str::<Value>(text)
            .map_err(|e| src.invalid(&SECRETS, text, &format!("not a YAML map: {e}")))?,
        None => src
            .root
            .get("double_puppet")
            .and_then(Value::as_mapping)
            .and_then(|m| m.get("secrets"))
            .cloned()
            .unwrap_or(Value::Null),
    };
    let map = match value {
        Value::Null => return Ok(None),
        Value::Mapping(map) => map,
        other => {
            return Err(src.invalid(
                &SECRETS,
                &format!("{other:?}"),
                "expected a map such as {example.org: 'as_token:…'}",
            ));
        }
    };
    let mut found = None;
    for (server, secret) in map {
        let (Some(server), Some(secret)) = (server.as_str(), secret.as_str()) else {
            return Err(src.invalid(
                &SECRETS,
                &format!("{server:?}: {secret:?}"),
                "expected server name: 'as_token:…'",
            ));
        };
        if server != server_name {
            return Err(src.invalid(
                &SECRETS,
                server,
                &format!(
                    "only users of this bridge's homeserver ({server_name}) can be double puppeted; remove `{server}`"
                ),
            ));
        }
        let Some(token) = secret.strip_prefix("as_token:").filter(|t| !t.is_empty()) else {
            return Err(src.invalid(
                &SECRETS,
                &format!("{server}: …"),
                "write `as_token:` and the as_token of the double-puppet registration (`generate-registration --double-puppet` writes one)",
            ));
        };
        found = Some(token.to_owned());
    }
    Ok(found)
}
