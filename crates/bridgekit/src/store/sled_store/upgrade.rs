//! Schema versions of the sled layout, and the upgrades between them, applied on open.
//!
//! - 1: first layout. Composite keys joined with NUL: `room\0remote` in `msg_by_remote`,
//!   `user\0room` in `ghost_joined` and `ghost_room_profiles`.
//! - 2: composite keys length-prefixed ([`super::keys`]), message parts (the v1 mappings
//!   become part `""`), reactions, portals, ghost remote IDs and bridge values (new trees).
//! - 3: the remote queue (a new tree; nothing to rewrite).
//! - 4: users, logins and their portals (new trees; nothing to rewrite).
//! - 5: the bot device's encryption state (a new tree).
//! - 6: message mappings packed many to a sled key (the `packed` module): `msg_by_event`
//!   and `msg_by_remote` are moved into `msg_packed_by_event` / `msg_packed_by_remote`.
//! - 7: message mappings in a log and sorted runs (the `mappings` module): the packed
//!   tables are read into them and dropped.
//! - 8: the runs in files of their own (`mapping-runs/`) instead of the `msg_runs` tree:
//!   moved when the mapping tables open (`mappings::tree_runs`), before this upgrade runs.

use sled::Tree;

use super::entries::Entries;
use super::keys::{decode_u64, key};
use super::mappings::MessageTables;
use super::{Trees, corrupt, json};
use crate::store::{SCHEMA_VERSION, StoreError};

const VERSION_KEY: &str = "schema_version";

/// Brings the store to [`SCHEMA_VERSION`], refusing layouts newer than this build.
pub(super) fn to_current(
    db: &sled::Db,
    trees: &Trees,
    messages: &MessageTables,
    location: &str,
) -> Result<(), StoreError> {
    let found = trees.meta.get(VERSION_KEY)?.map(|v| decode_u64(&v));
    let Some(mut version) = found else {
        trees
            .meta
            .insert(VERSION_KEY, &SCHEMA_VERSION.to_be_bytes())?;
        return Ok(());
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            location: location.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    while version < SCHEMA_VERSION {
        match version {
            1 => v1_to_v2(db, trees)?,
            // 4 → 5 adds the crypto tree, which opening creates.
            2..=4 => {}
            5 => v5_to_v6(db, messages, location)?,
            6 => v6_to_v7(db, messages, location)?,
            // 7 → 8 moves the runs into files, which opening the mapping tables does.
            7 => {}
            other => return Err(corrupt("meta", format!("unknown schema version {other}"))),
        }
        version += 1;
        trees.meta.insert(VERSION_KEY, &version.to_be_bytes())?;
        db.flush()?;
        tracing::info!(version, store = location, "store upgraded");
    }
    Ok(())
}

/// Rewrites every NUL-joined two-part key of `tree`, appending `extra` parts. Each key is
/// moved in one batch with its removal, so an interrupted upgrade never loses a key; keys
/// already in the new form are recognised by their first byte (a length, never `'!'`/`'@'`).
fn rekey(tree: &Tree, extra: &[&str]) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for entry in tree.iter() {
        let (old, value) = entry?;
        if !matches!(old.first(), Some(b'!' | b'@')) {
            continue;
        }
        let text = std::str::from_utf8(&old).map_err(|e| corrupt("upgrade", e))?;
        let (first, second) = text
            .split_once('\0')
            .ok_or_else(|| corrupt("upgrade", "a v1 key without a separator"))?;
        let mut parts = vec![first, second];
        parts.extend_from_slice(extra);
        let new = key(&parts);
        batch.remove(old.clone());
        batch.insert(new, value);
    }
    tree.apply_batch(batch)?;
    Ok(())
}

fn v1_to_v2(db: &sled::Db, trees: &Trees) -> Result<(), StoreError> {
    rekey(&db.open_tree("msg_by_remote")?, &[""])?;
    rekey(&trees.ghost_joined, &[])?;
    rekey(&trees.ghost_room_profiles, &[])?;
    Ok(())
}

/// Moves every mapping of the one-key-per-mapping trees into the mapping tables, then drops
/// the old trees. Inserting a mapping twice changes nothing, so an interrupted move is
/// simply done again; stale reverse keys are not carried over (the reverse entries are
/// rebuilt from the mappings).
fn v5_to_v6(db: &sled::Db, messages: &MessageTables, location: &str) -> Result<(), StoreError> {
    let names = db.tree_names();
    if names.iter().any(|n| n.as_ref() == b"msg_by_event") {
        let old = db.open_tree("msg_by_event")?;
        let mut moved = 0u64;
        for entry in old.iter() {
            let (_, value) = entry?;
            messages.insert(&json("msg_by_event", &value)?)?;
            moved += 1;
            if moved.is_multiple_of(100_000) {
                tracing::info!(moved, store = location, "packing message mappings");
            }
        }
        db.flush()?;
        db.drop_tree("msg_by_event")?;
    }
    if names.iter().any(|n| n.as_ref() == b"msg_by_remote") {
        db.drop_tree("msg_by_remote")?;
    }
    Ok(())
}

/// Moves every mapping of the schema-6 packed table into the mapping tables, then drops the
/// packed tables. Each bucket (a sled key: the start of its hash range; a value: a byte of
/// depth, then entries) holds the live copies of the hashes in its range; copies outside
/// it were left by a split a crash cut short, and are skipped. Inserting a mapping twice
/// changes nothing, so an interrupted move is simply done again.
fn v6_to_v7(db: &sled::Db, messages: &MessageTables, location: &str) -> Result<(), StoreError> {
    const BY_EVENT: &str = "msg_packed_by_event";
    let names = db.tree_names();
    if names.iter().any(|n| n.as_ref() == BY_EVENT.as_bytes()) {
        let old = db.open_tree(BY_EVENT)?;
        let mut moved = 0u64;
        for bucket in old.iter() {
            let (start, value) = bucket?;
            let start: [u8; 8] = start
                .as_ref()
                .try_into()
                .map_err(|_| corrupt(BY_EVENT, "a bucket key is not 8 bytes"))?;
            let start = u64::from_be_bytes(start);
            let depth = u32::from(*value.first().unwrap_or(&0));
            let end = start.checked_add(1u64.checked_shl(64 - depth).unwrap_or(0).wrapping_sub(1));
            for entry in Entries::of_bucket(BY_EVENT, &value)? {
                let (hash, payload) = entry?;
                if hash < start || end.is_some_and(|end| hash > end) {
                    continue;
                }
                messages.insert(&json(BY_EVENT, payload)?)?;
                moved += 1;
                if moved.is_multiple_of(100_000) {
                    tracing::info!(moved, store = location, "moving message mappings");
                }
            }
        }
        db.flush()?;
        db.drop_tree(BY_EVENT)?;
    }
    if names.iter().any(|n| n.as_ref() == b"msg_packed_by_remote") {
        db.drop_tree("msg_packed_by_remote")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::{owned_event_id, owned_room_id, owned_user_id};

    use crate::ids::{MessageId, PartId};
    use crate::store::{DEFAULT_CACHE_BYTES, SledStore, Store, StoreError};

    fn write_v1(path: &std::path::Path) {
        let db = sled::open(path).unwrap();
        let tree = |name: &str| db.open_tree(name).unwrap();
        tree("meta")
            .insert("schema_version", &1u64.to_be_bytes())
            .unwrap();
        tree("msg_by_remote")
            .insert("!r:x\0remote-1", "$ev1")
            .unwrap();
        tree("msg_by_event")
            .insert(
                "$ev1",
                r#"{"room_id":"!r:x","remote_id":"remote-1","event_id":"$ev1","sender":"@_g:x"}"#,
            )
            .unwrap();
        tree("ghosts")
            .insert("@_g:x", r#"{"registered":true,"displayname":"G"}"#)
            .unwrap();
        tree("ghost_joined").insert("@_g:x\0!r:x", "").unwrap();
        tree("ghost_room_profiles")
            .insert("@_g:x\0!r:x", r#"["Gee",null]"#)
            .unwrap();
        db.flush().unwrap();
    }

    #[tokio::test]
    async fn a_version_1_store_is_upgraded_on_open_and_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        write_v1(dir.path());
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let room = owned_room_id!("!r:x");
        let ghost = owned_user_id!("@_g:x");
        let by_remote = store
            .message_by_remote(&room, &MessageId::from_static("remote-1"), &PartId::only())
            .await
            .unwrap();
        assert_eq!(by_remote.unwrap().event_id, owned_event_id!("$ev1"));
        assert_eq!(
            store
                .message_parts(&room, &MessageId::from_static("remote-1"))
                .await
                .unwrap()
                .len(),
            1
        );
        let record = store.ghost(&ghost).await.unwrap();
        assert!(record.registered);
        assert_eq!(record.displayname.as_deref(), Some("G"));
        assert!(store.is_joined(&ghost, &room).await.unwrap());
        assert_eq!(
            store.joined_rooms(&ghost).await.unwrap(),
            std::slice::from_ref(&room)
        );
        assert_eq!(
            store.room_profile(&ghost, &room).await.unwrap(),
            (Some("Gee".into()), None)
        );
        drop(store);
        // Opening again finds version 2 and changes nothing.
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        assert!(store.is_joined(&ghost, &room).await.unwrap());
    }

    #[tokio::test]
    async fn a_version_6_store_keeps_every_live_mapping_and_drops_a_torn_splits_copies() {
        let dir = tempfile::tempdir().unwrap();
        let m = |remote: &str, event: &str| {
            format!(r#"{{"room_id":"!r:x","remote_id":"{remote}","event_id":"{event}"}}"#)
        };
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &6u64.to_be_bytes())
                .unwrap();
            let packed = db.open_tree("msg_packed_by_event").unwrap();
            let upper = 1u64 << 63;
            // A lower bucket (depth 1) still holding a copy of an upper-half hash, as a
            // split cut short leaves it, and the upper bucket with the live copy.
            let mut lower = vec![1u8];
            super::super::entries::push_entry(&mut lower, 5, m("a", "$a").as_bytes());
            super::super::entries::push_entry(&mut lower, upper + 1, m("old", "$b").as_bytes());
            let mut high = vec![1u8];
            super::super::entries::push_entry(&mut high, upper + 1, m("b", "$b").as_bytes());
            packed.insert(0u64.to_be_bytes(), lower).unwrap();
            packed.insert(upper.to_be_bytes(), high).unwrap();
            db.open_tree("msg_packed_by_remote")
                .unwrap()
                .insert("x", "y")
                .unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let room = owned_room_id!("!r:x");
        for (remote, event) in [("a", "$a"), ("b", "$b")] {
            let found = store
                .message_by_remote(&room, &MessageId::new(remote).unwrap(), &PartId::only())
                .await
                .unwrap();
            assert_eq!(found.unwrap().event_id.as_str(), event);
        }
        let stale = store
            .message_by_remote(&room, &MessageId::from_static("old"), &PartId::only())
            .await
            .unwrap();
        assert_eq!(stale, None);
        drop(store);
        let db = super::super::mappings::tests::open_sled(dir.path());
        assert!(!db.tree_names().iter().any(|n| n.starts_with(b"msg_packed")));
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &99u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let err = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("newer than this build"));
    }
}
