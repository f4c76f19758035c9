//! The tables, by schema version (the same numbering as the sled layout), created or
//! upgraded on open inside one database transaction.
//!
//! - 1: queues, transaction record, messages keyed by (room, remote ID), ghosts, ghost rooms.
//! - 2: message parts and timestamps, reactions, portals, ghost remote IDs and metadata,
//!   bridge values.
//! - 3: the remote queue.
//! - 4: users, logins and which logins are in which portal.
//! - 5: the bot device's encryption state.
//! - 6: nothing here (the sled layout packs message mappings; the numbering is shared).
//! - 7: nothing here (sled keeps message mappings in sorted runs).

use crate::store::{SCHEMA_VERSION, StoreError};

use super::db;

/// Each step brings the schema from version `index` to `index + 1`.
const STEPS: [&str; 8] = [
    "
    CREATE TABLE txns (seq BIGSERIAL PRIMARY KEY, key BYTEA NOT NULL UNIQUE);
    CREATE TABLE inbox (
        seq BIGSERIAL PRIMARY KEY, kind SMALLINT NOT NULL, queue TEXT NOT NULL, json TEXT NOT NULL
    );
    CREATE TABLE outbox (seq BIGSERIAL PRIMARY KEY, entry TEXT NOT NULL);
    CREATE TABLE messages (
        room_id TEXT NOT NULL, remote_id TEXT NOT NULL, event_id TEXT NOT NULL UNIQUE,
        sender TEXT, PRIMARY KEY (room_id, remote_id)
    );
    CREATE TABLE ghosts (
        user_id TEXT PRIMARY KEY, registered BOOLEAN NOT NULL DEFAULT FALSE,
        displayname TEXT, avatar_url TEXT
    );
    CREATE TABLE ghost_rooms (
        user_id TEXT NOT NULL, room_id TEXT NOT NULL, joined BOOLEAN NOT NULL DEFAULT FALSE,
        displayname TEXT, avatar_url TEXT, PRIMARY KEY (user_id, room_id)
    );
    ",
    "
    ALTER TABLE messages ADD COLUMN part TEXT NOT NULL DEFAULT '', ADD COLUMN ts BIGINT;
    ALTER TABLE messages DROP CONSTRAINT messages_pkey,
        ADD PRIMARY KEY (room_id, remote_id, part);
    CREATE TABLE reactions (
        room_id TEXT NOT NULL, target_remote_id TEXT NOT NULL, sender TEXT NOT NULL,
        key TEXT NOT NULL, event_id TEXT NOT NULL UNIQUE, remote_id TEXT,
        PRIMARY KEY (room_id, target_remote_id, sender, key)
    );
    CREATE TABLE portals (
        remote_id TEXT NOT NULL, receiver TEXT NOT NULL DEFAULT '',
        room_id TEXT NOT NULL UNIQUE, metadata JSONB, PRIMARY KEY (remote_id, receiver)
    );
    ALTER TABLE ghosts ADD COLUMN remote_id TEXT UNIQUE, ADD COLUMN metadata JSONB;
    CREATE TABLE kv (
        namespace TEXT NOT NULL, key TEXT NOT NULL, value JSONB NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    ",
    "
    CREATE TABLE remote_queue (seq BIGSERIAL PRIMARY KEY, item TEXT NOT NULL);
    ",
    "
    CREATE TABLE users (user_id TEXT PRIMARY KEY, record JSONB NOT NULL);
    CREATE TABLE logins (login_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, record JSONB NOT NULL);
    CREATE INDEX logins_by_user ON logins (user_id, login_id);
    CREATE TABLE portal_logins (
        remote_id TEXT NOT NULL, receiver TEXT NOT NULL DEFAULT '', login_id TEXT NOT NULL,
        user_id TEXT NOT NULL, preferred BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (remote_id, receiver, login_id)
    );
    CREATE INDEX login_portals ON portal_logins (login_id, remote_id, receiver);
    ",
    "
    CREATE TABLE crypto_state (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
    ",
    "SELECT 1;",
    "SELECT 1;",
    // 7 → 8 moved sled's mapping runs into files; nothing changes here.
    "SELECT 1;",
];

/// Whether `schema` can be used unquoted (the config enforces the same rule).
pub(super) fn is_identifier(schema: &str) -> bool {
    (1..=63).contains(&schema.len())
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Creates `schema` if needed and brings it to [`SCHEMA_VERSION`] (or `target`, for tests).
pub(super) async fn to_current(
    client: &tokio_postgres::Client,
    schema: &str,
    location: &str,
) -> Result<(), StoreError> {
    migrate(client, schema, location, SCHEMA_VERSION).await
}

pub(super) async fn migrate(
    client: &tokio_postgres::Client,
    schema: &str,
    location: &str,
    target: u64,
) -> Result<(), StoreError> {
    if !is_identifier(schema) {
        return Err(StoreError::Open(format!(
            "{schema:?} cannot be a schema name: use lowercase letters, digits and '_'"
        )));
    }
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             SET search_path = {schema};
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);"
        ))
        .await
        .map_err(db)?;
    let found: u64 = client
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await
        .map_err(db)?
        .map(|row| row.get::<_, i64>(0) as u64)
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            location: location.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in found..target {
        let step = STEPS[version as usize];
        let next = version as i64 + 1;
        client
            .batch_execute(&format!(
                "BEGIN;
                 {step}
                 INSERT INTO meta (key, value) VALUES ('schema_version', {next})
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
                 COMMIT;"
            ))
            .await
            .map_err(db)?;
        if found > 0 {
            tracing::info!(version = next, store = location, "store upgraded");
        }
    }
    Ok(())
}
