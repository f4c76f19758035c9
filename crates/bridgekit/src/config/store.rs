//! `store.*`: which store backend, and where.

use super::ConfigError;
use super::key::{Key, Source, WithDefault, with_default};
use crate::store::StoreLocation;

const PATH: Key = Key {
    name: "store.path",
    help: "directory of the bridge's store, e.g. store",
};
const CACHE_MB: WithDefault<u64> = with_default!("store.cache_mb", "store page cache in MiB", 16);
const POSTGRES_URL: Key = Key {
    name: "store.postgres_url",
    help: "use PostgreSQL instead of store.path, e.g. postgresql://bridge@localhost/bridges",
};
/// Default: `appservice.id`, with anything but ASCII letters and digits as `_`, lowercased.
const POSTGRES_SCHEMA: Key = Key {
    name: "store.postgres_schema",
    help: "the PostgreSQL schema of this bridge's tables (default: appservice.id)",
};
const STANDBY: WithDefault<bool> = with_default!(
    "store.standby",
    "with store.postgres_url: wait as a hot standby while another copy of the bridge holds the schema, and take over when it stops",
    false
);

/// This section's keys, in README order.
pub(super) const KEYS: &[&Key] = &[
    &PATH,
    &CACHE_MB.key,
    &POSTGRES_URL,
    &POSTGRES_SCHEMA,
    &STANDBY.key,
];

/// The store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Which backend, and where.
    pub location: StoreLocation,
    /// Whether to wait as a hot standby while another copy holds the store (PostgreSQL only).
    pub standby: bool,
}

/// Reads `store.*`; `appservice_id` is the default PostgreSQL schema.
pub(super) fn read(src: &Source<'_>, appservice_id: &str) -> Result<StoreConfig, ConfigError> {
    let location = match src.raw(&POSTGRES_URL)? {
        Some(url) => {
            let schema = match src.raw(&POSTGRES_SCHEMA)? {
                Some(schema) => schema,
                None => appservice_id
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                    .to_ascii_lowercase(),
            };
            if !is_sql_identifier(&schema) {
                return Err(src.invalid(
                    &POSTGRES_SCHEMA,
                    &schema,
                    "use lowercase letters, digits and '_', starting with a letter or '_'",
                ));
            }
            StoreLocation::Postgres { url, schema }
        }
        None => StoreLocation::Sled {
            path: src.path_value(&PATH)?,
            cache_bytes: src.number(&CACHE_MB)? * 1024 * 1024,
        },
    };
    let standby = src.flag(&STANDBY)?;
    if standby && matches!(location, StoreLocation::Sled { .. }) {
        return Err(src.invalid(
            &STANDBY.key,
            "true",
            "a standby shares its store with another machine: set store.postgres_url, or remove store.standby",
        ));
    }
    Ok(StoreConfig { location, standby })
}

fn is_sql_identifier(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
