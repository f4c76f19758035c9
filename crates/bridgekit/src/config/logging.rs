//! `logging.*`: what the bridge logs.

use super::ConfigError;
use super::key::{Key, Source, WithDefault, with_default};

const LEVEL: WithDefault<&str> = with_default!(
    "logging.level",
    "log filter, e.g. info or bridgekit=debug",
    "info"; "RUST_LOG wins"
);

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[&LEVEL.key];

/// `logging.level`.
pub(super) fn read(src: &Source<'_>) -> Result<String, ConfigError> {
    src.text(&LEVEL)
}
