//! `relay.*`: relay mode — Matrix users without a login in a portal speak through the
//! portal's relay login, their messages formatted with their name.

use super::ConfigError;
use super::key::{Key, Source, WithDefault, with_default};

const ENABLED: WithDefault<bool> = with_default!(
    "relay.enabled",
    "let a portal have a relay login (`set-relay`) that carries the messages of users without a login",
    false
);
const TEXT: WithDefault<&str> = with_default!(
    "relay.text",
    "how a relayed text message reads; {displayname} and {message} are filled in",
    "{displayname}: {message}"
);
const NOTICE: WithDefault<&str> = with_default!(
    "relay.notice",
    "how a relayed notice reads",
    "{displayname}: {message}"
);
const EMOTE: WithDefault<&str> = with_default!(
    "relay.emote",
    "how a relayed emote reads",
    "* {displayname} {message}"
);
const FILE: WithDefault<&str> = with_default!(
    "relay.file",
    "how a relayed file reads ({message} is its name)",
    "{displayname} sent a file: {message}"
);

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[&ENABLED.key, &TEXT.key, &NOTICE.key, &EMOTE.key, &FILE.key];

/// Relay mode's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Whether portals may have a relay login.
    pub enabled: bool,
    /// Templates by kind of message.
    pub text: String,
    /// For notices.
    pub notice: String,
    /// For emotes.
    pub emote: String,
    /// For files, images, audio and video.
    pub file: String,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            enabled: ENABLED.default,
            text: TEXT.default.into(),
            notice: NOTICE.default.into(),
            emote: EMOTE.default.into(),
            file: FILE.default.into(),
        }
    }
}

pub(super) fn read(src: &Source<'_>) -> Result<RelayOptions, ConfigError> {
    let template = |key: &'static WithDefault<&'static str>| -> Result<String, ConfigError> {
        let text = src.text(key)?;
        if !text.contains("{message}") {
            return Err(src.invalid(&key.key, &text, "the template must contain {message}"));
        }
        Ok(text)
    };
    Ok(RelayOptions {
        enabled: src.flag(&ENABLED)?,
        text: template(&TEXT)?,
        notice: template(&NOTICE)?,
        emote: template(&EMOTE)?,
        file: template(&FILE)?,
    })
}
